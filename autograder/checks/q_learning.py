"""Checks for Chapter 3 (Q-learning and exploration).

Each ``check_<exercise>(fn, hidden=False)`` runs the student's ``fn`` on textbook cases and fixed random
instances, compares it with the reference in :mod:`solutions.q_learning`, :mod:`solutions.bandits` or
:mod:`solutions.dqn`, prints one line per case and returns a :class:`~autograder.checks._harness.Score`.
``hidden=True`` runs only instances drawn from :func:`~autograder.checks._harness.hidden_rng`.

epsilon-greedy is checked statistically: the action frequencies of 20,000 calls must match the probabilities
epsilon / A + (1 - epsilon) / (number of greedy actions) within 4.5 standard errors per action. A correct
implementation fails one action's test with probability about 7e-6, so all the cases of a check (at most 7 cases
of at most 5 actions) together with probability below 0.001. When an answer is wrong, the check compares it with
known-buggy variants (the ``_bug_*`` functions, or the frequencies a bug would give) to name the likely bug.

Besides the values, the checks test what the statements ask for and callers rely on: inputs that are not to be
updated stay unchanged (an answer called with ``Q[s]`` must not write into the Q-table), flags and indices may come
as NumPy scalars (``numpy.bool_``, ``numpy.int64``), and ``bandit_update`` may be called without ``alpha``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from solutions import bandits as ref_bandits
from solutions import dqn as ref_dqn
from solutions import q_learning as ref

from ._harness import Case, Score, compare_arrays, hidden_rng, run_check

__all__ = [
    "POINTS",
    "check_bandit_update",
    "check_boltzmann_probabilities",
    "check_dqn_loss",
    "check_epsilon_greedy",
    "check_q_learning_update",
    "check_sarsa_update",
    "check_semi_gradient_q_update",
]

#: Points of each exercise; the test cells' nbgrader metadata must agree (a test checks it).
POINTS = {
    "q_learning_update": 1,
    "epsilon_greedy": 2,
    "boltzmann_probabilities": 1,
    "bandit_update": 1,
    "sarsa_update": 1,
    "semi_gradient_q_update": 2,
    "dqn_loss": 2,
}

_HINT_TERMINAL = ("you bootstrapped from a terminal state: when the next state is terminal the target is the "
                  "reward alone (a terminal state is worth 0)")
_HINT_NO_ALPHA = "you replaced the estimate by the target: move it a step alpha towards the target"
_HINT_IS_TRUE = ("with terminated = numpy.True_ (what NumPy code and vector environments give) you bootstrapped: "
                 "test the flag by its truth value, `if terminated:`, not with `terminated is True`")


def _changed(before: dict, after: dict) -> str | None:
    """None if every array in ``after`` equals the one of the same name in ``before``; else a hint naming it."""
    for name, value in before.items():
        if not np.array_equal(np.asarray(after[name]), value):
            return (f"your function changed its input {name}: leave it as it is (work on a copy); a caller that "
                    f"passes a row of its Q-table or its feature vectors would find them altered")
    return None


def _numpy_scalars(stream: list) -> list:
    """The same transitions with indices as numpy.int64 and flags as numpy.bool_, as NumPy code produces them."""
    return [(np.int64(s), np.int64(a), np.float64(r), np.int64(s_next), np.int64(a_next), np.bool_(terminated))
            for s, a, r, s_next, a_next, terminated in stream]


def _scored(name: str, fn, cases: list[Case]) -> Score:
    return run_check(name, fn, cases, POINTS[name])


def _transitions(rng: np.random.Generator, n_states: int, n_actions: int, length: int) -> list:
    """Random transitions (s, a, r, s', a', terminated), about a quarter of them ending the episode."""
    return [(int(rng.integers(n_states)), int(rng.integers(n_actions)), float(np.round(rng.normal(), 3)),
             int(rng.integers(n_states)), int(rng.integers(n_actions)), bool(rng.random() < 0.25))
            for _ in range(length)]


# ----------------------------------------------------------------------------------------------- Q-learning update

def _bug_q_max_over_s(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(Q[s])
    Q[s, a] += alpha * (target - Q[s, a])


def _bug_q_bootstrap_terminal(Q, s, a, r, s_next, terminated, alpha, gamma):
    Q[s, a] += alpha * (r + gamma * np.max(Q[s_next]) - Q[s, a])


def _bug_q_no_alpha(Q, s, a, r, s_next, terminated, alpha, gamma):
    Q[s, a] = r if terminated else r + gamma * np.max(Q[s_next])


def _bug_q_no_gamma(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r if terminated else r + np.max(Q[s_next])
    Q[s, a] += alpha * (target - Q[s, a])


def _bug_q_max_from_zero(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * max(0.0, np.max(Q[s_next]))
    Q[s, a] += alpha * (target - Q[s, a])


def _replay_q(update, Q0, stream, alpha, gamma):
    Q = Q0.copy()
    for s, a, r, s_next, _, terminated in stream:
        update(Q, s, a, r, s_next, terminated, alpha, gamma)
    return Q


def _q_update_case(name, Q0, stream, alpha, gamma) -> Case:
    numpy_flags = any(isinstance(t[-1], np.bool_) for t in stream)

    def run(fn):
        Q = _replay_q(fn, Q0, stream, alpha, gamma)
        if np.array_equal(Q, Q0):
            return "Q did not change: update Q[s, a] in place"
        diagnoses = [(_replay_q(bug, Q0, stream, alpha, gamma), hint) for bug, hint in (
            (_bug_q_bootstrap_terminal, _HINT_IS_TRUE if numpy_flags else _HINT_TERMINAL),
            (_bug_q_max_from_zero, "the largest next value can be negative: take max(Q[s_next]) itself, not "
             "a running maximum started at 0"),
            (_bug_q_max_over_s, "the target uses max_a' Q(s', a') of the *next* state s_next, not of s"),
            (_bug_q_no_alpha, _HINT_NO_ALPHA),
            (_bug_q_no_gamma, "discount the next state's value: r + gamma * max(Q[s_next])"),
        )]
        return compare_arrays(Q, _replay_q(ref.q_learning_update, Q0, stream, alpha, gamma), atol=1e-9,
                              what=f"Q after {len(stream)} update(s)", diagnoses=diagnoses)

    return Case(name, run)


def check_q_learning_update(fn, hidden: bool = False) -> Score:
    """Check ``q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma) -> None`` (in place)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(3, 9)), int(rng.integers(2, 5))
            stream = _transitions(rng, S, A, int(rng.integers(10, 60)))
            cases.append(_q_update_case(f"random stream #{i + 1} ({S} states, {A} actions)",
                                        rng.normal(size=(S, A)), _numpy_scalars(stream) if i == 2 else stream,
                                        float(rng.uniform(0.05, 0.9)), float(rng.uniform(0.5, 0.99))))
        return _scored("q_learning_update", fn, cases)
    rng = np.random.default_rng(11)
    Q0 = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    cases = [
        _q_update_case("one update: Q[0, 1] from 1 towards 0.5 + 0.9 * max Q[1] = 2.3, alpha = 0.5", Q0,
                       [(0, 1, 0.5, 1, 0, False)], 0.5, 0.9),
        _q_update_case("one update into a terminal state (target = r = 10)", Q0, [(2, 0, 10.0, 1, 0, True)], 0.1,
                       0.9),
        _q_update_case("every next value negative: target 0.5 + 0.9 * max(-2, -3) = -1.3",
                       np.array([[-1.0, -2.0], [-2.0, -3.0], [-0.5, -0.5]]), [(0, 1, 0.5, 1, 0, False)], 0.5, 0.9),
        _q_update_case("40 random transitions, some terminal", rng.normal(size=(5, 3)),
                       _transitions(rng, 5, 3, 40), 0.2, 0.95),
        _q_update_case("20 random transitions given as NumPy scalars (numpy.int64 states, numpy.bool_ flags)",
                       rng.normal(size=(4, 3)), _numpy_scalars(_transitions(rng, 4, 3, 20)), 0.3, 0.9),
    ]
    return _scored("q_learning_update", fn, cases)


# --------------------------------------------------------------------------------------------------- epsilon-greed

#: Calls per statistical case, and the allowed deviation of each action's frequency in standard errors.
_DRAWS = 20_000
_Z = 4.5


def _frequencies_match(counts: np.ndarray, p: np.ndarray) -> bool:
    n = counts.sum()
    se = np.sqrt(np.maximum(p * (1 - p), 1e-12) / n)
    return bool(np.all(np.abs(counts / n - p) <= _Z * se + 1e-12))


def _greedy_probabilities(q: np.ndarray, epsilon: float) -> np.ndarray:
    best = q == q.max()
    return epsilon / q.size + (1 - epsilon) * best / best.sum()


def _buggy_epsilon_probabilities(q: np.ndarray, epsilon: float) -> list[tuple[np.ndarray, str]]:
    A = q.size
    best = q == q.max()
    first = np.eye(A)[np.argmax(q)]
    others = ~best
    bugs = [
        (epsilon / A + (1 - epsilon) * first,
         "ties always go to the first greedy action (np.argmax): break ties between equal values at random"),
        (best / best.sum(), "your function never explores: with probability epsilon take a random action"),
        ((1 - epsilon) / A + epsilon * best / best.sum(),
         "epsilon is the probability of a random action, not of the greedy one"),
    ]
    if others.any():
        bugs.append((epsilon * others / others.sum() + (1 - epsilon) * best / best.sum(),
                     "when exploring, choose among *all* actions (the greedy ones included), uniformly"))
    return bugs


def _epsilon_case(name, q, epsilon, seed) -> Case:
    q = np.asarray(q, dtype=np.float64)

    def run(fn):
        rng = np.random.default_rng(seed)
        counts = np.zeros(q.size, dtype=np.int64)
        first_draws = []
        for i in range(_DRAWS):
            values = q.copy()
            a = fn(values, epsilon, rng)
            if i < 50 and (problem := _changed({"q": q}, {"q": values})):
                return problem
            if not isinstance(a, (int, np.integer)) or not 0 <= a < q.size:
                return f"return an action, an int in 0..{q.size - 1}; got {a!r}"
            counts[a] += 1
            if i < 50:
                first_draws.append(int(a))
        again = np.random.default_rng(seed)
        if [int(fn(q.copy(), epsilon, again)) for _ in range(50)] != first_draws:
            return ("two runs with equally seeded generators chose different actions: draw every random number "
                    "from the rng argument (not from np.random or random)")
        if _frequencies_match(counts, _greedy_probabilities(q, epsilon)):
            return None
        for p, hint in _buggy_epsilon_probabilities(q, epsilon):
            if _frequencies_match(counts, p):
                return hint
        expected = _greedy_probabilities(q, epsilon)
        return (f"the action frequencies {np.round(counts / _DRAWS, 3).tolist()} over {_DRAWS} calls do not "
                f"match the epsilon-greedy probabilities {np.round(expected, 3).tolist()}")

    return Case(name, run)


def check_epsilon_greedy(fn, hidden: bool = False) -> Score:
    """Check ``epsilon_greedy(q, epsilon, rng) -> int`` by the frequencies of its choices."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            A = int(rng.integers(3, 6))  # at most 5 actions: the tolerance above counts on it
            q = rng.integers(-2, 2, size=A).astype(float)  # small integers: ties are likely
            epsilon = float(np.round(rng.uniform(0.05, 0.5), 2))
            cases.append(_epsilon_case(f"random values #{i + 1} {q.tolist()}, epsilon = {epsilon}", q, epsilon,
                                       int(rng.integers(2**31))))
        return _scored("epsilon_greedy", fn, cases)
    cases = [
        _epsilon_case("one best action, q = [1, 3, 2], epsilon = 0.1", [1.0, 3.0, 2.0], 0.1, 0),
        _epsilon_case("all values equal (the start of learning), q = [0, 0, 0, 0], epsilon = 0.1",
                      [0.0, 0.0, 0.0, 0.0], 0.1, 1),
        _epsilon_case("a tie between two best actions, q = [5, 1, 5, 0], epsilon = 0.2", [5.0, 1.0, 5.0, 0.0],
                      0.2, 2),
        _epsilon_case("epsilon = 0 is greedy, q = [0, 2, 1]", [0.0, 2.0, 1.0], 0.0, 3),
    ]
    return _scored("epsilon_greedy", fn, cases)


# ------------------------------------------------------------------------------------------ Boltzmann probabilitie

def _boltzmann_case(name, q, temperature) -> Case:
    q = np.asarray(q, dtype=np.float64)

    def run(fn):
        values = q.copy()
        with np.errstate(all="ignore"):
            got = fn(values, temperature)
            expected = ref.boltzmann_probabilities(q, temperature)
            weights = np.exp(q * temperature)
            diagnoses = [(weights / weights.sum(), "divide the values by the temperature: exp(q / T), "
                          "not exp(q * T)"),
                         (np.exp(q / temperature), "normalise: the probabilities must sum to 1")]
        arr = np.asarray(got, dtype=np.float64) if np.ndim(got) else None
        if arr is not None and arr.shape == q.shape and not np.all(np.isfinite(arr)):
            return ("the result contains nan or inf: exp(q / T) overflowed; subtract max(q) from q before "
                    "exponentiating (it cancels in the ratio)")
        return (compare_arrays(got, expected, atol=1e-9, what="the probabilities", diagnoses=diagnoses)
                or _changed({"q": q}, {"q": values}))

    return Case(name, run)


def check_boltzmann_probabilities(fn, hidden: bool = False) -> Score:
    """Check ``boltzmann_probabilities(q, temperature) -> (A,) probabilities``."""
    if hidden:
        rng = hidden_rng()
        cases = [_boltzmann_case(f"random values #{i + 1}", rng.normal(scale=10 ** rng.uniform(0, 3), size=4),
                                 float(10 ** rng.uniform(-2, 1))) for i in range(3)]
        return _scored("boltzmann_probabilities", fn, cases)
    cases = [
        _boltzmann_case("q = [1, 2, 3], T = 1", [1.0, 2.0, 3.0], 1.0),
        _boltzmann_case("a high temperature is nearly uniform: q = [1, 2, 3], T = 100", [1.0, 2.0, 3.0], 100.0),
        _boltzmann_case("large values do not overflow: q = [1000, 999, 0], T = 0.1", [1000.0, 999.0, 0.0], 0.1),
        _boltzmann_case("ties share the probability: q = [2, 2, -1], T = 0.5", [2.0, 2.0, -1.0], 0.5),
    ]
    return _scored("boltzmann_probabilities", fn, cases)


# ---------------------------------------------------------------------------------------------------- bandit updat

def _bug_bandit_old_count(Q, N, a, r, alpha=None):
    step = 1.0 / max(N[a], 1) if alpha is None else alpha
    N[a] += 1
    Q[a] += step * (r - Q[a])


def _bug_bandit_no_count(Q, N, a, r, alpha=None):
    step = 1.0 / (N[a] + 1) if alpha is None else alpha
    Q[a] += step * (r - Q[a])


def _bug_bandit_ignores_alpha(Q, N, a, r, alpha=None):
    N[a] += 1
    Q[a] += (r - Q[a]) / N[a]


def _replay_bandit(update, k, stream, alpha, omit_alpha=False):
    """Q and N after the stream; with ``omit_alpha`` the calls leave alpha out (alpha None) or name it."""
    Q, N = np.zeros(k), np.zeros(k, dtype=np.int64)
    for a, r in stream:
        if not omit_alpha:
            update(Q, N, a, r, alpha)
        elif alpha is None:
            update(Q, N, a, r)
        else:
            update(Q, N, a, r, alpha=alpha)
    return Q, N


def _bandit_case(name, k, stream, alpha, omit_alpha=False) -> Case:
    def run(fn):
        try:
            Q, N = _replay_bandit(fn, k, stream, alpha, omit_alpha)
        except TypeError as exc:
            if omit_alpha and "alpha" in str(exc):
                return ("keep the signature bandit_update(Q, N, a, r, alpha=None): callers leave alpha out for "
                        f"sample averages and name it otherwise ({exc})")
            raise
        expected_Q, expected_N = _replay_bandit(ref_bandits.bandit_update, k, stream, alpha)
        problem = compare_arrays(N, expected_N, atol=0, what="the counts N",
                                 diagnoses=[(np.zeros(k), "N was not updated: add 1 to N[a] for each reward")])
        if problem:
            return problem
        diagnoses = [(_replay_bandit(bug, k, stream, alpha)[0], hint) for bug, hint in (
            (_bug_bandit_old_count, "you divided by the count before adding this reward: increment N[a] first, "
             "so that the n-th reward gets weight 1/n"),
            (_bug_bandit_ignores_alpha, "with a constant alpha the step is alpha, not 1 / N[a]"),
        )]
        return compare_arrays(Q, expected_Q, atol=1e-9, what="Q", diagnoses=diagnoses)

    return Case(name, run)


def _bandit_stream(rng: np.random.Generator, k: int, length: int) -> list:
    return [(int(rng.integers(k)), float(np.round(rng.normal(1.0, 2.0), 3))) for _ in range(length)]


def check_bandit_update(fn, hidden: bool = False) -> Score:
    """Check ``bandit_update(Q, N, a, r, alpha=None) -> None`` (in place)."""
    if hidden:
        rng = hidden_rng()
        cases = [_bandit_case(f"random stream #{i + 1}, alpha = {alpha}", 5, _bandit_stream(rng, 5, 80), alpha)
                 for i, alpha in enumerate((None, float(np.round(rng.uniform(0.05, 0.5), 2)), None))]
        return _scored("bandit_update", fn, cases)
    rng = np.random.default_rng(3)
    cases = [
        _bandit_case("rewards 2, 4, 9 for one arm: the sample average is 5", 2, [(1, 2.0), (1, 4.0), (1, 9.0)],
                     None),
        _bandit_case("called without alpha, as bandit_update(Q, N, a, r)", 3,
                     [(0, 1.0), (2, -3.0), (0, 5.0)], None, omit_alpha=True),
        _bandit_case("the same rewards with alpha = 0.5 given by name", 3, [(0, 1.0), (2, -3.0), (0, 5.0)], 0.5,
                     omit_alpha=True),
        _bandit_case("100 rewards over 4 arms, sample averages", 4, _bandit_stream(rng, 4, 100), None),
        _bandit_case("100 rewards over 4 arms, constant alpha = 0.1", 4, _bandit_stream(rng, 4, 100), 0.1),
    ]
    return _scored("bandit_update", fn, cases)


# ---------------------------------------------------------------------------------------------------- SARSA update

def _bug_sarsa_max(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    ref.q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)


def _bug_sarsa_bootstrap_terminal(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    Q[s, a] += alpha * (r + gamma * Q[s_next, a_next] - Q[s, a])


def _bug_sarsa_wrong_pair(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * Q[s_next, a]
    Q[s, a] += alpha * (target - Q[s, a])


def _bug_sarsa_no_alpha(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    Q[s, a] = r if terminated else r + gamma * Q[s_next, a_next]


def _replay_sarsa(update, Q0, stream, alpha, gamma):
    Q = Q0.copy()
    for s, a, r, s_next, a_next, terminated in stream:
        update(Q, s, a, r, s_next, a_next, terminated, alpha, gamma)
    return Q


def _sarsa_case(name, Q0, stream, alpha, gamma) -> Case:
    def run(fn):
        Q = _replay_sarsa(fn, Q0, stream, alpha, gamma)
        if np.array_equal(Q, Q0):
            return "Q did not change: update Q[s, a] in place"
        diagnoses = [(_replay_sarsa(bug, Q0, stream, alpha, gamma), hint) for bug, hint in (
            (_bug_sarsa_bootstrap_terminal, _HINT_TERMINAL),
            (_bug_sarsa_max, "that is Q-learning's target: SARSA bootstraps from Q(s', a') of the action a' the "
             "agent will take, not from the max over actions"),
            (_bug_sarsa_wrong_pair, "bootstrap from Q[s_next, a_next], the next state with the *next* action"),
            (_bug_sarsa_no_alpha, _HINT_NO_ALPHA),
        )]
        return compare_arrays(Q, _replay_sarsa(ref.sarsa_update, Q0, stream, alpha, gamma), atol=1e-9,
                              what=f"Q after {len(stream)} update(s)", diagnoses=diagnoses)

    return Case(name, run)


def check_sarsa_update(fn, hidden: bool = False) -> Score:
    """Check ``sarsa_update(Q, s, a, r, s_next, a_next, terminated, alpha, gamma) -> None`` (in place)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(3, 9)), int(rng.integers(2, 5))
            cases.append(_sarsa_case(f"random stream #{i + 1} ({S} states, {A} actions)", rng.normal(size=(S, A)),
                                     _transitions(rng, S, A, int(rng.integers(10, 60))),
                                     float(rng.uniform(0.05, 0.9)), float(rng.uniform(0.5, 0.99))))
        return _scored("sarsa_update", fn, cases)
    rng = np.random.default_rng(12)
    Q0 = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    cases = [
        _sarsa_case("one update with a' = 1, a non-greedy next action", Q0, [(0, 0, 1.0, 1, 1, False)], 0.5, 0.9),
        _sarsa_case("one update into a terminal state", Q0, [(2, 1, -5.0, 0, 1, True)], 0.1, 0.9),
        _sarsa_case("40 random transitions, some terminal", rng.normal(size=(5, 3)), _transitions(rng, 5, 3, 40),
                    0.2, 0.95),
    ]
    return _scored("sarsa_update", fn, cases)


# ------------------------------------------------------------------------------------- semi-gradient linear update

def _bug_linear_bootstrap_terminal(w, features, next_features, r, terminated, alpha, gamma):
    delta = r + gamma * np.max(next_features @ w) - features @ w
    w += alpha * delta * features
    return float(delta)


def _bug_linear_full_gradient(w, features, next_features, r, terminated, alpha, gamma):
    if terminated:
        delta, gradient = r - features @ w, features
    else:
        best = int(np.argmax(next_features @ w))
        delta = r + gamma * next_features[best] @ w - features @ w
        gradient = features - gamma * next_features[best]
    w += alpha * delta * gradient
    return float(delta)


def _bug_linear_next_features(w, features, next_features, r, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(next_features @ w)
    delta = target - features @ w
    w += alpha * delta * (features if terminated else next_features[int(np.argmax(next_features @ w))])
    return float(delta)


def _replay_linear(update, w0, stream, alpha, gamma):
    w = w0.copy()
    deltas = [update(w, f, f_next, r, terminated, alpha, gamma) for f, f_next, r, terminated in stream]
    return w, deltas


def _linear_stream(rng: np.random.Generator, d: int, n_actions: int, length: int, binary: bool) -> list:
    def features(shape):
        return (rng.random(shape) < 0.3).astype(float) if binary else rng.normal(size=shape)

    return [(features(d), features((n_actions, d)), float(np.round(rng.normal(), 3)), bool(rng.random() < 0.2))
            for _ in range(length)]


def _linear_case(name, w0, stream, alpha, gamma) -> Case:
    def run(fn):
        given = [(f.copy(), f_next.copy(), r, terminated) for f, f_next, r, terminated in stream]
        w, deltas = _replay_linear(fn, w0, given, alpha, gamma)
        for (f, f_next, _, _), (f_after, f_next_after, _, _) in zip(stream, given):
            problem = _changed({"features": f, "next_features": f_next},
                               {"features": f_after, "next_features": f_next_after})
            if problem:
                return problem
        expected_w, expected_deltas = _replay_linear(ref.semi_gradient_q_update, w0, stream, alpha, gamma)
        if np.array_equal(w, w0):
            return "w did not change: update it in place (w += ...)"
        diagnoses = [(_replay_linear(bug, w0, stream, alpha, gamma)[0], hint) for bug, hint in (
            (_bug_linear_bootstrap_terminal, _HINT_TERMINAL),
            (_bug_linear_full_gradient, "you also differentiated the target: a semi-gradient update treats "
             "r + gamma max Q(s', .) as a constant, so the step is alpha * delta * f(s, a)"),
            (_bug_linear_next_features, "step along f(s, a), the features of the pair being updated, not along "
             "those of the next state"),
        )]
        problem = compare_arrays(w, expected_w, atol=1e-9, what=f"w after {len(stream)} update(s)",
                                 diagnoses=diagnoses)
        if problem:
            return problem
        if any(d is None for d in deltas):
            return "w is right; now return the TD error delta as a float"
        return compare_arrays(deltas, expected_deltas, atol=1e-9, what="the TD errors returned")

    return Case(name, run)


def check_semi_gradient_q_update(fn, hidden: bool = False) -> Score:
    """Check ``semi_gradient_q_update(w, features, next_features, r, terminated, alpha, gamma) -> delta``."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            d, A = int(rng.integers(3, 12)), int(rng.integers(2, 4))
            cases.append(_linear_case(f"random features #{i + 1} (d = {d}, {A} actions)", rng.normal(size=d),
                                      _linear_stream(rng, d, A, int(rng.integers(5, 30)), bool(i % 2)),
                                      float(rng.uniform(0.01, 0.3)), float(rng.uniform(0.5, 0.99))))
        return _scored("semi_gradient_q_update", fn, cases)
    rng = np.random.default_rng(13)
    w0 = np.array([0.5, -1.0, 2.0])
    one = [(np.array([1.0, 0.0, 1.0]), np.array([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]), 1.0, False)]
    cases = [
        _linear_case("one update: w . f = 2.5, target 1 + 0.9 * max(-1, -0.5)", w0, one, 0.1, 0.9),
        _linear_case("one update into a terminal state", w0, [(one[0][0], one[0][1], 3.0, True)], 0.1, 0.9),
        _linear_case("30 updates with binary (tile-coding-like) features", np.zeros(8),
                     _linear_stream(rng, 8, 3, 30, True), 0.1, 0.95),
        _linear_case("30 updates with real-valued features", rng.normal(size=6),
                     _linear_stream(rng, 6, 2, 30, False), 0.05, 0.9),
    ]
    return _scored("semi_gradient_q_update", fn, cases)


# --------------------------------------------------------------------------------------------------------- DQN los

def _bug_dqn_online_target(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    return ref_dqn.dqn_loss(q_network, q_network, states, actions, rewards, next_states, terminated, gamma)


def _bug_dqn_bootstrap_terminal(q_network, target_network, states, actions, rewards, next_states, terminated,
                                gamma):
    return ref_dqn.dqn_loss(q_network, target_network, states, actions, rewards, next_states,
                            torch.zeros_like(terminated), gamma)


def _bug_dqn_mse(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1.0 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.mse_loss(q, target)


def _bug_dqn_max_q(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).max(dim=1).values
    with torch.no_grad():
        target = rewards + gamma * (1.0 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target)


def _bug_dqn_unsqueezed(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions.unsqueeze(1))  # (B, 1) against targets (B,): broadcasts to (B, B)
    with torch.no_grad():
        target = rewards + gamma * (1.0 - terminated) * target_network(next_states).max(dim=1).values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the broadcast; this is the check's own computation
        return torch.nn.functional.smooth_l1_loss(q, target)


def _bug_dqn_double(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        best = q_network(next_states).argmax(dim=1, keepdim=True)
        target = rewards + gamma * (1.0 - terminated) * target_network(next_states).gather(1, best).squeeze(1)
    return torch.nn.functional.smooth_l1_loss(q, target)


def _dqn_setup(seed: int, batch: int, state_dim: int, n_actions: int, hidden: int):
    torch.manual_seed(seed)
    q_network = ref_dqn.QNetwork(state_dim, n_actions, hidden)
    target_network = ref_dqn.QNetwork(state_dim, n_actions, hidden)  # different weights from the online one
    rng = np.random.default_rng(seed)
    data = (torch.as_tensor(rng.normal(size=(batch, state_dim)), dtype=torch.float32),
            torch.as_tensor(rng.integers(n_actions, size=batch), dtype=torch.int64),
            torch.as_tensor(rng.normal(size=batch) * 3, dtype=torch.float32),
            torch.as_tensor(rng.normal(size=(batch, state_dim)), dtype=torch.float32),
            torch.as_tensor(rng.random(batch) < 0.3, dtype=torch.float32))
    return q_network, target_network, data


def _dqn_outcome(loss_fn, q_network, target_network, data, gamma):
    """(loss value, gradient of the online network as one vector, whether the target network got gradients)."""
    loss = loss_fn(q_network, target_network, *data, gamma)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        return loss, None, False
    q_network.zero_grad()
    target_network.zero_grad()
    loss.backward()
    grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                       for p in q_network.parameters()]).numpy()
    target_grads = any(p.grad is not None and bool(torch.any(p.grad != 0)) for p in target_network.parameters())
    return float(loss.detach()), grads, target_grads


def _dqn_case(name, seed, batch, state_dim, n_actions, hidden, gamma) -> Case:
    def run(fn):
        q_network, target_network, data = _dqn_setup(seed, batch, state_dim, n_actions, hidden)
        data_before = [d.clone() for d in data]
        loss, grads, target_grads = _dqn_outcome(fn, q_network, target_network, data, gamma)
        if any(not torch.equal(a, b) for a, b in zip(data, data_before)):
            return "the batch tensors were changed: compute the loss without modifying them"
        if grads is None:
            return f"return the loss as a scalar tensor (so that loss.backward() works); got {loss!r}"
        if target_grads:
            return ("gradients reached the target network: compute the targets under torch.no_grad() "
                    "(or .detach() them); they are constants of the regression")
        expected_loss, expected_grads, _ = _dqn_outcome(ref_dqn.dqn_loss, *_dqn_setup(seed, batch, state_dim,
                                                                                      n_actions, hidden)[:2],
                                                        data, gamma)
        buggy = {}
        for bug, hint in ((_bug_dqn_online_target, "the targets come from target_network, not from q_network"),
                          (_bug_dqn_bootstrap_terminal, "where terminated is 1 the target is the reward alone: "
                           "multiply the bootstrap term by (1 - terminated)"),
                          (_bug_dqn_mse, "use the Huber loss (torch.nn.functional.smooth_l1_loss), not the "
                           "squared error"),
                          (_bug_dqn_max_q, "the prediction is Q(s, a) of the action taken (gather with actions), "
                           "not the max over actions"),
                          (_bug_dqn_unsqueezed, "Q(s, a) after gather has shape (B, 1) and the targets (B,): the "
                           "loss broadcasts them to (B, B); squeeze(1) the gathered values"),
                          (_bug_dqn_double, "that is the double DQN target (action chosen by q_network, valued by "
                           "target_network); this exercise asks for DQN's max_a' of target_network's values")):
            networks = _dqn_setup(seed, batch, state_dim, n_actions, hidden)[:2]
            buggy[hint] = _dqn_outcome(bug, *networks, data, gamma)
        problem = compare_arrays(loss, expected_loss, atol=1e-5, what="the loss",
                                 diagnoses=[(b[0], hint) for hint, b in buggy.items()])
        if problem:
            return problem
        return compare_arrays(grads, expected_grads, atol=1e-5, what="the gradient of q_network's parameters",
                              diagnoses=[(b[1], hint) for hint, b in buggy.items() if b[1] is not None])

    return Case(name, run)


def check_dqn_loss(fn, hidden: bool = False) -> Score:
    """Check ``dqn_loss(q_network, target_network, states, actions, rewards, next_states, terminated, gamma)``."""
    if hidden:
        rng = hidden_rng()
        cases = [_dqn_case(f"random networks and batch #{i + 1}", int(rng.integers(2**31)),
                           int(rng.integers(8, 64)), int(rng.integers(2, 6)), int(rng.integers(2, 5)),
                           int(rng.choice([8, 16])), float(rng.uniform(0.8, 0.999))) for i in range(3)]
        return _scored("dqn_loss", fn, cases)
    cases = [
        _dqn_case("a batch of 32 CartPole-sized transitions (4 state variables, 2 actions)", 0, 32, 4, 2, 16,
                  0.99),
        _dqn_case("a batch of 5 with 3 actions, gamma = 0.9", 1, 5, 3, 3, 8, 0.9),
        _dqn_case("a batch of 64, 6 state variables, 4 actions", 2, 64, 6, 4, 32, 0.95),
    ]
    return _scored("dqn_loss", fn, cases)
