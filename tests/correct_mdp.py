"""Chapter 1 answers that are correct but written in other styles than the reference: explicit loops, float32
arithmetic, torch, other NumPy idioms (einsum, inverse-CDF sampling from ``rng.random()``, a linear solve).

``CORRECT`` lists ``(exercise, function)``; tests/test_checks.py asserts that each gets full marks, visible and
hidden.
"""

import numpy as np
import torch

# ----------------------------------------------------------------------------------------- Exercise 1


def return_by_backward_recursion(rewards, gamma):
    G = 0.0
    for r in reversed(rewards):  # G_t = R_{t+1} + gamma G_{t+1}
        G = r + gamma * G
    return G


def return_in_float32(rewards, gamma):
    rewards = np.asarray(rewards, dtype=np.float32)
    weights = np.float32(gamma) ** np.arange(len(rewards), dtype=np.float32)
    return np.sum(weights * rewards, dtype=np.float32)


def return_in_torch(rewards, gamma):
    rewards = torch.tensor(rewards, dtype=torch.float32)
    weights = gamma ** torch.arange(len(rewards), dtype=torch.float32)
    return (weights * rewards).sum()


# ----------------------------------------------------------------------------------------- Exercise 2

def _draw(probabilities, u):
    """Inverse-CDF sampling: the first index whose cumulative probability exceeds u."""
    cdf = np.cumsum(probabilities)
    return min(int(np.searchsorted(cdf, u, side="right")), len(cdf) - 1)


def trajectory_by_inverse_cdf(mdp, pi, s0, rng, max_steps=1000):
    states, actions, rewards = [s0], [], []
    for _ in range(max_steps):
        s = states[-1]
        if mdp.terminal[s]:
            break
        a = _draw(pi[s], rng.random())
        actions.append(a)
        rewards.append(mdp.R[s, a])
        states.append(_draw(mdp.P[s, a], rng.random()))
    return states, actions, rewards  # plain lists


def trajectory_with_a_while_loop(mdp, pi, s0, rng, max_steps=1000):
    S, A = mdp.n_states, mdp.n_actions
    states = np.empty(max_steps + 1, dtype=np.int64)
    actions = np.empty(max_steps, dtype=np.int64)
    rewards = np.empty(max_steps, dtype=np.float32)
    states[0], t = s0, 0
    while t < max_steps and not mdp.terminal[states[t]]:
        actions[t] = rng.choice(A, p=pi[states[t]])
        states[t + 1] = rng.choice(S, p=mdp.P[states[t], actions[t]])
        rewards[t] = mdp.R[states[t], actions[t]]
        t += 1
    return states[: t + 1], actions[:t], rewards[:t]


# ----------------------------------------------------------------------------------------- Exercise 3

def evaluation_with_loops(mdp, pi, theta=1e-10, max_sweeps=None):
    S, A = mdp.n_states, mdp.n_actions
    V = [0.0] * S
    k = 0
    while max_sweeps is None or k < max_sweeps:
        new = [sum(pi[s][a] * (mdp.R[s][a] + mdp.gamma * sum(mdp.P[s][a][t] * V[t] for t in range(S)))
                   for a in range(A)) for s in range(S)]
        delta = max(abs(x - y) for x, y in zip(new, V, strict=True))
        V, k = new, k + 1
        if delta < theta:
            break
    return V


def evaluation_in_float32(mdp, pi, theta=1e-10, max_sweeps=None):
    P, R, pi = mdp.P.astype(np.float32), mdp.R.astype(np.float32), pi.astype(np.float32)
    gamma = np.float32(mdp.gamma)
    V = np.zeros(mdp.n_states, dtype=np.float32)
    k = 0
    while max_sweeps is None or k < max_sweeps:
        V_new = np.einsum("sa,sa->s", pi, R + gamma * P @ V)
        delta = np.abs(V_new - V).max()
        V, k = V_new, k + 1
        if delta < theta:  # in float32 the sweeps end at a fixed point, where the change is exactly 0
            break
    return V


def evaluation_in_torch(mdp, pi, theta=1e-10, max_sweeps=None):
    P, R, pi = torch.tensor(mdp.P), torch.tensor(mdp.R), torch.tensor(pi)
    V = torch.zeros(mdp.n_states, dtype=torch.float64)
    for _ in range(max_sweeps if max_sweeps is not None else 10**9):
        V_new = torch.einsum("sa,sa->s", pi, R + mdp.gamma * torch.einsum("sat,t->sa", P, V))
        done = torch.max(torch.abs(V_new - V)) < theta
        V = V_new
        if done:
            break
    return V


# ----------------------------------------------------------------------------------------- Exercise 4

def q_with_loops(mdp, V):
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    for s in range(mdp.n_states):
        for a in range(mdp.n_actions):
            expected_next = sum(mdp.P[s, a, t] * V[t] for t in range(mdp.n_states) if not mdp.terminal[t])
            Q[s, a] = mdp.R[s, a] + mdp.gamma * expected_next
    return Q


def q_with_einsum(mdp, V):
    V = np.asarray(V, dtype=float).copy()
    V[mdp.terminal] = 0.0
    return mdp.R + mdp.gamma * np.einsum("sat,t->sa", mdp.P, V)


def q_in_torch_float32(mdp, V):
    P, R = torch.tensor(mdp.P, dtype=torch.float32), torch.tensor(mdp.R, dtype=torch.float32)
    V = torch.tensor(V, dtype=torch.float32) * torch.tensor(~mdp.terminal, dtype=torch.float32)
    return R + mdp.gamma * P @ V


# ----------------------------------------------------------------------------------------- Exercise 5

def greedy_with_the_last_maximiser(mdp, V):
    V = np.where(mdp.terminal, 0.0, V)
    policy = []
    for s in range(mdp.n_states):
        q = mdp.R[s] + mdp.gamma * mdp.P[s] @ V
        policy.append(int(np.flatnonzero(q >= q.max() - 1e-12)[-1]))  # any maximiser is fine
    return np.array(policy)


def greedy_in_torch(mdp, V):
    Q = torch.tensor(mdp.R) + mdp.gamma * torch.tensor(mdp.P) @ torch.tensor(np.where(mdp.terminal, 0.0, V))
    return torch.argmax(Q, dim=1)


def greedy_as_a_list(mdp, V):
    Q = q_with_einsum(mdp, V)
    return [max(range(mdp.n_actions), key=lambda a, s=s: Q[s, a]) for s in range(mdp.n_states)]


# ----------------------------------------------------------------------------------------- Exercise 6

def value_iteration_with_loops(mdp, theta=1e-10, max_sweeps=None):
    S, A = mdp.n_states, mdp.n_actions
    V = np.zeros(S)
    sweeps = 0
    while True:
        if max_sweeps is not None and sweeps == max_sweeps:
            return V
        V_old = V.copy()
        for s in range(S):
            V[s] = max(mdp.R[s, a] + mdp.gamma * np.dot(mdp.P[s, a], V_old) for a in range(A))
        sweeps += 1
        if np.max(np.abs(V - V_old)) < theta:
            return V


def value_iteration_in_float32(mdp, theta=1e-10, max_sweeps=None):
    P, R, gamma = mdp.P.astype(np.float32), mdp.R.astype(np.float32), np.float32(mdp.gamma)
    V = np.zeros(mdp.n_states, dtype=np.float32)
    k = 0
    while max_sweeps is None or k < max_sweeps:
        V_new = (R + gamma * P @ V).max(axis=1)
        delta = np.abs(V_new - V).max()
        V, k = V_new, k + 1
        if delta < theta:  # in float32 the sweeps end at a fixed point, where the change is exactly 0
            break
    return V


def value_iteration_in_torch(mdp, theta=1e-10, max_sweeps=None):
    P, R = torch.tensor(mdp.P), torch.tensor(mdp.R)
    V = torch.zeros(mdp.n_states, dtype=torch.float64)
    k = 0
    while max_sweeps is None or k < max_sweeps:
        V_new = torch.amax(R + mdp.gamma * P @ V, dim=1)
        delta = (V_new - V).abs().max().item()
        V, k = V_new, k + 1
        if delta < theta:
            break
    return V


# ----------------------------------------------------------------------------------------- Exercise 7

def _proper_by_search(mdp, policy):
    """Backward search from the terminal states over the policy's transitions."""
    S = mdp.n_states
    P_pi = mdp.P[np.arange(S), policy]
    reach = set(np.flatnonzero(mdp.terminal).tolist())
    frontier = list(reach)
    while frontier:
        t = frontier.pop()
        for s in range(S):
            if s not in reach and P_pi[s, t] > 0:
                reach.add(s)
                frontier.append(s)
    return len(reach) == S


def policy_iteration_by_linear_solves(mdp, pi0=None):
    S = mdp.n_states
    policy = np.zeros(S, dtype=int) if pi0 is None else np.asarray(pi0, dtype=int).copy()
    if mdp.gamma == 1.0 and not _proper_by_search(mdp, policy):
        raise ValueError("pi0 is an improper policy: some state never reaches a terminal state")
    live = ~mdp.terminal
    while True:
        P_pi = mdp.P[np.arange(S), policy][np.ix_(live, live)]
        r_pi = mdp.R[np.arange(S), policy][live]
        V = np.zeros(S)
        V[live] = np.linalg.solve(np.eye(live.sum()) - mdp.gamma * P_pi, r_pi)
        Q = mdp.R + mdp.gamma * mdp.P @ V
        stable = True
        for s in range(S):
            best = int(np.argmax(Q[s]))
            if Q[s, best] > Q[s, policy[s]] + 1e-10:
                policy[s], stable = best, False
        if stable:
            return policy, V


def policy_iteration_with_the_earlier_exercises(mdp, pi0=None):
    """Calls the notebook's own policy_evaluation and q_from_v (the check lends it the reference ones)."""
    policy = np.zeros(mdp.n_states, dtype=np.int64) if pi0 is None else np.array(pi0)
    if mdp.gamma == 1 and not _proper_by_search(mdp, policy):
        raise ValueError("the starting policy is improper")
    while True:
        V = policy_evaluation(mdp, np.eye(mdp.n_actions)[policy])  # noqa: F821 -- lent by the check
        Q = q_from_v(mdp, V)  # noqa: F821 -- lent by the check
        greedy = Q.argmax(axis=1)
        better = Q[np.arange(mdp.n_states), greedy] > Q[np.arange(mdp.n_states), policy] + 1e-9
        if not better.any():
            return policy, V
        policy = np.where(better, greedy, policy)


CORRECT = [
    ("discounted_return", return_by_backward_recursion),
    ("discounted_return", return_in_float32),
    ("discounted_return", return_in_torch),
    ("sample_trajectory", trajectory_by_inverse_cdf),
    ("sample_trajectory", trajectory_with_a_while_loop),
    ("policy_evaluation", evaluation_with_loops),
    ("policy_evaluation", evaluation_in_float32),
    ("policy_evaluation", evaluation_in_torch),
    ("q_from_v", q_with_loops),
    ("q_from_v", q_with_einsum),
    ("q_from_v", q_in_torch_float32),
    ("greedy_policy", greedy_with_the_last_maximiser),
    ("greedy_policy", greedy_in_torch),
    ("greedy_policy", greedy_as_a_list),
    ("value_iteration", value_iteration_with_loops),
    ("value_iteration", value_iteration_in_float32),
    ("value_iteration", value_iteration_in_torch),
    ("policy_iteration", policy_iteration_by_linear_solves),
    ("policy_iteration", policy_iteration_with_the_earlier_exercises),
]
