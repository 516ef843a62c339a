"""Multi-armed bandits: action-value estimates and exploration (Chapter 3; Sutton & Barto 2018, Chapter 2).

* :func:`bandit_update` -- the incremental sample-average (1/n) or constant-step-size update of Q(a)
  (S&B eq. 2.3 and 2.5).
* :func:`run_testbed` -- the 10-armed testbed of S&B Section 2.3 (q*(a) ~ N(0, 1), rewards ~ N(q*(a), 1)),
  many independent runs held in arrays of shape ``(n_runs, k)`` and stepped together, with epsilon-greedy,
  softmax (Boltzmann) or UCB action selection (S&B Sections 2.2, 2.7, 2.8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from .progress import show_progress
from .q_learning import epsilon_greedy_rows

__all__ = ["TestbedResult", "bandit_update", "run_testbed"]


def bandit_update(Q: np.ndarray, N: np.ndarray, a: int, r: float, alpha: float | None = None) -> None:
    """Update the estimate of action ``a`` after reward ``r``, in place (S&B Section 2.4 and 2.5).

    ``N[a]`` is increased by one, then Q(a) <- Q(a) + step (r - Q(a)) with step = 1 / N(a) (the sample
    average of the rewards seen, eq. 2.3) when ``alpha`` is None, or step = ``alpha`` (a constant step size,
    eq. 2.5, which weights recent rewards more: suited to a changing world).

    Args:
        Q: float array ``(k,)`` of estimates, updated in place.
        N: int array ``(k,)`` of how often each action was taken, updated in place.
        a: the action taken.
        r: the reward received.
        alpha: constant step size in ``(0, 1]``, or None for sample averages.

    Raises:
        ValueError: if ``alpha`` is given and outside ``(0, 1]``.
    """
    if alpha is not None and not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1] or be None; got {alpha}")
    N[a] += 1
    step = 1.0 / N[a] if alpha is None else alpha
    Q[a] += step * (r - Q[a])


@dataclass
class TestbedResult:
    """Averages over the runs of :func:`run_testbed`, one entry per time step, and optionally every run's values
    (for confidence bands: the runs are independent)."""

    __test__ = False  # not a pytest test class, despite the name

    average_reward: np.ndarray  #: float ``(n_steps,)``: the mean reward at each step
    optimal_action: np.ndarray  #: float ``(n_steps,)``: the fraction of runs that took an optimal action
    #: float32 ``(n_runs, n_steps)``: each run's reward at each step (``per_run=True`` only, else None)
    rewards: np.ndarray | None = None
    #: bool ``(n_runs, n_steps)``: whether each run took an optimal action at each step (``per_run=True`` only)
    optimal: np.ndarray | None = None


def run_testbed(n_runs: int = 2000, n_steps: int = 1000, k: int = 10, *, epsilon: float | Callable | None = None,
                temperature: float | None = None, c: float | None = None, alpha: float | None = None,
                initial_value: float = 0.0, seed: int = 0, per_run: bool = False,
                progress: bool | None = None) -> TestbedResult:
    """The k-armed testbed (S&B Section 2.3): ``n_runs`` bandit problems, ``n_steps`` steps each.

    Each run draws its true values q*(a) ~ N(0, 1); a pull of ``a`` pays r ~ N(q*(a), 1). The agent keeps
    estimates Q (starting at ``initial_value``) updated as in :func:`bandit_update`, and chooses by exactly one
    of:

    * ``epsilon``: epsilon-greedy (ties broken at random). A callable ``epsilon(t)`` of the step t = 1, 2, ...
      gives a schedule, e.g. ``lambda t: min(1, 10 / t)``. A bandit has one state, so t is that state's visit
      count n(s), and c / t is the per-state schedule c / n(s) that makes epsilon-greedy greedy in the limit
      with infinite exploration (GLIE; Singh et al. 2000). In an MDP the schedule must count visits per state
      (:func:`solutions.q_learning.td_control_runs`): with a global 1 / t a rarely visited state can stop being
      explored;
    * ``temperature``: softmax (Boltzmann) choice with probabilities proportional to exp(Q(a) / T);
    * ``c``: upper confidence bounds, argmax Q(a) + c sqrt(ln t / N(a)), untried actions first (S&B eq. 2.10).

    Args:
        n_runs, n_steps, k: runs, steps per run, arms.
        epsilon, temperature, c: the action-selection rule (give exactly one).
        alpha: constant step size, or None for sample averages.
        initial_value: the initial estimate of every action (e.g. 5 for optimistic initial values, S&B 2.6).
        seed: seed of the random generator; the true values are drawn first, so runs with the same ``seed`` and
            ``n_runs`` face the same bandit problems whatever the rule.
        per_run: also return every run's rewards and optimal-action indicators (``TestbedResult.rewards`` and
            ``.optimal``), e.g. to draw confidence bands; the draws and averages are the same either way.
        progress: show a tqdm bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`TestbedResult` of per-step averages over the runs (and, with ``per_run``, the runs' values).

    Raises:
        ValueError: if not exactly one rule is given, or a parameter is out of range.
    """
    if sum(x is not None for x in (epsilon, temperature, c)) != 1:
        raise ValueError("give exactly one of epsilon, temperature and c")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    if c is not None and not c >= 0:
        raise ValueError(f"c must be >= 0; got {c}")
    if alpha is not None and not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1] or be None; got {alpha}")
    rng = np.random.default_rng(seed)
    q_star = rng.normal(size=(n_runs, k))
    best = q_star.argmax(axis=1)
    runs = np.arange(n_runs)
    Q = np.full((n_runs, k), float(initial_value))
    N = np.zeros((n_runs, k))
    average_reward = np.zeros(n_steps)
    optimal_action = np.zeros(n_steps)
    rewards = np.zeros((n_runs, n_steps), dtype=np.float32) if per_run else None
    optimal = np.zeros((n_runs, n_steps), dtype=bool) if per_run else None
    for t in tqdm(range(1, n_steps + 1), desc="testbed", disable=not show_progress(progress), leave=False):
        if epsilon is not None:
            eps = epsilon(t) if callable(epsilon) else epsilon
            if not 0.0 <= eps <= 1.0:
                raise ValueError(f"epsilon must lie in [0, 1]; got {eps} at step {t}")
            a = epsilon_greedy_rows(Q, eps, rng)
        elif temperature is not None:
            weights = np.exp((Q - Q.max(axis=1, keepdims=True)) / temperature)
            cumulative = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)
            a = np.minimum((rng.random(n_runs)[:, None] > cumulative).sum(axis=1), k - 1)
        else:
            with np.errstate(divide="ignore"):
                bonus = np.where(N > 0, c * np.sqrt(np.log(t) / np.maximum(N, 1)), np.inf)
            u = Q + bonus
            keys = np.where(u == u.max(axis=1, keepdims=True), rng.random((n_runs, k)), -1.0)
            a = keys.argmax(axis=1)
        r = q_star[runs, a] + rng.normal(size=n_runs)
        N[runs, a] += 1
        step = 1.0 / N[runs, a] if alpha is None else alpha
        Q[runs, a] += step * (r - Q[runs, a])
        average_reward[t - 1] = r.mean()
        optimal_action[t - 1] = np.mean(a == best)
        if per_run:
            rewards[:, t - 1], optimal[:, t - 1] = r, a == best
    return TestbedResult(average_reward, optimal_action, rewards, optimal)
