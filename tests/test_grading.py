"""Round trips through `python -m autograder grade` and `validate`, including broken submissions."""

import copy
import csv
import os
import re
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.settings import SKIP_WHEN_GRADING

from .conftest import CHAPTERS, ROOT
from .notebooks import fill_in, solution_sources, tree_digest, write

pytestmark = pytest.mark.slow

WRONG_VALUE_ITERATION = (
    "def value_iteration(mdp, theta=1e-10, max_sweeps=None):\n"
    "    return np.zeros(mdp.n_states)\n"
)
# Chapter 2: a planning step that overwrites Q[s, a] with the target (2 of 10 points). The episode exercise calls
# it, but its check runs with the reference planning step, so only these 2 points are lost.
WRONG_PLANNING_STEP = (
    "def dyna_q_planning_step(Q, model, alpha, gamma, rng):\n"
    "    s, a = list(model)[rng.integers(len(model))]\n"
    "    r, s_next, terminated = model[(s, a)]\n"
    "    Q[s, a] = r if terminated else r + gamma * Q[s_next].max()\n"
)

# Chapter 3: a SARSA update that overwrites Q[s, a] with the target (1 of 10 points; wrong in every case).
WRONG_SARSA = (
    "def sarsa_update(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):\n"
    "    Q[s, a] = r if terminated else r + gamma * Q[s_next, a_next]\n"
)

# Chapter 4: a REINFORCE loss with the sign reversed, which climbs the loss instead of J (2 of 11 points).
WRONG_REINFORCE_LOSS = (
    "def reinforce_loss(log_probs, returns, n_episodes):\n"
    "    return (log_probs * returns.detach()).sum() / n_episodes\n"
)

WRONG_REWARD_MODEL_LOSS = (  # chosen and rejected swapped
    "import torch\n\n"
    "def reward_model_loss(rewards_chosen, rewards_rejected):\n"
    "    return -torch.nn.functional.logsigmoid(rewards_rejected - rewards_chosen).mean()\n"
)
WRONG_GROUP_ADVANTAGES = (
    "def group_advantages(rewards, num_generations, scale_rewards='group', eps=1e-4):\n"
    "    groups = rewards.reshape(-1, num_generations)\n"
    "    centred = groups - rewards.mean()\n"
    "    if scale_rewards == 'group':\n"
    "        centred = centred / (groups.std(dim=1, keepdim=True) + eps)\n"
    "    elif scale_rewards == 'batch':\n"
    "        centred = centred / (rewards.std() + eps)\n"
    "    return centred.reshape(-1)\n"
)

# carol's edit of the DQN cell; its output is not a substring of its source
CAROLS_OWN_CELL = 'print("carol\'s own " + "cell ran")'


ENDLESS_LOOP = "def discounted_return(rewards, gamma):\n    while True:\n        pass\n"


@pytest.fixture(scope="module")
def submissions(tmp_path_factory, source_nb, released_nb, source_nbs, released_nbs):
    root = tmp_path_factory.mktemp("submissions")

    def alice_bob_carol(chapter, wrong_name, wrong_source):
        """alice answers everything, bob nothing, carol gets exercise ``wrong_name`` wrong."""
        answers, released = solution_sources(source_nbs[chapter]), released_nbs[chapter]
        name = CHAPTERS[chapter].name
        write(fill_in(released, answers), root / "alice" / chapter / name)
        write(released, root / "bob" / chapter / name)
        write(fill_in(released, {**answers, wrong_name: wrong_source}), root / "carol" / chapter / name)

    # Chapter 2: carol gets the planning step wrong
    alice_bob_carol("02_model_based", "dyna_q_planning_step", WRONG_PLANNING_STEP)
    # Chapter 3: the same three. bob also tags his (failing) SARSA test cell to be skipped, and carol edits the
    # DQN cell, which the release tags to be skipped: the grader must run both.
    answers_3, released_3 = solution_sources(source_nbs["03_q_learning"]), released_nbs["03_q_learning"]
    write(fill_in(released_3, answers_3), root / "alice" / "03_q_learning" / "q_learning.ipynb")
    bob_3 = copy.deepcopy(released_3)
    next(c for c in bob_3.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_sarsa_update"
         ).metadata["tags"] = [SKIP_WHEN_GRADING]
    write(bob_3, root / "bob" / "03_q_learning" / "q_learning.ipynb")
    carol_3 = fill_in(released_3, {**answers_3, "sarsa_update": WRONG_SARSA})
    dqn_cell = next(c for c in carol_3.cells if "train_dqn(" in c.source)
    assert SKIP_WHEN_GRADING in dqn_cell.metadata["tags"]  # the release keeps the source notebook's tag
    dqn_cell.source = CAROLS_OWN_CELL
    write(carol_3, root / "carol" / "03_q_learning" / "q_learning.ipynb")
    # Chapters 4 and 5: the same three
    alice_bob_carol("04_policy_gradients", "reinforce_loss", WRONG_REINFORCE_LOSS)
    alice_bob_carol("05_ppo_grpo", "group_advantages", WRONG_GROUP_ADVANTAGES)
    # Chapter 6: carol swaps chosen and rejected in the reward model's loss
    alice_bob_carol("06_rlhf", "reward_model_loss", WRONG_REWARD_MODEL_LOSS)
    answers = solution_sources(source_nb)
    write(fill_in(released_nb, answers), root / "alice" / "01_mdp" / "mdp.ipynb")
    write(released_nb, root / "bob" / "01_mdp" / "mdp.ipynb")
    write(fill_in(released_nb, {**answers, "value_iteration": WRONG_VALUE_ITERATION}),
          root / "carol" / "01_mdp" / "mdp.ipynb")
    write(fill_in(released_nb, {**answers, "discounted_return": ENDLESS_LOOP}),
          root / "dave" / "01_mdp" / "mdp.ipynb")
    (root / "erin" / "01_mdp").mkdir(parents=True)
    (root / "erin" / "01_mdp" / "mdp.ipynb").write_text('{"cells": [ not json')
    write(fill_in(released_nb, {**answers, "q_from_v": "import os\n\ndef q_from_v(mdp, V):\n    os._exit(1)\n"}),
          root / "frank" / "01_mdp" / "mdp.ipynb")
    gina = fill_in(released_nb, answers)
    gina.cells = [c for c in gina.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "test_greedy_policy"]
    write(gina, root / "gina" / "01_mdp" / "mdp.ipynb")
    (root / "gina" / "01_mdp" / "solutions.py").write_text(
        "raise SystemExit('a student file shadowed solutions')\n")
    (root / "hal" / "99_unknown").mkdir(parents=True)
    ivan = fill_in(released_nb, answers)  # deletes value iteration: its solution cell and its test cell
    deleted = ("value_iteration", "test_value_iteration")
    ivan.cells = [c for c in ivan.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in deleted]
    write(ivan, root / "ivan" / "01_mdp" / "mdp.ipynb")
    return root


@pytest.fixture(scope="module")
def graded(submissions, tmp_path_factory):
    before = tree_digest(submissions)
    out = tmp_path_factory.mktemp("grading")
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", str(submissions), "--out", str(out),
                          # 15 s a cell: 3x the slowest honest test cell, and between the 10 s after which a check
                          # stops dave's endless loop and the 20 s its two runs take: the grader interrupts his cell
                          "--timeout", "15", "--seed", "7"], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert tree_digest(submissions) == before, "grading modified the submissions"
    with open(out / "grades.csv") as handle:
        grades = {(row["student_id"], row["assignment"]): row for row in csv.DictReader(handle)}
    with open(out / "report.csv") as handle:
        report = {row["student_id"]: row for row in csv.DictReader(handle) if row["assignment"] == "01_mdp"}
    return out, grades, report, run.stdout


def score(grades, student, assignment="01_mdp"):
    row = grades[(student, assignment)]
    return float(row["score"]), float(row["max_score"])


def test_reference_answers_get_full_marks(graded):
    _, grades, report, _ = graded
    assert score(grades, "alice") == (11.0, 11.0)
    assert report["alice"]["status"] == "graded"


def test_blank_release_gets_zero(graded):
    _, grades, report, _ = graded
    assert score(grades, "bob") == (0.0, 11.0)
    assert report["bob"]["status"] == "graded"


def test_one_wrong_exercise_loses_exactly_its_points(graded):
    _, grades, _, _ = graded
    assert score(grades, "carol") == (9.0, 11.0)


@pytest.mark.parametrize("chapter, notebook, wrong, carols_score, total, hint", [
    # the planning step's 2 points, no more
    ("02_model_based", "model_based", "dyna_q_planning_step", 8.0, 10.0, "move it a step alpha towards the target"),
    # the SARSA update's 1 point, no more
    ("03_q_learning", "q_learning", "sarsa_update", 9.0, 10.0, "move it a step alpha towards the target"),
    # the REINFORCE loss's 2 points, no more
    ("04_policy_gradients", "policy_gradients", "reinforce_loss", 9.0, 11.0,
     "minimise the *negative* of the objective"),
    # the group advantages' 2 points, no more
    ("05_ppo_grpo", "ppo_grpo", "group_advantages", 10.0, 12.0, "not the mean of the whole batch"),
    # the reward model's loss's 2 points, no more
    ("06_rlhf", "rlhf", "reward_model_loss", 9.0, 11.0, "chosen and rejected are swapped"),
])
def test_chapter_round_trip(graded, chapter, notebook, wrong, carols_score, total, hint):
    out, grades, _, _ = graded
    assert score(grades, "alice", chapter) == (total, total)
    assert score(grades, "bob", chapter) == (0.0, total)
    assert score(grades, "carol", chapter) == (carols_score, total)
    feedback = (out / "feedback" / "carol" / chapter / f"{notebook}.html").read_text()
    assert f"{wrong}: 0/" in feedback and hint in feedback


def test_grading_skips_only_the_unchanged_narrative_cells_the_release_tags(graded):
    out, grades, _, _ = graded
    alice = (out / "feedback" / "alice" / "03_q_learning" / "q_learning.html").read_text()
    assert "train_dqn" in alice and "evaluations: [" not in alice  # the DQN cell is there, not run
    assert "pi*(no sword, monster alive) = move back" in alice  # an untagged narrative cell ran
    carol = (out / "feedback" / "carol" / "03_q_learning" / "q_learning.html").read_text()
    # grading runs the release's narrative cells, not a student's edits of them (issue 12)
    assert "carol&#39;s own cell ran" not in carol and "carol's own cell ran" not in carol
    assert "train_dqn" in carol and "evaluations: [" not in carol
    # bob's skip tag on his test cell was dropped: the test ran and his blank answer scored nothing
    bob = (out / "feedback" / "bob" / "03_q_learning" / "q_learning.html").read_text()
    assert re.search(r"sarsa_update: 0/\d+ cases passed, 0/1 points", bob)
    assert score(grades, "bob", "03_q_learning") == (0.0, 10.0)


def test_endless_loop_costs_only_the_exercise_concerned(graded):
    _, grades, report, _ = graded
    assert score(grades, "dave") == (10.0, 11.0)
    assert "time limit" in report["dave"]["reason"] and "discounted_return" in report["dave"]["reason"]


def test_invalid_notebook_gets_zero_with_reason(graded):
    _, grades, report, _ = graded
    assert score(grades, "erin") == (0.0, 11.0)
    assert report["erin"]["status"] == "invalid" and "not a valid notebook" in report["erin"]["reason"]


def test_an_answer_breaking_the_rules_is_not_run_and_costs_only_its_points(graded):
    _, grades, report, _ = graded
    assert score(grades, "frank") == (10.0, 11.0)
    assert report["frank"]["status"] == "graded"
    assert "q_from_v: answer not run, it breaks the rules for answers" in report["frank"]["reason"]
    assert "`os`" in report["frank"]["reason"]


def test_deleted_test_cell_is_restored_and_student_py_files_are_ignored(graded):
    _, grades, _, _ = graded
    assert score(grades, "gina") == (11.0, 11.0)


def test_deleted_exercise_costs_only_its_points(graded):
    _, grades, report, _ = graded
    assert score(grades, "ivan") == (9.0, 11.0)
    assert report["ivan"]["status"] == "graded"


def test_unknown_assignment_is_reported_not_graded(graded):
    _, grades, _, stdout = graded
    assert "hal/99_unknown: no such chapter" in stdout


def test_feedback_for_every_student(graded):
    out, grades, report, _ = graded
    assert score(grades, "hal") == (0.0, 11.0)  # in the gradebook, with nothing submitted for 01_mdp
    for student in report:
        page = (out / "feedback" / student / "01_mdp" / "mdp.html").read_text()
        assert "01_mdp" in page or "mdp" in page
    assert "could not be graded" in (out / "feedback" / "erin" / "01_mdp" / "mdp.html").read_text()
    assert "value_iteration: 0/" in (out / "feedback" / "carol" / "01_mdp" / "mdp.html").read_text()


def validate(path):
    run = subprocess.run([sys.executable, "-m", "autograder", "validate", str(path), "--timeout", "20"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_validate_reports_each_exercise(submissions):
    out = validate(submissions / "carol" / "01_mdp" / "mdp.ipynb")
    assert re.search(r"^value_iteration +0 / 2$", out, flags=re.MULTILINE)
    assert re.search(r"^discounted_return +1 / 1$", out, flags=re.MULTILINE)
    assert re.search(r"^total +9 / 11$", out, flags=re.MULTILINE)
    assert "✗ AIMA 4x3 world, gamma = 1" in out


def test_validate_blank_notebook(submissions):
    out = validate(submissions / "bob" / "01_mdp" / "mdp.ipynb")
    assert "0 / 11" in out and "not implemented yet" in out


def test_validate_rejects_a_file_that_is_not_a_notebook(submissions):
    run = subprocess.run([sys.executable, "-m", "autograder", "validate",
                          str(submissions / "erin" / "01_mdp" / "mdp.ipynb")], capture_output=True, text=True)
    assert run.returncode == 2 and "not a valid notebook" in run.stderr


def test_gradebook_is_stamped_with_nbgraders_schema_version(tmp_path, monkeypatch):
    from nbgrader.api import get_alembic_version

    from autograder.course import prepare_gradebook

    db = tmp_path / "gradebook.db"
    prepare_gradebook(f"sqlite:///{db}")
    with sqlite3.connect(db) as connection:
        stamped = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    # nbgrader's own way: the `alembic heads` command, which sits beside this interpreter
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    assert stamped == [(get_alembic_version(),)]


def test_a_run_past_the_wall_clock_limit_is_stopped(tmp_path, released_nb):
    from autograder.course import CourseDirectory, find_assignments

    course = CourseDirectory(tmp_path / "course", [find_assignments()["01_mdp"]])
    course.generate_assignment("01_mdp")
    slow = nbformat.from_dict(released_nb)
    slow.cells.insert(0, nbformat.v4.new_code_cell("import time\ntime.sleep(120)"))
    write(slow, course.root / "submitted" / "sam" / "01_mdp" / "mdp.ipynb")
    start = time.monotonic()
    result = course.autograde("01_mdp", "sam", cell_timeout=300, wall_timeout=8)
    assert time.monotonic() - start < 60
    assert not result["success"] and "longer than 8 s" in result["reason"]


def test_the_instructor_guides_zip_collect_recipe_feeds_the_grader(tmp_path, source_nb, released_nb):
    """Step 2 of book/instructors.md, with its own regular expression: an LMS archive -> submitted/ -> grades."""
    guide = (ROOT / "book" / "instructors.md").read_text(encoding="utf-8")
    regexp = re.search(r"--FileNameCollectorPlugin\.named_regexp='([^']+)'", guide).group(1)
    course = tmp_path / "course"
    course.mkdir()
    run = subprocess.run([sys.executable, "-m", "autograder", "release", "--out", "release", "01_mdp"],
                         capture_output=True, text=True, cwd=course)
    assert run.returncode == 0, run.stderr
    archive = course / "downloaded" / "01_mdp" / "archive"
    archive.mkdir(parents=True)
    with zipfile.ZipFile(archive / "submissions.zip", "w") as lms:  # files named as the guide's example
        answered = fill_in(released_nb, solution_sources(source_nb))
        lms.writestr("alice_1234_5678_mdp.ipynb", nbformat.writes(answered))
        lms.writestr("bob_1235_5679_mdp.ipynb", nbformat.writes(released_nb))
    nbgrader = Path(sys.executable).parent / "nbgrader"
    run = subprocess.run([str(nbgrader), "zip_collect", "01_mdp",
                          f"--FileNameCollectorPlugin.named_regexp={regexp}"],
                         capture_output=True, text=True, cwd=course)
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.relative_to(course).as_posix() for p in (course / "submitted").rglob("*.ipynb")) == [
        "submitted/alice/01_mdp/mdp.ipynb", "submitted/bob/01_mdp/mdp.ipynb"]
    run = subprocess.run([sys.executable, "-m", "autograder", "grade", "submitted", "--out", "grading"],
                         capture_output=True, text=True, cwd=course)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(course / "grading" / "grades.csv") as handle:
        grades = {(row["student_id"], row["assignment"]): row for row in csv.DictReader(handle)}
    assert score(grades, "alice") == (11.0, 11.0) and score(grades, "bob") == (0.0, 11.0)
