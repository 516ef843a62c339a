"""Chapter 2 answers that are right, written in other styles than the reference: explicit loops, float32 and
torch arithmetic, other NumPy idioms. Each must get full marks (tests/test_checks.py).

The Dyna-Q exercises fix the random stream (the statements say which draws to make, in which order), so their
answers differ in form, not in the draws.
"""

import numpy as np
import torch

from solutions.q_learning import epsilon_greedy, q_learning_update

# ------------------------------------------------------------------------------------------------- update_model

def update_model_loops(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] = n[s, a, s_next] + 1
    count = 0
    for k in range(n.shape[2]):
        count += n[s, a, k]
    R_hat[s, a] = R_hat[s, a] + (r - R_hat[s, a]) / count


def update_model_count_first(n, R_hat, s, a, r, s_next):
    count = int(n.sum(axis=2)[s, a]) + 1  # this transition included
    R_hat[s, a] = ((count - 1) * R_hat[s, a] + r) / count
    np.add.at(n, (s, a, s_next), 1)


def update_model_float32(n, R_hat, s, a, r, s_next):
    n[s, a, s_next] += 1
    count = np.float32(n[s, a].sum())
    R_hat[s, a] += np.float64((np.float32(r) - np.float32(R_hat[s, a])) / count)


# ------------------------------------------------------------------------------------------ ml_transition_model

def ml_transition_model_loops(n):
    S, A, _ = n.shape
    P_hat = np.zeros((S, A, S))
    for s in range(S):
        for a in range(A):
            total = sum(int(c) for c in n[s, a])
            if total > 0:
                for t in range(S):
                    P_hat[s, a, t] = n[s, a, t] / total
    return P_hat


def ml_transition_model_float32(n):
    counts = n.astype(np.float32)
    totals = counts.sum(axis=-1, keepdims=True)
    return counts / np.maximum(totals, np.float32(1))  # rows of untried pairs: 0 / 1 = 0


def ml_transition_model_torch(n):
    counts = torch.as_tensor(n, dtype=torch.float32)
    totals = counts.sum(dim=2, keepdim=True)
    return torch.where(totals > 0, counts / totals.clamp(min=1), torch.zeros_like(counts))


# --------------------------------------------------------------------------------------- certainty_equivalent_q

def certainty_equivalent_q_loops(n, R_hat, gamma, terminal, theta=1e-10):
    P_hat = ml_transition_model(n)  # noqa: F821 -- the check supplies the reference, as in the notebook
    S, A = R_hat.shape
    tried = [[n[s, a].sum() > 0 for a in range(A)] for s in range(S)]
    Q = np.zeros((S, A))
    while True:
        V = np.zeros(S)
        for s in range(S):
            values = [Q[s, a] for a in range(A) if tried[s][a]]
            if values and not terminal[s]:
                V[s] = max(values)
        Q_new = np.zeros((S, A))
        for s in range(S):
            for a in range(A):
                if tried[s][a]:
                    Q_new[s, a] = R_hat[s, a] + gamma * sum(P_hat[s, a, t] * V[t] for t in range(S))
        delta = np.max(np.abs(Q_new - Q))
        Q = Q_new
        if delta < theta:
            return Q


def certainty_equivalent_q_masked(n, R_hat, gamma, terminal, theta=1e-10):
    """np.ma for the max over tried actions, einsum for the expectation, and the previous iterate returned."""
    P_hat = ml_transition_model(n)  # noqa: F821
    tried = n.sum(axis=2) > 0
    Q = np.zeros(R_hat.shape)
    while True:
        V = np.ma.masked_array(Q, mask=~tried).max(axis=1).filled(0.0)
        V = np.where(terminal, 0.0, V)
        Q_new = tried * (R_hat + gamma * np.einsum("sat,t->sa", P_hat, V))
        if np.abs(Q_new - Q).max() < theta:
            return Q  # the iterate before the last sweep: as good an answer
        Q = Q_new


def certainty_equivalent_q_zero_terminal_rows(n, R_hat, gamma, terminal, theta=1e-10):
    """Q(terminal, .) = 0 (S&B's convention): rows that no target uses."""
    P_hat = ml_transition_model(n)  # noqa: F821
    terminal = np.asarray(terminal, dtype=bool)
    tried = (n.sum(axis=2) > 0) & ~terminal[:, None]
    Q = np.zeros(R_hat.shape)
    delta = np.inf
    while delta >= theta:
        V = np.max(np.where(tried, Q, -np.inf), axis=1)
        V[np.isinf(V)] = 0.0
        Q_new = np.where(tried, R_hat + gamma * P_hat @ V, 0.0)
        delta = np.max(np.abs(Q_new - Q))
        Q = Q_new
    return Q


# ---------------------------------------------------------------------------------------- dyna_q_planning_step

def dyna_q_planning_step_choice(Q, model, alpha, gamma, rng):
    s, a = list(model.keys())[rng.choice(len(model))]  # the same single draw as rng.integers(len(model))
    r, s_next, terminated = model[s, a]
    target = r + (1.0 - float(terminated)) * gamma * Q[s_next].max()
    Q[s, a] = (1 - alpha) * Q[s, a] + alpha * target


def dyna_q_planning_step_array_of_pairs(Q, model, alpha, gamma, rng):
    pair = rng.choice(np.array(list(model)))  # a row of the (n_pairs, 2) array, drawn with the same integers
    r, s_next, terminated = model[tuple(int(x) for x in pair)]
    q_learning_update(Q, int(pair[0]), int(pair[1]), r, s_next, terminated, alpha, gamma)


def dyna_q_planning_step_items(Q, model, alpha, gamma, rng):
    items = list(model.items())
    (s, a), (r, s_next, terminated) = items[int(rng.integers(0, len(items)))]
    if terminated:
        td_error = r - Q[s, a]
    else:
        td_error = r + gamma * np.max(Q[s_next]) - Q[s, a]
    Q[s, a] += alpha * td_error


# ---------------------------------------------------------------------------------------------- dyna_q_episode

def dyna_q_episode_while(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    state, _ = env.reset()
    steps = 0
    done = False
    while not done and steps < max_steps:
        action = epsilon_greedy(Q[state], epsilon, rng)
        next_state, reward, terminated, truncated, _ = env.step(action)
        steps += 1
        q_learning_update(Q, state, action, reward, next_state, terminated, alpha, gamma)
        model[state, action] = reward, next_state, terminated
        for _ in range(n_planning):
            dyna_q_planning_step(Q, model, alpha, gamma, rng)  # noqa: F821 -- the check supplies it
        state = next_state
        done = terminated or truncated
    return steps


def dyna_q_episode_for_else(env, Q, model, n_planning, alpha, epsilon, gamma, rng, max_steps=100_000):
    s = int(env.reset()[0])
    steps = 0
    for _ in range(max_steps):
        a = int(epsilon_greedy(Q[s], epsilon, rng))
        s_next, r, terminated, truncated, _info = env.step(a)
        steps += 1
        target = r if terminated else r + gamma * np.max(Q[s_next])
        Q[s, a] += alpha * (target - Q[s, a])
        model[(s, a)] = (float(r), int(s_next), bool(terminated))
        for _ in range(n_planning):
            dyna_q_planning_step(Q, model, alpha, gamma, rng)  # noqa: F821
        if terminated or truncated:
            break
        s = int(s_next)
    else:
        return max_steps
    return steps


# ------------------------------------------------------------------------------------------- model_gradient_step

def model_gradient_step_functional(model, optimizer, states, actions, next_states):
    inputs = torch.cat((states, torch.nn.functional.one_hot(actions, num_classes=model.n_actions).float()), 1)
    prediction = model(inputs)
    loss = (prediction - (next_states - states)).pow(2).mean()
    model.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss)


def model_gradient_step_clears_twice(model, optimizer, states, actions, next_states):
    one_hot = torch.zeros(len(actions), model.n_actions)
    one_hot[torch.arange(len(actions)), actions] = 1.0
    optimizer.zero_grad(set_to_none=False)
    loss = torch.nn.MSELoss()(model(torch.hstack([states, one_hot])), next_states - states)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()  # tidy: clear again afterwards
    return loss.detach().item()


CORRECT = [
    ("update_model", update_model_loops),
    ("update_model", update_model_count_first),
    ("update_model", update_model_float32),
    ("ml_transition_model", ml_transition_model_loops),
    ("ml_transition_model", ml_transition_model_float32),
    ("ml_transition_model", ml_transition_model_torch),
    ("certainty_equivalent_q", certainty_equivalent_q_loops),
    ("certainty_equivalent_q", certainty_equivalent_q_masked),
    ("certainty_equivalent_q", certainty_equivalent_q_zero_terminal_rows),
    ("dyna_q_planning_step", dyna_q_planning_step_choice),
    ("dyna_q_planning_step", dyna_q_planning_step_array_of_pairs),
    ("dyna_q_planning_step", dyna_q_planning_step_items),
    ("dyna_q_episode", dyna_q_episode_while),
    ("dyna_q_episode", dyna_q_episode_for_else),
    ("model_gradient_step", model_gradient_step_functional),
    ("model_gradient_step", model_gradient_step_clears_twice),
]
