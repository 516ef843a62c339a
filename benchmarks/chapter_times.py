"""Print how long it takes to execute a chapter (with its slowest cells) and to grade one submission of it.

Usage: python benchmarks/chapter_times.py [CHAPTER ...] [--repeats N] [--no-grade]   (default: every chapter)

Each figure is the median over ``--repeats`` runs (default 3), as wall time and as CPU time (the kernel's or the
grader's, with their child processes). The slowest cells are listed with their median wall time: they are the
ones to make faster when a chapter gets close to the book's per-cell time limit (``execute.timeout`` in
``_config.yml``). Grading includes nbgrader's start-up and the gradebook set-up, as an instructor would see it.
This machine is shared: under load wall time can be several times the quiet figure; CPU time varies less.
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient

from autograder.course import find_assignments

ROOT = Path(__file__).resolve().parent.parent


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cell_seconds(cell) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def execute(path: Path, repeats: int, cell_limit: float) -> None:
    walls, cpus, per_cell = [], [], defaultdict(list)
    sources = {}
    for _ in range(repeats):
        nb = nbformat.read(path, as_version=4)
        cpu0, start = _children_cpu(), time.perf_counter()
        NotebookClient(nb, timeout=int(cell_limit), kernel_name="python3", record_timing=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        walls.append(time.perf_counter() - start)
        cpus.append(_children_cpu() - cpu0)
        for index, cell in enumerate(nb.cells):
            seconds = _cell_seconds(cell) if cell.cell_type == "code" else None
            if seconds is not None:
                per_cell[index].append(seconds)
                sources[index] = next((line for line in cell.source.splitlines() if line.strip()), "")
    print(f"execute {path.parent.name}/{path.name}, {repeats} runs: median wall {statistics.median(walls):.1f} s "
          f"({', '.join(f'{w:.1f}' for w in walls)}), median CPU {statistics.median(cpus):.1f} s "
          "(kernel start included)")
    slowest = sorted(per_cell, key=lambda i: -statistics.median(per_cell[i]))[:5]
    for index in slowest:
        median = statistics.median(per_cell[index])
        print(f"    cell {index:>3}: {median:6.1f} s wall ({median / cell_limit:.1%} of the {cell_limit:g} s "
              f"limit)  {sources[index][:70]}")


def grade(chapter: str, assignment, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        student = tmp / "submissions" / "student" / chapter
        student.mkdir(parents=True)
        for name in assignment.notebooks:  # the instructor's notebook: every answer complete and right
            (student / f"{name}.ipynb").write_bytes((assignment.path / f"{name}.ipynb").read_bytes())
        walls, cpus = [], []
        for run in range(repeats):
            cpu0, start = _children_cpu(), time.perf_counter()
            subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp / "submissions"),
                            "--out", str(tmp / f"out{run}")], check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
            cpus.append(_children_cpu() - cpu0)
    print(f"grade one {chapter} submission (CLI, end to end), {repeats} runs: median wall "
          f"{statistics.median(walls):.1f} s ({', '.join(f'{w:.1f}' for w in walls)}), "
          f"median CPU {statistics.median(cpus):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-grade", action="store_true", help="only execute the chapters")
    args = parser.parse_args()
    assignments = find_assignments()
    unknown = sorted(set(args.chapters) - set(assignments))
    if unknown:
        sys.exit(f"unknown chapter(s) {', '.join(unknown)}; the chapters are {', '.join(sorted(assignments))}")
    cell_limit = float(yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]["timeout"])
    os.environ.setdefault("TQDM_DISABLE", "1")  # as the book build runs the chapters: no progress bars
    for chapter in args.chapters or sorted(assignments):
        assignment = assignments[chapter]
        for name in assignment.notebooks:
            execute(assignment.path / f"{name}.ipynb", args.repeats, cell_limit)
        if not args.no_grade:
            grade(chapter, assignment, args.repeats)


if __name__ == "__main__":
    main()
