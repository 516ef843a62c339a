"""`python -m autograder release` strips solutions and hidden tests and keeps everything else."""

import ast

import pytest
from nbgrader.utils import is_grade, is_solution

from .conftest import CHAPTERS


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_release_contains_no_solution_or_hidden_tests(chapter, released):
    assert chapter in released
    for notebook in released[chapter].glob("*.ipynb"):
        text = notebook.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "hidden=True"):
            assert marker not in text


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_release_keeps_stubs_tests_and_narrative(chapter, released_nbs, source_nbs):
    released_nb, source_nb = released_nbs[chapter], source_nbs[chapter]
    assert len(released_nb.cells) == len(source_nb.cells)
    answers = [c for c in released_nb.cells if is_solution(c)]
    assert len(answers) == len([c for c in source_nb.cells if is_solution(c)]) >= 5
    for cell in answers:
        name = cell.metadata.nbgrader.grade_id
        assert f"def {name}(" in cell.source and "raise NotImplementedError()" in cell.source
        # the body is gone: only the signature (on one line or several), the docstring, nbgrader's comment and
        # the stub are left
        (function,) = ast.parse(cell.source).body
        statements = [ast.unparse(node) for node in function.body
                      if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        assert statements == ["raise NotImplementedError()"]
    for cell in released_nb.cells:
        if is_grade(cell):
            assert cell.metadata.nbgrader.locked
            assert "check_" in cell.source
    for ours, theirs in zip(source_nb.cells, released_nb.cells):
        if "nbgrader" not in ours.metadata:
            assert ours.source == theirs.source


def test_release_command_rejects_unknown_assignment():
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "autograder", "release", "99_nothing"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "unknown assignment" in run.stderr
