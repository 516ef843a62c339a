"""Chapter 3 answers that are correct but written in other styles than the reference: explicit loops, float32
arithmetic, torch, other NumPy idioms. Each must get full marks, visible and hidden (tests/test_checks.py).

Each entry of ``CORRECT`` is ``(exercise, function)``.
"""

import math

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------- Q-learning update


def q_update_blending(Q, s, a, r, s_next, terminated, alpha, gamma):
    best = max(Q[s_next])  # Python's max over the row
    target = r + gamma * best * (not terminated)
    Q[s][a] = (1 - alpha) * Q[s][a] + alpha * target


def q_update_float32(Q, s, a, r, s_next, terminated, alpha, gamma):
    q = np.float32(Q[s, a])
    target = np.float32(r) + np.float32(gamma) * (np.float32(1) - np.float32(terminated)) * \
        Q[s_next].astype(np.float32).max()
    Q[s, a] = q + np.float32(alpha) * (target - q)


def q_update_with_a_mask(Q, s, a, r, s_next, terminated, alpha, gamma):
    td_error = r + gamma * (1 - terminated) * Q[s_next].max() - Q[s, a]
    Q[s, a] += alpha * td_error


# -------------------------------------------------------------------------------------------------- epsilon-greedy


def greedy_with_choice(q, epsilon, rng):
    if rng.random() < epsilon:
        return rng.choice(len(q))
    return rng.choice(np.flatnonzero(q == np.max(q)))


def greedy_from_the_probabilities(q, epsilon, rng):
    best = q == q.max()
    probabilities = epsilon / len(q) + (1 - epsilon) * best / best.sum()
    return int(rng.choice(len(q), p=probabilities))


def greedy_by_shuffling(q, epsilon, rng):
    if rng.uniform() < epsilon:
        return int(rng.integers(0, len(q)))
    order = rng.permutation(len(q))  # the first maximiser in a random order: ties broken uniformly
    return int(order[np.argmax(np.asarray(q)[order])])


# --------------------------------------------------------------------------------------------------------- softmax


def softmax_in_torch(q, temperature):
    return torch.softmax(torch.as_tensor(q) / temperature, dim=0)


def softmax_with_loops(q, temperature):
    top = max(q)
    weights = [math.exp((value - top) / temperature) for value in q]
    total = sum(weights)
    return np.array([weight / total for weight in weights])


def softmax_by_log_sum_exp(q, temperature):
    z = np.asarray(q, dtype=float) / temperature
    log_norm = z.max() + np.log(np.sum(np.exp(z - z.max())))
    return np.exp(z - log_norm)


# --------------------------------------------------------------------------------------------------------- bandits


def bandit_recomputing_the_mean(Q, N, a, r, alpha=None):
    N[a] = N[a] + 1
    if alpha is None:
        Q[a] = ((N[a] - 1) * Q[a] + r) / N[a]
    else:
        Q[a] = (1 - alpha) * Q[a] + alpha * r


def bandit_float32(Q, N, a, r, alpha=None):
    N[a] += 1
    step = np.float32(1) / np.float32(N[a]) if alpha is None else np.float32(alpha)
    Q[a] += step * (np.float32(r) - np.float32(Q[a]))


def bandit_with_or(Q, N, a, r, alpha=None):
    N[a] += 1
    Q[a] += (alpha or 1 / N[a]) * (r - Q[a])


# ----------------------------------------------------------------------------------------------------------- SARSA


def sarsa_with_a_mask(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    Q[s][a] += alpha * (r + gamma * Q[s_next][a_next] * (not terminated) - Q[s][a])


def sarsa_float32(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    bootstrap = np.float32(0.0) if terminated else np.float32(gamma) * np.float32(Q[s_next, a_next])
    Q[s, a] = np.float32(Q[s, a]) + np.float32(alpha) * (np.float32(r) + bootstrap - np.float32(Q[s, a]))


def sarsa_blending(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    if terminated:
        target = r
    else:
        target = r + gamma * Q[s_next, a_next]
    Q[s, a] = alpha * target + (1 - alpha) * Q[s, a]


# ---------------------------------------------------------------------------------------- semi-gradient Q-learning


def linear_with_einsum(w, features, next_features, r, terminated, alpha, gamma):
    estimate = np.einsum("i,i->", features, w)
    target = r if terminated else r + gamma * np.einsum("ad,d->a", next_features, w).max()
    delta = target - estimate
    np.add(w, alpha * delta * features, out=w)
    return delta


def linear_in_torch(w, features, next_features, r, terminated, alpha, gamma):
    weights = torch.from_numpy(w)  # shares memory with w
    f, f_next = torch.from_numpy(features), torch.from_numpy(next_features)
    with torch.no_grad():
        target = r if terminated else r + gamma * (f_next @ weights).max()
        delta = target - f @ weights
        weights += alpha * delta * f
    return float(delta)


def linear_with_loops(w, features, next_features, r, terminated, alpha, gamma):
    def value(f):
        return sum(w_i * f_i for w_i, f_i in zip(w, f, strict=True))

    delta = r - value(features)
    if not terminated:
        delta += gamma * max(value(f) for f in next_features)
    for i in range(len(w)):
        w[i] += alpha * delta * features[i]
    return delta


def linear_float32(w, features, next_features, r, terminated, alpha, gamma):
    w32, f32 = w.astype(np.float32), features.astype(np.float32)
    target = np.float32(r)
    if not terminated:
        target += np.float32(gamma) * (next_features.astype(np.float32) @ w32).max()
    delta = target - f32 @ w32
    w[:] = w32 + np.float32(alpha) * delta * f32
    return float(delta)


# -------------------------------------------------------------------------------------------------------- DQN loss


def dqn_loss_indexing(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states)[torch.arange(len(actions)), actions]
    best_next = target_network(next_states).max(dim=1)[0].detach()
    target = rewards + gamma * best_next * (1 - terminated)
    return torch.nn.HuberLoss()(q, target)


def dqn_loss_written_out(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = torch.gather(q_network(states), 1, actions.view(-1, 1)).view(-1)
    with torch.no_grad():
        going_on = torch.logical_not(terminated.bool()).float()
        target = rewards + gamma * going_on * torch.max(target_network(next_states), dim=1).values
    error = q - target
    return torch.where(error.abs() < 1, 0.5 * error**2, error.abs() - 0.5).mean()


def dqn_loss_float64(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions.unsqueeze(-1)).squeeze(-1).double()
    with torch.no_grad():
        target = rewards.double() + gamma * (1.0 - terminated.double()) * \
            target_network(next_states).amax(dim=1).double()
    return torch.nn.functional.smooth_l1_loss(q, target, beta=1.0)


CORRECT = [
    ("q_learning_update", q_update_blending),
    ("q_learning_update", q_update_float32),
    ("q_learning_update", q_update_with_a_mask),
    ("epsilon_greedy", greedy_with_choice),
    ("epsilon_greedy", greedy_from_the_probabilities),
    ("epsilon_greedy", greedy_by_shuffling),
    ("boltzmann_probabilities", softmax_in_torch),
    ("boltzmann_probabilities", softmax_with_loops),
    ("boltzmann_probabilities", softmax_by_log_sum_exp),
    ("bandit_update", bandit_recomputing_the_mean),
    ("bandit_update", bandit_float32),
    ("bandit_update", bandit_with_or),
    ("sarsa_update", sarsa_with_a_mask),
    ("sarsa_update", sarsa_float32),
    ("sarsa_update", sarsa_blending),
    ("semi_gradient_q_update", linear_with_einsum),
    ("semi_gradient_q_update", linear_in_torch),
    ("semi_gradient_q_update", linear_with_loops),
    ("semi_gradient_q_update", linear_float32),
    ("dqn_loss", dqn_loss_indexing),
    ("dqn_loss", dqn_loss_written_out),
    ("dqn_loss", dqn_loss_float64),
]
