"""Policy-gradient methods (Chapter 4): the score-function estimator, REINFORCE, baselines, one-step actor-critic.

A policy pi(a | s, theta) with parameters theta is learned directly, by stochastic gradient ascent on the
performance J(theta) = v_pi(S_0) (Sutton & Barto 2018, Chapter 13):

* the linear-softmax policy of S&B eq. 13.2-13.3 and its eligibility vector grad ln pi (eq. 13.9);
* the short corridor with switched actions (S&B Example 13.1), where the best policy is stochastic, with its exact
  value J(p) and REINFORCE (S&B Section 13.3, Williams 1992), REINFORCE with baseline (Section 13.4) and the
  one-step actor-critic (Section 13.5) on it -- S&B Figures 13.1 and 13.2;
* the score-function (log-derivative) estimator of grad E_{x ~ p_theta}[R(x)] against the exact gradient;
* the pieces of the deep-RL version (reward-to-go, the REINFORCE loss, advantages and the value loss) and REINFORCE
  on Gymnasium's CartPole-v1 with three choices of the weights Psi_t of grad ln pi(A_t | S_t): the whole-episode
  return, the reward-to-go, and the reward-to-go minus a learned V(s).

Notation: ``theta`` the policy parameters, ``w`` the value-function weights, ``alpha`` (``alpha_w``) their step
sizes, ``gamma`` the discount, ``G`` a return.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .envs.evaluation import mean_episode_return, training_curve
from .envs.tabular import TabularMDP, TabularMDPEnv
from .progress import show_progress
from .threads import single_threaded

__all__ = [
    "LEFT",
    "RIGHT",
    "SHORT_CORRIDOR_FEATURES",
    "SHORT_CORRIDOR_THETA0",
    "CARTPOLE_VARIANTS",
    "CartPoleRun",
    "PolicyNetwork",
    "ShortCorridorRun",
    "ValueNetwork",
    "actor_critic_runs",
    "advantages_and_value_loss",
    "cartpole_runs",
    "compare_cartpole_variants",
    "evaluate_cartpole_policy",
    "exact_softmax_gradient",
    "grad_log_softmax_policy",
    "one_step_actor_critic_short_corridor",
    "reinforce_cartpole",
    "reinforce_loss",
    "reinforce_short_corridor",
    "reward_to_go",
    "run_generators",
    "score_function_gradient",
    "short_corridor",
    "short_corridor_runs",
    "short_corridor_value",
    "softmax_policy",
]

LEFT, RIGHT = 0, 1

#: x(s, a) for every state s (S&B Example 13.1): row ``a`` is the feature vector of action ``a``,
#: x(s, right) = [1, 0] and x(s, left) = [0, 1]. The agent cannot tell the states apart.
SHORT_CORRIDOR_FEATURES = np.array([[0.0, 1.0],   # left
                                    [1.0, 0.0]])  # right
SHORT_CORRIDOR_FEATURES.flags.writeable = False

#: The initial theta of the short-corridor experiments: pi(right) = 0.05, the action probabilities of an
#: epsilon-greedy policy (epsilon = 0.1) that prefers left, whose value is about -82 (S&B Example 13.1). With the
#: features above theta = [theta_right, theta_left] and pi(right) = 1 / (1 + exp(theta_left - theta_right)),
#: so theta_left - theta_right = ln 19.
SHORT_CORRIDOR_THETA0 = np.array([-0.5 * math.log(19.0), 0.5 * math.log(19.0)])
SHORT_CORRIDOR_THETA0.flags.writeable = False


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1]; got {gamma}")
    return gamma


# ---------------------------------------------------------------------------------------------- short corridor

def short_corridor(gamma: float = 1.0) -> TabularMDP:
    """The short corridor with switched actions (S&B Example 13.1) as a :class:`TabularMDP`.

    Three non-terminal states in a row, 0 (the start, ``initial``), 1 and 2, then the goal 3 (terminal). Actions
    0 = left and 1 = right move one cell that way, except in state 1, where they are reversed (right moves to 0,
    left to 2); left in state 0 bumps into the wall and stays. Every step pays -1, so the return of an episode is
    minus its length.

    Args:
        gamma: discount factor in ``[0, 1]`` (S&B use 1).

    Raises:
        ValueError: if ``gamma`` is outside ``[0, 1]``.
    """
    gamma = _check_gamma(gamma)
    next_state = {0: {LEFT: 0, RIGHT: 1}, 1: {LEFT: 2, RIGHT: 0}, 2: {LEFT: 1, RIGHT: 3}}
    P = np.zeros((4, 2, 4))
    R = np.zeros((4, 2))
    for s, moves in next_state.items():
        for a, s_next in moves.items():
            P[s, a, s_next] = 1.0
            R[s, a] = -1.0
    P[3, :, 3] = 1.0  # the goal is absorbing, with reward 0
    return TabularMDP(P, R, gamma, terminal=[False, False, False, True], initial=[1.0, 0.0, 0.0, 0.0],
                      state_names=["start", "switched", "third", "goal"], action_names=["left", "right"])


def short_corridor_value(p_right: float, gamma: float = 1.0) -> float:
    """J = v_pi(S_0) on the short corridor for the policy that goes right with probability ``p_right`` in every
    state (S&B Example 13.1: the agent cannot tell the states apart, so it has one probability for all of them).

    Solves the Bellman equations of the three non-terminal states (S&B eq. 3.14 written as a linear system),
    v = r_pi + gamma P_pi v with v(goal) = 0, i.e. (I - gamma P_pi) v = r_pi restricted to states 0, 1, 2.
    At gamma = 1 the answer is J(p) = (2p - 4) / (p (1 - p)), largest at p = 2 - sqrt(2) ~ 0.586 where it is
    -(6 + 4 sqrt(2)) ~ -11.66.

    Args:
        p_right: the probability of action right, a float in ``[0, 1]``.
        gamma: discount factor in ``[0, 1]``.

    Returns:
        J as a float. With ``gamma = 1`` and ``p_right`` 0 or 1 the policy never reaches the goal (p = 0 stays in
        state 0 forever, p = 1 goes back and forth between states 0 and 1) and its value is ``-inf``. With
        gamma < 1 those policies have the finite value -1 / (1 - gamma), which is returned.

    Raises:
        ValueError: if ``p_right`` is not a number in ``[0, 1]`` or ``gamma`` is outside ``[0, 1]``.
    """
    p = float(p_right)
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"p_right must be a probability in [0, 1]; got {p_right}")
    gamma = _check_gamma(gamma)
    if gamma == 1.0 and p in (0.0, 1.0):
        return -math.inf
    mdp = short_corridor(gamma)
    P_pi = (1.0 - p) * mdp.P[:, LEFT] + p * mdp.P[:, RIGHT]  # p(s' | s) under pi, shape (4, 4)
    r_pi = (1.0 - p) * mdp.R[:, LEFT] + p * mdp.R[:, RIGHT]  # expected reward in each state, shape (4,)
    live = ~mdp.terminal  # v(goal) = 0, so only the three other states are unknowns
    v = np.linalg.solve(np.eye(3) - gamma * P_pi[np.ix_(live, live)], r_pi[live])
    return float(v[0])


def softmax_policy(theta, x) -> np.ndarray:
    """pi(. | s, theta) for linear action preferences h(s, a, theta) = theta^T x(s, a) (S&B eq. 13.2-13.3).

    pi(a | s, theta) = exp(h(s, a, theta)) / sum_b exp(h(s, b, theta)); the largest preference is subtracted
    before exponentiating (the probabilities do not change, and exp cannot overflow).

    Args:
        theta: float array ``(d,)``, the policy parameters.
        x: float array ``(A, d)``: row ``a`` is the feature vector x(s, a) of action ``a`` in the current state.

    Returns:
        float64 array ``(A,)`` of action probabilities (summing to 1).

    Raises:
        ValueError: if the shapes do not match or a value is not finite.
    """
    theta, x = _check_theta_x(theta, x)
    h = x @ theta
    h = h - h.max()
    e = np.exp(h)
    return e / e.sum()


def grad_log_softmax_policy(theta, x, a: int) -> np.ndarray:
    """The eligibility vector grad_theta ln pi(a | s, theta) of the linear-softmax policy (S&B eq. 13.9):

        x(s, a) - sum_b pi(b | s, theta) x(s, b).

    Args:
        theta: float array ``(d,)``.
        x: float array ``(A, d)``, the feature vectors x(s, b) of every action b in the state s.
        a: the action taken, an int in ``0 .. A-1``.

    Returns:
        float64 array ``(d,)``.

    Raises:
        ValueError: if the shapes do not match, a value is not finite or ``a`` is not an action.
    """
    theta, x = _check_theta_x(theta, x)
    if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or not 0 <= a < x.shape[0]:
        raise ValueError(f"a must be an int action in [0, {x.shape[0]}); got {a!r}")
    pi = softmax_policy(theta, x)
    return x[a] - pi @ x


def _check_theta_x(theta, x) -> tuple[np.ndarray, np.ndarray]:
    theta = np.asarray(theta, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if theta.ndim != 1 or x.ndim != 2 or x.shape[1] != theta.shape[0] or x.shape[0] == 0:
        raise ValueError(f"theta must have shape (d,) and x shape (A, d); got {theta.shape} and {x.shape}")
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(x))):
        raise ValueError("theta and x must be finite")
    return theta, x


@dataclass
class ShortCorridorRun:
    """One run of a policy-gradient method on the short corridor."""

    returns: np.ndarray  #: float (n_episodes,): the total reward of each episode (minus its length; S&B's G_0)
    p_right: np.ndarray  #: float (n_episodes,): pi(right) at the start of each episode
    theta: np.ndarray  #: float (2,): the final policy parameters
    w: float | np.ndarray | None = None  #: the final value weights (None for plain REINFORCE)


def _check_run_arguments(n_episodes: int, max_steps: int, theta0, **step_sizes: float | None) -> np.ndarray:
    for name, value in step_sizes.items():
        if value is not None and not (math.isfinite(value) and value >= 0.0):
            raise ValueError(f"{name} must be a finite number >= 0; got {value}")
    if n_episodes < 1 or max_steps < 1:
        raise ValueError(f"n_episodes and max_steps must be >= 1; got {n_episodes} and {max_steps}")
    theta0 = np.array(theta0, dtype=np.float64)
    if theta0.shape != (2,) or not np.all(np.isfinite(theta0)):
        raise ValueError(f"theta0 must be a finite float array of shape (2,); got {theta0!r}")
    return theta0


def reinforce_short_corridor(alpha: float, n_episodes: int, rng: np.random.Generator,
                             theta0=SHORT_CORRIDOR_THETA0, alpha_w: float | None = None, gamma: float = 1.0,
                             max_steps: int = 1_000, progress: bool | None = None) -> ShortCorridorRun:
    """REINFORCE on the short corridor (S&B Section 13.3), or REINFORCE with baseline (Section 13.4).

    The policy is the linear softmax over :data:`SHORT_CORRIDOR_FEATURES`, the same in every state. Each episode
    is generated with the current theta; then, for t = 0, 1, ..., T-1 in turn (the book's pseudo-code):

        G <- sum_{k=t+1}^{T} gamma^(k-t-1) R_k
        theta <- theta + alpha gamma^t G grad ln pi(A_t | S_t, theta)

    With ``alpha_w`` given, REINFORCE with baseline: the state-value estimate v(s, w) = w is a single weight (the
    states look alike, as in S&B Figure 13.2), and the two updates use delta = G - w:

        w <- w + alpha_w delta;   theta <- theta + alpha gamma^t delta grad ln pi(A_t | S_t, theta).

    Random draws: one ``rng.random()`` per step, and the action is right when it is below pi(right | S_t);
    nothing else is drawn from ``rng`` (the environment's moves are deterministic). This is the stream that
    :func:`short_corridor_runs` reproduces.

    Figure settings (S&B Figures 13.1, 13.2): gamma = 1; alpha = 2^-12, 2^-13, 2^-14 for REINFORCE; alpha =
    2^-9, alpha_w = 2^-6 with baseline (against REINFORCE at 2^-13). S&B do not print the initial theta; we start
    from :data:`SHORT_CORRIDOR_THETA0`, pi(right) = 0.05 (the epsilon-greedy-left policy of Example 13.1, value
    -82), which matches where their curves start.

    At alpha = 2^-12 a few runs in a hundred are stranded: a long early episode makes many large updates in a row,
    pi(right) goes to almost 1, and the agent then shuttles between the first two states; every later episode is
    cut at ``max_steps`` and the gradient, nearly 0 there, never brings it back (18 of 500 runs of 150 episodes
    with seed 1; 2 of 500 at 2^-13, none at 2^-14). The typical run at 2^-12 still learns fastest.

    Args:
        alpha: the policy step size alpha (alpha^theta with a baseline), >= 0.
        n_episodes: the number of episodes.
        rng: the random generator of this run.
        theta0: float ``(2,)``, the initial theta (copied).
        alpha_w: the baseline's step size; None for REINFORCE without baseline.
        gamma: discount factor in ``[0, 1]``.
        max_steps: an episode is cut after this many steps (and learned from as if it had ended; S&B have no
            cut). With the default 1,000 a cut is rare at the book's settings.
        progress: show a tqdm bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`ShortCorridorRun`; ``w`` is the final baseline weight (a float) or None.

    Raises:
        ValueError: for a negative or non-finite step size, ``n_episodes`` or ``max_steps`` below 1, ``theta0``
            not of shape ``(2,)``, or ``gamma`` outside ``[0, 1]``.
    """
    theta = _check_run_arguments(n_episodes, max_steps, theta0, alpha=alpha, alpha_w=alpha_w)
    env = TabularMDPEnv(short_corridor(gamma))
    x = SHORT_CORRIDOR_FEATURES  # x(s, .) is the same in every state s
    env.reset(seed=0)  # the corridor always starts in state 0 and its moves are deterministic: no draws
    w = 0.0
    returns, p_right = np.zeros(n_episodes), np.zeros(n_episodes)
    for episode in tqdm(range(n_episodes), desc="REINFORCE", disable=not show_progress(progress), leave=False):
        # Generate an episode S_0, A_0, R_1, ..., S_{T-1}, A_{T-1}, R_T following pi(. | ., theta).
        s, _ = env.reset()
        p_right[episode] = softmax_policy(theta, x)[RIGHT]
        actions, rewards = [], []
        terminated = False
        while not terminated and len(actions) < max_steps:
            pi = softmax_policy(theta, x)
            a = int(rng.random() < pi[RIGHT])
            s, r, terminated, _, _ = env.step(a)
            actions.append(a)
            rewards.append(r)
        T = len(actions)
        # G_t for every t (the sum written in the docstring, computed backwards: G_t = R_{t+1} + gamma G_{t+1}).
        episode_ends = np.zeros(T, dtype=bool)
        episode_ends[-1] = True
        G = reward_to_go(np.array(rewards), gamma, episode_ends)
        for t in range(T):
            if alpha_w is None:
                theta = theta + alpha * gamma**t * G[t] * grad_log_softmax_policy(theta, x, actions[t])
            else:
                delta = G[t] - w
                w = w + alpha_w * delta
                theta = theta + alpha * gamma**t * delta * grad_log_softmax_policy(theta, x, actions[t])
        returns[episode] = sum(rewards)
    return ShortCorridorRun(returns, p_right, theta, None if alpha_w is None else w)


def one_step_actor_critic_short_corridor(alpha_theta: float, alpha_w: float, n_episodes: int,
                                         rng: np.random.Generator, theta0=SHORT_CORRIDOR_THETA0,
                                         gamma: float = 1.0, max_steps: int = 1_000,
                                         progress: bool | None = None) -> ShortCorridorRun:
    """One-step actor-critic on the short corridor (S&B Section 13.5, episodic pseudo-code).

    The actor is the linear-softmax policy over :data:`SHORT_CORRIDOR_FEATURES`, which cannot tell the states
    apart. The critic is tabular, v(s, w) = w[s] with v(goal) = 0: the critic *does* see the state (only the
    policy's features hide it), so its TD error can tell the switched state from the others. At every step:

        delta <- R + gamma v(S', w) - v(S, w)
        w[S] <- w[S] + alpha_w delta
        theta <- theta + alpha_theta I delta grad ln pi(A | S, theta)
        I <- gamma I

    with I = 1 at the start of each episode. Random draws: one ``rng.random()`` per step (right when below
    pi(right | S)), the stream :func:`actor_critic_runs` reproduces.

    Args:
        alpha_theta, alpha_w: the actor's and the critic's step sizes, >= 0.
        n_episodes: the number of episodes.
        rng: the random generator of this run.
        theta0: float ``(2,)``, the initial theta (default: pi(right) = 0.05, as for REINFORCE).
        gamma: discount factor in ``[0, 1]``.
        max_steps: an episode is cut after this many steps (the last update bootstraps from v(S') as usual).
        progress: show a tqdm bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`ShortCorridorRun`; ``w`` is the final critic, float ``(4,)`` (``w[3] = 0``: the goal).

    Raises:
        ValueError: as :func:`reinforce_short_corridor`.
    """
    theta = _check_run_arguments(n_episodes, max_steps, theta0, alpha_theta=alpha_theta, alpha_w=alpha_w)
    env = TabularMDPEnv(short_corridor(gamma))
    x = SHORT_CORRIDOR_FEATURES
    w = np.zeros(env.mdp.n_states)
    env.reset(seed=0)  # no draws: the corridor's start and moves are deterministic
    returns, p_right = np.zeros(n_episodes), np.zeros(n_episodes)
    for episode in tqdm(range(n_episodes), desc="actor-critic", disable=not show_progress(progress),
                        leave=False):
        s, _ = env.reset()
        p_right[episode] = softmax_policy(theta, x)[RIGHT]
        I = 1.0
        for _ in range(max_steps):
            pi = softmax_policy(theta, x)
            a = int(rng.random() < pi[RIGHT])
            s_next, r, terminated, _, _ = env.step(a)
            v_next = 0.0 if terminated else w[s_next]
            delta = r + gamma * v_next - w[s]
            w[s] = w[s] + alpha_w * delta
            theta = theta + alpha_theta * I * delta * grad_log_softmax_policy(theta, x, a)
            I = gamma * I
            returns[episode] += r
            s = s_next
            if terminated:
                break
    return ShortCorridorRun(returns, p_right, theta, w)


# ------------------------------------------------------------------- many short-corridor runs at once (figures)

def run_generators(seed: int, n_runs: int) -> list[np.random.Generator]:
    """The random generators of runs ``0 .. n_runs-1`` of :func:`short_corridor_runs` and
    :func:`actor_critic_runs`: independent streams spawned from ``seed`` (``numpy.random.SeedSequence.spawn``).

    Run ``i`` of ``short_corridor_runs(alpha, n_runs, n_episodes, seed)`` is
    ``reinforce_short_corridor(alpha, n_episodes, run_generators(seed, n_runs)[i])``.
    """
    return [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(n_runs)]


class _UniformStreams:
    """Each run's ``rng.random()`` draws, in order, from rows drawn ahead: ``rng.random(n)`` gives the same numbers
    as n calls of ``rng.random()``, so many runs can look ahead and draw at once. Row ``i`` of ``buffer`` holds run
    ``i``'s next draws from ``position[i]`` on."""

    def __init__(self, generators: list[np.random.Generator], width: int = 1024):
        self.generators = generators
        self.buffer = np.stack([g.random(width) for g in generators])
        self.position = np.zeros(len(generators), dtype=np.int64)

    def _ensure(self, count: int) -> None:
        """Make at least ``count`` draws available in every row."""
        n, width = self.buffer.shape
        if count > width:
            new_width, rows = max(2 * width, count), range(n)
            buffer = np.empty((n, new_width))
        else:
            new_width, rows = width, np.flatnonzero(width - self.position < count)
            buffer = self.buffer
        for i in rows:
            rest = self.buffer[i, self.position[i]:].copy()
            buffer[i, :rest.size] = rest
            buffer[i, rest.size:] = self.generators[i].random(new_width - rest.size)
            self.position[i] = 0
        self.buffer = buffer

    def peek(self, start: int, length: int) -> np.ndarray:
        """Draws ``start .. start+length-1`` ahead of every run, ``(n_runs, length)``, without using them up."""
        self._ensure(start + length)
        columns = self.position[:, None] + np.arange(start, start + length)
        return self.buffer[np.arange(len(self.generators))[:, None], columns]

    def advance(self, counts: np.ndarray) -> None:
        """Use up ``counts[i]`` draws of run ``i``."""
        self.position += counts

    def next(self, runs: np.ndarray) -> np.ndarray:
        """One draw for each run in ``runs`` (int array of distinct runs)."""
        self._ensure(1)
        u = self.buffer[runs, self.position[runs]]
        self.position[runs] += 1
        return u


def _corridor_policy(theta_right: np.ndarray, theta_left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pi(left), pi(right))`` for many runs at once: :func:`softmax_policy` with
    :data:`SHORT_CORRIDOR_FEATURES`, computed with the same floating-point operations (the 0/1 features make
    x @ theta pick theta's entries exactly), so the runs match the readable functions bit for bit."""
    m = np.maximum(theta_left, theta_right)
    e_left, e_right = np.exp(theta_left - m), np.exp(theta_right - m)
    total = e_left + e_right
    return e_left / total, e_right / total


def _corridor_arrays(gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mdp = short_corridor(gamma)
    return mdp.P.argmax(axis=2), mdp.R, mdp.terminal  # next state (deterministic), reward, terminal flags


def _corridor_episodes(p_right: np.ndarray, streams: _UniformStreams, next_state: np.ndarray,
                       terminal: np.ndarray, max_steps: int, block: int = 64):
    """One short-corridor episode in every run, each with its own pi(right) (constant during the episode).

    Step t of run i uses the run's next draw u: right when u < ``p_right[i]``, as in
    :func:`reinforce_short_corridor`. The runs' moves are simulated ``block`` steps at a time for all runs; each
    run then uses up exactly as many draws as its episode has steps.

    Returns:
        ``(states, actions, T)``: int arrays ``(n_runs, horizon)`` of S_t and A_t (meaningful for t < T[i]), and
        the episode lengths ``(n_runs,)``; horizon = max T.
    """
    n_runs = p_right.size
    s = np.zeros(n_runs, dtype=np.int64)
    T = np.full(n_runs, max_steps, dtype=np.int64)
    ended = np.zeros(n_runs, dtype=bool)
    state_blocks, action_blocks = [], []
    start = 0
    while start < max_steps and not ended.all():
        length = min(block, max_steps - start)
        a = (streams.peek(start, length) < p_right[:, None]).astype(np.int64)
        path = np.empty((n_runs, length + 1), dtype=np.int64)  # S_start .. S_{start+length}
        path[:, 0] = s
        for k in range(length):  # the goal is absorbing in next_state, so ended runs stay there
            path[:, k + 1] = next_state[path[:, k], a[:, k]]
        at_goal = terminal[path[:, 1:]]
        newly = ~ended & at_goal.any(axis=1)
        T[newly] = start + at_goal[newly].argmax(axis=1) + 1
        ended |= newly
        state_blocks.append(path[:, :-1])
        action_blocks.append(a)
        s = path[:, -1]
        start += length
    streams.advance(T)
    horizon = T.max()
    return (np.concatenate(state_blocks, axis=1)[:, :horizon], np.concatenate(action_blocks, axis=1)[:, :horizon],
            T)


def _batch_setup(n_runs: int, n_episodes: int, max_steps: int, theta0, gamma: float, seed: int,
                 **step_sizes: float | None):
    """The checked arguments and starting state shared by :func:`short_corridor_runs` and
    :func:`actor_critic_runs`: ``(gamma, next_state, reward, terminal, streams, theta_right, theta_left)``, the
    last two float ``(n_runs,)`` filled from ``theta0``."""
    theta0 = _check_run_arguments(n_episodes, max_steps, theta0, **step_sizes)
    gamma = _check_gamma(gamma)
    if n_runs < 1:
        raise ValueError(f"n_runs must be >= 1; got {n_runs}")
    next_state, reward, terminal = _corridor_arrays(gamma)
    streams = _UniformStreams(run_generators(seed, n_runs))
    return (gamma, next_state, reward, terminal, streams, np.full(n_runs, theta0[0]), np.full(n_runs, theta0[1]))


def short_corridor_runs(alpha: float, n_runs: int, n_episodes: int, seed: int, alpha_w: float | None = None,
                        theta0=SHORT_CORRIDOR_THETA0, gamma: float = 1.0, max_steps: int = 1_000,
                        return_parameters: bool = False, progress: bool | None = None):
    """``n_runs`` independent runs of :func:`reinforce_short_corridor`, computed together with arrays.

    Run ``i`` uses the generator ``run_generators(seed, n_runs)[i]`` and draws from it exactly what
    :func:`reinforce_short_corridor` draws, in the same order, and computes the same floating-point operations:
    its returns equal those of ``reinforce_short_corridor(alpha, n_episodes, run_generators(seed, n_runs)[i],
    theta0, alpha_w, gamma, max_steps)`` (tests/test_solutions_policy_gradients.py checks this). The episodes of
    all runs are generated side by side, then the per-step updates are applied for t = 0, 1, ... to every run
    whose episode is longer than t.

    Args:
        alpha, alpha_w, theta0, gamma, max_steps: as in :func:`reinforce_short_corridor`.
        n_runs, n_episodes: how many runs, and episodes in each.
        seed: the seed the runs' generators are spawned from.
        return_parameters: also return the final theta ``(n_runs, 2)`` and baseline weights ``(n_runs,)`` (or
            None without baseline).
        progress: show a tqdm bar over episodes (default: :func:`~solutions.progress.show_progress`).

    Returns:
        float array ``(n_runs, n_episodes)``: the total reward of each episode (S&B's G_0); with
        ``return_parameters``, the tuple ``(returns, theta, w)``.

    Raises:
        ValueError: as :func:`reinforce_short_corridor`, or if ``n_runs < 1``.
    """
    gamma, next_state, reward, terminal, streams, theta_right, theta_left = _batch_setup(
        n_runs, n_episodes, max_steps, theta0, gamma, seed, alpha=alpha, alpha_w=alpha_w)
    w = np.zeros(n_runs)
    returns = np.zeros((n_runs, n_episodes))
    for episode in tqdm(range(n_episodes), desc="REINFORCE runs", disable=not show_progress(progress),
                        leave=False):
        p_right = _corridor_policy(theta_right, theta_left)[RIGHT]
        states, actions, T = _corridor_episodes(p_right, streams, next_state, terminal, max_steps)
        horizon = T.max()
        live = np.arange(horizon) < T[:, None]  # (n_runs, horizon): step t is part of run i's episode
        rewards = np.where(live, reward[states, actions], 0.0)
        x_right = SHORT_CORRIDOR_FEATURES[actions, 0]  # x(S_t, A_t) = [x_right, x_left]
        x_left = SHORT_CORRIDOR_FEATURES[actions, 1]
        # G_t = R_{t+1} + gamma G_{t+1}, backwards (rewards past T are 0, so G is 0 there).
        G = np.zeros((n_runs, horizon + 1))
        for t in range(horizon - 1, -1, -1):
            G[:, t] = rewards[:, t] + gamma * G[:, t + 1]
        for t in range(horizon):
            # grad ln pi(A_t | S_t, theta) = x(S_t, A_t) - sum_b pi(b) x(S_t, b), for the current theta
            p_left, p_right = _corridor_policy(theta_right, theta_left)
            if alpha_w is None:
                scale = alpha * gamma**t * G[:, t]  # 0 past the end of an episode: theta does not move
            else:
                delta = np.where(live[:, t], G[:, t] - w, 0.0)  # 0 past the end: neither w nor theta moves
                w = w + alpha_w * delta
                scale = alpha * gamma**t * delta
            theta_right = theta_right + scale * (x_right[:, t] - p_right)
            theta_left = theta_left + scale * (x_left[:, t] - p_left)
        returns[:, episode] = rewards.sum(axis=1)
    theta = np.stack([theta_right, theta_left], axis=1)
    if return_parameters:
        return returns, theta, (None if alpha_w is None else w)
    return returns


def actor_critic_runs(alpha_theta: float, alpha_w: float, n_runs: int, n_episodes: int, seed: int,
                      theta0=SHORT_CORRIDOR_THETA0, gamma: float = 1.0, max_steps: int = 1_000,
                      return_parameters: bool = False, progress: bool | None = None):
    """``n_runs`` independent runs of :func:`one_step_actor_critic_short_corridor`, computed together.

    Run ``i`` uses ``run_generators(seed, n_runs)[i]`` exactly as the readable function does and computes the same
    floating-point operations, so its returns equal that function's (tested). Every run takes one step per
    iteration, each in its own episode; a run stops once it has finished ``n_episodes`` episodes.

    Args:
        alpha_theta, alpha_w, theta0, gamma, max_steps: as in :func:`one_step_actor_critic_short_corridor`.
        n_runs, n_episodes: how many runs, and episodes in each.
        seed: the seed the runs' generators are spawned from.
        return_parameters: also return the final theta ``(n_runs, 2)`` and critics ``(n_runs, 4)``.
        progress: show a tqdm bar over finished episodes (default: :func:`~solutions.progress.show_progress`).

    Returns:
        float array ``(n_runs, n_episodes)`` of total rewards, or ``(returns, theta, w)``.

    Raises:
        ValueError: as :func:`one_step_actor_critic_short_corridor`, or if ``n_runs < 1``.
    """
    gamma, next_state, reward, terminal, streams, theta_right, theta_left = _batch_setup(
        n_runs, n_episodes, max_steps, theta0, gamma, seed, alpha_theta=alpha_theta, alpha_w=alpha_w)
    w = np.zeros((n_runs, len(terminal)))
    returns = np.zeros((n_runs, n_episodes))
    s = np.zeros(n_runs, dtype=np.int64)
    I = np.ones(n_runs)
    steps = np.zeros(n_runs, dtype=np.int64)  # steps taken in the current episode
    episode = np.zeros(n_runs, dtype=np.int64)
    runs = np.arange(n_runs)
    bar = tqdm(total=n_runs * n_episodes, desc="actor-critic runs", disable=not show_progress(progress),
               leave=False)
    while runs.size:
        state = s[runs]
        p_left, p_right = _corridor_policy(theta_right[runs], theta_left[runs])
        a = (streams.next(runs) < p_right).astype(np.int64)
        s_next, r = next_state[state, a], reward[state, a]
        terminated = terminal[s_next]
        v_next = np.where(terminated, 0.0, w[runs, s_next])
        delta = r + gamma * v_next - w[runs, state]
        w[runs, state] = w[runs, state] + alpha_w * delta
        scale = alpha_theta * I[runs] * delta
        theta_right[runs] = theta_right[runs] + scale * (SHORT_CORRIDOR_FEATURES[a, 0] - p_right)
        theta_left[runs] = theta_left[runs] + scale * (SHORT_CORRIDOR_FEATURES[a, 1] - p_left)
        I[runs] = gamma * I[runs]
        returns[runs, episode[runs]] += r
        s[runs] = s_next
        steps[runs] += 1
        ended = runs[terminated | (steps[runs] >= max_steps)]
        s[ended], I[ended], steps[ended] = 0, 1.0, 0
        episode[ended] += 1
        bar.update(ended.size)
        runs = runs[episode[runs] < n_episodes]
    theta = np.stack([theta_right, theta_left], axis=1)
    bar.close()
    if return_parameters:
        return returns, theta, w
    return returns


# ------------------------------------------------------------------------ the score-function (REINFORCE) trick

def _check_categorical(theta, rewards) -> tuple[np.ndarray, np.ndarray]:
    theta = np.asarray(theta, dtype=np.float64)
    rewards = np.asarray(rewards, dtype=np.float64)
    if theta.ndim != 1 or theta.size == 0 or rewards.shape != theta.shape:
        raise ValueError(f"theta and rewards must be 1-d arrays of the same length K >= 1; got shapes "
                         f"{theta.shape} and {rewards.shape}")
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(rewards))):
        raise ValueError("theta and rewards must be finite")
    return theta, rewards


def _softmax(theta: np.ndarray) -> np.ndarray:
    e = np.exp(theta - theta.max())
    return e / e.sum()


def exact_softmax_gradient(theta, rewards) -> np.ndarray:
    """The exact gradient grad_theta E_{x ~ p_theta}[R(x)] for the categorical p_theta = softmax(theta).

    E[R] = sum_x p_x R(x) and d p_x / d theta_k = p_x (1[x = k] - p_k), so the gradient is
    p (R - E_p[R]) componentwise: p_k (R(k) - sum_x p_x R(x)).

    Args:
        theta: float ``(K,)``, the logits.
        rewards: float ``(K,)``, the reward R(x) of each outcome x.

    Returns:
        float64 array ``(K,)``.

    Raises:
        ValueError: if the shapes differ, are not 1-d and non-empty, or a value is not finite.
    """
    theta, rewards = _check_categorical(theta, rewards)
    p = _softmax(theta)
    return p * (rewards - p @ rewards)


def score_function_gradient(theta, rewards, n_samples: int, rng: np.random.Generator,
                            baseline: float | None = None) -> np.ndarray:
    """The score-function (log-derivative, REINFORCE) estimate of grad_theta E_{x ~ p_theta}[R(x)] for the
    categorical p_theta = softmax(theta) (Williams 1992; S&B Section 13.3):

        (1 / n) sum_i (R(x_i) - b) grad_theta ln p_theta(x_i),   x_1 .. x_n ~ p_theta,

    where grad_theta ln p_theta(x) = e_x - p (e_x the one-hot vector of x). Because E[grad ln p_theta(x)] = 0, a
    constant baseline b leaves the estimate unbiased. b = E[R] (the mean reward) lowers the variance a lot when the
    rewards are far from 0; it is not the variance-minimising constant, and with rewards near 0 it can raise the
    variance (both cases are in tests/test_solutions_policy_gradients.py).

    Random draws: ``x = rng.choice(K, size=n_samples, p=softmax(theta))``, nothing else.

    Args:
        theta: float ``(K,)``, the logits.
        rewards: float ``(K,)``, the reward R(x) of each outcome.
        n_samples: n >= 1.
        rng: the random generator.
        baseline: the constant b (default None: b = 0, the plain estimator).

    Returns:
        float64 array ``(K,)``, the estimate.

    Raises:
        ValueError: for mismatched or non-finite ``theta`` and ``rewards``, ``n_samples < 1`` or a non-finite
            baseline.
    """
    theta, rewards = _check_categorical(theta, rewards)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples}")
    b = 0.0 if baseline is None else float(baseline)
    if not math.isfinite(b):
        raise ValueError(f"baseline must be finite; got {baseline}")
    p = _softmax(theta)
    x = rng.choice(theta.size, size=n_samples, p=p)
    score = np.eye(theta.size)[x] - p  # grad ln p_theta(x_i), one row per sample
    return ((rewards[x] - b)[:, None] * score).mean(axis=0)


# ---------------------------------------------------------- reward-to-go and the losses of deep REINFORCE

def reward_to_go(rewards, gamma: float, episode_ends) -> np.ndarray:
    """The discounted reward-to-go G_t = sum_{k=t}^{end(t)} gamma^(k-t) r_k of every step of a batch of episodes.

    ``rewards[t]`` is the reward received after the action at step t (S&B's R_{t+1}); the episodes lie end to end
    and ``end(t)`` is the last step of the episode that step t belongs to. Computed backwards,
    G_t = r_t + gamma G_{t+1}, starting again from G = 0 at each episode's last step, so no reward crosses from one
    episode into the one before it.

    Args:
        rewards: float ``(T,)``.
        gamma: discount factor in ``[0, 1]``.
        episode_ends: bool ``(T,)``, True at the last step of each episode; the last entry must be True.

    Returns:
        float64 array ``(T,)``.

    Raises:
        ValueError: if the shapes are not ``(T,)`` with T >= 1, ``episode_ends`` is not boolean or its last entry
            is not True, a reward is not finite, or ``gamma`` is outside ``[0, 1]``.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    episode_ends = np.asarray(episode_ends)
    gamma = _check_gamma(gamma)
    if rewards.ndim != 1 or rewards.size == 0 or episode_ends.shape != rewards.shape:
        raise ValueError(f"rewards and episode_ends must both have shape (T,), T >= 1; got {rewards.shape} and "
                         f"{episode_ends.shape}")
    if episode_ends.dtype != bool:
        raise ValueError(f"episode_ends must be a boolean array; got dtype {episode_ends.dtype}")
    if not episode_ends[-1]:
        raise ValueError("episode_ends[-1] must be True: the batch must end with a complete episode")
    if not np.all(np.isfinite(rewards)):
        raise ValueError("rewards must be finite")
    G = np.zeros_like(rewards)
    future = 0.0  # G_{t+1}, the reward-to-go of the next step of the same episode
    for t in range(len(rewards) - 1, -1, -1):
        if episode_ends[t]:
            future = 0.0
        G[t] = rewards[t] + gamma * future
        future = G[t]
    return G


def reinforce_loss(log_probs: torch.Tensor, returns: torch.Tensor, n_episodes: int) -> torch.Tensor:
    """The REINFORCE loss of a batch of episodes: minus the surrogate whose gradient is the policy-gradient
    estimate,

        L(theta) = -(1 / N) sum_t Psi_t ln pi(A_t | S_t, theta),

    with N the number of episodes in the batch and Psi_t the weights (returns, reward-to-go or advantages), which
    are constants: ``returns`` is detached, so the gradient flows only through ``log_probs``. The minus sign makes
    gradient *descent* on L an ascent on J; dividing by N (not by the number of steps) averages the per-episode
    sums, the Monte Carlo estimate of grad J (Williams 1992; without S&B's gamma^t factor, which deep-RL code
    usually drops, as the chapter discusses).

    Args:
        log_probs: float tensor ``(T,)``, ln pi(A_t | S_t, theta) of the actions taken, carrying the gradient.
        returns: float tensor ``(T,)``, the weights Psi_t.
        n_episodes: N >= 1, the number of episodes in the batch.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: if the shapes are not both ``(T,)`` or ``n_episodes < 1``.
    """
    if not isinstance(log_probs, torch.Tensor) or not isinstance(returns, torch.Tensor):
        raise ValueError("log_probs and returns must be torch tensors")
    if log_probs.ndim != 1 or returns.shape != log_probs.shape:
        raise ValueError(f"log_probs and returns must both have shape (T,); got {tuple(log_probs.shape)} and "
                         f"{tuple(returns.shape)}")
    if isinstance(n_episodes, bool) or int(n_episodes) != n_episodes or n_episodes < 1:
        raise ValueError(f"n_episodes must be an integer >= 1; got {n_episodes!r}")
    return -(log_probs * returns.detach()).sum() / n_episodes


def advantages_and_value_loss(returns: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages with a learned baseline, and the regression loss of the baseline V_w (S&B Section 13.4 with a
    value network; Schulman et al. 2016, "High-dimensional continuous control using GAE", Section 2).

    * advantages A_t = G_t - V_w(S_t), with V_w(S_t) *detached*: the policy loss must not push the critic;
    * value loss = mean_t (V_w(S_t) - G_t)^2, the mean squared error over the T steps (no 1/2 factor; the
      returns are detached too: they are targets).

    Args:
        returns: float tensor ``(T,)``, the returns G_t (the regression targets).
        values: float tensor ``(T,)``, V_w(S_t) from the value network, carrying the gradient.

    Returns:
        ``(advantages, value_loss)``: a tensor ``(T,)`` without gradient, and a scalar tensor whose gradient
        reaches only the value network.

    Raises:
        ValueError: if the shapes are not both ``(T,)``.
    """
    if not isinstance(returns, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise ValueError("returns and values must be torch tensors")
    if values.ndim != 1 or returns.shape != values.shape:
        raise ValueError(f"returns and values must both have shape (T,); got {tuple(returns.shape)} and "
                         f"{tuple(values.shape)}")
    advantages = returns.detach() - values.detach()
    value_loss = ((values - returns.detach()) ** 2).mean()
    return advantages, value_loss


# ----------------------------------------------------------------------------- REINFORCE on CartPole-v1 (torch)

CARTPOLE_VARIANTS = ("return", "reward_to_go", "baseline")


class PolicyNetwork(nn.Module):
    """pi(. | s, theta): a multilayer perceptron from a state to action preferences (logits), 4 -> 64 -> 64 -> 2
    with tanh for CartPole; the policy is the categorical distribution softmax(logits).

    Input float32 ``(B, state_dim)``; output float32 ``(B, n_actions)`` logits.
    """

    def __init__(self, state_dim: int = 4, n_actions: int = 2, hidden: int = 64):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(state_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                    nn.Linear(hidden, n_actions))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.layers(states)


class ValueNetwork(nn.Module):
    """V(s, w): a multilayer perceptron from a state to its value, 4 -> 64 -> 64 -> 1 with tanh.

    Input float32 ``(B, state_dim)``; output float32 ``(B,)``.
    """

    def __init__(self, state_dim: int = 4, hidden: int = 64):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(state_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                    nn.Linear(hidden, 1))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.layers(states).squeeze(-1)


def _sample_actions(logits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``logits`` ``(B, A)`` from softmax(logits), by inverse CDF: one ``rng.random()`` per
    row, and the action is the first whose cumulative (unnormalised) probability exceeds u times the total."""
    preferences = logits.numpy().astype(np.float64)
    weights = np.exp(preferences - preferences.max(axis=1, keepdims=True))
    cumulative = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cumulative[:, -1]
    return (u[:, None] < cumulative).argmax(axis=1)


def evaluate_cartpole_policy(policy: nn.Module, n_episodes: int = 20, seed: int = 0, greedy: bool = False,
                             env_id: str = "CartPole-v1") -> float:
    """Mean undiscounted return of ``policy`` over ``n_episodes`` episodes, run side by side in a vector
    environment.

    Args:
        policy: maps float32 states ``(B, d)`` to logits ``(B, A)``.
        n_episodes: the number of evaluation episodes (>= 1), each counted until it first ends.
        seed: seeds the environments and the action sampling.
        greedy: take the most probable action instead of sampling (the sampled policy is the one trained).
        env_id: a Gymnasium environment with a vector state and discrete actions.

    Returns:
        The mean return (CartPole-v1: at most 500).

    Raises:
        ValueError: if ``n_episodes < 1``.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1; got {n_episodes}")
    rng = np.random.default_rng(seed)

    def choose_actions(states: torch.Tensor) -> np.ndarray:
        logits = policy(states)
        return logits.argmax(dim=1).numpy() if greedy else _sample_actions(logits, rng)

    return mean_episode_return(choose_actions, n_episodes, seed, env_id)


@dataclass
class CartPoleRun:
    """What :func:`reinforce_cartpole` returns: the training curve, the networks and evaluations."""

    variant: str
    seed: int
    policy: PolicyNetwork
    value: ValueNetwork | None  #: the learned baseline V(s, w) (variant ``"baseline"``), else None
    episode_ends: np.ndarray  #: int (n,): the environment step (all environments counted) at which each ended
    episode_returns: np.ndarray  #: float (n,): its undiscounted return (the sampled policy's training episodes)
    total_steps: int  #: environment steps taken
    n_updates: int  #: gradient steps of the policy
    eval_steps: list[int] = field(default_factory=list)  #: steps at which the policy was evaluated
    eval_sampled: list[float] = field(default_factory=list)  #: mean return of the sampled policy there
    eval_greedy: list[float] = field(default_factory=list)  #: mean return of the greedy policy there

    def mean_return(self, last_steps: int = 10_000) -> float:
        """Mean return of the training episodes that ended in the last ``last_steps`` environment steps (NaN if
        none did)."""
        recent = self.episode_ends > self.total_steps - last_steps
        return float(self.episode_returns[recent].mean()) if recent.any() else math.nan

    def curve(self, grid: np.ndarray, window: int = 5_000) -> np.ndarray:
        """The training curve on a step grid: at each step s of ``grid``, the mean return of the training episodes
        that ended in (s - window, s]; NaN where none did. With 8 environments and episodes of at most 500 steps,
        a window of 4,000 steps or more always holds an episode end."""
        return training_curve(self.episode_ends, self.episode_returns, grid, window)

    def evaluate(self, n_episodes: int = 20, seed: int = 12_345) -> tuple[float, float]:
        """``(sampled, greedy)``: the mean return over ``n_episodes`` episodes of the sampled policy (the one
        trained) and of the greedy one, with :func:`evaluate_cartpole_policy`."""
        return (evaluate_cartpole_policy(self.policy, n_episodes, seed),
                evaluate_cartpole_policy(self.policy, n_episodes, seed, greedy=True))

    def first_step_reaching(self, level: float) -> int | None:
        """The first evaluation step at which the sampled policy's mean return was at least ``level``, or None."""
        return next((s for s, r in zip(self.eval_steps, self.eval_sampled) if r >= level), None)


@single_threaded()
def reinforce_cartpole(variant: str, seed: int, total_steps: int = 60_000, episodes_per_update: int = 8,
                       lr: float = 1e-2, gamma: float = 0.99, value_lr: float = 1e-2, n_envs: int = 8,
                       hidden: int = 64, eval_every: int | None = None, eval_episodes: int = 20,
                       env_id: str = "CartPole-v1", progress: bool | None = None) -> CartPoleRun:
    """REINFORCE on CartPole-v1 with a neural-network policy (Williams 1992; S&B Sections 13.3-13.4), three ways of
    weighting grad ln pi(A_t | S_t, theta):

    * ``"return"``: every step of an episode gets the whole episode's return G_0 = sum_k gamma^k r_k;
    * ``"reward_to_go"``: step t gets G_t = sum_{k >= t} gamma^(k-t) r_k (:func:`reward_to_go`): an action cannot
      change the rewards that came before it, so dropping them removes noise without bias;
    * ``"baseline"``: step t gets the advantage G_t - V(S_t, w) with a learned V (:class:`ValueNetwork`), fitted by
      one Adam step per update on the mean squared error (:func:`advantages_and_value_loss`).

    Each update takes the episodes finished since the last one (at least ``episodes_per_update``) and one Adam step
    on :func:`reinforce_loss` (minus the sum over steps of Psi_t ln pi(A_t | S_t, theta), divided by the number of
    episodes). The deep-RL form drops S&B's gamma^t factor, as is usual.

    Experience comes from ``n_envs`` CartPole environments in a Gymnasium ``SyncVectorEnv`` with same-step
    autoreset: a finished environment starts its next episode at once and reports the last state of the old one in
    ``info["final_obs"]``; one batched forward pass chooses the actions of all environments. Environments run on
    between updates, so an episode in progress at an update finishes under the updated policy (its first steps
    were sampled from the previous one); the loss uses the log-probabilities under the current policy. Episodes cut
    at 500 steps (truncated, not terminated): the baseline variant bootstraps, G_t includes
    gamma^(T-t) V(S_final, w) from the final observation; the other two variants use the rewards received, as if
    the episode had ended (they have no value estimate to bootstrap from).

    Every environment step counts against ``total_steps``; evaluation episodes do not.

    Args:
        variant: ``"return"``, ``"reward_to_go"`` or ``"baseline"``.
        seed: seeds torch (initial weights), the action sampling and the environments.
        total_steps: environment steps of training, summed over the environments.
        episodes_per_update: the policy is updated once this many episodes have finished.
        lr: Adam's step size for the policy.
        gamma: discount factor in ``[0, 1]``.
        value_lr: Adam's step size for V (variant ``"baseline"``).
        n_envs: environments run side by side.
        hidden: width of the hidden layers of both networks.
        eval_every: evaluate the sampled and the greedy policy every this many steps (``eval_episodes`` episodes
            each, with :func:`evaluate_cartpole_policy`), and at the end; None: never.
        eval_episodes: episodes per evaluation.
        env_id: a Gymnasium environment id with a vector state and discrete actions.
        progress: show a tqdm bar over environment steps (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`CartPoleRun`.

    Raises:
        ValueError: for an unknown variant, ``gamma`` outside ``[0, 1]``, or a count below 1.
    """
    if variant not in CARTPOLE_VARIANTS:
        raise ValueError(f"variant must be one of {CARTPOLE_VARIANTS}; got {variant!r}")
    gamma = _check_gamma(gamma)
    for name, value in {"total_steps": total_steps, "episodes_per_update": episodes_per_update, "n_envs": n_envs,
                        "eval_episodes": eval_episodes}.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1; got {value}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(n_envs)], copy=False,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    state_dim, n_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)
    policy = PolicyNetwork(state_dim, n_actions, hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    value = ValueNetwork(state_dim, hidden) if variant == "baseline" else None
    value_optimizer = torch.optim.Adam(value.parameters(), lr=value_lr) if value is not None else None
    run = CartPoleRun(variant, seed, policy, value, np.zeros(0, dtype=np.int64), np.zeros(0), 0, 0)

    # The episode in progress in each environment, and the finished ones not yet learned from.
    states_so_far = [[] for _ in range(n_envs)]
    actions_so_far = [[] for _ in range(n_envs)]
    rewards_so_far = [[] for _ in range(n_envs)]
    finished = []  # (states (T, d), actions (T,), rewards (T,), final state (d,) if truncated else None)
    ends, episode_returns = [], []
    states = envs.reset(seed=seed)[0].copy()
    steps = 0
    bar = tqdm(total=total_steps, desc=f"REINFORCE ({variant}) seed {seed}", disable=not show_progress(progress),
               mininterval=1.0, leave=False)
    while steps < total_steps:
        with torch.inference_mode():
            actions = _sample_actions(policy(torch.as_tensor(states, dtype=torch.float32)), rng)
        next_states, rewards, terminated, truncated, info = envs.step(actions)
        steps += n_envs
        for i in range(n_envs):
            states_so_far[i].append(states[i])
            actions_so_far[i].append(actions[i])
            rewards_so_far[i].append(rewards[i])
            if terminated[i] or truncated[i]:
                final_state = info["final_obs"][i] if truncated[i] and not terminated[i] else None
                finished.append((np.array(states_so_far[i], dtype=np.float32), np.array(actions_so_far[i]),
                                 np.array(rewards_so_far[i], dtype=np.float64), final_state))
                ends.append(steps)
                episode_returns.append(float(np.sum(rewards_so_far[i])))
                states_so_far[i], actions_so_far[i], rewards_so_far[i] = [], [], []
        states = next_states.copy()  # copy=False: the vector environment reuses its observation array
        if len(finished) >= episodes_per_update:
            _reinforce_update(variant, finished, policy, optimizer, value, value_optimizer, gamma)
            run.n_updates += 1
            finished = []
        if eval_every is not None and steps // eval_every > (steps - n_envs) // eval_every:
            run.eval_steps.append(steps)
            sampled, greedy = (evaluate_cartpole_policy(policy, eval_episodes, 10_000 + steps, g, env_id)
                               for g in (False, True))
            run.eval_sampled.append(sampled)
            run.eval_greedy.append(greedy)
        bar.update(n_envs)
    bar.close()
    envs.close()
    run.episode_ends, run.episode_returns = np.array(ends, dtype=np.int64), np.array(episode_returns)
    run.total_steps = steps
    if eval_every is not None and (not run.eval_steps or run.eval_steps[-1] != steps):
        run.eval_steps.append(steps)
        run.eval_sampled.append(evaluate_cartpole_policy(policy, eval_episodes, 10_000 + steps, False, env_id))
        run.eval_greedy.append(evaluate_cartpole_policy(policy, eval_episodes, 10_000 + steps, True, env_id))
    return run


def _reinforce_update(variant: str, episodes: list, policy: nn.Module, optimizer: torch.optim.Optimizer,
                      value: nn.Module | None, value_optimizer: torch.optim.Optimizer | None,
                      gamma: float) -> None:
    """One update of :func:`reinforce_cartpole` from a batch of finished episodes."""
    states = torch.as_tensor(np.concatenate([e[0] for e in episodes]))
    actions = torch.as_tensor(np.concatenate([e[1] for e in episodes]))
    rewards = [e[2].copy() for e in episodes]
    if variant == "baseline":
        # A truncated episode's last reward is followed by gamma V(S_final): G_t then bootstraps from it.
        cut = [k for k, e in enumerate(episodes) if e[3] is not None]
        if cut:
            with torch.no_grad():
                v_final = value(torch.as_tensor(np.stack([episodes[k][3] for k in cut]), dtype=torch.float32))
            for k, v in zip(cut, v_final.tolist()):
                rewards[k][-1] += gamma * v
    lengths = [len(r) for r in rewards]
    episode_ends = np.zeros(sum(lengths), dtype=bool)
    episode_ends[np.cumsum(lengths) - 1] = True
    G = reward_to_go(np.concatenate(rewards), gamma, episode_ends)
    if variant == "return":  # G_0 of its episode for every step
        starts = np.cumsum(lengths) - np.array(lengths)
        G = np.repeat(G[starts], lengths)
    G = torch.as_tensor(G, dtype=torch.float32)
    if variant == "baseline":
        advantages, value_loss = advantages_and_value_loss(G, value(states))
        weights = advantages
    else:
        weights = G
    log_probs = torch.log_softmax(policy(states), dim=-1).gather(1, actions[:, None]).squeeze(1)
    loss = reinforce_loss(log_probs, weights, len(episodes))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if value is not None:
        value_optimizer.zero_grad()
        value_loss.backward()
        value_optimizer.step()


def cartpole_runs(variant: str, seeds, total_steps: int = 60_000, grid_step: int = 1_000, window: int = 5_000,
                  progress: bool | None = None, n_jobs: int = 1, **kwargs) -> dict:
    """Runs of :func:`reinforce_cartpole` for several seeds, with their training curves on a common step grid (for
    a figure with bands).

    Args:
        variant: as in :func:`reinforce_cartpole`.
        seeds: the seeds, one run each.
        total_steps: environment steps of each run.
        grid_step: spacing of the grid ``grid_step, 2 grid_step, ..., total_steps``.
        window: each curve point is the mean return of the episodes that ended in the last ``window`` steps
            (:meth:`CartPoleRun.curve`).
        progress: show a bar over the runs (default: :func:`~solutions.progress.show_progress`).
        n_jobs: how many runs train at the same time, each in a process of its own (see
            :func:`compare_cartpole_variants`).
        **kwargs: passed on to :func:`reinforce_cartpole`.

    Returns:
        A dict with ``"steps"`` (the grid, int ``(G,)``), ``"curves"`` (float ``(n_seeds, G)``), ``"mean"`` (float
        ``(G,)``, the mean over seeds), ``"final"`` (float ``(n_seeds,)``: each run's mean return over its last
        10,000 steps) and ``"runs"`` (the :class:`CartPoleRun` of each seed, in the order of ``seeds``).

    Raises:
        ValueError: if ``n_jobs`` < 1 or ``seeds`` is empty (and as :func:`reinforce_cartpole`).
    """
    return compare_cartpole_variants([variant], seeds, total_steps, grid_step, window, progress, n_jobs,
                                     **kwargs)[variant]


def compare_cartpole_variants(variants, seeds, total_steps: int = 60_000, grid_step: int = 1_000,
                              window: int = 5_000, progress: bool | None = None, n_jobs: int = 1,
                              **kwargs) -> dict[str, dict]:
    """:func:`cartpole_runs` for several variants at once, the same seeds and budget for each (the chapter's
    figure), with all the runs shared out among ``n_jobs`` processes.

    Args:
        variants: names from :data:`CARTPOLE_VARIANTS`.
        seeds, total_steps, grid_step, window, progress, **kwargs: as in :func:`cartpole_runs`.
        n_jobs: how many runs train at the same time, each in a process of its own (standard library
            ``concurrent.futures`` with fresh "spawn" processes, which start in a few seconds). The runs are
            independent and seeded, so the results are the same for every ``n_jobs``
            (tests/test_solutions_policy_gradients.py checks this): 15 runs of 60,000 steps take about 50 s of
            wall time one after another here and about 30 s with ``n_jobs=2`` on this 2-core machine.

    Returns:
        ``{variant: the dict cartpole_runs returns}``.

    Raises:
        ValueError: if ``n_jobs`` < 1, ``seeds`` or ``variants`` is empty, or a variant is unknown (and as
            :func:`reinforce_cartpole`).
    """
    variants, seeds = list(variants), list(seeds)
    if not seeds or not variants:
        raise ValueError(f"need at least one seed and one variant; got seeds {seeds}, variants {variants}")
    unknown = [v for v in variants if v not in CARTPOLE_VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {CARTPOLE_VARIANTS}")
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1; got {n_jobs}")
    jobs = [(variant, seed) for variant in variants for seed in seeds]
    bar = tqdm(total=len(jobs), desc="REINFORCE on CartPole", disable=not show_progress(progress))
    runs = {}
    if n_jobs == 1:
        for variant, seed in jobs:
            runs[variant, seed] = reinforce_cartpole(variant, seed, total_steps, progress=False, **kwargs)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # fork would copy a running kernel's threads and state
        with ProcessPoolExecutor(min(n_jobs, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(reinforce_cartpole, variant, seed, total_steps, progress=False, **kwargs):
                       (variant, seed) for variant, seed in jobs}
            for future in as_completed(futures):
                runs[futures[future]] = future.result()
                bar.update()
    bar.close()
    grid = np.arange(grid_step, total_steps + 1, grid_step)
    result = {}
    for variant in variants:
        variant_runs = [runs[variant, seed] for seed in seeds]
        curves = np.array([run.curve(grid, window) for run in variant_runs])
        result[variant] = {"steps": grid, "curves": curves, "mean": curves.mean(axis=0),
                           "final": np.array([run.mean_return(10_000) for run in variant_runs]),
                           "runs": variant_runs}
    return result
