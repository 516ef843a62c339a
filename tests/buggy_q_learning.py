"""Chapter 3 answers with the mistakes students make, written the way a student might write them.

Each entry of ``BUGGY`` is ``(exercise, function, words the check's output must contain)``: the hint that names the
mistake, or a message stating what is wrong with the output (an input modified, a crash), or "Smallest failing
case" for a mistake the check has no diagnosis for (it shows that case's inputs and values instead of guessing).
The entries after the marker below were written without looking at the check's diagnoses first.
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

def q_update_without_gamma(Q, s, a, r, s_next, terminated, alpha, gamma):
    Q[s, a] += alpha * (r + (1 - terminated) * Q[s_next].max() - Q[s, a])


def q_update_on_a_copy(Q, s, a, r, s_next, terminated, alpha, gamma):
    Q = Q.copy()
    target = r if terminated else r + gamma * Q[s_next].max()
    Q[s, a] = Q[s, a] + alpha * (target - Q[s, a])
    return Q


def q_update_with_argmax(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.argmax(Q[s_next])
    Q[s, a] += alpha * (target - Q[s, a])


def q_update_zero_target_at_the_end(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = (1 - terminated) * (r + gamma * np.max(Q[s_next]))
    Q[s, a] += alpha * (target - Q[s, a])


def q_update_discounting_the_reward_too(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r if terminated else gamma * (r + np.max(Q[s_next]))
    Q[s, a] += alpha * (target - Q[s, a])


def q_update_error_reversed(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(Q[s_next])
    Q[s, a] += alpha * (Q[s, a] - target)


def q_update_max_of_the_table(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * Q.max()
    Q[s, a] += alpha * (target - Q[s, a])


def q_update_with_min(Q, s, a, r, s_next, terminated, alpha, gamma):  # costs and rewards confused: no diagnosis
    target = r if terminated else r + gamma * np.min(Q[s_next])
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

def greedy_exploring_one_action_short(q, epsilon, rng):
    if rng.random() < epsilon:
        return int(rng.integers(len(q) - 1))  # as if the upper bound were included
    best = np.flatnonzero(q == q.max())
    return int(rng.choice(best))


def greedy_with_the_coin_reversed(q, epsilon, rng):
    if rng.random() > epsilon:
        return int(rng.integers(len(q)))
    best = np.flatnonzero(q == q.max())
    return int(best[rng.integers(len(best))])


def greedy_with_a_generator_of_its_own(q, epsilon, rng):
    rng = np.random.default_rng()
    if rng.random() < epsilon:
        return int(rng.integers(len(q)))
    best = np.flatnonzero(q == q.max())
    return int(rng.choice(best))


def greedy_with_argmin(q, epsilon, rng):
    if rng.random() < epsilon:
        return int(rng.integers(len(q)))
    best = np.flatnonzero(q == q.min())
    return int(rng.choice(best))


def greedy_from_a_probability_vector(q, epsilon, rng):
    probs = np.full(len(q), epsilon / len(q))
    probs[np.argmax(q)] += 1 - epsilon
    return int(rng.choice(len(q), p=probs))


def greedy_returning_a_float(q, epsilon, rng):
    if rng.random() < epsilon:
        return float(rng.integers(len(q)))
    best = np.flatnonzero(q == q.max())
    return float(best[rng.integers(len(best))])


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

def softmax_without_temperature(q, temperature):
    weights = np.exp(q - np.max(q))
    return weights / weights.sum()


def softmax_not_normalised(q, temperature):
    return np.exp((q - np.max(q)) / temperature)


def softmax_divided_by_the_largest(q, temperature):
    weights = np.exp((q - np.max(q)) / temperature)
    return weights / weights.max()


def softmax_of_minus_q(q, temperature):
    z = -np.asarray(q) / temperature
    weights = np.exp(z - z.max())
    return weights / weights.sum()


def softmax_shifted_by_the_mean(q, temperature):
    z = (q - np.mean(q)) / temperature
    return np.exp(z) / np.exp(z).sum()


def softmax_shift_not_divided(q, temperature):
    weights = np.exp(q / temperature - np.max(q))
    return weights / weights.sum()


def softmax_returning_logs(q, temperature):
    z = (q - np.max(q)) / temperature
    return z - np.log(np.exp(z).sum())


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

def bandit_dividing_by_all_pulls(Q, N, a, r, alpha=None):
    N[a] += 1
    step = 1 / N.sum() if alpha is None else alpha
    Q[a] += step * (r - Q[a])


def bandit_counting_every_arm(Q, N, a, r, alpha=None):
    N += 1
    step = 1 / N[a] if alpha is None else alpha
    Q[a] += step * (r - Q[a])


def bandit_average_of_the_total(Q, N, a, r, alpha=None):
    N[a] += 1
    if alpha is None:
        Q[a] = (Q[a] * N[a] + r) / (N[a] + 1)
    else:
        Q[a] += alpha * (r - Q[a])


def bandit_counting_only_averages(Q, N, a, r, alpha=None):
    if alpha is None:
        N[a] += 1
        Q[a] += (r - Q[a]) / N[a]
    else:
        Q[a] += alpha * (r - Q[a])


def bandit_halving(Q, N, a, r, alpha=None):  # the mean of the old estimate and the reward: no diagnosis
    N[a] += 1
    Q[a] = (Q[a] + r) / 2 if alpha is None else Q[a] + alpha * (r - Q[a])


def sarsa_with_max(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(Q[s_next])
    Q[s, a] += alpha * (target - Q[s, a])


def sarsa_bootstrapping_at_the_end(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    Q[s, a] += alpha * (r + gamma * Q[s_next, a_next] - Q[s, a])


def sarsa_setting_the_target(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    Q[s, a] = r if terminated else r + gamma * Q[s_next, a_next]

def sarsa_without_gamma(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    target = r if terminated else r + Q[s_next, a_next]
    Q[s, a] += alpha * (target - Q[s, a])


def sarsa_with_the_same_action(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * Q[s_next, a]
    Q[s, a] += alpha * (target - Q[s, a])


def sarsa_flag_is_true(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    if terminated is True:
        Q[s, a] += alpha * (r - Q[s, a])
    else:
        Q[s, a] += alpha * (r + gamma * Q[s_next, a_next] - Q[s, a])


def sarsa_with_the_mean(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * Q[s_next].mean()
    Q[s, a] += alpha * (target - Q[s, a])


def sarsa_on_a_copy(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    Q = np.array(Q)
    target = r if terminated else r + gamma * Q[s_next, a_next]
    Q[s, a] += alpha * (target - Q[s, a])
    return Q


def sarsa_updating_the_next_action(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):  # no diagnosis
    target = r if terminated else r + gamma * Q[s_next, a_next]
    Q[s, a_next] += alpha * (target - Q[s, a_next])


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

def linear_max_of_the_features(w, features, next_features, r, terminated, alpha, gamma):
    target = r if terminated else r + gamma * (np.max(next_features, axis=0) @ w)
    delta = target - features @ w
    w += alpha * delta * features
    return float(delta)


def linear_without_gamma(w, features, next_features, r, terminated, alpha, gamma):
    target = r + (0.0 if terminated else max(next_features @ w))
    delta = target - w @ features
    w += alpha * delta * features
    return float(delta)


def linear_returning_the_new_error(w, features, next_features, r, terminated, alpha, gamma):
    def td_error():
        target = r if terminated else r + gamma * np.max(next_features @ w)
        return target - features @ w

    w += alpha * td_error() * features
    return float(td_error())


def linear_returning_the_step(w, features, next_features, r, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(next_features @ w)
    step = alpha * (target - features @ w)
    w += step * features
    return float(step)


def linear_with_autograd(w, features, next_features, r, terminated, alpha, gamma):
    weights = torch.tensor(w, requires_grad=True)
    q = torch.tensor(features) @ weights
    target = r if terminated else r + gamma * (torch.tensor(next_features) @ weights).max()
    delta = target - q
    (0.5 * delta**2).backward()  # differentiates the target too: the full gradient
    w -= alpha * weights.grad.numpy()
    return float(delta)


def linear_step_per_tile(w, features, next_features, r, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(next_features @ w)
    delta = target - features @ w
    w += alpha / max(np.sum(features), 1.0) * delta * features  # alpha split over the active tiles
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

def dqn_loss_mse(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(next_states).max(1)[0]
    return ((q - target) ** 2).mean()


def dqn_loss_summed(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(next_states).max(1)[0]
    return torch.nn.functional.smooth_l1_loss(q, target, reduction="sum")


def dqn_loss_detaching_the_prediction(q_network, target_network, states, actions, rewards, next_states, terminated,
                                      gamma):
    q = q_network(states).detach().gather(1, actions[:, None]).squeeze(1)
    target = rewards + gamma * (1 - terminated) * target_network(next_states).max(1)[0].detach()
    return torch.nn.functional.smooth_l1_loss(q, target)


def dqn_loss_indexing_columns(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states)[:, actions]
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target)


def dqn_loss_zero_target_at_the_end(q_network, target_network, states, actions, rewards, next_states, terminated,
                                    gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = (1 - terminated) * (rewards + gamma * target_network(next_states).max(dim=1).values)
    return torch.nn.functional.smooth_l1_loss(q, target)


def dqn_loss_without_gamma(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + (1 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target)


def dqn_loss_bootstrapping_from_states(q_network, target_network, states, actions, rewards, next_states,
                                       terminated, gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target)


def dqn_loss_clipping_the_error(q_network, target_network, states, actions, rewards, next_states, terminated,
                                gamma):  # the paper's "error clipping" read as clip-then-square: no diagnosis
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(next_states).max(dim=1).values
    return (torch.clamp(q - target, -1, 1) ** 2).mean()



# ---- written without looking at the checks' diagnoses (issue 11): the check must name these too


def q_mask_inverted(Q, s, a, r, s_next, terminated, alpha, gamma):
    Q[s, a] = Q[s, a] + alpha * (r + gamma * np.max(Q[s_next]) * terminated - Q[s, a])


def q_precedence(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(Q[s_next])
    Q[s, a] += alpha * target - Q[s, a]


def q_replace_at_the_end(Q, s, a, r, s_next, terminated, alpha, gamma):
    if terminated:
        Q[s, a] = r
    else:
        Q[s, a] += alpha * (r + gamma * Q[s_next].max() - Q[s, a])


def greedy_choosing_a_value(q, epsilon, rng):
    if rng.random() < epsilon:
        return int(rng.choice(q))
    best = np.flatnonzero(q == q.max())
    return int(rng.choice(best))


def softmax_temperature_on_top_only(q, temperature):
    return np.exp((q - q.max()) / temperature) / np.sum(np.exp(q - q.max()))


def bandit_integer_division(Q, N, a, r, alpha=None):
    N[a] += 1
    step = 1 // N[a] if alpha is None else alpha
    Q[a] += step * (r - Q[a])


def sarsa_updating_the_next_pair(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    target = r if terminated else r + gamma * Q[s_next, a_next]
    Q[s_next, a_next] += alpha * (target - Q[s_next, a_next])


def linear_normalised(w, features, next_features, r, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(next_features @ w)
    delta = target - features @ w
    w += alpha * delta * features / (features @ features)
    return float(delta)


def dqn_loss_detached_at_the_end(q_network, target_network, states, actions, rewards, next_states, terminated,
                                 gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    target = rewards + gamma * (1 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target).detach()


def dqn_loss_unsqueezed_target(q_network, target_network, states, actions, rewards, next_states, terminated,
                               gamma):
    q = q_network(states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target.unsqueeze(1))


def dqn_loss_predicting_next(q_network, target_network, states, actions, rewards, next_states, terminated,
                             gamma):
    q = q_network(next_states).gather(1, actions[:, None]).squeeze(1)
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target)


def q_conditional_precedence(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r + gamma * np.max(Q[s_next]) if not terminated else 0
    Q[s, a] += alpha * (target - Q[s, a])


def greedy_where_tuple(q, epsilon, rng):
    if rng.random() < epsilon:
        return int(rng.integers(len(q)))
    return int(rng.choice(np.where(q == q.max())))


def greedy_upper_bound_included(q, epsilon, rng):
    if rng.random() < epsilon:
        return int(rng.integers(len(q) + 1))
    best = np.flatnonzero(q == q.max())
    return int(rng.choice(best))


def softmax_shift_times_t(q, temperature):
    w = np.exp((q - q.max()) * temperature)
    return w / w.sum()


def bandit_precedence(Q, N, a, r, alpha=None):
    N[a] += 1
    step = 1 / N[a] if alpha is None else alpha
    Q[a] = Q[a] + step * r - Q[a]


def sarsa_mask_inverted(Q, s, a, r, s_next, a_next, terminated, alpha, gamma):
    target = r + gamma * Q[s_next][a_next] * terminated
    Q[s, a] += alpha * (target - Q[s, a])


def linear_without_features(w, features, next_features, r, terminated, alpha, gamma):
    target = r if terminated else r + gamma * np.max(next_features @ w)
    delta = target - features @ w
    w += alpha * delta
    return float(delta)


def dqn_gather_row(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
    q = q_network(states).gather(1, actions.unsqueeze(0)).squeeze(0)
    with torch.no_grad():
        target = rewards + gamma * (1 - terminated) * target_network(next_states).max(dim=1).values
    return torch.nn.functional.smooth_l1_loss(q, target)


BUGGY = [
    ("q_learning_update", q_update_bootstrapping_at_the_end, "terminal state: when the next state is terminal"),
    ("q_learning_update", q_update_max_of_the_current_state, "*next* state"),
    ("q_learning_update", q_update_setting_the_target, "step alpha"),
    ("q_learning_update", q_update_max_started_at_zero, "started at 0"),
    ("q_learning_update", q_update_flag_is_true, "(from the one failing case): terminated may be numpy"),
    ("q_learning_update", q_update_without_gamma, "Likely mistake: discount the next value"),
    ("q_learning_update", q_update_on_a_copy, "Likely mistake: Q is unchanged after the calls"),
    ("q_learning_update", q_update_with_argmax, "index of the best next action (argmax)"),
    ("q_learning_update", q_update_zero_target_at_the_end, "the target is the reward r, not 0"),
    ("q_learning_update", q_update_discounting_the_reward_too, "not gamma * (r + next value)"),
    ("q_learning_update", q_update_error_reversed, "away from the target"),
    ("q_learning_update", q_update_max_of_the_table, "not over the whole table"),
    ("q_learning_update", q_update_with_min, "Smallest failing case"),
    ("epsilon_greedy", greedy_with_first_tie, "break ties"),
    ("epsilon_greedy", greedy_without_exploring, "never explores"),
    ("epsilon_greedy", greedy_exploring_among_the_others, "*all* actions"),
    ("epsilon_greedy", greedy_with_global_random, "rng argument"),
    ("epsilon_greedy", greedy_with_noise_added_to_q, "changed its input q"),
    ("epsilon_greedy", greedy_exploring_one_action_short, "rng.integers(A - 1)"),
    ("epsilon_greedy", greedy_with_the_coin_reversed, "not of the greedy one"),
    ("epsilon_greedy", greedy_with_a_generator_of_its_own, "Likely mistake: draw every random number from"),
    ("epsilon_greedy", greedy_with_argmin, "*largest* value"),
    ("epsilon_greedy", greedy_from_a_probability_vector, "ties always go to the same greedy action"),
    ("epsilon_greedy", greedy_returning_a_float, "return an action, an int"),
    ("boltzmann_probabilities", softmax_overflowing, "subtract max(q)"),
    ("boltzmann_probabilities", softmax_times_temperature, "not exp(q * T)"),
    ("boltzmann_probabilities", softmax_shifting_q_in_place, "changed its input q"),
    ("boltzmann_probabilities", softmax_without_temperature, "not exp(q * T) or exp(q)"),
    ("boltzmann_probabilities", softmax_not_normalised, "Likely mistake: normalise"),
    ("boltzmann_probabilities", softmax_divided_by_the_largest, "Likely mistake: normalise"),
    ("boltzmann_probabilities", softmax_of_minus_q, "not exp(-q / T)"),
    ("boltzmann_probabilities", softmax_shifted_by_the_mean, "(from the one failing case): exp overflowed"),
    ("boltzmann_probabilities", softmax_shift_not_divided, "subtract max(q) from q before dividing by T"),
    ("boltzmann_probabilities", softmax_returning_logs, "not their logarithms"),
    ("bandit_update", bandit_dividing_before_counting, "increment N[a] first"),
    ("bandit_update", bandit_always_averaging, "the step is alpha"),
    ("bandit_update", bandit_not_counting, "N was not updated"),
    ("bandit_update", bandit_without_default_alpha, "alpha=None"),
    ("bandit_update", bandit_dividing_by_all_pulls, "not of all pulls"),
    ("bandit_update", bandit_counting_every_arm, "not N += 1"),
    ("bandit_update", bandit_average_of_the_total, "off by one"),
    ("bandit_update", bandit_counting_only_averages, "whether or not alpha is given"),
    ("bandit_update", bandit_halving, "Smallest failing case"),
    ("sarsa_update", sarsa_with_max, "Q-learning's target"),
    ("sarsa_update", sarsa_bootstrapping_at_the_end, "terminal"),
    ("sarsa_update", sarsa_setting_the_target, "step alpha"),
    ("sarsa_update", sarsa_without_gamma, "Likely mistake: discount the next value"),
    ("sarsa_update", sarsa_with_the_same_action, "(not the action a)"),
    ("sarsa_update", sarsa_flag_is_true, "(from the one failing case): terminated may be numpy"),
    ("sarsa_update", sarsa_with_the_mean, "expected SARSA"),
    ("sarsa_update", sarsa_on_a_copy, "Likely mistake: Q is unchanged"),
    ("sarsa_update", sarsa_updating_the_next_action, "Smallest failing case"),
    ("semi_gradient_q_update", linear_full_gradient, "semi-gradient"),
    ("semi_gradient_q_update", linear_bootstrapping_at_the_end, "terminal"),
    ("semi_gradient_q_update", linear_returning_a_copy, "in place"),
    ("semi_gradient_q_update", linear_scaling_the_features_in_place, "changed its input features"),
    ("semi_gradient_q_update", linear_max_of_the_features, "feature-wise max"),
    ("semi_gradient_q_update", linear_without_gamma, "discount the next value"),
    ("semi_gradient_q_update", linear_returning_the_new_error, "computed before the update"),
    ("semi_gradient_q_update", linear_returning_the_step, "not alpha * delta"),
    ("semi_gradient_q_update", linear_with_autograd, "semi-gradient"),
    ("semi_gradient_q_update", linear_step_per_tile, "number of active features"),
    ("dqn_loss", dqn_loss_online_target, "from target_network"),
    ("dqn_loss", dqn_loss_without_no_grad, "torch.no_grad()"),
    ("dqn_loss", dqn_loss_ignoring_terminals, "(1 - terminated)"),
    ("dqn_loss", dqn_loss_max_over_batch, "not one max over the whole batch"),
    ("dqn_loss", dqn_loss_without_squeeze, "squeeze(1)"),
    ("dqn_loss", dqn_loss_double, "double DQN"),
    ("dqn_loss", dqn_loss_mse, "not the squared error"),
    ("dqn_loss", dqn_loss_summed, "do not sum them"),
    ("dqn_loss", dqn_loss_detaching_the_prediction, "must stay attached"),
    ("dqn_loss", dqn_loss_indexing_columns, "(B, B) matrix"),
    ("dqn_loss", dqn_loss_zero_target_at_the_end, "the target is the reward r, not 0"),
    ("dqn_loss", dqn_loss_without_gamma, "discount the next value"),
    ("dqn_loss", dqn_loss_bootstrapping_from_states, "next_states"),
    ("dqn_loss", dqn_loss_clipping_the_error, "Smallest failing case"),
    ("q_learning_update", q_mask_inverted, "not by terminated"),
    ("q_learning_update", q_precedence, "mind the brackets"),
    ("q_learning_update", q_replace_at_the_end, "do not set it to r"),
    ("q_learning_update", q_conditional_precedence, "the target is the reward r, not 0"),
    ("epsilon_greedy", greedy_choosing_a_value, "you returned a value of q as the action"),
    ("epsilon_greedy", greedy_upper_bound_included, "rng.integers(A + 1) goes one past the last"),
    ("epsilon_greedy", greedy_where_tuple, "raised TypeError"),
    ("boltzmann_probabilities", softmax_temperature_on_top_only, "Likely mistake: normalise"),
    ("boltzmann_probabilities", softmax_shift_times_t, "not exp(q * T)"),
    ("bandit_update", bandit_integer_division, "integer division"),
    ("bandit_update", bandit_precedence, "mind the brackets"),
    ("sarsa_update", sarsa_updating_the_next_pair, "not Q[s_next, a_next]"),
    ("sarsa_update", sarsa_mask_inverted, "not by terminated"),
    ("semi_gradient_q_update", linear_normalised, "Smallest failing case"),  # nan where f = 0 as well
    ("semi_gradient_q_update", linear_without_features, "step along the features"),
    ("dqn_loss", dqn_loss_detached_at_the_end, "must stay attached"),
    ("dqn_loss", dqn_loss_unsqueezed_target, "do not unsqueeze the targets"),
    ("dqn_loss", dqn_loss_predicting_next, "not q_network(next_states)"),
    ("dqn_loss", dqn_gather_row, "actions.unsqueeze(0)"),
]
