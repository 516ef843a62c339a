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


def q_update_max_started_at_zero(Q, s, a, r, s_next, terminated, alpha, gamma):
    best = 0.0
    for value in Q[s_next]:
        if value > best:
            best = value
    target = r if terminated else r + gamma * best
    Q[s, a] += alpha * (target - Q[s, a])


def q_update_flag_is_true(Q, s, a, r, s_next, terminated, alpha, gamma):
    if terminated is True:
        target = r
    else:
        target = r + gamma * np.max(Q[s_next])
    Q[s, a] += alpha * (target - Q[s, a])


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


def greedy_with_noise_added_to_q(q, epsilon, rng):
    q += 1e-9 * rng.random(len(q))  # breaks ties at random, and writes into the caller's Q-table
    if rng.random() < epsilon:
        return int(rng.integers(len(q)))
    return int(np.argmax(q))


def greedy_with_global_random(q, epsilon, rng):
    if np.random.random() < epsilon:
        return int(np.random.randint(len(q)))
    best = np.flatnonzero(q == np.max(q))
    return int(np.random.choice(best))


def softmax_overflowing(q, temperature):
    weights = np.exp(np.asarray(q) / temperature)
    return weights / weights.sum()


def softmax_shifting_q_in_place(q, temperature):
    q -= np.max(q)
    weights = np.exp(q / temperature)
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


def bandit_without_default_alpha(Q, N, a, r, alpha):
    N[a] += 1
    step = 1.0 / N[a] if alpha is None else alpha
    Q[a] += step * (r - Q[a])


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


def linear_full_gradient(w, features, next_features, r, terminated, alpha, gamma):
    q_next = next_features @ w
    if terminated:
        delta = r - features @ w
        w += alpha * delta * features
    else:
        best = np.argmax(q_next)
        delta = r + gamma * q_next[best] - features @ w
        w += alpha * delta * (features - gamma * next_features[best])
    return delta


def linear_bootstrapping_at_the_end(w, features, next_features, r, terminated, alpha, gamma):
    delta = r + gamma * np.max(next_features @ w) - features @ w
    w += alpha * delta * features
    return delta


def linear_returning_a_copy(w, features, next_features, r, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(next_features @ w)
    delta = target - features @ w
    w = w + alpha * delta * features
    return delta


def linear_scaling_the_features_in_place(w, features, next_features, r, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(next_features @ w)
    delta = target - features @ w
    features *= alpha * delta
    w += features
    return float(delta)


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


def dqn_loss_without_squeeze(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions[:, None])
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target)


def dqn_loss_double(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        best = q_network(next_states).argmax(dim=1, keepdim=True)
        target = rewards + gamma * (1 - terminated) * target_network(next_states).gather(1, best).squeeze(1)
    return torch.nn.functional.smooth_l1_loss(q, target)


BUGGY = [
    ("q_learning_update", q_update_bootstrapping_at_the_end, "terminal"),
    ("q_learning_update", q_update_max_of_the_current_state, "*next* state"),
    ("q_learning_update", q_update_setting_the_target, "step alpha"),
    ("q_learning_update", q_update_max_started_at_zero, "started at 0"),
    ("q_learning_update", q_update_flag_is_true, "`if terminated:`"),
    ("epsilon_greedy", greedy_with_first_tie, "break ties"),
    ("epsilon_greedy", greedy_without_exploring, "never explores"),
    ("epsilon_greedy", greedy_exploring_among_the_others, "*all* actions"),
    ("epsilon_greedy", greedy_with_global_random, "rng argument"),
    ("epsilon_greedy", greedy_with_noise_added_to_q, "changed its input q"),
    ("boltzmann_probabilities", softmax_overflowing, "subtract max(q)"),
    ("boltzmann_probabilities", softmax_times_temperature, "not exp(q * T)"),
    ("boltzmann_probabilities", softmax_shifting_q_in_place, "changed its input q"),
    ("bandit_update", bandit_dividing_before_counting, "increment N[a] first"),
    ("bandit_update", bandit_always_averaging, "the step is alpha"),
    ("bandit_update", bandit_not_counting, "N was not updated"),
    ("bandit_update", bandit_without_default_alpha, "alpha=None"),
    ("sarsa_update", sarsa_with_max, "Q-learning's target"),
    ("sarsa_update", sarsa_bootstrapping_at_the_end, "terminal"),
    ("sarsa_update", sarsa_setting_the_target, "step alpha"),
    ("semi_gradient_q_update", linear_full_gradient, "semi-gradient"),
    ("semi_gradient_q_update", linear_bootstrapping_at_the_end, "terminal"),
    ("semi_gradient_q_update", linear_returning_a_copy, "in place"),
    ("semi_gradient_q_update", linear_scaling_the_features_in_place, "changed its input features"),
    ("dqn_loss", dqn_loss_online_target, "from target_network"),
    ("dqn_loss", dqn_loss_without_no_grad, "torch.no_grad()"),
    ("dqn_loss", dqn_loss_ignoring_terminals, "(1 - terminated)"),
    ("dqn_loss", dqn_loss_max_over_batch, "the loss should be"),
    ("dqn_loss", dqn_loss_without_squeeze, "squeeze(1)"),
    ("dqn_loss", dqn_loss_double, "double DQN"),
]
