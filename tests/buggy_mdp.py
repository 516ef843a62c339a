"""Chapter 1 answers with the mistakes students make, written the way a student might write them.

Each entry of ``BUGGY`` is ``(exercise, function, words the check's output must contain)``: the hint that names the
mistake, or, for a mistake the checks have no diagnosis for, "Smallest failing case" (or the fact the case states).
The bugs are written in several styles (loops, vectorised NumPy, torch), and include mistakes that the diagnoses
were not written for.
"""

import numpy as np
import torch

# policy_evaluation and q_from_v, which the policy-iteration answers call, are the notebook's own functions: while
# policy_iteration is checked, the check lends them (the reference versions) to the answer's module (noqa: F821).
from autograder.checks._harness import student_copy
from solutions.mdp import policy_iteration as _policy_iteration

# the reference, as a student's own function (the checks block the reference itself while an answer runs)
_reference_policy_iteration = student_copy(_policy_iteration)


def return_discounts_first_reward(rewards, gamma):
    total = 0.0
    for k, r in enumerate(rewards):
        total += gamma ** (k + 1) * r
    return total


def trajectory_past_terminal(mdp, pi, s0, rng, max_steps=1000):
    states, actions, rewards = [s0], [], []
    s = s0
    for _ in range(max_steps):
        a = rng.choice(mdp.n_actions, p=pi[s])
        s = rng.choice(mdp.n_states, p=mdp.P[s, a])
        actions.append(a)
        rewards.append(mdp.R[states[-1], a])
        states.append(s)
    return np.array(states), np.array(actions), np.array(rewards)


def trajectory_global_random(mdp, pi, s0, rng, max_steps=1000):
    states, actions, rewards = [s0], [], []
    s = s0
    for _ in range(max_steps):
        if mdp.terminal[s]:
            break
        a = np.random.choice(mdp.n_actions, p=pi[s])
        s_next = np.random.choice(mdp.n_states, p=mdp.P[s, a])
        actions.append(a)
        rewards.append(mdp.R[s, a])
        states.append(s_next)
        s = s_next
    return np.array(states), np.array(actions), np.array(rewards)


def evaluation_in_place(mdp, pi, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        delta = 0.0
        for s in range(mdp.n_states):
            v = sum(pi[s, a] * (mdp.R[s, a] + mdp.gamma * mdp.P[s, a] @ V) for a in range(mdp.n_actions))
            delta = max(delta, abs(v - V[s]))
            V[s] = v
        sweeps += 1
        if delta < theta:
            break
    return V


def evaluation_ignores_theta(mdp, pi, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        V_new = np.sum(pi * (mdp.R + mdp.gamma * mdp.P @ V), axis=1)
        delta = np.max(np.abs(V_new - V))
        V = V_new
        sweeps += 1
        if delta < 1e-10:
            break
    return V


def evaluation_sweeps_at_least_once(mdp, pi, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while True:
        V_new = np.sum(pi * (mdp.R + mdp.gamma * mdp.P @ V), axis=1)
        delta = np.max(np.abs(V_new - V))
        V = V_new
        sweeps += 1
        if delta < theta or (max_sweeps and sweeps >= max_sweeps):
            break
    return V


def q_bootstraps_terminal(mdp, V):
    return mdp.R + mdp.gamma * mdp.P @ V


def q_wrong_axis(mdp, V):
    V = np.where(mdp.terminal, 0.0, V)
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            Q[s, a] = mdp.R[s, a] + mdp.gamma * np.sum(mdp.P[:, a, s] * V)
    return Q


def greedy_wrong_axis(mdp, V):
    Q = mdp.R + mdp.gamma * mdp.P @ np.where(mdp.terminal, 0.0, V)
    return np.argmax(Q, axis=0)


def value_iteration_never_stops_at_gamma_1(mdp, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        V_new = np.max(mdp.R + mdp.gamma * mdp.P @ np.where(mdp.terminal, 0.0, V), axis=1)
        delta = np.max(np.abs(V_new - V))
        V = V_new
        sweeps += 1
        if delta < theta * (1 - mdp.gamma) / mdp.gamma:
            break
    return V


def value_iteration_in_place(mdp, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        delta = 0.0
        for s in range(mdp.n_states):
            if mdp.terminal[s]:
                continue
            v = max(mdp.R[s, a] + mdp.gamma * mdp.P[s, a] @ V for a in range(mdp.n_actions))
            delta = max(delta, abs(v - V[s]))
            V[s] = v
        sweeps += 1
        if delta < theta:
            break
    return V


def value_iteration_ignores_theta(mdp, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        V_new = np.max(mdp.R + mdp.gamma * mdp.P @ np.where(mdp.terminal, 0.0, V), axis=1)
        delta = np.max(np.abs(V_new - V))
        V = V_new
        sweeps += 1
        if delta < 1e-12:
            break
    return V


# ----------------------------------------------------------------------------------------- Exercise 1

def return_forward_recursion(rewards, gamma):
    G = 0.0
    for r in rewards:  # G_t = R_{t+1} + gamma G_{t+1}, but run from the front
        G = r + gamma * G
    return G


def return_without_discount(rewards, gamma):
    return float(sum(rewards))


def return_gamma_times_k(rewards, gamma):
    return sum(gamma * k * r for k, r in enumerate(rewards))


def return_skips_first_reward(rewards, gamma):
    G = 0.0
    for k in range(1, len(rewards)):
        G += gamma ** (k - 1) * rewards[k]
    return G


def return_drops_last_reward(rewards, gamma):
    G = 0.0
    for k in range(len(rewards) - 1):
        G += gamma ** k * rewards[k]
    return G


def return_every_return(rewards, gamma):
    G, returns = 0.0, []
    for r in reversed(rewards):
        G = r + gamma * G
        returns.append(G)
    return np.array(returns[::-1])


def return_discounted_mean(rewards, gamma):
    rewards = np.asarray(rewards, dtype=float)
    if len(rewards) == 0:
        return 0.0
    return float(np.mean(gamma ** np.arange(len(rewards)) * rewards))


def return_recursive_without_base_case(rewards, gamma):
    if len(rewards) == 1:
        return rewards[0]
    return rewards[0] + gamma * return_recursive_without_base_case(rewards[1:], gamma)


def return_rounded(rewards, gamma):
    return round(float(np.sum(gamma ** np.arange(len(rewards)) * np.asarray(rewards, dtype=float))), 3)


# ----------------------------------------------------------------------------------------- Exercise 2

def _episode(mdp, pi, s0, max_steps, draw_action, draw_state, reward=lambda mdp, s, a, s_next: mdp.R[s, a]):
    states, actions, rewards = [s0], [], []
    s = s0
    for _ in range(max_steps):
        if mdp.terminal[s]:
            break
        a = draw_action(s)
        s_next = draw_state(s, a)
        actions.append(a)
        rewards.append(reward(mdp, s, a, s_next))
        states.append(s_next)
        s = s_next
    return np.array(states), np.array(actions, dtype=int), np.array(rewards, dtype=float)


def trajectory_fresh_generator(mdp, pi, s0, rng, max_steps=1000):
    rng = np.random.default_rng()
    return _episode(mdp, pi, s0, max_steps, lambda s: rng.choice(mdp.n_actions, p=pi[s]),
                    lambda s, a: rng.choice(mdp.n_states, p=mdp.P[s, a]))


def trajectory_own_seed(mdp, pi, s0, rng, max_steps=1000):
    rng = np.random.default_rng(42)
    return _episode(mdp, pi, s0, max_steps, lambda s: rng.choice(mdp.n_actions, p=pi[s]),
                    lambda s, a: rng.choice(mdp.n_states, p=mdp.P[s, a]))


def trajectory_reward_of_next_state(mdp, pi, s0, rng, max_steps=1000):
    states, actions, rewards = [s0], [], []
    s = s0
    for _ in range(max_steps):
        if mdp.terminal[s]:
            break
        a = rng.choice(mdp.n_actions, p=pi[s])
        s = rng.choice(mdp.n_states, p=mdp.P[s, a])
        actions.append(a)
        rewards.append(mdp.R[s, a])  # s is already S_{t+1}
        states.append(s)
    return np.array(states), np.array(actions), np.array(rewards)


def trajectory_one_step_too_many(mdp, pi, s0, rng, max_steps=1000):
    states, actions, rewards = [s0], [], []
    s, t = s0, 0
    while t <= max_steps and not mdp.terminal[s]:
        a = rng.choice(mdp.n_actions, p=pi[s])
        s_next = rng.choice(mdp.n_states, p=mdp.P[s, a])
        actions.append(a)
        rewards.append(mdp.R[s, a])
        states.append(s_next)
        s, t = s_next, t + 1
    return np.array(states), np.array(actions), np.array(rewards)


def trajectory_terminal_tested_after_the_step(mdp, pi, s0, rng, max_steps=1000):
    states, actions, rewards = [s0], [], []
    s = s0
    for _ in range(max_steps):
        a = rng.choice(mdp.n_actions, p=pi[s])
        s_next = rng.choice(mdp.n_states, p=mdp.P[s, a])
        actions.append(a)
        rewards.append(mdp.R[s, a])
        states.append(s_next)
        s = s_next
        if mdp.terminal[s]:
            break
    return np.array(states), np.array(actions), np.array(rewards)


def trajectory_uniform_actions(mdp, pi, s0, rng, max_steps=1000):
    return _episode(mdp, pi, s0, max_steps, lambda s: int(rng.integers(mdp.n_actions)),
                    lambda s, a: rng.choice(mdp.n_states, p=mdp.P[s, a]))


def trajectory_likeliest_action(mdp, pi, s0, rng, max_steps=1000):
    return _episode(mdp, pi, s0, max_steps, lambda s: int(np.argmax(pi[s])),
                    lambda s, a: rng.choice(mdp.n_states, p=mdp.P[s, a]))


def trajectory_likeliest_next_state(mdp, pi, s0, rng, max_steps=1000):
    return _episode(mdp, pi, s0, max_steps, lambda s: rng.choice(mdp.n_actions, p=pi[s]),
                    lambda s, a: int(np.argmax(mdp.P[s, a])))


def trajectory_without_the_start_state(mdp, pi, s0, rng, max_steps=1000):
    states, actions, rewards = _episode(mdp, pi, s0, max_steps, lambda s: rng.choice(mdp.n_actions, p=pi[s]),
                                        lambda s, a: rng.choice(mdp.n_states, p=mdp.P[s, a]))
    return states[1:], actions, rewards


def trajectory_without_the_last_state(mdp, pi, s0, rng, max_steps=1000):
    states, actions, rewards = [], [], []
    s = s0
    for _ in range(max_steps):
        if mdp.terminal[s]:
            break
        states.append(s)
        a = rng.choice(mdp.n_actions, p=pi[s])
        actions.append(a)
        rewards.append(mdp.R[s, a])
        s = rng.choice(mdp.n_states, p=mdp.P[s, a])
    return np.array(states), np.array(actions), np.array(rewards)


# ----------------------------------------------------------------------------------------- Exercise 3

def _evaluate(mdp, theta, max_sweeps, backup, change=np.max):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        V_new = backup(V)
        delta = change(np.abs(V_new - V))
        V = V_new
        sweeps += 1
        if delta < theta:
            break
    return V


def evaluation_with_max(mdp, pi, theta=1e-10, max_sweeps=None):
    return _evaluate(mdp, theta, max_sweeps, lambda V: np.max(mdp.R + mdp.gamma * mdp.P @ V, axis=1))


def evaluation_with_an_alias(mdp, pi, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        V_old = V  # not a copy
        for s in range(mdp.n_states):
            V[s] = np.sum(pi[s] * (mdp.R[s] + mdp.gamma * mdp.P[s] @ V_old))
        sweeps += 1
        if np.max(np.abs(V - V_old)) < theta:
            break
    return V


def evaluation_that_never_sweeps(mdp, pi, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    delta, sweeps = 0.0, 0
    while delta > theta and (max_sweeps is None or sweeps < max_sweeps):
        V_new = np.sum(pi * (mdp.R + mdp.gamma * mdp.P @ V), axis=1)
        delta = np.max(np.abs(V_new - V))
        V, sweeps = V_new, sweeps + 1
    return V


def evaluation_with_equal_weights(mdp, pi, theta=1e-10, max_sweeps=None):
    return _evaluate(mdp, theta, max_sweeps, lambda V: np.mean(mdp.R + mdp.gamma * mdp.P @ V, axis=1))


def evaluation_in_torch_without_gamma(mdp, pi, theta=1e-10, max_sweeps=None):
    P, R, pi_t = torch.tensor(mdp.P), torch.tensor(mdp.R), torch.tensor(pi)
    V = torch.zeros(mdp.n_states, dtype=torch.float64)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        V_new = (pi_t * (R + P @ V)).sum(dim=1)
        delta = (V_new - V).abs().max().item()
        V, sweeps = V_new, sweeps + 1
        if delta < theta:
            break
    return V


def evaluation_one_sweep_too_many(mdp, pi, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while True:
        V_new = np.einsum("sa,sa->s", pi, mdp.R + mdp.gamma * mdp.P @ V)
        delta = np.max(np.abs(V_new - V))
        V = V_new
        if delta < theta or (max_sweeps is not None and sweeps >= max_sweeps):
            break
        sweeps += 1
    return V


def evaluation_next_values_not_weighted(mdp, pi, theta=1e-10, max_sweeps=None):
    def backup(V):
        return np.sum(pi * mdp.R, axis=1) + mdp.gamma * np.sum(mdp.P @ V, axis=1)

    return _evaluate(mdp, theta, max_sweeps, backup)


def evaluation_mean_change(mdp, pi, theta=1e-10, max_sweeps=None):
    return _evaluate(mdp, theta, max_sweeps, lambda V: np.sum(pi * (mdp.R + mdp.gamma * mdp.P @ V), axis=1),
                     change=np.mean)


def evaluation_returns_q(mdp, pi, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        Q = mdp.R + mdp.gamma * mdp.P @ V
        V_new = np.sum(pi * Q, axis=1)
        delta = np.max(np.abs(V_new - V))
        V, sweeps = V_new, sweeps + 1
        if delta < theta:
            break
    return Q


# ----------------------------------------------------------------------------------------- Exercise 4

def q_without_gamma(mdp, V):
    V = np.where(mdp.terminal, 0.0, V)
    return mdp.R + mdp.P @ V


def q_zeroes_terminal_rows(mdp, V):
    Q = mdp.R + mdp.gamma * mdp.P @ V
    Q[mdp.terminal] = 0.0
    return Q


def q_inverted_mask(mdp, V):
    return mdp.R + mdp.gamma * mdp.P @ (V * mdp.terminal)


def q_discounts_the_reward(mdp, V):
    V = np.where(mdp.terminal, 0.0, V)
    return mdp.gamma * (mdp.R + mdp.P @ V)


def q_from_the_current_state(mdp, V):
    V = np.where(mdp.terminal, 0.0, V)
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            Q[s, a] = mdp.R[s, a] + mdp.gamma * V[s]
    return Q


def q_transposed(mdp, V):
    V = np.where(mdp.terminal, 0.0, V)
    return np.array([[mdp.R[s, a] + mdp.gamma * mdp.P[s, a] @ V for s in range(mdp.n_states)]
                     for a in range(mdp.n_actions)])


def q_max_over_next_states(mdp, V):
    V = np.where(mdp.terminal, 0.0, V)
    return mdp.R + mdp.gamma * np.max(mdp.P * V, axis=2)


def q_in_torch_without_mask(mdp, V):
    P, R, V = torch.tensor(mdp.P), torch.tensor(mdp.R), torch.as_tensor(V, dtype=torch.float64)
    return R + mdp.gamma * torch.einsum("sat,t->sa", P, V)


def q_without_reward(mdp, V):
    V = np.where(mdp.terminal, 0.0, V)
    return mdp.gamma * mdp.P @ V


def q_skips_the_last_state(mdp, V):
    V = np.where(mdp.terminal, 0.0, V)
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    for s in range(mdp.n_states - 1):
        Q[s] = mdp.R[s] + mdp.gamma * mdp.P[s] @ V
    return Q


# ----------------------------------------------------------------------------------------- Exercise 5

def _look_ahead(mdp, V):
    return mdp.R + mdp.gamma * mdp.P @ np.where(mdp.terminal, 0.0, V)


def greedy_on_reward(mdp, V):
    return np.argmax(mdp.R, axis=1)


def greedy_argmin(mdp, V):
    return np.argmin(_look_ahead(mdp, V), axis=1)


def greedy_without_mask(mdp, V):
    return np.argmax(mdp.R + mdp.gamma * mdp.P @ V, axis=1)


def greedy_without_gamma(mdp, V):
    policy = np.zeros(mdp.n_states, dtype=int)
    for s in range(mdp.n_states):
        q = [mdp.R[s, a] + mdp.P[s, a] @ np.where(mdp.terminal, 0.0, V) for a in range(mdp.n_actions)]
        policy[s] = int(np.argmax(q))
    return policy


def greedy_returns_values(mdp, V):
    return np.max(_look_ahead(mdp, V), axis=1)


def greedy_flat_argmax(mdp, V):
    return np.argmax(_look_ahead(mdp, V))


def greedy_one_hot(mdp, V):
    Q = _look_ahead(mdp, V)
    return (Q == Q.max(axis=1, keepdims=True)).astype(int)


def greedy_best_starting_at_zero(mdp, V):
    Q = _look_ahead(mdp, V)
    policy = np.zeros(mdp.n_states, dtype=int)
    for s in range(mdp.n_states):
        best = 0.0  # should start at -infinity
        for a in range(mdp.n_actions):
            if Q[s, a] > best:
                best, policy[s] = Q[s, a], a
    return policy


# ----------------------------------------------------------------------------------------- Exercise 6

def _iterate(mdp, theta, max_sweeps, backup):
    V = np.zeros(mdp.n_states)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        V_new = backup(V)
        delta = np.max(np.abs(V_new - V))
        V, sweeps = V_new, sweeps + 1
        if delta < theta:
            break
    return V


def value_iteration_mean_over_actions(mdp, theta=1e-10, max_sweeps=None):
    return _iterate(mdp, theta, max_sweeps, lambda V: np.mean(mdp.R + mdp.gamma * mdp.P @ V, axis=1))


def value_iteration_min(mdp, theta=1e-10, max_sweeps=None):
    return _iterate(mdp, theta, max_sweeps, lambda V: np.min(mdp.R + mdp.gamma * mdp.P @ V, axis=1))


def value_iteration_separate_maxima(mdp, theta=1e-10, max_sweeps=None):
    return _iterate(mdp, theta, max_sweeps,
                    lambda V: np.max(mdp.R, axis=1) + mdp.gamma * np.max(mdp.P @ V, axis=1))


def value_iteration_in_torch_without_gamma(mdp, theta=1e-10, max_sweeps=None):
    P, R = torch.tensor(mdp.P), torch.tensor(mdp.R)
    V = torch.zeros(mdp.n_states, dtype=torch.float64)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        V_new = (R + P @ V).max(dim=1).values
        delta = (V_new - V).abs().max()
        V, sweeps = V_new, sweeps + 1
        if delta < theta:
            break
    return V


def value_iteration_returns_actions(mdp, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    policy = np.zeros(mdp.n_states, dtype=int)
    sweeps = 0
    while max_sweeps is None or sweeps < max_sweeps:
        Q = mdp.R + mdp.gamma * mdp.P @ V
        V_new, policy = Q.max(axis=1), Q.argmax(axis=1)
        delta = np.max(np.abs(V_new - V))
        V, sweeps = V_new, sweeps + 1
        if delta < theta:
            break
    return policy


def value_iteration_with_an_alias(mdp, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    for _ in range(max_sweeps if max_sweeps is not None else 10**6):
        V_old = V
        for s in range(mdp.n_states):
            V[s] = max(mdp.R[s, a] + mdp.gamma * mdp.P[s, a] @ V_old for a in range(mdp.n_actions))
        if np.max(np.abs(V - V_old)) < theta:
            break
    return V


def value_iteration_that_never_sweeps(mdp, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    delta, sweeps = 0.0, 0
    while delta >= theta and (max_sweeps is None or sweeps < max_sweeps):
        V_new = np.max(mdp.R + mdp.gamma * mdp.P @ V, axis=1)
        delta = np.max(np.abs(V_new - V))
        V, sweeps = V_new, sweeps + 1
    return V


def value_iteration_one_sweep_too_few(mdp, theta=1e-10, max_sweeps=None):
    V = np.zeros(mdp.n_states)
    sweeps = 1
    while max_sweeps is None or sweeps < max_sweeps:
        V_new = np.max(mdp.R + mdp.gamma * mdp.P @ V, axis=1)
        delta = np.max(np.abs(V_new - V))
        V, sweeps = V_new, sweeps + 1
        if delta < theta:
            break
    return V


def value_iteration_max_over_states(mdp, theta=1e-10, max_sweeps=None):
    return _iterate(mdp, theta, max_sweeps, lambda V: np.max(mdp.R + mdp.gamma * mdp.P @ V, axis=0))


def _evaluator(mdp):
    """The notebook's policy_evaluation of a deterministic policy (lent by the check)."""
    return lambda policy: policy_evaluation(mdp, np.eye(mdp.n_actions)[policy])  # noqa: F821


def _improve_until_stable(mdp, policy, evaluate):
    while True:
        V = evaluate(policy)
        Q = mdp.R + mdp.gamma * mdp.P @ np.where(mdp.terminal, 0.0, V)
        improve = Q.max(axis=1) > Q[np.arange(mdp.n_states), policy] + 1e-9
        if not improve.any():
            return policy, V
        policy = np.where(improve, np.argmax(Q, axis=1), policy)


def policy_iteration_evaluates_improper_start(mdp, pi0=None):
    """No check that the start is proper: at gamma = 1 policy_evaluation never converges on an improper one."""
    policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    return _improve_until_stable(mdp, policy, _evaluator(mdp))


def policy_iteration_solves_singular_system(mdp, pi0=None):
    """Exact evaluation without a check: np.linalg.solve fails on an improper policy's equations."""
    def evaluate(policy):
        P = mdp.P[np.arange(mdp.n_states), policy]
        r = mdp.R[np.arange(mdp.n_states), policy]
        return np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P * ~mdp.terminal[None, :], r)

    policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    return _improve_until_stable(mdp, policy, evaluate)


def policy_iteration_ignores_pi0(mdp, pi0=None):
    policy_iteration = _reference_policy_iteration
    return policy_iteration(mdp)


def policy_iteration_improper_message_unclear(mdp, pi0=None):
    policy_iteration = _reference_policy_iteration
    try:
        return policy_iteration(mdp, pi0)
    except ValueError:
        raise ValueError("bad pi0") from None


def policy_iteration_swapped(mdp, pi0=None):
    policy_iteration = _reference_policy_iteration
    policy, V = policy_iteration(mdp, pi0)
    return V, policy


def policy_iteration_one_improvement(mdp, pi0=None):
    policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    if mdp.gamma == 1 and not _reaches_a_terminal_state(mdp, policy):
        raise ValueError("the starting policy is improper")
    V = policy_evaluation(mdp, np.eye(mdp.n_actions)[policy])  # noqa: F821
    policy = np.argmax(q_from_v(mdp, V), axis=1)  # noqa: F821
    return policy, V


def _reaches_a_terminal_state(mdp, policy):
    moves = mdp.P[np.arange(mdp.n_states), policy] > 0
    reaches = mdp.terminal.copy()
    while True:
        grown = reaches | moves[:, reaches].any(axis=1)
        if np.array_equal(grown, reaches):
            return reaches.all()
        reaches = grown


def policy_iteration_checks_at_every_gamma(mdp, pi0=None):
    policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    if not _reaches_a_terminal_state(mdp, policy):
        raise ValueError("the starting policy is improper")
    return _improve_until_stable(mdp, policy, _evaluator(mdp))


def policy_iteration_reachability_reversed(mdp, pi0=None):
    """Grows the set of states reachable *from* the terminal states, which never grows: terminal states absorb."""
    policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    if mdp.gamma == 1:
        moves = mdp.P[np.arange(mdp.n_states), policy] > 0
        reached = mdp.terminal.copy()
        while True:
            grown = reached | moves[reached].any(axis=0)
            if np.array_equal(grown, reached):
                break
            reached = grown
        if not reached.all():
            raise ValueError("the starting policy is improper")
    return _improve_until_stable(mdp, policy, _evaluator(mdp))


def policy_iteration_tests_self_loops_only(mdp, pi0=None):
    policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    if mdp.gamma == 1:
        for s in np.flatnonzero(~mdp.terminal):
            if mdp.P[s, policy[s], s] == 1.0:
                raise ValueError(f"the starting policy is improper: it stays in state {s} forever")
    return _improve_until_stable(mdp, policy, _evaluator(mdp))


def policy_iteration_returns_the_start(mdp, pi0=None):
    policy_iteration = _reference_policy_iteration
    _, V = policy_iteration(mdp, pi0)
    return (np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)), V


def policy_iteration_returns_the_first_values(mdp, pi0=None):
    policy_iteration = _reference_policy_iteration
    policy, _ = policy_iteration(mdp, pi0)
    start = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    return policy, policy_evaluation(mdp, np.eye(mdp.n_actions)[start])  # noqa: F821


def policy_iteration_truncated_evaluation(mdp, pi0=None):
    policy_iteration = _reference_policy_iteration
    policy, _ = policy_iteration(mdp, pi0)
    return policy, policy_evaluation(mdp, np.eye(mdp.n_actions)[policy], max_sweeps=20)  # noqa: F821


BUGGY = [
    # Exercise 1
    ("discounted_return", return_discounts_first_reward, "must not be discounted"),
    ("discounted_return", return_forward_recursion, "the weights run backwards"),
    ("discounted_return", return_without_discount, "summed without discounting"),
    ("discounted_return", return_gamma_times_k, "gamma ** k (a power)"),
    ("discounted_return", return_skips_first_reward, "the first reward R_{t+1} is missing"),
    ("discounted_return", return_drops_last_reward, "the last reward R_T is missing"),
    ("discounted_return", return_every_return, "return one number"),
    ("discounted_return", return_discounted_mean, "you averaged"),
    ("discounted_return", return_recursive_without_base_case, "handle rewards = []"),
    ("discounted_return", return_rounded, "Smallest failing case"),
    # Exercise 2
    ("sample_trajectory", trajectory_past_terminal, "does not stop at terminal states"),
    ("sample_trajectory", trajectory_global_random, "from the rng argument"),
    ("sample_trajectory", trajectory_fresh_generator, "from the rng argument"),
    ("sample_trajectory", trajectory_own_seed, "a seed of your own"),
    ("sample_trajectory", trajectory_reward_of_next_state, "the reward of the state it enters"),
    ("sample_trajectory", trajectory_one_step_too_many, "one step too many"),
    ("sample_trajectory", trajectory_terminal_tested_after_the_step, "test S_t before drawing A_t"),
    ("sample_trajectory", trajectory_uniform_actions, "A_t looks uniformly drawn"),
    ("sample_trajectory", trajectory_likeliest_action, "A_t is always the likeliest action"),
    ("sample_trajectory", trajectory_likeliest_next_state, "always the likeliest next state"),
    ("sample_trajectory", trajectory_without_the_start_state, "the start state S_0 = s0 is missing"),
    ("sample_trajectory", trajectory_without_the_last_state, "the last state S_T is missing"),
    # Exercise 3
    ("policy_evaluation", evaluation_in_place, "in-place"),
    ("policy_evaluation", evaluation_ignores_theta, "theta was ignored"),
    ("policy_evaluation", evaluation_sweeps_at_least_once, "max_sweeps was ignored"),
    ("policy_evaluation", evaluation_with_max, "as value iteration does"),
    ("policy_evaluation", evaluation_with_an_alias, "stops after the first sweep"),
    ("policy_evaluation", evaluation_that_never_sweeps, "no sweep was made"),
    ("policy_evaluation", evaluation_with_equal_weights, "the same weight 1/A"),
    ("policy_evaluation", evaluation_in_torch_without_gamma, "you forgot to discount"),
    ("policy_evaluation", evaluation_one_sweep_too_many, "one sweep too many"),
    ("policy_evaluation", evaluation_next_values_not_weighted, "did not return within"),
    ("policy_evaluation", evaluation_mean_change, "the mean change"),
    ("policy_evaluation", evaluation_returns_q, "Smallest failing case"),
    # Exercise 4
    ("q_from_v", q_bootstraps_terminal, "bootstrapped from a terminal state"),
    ("q_from_v", q_wrong_axis, "wrong axis"),
    ("q_from_v", q_without_gamma, "forgot to discount"),
    ("q_from_v", q_zeroes_terminal_rows, "zeroing Q in terminal states is not enough"),
    ("q_from_v", q_inverted_mask, "mask is inverted"),
    ("q_from_v", q_discounts_the_reward, "only the next value is discounted"),
    ("q_from_v", q_from_the_current_state, "bootstrapped from the current state"),
    ("q_from_v", q_transposed, "one row per state"),
    ("q_from_v", q_max_over_next_states, "max over the next states"),
    ("q_from_v", q_in_torch_without_mask, "bootstrapped from a terminal state"),
    ("q_from_v", q_without_reward, "left out the immediate reward"),
    ("q_from_v", q_skips_the_last_state, "Smallest failing case"),
    # Exercise 5
    ("greedy_policy", greedy_wrong_axis, "argmax over actions"),
    ("greedy_policy", greedy_on_reward, "immediate reward R[s, a] only"),
    ("greedy_policy", greedy_argmin, "argmin"),
    ("greedy_policy", greedy_without_mask, "bootstrapped from a terminal state"),
    ("greedy_policy", greedy_without_gamma, "forgot to discount"),
    ("greedy_policy", greedy_returns_values, "return the actions"),
    ("greedy_policy", greedy_flat_argmax, "flattened array"),
    ("greedy_policy", greedy_one_hot, "not a one-hot array"),
    ("greedy_policy", greedy_best_starting_at_zero, "Smallest failing case"),
    # Exercise 6
    ("value_iteration", value_iteration_never_stops_at_gamma_1, "did not return within"),
    ("value_iteration", value_iteration_in_place, "in-place"),
    ("value_iteration", value_iteration_ignores_theta, "theta was ignored"),
    ("value_iteration", value_iteration_mean_over_actions, "you averaged over actions"),
    ("value_iteration", value_iteration_min, "did not return within"),
    ("value_iteration", value_iteration_separate_maxima, "not the max of its two terms separately"),
    ("value_iteration", value_iteration_in_torch_without_gamma, "you forgot to discount"),
    ("value_iteration", value_iteration_returns_actions, "you returned the greedy actions"),
    ("value_iteration", value_iteration_with_an_alias, "stops after the first sweep"),
    ("value_iteration", value_iteration_that_never_sweeps, "no sweep was made"),
    ("value_iteration", value_iteration_one_sweep_too_few, "one sweep too few"),
    ("value_iteration", value_iteration_max_over_states, "raised ValueError"),
    # Exercise 7
    ("policy_iteration", policy_iteration_swapped, "wrong way round"),
    ("policy_iteration", policy_iteration_evaluates_improper_start, "first check that the starting policy"),
    ("policy_iteration", policy_iteration_solves_singular_system, "first check that the starting policy"),
    ("policy_iteration", policy_iteration_ignores_pi0, "start from pi0 when it is given"),
    ("policy_iteration", policy_iteration_improper_message_unclear, "should say that the starting policy is"),
    ("policy_iteration", policy_iteration_one_improvement, "stopped too early"),
    ("policy_iteration", policy_iteration_checks_at_every_gamma, "check properness only when gamma = 1"),
    ("policy_iteration", policy_iteration_reachability_reversed, "rejected a proper starting policy"),
    ("policy_iteration", policy_iteration_tests_self_loops_only, "without a state that it never leaves"),
    ("policy_iteration", policy_iteration_returns_the_start, "the greedy policy of V"),
    ("policy_iteration", policy_iteration_returns_the_first_values, "stopped too early"),
    ("policy_iteration", policy_iteration_truncated_evaluation, "Smallest failing case"),
]
