"""Deep RL from human preferences on CartPole (Chapter 6, solutions/preference_control.py): what the chapter's
figure shows and what it costs.

Usage: python benchmarks/preference_control.py [--seeds N] [--steps T] [--repeats R] [--jobs J]

1. The notebook's call: ``preference_runs(PreferenceConfig(), seeds 0..N-1, rules random, disagreement and the
   reference on the hidden reward, total_steps T, n_jobs J)``, its CPU time (this process and its worker processes)
   and wall time. Target (issue 15, the chapter's budget): <= 45 s of wall time with 2 workers on a quiet machine,
   <= ~90 s of CPU time in all.
2. For each rule: the final true return (hidden return of 20 episodes of the sampled policy; median and range over
   the seeds), the final episode length (CartPole-v1's own return), the comparisons used, the reward model's
   pairwise accuracy on new segments and the learned/hidden reward correlation over the last 16 updates, the share
   of the overseer's labels that agreed with the hidden reward, and the CPU seconds of one run (median over seeds).
3. The median true-return curve (training episodes of the last 4,096 steps) at a few comparison counts, and, per
   seed, disagreement minus random in final true return (the same seed gives both rules the same initial policy
   and environments).
4. One run of each kind timed alone (seed 0), the median over ``--repeats`` repeats: CPU and wall seconds.

torch runs on one thread in every run (solutions/threads.py). The machine is shared: under load the wall times grow
most, the CPU times less.
"""

import argparse
import dataclasses
import statistics
import time

import numpy as np

from solutions.preference_control import RULES, PreferenceConfig, preference_runs, train_from_preferences
from timing import cpu_all

#: what the chapter's figure runs
NOTEBOOK = {"seeds": range(5), "total_steps": 16_384, "n_jobs": 2}


def spread(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{np.median(values):.0f} [{values.min():.0f}, {values.max():.0f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=len(NOTEBOOK["seeds"]))
    parser.add_argument("--steps", type=int, default=NOTEBOOK["total_steps"])
    parser.add_argument("--jobs", type=int, default=NOTEBOOK["n_jobs"])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the single-run timings (0: skip them)")
    parser.add_argument("--skip-figure", action="store_true", help="only the single-run timings (4.)")
    args = parser.parse_args()
    config = PreferenceConfig()
    seeds = list(range(args.seeds))

    print(f"PreferenceConfig(): segments of {config.segment_length} steps, {config.num_comparisons} comparisons "
          f"({config.initial_fraction:.0%} on the untrained policy, label annealing T_0 = "
          f"{config.label_annealing_steps}), {config.ensemble_size} reward models, overseer with "
          f"{config.label_noise:.0%} random answers; PPO {config.ppo.num_envs} x {config.ppo.num_steps} steps per "
          f"rollout, {config.ppo.n_epochs} epochs; {args.steps} steps per run, seeds {seeds}, {args.jobs} workers")
    if not args.skip_figure:
        figure(config, seeds, args)
    if args.repeats:
        single_runs(config, args)


def figure(config: PreferenceConfig, seeds: list[int], args) -> None:
    """Sections 1-3."""
    cpu, wall = cpu_all(), time.perf_counter()
    runs = preference_runs(config, seeds, RULES, args.steps, n_jobs=args.jobs, progress=False)
    cpu, wall = cpu_all() - cpu, time.perf_counter() - wall
    print(f"\n1. the figure's runs ({len(RULES)} x {len(seeds)}): {cpu:.1f} s CPU in all (target <= ~90), "
          f"{wall:.1f} s wall (target <= 45 on a quiet machine)")

    print("\n2. at the end (median [range] over the seeds)")
    for rule, run in runs.items():
        used = run["comparisons"][-1] if rule != "true reward" else 0
        line = (f"  {rule:12s}: true return {spread(run['final_return'])}, length {spread(run['final_length'])}, "
                f"{used} comparisons, {statistics.median(run['cpu_seconds']):.1f} s CPU a run")
        if rule != "true reward":
            line += (f"; accuracy on new pairs {np.nanmean(run['accuracy'][:, -16:]):.2f}, reward correlation "
                     f"{np.nanmean(run['reward_correlation'][:, -16:]):.2f}, labels agreeing with the hidden "
                     f"reward {np.mean(run['label_agreement']):.3f}")
        print(line)
        print(f"      final true returns by seed: {np.round(run['final_return']).astype(int).tolist()}")

    print("\n3. median true return of the training episodes (last 4,096 steps) against comparisons")
    comparisons = runs[RULES[0]]["comparisons"]
    columns = [k for k in range(len(comparisons)) if (k + 1) % 8 == 0]
    print("  comparisons " + " ".join(f"{comparisons[k]:6d}" for k in columns))
    print("  steps       " + " ".join(f"{runs[RULES[0]]['steps'][k]:6d}" for k in columns))
    for rule, run in runs.items():
        print(f"  {rule:11s} " + " ".join(f"{np.nanmedian(run['true_return'][:, k]):6.0f}" for k in columns))
    if "random" in runs and "disagreement" in runs:
        difference = runs["disagreement"]["final_return"] - runs["random"]["final_return"]
        print(f"  disagreement - random, final true return by seed: {np.round(difference).astype(int).tolist()} "
              f"(median {np.median(difference):.0f}; disagreement ahead for {int(np.sum(difference > 0))} of "
              f"{len(seeds)})")



def single_runs(config: PreferenceConfig, args) -> None:
    """Section 4: one run of each kind alone in this process (seed 0), the medians over the repeats."""
    print(f"\n4. one run alone (seed 0, {args.steps} steps, final evaluation included), median of {args.repeats}")
    for rule in RULES:
        cpus, walls = [], []
        for _ in range(args.repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            if rule == "true reward":
                train_from_preferences(config, args.steps, 0, true_reward=True, progress=False)
            else:
                train_from_preferences(dataclasses.replace(config, query_rule=rule), args.steps, 0, progress=False)
            cpus.append(time.process_time() - cpu)
            walls.append(time.perf_counter() - wall)
        print(f"  {rule:12s}: {statistics.median(cpus):.1f} s CPU, {statistics.median(walls):.1f} s wall")


if __name__ == "__main__":
    main()
