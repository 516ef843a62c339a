"""Time GRPO on the tiny language model (Chapter 5) and print what it achieves on the arithmetic task.

Usage: python benchmarks/grpo_language_model.py [--repeats N] [--seeds S] [--sweep] [--loss-types] [--long]

Prints, each time as the median over the repeats, in CPU seconds (this process) and wall seconds:

* the pre-trained model (``pretrained_model(0)``, trained once; the chapter shares it with its other sections);
* one GRPO update at the chapter's settings (``GRPOConfig()``: 8 prompts x 8 completions, one gradient step),
  as the median over repeats of 10 updates, divided by 10;
* the notebook's run: ``grpo_runs(chapter_configs(), seeds 0..S-1)`` (``beta = 0`` and ``beta = 1``, 50 updates
  each, the accuracies measured before and after), target <= 30 s of CPU;

and for each configuration and seed: the sampled accuracy (16 completions of each prompt) on the 50 training and
the 16 held-out prompts before and after, the mean per-token KL to the reference and the share of zero-variance
groups in the first and last 10 updates, the largest |loss| at the first gradient step of an update, and the mean
length of the wrong completions.

Options: ``--sweep`` times and prints the grid num_generations in {2, 4, 8} x beta in {0, 0.04, 0.2} (one seed
each) that a widget could show; ``--loss-types`` compares the mean length of wrong completions under "grpo",
"dr_grpo" (with ``scale_rewards="none"``, as Dr. GRPO) and "bnpo", beta = 0, over the seeds; ``--long`` runs
300 updates for beta in {0, 0.04, 0.2, 1} (3 seeds) to show where the KL and the accuracy go.
Everything runs on one torch thread (solutions/threads.py). This machine is shared: under load the times grow,
the wall times most.
"""

import argparse

import numpy as np

from solutions.corpus import arithmetic_reward
from solutions.grpo_language_model import (GRPOConfig, arithmetic_split, chapter_configs, format_length_bias_table,
                                           grpo_runs, length_bias_table, train_grpo)
from solutions.language_model import pretrained_model
from solutions.threads import single_threaded
from timing import median_line, timed


def report(runs: dict, seeds: list[int]) -> None:
    """One line per configuration and seed, and the means over the seeds."""
    for name, run in runs.items():
        print(f"  {name}: accuracy before {run['train_before']:.3f} (train), {run['held_out_before']:.3f} "
              f"(held out)")
        for k, seed in enumerate(seeds):
            print(f"    seed {seed}: after {run['train_after'][k]:.3f} (train), {run['held_out_after'][k]:.3f} "
                  f"(held out); KL {run['kls'][k, :10].mean():.3f} -> {run['kls'][k, -10:].mean():.3f}; "
                  f"zero-variance groups {run['zero_variance_fractions'][k, :10].mean():.2f} -> "
                  f"{run['zero_variance_fractions'][k, -10:].mean():.2f}; max |loss| "
                  f"{np.abs(run['losses'][k]).max():.4f}; wrong length {np.nanmean(run['wrong_lengths'][k]):.2f}")
        zero_variance = run["zero_variance_fractions"]
        train, held_out = run["train_after"].mean(), run["held_out_after"].mean()
        print(f"    mean over seeds: train {train:.3f} (gain {train - run['train_before']:+.3f}), held out "
              f"{held_out:.3f} (gain {held_out - run['held_out_before']:+.3f}), KL of the last 10 updates "
              f"{run['kls'][:, -10:].mean():.3f}, zero-variance groups {zero_variance[:, :10].mean():.2f} -> "
              f"{zero_variance[:, -10:].mean():.2f}")


@single_threaded()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--loss-types", action="store_true")
    parser.add_argument("--long", action="store_true")
    args = parser.parse_args()
    seeds = list(range(args.seeds))

    _, cpu, wall = timed(lambda: pretrained_model(0, progress=False))
    print(f"pre-trained model (once, shared with the rest of the chapter): {cpu:.2f} s CPU, {wall:.2f} s wall")

    print("the length-bias worked example (lengths 2 and 8, advantages +1 and -1, max_completion_length 8):")
    print(format_length_bias_table(length_bias_table()))

    train, _ = arithmetic_split()
    cpus, walls = [], []
    for repeat in range(max(args.repeats, 5)):
        model = pretrained_model(0)
        _, cpu, wall = timed(lambda: train_grpo(model, train, arithmetic_reward, GRPOConfig(n_updates=10),
                                                seed=repeat, progress=False, n_shown=0))
        cpus.append(cpu / 10)
        walls.append(wall / 10)
    print(median_line("one GRPO update (8 prompts x 8 completions, one gradient step)", cpus, walls))

    cpus, walls = [], []
    for _ in range(args.repeats):
        runs, cpu, wall = timed(lambda: grpo_runs(chapter_configs(), seeds, progress=False))
        cpus.append(cpu)
        walls.append(wall)
    print(median_line(f"the notebook's run (beta = 0 and beta = 1, seeds {seeds[0]}-{seeds[-1]}, 50 updates each, "
                      f"accuracies before and after)", cpus, walls))
    report(runs, seeds)

    if args.sweep:
        configs = {f"G = {G}, beta = {beta}": GRPOConfig(num_generations=G, beta=beta)
                   for G in (2, 4, 8) for beta in (0.0, 0.04, 0.2)}
        runs, cpu, wall = timed(lambda: grpo_runs(configs, [0], progress=False))
        print(f"sweep num_generations x beta, one seed each, 8 prompts per update: {cpu:.2f} s CPU, {wall:.2f} s "
              f"wall")
        report(runs, [0])

    if args.loss_types:
        configs = {"grpo": GRPOConfig(beta=0.0),
                   "dr_grpo, scale_rewards none": GRPOConfig(beta=0.0, loss_type="dr_grpo", scale_rewards="none"),
                   "bnpo": GRPOConfig(beta=0.0, loss_type="bnpo")}
        runs, cpu, wall = timed(lambda: grpo_runs(configs, seeds, progress=False))
        print(f"loss types, beta = 0: {cpu:.2f} s CPU, {wall:.2f} s wall")
        report(runs, seeds)
        for name, run in runs.items():
            wrong = np.nanmean(run["wrong_lengths"][:, -25:], axis=1)
            print(f"  {name}: mean length of wrong completions over the last 25 updates, per seed "
                  f"{np.round(wrong, 2).tolist()}, mean {wrong.mean():.2f}")

    if args.long:
        configs = {f"beta = {beta}, 300 updates": GRPOConfig(beta=beta, n_updates=300)
                   for beta in (0.0, 0.04, 0.2, 1.0)}
        runs, cpu, wall = timed(lambda: grpo_runs(configs, seeds[:3], progress=False))
        print(f"300 updates, 3 seeds: {cpu:.2f} s CPU, {wall:.2f} s wall")
        report(runs, seeds[:3])


if __name__ == "__main__":
    main()
