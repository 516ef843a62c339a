"""Checks for Chapter 1 (Markov decision processes).

Each ``check_<exercise>(fn, hidden=False)`` runs the student's ``fn`` on textbook cases and random instances,
compares it with the reference in :mod:`solutions.mdp`, prints one line per case and returns a
:class:`~autograder.checks._harness.Score`. With ``hidden=True`` it runs only random instances drawn from
:func:`~autograder.checks._harness.hidden_rng`, which the grader seeds with a number the student cannot know.

When an answer is wrong, the check compares it with the output of known-buggy variants (the ``_bug_*``
functions below) to name the likely bug in the hint.
"""

from __future__ import annotations

import numpy as np

from solutions import mdp as ref
from solutions.envs import TabularMDP, aima_4x3, penguin_on_ice, random_mdp, sutton_barto_4x4

from ._harness import Case, CheckTimeout, Score, compare_arrays, hidden_rng, run_check

__all__ = [
    "POINTS",
    "check_discounted_return",
    "check_greedy_policy",
    "check_policy_evaluation",
    "check_policy_iteration",
    "check_q_from_v",
    "check_sample_trajectory",
    "check_value_iteration",
]

#: Points of each exercise; the test cells' nbgrader metadata must agree (a test checks it).
POINTS = {
    "discounted_return": 1,
    "sample_trajectory": 2,
    "policy_evaluation": 2,
    "q_from_v": 1,
    "greedy_policy": 1,
    "value_iteration": 2,
    "policy_iteration": 2,
}

#: The penguin trajectory of the chapter: (state, next reward) pairs, gamma = 0.9.
PENGUIN_TAU = [1, 0, 2, 0, 6, 0, 10, 0, 9, 1, 10, 0, 11, 1, 15, 0]

#: Utilities of the AIMA 4x3 world (Russell & Norvig, Figure 17.3), states in the order of ``aima_4x3``.
AIMA_VALUES = np.array([0.812, 0.868, 0.918, 1.0, 0.762, 0.660, -1.0, 0.705, 0.655, 0.611, 0.388, 0.0])

#: v_pi of the equiprobable random policy on Sutton & Barto's 4x4 grid-world (Figure 4.1, k = infinity).
SB_FIG_4_1 = np.array([0, -14, -20, -22, -14, -18, -20, -20, -20, -20, -18, -14, -22, -20, -14, 0], float)

_HINT_IN_PLACE = ("after a few sweeps your values match an in-place sweep: each sweep must use only the "
                  "previous sweep's values (compute the new array from the old one, then replace it)")
_HINT_TERMINAL = ("you bootstrapped from a terminal state: a terminal state has value 0 whatever V holds "
                  "there (use mdp.terminal)")
_HINT_AXIS = ("you summed over the wrong axis: the expectation runs over the next state s', the last axis "
              "of P[s, a, s']")
_HINT_NO_GAMMA = "you forgot to discount: multiply the expected next value by gamma"


def _random_instances(rng: np.random.Generator, n: int, gamma=None) -> list:
    """``n`` random MDPs of varied sizes; ``gamma`` None draws it from [0.5, 0.99]."""
    mdps = []
    for _ in range(n):
        g = float(rng.uniform(0.5, 0.99)) if gamma is None else gamma
        mdps.append(random_mdp(rng, int(rng.integers(3, 9)), int(rng.integers(2, 5)), g,
                               n_terminal=int(rng.integers(0, 3))))
    return mdps


def _random_policy(rng: np.random.Generator, mdp) -> np.ndarray:
    return rng.dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)


class _EvaluationDiverges(Exception):
    """Raised by the reference ``policy_evaluation`` lent to ``policy_iteration`` when asked to sweep an improper
    policy at gamma = 1 until convergence: the student's own version would loop forever there."""


def _policy_evaluation_helper(mdp, pi, theta=1e-10, max_sweeps=None):
    if max_sweeps is None and mdp.gamma == 1.0 and not ref.is_proper(mdp, pi):
        raise _EvaluationDiverges
    return ref.policy_evaluation(mdp, pi, theta, max_sweeps)


#: Earlier exercises that later ones call: while a later one is checked they are the reference, so that one
#: mistake costs the points of one exercise only.
_HELPERS = {
    "greedy_policy": {"q_from_v": ref.q_from_v},
    "value_iteration": {"q_from_v": ref.q_from_v},
    "policy_iteration": {"q_from_v": ref.q_from_v, "policy_evaluation": _policy_evaluation_helper},
}


def _scored(name: str, fn, cases: list[Case]) -> Score:
    return run_check(name, fn, cases, POINTS[name], helpers=_HELPERS.get(name))


# ----------------------------------------------------------------------------------------- discounted return

def _bug_return_discounts_first(rewards, gamma):
    rewards = np.asarray(rewards, float)
    return float(np.sum(gamma ** np.arange(1, len(rewards) + 1) * rewards))


def _bug_return_reversed(rewards, gamma):
    rewards = np.asarray(rewards, float)
    return float(np.sum(gamma ** np.arange(len(rewards))[::-1] * rewards))


def _return_case(name: str, rewards, gamma: float) -> Case:
    def run(fn):
        expected = ref.discounted_return(rewards, gamma)
        diagnoses = [
            (_bug_return_discounts_first(rewards, gamma),
             "the first reward R_{t+1} must not be discounted: its weight is gamma^0 = 1"),
            (_bug_return_reversed(rewards, gamma),
             "the weights run backwards: gamma^k multiplies the k-th reward after t, so later rewards count less"),
            (float(np.sum(rewards)), "the rewards are summed without discounting"),
        ]
        return compare_arrays(fn(list(rewards), gamma), expected, atol=1e-9, what="G_t", diagnoses=diagnoses)

    return Case(name, run)


def check_discounted_return(fn, hidden: bool = False) -> Score:
    """Check ``discounted_return(rewards, gamma) -> float`` (Sutton & Barto 2018, eq. 3.8)."""
    if hidden:
        rng = hidden_rng()
        cases = [_return_case(f"random rewards #{i + 1}", rng.normal(size=rng.integers(1, 30)).round(2),
                              float(rng.uniform(0.0, 1.0))) for i in range(4)]
    else:
        rewards = PENGUIN_TAU[1::2]
        cases = [
            _return_case("penguin trajectory, G_1 = 1.1875 (gamma = 0.9)", rewards, 0.9),
            _return_case("penguin trajectory, G_2 = 1.3195", rewards[1:], 0.9),
            _return_case("penguin trajectory, G_3 = 1.4661", rewards[2:], 0.9),
            _return_case("gamma = 1 sums the rewards", [1.0, -2.0, 3.5], 1.0),
            _return_case("gamma = 0 keeps only R_{t+1}", [2.0, 5.0, 7.0], 0.0),
            _return_case("no rewards left: G_T = 0", [], 0.9),
        ]
    return _scored("discounted_return", fn, cases)


# ----------------------------------------------------------------------------------------- sample trajectory

def _unpack_trajectory(result, mdp):
    """(states, actions, rewards) as arrays, or a message saying what is wrong with ``result``."""
    try:
        states, actions, rewards = result
    except (TypeError, ValueError):
        return "return a tuple (states, actions, rewards)"
    states, actions, rewards = np.asarray(states), np.asarray(actions), np.asarray(rewards, float)
    if not (states.ndim == actions.ndim == rewards.ndim == 1):
        return "states, actions and rewards should be one-dimensional"
    if len(states) != len(actions) + 1 or len(actions) != len(rewards):
        return (f"expected len(states) = len(actions) + 1 = len(rewards) + 1 (S_0 ... S_T); got lengths "
                f"{len(states)}, {len(actions)}, {len(rewards)}")
    if len(states) and (np.any(states < 0) or np.any(states >= mdp.n_states)):
        return "states must be integers in 0 .. S-1"
    if len(actions) and (np.any(actions < 0) or np.any(actions >= mdp.n_actions)):
        return "actions must be integers in 0 .. A-1"
    return states.astype(int), actions.astype(int), rewards


def _trajectory_valid(mdp, pi, s0, max_steps, result) -> str | None:
    unpacked = _unpack_trajectory(result, mdp)
    if isinstance(unpacked, str):
        return unpacked
    states, actions, rewards = unpacked
    if states[0] != s0:
        return f"states[0] should be the start state {s0}; got {states[0]}"
    T = len(actions)
    if T > max_steps:
        return f"took {T} steps; max_steps is {max_steps}"
    for t in range(T):
        s, a, s_next = states[t], actions[t], states[t + 1]
        if mdp.terminal[s]:
            return (f"the episode went on after reaching terminal state {s} at t = {t}: stop as soon as "
                    "S_t is terminal")
        if pi[s, a] == 0:
            return f"A_{t} = {a} has probability 0 under pi in state {s}"
        if mdp.P[s, a, s_next] == 0:
            return f"S_{t + 1} = {s_next} cannot follow S_{t} = {s}, A_{t} = {a}: draw S_(t+1) from P[S_t, A_t]"
        if not np.isclose(rewards[t], mdp.R[s, a]):
            return f"R_{t + 1} should be R[S_{t}, A_{t}] = {mdp.R[s, a]:.4g}; got {rewards[t]:.4g}"
    if T < max_steps and not mdp.terminal[states[-1]]:
        return f"stopped after {T} steps in non-terminal state {states[-1]} (max_steps = {max_steps})"
    return None


def _valid_case(name, mdp, pi, s0, max_steps, seed) -> Case:
    return Case(name, lambda fn: _trajectory_valid(
        mdp, pi, s0, max_steps, fn(mdp, pi, s0, np.random.default_rng(seed), max_steps)))


def _rng_case(mdp, pi, s0) -> Case:
    def run(fn):
        a = fn(mdp, pi, s0, np.random.default_rng(7), 30)
        b = fn(mdp, pi, s0, np.random.default_rng(7), 30)
        c = fn(mdp, pi, s0, np.random.default_rng(8), 30)
        ua, ub, uc = (_unpack_trajectory(x, mdp) for x in (a, b, c))
        for u in (ua, ub, uc):
            if isinstance(u, str):
                return u
        if not all(np.array_equal(x, y) for x, y in zip(ua, ub)):
            return ("two calls with generators of the same seed gave different episodes: draw every random "
                    "number from rng (not np.random or random)")
        if all(np.array_equal(x, y) for x, y in zip(ua, uc)):
            return "generators with different seeds gave the same episode: use rng for every random draw"
        return None

    return Case("all randomness comes from rng", run)


def _frequency_case(name, mdp, pi, s0, rng_seed, n=3000) -> Case:
    """A_0 and S_1 have the right distributions: every frequency within 5 standard errors (+0.005)."""

    def run(fn):
        rng = np.random.default_rng(rng_seed)
        first_actions = np.zeros(mdp.n_actions)
        next_states = np.zeros(mdp.n_states)
        for _ in range(n):
            unpacked = _unpack_trajectory(fn(mdp, pi, s0, rng, 1), mdp)
            if isinstance(unpacked, str):
                return unpacked
            states, actions, _ = unpacked
            if len(actions) != 1:
                return f"with max_steps = 1 from non-terminal state {s0} there should be exactly one step"
            first_actions[actions[0]] += 1
            next_states[states[1]] += 1
        for counts, probs, what in ((first_actions, pi[s0], "A_0 ~ pi[S_0]"),
                                    (next_states, pi[s0] @ mdp.P[s0], "S_1 ~ P[S_0, A_0]")):
            freq = counts / n
            tolerance = 5 * np.sqrt(probs * (1 - probs) / n) + 0.005
            if np.any(np.abs(freq - probs) > tolerance):
                return (f"over {n} episodes the frequencies do not follow {what}: expected "
                        f"{np.round(probs, 3).tolist()}, got {np.round(freq, 3).tolist()}")
        return None

    return Case(name, run)


def check_sample_trajectory(fn, hidden: bool = False) -> Score:
    """Check ``sample_trajectory(mdp, pi, s0, rng, max_steps) -> (states, actions, rewards)``."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i, mdp in enumerate(_random_instances(rng, 2)):
            pi = _random_policy(rng, mdp)
            seed = int(rng.integers(2**31))
            cases.append(_valid_case(f"random MDP #{i + 1}: a valid episode", mdp, pi, 0, 50, seed))
            cases.append(_frequency_case(f"random MDP #{i + 1}: A_0 and S_1 frequencies", mdp, pi, 0, seed))
        return _scored("sample_trajectory", fn, cases)
    aima = aima_4x3()
    grid = sutton_barto_4x4()
    penguin = penguin_on_ice()
    random_pi = ref.uniform_random_policy(grid)
    pi_aima = np.tile([0.5, 0.3, 0.0, 0.2], (aima.n_states, 1))
    cases = [
        _valid_case("4x4 grid-world, random policy: a valid episode that ends at a terminal state",
                    grid, random_pi, 6, 1000, 1),
        _valid_case("penguin on ice: exactly max_steps = 12 steps (no terminal state)",
                    penguin, ref.uniform_random_policy(penguin), 0, 12, 2),
        _valid_case("max_steps = 0: no step at all", grid, random_pi, 5, 0, 3),
        _valid_case("start in a terminal state: no step at all", grid, random_pi, 15, 100, 4),
        _rng_case(penguin, ref.uniform_random_policy(penguin), 0),
        _frequency_case("AIMA 4x3 from (1,1): frequencies of A_0 and S_1", aima, pi_aima, 7, 5),
    ]
    return _scored("sample_trajectory", fn, cases)


# ----------------------------------------------------------------------------------------- policy evaluation

def _bug_evaluation_in_place(mdp, pi, sweeps):
    V = np.zeros(mdp.n_states)
    for _ in range(sweeps):
        for s in range(mdp.n_states):
            if not mdp.terminal[s]:
                V[s] = np.sum(pi[s] * (mdp.R[s] + mdp.gamma * mdp.P[s] @ V))
    return V


def _evaluation_sweeps_case(name, mdp, pi, sweeps) -> Case:
    def run(fn):
        expected = ref.policy_evaluation(mdp, pi, max_sweeps=sweeps)
        diagnoses = [(_bug_evaluation_in_place(mdp, pi, sweeps), _HINT_IN_PLACE)]
        if sweeps < 50:
            diagnoses.append((ref.policy_evaluation(mdp, pi),
                              f"max_sweeps = {sweeps} was ignored: stop after that many sweeps"))
        return compare_arrays(fn(mdp, pi, max_sweeps=sweeps), expected, atol=1e-9,
                              what=f"v_{sweeps}", diagnoses=diagnoses)

    return Case(name, run)


def _evaluation_theta_case(name, mdp, pi, theta) -> Case:
    """Stopping at the first sweep whose largest change is below ``theta``: one sweep more or less is accepted
    (it changes the values by less than ``theta``); ignoring ``theta`` is not."""

    def run(fn):
        diagnoses = [(ref.policy_evaluation_exact(mdp, pi),
                      f"theta = {theta:g} was ignored: stop after the first sweep whose largest change is below "
                      "theta")]
        return compare_arrays(fn(mdp, pi, theta=theta), ref.policy_evaluation(mdp, pi, theta=theta), atol=theta,
                              what=f"V (theta = {theta:g})", diagnoses=diagnoses)

    return Case(name, run)


def _evaluation_converged_case(name, mdp, pi, expected=None, atol=1e-6) -> Case:
    def run(fn):
        target = ref.policy_evaluation_exact(mdp, pi) if expected is None else expected
        return compare_arrays(fn(mdp, pi), target, atol=atol, what="v_pi")

    return Case(name, run)


def check_policy_evaluation(fn, hidden: bool = False) -> Score:
    """Check ``policy_evaluation(mdp, pi, theta=1e-10, max_sweeps=None) -> V`` (synchronous sweeps)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i, mdp in enumerate(_random_instances(rng, 3)):
            pi = _random_policy(rng, mdp)
            cases.append(_evaluation_converged_case(f"random MDP #{i + 1} (gamma = {mdp.gamma:.2f}): v_pi",
                                                    mdp, pi))
            sweeps = int(rng.integers(2, 5))
            cases.append(_evaluation_sweeps_case(f"random MDP #{i + 1}: after {sweeps} sweeps", mdp, pi, sweeps))
        return _scored("policy_evaluation", fn, cases)
    grid = sutton_barto_4x4()
    pi = ref.uniform_random_policy(grid)
    mdp = random_mdp(np.random.default_rng(2024), 7, 3, 0.9, n_terminal=1)
    pi_random = _random_policy(np.random.default_rng(1), mdp)
    cases = [
        _evaluation_converged_case("Sutton & Barto Figure 4.1, k = ∞", grid, pi, SB_FIG_4_1, atol=1e-4),
        _evaluation_sweeps_case("Sutton & Barto Figure 4.1, k = 0: no sweep, v_0 = 0", grid, pi, 0),
        _evaluation_sweeps_case("Sutton & Barto Figure 4.1, k = 1", grid, pi, 1),
        _evaluation_sweeps_case("Sutton & Barto Figure 4.1, k = 2", grid, pi, 2),
        _evaluation_sweeps_case("Sutton & Barto Figure 4.1, k = 3", grid, pi, 3),
        _evaluation_converged_case("a random 7-state MDP, gamma = 0.9", mdp, pi_random),
        _evaluation_theta_case("4x4 grid-world, theta = 0.01: stop at the first sweep that changes V by less",
                               grid, pi, 0.01),
    ]
    return _scored("policy_evaluation", fn, cases)


# ----------------------------------------------------------------------------------------- q from v

def _q_case(name, mdp, V) -> Case:
    def run(fn):
        V_masked = np.where(mdp.terminal, 0.0, V)
        diagnoses = [
            (mdp.R + mdp.gamma * mdp.P @ V, _HINT_TERMINAL),
            (mdp.R + mdp.gamma * np.einsum("sat,s->sa", mdp.P, V_masked), _HINT_AXIS),
            (mdp.R + mdp.gamma * np.einsum("tas,t->sa", mdp.P, V_masked), _HINT_AXIS),
            (mdp.R + mdp.P @ V_masked, _HINT_NO_GAMMA),
        ]
        return compare_arrays(fn(mdp, V.copy()), ref.q_from_v(mdp, V), atol=1e-9, what="Q",
                              diagnoses=diagnoses)

    return Case(name, run)


def check_q_from_v(fn, hidden: bool = False) -> Score:
    """Check ``q_from_v(mdp, V) -> Q`` of shape (S, A) (Sutton & Barto 2018, eq. 4.6)."""
    if hidden:
        rng = hidden_rng()
        cases = [_q_case(f"random MDP #{i + 1}", mdp, rng.normal(size=mdp.n_states) * 3)
                 for i, mdp in enumerate(_random_instances(rng, 4))]
        return _scored("q_from_v", fn, cases)
    aima = aima_4x3()
    V_star = ref.value_iteration(aima)
    rng = np.random.default_rng(11)
    mdp = random_mdp(rng, 6, 3, 0.8, n_terminal=1)
    V_with_terminal = V_star.copy()
    V_with_terminal[aima.terminal] = 5.0
    cases = [
        _q_case("AIMA 4x3 world with V = v_*", aima, V_star),
        _q_case("AIMA 4x3 world, gamma = 0.9, V = v_* of gamma = 1", aima.replace(gamma=0.9), V_star),
        _q_case("a random 6-state MDP, random V", mdp, rng.normal(size=6)),
        _q_case("V holds 5.0 at the terminal state (must be ignored)", aima, V_with_terminal),
    ]
    return _scored("q_from_v", fn, cases)


# ----------------------------------------------------------------------------------------- greedy policy

def _greedy_case(name, mdp, V) -> Case:
    def run(fn):
        policy = fn(mdp, V.copy())
        Q = ref.q_from_v(mdp, V)
        arr = np.asarray(policy)
        if arr.shape == (mdp.n_actions,) and mdp.n_actions != mdp.n_states:
            return "the result has one entry per action: take the argmax over actions (axis=1) for each state"
        if arr.shape != (mdp.n_states,):
            return f"return one action per state, shape ({mdp.n_states},); got shape {arr.shape}"
        if not np.issubdtype(arr.dtype, np.integer):
            return f"actions should be integers (e.g. from np.argmax); got dtype {arr.dtype}"
        if np.any((arr < 0) | (arr >= mdp.n_actions)):
            return "actions must lie in 0 .. A-1"
        chosen = Q[np.arange(mdp.n_states), arr]
        bad = np.flatnonzero(chosen < Q.max(axis=1) - 1e-9)
        if bad.size == 0:
            return None
        if np.array_equal(arr, np.argmax(mdp.R, axis=1)):
            return "you maximised the immediate reward R[s, a] only: maximise q(s, a) = R + gamma P v"
        if np.array_equal(arr, np.argmin(Q, axis=1)):
            return "you picked the worst action (argmin): the greedy action maximises q(s, a)"
        s = bad[0]
        return (f"in state {s} action {arr[s]} has q = {chosen[s]:.4g} but the best action has "
                f"q = {Q[s].max():.4g}")

    return Case(name, run)


def check_greedy_policy(fn, hidden: bool = False) -> Score:
    """Check ``greedy_policy(mdp, V) -> policy`` (int array (S,)); any maximising action is accepted."""
    if hidden:
        rng = hidden_rng()
        cases = [_greedy_case(f"random MDP #{i + 1}", mdp, rng.normal(size=mdp.n_states) * 3)
                 for i, mdp in enumerate(_random_instances(rng, 4))]
        return _scored("greedy_policy", fn, cases)
    aima = aima_4x3()
    harsh = aima_4x3(step_reward=-2.0)
    rng = np.random.default_rng(3)
    mdp = random_mdp(rng, 8, 4, 0.9, n_terminal=2)
    cases = [
        _greedy_case("AIMA 4x3 world, step reward -0.04, V = v_*", aima, ref.value_iteration(aima)),
        _greedy_case("AIMA 4x3 world, step reward -2, V = v_*", harsh, ref.value_iteration(harsh)),
        _greedy_case("a random 8-state MDP, random V", mdp, rng.normal(size=8) * 3),
    ]
    return _scored("greedy_policy", fn, cases)


# ----------------------------------------------------------------------------------------- value iteration

def _bug_value_iteration_in_place(mdp, sweeps):
    V = np.zeros(mdp.n_states)
    for _ in range(sweeps):
        for s in range(mdp.n_states):
            if not mdp.terminal[s]:
                V[s] = np.max(mdp.R[s] + mdp.gamma * mdp.P[s] @ V)
    return V


def _vi_sweeps_case(name, mdp, sweeps) -> Case:
    def run(fn):
        diagnoses = [(_bug_value_iteration_in_place(mdp, sweeps), _HINT_IN_PLACE),
                     (ref.value_iteration(mdp), f"max_sweeps = {sweeps} was ignored: stop after that many sweeps")]
        return compare_arrays(fn(mdp, max_sweeps=sweeps), ref.value_iteration(mdp, max_sweeps=sweeps),
                              atol=1e-9, what=f"v_{sweeps}", diagnoses=diagnoses)

    return Case(name, run)


def _vi_theta_case(name, mdp, theta) -> Case:
    """As :func:`_evaluation_theta_case`, for value iteration."""

    def run(fn):
        diagnoses = [(ref.value_iteration(mdp),
                      f"theta = {theta:g} was ignored: stop after the first sweep whose largest change is below "
                      "theta")]
        return compare_arrays(fn(mdp, theta=theta), ref.value_iteration(mdp, theta=theta), atol=theta,
                              what=f"V (theta = {theta:g})", diagnoses=diagnoses)

    return Case(name, run)


def _vi_converged_case(name, mdp, expected=None, atol=1e-6) -> Case:
    def run(fn):
        target = ref.value_iteration(mdp) if expected is None else expected
        return compare_arrays(fn(mdp), target, atol=atol, what="v_*")

    return Case(name, run)


def check_value_iteration(fn, hidden: bool = False) -> Score:
    """Check ``value_iteration(mdp, theta=1e-10, max_sweeps=None) -> V`` (synchronous sweeps)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i, mdp in enumerate(_random_instances(rng, 3)):
            cases.append(_vi_converged_case(f"random MDP #{i + 1} (gamma = {mdp.gamma:.2f}): v_*", mdp))
            sweeps = int(rng.integers(2, 5))
            cases.append(_vi_sweeps_case(f"random MDP #{i + 1}: after {sweeps} sweeps", mdp, sweeps))
        return _scored("value_iteration", fn, cases)
    aima = aima_4x3()
    cases = [
        _vi_converged_case("AIMA 4x3 world, gamma = 1: Figure 17.3 to 3 decimals", aima, AIMA_VALUES, atol=5e-4),
        _vi_sweeps_case("AIMA 4x3 world after 1 sweep", aima, 1),
        _vi_sweeps_case("AIMA 4x3 world after 3 sweeps", aima, 3),
        _vi_converged_case("AIMA 4x3 world, step reward -2", aima_4x3(step_reward=-2.0)),
        _vi_converged_case("a random 7-state MDP, gamma = 0.95",
                           random_mdp(np.random.default_rng(5), 7, 3, 0.95, n_terminal=1)),
        _vi_theta_case("the same MDP, theta = 0.05: stop at the first sweep that changes V by less",
                       random_mdp(np.random.default_rng(5), 7, 3, 0.95, n_terminal=1), 0.05),
    ]
    return _scored("value_iteration", fn, cases)


# ----------------------------------------------------------------------------------------- policy iteration

def _pi_case(name, mdp, pi0=None) -> Case:
    def run(fn):
        result = fn(mdp) if pi0 is None else fn(mdp, pi0.copy())
        try:
            policy, V = result
        except (TypeError, ValueError):
            return "return a tuple (policy, V)"
        policy, V = np.asarray(policy), np.asarray(V)
        if policy.dtype.kind == "f" and V.dtype.kind in "iu":
            return "the tuple is the wrong way round: return (policy, V)"
        if policy.shape != (mdp.n_states,) or not np.issubdtype(policy.dtype, np.integer):
            return f"policy should be an int array of shape ({mdp.n_states},); got {policy.dtype} {policy.shape}"
        V_star = ref.value_iteration(mdp)
        message = compare_arrays(V, V_star, atol=1e-6, what="V")
        if message:
            return message
        achieved = ref.policy_evaluation_exact(mdp, ref.deterministic_to_stochastic(mdp, policy))
        if not np.allclose(achieved, V_star, atol=1e-6):
            return "V is right but the policy you returned is not optimal (is it greedy with respect to V?)"
        return None

    return Case(name, run)


def _tied_mdp():
    """A chain where actions 0 and 1 are copies of each other: a tie in every state."""
    S = 5
    P = np.zeros((S, 3, S))
    R = np.full((S, 3), -1.0)
    for s in range(S - 1):
        P[s, 0, s + 1] = P[s, 1, s + 1] = 1.0
        P[s, 2, s] = 1.0
        R[s, 2] = -2.0
    P[S - 1, :, S - 1] = 1.0
    R[S - 1] = 0.0
    terminal = np.zeros(S, dtype=bool)
    terminal[-1] = True
    return TabularMDP(P, R, 0.9, terminal=terminal)


_HINT_IMPROPER = ("with gamma = 1, first check that the starting policy is proper (reaches a terminal state "
                  "from every state) and raise a ValueError saying it is improper if it is not")


def _improper_case(name, mdp, pi0=None) -> Case:
    """``pi0`` (or the default, action 0 everywhere) is improper and gamma = 1: a ValueError naming the problem."""

    def run(fn):
        try:
            fn(mdp) if pi0 is None else fn(mdp, pi0.copy())
        except (_EvaluationDiverges, CheckTimeout):
            return (f"you started evaluating the improper starting policy, which never converges at gamma = 1 "
                    f"(its values fall without bound): {_HINT_IMPROPER}")
        except np.linalg.LinAlgError as exc:
            return f"np.linalg failed on the singular Bellman equations ({exc}): {_HINT_IMPROPER}"
        except RuntimeError as exc:
            return f"raised RuntimeError({str(exc)[:80]!r}): {_HINT_IMPROPER}"
        except ValueError as exc:
            if "proper" not in str(exc).lower():
                return (f"raised ValueError({str(exc)[:80]!r}): right exception, but the message should say that "
                        "the starting policy is improper")
            return None
        what = "action 0 in every state (the default)" if pi0 is None else "pi0"
        return (f"returned a result, but {what} is improper and gamma = 1: expected a ValueError"
                + ("" if pi0 is None else " (did your code start from pi0?)"))

    return Case(name, run)


def _gamma_1_random_instance(rng: np.random.Generator) -> TabularMDP:
    """A random MDP at gamma = 1 in which every step ends the episode with probability at least 0.2."""
    base = random_mdp(rng, int(rng.integers(4, 9)), int(rng.integers(2, 5)), 1.0, n_terminal=1)
    P = base.P.copy()
    P[~base.terminal] *= 0.8
    P[~base.terminal, :, np.flatnonzero(base.terminal)[0]] += 0.2
    return TabularMDP(P, base.R, 1.0, terminal=base.terminal)


def _improper_random_instance(rng: np.random.Generator):
    """A random MDP at gamma = 1 with costs on every step, and a starting policy caught in a two-state loop."""
    base = random_mdp(rng, int(rng.integers(5, 9)), int(rng.integers(2, 4)), 1.0, n_terminal=1)
    P, R = base.P.copy(), -np.abs(base.R) - 0.1
    R[base.terminal] = 0.0
    pi0 = rng.integers(base.n_actions, size=base.n_states)
    s1, s2 = rng.choice(np.flatnonzero(~base.terminal), size=2, replace=False)
    P[s1, pi0[s1]] = np.eye(base.n_states)[s2]
    P[s2, pi0[s2]] = np.eye(base.n_states)[s1]
    return TabularMDP(P, R, 1.0, terminal=base.terminal), pi0


def check_policy_iteration(fn, hidden: bool = False) -> Score:
    """Check ``policy_iteration(mdp, pi0=None) -> (policy, V)``: an optimal policy and v_*, and a ValueError
    when gamma = 1 and the starting policy is improper."""
    if hidden:
        rng = hidden_rng()
        cases = [_pi_case(f"random MDP #{i + 1}", mdp) for i, mdp in enumerate(_random_instances(rng, 3))]
        cases.append(_pi_case("random MDP #4, gamma = 1 (every policy ends its episodes)",
                              _gamma_1_random_instance(rng)))
        cases.append(_improper_case("random MDP #5, gamma = 1, pi0 caught in a loop: a ValueError",
                                    *_improper_random_instance(rng)))
        return _scored("policy_iteration", fn, cases)
    aima = aima_4x3()
    grid = sutton_barto_4x4()
    down_then_right = np.where(np.arange(grid.n_states) >= 12, 1, 2)  # down, and right along the bottom row
    cases = [
        _pi_case("AIMA 4x3 world, gamma = 1", aima),
        _pi_case("AIMA 4x3 world, step reward -2, starting from 'right' everywhere",
                 aima_4x3(step_reward=-2.0), np.full(aima.n_states, 1)),
        _pi_case("equally good actions in every state: the loop must still stop (S&B Exercise 4.4)",
                 _tied_mdp()),
        _pi_case("a random 8-state MDP, gamma = 0.9",
                 random_mdp(np.random.default_rng(8), 8, 3, 0.9, n_terminal=1)),
        _pi_case("4x4 grid-world, gamma = 1, from the proper policy 'down, then right along the bottom row'",
                 grid, down_then_right),
        _improper_case("4x4 grid-world, gamma = 1, the default start 'up' everywhere is improper: a ValueError",
                       grid),
        _improper_case("AIMA 4x3 world, pi0 = 'left' everywhere is improper: a ValueError",
                       aima, np.full(aima.n_states, 3)),
    ]
    return _scored("policy_iteration", fn, cases)
