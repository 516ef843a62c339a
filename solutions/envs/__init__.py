"""Environments with the Gymnasium API; tabular MDPs also expose their model as arrays ``P``, ``R``."""

from .dungeon import DUNGEON_ACTIONS, DUNGEON_STATES, DungeonEnv, dungeon
from .gridworlds import (DYNA_MAZE_WALLS, MOVE_NAMES, MOVES, aima_4x3, blocking_maze, cliff_walking, dyna_maze,
                         penguin_on_ice, shortcut_maze, sutton_barto_4x4)
from .tabular import GridLayout, TabularMDP, TabularMDPEnv, from_toy_text, random_mdp

__all__ = [
    "DUNGEON_ACTIONS", "DUNGEON_STATES", "DYNA_MAZE_WALLS", "MOVES", "MOVE_NAMES", "DungeonEnv", "GridLayout",
    "TabularMDP", "TabularMDPEnv", "aima_4x3", "blocking_maze", "cliff_walking", "dungeon", "dyna_maze",
    "from_toy_text", "penguin_on_ice", "random_mdp", "shortcut_maze", "sutton_barto_4x4",
]
