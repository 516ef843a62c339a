"""Checks for Chapter 3 (Q-learning and exploration).

Each ``check_<exercise>(fn, hidden=False)`` runs the student's ``fn`` on textbook cases and fixed random
instances, compares it with the reference in :mod:`solutions.q_learning`, :mod:`solutions.bandits` or
:mod:`solutions.dqn`, prints one line per case and returns a :class:`~autograder.checks._harness.Score`.
``hidden=True`` runs only instances drawn from :func:`~autograder.checks._harness.hidden_rng`.

How mistakes are named (issue 11): on every case, the check computes what each known mistake (the ``_bug_*``
variants below: a missing gamma, bootstrapping from a terminal state, the max of the wrong state, a copy instead of
an in-place update, ...) would output on *that case's* inputs, and a failing case lists the mistakes whose output
it reproduces. A hint is printed only when it explains every failing case; otherwise the smallest failing case is
shown with its inputs and the expected and received values. A message that is a plain string states a fact about
the output (an input was modified, a wrong type was returned), never a guess about its cause.

Values that an answer writes into the caller's float64 arrays (``Q``, ``w``) are judged to float32 precision, so an
answer that computes in float32 passes while a wrong formula, whose error is of the size of the values, fails.

epsilon-greedy is checked statistically: the action frequencies of 20,000 calls must match the probabilities
epsilon / A + (1 - epsilon) / (number of greedy actions) within 4.5 standard errors per action. A correct
implementation fails one action's test with probability about 7e-6, so all the cases of a check (at most 8 cases
of at most 5 actions) together with probability below 0.001. A failing case names the known-buggy distributions
(ties always to one action, no exploration, epsilon inverted, ...) that its frequencies match.

Besides the values, the checks test what the statements ask for and callers rely on: inputs that are not to be
updated stay unchanged (an answer called with ``Q[s]`` must not write into the Q-table), flags and indices may come
as NumPy scalars (``numpy.bool_``, ``numpy.int64``), and ``bandit_update`` may be called without ``alpha``.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from solutions import bandits as ref_bandits
from solutions import dqn as ref_dqn
from solutions import q_learning as ref

from ._harness import Case, Failure, Score, compare_arrays, format_pair, hidden_rng, precision_tolerance, run_check

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
_HINT_TERMINAL_ZERO = ("when the next state is terminal the target is the reward r, not 0: only the bootstrap "
                       "term is dropped")
_HINT_NUMPY_BOOL = ("terminated may be numpy.True_ / numpy.False_ (what NumPy code and vector environments give), "
                    "and `terminated is True` or `terminated is False` is then never true: test the flag by its "
                    "truth value, `if terminated:` / `if not terminated:`")
_HINT_MASK_INVERTED = ("bootstrap where the episode goes on: multiply the next value by (1 - terminated) (or test "
                       "`not terminated`), not by terminated")
_HINT_NO_ALPHA = "you replaced the estimate by the target: move it a step alpha towards the target"
_HINT_NO_GAMMA = "discount the next value: the target is r + gamma * (the next value), not r + (the next value)"
_HINT_GAMMA_ALL = "discount only the next value: r + gamma * (next value), not gamma * (r + next value)"
_HINT_SIGN = ("you moved the estimate away from the target: Q[s, a] += alpha * (target - Q[s, a]) (the error is "
              "target minus estimate)")
_HINT_NO_MINUS = ("the step is alpha * (target - Q[s, a]): you added alpha * target without subtracting the "
                  "current estimate")
_HINT_ROW = "update only the entry Q[s, a] of the action taken, not the whole row Q[s]"
_HINT_COPY = ("Q is unchanged after the calls: update the caller's array in place (Q[s, a] += ...), not a copy "
              "or a new array")
_HINT_RNG = ("draw every random number from the rng argument (not from np.random, the random module or a "
             "generator made inside your function): equally seeded generators must give the same actions")


def _changed(before: dict, after: dict) -> str | None:
    """None if every array in ``after`` equals the one of the same name in ``before``; else a message naming it."""
    for name, value in before.items():
        if not np.array_equal(np.asarray(after[name]), value):
            return (f"your function changed its input {name}: leave it as it is (work on a copy); a caller that "
                    f"passes a row of its Q-table or its feature vectors would find them altered")
    return None


def _float32_tolerance(expected) -> float:
    """What an answer computed in float32 can be off by: values stored in float64 arrays are judged to float32."""
    return precision_tolerance(np.float32, np.asarray(expected, dtype=np.float64), 1e-9)


def _numpy_scalars(stream: list) -> list:
    """The same transitions with indices as numpy.int64 and flags as numpy.bool_, as NumPy code produces them."""
    return [(np.int64(s), np.int64(a), np.float64(r), np.int64(s_next), np.int64(a_next), np.bool_(terminated))
            for s, a, r, s_next, a_next, terminated in stream]


#: The arguments each exercise gets as they are (see ``run_check``): those it updates in place, and those whose
#: change its cases report ("your function changed its input q"); every other argument is a private copy per call.
_PASSED_AS_IS = {
    "q_learning_update": ("Q",),
    "sarsa_update": ("Q",),
    "bandit_update": ("Q", "N"),
    "epsilon_greedy": ("q",),
    "boltzmann_probabilities": ("q",),
    "semi_gradient_q_update": ("w", "features", "next_features"),
    "dqn_loss": ("states", "actions", "rewards", "next_states", "terminated"),
}


def _scored(name: str, fn, cases: list[Case]) -> Score:
    return run_check(name, fn, cases, POINTS[name], passed_as_is=_PASSED_AS_IS.get(name, ()))


def _transitions(rng: np.random.Generator, n_states: int, n_actions: int, length: int) -> list:
    """Random transitions (s, a, r, s', a', terminated), about a quarter of them ending the episode."""
    return [(int(rng.integers(n_states)), int(rng.integers(n_actions)), float(np.round(rng.normal(), 3)),
             int(rng.integers(n_states)), int(rng.integers(n_actions)), bool(rng.random() < 0.25))
            for _ in range(length)]


# --------------------------------------------------------------------------- tabular updates: Q-learning and SARSA
#
# A tabular update is a target and a way to move Q[s, a] towards it. Each known mistake changes one of the two;
# ``_tabular(next_value, ...)`` builds the update, with the SARSA signature (Q-learning's ignores a_next).

def _target_q(Q, s, a, r, s_next, a_next, terminated):
    return np.max(Q[s_next])


def _target_sarsa(Q, s, a, r, s_next, a_next, terminated):
    return Q[s_next, a_next]


def _tabular(next_value, *, terminal="reward", gamma_on="next", step="alpha"):
    """An update Q[s, a] <- ... from ``next_value(Q, s, a, r, s_next, a_next, terminated)`` and these variants.

    terminal: "reward" (correct: target r at a terminal transition), "bootstrap" (ignores the flag), "zero"
    (target 0), "is_true" (bootstraps unless ``terminated is True``), "is_false" (bootstraps only if
    ``terminated is False``), "inverted" (the next value times terminated instead of 1 - terminated), "replace"
    (Q[s, a] = r at a terminal transition). gamma_on: "next" (correct), "none" (no discount), "all"
    (gamma * (r + next)). step: "alpha" (correct), "replace" (Q[s, a] = target), "negative", "no_minus"
    (Q[s, a] += alpha * target), "precedence" (Q[s, a] += alpha * target - Q[s, a]), "row" (the whole row Q[s]
    moves), "next_pair" (Q[s_next, a_next] moves instead), "copy" (Q unchanged).
    """

    def update(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
        ends = {"reward": bool(terminated), "bootstrap": False, "zero": bool(terminated), "inverted": False,
                "replace": bool(terminated), "is_true": terminated is True,
                "is_false": terminated is not False}[terminal]
        if ends:
            if terminal == "replace":
                Q[s, a] = r
                return
            target = 0.0 if terminal == "zero" else r
        else:
            future = next_value(Q, s, a, r, s_next, a_next, terminated)
            if terminal == "inverted":
                future = future * float(bool(terminated))
            target = {"next": r + gamma * future, "none": r + future, "all": gamma * (r + future)}[gamma_on]
        if step == "alpha":
            Q[s, a] += alpha * (target - Q[s, a])
        elif step == "replace":
            Q[s, a] = target
        elif step == "negative":
            Q[s, a] -= alpha * (target - Q[s, a])
        elif step == "no_minus":
            Q[s, a] += alpha * target
        elif step == "precedence":
            Q[s, a] += alpha * target - Q[s, a]
        elif step == "row":
            Q[s] += alpha * (target - Q[s])
        elif step == "next_pair":
            Q[s_next, a_next] += alpha * (target - Q[s_next, a_next])

    return update


def _common_tabular_bugs(next_value, numpy_flags: bool) -> list:
    """(update, hint) for the mistakes Q-learning and SARSA share, around the correct ``next_value``."""
    bugs = [
        (_tabular(next_value, terminal="bootstrap"), _HINT_TERMINAL),
        (_tabular(next_value, terminal="zero"), _HINT_TERMINAL_ZERO),
        (_tabular(next_value, terminal="inverted"), _HINT_MASK_INVERTED),
        (_tabular(next_value, terminal="replace"), "at a terminal transition, too, move Q[s, a] a step alpha "
         "towards the target r; do not set it to r"),
        (_tabular(next_value, gamma_on="none"), _HINT_NO_GAMMA),
        (_tabular(next_value, gamma_on="all"), _HINT_GAMMA_ALL),
        (_tabular(next_value, step="replace"), _HINT_NO_ALPHA),
        (_tabular(next_value, step="negative"), _HINT_SIGN),
        (_tabular(next_value, step="no_minus"), _HINT_NO_MINUS),
        (_tabular(next_value, step="precedence"), "mind the brackets: Q[s, a] += alpha * (target - Q[s, a]); you "
         "computed alpha * target - Q[s, a]"),
        (_tabular(next_value, step="row"), _HINT_ROW),
        (_tabular(next_value, step="copy"), _HINT_COPY),
    ]
    if numpy_flags:  # on Python bools these two are the correct update
        bugs += [(_tabular(next_value, terminal="is_true"), _HINT_NUMPY_BOOL),
                 (_tabular(next_value, terminal="is_false"), _HINT_NUMPY_BOOL)]
    return bugs


def _q_learning_bugs(numpy_flags: bool) -> list:
    return _common_tabular_bugs(_target_q, numpy_flags) + [
        (_tabular(lambda Q, s, a, r, s_next, a_next, t: max(0.0, np.max(Q[s_next]))),
         "the largest next value can be negative: take max(Q[s_next]) itself, not a running maximum started at 0"),
        (_tabular(lambda Q, s, a, r, s_next, a_next, t: np.max(Q[s])),
         "the target uses max_a' Q(s', a') of the *next* state s_next, not of s"),
        (_tabular(lambda Q, s, a, r, s_next, a_next, t: np.max(Q)),
         "take the max over the next state's actions, max(Q[s_next]), not over the whole table"),
        (_tabular(lambda Q, s, a, r, s_next, a_next, t: np.mean(Q[s_next])),
         "Q-learning's target uses the largest next value, max(Q[s_next]), not their mean"),
        (_tabular(lambda Q, s, a, r, s_next, a_next, t: float(np.argmax(Q[s_next]))),
         "you used the index of the best next action (argmax) as its value: use max(Q[s_next])"),
        (_tabular(lambda Q, s, a, r, s_next, a_next, t: Q[s_next, a]),
         "bootstrap from the best next action, max(Q[s_next]), not from Q[s_next, a] of the same action a"),
    ]


def _sarsa_bugs(numpy_flags: bool) -> list:
    return _common_tabular_bugs(_target_sarsa, numpy_flags) + [
        (_tabular(_target_q), "that is Q-learning's target: SARSA bootstraps from Q(s', a') of the action a' the "
         "agent will take, not from the max over actions"),
        (_tabular(lambda Q, s, a, r, s_next, a_next, t: Q[s_next, a]),
         "bootstrap from Q[s_next, a_next], the next state with the *next* action (not the action a)"),
        (_tabular(lambda Q, s, a, r, s_next, a_next, t: Q[s, a_next]),
         "bootstrap from Q[s_next, a_next], the *next* state s_next (not s) with the next action"),
        (_tabular(_target_sarsa, step="next_pair"), "update Q[s, a], the pair the transition starts from, not "
         "Q[s_next, a_next]"),
        (_tabular(lambda Q, s, a, r, s_next, a_next, t: np.mean(Q[s_next])),
         "SARSA's target uses Q(s', a') of the next action a' itself, not the mean over actions (that is "
         "expected SARSA with a uniform policy)"),
    ]


def _replay(update, Q0, stream, alpha, gamma, sarsa: bool):
    Q = Q0.copy()
    for s, a, r, s_next, a_next, terminated in stream:
        if sarsa:
            update(Q, s, a, r, s_next, a_next, terminated, alpha, gamma)
        else:
            update(Q, s, a, r, s_next, terminated, alpha, gamma)
    return Q


def _tabular_inputs(Q0, stream, alpha, gamma, sarsa: bool) -> dict:
    """The arguments as the student's function receives them (one call), or the calls of a stream."""
    names = ("s", "a", "r", "s_next", "a_next", "terminated") if sarsa else ("s", "a", "r", "s_next", "terminated")
    rows = [t if sarsa else (*t[:4], t[5]) for t in stream]
    if len(stream) == 1:
        return {"Q": Q0, **dict(zip(names, rows[0])), "alpha": alpha, "gamma": gamma}
    return {"Q (before the calls)": Q0, f"the {len(stream)} calls' ({', '.join(names)})": rows, "alpha": alpha,
            "gamma": gamma}


def _tabular_case(name, Q0, stream, alpha, gamma, sarsa: bool) -> Case:
    numpy_flags = any(isinstance(t[-1], np.bool_) for t in stream)
    bugs = _sarsa_bugs(numpy_flags) if sarsa else _q_learning_bugs(numpy_flags)

    def run(fn):
        Q = _replay(fn, Q0, stream, alpha, gamma, sarsa)
        expected = _replay(ref.sarsa_update if sarsa else ref.q_learning_update, Q0, stream, alpha, gamma, sarsa)
        diagnoses = [(_replay(bug, Q0, stream, alpha, gamma, True), hint) for bug, hint in bugs]
        tolerance = _float32_tolerance(expected)
        problem = compare_arrays(Q, expected, atol=tolerance, diagnoses=diagnoses,
                                 what=f"Q after {len(stream)} update{'s' if len(stream) > 1 else ''}")
        if problem and _HINT_NUMPY_BOOL in problem.hints:
            # right with Python ints and bools, wrong with NumPy scalars: the mistake is in how the flag is tested
            as_python = [(int(s), int(a), float(r), int(s_next), int(a_next), bool(t))
                         for s, a, r, s_next, a_next, t in stream]
            try:
                right_with_python_types = compare_arrays(_replay(fn, Q0, as_python, alpha, gamma, sarsa), expected,
                                                         atol=tolerance) is None
            except Exception:  # noqa: BLE001 -- this is only for the hint; the case has failed already
                right_with_python_types = False
            if right_with_python_types:
                return Failure(problem, hints=[_HINT_NUMPY_BOOL], expected=problem.expected, got=problem.got,
                               what=problem.what)
        return problem

    return Case(name, run, inputs=_tabular_inputs(Q0, stream, alpha, gamma, sarsa), size=Q0.size + 6 * len(stream))


def check_q_learning_update(fn, hidden: bool = False) -> Score:
    """Check ``q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma) -> None`` (in place)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(3, 9)), int(rng.integers(2, 5))
            stream = _transitions(rng, S, A, int(rng.integers(10, 60)))
            gamma = 1.0 if i == 1 else float(rng.uniform(0.5, 0.99))
            cases.append(_tabular_case(f"random stream #{i + 1} ({S} states, {A} actions, gamma = {gamma:.3g})",
                                       rng.normal(size=(S, A)), _numpy_scalars(stream) if i == 2 else stream,
                                       float(rng.uniform(0.05, 0.9)), gamma, sarsa=False))
        return _scored("q_learning_update", fn, cases)
    rng = np.random.default_rng(11)
    Q0 = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    cases = [
        _tabular_case("one update: Q[0, 1] from 1 towards 0.5 + 0.9 * max Q[1] = 2.3, alpha = 0.5", Q0,
                      [(0, 1, 0.5, 1, 0, False)], 0.5, 0.9, sarsa=False),
        _tabular_case("one update into a terminal state (target = r = 10)", Q0, [(2, 0, 10.0, 1, 0, True)], 0.1,
                      0.9, sarsa=False),
        _tabular_case("every next value negative: target 0.5 + 0.9 * max(-3, -2) = -1.3",
                      np.array([[-1.0, -2.0], [-3.0, -2.0], [-0.5, -0.5]]), [(0, 1, 0.5, 1, 0, False)], 0.5, 0.9,
                      sarsa=False),
        _tabular_case("40 random transitions, some terminal", rng.normal(size=(5, 3)),
                      _transitions(rng, 5, 3, 40), 0.2, 0.95, sarsa=False),
        _tabular_case("20 random transitions given as NumPy scalars (numpy.int64 states, numpy.bool_ flags)",
                      rng.normal(size=(4, 3)), _numpy_scalars(_transitions(rng, 4, 3, 20)), 0.3, 0.9,
                      sarsa=False),
        _tabular_case("15 random transitions, gamma = 1 (undiscounted, as on the cliff)", rng.normal(size=(4, 2)),
                      _transitions(rng, 4, 2, 15), 0.5, 1.0, sarsa=False),
    ]
    return _scored("q_learning_update", fn, cases)


# -------------------------------------------------------------------------------------------------- epsilon-greedy

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


_HINT_VALUE_AS_ACTION = ("you returned a value of q as the action: return an index, rng.integers(A) when "
                         "exploring (not rng.choice(q)) or the index of a greedy action")


_HINT_RANDOM_RANGE = ("a random action must be any of 0 .. A-1, and rng.integers(A) draws exactly those (its "
                      "upper bound is excluded): rng.integers(A - 1) or rng.integers(1, A) leaves one action out, "
                      "rng.integers(A + 1) goes one past the last")


def _buggy_epsilon_probabilities(q: np.ndarray, epsilon: float) -> list[tuple[np.ndarray, str]]:
    """The action probabilities that known mistakes give, with their hints."""
    A = q.size
    best = q == q.max()
    worst = q == q.min()
    greedy = best / best.sum()
    bugs = [(best / best.sum(), "your function never explores: with probability epsilon take a random action"),
            ((1 - epsilon) / A + epsilon * greedy,
             "epsilon is the probability of a random action, not of the greedy one"),
            (epsilon / A + (1 - epsilon) * worst / worst.sum(),
             "the greedy action has the *largest* value (max / argmax), not the smallest")]
    if best.sum() > 1:
        for j in np.flatnonzero(best):
            bugs.append((epsilon / A + (1 - epsilon) * np.eye(A)[j],
                         "ties always go to the same greedy action (np.argmax takes the first): break ties "
                         "between equal values at random"))
    if (~best).any():
        bugs.append((epsilon * ~best / (~best).sum() + (1 - epsilon) * greedy,
                     "when exploring, choose among *all* actions (the greedy ones included), uniformly"))
    values = q.astype(np.int64)
    if np.array_equal(values, q) and np.all((values >= 0) & (values < A)):  # rng.choice(q): a value as the action
        bugs.append((epsilon * np.bincount(values, minlength=A) / A + (1 - epsilon) * greedy,
                     _HINT_VALUE_AS_ACTION))
    for j in (0, A - 1):  # rng.integers(A - 1) or rng.integers(1, A): one action is never drawn at random
        others = np.ones(A, dtype=bool)
        others[j] = False
        bugs.append((epsilon * others / others.sum() + (1 - epsilon) * greedy, _HINT_RANDOM_RANGE))
    return bugs


def _epsilon_case(name, q, epsilon, seed) -> Case:
    q = np.asarray(q, dtype=np.float64)

    def run(fn):
        rng = np.random.default_rng(seed)
        start = rng.bit_generator.state
        counts = np.zeros(q.size, dtype=np.int64)
        first_draws = []
        for i in range(_DRAWS):
            values = q.copy()
            a = fn(values, epsilon, rng)
            if i < 50 and (problem := _changed({"q": q}, {"q": values})):
                return problem
            if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)) or not 0 <= a < q.size:
                message = f"return an action, an int in 0..{q.size - 1}; got {a!r}"
                hints = []
                if isinstance(a, (int, float, np.integer, np.floating)) and not 0 <= a < q.size:
                    hints = [hint for hint, fits in ((_HINT_VALUE_AS_ACTION, a in q),
                                                     (_HINT_RANDOM_RANGE, a == q.size)) if fits]
                if hints:
                    return Failure(message, hints=hints, expected=f"an int in 0..{q.size - 1}", got=a,
                                   what="the action")
                return message
            counts[a] += 1
            if i < 50:
                first_draws.append(int(a))
        used_rng = rng.bit_generator.state != start
        again = np.random.default_rng(seed)
        repeated = [int(fn(q.copy(), epsilon, again)) for _ in range(50)]
        if repeated != first_draws:
            return Failure("two runs with equally seeded generators chose different actions", hints=[_HINT_RNG],
                           expected=np.array(first_draws), got=np.array(repeated),
                           what="the first 50 actions (the second run)")
        expected = _greedy_probabilities(q, epsilon)
        if _frequencies_match(counts, expected):
            return None
        hints = [hint for p, hint in _buggy_epsilon_probabilities(q, epsilon)
                 if not np.allclose(p, expected) and _frequencies_match(counts, p)]
        if not used_rng:
            hints.append(_HINT_RNG)
        e_text, g_text = format_pair(expected, counts / _DRAWS)
        return Failure(f"the action frequencies over {_DRAWS} calls, {g_text}, do not match the epsilon-greedy "
                       f"probabilities {e_text}" + ("" if used_rng else "; no number was drawn from rng"),
                       hints=hints, expected=expected, got=counts / _DRAWS, what="action frequencies")

    return Case(name, run, inputs={"q": q, "epsilon": epsilon, "rng": f"numpy.random.default_rng({seed})"})


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
        _epsilon_case("epsilon = 1 is uniformly random, q = [-1, 4, 2]", [-1.0, 4.0, 2.0], 1.0, 4),
    ]
    return _scored("epsilon_greedy", fn, cases)


# ----------------------------------------------------------------------------------------- Boltzmann probabilities

def _softmax(z: np.ndarray) -> np.ndarray:
    weights = np.exp(z - z.max())
    return weights / weights.sum()


_HINT_TEMPERATURE = "divide the values by the temperature: exp(q / T), not exp(q * T) or exp(q)"
_HINT_NORMALISE = ("normalise: divide the weights exp((q - max q) / T) by their sum, so that the probabilities "
                   "sum to 1")
_HINT_OVERFLOW = ("exp overflowed (or every weight underflowed to 0, and 0 / 0 is nan): subtract max(q) from q "
                  "before dividing by T and exponentiating, exp((q - max(q)) / T); the shift cancels in the "
                  "ratio")


def _boltzmann_case(name, q, temperature) -> Case:
    q = np.asarray(q, dtype=np.float64)

    def run(fn):
        values = q.copy()
        with np.errstate(all="ignore"):
            got = fn(values, temperature)
            expected = ref.boltzmann_probabilities(q, temperature)
            naive = np.exp(q / temperature)
            naive = naive / naive.sum()
        if problem := _changed({"q": q}, {"q": values}):
            return problem
        try:
            arr = np.asarray(got, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is not None and arr.shape == q.shape and not np.all(np.isfinite(arr)):
            return Failure("the result contains nan or inf", expected=expected, got=arr, what="the probabilities",
                           hints=[_HINT_OVERFLOW] if not np.all(np.isfinite(naive)) else [])
        z_shifted = (q - q.max()) / temperature
        with np.errstate(all="ignore"):
            diagnoses = [(_softmax(q * temperature), _HINT_TEMPERATURE), (_softmax(q), _HINT_TEMPERATURE),
                         (_softmax(-q / temperature), "larger values get larger probabilities: exp(+q / T), "
                          "not exp(-q / T)"),
                         (np.exp(q / temperature), _HINT_NORMALISE),
                         (np.exp((q - q.max()) / temperature), _HINT_NORMALISE),
                         (z_shifted - np.log(np.sum(np.exp(z_shifted))),
                          "return the probabilities themselves, not their logarithms")]
            if arr is not None and arr.shape == q.shape and np.all(np.isfinite(arr)) and arr.sum() > 0 and \
                    np.allclose(arr / arr.sum(), expected, rtol=0, atol=_float32_tolerance(expected)):
                diagnoses.append((arr, _HINT_NORMALISE))  # right up to a factor: the normalisation is wrong
        diagnoses = [(d, hint) for d, hint in diagnoses if np.all(np.isfinite(d))]
        return compare_arrays(got, expected, atol=1e-9, what="the probabilities", diagnoses=diagnoses)

    return Case(name, run, inputs={"q": q, "temperature": temperature})


def check_boltzmann_probabilities(fn, hidden: bool = False) -> Score:
    """Check ``boltzmann_probabilities(q, temperature) -> (A,) probabilities``."""
    if hidden:
        rng = hidden_rng()
        cases = [_boltzmann_case(f"random values #{i + 1}", rng.normal(scale=10 ** rng.uniform(0, 3), size=4),
                                 float(10 ** rng.uniform(-2, 1))) for i in range(2)]
        # values far from 0 (either sign) against a small temperature: exp(q / T) alone over- or underflows
        offset = float(rng.choice([-1, 1]) * rng.uniform(800, 2000))
        cases.append(_boltzmann_case(f"random values #3, all near {offset:.0f}", offset + rng.normal(size=4),
                                     float(rng.uniform(0.2, 1.0))))
        return _scored("boltzmann_probabilities", fn, cases)
    cases = [
        _boltzmann_case("q = [1, 2, 3], T = 1", [1.0, 2.0, 3.0], 1.0),
        _boltzmann_case("a high temperature is nearly uniform: q = [1, 2, 3], T = 100", [1.0, 2.0, 3.0], 100.0),
        _boltzmann_case("large values do not overflow: q = [1000, 999, 0], T = 0.1", [1000.0, 999.0, 0.0], 0.1),
        _boltzmann_case("very negative values do not underflow to 0 / 0: q = [-1000, -1001, -1050], T = 0.5",
                        [-1000.0, -1001.0, -1050.0], 0.5),
        _boltzmann_case("ties share the probability: q = [2, 2, -1], T = 0.5", [2.0, 2.0, -1.0], 0.5),
    ]
    return _scored("boltzmann_probabilities", fn, cases)


# --------------------------------------------------------------------------------------------------- bandit update

def _bandit(*, count="first", step="count", move="arm"):
    """bandit_update with one of its parts changed.

    count: "first" (correct: N[a] += 1, then the step), "after" (the step uses the count before this reward),
    "twice_after" (N[a] + 1 after the increment), "none" (N unchanged), "only_average" (N counted only when alpha
    is None), "all" (every arm's count goes up). step: "count" (correct: 1 / N[a], or alpha), "ignore_alpha"
    (always 1 / N[a]), "total" (1 / sum(N)), "one" (Q[a] = r). move: "arm" (correct), "all_arms", "negative",
    "no_minus", "precedence" (Q[a] = Q[a] + step * r - Q[a]). step "int_div": 1 // N[a].
    """

    def update(Q, N, a, r, alpha=None):
        before = N[a]
        if count == "all":
            N += 1
        elif count != "none" and not (count == "only_average" and alpha is not None):
            N[a] += 1
        n = {"first": N[a], "after": max(before, 1), "twice_after": N[a] + 1, "none": before + 1,
             "only_average": N[a], "all": N[a]}[count]
        if step == "count":
            size = 1.0 / n if alpha is None else alpha
        elif step == "ignore_alpha":
            size = 1.0 / n
        elif step == "int_div":
            size = 1 // n if alpha is None else alpha
        elif step == "total":
            size = 1.0 / N.sum() if alpha is None else alpha
        else:
            size = 1.0
        if move == "arm":
            Q[a] += size * (r - Q[a])
        elif move == "all_arms":
            Q += size * (r - Q)
        elif move == "negative":
            Q[a] -= size * (r - Q[a])
        elif move == "precedence":
            Q[a] = Q[a] + size * r - Q[a]
        else:
            Q[a] += size * r

    return update


_HINT_OFF_BY_ONE = ("the n-th reward of an arm must get weight 1/n: increment N[a] first, then step 1 / N[a] "
                    "(your weights are off by one)")
_HINT_NOT_COUNTED = "N was not updated: add 1 to N[a] for each reward, whether or not alpha is given"
_BANDIT_BUGS = [
    (_bandit(count="after"), _HINT_OFF_BY_ONE),
    (_bandit(count="twice_after"), _HINT_OFF_BY_ONE),
    (_bandit(count="none"), _HINT_NOT_COUNTED),
    (_bandit(count="only_average"), _HINT_NOT_COUNTED),
    (_bandit(count="all"), "count only the arm that was pulled: N[a] += 1, not N += 1"),
    (_bandit(step="ignore_alpha"), "with a constant alpha the step is alpha, not 1 / N[a]"),
    (_bandit(step="total"), "the sample-average step is 1 / N[a], the count of this arm, not of all pulls"),
    (_bandit(step="int_div"), "1 // N[a] is integer division, 0 once N[a] > 1: the step is 1 / N[a]"),
    (_bandit(step="one"), "you replaced Q[a] by the last reward: move it a step towards r (1 / N[a], or alpha)"),
    (_bandit(move="all_arms"), "update only the pulled arm, Q[a], not every arm"),
    (_bandit(move="precedence"), "mind the brackets: Q[a] += step * (r - Q[a]); you computed "
     "Q[a] + step * r - Q[a], which is step * r"),
    (_bandit(move="negative"), "you moved Q[a] away from the reward: Q[a] += step * (r - Q[a])"),
    (_bandit(move="no_minus"), "the step is step * (r - Q[a]): you added step * r without subtracting Q[a]"),
]


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
    call = ("bandit_update(Q, N, a, r)" if alpha is None else f"bandit_update(Q, N, a, r, alpha={alpha})") \
        if omit_alpha else f"bandit_update(Q, N, a, r, {alpha})"

    def run(fn):
        try:
            Q, N = _replay_bandit(fn, k, stream, alpha, omit_alpha)
        except TypeError as exc:
            if omit_alpha and "alpha" in str(exc):
                return (f"the call {call} raised TypeError ({exc}): the signature is "
                        "bandit_update(Q, N, a, r, alpha=None); callers leave alpha out for sample averages and "
                        "name it otherwise")
            raise
        expected_Q, expected_N = _replay_bandit(ref_bandits.bandit_update, k, stream, alpha)
        buggy = [(_replay_bandit(bug, k, stream, alpha), hint) for bug, hint in _BANDIT_BUGS]
        problem = compare_arrays(N, expected_N, atol=0, what="the counts N",
                                 diagnoses=[(b[1], hint) for b, hint in buggy])
        if problem:
            return problem
        return compare_arrays(Q, expected_Q, atol=_float32_tolerance(expected_Q), what="Q",
                              diagnoses=[(b[0], hint) for b, hint in buggy if np.array_equal(b[1], expected_N)])

    return Case(name, run, inputs={"Q, N (before)": f"np.zeros({k}), np.zeros({k}, dtype=int)",
                                   "the calls' (a, r)": stream, "alpha": alpha, "called as": call},
                size=2 * len(stream))


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

def check_sarsa_update(fn, hidden: bool = False) -> Score:
    """Check ``sarsa_update(Q, s, a, r, s_next, a_next, terminated, alpha, gamma) -> None`` (in place)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            S, A = int(rng.integers(3, 9)), int(rng.integers(2, 5))
            stream = _transitions(rng, S, A, int(rng.integers(10, 60)))
            gamma = 1.0 if i == 1 else float(rng.uniform(0.5, 0.99))
            cases.append(_tabular_case(f"random stream #{i + 1} ({S} states, {A} actions, gamma = {gamma:.3g})",
                                       rng.normal(size=(S, A)), _numpy_scalars(stream) if i == 2 else stream,
                                       float(rng.uniform(0.05, 0.9)), gamma, sarsa=True))
        return _scored("sarsa_update", fn, cases)
    rng = np.random.default_rng(12)
    Q0 = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    cases = [
        _tabular_case("one update with a' = 1, a non-greedy next action", Q0, [(0, 0, 1.0, 1, 1, False)], 0.5, 0.9,
                      sarsa=True),
        _tabular_case("one update into a terminal state", Q0, [(2, 1, -5.0, 0, 1, True)], 0.1, 0.9, sarsa=True),
        _tabular_case("40 random transitions, some terminal", rng.normal(size=(5, 3)), _transitions(rng, 5, 3, 40),
                      0.2, 0.95, sarsa=True),
        _tabular_case("20 random transitions given as NumPy scalars (numpy.int64 states, numpy.bool_ flags)",
                      rng.normal(size=(4, 3)), _numpy_scalars(_transitions(rng, 4, 3, 20)), 0.3, 0.9, sarsa=True),
        _tabular_case("15 random transitions, gamma = 1 (undiscounted, as on the cliff)", rng.normal(size=(4, 2)),
                      _transitions(rng, 4, 2, 15), 0.5, 1.0, sarsa=True),
    ]
    return _scored("sarsa_update", fn, cases)


# ------------------------------------------------------------------------------------- semi-gradient linear update

def _linear(*, terminal="reward", next_value="max", gamma_on=True, gradient="features", step="alpha",
            returns="delta"):
    """semi_gradient_q_update with one of its parts changed.

    terminal: "reward" (correct), "bootstrap" (ignores the flag), "zero" (target 0). next_value: "max" (correct:
    max_a' w . f(s', a')), "feature_max" (max of the features, then the dot product), "mean", "sum", "same"
    (w . f(s, a) itself). gradient: "features" (correct), "full" (f(s, a) - gamma f(s', a*)), "full_tied" (the
    same with the mean of f(s', a*) over tied maximisers a*, as autograd gives), "next" (f(s', a*)). step: "alpha"
    (correct), "per_feature" (alpha divided by f . f), "per_tile" (by sum(f), at least 1; both are the number of
    active features when f is binary), "none"
    (w += delta f), "scalar" (w += alpha delta, without f), "negative", "copy" (w unchanged). returns: "delta"
    (correct), "alpha_delta", "negative", "target", "after" (the TD error recomputed with the updated w).
    """

    def value_next(w, features, next_features):
        q_next = next_features @ w
        return {"max": lambda: np.max(q_next), "mean": lambda: np.mean(q_next), "sum": lambda: np.sum(q_next),
                "feature_max": lambda: np.max(next_features, axis=0) @ w,
                "same": lambda: features @ w}[next_value]()

    def td_error(w, features, next_features, r, terminated, gamma):
        ends = bool(terminated) and terminal != "bootstrap"
        target = (0.0 if terminal == "zero" else r) if ends else \
            r + (gamma if gamma_on else 1.0) * value_next(w, features, next_features)
        return target, target - features @ w, ends

    def update(w, features, next_features, r, terminated, alpha, gamma):
        target, delta, ends = td_error(w, features, next_features, r, terminated, gamma)
        q_next = next_features @ w
        best = next_features[int(np.argmax(q_next))]
        tied = next_features[q_next == q_next.max()].mean(axis=0)  # autograd shares the max's gradient among ties
        direction = {"features": features, "full": features if ends else features - gamma * best,
                     "full_tied": features if ends else features - gamma * tied,
                     "next": features if ends else best}[gradient]
        if step == "alpha":
            w += alpha * delta * direction
        elif step == "per_feature":
            w += alpha / max(features @ features, 1e-12) * delta * direction
        elif step == "per_tile":
            w += alpha / max(np.sum(features), 1.0) * delta * direction
        elif step == "none":
            w += delta * direction
        elif step == "scalar":
            w += alpha * delta
        elif step == "negative":
            w -= alpha * delta * direction
        if returns == "after":
            return float(td_error(w, features, next_features, r, terminated, gamma)[1])
        return float({"delta": delta, "alpha_delta": alpha * delta, "negative": -delta, "target": target}[returns])

    return update


_HINT_FULL_GRADIENT = ("you also differentiated the target: a semi-gradient update treats "
                       "r + gamma max_a' w . f(s', a') as a constant, so the step is alpha * delta * f(s, a)")
_HINT_SPLIT_ALPHA = ("the step is alpha * delta * f(s, a) with alpha as given: do not divide it by the number of "
                     "active features or by |f(s, a)|^2 (the caller chooses alpha, e.g. 0.5 / n_tilings)")
_LINEAR_BUGS = [
    (_linear(terminal="bootstrap"), _HINT_TERMINAL),
    (_linear(terminal="zero"), _HINT_TERMINAL_ZERO),
    (_linear(gradient="full"), _HINT_FULL_GRADIENT),
    (_linear(gradient="full_tied"), _HINT_FULL_GRADIENT),
    (_linear(gradient="next"), "step along f(s, a), the features of the pair being updated, not along those of "
     "the next state"),
    (_linear(next_value="feature_max"), "the next value is the max over actions of the values next_features @ w "
     "(one per action), not the dot product of w with the feature-wise max of next_features"),
    (_linear(next_value="mean"), "Q-learning's target uses the largest next value, max(next_features @ w), not "
     "their mean"),
    (_linear(next_value="sum"), "Q-learning's target uses the largest next value, max(next_features @ w), not "
     "their sum"),
    (_linear(next_value="same"), "bootstrap from the next state's values, max(next_features @ w), not from the "
     "current estimate w . f(s, a)"),
    (_linear(gamma_on=False), _HINT_NO_GAMMA),
    (_linear(step="none"), "scale the step by alpha: w += alpha * delta * f(s, a)"),
    (_linear(step="scalar"), "step along the features, w += alpha * delta * f(s, a): adding alpha * delta to "
     "every weight changes the values of all pairs alike"),
    (_linear(step="per_feature"), _HINT_SPLIT_ALPHA),
    (_linear(step="per_tile"), _HINT_SPLIT_ALPHA),
    (_linear(step="negative"), "you moved w the wrong way: w += alpha * delta * f(s, a), with delta = target - "
     "estimate"),
    (_linear(step="copy"), "w is unchanged after the calls: update the caller's array in place (w += ...), not a "
     "copy or a new array"),
]

_DELTA_BUGS = [
    (_linear(returns="alpha_delta"), "return the TD error delta itself, not alpha * delta"),
    (_linear(returns="negative"), "the TD error is delta = target - w . f(s, a), not its negative"),
    (_linear(returns="target"), "return the TD error delta = target - w . f(s, a), not the target"),
    (_linear(returns="after"), "return the TD error computed before the update; yours was recomputed with the "
     "updated w"),
]


def _replay_linear(update, w0, stream, alpha, gamma):
    w = w0.copy()
    deltas = [update(w, f, f_next, r, terminated, alpha, gamma) for f, f_next, r, terminated in stream]
    return w, deltas


def _linear_stream(rng: np.random.Generator, d: int, n_actions: int, length: int, binary: bool) -> list:
    def features(shape):
        return (rng.random(shape) < 0.3).astype(float) if binary else rng.normal(size=shape)

    return [(features(d), features((n_actions, d)), float(np.round(rng.normal(), 3)), bool(rng.random() < 0.2))
            for _ in range(length)]


def _linear_inputs(w0, stream, alpha, gamma) -> dict:
    if len(stream) == 1:
        f, f_next, r, terminated = stream[0]
        return {"w": w0, "features": f, "next_features": f_next, "r": r, "terminated": terminated, "alpha": alpha,
                "gamma": gamma}
    return {"w (before the calls)": w0, "calls": f"{len(stream)} transitions (features, next_features, r, "
            f"terminated), {sum(t[3] for t in stream)} of them terminal", "alpha": alpha, "gamma": gamma}


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
        buggy = [(_replay_linear(bug, w0, stream, alpha, gamma)[0], hint) for bug, hint in _LINEAR_BUGS]
        problem = compare_arrays(w, expected_w, atol=_float32_tolerance(expected_w),
                                 what=f"w after {len(stream)} update{'s' if len(stream) > 1 else ''}",
                                 diagnoses=buggy)
        if problem:
            return problem
        if any(d is None for d in deltas):
            return "w is right, but the function returned None: return the TD error delta as a float"
        return compare_arrays(deltas, expected_deltas, atol=_float32_tolerance(expected_deltas),
                              what="the TD errors returned",
                              diagnoses=[(_replay_linear(bug, w0, stream, alpha, gamma)[1], hint)
                                         for bug, hint in _DELTA_BUGS])

    d = w0.size
    return Case(name, run, inputs=_linear_inputs(w0, stream, alpha, gamma), size=len(stream) * d)


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
        _linear_case("20 updates with gamma = 1 (as on the mountain car)", rng.normal(size=5),
                     _linear_stream(rng, 5, 3, 20, False), 0.05, 1.0),
    ]
    return _scored("semi_gradient_q_update", fn, cases)


# -------------------------------------------------------------------------------------------------------- DQN loss

def _dqn_variant(*, prediction="gather", next_value="max", terminal="mask", gamma_on=True, loss="huber",
                 reduction="mean", sign=1.0):
    """dqn_loss with one of its parts changed.

    prediction: "gather" (correct: Q(s, a) of the action taken), "max" (max over actions), "unsqueezed" ((B, 1)
    against (B,) targets), "matrix" (q[:, actions], a (B, B) matrix), "next" (Q(s', a) of the next states),
    "first_row" (gather with actions.unsqueeze(0): every value from the first state).
    next_value: "max" (correct: max_a' of target_network), "online" (of q_network), "double" (double DQN),
    "batch_max" (one max over the whole batch), "mean" (over actions), "argmax" (the index), "current" (of the
    states, not the next states). terminal: "mask" (correct), "ignore", "inverted" (times terminated), "zero" (the
    whole target times (1 - terminated)). loss: "huber" (correct), "mse", "half_mse", "l1". reduction: "mean"
    (correct) or "sum". sign: 1 (correct) or -1.
    """

    def loss_fn(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
        values = q_network(states)
        q = {"gather": lambda: values.gather(1, actions.unsqueeze(1)).squeeze(1),
             "max": lambda: values.max(dim=1).values,
             "unsqueezed": lambda: values.gather(1, actions.unsqueeze(1)),
             "matrix": lambda: values[:, actions],
             "next": lambda: q_network(next_states).gather(1, actions.unsqueeze(1)).squeeze(1),
             "first_row": lambda: values.gather(1, actions.unsqueeze(0)).squeeze(0)}[prediction]()
        with torch.no_grad():
            following = target_network(next_states)
            future = {"max": lambda: following.max(dim=1).values,
                      "online": lambda: q_network(next_states).max(dim=1).values,
                      "double": lambda: following.gather(1, q_network(next_states).argmax(dim=1, keepdim=True))
                      .squeeze(1),
                      "batch_max": lambda: following.max(),
                      "mean": lambda: following.mean(dim=1),
                      "argmax": lambda: following.argmax(dim=1).float(),
                      "current": lambda: target_network(states).max(dim=1).values}[next_value]()
            discount = gamma if gamma_on else 1.0
            target = {"mask": lambda: rewards + discount * (1.0 - terminated) * future,
                      "ignore": lambda: rewards + discount * future,
                      "inverted": lambda: rewards + discount * terminated * future,
                      "zero": lambda: (1.0 - terminated) * (rewards + discount * future)}[terminal]()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about broadcasting (B, 1) against (B,): the check's own
            error = q - target
            if loss == "huber":
                value = torch.nn.functional.smooth_l1_loss(q, target, reduction=reduction)
            elif loss == "mse":
                value = torch.nn.functional.mse_loss(q, target, reduction=reduction)
            elif loss == "half_mse":
                value = 0.5 * (error**2).mean() if reduction == "mean" else 0.5 * (error**2).sum()
            else:
                value = torch.nn.functional.l1_loss(q, target, reduction=reduction)
        return sign * value

    return loss_fn


_HINT_NOT_HUBER = ("use the Huber loss, torch.nn.functional.smooth_l1_loss (quadratic for errors below 1, linear "
                   "above), not the squared error")
_DQN_BUGS = [
    (_dqn_variant(next_value="online"), "the targets come from target_network, not from q_network"),
    (_dqn_variant(next_value="double"), "that is the double DQN target (action chosen by q_network, valued by "
     "target_network); this exercise asks for DQN's max_a' of target_network's values"),
    (_dqn_variant(next_value="batch_max"), "take the max over each next state's actions, .max(dim=1), not one max "
     "over the whole batch"),
    (_dqn_variant(next_value="mean"), "the target uses the largest next value, max_a' (dim=1), not the mean over "
     "actions"),
    (_dqn_variant(next_value="argmax"), "you used the index of the best next action (argmax) as its value: use "
     ".max(dim=1).values"),
    (_dqn_variant(next_value="current"), "bootstrap from the next states, target_network(next_states), not from "
     "the states the actions were taken in"),
    (_dqn_variant(terminal="ignore"), "where terminated is 1 the target is the reward alone: multiply the "
     "bootstrap term by (1 - terminated)"),
    (_dqn_variant(terminal="inverted"), "bootstrap where the episode goes on: multiply by (1 - terminated), not "
     "by terminated"),
    (_dqn_variant(terminal="zero"), "where terminated is 1 the target is the reward r, not 0: multiply only the "
     "bootstrap term by (1 - terminated)"),
    (_dqn_variant(gamma_on=False), "discount the next value: r + gamma * (1 - terminated) * max_a' Q(s', a')"),
    (_dqn_variant(prediction="max"), "the prediction is Q(s, a) of the action taken (gather with actions), not "
     "the max over actions"),
    (_dqn_variant(prediction="unsqueezed"), "the predictions and the targets must both have shape (B,): a (B, 1) "
     "tensor against a (B,) one broadcasts to (B, B) in the loss; squeeze(1) the gathered values (and do not "
     "unsqueeze the targets)"),
    (_dqn_variant(prediction="first_row"), "gather(1, actions.unsqueeze(1)) picks Q(s_i, a_i) row by row; with "
     "actions.unsqueeze(0) every prediction comes from the first state of the batch"),
    (_dqn_variant(prediction="next"), "the prediction is Q(s, a) of the states the actions were taken in: "
     "q_network(states), not q_network(next_states)"),
    (_dqn_variant(prediction="matrix"), "q[:, actions] is a (B, B) matrix: pick one value per row, "
     "q.gather(1, actions.unsqueeze(1)).squeeze(1) or q[torch.arange(B), actions]"),
    (_dqn_variant(loss="mse"), _HINT_NOT_HUBER),
    (_dqn_variant(loss="half_mse"), _HINT_NOT_HUBER),
    (_dqn_variant(loss="l1"), "use the Huber loss, torch.nn.functional.smooth_l1_loss (quadratic for errors below "
     "1, linear above), not the absolute error"),
    (_dqn_variant(reduction="sum"), "average the Huber losses over the batch (the default reduction='mean'), do "
     "not sum them"),
    (_dqn_variant(sign=-1.0), "the loss has the wrong sign: minimise the Huber loss itself, not its negative"),
]
_HINT_NO_GRAD_TARGET = ("compute the targets under torch.no_grad() (or .detach() them): they are constants of the "
                        "regression")
_HINT_DETACHED = ("the loss has the right value but no gradient: Q(s, a) must stay attached to q_network's graph "
                  "(do not detach it or compute it under torch.no_grad(), and do not rebuild the loss with "
                  "torch.tensor or .item())")


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
    """(loss value, the online network's gradient as one vector or None, whether the target network got gradients).

    The gradient is None when the loss is not a scalar tensor or carries no gradient.
    """
    loss = loss_fn(q_network, target_network, *data, gamma)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        return loss, None, False
    if not loss.requires_grad:
        return float(loss.detach()), None, False
    q_network.zero_grad()
    target_network.zero_grad()
    loss.backward()
    grads = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                       for p in q_network.parameters()]).numpy()
    target_grads = any(p.grad is not None and bool(torch.any(p.grad != 0)) for p in target_network.parameters())
    return float(loss.detach()), grads, target_grads


@functools.lru_cache(maxsize=16)
def _dqn_expectations(seed: int, batch: int, state_dim: int, n_actions: int, hidden: int, gamma: float):
    """The reference's outcome (:func:`_dqn_outcome`) on one case, and each known mistake's with its hint.

    They depend only on the case, which is deterministic, so they are computed once per case.
    """

    def outcome(loss_fn):
        q_network, target_network, data = _dqn_setup(seed, batch, state_dim, n_actions, hidden)
        return _dqn_outcome(loss_fn, q_network, target_network, data, gamma)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return outcome(ref_dqn.dqn_loss), tuple((outcome(bug), hint) for bug, hint in _DQN_BUGS)


def _dqn_case(name, seed, batch, state_dim, n_actions, hidden, gamma) -> Case:
    def run(fn):
        q_network, target_network, data = _dqn_setup(seed, batch, state_dim, n_actions, hidden)
        data_before = [d.clone() for d in data]
        loss, grads, target_grads = _dqn_outcome(fn, q_network, target_network, data, gamma)
        if any(not torch.equal(a, b) for a, b in zip(data, data_before)):
            return "the batch tensors were changed: compute the loss without modifying them"
        if not isinstance(loss, float):
            return f"return the loss as a scalar tensor (so that loss.backward() works); got {loss!r}"
        (expected_loss, expected_grads, _), buggy = _dqn_expectations(seed, batch, state_dim, n_actions, hidden,
                                                                      gamma)
        same_loss = compare_arrays(loss, expected_loss, atol=1e-5) is None
        if grads is None:
            return Failure("the loss carries no gradient (its requires_grad is False), so loss.backward() fails",
                           hints=[_HINT_DETACHED] if same_loss else [], expected=expected_loss, got=loss,
                           what="the loss")
        if target_grads:
            same_grads = compare_arrays(grads, expected_grads, atol=1e-5) is None
            return Failure("gradients reached target_network's parameters: the targets must be constants",
                           hints=[_HINT_NO_GRAD_TARGET] if same_loss and same_grads else [],
                           expected=expected_loss, got=loss, what="the loss")
        problem = compare_arrays(loss, expected_loss, atol=1e-5, what="the loss",
                                 diagnoses=[(b[0], hint) for b, hint in buggy])
        if problem:
            return problem
        # the loss is right: only the mistakes that leave it right can explain a wrong gradient
        return compare_arrays(grads, expected_grads, atol=1e-5, what="the gradient of q_network's parameters",
                              diagnoses=[(b[1], hint) for b, hint in buggy if b[1] is not None and
                                         compare_arrays(b[0], expected_loss, atol=1e-5) is None])

    return Case(name, run, size=batch, inputs={
        "q_network, target_network": f"two QNetwork({state_dim}, {n_actions}, hidden={hidden}) with different "
                                     f"weights (torch.manual_seed({seed}))",
        "states, next_states": f"float32 ({batch}, {state_dim})", "actions": f"int64 ({batch},)",
        "rewards, terminated": f"float32 ({batch},)", "gamma": gamma})


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
