"""The nbgrader course directory that the autograder lays out for itself, and the release command.

nbgrader expects ``<root>/source/<assignment>/<notebook>.ipynb`` (the instructor's notebooks),
``<root>/submitted/<student>/<assignment>/`` and so on. The book keeps its chapters in
``book/<assignment>/`` instead, so each command copies what it needs into a fresh course directory, runs
nbgrader there and copies the results out.

nbgrader's converters (``generate_assignment``, ``autograde``, ``generate_feedback``) run through their Python
classes, configured from ``nbgrader_config.py`` beside this module, rather than as ``nbgrader`` commands: each
command would start a new Python that spends seconds importing nbgrader. ``autograde`` runs a student's
code, so it runs in a child process of its own (see :meth:`CourseDirectory.autograde`).
"""

from __future__ import annotations

import copy
import json
import multiprocessing
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import sqlalchemy
from alembic.script import ScriptDirectory
from nbgrader.converters import Autograde, GenerateAssignment, GenerateFeedback
from nbgrader.coursedir import CourseDirectory as NbgraderCourseDirectory
from nbgrader.dbutil import ALEMBIC_DIR
from nbgrader.utils import capture_log
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from .preprocessors import GradingExecute
from .sandbox import Limits, SandboxKernelManager
from .settings import BOOK_DIR, GRADING_KERNEL_ENV

__all__ = [
    "Assignment", "CourseDirectory", "NbgraderError", "find_assignments", "load_config", "prepare_gradebook",
    "release",
]

CONFIG_FILE = Path(__file__).resolve().parent / "nbgrader_config.py"
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")


class NbgraderError(RuntimeError):
    """An nbgrader step failed; the message holds the end of its log."""


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


def prepare_gradebook(db_url: str) -> None:
    """Create the gradebook database at ``db_url``, stamped with nbgrader's schema version, unless it has tables.

    nbgrader's ``Gradebook`` does the same when it finds an empty database, but learns the schema version
    (the head of its alembic migrations) by running the ``alembic`` command, a new Python process that takes
    seconds to start. Reading the head here with alembic's ``ScriptDirectory`` gives the same value; the
    tables themselves are still created by ``Gradebook``.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be opened or written.
    """
    engine = sqlalchemy.create_engine(db_url)
    try:
        if sqlalchemy.inspect(engine).get_table_names():
            return
        head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            connection.execute(sqlalchemy.text("INSERT INTO alembic_version (version_num) VALUES (:head)"),
                               {"head": head})
    finally:
        engine.dispose()


def load_config(root: Path, db_url: str) -> Config:
    """nbgrader's configuration: ``nbgrader_config.py`` plus the course directory ``root`` and gradebook URL."""
    config = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = db_url
    return config


def _tail(result: dict, lines: int = 25) -> str:
    text = (result.get("log", "") + "\n" + result.get("error", "")).strip()
    return "\n".join(text.splitlines()[-lines:])


def _run_converter(config: Config, converter, assignment_id: str, student_id: str = "*") -> dict:
    """Run one nbgrader converter in this process; returns nbgrader's ``{"success", "log", "error"}``."""
    coursedir = NbgraderCourseDirectory(config=config)
    coursedir.assignment_id = assignment_id
    coursedir.student_id = student_id
    app = converter(coursedir=coursedir, config=config)
    app.force = True
    # nbgrader prints its log through the logging module; keep it for the result instead of the terminal
    app.log.propagate = False
    return capture_log(app)


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this process when its parent (the grader) dies, even by SIGKILL.

    Otherwise a grader that is killed leaves its child grading on (and the child's sandbox, which dies with
    the child). Elsewhere the wall-clock limit of :meth:`CourseDirectory.autograde` is all there is.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _autograde_in_child(config: Config, assignment_id: str, student_id: str, env: dict, result_path: str,
                        output_path: str, limits: Limits | None):
    """Body of the child process of :meth:`CourseDirectory.autograde`."""
    # What the child and the kernel print (kernel start-up warnings, a student's crash) goes to a file,
    # not to the terminal of the person grading.
    output = os.open(output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(output, 1)
    os.dup2(output, 2)
    # A process group of its own, so that the parent can stop it with anything it started; the kernel it
    # starts sits in a session of its own but exits by itself when its parent process goes (in the sandbox,
    # bubblewrap's --die-with-parent takes everything the student's code started with it).
    if hasattr(os, "setsid"):
        os.setsid()
    _die_with_parent()
    if limits is not None:
        # the kernel gets exactly this environment inside the sandbox; nothing of the grader's
        SandboxKernelManager.sandbox_limits = limits
        SandboxKernelManager.sandbox_env = {**env, "NBGRADER_EXECUTION": "autograde"}
        GradingExecute.kernel_manager_for_grading = SandboxKernelManager
    else:
        os.environ.update(env)  # inherited by the kernel that runs the student's code
    result = _run_converter(config, Autograde, assignment_id, student_id)
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")


class CourseDirectory:
    """A fresh nbgrader course directory at ``root`` holding the given assignments as sources.

    Args:
        root: an empty or missing directory.
        assignments: the assignments to lay out.
        db_url: SQLAlchemy URL of the gradebook (default: nbgrader's SQLite file in ``root``).
    """

    def __init__(self, root: Path, assignments: list[Assignment], db_url: str | None = None):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_url = db_url or f"sqlite:///{self.root / 'gradebook.db'}"
        self.config = load_config(self.root, self.db_url)
        prepare_gradebook(self.db_url)
        for assignment in assignments:
            _copy_source(assignment, self.root / "source" / assignment.id)

    def generate_assignment(self, assignment_id: str) -> Path:
        """nbgrader ``generate_assignment`` (also records the assignment in the gradebook).

        Returns:
            The student version, ``<root>/release/<assignment>``.

        Raises:
            NbgraderError: if nbgrader fails.
        """
        result = _run_converter(self.config, GenerateAssignment, assignment_id)
        if not result["success"]:
            raise NbgraderError(f"nbgrader generate_assignment {assignment_id} failed:\n{_tail(result)}")
        return self.root / "release" / assignment_id

    def autograde(self, assignment_id: str, student_id: str, *, cell_timeout: int, wall_timeout: float,
                  seed: int | None = None, limits: Limits | None = None) -> dict:
        """nbgrader ``autograde`` of ``submitted/<student>/<assignment>``, in a child process.

        The child is forked from this process where the platform allows (so nbgrader need not be imported
        again) and runs in a process group of its own. A student's notebook that crashes or hangs the
        grader therefore costs only that child: it is killed after ``wall_timeout`` seconds.

        Args:
            assignment_id, student_id: what to grade.
            cell_timeout: seconds one cell may run before it is interrupted.
            wall_timeout: seconds the whole run may take.
            seed: the hidden tests' seed (``AUTOGRADER_SEED`` for the kernel).
            limits: run the kernel in the sandbox (:mod:`autograder.sandbox`) with these limits; None: run it
                as a plain child process, with the grader's environment and rights.

        Returns:
            nbgrader's result dictionary (``success``, ``log``, ``error``); when the child was stopped or
            died, ``success`` is False and ``reason`` says why.
        """
        config = copy.deepcopy(self.config)
        config.Execute.timeout = cell_timeout
        result_path = self.root / f".autograde-{student_id}-{assignment_id}.json"
        output_path = result_path.with_suffix(".log")
        result_path.unlink(missing_ok=True)
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        child = context.Process(target=_autograde_in_child, daemon=False, args=(
            config, assignment_id, student_id,
            {**GRADING_KERNEL_ENV, **({"AUTOGRADER_SEED": str(seed)} if seed is not None else {})},
            str(result_path), str(output_path), limits))
        child.start()
        child.join(wall_timeout)
        if child.is_alive():
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (AttributeError, ProcessLookupError, PermissionError):  # no process groups here
                child.kill()
            child.join()
            return {"success": False, "reason": f"grading took longer than {wall_timeout:g} s and was stopped"}
        output = output_path.read_text(encoding="utf-8", errors="replace") if output_path.exists() else ""
        if not result_path.exists():
            return {"success": False, "log": output,
                    "reason": f"the grading process died (exit code {child.exitcode})"}
        result = json.loads(result_path.read_text(encoding="utf-8"))
        result["log"] = result.get("log", "") + output
        return result

    def generate_feedback(self, assignment_id: str) -> dict:
        """nbgrader ``generate_feedback`` for every autograded student of an assignment; returns its result."""
        config = copy.deepcopy(self.config)
        config.HTMLExporter.template_name = "feedback"
        return _run_converter(config, GenerateFeedback, assignment_id)


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
