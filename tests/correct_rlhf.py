"""Chapter 6 answers that are correct but written in other styles than the reference: explicit loops,
F.cross_entropy, boolean indexing, softplus, NumPy. Each must get full marks, visible and hidden
(tests/test_checks.py), and pass the rules for answers (tests/test_policy.py).

Each entry of ``CORRECT`` is ``(exercise, function)``.
"""

import itertools

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------- SFT loss


def sft_with_cross_entropy_and_ignore_index(logits, tokens, completion_mask):
    targets = tokens[:, 1:].clone()
    targets[~completion_mask[:, 1:]] = -100  # ignored, as in Hugging Face's labels
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def sft_by_boolean_indexing(logits, tokens, completion_mask):
    log_p = logits.log_softmax(dim=-1)[:, :-1]
    picked = torch.gather(log_p, -1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    return -picked[completion_mask[:, 1:]].mean()


def sft_with_a_loop(logits, tokens, completion_mask):
    total, count = 0.0, 0
    B, L = tokens.shape
    for b in range(B):
        for t in range(1, L):
            if completion_mask[b, t]:
                total = total - torch.log_softmax(logits[b, t - 1], dim=0)[tokens[b, t]]
                count += 1
    return total / count


# ----------------------------------------------------------------------------------------------- ranking pairs


def pairs_with_itertools(ranking):
    return list(itertools.combinations([int(x) for x in ranking], 2))


def pairs_from_the_worst_up(ranking):
    """The same pairs, listed in another order (and as a numpy array)."""
    ranking = list(ranking)
    pairs = []
    for j in reversed(range(len(ranking))):
        for i in range(j):
            pairs.append([ranking[i], ranking[j]])
    return np.array(pairs, dtype=int).reshape(-1, 2)


# ------------------------------------------------------------------------------------------ reward model loss


def reward_with_softplus(rewards_chosen, rewards_rejected):
    """-ln sigma(x) = softplus(-x) = ln(1 + exp(-x)), computed stably by torch."""
    losses = F.softplus(rewards_rejected - rewards_chosen)
    return losses.mean(dim=-1).mean()


def reward_per_prompt_loop(rewards_chosen, rewards_rejected):
    if rewards_chosen.dim() == 1:
        rewards_chosen, rewards_rejected = rewards_chosen[:, None], rewards_rejected[:, None]
    per_prompt = []
    for chosen, rejected in zip(rewards_chosen, rewards_rejected):
        n_pairs = chosen.shape[0]
        per_prompt.append(-F.logsigmoid(chosen - rejected).sum() / n_pairs)
    return torch.stack(per_prompt).mean()


# ------------------------------------------------------------------------------------------ pairwise accuracy


def accuracy_with_torch(rewards_chosen, rewards_rejected):
    c, r = torch.as_tensor(rewards_chosen), torch.as_tensor(rewards_rejected)
    return ((c > r).double() + 0.5 * (c == r).double()).mean().item()


def accuracy_with_sign(rewards_chosen, rewards_rejected):
    """sign(difference) is +1, 0 or -1: (1 + sign) / 2 is 1, 1/2 or 0."""
    d = np.asarray(rewards_chosen, dtype=float) - np.asarray(rewards_rejected, dtype=float)
    return float(np.mean((1 + np.sign(d)) / 2))


# ------------------------------------------------------------------------------------------ per-token rewards


def rewards_with_a_loop(scores, log_probs, ref_log_probs, completion_mask, kl_coef):
    lp, rf = log_probs.detach(), ref_log_probs.detach()
    rewards = torch.zeros_like(lp)
    for b in range(lp.shape[0]):
        positions = torch.nonzero(completion_mask[b]).flatten()
        for t in positions:
            rewards[b, t] = -kl_coef * (lp[b, t] - rf[b, t])
        rewards[b, positions[-1]] += scores[b]
    return rewards


def rewards_with_one_hot(scores, log_probs, ref_log_probs, completion_mask, kl_coef):
    with torch.no_grad():
        kl = (log_probs - ref_log_probs).masked_fill(~completion_mask, 0.0)
        lengths = completion_mask.sum(1)
        start = completion_mask.float().argmax(1)
        last = start + lengths - 1
        one_hot = F.one_hot(last, completion_mask.shape[1]).to(log_probs.dtype)
        return -kl_coef * kl + one_hot * scores[:, None]


# ------------------------------------------------------------------------------------------------ sequence KL


def kl_with_masked_fill(log_probs, ref_log_probs, completion_mask, estimator="k1"):
    log_ratio = (log_probs - ref_log_probs.detach()).masked_fill(~completion_mask, 0.0)
    if estimator == "k1":
        return log_ratio.sum(-1)
    return (torch.exp(-log_ratio) + log_ratio - 1).sum(-1)


def kl_with_a_loop(log_probs, ref_log_probs, completion_mask, estimator="k1"):
    out = []
    for lp, rf, m in zip(log_probs, ref_log_probs.detach(), completion_mask):
        r = rf[m] - lp[m]
        out.append((-r).sum() if estimator == "k1" else (r.exp() - r - 1).sum())
    return torch.stack(out)


# ---------------------------------------------------------------------------------------------------- DPO loss


def dpo_with_softplus(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    pi_logratios = chosen_logps - rejected_logps
    ref_logratios = (ref_chosen_logps - ref_rejected_logps).detach()
    return F.softplus(-beta * (pi_logratios - ref_logratios)).mean()


def dpo_with_implicit_rewards(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    with torch.no_grad():
        ref_c, ref_r = ref_chosen_logps.clone(), ref_rejected_logps.clone()
    chosen_rewards = beta * (chosen_logps - ref_c)
    rejected_rewards = beta * (rejected_logps - ref_r)
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


CORRECT = [
    ("sft_loss", sft_with_cross_entropy_and_ignore_index),
    ("sft_loss", sft_by_boolean_indexing),
    ("sft_loss", sft_with_a_loop),
    ("ranking_to_pairs", pairs_with_itertools),
    ("ranking_to_pairs", pairs_from_the_worst_up),
    ("reward_model_loss", reward_with_softplus),
    ("reward_model_loss", reward_per_prompt_loop),
    ("pairwise_accuracy", accuracy_with_torch),
    ("pairwise_accuracy", accuracy_with_sign),
    ("per_token_rewards", rewards_with_a_loop),
    ("per_token_rewards", rewards_with_one_hot),
    ("sequence_kl", kl_with_masked_fill),
    ("sequence_kl", kl_with_a_loop),
    ("dpo_loss", dpo_with_softplus),
    ("dpo_loss", dpo_with_implicit_rewards),
]
