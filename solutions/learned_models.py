"""Dynamics models with function approximation (Chapter 2, second half).

In a continuous state space there is nothing to count: the model has to generalise from the transitions seen
to states and actions never tried. Two models of the next state s' given (s, a):

* :class:`LinearGaussianModel` -- per action, s' = W_a [s; 1] + noise with noise ~ N(0, Sigma_a), fitted by
  least squares (the maximum-likelihood fit for Gaussian noise);
* :class:`DynamicsModel` -- a small neural network T_theta(s, a) of the displacement s' - s, fitted by gradient
  steps on the squared error (:func:`model_gradient_step`).

Chapter 2 fits both to transitions of :class:`~solutions.envs.continuous.ContinuousTwoRooms`, whose wall the
linear model cannot represent.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = [
    "DynamicsModel",
    "LinearGaussianModel",
    "fit_dynamics_model",
    "model_gradient_step",
    "one_hot",
]


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
