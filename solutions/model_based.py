"""Model-based reinforcement learning with tabular models, and Dyna-Q (Chapter 2).

* Maximum-likelihood models from experience: counts n(s, a, s'), estimates
  P̂(s' | s, a) = n(s, a, s') / n(s, a) and the running mean R̂(s, a) of the rewards seen after (s, a)
  (Sutton & Barto 2018, Section 8.1; Russell & Norvig, AIMA 4th ed., Section 22.2, "adaptive dynamic
  programming").
* Certainty-equivalent planning: act greedily with respect to the values of the estimated MDP, as if it were
  the true one, and re-plan as the estimates improve.
* Dyna-Q (S&B Section 8.2): after each real step, a few Q-learning updates on transitions replayed from a
  learned model of a deterministic environment.

Counts are int arrays ``n`` of shape ``(S, A, S)``; rewards estimates float arrays ``R_hat`` of shape
``(S, A)``. A Dyna-Q model is a dict mapping ``(s, a)`` to ``(r, s_next, terminated)``, in the order the pairs
were first seen (Python dicts keep insertion order).
"""

from __future__ import annotations

import numpy as np

from .envs.tabular import TabularMDP, TabularMDPEnv
from .q_learning import epsilon_greedy, epsilon_greedy_rows, q_learning_update

__all__ = [
    "AIMA_LECTURE_PATHS",
    "AIMA_LECTURE_POLICY",
    "certainty_equivalence_agent",
    "certainty_equivalent_q",
    "changing_maze_runs",
    "counts_from_transitions",
    "dyna_q",
    "dyna_q_episode",
    "dyna_q_planning_step",
    "dyna_q_runs",
    "first_episode_at_most",
    "first_short_episode",
    "greedy_path",
    "lecture_transitions",
    "ml_transition_model",
    "q_learning_agent",
    "update_model",
]

#: The fixed policy of the lecture's passive-learning example in the AIMA 4x3 world, by square
#: (AIMA coordinates (column, row), (1, 1) bottom left): row 3 "r r r", row 2 "u . u", row 1 "u l l l".
AIMA_LECTURE_POLICY = {
    "(1,3)": "right", "(2,3)": "right", "(3,3)": "right",
    "(1,2)": "up", "(3,2)": "up",
    "(1,1)": "up", "(2,1)": "left", "(3,1)": "left", "(4,1)": "left",
}

#: The three trajectories of the lecture's example (after AIMA Section 22.2): squares visited, ending in an exit.
#: The third one is not consistent with the 4x3 dynamics: its step (2,1) -> (3,1) under "left" goes the opposite
#: way, which the world never does (a move slips only at right angles). The chapter keeps the data as the lecture
#: gives them and points out that the count-based model, P_hat((3,1) | (2,1), left) = 1, believes them.
AIMA_LECTURE_PATHS = (
    ("(1,1)", "(1,2)", "(1,3)", "(1,2)", "(1,3)", "(2,3)", "(3,3)", "(4,3)"),
    ("(1,1)", "(1,2)", "(1,3)", "(2,3)", "(3,3)", "(3,2)", "(3,3)", "(4,3)"),
    ("(1,1)", "(2,1)", "(3,1)", "(3,2)", "(4,2)"),
)


def lecture_transitions(mdp: TabularMDP, paths=AIMA_LECTURE_PATHS, policy=AIMA_LECTURE_POLICY,
                        step_reward: float = -0.04) -> list[tuple[int, int, float, int]]:
    """The lecture's trajectories as transitions ``(s, a, r, s_next)`` of the AIMA 4x3 world ``mdp``.

    Each move from a non-exit square pays ``step_reward`` and uses the policy's action; the last square of a
    path is an exit, left by one more transition ("up", paying the exit's reward) into the terminal ``end``.

    Args:
        mdp: the world of :func:`solutions.envs.aima_4x3` (for state and action numbers and exit rewards).
        paths: sequences of state names.
        policy: the action name taken in each non-exit square.
        step_reward: reward of a move from a non-exit square.

    Raises:
        ValueError: if a path mentions an unknown square or a square the policy does not cover.
    """
    names = list(mdp.state_names)
    actions = list(mdp.action_names)
    end = names.index("end")
    transitions = []
    for path in paths:
        unknown = [p for p in path if p not in names]
        if unknown:
            raise ValueError(f"unknown squares {unknown}; the world has {names}")
        for here, there in zip(path[:-1], path[1:]):
            if here not in policy:
                raise ValueError(f"the policy has no action for {here}")
            transitions.append((names.index(here), actions.index(policy[here]), step_reward, names.index(there)))
        exit_state = names.index(path[-1])
        transitions.append((exit_state, actions.index("up"), float(mdp.R[exit_state, 0]), end))
    return transitions


def update_model(n: np.ndarray, R_hat: np.ndarray, s: int, a: int, r: float, s_next: int) -> None:
    """Add one transition ``(s, a, r, s_next)`` to the counts and the reward estimate, in place.

    n(s, a, s') <- n(s, a, s') + 1, then with n(s, a) = sum over s' of n(s, a, s') (this transition included)
    the running mean R̂(s, a) <- (r + (n(s, a) - 1) R̂(s, a)) / n(s, a), which equals the average of every
    reward seen after (s, a) (S&B Section 2.4, the incremental mean).

    Args:
        n: int array ``(S, A, S)`` of transition counts, updated in place.
        R_hat: float array ``(S, A)``, the mean reward seen after each pair, updated in place.
        s, a, s_next: the transition's state, action and next state.
        r: its reward.

    Raises:
        ValueError: if the shapes of ``n`` and ``R_hat`` do not match.
    """
    if n.ndim != 3 or R_hat.shape != n.shape[:2]:
        raise ValueError(f"n must have shape (S, A, S) and R_hat (S, A); got {n.shape} and {R_hat.shape}")
    n[s, a, s_next] += 1
    n_sa = n[s, a].sum()
    R_hat[s, a] = (r + (n_sa - 1) * R_hat[s, a]) / n_sa


def counts_from_transitions(transitions, n_states: int, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``n`` (int, ``(S, A, S)``) and mean rewards ``R_hat`` (float, ``(S, A)``) of transitions
    ``(s, a, r, s_next)``."""
    n = np.zeros((n_states, n_actions, n_states), dtype=np.int64)
    R_hat = np.zeros((n_states, n_actions))
    for s, a, r, s_next in transitions:
        update_model(n, R_hat, s, a, r, s_next)
    return n, R_hat


def ml_transition_model(n: np.ndarray) -> np.ndarray:
    """The maximum-likelihood transition model P̂(s' | s, a) = n(s, a, s') / n(s, a).

    Args:
        n: array ``(S, A, S)`` of non-negative transition counts.

    Returns:
        Float array ``(S, A, S)``. Each row ``P_hat[s, a]`` of a pair seen at least once sums to 1; the row
        of a pair never tried is all zeros (there is no data to estimate it from).

    Raises:
        ValueError: if ``n`` is not 3-d with ``n.shape[0] == n.shape[2]`` or holds a negative count.
    """
    n = np.asarray(n)
    if n.ndim != 3 or n.shape[0] != n.shape[2]:
        raise ValueError(f"n must have shape (S, A, S); got {n.shape}")
    if np.any(n < 0):
        raise ValueError("counts must be non-negative")
    n_sa = n.sum(axis=2, keepdims=True)
    return np.divide(n, n_sa, out=np.zeros(n.shape), where=n_sa > 0)


def certainty_equivalent_q(n: np.ndarray, R_hat: np.ndarray, gamma: float, terminal,
                           theta: float = 1e-10, *, Q_init: np.ndarray | None = None) -> np.ndarray:
    """Optimal action values of the estimated MDP (P̂, R̂): plan as if the estimates were the truth.

    Value iteration on action values: for every pair seen at least once,
    Q(s, a) <- R̂(s, a) + gamma * sum over s' of P̂(s' | s, a) V(s'), where V(s') is the largest Q(s', a')
    over the actions a' tried in s', and V(s') = 0 when s' is terminal or no action has been tried there.
    Pairs never tried keep Q = 0 and do not enter the max: the model says nothing about them. Sweeps are
    synchronous, start from Q = 0 (or from ``Q_init``) and stop when no Q changes by more than ``theta``.

    Args:
        n: int array ``(S, A, S)`` of transition counts.
        R_hat: float array ``(S, A)`` of mean rewards.
        gamma: discount factor in ``[0, 1)``. (At gamma = 1 an estimated model can hold a loop that never
            reaches a terminal state, and the values would not converge.)
        terminal: bool array ``(S,)``.
        theta: stopping threshold > 0.
        Q_init: float array ``(S, A)`` to start the sweeps from instead of 0, e.g. the plan before the latest
            transition (its entries for untried pairs are ignored). The fixed point is the same; a nearby start
            reaches the tolerance in fewer sweeps.

    Returns:
        Float array ``(S, A)``.

    Raises:
        ValueError: on mismatched shapes, gamma outside ``[0, 1)`` or theta <= 0.
    """
    n = np.asarray(n)
    R_hat = np.asarray(R_hat, dtype=np.float64)
    terminal = np.asarray(terminal, dtype=bool)
    if R_hat.shape != n.shape[:2] or terminal.shape != n.shape[:1]:
        raise ValueError(f"shapes do not match: n {n.shape}, R_hat {R_hat.shape}, terminal {terminal.shape}")
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must lie in [0, 1) for planning on an estimated model; got {gamma}")
    if theta <= 0:
        raise ValueError(f"theta must be positive; got {theta}")
    if Q_init is not None and np.shape(Q_init) != R_hat.shape:
        raise ValueError(f"Q_init must have shape {R_hat.shape}; got {np.shape(Q_init)}")
    P_hat = ml_transition_model(n)
    seen = n.sum(axis=2) > 0
    Q = np.zeros(R_hat.shape) if Q_init is None else np.where(seen, np.asarray(Q_init, dtype=np.float64), 0.0)
    while True:
        V = np.where(seen, Q, -np.inf).max(axis=1)
        V[~seen.any(axis=1) | terminal] = 0.0
        Q_new = np.where(seen, R_hat + gamma * P_hat @ V, 0.0)
        delta = np.max(np.abs(Q_new - Q))
        Q = Q_new
        if delta < theta:
            return Q


def _greedy_policy_from_q(Q: np.ndarray) -> np.ndarray:
    return np.argmax(Q, axis=1)


def certainty_equivalence_agent(mdp: TabularMDP, n_episodes: int, epsilon: float, rng: np.random.Generator,
                                max_steps: int = 200, *, return_counts: bool = False):
    """Learn a model while acting, and act epsilon-greedily on the plan of the current model.

    The loop of model-based RL: act, observe (s, a, r, s'), update the counts and R̂ (:func:`update_model`),
    re-solve the estimated MDP (:func:`certainty_equivalent_q`) and act on it. Re-planning starts from the
    previous plan and stops at a tolerance of 1e-3, which is plenty to pick actions with.

    What makes the agent try new pairs: the epsilon-greedy coin (a uniformly random action with probability
    ``epsilon``), random tie-breaking among equal values, and the value 0 that the plan gives every untried
    pair. That 0 is optimistic only where every tried action of the state is worth less than 0 -- in a world
    with negative step rewards, before news of a positive exit has reached the state. Once it has, tried
    actions are worth more than 0, the untried ones lose the greedy choice, and only the epsilon-greedy coin
    tries them; some pairs may never be tried (``return_counts`` shows which).

    Args:
        mdp: the true MDP; the agent only samples from it (through :class:`TabularMDPEnv`).
        n_episodes: number of episodes.
        epsilon: exploration probability of the epsilon-greedy behaviour.
        rng: random generator for the agent and the environment.
        max_steps: an episode is cut after this many steps.
        return_counts: also return the transition counts ``n`` at the end.

    Returns:
        Int array ``(n_episodes, S)``: the greedy policy of the model after each episode; with
        ``return_counts``, the pair ``(policies, n)`` with ``n`` the int array ``(S, A, S)`` of counts.
    """
    env = TabularMDPEnv(mdp)
    env.reset(seed=int(rng.integers(2**31)))
    S, A = mdp.n_states, mdp.n_actions
    n = np.zeros((S, A, S), dtype=np.int64)
    R_hat = np.zeros((S, A))
    Q = np.zeros((S, A))
    policies = np.zeros((n_episodes, S), dtype=int)
    for episode in range(n_episodes):
        s, _ = env.reset()
        for _ in range(max_steps):
            a = epsilon_greedy(Q[s], epsilon, rng)
            s_next, r, terminated, truncated, _ = env.step(a)
            update_model(n, R_hat, s, a, r, s_next)
            Q = certainty_equivalent_q(n, R_hat, mdp.gamma, mdp.terminal, theta=1e-3, Q_init=Q)
            s = s_next
            if terminated or truncated:
                break
        policies[episode] = _greedy_policy_from_q(Q)
    return (policies, n) if return_counts else policies


def q_learning_agent(mdp: TabularMDP, n_episodes: int, alpha: float, epsilon: float, rng: np.random.Generator,
                     max_steps: int = 200) -> np.ndarray:
    """Model-free Q-learning with epsilon-greedy behaviour, for comparison with the model-based agent.

    Same interface as :func:`certainty_equivalence_agent`; one :func:`q_learning_update` per real step.

    Returns:
        Int array ``(n_episodes, S)``: the greedy policy after each episode.
    """
    env = TabularMDPEnv(mdp)
    env.reset(seed=int(rng.integers(2**31)))
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    policies = np.zeros((n_episodes, mdp.n_states), dtype=int)
    for episode in range(n_episodes):
        s, _ = env.reset()
        for _ in range(max_steps):
            a = epsilon_greedy(Q[s], epsilon, rng)
            s_next, r, terminated, truncated, _ = env.step(a)
            q_learning_update(Q, s, a, r, s_next, terminated, alpha, mdp.gamma)
            s = s_next
            if terminated or truncated:
                break
        policies[episode] = _greedy_policy_from_q(Q)
    return policies


# ------------------------------------------------------------------------------------------------------ Dyna-Q


def dyna_q_planning_step(Q: np.ndarray, model: dict, alpha: float, gamma: float, rng: np.random.Generator) -> None:
    """One planning update of Dyna-Q (after S&B Section 8.2, the box "Tabular Dyna-Q", step (f)), in place.

    Pick a previously observed pair uniformly at random, ``s, a = list(model)[rng.integers(len(model))]``,
    look up what the model predicts, ``r, s_next, terminated = model[(s, a)]``, and apply the Q-learning update
    to ``Q[s, a]`` with that simulated transition (the target is ``r`` alone when ``terminated``).

    This sampling distribution differs from the book's box, which draws a previously observed state uniformly
    and then an action previously taken in it: drawing pairs uniformly picks a state in proportion to the
    number of actions tried in it, so states where more actions have been tried are planned from more often.
    The two coincide when every observed state has the same number of tried actions.

    Args:
        Q: float array ``(S, A)``, updated in place.
        model: dict ``{(s, a): (r, s_next, terminated)}`` of the pairs seen so far (not modified).
        alpha: step size.
        gamma: discount factor.
        rng: random generator; exactly one ``rng.integers`` call.

    Raises:
        ValueError: if the model is empty (there is nothing to plan with yet).
    """
    if not model:
        raise ValueError("the model is empty: take a real step before planning")
    s, a = list(model)[rng.integers(len(model))]
    r, s_next, terminated = model[(s, a)]
    q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)


def dyna_q_episode(env, Q: np.ndarray, model: dict, n_planning: int, alpha: float, epsilon: float, gamma: float,
                   rng: np.random.Generator, max_steps: int = 100_000) -> int:
    """Run one episode of tabular Dyna-Q (S&B Section 8.2), updating ``Q`` and ``model`` in place.

    The episode starts with ``env.reset()`` (no seed: the environment goes on with its own generator). At each
    step: ``a = epsilon_greedy(Q[s], epsilon, rng)``; ``s_next, r, terminated, truncated, _ = env.step(a)``;
    the Q-learning update of ``Q[s, a]`` with this real transition; ``model[(s, a)] = (r, s_next, terminated)``;
    then ``n_planning`` calls of :func:`dyna_q_planning_step`. The episode ends when ``terminated`` or
    ``truncated`` is True, or after ``max_steps`` steps.

    Args:
        env: a Gymnasium environment with integer states and actions.
        Q: float array ``(S, A)``, updated in place.
        model: the Dyna model dict (see :func:`dyna_q_planning_step`), updated in place.
        n_planning: planning updates per real step (n >= 0).
        alpha, epsilon, gamma: step size, exploration probability, discount factor.
        rng: the agent's random generator (action choices and planning), used in the order above.
        max_steps: the longest episode.

    Returns:
        The number of real steps taken.

    Raises:
        ValueError: if ``n_planning`` is negative.
    """
    if n_planning < 0:
        raise ValueError(f"n_planning must be >= 0; got {n_planning}")
    s, _ = env.reset()
    for step in range(1, max_steps + 1):
        a = epsilon_greedy(Q[s], epsilon, rng)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        model[(s, a)] = (r, s_next, terminated)
        for _ in range(n_planning):
            dyna_q_planning_step(Q, model, alpha, gamma, rng)
        s = s_next
        if terminated or truncated:
            return step
    return max_steps


def dyna_q(mdp: TabularMDP, n_planning: int, n_episodes: int, rng: np.random.Generator, alpha: float = 0.1,
           epsilon: float = 0.1, gamma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One run of Dyna-Q on a tabular MDP: ``n_episodes`` calls of :func:`dyna_q_episode`, Q starting at 0.

    Args:
        mdp: the environment's model (only sampled from, through :class:`TabularMDPEnv`).
        n_planning: planning updates per real step.
        n_episodes: number of episodes.
        rng: random generator of the agent; the environment's is seeded from it.
        alpha, epsilon: step size and exploration probability (S&B Example 8.1: 0.1 and 0.1).
        gamma: discount factor (default ``mdp.gamma``).

    Returns:
        ``(steps, Q)``: int array ``(n_episodes,)`` of steps per episode, and the final ``(S, A)`` values.
    """
    gamma = mdp.gamma if gamma is None else gamma
    env = TabularMDPEnv(mdp)
    env.reset(seed=int(rng.integers(2**31)))
    Q = np.zeros((mdp.n_states, mdp.n_actions))
    model: dict = {}
    steps = np.array([dyna_q_episode(env, Q, model, n_planning, alpha, epsilon, gamma, rng)
                      for _ in range(n_episodes)])
    return steps, Q


def dyna_q_runs(mdp: TabularMDP, n_planning: int, n_runs: int = 30, n_episodes: int = 50, alpha: float = 0.1,
                epsilon: float = 0.1, gamma: float | None = None, seed: int = 0,
                max_steps: int = 100_000) -> np.ndarray:
    """Steps per episode of ``n_runs`` independent runs of Dyna-Q, computed together (for S&B Figure 8.2).

    The same algorithm as :func:`dyna_q` (epsilon-greedy with random tie-breaking, one Q-learning update per
    real step, ``n_planning`` updates on uniformly drawn observed pairs of a deterministic model -- not the
    state-then-action draw of S&B's box, see :func:`dyna_q_planning_step`), with the
    runs held in arrays of shape ``(n_runs, ...)`` so that numpy does a step of every run at once. Random
    numbers are drawn differently, so a run is not step-for-step the run :func:`dyna_q` would make.

    Args:
        mdp: a tabular MDP whose transitions from non-terminal states are deterministic (as Dyna-Q's model
            assumes); episodes start from ``mdp.initial``.
        n_planning: planning updates per real step.
        n_runs: number of independent runs.
        n_episodes: episodes per run.
        alpha, epsilon: step size and exploration probability.
        gamma: discount factor (default ``mdp.gamma``).
        seed: seed of the random generator.
        max_steps: an episode is cut after this many steps.

    Returns:
        Int array ``(n_runs, n_episodes)`` of steps per episode.

    Raises:
        ValueError: if a transition of the MDP is not deterministic, or ``n_planning`` is negative.
    """
    if n_planning < 0:
        raise ValueError(f"n_planning must be >= 0; got {n_planning}")
    live = ~mdp.terminal
    if not np.all(np.isclose(mdp.P[live].max(axis=2), 1.0)):
        raise ValueError("dyna_q_runs needs deterministic transitions (Dyna-Q's tabular model assumes them)")
    gamma = mdp.gamma if gamma is None else gamma
    rng = np.random.default_rng(seed)
    S, A = mdp.n_states, mdp.n_actions
    next_state = mdp.P.argmax(axis=2)  # (S, A)
    pair_next, pair_reward = next_state.ravel(), mdp.R.ravel()  # by pair s * A + a
    pair_ends = mdp.terminal[pair_next]
    Q = np.zeros((n_runs, S, A))
    Q_pairs = Q.reshape(n_runs, S * A)  # the same numbers, indexed by pair
    known = np.zeros((n_runs, S * A), dtype=bool)
    pairs = np.zeros((n_runs, S * A), dtype=np.int64)  # observed pairs s * A + a, in order of first visit
    n_pairs = np.zeros(n_runs, dtype=np.int64)
    steps = np.zeros((n_runs, n_episodes), dtype=np.int64)
    episode = np.zeros(n_runs, dtype=np.int64)
    s = rng.choice(S, size=n_runs, p=mdp.initial)
    while True:
        runs = np.flatnonzero(episode < n_episodes)
        if runs.size == 0:
            return steps
        k = runs.size
        state = s[runs]
        action = epsilon_greedy_rows(Q[runs, state], epsilon, rng)
        s_next = next_state[state, action]
        r = mdp.R[state, action]
        done = mdp.terminal[s_next]
        target = r + np.where(done, 0.0, gamma * Q[runs, s_next].max(axis=1))
        Q[runs, state, action] += alpha * (target - Q[runs, state, action])
        pair = state * A + action
        new = ~known[runs, pair]
        pairs[runs[new], n_pairs[runs[new]]] = pair[new]
        n_pairs[runs[new]] += 1
        known[runs, pair] = True
        # planning: each update draws an observed pair of its run uniformly (all draws made up front)
        drawn_pairs = pairs[runs[None, :], (rng.random((n_planning, k)) * n_pairs[runs]).astype(np.int64)]
        for drawn in drawn_pairs:
            p_next = pair_next[drawn]
            p_target = pair_reward[drawn] + np.where(pair_ends[drawn], 0.0, gamma * Q[runs, p_next].max(axis=1))
            Q_pairs[runs, drawn] += alpha * (p_target - Q_pairs[runs, drawn])
        steps[runs, episode[runs]] += 1
        s[runs] = s_next
        ended = done | (steps[runs, episode[runs]] >= max_steps)
        finished = runs[ended]
        episode[finished] += 1
        s[finished] = rng.choice(S, size=finished.size, p=mdp.initial)


def changing_maze_runs(before: TabularMDP, after: TabularMDP, switch_step: int, n_steps: int, n_planning: int,
                       kappa: float | None = None, n_runs: int = 20, alpha: float = 1.0, epsilon: float = 0.1,
                       gamma: float | None = None, seed: int = 0) -> np.ndarray:
    """Cumulative reward of Dyna-Q or Dyna-Q+ on a maze that changes after ``switch_step`` steps (S&B 8.3).

    The agent acts in ``before`` for the first ``switch_step`` time steps and in ``after`` from then on; it is
    not told of the change. Each episode starts from the start square and ends at the goal (reward +1), after
    which the next one starts at once; time runs on across episodes. Every real step makes one Q-learning update
    and sets the deterministic model of the pair to what was just seen (so the model follows the change once
    the agent meets it), then ``n_planning`` planning updates follow, as in :func:`dyna_q_runs`.

    * ``kappa=None``: Dyna-Q. Planning draws a pair uniformly from those tried so far (as in
      :func:`dyna_q_planning_step`; the book's box draws a visited state, then an action tried in it).
    * ``kappa > 0``: Dyna-Q+. Planning draws a state uniformly from those visited so far and an action uniformly
      from all of them; an action never tried there is modelled as leading back to the same state with reward
      0 (S&B's footnote to Section 8.3). The simulated reward is ``r + kappa * sqrt(tau)``, where ``tau`` is the
      number of time steps since the pair was last tried for real (since the start if never): the longer a
      pair goes untested, the more planning pulls the agent towards trying it again.

    The runs are held together in arrays of shape ``(n_runs, ...)``, as in :func:`dyna_q_runs`.

    Args:
        before, after: TabularMDPs over the same states and actions, deterministic outside terminal states,
            with one start state (e.g. from :func:`solutions.envs.shortcut_maze`).
        switch_step: the time step at which ``after`` replaces ``before`` (0 <= switch_step <= n_steps).
        n_steps: time steps per run.
        n_planning: planning updates per real step (>= 0).
        kappa: the exploration-bonus weight of Dyna-Q+ (> 0), or None for Dyna-Q.
        n_runs: number of independent runs.
        alpha, epsilon: step size and exploration probability of the epsilon-greedy behaviour (ties broken at
            random; the bonus is not used when acting).
        gamma: discount factor (default ``before.gamma``).
        seed: seed of the random generator.

    Returns:
        Int array ``(n_runs, n_steps)``: the cumulative reward (the number of episodes completed) after each
        time step.

    Raises:
        ValueError: if the MDPs differ in size, are not deterministic, ``kappa`` is not positive, or
            ``switch_step`` or ``n_planning`` is out of range.
    """
    if before.P.shape != after.P.shape:
        raise ValueError(f"before and after must have the same states and actions; got {before.P.shape} "
                         f"and {after.P.shape}")
    for mdp in (before, after):
        if not np.all(np.isclose(mdp.P[~mdp.terminal].max(axis=2), 1.0)):
            raise ValueError("changing_maze_runs needs deterministic transitions (Dyna-Q's model assumes them)")
    if kappa is not None and not kappa > 0:
        raise ValueError(f"kappa must be positive (or None for Dyna-Q); got {kappa}")
    if not 0 <= switch_step <= n_steps:
        raise ValueError(f"switch_step must lie in [0, n_steps={n_steps}]; got {switch_step}")
    if n_planning < 0:
        raise ValueError(f"n_planning must be >= 0; got {n_planning}")
    gamma = before.gamma if gamma is None else gamma
    plus = kappa is not None
    rng = np.random.default_rng(seed)
    S, A = before.n_states, before.n_actions
    start = int(np.argmax(before.initial))
    worlds = [(mdp.P.argmax(axis=2).ravel(), mdp.R.ravel(), mdp.terminal) for mdp in (before, after)]
    # Arrays over (run, pair) are flat: entry run * S * A + s * A + a.
    offset = np.arange(n_runs) * (S * A)
    Q = np.zeros(n_runs * S * A)
    # the learned deterministic model; an untried pair leads back to its state with reward 0
    model_next = np.tile(np.repeat(np.arange(S), A), n_runs)
    model_reward = np.zeros(n_runs * S * A)
    model_ends = np.zeros(n_runs * S * A, dtype=bool)
    last_tried = np.zeros(n_runs * S * A)  # time step of the last real try (0 if never)
    n_keys = S if plus else S * A  # planning draws visited states (Dyna-Q+) or tried pairs (Dyna-Q)
    seen = np.zeros((n_runs, n_keys), dtype=bool)
    seen_list = np.zeros((n_runs, n_keys), dtype=np.int64)
    n_seen = np.zeros(n_runs, dtype=np.int64)
    runs = np.arange(n_runs)
    rewards = np.zeros((n_runs, n_steps), dtype=np.int64)
    total = np.zeros(n_runs, dtype=np.int64)
    s = np.full(n_runs, start)

    def max_q(states):  # max_a Q(state, a) of each run, states of shape (n_runs,)
        return Q[(offset + states * A)[:, None] + np.arange(A)].max(axis=1)

    for t in range(n_steps):
        next_state, reward, terminal = worlds[0 if t < switch_step else 1]
        a = epsilon_greedy_rows(Q[(offset + s * A)[:, None] + np.arange(A)], epsilon, rng)
        s_next, r = next_state[s * A + a], reward[s * A + a]
        done = terminal[s_next]
        i = offset + s * A + a
        Q[i] += alpha * (r + np.where(done, 0.0, gamma * max_q(s_next)) - Q[i])
        model_next[i], model_reward[i], model_ends[i], last_tried[i] = s_next, r, done, t + 1
        key = s if plus else s * A + a
        new = ~seen[runs, key]
        seen_list[new, n_seen[new]] = key[new]
        n_seen[new] += 1
        seen[runs, key] = True
        drawn = seen_list[runs, (rng.random((n_planning, n_runs)) * n_seen).astype(np.int64)]
        if plus:
            drawn = drawn * A + rng.integers(A, size=(n_planning, n_runs))
        for pair in drawn:
            j = offset + pair
            p_reward = model_reward[j]
            if plus:
                p_reward = p_reward + kappa * np.sqrt(t + 1 - last_tried[j])
            Q[j] += alpha * (p_reward + np.where(model_ends[j], 0.0, gamma * max_q(model_next[j])) - Q[j])
        total += r.astype(np.int64)
        rewards[:, t] = total
        s = np.where(done, start, s_next)
    return rewards


def first_episode_at_most(steps, threshold: float = 20.0) -> int | None:
    """The first episode (numbered from 1) whose average over runs is at most ``threshold`` steps, or None.

    Args:
        steps: int array ``(n_runs, n_episodes)`` as returned by :func:`dyna_q_runs`.
        threshold: the number of steps.
    """
    mean = np.asarray(steps, dtype=np.float64).mean(axis=0)
    below = np.flatnonzero(mean <= threshold)
    return int(below[0]) + 1 if below.size else None


def first_short_episode(rewards, after_step: int, shorter_than: int) -> np.ndarray:
    """When each run first completed an episode of fewer than ``shorter_than`` steps that ended after
    ``after_step``, from the cumulative rewards of :func:`changing_maze_runs`.

    Each +1 of the cumulative reward marks the end of an episode (the goal pays +1, all else 0), and the next
    episode starts at the following time step, so episode lengths are the gaps between those ends. In the
    shortcut maze every route through the old gap takes at least 16 steps: an episode shorter than that went
    through the new one.

    Args:
        rewards: int array ``(n_runs, n_steps)`` of cumulative rewards; entry ``t`` is the total after time step
            ``t + 1``.
        after_step: only episodes that end after this time step count.
        shorter_than: the length, in steps, that an episode has to beat.

    Returns:
        Int array ``(n_runs,)``: the time step (counted from 1) at which that episode ended, or -1 if no episode
        of the run qualifies.

    Raises:
        ValueError: if ``rewards`` is not 2-d or decreases, or steps up by more than 1.
    """
    rewards = np.asarray(rewards)
    if rewards.ndim != 2:
        raise ValueError(f"rewards must have shape (n_runs, n_steps); got {rewards.shape}")
    gains = np.diff(rewards, axis=1, prepend=0)
    if np.any((gains != 0) & (gains != 1)):
        raise ValueError("cumulative rewards must rise by 0 or 1 per time step (one goal reward per episode)")
    found = np.full(len(rewards), -1)
    for run, gain in enumerate(gains):
        ends = np.flatnonzero(gain) + 1  # time steps at which episodes ended
        lengths = np.diff(ends, prepend=0)
        short = np.flatnonzero((ends > after_step) & (lengths < shorter_than))
        if short.size:
            found[run] = ends[short[0]]
    return found


def greedy_path(mdp: TabularMDP, Q: np.ndarray, max_steps: int = 100) -> list[int]:
    """States visited when following the greedy actions of ``Q`` (ties to the first best action) from the most
    likely start state along the most likely transitions, until a terminal state or ``max_steps`` steps."""
    s = int(np.argmax(mdp.initial))
    path = [s]
    for _ in range(max_steps):
        if mdp.terminal[s]:
            break
        s = int(np.argmax(mdp.P[s, int(np.argmax(Q[s]))]))
        path.append(s)
    return path
