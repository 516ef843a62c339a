"""Checks for Chapter 2 (model-based RL and Dyna).

Each ``check_<exercise>(fn, hidden=False)`` runs the student's ``fn`` on the lecture's example and on fixed
random streams of transitions, compares it with the reference in :mod:`solutions.model_based`, prints one
line per case and returns a :class:`~autograder.checks._harness.Score`. ``hidden=True`` runs only instances
drawn from :func:`~autograder.checks._harness.hidden_rng`.

Stochastic exercises (Dyna-Q) are compared with the reference on the same random stream: their docstrings say
in which order the random numbers are drawn. When an answer is wrong, the check compares it with known-buggy
variants (the ``_bug_*`` functions) to name the likely bug.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from gymnasium.wrappers import TimeLimit

from solutions import model_based as ref
from solutions.envs import TabularMDPEnv, aima_4x3, dyna_maze, random_mdp
from solutions.envs.continuous import transition
from solutions.learned_models import DynamicsModel, model_gradient_step, one_hot
from solutions.q_learning import epsilon_greedy, q_learning_update

from ._harness import Case, Score, compare_arrays, hidden_rng, run_check

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


def _scored(name: str, fn, cases: list[Case]) -> Score:
    return run_check(name, fn, cases, POINTS[name], helpers=_HELPERS.get(name))


def _lecture():
    """The lecture's three 4x3-world trajectories: (world, transitions)."""
    world = aima_4x3()
    return world, ref.lecture_transitions(world)


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


def _bug_count_of_next_state(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    count = n[s, a, s_next]
    R_hat[s, a] = (r + (count - 1) * R_hat[s, a]) / count


def _bug_last_reward(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] = r


def _replay(update, stream, n_states, n_actions, start=None):
    """Feed ``stream`` to ``update``, from empty arrays or from copies of ``start = (n, R_hat)``."""
    if start is None:
        n = np.zeros((n_states, n_actions, n_states), dtype=np.int64)
        R_hat = np.zeros((n_states, n_actions))
    else:
        n, R_hat = start[0].copy(), start[1].copy()
    results = [update(n, R_hat, s, a, r, s_next) for s, a, r, s_next in stream]
    return n, R_hat, results


def _update_case(name, stream, n_states, n_actions, start=None) -> Case:
    """``start = (n, R_hat)``: the arrays already hold data (else they start at zero)."""

    def run(fn):
        n, R_hat, results = _replay(fn, stream, n_states, n_actions, start)
        expected_n, expected_R, _ = _replay(ref.update_model, stream, n_states, n_actions, start)
        unchanged = (not np.any(n) and not np.any(R_hat)) if start is None else (
            np.array_equal(n, start[0]) and np.array_equal(R_hat, start[1]))
        if unchanged and any(r is not None for r in results):
            return "n and R_hat were not changed: update them in place (n[s, a, s_next] += 1, R_hat[s, a] = ...)"
        problem = compare_arrays(n, expected_n, atol=0, what="the counts n")
        if problem:
            return problem
        diagnoses = [
            (_replay(_bug_divide_before_increment, stream, n_states, n_actions, start)[1],
             "you divided by n(s, a) before counting this transition: increment n[s, a, s_next] first, "
             "then n(s, a) includes it"),
            (_replay(_bug_count_of_next_state, stream, n_states, n_actions, start)[1],
             "you averaged with n(s, a, s') as the count: the mean reward of (s, a) uses n(s, a), the sum of "
             "n[s, a, :] over all next states"),
            (_replay(_bug_last_reward, stream, n_states, n_actions, start)[1],
             "R_hat holds the last reward seen, not the mean of all rewards seen after (s, a)"),
        ]
        return compare_arrays(R_hat, expected_R, atol=1e-9, what="R_hat", diagnoses=diagnoses)

    return Case(name, run)


def check_update_model(fn, hidden: bool = False) -> Score:
    """Check ``update_model(n, R_hat, s, a, r, s_next) -> None`` (in place)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(3, 8)), int(rng.integers(2, 5))
            cases.append(_update_case(f"random stream #{i + 1} ({S} states, {A} actions)",
                                      _random_stream(rng, S, A, int(rng.integers(20, 200))), S, A))
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
                     world.n_actions, ref.counts_from_transitions(transitions, world.n_states, world.n_actions)),
    ]
    return _scored("update_model", fn, cases)


# ------------------------------------------------------------------------------------------ ML transition model

def _random_counts(rng: np.random.Generator, n_states: int, n_actions: int) -> np.ndarray:
    n = rng.integers(0, 4, size=(n_states, n_actions, n_states)) * (rng.random((n_states, n_actions, 1)) < 0.7)
    n[0, 0, 0] += 1
    return n.astype(np.int64)


def _model_case(name, n) -> Case:
    def run(fn):
        original = n.copy()
        got = fn(n)
        if not np.array_equal(n, original):
            return "the counts n were changed: compute P_hat from them without modifying them"
        n_sa = n.sum(axis=2, keepdims=True)
        got_arr = np.asarray(got, dtype=np.float64) if got is not None else None
        if got_arr is not None and got_arr.shape == n.shape and np.isnan(got_arr).any():
            return ("P_hat holds NaN: a pair never tried has n(s, a) = 0; its row must be all zeros, not 0 / 0 "
                    "(np.divide(..., where=n_sa > 0) or a mask)")
        with np.errstate(divide="ignore", invalid="ignore"):
            diagnoses = [
                (np.nan_to_num(n / n.sum(axis=0, keepdims=True)), "you normalised over the wrong axis: divide "
                 "n[s, a, s'] by n(s, a), the sum over the next states s' (the last axis)"),
                (np.nan_to_num(n / n.sum(axis=1, keepdims=True)), "you normalised over the wrong axis: divide "
                 "n[s, a, s'] by n(s, a), the sum over the next states s' (the last axis)"),
                (np.where(n_sa > 0, n / np.where(n_sa > 0, n_sa, 1), 1.0 / n.shape[2]),
                 "rows of pairs never tried must be all zeros (no data), not uniform"),
            ]
        return compare_arrays(got, ref.ml_transition_model(n), atol=1e-12, what="P_hat", diagnoses=diagnoses)

    return Case(name, run)


def _lecture_probability_case() -> Case:
    world, transitions = _lecture()
    n, _ = ref.counts_from_transitions(transitions, world.n_states, world.n_actions)
    names, actions = list(world.state_names), list(world.action_names)
    s, a = names.index("(1,3)"), actions.index("right")

    def run(fn):
        P_hat = np.asarray(fn(n.copy()), dtype=np.float64)
        got = (P_hat[s, a, names.index("(2,3)")], P_hat[s, a, names.index("(1,2)")])
        if not np.allclose(got, (2 / 3, 1 / 3)):
            return f"P_hat((2,3) | (1,3), right) and P_hat((1,2) | (1,3), right) should be 2/3 and 1/3; got {got}"
        return None

    return Case("the lecture: P_hat((2,3) | (1,3), right) = 2/3, P_hat((1,2) | (1,3), right) = 1/3", run)


def check_ml_transition_model(fn, hidden: bool = False) -> Score:
    """Check ``ml_transition_model(n) -> P_hat`` of shape (S, A, S)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(2, 8)), int(rng.integers(1, 5))
            cases.append(_model_case(f"random counts #{i + 1} ({S} states, {A} actions)",
                                     _random_counts(rng, S, A)))
        return _scored("ml_transition_model", fn, cases)
    world, transitions = _lecture()
    n, _ = ref.counts_from_transitions(transitions, world.n_states, world.n_actions)
    cases = [
        _lecture_probability_case(),
        _model_case("the lecture's counts (most pairs never tried)", n),
        _model_case("random counts, 6 states, 3 actions", _random_counts(np.random.default_rng(3), 6, 3)),
    ]
    return _scored("ml_transition_model", fn, cases)


# --------------------------------------------------------------------------------------- certainty equivalence

def _bug_ce_unseen_in_max(n, R_hat, gamma, terminal, theta=1e-10):
    P_hat = ref.ml_transition_model(n)
    seen = n.sum(axis=2) > 0
    Q = np.zeros(R_hat.shape)
    for _ in range(10_000):
        V = np.where(terminal, 0.0, Q.max(axis=1))
        Q_new = np.where(seen, R_hat + gamma * P_hat @ V, 0.0)
        if np.max(np.abs(Q_new - Q)) < theta:
            return Q_new
        Q = Q_new
    return Q


def _bug_ce_bootstrap_terminal(n, R_hat, gamma, terminal, theta=1e-10):
    return ref.certainty_equivalent_q(n, R_hat, gamma, np.zeros_like(np.asarray(terminal)), theta)


def _ce_sweeps(n, R_hat, gamma, terminal, theta, in_place=False, previous=False, max_sweeps=100_000):
    """Value iteration on the tried pairs like the reference, with the variants students write.

    ``in_place``: Gauss-Seidel sweeps (each new Q(s, a) is used at once); ``previous``: return the iterate
    before the last sweep (a reading of "stop when no entry changes by more than theta" as good as the
    reference's).
    """
    P_hat = ref.ml_transition_model(n)
    seen = n.sum(axis=2) > 0
    Q = np.zeros(R_hat.shape)

    def values(Q):
        V = np.where(seen, Q, -np.inf).max(axis=1)
        V[~seen.any(axis=1) | terminal] = 0.0
        return V

    for _ in range(max_sweeps):
        if in_place:
            old = Q.copy()
            for s, a in np.argwhere(seen):
                Q[s, a] = R_hat[s, a] + gamma * P_hat[s, a] @ values(Q)
            Q_new, Q = Q, old
        else:
            Q_new = np.where(seen, R_hat + gamma * P_hat @ values(Q), 0.0)
        if np.max(np.abs(Q_new - Q)) < theta:
            return Q if previous else Q_new
        Q = Q_new
    return Q


def _ce_case(name, n, R_hat, gamma, terminal, theta=None) -> Case:
    """With ``theta`` the student's function is called with that stopping threshold (else its default)."""

    def run(fn):
        n_copy, R_copy = n.copy(), R_hat.copy()
        extra = {} if theta is None else {"theta": theta}
        got = fn(n_copy, R_copy, gamma, terminal.copy(), **extra)
        if not (np.array_equal(n_copy, n) and np.array_equal(R_copy, R_hat)):
            return "n or R_hat was changed: planning must leave the data alone"
        if theta is not None:
            if compare_arrays(got, _ce_sweeps(n, R_hat, gamma, terminal, theta, previous=True), atol=1e-9) is None:
                return None  # the iterate before the last sweep: as good an answer as the reference's
            diagnoses = [
                (ref.certainty_equivalent_q(n, R_hat, gamma, terminal),
                 f"you ignored theta: sweep until no entry changes by more than theta (here theta = {theta}), "
                 "not to a threshold of your own"),
                (_ce_sweeps(n, R_hat, gamma, terminal, theta, in_place=True),
                 "you updated Q in place during a sweep (Gauss-Seidel): sweeps must be synchronous, every new "
                 "Q(s, a) computed from the previous sweep's values"),
                (_ce_sweeps(n, R_hat, gamma, terminal, theta, in_place=True, previous=True),
                 "you updated Q in place during a sweep (Gauss-Seidel): sweeps must be synchronous, every new "
                 "Q(s, a) computed from the previous sweep's values"),
            ]
            return compare_arrays(got, ref.certainty_equivalent_q(n, R_hat, gamma, terminal, theta), atol=1e-9,
                                  what=f"Q with theta = {theta}", diagnoses=diagnoses)
        diagnoses = [
            (_bug_ce_unseen_in_max(n, R_hat, gamma, terminal),
             "V(s') took the max over every action, including pairs never tried (Q = 0 there): the model "
             "knows nothing about them, so take the max over the tried actions only"),
            (_bug_ce_bootstrap_terminal(n, R_hat, gamma, terminal), _HINT_TERMINAL.replace(
                "when the next state is terminal the target is the reward alone", "V(s') = 0 for terminal s'")),
        ]
        return compare_arrays(got, ref.certainty_equivalent_q(n, R_hat, gamma, terminal), atol=1e-6,
                              what="Q", diagnoses=diagnoses)

    return Case(name, run)


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
        _ce_case("random data with a terminal state that has data",
                 *_random_ce_instance(np.random.default_rng(11))),
        _ce_case("the lecture's data, gamma = 0.9, stopping at theta = 0.05 (a few synchronous sweeps)", n, R_hat,
                 0.9, world.terminal, theta=0.05),
        _ce_case("random data, stopping at theta = 0.01", *_random_ce_instance(np.random.default_rng(12)),
                 theta=0.01),
    ]
    return _scored("certainty_equivalent_q", fn, cases)


# ---------------------------------------------------------------------------------------- Dyna-Q planning step

def _bug_planning_any_pair(Q, model, alpha, gamma, rng):
    S, A = Q.shape
    s, a = int(rng.integers(S)), int(rng.integers(A))
    if (s, a) in model:
        r, s_next, terminated = model[(s, a)]
        target = r if terminated else r + gamma * np.max(Q[s_next])
        Q[s, a] += alpha * (target - Q[s, a])


def _bug_planning_bootstrap_terminal(Q, model, alpha, gamma, rng):
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, _ = model[(s, a)]
    Q[s, a] += alpha * (r + gamma * np.max(Q[s_next]) - Q[s, a])


def _bug_planning_no_alpha(Q, model, alpha, gamma, rng):
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, terminated = model[(s, a)]
    Q[s, a] = r if terminated else r + gamma * np.max(Q[s_next])


def _plan(step, Q0, model, alpha, gamma, seed, n_steps):
    Q, rng = Q0.copy(), np.random.default_rng(seed)
    for _ in range(n_steps):
        step(Q, model, alpha, gamma, rng)
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
        Q, rng = _plan(fn, Q0, model, alpha, gamma, seed, n_steps)
        if model != model_before:
            return "the model was changed: planning only reads it"
        expected, rng_ref = _plan(ref.dyna_q_planning_step, Q0, model, alpha, gamma, seed, n_steps)
        diagnoses = [
            (_plan(_bug_planning_any_pair, Q0, model, alpha, gamma, seed, n_steps)[0],
             "you drew (s, a) among all pairs: plan only with pairs the model has seen, "
             "list(model)[rng.integers(len(model))]"),
            (_plan(_bug_planning_bootstrap_terminal, Q0, model, alpha, gamma, seed, n_steps)[0], _HINT_TERMINAL),
            (_plan(_bug_planning_no_alpha, Q0, model, alpha, gamma, seed, n_steps)[0],
             "you replaced Q[s, a] by the target: move it a step alpha towards the target"),
        ]
        problem = compare_arrays(Q, expected, atol=1e-9, what=f"Q after {n_steps} planning steps",
                                 diagnoses=diagnoses)
        if problem is None and rng.bit_generator.state != rng_ref.bit_generator.state:
            return "Q is right but rng was used differently: draw exactly one rng.integers(len(model)) per step"
        if problem and "differs" in problem:
            problem += ("; draw the pair with list(model)[rng.integers(len(model))] so that the random stream "
                        "matches the reference")
        return problem

    return Case(name, run)


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

def _bug_episode_ignores_truncated(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, terminated)
        for _ in range(n_planning):
            ref.dyna_q_planning_step(Q, model, alpha, gamma, rng)
        s = s_next
        if terminated:
            return step
    return max_steps


def _bug_episode_truncated_as_terminal(store_done: bool):
    """Dyna-Q that treats the end of a time limit as the end of the world (in the update, and maybe the model)."""

    def episode(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
        s, _ = env.reset()
        for step in range(1, max_steps + 1):
            a = epsilon_greedy(Q[s], epsilon, rng)
            s_next, r, terminated, truncated, _ = env.step(a)
            done = terminated or truncated
            q_learning_update(Q, s, a, r, s_next, done, alpha, gamma)
            model[(s, a)] = (r, s_next, done if store_done else terminated)
            for _ in range(n_planning):
                ref.dyna_q_planning_step(Q, model, alpha, gamma, rng)
            s = s_next
            if done:
                return step
        return max_steps

    return episode


def _bug_episode_ignores_max_steps(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    return ref.dyna_q_episode(env, Q, model, n_planning, alpha, epsilon, gamma, rng)


_HINT_IGNORES_TRUNCATED = ("the episode went on after truncated was True: a time limit (gymnasium's TimeLimit) "
                           "ends the episode too, so stop when terminated or truncated")
_HINT_TRUNCATED_AS_TERMINAL = ("you treated truncated like terminated: a time limit cuts the episode, but s_next "
                               "is not terminal, so the update still bootstraps from max Q(s_next) and the model "
                               "stores terminated (not truncated)")
_HINT_MAX_STEPS = "the episode went on past max_steps: stop after max_steps real steps and return max_steps"


def _episodes(fn, mdp, n_planning, n_episodes, seed, time_limit=None, max_steps=None, alpha=0.1, epsilon=0.1,
              gamma=0.95):
    env = TabularMDPEnv(mdp)
    if time_limit is not None:
        env = TimeLimit(env, max_episode_steps=time_limit)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed + 1)
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    model: dict = {}
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


def _truncating_seed(rng: np.random.Generator, mdp, n_planning: int, n_episodes: int, time_limit: int) -> int:
    """A seed for which the time limit cuts at least one episode that would otherwise have gone on."""
    for _ in range(20):
        seed = int(rng.integers(2**31))
        if _episodes(ref.dyna_q_episode, mdp, n_planning, n_episodes, seed, time_limit)[0] != _episodes(
                ref.dyna_q_episode, mdp, n_planning, n_episodes, seed)[0]:
            break
    return seed


def _episode_case(name, mdp, n_planning, n_episodes, seed, time_limit=None, max_steps=None) -> Case:
    def run(fn):
        setup = (mdp, n_planning, n_episodes, seed, time_limit, max_steps)
        steps, Q, model = _episodes(fn, *setup)
        expected_steps, expected_Q, expected_model = _episodes(ref.dyna_q_episode, *setup)
        if not isinstance(steps[0], (int, np.integer)):
            return f"return the number of real steps of the episode (an int); got {steps[0]!r}"
        if not model:
            return "the model is still empty: store model[(s, a)] = (r, s_next, terminated) after each real step"
        if _same_run((steps, Q, model), (expected_steps, expected_Q, expected_model)):
            return None
        if n_planning:
            plain = _episodes(ref.dyna_q_episode, mdp, 0, n_episodes, seed, time_limit, max_steps)
            if _same_run((steps, Q, model), plain):
                return ("your episodes match Dyna-Q without planning: call dyna_q_planning_step n_planning "
                        "times after each real step")
        bugs = []
        if time_limit is not None:
            bugs += [(_bug_episode_ignores_truncated, _HINT_IGNORES_TRUNCATED),
                     (_bug_episode_truncated_as_terminal(True), _HINT_TRUNCATED_AS_TERMINAL),
                     (_bug_episode_truncated_as_terminal(False), _HINT_TRUNCATED_AS_TERMINAL)]
        if max_steps is not None:
            bugs.append((_bug_episode_ignores_max_steps, _HINT_MAX_STEPS))
        for bug, hint in bugs:
            if _same_run((steps, Q, model), _episodes(bug, *setup)):
                return hint
        if steps != expected_steps:
            return (f"steps per episode should be {expected_steps}; got {steps}. Follow the docstring's order "
                    "(choose with epsilon_greedy, env.step, Q-learning update, store in the model, then plan) "
                    "so that the random numbers are drawn as the reference draws them")
        if set(model) != set(expected_model) or any(
                model[k][1:] != expected_model[k][1:] or not np.isclose(model[k][0], expected_model[k][0])
                for k in expected_model):
            return "the model differs: it maps (s, a) to (r, s_next, terminated) of the last real transition"
        return compare_arrays(Q, expected_Q, atol=1e-9, what="Q after the episodes")

    return Case(name, run)


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
            mdp = random_mdp(rng, int(rng.integers(4, 8)), int(rng.integers(2, 4)), 0.9, n_terminal=1)
            n_planning = int(rng.integers(1, 6))
            cases.append(_episode_case(f"random MDP #{i + 1}, n = {n_planning}, 3 episodes", mdp, n_planning, 3,
                                       int(rng.integers(2**31))))
        mdp = random_mdp(rng, int(rng.integers(6, 9)), int(rng.integers(2, 4)), 0.9, n_terminal=1, sparsity=0.3)
        limit, n_planning = int(rng.integers(2, 4)), int(rng.integers(1, 4))
        seed = _truncating_seed(rng, mdp, n_planning, 8, limit)
        cases.append(_episode_case(f"random MDP #4 under a time limit of {limit} steps, n = {n_planning}, "
                                   "8 episodes", mdp, n_planning, 8, seed, time_limit=limit))
        return _scored("dyna_q_episode", fn, cases)
    maze = dyna_maze()
    noisy = random_mdp(np.random.default_rng(9), 6, 3, 0.9, n_terminal=1)
    cases = [
        _episode_case("Dyna maze, n = 0 (plain Q-learning), 2 episodes", maze, 0, 2, 0),
        _episode_case("Dyna maze, n = 5, 3 episodes", maze, 5, 3, 1),
        _episode_case("a random 6-state MDP with noisy transitions, n = 3, 4 episodes", noisy, 3, 4, 2),
        _episode_case("Dyna maze under gymnasium's TimeLimit of 60 steps (episodes end by truncation), n = 5, "
                      "3 episodes", maze, 5, 3, 3, time_limit=60),
        _episode_case("the random 6-state MDP under a TimeLimit of 3 steps, n = 2, 8 episodes", noisy, 2, 8, 0,
                      time_limit=3),
        _episode_case("Dyna maze with max_steps = 25, n = 2, 3 episodes", maze, 2, 3, 5, max_steps=25),
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


def _run_model_steps(step, model, make_optimizer, data, n_steps):
    optimizer = make_optimizer(model.parameters())
    losses = [step(model, optimizer, *data) for _ in range(n_steps)]
    return losses, torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()


def _bug_step_no_zero_grad(model, optimizer, states, actions, next_states):
    inputs = torch.cat([states, one_hot(actions, model.n_actions)], dim=1)
    loss = torch.nn.functional.mse_loss(model(inputs), next_states - states)
    loss.backward()
    optimizer.step()
    return loss.item()


def _bug_step_absolute_target(model, optimizer, states, actions, next_states):
    inputs = torch.cat([states, one_hot(actions, model.n_actions)], dim=1)
    loss = torch.nn.functional.mse_loss(model(inputs), next_states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _bug_step_summed(model, optimizer, states, actions, next_states):
    inputs = torch.cat([states, one_hot(actions, model.n_actions)], dim=1)
    loss = ((model(inputs) - (next_states - states)) ** 2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def _bug_step_zero_grad_after(model, optimizer, states, actions, next_states):
    inputs = torch.cat([states, one_hot(actions, model.n_actions)], dim=1)
    loss = torch.nn.functional.mse_loss(model(inputs), next_states - states)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def _model_step_case(name, seed, batch, hidden, optimizer, n_steps, stale=False) -> Case:
    def run(fn):
        model, make, data = _model_step_setup(seed, batch, hidden, optimizer, stale)
        reference_model = _model_step_setup(seed, batch, hidden, optimizer, stale)[0]
        before = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().copy()
        data_before = [d.clone() for d in data]
        losses, params = _run_model_steps(fn, model, make, data, n_steps)
        if any(not torch.equal(a, b) for a, b in zip(data, data_before)):
            return "the batch tensors were changed: compute the loss without modifying them"
        not_float = [loss for loss in losses if not isinstance(loss, float)]
        if not_float:
            return (f"return the loss as a Python float (loss.item()); got {type(not_float[0]).__name__} "
                    f"{_short_repr(not_float[0])}")
        expected_losses, expected_params = _run_model_steps(model_gradient_step, reference_model, make, data,
                                                            n_steps)
        if np.allclose(params, before):
            return "the parameters did not change: call optimizer.step() after loss.backward()"
        buggy = {}
        for bug, hint in ((_bug_step_absolute_target, "the target is the displacement next_states - states, not "
                           "next_states (the network predicts the change of state)"),
                          (_bug_step_summed, "average the squared errors (mse_loss, or .mean()), do not sum them"),
                          (_bug_step_no_zero_grad, "the gradients of earlier steps were added in: call "
                           "optimizer.zero_grad() before loss.backward()"),
                          (_bug_step_zero_grad_after, "gradients left over from before the call were added in: "
                           "clear them first (optimizer.zero_grad() before loss.backward()), not after the step")):
            bug_model, bug_make, bug_data = _model_step_setup(seed, batch, hidden, optimizer, stale)
            buggy[hint] = _run_model_steps(bug, bug_model, bug_make, bug_data, n_steps)
        # a bug whose parameters match too names the mistake more surely than one whose losses alone match
        ranked = sorted(buggy.items(), key=lambda item: not (
            np.shape(item[1][1]) == np.shape(params) and np.allclose(item[1][1], params, atol=1e-5, rtol=0)))
        problem = compare_arrays(losses, expected_losses, atol=1e-5, what="the losses returned",
                                 diagnoses=[(b[0], hint) for hint, b in ranked])
        if problem:
            return problem
        return compare_arrays(params, expected_params, atol=1e-5, what="the parameters after the steps",
                              diagnoses=[(b[1], hint) for hint, b in buggy.items()])

    return Case(name, run)


def check_model_gradient_step(fn, hidden: bool = False) -> Score:
    """Check ``model_gradient_step(model, optimizer, states, actions, next_states) -> float``."""
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
