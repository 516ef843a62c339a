"""Action selection, Q-learning and SARSA, tabular and with linear function approximation (Chapter 3).

Sutton & Barto (2018): epsilon-greedy action selection (Section 2.2), softmax (Boltzmann) action probabilities
(Section 2.8 and Section 13.1), SARSA (Section 6.4, eq. 6.7), Q-learning (Section 6.5, eq. 6.8), semi-gradient
Q-learning with linear features (the semi-gradient update of Section 9.3 with Q-learning's target, in place of the
episodic semi-gradient SARSA of Section 10.1) and tile coding (Section 9.5.4). Chapter 2 uses the tabular pieces
inside model-based agents and Dyna-Q; Chapter 3 is about them.

Action values are a float array ``Q`` of shape ``(S, A)``; ``Q[s]`` holds the values of state ``s``'s actions.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from .envs.tabular import TabularMDP
from .progress import show_progress

__all__ = [
    "TileCoder",
    "boltzmann_probabilities",
    "epsilon_greedy",
    "epsilon_greedy_rows",
    "greedy_action",
    "linear_q_learning_mountain_car",
    "q_learning",
    "q_learning_update",
    "sarsa_update",
    "semi_gradient_q_update",
    "td_control_runs",
]


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


def epsilon_greedy_rows(q: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """:func:`epsilon_greedy` for many rows of action values at once (many runs of an experiment side by side).

    Draws, in this order: ``rng.random((n, A))`` tie-break keys (the greedy action of a row is the maximiser with
    the largest key, so ties are broken uniformly at random), ``rng.random(n)`` for the exploration coins, and
    ``rng.integers(A, size=n)`` for the random actions.

    Args:
        q: float array ``(n, A)``; row i holds the action values of the i-th run's current state.
        epsilon: exploration probability in ``[0, 1]``, one for all rows or a float array ``(n,)``, one per row.
        rng: the random generator.

    Returns:
        Int array ``(n,)`` of actions.
    """
    n, A = q.shape
    keys = np.where(q == q.max(axis=1, keepdims=True), rng.random((n, A)), -1.0)
    return np.where(rng.random(n) < epsilon, rng.integers(A, size=n), keys.argmax(axis=1))


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


def boltzmann_probabilities(q, temperature: float) -> np.ndarray:
    """Softmax (Boltzmann) action probabilities, pi(a) = exp(q(a) / T) / sum_b exp(q(b) / T) (S&B Section 2.8).

    Computed as ``exp((q - max q) / T)``, normalised: subtracting the largest value changes nothing
    mathematically and keeps every exponent <= 0, so nothing overflows however large ``q / T`` is.

    Args:
        q: float array ``(A,)`` of action values.
        temperature: T > 0. Large T gives nearly uniform probabilities; T -> 0 approaches greedy choice
            (ties share the probability).

    Returns:
        Float array ``(A,)`` of probabilities summing to 1.

    Raises:
        ValueError: if ``temperature`` is not positive or ``q`` is empty or not finite.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 1 or q.size == 0 or not np.all(np.isfinite(q)):
        raise ValueError(f"q must be a non-empty 1-d array of finite values; got {q!r}")
    weights = np.exp((q - q.max()) / temperature)
    return weights / weights.sum()


def sarsa_update(Q: np.ndarray, s: int, a: int, r: float, s_next: int, a_next: int, terminated: bool,
                 alpha: float, gamma: float) -> None:
    """One SARSA update of ``Q[s, a]``, in place (S&B eq. 6.7).

    Q(s, a) <- Q(s, a) + alpha [r + gamma Q(s', a') - Q(s, a)], where a' is the action the agent will actually
    take in s' (on-policy); when ``s'`` is terminal the target is just ``r``.

    Args:
        Q: float array ``(S, A)``, updated in place.
        s, a, r, s_next: the transition.
        a_next: the action chosen in ``s_next`` (ignored when ``terminated``).
        terminated: True when ``s_next`` is terminal.
        alpha: step size in ``(0, 1]``.
        gamma: discount factor in ``[0, 1]``.
    """
    target = r if terminated else r + gamma * Q[s_next, a_next]
    Q[s, a] += alpha * (target - Q[s, a])


def semi_gradient_q_update(w: np.ndarray, features: np.ndarray, next_features: np.ndarray, r: float,
                           terminated: bool, alpha: float, gamma: float) -> float:
    """One semi-gradient Q-learning update of linear weights ``w``, in place.

    With q(s, a, w) = w . f(s, a): the TD error
    delta = r + gamma max_a' w . f(s', a') - w . f(s, a) (just r - w . f(s, a) when s' is terminal), then
    w <- w + alpha delta f(s, a). "Semi-gradient" (S&B Section 9.3): the target also depends on w, but is
    treated as a constant, so only the gradient of q(s, a, w), which is f(s, a), appears. S&B's control
    algorithm with this update (Section 10.1) is episodic semi-gradient SARSA, whose target is q(s', a', w) of
    the next action taken; this is the same update with Q-learning's target. Off-policy, bootstrapping and
    function approximation together (the "deadly triad", S&B Section 11.3) can make the weights diverge.

    Args:
        w: float array ``(d,)``, the weights, updated in place.
        features: float array ``(d,)``, f(s, a).
        next_features: float array ``(A, d)``, f(s', a') for every action a' (ignored when ``terminated``).
        r: the reward.
        terminated: True when ``s'`` is terminal.
        alpha: step size.
        gamma: discount factor in ``[0, 1]``.

    Returns:
        The TD error delta (a float).

    Raises:
        ValueError: if ``w`` or ``features`` is not ``(d,)`` or ``next_features`` is not ``(A, d)``.
    """
    if w.ndim != 1 or features.shape != w.shape or next_features.ndim != 2 or next_features.shape[1] != w.size:
        raise ValueError(f"w and features must have shape (d,) and next_features (A, d); got {w.shape}, "
                         f"{features.shape} and {next_features.shape}")
    target = r if terminated else r + gamma * np.max(next_features @ w)
    delta = target - features @ w
    w += alpha * delta * features
    return float(delta)


def q_learning(env: gym.Env, n_episodes: int, alpha: float, epsilon: float, gamma: float, rng: np.random.Generator,
               max_steps: int = 10_000, progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tabular Q-learning with epsilon-greedy behaviour (S&B Section 6.5, the boxed algorithm), one run.

    Q starts at 0. Each episode starts with ``env.reset()``; each step chooses ``epsilon_greedy(Q[s])``, acts,
    and applies :func:`q_learning_update`.

    Args:
        env: a Gymnasium environment with ``Discrete`` observation and action spaces.
        n_episodes: number of episodes.
        alpha, epsilon, gamma: step size, exploration probability, discount factor.
        rng: the agent's random generator (the environment keeps its own).
        max_steps: an episode is cut after this many steps.
        progress: show a tqdm bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        ``(Q, history)``: the final float array ``(S, A)`` and ``history``, float array
        ``(n_episodes, S, A)`` of Q after each episode.
    """
    Q = np.zeros((env.observation_space.n, env.action_space.n))
    history = np.zeros((n_episodes, *Q.shape))
    for episode in tqdm(range(n_episodes), desc="Q-learning", disable=not show_progress(progress)):
        s, _ = env.reset()
        for _ in range(max_steps):
            a = epsilon_greedy(Q[s], epsilon, rng)
            s_next, r, terminated, truncated, _ = env.step(a)
            q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
            s = s_next
            if terminated or truncated:
                break
        history[episode] = Q
    return Q, history


def td_control_runs(mdp: TabularMDP, method: str, n_runs: int = 50, n_episodes: int = 500, alpha: float = 0.5,
                    epsilon: float | Callable[[np.ndarray], np.ndarray] = 0.1, gamma: float | None = None,
                    seed: int = 0, max_steps: int = 100_000,
                    progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n_runs`` independent runs of epsilon-greedy Q-learning or SARSA, computed together (S&B Example 6.6).

    Each run starts with Q = 0 and follows S&B's boxes: Q-learning (Section 6.5) chooses each action from the
    current Q, then updates towards r + gamma max_a' Q(s', a'); SARSA (Section 6.4) chooses a' in s' first and
    updates towards r + gamma Q(s', a'). Ties among greedy actions are broken at random. The runs are held in
    arrays of shape ``(n_runs, ...)``; next states are sampled from ``mdp.P``, rewards are ``mdp.R``.

    Args:
        mdp: the environment; episodes start from ``mdp.initial`` and end at a terminal state.
        method: ``"q-learning"`` or ``"sarsa"``.
        n_runs, n_episodes: how many runs, and episodes in each.
        alpha: step size.
        epsilon: the exploration probability, or a per-state schedule: a function of the int array of visit
            counts n(s) = 1, 2, ... (how often each run has been in its current state, this visit included)
            returning the probabilities, e.g. ``lambda n: 0.5 / n``. With c / n(s), 0 < c < 1, epsilon-greedy is
            greedy in the limit with infinite exploration (GLIE; Singh et al. 2000): every action keeps being
            tried in every state visited again and again. A schedule of the global step t, such as 1 / t, can
            stop exploring a rarely visited state, whose epsilon falls between its visits.
        gamma: discount factor (default ``mdp.gamma``).
        seed: seed of the random generator.
        max_steps: an episode is cut after this many steps.
        progress: show a tqdm bar counting finished episodes (default: :func:`~solutions.progress.show_progress`).

    Returns:
        ``(returns, Q)``: float array ``(n_runs, n_episodes)`` of the sum of rewards of each episode, and the
        final values, float array ``(n_runs, S, A)``.

    Raises:
        ValueError: for an unknown ``method``, or an exploration probability outside ``[0, 1]``.
    """
    if method not in ("q-learning", "sarsa"):
        raise ValueError(f"method must be 'q-learning' or 'sarsa'; got {method!r}")
    if not callable(epsilon) and not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, 1]; got {epsilon}")
    gamma = mdp.gamma if gamma is None else gamma
    rng = np.random.default_rng(seed)
    S, A = mdp.n_states, mdp.n_actions
    cumulative = np.cumsum(mdp.P, axis=2)
    Q = np.zeros((n_runs, S, A))
    returns = np.zeros((n_runs, n_episodes))
    steps = np.zeros(n_runs, dtype=np.int64)
    episode = np.zeros(n_runs, dtype=np.int64)
    visits = np.zeros((n_runs, S), dtype=np.int64)  # n(s) of each run, counted on arrival in s

    def choose(runs, states):
        if not callable(epsilon):
            return epsilon_greedy_rows(Q[runs, states], epsilon, rng)
        eps = np.broadcast_to(np.asarray(epsilon(visits[runs, states]), dtype=np.float64), runs.shape)
        if not np.all((eps >= 0.0) & (eps <= 1.0)):
            raise ValueError(f"the epsilon schedule must return probabilities in [0, 1]; got {eps.min()} to "
                             f"{eps.max()}")
        return epsilon_greedy_rows(Q[runs, states], eps, rng)

    all_runs = np.arange(n_runs)
    s = rng.choice(S, size=n_runs, p=mdp.initial)
    visits[all_runs, s] += 1
    a = choose(all_runs, s)
    bar = tqdm(total=n_runs * n_episodes, desc=method, disable=not show_progress(progress), leave=False)
    while True:
        runs = np.flatnonzero(episode < n_episodes)
        if runs.size == 0:
            bar.close()
            return returns, Q
        state = s[runs]
        action = a[runs] if method == "sarsa" else choose(runs, state)
        s_next = (rng.random(runs.size)[:, None] < cumulative[state, action]).argmax(axis=1)
        r = mdp.R[state, action]
        done = mdp.terminal[s_next]
        visits[runs, s_next] += 1
        a_next = choose(runs, s_next)
        if method == "sarsa":
            bootstrap = Q[runs, s_next, a_next]
        else:
            bootstrap = Q[runs, s_next].max(axis=1)
        target = r + np.where(done, 0.0, gamma * bootstrap)
        Q[runs, state, action] += alpha * (target - Q[runs, state, action])
        returns[runs, episode[runs]] += r
        steps[runs] += 1
        s[runs], a[runs] = s_next, a_next
        ended = runs[done | (steps[runs] >= max_steps)]
        episode[ended] += 1
        steps[ended] = 0
        bar.update(ended.size)
        if ended.size:
            s[ended] = rng.choice(S, size=ended.size, p=mdp.initial)
            visits[ended, s[ended]] += 1
            a[ended] = choose(ended, s[ended])


class TileCoder:
    """Tile coding of a box-shaped continuous state space (S&B Section 9.5.4).

    ``n_tilings`` grids of ``n_tiles`` x ... x ``n_tiles`` tiles cover the box; each grid is shifted by a
    different fraction of a tile width, tiling ``i`` by ``i / n_tilings`` times the displacement vector
    (1, 3, 5, ...) (S&B's asymmetric offsets), and has one extra tile per dimension to cover the shift. A
    state activates exactly one tile in each tiling.

    Args:
        low, high: float arrays ``(k,)``, the corners of the box.
        n_tilings: number of tilings (a power of two >= 4k works well).
        n_tiles: tiles per dimension in each tiling.

    Attributes:
        n_features: total number of tiles, ``n_tilings * (n_tiles + 1) ** k``.
    """

    def __init__(self, low, high, n_tilings: int = 8, n_tiles: int = 8):
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if self.low.shape != self.high.shape or self.low.ndim != 1 or not np.all(self.high > self.low):
            raise ValueError("low and high must be 1-d arrays of the same length with high > low")
        if n_tilings < 1 or n_tiles < 1:
            raise ValueError("n_tilings and n_tiles must be >= 1")
        self.n_tilings, self.n_tiles = n_tilings, n_tiles
        k = self.low.size
        self._side = n_tiles + 1
        self.n_features = n_tilings * self._side ** k
        displacement = 2 * np.arange(k) + 1  # (1, 3, 5, ...)
        self._offsets = (np.arange(n_tilings)[:, None] * displacement[None, :] / n_tilings) % 1.0  # in tiles
        self._strides = self._side ** np.arange(k)

    def active_tiles(self, state) -> np.ndarray:
        """Int array ``(n_tilings,)``: the index of the tile that ``state`` (shape ``(k,)``) activates in each
        tiling. States outside the box are clipped to it."""
        scaled = (np.clip(state, self.low, self.high) - self.low) / (self.high - self.low) * self.n_tiles
        cells = np.floor(scaled[None, :] + self._offsets).astype(np.int64)  # (n_tilings, k)
        return np.arange(self.n_tilings) * self._side ** self.low.size + cells @ self._strides

    def features(self, state) -> np.ndarray:
        """Binary float array ``(n_features,)`` with ones at :meth:`active_tiles`."""
        x = np.zeros(self.n_features)
        x[self.active_tiles(state)] = 1.0
        return x


def _action_features(x: np.ndarray, n_actions: int) -> np.ndarray:
    """f(s, a) for every a, as float array ``(A, A * d)``: the state features x(s) placed in block a."""
    d = x.size
    f = np.zeros((n_actions, n_actions * d))
    for a in range(n_actions):
        f[a, a * d:(a + 1) * d] = x
    return f


def linear_q_learning_mountain_car(n_episodes: int, seed: int, alpha: float = 0.5 / 8, epsilon: float = 0.0,
                                   gamma: float = 1.0, n_tilings: int = 8, n_tiles: int = 8,
                                   max_steps: int = 5_000, progress: bool | None = None):
    """Semi-gradient Q-learning with tile coding on Gymnasium's MountainCar (S&B Example 10.1).

    q(s, a, w) = w . f(s, a), where f(s, a) puts the tile-coding features of s (position, velocity;
    :class:`TileCoder`) in the block of action a; every step applies :func:`semi_gradient_q_update`. With
    w = 0 and rewards of -1 per step, the initial values are optimistic, so even greedy behaviour
    (epsilon = 0, as in the book's example) explores. S&B's Example 10.1 runs semi-gradient SARSA; with
    epsilon = 0 the behaviour is greedy, so Q-learning's target max_a' q(s', a', w) is the value of the action
    the agent prefers in s' when the target is formed, and the two differ only in when the next action is chosen
    (here after the update, in SARSA before it).

    Args:
        n_episodes: number of episodes.
        seed: seeds the environment and the agent's generator.
        alpha: step size (S&B use 0.5 / n_tilings).
        epsilon: exploration probability of the epsilon-greedy behaviour.
        gamma: discount factor.
        n_tilings, n_tiles: the tile coder's tilings and tiles per dimension.
        max_steps: an episode is cut (truncated) after this many steps.
        progress: show a tqdm bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        ``(steps, w, coder)``: int array ``(n_episodes,)`` of steps per episode, the weights ``(3 * d,)``
        and the :class:`TileCoder` (to evaluate q(s, a, w) afterwards).
    """
    env = gym.make("MountainCar-v0", max_episode_steps=max_steps)
    rng = np.random.default_rng(seed)
    coder = TileCoder(env.observation_space.low, env.observation_space.high, n_tilings, n_tiles)
    n_actions = int(env.action_space.n)
    w = np.zeros(n_actions * coder.n_features)
    steps = np.zeros(n_episodes, dtype=np.int64)
    env.reset(seed=seed)  # seeds the environment's generator; each episode below starts with a fresh reset
    for episode in tqdm(range(n_episodes), desc=f"MountainCar seed {seed}", disable=not show_progress(progress)):
        state, _ = env.reset()
        f_all = _action_features(coder.features(state), n_actions)
        for step in range(1, max_steps + 1):
            a = epsilon_greedy(f_all @ w, epsilon, rng)
            state, r, terminated, truncated, _ = env.step(a)
            f_next = _action_features(coder.features(state), n_actions)
            semi_gradient_q_update(w, f_all[a], f_next, r, terminated, alpha, gamma)
            f_all = f_next
            if terminated or truncated:
                break
        steps[episode] = step
    env.close()
    return steps, w, coder
