"""Action selection and the Q-learning update for tabular action values.

Sutton & Barto (2018): epsilon-greedy action selection (Section 2.2) and Q-learning (Section 6.5, eq. 6.8).
Chapter 2 uses them inside model-based agents and Dyna-Q; Chapter 3 is about them.

Action values are a float array ``Q`` of shape ``(S, A)``; ``Q[s]`` holds the values of state ``s``'s actions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["epsilon_greedy", "greedy_action", "q_learning_update"]


def greedy_action(q, rng: np.random.Generator) -> int:
    """An action of largest value in ``q`` (shape ``(A,)``), ties broken uniformly at random with ``rng``.

    Breaking ties at random matters when many values are equal (all zero at the start): always taking the
    first maximiser would make an agent with zero-initialised values walk in a fixed direction.
    """
    q = np.asarray(q, dtype=np.float64)
    best = np.flatnonzero(q == q.max())
    return int(best[0]) if len(best) == 1 else int(best[rng.integers(len(best))])


def epsilon_greedy(q, epsilon: float, rng: np.random.Generator) -> int:
    """Sample an action epsilon-greedily from the action values ``q`` (S&B Section 2.2).

    With probability ``epsilon`` a uniformly random action, otherwise :func:`greedy_action`. The random draws
    come from ``rng`` in this order: one ``rng.random()``; then ``rng.integers(A)`` when exploring, or the
    tie-break of :func:`greedy_action` when exploiting.

    Args:
        q: float array ``(A,)``, the values of one state's actions.
        epsilon: exploration probability in ``[0, 1]``.
        rng: the random generator.

    Returns:
        The action, an int in ``0 .. A-1``.

    Raises:
        ValueError: if ``epsilon`` is outside ``[0, 1]`` or ``q`` is empty.
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1]; got {epsilon}")
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"q must be a non-empty 1-d array of action values; got shape {q.shape}")
    if rng.random() < epsilon:
        return int(rng.integers(q.size))
    return greedy_action(q, rng)


def q_learning_update(Q: np.ndarray, s: int, a: int, r: float, s_next: int, terminated: bool,
                      alpha: float, gamma: float) -> None:
    """One Q-learning update of ``Q[s, a]``, in place (S&B eq. 6.8).

    Q(s, a) <- Q(s, a) + alpha [r + gamma max_a' Q(s', a') - Q(s, a)]; when ``s'`` is terminal the target is
    just ``r`` (a terminal state has value 0, whatever ``Q`` holds for it).

    Args:
        Q: float array ``(S, A)``, updated in place.
        s, a: the state and action of the transition.
        r: the reward received.
        s_next: the next state.
        terminated: True when ``s_next`` is terminal.
        alpha: step size in ``(0, 1]``.
        gamma: discount factor in ``[0, 1]``.
    """
    target = r if terminated else r + gamma * np.max(Q[s_next])
    Q[s, a] += alpha * (target - Q[s, a])
