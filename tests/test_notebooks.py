"""The chapter notebooks: well-formed exercises, committed without outputs, and they execute cleanly with the
reference answers getting full marks."""

import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbgrader.utils import determine_grade, is_grade, is_solution

from autograder.checks import mdp as checks_mdp
from autograder.checks import model_based as checks_model_based
from autograder.checks import q_learning as checks_q_learning
from autograder.course import find_assignments

from .conftest import CHAPTERS

CHECK_MODULES = {"01_mdp": checks_mdp, "02_model_based": checks_model_based, "03_q_learning": checks_q_learning}
#: The least number of exercises each chapter's issue asks for.
MIN_EXERCISES = {"01_mdp": 6, "02_model_based": 5, "03_q_learning": 6}


def test_every_chapter_has_a_check_module_and_a_test_notebook():
    assert set(find_assignments()) == set(CHECK_MODULES) == set(CHAPTERS)


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_exercises_are_well_formed(chapter, source_nbs):
    source_nb = source_nbs[chapter]
    answers = [c for c in source_nb.cells if is_solution(c)]
    tests = [c for c in source_nb.cells if is_grade(c)]
    assert len(answers) >= MIN_EXERCISES[chapter] and len(tests) == len(answers)
    for answer in answers:
        name = answer.metadata.nbgrader.grade_id
        assert f"def {name}(" in answer.source
        assert "### BEGIN SOLUTION" in answer.source and "### END SOLUTION" in answer.source
        test = next(c for c in tests if c.metadata.nbgrader.grade_id == f"test_{name}")
        assert test.metadata.nbgrader.locked
        assert f"check_{name}({name})" in test.source
        assert "### BEGIN HIDDEN TESTS" in test.source
        # the cell's points agree with the points the check scores on
        assert test.metadata.nbgrader.points == CHECK_MODULES[chapter].POINTS[name]
    assert {c.metadata.nbgrader.grade_id for c in answers} == set(CHECK_MODULES[chapter].POINTS)


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_source_notebooks_are_committed_without_outputs(chapter, source_nbs):
    for cell in source_nbs[chapter].cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_narrative_cells_do_not_use_the_names_students_define(chapter, source_nbs):
    """Narrative cells call `ref.<name>`: a student's unfinished function must not break the chapter."""
    source_nb = source_nbs[chapter]
    names = {c.metadata.nbgrader.grade_id for c in source_nb.cells if is_solution(c)}
    for cell in source_nb.cells:
        if cell.cell_type != "code" or "nbgrader" in cell.metadata:
            continue
        for name in names:
            assert not re.search(rf"(?<![.\w]){name}\(", cell.source), (name, cell.source[:80])


@pytest.mark.slow
@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_chapter_executes_and_the_reference_answers_get_full_marks(chapter, source_nbs, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_SEED", "2026")
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")  # the chapter as graded: the book build draws figures
    nb = nbformat.from_dict(source_nbs[chapter])
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(CHAPTERS[chapter].parent)}}).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not any(o.output_type == "error" for o in cell.outputs)
        assert not any(o.output_type == "stream" and o.name == "stderr" for o in cell.outputs), cell.source[:80]
        if is_grade(cell):
            score, max_score = determine_grade(cell)
            assert score == max_score, cell.metadata.nbgrader.grade_id
