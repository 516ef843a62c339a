"""``python -m autograder validate NOTEBOOK``: run a student's notebook and report the points of each exercise.

The notebook runs in a fresh kernel, as the grader would run it: in the grader's sandbox where one can start
on this machine (:mod:`autograder.sandbox`; elsewhere, e.g. on a Mac, without one, and the command says so:
it is the student's own code on the student's own machine), with the same kernel environment,
``NBGRADER_EXECUTION`` set as nbgrader's own ``validate`` sets it, long narrative experiments tagged
``skip-when-grading`` not run, and each answer cell checked against the rules for answers
(:mod:`autograder.policy`): an answer that breaks them is not run and its exercise scores 0, as in grading,
with the rule it breaks shown. The file is not modified.
Points are computed by nbgrader's own rule (``nbgrader.utils.determine_grade``), after dropping harmless
stderr output as the grader does, so the total matches what grading the visible tests would give.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbgrader.preprocessors import IgnorePattern
from nbgrader.utils import determine_grade, is_grade

from . import policy
from .assemble import graded_source
from .checks._harness import FAIL_MARK
from .preprocessors import GuardScores
from .sandbox import SandboxKernelManager, sandbox_status
from .settings import DEFAULT_CELL_TIMEOUT, GRADING_KERNEL_ENV, HARMLESS_STDERR, SKIP_WHEN_GRADING

__all__ = ["ExerciseResult", "validate"]


@dataclass
class ExerciseResult:
    """Points of one graded cell, with the failing lines of its output."""

    name: str
    score: float
    max_score: float
    problems: list[str] = field(default_factory=list)


def _problems(cell) -> list[str]:
    lines = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            lines += [line.strip() for line in output.text.splitlines() if line.strip().startswith(FAIL_MARK)]
            if output.name == "stderr":
                lines.append("wrote to stderr (a cell with stderr output gets 0 points): "
                             + output.text.strip().splitlines()[-1][:200])
        elif output.output_type == "error":
            lines.append(f"error: {output.ename}: {output.evalue}"[:300])
    return lines


def _apply_rules(nb) -> dict[str, str]:
    """Check each answer cell of ``nb`` against the rules for answers, in place, as grading does.

    A compliant answer keeps only what grading runs (its top-level statements that are not definitions are
    left out); an answer that breaks the rules is replaced by functions that raise the reason. Returns
    ``{function name: reason}`` for the refused answers.
    """
    refused = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("solution") or meta.get("grade"):
            continue
        names = policy.defined_functions(cell.source)
        cell.source, reason = graded_source(cell.source)
        if reason:
            refused.update(dict.fromkeys(names, reason))
    return refused


class _QuietSandboxKernelManager(SandboxKernelManager):
    sandbox_env = {**GRADING_KERNEL_ENV, "NBGRADER_EXECUTION": "validate"}


def validate(path: Path, timeout: int = DEFAULT_CELL_TIMEOUT, sandbox: bool | None = None
             ) -> tuple[list[ExerciseResult], str | None]:
    """Execute the notebook at ``path`` and grade its test cells.

    Args:
        path: the notebook.
        timeout: seconds one cell may run before it is interrupted.
        sandbox: run the kernel in the sandbox (None: where one can start, see
            :func:`autograder.sandbox.sandbox_status`).

    Returns:
        ``(results, fatal)``: one :class:`ExerciseResult` per graded cell, and a message if the run stopped
        early (the kernel died), else None.

    Raises:
        FileNotFoundError: if there is no file at ``path``.
        ValueError: if the file is not a valid notebook or holds no graded cells.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001
        raise ValueError(f"{path} is not a valid notebook: {exc}") from None
    if not any(is_grade(cell) for cell in nb.cells):
        raise ValueError(f"{path} has no graded test cells: is it a chapter notebook?")
    for cell in nb.cells:  # the grader never skips an nbgrader cell, whatever its tags say
        if "nbgrader" in cell.metadata and SKIP_WHEN_GRADING in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [tag for tag in cell.metadata["tags"] if tag != SKIP_WHEN_GRADING]
    refused = _apply_rules(nb)
    if sandbox is None:
        sandbox = sandbox_status()[0]
    extra = {"kernel_manager_class": _QuietSandboxKernelManager} if sandbox else {}
    client = NotebookClient(nb, timeout=timeout, interrupt_on_timeout=True, allow_errors=True,
                            kernel_name="python3", skip_cells_with_tag=SKIP_WHEN_GRADING,
                            resources={"metadata": {"path": str(path.parent.resolve())}}, **extra)
    fatal = None
    try:
        # the kernel process's own start-up warnings are not the student's business; the notebook's
        # output, including its errors, comes through the kernel's messages
        client.execute(stderr=subprocess.DEVNULL,
                       env={**os.environ, **GRADING_KERNEL_ENV, "NBGRADER_EXECUTION": "validate"})
    except DeadKernelError:
        fatal = "the kernel died (the code crashed Python or used too much memory); later cells did not run"
    drop_harmless_stderr = IgnorePattern(pattern=HARMLESS_STDERR)  # the grader's own preprocessors
    guard = GuardScores()
    results = []
    for index, cell in enumerate(nb.cells):
        if not is_grade(cell) or cell.cell_type != "code":
            continue
        drop_harmless_stderr.preprocess_cell(cell, {}, index)
        guard.preprocess_cell(cell, {}, index)
        name = cell.metadata["nbgrader"]["grade_id"].removeprefix("test_")
        if not cell.get("outputs") and fatal:
            score, max_score = 0.0, float(cell.metadata["nbgrader"]["points"])
            problems = ["not run: " + fatal]
        else:
            score, max_score = determine_grade(cell)
            problems = _problems(cell)
        if name in refused:
            problems.insert(0, f"answer not run (as in grading): it breaks the rules for answers: {refused[name]}")
        results.append(ExerciseResult(name, float(score or 0.0), float(max_score), problems))
    return results, fatal
