"""Time Chapter 6's InstructGPT pipeline on the tiny language model and print what each stage achieves.

Usage: python benchmarks/rlhf_pipeline.py [--repeats N] [--seeds S]

SFT -> preference data -> reward model -> DPO (solutions/reward_model.py), each stage timed in CPU seconds (this
process) and wall seconds, as the median over ``--repeats`` runs (the stages are trained afresh each time, not
taken from the in-memory caches), then, for each of seeds 0 .. S-1, the targets:

* SFT: the response loss on 200 held-out demonstrations and the hidden score of the samples, before and after;
* preference data: the labellers' agreement (noise model, and two simulated labellers);
* reward model: held-out pairwise accuracy against the noisy labels and against the hidden preference (target
  >= 0.85, ties of the hidden score left out), and the hidden preference's own accuracy against the labels;
* DPO: win rate against the SFT model by the hidden preference (target >= 0.75; 1,000 head-to-head comparisons),
  KL to the SFT model (k1 and k3, nats per completion), the share of well-formed reviews, the implicit reward's
  held-out accuracy; and the likelihood-displacement pair of runs (chosen and rejected log-probabilities, first
  and last tenth of the steps).

Budgets (issue 15): SFT + preference data + reward model + DPO about 35 s of wall time on this 2-core machine when
it is quiet (pre-training the base model, shared with the rest of the chapter, about 13 s more); the whole
pipeline with PPO and GRPO <= 90 s. Everything runs on one torch thread (solutions/threads.py). This machine is
shared: under load the times grow, the wall times most.
"""

import argparse
import statistics
import time

import numpy as np
import torch

from solutions.language_model import pretrained_model
from solutions.reward_model import (DPOConfig, demonstrations, evaluate_policy, hidden_preference,
                                    labeller_agreement, likelihood_displacement, preference_data, rank_completions,
                                    response_loss, reward_model_accuracy, sft_model, sft_samples, train_dpo,
                                    train_reward_model, train_sft)
from solutions.threads import single_threaded


def timed(fn):
    """(result, CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def median_line(label: str, cpus: list[float], walls: list[float]) -> str:
    return (f"{label}: {statistics.median(cpus):.2f} s CPU, {statistics.median(walls):.2f} s wall "
            f"(median of {len(cpus)})")


def fresh_sft(seed: int):
    model = pretrained_model(seed, progress=False)
    train_sft(model, demonstrations(300, seed), seed=seed, progress=False)
    return model


def time_stages(repeats: int, seed: int = 0) -> None:
    """The stages of seed ``seed``, trained afresh ``repeats`` times."""
    _, cpu, wall = timed(lambda: pretrained_model(seed, progress=False))
    print(f"pre-training (once, shared with the chapter): {cpu:.2f} s CPU, {wall:.2f} s wall")
    times = {name: ([], []) for name in ("SFT", "preference data", "reward model", "DPO", "total")}
    for _ in range(repeats):
        sft, *t_sft = timed(lambda: fresh_sft(seed))
        data, *t_data = timed(lambda: preference_data(sft, seed=seed))
        _, *t_rm = timed(lambda: train_reward_model(data, sft, seed=seed, progress=False))
        _, *t_dpo = timed(lambda: train_dpo(data, sft, seed=seed, progress=False))
        for name, (cpu, wall) in zip(times, (t_sft, t_data, t_rm, t_dpo)):
            times[name][0].append(cpu)
            times[name][1].append(wall)
        times["total"][0].append(t_sft[0] + t_data[0] + t_rm[0] + t_dpo[0])
        times["total"][1].append(t_sft[1] + t_data[1] + t_rm[1] + t_dpo[1])
    for name, (cpus, walls) in times.items():
        print(median_line(name + (" (SFT + data + RM + DPO, target ~35 s wall)" if name == "total" else ""),
                          cpus, walls))


def report_seed(seed: int) -> dict:
    """The targets of one seed (its stages from the in-memory caches where they exist)."""
    pretrained, sft = pretrained_model(seed, progress=False), sft_model(seed, progress=False)
    held_out = demonstrations(200, seed + 12345)

    def hidden_mean(model):
        batch = sft_samples(model, seed=seed + 1)
        return float(hidden_preference(batch.prompt_texts(), batch.completion_texts()).mean())

    print(f"seed {seed}")
    print(f"  SFT: response loss on held-out demonstrations {response_loss(pretrained, held_out):.3f} -> "
          f"{response_loss(sft, held_out):.3f} nats/token; hidden score of samples {hidden_mean(pretrained):.2f} "
          f"-> {hidden_mean(sft):.2f}")
    data = preference_data(sft, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    i, j = torch.triu_indices(data.num_generations, data.num_generations, 1)
    first = rank_completions(data.hidden_scores, generator).argsort(dim=1)
    second = rank_completions(data.hidden_scores, generator).argsort(dim=1)
    simulated = float(((first[:, i] < first[:, j]) == (second[:, i] < second[:, j])).double().mean())
    print(f"  labellers: agreement {labeller_agreement(data.hidden_scores):.3f} (noise model), {simulated:.3f} "
          f"(two simulated labellers), {labeller_agreement(data.hidden_scores, exclude_ties=True):.3f} without "
          f"ties; {len(data.prompts)} groups of {data.num_generations}, {len(data.held_out_groups)} held out")
    rm = train_reward_model(data, sft, seed=seed, progress=False)
    accuracy = reward_model_accuracy(rm.model, data)
    print(f"  reward model: held-out accuracy {accuracy['labels']:.3f} (labels), {accuracy['hidden']:.3f} "
          f"(hidden preference, target >= 0.85); the hidden preference itself {accuracy['labels_by_hidden']:.3f} "
          f"against the labels; by epoch (hidden) {[round(a, 3) for a in rm.held_out_hidden_accuracies]}")
    dpo = train_dpo(data, sft, seed=seed, progress=False)
    evaluation = evaluate_policy(dpo.model, sft, n_per_prompt=100, seed=seed + 7)
    print(f"  DPO ({DPOConfig()}): win rate vs SFT {evaluation.win_rate:.3f} (target >= 0.75), KL to SFT "
          f"{evaluation.kl_k1:.2f} (k1) {evaluation.kl_k3:.2f} (k3), hidden score "
          f"{evaluation.hidden_score:.2f} vs {evaluation.reference_hidden_score:.2f}, well-formed "
          f"{evaluation.well_formed:.2f}; implicit reward held-out accuracy {dpo.held_out_accuracy:.3f} (labels), "
          f"{dpo.held_out_hidden_accuracy:.3f} (hidden)")
    return {"rm_hidden": accuracy["hidden"], "win_rate": evaluation.win_rate, "kl": evaluation.kl_k1, "data": data,
            "sft": sft}


def displacement(data, sft, seed: int) -> None:
    runs, cpu, wall = timed(lambda: likelihood_displacement(data, sft, seed=seed))
    print(f"likelihood displacement (seed {seed}; {cpu:.1f} s CPU, {wall:.1f} s wall):")
    for lr, run in runs.items():
        tenth = max(1, len(run.chosen_logps) // 10)
        evaluation = evaluate_policy(run.model, sft, seed=seed + 7)
        print(f"  learning rate {lr:g}: chosen {np.mean(run.chosen_logps[:tenth]):.2f} -> "
              f"{np.mean(run.chosen_logps[-tenth:]):.2f}, rejected {np.mean(run.rejected_logps[:tenth]):.2f} -> "
              f"{np.mean(run.rejected_logps[-tenth:]):.2f}; win rate {evaluation.win_rate:.3f}, KL "
              f"{evaluation.kl_k1:.2f}, well-formed {evaluation.well_formed:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (default 3)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the targets (default 3)")
    args = parser.parse_args()
    with single_threaded():
        time_stages(args.repeats)
        results = [report_seed(seed) for seed in range(args.seeds)]
        print(f"over seeds 0..{args.seeds - 1}: reward-model accuracy (hidden) "
              f"{[round(r['rm_hidden'], 3) for r in results]}, DPO win rate "
              f"{[round(r['win_rate'], 3) for r in results]}, KL {[round(r['kl'], 2) for r in results]}")
        displacement(results[0]["data"], results[0]["sft"], 0)


if __name__ == "__main__":
    main()
