"""Chapter 1's checks on what tests/test_checks.py does not reach: a policy iteration that loops forever on an
improper starting policy gets a hint naming the problem, and the cases added for the statements' requirements
(theta, max_sweeps = 0, pi0, gamma = 1) fail the answers that ignore them."""

import numpy as np
import pytest

from autograder.checks import _harness
from autograder.checks import mdp as checks
from autograder.checks._harness import student_copy
from solutions import mdp as reference

from .buggy_mdp import evaluation_ignores_theta

# the reference as a student's own function (the checks block the reference itself while an answer runs)
_policy_evaluation = student_copy(reference.policy_evaluation)


def policy_iteration_with_its_own_sweeps(mdp, pi0=None):
    """A student's policy iteration with the evaluation written inline: it sweeps an improper policy forever."""
    policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    while True:
        V = np.zeros(mdp.n_states)
        while True:
            V_new = mdp.R[np.arange(mdp.n_states), policy] + mdp.gamma * mdp.P[np.arange(mdp.n_states), policy] @ V
            if np.max(np.abs(V_new - V)) < 1e-10:
                break
            V = V_new
        Q = mdp.R + mdp.gamma * mdp.P @ V
        improve = Q.max(axis=1) > Q[np.arange(mdp.n_states), policy] + 1e-9
        if not improve.any():
            return policy, V
        policy = np.where(improve, np.argmax(Q, axis=1), policy)


def test_a_policy_iteration_that_loops_on_an_improper_start_is_stopped_with_a_hint(monkeypatch, capsys):
    monkeypatch.setattr(_harness, "DEFAULT_TIME_LIMIT", 1.0)
    score = checks.check_policy_iteration(policy_iteration_with_its_own_sweeps)
    out, err = capsys.readouterr()
    assert err == ""
    improper = [line for line in out.splitlines() if "improper" in line and "✗" in line]
    assert len(improper) == 2, out
    assert all("did not return in time" in line for line in improper)
    assert "Likely mistake" in out and "first check that the starting policy is proper" in out
    assert "skipped" not in out  # the time-out of one case does not cost the others
    assert score.passed == score.total - 2


def test_the_improper_cases_are_seen_in_hidden_runs_too(monkeypatch, capsys):
    monkeypatch.setenv("AUTOGRADER_SEED", "31")

    def no_check(mdp, pi0=None):  # the reference's loop without its check of the start
        policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
        while True:
            V = reference.policy_evaluation(mdp, reference.deterministic_to_stochastic(mdp, policy))
            Q = reference.q_from_v(mdp, V)
            improve = Q.max(axis=1) > Q[np.arange(mdp.n_states), policy] + 1e-9
            if not improve.any():
                return policy, V
            policy = np.where(improve, np.argmax(Q, axis=1), policy)

    monkeypatch.setattr(_harness, "DEFAULT_TIME_LIMIT", 0.5)
    score = checks.check_policy_iteration(no_check, hidden=True)
    out = capsys.readouterr().out
    assert score.passed == score.total - 1, out
    failed = next(line for line in out.splitlines() if "✗" in line)
    assert "pi0 caught in a loop" in failed and "did not return in time" in failed
    assert "Likely mistake" in out and "first check that the starting policy is proper" in out


@pytest.mark.parametrize("seed", ["1", "2", "3"])
def test_hidden_gamma_1_instances_are_solvable_and_their_pi0_is_improper(seed, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_SEED", seed)
    rng = _harness.hidden_rng()
    mdp = checks._gamma_1_random_instance(rng)
    policy, V = reference.policy_iteration(mdp)
    assert np.allclose(V, reference.value_iteration(mdp), atol=1e-8)
    mdp, pi0 = checks._improper_random_instance(rng)
    assert not reference.is_proper(mdp, reference.deterministic_to_stochastic(mdp, pi0))
    assert np.all(mdp.R[~mdp.terminal] < 0)  # improper policies cost -infinity: a stochastic shortest path problem


def test_the_theta_case_accepts_one_sweep_more_or_less(capsys):
    def one_sweep_late(mdp, pi, theta=1e-10, max_sweeps=None):
        V = _policy_evaluation(mdp, pi, theta=theta, max_sweeps=max_sweeps)
        return V if max_sweeps is not None else reference.bellman_expectation_backup(mdp, pi, V)

    assert float(checks.check_policy_evaluation(one_sweep_late)) == checks.POINTS["policy_evaluation"]
    assert float(checks.check_policy_evaluation(evaluation_ignores_theta)) < checks.POINTS["policy_evaluation"]
    capsys.readouterr()
