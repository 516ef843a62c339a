"""Chapter 3 answers with the mistakes students make, written the way a student might write them.

Each entry of ``BUGGY`` is ``(exercise, function, words the check's hint must contain)``.
"""

import numpy as np
import torch


def q_update_bootstrapping_at_the_end(Q, s, a, r, s_next, terminated, alpha, gamma):
    Q[s, a] = Q[s, a] + alpha * (r + gamma * Q[s_next].max() - Q[s, a])


def q_update_max_of_the_current_state(Q, s, a, r, s_next, terminated, alpha, gamma):
    best_next = 0.0 if terminated else Q[s].max()
    Q[s, a] += alpha * (r + gamma * best_next - Q[s, a])


def q_update_setting_the_target(Q, s, a, r, s_next, terminated, alpha, gamma):
    Q[s, a] = r + (0.0 if terminated else gamma * np.max(Q[s_next]))


def greedy_with_first_tie(q, epsilon, rng):
    if rng.random() < epsilon:
        return int(rng.integers(len(q)))
    return int(np.argmax(q))


def greedy_without_exploring(q, epsilon, rng):
    best = np.flatnonzero(q == np.max(q))
    return int(rng.choice(best))


def greedy_exploring_among_the_others(q, epsilon, rng):
    best = np.flatnonzero(q == np.max(q))
    others = np.setdiff1d(np.arange(len(q)), best)
    if rng.random() < epsilon and len(others) > 0:
        return int(rng.choice(others))
    return int(rng.choice(best))


def greedy_with_global_random(q, epsilon, rng):
    if np.random.random() < epsilon:
        return int(np.random.randint(len(q)))
    best = np.flatnonzero(q == np.max(q))
    return int(np.random.choice(best))


def softmax_overflowing(q, temperature):
    weights = np.exp(np.asarray(q) / temperature)
    return weights / weights.sum()


def softmax_times_temperature(q, temperature):
    z = np.asarray(q) * temperature
    weights = np.exp(z - z.max())
    return weights / weights.sum()


def bandit_dividing_before_counting(Q, N, a, r, alpha=None):
    if alpha is None:
        Q[a] += (r - Q[a]) / max(N[a], 1)
    else:
        Q[a] += alpha * (r - Q[a])
    N[a] += 1


def bandit_always_averaging(Q, N, a, r, alpha=None):
    N[a] += 1
    Q[a] = Q[a] + (r - Q[a]) / N[a]


def bandit_not_counting(Q, N, a, r, alpha=None):
    step = alpha if alpha is not None else 1 / (N[a] + 1)
    Q[a] += step * (r - Q[a])


def sarsa_with_max(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(Q[s_next])
    Q[s, a] += alpha * (target - Q[s, a])


def sarsa_bootstrapping_at_the_end(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    Q[s, a] += alpha * (r + gamma * Q[s_next, a_next] - Q[s, a])


def sarsa_setting_the_target(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    Q[s, a] = r if terminated else r + gamma * Q[s_next, a_next]


def linear_full_gradient(theta, features, next_features, r, terminated, alpha, gamma):
    q_next = next_features @ theta
    if terminated:
        delta = r - features @ theta
        theta += alpha * delta * features
    else:
        best = np.argmax(q_next)
        delta = r + gamma * q_next[best] - features @ theta
        theta += alpha * delta * (features - gamma * next_features[best])
    return delta


def linear_bootstrapping_at_the_end(theta, features, next_features, r, terminated, alpha, gamma):
    delta = r + gamma * np.max(next_features @ theta) - features @ theta
    theta += alpha * delta * features
    return delta


def linear_returning_a_copy(theta, features, next_features, r, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(next_features @ theta)
    delta = target - features @ theta
    theta = theta + alpha * delta * features
    return delta


def dqn_loss_online_target(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    target = rewards + gamma * (1 - terminated) * q_network(next_states).max(dim=1).values.detach()
    return torch.nn.functional.smooth_l1_loss(q, target)


def dqn_loss_without_no_grad(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    target = rewards + gamma * (1 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target)


def dqn_loss_ignoring_terminals(q_network, target_network, states, actions, rewards, next_states, terminated,
                                gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target)


def dqn_loss_max_over_batch(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(next_states).max(dim=0).values.max()
    return torch.nn.functional.smooth_l1_loss(q, target)


BUGGY = [
    ("q_learning_update", q_update_bootstrapping_at_the_end, "terminal"),
    ("q_learning_update", q_update_max_of_the_current_state, "*next* state"),
    ("q_learning_update", q_update_setting_the_target, "step alpha"),
    ("epsilon_greedy", greedy_with_first_tie, "break ties"),
    ("epsilon_greedy", greedy_without_exploring, "never explores"),
    ("epsilon_greedy", greedy_exploring_among_the_others, "*all* actions"),
    ("epsilon_greedy", greedy_with_global_random, "rng argument"),
    ("boltzmann_probabilities", softmax_overflowing, "subtract max(q)"),
    ("boltzmann_probabilities", softmax_times_temperature, "not exp(q * T)"),
    ("bandit_update", bandit_dividing_before_counting, "increment N[a] first"),
    ("bandit_update", bandit_always_averaging, "the step is alpha"),
    ("bandit_update", bandit_not_counting, "N was not updated"),
    ("sarsa_update", sarsa_with_max, "Q-learning's target"),
    ("sarsa_update", sarsa_bootstrapping_at_the_end, "terminal"),
    ("sarsa_update", sarsa_setting_the_target, "step alpha"),
    ("semi_gradient_q_update", linear_full_gradient, "semi-gradient"),
    ("semi_gradient_q_update", linear_bootstrapping_at_the_end, "terminal"),
    ("semi_gradient_q_update", linear_returning_a_copy, "in place"),
    ("dqn_loss", dqn_loss_online_target, "from target_network"),
    ("dqn_loss", dqn_loss_without_no_grad, "torch.no_grad()"),
    ("dqn_loss", dqn_loss_ignoring_terminals, "(1 - terminated)"),
    ("dqn_loss", dqn_loss_max_over_batch, "the loss should be"),
]
