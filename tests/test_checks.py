"""Each chapter's checks give full marks to the reference, reject known-buggy answers with the intended hint,
give 0 to the blank stub, and never write to stderr."""

import inspect

import numpy as np
import pytest

from autograder.checks import _harness
from autograder.checks._harness import student_copy
from autograder.checks import mdp as checks
from autograder.checks import model_based as checks_model_based
from autograder.checks import policy_gradients as checks_policy_gradients
from autograder.checks import ppo_grpo as checks_ppo_grpo
from autograder.checks import q_learning as checks_q_learning
from autograder.checks import rlhf as checks_rlhf
from solutions import bandits as reference_bandits
from solutions import dqn as reference_dqn
from solutions import grpo as reference_grpo
from solutions import language_model as reference_language_model
from solutions import learned_models as reference_learned_models
from solutions import mdp as reference
from solutions import model_based as reference_model_based
from solutions import policy_gradients as reference_policy_gradients
from solutions import ppo as reference_ppo
from solutions import q_learning as reference_q_learning
from solutions import rlhf as reference_rlhf

from .buggy_mdp import BUGGY
from .buggy_model_based import BUGGY as BUGGY_MODEL_BASED
from .buggy_policy_gradients import BUGGY as BUGGY_POLICY_GRADIENTS
from .buggy_ppo_grpo import BUGGY as BUGGY_PPO_GRPO
from .buggy_q_learning import BUGGY as BUGGY_Q_LEARNING
from .buggy_rlhf import BUGGY as BUGGY_RLHF

#: (chapter, its checks module, its reference modules, its known-buggy answers)
CHAPTERS = [
    ("01_mdp", checks, (reference,), BUGGY),
    ("02_model_based", checks_model_based, (reference_model_based, reference_learned_models), BUGGY_MODEL_BASED),
    ("03_q_learning", checks_q_learning, (reference_q_learning, reference_bandits, reference_dqn),
     BUGGY_Q_LEARNING),
    ("04_policy_gradients", checks_policy_gradients, (reference_policy_gradients, reference_language_model),
     BUGGY_POLICY_GRADIENTS),
    ("05_ppo_grpo", checks_ppo_grpo, (reference_ppo, reference_grpo), BUGGY_PPO_GRPO),
    ("06_rlhf", checks_rlhf, (reference_rlhf,), BUGGY_RLHF),
]
EXERCISES = [(chapter, c, r, name) for chapter, c, r, _ in CHAPTERS for name in sorted(c.POINTS)]
BUGS = [(chapter, c, *bug) for chapter, c, _, bugs in CHAPTERS for bug in bugs]


def _correct_banks():
    """Correct answers in other styles (loops, float32, torch, other idioms): tests/correct_<module>.py."""
    import importlib

    banks = []
    for chapter, checks_module, _, _ in CHAPTERS:
        module_name = checks_module.__name__.rsplit(".", 1)[-1]
        try:
            bank = importlib.import_module(f"tests.correct_{module_name}")
        except ModuleNotFoundError:
            continue
        banks += [(chapter, checks_module, name, fn) for name, fn in bank.CORRECT]
    return banks


CORRECT = _correct_banks()


@pytest.mark.parametrize("chapter, checks_module, reference_modules, name", EXERCISES,
                         ids=[f"{e[0]}-{e[3]}" for e in EXERCISES])
@pytest.mark.parametrize("hidden", [False, True])
def test_reference_gets_full_marks(chapter, checks_module, reference_modules, name, hidden, capsys, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_SEED", "12345")
    solution = next(getattr(m, name) for m in reference_modules if hasattr(m, name))
    score = getattr(checks_module, f"check_{name}")(student_copy(solution), hidden=hidden)
    out, err = capsys.readouterr()
    assert float(score) == checks_module.POINTS[name], out
    assert score.passed == score.total >= 3
    assert err == ""
    assert "✗" not in out
    # the checks' own computations (e.g. what a known mistake returns on an extreme case) may warn; only the
    # answer's warnings are reported, and the reference raises none
    assert "warning from your code" not in out


@pytest.mark.parametrize("chapter, checks_module, reference_modules, name", EXERCISES,
                         ids=[f"{e[0]}-{e[3]}" for e in EXERCISES])
def test_blank_stub_gets_zero(chapter, checks_module, reference_modules, name, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    score = getattr(checks_module, f"check_{name}")(stub)
    out, err = capsys.readouterr()
    assert float(score) == 0.0
    assert "not implemented yet" in out and err == ""


@pytest.mark.parametrize("chapter, checks_module, name, buggy, hint", BUGS,
                         ids=[f"{b[0]}-{b[2]}-{b[3].__name__}" for b in BUGS])
def test_known_bug_loses_points_with_the_intended_hint(chapter, checks_module, name, buggy, hint, capsys,
                                                       monkeypatch):
    # long enough for a slow bug that does return on a machine three times slower than a quiet one: 20,000 calls
    # of an epsilon-greedy built on rng.choice, or on a new generator per call, take about 2.4 s on a quiet 2-core
    # CPU and took 4.4 s under load (6 s was too short there); the two endless-loop bugs wait this long once each
    monkeypatch.setattr(_harness, "DEFAULT_TIME_LIMIT", 20.0)
    score = getattr(checks_module, f"check_{name}")(buggy)
    out, err = capsys.readouterr()
    assert float(score) < checks_module.POINTS[name]
    assert hint in out, out
    assert err == ""


@pytest.mark.parametrize("chapter, checks_module, name, answer", CORRECT,
                         ids=[f"{c[0]}-{c[2]}-{c[3].__name__}" for c in CORRECT])
@pytest.mark.parametrize("hidden", [False, True])
def test_a_correct_answer_in_another_style_gets_full_marks(chapter, checks_module, name, answer, hidden, capsys,
                                                           monkeypatch):
    monkeypatch.setenv("AUTOGRADER_SEED", "2468")
    score = getattr(checks_module, f"check_{name}")(answer, hidden=hidden)
    out, err = capsys.readouterr()
    assert float(score) == checks_module.POINTS[name], out
    assert err == ""


def test_reference_module_itself_is_refused(capsys):
    score = checks.check_value_iteration(reference.value_iteration)
    assert float(score) == 0.0
    assert "write your own" in capsys.readouterr().out


def test_hidden_instances_depend_on_the_seed(monkeypatch, capsys):
    seen = []
    for seed in ("1", "1", "2"):
        monkeypatch.setenv("AUTOGRADER_SEED", seed)
        calls = []

        def spy(rewards, gamma):
            calls.append((tuple(rewards), gamma))
            return reference.discounted_return(rewards, gamma)

        checks.check_discounted_return(spy, hidden=True)
        seen.append(calls)
    capsys.readouterr()
    assert seen[0] == seen[1] and seen[0] != seen[2]


def test_warnings_and_stderr_from_student_code_go_to_stdout(capsys):
    import sys
    import warnings

    honest = student_copy(reference.discounted_return)

    def noisy(rewards, gamma):
        warnings.warn("this is deprecated", DeprecationWarning)
        print("debugging output", file=sys.stderr)
        return honest(rewards, gamma)

    score = checks.check_discounted_return(noisy)
    out, err = capsys.readouterr()
    assert float(score) == 1.0 and err == ""
    assert "DeprecationWarning: this is deprecated" in out and "debugging output" in out


def test_score_combines_visible_and_hidden_cases():
    total = _harness.Score("x", 3, 4, 2.0) + _harness.Score("x", 1, 4, 2.0)
    assert (total.passed, total.total, float(total), repr(total)) == (4, 8, 1.0, "1.0")
    with pytest.raises(TypeError):
        _harness.Score("x", 1, 1, 1.0) + _harness.Score("y", 1, 1, 1.0)


def test_wrong_answers_are_partial_not_all_or_nothing(capsys):
    def half_right(mdp, V):  # right everywhere except when V holds values at terminal states
        return mdp.R + mdp.gamma * mdp.P @ V

    score = checks.check_q_from_v(half_right)
    capsys.readouterr()
    assert 0 < float(score) < 1
    assert np.isclose(float(score), round(score.passed / score.total, 2))


def test_a_later_exercise_is_checked_with_the_reference_of_the_earlier_one(capsys):
    """dyna_q_episode calls dyna_q_planning_step: a wrong planning step must not cost the episode's points."""
    from .buggy_model_based import planning_without_step_size

    namespace = {}
    source = inspect.getsource(reference_model_based.dyna_q_episode)
    exec(compile(source, "<student>", "exec"), {**vars(reference_model_based), "__name__": "__main__"}, namespace)
    episode = namespace["dyna_q_episode"]
    episode.__globals__["dyna_q_planning_step"] = planning_without_step_size
    score = checks_model_based.check_dyna_q_episode(episode)
    capsys.readouterr()
    assert float(score) == checks_model_based.POINTS["dyna_q_episode"]
    assert episode.__globals__["dyna_q_planning_step"] is planning_without_step_size  # the student's, put back


# ------------------------------------------------------------------------------------ the harness itself

def test_a_float32_answer_passes_to_its_precision_and_a_wrong_one_still_fails():
    expected = np.array([2 / 3, 1 / 3, 1e3 / 7])
    assert _harness.compare_arrays(expected.astype(np.float32), expected, atol=1e-12) is None
    import torch

    assert _harness.compare_arrays(torch.tensor(expected, dtype=torch.float32), expected, atol=1e-12) is None
    assert _harness.compare_arrays(torch.tensor(expected, requires_grad=True) * 1, expected, atol=1e-12) is None
    wrong = (expected * 1.001).astype(np.float32)
    assert _harness.compare_arrays(wrong, expected, atol=1e-12) is not None
    # float64 keeps the check's own tolerance
    assert _harness.compare_arrays(expected + 1e-10, expected, atol=1e-12) is not None


@pytest.mark.parametrize("expected, got", [(2 / 3, np.float32(2 / 3) + np.float32(1e-6)), (0.1, 0.1 + 1e-15),
                                           (np.arange(3.0), np.arange(3.0) + [0, 1e-13, 0]),
                                           (1.0, np.float32(1.0000001))])
def test_a_message_never_shows_an_expected_and_a_received_value_that_print_the_same(expected, got):
    e_text, g_text = _harness.format_pair(np.asarray(expected), np.asarray(got))
    assert e_text != g_text
    message = _harness.compare_arrays(got, expected, atol=0.0)
    if message is not None:
        numbers = [w.rstrip(",;") for w in message.replace("got", " ").split() if w[:1].isdigit()]
        assert len(set(numbers[-2:])) == 2, message


def _square_case(x, name=None):
    def run(fn):
        diagnoses = [(x + 1, "you added 1"), (2 * x, "you doubled instead of squaring")]
        return _harness.compare_arrays(fn(x), x**2, atol=1e-9, what="y", diagnoses=diagnoses)
    return _harness.Case(name or f"x = {x}", run, inputs={"x": x})


def test_a_hint_is_named_only_when_it_explains_every_failing_case(capsys):
    cases = [_square_case(2.0), _square_case(3.0), _square_case(np.array([1.0, 4.0, 5.0]))]
    _harness.run_check("square", lambda x: 2 * x, cases, 1)
    out = capsys.readouterr().out
    # 2 * 2 = 2**2 passes; the two failing cases both match "doubled"
    assert "Likely mistake: you doubled instead of squaring" in out and "added 1" not in out
    _harness.run_check("square", lambda x: x + 1 if np.ndim(x) == 0 else 2 * x, cases, 1)
    out = capsys.readouterr().out
    # x + 1 on 2.0 and 3.0, 2x on the array: no single mistake explains all three failures
    assert "Likely mistake" not in out and "added 1" not in out and "doubled" not in out
    assert "Smallest failing case, to debug: x = 2.0" in out
    assert "x = 2.0" in out and "expected y = 4" in out and "your     y = 3" in out


def test_a_coincidence_on_a_single_case_is_reported_as_such(capsys):
    cases = [_square_case(2.0), _square_case(3.0)]
    _harness.run_check("square", lambda x: x + 1 if x == 3.0 else x**2, cases, 1)
    out = capsys.readouterr().out
    assert "Likely mistake (from the one failing case): you added 1" in out


def test_the_smallest_failing_case_of_a_big_array_lists_the_entries_that_differ(capsys):
    x = np.arange(60.0).reshape(3, 4, 5)
    _harness.run_check("square", lambda x: np.where(x == 17, 0, x**2), [_square_case(x, "big")], 1)
    out = capsys.readouterr().out
    assert "1 of the 60 entries of y (shape (3, 4, 5)) differ" in out and "y[0, 3, 2]: expected 289, yours 0" in out


def test_the_entries_listed_as_differing_are_those_outside_the_checks_tolerance(capsys):
    x = np.arange(60.0).reshape(3, 4, 5)

    def run(fn):
        return _harness.compare_arrays(fn(x), x**2, atol=1e-6, what="y")

    answer = x**2 + np.where(x == 5, 1e-7, 0) + np.where(x == 17, 1.0, 0)
    _harness.run_check("square", lambda x: answer, [_harness.Case("big", run, inputs={"x": x})], 1)
    out = capsys.readouterr().out
    assert "1 of the 60 entries of y (shape (3, 4, 5)) differ" in out and "y[0, 3, 2]: expected 289, yours 290" in out


def test_a_diagnosis_matches_nan_where_the_answer_has_it_and_within_match_atol():
    expected = np.array([1.0, 2.0])
    failure = _harness.compare_arrays([np.nan, 2.0], expected, atol=1e-9, diagnoses=[([np.nan, 2.0], "divided by 0")])
    assert failure.hints == ("divided by 0",)
    loose = dict(atol=0.1, diagnoses=[([1.5, 2.0], "in place"), ([1.45, 2.0], "theta ignored")])
    assert _harness.compare_arrays([1.5, 2.0], expected, **loose).hints == ("in place", "theta ignored")
    assert _harness.compare_arrays([1.5, 2.0], expected, match_atol=1e-3, **loose).hints == ("in place",)
    widened = _harness.compare_arrays([1.5, 2.0], expected, **loose).with_hints(["other"])
    assert widened.hints == ("in place", "theta ignored", "other") and widened.tolerance == 0.1


def test_an_answer_calling_its_own_reference_scores_zero(capsys, monkeypatch):
    """Issue 12: wrapping the reference (under any alias, even catching the error it raises) earns 0 with the
    reason; calling another exercise's reference is not blocked; the reference works again afterwards."""
    import solutions.mdp as reference
    from solutions.envs import aima_4x3

    alias = reference.value_iteration

    def value_iteration(mdp, gamma=None, theta=1e-10, max_sweeps=None):
        return alias(mdp, theta=theta, max_sweeps=max_sweeps)

    score = checks.check_value_iteration(value_iteration)
    out = capsys.readouterr().out
    assert float(score) == 0
    assert f"{_harness.REFERENCE_CALLED} (`solutions.mdp.value_iteration`)" in out

    def sneaky(mdp, theta=1e-10, max_sweeps=None):
        try:
            return reference.value_iteration(mdp, theta=theta, max_sweeps=max_sweeps)
        except RuntimeError:
            return np.zeros(mdp.n_states)

    assert float(checks.check_value_iteration(sneaky)) == 0
    assert _harness.REFERENCE_CALLED in capsys.readouterr().out

    # the check still works for an honest answer, and the reference itself is intact
    assert float(checks.check_value_iteration(student_copy(reference.value_iteration))) == checks.POINTS[
        "value_iteration"]
    assert _harness.REFERENCE_CALLED not in capsys.readouterr().out
    world = aima_4x3()
    assert reference.value_iteration(world).shape == (world.n_states,)

    # an answer that uses the reference of an *earlier* exercise (q_from_v) is not refused for that
    q_from_v = reference.q_from_v

    def value_iteration_2(mdp, theta=1e-10, max_sweeps=None):
        V = np.zeros(mdp.n_states)
        sweeps = 0
        while True:
            new = np.where(mdp.terminal, 0.0, q_from_v(mdp, V).max(axis=1))
            sweeps += 1
            done = np.max(np.abs(new - V)) < theta or (max_sweeps is not None and sweeps >= max_sweeps)
            V = new
            if done:
                return V

    checks.check_value_iteration(value_iteration_2)
    assert _harness.REFERENCE_CALLED not in capsys.readouterr().out


def test_every_call_gets_private_copies_except_the_arguments_passed_as_is():
    seen = {}

    def answer(Q, s, V, rng, *, extra):
        seen.update(Q=Q, V=V, rng=rng, extra=extra)
        V[...] = -1
        Q[s] = 7.0
        return V

    # named after an exercise with a reference, so that positions map to names: q_learning_update(Q, s, ...)
    call = _harness._with_private_copies(answer, "q_learning_update", passed_as_is=("Q",))
    Q, V, rng, extra = np.zeros(3), np.ones(2), np.random.default_rng(0), [1, 2]
    V.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):  # a read-only input stays read-only in the copy
        call(Q, 1, V, rng, extra=extra)
    assert seen["Q"] is Q and seen["rng"] is rng  # in place by the statement; stateful
    assert seen["V"] is not V and seen["extra"] is not extra and seen["extra"] == extra
    assert Q[1] == 0.0  # the failure came first
    V.flags.writeable = True
    returned = call(Q, 1, V, rng, extra=extra)
    assert Q[1] == 7.0 and np.array_equal(V, [1.0, 1.0]) and np.array_equal(returned, [-1.0, -1.0])


def test_a_tabular_mdp_copy_has_read_only_arrays_of_its_own():
    import copy

    from solutions.envs.gridworlds import aima_4x3

    mdp = aima_4x3()
    twin = copy.deepcopy(mdp)
    for name in ("P", "R", "terminal", "initial"):
        original, copied = getattr(mdp, name), getattr(twin, name)
        assert copied is not original and not np.shares_memory(copied, original)
        assert np.array_equal(copied, original) and not copied.flags.writeable
    assert (twin.gamma, twin.state_names, twin.layout) == (mdp.gamma, mdp.state_names, mdp.layout)
