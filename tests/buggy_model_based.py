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


BUGGY = [
    ("update_model", update_dividing_first, "before counting this transition"),
    ("update_model", update_with_next_state_count, "as the count"),
    ("update_model", update_returning_copies, "in place"),
    ("ml_transition_model", model_wrong_axis, "wrong axis"),
    ("ml_transition_model", model_nan_rows, "NaN"),
    ("ml_transition_model", model_uniform_unseen, "not uniform"),
    ("certainty_equivalent_q", ce_max_over_all_actions, "tried actions only"),
    ("certainty_equivalent_q", ce_bootstraps_from_terminal, "terminal"),
    ("certainty_equivalent_q", ce_never_stops, "did not return"),
    ("certainty_equivalent_q", ce_ignoring_theta, "you ignored theta"),
    ("certainty_equivalent_q", ce_gauss_seidel, "Gauss-Seidel"),
    ("dyna_q_planning_step", planning_any_pair, "among all pairs"),
    ("dyna_q_planning_step", planning_bootstraps_from_terminal, "terminal"),
    ("dyna_q_planning_step", planning_without_step_size, "step alpha"),
    ("dyna_q_episode", episode_without_planning, "without planning"),
    ("dyna_q_episode", episode_planning_before_storing, "order"),
    ("dyna_q_episode", episode_without_model, "model is still empty"),
    ("dyna_q_episode", episode_ignoring_truncated, "went on after truncated was True"),
    ("dyna_q_episode", episode_truncated_as_terminated, "treated truncated like terminated"),
    ("dyna_q_episode", episode_without_max_steps, "past max_steps"),
    ("model_gradient_step", step_without_zero_grad, "optimizer.zero_grad()"),
    ("model_gradient_step", step_predicting_next_state, "not next_states"),
    ("model_gradient_step", step_summed_loss, "do not sum"),
    ("model_gradient_step", step_without_update, "call optimizer.step()"),
    ("model_gradient_step", step_clearing_gradients_after, "left over from before the call"),
    ("model_gradient_step", step_returning_the_tensor, "Python float"),
]
