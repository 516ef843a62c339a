"""Finite MDPs with an explicit model, and a Gymnasium environment that samples from one.

A finite MDP is the tuple (S, A, P, R, gamma) of Sutton & Barto (2018), Section 3.1. Here states and actions
are the integers ``0 .. S-1`` and ``0 .. A-1`` and the model is held as arrays:

* ``P[s, a, s']`` -- the probability p(s' | s, a) of moving to ``s'`` after action ``a`` in ``s`` (S&B eq. 3.4);
* ``R[s, a]`` -- the expected immediate reward r(s, a) = E[R_{t+1} | S_t = s, A_t = a] (S&B eq. 3.5);
* ``terminal[s]`` -- True for terminal states. A terminal state is absorbing (``P[s, a, s] = 1``) and pays no
  reward (``R[s, a] = 0``), so its value is 0 under every policy (S&B Section 3.4).

Rewards in this package are deterministic functions of (s, a), so a sampled reward equals ``R[s, a]``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

__all__ = ["GridLayout", "TabularMDP", "TabularMDPEnv", "from_toy_text", "random_mdp"]

_ATOL = 1e-9


@dataclass(frozen=True)
class GridLayout:
    """Where each state of a grid-world sits, for drawing.

    Args:
        shape: ``(n_rows, n_cols)`` of the grid; row 0 is the top row.
        cells: ``cells[s] = (row, col)`` for every state drawn on the grid; states without a cell (such as an
            absorbing end state) are ``None``.
        walls: ``(row, col)`` of blocked squares, drawn dark.
        labels: optional text drawn in a cell instead of its value, keyed by state (e.g. ``{3: "+1"}``).
    """

    shape: tuple[int, int]
    cells: tuple[tuple[int, int] | None, ...]
    walls: tuple[tuple[int, int], ...] = ()
    labels: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite MDP (S, A, P, R, gamma) with its model as arrays (Sutton & Barto 2018, Section 3.1).

    Args:
        P: float array, shape ``(S, A, S)``; ``P[s, a, s']`` = p(s' | s, a). Each ``P[s, a]`` sums to 1.
        R: float array, shape ``(S, A)``; expected immediate reward r(s, a).
        gamma: discount factor in ``[0, 1]``.
        terminal: bool array, shape ``(S,)``; terminal states must be absorbing with zero reward.
            Default: no terminal state.
        initial: float array, shape ``(S,)``; the start-state distribution used by ``reset``.
            Default: uniform over non-terminal states.
        state_names: one name per state (for tables and plots). Default: ``"0" .. "S-1"``.
        action_names: one name per action. Default: ``"0" .. "A-1"``.
        layout: a :class:`GridLayout` for grid-worlds, or None.

    Raises:
        ValueError: if a shape does not match, a probability is negative, a row of ``P`` or ``initial`` does
            not sum to 1, ``gamma`` is outside ``[0, 1]``, or a terminal state is not absorbing with zero reward.
    """

    P: np.ndarray
    R: np.ndarray
    gamma: float
    terminal: np.ndarray | None = None
    initial: np.ndarray | None = None
    state_names: Sequence[str] | None = None
    action_names: Sequence[str] | None = None
    layout: GridLayout | None = None

    def __post_init__(self) -> None:
        P = np.array(self.P, dtype=np.float64)
        R = np.array(self.R, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(f"P must have shape (S, A, S); got {P.shape}")
        S, A, _ = P.shape
        if R.shape != (S, A):
            raise ValueError(f"R must have shape (S, A) = {(S, A)}; got {R.shape}")
        if not np.all(np.isfinite(P)) or not np.all(np.isfinite(R)):
            raise ValueError("P and R must be finite")
        if np.any(P < 0):
            s, a, t = np.argwhere(P < 0)[0]
            raise ValueError(f"P has a negative probability: P[{s}, {a}, {t}] = {P[s, a, t]}")
        sums = P.sum(axis=2)
        if not np.allclose(sums, 1.0, atol=1e-8):
            s, a = np.argwhere(~np.isclose(sums, 1.0, atol=1e-8))[0]
            raise ValueError(f"P[{s}, {a}, :] sums to {sums[s, a]:.6g}, not 1")
        gamma = float(self.gamma)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1]; got {gamma}")
        terminal = np.zeros(S, dtype=bool) if self.terminal is None else np.array(self.terminal, dtype=bool)
        if terminal.shape != (S,):
            raise ValueError(f"terminal must have shape (S,) = {(S,)}; got {terminal.shape}")
        for s in np.flatnonzero(terminal):
            if not np.allclose(P[s, :, s], 1.0) or not np.allclose(R[s], 0.0):
                raise ValueError(f"terminal state {s} must be absorbing (P[s, a, s] = 1) with R[s, a] = 0")
        if self.initial is None:
            if terminal.all():
                raise ValueError("every state is terminal: give an initial distribution")
            initial = (~terminal).astype(np.float64) / (~terminal).sum()
        else:
            initial = np.array(self.initial, dtype=np.float64)
            if initial.shape != (S,) or np.any(initial < 0) or not np.isclose(initial.sum(), 1.0):
                raise ValueError("initial must be a probability vector of shape (S,)")
        names = [str(s) for s in range(S)] if self.state_names is None else list(self.state_names)
        actions = [str(a) for a in range(A)] if self.action_names is None else list(self.action_names)
        if len(names) != S or len(actions) != A:
            raise ValueError(f"need {S} state names and {A} action names; got {len(names)} and {len(actions)}")
        if self.layout is not None and len(self.layout.cells) != S:
            raise ValueError(f"layout.cells must have one entry per state ({S}); got {len(self.layout.cells)}")
        for arr in (P, R, terminal, initial):
            arr.flags.writeable = False
        object.__setattr__(self, "P", P)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "terminal", terminal)
        object.__setattr__(self, "initial", initial)
        object.__setattr__(self, "state_names", tuple(names))
        object.__setattr__(self, "action_names", tuple(actions))

    @property
    def n_states(self) -> int:
        """Number of states S."""
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        """Number of actions A."""
        return self.P.shape[1]

    def __deepcopy__(self, memo: dict) -> TabularMDP:
        """A copy with arrays of its own, read-only like the original's; names and layout are shared.

        The grader gives every call of an answer its own copy of the MDP (``autograder.checks._harness``), so
        this is on the hot path: copying the layout's nested tuples field by field would cost more than the rest.
        """
        copied = copy.copy(self)
        for name in ("P", "R", "terminal", "initial"):
            array = getattr(self, name).copy()
            array.flags.writeable = False
            object.__setattr__(copied, name, array)
        memo[id(self)] = copied
        return copied

    def replace(self, **changes: Any) -> TabularMDP:
        """A copy with some fields changed, e.g. ``mdp.replace(gamma=0.9)``; the copy is validated again."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        return (
            f"TabularMDP(S={self.n_states}, A={self.n_actions}, gamma={self.gamma}, "
            f"terminal={np.flatnonzero(self.terminal).tolist()})"
        )


class TabularMDPEnv(gym.Env):
    """A Gymnasium environment that samples episodes from a :class:`TabularMDP`.

    Observations and actions are integers (``Discrete`` spaces). ``step`` draws ``s' ~ P[s, a]`` and returns
    the reward ``R[s, a]``; ``terminated`` is True on entering a terminal state. Time limits are left to
    Gymnasium's ``TimeLimit`` wrapper, as usual.
    """

    metadata = {"render_modes": []}

    def __init__(self, mdp: TabularMDP):
        self.mdp = mdp
        self.observation_space = gym.spaces.Discrete(mdp.n_states)
        self.action_space = gym.spaces.Discrete(mdp.n_actions)
        self._state: int | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[int, dict]:
        super().reset(seed=seed)
        self._state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.initial))
        return self._state, {}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {self.mdp.n_actions}); got {action!r}")
        s, a = self._state, int(action)
        reward = float(self.mdp.R[s, a])
        self._state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.P[s, a]))
        return self._state, reward, bool(self.mdp.terminal[self._state]), False, {}


def from_toy_text(P: dict, gamma: float, **kwargs: Any) -> TabularMDP:
    """Convert a Gymnasium toy-text model (``env.unwrapped.P``) to a :class:`TabularMDP`.

    Toy-text environments (FrozenLake, CliffWalking, Taxi) keep their model as
    ``P[s][a] = [(probability, next_state, reward, terminated), ...]``. The reward of a transition may depend
    on the next state, so ``R[s, a]`` is its expectation, sum over s' of p(s' | s, a) r(s, a, s')
    (S&B eq. 3.5). A state is terminal when a transition into it has ``terminated=True``; its row is made
    absorbing with zero reward (toy-text already keeps such states absorbing).

    Args:
        P: the toy-text model, a dict (or list) indexed by state, then action.
        gamma: discount factor in ``[0, 1]``.
        **kwargs: passed on to :class:`TabularMDP` (``initial``, ``state_names``, ...).

    Raises:
        ValueError: if the model is empty, mentions an unknown state, or its probabilities do not sum to 1.
    """
    n_states = len(P)
    if n_states == 0:
        raise ValueError("the toy-text model has no states")
    n_actions = len(P[0])
    P_arr = np.zeros((n_states, n_actions, n_states))
    R_arr = np.zeros((n_states, n_actions))
    terminal = np.zeros(n_states, dtype=bool)
    for s in range(n_states):
        if len(P[s]) != n_actions:
            raise ValueError(f"state {s} has {len(P[s])} actions, state 0 has {n_actions}")
        for a in range(n_actions):
            for prob, s_next, reward, done in P[s][a]:
                if not 0 <= s_next < n_states:
                    raise ValueError(f"P[{s}][{a}] leads to unknown state {s_next}")
                P_arr[s, a, s_next] += prob
                R_arr[s, a] += prob * reward
                terminal[s_next] |= bool(done)
    for s in np.flatnonzero(terminal):
        P_arr[s] = 0.0
        P_arr[s, :, s] = 1.0
        R_arr[s] = 0.0
    return TabularMDP(P_arr, R_arr, gamma, terminal=terminal, **kwargs)


def random_mdp(rng: np.random.Generator, n_states: int = 6, n_actions: int = 3, gamma: float = 0.9,
               n_terminal: int = 1, sparsity: float = 0.5) -> TabularMDP:
    """A random finite MDP, for tests and for the autograder's random instances.

    Each ``P[s, a]`` is a Dirichlet draw over a random subset of next states (about ``1 - sparsity`` of them,
    at least one); rewards are standard normal. The last ``n_terminal`` states are terminal (absorbing, zero
    reward). Every non-terminal state has a positive probability of moving to a terminal one when
    ``n_terminal > 0``, so every policy ends episodes with probability 1 even at ``gamma = 1``.

    Args:
        rng: random generator.
        n_states: S >= 1 + n_terminal.
        n_actions: A >= 1.
        gamma: discount factor in ``[0, 1]``.
        n_terminal: number of terminal states (>= 0).
        sparsity: fraction in ``[0, 1)`` of next states given probability 0 in each row.

    Raises:
        ValueError: if the sizes are inconsistent or ``sparsity`` is outside ``[0, 1)``.
    """
    if n_actions < 1 or n_terminal < 0 or n_states < n_terminal + 1:
        raise ValueError(f"need n_actions >= 1 and n_states > n_terminal >= 0; got {n_states}, {n_actions}, "
                         f"{n_terminal}")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must lie in [0, 1); got {sparsity}")
    S, A = n_states, n_actions
    P = np.zeros((S, A, S))
    for s in range(S - n_terminal):
        for a in range(A):
            support = rng.random(S) >= sparsity
            support[rng.integers(S)] = True
            if n_terminal:
                support[rng.integers(S - n_terminal, S)] = True
            P[s, a, support] = rng.dirichlet(np.ones(support.sum()))
    R = rng.standard_normal((S, A))
    terminal = np.zeros(S, dtype=bool)
    terminal[S - n_terminal:] = True
    for s in np.flatnonzero(terminal):
        P[s, :, s] = 1.0
        R[s] = 0.0
    return TabularMDP(P, R, gamma, terminal=terminal)
