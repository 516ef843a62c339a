"""Group relative policy optimisation (Chapter 5): group-normalised advantages, the k3 estimate of the KL
divergence to a reference policy, and the GRPO loss with its four aggregations.

GRPO (Shao et al. 2024, "DeepSeekMath", Section 4.1) drops PPO's critic. For each prompt (or start state) it
samples a group of G completions (episodes) from the same policy and uses the group's own rewards as the baseline:
the advantage of completion i is its reward minus the group's mean, divided by the group's standard deviation. The
policy loss is PPO's clipped surrogate applied to every token of a completion with that completion's advantage,
plus beta times an estimate of KL(pi_theta || pi_ref) to a frozen reference policy.

Names follow TRL's ``GRPOTrainer``/``GRPOConfig``: ``num_generations`` (G), ``beta`` (the KL coefficient),
``epsilon`` (the clip range), ``loss_type`` (``"grpo"``, ``"bnpo"``, ``"dr_grpo"``, ``"dapo"``),
``scale_rewards`` (``"group"``, ``"batch"``, ``"none"``), ``max_completion_length``. A batch holds the groups
one after the other: rows ``g * num_generations ... (g + 1) * num_generations - 1`` are the completions of prompt
g.
"""

from __future__ import annotations

import torch

from .ppo import _check_tensors

__all__ = [
    "LOSS_TYPES",
    "SCALE_REWARDS",
    "group_advantages",
    "grpo_loss",
    "kl_k3",
]

SCALE_REWARDS = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return value


def group_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group",
                     eps: float = 1e-4) -> torch.Tensor:
    """GRPO's advantages: each reward minus the mean reward of its group, optionally divided by a standard
    deviation (Shao et al. 2024, Section 4.1.2, "outcome supervision"; TRL's ``scale_rewards``):

        A_i = (r_i - mean(group)) / (std + eps)   with std the sample standard deviation (divisor n - 1) of
                                                    the group ("group"), or of the whole batch ("batch"),
        A_i =  r_i - mean(group)                    ("none", Liu et al. 2025, "Understanding R1-Zero-like
                                                    training", Dr. GRPO).

    The centring is always within the group: the group mean is the baseline. A group whose rewards are all equal
    gets advantages 0 under every option (no signal: every completion was as good as the others).
    Dividing by the group's standard deviation weights groups with nearly equal rewards (very easy or very hard
    prompts) more, the difficulty bias that Dr. GRPO removes.

    Args:
        rewards: float tensor ``(B,)`` with B = n_prompts * num_generations, the groups one after the other.
        num_generations: G >= 2, the completions per prompt.
        scale_rewards: ``"group"``, ``"batch"`` or ``"none"``.
        eps: > 0, added to the standard deviation (TRL uses 1e-4).

    Returns:
        A float tensor ``(B,)`` without gradient.

    Raises:
        ValueError: if ``rewards`` is not a 1-D floating-point tensor whose length is a positive multiple of
            ``num_generations``, ``num_generations < 2``, ``scale_rewards`` is not one of the three options, or
            ``eps`` is not positive.
    """
    if not isinstance(rewards, torch.Tensor) or not rewards.is_floating_point() or rewards.ndim != 1:
        raise ValueError("rewards must be a 1-D floating-point torch tensor (B,)")
    num_generations = _check_positive_int(num_generations, "num_generations")
    if num_generations < 2:
        raise ValueError("num_generations must be >= 2: a group of one completion has no baseline")
    if len(rewards) == 0 or len(rewards) % num_generations:
        raise ValueError(f"the number of rewards ({len(rewards)}) must be a positive multiple of num_generations "
                         f"({num_generations})")
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}; got {scale_rewards!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number; got {eps!r}")
    rewards = rewards.detach()
    groups = rewards.reshape(-1, num_generations)                    # (n_prompts, G)
    advantages = groups - groups.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        advantages = advantages / (groups.std(dim=1, keepdim=True) + eps)
    elif scale_rewards == "batch":
        advantages = advantages / (rewards.std() + eps)
    return advantages.reshape(-1)


def kl_k3(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """The k3 estimate of KL(pi_theta || pi_ref) at each sampled token (Schulman 2020, "Approximating KL
    divergence"; Shao et al. 2024, eq. 4):

        k3 = exp(r) - r - 1,   r = ln pi_ref(y_t | ...) - ln pi_theta(y_t | ...).

    For tokens sampled from pi_theta its expectation is exactly KL(pi_theta || pi_ref); unlike the plain
    estimate -r it is never negative (e^r >= 1 + r) and it has lower variance when the policies are close. The
    reference log-probabilities are constants (detached): the gradient reaches only ``log_probs``. Note that as a
    loss term its expected gradient (tokens held fixed) is sum_y (pi_theta - pi_ref) grad ln pi_theta(y), the
    gradient of the *reverse* divergence KL(pi_ref || pi_theta); both pull pi_theta towards pi_ref.

    Args:
        log_probs: float tensor of any shape, ln pi_theta of the sampled tokens, carrying the gradient.
        ref_log_probs: float tensor of the same shape, ln pi_ref of the same tokens.

    Returns:
        A float tensor of the same shape, >= 0, 0 where the two policies agree.

    Raises:
        ValueError: if the arguments are not floating-point tensors of the same shape.
    """
    _check_tensors(log_probs=log_probs, ref_log_probs=ref_log_probs)
    r = ref_log_probs.detach() - log_probs
    return torch.exp(r) - r - 1


def grpo_loss(log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
              completion_mask: torch.Tensor, *, ref_log_probs: torch.Tensor | None = None, beta: float = 0.0,
              epsilon: float = 0.2, loss_type: str = "grpo",
              max_completion_length: int | None = None) -> torch.Tensor:
    """The GRPO loss of a batch of completions (Shao et al. 2024, eq. 3, as TRL's ``GRPOTrainer`` computes it).

    At every completion token t of completion i, with rho = exp(ln pi_theta - ln pi_theta_old) and the
    completion's advantage A_i,

        l_{i,t} = -min(rho A_i, clip(rho, 1 - epsilon, 1 + epsilon) A_i) + beta * k3_{i,t}

    (:func:`kl_k3`, against ``ref_log_probs``). Only tokens where ``completion_mask`` is True count; the
    ``loss_type`` says how they are averaged, the choice that decides how long and short completions are weighed:

    * ``"grpo"``: the mean over each completion's tokens, then the mean over completions (DeepSeekMath). A token
      of a long completion weighs less than a token of a short one: long wrong answers are punished less per
      token, the length bias that Liu et al. (2025) point out.
    * ``"bnpo"``: the sum over all completion tokens of the batch divided by their number (a token-level mean).
    * ``"dapo"``: the same token-level mean (Yu et al. 2025, DAPO); TRL divides by the token count of the whole
      global batch across processes, which in one process is ``"bnpo"``.
    * ``"dr_grpo"``: the sum over all completion tokens divided by the constant B * ``max_completion_length``
      (Liu et al. 2025, Dr. GRPO): no length-dependent normaliser at all.

    On-policy (``old_log_probs`` equal to ``log_probs``) rho = 1; with ``beta = 0`` and group-centred advantages
    the ``"grpo"`` loss is then exactly minus the mean advantage, 0: the loss value is not a progress signal, its
    gradient is.

    Args:
        log_probs: float tensor ``(B, L)``, ln pi_theta of each token under the current parameters, carrying the
            gradient (finite everywhere; positions where the mask is False do not count).
        old_log_probs: float tensor ``(B, L)``, ln pi_theta_old recorded when the completions were sampled.
        advantages: float tensor ``(B,)``, one advantage per completion.
        completion_mask: bool tensor ``(B, L)``, True on the completion tokens (prompt and padding False).
        ref_log_probs: float tensor ``(B, L)``, ln pi_ref; required when ``beta > 0``, ignored when ``beta == 0``.
        beta: the KL coefficient, >= 0 (TRL's ``beta``; 0.04 in DeepSeekMath, 0.0 in TRL's current default).
        epsilon: the clip range in (0, 1) (TRL's ``epsilon``).
        loss_type: one of ``"grpo"``, ``"bnpo"``, ``"dr_grpo"``, ``"dapo"``.
        max_completion_length: the longest completion the sampler may produce; required for ``"dr_grpo"``.

    Returns:
        A scalar tensor.

    Raises:
        ValueError: if the shapes do not match, the mask is not boolean or has no True entry, ``beta`` is negative,
            ``beta > 0`` without ``ref_log_probs``, ``epsilon`` is outside (0, 1), ``loss_type`` is unknown, or
            ``"dr_grpo"`` is asked for without a positive ``max_completion_length``.
    """
    shape = _check_tensors(log_probs=log_probs, old_log_probs=old_log_probs)
    if len(shape) != 2:
        raise ValueError(f"log_probs must have shape (B, L); got {tuple(shape)}")
    if not isinstance(advantages, torch.Tensor) or not advantages.is_floating_point() \
            or advantages.shape != shape[:1]:
        raise ValueError(f"advantages must be a float tensor of shape (B,) = {tuple(shape[:1])}")
    if not isinstance(completion_mask, torch.Tensor) or completion_mask.dtype != torch.bool \
            or completion_mask.shape != shape:
        raise ValueError(f"completion_mask must be a bool tensor of shape (B, L) = {tuple(shape)}")
    if not completion_mask.any():
        raise ValueError("completion_mask has no True entry: there is no completion token to learn from")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < float("inf"):
        raise ValueError(f"beta must be a finite number >= 0; got {beta!r}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be a number in (0, 1); got {epsilon!r}")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}; got {loss_type!r}")
    if loss_type == "dr_grpo":
        max_completion_length = _check_positive_int(max_completion_length, "max_completion_length")
    if beta > 0:
        if ref_log_probs is None:
            raise ValueError("beta > 0 needs ref_log_probs, the reference policy's log-probabilities")
        _check_tensors(log_probs=log_probs, ref_log_probs=ref_log_probs)

    ratio = torch.exp(log_probs - old_log_probs.detach())
    A = advantages.detach().unsqueeze(1)                              # (B, 1): one advantage per completion
    per_token = -torch.min(ratio * A, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * A)
    if beta > 0:
        per_token = per_token + beta * kl_k3(log_probs, ref_log_probs)
    mask = completion_mask.to(per_token.dtype)
    per_token = per_token * mask                                      # prompt and padding contribute 0
    if loss_type == "grpo":
        return (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)).mean()
    if loss_type in ("bnpo", "dapo"):
        return per_token.sum() / mask.sum()
    return per_token.sum() / (shape[0] * max_completion_length)
