"""A small dungeon for reading a Q-table (Chapter 3): the hero needs a sword to kill the monster that guards the
treasure.

The states say what the hero knows about the world -- has a sword or not, monster alive or dead, wounded or
not -- and the actions are what a role-playing game offers: use sword, move forward, move back, heal. Every
action costs -1 (time passes); reaching the treasure pays +10 and dying costs -10, and both end the episode.
Because the reward depends on the outcome, the reward of an action is random: using the sword while wounded
pays -1 when the monster dies and -10 when the hero does.

The model is kept as Gymnasium's toy-text environments keep theirs, ``P[s][a] = [(probability, next_state,
reward, terminated), ...]``: :class:`DungeonEnv` samples from it, and :func:`dungeon` turns it into a
:class:`~solutions.envs.tabular.TabularMDP` for dynamic programming.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from .tabular import TabularMDP, from_toy_text

__all__ = ["DUNGEON_ACTIONS", "DUNGEON_STATES", "DungeonEnv", "dungeon", "dungeon_model"]

DUNGEON_STATES = (
    "no sword, monster alive",
    "sword, monster alive",
    "sword, monster alive, wounded",
    "sword, monster dead",
    "treasure",  # terminal
    "hero dead",  # terminal
)
DUNGEON_ACTIONS = ("use sword", "move forward", "move back", "heal")


def dungeon_model(p_hit: float = 0.6) -> dict:
    """The dungeon's dynamics in toy-text form, ``P[s][a] = [(probability, next_state, reward, terminated)]``.

    * no sword: *move back* fetches the sword from the armoury; *move forward* meets the monster unarmed, and the
      hero dies with probability 0.5 (else flees back); *use sword* and *heal* do nothing.
    * sword, monster alive: *use sword* kills the monster with probability ``p_hit``, else the monster wounds
      the hero; *move forward* (sneaking past) gets the hero wounded with probability 0.5; *move back* and
      *heal* do nothing.
    * wounded: *heal* restores the hero; *use sword* kills the monster with probability 0.5, else the hero dies;
      *move forward* kills the hero with probability 0.5; *move back* does nothing.
    * monster dead: *move forward* reaches the treasure; everything else does nothing.

    Every transition pays -1, except those into "treasure" (+10) and "hero dead" (-10), which end the episode.
    The two terminal states are absorbing with reward 0.

    Raises:
        ValueError: if ``p_hit`` is outside ``[0, 1]``.
    """
    if not 0.0 <= p_hit <= 1.0:
        raise ValueError(f"p_hit must lie in [0, 1]; got {p_hit}")
    NO_SWORD, SWORD, WOUNDED, DEAD_MONSTER, TREASURE, HERO_DEAD = range(6)
    SWORD_ACTION, FORWARD, BACK, HEAL = range(4)
    outcomes = {(s, a): {s: 1.0} for s in range(4) for a in range(4)}  # by default an action does nothing
    outcomes[NO_SWORD, BACK] = {SWORD: 1.0}
    outcomes[NO_SWORD, FORWARD] = {HERO_DEAD: 0.5, NO_SWORD: 0.5}
    outcomes[SWORD, SWORD_ACTION] = {DEAD_MONSTER: p_hit, WOUNDED: 1.0 - p_hit}
    outcomes[SWORD, FORWARD] = {WOUNDED: 0.5, SWORD: 0.5}
    outcomes[WOUNDED, HEAL] = {SWORD: 1.0}
    outcomes[WOUNDED, SWORD_ACTION] = {DEAD_MONSTER: 0.5, HERO_DEAD: 0.5}
    outcomes[WOUNDED, FORWARD] = {HERO_DEAD: 0.5, WOUNDED: 0.5}
    outcomes[DEAD_MONSTER, FORWARD] = {TREASURE: 1.0}
    reward = {TREASURE: 10.0, HERO_DEAD: -10.0}
    P = {s: {a: [(p, s_next, reward.get(s_next, -1.0), s_next in reward)
                 for s_next, p in outcomes[s, a].items() if p > 0]
             for a in range(4)} for s in range(4)}
    for s in (TREASURE, HERO_DEAD):
        P[s] = {a: [(1.0, s, 0.0, True)] for a in range(4)}
    return P


def dungeon(gamma: float = 0.9, p_hit: float = 0.6) -> TabularMDP:
    """The dungeon as a TabularMDP (6 states, the last two terminal; 4 actions; named), ``R[s, a]`` being the
    expected reward of :func:`dungeon_model`. Every episode starts in "no sword, monster alive".

    Raises:
        ValueError: if ``p_hit`` or ``gamma`` is outside ``[0, 1]``.
    """
    return from_toy_text(dungeon_model(p_hit), gamma, initial=np.eye(6)[0], state_names=list(DUNGEON_STATES),
                         action_names=list(DUNGEON_ACTIONS))


class DungeonEnv(gym.Env):
    """The dungeon with the Gymnasium API: integer states and actions, random outcomes *and* rewards.

    ``reset`` puts the hero in state 0 ("no sword, monster alive"); ``step`` samples from
    :func:`dungeon_model` with the environment's ``np_random`` generator.
    """

    metadata = {"render_modes": []}

    def __init__(self, p_hit: float = 0.6):
        self.P = dungeon_model(p_hit)
        self.observation_space = gym.spaces.Discrete(len(DUNGEON_STATES))
        self.action_space = gym.spaces.Discrete(len(DUNGEON_ACTIONS))
        self._state = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._state = 0
        return self._state, {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in 0..3; got {action!r}")
        outcomes = self.P[self._state][int(action)]
        i = self.np_random.choice(len(outcomes), p=[p for p, *_ in outcomes])
        _, self._state, reward, terminated = outcomes[i]
        return self._state, float(reward), bool(terminated), False, {}
