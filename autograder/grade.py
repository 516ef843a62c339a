"""``python -m autograder grade``: grade a folder of submissions with nbgrader.

Submissions are laid out as ``SUBMISSIONS/<student_id>/<assignment_id>/<notebook>.ipynb`` (nbgrader's
``submitted/`` layout). They are copied into a fresh course directory and never modified. Each student's
notebooks run in a child process of their own, so one student's crash, time-out or broken file costs that
student the points concerned, with the reason reported, and nobody else anything.

Outputs in ``OUT``: ``grades.csv`` (nbgrader's export format), ``feedback/<student>/<assignment>/<nb>.html``,
``report.csv`` (one row per student and notebook, with the reason for anything that went wrong) and, unless a
database URL was given, the gradebook ``gradebook.db``.
"""

from __future__ import annotations

import csv
import html
import json
import re
import secrets
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import nbformat
from sqlalchemy.exc import SAWarning
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import CsvExportPlugin

from .course import BOOK_DIR, CourseDirectory, NbgraderError, find_assignments
from .settings import COURSE_ID, DEFAULT_CELL_TIMEOUT, SKIP_WHEN_GRADING

__all__ = ["NotebookResult", "grade"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]*$")


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
         "(the code crashed Python, exited, or used too much memory)"),
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


def _timed_out_cells(path: Path) -> list[str]:
    """Names of the cells of an autograded notebook that were interrupted for running too long."""
    if not path.exists():
        return []
    nb = nbformat.read(path, as_version=4)
    found = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error" and output.get("ename") in ("CellTimeoutError",
                                                                                   "KeyboardInterrupt"):
                name = cell.metadata.get("nbgrader", {}).get("grade_id", f"cell {index + 1}")
                if name not in found:
                    found.append(name)
    return found


def _failure_page(result: NotebookResult) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(result.notebook)} ({html.escape(result.assignment_id)})</title></head><body>"
        f"<h1>{html.escape(result.assignment_id)} / {html.escape(result.notebook)}.ipynb</h1>"
        f"<p>Score: {result.score:g} / {result.max_score:g}</p>"
        f"<p>This notebook could not be graded: {html.escape(result.reason)}.</p></body></html>"
    )


def _grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _restore_test_cells(nb, released) -> list[str]:
    """Put back, in place, the test cells of ``released`` that are missing from the student's notebook ``nb``.

    Each goes right after the submitted cell that holds the nearest nbgrader cell before it in the release
    (usually the exercise's own solution cell), or first if there is none. nbgrader's
    ``OverwriteCells.add_missing_cells`` does the same, but fails on the whole notebook when the cell before
    a deleted test cell was deleted too (a student who removed an exercise's solution and test cells would
    lose every point); with the cells back here, it has nothing left to add.

    Returns:
        The grade ids of the restored cells, in order.
    """
    restored = []
    for position, cell in enumerate(released.cells):
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade") or meta.get("solution"):
            continue
        submitted = [_grade_id(c) for c in nb.cells]
        if meta["grade_id"] in submitted:
            continue
        anchor = -1
        for earlier in reversed(released.cells[:position]):
            if _grade_id(earlier) in submitted:
                anchor = submitted.index(_grade_id(earlier))
                break
        nb.cells.insert(anchor + 1, nbformat.from_dict(cell))
        restored.append(meta["grade_id"])
    return restored


def _mark_cells_to_skip(nb, released) -> None:
    """Tag, in the student's notebook ``nb``, the cells that grading does not run; untag every other cell.

    A cell is skipped only if it is not an nbgrader cell and its source is exactly that of a cell the release
    tags with ``SKIP_WHEN_GRADING`` (a narrative experiment, unchanged). A tag the student added to a test or
    answer cell, or left on a narrative cell they edited, is removed: those cells run.
    """
    skippable = {cell.source for cell in released.cells
                 if SKIP_WHEN_GRADING in cell.metadata.get("tags", []) and "nbgrader" not in cell.metadata}
    for cell in nb.cells:
        tags = [tag for tag in cell.metadata.get("tags", []) if tag != SKIP_WHEN_GRADING]
        if cell.cell_type == "code" and "nbgrader" not in cell.metadata and cell.source in skippable:
            tags.append(SKIP_WHEN_GRADING)
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)


def _copy_submission(src: Path, dest: Path, released: Path, notebooks: tuple[str, ...]
                     ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Copy one student's assignment folder for grading.

    Unreadable notebooks are left out, deleted test cells are put back from the released notebooks in
    ``released``, and the narrative cells that grading skips are marked (:func:`_mark_cells_to_skip`).
    Returns ``({notebook: why it is unreadable}, {notebook: grade ids of restored test cells})``.
    """
    problems, restored = {}, {}
    dest.mkdir(parents=True)
    for path in sorted(src.rglob("*")):
        relative = path.relative_to(src)
        if path.is_symlink() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_dir():
            continue
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".ipynb" and len(relative.parts) == 1:
            if path.stem not in notebooks:
                continue
            nb, error = _read_notebook(path)
            if error:
                problems[path.stem] = error
                continue
            release = nbformat.read(released / path.name, as_version=4)
            put_back = _restore_test_cells(nb, release)
            if put_back:
                restored[path.stem] = put_back
            _mark_cells_to_skip(nb, release)
            nbformat.write(nb, dest / relative)
            continue
        shutil.copyfile(path, dest / relative)
    return problems, restored


def grade(submissions: Path, out: Path, *, timeout: int = DEFAULT_CELL_TIMEOUT, db_url: str | None = None,
          seed: int | None = None, book_dir: Path = BOOK_DIR, log=print) -> list[NotebookResult]:
    """Grade every ``submissions/<student>/<assignment>/`` folder; see the module docstring for outputs.

    Args:
        submissions: the submissions folder (read only).
        out: output folder (created; earlier results in it are replaced).
        timeout: seconds one cell may run before it is interrupted.
        db_url: SQLAlchemy URL of the gradebook (default: SQLite at ``out/gradebook.db``).
        seed: seed of the hidden tests' random instances (default: drawn at random).
        book_dir: where the chapters (the source notebooks) are.
        log: where progress lines go.

    Returns:
        One :class:`NotebookResult` per student, assignment and notebook.

    Raises:
        FileNotFoundError: if ``submissions`` is not a directory.
        ValueError: if ``timeout`` is not positive, or ``out`` lies inside ``submissions``.
    """
    submissions, out = Path(submissions).resolve(), Path(out).resolve()
    if not submissions.is_dir():
        raise FileNotFoundError(f"no submissions directory at {submissions}")
    if timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds; got {timeout}")
    if out == submissions or submissions in out.parents:
        raise ValueError("the output directory must not lie inside the submissions directory")
    out.mkdir(parents=True, exist_ok=True)
    seed = secrets.randbits(32) if seed is None else seed
    db_url = db_url or f"sqlite:///{out / 'gradebook.db'}"
    assignments = find_assignments(book_dir)
    results: list[NotebookResult] = []

    students = sorted(p.name for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    with tempfile.TemporaryDirectory(prefix="autograder-") as work:
        course = CourseDirectory(Path(work), list(assignments.values()), db_url=db_url)
        used = sorted({a.name for s in students for a in (submissions / s).iterdir()
                       if a.is_dir() and a.name in assignments})
        for assignment_id in used:
            course.generate_assignment(assignment_id)
        with Gradebook(db_url, COURSE_ID) as gb:
            max_scores = {(a, nb.name): nb.max_score for a in used for nb in gb.find_assignment(a).notebooks}
        # how long one student's autograde run may take, from each assignment's number of code cells
        walls = {a: timeout * (assignments[a].code_cells + 2) + 120 for a in used}

        for student_id in students:
            student_dir = submissions / student_id
            if not _ID.match(student_id):
                log(f"skipped folder {student_id!r}: not a valid student id")
                continue
            with Gradebook(db_url, COURSE_ID) as gb:
                gb.update_or_create_student(student_id)
            for assignment_dir in sorted(p for p in student_dir.iterdir() if p.is_dir()):
                assignment_id = assignment_dir.name
                if assignment_id not in assignments:
                    log(f"skipped {student_id}/{assignment_id}: no such assignment in the book")
                    continue
                assignment = assignments[assignment_id]
                dest = course.root / "submitted" / student_id / assignment_id
                released = course.root / "release" / assignment_id
                problems, restored = _copy_submission(assignment_dir, dest, released, assignment.notebooks)
                wall = walls[assignment_id]
                log(f"grading {student_id}/{assignment_id} ...")
                run = course.autograde(assignment_id, student_id, cell_timeout=timeout, wall_timeout=wall,
                                       env={"AUTOGRADER_SEED": str(seed)})
                failure = "" if run["success"] else (
                    run.get("reason") or _failure_reason(run.get("log", "") + run.get("error", "")))
                autograded = course.root / "autograded" / student_id / assignment_id
                for notebook in assignment.notebooks:
                    max_score = max_scores[(assignment_id, notebook)]
                    result = NotebookResult(student_id, assignment_id, notebook, 0.0, max_score, "graded")
                    submitted = assignment_dir / f"{notebook}.ipynb"
                    if notebook in problems:
                        result.status, result.reason = "invalid", problems[notebook]
                    elif not submitted.exists():
                        result.status, result.reason = "missing", "no such notebook in the submission"
                    elif failure or not (autograded / f"{notebook}.ipynb").exists():
                        result.status, result.reason = "failed", failure or "nbgrader produced no graded notebook"
                    else:
                        with Gradebook(db_url, COURSE_ID) as gb:
                            try:
                                result.score = gb.find_submission_notebook(
                                    notebook, assignment_id, student_id).score
                            except MissingEntry:
                                result.status, result.reason = "failed", "no grades were recorded"
                        notes = []
                        if restored.get(notebook):
                            notes.append("deleted test cells put back: " + ", ".join(restored[notebook]))
                        slow = _timed_out_cells(autograded / f"{notebook}.ipynb")
                        if slow:
                            notes.append(f"interrupted after {timeout} s (time limit): " + ", ".join(slow))
                        result.reason = result.reason or "; ".join(notes)
                    if result.status != "graded":
                        result.score = 0.0
                    results.append(result)
                    log(f"  {notebook}: {result.score:g}/{result.max_score:g} {result.status}"
                        + (f" -- {result.reason}" if result.reason else ""))

        _zero_ungraded(db_url, results)
        for assignment_id in used:
            produced = course.generate_feedback(assignment_id)
            if not produced["success"]:
                log(f"feedback for {assignment_id} could not be generated: "
                    + _failure_reason(produced.get("log", "") + produced.get("error", "")))
        feedback_out = out / "feedback"
        if feedback_out.exists():
            shutil.rmtree(feedback_out)
        for result in results:
            target = feedback_out / result.student_id / result.assignment_id / f"{result.notebook}.html"
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
                CsvExportPlugin(to=str(out / "grades.csv")).export(gb)
        except Exception as exc:  # noqa: BLE001 -- report any export failure the same way
            raise NbgraderError(f"exporting grades.csv failed: {type(exc).__name__}: {exc}") from exc

    _write_report(out / "report.csv", results)
    (out / "grading.json").write_text(json.dumps({"seed": seed, "cell_timeout": timeout}, indent=2) + "\n")
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
