"""Time the tiny language model of Chapters 4-6 and print what its pre-training and REINFORCE achieve.

Usage: python benchmarks/language_model_times.py [--repeats N]   (default 3)

Prints, each time as the median over the repeats, in CPU seconds (this process) and wall seconds:

* pre-training of the default model (``pretrained_model(seed)`` for seeds 0 .. N-1, each a fresh training:
  corpus generation, tokenisation and 500 steps of Adam), target <= 10 s of CPU;
* sampling throughput, batch 64 (32 review and 32 arithmetic prompts, up to 10 new tokens), with the key-value
  cache and without it (the whole sequence recomputed at every step), in generated tokens per second;
* one REINFORCE update (sample 32 completions, score them, one gradient step) and the book's run of 100 updates;

and, for each seed, the pre-trained model's arithmetic accuracy (sampled, 16 completions of each of the 66
prompts, and greedy), its mean sentiment reward and the share of well-formed reviews (20 completions of each of
the 10 review prompts), and the mean review reward of the first and last 10 of 100 REINFORCE updates.
Everything runs on one torch thread (solutions/threads.py). This machine is shared: under load the times grow.
"""

import argparse
import statistics
import time

import torch

from solutions.corpus import (arithmetic_prompts, arithmetic_reward, review_prompts, review_reward,
                              sentiment_reward, well_formed_review)
from solutions.language_model import mean_reward, pretrained_model, reinforce_sequences, sample
from solutions.threads import single_threaded


def timed(fn):
    """(result, CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def median_line(label: str, cpus: list[float], walls: list[float], extra: str = "") -> str:
    return (f"{label}: {statistics.median(cpus):.2f} s CPU, {statistics.median(walls):.2f} s wall "
            f"(median of {len(cpus)}){extra}")


@single_threaded()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats

    # pre-training, one fresh model per seed, and what it learned
    cpus, walls, models = [], [], []
    for seed in range(repeats):
        model, cpu, wall = timed(lambda seed=seed: pretrained_model(seed, progress=False))
        models.append(model)
        cpus.append(cpu)
        walls.append(wall)
    print(median_line("pre-training (10,000 sentences, 500 steps of 64)", cpus, walls))
    for seed, model in enumerate(models):
        sampled = mean_reward(model, arithmetic_prompts(), arithmetic_reward, num_generations=16, seed=100)
        greedy = mean_reward(model, arithmetic_prompts(), arithmetic_reward, temperature=0.0)
        reviews = sample(model, review_prompts(), 10, num_generations=20,
                         generator=torch.Generator().manual_seed(100))
        sentiment = sentiment_reward(reviews.completion_texts()).mean().item()
        well_formed = sum(map(well_formed_review, reviews.texts())) / len(reviews)
        print(f"  seed {seed}: arithmetic accuracy {sampled:.3f} sampled, {greedy:.3f} greedy (corpus: 0.70); "
              f"mean sentiment {sentiment:+.3f}; well-formed reviews {well_formed:.3f}")

    # sampling throughput, batch 64
    model = models[0]
    prompts = (review_prompts() * 4)[:32] + arithmetic_prompts()[:32]
    for use_cache in (True, False):
        cpus, walls, rates = [], [], []
        for repeat in range(max(repeats, 5)):
            completions, cpu, wall = timed(lambda: sample(model, prompts, 10, use_cache=use_cache,
                                                          generator=torch.Generator().manual_seed(repeat)))
            generated = int(completions.completion_mask.sum())
            cpus.append(cpu)
            walls.append(wall)
            rates.append(generated / wall)
        print(median_line(f"sampling 64 prompts {'with' if use_cache else 'without'} the KV cache", cpus, walls,
                          f"; {statistics.median(rates):,.0f} generated tokens/s (wall)"))

    # REINFORCE: one update, then the book's run of 100 updates for each seed
    cpus, walls = [], []
    for repeat in range(max(repeats, 5)):
        policy = pretrained_model(0)
        _, cpu, wall = timed(lambda: reinforce_sequences(policy, review_prompts(), review_reward, 1, seed=repeat,
                                                         n_shown=0, progress=False))
        cpus.append(cpu)
        walls.append(wall)
    print(median_line("one REINFORCE update (32 completions)", cpus, walls))
    cpus, walls = [], []
    for seed in range(repeats):
        policy = pretrained_model(0)
        result, cpu, wall = timed(lambda: reinforce_sequences(policy, review_prompts(), review_reward, 100,
                                                              seed=seed, progress=False))
        cpus.append(cpu)
        walls.append(wall)
        first, last = statistics.mean(result.mean_rewards[:10]), statistics.mean(result.mean_rewards[-10:])
        print(f"  REINFORCE seed {seed}: mean review reward {first:+.2f} (first 10 updates) -> {last:+.2f} "
              f"(last 10); after: {result.samples_after[:3]}")
    print(median_line("REINFORCE, 100 updates of 32 completions (the book's run)", cpus, walls))


if __name__ == "__main__":
    main()
