"""Command line: ``python -m autograder {release,grade,validate}``.

* ``release [--out DIR] [ASSIGNMENT ...]`` -- student notebooks (solutions stubbed, hidden tests removed),
  by default in ``_build/release/<assignment>/``.
* ``grade SUBMISSIONS [--out DIR] [--timeout SECONDS] [--db URL] [--seed N] [--no-sandbox] [--memory GIB]
  [--processes N] [--file-size MIB] [--cpu-time SECONDS]`` -- grade
  ``SUBMISSIONS/<student>/<assignment>/<notebook>.ipynb``, each student's code in a sandbox; writes
  ``grades.csv``, ``report.csv`` and ``feedback/<student>/<assignment>/<notebook>.html`` in DIR (default
  ``_build/grading``).
* ``validate NOTEBOOK [--timeout SECONDS]`` -- run a notebook (in the sandbox where one can start) and print the
  points of each exercise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .sandbox import GiB, Limits, MiB, SandboxUnavailable
from .settings import DEFAULT_CELL_TIMEOUT


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number; got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number; got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number; got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    release = commands.add_parser("release", help="write the student notebooks of every chapter")
    release.add_argument("assignments", nargs="*", help="assignment ids (default: all chapters)")
    release.add_argument("--out", type=Path, default=Path("_build/release"), help="output folder")

    grade = commands.add_parser("grade", help="grade a folder of submissions")
    grade.add_argument("submissions", type=Path, help="folder laid out as <student>/<assignment>/<nb>.ipynb")
    grade.add_argument("--out", type=Path, default=Path("_build/grading"), help="output folder")
    grade.add_argument("--timeout", type=_positive_int, default=DEFAULT_CELL_TIMEOUT,
                       help=f"seconds a cell may run before it is interrupted (default {DEFAULT_CELL_TIMEOUT})")
    grade.add_argument("--db", dest="db_url", default=None,
                       help="SQLAlchemy URL of the gradebook (default: SQLite in the output folder)")
    grade.add_argument("--seed", type=int, default=None, help="seed of the hidden tests (default: random)")
    defaults = Limits()
    grade.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                       help="run students' code WITHOUT isolation (it can then read and change your files and "
                            "other students' grades); only where no sandbox can start")
    grade.add_argument("--memory", type=_positive_float, default=defaults.memory / GiB, metavar="GIB",
                       help=f"memory limit per student, GiB (default {defaults.memory / GiB:g})")
    grade.add_argument("--processes", type=_positive_int, default=defaults.processes, metavar="N",
                       help=f"processes and threads per student (default {defaults.processes})")
    grade.add_argument("--file-size", type=_positive_float, default=defaults.file_size / MiB, metavar="MIB",
                       help=f"largest file a student's code may write, MiB (default {defaults.file_size / MiB:g})")
    grade.add_argument("--cpu-time", type=_positive_int, default=defaults.cpu_time, metavar="SECONDS",
                       help=f"CPU seconds per student and chapter (default {defaults.cpu_time})")

    validate = commands.add_parser("validate", help="run a notebook and show the points of each exercise")
    validate.add_argument("notebook", type=Path)
    validate.add_argument("--timeout", type=_positive_int, default=DEFAULT_CELL_TIMEOUT,
                          help=f"seconds a cell may run (default {DEFAULT_CELL_TIMEOUT})")
    return parser


def _release(args) -> int:
    from .course import release

    with tempfile.TemporaryDirectory(prefix="autograder-release-") as work:
        released = release(args.out, Path(work), args.assignments)
    for assignment_id, path in released.items():
        notebooks = ", ".join(sorted(p.name for p in path.glob("*.ipynb")))
        print(f"released {assignment_id}: {path}/ ({notebooks})")
    return 0


def _grade(args) -> int:
    from .grade import grade

    limits = Limits(memory=int(args.memory * GiB), processes=args.processes, file_size=int(args.file_size * MiB),
                    cpu_time=args.cpu_time)
    results = grade(args.submissions, args.out, timeout=args.timeout, db_url=args.db_url, seed=args.seed,
                    sandbox=args.sandbox, limits=limits)
    failed = [r for r in results if r.status != "graded"]
    print(f"\ngraded {len({r.student_id for r in results})} student(s), {len(results)} notebook(s); "
          f"{len(failed)} could not be graded (see report.csv)")
    print(f"grades:   {args.out / 'grades.csv'}\nfeedback: {args.out / 'feedback'}/\nreport:   "
          f"{args.out / 'report.csv'}")
    return 0


def _validate(args) -> int:
    from .sandbox import sandbox_status
    from .validate import validate

    isolated, why = sandbox_status()
    if not isolated:
        print(f"(no sandbox on this machine: {why.split(';')[0]}. Your notebook runs without one; grading runs "
              "it in one, where it cannot use the network or files outside its scratch folder.)\n")
    results, fatal = validate(args.notebook, timeout=args.timeout, sandbox=isolated)
    width = max(len(r.name) for r in results)
    print(f"{'exercise':<{width}}  points")
    for r in results:
        print(f"{r.name:<{width}}  {r.score:g} / {r.max_score:g}")
        for problem in r.problems:
            print(f"{'':<{width}}    {problem}")
    total, possible = sum(r.score for r in results), sum(r.max_score for r in results)
    print(f"{'total':<{width}}  {total:g} / {possible:g}")
    if fatal:
        print(f"\nthe run stopped early: {fatal}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"release": _release, "grade": _grade, "validate": _validate}
    try:
        return handlers[args.command](args)
    except (FileNotFoundError, ValueError, KeyError, SandboxUnavailable) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
