"""`python -m autograder release` strips solutions and hidden tests and keeps everything else."""

from nbgrader.utils import is_grade, is_solution


def test_release_contains_no_solution_or_hidden_tests(released):
    assert "01_mdp" in released
    for notebook in released["01_mdp"].glob("*.ipynb"):
        text = notebook.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "hidden=True"):
            assert marker not in text


def test_release_keeps_stubs_tests_and_narrative(released_nb, source_nb):
    assert len(released_nb.cells) == len(source_nb.cells)
    answers = [c for c in released_nb.cells if is_solution(c)]
    assert len(answers) >= 6
    for cell in answers:
        name = cell.metadata.nbgrader.grade_id
        assert f"def {name}(" in cell.source and "raise NotImplementedError()" in cell.source
        assert "np.argmax" not in cell.source and "mdp.P @" not in cell.source
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
