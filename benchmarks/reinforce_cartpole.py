"""REINFORCE on CartPole-v1 (Chapter 4): the issue's target, and the cost of the chapter's figure.

Usage: python benchmarks/reinforce_cartpole.py [N_SEEDS]   (default 5: seeds 0 .. N-1)

1. Target (issue 13): REINFORCE with reward-to-go reaches a mean sampled-policy return >= 475 over 20 evaluation
   episodes within 100,000 environment steps for at least 4 of 5 seeds. Each seed trains for 100,000 steps with
   the chapter's settings (64-64 tanh policy, Adam 1e-2, 8 episodes per update, gamma = 0.99, 8 environments),
   and again with 16 episodes per update, evaluating the sampled and the greedy policy every 5,000 steps; prints
   the first step at which the sampled policy reached 475.
2. The figure: the three variants x N seeds x 60,000 steps, without evaluations, as the chapter runs them; prints
   each run's mean return over its last 10,000 steps and the median CPU and wall time per run over the seeds
   (the repeats), the total CPU time of the figure, and its wall time with the runs shared out between two
   processes as the chapter draws it (compare_cartpole_variants(..., n_jobs=2)).

Training runs torch on one thread (solutions/threads.py). Evaluation episodes are not counted as training steps.
"""

import statistics
import sys
import time

from solutions.policy_gradients import CARTPOLE_VARIANTS, compare_cartpole_variants, reinforce_cartpole

LEVEL = 475.0
TARGET_STEPS = 100_000
EVAL_EVERY = 5_000
FIGURE_STEPS = 60_000


def timed(function, *args, **kwargs):
    start, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    reinforce_cartpole("reward_to_go", 0, total_steps=800, progress=False)  # imports and first calls, untimed

    # The chapter updates every 8 episodes; 16 episodes per update (half as many steps of twice the batch) meets
    # the target more often. Both are printed.
    for episodes_per_update in (8, 16):
        print(f"1. reward-to-go, {episodes_per_update} episodes per update, {TARGET_STEPS} steps, sampled (greedy) "
              f"policy evaluated every {EVAL_EVERY} steps over 20 episodes", flush=True)
        reached = 0
        for seed in range(n_seeds):
            run, wall, cpu = timed(reinforce_cartpole, "reward_to_go", seed, total_steps=TARGET_STEPS,
                                   episodes_per_update=episodes_per_update, eval_every=EVAL_EVERY, progress=False)
            first = run.first_step_reaching(LEVEL)
            reached += first is not None
            evaluations = " ".join(f"{s:.0f}({g:.0f})" for s, g in zip(run.eval_sampled, run.eval_greedy))
            print(f"  seed {seed}: first evaluation >= {LEVEL:g} at {first} steps; {wall:.1f} s wall, {cpu:.1f} s "
                  f"CPU with evaluations; evaluations {evaluations}", flush=True)
        print(f"  {reached} of {n_seeds} seeds reached a mean sampled return of {LEVEL:g} within {TARGET_STEPS} "
              f"steps", flush=True)

    print(f"2. the figure: {len(CARTPOLE_VARIANTS)} variants x {n_seeds} seeds x {FIGURE_STEPS} steps", flush=True)
    total_cpu = total_wall = 0.0
    for variant in CARTPOLE_VARIANTS:
        walls, cpus, finals = [], [], []
        for seed in range(n_seeds):
            run, wall, cpu = timed(reinforce_cartpole, variant, seed, total_steps=FIGURE_STEPS, progress=False)
            walls.append(wall)
            cpus.append(cpu)
            finals.append(run.mean_return(10_000))
        total_cpu, total_wall = total_cpu + sum(cpus), total_wall + sum(walls)
        print(f"  {variant:>12}: mean return over the last 10,000 steps {statistics.mean(finals):5.1f} "
              f"(seeds: {', '.join(f'{f:.0f}' for f in finals)}); per run {statistics.median(cpus):.2f} s CPU, "
              f"{statistics.median(walls):.2f} s wall (medians over {n_seeds} seeds)", flush=True)
    print(f"  whole figure: {total_cpu:.1f} s CPU, {total_wall:.1f} s wall")
    # As the chapter draws it: the same runs shared out between two processes (their CPU time is not in this
    # process's clock, so only wall time is printed).
    _, wall, _ = timed(compare_cartpole_variants, CARTPOLE_VARIANTS, range(n_seeds), FIGURE_STEPS, progress=False,
                       n_jobs=2)
    print(f"  whole figure with n_jobs=2, as the chapter runs it: {wall:.1f} s wall")


if __name__ == "__main__":
    main()
