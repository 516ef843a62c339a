"""``python -m autograder grade``: grade a folder of submissions with nbgrader, each student in a sandbox.

Submissions are laid out as ``SUBMISSIONS/<student_id>/<assignment_id>/<notebook>.ipynb`` (nbgrader's
``submitted/`` layout). They are read, never modified. What runs for a notebook is the released notebook with
the student's answers put into its answer cells (:mod:`autograder.assemble`: answers are found by the function
they define, so stripped metadata, duplicated or extra cells change nothing; an answer that breaks the rules
for answers, :mod:`autograder.policy`, is not run). Each student's notebooks run in a child process of their
own, whose kernel runs in the sandbox of :mod:`autograder.sandbox` (no network, a read-only view of the
system and nothing of the grader's files, resource limits). One student's crash, time-out, limit or broken file
costs that student the points concerned, with the reason reported, and nobody else anything; every folder in
SUBMISSIONS gets a row in ``report.csv``.

Outputs in ``OUT``: ``grades.csv`` (nbgrader's export format), ``feedback/<student>/<assignment>/<nb>.html``,
``report.csv`` (one row per student and notebook, with the reason for anything that went wrong),
``grading.json`` (seed, time limit, sandbox) and, unless a database URL was given, the gradebook
``gradebook.db``. They are written at the end (an earlier run's outputs are removed when a run starts), into a
staging folder moved into place in one step each, ``report.csv`` last: a run that is stopped leaves no output
that looks complete, and the copies of the submissions (in a temporary folder) are removed, if need be by the
next run.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import CsvExportPlugin
from sqlalchemy.exc import SAWarning

from .assemble import Assembled, assemble
from .checks._harness import REFERENCE_CALLED
from .course import BOOK_DIR, CourseDirectory, NbgraderError, find_assignments
from .preprocessors import GRADING_ERROR, TRUNCATED
from .sandbox import Limits, SandboxUnavailable, process_limit_enforced, sandbox_status
from .settings import COURSE_ID, DEFAULT_CELL_TIMEOUT

__all__ = ["NotebookResult", "grade", "safe_student_id"]

#: A student id: letters (any script), digits and ``_ . @ + -``, not starting with ``.`` or ``-``.
_ID = re.compile(r"^\w[\w.@+-]*$")
#: Prefix of the temporary folder of a run (it holds copies of the submissions).
WORK_PREFIX = "autograder-grade-"
#: What a run writes into its output folder.
OUTPUTS = ("feedback", "gradebook.db", "grades.csv", "grading.json", "report.csv")


@dataclass
class NotebookResult:
    """The outcome for one student's notebook."""

    student_id: str
    assignment_id: str
    notebook: str
    score: float
    max_score: float
    status: str  # "graded", "failed", "missing", "invalid"
    reason: str = ""


def _read_notebook(path: Path):
    """``(notebook, None)`` if ``path`` is a readable, valid notebook, else ``(None, why not)``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat's notes on duplicated cell ids, which it corrects
            nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 -- any parse failure means "not a notebook"
        return None, f"not a valid notebook ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        return None, f"not a valid notebook (schema: {exc.message[:200]})"
    return nb, None


def _failure_reason(log: str) -> str:
    """A one-line reason from an nbgrader autograde log."""
    patterns = [
        (r"DeadKernelError|Kernel died|kernel.*(died|restarted)", "the kernel died while running the notebook "
         "(the code crashed Python, exited, used too much memory, or ran past the CPU-time limit)"),
        (r"UnresponsiveKernelError|became unresponsive", "the kernel stopped responding and could not be "
         "interrupted (probably an endless loop)"),
        (r"CellTimeoutError|Timeout waiting for", "a cell ran past the time limit and could not be interrupted"),
        (r"NotJSONError|JSONDecodeError|not valid JSON", "the notebook is not valid JSON"),
    ]
    for pattern, reason in patterns:
        if re.search(pattern, log, flags=re.IGNORECASE):
            return reason
    errors = [line for line in log.splitlines() if "[AutogradeApp | ERROR]" in line or "Error" in line]
    return (errors[-1].strip() if errors else "nbgrader failed")[:300]


def _failure_page(result: NotebookResult) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(result.notebook)} ({html.escape(result.assignment_id)})</title></head><body>"
        f"<h1>{html.escape(result.assignment_id)} / {html.escape(result.notebook)}.ipynb</h1>"
        f"<p>Score: {result.score:g} / {result.max_score:g}</p>"
        f"<p>This notebook could not be graded: {html.escape(result.reason)}.</p></body></html>"
    )



def _problems_in(path: Path, timeout: int, limits: Limits | None) -> list[str]:
    """What went wrong in an autograded notebook, by cell: time-outs, limits hit, refused scores, cut output."""
    if not path.exists():
        return []
    nb = nbformat.read(path, as_version=4)
    found: dict[str, list[str]] = {}

    def note(kind: str, name: str) -> None:
        found.setdefault(kind, [])
        if name not in found[kind]:
            found[kind].append(name)

    for index, cell in enumerate(nb.cells):
        name = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {index + 1}")
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            text = (output.get("text", "") if kind == "stream"
                    else f"{output.get('ename', '')}: {output.get('evalue', '')}" if kind == "error" else "")
            if kind == "error" and output.get("ename") in ("CellTimeoutError", "KeyboardInterrupt"):
                note(f"interrupted after {timeout} s (time limit)", name)
            if kind == "error" and output.get("ename") == GRADING_ERROR:
                note(output.get("evalue", "score refused"), name)
            if "MemoryError" in text:
                note("memory limit" + (f" ({limits.memory / 2**30:g} GiB)" if limits else "") + " reached", name)
            if "File too large" in text:
                note("file size limit reached", name)
            if "Resource temporarily unavailable" in text or "can't start new thread" in text:
                note("process limit reached", name)
            if REFERENCE_CALLED in text:
                note("calls the reference implementation of the exercise (0 points)", name)
            if kind == "stream" and text.startswith("\n" + TRUNCATED):
                note("printed output truncated", name)
    return [f"{kind}: {', '.join(names)}" for kind, names in found.items()]


def _prepare_submission(src: Path, dest: Path, released: Path, notebooks: tuple[str, ...]
                        ) -> tuple[dict[str, str], dict[str, Assembled]]:
    """Write, for each notebook of the assignment that the student handed in, the notebook grading runs.

    That is the released notebook with the student's answers in it (:func:`autograder.assemble.assemble`).
    Nothing else of the student's folder is copied: grading needs no other file, and runs nothing else.
    Returns ``({notebook: why it is unreadable}, {notebook: the assembly})``.
    """
    problems, assembled = {}, {}
    dest.mkdir(parents=True)
    for notebook in notebooks:
        path = src / f"{notebook}.ipynb"
        if not path.is_file() or path.is_symlink():
            continue
        nb, error = _read_notebook(path)
        if error:
            problems[notebook] = error
            continue
        result = assemble(nb, nbformat.read(released / f"{notebook}.ipynb", as_version=4))
        nbformat.write(result.notebook, dest / f"{notebook}.ipynb")
        assembled[notebook] = result
    return problems, assembled


def safe_student_id(name: str) -> str | None:
    """None if ``name`` is a usable student id (a safe folder and database name), else why it is not."""
    if not name or name != name.strip() or any(c.isspace() for c in name):
        return "it contains spaces"
    if name.startswith(("-", ".")):
        return f"it starts with {name[0]!r}"
    if len(name) > 100:
        return "it is longer than 100 characters"
    if not _ID.match(name):
        return "only letters, digits and _ . @ + - are allowed"
    return None


def _remove_stale_work_dirs(log) -> None:
    """Delete the folders of earlier runs that were killed before they could clean up (they hold submissions)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
        owner = folder / "owner.pid"
        try:
            pid = int(owner.read_text())
            os.kill(pid, 0)
            continue  # that run is still going
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            if owner.exists():
                continue
        shutil.rmtree(folder, ignore_errors=True)
        log(f"removed {folder}, left by an earlier run that was stopped")


def _clear_outputs(out: Path) -> None:
    """Remove an earlier run's outputs from ``out``, so that a run that is stopped leaves nothing that looks done."""
    for name in OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for stale in out.glob(".grading-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _publish(staging: Path, out: Path) -> None:
    """Move the finished outputs from ``staging`` into ``out``; ``report.csv`` last (its presence means done)."""
    for name in sorted(OUTPUTS, key=lambda n: n == "report.csv"):
        if (staging / name).exists():
            os.replace(staging / name, out / name)


class _Stopped(BaseException):
    """SIGTERM arrived: unwind, cleaning up, as for Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Stopped()


def grade(submissions: Path, out: Path, *, timeout: int = DEFAULT_CELL_TIMEOUT, db_url: str | None = None,
          seed: int | None = None, book_dir: Path = BOOK_DIR, log=print, sandbox: bool = True,
          limits: Limits | None = None) -> list[NotebookResult]:
    """Grade every ``submissions/<student>/<assignment>/`` folder; see the module docstring for outputs.

    Args:
        submissions: the submissions folder (read only).
        out: output folder (created; an earlier run's outputs in it are removed first).
        timeout: seconds one cell may run before it is interrupted.
        db_url: SQLAlchemy URL of the gradebook (default: SQLite, ``out/gradebook.db`` when done).
        seed: seed of the hidden tests' random instances (default: drawn at random).
        book_dir: where the chapters (the source notebooks) are.
        log: where progress lines go.
        sandbox: run each student's code in the sandbox of :mod:`autograder.sandbox` (False: without any
            isolation; a warning is logged).
        limits: the sandbox's resource limits (default :class:`~autograder.sandbox.Limits`).

    Returns:
        One :class:`NotebookResult` per student, assignment and notebook, and one per folder that could not
        be graded at all (a bad student id, an unknown chapter, nothing handed in).

    Raises:
        FileNotFoundError: if ``submissions`` is not a directory.
        ValueError: if ``timeout`` is not positive, or ``out`` lies inside ``submissions``.
        SandboxUnavailable: if ``sandbox`` is true and no sandbox can be started here.
    """
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"no submissions directory at {submissions}")
    if timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds; got {timeout}")
    if out == submissions or submissions in out.parents:
        raise ValueError("the output directory must not lie inside the submissions directory")
    limits = limits or Limits()
    if sandbox:
        ok, why = sandbox_status()
        if not ok:
            raise SandboxUnavailable(f"cannot grade in a sandbox: {why}. To grade without one (students' code "
                                     "then runs with all your rights), pass --no-sandbox")
        log(f"grading in a sandbox ({why}; limits: {limits.describe()})")
        if not process_limit_enforced():
            log("WARNING: the process limit cannot be enforced: grading runs as root and no pids cgroup is "
                "writable (run as an ordinary user, or mount the cgroup pids controller)")
    else:
        log("WARNING: grading WITHOUT a sandbox (--no-sandbox): students' code runs as you, can read and change "
            "your files and other students' grades, and use the network")
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_work_dirs(log)
    _clear_outputs(out)
    seed = secrets.randbits(32) if seed is None else seed
    assignments = find_assignments(book_dir)
    results: list[NotebookResult] = []
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
    (work / "owner.pid").write_text(str(os.getpid()))
    staging = out / f".grading-{os.getpid()}"
    staging.mkdir()
    default_db = work / "gradebook.db"
    db_url = db_url or f"sqlite:///{default_db}"
    previous = (signal.signal(signal.SIGTERM, _on_sigterm)
                if threading.current_thread() is threading.main_thread() else None)
    try:
        course = CourseDirectory(work / "course", list(assignments.values()), db_url=db_url)
        entries = sorted(submissions.iterdir(), key=lambda p: p.name)
        folders = [p for p in entries if p.is_dir() and not p.is_symlink()]
        for p in entries:
            if p not in folders:
                log(f"ignored {p.name!r}: not a folder (submissions are SUBMISSIONS/<student>/<chapter>/)")
        valid = [p for p in folders if safe_student_id(p.name) is None]
        used = sorted({a.name for s in valid for a in s.iterdir() if a.is_dir() and a.name in assignments})
        for assignment_id in used:
            course.generate_assignment(assignment_id)
        with Gradebook(db_url, COURSE_ID) as gb:
            max_scores = {(a, nb.name): nb.max_score for a in used for nb in gb.find_assignment(a).notebooks}
        # how long one student's autograde run may take, from each assignment's number of code cells
        walls = {a: timeout * (assignments[a].code_cells + 2) + 120 for a in used}
        run = _Run(course, assignments, max_scores, walls, timeout, seed, db_url, sandbox, limits, log)

        for folder in folders:
            problem = safe_student_id(folder.name)
            if problem:
                log(f"cannot grade folder {folder.name!r}: not a usable student id ({problem})")
                results.append(NotebookResult(folder.name, "", "", 0.0, 0.0, "invalid",
                                              f"folder name is not a usable student id ({problem}); rename it"))
                continue
            try:
                results += run.student(folder)
            except (KeyboardInterrupt, _Stopped):
                raise
            except Exception as exc:  # noqa: BLE001 -- one student's failure never stops the run
                log(f"  grading {folder.name} failed: {type(exc).__name__}: {exc}")
                reason = f"grading failed: {type(exc).__name__}: {str(exc)[:200]}"
                done = {(r.assignment_id, r.notebook) for r in results if r.student_id == folder.name}
                for assignment_id in sorted(a.name for a in folder.iterdir() if a.name in assignments):
                    for notebook in assignments[assignment_id].notebooks:
                        if (assignment_id, notebook) not in done:
                            results.append(NotebookResult(folder.name, assignment_id, notebook, 0.0,
                                                          max_scores.get((assignment_id, notebook), 0.0),
                                                          "failed", reason))

        _zero_ungraded(db_url, results)
        for assignment_id in used:
            produced = course.generate_feedback(assignment_id)
            if not produced["success"]:
                log(f"feedback for {assignment_id} could not be generated: "
                    + _failure_reason(produced.get("log", "") + produced.get("error", "")))
        for result in results:
            if not result.assignment_id or not result.notebook:
                continue
            target = staging / "feedback" / result.student_id / result.assignment_id / f"{result.notebook}.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            produced = course.root / "feedback" / result.student_id / result.assignment_id / target.name
            if result.status == "graded" and produced.exists():
                shutil.copyfile(produced, target)
            else:
                target.write_text(_failure_page(result), encoding="utf-8")
        try:
            with Gradebook(db_url, COURSE_ID) as gb, warnings.catch_warnings():
                # nbgrader's exporter trips SQLAlchemy's autoflush warnings; they do not change the grades
                warnings.simplefilter("ignore", SAWarning)
                CsvExportPlugin(to=str(staging / "grades.csv")).export(gb)
        except Exception as exc:  # noqa: BLE001 -- report any export failure the same way
            raise NbgraderError(f"exporting grades.csv failed: {type(exc).__name__}: {exc}") from exc
        _add_ungradable_rows(staging / "grades.csv", results)
        _write_report(staging / "report.csv", results)
        (staging / "grading.json").write_text(json.dumps(
            {"seed": seed, "cell_timeout": timeout, "sandbox": sandbox,
             "limits": limits.__dict__ if sandbox else None}, indent=2) + "\n")
        if default_db.exists():
            shutil.move(default_db, staging / "gradebook.db")
        _publish(staging, out)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return results


@dataclass
class _Run:
    """What grading one student needs from the run (see :func:`grade`)."""

    course: CourseDirectory
    assignments: dict
    max_scores: dict
    walls: dict
    timeout: int
    seed: int
    db_url: str
    sandbox: bool
    limits: Limits
    log: object

    def student(self, student_dir: Path) -> list[NotebookResult]:
        """Grade every chapter folder of one student; one result per notebook (or per unusable folder)."""
        student_id, log, results = student_dir.name, self.log, []
        with Gradebook(self.db_url, COURSE_ID) as gb:
            gb.update_or_create_student(student_id)
        chapters = sorted(p for p in student_dir.iterdir() if p.is_dir() and not p.is_symlink())
        if not chapters:
            results.append(NotebookResult(student_id, "", "", 0.0, 0.0, "missing",
                                          "no chapter folder in the submission (expected e.g. 01_mdp/)"))
        for assignment_dir in chapters:
            assignment_id = assignment_dir.name
            if assignment_id not in self.assignments:
                log(f"skipped {student_id}/{assignment_id}: no such chapter in the book")
                results.append(NotebookResult(student_id, assignment_id, "", 0.0, 0.0, "invalid",
                                              f"no chapter {assignment_id!r} in the book"))
                continue
            results += self.assignment(student_id, assignment_dir)
        return results

    def assignment(self, student_id: str, assignment_dir: Path) -> list[NotebookResult]:
        assignment_id, log, course = assignment_dir.name, self.log, self.course
        assignment = self.assignments[assignment_id]
        dest = course.root / "submitted" / student_id / assignment_id
        released = course.root / "release" / assignment_id
        problems, assembled = _prepare_submission(assignment_dir, dest, released, assignment.notebooks)
        log(f"grading {student_id}/{assignment_id} ...")
        run = course.autograde(assignment_id, student_id, cell_timeout=self.timeout,
                               wall_timeout=self.walls[assignment_id], seed=self.seed,
                               limits=self.limits if self.sandbox else None)
        failure = "" if run["success"] else (
            run.get("reason") or _failure_reason(run.get("log", "") + run.get("error", "")))
        autograded = course.root / "autograded" / student_id / assignment_id
        results = []
        for notebook in assignment.notebooks:
            max_score = self.max_scores[(assignment_id, notebook)]
            result = NotebookResult(student_id, assignment_id, notebook, 0.0, max_score, "graded")
            graded_path = autograded / f"{notebook}.ipynb"
            if notebook in problems:
                result.status, result.reason = "invalid", problems[notebook]
            elif notebook not in assembled:
                result.status, result.reason = "missing", "no such notebook in the submission"
            elif failure or not graded_path.exists():
                result.status, result.reason = "failed", failure or "nbgrader produced no graded notebook"
            else:
                with Gradebook(self.db_url, COURSE_ID) as gb:
                    try:
                        result.score = gb.find_submission_notebook(notebook, assignment_id, student_id).score
                    except MissingEntry:
                        result.status, result.reason = "failed", "no grades were recorded"
                made = assembled[notebook]
                notes = [f"{name}: answer not run, it breaks the rules for answers ({why})"
                         for name, why in made.refused.items()]
                notes += made.notes
                if made.missing:
                    notes.append("not answered: " + ", ".join(made.missing))
                notes += _problems_in(graded_path, self.timeout, self.limits if self.sandbox else None)
                result.reason = result.reason or "; ".join(notes)
            if result.status != "graded":
                result.score = 0.0
            results.append(result)
            log(f"  {notebook}: {result.score:g}/{result.max_score:g} {result.status}"
                + (f" -- {result.reason}" if result.reason else ""))
        return results


def _zero_ungraded(db_url: str, results: list[NotebookResult]) -> None:
    """Record 0 points in the gradebook for notebooks that could not be graded, so the export says so."""
    with Gradebook(db_url, COURSE_ID) as gb:
        for result in results:
            if result.status == "graded":
                continue
            try:
                notebook = gb.find_submission_notebook(result.notebook, result.assignment_id, result.student_id)
            except MissingEntry:
                continue
            for grade_row in notebook.grades:
                grade_row.auto_score = 0
                grade_row.needs_manual_grade = False
        gb.db.commit()


def _write_report(path: Path, results: list[NotebookResult]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "assignment", "notebook", "score", "max_score", "status", "reason"])
        for r in results:
            writer.writerow([r.student_id, r.assignment_id, r.notebook, f"{r.score:g}", f"{r.max_score:g}",
                             r.status, r.reason])


def _add_ungradable_rows(path: Path, results: list[NotebookResult]) -> None:
    """Append to nbgrader's ``grades.csv`` a 0-point row for each folder nbgrader never saw (e.g. a bad student id)."""
    with path.open("a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for r in results:
            if r.status == "invalid" and not r.notebook:
                writer.writerow([r.assignment_id, "", "", r.student_id, "", "", "", 0.0, 0.0, 0.0, r.max_score])
