"""Proximal policy optimisation (Chapter 5): importance ratios, the clipped surrogate, the clipped value loss and
generalised advantage estimation.

A batch collected with the policy pi_theta_old is reused for several gradient steps on theta. The policy-gradient
surrogate then needs the importance ratio rho_t(theta) = pi_theta(A_t | S_t) / pi_theta_old(A_t | S_t), and PPO
(Schulman et al. 2017, "Proximal Policy Optimization Algorithms") keeps the new policy near the old one by clipping
that ratio inside the objective:

    L^CLIP(theta) = E_t[ min(rho_t A_t, clip(rho_t, 1 - epsilon, 1 + epsilon) A_t) ].

The advantages A_t come from generalised advantage estimation (Schulman et al. 2016, "High-dimensional continuous
control using generalized advantage estimation"): A_t = sum_l (gamma lambda)^l delta_{t+l} with the TD errors
delta_t = r_t + gamma V(S_{t+1}) - V(S_t).

Names follow the papers and TRL where it has them: ``cliprange`` (the epsilon of the clipped surrogate),
``cliprange_value``, ``gamma``, ``lam`` (lambda; ``lambda`` is a Python keyword).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "clipped_value_loss",
    "gae",
    "importance_ratio",
    "ppo_clip_loss",
]


def _check_tensors(**tensors: torch.Tensor) -> torch.Size:
    """Raise ValueError unless every argument is a floating-point torch tensor and all have the same shape."""
    shape = None
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a torch tensor; got {type(value).__name__}")
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor; got dtype {value.dtype}")
        if shape is None:
            shape = value.shape
        elif value.shape != shape:
            names = ", ".join(tensors)
            shapes = ", ".join(str(tuple(v.shape)) for v in tensors.values())
            raise ValueError(f"{names} must all have the same shape; got {shapes}")
    return shape


def _check_cliprange(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1); got {value!r}")
    return float(value)


def importance_ratio(log_probs: torch.Tensor, old_log_probs: torch.Tensor) -> torch.Tensor:
    """The importance ratio rho_t = pi_theta(A_t | S_t) / pi_theta_old(A_t | S_t) of each action, from
    log-probabilities: rho_t = exp(ln pi_theta - ln pi_theta_old).

    Dividing probabilities would underflow for long sequences and rare actions; the difference of logs does not.
    The old log-probabilities were recorded when the batch was collected and are constants: they are detached, so
    the gradient flows only through ``log_probs`` (Schulman et al. 2017, Section 3; Sutton & Barto 2018,
    Section 5.5 for importance sampling).

    Args:
        log_probs: float tensor of any shape, ln pi_theta(A_t | S_t) under the current parameters, carrying the
            gradient.
        old_log_probs: float tensor of the same shape, ln pi_theta_old(A_t | S_t) recorded at collection time.

    Returns:
        A float tensor of the same shape, > 0; equal to 1 wherever the two policies agree.

    Raises:
        ValueError: if the arguments are not floating-point tensors of the same shape.
    """
    _check_tensors(log_probs=log_probs, old_log_probs=old_log_probs)
    return torch.exp(log_probs - old_log_probs.detach())


def ppo_clip_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
                  cliprange: float = 0.2) -> torch.Tensor:
    """The PPO-clip policy loss: minus the clipped surrogate objective, averaged over the samples,

        L(theta) = -mean_t min(rho_t A_t, clip(rho_t, 1 - cliprange, 1 + cliprange) A_t),

    with rho_t the importance ratio (:func:`importance_ratio`). The minimum makes the objective a pessimistic
    bound: once the ratio has moved past 1 + cliprange for a positive advantage (or below 1 - cliprange for a
    negative one) the clipped term is the smaller one, it is constant in theta, and that sample stops pushing.
    A move in the direction that makes the objective *worse* is never clipped. The advantages are constants
    (detached). Schulman et al. (2017), eq. 7 and Figure 1.

    Args:
        log_probs: float tensor ``(T,)`` (or any shape), ln pi_theta(A_t | S_t), carrying the gradient.
        old_log_probs: float tensor of the same shape, ln pi_theta_old(A_t | S_t).
        advantages: float tensor of the same shape, the advantage estimates A_t.
        cliprange: epsilon in (0, 1); 0.2 in the paper (TRL's ``cliprange``).

    Returns:
        A scalar tensor.

    Raises:
        ValueError: if the tensors are not floating-point with one shape, are empty, or ``cliprange`` is not in
            (0, 1).
    """
    shape = _check_tensors(log_probs=log_probs, old_log_probs=old_log_probs, advantages=advantages)
    if shape.numel() == 0:
        raise ValueError("the batch is empty")
    cliprange = _check_cliprange(cliprange, "cliprange")
    advantages = advantages.detach()
    ratio = importance_ratio(log_probs, old_log_probs)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * advantages
    return -torch.min(unclipped, clipped).mean()


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       cliprange_value: float = 0.2) -> torch.Tensor:
    """The clipped value loss of PPO implementations: the larger of the squared errors of the new value and of a
    value kept within ``cliprange_value`` of the old one, averaged over the samples,

        V_clip = V_old + clip(V_w(S_t) - V_old, -cliprange_value, +cliprange_value)
        L(w)   = mean_t max((V_w(S_t) - G_t)^2, (V_clip - G_t)^2).

    Like the policy's clipped objective this is pessimistic: a value that moved far from the old one gains nothing
    from the move. The targets ``returns`` (G_t = A_t + V_old(S_t) with GAE) and ``old_values`` are constants
    (detached). The form is OpenAI Baselines' (see Huang et al. 2022, "The 37 implementation details of PPO",
    detail 9, and Engstrom et al. 2020, who found it does not help); it is a mean of squared errors without the
    factor 1/2 (as Stable-Baselines3 and Chapter 4's value loss; TRL multiplies by 1/2 and uses ``vf_coef`` 0.1).

    Args:
        values: float tensor ``(T,)`` (or any shape), V_w(S_t) under the current weights, carrying the gradient.
        old_values: float tensor of the same shape, V_w_old(S_t) recorded when the batch was collected.
        returns: float tensor of the same shape, the regression targets G_t.
        cliprange_value: how far the value may move from the old one, in the units of the returns, > 0
            (TRL's ``cliprange_value``, 0.2 by default; Stable-Baselines3 does not clip unless ``clip_range_vf``
            is set).

    Returns:
        A scalar tensor whose gradient reaches only ``values``.

    Raises:
        ValueError: if the tensors are not floating-point with one shape, are empty, or ``cliprange_value`` is not
            a positive finite number.
    """
    shape = _check_tensors(values=values, old_values=old_values, returns=returns)
    if shape.numel() == 0:
        raise ValueError("the batch is empty")
    if isinstance(cliprange_value, bool) or not isinstance(cliprange_value, (int, float)) \
            or not 0 < cliprange_value < float("inf"):
        raise ValueError(f"cliprange_value must be a positive finite number; got {cliprange_value!r}")
    old_values, returns = old_values.detach(), returns.detach()
    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    return torch.max((values - returns) ** 2, (values_clipped - returns) ** 2).mean()


def gae(rewards, values, next_values, terminated, truncated, gamma: float = 0.99, lam: float = 0.95) -> np.ndarray:
    """Generalised advantage estimates A_t = sum_{l >= 0} (gamma lambda)^l delta_{t+l} of a rollout, with the TD
    errors delta_t = r_t + gamma (1 - terminated_t) V(S'_t) - V(S_t) (Schulman et al. 2016, eq. 16).

    Computed backwards, A_t = delta_t + gamma lambda A_{t+1}, where the sum stops at the end of the episode that
    step t belongs to and at the end of the rollout:

    * ``terminated[t]``: S'_t is terminal, its value is 0: nothing is bootstrapped and nothing carried back;
    * ``truncated[t]``: the episode was cut (a time limit) after step t but S'_t is not terminal: delta_t
      bootstraps from V(S'_t) = ``next_values[t]``, the value of the *final* observation of that episode, never of
      the first observation of the next one, and A_{t+1} (which belongs to the next episode) is not carried back;
    * the last step of the rollout bootstraps from ``next_values[-1]`` = V(S_T) and carries nothing back.

    With lam = 0, A_t = delta_t (the one-step TD error); with lam = 1, A_t = G_t - V(S_t), the Monte Carlo
    return (bootstrapped only where the episode was cut) minus the baseline.

    Args:
        rewards: float ``(T,)`` or ``(T, N)`` (N parallel environments, time first): r_t, the reward after step t.
        values: V(S_t), same shape.
        next_values: V(S'_t) of the observation S'_t that step t led to (before any reset), same shape; ignored
            where ``terminated``.
        terminated: bool, same shape: S'_t is a terminal state.
        truncated: bool, same shape: the episode was cut after step t without reaching a terminal state.
        gamma: discount in [0, 1].
        lam: lambda in [0, 1].

    Returns:
        float64 array of the shape of ``rewards``.

    Raises:
        ValueError: if the shapes differ or are not ``(T,)``/``(T, N)`` with T >= 1, the masks are not boolean, a
            value is not finite, or gamma/lam is outside [0, 1].
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    next_values = np.asarray(next_values, dtype=np.float64)
    terminated = np.asarray(terminated)
    truncated = np.asarray(truncated)
    if rewards.ndim not in (1, 2) or rewards.shape[0] == 0:
        raise ValueError(f"rewards must have shape (T,) or (T, N) with T >= 1; got {rewards.shape}")
    for name, array in (("values", values), ("next_values", next_values), ("terminated", terminated),
                        ("truncated", truncated)):
        if array.shape != rewards.shape:
            raise ValueError(f"{name} must have the shape of rewards {rewards.shape}; got {array.shape}")
    for name, array in (("terminated", terminated), ("truncated", truncated)):
        if array.dtype != bool:
            raise ValueError(f"{name} must be a boolean array; got dtype {array.dtype}")
    for name, array in (("rewards", rewards), ("values", values), ("next_values", next_values)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite")
    for name, value in (("gamma", gamma), ("lam", lam)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
            raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")

    advantages = np.zeros_like(rewards)
    carried = np.zeros_like(rewards[0])  # A_{t+1}, or 0 where step t ends an episode or the rollout
    for t in range(len(rewards) - 1, -1, -1):
        not_terminal = 1.0 - terminated[t]
        delta = rewards[t] + gamma * not_terminal * next_values[t] - values[t]
        episode_goes_on = 1.0 - (terminated[t] | truncated[t])
        advantages[t] = delta + gamma * lam * episode_goes_on * carried
        carried = advantages[t]
    return advantages
