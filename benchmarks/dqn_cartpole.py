"""DQN on CartPole-v1: does the greedy policy reach a mean return of 400 within 50,000 environment steps?

Usage: python benchmarks/dqn_cartpole.py [N_SEEDS]   (default 5: seeds 0 .. 4)

Target (issue 4): a mean return >= 400 over 20 evaluation episodes within 50,000 environment steps for at least
4 of 5 seeds, on a 2-core CPU. Trains with the default :class:`solutions.dqn.DQNConfig` (evaluations every
2,500 steps) and prints, per seed, the evaluations, the first step that reached 400, and the wall and CPU time;
then the median times over the seeds. train_dqn runs torch on one thread (solutions/threads.py).
"""

import statistics
import sys
import time

from solutions.dqn import DQNConfig, train_dqn

LEVEL = 400.0


def main() -> None:
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    config = DQNConfig()
    reached, walls, cpus = 0, [], []
    for seed in range(n_seeds):
        start, cpu = time.perf_counter(), time.process_time()
        result = train_dqn(seed, config, progress=False)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        first = result.first_step_reaching(LEVEL)
        reached += first is not None
        evaluations = [round(r) for r in result.eval_returns]
        print(f"seed {seed}: first evaluation >= {LEVEL:g} at {first} steps; best {max(result.eval_returns):.0f}; "
              f"{walls[-1]:.0f} s wall, {cpus[-1]:.0f} s CPU; evaluations {evaluations}", flush=True)
    print(f"median per seed: {statistics.median(walls):.0f} s wall, {statistics.median(cpus):.0f} s CPU")
    print(f"{reached} of {n_seeds} seeds reached a mean return of {LEVEL:g} within {config.n_steps} steps")


if __name__ == "__main__":
    main()
