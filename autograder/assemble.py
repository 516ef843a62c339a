"""What grading runs: the release's own cells with the student's answers spliced in (issue 12).

A submitted notebook is not run as it is. :func:`assemble` starts from the released notebook -- its narrative
cells, its test cells (nbgrader puts the hidden tests back from the gradebook) and its metadata -- and puts into
each answer cell the student's code for that exercise, found by the function the answer cell defines:

* the student's cell that defines that function at top level, preferring the one that still carries the
  answer cell's nbgrader ``grade_id`` (the last one, as a top-to-bottom run would use), otherwise the last cell
  that defines it. So a notebook whose nbgrader metadata an editor stripped, whose cells were duplicated,
  reordered or given extra nbgrader metadata, is graded on its answers just the same;
* checked by the static policy (:mod:`autograder.policy`): an answer that breaks it is not run; the
  exercise's function then raises an error saying why, so the exercise scores 0 with the reason in its
  test's output and in the report;
* with its top-level statements that are not definitions (test calls, prints) left out.

Cells the student added, and edits to narrative or test cells, are not run.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import nbformat

from . import policy

__all__ = ["Assembled", "answer_cells", "assemble", "graded_source"]


@dataclass
class Assembled:
    """The notebook to grade, and what the assembly noticed.

    Attributes:
        notebook: the release with the student's answers in its answer cells.
        refused: ``{exercise function: reason}`` for answers that break the rules (not run).
        missing: exercise functions for which the student's notebook has no definition (the stub stays).
        notes: remarks for the report (answers found by content, duplicates ignored, statements left out).
    """

    notebook: nbformat.NotebookNode
    refused: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def answer_cells(release) -> list[tuple[int, str, str]]:
    """``(index, grade_id, function name)`` of each code answer cell of a released notebook.

    An answer cell is an nbgrader ``solution`` cell that is not graded itself and defines one function at top
    level (the exercise convention of ``DESIGN.md``).
    """
    found = []
    for index, cell in enumerate(release.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("solution") or meta.get("grade"):
            continue
        names = policy.defined_functions(cell.source)
        if names:
            found.append((index, meta.get("grade_id", f"cell {index + 1}"), names[0]))
    return found


def _refusal_stub(name: str, reason: str) -> str:
    """Source of a function ``name`` that raises ``reason`` (the student's answer, refused, stands in for it)."""
    message = f"this answer was not run: it breaks the rules for answers ({reason})"
    return (f"def {name}(*args, **kwargs):\n"
            f"    raise RuntimeError({message!r})\n")


def graded_source(source: str) -> tuple[str, str | None]:
    """What grading runs for an answer cell's ``source``, and why it was refused (None if it was not).

    A compliant answer keeps its definitions (top-level statements that are not are left out); an answer that
    breaks the rules becomes functions of the same names that raise the reason.
    """
    checked = policy.check_answer(source)
    if checked.ok:
        return checked.source, None
    reason = "; ".join(str(v) for v in checked.violations[:3])
    names = checked.defines or policy.defined_functions(source)
    return "".join(_refusal_stub(name, reason) for name in names), reason


def assemble(submitted, release) -> Assembled:
    """Build the notebook that grading runs from a student's notebook and the released one.

    Args:
        submitted: the student's notebook (an ``nbformat`` v4 node; not modified).
        release: the released notebook of the same name (not modified).

    Returns:
        An :class:`Assembled`; its notebook has exactly the release's cells and metadata.
    """
    graded = copy.deepcopy(release)
    result = Assembled(graded)
    student_cells = [cell for cell in submitted.get("cells", [])
                     if cell.get("cell_type") == "code" and isinstance(cell.get("source"), str)]
    defining = [(cell, policy.defined_functions(cell.source)) for cell in student_cells]
    for index, grade_id, name in answer_cells(release):
        stub = release.cells[index].source.strip()
        # the release's stub, left in place, never wins over an answer written in another cell
        candidates = [cell for cell, names in defining if name in names and cell.source.strip() != stub]
        if not candidates:
            result.missing.append(name)
            continue
        tagged = [cell for cell in candidates if _grade_id(cell) == grade_id]
        chosen = (tagged or candidates)[-1]
        if not tagged:
            result.notes.append(f"{name}: answer found by content (the cell's nbgrader metadata is missing)")
        if len(candidates) > 1:
            result.notes.append(f"{name}: defined in {len(candidates)} cells; graded the "
                                + ("answer cell" if tagged else "last one"))
        source, reason = graded_source(chosen.source)
        if reason:
            result.refused[name] = reason
            source = _refusal_stub(name, reason)  # the exercise's own function, whatever else the cell defined
        graded.cells[index].source = source
    return result
