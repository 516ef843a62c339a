"""What the sandbox costs: time to grade one submission of each chapter with and without it (issue 12).

For each chapter, one student's notebook holding the reference answers is graded ``--repeats`` times with the
sandbox and as many times without it (``--no-sandbox``), alternating, each a whole ``grade`` run (course set-up,
nbgrader, feedback, export). Prints the median wall time and CPU time (this process and every process it
waited for: nbgrader's child, the kernel) of each, and the difference. The machine is shared and noisy: read
the CPU figures and the medians, and compare the two columns of the same run.

    .venv/bin/python benchmarks/grading_times.py [--repeats 3] [CHAPTER ...]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from autograder.course import find_assignments, release
from autograder.grade import grade
from autograder.site import strip_solution_markers


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _submission(root: Path, chapter: str, released: Path) -> Path:
    """``root/student/<chapter>/`` holding the reference answers in the released notebooks."""
    source_dir = find_assignments()[chapter].path
    for path in sorted(released.glob("*.ipynb")):
        answers = {c.metadata["nbgrader"]["grade_id"]: strip_solution_markers(c.source)
                   for c in nbformat.read(source_dir / path.name, 4).cells
                   if c.metadata.get("nbgrader", {}).get("solution")}
        nb = nbformat.read(path, 4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                cell.source = answers[grade_id]
        (root / "student" / chapter).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, root / "student" / chapter / path.name)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", help="chapter ids (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chapters = args.chapters or list(find_assignments())
    print(f"{'chapter':<16} {'sandbox':>9} {'wall s':>8} {'CPU s':>8}   (median of {args.repeats})")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        released = release(work / "release", work / "course", chapters)
        for chapter in chapters:
            subs = _submission(work / f"subs-{chapter}", chapter, released[chapter])
            times = {True: [], False: []}
            for _ in range(args.repeats):
                for sandbox in (True, False):
                    wall, cpu = time.perf_counter(), _cpu()
                    results = grade(subs, work / "out", timeout=120, seed=1, sandbox=sandbox, log=lambda line: None)
                    times[sandbox].append((time.perf_counter() - wall, _cpu() - cpu))
                    assert all(r.score == r.max_score for r in results), results
            medians = {s: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
                       for s, t in times.items()}
            for sandbox in (True, False):
                wall, cpu = medians[sandbox]
                print(f"{chapter:<16} {'yes' if sandbox else 'no':>9} {wall:8.2f} {cpu:8.2f}")
            print(f"{chapter:<16} {'cost':>9} {medians[True][0] - medians[False][0]:8.2f} "
                  f"{medians[True][1] - medians[False][1]:8.2f}")


if __name__ == "__main__":
    main()
