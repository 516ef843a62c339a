"""Evaluating a network's policy on a Gymnasium task: the loop Chapter 3's DQN and Chapter 4's REINFORCE share."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

__all__ = ["mean_episode_return"]


def mean_episode_return(choose_actions: Callable[[torch.Tensor], np.ndarray], n_episodes: int, seed: int,
                        env_id: str = "CartPole-v1") -> float:
    """Mean undiscounted return of ``n_episodes`` episodes run side by side in a Gymnasium vector environment.

    Args:
        choose_actions: maps float32 states ``(n_episodes, obs_dim)`` to the actions of every environment (int
            array ``(n_episodes,)``); called under ``torch.no_grad()``.
        n_episodes: how many episodes (one environment each).
        seed: seeds the environments' resets.
        env_id: a Gymnasium id of a task with discrete actions.

    Returns:
        The mean return; each episode counts until it first ends (terminated or truncated).
    """
    envs = gym.make_vec(env_id, num_envs=n_episodes, vectorization_mode="sync")
    states, _ = envs.reset(seed=seed)
    returns = np.zeros(n_episodes)
    running = np.ones(n_episodes, dtype=bool)
    with torch.no_grad():
        while running.any():
            states, rewards, terminated, truncated, _ = envs.step(
                choose_actions(torch.as_tensor(states, dtype=torch.float32)))
            returns += rewards * running
            running &= ~(terminated | truncated)
    envs.close()
    return float(returns.mean())
