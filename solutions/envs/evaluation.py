"""Evaluating a network's policy on a Gymnasium task (the loop Chapters 3-5 share), and the training curve of a run
from the returns of its training episodes (Chapters 4-5)."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import torch

__all__ = ["mean_episode_return", "training_curve"]


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


def training_curve(episode_ends, episode_returns, grid, window: int) -> np.ndarray:
    """A run's training curve on a step grid: at each step s of ``grid``, the mean return of the training episodes
    that ended in (s - window, s]; NaN where none did.

    Args:
        episode_ends: int ``(E,)``, the environment step (counted over the whole run) at which each episode ended.
        episode_returns: float ``(E,)``, the return of each episode.
        grid: int ``(G,)``, the steps at which to read the curve.
        window: > 0, in environment steps.

    Returns:
        float64 array ``(G,)``.

    Raises:
        ValueError: if the two episode arrays differ in length or ``window`` is not positive.
    """
    episode_ends, episode_returns = np.asarray(episode_ends), np.asarray(episode_returns, dtype=np.float64)
    if episode_ends.shape != episode_returns.shape:
        raise ValueError(f"episode_ends and episode_returns must have the same shape; got {episode_ends.shape} and "
                         f"{episode_returns.shape}")
    if not window > 0:
        raise ValueError(f"window must be positive; got {window!r}")
    grid = np.asarray(grid)
    values = np.full(grid.shape, np.nan)
    for k, s in enumerate(grid):
        inside = (episode_ends > s - window) & (episode_ends <= s)
        if inside.any():
            values[k] = episode_returns[inside].mean()
    return values
