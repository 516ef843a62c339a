"""The attack suite (issue 12): hostile Chapter 1 submissions, each a small notebook built from the release here.

Two grading runs. In the first, the attackers try to forge their scores, and honest students try the
structural accidents that used to cost marks (stripped metadata, duplicated cells, odd ids, huge output). In
the second, the static rules for answers are switched off (as if a student had found a hole in them), so that
every attack reaches the sandbox: the attackers try to change classmates' files and grades, leave processes
behind, plant code for later runs, exhaust resources, use the network and read the hidden tests' seed. Each
test asserts the attacker's score and reason, the other students' scores, and that nothing outside the
sandbox changed.
"""

from __future__ import annotations

import copy
import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest

from autograder import assemble
from autograder.grade import grade
from autograder.sandbox import Limits, process_limit_enforced, sandbox_status

from .notebooks import fill_in, solution_sources, tree_digest, write

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sandbox_status()[0] and os.environ.get("CI") != "true",
                                 reason=f"no sandbox here: {sandbox_status()[1]}")]

FULL = 11.0  # Chapter 1's points
MARKER = f"attack-{os.getpid()}"


def _answer(name: str, body: str, prelude: str = "") -> str:
    return f"{prelude}\ndef {name}(*args, **kwargs):\n" + "".join(f"    {line}\n" for line in body.splitlines())


# ------------------------------------------------------------------------------------------ forging the score

FORGERIES = {
    # student id: (exercise attacked, answer cell, what the reason must mention)
    "patch-check": ("discounted_return", _answer("discounted_return", "m.check_discounted_return = lambda *a, **k: 1.0\n"
                                                 "return 0.0", "import autograder.checks.mdp as m"), "autograder"),
    "patch-run-check": ("discounted_return", _answer("discounted_return", "h.run_check = lambda *a, **k: 1.0",
                                                     "from autograder.checks import _harness as h"), "autograder"),
    "patch-score-repr": ("q_from_v", _answer("q_from_v", "Score.__repr__ = lambda self: '1.0'",
                                             "from autograder.checks._harness import Score"), "autograder"),
    "patch-round": ("greedy_policy", _answer("greedy_policy", "builtins.round = lambda *a, **k: 1",
                                             "import builtins"), "builtins"),
    "interactivity": ("discounted_return", _answer("discounted_return",
                                                   "get_ipython().ast_node_interactivity = 'none'"), "get_ipython"),
    "wrap-reference": ("value_iteration", _answer("value_iteration", "return solutions.mdp.value_iteration(*args, **kwargs)",
                                                  "import solutions.mdp"), "solutions"),
    "exec-source": ("policy_iteration", _answer(
        "policy_iteration", "exec(open('/work/main/book/01_mdp/mdp.ipynb').read())"), "exec"),
    "getattr-dunder": ("q_from_v", _answer("q_from_v", "g = getattr(q_from_v, '__glob' + 'als__')\nreturn g"),
                       "getattr"),
    "frame-walk": ("q_from_v", _answer("q_from_v", "def gen():\n    yield me.gi_frame.f_back.f_back.f_locals\n"
                                       "me = gen()\nreturn next(me)"), "gi_frame"),
    "lying-object": ("q_from_v", _answer("q_from_v", "return Liar()",
                                         "class Liar:\n    def __eq__(self, other):\n        return True\n"), "__eq__"),
}


@pytest.fixture(scope="module")
def release(released_nb, source_nb):
    return released_nb, solution_sources(source_nb)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, release):
    released, answers = release
    subs = tmp_path_factory.mktemp("subs")
    honest = fill_in(released, answers)
    write(honest, subs / "honest" / "01_mdp" / "mdp.ipynb")
    write(honest, subs / "victim" / "01_mdp" / "mdp.ipynb")
    write(released, subs / "blank" / "01_mdp" / "mdp.ipynb")
    for student, (exercise, code, _) in FORGERIES.items():
        write(fill_in(released, {**answers, exercise: code}), subs / student / "01_mdp" / "mdp.ipynb")
    # structural accidents that must not cost an honest student anything
    stripped = copy.deepcopy(honest)
    for cell in stripped.cells:
        cell.metadata = {}
    write(stripped, subs / "stripped" / "01_mdp" / "mdp.ipynb")
    duplicated = copy.deepcopy(honest)
    test_cell = next(c for c in duplicated.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                     == "test_discounted_return")
    answer_cell = next(c for c in duplicated.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                       == "discounted_return")
    wrong_first = copy.deepcopy(answer_cell)
    wrong_first.source = "def discounted_return(rewards, gamma):\n    return 0.0\n"
    wrong_first.metadata = {}
    index = duplicated.cells.index(answer_cell)
    duplicated.cells[index:index] = [wrong_first]
    duplicated.cells.insert(duplicated.cells.index(test_cell) + 1, copy.deepcopy(test_cell))
    bonus = nbformat.v4.new_code_cell("100", metadata={"nbgrader": {
        "grade": True, "solution": False, "locked": False, "points": 100, "grade_id": "bonus",
        "schema_version": 3}})
    duplicated.cells.append(bonus)
    write(duplicated, subs / "duplicated" / "01_mdp" / "mdp.ipynb")
    # prints ~60 MiB from inside its answer (2 MiB a call), with every answer right
    loud = answers["discounted_return"].replace(
        "def discounted_return(rewards, gamma):",
        "def discounted_return(rewards, gamma):\n    print('x' * 2**21)", 1)
    assert loud != answers["discounted_return"]
    write(fill_in(released, {**answers, "discounted_return": loud}), subs / "loud" / "01_mdp" / "mdp.ipynb")
    for odd in ("bad id", "-dash", "...", "José"):
        write(honest, subs / odd / "01_mdp" / "mdp.ipynb")
    out = tmp_path_factory.mktemp("out1")
    before = tree_digest(subs)
    results = grade(subs, out, timeout=30, seed=11, log=lambda line: None)
    assert tree_digest(subs) == before
    return out, {(r.student_id, r.notebook): r for r in results}, _csv(out / "grades.csv"), _csv(out / "report.csv")


def _csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_honest_students_keep_full_marks(first_run):
    _, results, _, _ = first_run
    for student in ("honest", "victim", "stripped", "duplicated", "loud", "José"):
        result = results[(student, "mdp")]
        assert (result.score, result.max_score, result.status) == (FULL, FULL, "graded"), (student, result)
    assert results[("blank", "mdp")].score == 0


@pytest.mark.parametrize("student", sorted(FORGERIES))
def test_forgery_scores_zero_for_the_exercise_with_the_reason(first_run, student):
    _, results, _, _ = first_run
    exercise, _, mentioned = FORGERIES[student]
    points = {"discounted_return": 1, "q_from_v": 1, "greedy_policy": 1, "value_iteration": 2,
              "policy_iteration": 2}[exercise]
    result = results[(student, "mdp")]
    assert result.status == "graded"
    assert result.score == FULL - points, (student, result)
    assert f"{exercise}: answer not run, it breaks the rules for answers" in result.reason
    assert mentioned in result.reason, result.reason


def test_structure_changes_are_graded_on_the_answers(first_run):
    _, results, grades, _ = first_run
    assert "answer found by content" in results[("stripped", "mdp")].reason
    assert "discounted_return: defined in 2 cells; graded the answer cell" in results[("duplicated", "mdp")].reason
    row = next(r for r in grades if r["student_id"] == "duplicated")
    assert float(row["max_score"]) == FULL  # the student's own "bonus" cell is not graded


def test_every_folder_gets_a_row_bad_ids_with_the_reason(first_run):
    _, results, grades, report = first_run
    for odd, why in (("bad id", "spaces"), ("-dash", "starts with '-'"), ("...", "starts with '.'")):
        row = next(r for r in report if r["student_id"] == odd)
        assert row["status"] == "invalid" and why in row["reason"] and "rename" in row["reason"]
        assert any(r["student_id"] == odd and float(r["score"]) == 0 for r in grades)
    assert any(r["student_id"] == "José" and float(r["score"]) == FULL for r in grades)


def test_printed_output_is_truncated_and_costs_nothing(first_run):
    out, results, _, _ = first_run
    page = out / "feedback" / "loud" / "01_mdp" / "mdp.html"
    assert page.stat().st_size < 3 * 2**20
    assert "output truncated" in page.read_text(encoding="utf-8")
    assert "printed output truncated" in results[("loud", "mdp")].reason


# --------------------------------------------------------------------- the sandbox, with the rules switched off

@pytest.fixture(scope="module")
def second_run(tmp_path_factory, release):
    released, answers = release
    subs = tmp_path_factory.mktemp("subs2")
    out = tmp_path_factory.mktemp("out2")
    home = Path.home()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(1)
    port = server.getsockname()[1]
    connections = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                connections.append(server.accept())
            except OSError:
                pass

    listener = threading.Thread(target=accept, daemon=True)
    listener.start()
    victim_nb = subs / "victim" / "01_mdp" / "mdp.ipynb"
    attacks = {
        # each replaces discounted_return (1 point) by an attack, then returns nothing useful
        "overwrite-classmate": f"open({str(victim_nb)!r}, 'w').write('{{}}')",
        "gradebook-sql": ("import sqlite3, glob\n"
                          f"for db in glob.glob({str(out)!r} + '/*.db') + glob.glob('/tmp/autograder-grade-*/*.db'):\n"
                          "    sqlite3.connect(db).execute('delete from grade')"),
        "detached-writer": ("import subprocess\n"
                            f"subprocess.Popen(['sh', '-c', 'exec -a {MARKER} sh -c \"sleep 4; echo pwned > "
                            f"{out}/report.csv\"'], start_new_session=True)"),
        "pth-planter": (f"open({str(Path(sys.prefix) / 'lib' / 'python3.11' / 'site-packages' / 'zz_evil.pth')!r}, "
                        "'w').write('import os')"),
        "home-writer": f"open({str(home / ('pwned-' + MARKER))!r}, 'w').write('x')",
        "memory-hog": "block = bytearray(6 * 2**30)",
        "fork-bomb": ("import os, time\n"
                      "for _ in range(300):\n"
                      "    if os.fork() == 0:\n"
                      "        time.sleep(60)\n"
                      "        os._exit(0)"),
        "big-file": "open('/tmp/big', 'wb').write(b'0' * 2**30)",
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
        "seed-reader": ("import os\n"
                        "print('SEED=' + repr(os.environ.get('AUTOGRADER_SEED')))\n"
                        "print('ENVIRON_HAS_SEED=' + repr(b'AUTOGRADER_SEED' in open('/proc/self/environ', 'rb').read()))"),
        "kernel-killer": "import os\nos._exit(1)",
        "course-planter": ("import glob, os\n"
                           "for d in glob.glob('/tmp/autograder-*'):\n"
                           "    os.makedirs(d + '/autograded/zz/01_mdp/mdp.ipynb', exist_ok=True)"),
    }
    honest = fill_in(released, answers)
    write(honest, victim_nb)
    write(honest, subs / "zz-last-honest" / "01_mdp" / "mdp.ipynb")
    for student, attack in attacks.items():
        write(fill_in(released, {**answers, "discounted_return": _answer("discounted_return", attack + "\nraise "
                                                                         "RuntimeError('attacked')")}),
              subs / student / "01_mdp" / "mdp.ipynb")
    watched = {"submissions": subs, "home": home, "site-packages": Path(sys.prefix) / "lib"}
    before = {name: _listing(path) for name, path in watched.items()}
    allow_everything = pytest.MonkeyPatch()
    allow_everything.setattr(assemble.policy, "check_answer", _allow_everything)
    try:
        results = grade(subs, out, timeout=30, seed=12, log=lambda line: None,
                        limits=Limits(processes=64, cpu_time=300))
    finally:
        allow_everything.undo()
    report_written = (out / "report.csv").read_text(encoding="utf-8")
    time.sleep(6)  # the detached writer would have struck by now
    stop.set()
    listener.join()
    server.close()
    after = {name: _listing(path) for name, path in watched.items()}
    return out, {r.student_id: r for r in results}, before, after, report_written, connections


def _allow_everything(source):
    from autograder.policy import CheckedAnswer, defined_functions

    return CheckedAnswer(source=source, violations=(), dropped=(), defines=defined_functions(source))


def _listing(path: Path) -> dict:
    if path.name == "lib":
        return {str(p): p.stat().st_mtime for p in path.rglob("*.pth")}
    if path == Path.home():
        return {p.name: p.stat().st_mtime for p in path.iterdir()}
    return tree_digest(path)


def test_sandbox_keeps_classmates_files_grades_and_outputs_intact(second_run):
    out, results, before, after, report_written, _ = second_run
    assert before == after, "a file outside the sandbox changed"
    assert results["victim"].score == FULL and results["zz-last-honest"].score == FULL
    assert (out / "report.csv").read_text(encoding="utf-8") == report_written
    grades = {r["student_id"]: float(r["score"]) for r in _csv(out / "grades.csv")}
    assert grades["victim"] == FULL and grades["zz-last-honest"] == FULL
    for attacker in ("overwrite-classmate", "gradebook-sql", "detached-writer", "pth-planter", "home-writer",
                     "network", "course-planter"):
        assert grades[attacker] == FULL - 1, attacker  # the attacked exercise only


def test_nothing_the_students_started_is_still_running(second_run):
    survivors = subprocess.run(["pgrep", "-f", MARKER], capture_output=True, text=True).stdout.split()
    assert survivors == []


def test_no_network_and_no_seed(second_run):
    out, results, _, _, _, connections = second_run
    assert connections == []
    page = (out / "feedback" / "seed-reader" / "01_mdp" / "mdp.html").read_text(encoding="utf-8")
    assert "SEED=None" in page and "ENVIRON_HAS_SEED=False" in page


def test_a_dead_kernel_costs_that_student_alone_with_the_reason(second_run):
    _, results, _, _, _, _ = second_run
    assert results["kernel-killer"].status == "failed" and results["kernel-killer"].score == 0
    assert "kernel died" in results["kernel-killer"].reason


def test_limits_cost_the_attacker_the_exercise_with_the_reason(second_run):
    _, results, _, _, _, _ = second_run
    assert "memory limit" in results["memory-hog"].reason and results["memory-hog"].score == FULL - 1
    assert "file size limit" in results["big-file"].reason and results["big-file"].score == FULL - 1
    if process_limit_enforced():
        assert "process limit" in results["fork-bomb"].reason
    assert results["fork-bomb"].score >= FULL - 1 - 2  # the exercise, plus whatever the dead processes took


# ------------------------------------------------------------------------------------- a run that is killed

def test_a_killed_run_leaves_nothing_that_looks_complete_and_the_next_run_cleans_up(tmp_path, release):
    released, answers = release
    subs = tmp_path / "subs"
    for student in ("a", "b", "c"):
        write(fill_in(released, answers), subs / student / "01_mdp" / "mdp.ipynb")
    out, temp = tmp_path / "out", tmp_path / "temp"
    temp.mkdir()
    out.mkdir()
    (out / "report.csv").write_text("an earlier run's report\n")
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen([sys.executable, "-m", "autograder", "grade", str(subs), "--out", str(out)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in run.stdout:
        if line.startswith("grading b/"):
            break
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert not (out / "report.csv").exists() and not (out / "grades.csv").exists()
    left = list(temp.glob("autograder-grade-*"))
    assert left, "expected the killed run's folder (the next run removes it)"
    subs_2 = tmp_path / "subs2"
    write(fill_in(released, answers), subs_2 / "a" / "01_mdp" / "mdp.ipynb")
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(subs_2), "--out", str(out)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "left by an earlier run that was stopped" in done.stdout
    assert not any(p.exists() for p in left)
    assert [r["student_id"] for r in _csv(out / "report.csv")] == ["a"]
