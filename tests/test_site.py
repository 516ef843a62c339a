"""The website's view of a chapter notebook (autograder.site.read_notebook), without building the site."""

import nbformat
import pytest
from nbgrader.utils import is_grade, is_solution

from autograder.site import read_notebook

from .conftest import CHAPTERS


@pytest.mark.parametrize("chapter", sorted(CHAPTERS))
def test_pages_are_built_without_hidden_tests_or_solution_markers(chapter, source_nbs):
    source = source_nbs[chapter]
    page = read_notebook(nbformat.writes(source))
    assert len(page.cells) == len(source.cells)
    for before, after in zip(source.cells, page.cells):
        for marker in ("HIDDEN TESTS", "hidden=True", "### BEGIN SOLUTION", "### END SOLUTION"):
            assert marker not in after.source
        if is_grade(before):  # the visible check stays
            assert before.source.split("\n")[:2] == after.source.split("\n")[:2]
            assert "check_" in after.source and after.source.rstrip().endswith("score")
        elif is_solution(before):  # the reference answer stays, collapsed on the page
            assert "hide-input" in after.metadata.get("tags", [])
            kept = [line for line in before.source.splitlines() if "### " not in line]
            assert after.source.splitlines() == kept
        else:
            assert after.source == before.source


def test_only_answer_cells_are_collapsed_as_solutions(source_nbs):
    """The site labels the hide-input toggle "Show solution": no other cell may carry that tag."""
    for source in source_nbs.values():
        for cell in source.cells:
            assert ("hide-input" in cell.metadata.get("tags", [])) == is_solution(cell)


def test_a_broken_hidden_test_region_is_an_error_not_a_leak():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "score = 1\n### BEGIN HIDDEN TESTS\nscore += secret()\n",
        metadata={"nbgrader": {"grade": True, "grade_id": "t", "locked": True, "points": 1, "solution": False,
                               "schema_version": 3}})])
    with pytest.raises(RuntimeError, match="No end hidden tests"):
        read_notebook(nbformat.writes(nb))
