"""Print the slowest check cases on the reference answers, against the per-case time limit of the checks.

Usage: python benchmarks/check_times.py [--repeats N]

A check stops a case that runs past ``autograder.checks._harness.DEFAULT_TIME_LIMIT`` seconds (an endless loop in
a student's code). A correct answer must stay far below it, also on a machine three times slower or loaded: this
prints, for every case of every check (visible and hidden) run on the reference implementation, the median wall
and CPU time over the repeats, and the ten slowest cases with their share of the limit.
"""

import argparse
import io
import statistics
import time
from collections import defaultdict
from contextlib import redirect_stdout

from autograder.checks import _harness, mdp, model_based, q_learning
from autograder.checks._harness import student_copy
from solutions import bandits, dqn, learned_models
from solutions import mdp as ref_mdp
from solutions import model_based as ref_model_based
from solutions import q_learning as ref_q_learning

CHECKS = [(mdp, (ref_mdp,)), (model_based, (ref_model_based, learned_models)),
          (q_learning, (ref_q_learning, bandits, dqn))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    walls, cpus = defaultdict(list), defaultdict(list)
    original = _harness._run_cases

    def timed_run_cases(fn, cases, time_limit, out):
        def timed(case):
            def run(f):
                wall0, cpu0 = time.perf_counter(), time.process_time()
                try:
                    return case.run(f)
                finally:
                    walls[case.name].append(time.perf_counter() - wall0)
                    cpus[case.name].append(time.process_time() - cpu0)
            return _harness.Case(case.name, run, case.inputs, case.size)
        return original(fn, [timed(c) for c in cases], time_limit, out)

    _harness._run_cases = timed_run_cases
    for _ in range(args.repeats):
        for checks, references in CHECKS:
            for name in checks.POINTS:
                solution = next(getattr(m, name) for m in references if hasattr(m, name))
                for hidden in (False, True):
                    with redirect_stdout(io.StringIO()):
                        getattr(checks, f"check_{name}")(student_copy(solution), hidden=hidden)
    limit = _harness.DEFAULT_TIME_LIMIT
    medians = {name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in walls}
    print(f"{len(medians)} cases, {args.repeats} runs each; per-case limit {limit:g} s")
    for name, (wall, cpu) in sorted(medians.items(), key=lambda item: -item[1][0])[:10]:
        print(f"  {wall:6.2f} s wall, {cpu:6.2f} s CPU ({wall / limit:5.1%} of the limit)  {name[:80]}")


if __name__ == "__main__":
    main()
