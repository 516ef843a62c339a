"""Reinforcement learning from human feedback (Chapter 6): the losses and the bookkeeping of the InstructGPT recipe
and of direct preference optimisation.

The recipe of Ouyang et al. (2022, "Training language models to follow instructions with human feedback",
Section 3.5) has three stages, each with its own loss:

1. **Supervised fine-tuning (SFT)** on demonstrations: next-token cross-entropy on the response only
   (:func:`sft_loss`); the prompt is given, not written, so its tokens are masked out.
2. **A reward model** trained on comparisons: labellers rank K completions of a prompt, the ranking is expanded
   into its C(K, 2) (``chosen``, ``rejected``) pairs (:func:`ranking_to_pairs`), and the model's scalar scores
   r(x, y) are fitted by the Bradley-Terry likelihood, all pairs of a prompt in one batch element
   (:func:`reward_model_loss`); it is judged by how often it ranks a held-out pair the labellers' way
   (:func:`pairwise_accuracy`).
3. **Reinforcement learning** against the reward model with a penalty on the divergence from the SFT policy:
   maximise E[r(x, y)] - beta KL(pi_theta || pi_ref). PPO sees it as a reward at every token
   (:func:`per_token_rewards`: the KL penalty on each completion token, the score on the last one); the KL of a
   whole completion is the sum of its tokens' estimates (:func:`sequence_kl`).

Direct preference optimisation (Rafailov et al. 2023, "Direct preference optimization: your language model is
secretly a reward model", eq. 7) skips the reward model and the sampling: the policy's own log-probability ratios
to the reference act as the reward in the Bradley-Terry likelihood (:func:`dpo_loss`).

Names follow TRL (``chosen``, ``rejected``, ``rewards_chosen``, ``rewards_rejected``, ``beta``, ``kl_coef``); the
layout of a batch follows :mod:`solutions.language_model`: token ``(B, L)`` tensors with a bool
``completion_mask`` that is True on the completion's tokens (its ``<eos>`` included), and log-probabilities
``(B, L)`` where column t is ln pi(tokens[:, t] | tokens[:, :t]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .ppo import _check_tensors

__all__ = [
    "KL_ESTIMATORS",
    "dpo_loss",
    "pairwise_accuracy",
    "per_token_rewards",
    "ranking_to_pairs",
    "reward_model_loss",
    "sequence_kl",
    "sft_loss",
]

KL_ESTIMATORS = ("k1", "k3")


def _check_mask(completion_mask: torch.Tensor, shape: torch.Size, name: str = "completion_mask") -> None:
    if not isinstance(completion_mask, torch.Tensor) or completion_mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool torch tensor")
    if completion_mask.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {tuple(completion_mask.shape)}")


def _check_beta(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"{name} must be a number >= 0; got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------------------------ 1. SFT


def sft_loss(logits: torch.Tensor, tokens: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """The supervised fine-tuning loss: the mean next-token cross-entropy over the response tokens of a batch of
    demonstrations (Ouyang et al. 2022, Section 3.5, "SFT"; TRL's ``SFTTrainer`` with ``completion_only_loss``).

        loss = -(1 / N) sum_{b, t : completion_mask[b, t]} ln softmax(logits[b, t - 1])[tokens[b, t]],

    with N the number of completion tokens in the whole batch. The logits at position t - 1 predict token t. The
    prompt's tokens were given to the labeller, not written by them, so they are not targets; padding is nothing.
    Every response token of the batch counts once, so a longer demonstration weighs more (the convention of
    next-token training; averaging each demonstration first would weigh its tokens by 1 / its length).

    Args:
        logits: float ``(B, L, V)``, with gradient.
        tokens: int64 ``(B, L)``.
        completion_mask: bool ``(B, L)``, True on the response tokens (``<eos>`` included); column 0 must be
            False (nothing predicts the first token).

    Returns:
        A scalar tensor (nats per token), the dtype of ``logits``, with gradient.

    Raises:
        ValueError: for mismatched shapes or dtypes, a True in column 0 of the mask, or a mask with no True.
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.ndim != 3:
        raise ValueError("logits must be a floating-point torch tensor (B, L, V)")
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.int64 or tokens.shape != logits.shape[:2]:
        raise ValueError(f"tokens must be an int64 tensor of shape {tuple(logits.shape[:2])}")
    _check_mask(completion_mask, tokens.shape)
    if completion_mask[:, 0].any():
        raise ValueError("completion_mask[:, 0] must be False: no logits predict the first token")
    if not completion_mask.any():
        raise ValueError("completion_mask selects no token")
    log_p = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, L - 1, V): the distributions of tokens 1 .. L - 1
    token_log_p = log_p.gather(2, tokens[:, 1:, None]).squeeze(2)  # (B, L - 1)
    targets = completion_mask[:, 1:]
    return -(token_log_p * targets).sum() / targets.sum()


# --------------------------------------------------------------------------------------- 2. the reward model


def ranking_to_pairs(ranking: Sequence[int]) -> list[tuple[int, int]]:
    """Expand a labeller's ranking of K completions into its C(K, 2) = K (K - 1) / 2 comparisons (Ouyang et al.
    2022, Section 3.5, "Reward modeling": "this produces C(K, 2) comparisons for each prompt").

    A ranking is a total order, so every completion is preferred to every completion ranked below it, not only
    to its neighbour.

    Args:
        ranking: the indices of the K completions of one prompt, best first (e.g. ``[2, 0, 1]``: completion 2 is
            the best, 1 the worst). Any distinct integers.

    Returns:
        The list of ``(chosen, rejected)`` pairs, one for each i < j: ``(ranking[i], ranking[j])``, in that order
        (i, then j). K = 1 gives no pair.

    Raises:
        ValueError: if the ranking is empty, has an entry that is not an integer, or names a completion twice.
    """
    items = list(ranking)
    if not items:
        raise ValueError("the ranking is empty")
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise ValueError(f"a ranking holds completion indices (integers); got {item!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"the ranking names a completion twice: {items}")
    return [(int(items[i]), int(items[j])) for i in range(len(items)) for j in range(i + 1, len(items))]


def _check_rewards(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> None:
    shape = _check_tensors(rewards_chosen=rewards_chosen, rewards_rejected=rewards_rejected)
    if len(shape) not in (1, 2) or 0 in shape:
        raise ValueError(f"rewards must be (N,) pairs or (B, P) pairs of B prompts; got shape {tuple(shape)}")


def reward_model_loss(rewards_chosen: torch.Tensor, rewards_rejected: torch.Tensor) -> torch.Tensor:
    """The Bradley-Terry loss of a reward model on comparisons (Ouyang et al. 2022, eq. 1; TRL's
    ``RewardTrainer``):

        loss(r) = -1 / C(K, 2) E_{(x, y_w, y_l)} [ln sigma(r(x, y_w) - r(x, y_l))],

    the negative log-likelihood of the labels under the model P(y_w preferred to y_l) = sigma(r_w - r_l)
    (Bradley & Terry 1952). The C(K, 2) comparisons of one prompt form one batch element, so each prompt counts
    once, however many completions it had: the loss is the mean over the prompts of the mean over their pairs
    (with the same number of pairs per prompt, the mean over all pairs). ln sigma is computed stably
    (``logsigmoid``), so a pair the model gets wrong by a wide margin costs its margin, not infinity.

    Only differences of rewards enter: adding a constant to every reward changes nothing, which is why the
    rewards are normalised afterwards (Ouyang et al., Section 3.5, shift them so that the labellers'
    demonstrations score 0 on average; the chapter standardises them on the SFT model's samples).

    Args:
        rewards_chosen: float ``(B, P)``, r(x, y_w) of the P = C(K, 2) pairs of each of B prompts, or ``(N,)``
            for N pairs (each its own batch element), with gradient.
        rewards_rejected: float, the same shape: r(x, y_l) of the same pairs.

    Returns:
        A scalar tensor, with gradient.

    Raises:
        ValueError: if the arguments are not floating-point tensors of the same shape (N,) or (B, P), N, B, P >= 1.
    """
    _check_rewards(rewards_chosen, rewards_rejected)
    per_pair = -torch.nn.functional.logsigmoid(rewards_chosen - rewards_rejected)
    if per_pair.ndim == 2:
        return per_pair.mean(dim=1).mean()
    return per_pair.mean()


def pairwise_accuracy(rewards_chosen, rewards_rejected) -> float:
    """The fraction of comparisons a reward model ranks the labellers' way: r(x, y_w) > r(x, y_l); a tie counts
    one half (the model has no preference, a coin toss). It is the validation accuracy of the reward models of
    Stiennon et al. (2020) and Ouyang et al. (2022); the labels themselves are noisy (Ouyang et al.'s training
    labellers agreed with each other on 72.6 +- 1.5 % of comparisons, Section 5.1), so accuracy against the
    labels is capped well below 1.

    Args:
        rewards_chosen: float ``(N,)`` or ``(B, P)`` (tensor, array or list): the scores of the preferred
            completions.
        rewards_rejected: the same shape: the scores of the other completion of each pair.

    Returns:
        A Python float in [0, 1].

    Raises:
        ValueError: if the shapes differ or there is no comparison.
    """
    chosen = np.asarray(rewards_chosen.detach() if isinstance(rewards_chosen, torch.Tensor) else rewards_chosen,
                        dtype=np.float64)
    rejected = np.asarray(rewards_rejected.detach() if isinstance(rewards_rejected, torch.Tensor)
                          else rewards_rejected, dtype=np.float64)
    if chosen.shape != rejected.shape:
        raise ValueError(f"rewards_chosen and rewards_rejected must have the same shape; got {chosen.shape} and "
                         f"{rejected.shape}")
    if chosen.size == 0:
        raise ValueError("there is no comparison")
    return float(np.mean((chosen > rejected) + 0.5 * (chosen == rejected)))


# ----------------------------------------------------------------------------------------------- 3. RL


def per_token_rewards(scores: torch.Tensor, log_probs: torch.Tensor, ref_log_probs: torch.Tensor,
                      completion_mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """PPO's reward at every token of a completion in RLHF (Ziegler et al. 2019, Section 2.2; Ouyang et al. 2022,
    eq. 2; Stiennon et al. 2020, Section 3.4; TRL's ``PPOTrainer``):

        r_t = -kl_coef * (ln pi_theta(y_t | ...) - ln pi_ref(y_t | ...))      at every completion token t,
        r_T += score                                                           at the completion's last token T,

    and 0 on the prompt and the padding. Each token is one action; the reward model judges only the whole
    completion, so its score arrives at the end, as a reward at the end of an episode. The sum over the tokens
    is score - kl_coef * (ln pi_theta(y) - ln pi_ref(y)), whose expectation is E[r] - kl_coef KL(pi_theta ||
    pi_ref): the KL-regularised objective. Rewards are constants to PPO: the result carries no gradient.

    Args:
        scores: float ``(B,)``, the reward model's score of each completion.
        log_probs: float ``(B, L)``, ln pi_theta of each token when it was sampled.
        ref_log_probs: float ``(B, L)``, ln pi_ref (the SFT policy) of the same tokens.
        completion_mask: bool ``(B, L)``, True on completion tokens (contiguous in each row, ``<eos>``
            included); every row has at least one.
        kl_coef: beta >= 0, the weight of the KL penalty.

    Returns:
        A float tensor ``(B, L)``, the dtype of ``log_probs``, without gradient.

    Raises:
        ValueError: for shapes or dtypes that do not match, a row without completion tokens, or a negative
            ``kl_coef``.
    """
    shape = _check_tensors(log_probs=log_probs, ref_log_probs=ref_log_probs)
    if len(shape) != 2:
        raise ValueError(f"log_probs must be (B, L); got {tuple(shape)}")
    _check_mask(completion_mask, shape)
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point() or scores.shape != shape[:1]:
        raise ValueError(f"scores must be a floating-point tensor of shape ({shape[0]},)")
    if not completion_mask.any(dim=1).all():
        raise ValueError("every row needs at least one completion token")
    kl_coef = _check_beta(kl_coef, "kl_coef")
    with torch.no_grad():
        rewards = torch.where(completion_mask, -kl_coef * (log_probs - ref_log_probs), 0.0)
        columns = torch.arange(shape[1]).expand(shape)
        last = torch.where(completion_mask, columns, -1).max(dim=1).values  # (B,): the last completion token
        rewards[torch.arange(shape[0]), last] += scores.to(rewards.dtype)
    return rewards


def sequence_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, completion_mask: torch.Tensor,
                estimator: str = "k1") -> torch.Tensor:
    """An estimate of KL(pi_theta || pi_ref) for each sampled completion: the sum of its tokens' estimates.

    A completion's log-probability is the sum of its tokens', so the KL divergence between the two distributions
    over whole completions is the expected sum of the per-token log-ratios (the chain rule of KL). With
    r_t = ln pi_ref(y_t | ...) - ln pi_theta(y_t | ...) at each completion token of a completion y ~ pi_theta,

        k1 = sum_t -r_t                      (the log-ratio of the sequence: unbiased, but can be negative),
        k3 = sum_t (exp(r_t) - r_t - 1)      (unbiased and never negative; Schulman 2020),

    both unbiased for the sequence-level KL. Summed, not averaged: a KL per completion, not per token, is what
    the RLHF objective E[r] - beta KL penalises. The reference is frozen: the gradient reaches ``log_probs``
    only.

    Args:
        log_probs: float ``(B, L)``, ln pi_theta of the sampled tokens (with or without gradient).
        ref_log_probs: float ``(B, L)``, ln pi_ref of the same tokens.
        completion_mask: bool ``(B, L)``, True on the completion tokens.
        estimator: ``"k1"`` or ``"k3"``.

    Returns:
        A float tensor ``(B,)`` (nats per completion), the dtype of ``log_probs``.

    Raises:
        ValueError: for shapes or dtypes that do not match, or an unknown estimator.
    """
    shape = _check_tensors(log_probs=log_probs, ref_log_probs=ref_log_probs)
    if len(shape) != 2:
        raise ValueError(f"log_probs must be (B, L); got {tuple(shape)}")
    _check_mask(completion_mask, shape)
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"estimator must be one of {KL_ESTIMATORS}; got {estimator!r}")
    r = ref_log_probs.detach() - log_probs
    per_token = -r if estimator == "k1" else torch.exp(r) - r - 1
    return (per_token * completion_mask).sum(dim=1)


# ----------------------------------------------------------------------------------------------- DPO


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor, ref_chosen_logps: torch.Tensor,
             ref_rejected_logps: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """The direct preference optimisation loss (Rafailov et al. 2023, eq. 7; TRL's ``DPOTrainer`` with
    ``loss_type="sigmoid"``):

        loss = -mean ln sigma(beta [(ln pi_theta(y_w|x) - ln pi_ref(y_w|x)) - (ln pi_theta(y_l|x) - ln pi_ref(y_l|x))]).

    It is the reward model's Bradley-Terry loss with the reward r(x, y) = beta ln(pi_theta(y|x) / pi_ref(y|x)),
    the reward under which pi_theta is the optimal KL-regularised policy; beta plays the role of the KL
    coefficient. The log-probabilities are those of whole completions (sums over their tokens,
    :func:`solutions.language_model.sequence_log_probs`). The reference is frozen: its log-probabilities are
    constants of the gradient. ln sigma is computed stably (``logsigmoid``).

    Args:
        chosen_logps: float ``(N,)``, ln pi_theta(y_w | x) of the preferred completions, with gradient.
        rejected_logps: float ``(N,)``, ln pi_theta(y_l | x).
        ref_chosen_logps: float ``(N,)``, ln pi_ref(y_w | x).
        ref_rejected_logps: float ``(N,)``, ln pi_ref(y_l | x).
        beta: > 0 (TRL's default 0.1).

    Returns:
        A scalar tensor, with gradient.

    Raises:
        ValueError: for tensors that are not floating point of one common shape (N,), N >= 1, or beta <= 0.
    """
    shape = _check_tensors(chosen_logps=chosen_logps, rejected_logps=rejected_logps,
                           ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    if len(shape) != 1 or shape[0] == 0:
        raise ValueError(f"the log-probabilities must be (N,) with N >= 1; got {tuple(shape)}")
    if _check_beta(beta, "beta") == 0:
        raise ValueError("beta must be positive")
    chosen_log_ratios = chosen_logps - ref_chosen_logps.detach()
    rejected_log_ratios = rejected_logps - ref_rejected_logps.detach()
    return -torch.nn.functional.logsigmoid(beta * (chosen_log_ratios - rejected_log_ratios)).mean()
