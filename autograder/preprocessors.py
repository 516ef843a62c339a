"""nbgrader preprocessors of the grading pipeline (issue 12): capped output, and scores nbgrader may not invent.

* :class:`GradingExecute` is nbgrader's ``Execute`` with each cell's printed output capped while it runs: the
  first :attr:`~GradingExecute.head_chars` characters and the last :attr:`~GradingExecute.tail_chars` are
  kept, with a note of how much was cut between them. A notebook that prints 200 MiB makes a feedback page of
  a normal size and costs nothing by itself (the score of a test cell is its result, not its printout).
* :class:`GuardScores` runs after execution and before nbgrader records grades. nbgrader gives full credit to
  a test cell with no output, or whose result is not a number, and takes a negative or too-large number as
  it is; here such a cell gets an error output instead (so 0 points) saying why.
"""

from __future__ import annotations

import math

from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.utils import is_grade, is_solution
from traitlets import Integer

__all__ = ["GRADING_ERROR", "GradingExecute", "GuardScores", "TRUNCATED"]

#: ``ename`` of the error output :class:`GuardScores` gives a test cell whose score is not valid.
GRADING_ERROR = "GradingError"
#: Start of the note that replaces cut output.
TRUNCATED = "[output truncated"


class GradingExecute(Execute):
    """nbgrader's ``Execute`` with each cell's printed (stream) output capped while the notebook runs."""

    head_chars = Integer(20_000, help="characters of a cell's printed output kept from its start").tag(config=True)
    tail_chars = Integer(5_000, help="characters of a cell's printed output kept from its end").tag(config=True)

    #: The kernel manager class grading uses (set by the grading process: the sandbox's, or None for nbgrader's).
    kernel_manager_for_grading = None

    def __init__(self, *args, **kwargs):
        if GradingExecute.kernel_manager_for_grading is not None:
            kwargs["kernel_manager_class"] = GradingExecute.kernel_manager_for_grading
        super().__init__(*args, **kwargs)
        self._printed: dict[int, int] = {}
        self._tails: dict[int, dict[str, str]] = {}

    def output(self, outs, msg, display_id, cell_index):
        if msg.get("msg_type") == "stream":
            text = msg["content"].get("text", "")
            used = self._printed.get(cell_index, 0)
            self._printed[cell_index] = used + len(text)
            room = self.head_chars - used
            if room < len(text):
                tails = self._tails.setdefault(cell_index, {})
                name = msg["content"].get("name", "stdout")
                tails[name] = (tails.get(name, "") + text[max(room, 0):])[-self.tail_chars:]
                if room <= 0:
                    return None
                msg["content"]["text"] = text[:room]
        return super().output(outs, msg, display_id, cell_index)

    def on_cell_executed(self, **kwargs):
        super().on_cell_executed(**kwargs)
        index, cell = kwargs.get("cell_index"), kwargs["cell"]
        printed = self._printed.pop(index, 0)
        tails = self._tails.pop(index, {})
        if printed > self.head_chars:
            cut = printed - self.head_chars - sum(len(t) for t in tails.values())
            cell.outputs.append(NotebookNode(output_type="stream", name="stdout", text=(
                f"\n{TRUNCATED}: {cut:,} characters cut here; printed output is capped at "
                f"{self.head_chars + self.tail_chars:,} characters per cell and costs no points]\n")))
            for name, text in tails.items():
                # the end of the output holds the check's summary line; stderr stays stderr (nbgrader's rule)
                cell.outputs.append(NotebookNode(output_type="stream", name=name, text=text))


class GuardScores(NbGraderPreprocessor):
    """Give 0 points, with the reason as an error output, to a test cell whose score is missing or not valid.

    A valid score is the cell's result (``execute_result``), a finite number from 0 to the cell's points. A
    cell that already failed (an error output, or output on stderr) is left to nbgrader, which gives it 0.
    """

    def preprocess_cell(self, cell, resources, cell_index):
        if cell.cell_type != "code" or not is_grade(cell) or is_solution(cell):
            return cell, resources
        points = float(cell.metadata["nbgrader"]["points"])
        for output in cell.outputs:
            if output.output_type == "error" or (output.output_type == "stream" and output.name == "stderr"):
                return cell, resources
            if output.output_type == "execute_result":
                problem = _score_problem(output, points)
                break
        else:
            problem = "the test cell produced no score (it must end with the check's result)"
        if problem:
            cell.outputs = [o for o in cell.outputs if o.output_type != "execute_result"]
            cell.outputs.append(NotebookNode(output_type="error", ename=GRADING_ERROR, evalue=problem,
                                             traceback=[f"{GRADING_ERROR}: {problem}; 0 points"]))
        return cell, resources


def _score_problem(output, points: float) -> str | None:
    text = output.get("data", {}).get("text/plain")
    try:
        value = float(text)
    except (TypeError, ValueError):
        return f"the test cell's result is not a number ({str(text)[:60]!r})"
    if not math.isfinite(value) or value < 0 or value > points:
        return f"the test cell's result {value:g} is not a score from 0 to {points:g}"
    return None
