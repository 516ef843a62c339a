"""The chapter notebooks: well-formed exercises, committed without outputs, and they execute cleanly with the
reference answers getting full marks."""

import ast
import builtins
import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbgrader.utils import determine_grade, is_grade, is_solution

from autograder.checks import mdp as checks_mdp
from autograder.checks import model_based as checks_model_based
from autograder.checks import policy_gradients as checks_policy_gradients
from autograder.checks import ppo_grpo as checks_ppo_grpo
from autograder.checks import q_learning as checks_q_learning
from autograder.checks import rlhf as checks_rlhf
from autograder.course import find_assignments
from autograder.settings import SKIP_WHEN_GRADING

from .conftest import CHAPTERS

CHECK_MODULES = {"01_mdp": checks_mdp, "02_model_based": checks_model_based, "03_q_learning": checks_q_learning,
                 "04_policy_gradients": checks_policy_gradients, "05_ppo_grpo": checks_ppo_grpo,
                 "06_rlhf": checks_rlhf}
#: The least number of exercises each chapter's issue asks for.
MIN_EXERCISES = {"01_mdp": 6, "02_model_based": 5, "03_q_learning": 6, "04_policy_gradients": 6,
                 "05_ppo_grpo": 6, "06_rlhf": 6}


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
def test_every_answer_cell_follows_its_statement(chapter, source_nbs):
    """The markdown cell just above each answer cell states the exercise: "Exercise (k point(s))" and the
    function's signature, with the same number of points as the test cell."""
    cells = source_nbs[chapter].cells
    for i, cell in enumerate(cells):
        if is_solution(cell):
            name = cell.metadata.nbgrader.grade_id
            statement = cells[i - 1]
            assert statement.cell_type == "markdown", name
            points = CHECK_MODULES[chapter].POINTS[name]
            stated = re.search(r"\*\*Exercise(?: \d+)? \((\d+) points?\)", statement.source)
            assert stated and float(stated.group(1)) == points, name
            assert f"`{name}(" in statement.source, name


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


def _skipped(cell) -> bool:
    return SKIP_WHEN_GRADING in cell.metadata.get("tags", [])


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names a cell binds anywhere, names it reads) -- over-approximate: any binding counts, in any scope."""
    bound, read = set(), set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
    return bound, read


def _needed_from_skipped_cells(cells) -> set[str]:
    """Names that the code cells grading runs read but that none of them binds (nor is a builtin)."""
    kept_bound, kept_read = set(dir(builtins)), set()
    for cell in cells:
        if cell.cell_type == "code" and not _skipped(cell):
            bound, read = _names(cell.source)
            kept_bound |= bound
            kept_read |= read
    return kept_read - kept_bound


def test_names_sees_every_way_a_cell_binds_a_name():
    bound, read = _names("try:\n    f(x)\nexcept ValueError as error:\n    print(error)\n"
                         "match y:\n    case [first, *rest]:\n        pass\n")
    assert {"error", "first", "rest"} <= bound and {"f", "x", "y", "print"} <= read


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_cells_skipped_while_grading_are_narrative_and_nothing_else_needs_them(chapter, source_nbs):
    """Grading does not run cells tagged skip-when-grading: none may be an exercise cell, and every name the
    other cells read must be bound by one of them (or be a builtin), so skipping changes no other cell."""
    cells = source_nbs[chapter].cells
    assert not any("nbgrader" in c.metadata for c in cells if _skipped(c))
    needed = _needed_from_skipped_cells(cells)
    assert not needed, f"cells that grading runs read names that only skipped cells define: {sorted(needed)}"


def test_the_skipped_cell_check_finds_a_name_only_a_skipped_cell_binds():
    cells = [nbformat.v4.new_code_cell("import numpy as np\nf = lambda x: np.sum(x)"),
             nbformat.v4.new_code_cell("for k in range(3):\n    total = f([k])",
                                       metadata={"tags": [SKIP_WHEN_GRADING]}),
             nbformat.v4.new_code_cell("print(f([1]), total)")]
    assert _needed_from_skipped_cells(cells) == {"total"}
    cells[1].metadata["tags"] = []
    assert _needed_from_skipped_cells(cells) == set()


@pytest.mark.slow
@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_chapter_executes_and_the_reference_answers_get_full_marks(chapter, source_nbs, monkeypatch):
    """The chapter as the grader runs it: figures not drawn (the book build draws them) and the cells tagged
    skip-when-grading not run (the book build runs them)."""
    monkeypatch.setenv("AUTOGRADER_SEED", "2026")
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    nb = nbformat.from_dict(source_nbs[chapter])
    NotebookClient(nb, timeout=1800, kernel_name="python3", skip_cells_with_tag=SKIP_WHEN_GRADING,
                   resources={"metadata": {"path": str(CHAPTERS[chapter].parent)}}).execute()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if _skipped(cell):
            assert cell.outputs == [] and cell.execution_count is None
            continue
        assert not any(o.output_type == "error" for o in cell.outputs)
        assert not any(o.output_type == "stream" and o.name == "stderr" for o in cell.outputs), cell.source[:80]
        if is_grade(cell):
            score, max_score = determine_grade(cell)
            assert score == max_score, cell.metadata.nbgrader.grade_id
