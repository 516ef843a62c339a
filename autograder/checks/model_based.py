"""Checks for Chapter 2 (model-based RL and Dyna).

Each ``check_<exercise>(fn, hidden=False)`` runs the student's ``fn`` on the lecture's example and on fixed
random streams of transitions, compares it with the reference in :mod:`solutions.model_based`, prints one
line per case and returns a :class:`~autograder.checks._harness.Score`. ``hidden=True`` runs only instances
drawn from :func:`~autograder.checks._harness.hidden_rng`.

Stochastic exercises (Dyna-Q) are compared with the reference on the same random stream: their statements say
in which order the random numbers are drawn. How a wrong answer is explained (issue 11): every case computes,
on its own inputs, what the common mistakes of the exercise produce (the ``_bug_*`` functions) and hands them to
the harness as diagnoses; a hint is printed only when it explains every failing case, otherwise the harness
shows the smallest failing case with its inputs and the expected and received values side by side.
"""

from __future__ import annotations

import contextlib
import copy

import gymnasium
import numpy as np
import torch
from gymnasium.wrappers import TimeLimit

from solutions import model_based as ref
from solutions.envs import TabularMDPEnv, aima_4x3, dyna_maze, random_mdp
from solutions.envs.continuous import transition
from solutions.learned_models import DynamicsModel, model_gradient_step, one_hot
from solutions.q_learning import epsilon_greedy, q_learning_update

from ._harness import (
    Case,
    CheckTimeout,
    Failure,
    Score,
    as_float_array,
    compare_arrays,
    hidden_rng,
    precision_tolerance,
    run_check,
)

__all__ = [
    "POINTS",
    "check_certainty_equivalent_q",
    "check_dyna_q_episode",
    "check_dyna_q_planning_step",
    "check_ml_transition_model",
    "check_model_gradient_step",
    "check_update_model",
]

#: Points of each exercise; the test cells' nbgrader metadata must agree (a test checks it).
POINTS = {
    "update_model": 1,
    "ml_transition_model": 1,
    "certainty_equivalent_q": 2,
    "dyna_q_planning_step": 2,
    "dyna_q_episode": 2,
    "model_gradient_step": 2,
}

_HINT_TERMINAL = ("you bootstrapped from a terminal state: when the next state is terminal the target is the "
                  "reward alone (a terminal state is worth 0)")


#: Earlier exercises that later ones call: while a later one is checked they are the reference, so that one
#: mistake costs the points of one exercise only.
_HELPERS = {
    "certainty_equivalent_q": {"ml_transition_model": ref.ml_transition_model},
    "dyna_q_episode": {"dyna_q_planning_step": ref.dyna_q_planning_step},
}


#: The arguments each exercise gets as they are (see ``run_check``): those it updates in place, and those whose
#: change its cases report ("n or R_hat was changed"); every other argument is a private copy per call.
_PASSED_AS_IS = {
    "update_model": ("n", "R_hat"),
    "ml_transition_model": ("n",),
    "certainty_equivalent_q": ("n", "R_hat"),
    "dyna_q_planning_step": ("Q", "model"),
    "dyna_q_episode": ("Q", "model"),
    "model_gradient_step": ("states", "actions", "next_states"),
}


def _scored(name: str, fn, cases: list[Case]) -> Score:
    return run_check(name, fn, cases, POINTS[name], helpers=_HELPERS.get(name),
                     passed_as_is=_PASSED_AS_IS.get(name, ()))


def _lecture():
    """The lecture's three 4x3-world trajectories: (world, transitions)."""
    world = aima_4x3()
    return world, ref.lecture_transitions(world)


def _same_error(bug, args, exc: Exception) -> bool:
    """Whether ``bug(*args)`` raises the same exception (type and message) as the student's code did."""
    try:
        bug(*args)
    except CheckTimeout:
        raise
    except Exception as bug_exc:  # noqa: BLE001 -- comparing errors
        broadcast = "could not be broadcast"
        return type(bug_exc) is type(exc) and (str(bug_exc) == str(exc) or (
            broadcast in str(bug_exc) and broadcast in str(exc)))
    return False


def _raised(exc: Exception, hints, expected=None) -> Failure:
    """The message the harness gives an error, as a Failure with the hints of the mistakes that raise it too."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    text = text if len(text) <= 200 else text[:199] + "…"
    return Failure(f"raised {text}", hints=hints, expected=expected, got=text, what="result")


def _random_stream(rng: np.random.Generator, n_states: int, n_actions: int, length: int) -> list:
    """Random transitions (s, a, r, s') with stochastic rewards, visiting some pairs often and others never."""
    used = rng.random((n_states, n_actions)) < 0.6
    used[0, 0] = True
    pairs = np.argwhere(used)
    stream = []
    for _ in range(length):
        s, a = pairs[rng.integers(len(pairs))]
        stream.append((int(s), int(a), float(np.round(rng.normal(), 3)), int(rng.integers(n_states))))
    return stream


# ------------------------------------------------------------------------------------------------- update model

def _bug_divide_before_increment(n, R_hat, s, a, r, s_next):
    n_sa = max(n[s, a].sum(), 1)
    R_hat[s, a] = (r + (n_sa - 1) * R_hat[s, a]) / n_sa
    n[s, a, s_next] += 1


def _bug_step_by_old_count(n, R_hat, s, a, r, s_next):
    """The incremental form with the count before this transition: 1/0 at a pair's first transition."""
    R_hat[s, a] += (r - R_hat[s, a]) / n[s, a].sum()
    n[s, a, s_next] += 1


def _bug_mean_by_old_count(n, R_hat, s, a, r, s_next):
    n_sa = n[s, a].sum()
    R_hat[s, a] = (r + (n_sa - 1) * R_hat[s, a]) / n_sa
    n[s, a, s_next] += 1


def _bug_count_of_next_state(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    count = n[s, a, s_next]
    R_hat[s, a] = (r + (count - 1) * R_hat[s, a]) / count


def _bug_last_reward(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] = r


def _bug_reward_sum(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] += r


def _bug_count_plus_one(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] += (r - R_hat[s, a]) / (n[s, a].sum() + 1)


def _bug_old_mean_weight_n(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    n_sa = n[s, a].sum()
    R_hat[s, a] = (r + n_sa * R_hat[s, a]) / n_sa


def _bug_total_count(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] += (r - R_hat[s, a]) / n.sum()


def _bug_state_count(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] += (r - R_hat[s, a]) / n[s].sum()


def _bug_constant_step(alpha):
    def update(n, R_hat, s, a, r, s_next):
        n[s, a, s_next] += 1
        R_hat[s, a] += alpha * (r - R_hat[s, a])
    return update


def _bug_count_swapped(n, R_hat, s, a, r, s_next):
    n[s_next, a, s] += 1
    n_sa = n[s, a].sum()
    if n_sa:
        R_hat[s, a] += (r - R_hat[s, a]) / n_sa


def _bug_count_every_next_state(n, R_hat, s, a, r, s_next):
    n[s, a, :] += 1


_HINT_DIVIDED_FIRST = ("you divided by n(s, a) before counting this transition: increment n[s, a, s_next] first, "
                       "then n(s, a) includes it")
_UPDATE_R_BUGS = [
    (_bug_divide_before_increment, _HINT_DIVIDED_FIRST),
    (_bug_step_by_old_count, _HINT_DIVIDED_FIRST),
    (_bug_mean_by_old_count, _HINT_DIVIDED_FIRST),
    (_bug_count_of_next_state, "you averaged with n(s, a, s') as the count: the mean reward of (s, a) uses "
                               "n(s, a), the sum of n[s, a, :] over all next states"),
    (_bug_last_reward, "R_hat holds the last reward seen, not the mean of all rewards seen after (s, a)"),
    (_bug_reward_sum, "R_hat holds the sum of the rewards seen after (s, a): divide by n(s, a) to keep their "
                      "mean"),
    (_bug_count_plus_one, "you divided by n(s, a) + 1: once n[s, a, s_next] has been incremented, n(s, a) already "
                          "counts this transition"),
    (_bug_old_mean_weight_n, "the old mean must be weighted by n(s, a) - 1, the number of rewards it averages, "
                             "not by n(s, a): R_hat <- (r + (n(s, a) - 1) R_hat) / n(s, a)"),
    (_bug_total_count, "you divided by n.sum(), the count of every transition seen: the mean of (s, a) uses "
                       "n(s, a) = n[s, a].sum()"),
    (_bug_state_count, "you divided by n[s].sum(), the count of every action tried in s: the mean of (s, a) uses "
                       "n(s, a) = n[s, a].sum()"),
    (_bug_constant_step(0.1), "R_hat moves a constant step towards each reward (an exponential average): step by "
                              "1 / n(s, a) so that it stays the plain mean"),
    (_bug_constant_step(0.5), "R_hat moves a constant step towards each reward (an exponential average): step by "
                              "1 / n(s, a) so that it stays the plain mean"),
]
_UPDATE_N_BUGS = [
    (_bug_count_swapped, "you counted n[s_next, a, s]: the index order is n[s, a, s_next]"),
    (_bug_count_every_next_state, "you added 1 to every count n[s, a, :]: add 1 to n[s, a, s_next] only"),
]


def _replay(update, stream, n_states, n_actions, start=None):
    """Feed ``stream`` to ``update``, from empty arrays or from copies of ``start = (n, R_hat)``."""
    if start is None:
        n = np.zeros((n_states, n_actions, n_states), dtype=np.int64)
        R_hat = np.zeros((n_states, n_actions))
    else:
        n, R_hat = start[0].copy(), start[1].copy()
    results = [update(n, R_hat, s, a, r, s_next) for s, a, r, s_next in stream]
    return n, R_hat, results


def _replay_bug(update, stream, n_states, n_actions, start=None):
    """:func:`_replay` for a known-buggy variant (its 1/0 stays quiet)."""
    with np.errstate(all="ignore"):
        return _replay(update, stream, n_states, n_actions, start)


def _update_case(name, stream, n_states, n_actions, start=None, start_label="") -> Case:
    """``start = (n, R_hat)``: arrays that already hold data, described by ``start_label`` (else zeros)."""
    arrays = ("zeros" if start is None else start_label) + (
        f", shapes ({n_states}, {n_actions}, {n_states}) (int) and ({n_states}, {n_actions})")

    def run(fn):
        n, R_hat, results = _replay(fn, stream, n_states, n_actions, start)
        expected_n, expected_R, _ = _replay(ref.update_model, stream, n_states, n_actions, start)
        n0 = np.zeros_like(n) if start is None else start[0]
        R0 = np.zeros_like(R_hat) if start is None else start[1]
        n_same, R_same = np.array_equal(n, n0), np.array_equal(R_hat, R0)
        if n_same and R_same:
            returned = any(r is not None for r in results)
            note = " (your function returned a value instead)" if returned else ""
            return (f"n and R_hat were not changed{note}: update the arrays passed in, in place "
                    "(n[s, a, s_next] += 1, R_hat[s, a] = ...)")
        if n_same:
            return "the counts n were not changed: add 1 to n[s, a, s_next], in place"
        problem = compare_arrays(n, expected_n, atol=0, what="the counts n", diagnoses=[
            (_replay_bug(bug, stream, n_states, n_actions, start)[0], hint) for bug, hint in _UPDATE_N_BUGS])
        if problem:
            return problem
        diagnoses = [(_replay_bug(bug, stream, n_states, n_actions, start)[1], hint)
                     for bug, hint in _UPDATE_R_BUGS]
        # R_hat is float64, but the arithmetic that filled it may have been float32: judged to that precision
        atol = precision_tolerance(np.float32, expected_R, 1e-9)
        return compare_arrays(R_hat, expected_R, atol=atol, what="R_hat", diagnoses=diagnoses)

    return Case(name, run, inputs={"n, R_hat": arrays, "(s, a, r, s_next) of each call, in order": stream},
                size=len(stream))


def check_update_model(fn, hidden: bool = False) -> Score:
    """Check ``update_model(n, R_hat, s, a, r, s_next) -> None`` (in place)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(3, 8)), int(rng.integers(2, 5))
            cases.append(_update_case(f"random stream #{i + 1} ({S} states, {A} actions)",
                                      _random_stream(rng, S, A, int(rng.integers(20, 200))), S, A))
        S, A = int(rng.integers(3, 6)), int(rng.integers(2, 4))
        start = ref.counts_from_transitions(_random_stream(rng, S, A, 40), S, A)
        cases.append(_update_case(f"random stream #4 added to arrays that already hold data ({S} states, {A} "
                                  "actions)", _random_stream(rng, S, A, int(rng.integers(5, 30))), S, A, start,
                                  "the counts and mean rewards of 40 earlier random transitions"))
        return _scored("update_model", fn, cases)
    world, transitions = _lecture()
    rng = np.random.default_rng(7)
    cases = [
        _update_case("the lecture's three trajectories in the 4x3 world", transitions, world.n_states,
                     world.n_actions),
        _update_case("one pair seen three times with rewards 1, 2, 6 (mean 3)",
                     [(0, 1, 1.0, 1), (0, 1, 2.0, 0), (0, 1, 6.0, 1)], 2, 2),
        _update_case("150 random transitions with noisy rewards", _random_stream(rng, 5, 3, 150), 5, 3),
        _update_case("four more transitions added to the lecture's counts and rewards (the arrays already hold "
                     "data)", [(s, a, r + 0.5, s_next) for s, a, r, s_next in transitions[:4]], world.n_states,
                     world.n_actions, ref.counts_from_transitions(transitions, world.n_states, world.n_actions),
                     "the lecture's counts and mean rewards"),
    ]
    return _scored("update_model", fn, cases)


# ------------------------------------------------------------------------------------------ ML transition model

def _random_counts(rng: np.random.Generator, n_states: int, n_actions: int) -> np.ndarray:
    n = rng.integers(0, 4, size=(n_states, n_actions, n_states)) * (rng.random((n_states, n_actions, 1)) < 0.7)
    n[0, 0, 0] += 1
    return n.astype(np.int64)


def _bug_ml_axis(axis):
    def model(n):
        totals = n.sum(axis=axis, keepdims=True)
        return np.divide(n, totals, out=np.zeros(n.shape), where=totals > 0)
    return model


def _bug_ml_uniform_unseen(n):
    n_sa = n.sum(axis=2, keepdims=True)
    return np.where(n_sa > 0, n / np.where(n_sa > 0, n_sa, 1), 1.0 / n.shape[2])


def _bug_ml_integer_division(n):
    n_sa = n.sum(axis=2, keepdims=True)
    return n // np.maximum(n_sa, 1)


def _bug_ml_total(n):
    return n / max(n.sum(), 1)


def _bug_ml_laplace(n):
    return (n + 1) / (n.sum(axis=2, keepdims=True) + n.shape[2])


def _bug_ml_no_keepdims(n):
    """``n.sum(axis=2)`` without keepdims: lines up (S, A) with the last two axes, or raises when A != S."""
    n_sa = n.sum(axis=2)
    return np.divide(n, n_sa, out=np.zeros(n.shape), where=n_sa > 0)


_HINT_WRONG_AXIS = ("you normalised over the wrong axis: divide n[s, a, s'] by n(s, a), the sum over the next "
                    "states s' (the last axis)")
_HINT_KEEPDIMS = ("n.sum(axis=2) has shape (S, A) and lines up with the wrong axes of n: keep the summed axis "
                  "(n.sum(axis=2, keepdims=True), or n_sa[:, :, None]) so that each row n[s, a, :] is divided by "
                  "its own n(s, a)")
_ML_BUGS = [
    (_bug_ml_axis(0), _HINT_WRONG_AXIS),
    (_bug_ml_axis(1), _HINT_WRONG_AXIS),
    (_bug_ml_uniform_unseen, "rows of pairs never tried must be all zeros (no data), not uniform"),
    (_bug_ml_integer_division, "you used integer division (//), which rounds every probability down to 0 or 1: "
                               "divide with /"),
    (_bug_ml_total, "you divided by n.sum(), the count of every transition: divide each row n[s, a, :] by its own "
                    "n(s, a)"),
    (_bug_ml_laplace, "you smoothed the counts (add-one): the maximum-likelihood estimate is n(s, a, s') / "
                      "n(s, a), with no pseudo-counts, and all zeros for a pair never tried"),
    (_bug_ml_no_keepdims, _HINT_KEEPDIMS),
]


def _ml_diagnoses(n, select=lambda P: P):
    """The buggy models of ``n`` (those that return a value), restricted by ``select``."""
    diagnoses = []
    for bug, hint in _ML_BUGS:
        try:
            with np.errstate(all="ignore"):
                diagnoses.append((select(bug(n)), hint))
        except (ValueError, IndexError):
            pass
    return diagnoses


def _call_ml(fn, n):
    """``(fn(n), None)``, or ``(None, Failure)`` for an error that a known mistake raises too (others raise)."""
    try:
        return fn(n), None
    except (ValueError, IndexError, RuntimeError) as exc:
        hints = [hint for bug, hint in _ML_BUGS if _same_error(bug, (n.copy(),), exc)]
        if hints:
            return None, _raised(exc, hints, expected=ref.ml_transition_model(n))
        raise


def _model_case(name, n) -> Case:
    def run(fn):
        n_copy = n.copy()
        got, error = _call_ml(fn, n_copy)
        if error:
            return error
        if not np.array_equal(n_copy, n):
            return "the counts n were changed: compute P_hat from them without modifying them"
        try:
            got_arr = as_float_array(got)
        except (TypeError, ValueError, AttributeError):
            got_arr = None
        if got_arr is not None and got_arr.shape == n.shape and np.isnan(got_arr).any():
            return ("P_hat holds NaN: a pair never tried has n(s, a) = 0; its row must be all zeros, not 0 / 0 "
                    "(np.divide(..., where=n_sa > 0) or a mask)")
        return compare_arrays(got, ref.ml_transition_model(n), atol=1e-12, what="P_hat",
                              diagnoses=_ml_diagnoses(n))

    return Case(name, run, inputs={"n": n})


def _lecture_probability_case() -> Case:
    world, transitions = _lecture()
    n, _ = ref.counts_from_transitions(transitions, world.n_states, world.n_actions)
    names, actions = list(world.state_names), list(world.action_names)
    s, a = names.index("(1,3)"), actions.index("right")
    entries = [names.index("(2,3)"), names.index("(1,2)")]

    def select(P):
        return np.asarray(P)[s, a, entries]

    def run(fn):
        got, error = _call_ml(fn, n.copy())
        if error:
            return error
        try:
            P_hat = as_float_array(got)
        except (TypeError, ValueError, AttributeError):
            return f"P_hat should be an array of shape {n.shape}; got {type(got).__name__}"
        if P_hat.shape != n.shape:
            return f"P_hat should have shape {n.shape}; got shape {P_hat.shape}"
        return compare_arrays(select(P_hat), [2 / 3, 1 / 3], atol=1e-12,
                              what="[P_hat((2,3) | (1,3), right), P_hat((1,2) | (1,3), right)]",
                              diagnoses=_ml_diagnoses(n, select))

    return Case("the lecture: P_hat((2,3) | (1,3), right) = 2/3, P_hat((1,2) | (1,3), right) = 1/3", run,
                inputs={"n": f"the lecture's counts, shape {n.shape}: (1,3), right was tried 3 times, twice to "
                             "(2,3), once to (1,2)"}, size=3)


def check_ml_transition_model(fn, hidden: bool = False) -> Score:
    """Check ``ml_transition_model(n) -> P_hat`` of shape (S, A, S)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(2, 8)), int(rng.integers(1, 5))
            cases.append(_model_case(f"random counts #{i + 1} ({S} states, {A} actions)",
                                     _random_counts(rng, S, A)))
        S = int(rng.integers(2, 6))
        cases.append(_model_case(f"random counts #4 ({S} states, {S} actions)", _random_counts(rng, S, S)))
        return _scored("ml_transition_model", fn, cases)
    world, transitions = _lecture()
    n, _ = ref.counts_from_transitions(transitions, world.n_states, world.n_actions)
    cases = [
        _lecture_probability_case(),
        _model_case("the lecture's counts (most pairs never tried)", n),
        _model_case("random counts, 6 states, 3 actions", _random_counts(np.random.default_rng(3), 6, 3)),
        _model_case("random counts, 3 states, 3 actions (as many actions as states)",
                    _random_counts(np.random.default_rng(4), 3, 3)),
    ]
    return _scored("ml_transition_model", fn, cases)


# --------------------------------------------------------------------------------------- certainty equivalence

def _ce_sweeps(n, R_hat, gamma, terminal, theta=1e-10, *, values_rule="tried", terminal_zero=True, in_place=False,
               previous=False, max_sweeps=100_000):
    """Value iteration on the tried pairs like the reference, with the variants students write.

    ``values_rule``: V(s') is the max over the tried actions (``"tried"``, right), over all actions, untried ones
    at Q = 0 (``"all"``), or the mean over the tried ones (``"mean"``). ``terminal_zero``: V = 0 at terminal
    states. ``in_place``: Gauss-Seidel sweeps (each new Q(s, a) is used at once). ``previous``: return the
    iterate before the last sweep (a reading of "stop when no entry changes by more than theta" as good as the
    reference's).
    """
    P_hat = ref.ml_transition_model(n)
    seen = n.sum(axis=2) > 0
    terminal = np.asarray(terminal, dtype=bool)
    Q = np.zeros(R_hat.shape)

    def values(Q):
        if values_rule == "all":
            V = Q.max(axis=1)
        elif values_rule == "mean":
            V = (Q * seen).sum(axis=1) / np.maximum(seen.sum(axis=1), 1)
        else:
            V = np.where(seen, Q, -np.inf).max(axis=1)
            V[~seen.any(axis=1)] = 0.0
        if terminal_zero:
            V[terminal] = 0.0
        return V

    for _ in range(max_sweeps):
        if in_place:
            Q_new = Q.copy()
            for s, a in np.argwhere(seen):
                Q_new[s, a] = R_hat[s, a] + gamma * P_hat[s, a] @ values(Q_new)
        else:
            Q_new = np.where(seen, R_hat + gamma * P_hat @ values(Q), 0.0)
        if np.max(np.abs(Q_new - Q), initial=0.0) < theta:
            return Q if previous else Q_new
        Q = Q_new
    return Q


_HINT_IGNORED_THETA = ("you ignored theta: sweep until no entry of Q changes by more than the theta passed in, "
                       "not to a threshold or a number of sweeps of your own")
_HINT_GAUSS_SEIDEL = ("you updated Q in place during a sweep (Gauss-Seidel): sweeps must be synchronous, every "
                      "new Q(s, a) computed from the previous sweep's values")
_CE_BUGS = [  # (keyword arguments of _ce_sweeps, hint), for every case
    ({"values_rule": "all"}, "V(s') took the max over every action, including pairs never tried (Q = 0 there): "
                             "the model knows nothing about them, so take the max over the tried actions only"),
    ({"terminal_zero": False}, _HINT_TERMINAL.replace(
        "when the next state is terminal the target is the reward alone", "V(s') = 0 for terminal s'")),
    ({"values_rule": "mean"}, "V(s') is the largest Q(s', a') over the tried actions, not their mean"),
]
_CE_THETA_BUGS = [  # and for the cases with a coarse theta
    ({"in_place": True}, _HINT_GAUSS_SEIDEL),
]


def _ce_case(name, n, R_hat, gamma, terminal, theta=None) -> Case:
    """With ``theta`` the student's function is called with that stopping threshold (else its default)."""
    terminal = np.asarray(terminal, dtype=bool)

    def run(fn):
        n_copy, R_copy = n.copy(), R_hat.copy()
        extra = {} if theta is None else {"theta": theta}
        got = fn(n_copy, R_copy, gamma, terminal.copy(), **extra)
        if not (np.array_equal(n_copy, n) and np.array_equal(R_copy, R_hat)):
            return "n or R_hat was changed: planning must leave the data alone"
        at = 1e-10 if theta is None else theta
        atol = 1e-6 if theta is None else 1e-9
        expected = ref.certainty_equivalent_q(n, R_hat, gamma, terminal, at)
        # as good as the reference: the iterate before the last sweep, and zeros in the rows of terminal states
        # (never used: V = 0 there)
        accepted = [expected, _ce_sweeps(n, R_hat, gamma, terminal, at, previous=True)]
        accepted += [np.where(terminal[:, None], 0.0, Q) for Q in accepted]
        if any(compare_arrays(got, Q, atol=atol) is None for Q in accepted):
            return None
        variants = _CE_BUGS + (_CE_THETA_BUGS if theta is not None else [])
        diagnoses = [(_ce_sweeps(n, R_hat, gamma, terminal, at, previous=previous, **kwargs), hint)
                     for kwargs, hint in variants for previous in (False, True)]
        if theta is not None:
            diagnoses.append((ref.certainty_equivalent_q(n, R_hat, gamma, terminal), _HINT_IGNORED_THETA))
        diagnoses += [(np.where(terminal[:, None], 0.0, Q), hint) for Q, hint in diagnoses]  # either style
        V = np.where(n.sum(axis=2) > 0, expected, -np.inf).max(axis=1)
        V[~(n.sum(axis=2) > 0).any(axis=1) | terminal] = 0.0
        diagnoses += [
            (V, "you returned V(s), shape (S,): return the (S, A) array of action values Q"),
            (np.where(n.sum(axis=2) > 0, expected, -np.inf),
             "pairs never tried must keep Q = 0: leave them out of the max, but do not store -inf in Q"),
        ]
        return compare_arrays(got, expected, atol=atol, what="Q", diagnoses=diagnoses)

    inputs = {"n": n, "R_hat": R_hat, "gamma": gamma, "terminal": terminal}
    if theta is not None:
        inputs["theta"] = theta
    return Case(name, run, inputs=inputs)


def _random_ce_instance(rng: np.random.Generator):
    S, A = int(rng.integers(3, 8)), int(rng.integers(2, 4))
    n = _random_counts(rng, S, A)
    R_hat = np.where(n.sum(axis=2) > 0, np.round(rng.normal(-0.5, 1.0, size=(S, A)), 3), 0.0)
    terminal = np.zeros(S, dtype=bool)
    terminal[rng.choice(S, size=int(rng.integers(1, 3)), replace=False)] = True
    n[terminal, 0, :] += 1  # data "from" a terminal state: it must still be worth 0
    R_hat[terminal, 0] = 1.0
    return n, R_hat, float(rng.uniform(0.5, 0.95)), terminal


def check_certainty_equivalent_q(fn, hidden: bool = False) -> Score:
    """Check ``certainty_equivalent_q(n, R_hat, gamma, terminal, theta=1e-10) -> Q`` of shape (S, A).

    The student's function runs with the reference ``ml_transition_model``.
    """
    if hidden:
        rng = hidden_rng()
        cases = [_ce_case(f"random data #{i + 1}", *_random_ce_instance(rng)) for i in range(3)]
        cases.append(_ce_case("random data #4, stopping at theta = 0.01", *_random_ce_instance(rng), theta=0.01))
        return _scored("certainty_equivalent_q", fn, cases)
    world, transitions = _lecture()
    n, R_hat = ref.counts_from_transitions(transitions, world.n_states, world.n_actions)
    cases = [
        _ce_case("the lecture's data, gamma = 0.9", n, R_hat, 0.9, world.terminal),
        _ce_case("the lecture's data, gamma = 0.99", n, R_hat, 0.99, world.terminal),
        _ce_case("the lecture's data, gamma = 0 (Q = R_hat on the tried pairs)", n, R_hat, 0.0, world.terminal),
        _ce_case("random data with a terminal state that has data",
                 *_random_ce_instance(np.random.default_rng(11))),
        _ce_case("the lecture's data, gamma = 0.9, stopping at theta = 0.05 (a few synchronous sweeps)", n, R_hat,
                 0.9, world.terminal, theta=0.05),
        _ce_case("random data, stopping at theta = 0.01", *_random_ce_instance(np.random.default_rng(12)),
                 theta=0.01),
    ]
    return _scored("certainty_equivalent_q", fn, cases)


# ---------------------------------------------------------------------------------------- Dyna-Q planning step

def _planning_update(s, a, alpha, gamma, *, target_from="s_next", use_gamma=True, terminal_rule="right",
                     value="max", step="alpha"):
    """One Q-learning update of Q[s, a] from the model's transition, right or with a known mistake."""

    def update(Q, model):
        r, s_next, terminated = model[(s, a)]
        row = Q[s_next] if target_from == "s_next" else Q[s]
        v = np.max(row) if value == "max" else np.mean(row)
        discount = gamma if use_gamma else 1.0
        bootstrap = {"right": not terminated, "always": True, "inverted": bool(terminated)}[terminal_rule]
        target = r + discount * v if bootstrap else r
        Q[s, a] = target if step == "replace" else Q[s, a] + alpha * (target - Q[s, a])

    return update


def _planning_variant(draw="pairs", **update_kwargs):
    """A planning step that draws its pair as ``draw`` says and updates as :func:`_planning_update` says."""

    def step(Q, model, alpha, gamma, rng):
        keys = list(model)
        if draw == "pairs":
            s, a = keys[rng.integers(len(keys))]
        elif draw == "sorted pairs":
            s, a = sorted(keys)[rng.integers(len(keys))]
        elif draw == "random()":
            s, a = keys[int(rng.random() * len(keys))]
        elif draw in ("state then action", "sorted state then action"):
            states = list(dict.fromkeys(s for s, _ in keys))
            if draw.startswith("sorted"):
                states = sorted(states)
            s = states[rng.integers(len(states))]
            tried = [a for t, a in keys if t == s]
            a = (sorted(tried) if draw.startswith("sorted") else tried)[rng.integers(len(tried))]
        elif draw == "any pair":
            S, A = Q.shape
            s, a = int(rng.integers(S)), int(rng.integers(A))
            if (s, a) not in model:
                return
        _planning_update(s, a, alpha, gamma, **update_kwargs)(Q, model)

    return step


_DRAW = "s, a = list(model)[rng.integers(len(model))], one draw from the pairs in the order they were first seen"
_HINT_STATE_THEN_ACTION = ("you drew a state, then an action tried in it (S&B's box): this chapter draws the pair "
                           "at once, " + _DRAW)
_PLANNING_BUGS = [
    (_planning_variant("any pair"), "you drew (s, a) among all pairs: plan only with pairs the model has seen, "
                                    "list(model)[rng.integers(len(model))]"),
    (_planning_variant(terminal_rule="always"), _HINT_TERMINAL),
    (_planning_variant(terminal_rule="inverted"), "you bootstrapped only when terminated is True: it is the other "
                                                  "way round, the target is r alone when s_next is terminal"),
    (_planning_variant(step="replace"), "you replaced Q[s, a] by the target: move it a step alpha towards the "
                                        "target"),
    (_planning_variant(use_gamma=False), "the target has no gamma: r + gamma * max Q(s_next, .)"),
    (_planning_variant(target_from="s"), "you bootstrapped from Q(s, .), the state of the pair: the target uses "
                                         "the next state, r + gamma * max Q(s_next, .)"),
    (_planning_variant(value="mean"), "you bootstrapped from the mean of Q(s_next, .): Q-learning uses its max"),
    (_planning_variant("state then action"), _HINT_STATE_THEN_ACTION),
    (_planning_variant("sorted state then action"), _HINT_STATE_THEN_ACTION),
    (_planning_variant("sorted pairs"), "you drew from the sorted pairs: list(model) keeps the order in which "
                                        "they were first seen, and the check draws in that order"),
    (_planning_variant("random()"), "you drew the index with rng.random(): draw it as the statement says, "
                                    + _DRAW),
]
_HINT_OTHER_GENERATOR = ("rng's state did not change, so the pair was not drawn from it: draw with the rng passed "
                         "in (rng.integers), not np.random, the random module or a new generator")


def _plan(step, Q0, model, alpha, gamma, seed, n_steps, returns=None):
    """``n_steps`` calls of ``step`` from ``Q0.copy()`` and ``default_rng(seed)``: ``(Q, rng)``. ``returns``: a
    list that collects what the calls return."""
    Q, rng = Q0.copy(), np.random.default_rng(seed)
    for _ in range(n_steps):
        result = step(Q, model, alpha, gamma, rng)
        if returns is not None:
            returns.append(result)
    return Q, rng


def _random_model(rng: np.random.Generator, n_states: int, n_actions: int, n_pairs: int) -> dict:
    """A Dyna model of ``n_pairs`` distinct pairs, about a third of them ending the episode."""
    flat = rng.choice(n_states * n_actions, size=n_pairs, replace=False)
    return {(int(p // n_actions), int(p % n_actions)): (float(np.round(rng.normal(), 3)),
                                                         int(rng.integers(n_states)), bool(rng.random() < 0.3))
            for p in flat}


def _planning_case(name, model, Q0, alpha, gamma, seed, n_steps) -> Case:
    def run(fn):
        model_before = copy.deepcopy(model)
        returns = []
        Q, rng = _plan(fn, Q0, model, alpha, gamma, seed, n_steps, returns)
        if model != model_before:
            return "the model was changed: planning only reads it"
        expected, rng_ref = _plan(ref.dyna_q_planning_step, Q0, model, alpha, gamma, seed, n_steps)
        if np.array_equal(Q, Q0) and not np.array_equal(expected, Q0) and any(r is not None for r in returns):
            return ("Q was not changed (your function returned a value): update Q[s, a] in place, in the array "
                    "passed in")
        diagnoses = [(_plan(bug, Q0, model, alpha, gamma, seed, n_steps)[0], hint) for bug, hint in _PLANNING_BUGS]
        problem = compare_arrays(Q, expected, atol=1e-9, what="Q", diagnoses=diagnoses)
        untouched = rng.bit_generator.state == np.random.default_rng(seed).bit_generator.state
        if problem is None:
            if rng.bit_generator.state != rng_ref.bit_generator.state:
                message = ("Q is right but rng was used differently: draw exactly one rng.integers(len(model)) "
                           "per step")
                # right by chance (another generator drew the same pairs): the same mistake as on the other cases
                return Failure(message, hints=[_HINT_OTHER_GENERATOR], expected="rng advanced by the draws",
                               got="rng untouched", what="rng") if untouched else message
            return None
        return problem.with_hints([_HINT_OTHER_GENERATOR]) if untouched else problem

    inputs = {"Q": Q0, "model": model, "alpha": alpha, "gamma": gamma,
              "rng": f"np.random.default_rng({seed})", "calls": n_steps}
    return Case(name, run, inputs=inputs, size=Q0.size + len(model) + n_steps)


def check_dyna_q_planning_step(fn, hidden: bool = False) -> Score:
    """Check ``dyna_q_planning_step(Q, model, alpha, gamma, rng) -> None`` (in place)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(3, 8)), int(rng.integers(2, 5))
            model = _random_model(rng, S, A, int(rng.integers(2, S * A + 1)))
            cases.append(_planning_case(f"random model #{i + 1} ({len(model)} pairs)", model,
                                        rng.normal(size=(S, A)), float(rng.uniform(0.05, 0.5)),
                                        float(rng.uniform(0.8, 0.99)), int(rng.integers(2**31)), 30))
        return _scored("dyna_q_planning_step", fn, cases)
    rng = np.random.default_rng(5)
    one_pair = {(1, 0): (1.0, 2, True)}
    model = _random_model(rng, 6, 4, 12)
    cases = [
        _planning_case("a model holding one transition into the goal (reward 1, terminal)", one_pair,
                       np.full((3, 2), 0.5), 0.1, 0.95, 0, 1),
        _planning_case("one step on a 12-pair model", model, rng.normal(size=(6, 4)), 0.1, 0.95, 1, 1),
        _planning_case("50 steps on the same model", model, rng.normal(size=(6, 4)), 0.1, 0.95, 2, 50),
    ]
    return _scored("dyna_q_planning_step", fn, cases)


# ------------------------------------------------------------------------------------------------ Dyna-Q episode

def _episode_variant(order=("update", "store", "plan"), planning_delta=0, truncation="right",
                     respect_max_steps=True, first_step=1, act="epsilon", guard_empty=True):
    """Dyna-Q's episode as the reference runs it, or with a known mistake.

    ``order``: the parts of a step after env.step, among "update" (the Q-learning update with the real
    transition), "store" (into the model) and "plan" (``n_planning + planning_delta`` planning steps; skipped
    while the model is empty if ``guard_empty``). ``truncation``: "right", "ignored" (the episode goes on after
    truncated), "terminal" (truncated treated as terminated everywhere), "terminal in the update" or "terminal in
    the model".
    ``first_step = 0``: the steps are counted from 0. ``act = "greedy"``: np.argmax(Q[s]) instead of
    epsilon_greedy.
    """

    def episode(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
        s, _ = env.reset()
        i = 0
        while i < max_steps or not respect_max_steps:
            i += 1
            a = epsilon_greedy(Q[s], epsilon, rng) if act == "epsilon" else int(np.argmax(Q[s]))
            s_next, r, terminated, truncated, _ = env.step(a)
            done = terminated or truncated
            for part in order:
                if part == "update":
                    ends = done if truncation in ("terminal", "terminal in the update") else terminated
                    q_learning_update(Q, s, a, r, s_next, ends, alpha, gamma)
                elif part == "store":
                    stored = done if truncation in ("terminal", "terminal in the model") else terminated
                    model[(s, a)] = (r, s_next, stored)
                elif model or not guard_empty:
                    for _ in range(n_planning + planning_delta):
                        ref.dyna_q_planning_step(Q, model, alpha, gamma, rng)
            s = s_next
            if terminated or (truncated and truncation != "ignored"):
                return i - 1 + first_step
        return max_steps

    return episode


_HINT_IGNORES_TRUNCATED = ("the episode went on after truncated was True: a time limit (gymnasium's TimeLimit) "
                           "ends the episode too, so stop when terminated or truncated")
_HINT_TRUNCATED_AS_TERMINAL = ("you treated truncated like terminated: a time limit cuts the episode, but s_next "
                               "is not terminal, so the update still bootstraps from max Q(s_next) and the model "
                               "stores terminated (not truncated)")
_HINT_MAX_STEPS = "the episode went on past max_steps: stop after max_steps real steps and return max_steps"
_HINT_PLAN_BEFORE_STORING = ("you planned before storing the real transition in the model: store "
                             "model[(s, a)] = (r, s_next, terminated) first, then plan")
#: (variant, hint, what the case must have for the variant to differ from the reference: planning steps, a time
#: limit, a max_steps argument, or nothing)
_EPISODE_BUGS = [
    (_episode_variant(order=("update", "store")), "your episodes match Dyna-Q without planning: call "
                                                  "dyna_q_planning_step n_planning times after each real step",
     "planning"),
    (_episode_variant(order=("store", "plan")), "you left out the direct Q-learning update with the real "
                                                "transition: update Q[s, a] with it before planning", None),
    (_episode_variant(order=("update", "plan", "store")), _HINT_PLAN_BEFORE_STORING, "planning"),
    (_episode_variant(order=("update", "plan", "store"), guard_empty=False), _HINT_PLAN_BEFORE_STORING,
     "planning"),
    (_episode_variant(order=("plan", "update", "store")), _HINT_PLAN_BEFORE_STORING, "planning"),
    (_episode_variant(order=("store", "plan", "update")), "you planned before the Q-learning update with the real "
                                                          "transition: update Q with it first, then store it, "
                                                          "then plan", "planning"),
    (_episode_variant(planning_delta=-1), "you made n_planning - 1 planning updates per real step: make "
                                          "n_planning (for _ in range(n_planning))", "planning"),
    (_episode_variant(planning_delta=1), "you made n_planning + 1 planning updates per real step: make n_planning "
                                         "(for _ in range(n_planning))", None),
    (_episode_variant(first_step=0), "you counted the steps from 0: return the number of real steps taken (1 for "
                                     "an episode that ends at its first step)", None),
    (_episode_variant(act="greedy"), "you chose actions greedily with argmax: choose them with "
                                     "epsilon_greedy(Q[s], epsilon, rng), which explores and breaks ties at "
                                     "random", None),
    (_episode_variant(truncation="ignored"), _HINT_IGNORES_TRUNCATED, "time_limit"),
    (_episode_variant(truncation="terminal"), _HINT_TRUNCATED_AS_TERMINAL, "time_limit"),
    (_episode_variant(truncation="terminal in the update"), _HINT_TRUNCATED_AS_TERMINAL, "time_limit"),
    (_episode_variant(truncation="terminal in the model"), _HINT_TRUNCATED_AS_TERMINAL, "time_limit"),
    (_episode_variant(respect_max_steps=False), _HINT_MAX_STEPS, "max_steps"),
]
_HINT_RNG_UNUSED = ("rng's state did not change: choose the actions with epsilon_greedy(Q[s], epsilon, rng) and "
                    "plan with the rng passed in, not with np.random or a new generator")


class _Diverged(Exception):
    """A known-buggy variant acted differently from the answer it is compared with: it does not match."""


class _Follow(gymnasium.Wrapper):
    """Stops a known-buggy variant as soon as it acts differently from the answer it is compared with.

    On the same environment stream, a variant that ends with the answer's steps, Q and model took the answer's
    actions, one by one: ``actions`` is the list of them.
    """

    def __init__(self, env, actions: list):
        super().__init__(env)
        self.actions, self.taken = actions, 0

    def step(self, action):
        if self.taken >= len(self.actions) or action != self.actions[self.taken]:
            raise _Diverged
        self.taken += 1
        return self.env.step(action)


def _episodes(fn, mdp, n_planning, n_episodes, seed, time_limit=None, max_steps=None, alpha=0.1, epsilon=0.1,
              gamma=0.95, follow=None, out=None):
    """``n_episodes`` calls of ``fn`` from Q = 0 and an empty model: ``(steps, Q, model)``.

    ``follow``: the actions of an answer, to stop a known-buggy variant once it leaves them (:class:`_Follow`).
    ``out``: a dict that receives the ``Q``, ``model``, ``rng`` in use and the ``actions`` taken (still there if
    ``fn`` raises).
    """
    base = TabularMDPEnv(mdp)
    if out is not None:  # record the actions, invisibly to fn
        actions, inner_step = [], base.step

        def step(action):
            result = inner_step(action)
            actions.append(action)
            return result

        base.step = step
        out["actions"] = actions
    env = base if time_limit is None else TimeLimit(base, max_episode_steps=time_limit)
    env.reset(seed=seed)
    if follow is not None:
        env = _Follow(env, follow)
    rng = np.random.default_rng(seed + 1)
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    model: dict = {}
    if out is not None:
        out.update(Q=Q, model=model, rng=rng)
    extra = {} if max_steps is None else {"max_steps": max_steps}
    steps = [fn(env, Q, model, n_planning, alpha, epsilon, gamma, rng, **extra) for _ in range(n_episodes)]
    return steps, Q, model


def _same_run(a, b) -> bool:
    """Whether two results ``(steps, Q, model)`` of :func:`_episodes` agree."""
    (steps_a, Q_a, model_a), (steps_b, Q_b, model_b) = a, b
    try:
        return (list(steps_a) == list(steps_b) and np.shape(Q_a) == np.shape(Q_b)
                and np.allclose(Q_a, Q_b, rtol=0, atol=1e-9) and set(model_a) == set(model_b)
                and all(tuple(model_a[k][1:]) == tuple(model_b[k][1:]) and np.isclose(model_a[k][0], model_b[k][0])
                        for k in model_b))
    except (TypeError, ValueError):
        return False


def _malformed_entry(model: dict):
    """An entry of the model that is not ``(s, a) -> (r, s_next, terminated)``, or None."""
    for key, value in model.items():
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(value, tuple) and len(value) == 3):
            return key, value
    return None


def _malformed_message(bad) -> str:
    return f"the model should map (s, a) to (r, s_next, terminated); got model[{bad[0]!r}] = {bad[1]!r}"


def _cutting_seed(rng: np.random.Generator, mdp, n_planning: int, n_episodes: int, time_limit=None,
                  max_steps=None) -> int:
    """A seed for which the time limit or max_steps cuts at least one episode that would otherwise have gone on."""
    for _ in range(20):
        seed = int(rng.integers(2**31))
        if _episodes(ref.dyna_q_episode, mdp, n_planning, n_episodes, seed, time_limit, max_steps)[0] != _episodes(
                ref.dyna_q_episode, mdp, n_planning, n_episodes, seed)[0]:
            break
    return seed


def _episode_case(name, mdp, n_planning, n_episodes, seed, time_limit=None, max_steps=None, env_name="") -> Case:
    setup = (mdp, n_planning, n_episodes, seed, time_limit, max_steps)

    present = {None: True, "planning": n_planning > 0, "time_limit": time_limit is not None,
               "max_steps": max_steps is not None}

    def variant_runs(actions):
        for bug, hint, needs in _EPISODE_BUGS:
            if not present[needs]:
                continue  # the same as the reference on this case
            try:
                yield hint, _episodes(bug, *setup, follow=actions), None
            except _Diverged:
                continue
            except CheckTimeout:
                raise
            except Exception as exc:  # noqa: BLE001 -- a variant that raises is compared by its error
                yield hint, None, exc

    def run(fn):
        out: dict = {}
        expected = _episodes(ref.dyna_q_episode, *setup)
        try:
            steps, Q, model = _episodes(fn, *setup, out=out)
        except CheckTimeout:
            raise
        except Exception as exc:
            bad = _malformed_entry(out.get("model", {}))
            if bad:
                return _malformed_message(bad)
            hints = [hint for hint, _, bug_exc in variant_runs(out["actions"]) if bug_exc is not None
                     and type(bug_exc) is type(exc) and str(bug_exc) == str(exc)]
            if hints:
                return _raised(exc, hints)
            raise
        if not all(isinstance(k, (int, np.integer)) for k in steps):
            bad_step = next(k for k in steps if not isinstance(k, (int, np.integer)))
            return f"return the number of real steps of the episode (an int); got {bad_step!r}"
        if not model:
            return "the model is still empty: store model[(s, a)] = (r, s_next, terminated) after each real step"
        bad = _malformed_entry(model)
        if bad:
            return _malformed_message(bad)
        if _same_run((steps, Q, model), expected):
            return None
        expected_steps, expected_Q, expected_model = expected
        hints = [hint for hint, result, _ in variant_runs(out["actions"])
                 if result is not None and _same_run((steps, Q, model), result)]
        if out["rng"].bit_generator.state == np.random.default_rng(seed + 1).bit_generator.state:
            hints.append(_HINT_RNG_UNUSED)
        steps = [int(k) for k in steps]
        if steps != expected_steps:
            return Failure(f"steps per episode should be {expected_steps}; got {steps}", hints=hints,
                           expected=expected_steps, got=steps, what="steps per episode")
        wrong = next((k for k in expected_model if k not in model or tuple(model[k][1:]) != tuple(
            expected_model[k][1:]) or not np.isclose(model[k][0], expected_model[k][0])), None)
        if wrong is None and set(model) != set(expected_model):
            wrong = next(k for k in model if k not in expected_model)
        if wrong is not None:
            want, have = expected_model.get(wrong, "no entry"), model.get(wrong, "no entry")
            return Failure(f"model[{wrong}] should be {want}; got {have}", hints=hints, expected=want, got=have,
                           what=f"model[{wrong}]")
        problem = compare_arrays(Q, expected_Q, atol=1e-9, what="Q after the episodes")
        return problem.with_hints(hints)

    inputs = {"env": env_name, "n_planning": n_planning, "alpha": 0.1, "epsilon": 0.1, "gamma": 0.95,
              "rng": f"np.random.default_rng({seed + 1})", "episodes": n_episodes}
    if max_steps is not None:
        inputs["max_steps"] = max_steps
    return Case(name, run, inputs=inputs, size=mdp.n_states * mdp.n_actions * (n_planning + 1) * n_episodes)


def _env_name(what: str, seed: int, time_limit=None) -> str:
    wrapped = f"TabularMDPEnv({what})" if time_limit is None else (
        f"TimeLimit(TabularMDPEnv({what}), max_episode_steps={time_limit})")
    return f"{wrapped}, reset once with seed={seed} before the first episode"


def check_dyna_q_episode(fn, hidden: bool = False) -> Score:
    """Check ``dyna_q_episode(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps) -> steps``.

    The student's function runs with the reference ``dyna_q_planning_step``. Some cases wrap the environment in
    gymnasium's ``TimeLimit``, so that episodes end by truncation as well as termination, and one passes a small
    ``max_steps``.
    """
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(4, 8)), int(rng.integers(2, 4))
            mdp = random_mdp(rng, S, A, 0.9, n_terminal=1)
            n_planning, seed = int(rng.integers(1, 6)), int(rng.integers(2**31))
            cases.append(_episode_case(f"random MDP #{i + 1}, n = {n_planning}, 3 episodes", mdp, n_planning, 3,
                                       seed, env_name=_env_name(f"a random MDP, {S} states, {A} actions", seed)))
        S, A = int(rng.integers(6, 9)), int(rng.integers(2, 4))
        mdp = random_mdp(rng, S, A, 0.9, n_terminal=1, sparsity=0.3)
        limit, n_planning = int(rng.integers(2, 4)), int(rng.integers(1, 4))
        seed = _cutting_seed(rng, mdp, n_planning, 8, time_limit=limit)
        cases.append(_episode_case(f"random MDP #4 under a time limit of {limit} steps, n = {n_planning}, "
                                   "8 episodes", mdp, n_planning, 8, seed, time_limit=limit,
                                   env_name=_env_name(f"a random MDP, {S} states, {A} actions", seed, limit)))
        S, A = int(rng.integers(6, 9)), int(rng.integers(2, 4))
        mdp = random_mdp(rng, S, A, 0.9, n_terminal=1, sparsity=0.3)
        max_steps, n_planning = int(rng.integers(2, 4)), int(rng.integers(1, 4))
        seed = _cutting_seed(rng, mdp, n_planning, 6, max_steps=max_steps)
        cases.append(_episode_case(f"random MDP #5 with max_steps = {max_steps}, n = {n_planning}, 6 episodes",
                                   mdp, n_planning, 6, seed, max_steps=max_steps,
                                   env_name=_env_name(f"a random MDP, {S} states, {A} actions", seed)))
        return _scored("dyna_q_episode", fn, cases)
    maze = dyna_maze()
    noisy = random_mdp(np.random.default_rng(9), 6, 3, 0.9, n_terminal=1)
    noisy_name = "random_mdp(default_rng(9), 6, 3, 0.9, n_terminal=1)"
    cases = [
        _episode_case("Dyna maze, n = 0 (plain Q-learning), 2 episodes", maze, 0, 2, 0,
                      env_name=_env_name("dyna_maze()", 0)),
        _episode_case("Dyna maze, n = 5, 3 episodes", maze, 5, 3, 1, env_name=_env_name("dyna_maze()", 1)),
        _episode_case("a random 6-state MDP with noisy transitions, n = 3, 4 episodes", noisy, 3, 4, 2,
                      env_name=_env_name(noisy_name, 2)),
        _episode_case("Dyna maze under gymnasium's TimeLimit of 200 steps (the first episode ends by truncation), "
                      "n = 5, 4 episodes", maze, 5, 4, 3, time_limit=200,
                      env_name=_env_name("dyna_maze()", 3, 200)),
        _episode_case("the random 6-state MDP under a TimeLimit of 3 steps, n = 2, 8 episodes", noisy, 2, 8, 0,
                      time_limit=3, env_name=_env_name(noisy_name, 0, 3)),
        _episode_case("Dyna maze with max_steps = 25, n = 2, 3 episodes", maze, 2, 3, 5, max_steps=25,
                      env_name=_env_name("dyna_maze()", 5)),
    ]
    return _scored("dyna_q_episode", fn, cases)


# ------------------------------------------------------------------------------------------- neural model step

def _model_step_setup(seed: int, batch: int, hidden: int, optimizer: str, stale: bool = False):
    """A small DynamicsModel with seeded weights, its optimizer, and a batch of two-rooms transitions.

    ``stale``: the parameters hold gradients of an earlier backward pass, which the step must clear first.
    """
    torch.manual_seed(seed)
    model = DynamicsModel(2, 4, hidden)
    if stale:
        model(torch.ones(3, 6)).pow(2).sum().backward()
    rng = np.random.default_rng(seed)
    states = rng.random((batch, 2))
    actions = rng.integers(4, size=batch)
    next_states = transition(states, actions, rng)
    data = (torch.as_tensor(states, dtype=torch.float32), torch.as_tensor(actions, dtype=torch.long),
            torch.as_tensor(next_states, dtype=torch.float32))
    make = (lambda params: torch.optim.SGD(params, lr=0.05)) if optimizer == "sgd" else (
        lambda params: torch.optim.Adam(params, lr=1e-2))
    return model, make, data


def _short_repr(value, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flat_parameters(model) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().copy()


def _gradients_cleared(model) -> bool:
    """Whether every parameter's gradient is None or zero."""
    return all(p.grad is None or not torch.any(p.grad) for p in model.parameters())


def _run_model_steps(step, setup, n_steps):
    """``n_steps`` calls of ``step`` on a fresh copy of the setup: ``(losses, parameters, gradients cleared)``."""
    model, make_optimizer, data = _model_step_setup(*setup)
    optimizer = make_optimizer(model.parameters())
    losses = [step(model, optimizer, *data) for _ in range(n_steps)]
    return losses, _flat_parameters(model), _gradients_cleared(model)


def _step_variant(target="displacement", reduction="mean", order=("zero_grad", "backward", "step"),
                  inputs="states first", sign=1.0, returned="before", detach=False):
    """The model step as the reference takes it, or with a known mistake.

    ``target``: "displacement" (next_states - states), "next_states" or "reversed" (states - next_states).
    ``reduction``: "mean", "sum", "sum over dimensions" (summed over the 2 dimensions, averaged over the batch)
    or "l1". ``order``: the calls, among "zero_grad", "backward" and "step". ``inputs``: "states first" or
    "one-hot first" (or "raw actions": the action as one float column). ``sign = -1``: backward on -loss.
    ``returned = "after"``: the loss recomputed after the step. ``detach``: the prediction is detached.
    """

    def step(model, optimizer, states, actions, next_states):
        if inputs == "raw actions":
            x = torch.cat([states, actions[:, None].float()], dim=1)
        else:
            parts = [states, one_hot(actions, model.n_actions)]
            x = torch.cat(parts if inputs == "states first" else parts[::-1], dim=1)

        def loss_of():
            predicted = model(x)
            if detach:
                predicted = predicted.detach()
            goal = {"displacement": next_states - states, "next_states": next_states,
                    "reversed": states - next_states}[target]
            error = predicted - goal
            if reduction == "mean":
                return (error ** 2).mean()
            if reduction == "sum":
                return (error ** 2).sum()
            if reduction == "sum over dimensions":
                return (error ** 2).sum(dim=1).mean()
            return error.abs().mean()

        loss = loss_of()
        for call in order:
            if call == "zero_grad":
                optimizer.zero_grad()
            elif call == "backward":
                (sign * loss).backward()
            else:
                optimizer.step()
        if returned == "after":
            with torch.no_grad():
                return loss_of().item()
        return loss.item()

    return step


_HINT_ZERO_GRAD = "the gradients of earlier steps were added in: call optimizer.zero_grad() before loss.backward()"
#: (variant, hint, whether the gradients left after the call tell it apart from another variant)
_STEP_BUGS = [
    (_step_variant(target="next_states"), "the target is the displacement next_states - states, not next_states "
                                          "(the network predicts the change of state)", False),
    (_step_variant(target="reversed"), "the target is next_states - states, where the state goes; you used "
                                       "states - next_states", False),
    (_step_variant(reduction="sum"), "average the squared errors (mse_loss, or .mean()), do not sum them", False),
    (_step_variant(reduction="sum over dimensions"), "you summed the squared errors over the 2 state dimensions: "
                                                     "the loss is the mean over the batch and the dimensions "
                                                     "(mse_loss, or .mean() of all the squared errors)", False),
    (_step_variant(reduction="l1"), "you used the absolute error: the loss is the mean squared error", False),
    (_step_variant(order=("backward", "step")), _HINT_ZERO_GRAD, False),
    (_step_variant(order=("backward", "step", "zero_grad")), "gradients left over from before the call were added "
                                                             "in: clear them first (optimizer.zero_grad() before "
                                                             "loss.backward()), not after the step", False),
    (_step_variant(order=("zero_grad", "backward")), "the step was not applied: call optimizer.step() after "
                                                     "loss.backward() (the order is zero_grad(), backward(), "
                                                     "step())", True),
    (_step_variant(order=("backward", "zero_grad", "step")),
     "you cleared the gradients between loss.backward() and optimizer.step(), so the step had nothing to apply: "
     "the order is zero_grad(), backward(), step()", True),
    (_step_variant(sign=-1.0), "the parameters moved up the loss (backward on -loss, gradient ascent): "
                               "back-propagate the loss itself, to minimise it", False),
    (_step_variant(inputs="one-hot first"), "the network's input is torch.cat([states, one_hot(actions, "
                                            "model.n_actions)], dim=1): states first, then the one-hot actions",
     False),
    (_step_variant(returned="after"), "return the loss computed before the step (the one you back-propagated), "
                                      "not one recomputed after it", False),
]
#: variants that raise: (variant, hint); the student's error is compared with theirs
_STEP_RAISING = [
    (_step_variant(detach=True), "the loss does not reach the weights: you detached the prediction (or computed "
                                 "it under torch.no_grad()); build the loss from model(inputs) itself"),
    (_step_variant(inputs="raw actions"), "the network's input has 2 + model.n_actions columns: the states, then "
                                          "one_hot(actions, model.n_actions), not the action as a number"),
]


def _model_step_case(name, seed, batch, hidden, optimizer, n_steps, stale=False) -> Case:
    setup = (seed, batch, hidden, optimizer, stale)

    def run(fn):
        model, make, data = _model_step_setup(*setup)
        before = _flat_parameters(model)
        data_before = [d.clone() for d in data]
        optimizer_ = make(model.parameters())
        try:
            losses = [fn(model, optimizer_, *data) for _ in range(n_steps)]
        except RuntimeError as exc:
            hints = []
            for bug, hint in _STEP_RAISING:
                bug_model, bug_make, bug_data = _model_step_setup(*setup)
                if _same_error(bug, (bug_model, bug_make(bug_model.parameters()), *bug_data), exc):
                    hints.append(hint)
            if hints:
                return _raised(exc, hints)
            raise
        params, cleared = _flat_parameters(model), _gradients_cleared(model)
        if any(not torch.equal(a, b) for a, b in zip(data, data_before, strict=True)):
            return "the batch tensors were changed: compute the loss without modifying them"
        not_float = [loss for loss in losses if not isinstance(loss, float)]
        if not_float:
            return (f"return the loss as a Python float (loss.item()); got {type(not_float[0]).__name__} "
                    f"{_short_repr(not_float[0])}")
        expected_losses, expected_params, _ = _run_model_steps(model_gradient_step, setup, n_steps)
        unchanged = np.array_equal(params, before)
        problem = compare_arrays(losses, expected_losses, atol=1e-5, what="the losses returned") or compare_arrays(
            params, expected_params, atol=1e-5, what="the parameters after the steps")
        if not (problem or unchanged):
            return None
        hints = []
        for bug, hint, by_gradients in _STEP_BUGS:
            bug_losses, bug_params, bug_cleared = _run_model_steps(bug, setup, n_steps)
            if (compare_arrays(losses, bug_losses, atol=1e-5) is None
                    and compare_arrays(params, bug_params, atol=1e-5) is None
                    and (not by_gradients or bug_cleared == cleared)
                    and not (compare_arrays(bug_losses, expected_losses, atol=1e-5) is None
                             and compare_arrays(bug_params, expected_params, atol=1e-5) is None)):
                hints.append(hint)
        if unchanged:
            return Failure("the parameters did not change", hints=hints, expected=expected_params, got=params,
                           what="the parameters after the steps")
        return problem.with_hints(hints)

    inputs = {"model": f"DynamicsModel(2, 4, hidden={hidden}), torch.manual_seed({seed})"
                       + (", holding stale gradients" if stale else ""),
              "optimizer": "SGD(lr=0.05)" if optimizer == "sgd" else "Adam(lr=0.01)",
              "states, actions, next_states": f"a batch of {batch} two-rooms transitions", "calls": n_steps}
    return Case(name, run, inputs=inputs, size=batch * n_steps)


@contextlib.contextmanager
def _torch_ready():
    """One torch thread while the cases run (the networks are tiny; threads only wait on busy cores), and the
    optimizers' first construction, which imports much of torch (seconds), done before the cases' time limits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        yield
    finally:
        torch.set_num_threads(threads)


def check_model_gradient_step(fn, hidden: bool = False) -> Score:
    """Check ``model_gradient_step(model, optimizer, states, actions, next_states) -> float``."""
    with _torch_ready():
        return _check_model_gradient_step(fn, hidden)


def _check_model_gradient_step(fn, hidden: bool) -> Score:
    if hidden:
        rng = hidden_rng()
        cases = [_model_step_case(f"random network and batch #{i + 1}", int(rng.integers(2**31)),
                                  int(rng.integers(8, 64)), int(rng.choice([8, 16, 32])),
                                  ("sgd", "adam")[i % 2], int(rng.integers(2, 5)), stale=i == 2) for i in range(3)]
        return _scored("model_gradient_step", fn, cases)
    cases = [
        _model_step_case("one SGD step on 32 transitions", 0, 32, 16, "sgd", 1),
        _model_step_case("three SGD steps on the same batch", 1, 32, 16, "sgd", 3),
        _model_step_case("two Adam steps on 50 transitions", 2, 50, 32, "adam", 2),
        _model_step_case("two SGD steps on a network holding stale gradients from an earlier backward pass", 3, 32,
                         16, "sgd", 2, stale=True),
    ]
    return _scored("model_gradient_step", fn, cases)
