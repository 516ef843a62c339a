"""A small continuous-state problem for Chapter 2's learned models: two rooms joined by a doorway.

The agent is a point in the unit square, (x, y) with y pointing up. A wall along x = 0.5 separates two rooms;
the only way through is a doorway at the top, y >= ``DOOR_Y``. Episodes start near the bottom of the left room
and end in a goal disc at the bottom of the right room, so the shortest route climbs to the doorway, crosses,
and comes down again (about 21 steps). Dynamics are linear except at the walls, which is what makes the
problem useful for comparing a linear model with a neural network.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

__all__ = [
    "DIRECTIONS", "DOOR_Y", "GOAL", "GOAL_RADIUS", "START", "STEP", "ContinuousTwoRooms", "in_goal",
    "make_two_rooms", "transition",
]

#: Displacement of one move, and its direction for each action (up, right, down, left).
STEP = 0.1
DIRECTIONS = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])
#: The wall at x = 0.5 is open for y >= DOOR_Y.
DOOR_Y = 0.7
START = np.array([0.15, 0.15])
GOAL = np.array([0.85, 0.15])
GOAL_RADIUS = 0.1


def transition(positions, actions, rng: np.random.Generator, noise: float = 0.02) -> np.ndarray:
    """Next positions of the two-rooms world for positions ``(N, 2)`` and actions ``(N,)`` (vectorised).

    Each position moves ``STEP`` in its action's direction plus Gaussian noise of standard deviation ``noise``
    per coordinate, clipped to the unit square; a move that would cross the wall x = 0.5 below ``DOOR_Y``
    leaves the position unchanged.

    Raises:
        ValueError: if the shapes do not match or an action is not in 0..3.
    """
    positions = np.asarray(positions, dtype=np.float64)
    actions = np.asarray(actions)
    if positions.ndim != 2 or positions.shape[1] != 2 or actions.shape != positions.shape[:1]:
        raise ValueError(f"positions must be (N, 2) and actions (N,); got {positions.shape} and {actions.shape}")
    if np.any((actions < 0) | (actions > 3)):
        raise ValueError("actions must lie in 0..3")
    moved = np.clip(positions + STEP * DIRECTIONS[actions] + rng.normal(0.0, noise, size=positions.shape), 0, 1)
    crosses = (positions[:, 0] - 0.5) * (moved[:, 0] - 0.5) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        y_cross = positions[:, 1] + (moved[:, 1] - positions[:, 1]) * (0.5 - positions[:, 0]) / (
            moved[:, 0] - positions[:, 0])
    blocked = crosses & (y_cross < DOOR_Y)
    return np.where(blocked[:, None], positions, moved)


class ContinuousTwoRooms(gym.Env):
    """Two rooms in the unit square; observations are positions (x, y), actions up, right, down, left.

    A move adds ``STEP`` in the chosen direction plus Gaussian noise of standard deviation ``noise`` to each
    coordinate, then clips to the square. A move that would cross the wall below the doorway leaves the agent
    where it was. Every step pays reward -1; the episode terminates on entering the goal disc (radius
    ``GOAL_RADIUS`` around ``GOAL``). Wrap it in ``gymnasium.wrappers.TimeLimit`` (see :func:`make_two_rooms`)
    to cut long episodes.

    Args:
        noise: standard deviation of the movement noise (a distance; 0 makes moves deterministic).
    """

    metadata = {"render_modes": []}

    def __init__(self, noise: float = 0.02):
        if noise < 0:
            raise ValueError(f"noise must be >= 0; got {noise}")
        self.noise = float(noise)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float64)
        self.action_space = gym.spaces.Discrete(4)
        self._position: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._position = np.clip(START + self.np_random.normal(0.0, 0.02, size=2), 0.0, 1.0)
        return self._position.copy(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._position is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, 4); got {action!r}")
        self._position = transition(self._position[None], np.array([int(action)]), self.np_random, self.noise)[0]
        terminated = bool(np.linalg.norm(self._position - GOAL) <= GOAL_RADIUS)
        return self._position.copy(), -1.0, terminated, False, {}


def in_goal(positions) -> np.ndarray:
    """Bool array: which of the positions (shape ``(..., 2)``) lie in the goal disc."""
    return np.linalg.norm(np.asarray(positions) - GOAL, axis=-1) <= GOAL_RADIUS


def make_two_rooms(noise: float = 0.02, max_episode_steps: int = 200) -> gym.Env:
    """:class:`ContinuousTwoRooms` with a ``TimeLimit`` of ``max_episode_steps``."""
    return gym.wrappers.TimeLimit(ContinuousTwoRooms(noise), max_episode_steps=max_episode_steps)
