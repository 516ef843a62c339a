"""Chapter 5 answers with the mistakes students make, written the way a student might write them.

Each entry of ``BUGGY`` is ``(exercise, function, words the check's output must contain)``: the hint that names the
mistake, or a message stating what is wrong with the output.
"""

import numpy as np
import torch

# ------------------------------------------------------------------------------------------------ importance ratio


def ratio_inverted(log_probs, old_log_probs):
    return torch.exp(old_log_probs.detach() - log_probs)


def ratio_of_probabilities(log_probs, old_log_probs):
    return log_probs.exp() / old_log_probs.detach().exp()


def ratio_not_detached(log_probs, old_log_probs):
    return torch.exp(log_probs - old_log_probs)


def ratio_without_exp(log_probs, old_log_probs):
    return log_probs - old_log_probs.detach()


def ratio_as_numpy(log_probs, old_log_probs):
    return torch.tensor(np.exp(log_probs.detach().numpy() - old_log_probs.detach().numpy()))


# ------------------------------------------------------------------------------------------------ PPO clipped loss


def ppo_max(log_probs, old_log_probs, advantages, cliprange=0.2):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    A = advantages.detach()
    return -torch.max(ratio * A, torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * A).mean()


def ppo_clipping_the_advantage(log_probs, old_log_probs, advantages, cliprange=0.2):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    A = advantages.detach()
    return -torch.min(ratio * A, ratio * A.clamp(1 - cliprange, 1 + cliprange)).mean()


def ppo_no_minus(log_probs, old_log_probs, advantages, cliprange=0.2):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    A = advantages.detach()
    return torch.min(ratio * A, torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * A).mean()


def ppo_ratio_inverted(log_probs, old_log_probs, advantages, cliprange=0.2):
    ratio = torch.exp(old_log_probs.detach() - log_probs)
    A = advantages.detach()
    return -torch.min(ratio * A, torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * A).mean()


def ppo_advantages_not_detached(log_probs, old_log_probs, advantages, cliprange=0.2):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    return -torch.min(ratio * advantages, torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * advantages).mean()


def ppo_ignoring_cliprange(log_probs, old_log_probs, advantages, cliprange=0.2):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    A = advantages.detach()
    return -torch.min(ratio * A, torch.clamp(ratio, 0.8, 1.2) * A).mean()


def ppo_without_the_clip(log_probs, old_log_probs, advantages, cliprange=0.2):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    return -(ratio * advantages.detach()).mean()


# --------------------------------------------------------------------------------------------- clipped value loss


def value_loss_min(values, old_values, returns, cliprange_value=0.2):
    old, G = old_values.detach(), returns.detach()
    clipped = old + (values - old).clamp(-cliprange_value, cliprange_value)
    return torch.min((values - G) ** 2, (clipped - G) ** 2).mean()


def value_loss_halved(values, old_values, returns, cliprange_value=0.2):
    old, G = old_values.detach(), returns.detach()
    clipped = old + (values - old).clamp(-cliprange_value, cliprange_value)
    return 0.5 * torch.max((values - G) ** 2, (clipped - G) ** 2).mean()


def value_loss_clipped_around_returns(values, old_values, returns, cliprange_value=0.2):
    G = returns.detach()
    clipped = G + (values - G).clamp(-cliprange_value, cliprange_value)
    return torch.max((values - G) ** 2, (clipped - G) ** 2).mean()


def value_loss_returns_not_detached(values, old_values, returns, cliprange_value=0.2):
    old = old_values.detach()
    clipped = old + (values - old).clamp(-cliprange_value, cliprange_value)
    return torch.max((values - returns) ** 2, (clipped - returns) ** 2).mean()


# ------------------------------------------------------------------------------------------------------------ GAE


def gae_truncation_as_termination(rewards, values, next_values, terminated, truncated, gamma, lam):
    rewards, values, next_values = map(np.asarray, (rewards, values, next_values))
    done = np.asarray(terminated) | np.asarray(truncated)
    A = np.zeros(rewards.shape)
    last = 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] * (1 - done[t]) - values[t]
        last = delta + gamma * lam * (1 - done[t]) * last
        A[t] = last
    return A


def gae_not_cut_at_episode_ends(rewards, values, next_values, terminated, truncated, gamma, lam):
    rewards, values, next_values = map(np.asarray, (rewards, values, next_values))
    terminated = np.asarray(terminated)
    A = np.zeros(rewards.shape)
    last = 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] * (1 - terminated[t]) - values[t]
        last = delta + gamma * lam * last
        A[t] = last
    return A


def gae_next_value_from_the_next_step(rewards, values, next_values, terminated, truncated, gamma, lam):
    """V(S_(t+1)) read from values[t + 1], the classic bug with vector environments' autoreset."""
    rewards, values, next_values = map(np.asarray, (rewards, values, next_values))
    terminated, truncated = np.asarray(terminated), np.asarray(truncated)
    T = len(rewards)
    A = np.zeros(rewards.shape)
    last = 0.0
    for t in reversed(range(T)):
        v_next = next_values[t] if t == T - 1 else values[t + 1]
        delta = rewards[t] + gamma * v_next * (1 - terminated[t]) - values[t]
        last = delta + gamma * lam * (1 - (terminated[t] | truncated[t])) * last
        A[t] = last
    return A


def gae_without_lambda(rewards, values, next_values, terminated, truncated, gamma, lam):
    rewards, values, next_values = map(np.asarray, (rewards, values, next_values))
    terminated, truncated = np.asarray(terminated), np.asarray(truncated)
    A = np.zeros(rewards.shape)
    last = 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] * (1 - terminated[t]) - values[t]
        last = delta + gamma * (1 - (terminated[t] | truncated[t])) * last
        A[t] = last
    return A


def gae_returns_instead(rewards, values, next_values, terminated, truncated, gamma, lam):
    rewards, values, next_values = map(np.asarray, (rewards, values, next_values))
    terminated, truncated = np.asarray(terminated), np.asarray(truncated)
    A = np.zeros(rewards.shape)
    last = 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] * (1 - terminated[t]) - values[t]
        last = delta + gamma * lam * (1 - (terminated[t] | truncated[t])) * last
        A[t] = last
    return A + values


def gae_bootstrapping_terminal_states(rewards, values, next_values, terminated, truncated, gamma, lam):
    rewards, values, next_values = map(np.asarray, (rewards, values, next_values))
    ends = np.asarray(terminated) | np.asarray(truncated)
    A = np.zeros(rewards.shape)
    last = 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_values[t] - values[t]
        last = delta + gamma * lam * (1 - ends[t]) * last
        A[t] = last
    return A


# ---------------------------------------------------------------------------------------------- group advantages


def group_advantages_batch_mean(rewards, num_generations, scale_rewards="group", eps=1e-4):
    groups = rewards.view(-1, num_generations)
    centred = rewards - rewards.mean()
    if scale_rewards == "group":
        return centred / (groups.std(dim=1).repeat_interleave(num_generations) + eps)
    if scale_rewards == "batch":
        return centred / (rewards.std() + eps)
    return centred


def group_advantages_population_std(rewards, num_generations, scale_rewards="group", eps=1e-4):
    r = rewards.detach().numpy().reshape(-1, num_generations)
    centred = r - r.mean(axis=1, keepdims=True)
    if scale_rewards == "group":
        centred = centred / (r.std(axis=1, keepdims=True) + eps)
    elif scale_rewards == "batch":
        centred = centred / (r.std() + eps)
    return torch.tensor(centred.reshape(-1))


def group_advantages_no_eps(rewards, num_generations, scale_rewards="group", eps=1e-4):
    groups = rewards.reshape(-1, num_generations)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        centred = centred / groups.std(dim=1, keepdim=True)
    elif scale_rewards == "batch":
        centred = centred / rewards.std()
    return centred.flatten()


def group_advantages_interleaved(rewards, num_generations, scale_rewards="group", eps=1e-4):
    table = rewards.reshape(num_generations, -1)  # column p: prompt p's completions (wrong layout)
    centred = table - table.mean(dim=0, keepdim=True)
    if scale_rewards == "group":
        centred = centred / (table.std(dim=0, keepdim=True) + eps)
    elif scale_rewards == "batch":
        centred = centred / (rewards.std() + eps)
    return centred.reshape(-1)


def group_advantages_always_scaled(rewards, num_generations, scale_rewards="group", eps=1e-4):
    groups = rewards.reshape(-1, num_generations)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale_rewards == "batch":
        return (centred / (rewards.std() + eps)).reshape(-1)
    return (centred / (groups.std(dim=1, keepdim=True) + eps)).reshape(-1)


# ----------------------------------------------------------------------------------------------------------- k3


def kl_k3_reversed(log_probs, ref_log_probs):
    r = log_probs - ref_log_probs.detach()
    return torch.exp(r) - r - 1


def kl_k1(log_probs, ref_log_probs):
    return log_probs - ref_log_probs.detach()


def kl_k3_not_detached(log_probs, ref_log_probs):
    r = ref_log_probs - log_probs
    return torch.exp(r) - r - 1


def kl_k3_without_minus_one(log_probs, ref_log_probs):
    r = ref_log_probs.detach() - log_probs
    return r.exp() - r


# ----------------------------------------------------------------------------------------------------- GRPO loss


def _per_token(log_probs, old_log_probs, advantages, ref_log_probs, beta, epsilon):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    A = advantages.detach()[:, None]
    loss = -torch.min(ratio * A, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * A)
    if beta > 0:
        r = ref_log_probs.detach() - log_probs
        loss = loss + beta * (torch.exp(r) - r - 1)
    return loss


def grpo_loss_token_mean_always(log_probs, old_log_probs, advantages, completion_mask, *, ref_log_probs=None,
                                beta=0.0, epsilon=0.2, loss_type="grpo", max_completion_length=None):
    per_token = _per_token(log_probs, old_log_probs, advantages, ref_log_probs, beta, epsilon)
    mask = completion_mask.float()
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (per_token.shape[0] * max_completion_length)
    return (per_token * mask).sum() / mask.sum()


def grpo_loss_ignoring_the_mask(log_probs, old_log_probs, advantages, completion_mask, *, ref_log_probs=None,
                                beta=0.0, epsilon=0.2, loss_type="grpo", max_completion_length=None):
    per_token = _per_token(log_probs, old_log_probs, advantages, ref_log_probs, beta, epsilon)
    if loss_type == "grpo":
        return per_token.mean(dim=1).mean()
    if loss_type == "dr_grpo":
        return per_token.sum() / (per_token.shape[0] * max_completion_length)
    return per_token.mean()


def grpo_loss_dr_grpo_by_token_count(log_probs, old_log_probs, advantages, completion_mask, *,
                                     ref_log_probs=None, beta=0.0, epsilon=0.2, loss_type="grpo",
                                     max_completion_length=None):
    per_token = _per_token(log_probs, old_log_probs, advantages, ref_log_probs, beta, epsilon) * completion_mask
    if loss_type == "grpo":
        return (per_token.sum(1) / completion_mask.sum(1)).mean()
    return per_token.sum() / completion_mask.sum()


def grpo_loss_kl_subtracted(log_probs, old_log_probs, advantages, completion_mask, *, ref_log_probs=None,
                            beta=0.0, epsilon=0.2, loss_type="grpo", max_completion_length=None):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    A = advantages.detach().unsqueeze(1)
    per_token = -torch.min(ratio * A, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * A)
    if beta:
        r = ref_log_probs.detach() - log_probs
        per_token = per_token - beta * (torch.exp(r) - r - 1)
    m = completion_mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * m).sum(1) / m.sum(1)).mean()
    if loss_type == "dr_grpo":
        return (per_token * m).sum() / (len(m) * max_completion_length)
    return (per_token * m).sum() / m.sum()


def grpo_loss_max(log_probs, old_log_probs, advantages, completion_mask, *, ref_log_probs=None, beta=0.0,
                  epsilon=0.2, loss_type="grpo", max_completion_length=None):
    ratio = torch.exp(log_probs - old_log_probs.detach())
    A = advantages.detach().unsqueeze(1)
    per_token = -torch.max(ratio * A, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * A)
    if beta:
        r = ref_log_probs.detach() - log_probs
        per_token = per_token + beta * (torch.exp(r) - r - 1)
    m = completion_mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * m).sum(1) / m.sum(1)).mean()
    if loss_type == "dr_grpo":
        return (per_token * m).sum() / (len(m) * max_completion_length)
    return (per_token * m).sum() / m.sum()


def grpo_loss_old_not_detached(log_probs, old_log_probs, advantages, completion_mask, *, ref_log_probs=None,
                               beta=0.0, epsilon=0.2, loss_type="grpo", max_completion_length=None):
    ratio = torch.exp(log_probs - old_log_probs)
    A = advantages.detach().unsqueeze(1)
    per_token = -torch.min(ratio * A, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * A)
    if beta:
        r = ref_log_probs.detach() - log_probs
        per_token = per_token + beta * (torch.exp(r) - r - 1)
    m = completion_mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * m).sum(1) / m.sum(1)).mean()
    if loss_type == "dr_grpo":
        return (per_token * m).sum() / (len(m) * max_completion_length)
    return (per_token * m).sum() / m.sum()


BUGGY = [
    ("importance_ratio", ratio_inverted, "yours is inverted"),
    ("importance_ratio", ratio_of_probabilities, "0 / 0 when the probabilities underflow"),
    ("importance_ratio", ratio_not_detached, "detach the old log-probabilities"),
    ("importance_ratio", ratio_without_exp, "exponentiate the difference"),
    ("importance_ratio", ratio_as_numpy, "keep the computation in torch"),
    ("ppo_clip_loss", ppo_max, "take the minimum of the two terms"),
    ("ppo_clip_loss", ppo_clipping_the_advantage, "not the advantage"),
    ("ppo_clip_loss", ppo_no_minus, "minimise the *negative* of the clipped objective"),
    ("ppo_clip_loss", ppo_ratio_inverted, "yours is inverted"),
    ("ppo_clip_loss", ppo_advantages_not_detached, "detach the advantages"),
    ("ppo_clip_loss", ppo_ignoring_cliprange, "Smallest failing case"),
    ("ppo_clip_loss", ppo_without_the_clip, "clip the ratio: the objective is min"),
    ("clipped_value_loss", value_loss_min, "take the larger (max)"),
    ("clipped_value_loss", value_loss_halved, "without the factor 1/2"),
    ("clipped_value_loss", value_loss_clipped_around_returns, "around the *old* value"),
    ("clipped_value_loss", value_loss_returns_not_detached, "detach the returns"),
    ("gae", gae_truncation_as_termination, "a truncated episode did not reach a terminal state"),
    ("gae", gae_not_cut_at_episode_ends, "stop the sum at the end of each episode"),
    ("gae", gae_next_value_from_the_next_step, "values[t + 1] is the first state of the next episode"),
    ("gae", gae_without_lambda, "lam is missing"),
    ("gae", gae_returns_instead, "not the lambda-returns"),
    ("gae", gae_bootstrapping_terminal_states, "a terminal state has value 0"),
    ("group_advantages", group_advantages_batch_mean, "not the mean of the whole batch"),
    ("group_advantages", group_advantages_population_std, "use the sample standard deviation"),
    ("group_advantages", group_advantages_no_eps, "add eps to the standard deviation"),
    ("group_advantages", group_advantages_interleaved, "the groups lie one after the other"),
    ("group_advantages", group_advantages_always_scaled, "only subtracts the group mean"),
    ("kl_k3", kl_k3_reversed, "yours is reversed"),
    ("kl_k3", kl_k1, "that is the plain estimate"),
    ("kl_k3", kl_k3_not_detached, "detach the reference log-probabilities"),
    ("kl_k3", kl_k3_without_minus_one, "subtract 1"),
    ("grpo_loss", grpo_loss_token_mean_always, "averages each completion's token losses over its own length"),
    ("grpo_loss", grpo_loss_ignoring_the_mask, "count only the completion tokens"),
    ("grpo_loss", grpo_loss_dr_grpo_by_token_count, "not by the number of completion tokens"),
    ("grpo_loss", grpo_loss_kl_subtracted, "the KL penalty raises the loss"),
    ("grpo_loss", grpo_loss_max, "take the minimum of rho A and clip(rho) A"),
    ("grpo_loss", grpo_loss_old_not_detached, "detach the old log-probabilities"),
]
