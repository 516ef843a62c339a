"""Chapter 1 answers with the mistakes students make, written the way a student might write them.

Each entry of ``BUGGY`` is ``(exercise, function, words the check's hint must contain)``.
"""

import numpy as np


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
    return _improve_until_stable(mdp, policy, lambda p: policy_evaluation(mdp, np.eye(mdp.n_actions)[p]))


def policy_iteration_solves_singular_system(mdp, pi0=None):
    """Exact evaluation without a check: np.linalg.solve fails on an improper policy's equations."""
    def evaluate(policy):
        P = mdp.P[np.arange(mdp.n_states), policy]
        r = mdp.R[np.arange(mdp.n_states), policy]
        return np.linalg.solve(np.eye(mdp.n_states) - mdp.gamma * P * ~mdp.terminal[None, :], r)

    policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    return _improve_until_stable(mdp, policy, evaluate)


def policy_iteration_ignores_pi0(mdp, pi0=None):
    from solutions.mdp import policy_iteration
    return policy_iteration(mdp)


def policy_iteration_improper_message_unclear(mdp, pi0=None):
    from solutions.mdp import policy_iteration
    try:
        return policy_iteration(mdp, pi0)
    except ValueError:
        raise ValueError("bad pi0") from None


def policy_iteration_swapped(mdp, pi0=None):
    from solutions.mdp import policy_iteration
    policy, V = policy_iteration(mdp, pi0)
    return V, policy


BUGGY = [
    ("discounted_return", return_discounts_first_reward, "must not be discounted"),
    ("sample_trajectory", trajectory_past_terminal, "went on after reaching terminal state"),
    ("sample_trajectory", trajectory_global_random, "from rng"),
    ("policy_evaluation", evaluation_in_place, "in-place"),
    ("policy_evaluation", evaluation_ignores_theta, "theta = 0.01 was ignored"),
    ("policy_evaluation", evaluation_sweeps_at_least_once, "max_sweeps = 0 was ignored"),
    ("q_from_v", q_bootstraps_terminal, "bootstrapped from a terminal state"),
    ("q_from_v", q_wrong_axis, "wrong axis"),
    ("greedy_policy", greedy_wrong_axis, "argmax over actions"),
    ("value_iteration", value_iteration_never_stops_at_gamma_1, "did not return within"),
    ("value_iteration", value_iteration_in_place, "in-place"),
    ("value_iteration", value_iteration_ignores_theta, "theta = 0.05 was ignored"),
    ("policy_iteration", policy_iteration_swapped, "wrong way round"),
    ("policy_iteration", policy_iteration_evaluates_improper_start, "started evaluating the improper starting"),
    ("policy_iteration", policy_iteration_solves_singular_system, "singular Bellman equations"),
    ("policy_iteration", policy_iteration_ignores_pi0, "did your code start from pi0?"),
    ("policy_iteration", policy_iteration_improper_message_unclear, "should say that the starting policy is"),
]
