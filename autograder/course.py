"""The nbgrader course directory that the autograder lays out for itself, and the release command.

nbgrader expects ``<root>/source/<assignment>/<notebook>.ipynb`` (the instructor's notebooks),
``<root>/submitted/<student>/<assignment>/`` and so on. The book keeps its chapters in
``book/<assignment>/`` instead, so each command copies what it needs into a fresh course directory, runs
nbgrader there and copies the results out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .settings import BOOK_DIR

__all__ = ["Assignment", "CourseDirectory", "NbgraderError", "find_assignments", "release"]

CONFIG_FILE = Path(__file__).resolve().parent / "nbgrader_config.py"
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


class NbgraderError(RuntimeError):
    """An nbgrader command failed; the message holds the end of its log."""


@dataclass(frozen=True)
class Assignment:
    """One chapter folder ``book/<id>/`` whose notebooks hold nbgrader cells."""

    id: str
    path: Path
    notebooks: tuple[str, ...]  # notebook names without ".ipynb"

    @property
    def code_cells(self) -> int:
        """Number of code cells in all notebooks (sets how long grading may take)."""
        return sum(
            sum(cell.cell_type == "code" for cell in nbformat.read(self.path / f"{name}.ipynb", 4).cells)
            for name in self.notebooks
        )


def _has_nbgrader_cells(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any("nbgrader" in cell.metadata for cell in nb.cells)


def find_assignments(book_dir: Path = BOOK_DIR) -> dict[str, Assignment]:
    """Chapter folders of ``book_dir`` with at least one notebook holding nbgrader cells, by id.

    Raises:
        FileNotFoundError: if ``book_dir`` does not exist.
    """
    book_dir = Path(book_dir)
    if not book_dir.is_dir():
        raise FileNotFoundError(f"no book directory at {book_dir}")
    found = {}
    for folder in sorted(p for p in book_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        notebooks = tuple(sorted(p.stem for p in folder.glob("*.ipynb") if _has_nbgrader_cells(p)))
        if notebooks:
            found[folder.name] = Assignment(folder.name, folder, notebooks)
    return found


def _copy_source(assignment: Assignment, dest: Path) -> None:
    """Copy a chapter folder without build products or checkpoints."""
    shutil.copytree(assignment.path, dest, ignore=shutil.ignore_patterns(
        ".ipynb_checkpoints", "__pycache__", "_build", "*.pyc"))


class CourseDirectory:
    """A fresh nbgrader course directory at ``root`` holding the given assignments as sources.

    Args:
        root: an empty or missing directory.
        assignments: the assignments to lay out.
        db_url: SQLAlchemy URL of the gradebook (default: nbgrader's SQLite file in ``root``).
    """

    def __init__(self, root: Path, assignments: list[Assignment], db_url: str | None = None):
        # nbgrader's Gradebook runs the `alembic` command, which lives beside this interpreter; a virtual
        # environment used without activating it does not have that folder on PATH.
        bin_dir = str(Path(sys.executable).parent)
        if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or f"sqlite:///{self.root / 'gradebook.db'}"
        shutil.copy(CONFIG_FILE, self.root / "nbgrader_config.py")
        for assignment in assignments:
            _copy_source(assignment, self.root / "source" / assignment.id)
        self.assignments = {a.id: a for a in assignments}

    def nbgrader(self, *args: str, timeout: float | None = None, env: dict | None = None):
        """Run ``nbgrader ARGS`` in the course directory; returns the CompletedProcess (never raises on failure).

        Raises:
            subprocess.TimeoutExpired: if it runs longer than ``timeout`` seconds (the process is killed).
        """
        command = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.db_url={self.db_url}"]
        full_env = {**os.environ, "TQDM_DISABLE": "1", **(env or {})}
        return subprocess.run(command, cwd=self.root, capture_output=True, text=True, timeout=timeout,
                              env=full_env, stdin=subprocess.DEVNULL)

    def nbgrader_or_raise(self, *args: str, **kwargs):
        """Like :meth:`nbgrader` but raises :class:`NbgraderError` with the log's tail when it fails."""
        result = self.nbgrader(*args, **kwargs)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
            raise NbgraderError(f"`nbgrader {' '.join(args)}` failed:\n{tail}")
        return result

    def generate_assignment(self, assignment_id: str) -> Path:
        """Run ``nbgrader generate_assignment``; returns ``release/<assignment>``."""
        self.nbgrader_or_raise("generate_assignment", assignment_id, "--force")
        return self.root / "release" / assignment_id


def _assert_clean(path: Path) -> None:
    """Raise if a released notebook still holds solution or hidden-test markers."""
    for notebook in path.rglob("*.ipynb"):
        text = notebook.read_text(encoding="utf-8")
        for marker in SOLUTION_MARKERS:
            if marker in text:
                raise NbgraderError(f"{notebook} still contains {marker!r} after release")


def release(out: Path, work: Path, assignment_ids: list[str] | None = None,
            book_dir: Path = BOOK_DIR) -> dict[str, Path]:
    """Write the student notebooks of each assignment to ``out/<assignment>/``.

    Solutions are replaced by stubs and hidden tests removed (nbgrader ``generate_assignment``).

    Args:
        out: output directory; each assignment's folder in it is replaced.
        work: an empty scratch directory for the course layout.
        assignment_ids: which assignments (default: all).
        book_dir: where the chapters are.

    Returns:
        The released folder of each assignment, by id.

    Raises:
        KeyError: for an unknown assignment id.
        NbgraderError: if nbgrader fails or a released notebook still holds solution markers.
    """
    available = find_assignments(book_dir)
    ids = list(available) if not assignment_ids else assignment_ids
    unknown = [i for i in ids if i not in available]
    if unknown:
        raise KeyError(f"unknown assignment(s) {unknown}; the book has {sorted(available)}")
    course = CourseDirectory(work, [available[i] for i in ids])
    out = Path(out)
    released = {}
    for assignment_id in ids:
        produced = course.generate_assignment(assignment_id)
        _assert_clean(produced)
        target = out / assignment_id
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(produced, target)
        released[assignment_id] = target
    return released
