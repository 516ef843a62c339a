"""Dynamics models with function approximation (Chapter 2, second half).

In a continuous state space there is nothing to count: the model has to generalise from the transitions seen
to states and actions never tried. Two models of the next state s' given (s, a):

* :class:`LinearGaussianModel` -- per action, s' = W_a [s; 1] + noise with noise ~ N(0, Sigma_a), fitted by
  least squares (the maximum-likelihood fit for Gaussian noise);
* :class:`DynamicsModel` -- a small neural network T_theta(s, a) of the displacement s' - s, fitted by gradient
  steps on the squared error (:func:`model_gradient_step`).

Chapter 2 fits both to transitions of :class:`~solutions.envs.continuous.ContinuousTwoRooms`, whose wall the
linear model cannot represent, and :func:`run_two_rooms` compares Q-learning alone, Q-learning with updates
replayed from a buffer of real transitions, and Q-learning with updates on transitions simulated by a model
(partial planning, as in Dyna). :func:`two_rooms_runs` runs the same experiment for many seeds at once.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .envs.continuous import GOAL, GOAL_RADIUS, START, in_goal, make_two_rooms, transition
from .q_learning import epsilon_greedy, epsilon_greedy_rows, q_learning_update

__all__ = [
    "DynamicsModel",
    "LinearGaussianModel",
    "StateAggregation",
    "fit_dynamics_model",
    "model_gradient_step",
    "one_hot",
    "run_two_rooms",
    "two_rooms_runs",
]

#: The methods of :func:`run_two_rooms` and :func:`two_rooms_runs`.
TWO_ROOMS_METHODS = ("q_learning", "replay", "true model", "linear model")


def one_hot(actions, n_actions: int) -> torch.Tensor:
    """Float tensor ``(B, n_actions)`` with a 1 at each action of ``actions`` (ints, shape ``(B,)``)."""
    return nn.functional.one_hot(torch.as_tensor(actions, dtype=torch.long), n_actions).to(torch.float32)


class LinearGaussianModel:
    """Per action a, next state s' = W_a [s; 1] + epsilon with epsilon ~ N(0, Sigma_a).

    ``fit`` solves a ridge-regularised least-squares problem per action (a tiny ridge keeps it defined while
    an action has few samples) and sets Sigma_a to the covariance of the residuals.

    Args:
        state_dim: dimension of the state.
        n_actions: number of actions.
        ridge: L2 penalty on W_a (dimensionless, relative to the data's scale).
    """

    def __init__(self, state_dim: int, n_actions: int, ridge: float = 1e-3):
        self.state_dim, self.n_actions, self.ridge = state_dim, n_actions, ridge
        eye = np.vstack([np.eye(state_dim), np.zeros((1, state_dim))])  # predicts "stay where you are"
        self.W = np.repeat(eye[None], n_actions, axis=0)  # (A, state_dim + 1, state_dim)
        self.cov = np.zeros((n_actions, state_dim, state_dim))

    def fit(self, states, actions, next_states) -> LinearGaussianModel:
        """Fit every action with data; shapes ``(N, d)``, ``(N,)``, ``(N, d)``. Returns ``self``."""
        states, next_states = np.asarray(states, float), np.asarray(next_states, float)
        actions = np.asarray(actions)
        for a in range(self.n_actions):
            mask = actions == a
            if not mask.any():
                continue
            X = np.hstack([states[mask], np.ones((mask.sum(), 1))])
            Y = next_states[mask]
            self.W[a] = np.linalg.solve(X.T @ X + self.ridge * np.eye(X.shape[1]), X.T @ Y)
            residuals = Y - X @ self.W[a]
            self.cov[a] = residuals.T @ residuals / max(mask.sum() - 1, 1)
        return self

    def predict(self, states, actions) -> np.ndarray:
        """Mean next states, shape ``(N, d)``."""
        states = np.asarray(states, float)
        X = np.hstack([states, np.ones((len(states), 1))])
        return np.einsum("ni,nij->nj", X, self.W[np.asarray(actions)])

    def sample(self, states, actions, rng: np.random.Generator) -> np.ndarray:
        """Next states drawn from the model, shape ``(N, d)``."""
        mean = self.predict(states, actions)
        noise = np.stack([rng.multivariate_normal(np.zeros(self.state_dim), self.cov[a]) for a in actions])
        return mean + noise


class DynamicsModel(nn.Module):
    """A multilayer perceptron T_theta(s, a) that predicts the displacement s' - s.

    Input: the state (float, ``(B, state_dim)``) concatenated with the one-hot action (``(B, n_actions)``).
    Output: the predicted displacement, ``(B, state_dim)``. Predicting the displacement rather than s' itself
    makes "nothing happens" the easy default, which is what most transitions are close to. ReLU units can
    represent a sharp change such as a wall; smooth units (tanh) blur it unless trained much longer.

    Args:
        state_dim: dimension of the state.
        n_actions: number of actions.
        hidden: width of the two hidden layers.
    """

    def __init__(self, state_dim: int, n_actions: int, hidden: int = 128):
        super().__init__()
        self.state_dim, self.n_actions = state_dim, n_actions
        self.net = nn.Sequential(nn.Linear(state_dim + n_actions, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, state_dim))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    @torch.no_grad()
    def predict(self, states, actions) -> np.ndarray:
        """Predicted next states s + T_theta(s, a) as a float64 array ``(N, state_dim)``."""
        states_t = torch.as_tensor(np.asarray(states), dtype=torch.float32)
        inputs = torch.cat([states_t, one_hot(actions, self.n_actions)], dim=1)
        return (states_t + self(inputs)).double().numpy()


def model_gradient_step(model: DynamicsModel, optimizer: torch.optim.Optimizer, states: torch.Tensor,
                        actions: torch.Tensor, next_states: torch.Tensor) -> float:
    """One gradient step on the mean squared error of the predicted displacement; returns the loss.

    loss = mean over the batch and the state dimensions of (T_theta(s, a) - (s' - s))^2, where the network's
    input is ``torch.cat([states, one_hot(actions, model.n_actions)], dim=1)``. The step clears old gradients,
    back-propagates the loss and lets ``optimizer`` update the parameters.

    Args:
        model: the network.
        optimizer: an optimizer over ``model.parameters()``.
        states: float32 tensor ``(B, d)``.
        actions: int64 tensor ``(B,)``.
        next_states: float32 tensor ``(B, d)``.

    Returns:
        The loss before the step, as a Python float.
    """
    inputs = torch.cat([states, one_hot(actions, model.n_actions)], dim=1)
    loss = nn.functional.mse_loss(model(inputs), next_states - states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def fit_dynamics_model(model: DynamicsModel, optimizer: torch.optim.Optimizer, states, actions, next_states,
                       n_steps: int, batch_size: int, rng: np.random.Generator) -> list[float]:
    """``n_steps`` calls of :func:`model_gradient_step` on minibatches drawn with ``rng``; returns the losses."""
    states_t = torch.as_tensor(np.asarray(states), dtype=torch.float32)
    actions_t = torch.as_tensor(np.asarray(actions), dtype=torch.long)
    next_t = torch.as_tensor(np.asarray(next_states), dtype=torch.float32)
    losses = []
    for _ in range(n_steps):
        batch = torch.as_tensor(rng.integers(len(states_t), size=batch_size))
        losses.append(model_gradient_step(model, optimizer, states_t[batch], actions_t[batch], next_t[batch]))
    return losses


class StateAggregation:
    """Map positions in the unit square to the cells of an ``n_bins`` x ``n_bins`` grid (S&B Section 9.3).

    A table of action values over the cells, ``Q[cell, a]``, is the simplest function approximator.
    """

    def __init__(self, n_bins: int = 10):
        self.n_bins = n_bins
        self.n_states = n_bins * n_bins

    def __call__(self, positions) -> np.ndarray | int:
        """Cell index of one position ``(2,)`` (an int) or of many ``(N, 2)`` (an int array)."""
        cells = np.minimum((np.asarray(positions) * self.n_bins).astype(int), self.n_bins - 1)
        index = cells[..., 0] * self.n_bins + cells[..., 1]
        return int(index) if np.ndim(index) == 0 else index


def run_two_rooms(method: str, seed: int = 0, n_episodes: int = 30, n_extra: int = 20, alpha: float = 0.5,
                  epsilon: float = 0.1, gamma: float = 0.95, refit_every: int = 200) -> np.ndarray:
    """Steps per episode of one learning run on the two-rooms world, with or without extra updates.

    Q is a table over a 10x10 :class:`StateAggregation`. Each real step makes one Q-learning update; then:

    * ``"q_learning"`` -- nothing more;
    * ``"replay"`` -- ``n_extra`` Q-learning updates on real transitions drawn uniformly from all seen so far;
    * ``"true model"``, ``"linear model"`` -- ``n_extra`` Q-learning updates on simulated transitions (partial
      planning): a state drawn uniformly from those visited, an action drawn uniformly, the next state from
      the model, reward -1, terminal if it lies in the goal. The true model is the world's own
      :func:`~solutions.envs.continuous.transition`; the linear-Gaussian model (its mean) is refitted to all
      real transitions every ``refit_every`` real steps.

    Args:
        method: one of the four names above.
        seed: seeds the environment and the agent.
        n_episodes: number of episodes (each cut at 200 steps).
        n_extra: extra updates per real step.
        alpha, epsilon, gamma: step size, exploration probability, discount factor.
        refit_every: real steps between refits of the linear model.

    Returns:
        Int array ``(n_episodes,)``.

    Raises:
        ValueError: for an unknown method.
    """
    if method not in TWO_ROOMS_METHODS:
        raise ValueError(f"method must be one of {TWO_ROOMS_METHODS}; got {method!r}")
    env = make_two_rooms()
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    aggregate = StateAggregation(10)
    Q = np.zeros((aggregate.n_states, 4))
    capacity = n_episodes * 200
    states, next_states = np.zeros((capacity, 2)), np.zeros((capacity, 2))
    actions, ends = np.zeros(capacity, dtype=int), np.zeros(capacity, dtype=bool)
    model = LinearGaussianModel(2, 4) if method == "linear model" else None
    n = 0  # real transitions so far
    steps = np.zeros(n_episodes, dtype=int)
    for episode in range(n_episodes):
        s, _ = env.reset()
        while True:
            a = epsilon_greedy(Q[aggregate(s)], epsilon, rng)
            s_next, r, terminated, truncated, _ = env.step(a)
            q_learning_update(Q, aggregate(s), a, r, aggregate(s_next), terminated, alpha, gamma)
            states[n], actions[n], next_states[n], ends[n] = s, a, s_next, terminated
            n += 1
            # the extra transitions: replayed real ones, or simulated ones
            if method == "replay":
                picked = rng.integers(n, size=n_extra)
                extra_states, extra_actions = states[picked], actions[picked]
                extra_next, extra_ends = next_states[picked], ends[picked]
            elif method != "q_learning":
                if model is not None and n % refit_every == 0:
                    model.fit(states[:n], actions[:n], next_states[:n])
                extra_states = states[rng.integers(n, size=n_extra)]
                extra_actions = rng.integers(4, size=n_extra)
                if model is None:
                    extra_next = transition(extra_states, extra_actions, rng)
                else:
                    extra_next = np.clip(model.predict(extra_states, extra_actions), 0.0, 1.0)
                extra_ends = in_goal(extra_next)
            if method != "q_learning":
                cells, next_cells = aggregate(extra_states), aggregate(extra_next)
                for k in range(n_extra):
                    q_learning_update(Q, cells[k], int(extra_actions[k]), -1.0, next_cells[k], bool(extra_ends[k]),
                                      alpha, gamma)
            steps[episode] += 1
            s = s_next
            if terminated or truncated:
                break
    return steps


def two_rooms_runs(method: str, n_runs: int = 10, seed: int = 0, n_episodes: int = 30, n_extra: int = 20,
                   alpha: float = 0.5, epsilon: float = 0.1, gamma: float = 0.95, refit_every: int = 200,
                   max_episode_steps: int = 200) -> np.ndarray:
    """Steps per episode of ``n_runs`` independent runs of :func:`run_two_rooms`, computed together.

    The same algorithm as :func:`run_two_rooms` (the same world, start, goal, time limit, Q-learning updates and
    extra updates, in the same order within a run), with the runs held in arrays of shape ``(n_runs, ...)`` so
    that numpy does a step of every run at once. All random numbers come from one generator, drawn for all
    runs together, so a run is not step-for-step the run :func:`run_two_rooms` would make with some seed; the
    two agree in distribution (a test compares them). Each real step of a run is its n-th transition for the
    same n in every run still going, so the linear models of all runs are refitted at the same steps.

    Args:
        method: ``"q_learning"``, ``"replay"``, ``"true model"`` or ``"linear model"`` (see
            :func:`run_two_rooms`).
        n_runs: number of independent runs (>= 1).
        seed: seed of the random generator.
        n_episodes: episodes per run.
        n_extra: extra updates per real step (>= 0).
        alpha, epsilon, gamma: step size, exploration probability, discount factor.
        refit_every: real steps between refits of the linear model.
        max_episode_steps: an episode is cut (truncated, and bootstrapped) after this many steps.

    Returns:
        Int array ``(n_runs, n_episodes)`` of steps per episode.

    Raises:
        ValueError: for an unknown method or a non-positive ``n_runs``, ``n_episodes``, ``refit_every`` or
            ``max_episode_steps``, or a negative ``n_extra``.
    """
    if method not in TWO_ROOMS_METHODS:
        raise ValueError(f"method must be one of {TWO_ROOMS_METHODS}; got {method!r}")
    if min(n_runs, n_episodes, refit_every, max_episode_steps) < 1 or n_extra < 0:
        raise ValueError("n_runs, n_episodes, refit_every and max_episode_steps must be >= 1 and n_extra >= 0; "
                         f"got {n_runs}, {n_episodes}, {refit_every}, {max_episode_steps} and {n_extra}")
    rng = np.random.default_rng(seed)
    aggregate = StateAggregation(10)
    A = 4
    Q = np.zeros((n_runs, aggregate.n_states, A))
    capacity = n_episodes * max_episode_steps
    states, next_states = np.zeros((n_runs, capacity, 2)), np.zeros((n_runs, capacity, 2))
    actions, ends = np.zeros((n_runs, capacity), dtype=np.int64), np.zeros((n_runs, capacity), dtype=bool)
    linear = method == "linear model"
    models = [LinearGaussianModel(2, A) for _ in range(n_runs)] if linear else []
    W = np.stack([m.W for m in models]) if linear else None  # (n_runs, A, 3, 2): every run's linear model
    steps = np.zeros((n_runs, n_episodes), dtype=np.int64)
    episode = np.zeros(n_runs, dtype=np.int64)
    s = np.clip(START + rng.normal(0.0, 0.02, size=(n_runs, 2)), 0.0, 1.0)
    n = 0  # real transitions so far, the same for every run still going
    while True:
        runs = np.flatnonzero(episode < n_episodes)
        if runs.size == 0:
            return steps
        k = runs.size
        cells = aggregate(s[runs])
        a = epsilon_greedy_rows(Q[runs, cells], epsilon, rng)
        s_next = transition(s[runs], a, rng)
        terminated = np.linalg.norm(s_next - GOAL, axis=1) <= GOAL_RADIUS
        next_cells = aggregate(s_next)
        target = -1.0 + np.where(terminated, 0.0, gamma * Q[runs, next_cells].max(axis=1))
        Q[runs, cells, a] += alpha * (target - Q[runs, cells, a])
        states[runs, n], actions[runs, n], next_states[runs, n], ends[runs, n] = s[runs], a, s_next, terminated
        n += 1
        if method != "q_learning" and n_extra:
            picked = rng.integers(n, size=(k, n_extra))
            extra_states = states[runs[:, None], picked]  # (k, n_extra, 2)
            if method == "replay":
                extra_actions = actions[runs[:, None], picked]
                extra_next, extra_ends = next_states[runs[:, None], picked], ends[runs[:, None], picked]
            else:
                if linear and n % refit_every == 0:
                    for r in runs:
                        W[r] = models[r].fit(states[r, :n], actions[r, :n], next_states[r, :n]).W
                extra_actions = rng.integers(A, size=(k, n_extra))
                if linear:
                    X = np.concatenate([extra_states, np.ones((k, n_extra, 1))], axis=2)
                    extra_next = np.clip(np.einsum("kni,knij->knj", X, W[runs[:, None], extra_actions]), 0.0, 1.0)
                else:
                    extra_next = transition(extra_states.reshape(-1, 2), extra_actions.ravel(), rng).reshape(
                        k, n_extra, 2)
                extra_ends = in_goal(extra_next)
            extra_cells, extra_next_cells = aggregate(extra_states), aggregate(extra_next)
            for j in range(n_extra):  # in order, as run_two_rooms does; the runs side by side
                c, b, c_next = extra_cells[:, j], extra_actions[:, j], extra_next_cells[:, j]
                p_target = -1.0 + np.where(extra_ends[:, j], 0.0, gamma * Q[runs, c_next].max(axis=1))
                Q[runs, c, b] += alpha * (p_target - Q[runs, c, b])
        steps[runs, episode[runs]] += 1
        s[runs] = s_next
        ended = terminated | (steps[runs, episode[runs]] >= max_episode_steps)
        finished = runs[ended]
        episode[finished] += 1
        s[finished] = np.clip(START + rng.normal(0.0, 0.02, size=(finished.size, 2)), 0.0, 1.0)
