"""Time Chapter 6's InstructGPT pipeline on the tiny language model and print what each stage achieves.

Usage: python benchmarks/rlhf_pipeline.py [--repeats N] [--seeds S] [--sweep-seeds K] [--jobs J] [--skip-sweep]

SFT -> preference data -> reward model -> DPO (solutions/reward_model.py), PPO and GRPO against the reward model
(solutions/rlhf_policy.py), each stage timed in CPU seconds (this process) and wall seconds, as the median over
``--repeats`` runs (the stages are trained afresh each time, not taken from the in-memory caches), then, for
each of seeds 0 .. S-1, the targets:

* SFT: the response loss on 200 held-out demonstrations and the hidden score of the samples, before and after;
* preference data: the labellers' agreement (noise model, and two simulated labellers);
* reward model: held-out pairwise accuracy against the noisy labels and against the hidden preference (target
  >= 0.85, ties of the hidden score left out), and the hidden preference's own accuracy against the labels;
* DPO: win rate against the SFT model by the hidden preference (target >= 0.75; 1,000 head-to-head comparisons),
  KL to the SFT model (k1 and k3, nats per completion), the share of well-formed reviews, the implicit reward's
  held-out accuracy; and the likelihood-displacement pair of runs (chosen and rejected log-probabilities, first
  and last tenth of the steps);
* PPO (``PPORLHFConfig()``), GRPO (``chapter_grpo_config()``: the KL in the loss, k3) and GRPO with PPO's KL
  penalty in the reward instead (``chapter_grpo_config(beta=0.0, kl_coef=0.1)``) against the seed's reward
  model, scoring completions as sampled (``RewardModelScore``): the same measurements as DPO (target >= 0.75),
  and the learned reward of the training batches, first and last 5 updates.

Then the over-optimisation sweep (Gao et al. 2023; ``overoptimisation_sweep``: GRPO at beta 0, 0.1, 0.3, seeds
0 .. K-1, on J processes, the SFT model and reward model of seed 0): CPU seconds of this process and its workers
and wall seconds (target <= ~40 s of wall time on 2 processes, quiet); per beta and seed the learned reward, the
hidden score and the KL of the training batches (means of the first and last 10 updates) and of the final
policy's samples against the SFT model's, a sample; and Gao et al.'s plot as numbers (``sqrt_kl_bins``: the mean
hidden score / learned reward in bins of sqrt(KL), points per bin).

Budgets (issue 15): SFT + preference data + reward model + DPO about 35 s of wall time on this 2-core machine when
it is quiet (pre-training the base model, shared with the rest of the chapter, about 13 s more); the whole
pipeline with PPO and GRPO <= 90 s. Everything runs on one torch thread (solutions/threads.py). This machine is
shared: under load the times grow, the wall times most.
"""

import argparse
import copy
import time

import numpy as np
import torch

from solutions.corpus import review_prompts
from solutions.language_model import pretrained_model
from solutions.reward_model import (DPOConfig, demonstrations, evaluate_policy, hidden_preference,
                                    labeller_agreement, likelihood_displacement, preference_data, rank_completions,
                                    response_loss, reward_model, reward_model_accuracy, sft_model, sft_samples,
                                    train_dpo, train_reward_model, train_sft)
from solutions.rlhf_policy import (CHAPTER_BETAS, PPORLHFConfig, RewardModelScore, chapter_grpo_config,
                                   overoptimisation_sweep, sqrt_kl_bins, train_grpo_rlhf, train_ppo_rlhf)
from solutions.threads import single_threaded
from timing import cpu_all, median_line, timed


def fresh_sft(seed: int):
    model = pretrained_model(seed, progress=False)
    train_sft(model, demonstrations(300, seed), seed=seed, progress=False)
    return model


def time_stages(repeats: int, seed: int = 0) -> None:
    """The stages of seed ``seed``, trained afresh ``repeats`` times."""
    _, cpu, wall = timed(lambda: pretrained_model(seed, progress=False))
    print(f"pre-training (once, shared with the chapter): {cpu:.2f} s CPU, {wall:.2f} s wall")
    times = {name: ([], []) for name in ("SFT", "preference data", "reward model", "DPO", "PPO", "GRPO",
                                         "SFT + data + RM + DPO", "total")}
    for _ in range(repeats):
        sft, *t_sft = timed(lambda: fresh_sft(seed))
        data, *t_data = timed(lambda: preference_data(sft, seed=seed))
        rm, *t_rm = timed(lambda: train_reward_model(data, sft, seed=seed, progress=False))
        _, *t_dpo = timed(lambda: train_dpo(data, sft, seed=seed, progress=False))
        ppo_policy, grpo_policy = copy.deepcopy(sft), copy.deepcopy(sft)  # trained in place
        _, *t_ppo = timed(lambda: train_ppo_rlhf(ppo_policy, review_prompts(), RewardModelScore(
            rm.model, PPORLHFConfig().response_length), PPORLHFConfig(), seed, progress=False))
        _, *t_grpo = timed(lambda: train_grpo_rlhf(grpo_policy, review_prompts(), RewardModelScore(
            rm.model, chapter_grpo_config().max_completion_length), chapter_grpo_config(), seed, progress=False))
        stages = (t_sft, t_data, t_rm, t_dpo, t_ppo, t_grpo)
        for name, (cpu, wall) in zip(times, stages):
            times[name][0].append(cpu)
            times[name][1].append(wall)
        for name, parts in (("SFT + data + RM + DPO", stages[:4]), ("total", stages)):
            times[name][0].append(sum(t[0] for t in parts))
            times[name][1].append(sum(t[1] for t in parts))
    targets = {"PPO": " (target ~10-15 s CPU)", "GRPO": " (target ~10-15 s CPU)",
               "SFT + data + RM + DPO": " (target ~35 s wall)",
               "total": " (SFT + data + RM + DPO + PPO + GRPO, target <= 90 s wall with pre-training)"}
    for name, (cpus, walls) in times.items():
        print(median_line(name + targets.get(name, ""), cpus, walls))


#: The RL runs of each seed: PPO, the chapter's GRPO (the KL in the loss, k3), and GRPO with PPO's KL penalty in
#: the reward instead (solutions.rlhf_policy.GRPORLHFConfig).
RL_RUNS = (("PPO", train_ppo_rlhf, PPORLHFConfig()), ("GRPO", train_grpo_rlhf, chapter_grpo_config()),
           ("GRPO, KL in the reward", train_grpo_rlhf, chapter_grpo_config(beta=0.0, kl_coef=0.1)))


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
    rl = {}
    for name, train, config in RL_RUNS:
        length = config.response_length if name == "PPO" else config.max_completion_length
        policy = sft_model(seed, progress=False)
        result = train(policy, review_prompts(), RewardModelScore(rm.model, length), config, seed,
                       hidden_fn=hidden_preference, progress=False)
        rl[name] = evaluate_policy(policy, sft, n_per_prompt=100, reward=rm.model, seed=seed + 7)
        print(f"  {name}: win rate vs SFT {rl[name].win_rate:.3f} (target >= 0.75), KL to SFT "
              f"{rl[name].kl_k1:.2f} (k1) {rl[name].kl_k3:.2f} (k3), hidden score {rl[name].hidden_score:.2f} vs "
              f"{rl[name].reference_hidden_score:.2f}, well-formed {rl[name].well_formed:.2f}, reward model "
              f"{rl[name].reward:.2f}; learned reward of the batches {np.mean(result.learned_rewards[:5]):.2f} -> "
              f"{np.mean(result.learned_rewards[-5:]):.2f}; {result.cpu_seconds:.1f} s CPU")
    return {"rm_hidden": accuracy["hidden"], "win_rate": evaluation.win_rate, "kl": evaluation.kl_k1, "data": data,
            "sft": sft, "rl": rl}


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


def overoptimisation(seeds: list[int], jobs: int) -> None:
    """Gao et al.'s over-optimisation as the chapter runs it: GRPO at CHAPTER_BETAS over the seeds."""
    sft, rm = sft_model(0, progress=False), reward_model(0, progress=False)
    cpu, wall = cpu_all(), time.perf_counter()
    reward_fn = RewardModelScore(rm, chapter_grpo_config().max_completion_length)
    runs = overoptimisation_sweep(sft, review_prompts(), reward_fn, hidden_preference, betas=CHAPTER_BETAS,
                                  seeds=seeds, n_jobs=jobs, progress=False)
    cpu, wall = cpu_all() - cpu, time.perf_counter() - wall
    print(f"over-optimisation sweep (GRPO, beta {CHAPTER_BETAS} x seeds {seeds}, {jobs} processes): "
          f"{cpu:.1f} s CPU with the workers, {wall:.1f} s wall (target <= ~40 s wall on 2 processes, quiet)")
    before = runs[next(iter(runs))]["before"]
    print(f"  the SFT model's samples: learned reward {before['learned_reward']:.2f}, hidden score "
          f"{before['hidden_score']:.2f}")
    for name, run in runs.items():
        print(f"  {name} (training CPU per run {np.round(run['cpu_seconds'], 1).tolist()} s):")
        for k, seed in enumerate(seeds):
            learned, hidden, kl = run["learned_rewards"][k], run["hidden_scores"][k], run["kls"][k]
            after = {key: float(values[k]) for key, values in run["after"].items()}
            print(f"    seed {seed}: batches' learned reward {learned[:10].mean():.2f} -> "
                  f"{learned[-10:].mean():.2f}, hidden {hidden[:10].mean():.2f} -> {hidden[-10:].mean():.2f}, KL "
                  f"{kl[:10].mean():.1f} -> "
                  f"{kl[-10:].mean():.1f}; final policy: learned {after['learned_reward']:.2f}, hidden "
                  f"{after['hidden_score']:.2f}, KL {after['kl']:.1f}; {run['results'][k].samples_after[0]!r}")
        bins = sqrt_kl_bins(run, n_bins=6, max_sqrt_kl=6.0)
        print("    sqrt(KL) bin: hidden / learned (points): " + ", ".join(
            f"{d:.1f}: {h:+.2f} / {r:+.2f} ({c})" for d, h, r, c in
            zip(bins["sqrt_kl"], bins["hidden_score"], bins["learned_reward"], bins["count"]) if c))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (default 3)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the targets (default 3)")
    parser.add_argument("--sweep-seeds", type=int, default=5, help="seeds of the over-optimisation sweep (5)")
    parser.add_argument("--jobs", type=int, default=2, help="processes of the over-optimisation sweep (2)")
    parser.add_argument("--skip-sweep", action="store_true", help="skip the over-optimisation sweep")
    args = parser.parse_args()
    with single_threaded():
        time_stages(args.repeats)
        results = [report_seed(seed) for seed in range(args.seeds)]
        print(f"over seeds 0..{args.seeds - 1}: reward-model accuracy (hidden) "
              f"{[round(r['rm_hidden'], 3) for r in results]}, DPO win rate "
              f"{[round(r['win_rate'], 3) for r in results]}, KL {[round(r['kl'], 2) for r in results]}")
        for name, _, _ in RL_RUNS:
            print(f"  {name} win rate {[round(r['rl'][name].win_rate, 3) for r in results]}, KL "
                  f"{[round(r['rl'][name].kl_k1, 2) for r in results]}")
        displacement(results[0]["data"], results[0]["sft"], 0)
    if not args.skip_sweep:
        overoptimisation(list(range(args.sweep_seeds)), args.jobs)


if __name__ == "__main__":
    main()
