"""Returns, trajectories and dynamic programming for finite MDPs (Chapter 1).

Notation follows Sutton & Barto (2018), *Reinforcement Learning: An Introduction*, 2nd ed.: returns
G_t (Section 3.3), value functions v_pi, q_pi (Section 3.5), the Bellman equations (eqs. 3.14, 3.19, 3.20),
iterative policy evaluation, policy iteration and value iteration (Sections 4.1-4.4), and proper policies of
stochastic shortest path problems (Bertsekas & Tsitsiklis 1991, for gamma = 1).

Policies are arrays: a stochastic policy ``pi`` has shape ``(S, A)`` with ``pi[s, a]`` = pi(a | s); a
deterministic policy has shape ``(S,)`` and holds the chosen action of each state (dtype int).
MDPs are :class:`solutions.envs.TabularMDP` instances (``mdp.P``, ``mdp.R``, ``mdp.gamma``, ``mdp.terminal``).
"""

from __future__ import annotations

import numpy as np

from .envs.tabular import TabularMDP

__all__ = [
    "bellman_expectation_backup",
    "bellman_optimality_backup",
    "deterministic_to_stochastic",
    "discounted_return",
    "discounted_returns",
    "greedy_actions",
    "greedy_policy",
    "is_proper",
    "never_terminating_states",
    "policy_evaluation",
    "policy_evaluation_exact",
    "policy_iteration",
    "q_from_v",
    "sample_trajectory",
    "uniform_random_policy",
    "value_iteration",
]

#: Sweeps after which an unbounded DP loop gives up (it then raises rather than loop forever).
SWEEP_CAP = 100_000

#: Two action values closer than this count as a tie (see :func:`greedy_actions`).
TIE_ATOL = 1e-9


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1]; got {gamma}")
    return gamma


def _check_policy(mdp: TabularMDP, pi: np.ndarray) -> np.ndarray:
    pi = np.asarray(pi, dtype=np.float64)
    if pi.shape != (mdp.n_states, mdp.n_actions):
        raise ValueError(f"pi must have shape (S, A) = {(mdp.n_states, mdp.n_actions)}; got {pi.shape}")
    if np.any(pi < 0) or not np.allclose(pi.sum(axis=1), 1.0):
        raise ValueError("each row pi[s] must be a probability distribution over actions")
    return pi


def _check_values(mdp: TabularMDP, V: np.ndarray) -> np.ndarray:
    V = np.asarray(V, dtype=np.float64)
    if V.shape != (mdp.n_states,):
        raise ValueError(f"V must have shape (S,) = {(mdp.n_states,)}; got {V.shape}")
    return V


def discounted_return(rewards, gamma: float) -> float:
    """The discounted return G_t = sum_k gamma^k R_{t+k+1} (Sutton & Barto 2018, eq. 3.8).

    Args:
        rewards: 1-D sequence of floats ``[R_{t+1}, R_{t+2}, ..., R_T]``, the rewards that follow time t.
        gamma: discount factor in ``[0, 1]``.

    Returns:
        G_t as a Python float; 0.0 for an empty sequence.

    Raises:
        ValueError: if ``rewards`` is not one-dimensional or gamma is outside ``[0, 1]``.
    """
    gamma = _check_gamma(gamma)
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be one-dimensional; got shape {rewards.shape}")
    return float(np.sum(gamma ** np.arange(len(rewards)) * rewards))


def discounted_returns(rewards, gamma: float) -> np.ndarray:
    """All returns G_t, G_{t+1}, ... of a reward sequence, by the recursion G_t = R_{t+1} + gamma G_{t+1}.

    Sutton & Barto (2018), eq. 3.9.

    Args:
        rewards: 1-D sequence ``[R_{t+1}, ..., R_T]`` of length n.
        gamma: discount factor in ``[0, 1]``.

    Returns:
        float64 array of shape ``(n,)``; entry k is G_{t+k} = ``discounted_return(rewards[k:], gamma)``.

    Raises:
        ValueError: if ``rewards`` is not one-dimensional or gamma is outside ``[0, 1]``.
    """
    gamma = _check_gamma(gamma)
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be one-dimensional; got shape {rewards.shape}")
    G = np.zeros(len(rewards))
    running = 0.0
    for k in range(len(rewards) - 1, -1, -1):
        running = rewards[k] + gamma * running
        G[k] = running
    return G


def uniform_random_policy(mdp: TabularMDP) -> np.ndarray:
    """The equiprobable random policy pi(a | s) = 1 / A, shape ``(S, A)``, dtype float64."""
    return np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)


def deterministic_to_stochastic(mdp: TabularMDP, policy) -> np.ndarray:
    """One-hot ``(S, A)`` float64 array for a deterministic policy given as actions of shape ``(S,)``.

    Raises:
        ValueError: if ``policy`` does not have shape ``(S,)`` or holds an action outside ``0 .. A-1``.
    """
    policy = np.asarray(policy)
    if policy.shape != (mdp.n_states,):
        raise ValueError(f"a deterministic policy has shape (S,) = {(mdp.n_states,)}; got {policy.shape}")
    if not np.issubdtype(policy.dtype, np.integer) or np.any((policy < 0) | (policy >= mdp.n_actions)):
        raise ValueError(f"a deterministic policy holds integer actions in [0, {mdp.n_actions})")
    return np.eye(mdp.n_actions)[policy]


def never_terminating_states(mdp: TabularMDP, pi) -> np.ndarray:
    """The states from which the policy ``pi`` never reaches a terminal state (an empty array if it is proper).

    A policy is *proper* when it reaches a terminal state with probability 1 from every state
    (Bertsekas & Tsitsiklis 1991). In a finite MDP that holds exactly when from every state some terminal state
    can be reached with positive probability: grow the set of states that can reach a terminal state, starting
    from the terminal states, by the states that move into the set with positive probability, until it stops
    growing. The states left outside never reach a terminal state.

    Args:
        mdp: the MDP.
        pi: float array ``(S, A)``, a stochastic policy (one-hot rows for a deterministic one).

    Returns:
        int array of the states outside the set, in increasing order.

    Raises:
        ValueError: if ``pi`` is not a policy of this MDP.
    """
    pi = _check_policy(mdp, pi)
    moves = np.einsum("sa,sat->st", pi, mdp.P) > 0  # moves[s, s']: s' can follow s under pi
    reaches = mdp.terminal.copy()
    while True:
        grown = reaches | moves[:, reaches].any(axis=1)
        if np.array_equal(grown, reaches):
            return np.flatnonzero(~reaches)
        reaches = grown


def is_proper(mdp: TabularMDP, pi) -> bool:
    """True if ``pi`` reaches a terminal state with probability 1 from every state (a *proper* policy).

    Bertsekas & Tsitsiklis (1991), stochastic shortest path problems. At ``gamma = 1`` exactly the proper
    policies have Bellman expectation equations with a unique solution; an improper policy that pays a cost on
    every step has value -infinity in the states it never leaves. See :func:`never_terminating_states`.

    Args:
        mdp: the MDP.
        pi: float array ``(S, A)``.

    Raises:
        ValueError: if ``pi`` is not a policy of this MDP.
    """
    return never_terminating_states(mdp, pi).size == 0


def _improper_message(mdp: TabularMDP, states: np.ndarray, which: str) -> str:
    names = [mdp.state_names[s] for s in states[:6]] + (["..."] if len(states) > 6 else [])
    return (f"{which} is improper: from state(s) {', '.join(names)} it never reaches a terminal state, so with "
            "gamma = 1 its values are not defined by the Bellman equations (they diverge when every step costs)")


def sample_trajectory(mdp: TabularMDP, pi, s0: int, rng: np.random.Generator, max_steps: int = 1000):
    """Sample one episode S_0, A_0, R_1, S_1, A_1, R_2, ... from an MDP under a stochastic policy.

    Sutton & Barto (2018), Section 3.1 (the agent-environment interface). At each step
    ``A_t ~ pi[S_t]``, ``S_{t+1} ~ P[S_t, A_t]`` and ``R_{t+1} = R[S_t, A_t]``. The episode stops on reaching a
    terminal state or after ``max_steps`` steps, whichever comes first.

    Args:
        mdp: the MDP.
        pi: float array ``(S, A)``, the policy.
        s0: the start state S_0 (an int in ``0 .. S-1``). If it is terminal, no step is taken.
        rng: the random generator; all randomness comes from it.
        max_steps: the largest number of steps T (an int >= 0).

    Returns:
        ``(states, actions, rewards)``: int arrays of lengths T + 1 and T, and a float array of length T.

    Raises:
        ValueError: if ``pi`` is not a policy of this MDP, ``s0`` is not a state, or ``max_steps < 0``.
    """
    pi = _check_policy(mdp, pi)
    if not 0 <= int(s0) < mdp.n_states:
        raise ValueError(f"s0 must be a state in [0, {mdp.n_states}); got {s0}")
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0; got {max_steps}")
    states, actions, rewards = [int(s0)], [], []
    s = int(s0)
    for _ in range(max_steps):
        if mdp.terminal[s]:
            break
        a = int(rng.choice(mdp.n_actions, p=pi[s]))
        s_next = int(rng.choice(mdp.n_states, p=mdp.P[s, a]))
        actions.append(a)
        rewards.append(float(mdp.R[s, a]))
        states.append(s_next)
        s = s_next
    return np.array(states, dtype=int), np.array(actions, dtype=int), np.array(rewards, dtype=np.float64)


def q_from_v(mdp: TabularMDP, V) -> np.ndarray:
    """One-step look-ahead: q(s, a) = r(s, a) + gamma sum_s' p(s' | s, a) v(s'), with v(terminal) = 0.

    Sutton & Barto (2018), eq. 4.6. Entries of ``V`` at terminal states are ignored: a terminal state has
    value 0 by definition, so the look-ahead never bootstraps from one.

    Args:
        mdp: the MDP.
        V: float array ``(S,)``, state values.

    Returns:
        float64 array ``(S, A)``.

    Raises:
        ValueError: if ``V`` does not have shape ``(S,)``.
    """
    V = _check_values(mdp, V)
    V = np.where(mdp.terminal, 0.0, V)
    return mdp.R + mdp.gamma * mdp.P @ V


def greedy_policy(mdp: TabularMDP, V) -> np.ndarray:
    """The greedy deterministic policy pi(s) = argmax_a q(s, a) for the one-step look-ahead of ``V``.

    Sutton & Barto (2018), eq. 4.9. Ties go to the lowest-numbered action.

    Args:
        mdp: the MDP.
        V: float array ``(S,)``, state values.

    Returns:
        int array ``(S,)`` of actions.

    Raises:
        ValueError: if ``V`` does not have shape ``(S,)``.
    """
    return np.argmax(q_from_v(mdp, V), axis=1)


def greedy_actions(mdp: TabularMDP, V, atol: float = TIE_ATOL) -> np.ndarray:
    """Every greedy action of every state: ``mask[s, a]`` is True when ``a`` maximises q(s, a) (ties included).

    Sutton & Barto (2018), Figure 4.1 draws these sets as arrows beside each v_k.

    Args:
        mdp: the MDP.
        V: float array ``(S,)``, state values.
        atol: actions whose look-ahead values lie within ``atol`` of the best count as maximising.

    Returns:
        bool array ``(S, A)``; every row has at least one True.

    Raises:
        ValueError: if ``V`` does not have shape ``(S,)`` or ``atol < 0``.
    """
    if atol < 0:
        raise ValueError(f"atol must be >= 0; got {atol}")
    Q = q_from_v(mdp, V)
    return Q >= Q.max(axis=1, keepdims=True) - atol


def bellman_expectation_backup(mdp: TabularMDP, pi, V) -> np.ndarray:
    """One synchronous sweep of the Bellman expectation backup (Sutton & Barto 2018, eq. 4.5).

    v_{k+1}(s) = sum_a pi(a | s) [r(s, a) + gamma sum_s' p(s' | s, a) v_k(s')] for every s at once;
    terminal states keep value 0.

    Args:
        mdp: the MDP.
        pi: float array ``(S, A)``.
        V: float array ``(S,)``, the values v_k.

    Returns:
        float64 array ``(S,)``, the values v_{k+1}.
    """
    pi = _check_policy(mdp, pi)
    return np.sum(pi * q_from_v(mdp, V), axis=1)


def bellman_optimality_backup(mdp: TabularMDP, V) -> np.ndarray:
    """One synchronous sweep of the Bellman optimality backup (Sutton & Barto 2018, eq. 4.10).

    v_{k+1}(s) = max_a [r(s, a) + gamma sum_s' p(s' | s, a) v_k(s')] for every s at once; terminal states keep
    value 0.

    Returns:
        float64 array ``(S,)``.
    """
    return np.max(q_from_v(mdp, V), axis=1)


def _sweep_until_converged(backup, V: np.ndarray, theta: float, max_sweeps: int | None) -> np.ndarray:
    if theta <= 0:
        raise ValueError(f"theta must be > 0; got {theta}")
    if max_sweeps is not None and max_sweeps < 0:
        raise ValueError(f"max_sweeps must be >= 0; got {max_sweeps}")
    limit = SWEEP_CAP if max_sweeps is None else max_sweeps
    for _ in range(limit):
        V_new = backup(V)
        delta = np.max(np.abs(V_new - V))
        V = V_new
        if delta < theta:
            return V
    if max_sweeps is None:
        raise RuntimeError(
            f"no convergence within {SWEEP_CAP} sweeps; with gamma = 1 the policy evaluated must be proper (reach "
            "a terminal state with probability 1 from every state)"
        )
    return V


def policy_evaluation(mdp: TabularMDP, pi, theta: float = 1e-10, max_sweeps: int | None = None) -> np.ndarray:
    """Iterative policy evaluation with synchronous sweeps (Sutton & Barto 2018, Section 4.1, eq. 4.5).

    Starts from v_0 = 0 and applies the Bellman expectation backup to all states at once, each sweep using
    only the previous sweep's values, until the largest change in a sweep is below ``theta``, or until
    ``max_sweeps`` sweeps have been made. With gamma < 1 the sweeps always converge; with gamma = 1 they converge
    for a proper policy (:func:`is_proper`), while for an improper one that pays a cost on every step the values
    fall without bound.

    Args:
        mdp: the MDP.
        pi: float array ``(S, A)``, the policy to evaluate.
        theta: stopping threshold (> 0) on max_s |v_{k+1}(s) - v_k(s)| (S&B's theta in their algorithm box; not
            the policy parameters that the book calls theta from Chapter 4 on).
        max_sweeps: if given, stop after this many sweeps and return v_k even if not converged.

    Returns:
        float64 array ``(S,)``, the estimate of v_pi.

    Raises:
        ValueError: for a malformed policy, ``theta <= 0`` or ``max_sweeps < 0``.
        RuntimeError: if ``max_sweeps`` is None and the values do not converge within ``SWEEP_CAP`` sweeps
            (at gamma = 1, an improper policy).
    """
    pi = _check_policy(mdp, pi)
    return _sweep_until_converged(
        lambda V: bellman_expectation_backup(mdp, pi, V), np.zeros(mdp.n_states), theta, max_sweeps
    )


def policy_evaluation_exact(mdp: TabularMDP, pi) -> np.ndarray:
    """v_pi by solving the linear Bellman expectation equations (Sutton & Barto 2018, eq. 4.4).

    On the non-terminal states N: (I - gamma P_pi[N, N]) v_N = r_pi[N], where
    P_pi[s, s'] = sum_a pi(a | s) p(s' | s, a) and r_pi[s] = sum_a pi(a | s) r(s, a). The matrix is invertible
    when gamma < 1, and at gamma = 1 exactly when the policy is proper (:func:`is_proper`).

    Args:
        mdp: the MDP.
        pi: float array ``(S, A)``.

    Returns:
        float64 array ``(S,)``, with 0 at terminal states.

    Raises:
        ValueError: for a malformed policy, for an improper policy at gamma = 1, or when the system is
            numerically singular.
    """
    pi = _check_policy(mdp, pi)
    if mdp.gamma == 1.0:
        stuck = never_terminating_states(mdp, pi)
        if stuck.size:
            raise ValueError(_improper_message(mdp, stuck, "the policy"))
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    r_pi = np.sum(pi * mdp.R, axis=1)
    N = ~mdp.terminal
    A = np.eye(N.sum()) - mdp.gamma * P_pi[np.ix_(N, N)]
    V = np.zeros(mdp.n_states)
    try:
        V[N] = np.linalg.solve(A, r_pi[N])
    except np.linalg.LinAlgError:
        raise ValueError("the Bellman equations of this policy have no unique solution") from None
    if np.linalg.cond(A) > 1e12:
        raise ValueError(
            "the Bellman equations of this policy are nearly singular: it takes very long to reach a terminal "
            "state"
        )
    return V


def value_iteration(mdp: TabularMDP, theta: float = 1e-10, max_sweeps: int | None = None) -> np.ndarray:
    """Value iteration with synchronous sweeps (Sutton & Barto 2018, Section 4.4, eq. 4.10).

    Starts from v_0 = 0 and applies the Bellman optimality backup to all states at once until the largest
    change in a sweep is below ``theta``, or until ``max_sweeps`` sweeps have been made. It converges to v_* for
    gamma < 1, and at gamma = 1 when the MDP is a stochastic shortest path problem in the sense of Bertsekas &
    Tsitsiklis (1991): some policy is proper, and every improper policy has value -infinity from some state
    (for example because every step costs).

    Args:
        mdp: the MDP.
        theta: stopping threshold (> 0) on max_s |v_{k+1}(s) - v_k(s)|.
        max_sweeps: if given, stop after this many sweeps even if not converged.

    Returns:
        float64 array ``(S,)``, the estimate of v_*.

    Raises:
        ValueError: if ``theta <= 0`` or ``max_sweeps < 0``.
        RuntimeError: if ``max_sweeps`` is None and the values do not converge within ``SWEEP_CAP`` sweeps.
    """
    return _sweep_until_converged(
        lambda V: bellman_optimality_backup(mdp, V), np.zeros(mdp.n_states), theta, max_sweeps
    )


def policy_iteration(mdp: TabularMDP, pi0=None, max_iterations: int = 1000):
    """Policy iteration (Sutton & Barto 2018, Section 4.3): evaluate, improve greedily, repeat until stable.

    Each policy is evaluated exactly (:func:`policy_evaluation_exact`). The improved policy keeps the current
    action wherever it is among the greedy ones, so ties cannot make the loop cycle (S&B Exercise 4.4).
    At gamma = 1 the starting policy must be proper (:func:`is_proper`): then, when every improper policy has
    value -infinity from some state, every improved policy is proper too (Bertsekas & Tsitsiklis 1991).

    Args:
        mdp: the MDP.
        pi0: int array ``(S,)``, the initial deterministic policy (default: action 0 everywhere).
        max_iterations: the most policy-improvement steps to make.

    Returns:
        ``(policy, V)``: int array ``(S,)``, an optimal deterministic policy, and float64 array ``(S,)``, its
        values v_*.

    Raises:
        ValueError: if ``pi0`` is malformed, if gamma = 1 and ``pi0`` is improper (the message says so and names
            the states it never leaves), or if a policy met on the way cannot be evaluated (see
            :func:`policy_evaluation_exact`).
        RuntimeError: if the policy is not stable after ``max_iterations`` improvements.
    """
    policy = np.zeros(mdp.n_states, dtype=int) if pi0 is None else np.array(pi0)
    start = deterministic_to_stochastic(mdp, policy)  # validates pi0
    if mdp.gamma == 1.0:
        stuck = never_terminating_states(mdp, start)
        if stuck.size:
            raise ValueError(_improper_message(mdp, stuck, "the starting policy"))
    for _ in range(max_iterations):
        V = policy_evaluation_exact(mdp, deterministic_to_stochastic(mdp, policy))
        Q = q_from_v(mdp, V)
        best = Q.max(axis=1)
        keep = Q[np.arange(mdp.n_states), policy] >= best - 1e-12 * np.maximum(1.0, np.abs(best))
        new_policy = np.where(keep, policy, np.argmax(Q, axis=1))
        if np.array_equal(new_policy, policy):
            return policy, V
        policy = new_policy
    raise RuntimeError(f"policy iteration did not stabilise within {max_iterations} improvements")
