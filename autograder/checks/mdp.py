"""Checks for Chapter 1 (Markov decision processes).

Each ``check_<exercise>(fn, hidden=False)`` runs the student's ``fn`` on textbook cases and random instances,
compares it with the reference in :mod:`solutions.mdp`, prints one line per case and returns a
:class:`~autograder.checks._harness.Score`. With ``hidden=True`` it runs only random instances drawn from
:func:`~autograder.checks._harness.hidden_rng`, which the grader seeds with a number the student cannot know.

When an answer is wrong, each case computes what known mistakes would return on its inputs (the ``_bug_*``
functions and the diagnoses below: in-place sweeps, a missing gamma, bootstrapping from terminal states, the
wrong axis, a stopping rule that ignores ``theta`` or ``max_sweeps``...). The harness names a mistake only when it
explains every failing case; otherwise it shows the smallest failing case.
"""

from __future__ import annotations

import numpy as np

from solutions import mdp as ref
from solutions.envs import TabularMDP, aima_4x3, penguin_on_ice, random_mdp, sutton_barto_4x4

from ._harness import (
    Case,
    CheckTimeout,
    Failure,
    Score,
    compare_arrays,
    format_pair,
    hidden_rng,
    run_check,
)

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

#: Sweeps after which a diagnosis (the output of a known mistake) that has not converged is dropped.
_DIAGNOSIS_SWEEP_CAP = 5000

_HINT_IN_PLACE = ("after a few sweeps your values match an in-place sweep: each sweep must use only the "
                  "previous sweep's values (compute the new array from the old one, then replace it)")
_HINT_ONE_SWEEP = ("your loop stops after the first sweep: the change must compare the new values with the "
                   "previous ones (`V_old = V` is not a copy, it is the same array; use V.copy() or build a new "
                   "array)")
_HINT_NEVER_RAN = ("you returned v_0 = 0: no sweep was made (a loop `while delta > theta` needs delta to start "
                   "above theta, e.g. at infinity)")
_HINT_MAX_SWEEPS_IGNORED = ("max_sweeps was ignored: stop after max_sweeps sweeps, and make none when "
                            "max_sweeps = 0 (test `max_sweeps is not None`; `if max_sweeps:` treats 0 like None)")
_HINT_SWEEP_TOO_MANY = "one sweep too many: max_sweeps = k returns v_k, the values after exactly k sweeps"
_HINT_SWEEP_TOO_FEW = "one sweep too few: max_sweeps = k returns v_k, the values after exactly k sweeps"
_HINT_THETA_IGNORED = ("theta was ignored: stop after the first sweep whose largest change "
                       "max_s |v_new(s) - v(s)| is below theta")
_HINT_MEAN_CHANGE = ("your stopping rule uses the mean change of a sweep: stop when the *largest* change "
                     "max_s |v_new(s) - v(s)| is below theta")
_HINT_SWEEP_NO_GAMMA = "you forgot to discount: the backup is R + gamma * P V"
_HINT_TERMINAL = ("you bootstrapped from a terminal state: a terminal state has value 0 whatever V holds "
                  "there (use mdp.terminal)")
_HINT_AXIS = ("you summed over the wrong axis: the expectation runs over the next state s', the last axis "
              "of P[s, a, s']")
_HINT_NO_GAMMA = "you forgot to discount: multiply the expected next value by gamma"


def _permuted(mdp: TabularMDP, rng: np.random.Generator) -> TabularMDP:
    """The same MDP with its states renumbered at random (``random_mdp`` puts the terminal states last)."""
    order = rng.permutation(mdp.n_states)
    return TabularMDP(mdp.P[order][:, :, order], mdp.R[order], mdp.gamma, terminal=mdp.terminal[order])


def _random_instances(rng: np.random.Generator, n: int, gamma=None, min_terminal: int = 0) -> list:
    """``n`` random MDPs of varied sizes, states in random order; ``gamma`` None draws it from [0.5, 0.99]."""
    mdps = []
    for _ in range(n):
        g = float(rng.uniform(0.5, 0.99)) if gamma is None else gamma
        mdps.append(_permuted(random_mdp(rng, int(rng.integers(3, 9)), int(rng.integers(2, 5)), g,
                                         n_terminal=int(rng.integers(min_terminal, 3))), rng))
    return mdps


def _random_policy(rng: np.random.Generator, mdp) -> np.ndarray:
    return rng.dirichlet(np.ones(mdp.n_actions), size=mdp.n_states)


def _size(mdp, *extra) -> float:
    """How big a case on ``mdp`` is, to pick the smallest failing one: S * A, plus ``extra`` (sweeps, steps)."""
    return float(mdp.n_states * mdp.n_actions + sum(extra))


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


def _bug_return_times_k(rewards, gamma):
    rewards = np.asarray(rewards, float)
    return float(np.sum(gamma * np.arange(len(rewards)) * rewards))


def _return_diagnoses(rewards, gamma) -> list:
    rewards = np.asarray(rewards, float)
    weights = gamma ** np.arange(len(rewards))
    diagnoses = [
        (_bug_return_discounts_first(rewards, gamma),
         "the first reward R_{t+1} must not be discounted: its weight is gamma^0 = 1"),
        (_bug_return_reversed(rewards, gamma),
         "the weights run backwards: gamma^k multiplies the k-th reward after t, so later rewards count less"),
        (float(np.sum(rewards)), "the rewards are summed without discounting"),
        (_bug_return_times_k(rewards, gamma),
         "the weight of the k-th reward is gamma ** k (a power), not gamma * k"),
        (ref.discounted_return(rewards[1:], gamma),
         "the first reward R_{t+1} is missing: G_t starts with R_{t+1}, the first entry of the list"),
        (ref.discounted_return(rewards[:-1], gamma),
         "the last reward R_T is missing: the sum runs over every reward of the list"),
        (ref.discounted_return(rewards, gamma) / max(len(rewards), 1),
         "you averaged: G_t is the discounted *sum* of the rewards, not their mean"),
        (ref.discounted_returns(rewards, gamma),
         "return one number, G_t; you returned the return of every time step"),
        (weights * rewards, "sum the discounted rewards: you returned the list gamma^k R_{t+k+1} itself"),
    ]
    return diagnoses


def _return_case(name: str, rewards, gamma: float) -> Case:
    rewards = [float(r) for r in rewards]

    def run(fn):
        expected = ref.discounted_return(rewards, gamma)
        try:
            got = fn(list(rewards), gamma)
        except (IndexError, RecursionError) as exc:
            if rewards:
                raise
            return Failure(f"raised {type(exc).__name__} on an empty list of rewards", expected=0.0, got=exc,
                           what="G_t", hints=["an empty list has return 0: handle rewards = [] (a recursion needs "
                                              "it as its base case)"])
        return compare_arrays(got, expected, atol=1e-9, what="G_t", diagnoses=_return_diagnoses(rewards, gamma))

    return Case(name, run, inputs={"rewards": rewards, "gamma": gamma}, size=len(rewards) + 1)


def check_discounted_return(fn, hidden: bool = False) -> Score:
    """Check ``discounted_return(rewards, gamma) -> float`` (Sutton & Barto 2018, eq. 3.8)."""
    if hidden:
        rng = hidden_rng()
        cases = [_return_case(f"random rewards #{i + 1}", rng.normal(size=rng.integers(2, 30)).round(2),
                              float(rng.uniform(0.05, 0.99))) for i in range(4)]
        cases.append(_return_case("random rewards, gamma = 1", rng.normal(size=rng.integers(2, 10)).round(2), 1.0))
        cases.append(_return_case("random rewards, gamma = 0", rng.normal(size=rng.integers(2, 10)).round(2), 0.0))
        return _scored("discounted_return", fn, cases)
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

_HINT_RNG_GLOBAL = ("draw every random number from the rng argument (rng.choice, rng.random...), not from "
                    "np.random, the random module or a new np.random.default_rng()")
_HINT_RNG_OWN_SEED = "you made a generator with a seed of your own: draw every random number from the rng argument"
_HINT_STEP_TOO_MANY = "one step too many: take at most max_steps steps (for _ in range(max_steps))"
_HINT_LIKELIEST_ACTION = "A_t is always the likeliest action: sample it from pi[S_t] (rng.choice(A, p=pi[s]))"
_HINT_LIKELIEST_STATE = "S_(t+1) is always the likeliest next state: sample it from P[S_t, A_t]"


def _indices_ok(states, actions, mdp) -> bool:
    return bool(states.dtype.kind in "iuf" and actions.dtype.kind in "iuf"
                and np.all((states >= 0) & (states < mdp.n_states))
                and np.all((actions >= 0) & (actions < mdp.n_actions)))


def _possible(mdp, states, actions) -> bool:
    """True if every S_(t+1) can follow S_t, A_t for t < len(actions)."""
    states, actions = np.asarray(states, dtype=int), np.asarray(actions, dtype=int)
    return bool(np.all(mdp.P[states[:len(actions)], actions, states[1:len(actions) + 1]] > 0))


def _unpack_trajectory(result, mdp, s0):
    """(states, actions, rewards) as arrays, or a message saying what is wrong with ``result``."""
    try:
        states, actions, rewards = result
    except (TypeError, ValueError):
        return "return a tuple (states, actions, rewards)"
    try:
        states, actions, rewards = np.asarray(states), np.asarray(actions), np.asarray(rewards, float)
    except (TypeError, ValueError):
        return "states, actions and rewards should be arrays (or lists) of numbers"
    if not (states.ndim == actions.ndim == rewards.ndim == 1):
        return "states, actions and rewards should be one-dimensional"
    if len(states) != len(actions) + 1 or len(actions) != len(rewards):
        hints = []
        if len(states) == len(actions) == len(rewards) and _indices_ok(states, actions, mdp):
            if len(states) == 0 or _possible(mdp, [s0, *states], actions):
                hints.append("the start state S_0 = s0 is missing: states holds S_0, ..., S_T, one more than the "
                             "actions")
            if len(states) == 0 or states[0] == s0 and _possible(mdp, states, actions[:-1]):
                hints.append("the last state S_T is missing: append S_(t+1) after each step")
        lengths = (len(states), len(actions), len(rewards))
        return Failure(f"expected len(states) = len(actions) + 1 = len(rewards) + 1 (S_0 ... S_T); got lengths "
                       f"{', '.join(map(str, lengths))}", hints=hints, expected="len(actions) + 1, T, T",
                       got=lengths, what="lengths of states, actions, rewards")
    if len(states) and (np.any(states < 0) or np.any(states >= mdp.n_states)):
        return "states must be integers in 0 .. S-1"
    if len(actions) and (np.any(actions < 0) or np.any(actions >= mdp.n_actions)):
        return "actions must be integers in 0 .. A-1"
    return states.astype(int), actions.astype(int), rewards


def _trajectory_valid(mdp, pi, s0, max_steps, result) -> str | None:
    unpacked = _unpack_trajectory(result, mdp, s0)
    if isinstance(unpacked, str):
        return unpacked
    states, actions, rewards = unpacked
    if states[0] != s0:
        return f"states[0] should be the start state {s0}; got {states[0]}"
    T = len(actions)
    rule = (f"at most max_steps = {max_steps} steps, stopping at the first terminal state")
    if T > max_steps:
        hints = [_HINT_STEP_TOO_MANY] if T == max_steps + 1 else []
        return Failure(f"took {T} steps; max_steps is {max_steps}", hints=hints, expected=rule, got=states,
                       what="states")
    for t in range(T):
        s, a, s_next = states[t], actions[t], states[t + 1]
        if mdp.terminal[s]:
            hints = []
            if T > t + 1:
                hints.append("your loop does not stop at terminal states: test mdp.terminal[S_t] before each step "
                             "and stop when it is True")
            if T == t + 1 and not np.any(mdp.terminal[states[:t]]):
                hints.append("you test for a terminal state after the step: test S_t before drawing A_t, so that "
                             "an episode that starts in a terminal state has no step")
            return Failure(f"the episode went on after reaching terminal state {s} at t = {t}: stop as soon as "
                           "S_t is terminal", hints=hints, expected=rule, got=states, what="states")
        if pi[s, a] == 0:
            return f"A_{t} = {a} has probability 0 under pi in state {s}"
        if mdp.P[s, a, s_next] == 0:
            return f"S_{t + 1} = {s_next} cannot follow S_{t} = {s}, A_{t} = {a}: draw S_(t+1) from P[S_t, A_t]"
    expected_rewards = mdp.R[states[:-1], actions]
    if not np.allclose(rewards, expected_rewards):
        t = int(np.flatnonzero(~np.isclose(rewards, expected_rewards))[0])
        e_text, g_text = format_pair(expected_rewards[t], rewards[t])
        hints = []
        if np.allclose(rewards, mdp.R[states[1:], actions]):
            hints.append("R_{t+1} is R[S_t, A_t], for the state the step leaves: you took R[S_(t+1), A_t], the "
                         "reward of the state it enters")
        return Failure(f"R_{t + 1} should be R[S_{t}, A_{t}] = {e_text}; got {g_text}", hints=hints,
                       expected=expected_rewards, got=rewards, what="rewards")
    if T < max_steps and not mdp.terminal[states[-1]]:
        hints = ["one step too few: take max_steps steps unless a terminal state comes first"] \
            if T == max_steps - 1 else []
        return Failure(f"stopped after {T} steps in non-terminal state {states[-1]} (max_steps = {max_steps})",
                       hints=hints, expected=rule, got=states, what="states")
    return None


def _valid_case(name, mdp, pi, s0, max_steps, seed, mdp_text) -> Case:
    return Case(name, lambda fn: _trajectory_valid(
        mdp, pi, s0, max_steps, fn(mdp, pi, s0, np.random.default_rng(seed), max_steps)),
        inputs={"mdp": mdp_text, "pi": pi, "s0": s0, "rng": f"np.random.default_rng({seed})",
                "max_steps": max_steps}, size=_size(mdp, max_steps))


def _always_likeliest(probs: np.ndarray, drawn: np.ndarray) -> bool:
    """True if each draw is ``np.argmax`` of its row of ``probs`` (the likeliest outcome, the first one if tied),
    and some row was random."""
    return bool(np.all(drawn == np.argmax(probs, axis=1)) and np.any(probs.max(axis=1) < 1))


def _rng_case(name, mdp, pi, s0, seed, mdp_text, n_other=20) -> Case:
    """Generators with the same seed give the same episode; generators with ``n_other`` other seeds do not all give
    that episode. With at least two actions or next states of probability <= 1/2 in each step, a correct answer
    fails the second test with probability below 2^-20."""
    others = [seed + 1 + k for k in range(n_other)]

    def run(fn):
        results = [_unpack_trajectory(fn(mdp, pi, s0, np.random.default_rng(x), 30), mdp, s0)
                   for x in (seed, seed, *others)]
        for u in results:
            if isinstance(u, str):
                return u
        a, b, *rest = results
        if not all(np.array_equal(x, y) for x, y in zip(a, b, strict=True)):
            return Failure(f"two calls with generators of the same seed ({seed}) gave different episodes",
                           hints=[_HINT_RNG_GLOBAL], expected=a[0], got=b[0], what="states of the second call")
        if all(all(np.array_equal(x, y) for x, y in zip(a, c, strict=True)) for c in rest):
            states, actions, _ = a
            s, s_next = states[:-1], states[1:]
            hints = [_HINT_RNG_OWN_SEED]
            if len(actions) and _always_likeliest(pi[s], actions):
                hints.append(_HINT_LIKELIEST_ACTION)
            if len(actions) and _always_likeliest(mdp.P[s, actions], s_next):
                hints.append(_HINT_LIKELIEST_STATE)
            return Failure(f"generators with {n_other + 1} different seeds ({seed} to {others[-1]}) all gave the "
                           "same episode", hints=hints, expected="different episodes", got=a[0],
                           what="states of every call")
        return None

    return Case(name, run, inputs={"mdp": mdp_text, "pi": pi, "s0": s0, "max_steps": 30,
                                   "rng": f"np.random.default_rng({seed}) twice, then seeds {seed + 1} to "
                                          f"{others[-1]}"}, size=_size(mdp, 30))


def _frequency_case(name, mdp, pi, s0, rng_seed, mdp_text, n=3000) -> Case:
    """A_0 and S_1 have the right distributions: every frequency within 5 standard errors (+0.005)."""
    S, A = mdp.n_states, mdp.n_actions
    first_action = np.zeros((S, A))
    first_action[np.arange(S), np.argmax(pi, axis=1)] = 1.0
    likeliest_next = np.eye(S)[np.argmax(mdp.P[s0], axis=1)]  # (A, S)
    action_bugs = [
        (np.full(A, 1.0 / A), "A_t looks uniformly drawn: draw it from pi[S_t], e.g. rng.choice(A, p=pi[s])"),
        (first_action[s0], _HINT_LIKELIEST_ACTION),
    ]
    state_bugs = [
        (np.full(S, 1.0 / S), "S_(t+1) looks uniformly drawn: draw it from P[S_t, A_t]"),
        (pi[s0] @ likeliest_next, _HINT_LIKELIEST_STATE),
    ]

    def run(fn):
        rng = np.random.default_rng(rng_seed)
        first_actions = np.zeros(A)
        next_states = np.zeros(S)
        for _ in range(n):
            unpacked = _unpack_trajectory(fn(mdp, pi, s0, rng, 1), mdp, s0)
            if isinstance(unpacked, str):
                return unpacked
            states, actions, _ = unpacked
            if len(actions) != 1:
                return Failure(f"with max_steps = 1 from non-terminal state {s0} there should be exactly one "
                               f"step; got {len(actions)}",
                               hints=[_HINT_STEP_TOO_MANY] if len(actions) == 2 else [],
                               expected=1, got=len(actions), what="number of steps")
            first_actions[actions[0]] += 1
            next_states[states[1]] += 1
        for counts, probs, bugs, what in ((first_actions, pi[s0], action_bugs, "A_0 ~ pi[S_0]"),
                                          (next_states, pi[s0] @ mdp.P[s0], state_bugs, "S_1 ~ P[S_0, A_0]")):
            freq = counts / n

            def fits(p, probs=probs, freq=freq):
                return bool(np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 0.005))

            if not fits(probs):
                hints = [hint for p, hint in bugs if fits(p) and not np.allclose(p, probs, atol=0.02)]
                if first_actions.max() == next_states.max() == n:  # every episode the same
                    hints.append(_HINT_RNG_OWN_SEED)
                return Failure(f"over {n} episodes the frequencies do not follow {what}: expected "
                               f"{np.round(probs, 3).tolist()}, got {np.round(freq, 3).tolist()}", hints=hints,
                               expected=probs, got=freq, what=f"frequencies ({what})")
        return None

    return Case(name, run, inputs={"mdp": mdp_text, "pi": pi, "s0": s0, "max_steps": 1,
                                   "rng": f"np.random.default_rng({rng_seed})"}, size=_size(mdp, n))


def check_sample_trajectory(fn, hidden: bool = False) -> Score:
    """Check ``sample_trajectory(mdp, pi, s0, rng, max_steps) -> (states, actions, rewards)``."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i, mdp in enumerate(_random_instances(rng, 2, min_terminal=1)):
            pi = _random_policy(rng, mdp)
            seed = int(rng.integers(2**31))
            text = f"a random MDP {mdp!r}"
            s0 = int(np.flatnonzero(~mdp.terminal)[0])
            cases.append(_valid_case(f"random MDP #{i + 1}: a valid episode", mdp, pi, s0, 50, seed, text))
            cases.append(_frequency_case(f"random MDP #{i + 1}: A_0 and S_1 frequencies", mdp, pi, s0, seed, text))
            if i == 0:
                cases.append(_rng_case(f"random MDP #{i + 1}, random policy: all randomness comes from rng", mdp,
                                       ref.uniform_random_policy(mdp), s0, seed, text))
                cases.append(_valid_case(f"random MDP #{i + 1}: start in a terminal state, no step", mdp, pi,
                                         int(np.flatnonzero(mdp.terminal)[0]), 20, seed, text))
        return _scored("sample_trajectory", fn, cases)
    aima = aima_4x3()
    grid = sutton_barto_4x4()
    penguin = penguin_on_ice()
    random_pi = ref.uniform_random_policy(grid)
    pi_aima = np.tile([0.5, 0.3, 0.0, 0.2], (aima.n_states, 1))
    cases = [
        _valid_case("4x4 grid-world, random policy: a valid episode that ends at a terminal state",
                    grid, random_pi, 6, 1000, 1, "sutton_barto_4x4()"),
        _valid_case("penguin on ice: exactly max_steps = 12 steps (no terminal state)",
                    penguin, ref.uniform_random_policy(penguin), 0, 12, 2, "penguin_on_ice()"),
        _valid_case("max_steps = 0: no step at all", grid, random_pi, 5, 0, 3, "sutton_barto_4x4()"),
        _valid_case("start in a terminal state: no step at all", grid, random_pi, 15, 100, 4,
                    "sutton_barto_4x4()"),
        _rng_case("all randomness comes from rng", penguin, ref.uniform_random_policy(penguin), 0, 7,
                  "penguin_on_ice()"),
        _frequency_case("AIMA 4x3 from (1,1): frequencies of A_0 and S_1", aima, pi_aima, 7, 5, "aima_4x3()"),
    ]
    return _scored("sample_trajectory", fn, cases)


# ----------------------------------------------------------------------------------------- sweeps (Ex. 3 and 6)

def _sync(backup, n_states, theta, max_sweeps, change=np.max):
    """Synchronous sweeps from v_0 = 0 with a stopping rule on ``change`` of |v_new - v|; None if they do not
    converge within the cap (or blow up)."""
    V = np.zeros(n_states)
    limit = _DIAGNOSIS_SWEEP_CAP if max_sweeps is None else max_sweeps
    with np.errstate(all="ignore"):  # a diverging mistake must not print warnings in the student's name
        for _ in range(limit):
            V_new = backup(V)
            delta = change(np.abs(V_new - V))
            V = V_new
            if not np.all(np.abs(V) < 1e100):
                return None
            if delta < theta:
                return V
    return V if max_sweeps is not None else None


def _bug_in_place(state_backup, n_states, theta, max_sweeps):
    """In-place (Gauss-Seidel) sweeps over states 0, 1, ... with the largest change of the sweep as delta."""
    V = np.zeros(n_states)
    limit = _DIAGNOSIS_SWEEP_CAP if max_sweeps is None else max_sweeps
    for _ in range(limit):
        delta = 0.0
        for s in range(n_states):
            v = state_backup(s, V)
            delta = max(delta, abs(v - V[s]))
            V[s] = v
        if delta < theta:
            return V
    return V if max_sweeps is not None else None


def _expectation_backup(mdp, pi, gamma):
    return lambda V: np.sum(pi * (mdp.R + gamma * mdp.P @ V), axis=1)


def _optimality_backup(mdp, gamma, reduce=np.max):
    return lambda V: reduce(mdp.R + gamma * mdp.P @ V, axis=1)


def _sweep_diagnoses(mdp, theta, max_sweeps, backup, state_backup, extra, in_place: bool) -> list:
    """The diagnoses that policy evaluation and value iteration share: stopping rules, in-place sweeps..."""
    S = mdp.n_states
    diagnoses = [
        (np.zeros(S), _HINT_NEVER_RAN),
        (_sync(backup, S, theta, 0 if max_sweeps == 0 else 1), _HINT_ONE_SWEEP),
        (_bug_in_place(state_backup, S, theta, 0 if max_sweeps == 0 else 1), _HINT_ONE_SWEEP),
    ]
    if in_place:
        diagnoses.append((_bug_in_place(state_backup, S, theta, max_sweeps), _HINT_IN_PLACE))
    if max_sweeps is not None:
        diagnoses.append((_sync(backup, S, theta, None), _HINT_MAX_SWEEPS_IGNORED))
        diagnoses.append((_sync(backup, S, theta, max_sweeps + 1), _HINT_SWEEP_TOO_MANY))
        if max_sweeps >= 1:
            diagnoses.append((_sync(backup, S, theta, max_sweeps - 1), _HINT_SWEEP_TOO_FEW))
    if theta > 1e-8:
        diagnoses.append((_sync(backup, S, 1e-10, None), _HINT_THETA_IGNORED))
        diagnoses.append((_sync(backup, S, theta, max_sweeps, change=np.mean), _HINT_MEAN_CHANGE))
    diagnoses += [(run(theta, max_sweeps), hint) for run, hint in extra]
    return [(value, hint) for value, hint in diagnoses if value is not None]


# ----------------------------------------------------------------------------------------- policy evaluation

def _evaluation_diagnoses(mdp, pi, theta=1e-10, max_sweeps=None, in_place=True) -> list:
    S, A = mdp.n_states, mdp.n_actions
    uniform = np.full((S, A), 1.0 / A)
    extra = [
        (lambda th, k: _sync(_optimality_backup(mdp, mdp.gamma), S, th, k),
         "you took the max over actions, as value iteration does: policy evaluation weights each action by "
         "pi(a | s)"),
        (lambda th, k: _sync(_expectation_backup(mdp, uniform, mdp.gamma), S, th, k),
         "you gave every action the same weight 1/A: weight each action by pi(a | s)"),
        (lambda th, k: _sync(_expectation_backup(mdp, pi, 1.0), S, th, k), _HINT_SWEEP_NO_GAMMA),
    ]
    return _sweep_diagnoses(
        mdp, theta, max_sweeps, _expectation_backup(mdp, pi, mdp.gamma),
        lambda s, V: pi[s] @ (mdp.R[s] + mdp.gamma * mdp.P[s] @ V), extra, in_place)


def _evaluation_sweeps_case(name, mdp, pi, sweeps, mdp_text) -> Case:
    def run(fn):
        expected = ref.policy_evaluation(mdp, pi, max_sweeps=sweeps)
        return compare_arrays(fn(mdp, pi, max_sweeps=sweeps), expected, atol=1e-9, what=f"v_{sweeps}",
                              diagnoses=_evaluation_diagnoses(mdp, pi, max_sweeps=sweeps))

    return Case(name, run, inputs={"mdp": mdp_text, "pi": pi, "max_sweeps": sweeps}, size=_size(mdp, sweeps))


def _evaluation_theta_case(name, mdp, pi, theta, mdp_text) -> Case:
    """Stopping at the first sweep whose largest change is below ``theta``: one sweep more or less is accepted
    (it changes the values by less than ``theta``); ignoring ``theta`` is not."""

    def run(fn):
        # a mistake is named only within theta / 100: within theta several would match (an in-place sweep stopped
        # by theta and a sweep that ignores theta, say), and one mistake gives nearly the same numbers however
        # it is written
        return compare_arrays(fn(mdp, pi, theta=theta), ref.policy_evaluation(mdp, pi, theta=theta), atol=theta,
                              match_atol=theta / 100, what=f"V (theta = {theta:g})",
                              diagnoses=_evaluation_diagnoses(mdp, pi, theta=theta))

    return Case(name, run, inputs={"mdp": mdp_text, "pi": pi, "theta": theta}, size=_size(mdp, 100))


def _evaluation_converged_case(name, mdp, pi, mdp_text, expected=None, atol=1e-6) -> Case:
    def run(fn):
        target = ref.policy_evaluation_exact(mdp, pi) if expected is None else expected
        return compare_arrays(fn(mdp, pi), target, atol=atol, what="v_pi",
                              diagnoses=_evaluation_diagnoses(mdp, pi, in_place=False))

    return Case(name, run, inputs={"mdp": mdp_text, "pi": pi}, size=_size(mdp, 1000))


def check_policy_evaluation(fn, hidden: bool = False) -> Score:
    """Check ``policy_evaluation(mdp, pi, theta=1e-10, max_sweeps=None) -> V`` (synchronous sweeps)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        converged = []
        for i, mdp in enumerate(_random_instances(rng, 3)):
            pi = _random_policy(rng, mdp)
            text = f"a random MDP {mdp!r}"
            sweeps = int(rng.integers(2, 5))
            cases.append(_evaluation_sweeps_case(f"random MDP #{i + 1}: after {sweeps} sweeps", mdp, pi, sweeps,
                                                 text))
            converged.append(_evaluation_converged_case(f"random MDP #{i + 1} (gamma = {mdp.gamma:.2f}): v_pi",
                                                        mdp, pi, text))
        cases += converged
        mdp = _random_instances(rng, 1, gamma=1.0, min_terminal=1)[0]
        pi = _random_policy(rng, mdp)
        text = f"a random MDP {mdp!r}"
        cases.append(_evaluation_converged_case("random MDP #4, gamma = 1: v_pi", mdp, pi, text))
        cases.append(_evaluation_theta_case("random MDP #4, theta = 0.01", mdp, pi, 0.01, text))
        return _scored("policy_evaluation", fn, cases)
    grid = sutton_barto_4x4()
    pi = ref.uniform_random_policy(grid)
    mdp = random_mdp(np.random.default_rng(2024), 7, 3, 0.9, n_terminal=1)
    pi_random = _random_policy(np.random.default_rng(1), mdp)
    grid_text = "sutton_barto_4x4() (gamma = 1)"
    random_text = "random_mdp(np.random.default_rng(2024), 7, 3, 0.9, n_terminal=1)"
    # the cases that stop after max_sweeps come first: a mistake whose sweeps diverge times out in the others
    cases = [
        _evaluation_sweeps_case("Sutton & Barto Figure 4.1, k = 0: no sweep, v_0 = 0", grid, pi, 0, grid_text),
        _evaluation_sweeps_case("Sutton & Barto Figure 4.1, k = 1", grid, pi, 1, grid_text),
        _evaluation_sweeps_case("Sutton & Barto Figure 4.1, k = 2", grid, pi, 2, grid_text),
        _evaluation_sweeps_case("Sutton & Barto Figure 4.1, k = 3", grid, pi, 3, grid_text),
        _evaluation_sweeps_case("a random 7-state MDP, gamma = 0.9, after 2 sweeps", mdp, pi_random, 2,
                                random_text),
        _evaluation_converged_case("Sutton & Barto Figure 4.1, k = ∞", grid, pi, grid_text, SB_FIG_4_1, atol=1e-4),
        _evaluation_converged_case("the same random MDP: v_pi", mdp, pi_random, random_text),
        _evaluation_theta_case("4x4 grid-world, theta = 0.01: stop at the first sweep that changes V by less",
                               grid, pi, 0.01, grid_text),
    ]
    return _scored("policy_evaluation", fn, cases)


# ----------------------------------------------------------------------------------------- q from v

def _q_diagnoses(mdp, V) -> list:
    V_masked = np.where(mdp.terminal, 0.0, V)
    g = mdp.gamma
    unmasked = mdp.R + g * mdp.P @ V
    rows_zeroed = np.where(mdp.terminal[:, None], 0.0, unmasked)
    reachable_max = np.where(mdp.P > 0, V_masked[None, None, :], -np.inf).max(axis=2)
    max_next = ("you took a max over the next states: the look-ahead is the expectation sum_s' P[s, a, s'] V(s'), "
                "a sum weighted by the probabilities")
    return [
        (unmasked, _HINT_TERMINAL),
        (rows_zeroed, "zeroing Q in terminal states is not enough: the next-state value V(s') must count as 0 "
                      "when s' is terminal"),
        (mdp.R + g * mdp.P @ np.where(mdp.terminal, V, 0.0),
         "the terminal mask is inverted: keep V at non-terminal states and use 0 at terminal ones"),
        (mdp.R + g * np.einsum("tas,t->sa", mdp.P, V_masked), _HINT_AXIS),
        (mdp.R + mdp.P @ V_masked, _HINT_NO_GAMMA),
        (g * (mdp.R + mdp.P @ V_masked),
         "only the next value is discounted: Q = R + gamma * P V, not gamma * (R + P V)"),
        (g * mdp.P @ V_masked, "you left out the immediate reward R[s, a]"),
        (mdp.R + g * V_masked[:, None],
         "you bootstrapped from the current state s: the look-ahead averages V over the next states s' with "
         "weights P[s, a, s']"),
        (mdp.R + g * reachable_max, max_next),
        (mdp.R + g * np.max(mdp.P * V_masked, axis=2), max_next),
        ((mdp.R + g * mdp.P @ V_masked).T, "Q has one row per state: shape (S, A), indexed Q[s, a]"),
    ]


def _q_case(name, mdp, V, mdp_text) -> Case:
    def run(fn):
        return compare_arrays(fn(mdp, V.copy()), ref.q_from_v(mdp, V), atol=1e-9, what="Q",
                              diagnoses=_q_diagnoses(mdp, V))

    return Case(name, run, inputs={"mdp": mdp_text, "V": V}, size=_size(mdp))


def check_q_from_v(fn, hidden: bool = False) -> Score:
    """Check ``q_from_v(mdp, V) -> Q`` of shape (S, A) (Sutton & Barto 2018, eq. 4.6)."""
    if hidden:
        rng = hidden_rng()
        cases = [_q_case(f"random MDP #{i + 1}", mdp, rng.normal(size=mdp.n_states) * 3, f"a random MDP {mdp!r}")
                 for i, mdp in enumerate(_random_instances(rng, 4, min_terminal=1))]
        return _scored("q_from_v", fn, cases)
    aima = aima_4x3()
    V_star = ref.value_iteration(aima)
    rng = np.random.default_rng(11)
    mdp = random_mdp(rng, 6, 3, 0.8, n_terminal=1)
    V_random = rng.normal(size=6)
    V_grid = rng.normal(size=16).round(2) * 5
    V_penguin = rng.normal(size=16).round(2)
    V_with_terminal = V_star.copy()
    V_with_terminal[aima.terminal] = 5.0
    cases = [
        _q_case("AIMA 4x3 world with V = v_*", aima, V_star, "aima_4x3()"),
        _q_case("AIMA 4x3 world, gamma = 0.9, V = v_* of gamma = 1", aima.replace(gamma=0.9), V_star,
                "aima_4x3(gamma=0.9)"),
        _q_case("a random 6-state MDP, random V", mdp, V_random,
                "random_mdp(np.random.default_rng(11), 6, 3, 0.8, n_terminal=1)"),
        _q_case("V holds 5.0 at the terminal state (must be ignored)", aima, V_with_terminal, "aima_4x3()"),
        _q_case("4x4 grid-world, gamma = 0.9, terminal states 0 and 15, random V", sutton_barto_4x4(gamma=0.9),
                V_grid, "sutton_barto_4x4(gamma=0.9)"),
        _q_case("penguin on ice (no terminal state, one action), random V", penguin_on_ice(), V_penguin,
                "penguin_on_ice()"),
    ]
    return _scored("q_from_v", fn, cases)


# ----------------------------------------------------------------------------------------- greedy policy

_HINT_GREEDY_AXIS = "take the argmax over actions (axis=1) for each state; you took it over states"


def _greedy_for(scores: np.ndarray, policy: np.ndarray, atol: float = 1e-9) -> bool:
    """True if ``policy`` picks a maximiser of ``scores[s]`` in every state."""
    chosen = scores[np.arange(len(policy)), policy]
    return bool(np.all(chosen >= scores.max(axis=1) - atol))


def _greedy_case(name, mdp, V, mdp_text) -> Case:
    def run(fn):
        S, A = mdp.n_states, mdp.n_actions
        policy = fn(mdp, V.copy())
        Q = ref.q_from_v(mdp, V)
        best = np.argmax(Q, axis=1)
        try:
            arr = np.asarray(policy)
        except (TypeError, ValueError):
            return "return an integer array of actions, one per state"
        if arr.shape != (S,):
            hints = []
            if arr.shape == (A,) and np.array_equal(arr, np.argmax(Q, axis=0)):
                hints.append(_HINT_GREEDY_AXIS)
            if arr.shape == () and arr.dtype.kind in "iu" and int(arr) == int(np.argmax(Q)):
                hints.append("np.argmax without an axis returns one index into the flattened array: "
                             "use np.argmax(Q, axis=1)")
            if arr.shape == (S, A) and np.isin(arr, [0, 1]).all() and np.all(arr.sum(axis=1) >= 1) and np.all(
                    Q[arr == 1] >= np.broadcast_to(Q.max(axis=1, keepdims=True), Q.shape)[arr == 1] - 1e-9):
                hints.append("return the actions (integers), not a one-hot array of shape (S, A)")
            if arr.shape == (S, A) and np.allclose(arr, Q):
                hints.append("you returned Q: the policy is the argmax of Q over actions (axis=1)")
            return Failure(f"return one action per state, shape ({S},); got shape {arr.shape}", hints=hints,
                           expected=best, got=policy, what="policy")
        if not np.issubdtype(arr.dtype, np.integer):
            hints = []
            if arr.dtype.kind == "f" and np.allclose(arr, Q.max(axis=1)):
                hints.append("you returned the best values max_a q(s, a): return the actions, "
                             "np.argmax(Q, axis=1)")
            return Failure(f"actions should be integers (e.g. from np.argmax); got dtype {arr.dtype}", hints=hints,
                           expected=best, got=arr, what="policy")
        if np.any((arr < 0) | (arr >= A)):
            return "actions must lie in 0 .. A-1"
        chosen = Q[np.arange(S), arr]
        bad = np.flatnonzero(chosen < Q.max(axis=1) - 1e-9)
        if bad.size == 0:
            return None
        V_masked = np.where(mdp.terminal, 0.0, V)
        scores = [
            (mdp.R, "you maximised the immediate reward R[s, a] only: maximise q(s, a) = R + gamma P v"),
            (-Q, "you picked the worst action (argmin): the greedy action maximises q(s, a)"),
            (mdp.R + mdp.gamma * mdp.P @ V, _HINT_TERMINAL),
            (mdp.R + mdp.P @ V_masked, _HINT_NO_GAMMA),
            (mdp.P @ V_masked, "you left out the immediate reward R[s, a]: maximise q(s, a) = R + gamma P v"),
            (mdp.R + mdp.gamma * np.einsum("tas,t->sa", mdp.P, V_masked), _HINT_AXIS),
        ]
        hints = [hint for score, hint in scores if _greedy_for(score, arr)]
        if S == A and np.array_equal(arr, np.argmax(Q, axis=0)):
            hints.append(_HINT_GREEDY_AXIS)
        s = int(bad[0])
        e_text, g_text = format_pair(Q[s].max(), chosen[s])
        return Failure(f"in state {s} action {arr[s]} has q = {g_text} but the best action has q = {e_text}",
                       hints=hints, expected=best, got=arr, what="policy (any maximising action is accepted)")

    return Case(name, run, inputs={"mdp": mdp_text, "V": V}, size=_size(mdp))


def check_greedy_policy(fn, hidden: bool = False) -> Score:
    """Check ``greedy_policy(mdp, V) -> policy`` (int array (S,)); any maximising action is accepted."""
    if hidden:
        rng = hidden_rng()
        cases = [_greedy_case(f"random MDP #{i + 1}", mdp, rng.normal(size=mdp.n_states) * 3,
                              f"a random MDP {mdp!r}")
                 for i, mdp in enumerate(_random_instances(rng, 4, min_terminal=1))]
        return _scored("greedy_policy", fn, cases)
    aima = aima_4x3()
    harsh = aima_4x3(step_reward=-2.0)
    rng = np.random.default_rng(25)
    mdp = random_mdp(rng, 8, 4, 0.7, n_terminal=2)
    V_random = rng.normal(size=8) * 3
    cases = [
        _greedy_case("AIMA 4x3 world, step reward -0.04, V = v_*", aima, ref.value_iteration(aima), "aima_4x3()"),
        _greedy_case("AIMA 4x3 world, step reward -2, V = v_*", harsh, ref.value_iteration(harsh),
                     "aima_4x3(step_reward=-2.0)"),
        _greedy_case("a random 8-state MDP, gamma = 0.7, random V", mdp, V_random,
                     "random_mdp(np.random.default_rng(25), 8, 4, 0.7, n_terminal=2)"),
        _greedy_case("actions 0 and 1 equally good in every state, V = v_*: either is accepted", _tied_mdp(),
                     ref.value_iteration(_tied_mdp()), _TIED_TEXT),
    ]
    return _scored("greedy_policy", fn, cases)


# ----------------------------------------------------------------------------------------- value iteration

def _vi_diagnoses(mdp, theta=1e-10, max_sweeps=None, in_place=True) -> list:
    S, A = mdp.n_states, mdp.n_actions
    g = mdp.gamma
    uniform = np.full((S, A), 1.0 / A)

    def greedy_actions(th, k):
        if k == 0:
            return None
        V_before = _sync(_optimality_backup(mdp, g), S, th, None if k is None else k - 1)
        return None if V_before is None else np.argmax(mdp.R + g * mdp.P @ V_before, axis=1).astype(float)

    extra = [
        (lambda th, k: _sync(_expectation_backup(mdp, uniform, g), S, th, k),
         "you averaged over actions: value iteration takes the max over actions, v(s) = max_a q(s, a)"),
        (lambda th, k: _sync(_optimality_backup(mdp, g, reduce=np.min), S, th, k),
         "you took the min over actions: value iteration takes the max"),
        (lambda th, k: _sync(lambda V: np.max(mdp.R, axis=1) + g * np.max(mdp.P @ V, axis=1), S, th, k),
         "take the max of the whole look-ahead R[s, a] + gamma * P[s, a] V for each action, not the max of its "
         "two terms separately"),
        (lambda th, k: _sync(_optimality_backup(mdp, 1.0), S, th, k), _HINT_SWEEP_NO_GAMMA),
        (greedy_actions, "you returned the greedy actions (argmax): return the values, max_a q(s, a)"),
    ]
    return _sweep_diagnoses(
        mdp, theta, max_sweeps, _optimality_backup(mdp, g),
        lambda s, V: np.max(mdp.R[s] + g * mdp.P[s] @ V), extra, in_place)


def _vi_sweeps_case(name, mdp, sweeps, mdp_text) -> Case:
    def run(fn):
        return compare_arrays(fn(mdp, max_sweeps=sweeps), ref.value_iteration(mdp, max_sweeps=sweeps),
                              atol=1e-9, what=f"v_{sweeps}", diagnoses=_vi_diagnoses(mdp, max_sweeps=sweeps))

    return Case(name, run, inputs={"mdp": mdp_text, "max_sweeps": sweeps}, size=_size(mdp, sweeps))


def _vi_theta_case(name, mdp, theta, mdp_text) -> Case:
    """As :func:`_evaluation_theta_case`, for value iteration."""

    def run(fn):
        return compare_arrays(fn(mdp, theta=theta), ref.value_iteration(mdp, theta=theta), atol=theta,
                              match_atol=theta / 100, what=f"V (theta = {theta:g})",
                              diagnoses=_vi_diagnoses(mdp, theta=theta))

    return Case(name, run, inputs={"mdp": mdp_text, "theta": theta}, size=_size(mdp, 100))


def _vi_converged_case(name, mdp, mdp_text, expected=None, atol=1e-6) -> Case:
    def run(fn):
        target = ref.value_iteration(mdp) if expected is None else expected
        return compare_arrays(fn(mdp), target, atol=atol, what="v_*", diagnoses=_vi_diagnoses(mdp, in_place=False))

    return Case(name, run, inputs={"mdp": mdp_text}, size=_size(mdp, 1000))


def check_value_iteration(fn, hidden: bool = False) -> Score:
    """Check ``value_iteration(mdp, theta=1e-10, max_sweeps=None) -> V`` (synchronous sweeps)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        converged = []
        for i, mdp in enumerate(_random_instances(rng, 3)):
            text = f"a random MDP {mdp!r}"
            sweeps = int(rng.integers(2, 5))
            cases.append(_vi_sweeps_case(f"random MDP #{i + 1}: after {sweeps} sweeps", mdp, sweeps, text))
            converged.append(_vi_converged_case(f"random MDP #{i + 1} (gamma = {mdp.gamma:.2f}): v_*", mdp, text))
        cases += converged
        mdp = _random_instances(rng, 1, gamma=1.0, min_terminal=1)[0]
        text = f"a random MDP {mdp!r}"
        cases.append(_vi_converged_case("random MDP #4, gamma = 1: v_*", mdp, text))
        cases.append(_vi_theta_case("random MDP #4, theta = 0.01", mdp, 0.01, text))
        return _scored("value_iteration", fn, cases)
    aima = aima_4x3()
    random_text = "random_mdp(np.random.default_rng(5), 7, 3, 0.95, n_terminal=1)"
    # the cases that stop after max_sweeps come first, then gamma < 1: a mistake whose sweeps diverge at gamma = 1
    # times out there, and the cases after a time-out are skipped
    cases = [
        _vi_sweeps_case("AIMA 4x3 world after 1 sweep", aima, 1, "aima_4x3()"),
        _vi_sweeps_case("AIMA 4x3 world after 3 sweeps", aima, 3, "aima_4x3()"),
        _vi_converged_case("a random 7-state MDP, gamma = 0.95",
                           random_mdp(np.random.default_rng(5), 7, 3, 0.95, n_terminal=1), random_text),
        _vi_theta_case("the same MDP, theta = 0.05: stop at the first sweep that changes V by less",
                       random_mdp(np.random.default_rng(5), 7, 3, 0.95, n_terminal=1), 0.05, random_text),
        _vi_converged_case("AIMA 4x3 world, gamma = 1: Figure 17.3 to 3 decimals", aima, "aima_4x3()", AIMA_VALUES,
                           atol=5e-4),
        _vi_converged_case("AIMA 4x3 world, step reward -2", aima_4x3(step_reward=-2.0),
                           "aima_4x3(step_reward=-2.0)"),
    ]
    return _scored("value_iteration", fn, cases)


# ----------------------------------------------------------------------------------------- policy iteration

_HINT_IMPROPER = ("with gamma = 1, first check that the starting policy is proper (reaches a terminal state "
                  "from every state) and raise a ValueError saying it is improper if it is not")
_HINT_NOT_STAYING = ("a policy can be improper without a state that it never leaves: this starting policy keeps "
                     "the agent moving within a group of states that holds no terminal state. Test properness as "
                     "the statement describes: grow the set of states from which a terminal state can be reached")
_HINT_PROPER_REJECTED = ("your test of properness rejected a proper starting policy: grow the set from the "
                         "terminal states by adding every state that moves *into* the set with positive "
                         "probability under the policy; the policy is proper when the set ends up holding every "
                         "state")
_HINT_ONLY_AT_GAMMA_1 = ("check properness only when gamma = 1: with gamma < 1 every policy has finite values, "
                         "proper or not, and policy iteration works from any start")
_HINT_START_FROM_PI0 = "start from pi0 when it is given (action 0 in every state only when pi0 is None)"
_HINT_PI_EARLY = ("your loop stopped too early: repeat evaluation and greedy improvement until the policy no "
                  "longer changes, and return the last policy with its values")


def _start(mdp, pi0) -> np.ndarray:
    return np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.asarray(pi0)


def _proper(mdp, policy) -> bool:
    return ref.is_proper(mdp, ref.deterministic_to_stochastic(mdp, policy))


def _values_of(mdp, policy):
    """v of a deterministic policy, or None when it has no finite values (improper at gamma = 1)."""
    if mdp.gamma == 1.0 and not _proper(mdp, policy):
        return None
    return ref.policy_evaluation_exact(mdp, ref.deterministic_to_stochastic(mdp, policy))


def _pi_diagnoses(mdp, pi0) -> list:
    """The values a policy iteration that stops after no or one improvement returns."""
    start = _start(mdp, pi0)
    V0 = _values_of(mdp, start)
    if V0 is None:
        return []
    Q = ref.q_from_v(mdp, V0)
    improved = np.where(Q[np.arange(mdp.n_states), start] >= Q.max(axis=1) - 1e-9, start, np.argmax(Q, axis=1))
    V1 = _values_of(mdp, improved)
    return [(V, _HINT_PI_EARLY) for V in (V0, V1) if V is not None]


def _pi_case(name, mdp, pi0=None, mdp_text="") -> Case:
    def run(fn):
        try:
            result = fn(mdp) if pi0 is None else fn(mdp, pi0.copy())
        except ValueError as exc:
            text = str(exc)
            if "proper" not in text.lower():
                raise
            if mdp.gamma < 1:
                hints = [_HINT_ONLY_AT_GAMMA_1]
                why = f"gamma = {mdp.gamma:g} < 1, where every policy can be evaluated"
            else:
                hints = [_HINT_PROPER_REJECTED]
                why = "the starting policy is proper"
                if pi0 is not None and not _proper(mdp, _start(mdp, None)):
                    hints.append(_HINT_START_FROM_PI0)
            return Failure(f"raised ValueError({text[:80]!r}), but {why}", hints=hints, expected="(policy, V)",
                           got=f"ValueError({text[:80]!r})", what="result")
        try:
            policy, V = result
        except (TypeError, ValueError):
            return "return a tuple (policy, V)"
        policy, V = np.asarray(policy), np.asarray(V)
        if policy.dtype.kind == "f" and V.dtype.kind in "iu":
            return "the tuple is the wrong way round: return (policy, V)"
        if policy.shape != (mdp.n_states,) or not np.issubdtype(policy.dtype, np.integer):
            return f"policy should be an int array of shape ({mdp.n_states},); got {policy.dtype} {policy.shape}"
        if np.any((policy < 0) | (policy >= mdp.n_actions)):
            return "the policy's actions must lie in 0 .. A-1"
        V_star = ref.value_iteration(mdp)
        message = compare_arrays(V, V_star, atol=1e-6, what="V", diagnoses=_pi_diagnoses(mdp, pi0))
        if message:
            return message
        achieved = ref.policy_evaluation_exact(mdp, ref.deterministic_to_stochastic(mdp, policy)) \
            if _proper(mdp, policy) or mdp.gamma < 1 else None
        if achieved is None or not np.allclose(achieved, V_star, atol=1e-6):
            return Failure("V is right but the policy you returned is not optimal",
                           hints=["return the policy of the last improvement step: the greedy policy of V"],
                           expected=ref.greedy_policy(mdp, V_star), got=policy, what="policy")
        return None

    return Case(name, run, inputs={"mdp": mdp_text, "pi0": pi0}, size=_size(mdp))


_TIED_TEXT = "a 5-state chain whose actions 0 and 1 are copies of each other (state 4 is terminal), gamma = 0.9"


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


def _improper_case(name, mdp, pi0=None, mdp_text="") -> Case:
    """``pi0`` (or the default, action 0 everywhere) is improper and gamma = 1: a ValueError naming the problem."""
    start = _start(mdp, pi0)
    stays = any(mdp.P[s, start[s], s] == 1.0 for s in np.flatnonzero(~mdp.terminal))
    hints = [_HINT_IMPROPER] + ([] if stays else [_HINT_NOT_STAYING])
    what = "action 0 in every state (the default)" if pi0 is None else "pi0"

    def run(fn):
        def failure(message, extra=()):
            return Failure(message, hints=[*hints, *extra], expected="ValueError: the starting policy is improper",
                           got=message, what="result")

        try:
            fn(mdp) if pi0 is None else fn(mdp, pi0.copy())
        except _EvaluationDiverges:
            return failure("you started evaluating the improper starting policy, which never converges at "
                           "gamma = 1 (its values fall without bound)")
        except CheckTimeout:
            return failure(f"did not return in time: {what} is improper and gamma = 1, so evaluating it never "
                           "ends")
        except np.linalg.LinAlgError as exc:
            return failure(f"np.linalg failed on the singular Bellman equations of the improper start ({exc})")
        except RuntimeError as exc:
            return failure(f"raised RuntimeError({str(exc)[:80]!r}) on the improper start")
        except ValueError as exc:
            if "proper" not in str(exc).lower():
                return (f"raised ValueError({str(exc)[:80]!r}): right exception, but the message should say that "
                        "the starting policy is improper")
            return None
        extra = [_HINT_START_FROM_PI0] if pi0 is not None and _proper(mdp, _start(mdp, None)) else []
        return Failure(f"returned a result, but {what} is improper and gamma = 1: expected a ValueError",
                       hints=extra or [_HINT_IMPROPER], expected="ValueError: the starting policy is improper",
                       got="a result", what="result")

    return Case(name, run, inputs={"mdp": mdp_text, "pi0": pi0}, size=_size(mdp))


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
        cases = [_pi_case(f"random MDP #{i + 1}", mdp, mdp_text=f"a random MDP {mdp!r}")
                 for i, mdp in enumerate(_random_instances(rng, 3))]
        mdp = _gamma_1_random_instance(rng)
        cases.append(_pi_case("random MDP #4, gamma = 1 (every policy ends its episodes)", mdp,
                              mdp_text=f"a random MDP {mdp!r}"))
        mdp, pi0 = _improper_random_instance(rng)
        cases.append(_improper_case("random MDP #5, gamma = 1, pi0 caught in a loop: a ValueError", mdp, pi0,
                                    f"a random MDP {mdp!r}"))
        mdp = mdp.replace(gamma=float(rng.uniform(0.5, 0.95)))
        cases.append(_pi_case(f"the same MDP at gamma = {mdp.gamma:.2f}: the looping pi0 is fine when gamma < 1",
                              mdp, pi0, f"a random MDP {mdp!r}"))
        return _scored("policy_iteration", fn, cases)
    aima = aima_4x3()
    grid = sutton_barto_4x4()
    down_then_right = np.where(np.arange(grid.n_states) >= 12, 1, 2)  # down, and right along the bottom row
    cases = [
        _pi_case("AIMA 4x3 world, gamma = 1", aima, mdp_text="aima_4x3()"),
        _pi_case("AIMA 4x3 world, step reward -2, starting from 'right' everywhere",
                 aima_4x3(step_reward=-2.0), np.full(aima.n_states, 1), "aima_4x3(step_reward=-2.0)"),
        _pi_case("equally good actions in every state: the loop must still stop (S&B Exercise 4.4)",
                 _tied_mdp(), mdp_text=_TIED_TEXT),
        _pi_case("a random 8-state MDP, gamma = 0.9",
                 random_mdp(np.random.default_rng(8), 8, 3, 0.9, n_terminal=1),
                 mdp_text="random_mdp(np.random.default_rng(8), 8, 3, 0.9, n_terminal=1)"),
        _pi_case("4x4 grid-world, gamma = 1, from the proper policy 'down, then right along the bottom row'",
                 grid, down_then_right, "sutton_barto_4x4()"),
        _pi_case("4x4 grid-world, gamma = 0.9, default start 'up' everywhere: improper, but fine when gamma < 1",
                 sutton_barto_4x4(gamma=0.9), mdp_text="sutton_barto_4x4(gamma=0.9)"),
        _improper_case("4x4 grid-world, gamma = 1, the default start 'up' everywhere is improper: a ValueError",
                       grid, mdp_text="sutton_barto_4x4()"),
        _improper_case("AIMA 4x3 world, pi0 = 'left' everywhere is improper: a ValueError",
                       aima, np.full(aima.n_states, 3), "aima_4x3()"),
    ]
    return _scored("policy_iteration", fn, cases)
