"""Chapter 4 answers that are correct but written in other styles than the reference: explicit loops, vectorised
NumPy, torch autograd, other torch idioms, float32. Each must get full marks, visible and hidden
(tests/test_checks.py), and pass the rules for answers (tests/test_policy.py).

Each entry of ``CORRECT`` is ``(exercise, function)``.
"""

import numpy as np
import torch

# ---------------------------------------------------------------------------------------------------- reward-to-go


def rtg_double_loop(rewards, gamma, episode_ends):
    T = len(rewards)
    G = []
    for t in range(T):
        total, discount, k = 0.0, 1.0, t
        while True:
            total += discount * rewards[k]
            if episode_ends[k]:
                break
            discount *= gamma
            k += 1
        G.append(total)
    return G


def rtg_by_episode(rewards, gamma, episode_ends):
    rewards = np.asarray(rewards, dtype=float)
    cuts = np.flatnonzero(np.asarray(episode_ends))[:-1] + 1
    pieces = []
    for r in np.split(rewards, cuts):
        G = np.zeros_like(r)
        future = 0.0
        for t in range(len(r) - 1, -1, -1):
            future = r[t] + gamma * future
            G[t] = future
        pieces.append(G)
    return np.concatenate(pieces)


def rtg_in_torch(rewards, gamma, episode_ends):
    r = torch.as_tensor(np.asarray(rewards, dtype=float))
    ends = torch.as_tensor(np.asarray(episode_ends, dtype=bool))
    G = torch.zeros_like(r)
    for t in range(len(r) - 1, -1, -1):
        G[t] = r[t] + (0.0 if ends[t] else gamma * G[t + 1])
    return G


# ------------------------------------------------------------------------------ gradient of log softmax policy


def grad_log_pi_by_autograd(theta, x, a):
    theta_t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    log_pi = torch.log_softmax(torch.as_tensor(x, dtype=torch.float64) @ theta_t, dim=0)[a]
    log_pi.backward()
    return theta_t.grad.numpy()


def grad_log_pi_with_loops(theta, x, a):
    A, d = len(x), len(theta)
    h = [sum(theta[i] * x[b][i] for i in range(d)) for b in range(A)]
    top = max(h)
    weights = [np.exp(v - top) for v in h]
    total = sum(weights)
    pi = [w / total for w in weights]
    return np.array([x[a][i] - sum(pi[b] * x[b][i] for b in range(A)) for i in range(d)])


def grad_log_pi_float32(theta, x, a):
    h = (np.asarray(x, dtype=np.float32) @ np.asarray(theta, dtype=np.float32))
    pi = np.exp(h - h.max())
    pi /= pi.sum()
    return np.asarray(x, dtype=np.float32)[a] - pi @ np.asarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------------------- short corridor value


def corridor_by_iteration(p_right, gamma=1.0):
    v = [0.0, 0.0, 0.0, 0.0]  # state 3 is the goal
    for _ in range(1_000_000):
        new = [-1 + gamma * (p_right * v[1] + (1 - p_right) * v[0]),
               -1 + gamma * (p_right * v[0] + (1 - p_right) * v[2]),
               -1 + gamma * (p_right * v[3] + (1 - p_right) * v[1]),
               0.0]
        if max(abs(n - o) for n, o in zip(new, v, strict=True)) < 1e-13:
            return new[0]
        v = new
    return v[0]


def corridor_by_substitution(p_right, gamma=1.0):
    p, q = p_right, 1 - p_right
    # v2 = -1 + g q v1; v0 = (-1 + g p v1) / (1 - g q); v1 = -1 + g p v0 + g q v2
    a0, b0 = -1 / (1 - gamma * q), gamma * p / (1 - gamma * q)  # v0 = a0 + b0 v1
    a2, b2 = -1.0, gamma * q  # v2 = a2 + b2 v1
    v1 = (-1 + gamma * p * a0 + gamma * q * a2) / (1 - gamma * p * b0 - gamma * q * b2)
    return a0 + b0 * v1


# -------------------------------------------------------------------------------------------------- REINFORCE loss


def reinforce_loss_with_torch_sum(log_probs, returns, n_episodes):
    weights = returns.detach()
    return torch.sum(-log_probs * weights) / n_episodes


def reinforce_loss_with_no_grad(log_probs, returns, n_episodes):
    with torch.no_grad():
        weights = returns.clone()
    return -(log_probs * weights).sum().div(n_episodes)


def reinforce_loss_float32(log_probs, returns, n_episodes):
    return -(log_probs.float() * returns.detach().float()).sum() / float(n_episodes)


# ----------------------------------------------------------------------------------- advantages and value loss


def baseline_with_mse_loss(returns, values):
    advantages = (returns - values).detach()
    return advantages, torch.nn.functional.mse_loss(values, returns)


def baseline_step_by_step(returns, values):
    targets = returns.detach()
    errors = values - targets
    value_loss = (errors * errors).sum() / len(errors)
    return targets - values.detach(), value_loss


# ------------------------------------------------------------------------------------ sequence log-probabilities


def sequence_log_probs_with_loops(logits, tokens, completion_mask):
    B, L = tokens.shape
    totals = []
    for b in range(B):
        total = logits.new_zeros(())
        for t in range(1, L):
            if completion_mask[b, t]:
                total = total + torch.log_softmax(logits[b, t - 1], dim=-1)[tokens[b, t]]
        totals.append(total)
    return torch.stack(totals)


def sequence_log_probs_by_cross_entropy(logits, tokens, completion_mask):
    B, L, V = logits.shape
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1),
                                            reduction="none").reshape(B, L - 1)
    return -(nll * completion_mask[:, 1:]).sum(dim=-1)


def sequence_log_probs_by_distribution(logits, tokens, completion_mask):
    dist = torch.distributions.Categorical(logits=logits[:, :-1])
    log_p = dist.log_prob(tokens[:, 1:])
    return torch.where(completion_mask[:, 1:], log_p, torch.zeros_like(log_p)).sum(-1)


# ------------------------------------------------------------------------------------ REINFORCE for sequences


def sequence_loss_step_by_step(seq_log_probs, rewards):
    r = rewards.detach()
    advantages = r - r.mean()
    return -(advantages * seq_log_probs).sum() / len(seq_log_probs)


def sequence_loss_with_no_grad(seq_log_probs, rewards):
    with torch.no_grad():
        baseline = rewards.mean()
        advantages = rewards - baseline
    return torch.mean(-advantages * seq_log_probs)


CORRECT = [
    ("reward_to_go", rtg_double_loop),
    ("reward_to_go", rtg_by_episode),
    ("reward_to_go", rtg_in_torch),
    ("grad_log_softmax_policy", grad_log_pi_by_autograd),
    ("grad_log_softmax_policy", grad_log_pi_with_loops),
    ("grad_log_softmax_policy", grad_log_pi_float32),
    ("short_corridor_value", corridor_by_iteration),
    ("short_corridor_value", corridor_by_substitution),
    ("reinforce_loss", reinforce_loss_with_torch_sum),
    ("reinforce_loss", reinforce_loss_with_no_grad),
    ("reinforce_loss", reinforce_loss_float32),
    ("advantages_and_value_loss", baseline_with_mse_loss),
    ("advantages_and_value_loss", baseline_step_by_step),
    ("sequence_log_probs", sequence_log_probs_with_loops),
    ("sequence_log_probs", sequence_log_probs_by_cross_entropy),
    ("sequence_log_probs", sequence_log_probs_by_distribution),
    ("sequence_reinforce_loss", sequence_loss_step_by_step),
    ("sequence_reinforce_loss", sequence_loss_with_no_grad),
]
