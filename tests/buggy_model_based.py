"""Chapter 2 answers with the mistakes students make, written the way a student might write them.

Each entry of ``BUGGY`` is ``(exercise, function, words the check's hint must contain)``.
"""

import numpy as np
import torch

from solutions.learned_models import one_hot
from solutions.q_learning import epsilon_greedy, q_learning_update


def update_dividing_first(n, R_hat, s, a, r, s_next):
    count = n[s, a].sum()
    if count > 0:
        R_hat[s, a] = (r + (count - 1) * R_hat[s, a]) / count
    else:
        R_hat[s, a] = r
    n[s, a, s_next] += 1


def update_with_next_state_count(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] += (r - R_hat[s, a]) / n[s, a, s_next]


def update_returning_copies(n, R_hat, s, a, r, s_next):
    n, R_hat = n.copy(), R_hat.copy()
    n[s, a, s_next] += 1
    R_hat[s, a] += (r - R_hat[s, a]) / n[s, a].sum()
    return n, R_hat


def model_wrong_axis(n):
    totals = n.sum(axis=0, keepdims=True)
    return np.divide(n, totals, out=np.zeros(n.shape), where=totals > 0)


def model_nan_rows(n):
    with np.errstate(invalid="ignore"):
        return n / n.sum(axis=2, keepdims=True)


def model_uniform_unseen(n):
    totals = n.sum(axis=2, keepdims=True)
    P = np.full(n.shape, 1.0 / n.shape[2])
    np.divide(n, totals, out=P, where=totals > 0)
    return P


def ce_max_over_all_actions(n, R_hat, gamma, terminal, theta=1e-10):
    totals = n.sum(axis=2, keepdims=True)
    P = np.divide(n, totals, out=np.zeros(n.shape), where=totals > 0)
    seen = totals[..., 0] > 0
    Q = np.zeros(R_hat.shape)
    while True:
        V = Q.max(axis=1)
        V[terminal] = 0.0
        Q_new = np.where(seen, R_hat + gamma * P @ V, 0.0)
        if np.abs(Q_new - Q).max() < theta:
            return Q_new
        Q = Q_new


def ce_bootstraps_from_terminal(n, R_hat, gamma, terminal, theta=1e-10):
    totals = n.sum(axis=2, keepdims=True)
    P = np.divide(n, totals, out=np.zeros(n.shape), where=totals > 0)
    seen = totals[..., 0] > 0
    Q = np.zeros(R_hat.shape)
    while True:
        V = np.where(seen, Q, -np.inf).max(axis=1)
        V[~seen.any(axis=1)] = 0.0
        Q_new = np.where(seen, R_hat + gamma * P @ V, 0.0)
        if np.abs(Q_new - Q).max() < theta:
            return Q_new
        Q = Q_new


def ce_never_stops(n, R_hat, gamma, terminal, theta=1e-10):
    Q = np.zeros(R_hat.shape)
    delta = 1.0
    while delta > 0:  # exact equality is never reached in floating point... or only very late
        Q = Q + 0.0
    return Q


def ce_ignoring_theta(n, R_hat, gamma, terminal, theta=1e-10):
    totals = n.sum(axis=2, keepdims=True)
    P = np.divide(n, totals, out=np.zeros(n.shape), where=totals > 0)
    seen = totals[..., 0] > 0
    Q = np.zeros(R_hat.shape)
    for _ in range(2000):  # "enough sweeps to converge"
        V = np.where(seen, Q, -np.inf).max(axis=1)
        V[~seen.any(axis=1) | terminal] = 0.0
        Q = np.where(seen, R_hat + gamma * P @ V, 0.0)
    return Q


def ce_gauss_seidel(n, R_hat, gamma, terminal, theta=1e-10):
    totals = n.sum(axis=2)
    seen = totals > 0
    Q = np.zeros(R_hat.shape)
    while True:
        delta = 0.0
        for s in range(Q.shape[0]):
            for a in range(Q.shape[1]):
                if not seen[s, a]:
                    continue
                V = np.array([Q[t][seen[t]].max() if seen[t].any() and not terminal[t] else 0.0
                              for t in range(Q.shape[0])])
                new = R_hat[s, a] + gamma * (n[s, a] / totals[s, a]) @ V
                delta = max(delta, abs(new - Q[s, a]))
                Q[s, a] = new
        if delta < theta:
            return Q


def planning_any_pair(Q, model, alpha, gamma, rng):
    s = rng.integers(Q.shape[0])
    a = rng.integers(Q.shape[1])
    if (s, a) in model:
        r, s_next, terminated = model[(s, a)]
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)


def planning_bootstraps_from_terminal(Q, model, alpha, gamma, rng):
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, terminated = model[(s, a)]
    Q[s, a] += alpha * (r + gamma * Q[s_next].max() - Q[s, a])


def planning_without_step_size(Q, model, alpha, gamma, rng):
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, terminated = model[(s, a)]
    Q[s, a] = r if terminated else r + gamma * Q[s_next].max()


def _reference_planning(Q, model, alpha, gamma, rng):
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, terminated = model[(s, a)]
    q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)


def episode_without_planning(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, terminated)
        s = s_next
        if terminated or truncated:
            return step
    return max_steps


def episode_planning_before_storing(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        if model:
            for _ in range(n_planning):
                _reference_planning(Q, model, alpha, gamma, rng)
        model[(s, a)] = (r, s_next, terminated)
        s = s_next
        if terminated or truncated:
            return step
    return max_steps


def episode_without_model(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        s = s_next
        if terminated or truncated:
            return step
    return max_steps


def episode_ignoring_truncated(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, terminated)
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        s = s_next
        if terminated:
            return step
    return max_steps


def episode_truncated_as_terminated(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        done = terminated or truncated
        q_learning_update(Q, s, a, r, s_next, done, alpha, gamma)
        model[(s, a)] = (r, s_next, done)
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        s = s_next
        if done:
            return step
    return max_steps


def episode_without_max_steps(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    step = 0
    while True:
        step += 1
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, terminated)
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        s = s_next
        if terminated or truncated:
            return step


def step_without_zero_grad(model, optimizer, states, actions, next_states):
    predicted = model(torch.cat([states, one_hot(actions, model.n_actions)], dim=1))
    loss = ((predicted - (next_states - states)) ** 2).mean()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_predicting_next_state(model, optimizer, states, actions, next_states):
    predicted = model(torch.cat([states, one_hot(actions, model.n_actions)], dim=1))
    loss = torch.nn.functional.mse_loss(predicted, next_states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_summed_loss(model, optimizer, states, actions, next_states):
    predicted = model(torch.cat([states, one_hot(actions, model.n_actions)], dim=1))
    loss = torch.sum((predicted - (next_states - states)) ** 2)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_without_update(model, optimizer, states, actions, next_states):
    predicted = model(torch.cat([states, one_hot(actions, model.n_actions)], dim=1))
    loss = torch.nn.functional.mse_loss(predicted, next_states - states)
    optimizer.zero_grad()
    loss.backward()
    return loss.item()


def step_clearing_gradients_after(model, optimizer, states, actions, next_states):
    predicted = model(torch.cat([states, one_hot(actions, model.n_actions)], dim=1))
    loss = torch.nn.functional.mse_loss(predicted, next_states - states)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.item()


def step_returning_the_tensor(model, optimizer, states, actions, next_states):
    predicted = model(torch.cat([states, one_hot(actions, model.n_actions)], dim=1))
    loss = torch.nn.functional.mse_loss(predicted, next_states - states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


# --------------------------------------------------------------------------- more mistakes (issue 11)

def update_summing_rewards(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] += r


def update_loop_count_before_increment(n, R_hat, s, a, r, s_next):
    count = 0
    for k in range(n.shape[2]):
        count += n[s, a, k]
    R_hat[s, a] += (r - R_hat[s, a]) / count  # 1/0 for a pair's first transition
    n[s, a, s_next] += 1


def update_constant_step(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] += 0.1 * (r - R_hat[s, a])


def update_average_with_last(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] = (R_hat[s, a] + r) / 2


def update_count_plus_one(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] = R_hat[s, a] + (r - R_hat[s, a]) / (np.sum(n[s, a]) + 1)


def update_swapped_indices(n, R_hat, s, a, r, s_next):
    n[s_next, a, s] += 1
    R_hat[s, a] += (r - R_hat[s, a]) / max(n[s, a].sum(), 1)


def update_old_mean_weighted_by_n(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    R_hat[s, a] = R_hat[s, a] + r / n[s, a].sum()


def update_counting_distinct_next_states(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    seen = np.count_nonzero(n[s, a])
    R_hat[s, a] += (r - R_hat[s, a]) / seen


def model_integer_division(n):
    totals = n.sum(axis=2, keepdims=True)
    return n // np.where(totals > 0, totals, 1)


def model_over_all_transitions(n):
    return n / n.sum()


def model_add_one_smoothing(n):
    return (n + 1) / (n.sum(axis=2, keepdims=True) + n.shape[2])


def model_without_keepdims(n):
    totals = n.sum(axis=2)
    return np.divide(n, totals, out=np.zeros(n.shape), where=totals > 0)


def model_loop_without_zero_check(n):
    S, A, _ = n.shape
    P = np.zeros(n.shape)
    for s in range(S):
        for a in range(A):
            P[s, a] = n[s, a] / n[s, a].sum()
    return P


def model_divided_by_largest_count(n):
    largest = n.max(axis=2, keepdims=True)
    return np.divide(n, largest, out=np.zeros(n.shape), where=largest > 0)


def model_uniform_over_seen_next_states(n):
    seen = (n > 0).astype(float)
    totals = seen.sum(axis=2, keepdims=True)
    return np.divide(seen, totals, out=np.zeros(n.shape), where=totals > 0)


def _tried_and_model(n):
    totals = n.sum(axis=2, keepdims=True)
    return totals[..., 0] > 0, np.divide(n, totals, out=np.zeros(n.shape), where=totals > 0)


def ce_mean_over_tried_actions(n, R_hat, gamma, terminal, theta=1e-10):
    tried, P = _tried_and_model(n)
    Q = np.zeros(R_hat.shape)
    while True:
        V = np.array([Q[s, tried[s]].mean() if tried[s].any() else 0.0 for s in range(len(Q))])
        V[terminal] = 0.0
        Q_new = np.where(tried, R_hat + gamma * P @ V, 0.0)
        if np.abs(Q_new - Q).max() < theta:
            return Q_new
        Q = Q_new


def ce_returns_state_values(n, R_hat, gamma, terminal, theta=1e-10):
    tried, P = _tried_and_model(n)
    Q = np.zeros(R_hat.shape)
    while True:
        V = np.where(tried, Q, -np.inf).max(axis=1)
        V[~tried.any(axis=1) | terminal] = 0.0
        Q_new = np.where(tried, R_hat + gamma * P @ V, 0.0)
        if np.abs(Q_new - Q).max() < theta:
            V = np.where(tried, Q_new, -np.inf).max(axis=1)
            V[~tried.any(axis=1) | terminal] = 0.0
            return V
        Q = Q_new


def ce_untried_at_minus_infinity(n, R_hat, gamma, terminal, theta=1e-10):
    tried, P = _tried_and_model(n)
    Q = np.where(tried, 0.0, -np.inf)
    while True:
        V = Q.max(axis=1)
        V[~tried.any(axis=1) | terminal] = 0.0
        Q_new = np.where(tried, R_hat + gamma * P @ V, -np.inf)
        if np.abs(np.where(tried, Q_new - Q, 0.0)).max() < theta:
            return Q_new
        Q = Q_new


def ce_stopping_on_total_change(n, R_hat, gamma, terminal, theta=1e-10):
    tried, P = _tried_and_model(n)
    Q = np.zeros(R_hat.shape)
    while True:
        V = np.where(tried, Q, -np.inf).max(axis=1)
        V[~tried.any(axis=1) | terminal] = 0.0
        Q_new = np.where(tried, R_hat + gamma * P @ V, 0.0)
        if np.sum(np.abs(Q_new - Q)) < theta:  # the total change, not the largest one
            return Q_new
        Q = Q_new


def planning_without_gamma(Q, model, alpha, gamma, rng):
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, terminated = model[(s, a)]
    target = r if terminated else r + np.max(Q[s_next])
    Q[s, a] += alpha * (target - Q[s, a])


def planning_bootstraps_from_s(Q, model, alpha, gamma, rng):
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, terminated = model[(s, a)]
    target = r + (0.0 if terminated else gamma * Q[s].max())
    Q[s, a] += alpha * (target - Q[s, a])


def planning_state_then_action(Q, model, alpha, gamma, rng):
    states = sorted({s for s, _ in model})
    s = states[rng.integers(len(states))]
    actions = sorted(a for t, a in model if t == s)
    a = actions[rng.integers(len(actions))]
    r, s_next, terminated = model[(s, a)]
    q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)


def planning_global_numpy_generator(Q, model, alpha, gamma, rng):
    s, a = list(model)[np.random.randint(len(model))]
    r, s_next, terminated = model[(s, a)]
    q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)


def planning_sorted_pairs(Q, model, alpha, gamma, rng):
    pairs = sorted(model.keys())
    s, a = pairs[rng.integers(len(pairs))]
    r, s_next, terminated = model[(s, a)]
    q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)


def planning_inverted_terminated(Q, model, alpha, gamma, rng):
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, terminated = model[(s, a)]
    bootstrap = gamma * Q[s_next].max() if terminated else 0.0
    Q[s, a] += alpha * (r + bootstrap - Q[s, a])


def planning_mean_of_next_values(Q, model, alpha, gamma, rng):
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, terminated = model[(s, a)]
    target = r + (1 - terminated) * gamma * Q[s_next].mean()
    Q[s, a] += alpha * (target - Q[s, a])


def planning_most_recent_pair(Q, model, alpha, gamma, rng):
    s, a = list(model)[-1]
    r, s_next, terminated = model[(s, a)]
    q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)


def planning_two_updates_per_call(Q, model, alpha, gamma, rng):
    for _ in range(2):
        s, a = list(model)[rng.integers(len(model))]
        r, s_next, terminated = model[(s, a)]
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)


def episode_without_direct_update(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        model[(s, a)] = (r, s_next, terminated)  # planning will replay it anyway
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        s = s_next
        if terminated or truncated:
            return step
    return max_steps


def episode_planning_before_update(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        model[(s, a)] = (r, s_next, terminated)
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        s = s_next
        if terminated or truncated:
            return step
    return max_steps


def episode_counting_from_zero(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for t in range(max_steps):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, terminated)
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        s = s_next
        if terminated or truncated:
            return t
    return max_steps


def episode_one_planning_step_short(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    steps = 0
    while steps < max_steps:
        steps += 1
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, terminated)
        for _ in range(1, n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        s = s_next
        if terminated or truncated:
            break
    return steps


def episode_model_without_flag(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next)
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        s = s_next
        if terminated or truncated:
            return step
    return max_steps


def episode_model_stores_truncated(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        done = terminated or truncated
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, done)
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        s = s_next
        if done:
            return step
    return max_steps


def episode_reseeding_every_reset(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s, _ = env.reset(seed=0)
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, terminated)
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, rng)
        s = s_next
        if terminated or truncated:
            return step
    return max_steps


def episode_own_generator(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    my_rng = np.random.default_rng()
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, my_rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, terminated)
        for _ in range(n_planning):
            _reference_planning(Q, model, alpha, gamma, my_rng)
        s = s_next
        if terminated or truncated:
            return step
    return max_steps


def _inputs(model, states, actions):
    return torch.cat([states, one_hot(actions, model.n_actions)], dim=1)


def step_summed_over_dimensions(model, optimizer, states, actions, next_states):
    error = model(_inputs(model, states, actions)) - (next_states - states)
    loss = (error ** 2).sum(dim=1).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_clearing_between_backward_and_step(model, optimizer, states, actions, next_states):
    loss = torch.nn.functional.mse_loss(model(_inputs(model, states, actions)), next_states - states)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()


def step_gradient_ascent(model, optimizer, states, actions, next_states):
    loss = torch.nn.functional.mse_loss(model(_inputs(model, states, actions)), next_states - states)
    optimizer.zero_grad()
    (-loss).backward()
    optimizer.step()
    return loss.item()


def step_reversed_displacement(model, optimizer, states, actions, next_states):
    loss = torch.nn.functional.mse_loss(model(_inputs(model, states, actions)), states - next_states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_one_hot_first(model, optimizer, states, actions, next_states):
    inputs = torch.cat([torch.nn.functional.one_hot(actions, model.n_actions).float(), states], dim=1)
    loss = torch.nn.functional.mse_loss(model(inputs), next_states - states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_prediction_under_no_grad(model, optimizer, states, actions, next_states):
    with torch.no_grad():
        predicted = model(_inputs(model, states, actions))
    loss = torch.nn.functional.mse_loss(predicted, next_states - states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_action_as_a_number(model, optimizer, states, actions, next_states):
    inputs = torch.cat([states, actions.float().unsqueeze(1)], dim=1)
    loss = torch.nn.functional.mse_loss(model(inputs), next_states - states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_returning_the_new_loss(model, optimizer, states, actions, next_states):
    inputs = _inputs(model, states, actions)
    loss = torch.nn.functional.mse_loss(model(inputs), next_states - states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        return torch.nn.functional.mse_loss(model(inputs), next_states - states).item()


def step_absolute_error(model, optimizer, states, actions, next_states):
    loss = torch.nn.functional.l1_loss(model(_inputs(model, states, actions)), next_states - states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_huber_loss(model, optimizer, states, actions, next_states):
    loss = torch.nn.functional.smooth_l1_loss(model(_inputs(model, states, actions)), next_states - states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_root_mean_square(model, optimizer, states, actions, next_states):
    loss = torch.sqrt(torch.nn.functional.mse_loss(model(_inputs(model, states, actions)), next_states - states))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def step_returning_numpy(model, optimizer, states, actions, next_states):
    loss = torch.nn.functional.mse_loss(model(_inputs(model, states, actions)), next_states - states)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.detach().numpy()


BUGGY = [
    ("update_model", update_dividing_first, "before counting this transition"),
    ("update_model", update_with_next_state_count, "as the count"),
    ("update_model", update_returning_copies, "in place"),
    ("update_model", update_summing_rewards, "the sum of the rewards"),
    ("update_model", update_loop_count_before_increment, "before counting this transition"),
    ("update_model", update_constant_step, "constant step"),
    ("update_model", update_average_with_last, "constant step"),
    ("update_model", update_count_plus_one, "n(s, a) + 1"),
    ("update_model", update_swapped_indices, "n[s_next, a, s]"),
    ("update_model", update_old_mean_weighted_by_n, "weighted by n(s, a) - 1"),
    ("update_model", update_counting_distinct_next_states, "Smallest failing case"),
    ("ml_transition_model", model_wrong_axis, "wrong axis"),
    ("ml_transition_model", model_nan_rows, "NaN"),
    ("ml_transition_model", model_uniform_unseen, "not uniform"),
    ("ml_transition_model", model_integer_division, "integer division"),
    ("ml_transition_model", model_over_all_transitions, "n.sum(), the count of every transition"),
    ("ml_transition_model", model_add_one_smoothing, "smoothed the counts"),
    ("ml_transition_model", model_without_keepdims, "keep the summed axis"),
    ("ml_transition_model", model_loop_without_zero_check, "NaN"),
    ("ml_transition_model", model_divided_by_largest_count, "Smallest failing case"),
    ("ml_transition_model", model_uniform_over_seen_next_states, "Smallest failing case"),
    ("certainty_equivalent_q", ce_max_over_all_actions, "tried actions only"),
    ("certainty_equivalent_q", ce_bootstraps_from_terminal, "terminal"),
    ("certainty_equivalent_q", ce_never_stops, "did not return"),
    ("certainty_equivalent_q", ce_ignoring_theta, "you ignored theta"),
    ("certainty_equivalent_q", ce_gauss_seidel, "Gauss-Seidel"),
    ("certainty_equivalent_q", ce_mean_over_tried_actions, "not their mean"),
    ("certainty_equivalent_q", ce_returns_state_values, "you returned V(s)"),
    ("certainty_equivalent_q", ce_untried_at_minus_infinity, "do not store -inf"),
    ("certainty_equivalent_q", ce_stopping_on_total_change, "Smallest failing case"),
    ("dyna_q_planning_step", planning_any_pair, "among all pairs"),
    ("dyna_q_planning_step", planning_bootstraps_from_terminal, "terminal"),
    ("dyna_q_planning_step", planning_without_step_size, "step alpha"),
    ("dyna_q_planning_step", planning_without_gamma, "has no gamma"),
    ("dyna_q_planning_step", planning_bootstraps_from_s, "Q(s, .)"),
    ("dyna_q_planning_step", planning_state_then_action, "then an action"),
    ("dyna_q_planning_step", planning_global_numpy_generator, "not drawn from it"),
    ("dyna_q_planning_step", planning_sorted_pairs, "sorted pairs"),
    ("dyna_q_planning_step", planning_inverted_terminated, "other way round"),
    ("dyna_q_planning_step", planning_mean_of_next_values, "mean of Q(s_next, .)"),
    ("dyna_q_planning_step", planning_most_recent_pair, "not drawn from it"),
    ("dyna_q_planning_step", planning_two_updates_per_call, "Smallest failing case"),
    ("dyna_q_episode", episode_without_planning, "without planning"),
    ("dyna_q_episode", episode_planning_before_storing, "planned before storing"),
    ("dyna_q_episode", episode_without_model, "model is still empty"),
    ("dyna_q_episode", episode_ignoring_truncated, "went on after truncated was True"),
    ("dyna_q_episode", episode_truncated_as_terminated, "treated truncated like terminated"),
    ("dyna_q_episode", episode_without_max_steps, "past max_steps"),
    ("dyna_q_episode", episode_without_direct_update, "left out the direct Q-learning update"),
    ("dyna_q_episode", episode_planning_before_update, "planned before the Q-learning update"),
    ("dyna_q_episode", episode_counting_from_zero, "counted the steps from 0"),
    ("dyna_q_episode", episode_one_planning_step_short, "n_planning - 1"),
    ("dyna_q_episode", episode_model_without_flag, "(r, s_next, terminated); got model"),
    ("dyna_q_episode", episode_model_stores_truncated, "treated truncated like terminated"),
    ("dyna_q_episode", episode_reseeding_every_reset, "Smallest failing case"),
    ("dyna_q_episode", episode_own_generator, "rng's state did not change"),
    ("model_gradient_step", step_without_zero_grad, "optimizer.zero_grad()"),
    ("model_gradient_step", step_predicting_next_state, "not next_states"),
    ("model_gradient_step", step_summed_loss, "do not sum"),
    ("model_gradient_step", step_without_update, "call optimizer.step()"),
    ("model_gradient_step", step_clearing_gradients_after, "left over from before the call"),
    ("model_gradient_step", step_returning_the_tensor, "Python float"),
    ("model_gradient_step", step_summed_over_dimensions, "over the 2 state dimensions"),
    ("model_gradient_step", step_clearing_between_backward_and_step, "nothing to apply"),
    ("model_gradient_step", step_gradient_ascent, "moved up the loss"),
    ("model_gradient_step", step_reversed_displacement, "states - next_states"),
    ("model_gradient_step", step_one_hot_first, "states first"),
    ("model_gradient_step", step_prediction_under_no_grad, "detached the prediction"),
    ("model_gradient_step", step_action_as_a_number, "not the action as a number"),
    ("model_gradient_step", step_returning_the_new_loss, "recomputed after it"),
    ("model_gradient_step", step_absolute_error, "absolute error"),
    ("model_gradient_step", step_huber_loss, "Smallest failing case"),
    ("model_gradient_step", step_root_mean_square, "Smallest failing case"),
    ("model_gradient_step", step_returning_numpy, "Python float"),
]
