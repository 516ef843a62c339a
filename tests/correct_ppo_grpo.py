"""Chapter 5 answers that are correct but written in other styles than the reference: explicit loops, torch.where,
other torch idioms, NumPy. Each must get full marks, visible and hidden (tests/test_checks.py), and pass the rules
for answers (tests/test_policy.py).

Each entry of ``CORRECT`` is ``(exercise, function)``.
"""

import numpy as np
import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------------------------ importance ratio


def ratio_log_difference_first(log_probs, old_log_probs):
    with torch.no_grad():
        old = old_log_probs.clone()
    log_ratio = log_probs - old
    return log_ratio.exp()


# ------------------------------------------------------------------------------------------------ PPO clipped loss


def ppo_by_advantage_sign(log_probs, old_log_probs, advantages, cliprange=0.2):
    """For A >= 0 the objective is min(rho, 1 + eps) A, for A < 0 it is max(rho, 1 - eps) A."""
    rho = torch.exp(log_probs - old_log_probs.detach())
    A = advantages.detach()
    capped = torch.where(A >= 0, torch.clamp(rho, max=1 + cliprange), torch.clamp(rho, min=1 - cliprange))
    return -(capped * A).mean()


def ppo_with_minimum(log_probs, old_log_probs, advantages, cliprange=0.2):
    ratio = (log_probs - old_log_probs.detach()).exp()
    adv = advantages.detach()
    surrogate1 = ratio * adv
    surrogate2 = torch.clip(ratio, 1.0 - cliprange, 1.0 + cliprange) * adv
    objective = torch.minimum(surrogate1, surrogate2)
    return -objective.sum() / objective.numel()


# --------------------------------------------------------------------------------------------- clipped value loss


def value_loss_with_mse(values, old_values, returns, cliprange_value=0.2):
    targets = returns.detach()
    old = old_values.detach()
    v_clipped = torch.clamp(values, old - cliprange_value, old + cliprange_value)
    unclipped = F.mse_loss(values, targets, reduction="none")
    clipped = F.mse_loss(v_clipped, targets, reduction="none")
    return torch.maximum(unclipped, clipped).mean()


# ------------------------------------------------------------------------------------------------------------ GAE


def gae_sum_over_each_episode(rewards, values, next_values, terminated, truncated, gamma, lam):
    """A_t as the explicit sum over l of (gamma lam)^l delta_(t+l), up to the end of t's episode or the rollout."""
    r = np.array(rewards, dtype=float)
    v = np.array(values, dtype=float)
    nv = np.array(next_values, dtype=float)
    term = np.array(terminated, dtype=bool)
    ends = term | np.array(truncated, dtype=bool)
    delta = r + gamma * np.where(term, 0.0, nv) - v
    A = np.zeros_like(delta)
    T = len(r)
    for t in range(T):
        weight = np.ones_like(delta[0])
        alive = np.ones_like(delta[0])
        for k in range(t, T):
            A[t] += alive * weight * delta[k]
            alive = alive * (1 - ends[k])
            weight = weight * gamma * lam
    return A


def gae_per_environment(rewards, values, next_values, terminated, truncated, gamma, lam):
    """One environment (column) at a time, with plain Python floats."""
    r = np.asarray(rewards, dtype=float)
    if r.ndim == 1:
        columns = [r[:, None], np.asarray(values, dtype=float)[:, None],
                   np.asarray(next_values, dtype=float)[:, None], np.asarray(terminated)[:, None],
                   np.asarray(truncated)[:, None]]
    else:
        columns = [r, np.asarray(values, dtype=float), np.asarray(next_values, dtype=float),
                   np.asarray(terminated), np.asarray(truncated)]
    rr, vv, nxt, te, tr = columns
    out = np.zeros(rr.shape)
    for n in range(rr.shape[1]):
        advantage = 0.0
        for t in reversed(range(rr.shape[0])):
            if te[t, n]:
                delta = rr[t, n] - vv[t, n]
                advantage = delta
            elif tr[t, n]:
                delta = rr[t, n] + gamma * nxt[t, n] - vv[t, n]
                advantage = delta
            else:
                delta = rr[t, n] + gamma * nxt[t, n] - vv[t, n]
                advantage = delta + gamma * lam * advantage
            out[t, n] = advantage
    return out if r.ndim == 2 else out[:, 0]


# ---------------------------------------------------------------------------------------------- group advantages


def group_advantages_loop(rewards, num_generations, scale_rewards="group", eps=1e-4):
    out = torch.zeros_like(rewards)
    batch_std = rewards.std()
    for start in range(0, len(rewards), num_generations):
        group = rewards[start:start + num_generations]
        centred = group - group.mean()
        if scale_rewards == "group":
            centred = centred / (group.std() + eps)
        elif scale_rewards == "batch":
            centred = centred / (batch_std + eps)
        out[start:start + num_generations] = centred
    return out


def group_advantages_numpy(rewards, num_generations, scale_rewards="group", eps=1e-4):
    r = rewards.detach().cpu().numpy().astype(np.float64)
    groups = r.reshape(-1, num_generations)
    means = np.repeat(groups.mean(axis=1), num_generations)
    advantages = r - means
    if scale_rewards == "group":
        advantages = advantages / (np.repeat(groups.std(axis=1, ddof=1), num_generations) + eps)
    elif scale_rewards == "batch":
        advantages = advantages / (r.std(ddof=1) + eps)
    return torch.from_numpy(advantages)


# ----------------------------------------------------------------------------------------------------------- k3


def kl_k3_expm1(log_probs, ref_log_probs):
    log_ratio = ref_log_probs.detach() - log_probs
    return torch.expm1(log_ratio) - log_ratio


# ----------------------------------------------------------------------------------------------------- GRPO loss


def grpo_loss_row_by_row(log_probs, old_log_probs, advantages, completion_mask, *, ref_log_probs=None, beta=0.0,
                         epsilon=0.2, loss_type="grpo", max_completion_length=None):
    B = log_probs.shape[0]
    row_sums, row_counts = [], []
    for i in range(B):
        keep = completion_mask[i]
        lp = log_probs[i][keep]
        ratio = torch.exp(lp - old_log_probs[i][keep].detach())
        a = advantages[i].detach()
        loss = -torch.minimum(ratio * a, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * a)
        if beta > 0:
            r = ref_log_probs[i][keep].detach() - lp
            loss = loss + beta * (torch.exp(r) - r - 1)
        row_sums.append(loss.sum())
        row_counts.append(keep.sum())
    sums = torch.stack(row_sums)
    counts = torch.stack(row_counts).to(sums.dtype)
    if loss_type == "grpo":
        return (sums / counts.clamp(min=1)).mean()
    if loss_type == "dr_grpo":
        return sums.sum() / (B * max_completion_length)
    return sums.sum() / counts.sum()


def grpo_loss_with_where(log_probs, old_log_probs, advantages, completion_mask, *, ref_log_probs=None, beta=0.0,
                         epsilon=0.2, loss_type="grpo", max_completion_length=None):
    coef_1 = torch.exp(log_probs - old_log_probs.detach())
    coef_2 = torch.clamp(coef_1, 1 - epsilon, 1 + epsilon)
    adv = advantages.detach().view(-1, 1)
    per_token = -torch.min(coef_1 * adv, coef_2 * adv)
    if beta != 0.0:
        diff = ref_log_probs.detach() - log_probs
        per_token = per_token + beta * (torch.exp(diff) - diff - 1)
    per_token = torch.where(completion_mask, per_token, torch.zeros_like(per_token))
    n_tokens = completion_mask.sum(dim=-1)
    if loss_type == "grpo":
        return (per_token.sum(dim=-1) / n_tokens).mean()
    if loss_type in ("bnpo", "dapo"):
        return per_token.sum() / n_tokens.sum()
    return per_token.sum() / (per_token.size(0) * max_completion_length)


CORRECT = [
    ("importance_ratio", ratio_log_difference_first),
    ("ppo_clip_loss", ppo_by_advantage_sign),
    ("ppo_clip_loss", ppo_with_minimum),
    ("clipped_value_loss", value_loss_with_mse),
    ("gae", gae_sum_over_each_episode),
    ("gae", gae_per_environment),
    ("group_advantages", group_advantages_loop),
    ("group_advantages", group_advantages_numpy),
    ("kl_k3", kl_k3_expm1),
    ("grpo_loss", grpo_loss_row_by_row),
    ("grpo_loss", grpo_loss_with_where),
]
