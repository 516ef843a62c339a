"""Print how long it takes to execute a chapter and to grade one submission of it.

Usage: python benchmarks/chapter_times.py [CHAPTER]   (default 01_mdp)

Targets (issue 2): Chapter 1 executes in <= 30 s and one submission grades in <= 15 s on a 2-core CPU.
The grading time includes nbgrader's own start-up and the gradebook set-up, as an instructor would see it.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder.course import find_assignments

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3


def main() -> None:
    chapter = sys.argv[1] if len(sys.argv) > 1 else "01_mdp"
    assignments = find_assignments()
    if chapter not in assignments:
        sys.exit(f"unknown chapter {chapter!r}; the chapters are {', '.join(sorted(assignments))}")
    assignment = assignments[chapter]
    os.environ.setdefault("TQDM_DISABLE", "1")  # as the book build runs the chapters: no progress bars
    for name in assignment.notebooks:
        path = assignment.path / f"{name}.ipynb"
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        print(f"execute {chapter}/{name}.ipynb: {time.perf_counter() - start:.1f} s (kernel start included)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        student = tmp / "submissions" / "student" / chapter
        student.mkdir(parents=True)
        for name in assignment.notebooks:  # the instructor's notebook: every answer complete and right
            (student / f"{name}.ipynb").write_bytes((assignment.path / f"{name}.ipynb").read_bytes())
        times = []
        for run in range(RUNS):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp / "submissions"),
                            "--out", str(tmp / f"out{run}")], check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        print(f"grade one {chapter} submission (CLI, end to end), {RUNS} runs: "
              f"median {statistics.median(times):.1f} s, " + ", ".join(f"{t:.1f}" for t in times))


if __name__ == "__main__":
    main()
