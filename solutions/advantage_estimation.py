"""Advantage estimation without and with a critic (Chapter 5): the bias-variance trade-off of generalised advantage
estimation where the true advantage is known, and GRPO's episode form on CartPole, where the group of episodes from
one start state replaces the critic.

1. GAE (Schulman et al. 2016, "High-dimensional continuous control using generalized advantage estimation",
   Sections 3-4). On a small MDP with an explicit model (Russell & Norvig's 4x3 world, :func:`~solutions.envs.
   gridworlds.aima_4x3`) and a fixed stochastic policy pi, q_pi, v_pi and A_pi = q_pi - v_pi are exact (the linear
   Bellman equations). The estimator gets an *imperfect* value function V_hat = v_pi + e with a stated error e (an
   offset plus fixed per-state noise) and estimates A_pi(S_t, A_t) with :func:`solutions.ppo.gae` on sampled
   episodes for each lambda; :func:`gae_bias_variance` measures the bias and the variance of the estimates, and
   :func:`gae_expected_bias` gives the bias exactly from the model.

   With the TD errors of V_hat, delta_hat_t = delta_t + gamma e(S_{t+1}) - e(S_t), and E[delta_t | S_t, A_t] =
   A_pi(S_t, A_t), E[delta_{t+l} | S_t, A_t] = 0 for l >= 1 (delta_t the TD error of v_pi), so the bias of
   A_hat_t = sum_l (gamma lambda)^l delta_hat_{t+l} is a sum of the value errors only:

       b_lambda(s, a) = E[A_hat_t | S_t = s, A_t = a] - A_pi(s, a)
                      = E[ sum_{l >= 0} (gamma lambda)^l (gamma e(S_{t+l+1}) - e(S_{t+l})) | s, a ]

   (e = 0 at a terminal state). At lambda = 1 the sum telescopes to -e(s): the estimate is the Monte Carlo return
   minus V_hat(s), off by V_hat's error at s -- the *same* for every action at s. A term that depends on the state
   only is a baseline: it leaves the policy gradient unbiased (sum_a pi(a | s) grad ln pi(a | s) = 0). That is the
   sense of the paper's statement that GAE(gamma, 1) is "gamma-just" whatever V is (Section 3, with Proposition 1
   of Section 2): what biases the gradient is the *action-dependent* part b_lambda(s, a) - sum_a' pi(a' | s)
   b_lambda(s, a'), which is exactly 0 at lambda = 1 and grows as lambda goes to 0, where the estimate trusts V_hat
   at the next state. Against A_pi itself, a constant offset in V_hat makes the lambda = 1 estimate the *most*
   off (by -e(s)), and harmlessly so.

2. GRPO in the lecture's episode form (after Shao et al. 2024, "DeepSeekMath", Section 4.1): no critic; a group
   of G = ``num_generations`` episodes starts from the same state (CartPole's ``env.reset(seed=s)`` with one seed
   s for the group) and is sampled independently; the return-to-go R_n^g of
   episode g at step n is normalised across the members of the group still running at step n
   (:func:`episode_group_advantages`), and the policy takes PPO's clipped step on every step of every episode
   (:func:`solutions.ppo.ppo_clip_loss`) -- :func:`train_grpo_cartpole`. (DeepSeekMath's own per-step form,
   "process supervision" in Section 4.1.3, differs: it normalises every step reward over all the steps of the group
   and gives step n the sum of the normalised rewards from n on.)

   The lecture writes R_n^g = sum_{t >= n} gamma^t r_t, with t counted from the start of the episode. That is
   gamma^n G_n^g, with G_n^g = sum_{t >= n} gamma^(t-n) r_t the usual return-to-go; the factor gamma^n is the
   gamma^t of the discounted REINFORCE update (Sutton & Barto 2018, the algorithm box of Section 13.3), which
   deep-RL code drops (Chapter 4). Both readings give the same advantages here: every member alive at step n has
   the same factor gamma^n, and (R - mean) / std does not change when all R are multiplied by the same positive
   number. We compute G_n (the gamma^(t-n) form): its scale does not shrink with n, so the small ``eps`` added to
   the standard deviation means the same at every step. Without the division by the standard deviation
   (``scale_rewards="none"``) the readings differ: gamma^t weighs late steps less.

   Two properties of this baseline, as of Chapter 4's batch-mean baseline: the mean at step n includes the
   member's own return (the advantage is (1 - 1/k) times what a baseline without it would give, k members
   alive), and who is still alive at step n depends on the member's own earlier actions. CartPole's rewards are
   all 1, so R_n^g only measures how much longer episode g lasted than the others alive at step n.

Notation: ``gamma``, ``lam`` (lambda), ``theta`` the policy, G a return; TRL's names for GRPO: ``num_generations``,
``epsilon`` (the clip range), ``num_iterations`` (gradient steps per batch, DeepSeekMath's mu), ``beta``,
``scale_rewards``.
"""

from __future__ import annotations

import copy
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from .envs.gridworlds import aima_4x3
from .envs.tabular import TabularMDP
from .grpo import kl_k3
from .mdp import discounted_returns, policy_evaluation_exact, q_from_v, sample_trajectory, value_iteration
from .policy_gradients import CartPoleRun, PolicyNetwork, _sample_actions, evaluate_cartpole_policy, \
    reinforce_cartpole
from .ppo import gae, ppo_clip_loss
from .progress import show_progress
from .threads import single_threaded

__all__ = [
    "EPISODE_SCALE_REWARDS",
    "GAE_LAMBDAS",
    "EpisodeGroup",
    "GAEBiasVariance",
    "GRPOCartPoleRun",
    "Rollout",
    "compare_grpo_with_reinforce",
    "episode_group_advantages",
    "epsilon_soft_optimal_policy",
    "gae_bias_variance",
    "gae_expected_bias",
    "grpo_cartpole_runs",
    "sample_episode_groups",
    "sample_rollout",
    "train_grpo_cartpole",
]

#: The lambdas of the bias-variance figure.
GAE_LAMBDAS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0)

#: The ``scale_rewards`` options of the episode form (TRL's ``"batch"`` has no per-step meaning here).
EPISODE_SCALE_REWARDS = ("group", "none")


def _check_unit(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    return float(value)


def _check_count(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------ GAE: bias and variance

def epsilon_soft_optimal_policy(mdp: TabularMDP, epsilon: float = 0.5) -> np.ndarray:
    """The epsilon-soft version of an optimal policy: the action that is greedy for v_* with probability
    1 - epsilon + epsilon / A, every other action with epsilon / A (Sutton & Barto 2018, Section 5.4).

    Args:
        mdp: a finite MDP whose optimal values value iteration can find.
        epsilon: in [0, 1]; 1 gives the equiprobable random policy.

    Returns:
        float64 array ``(S, A)``, each row a probability vector.

    Raises:
        ValueError: if ``epsilon`` is outside [0, 1].
    """
    epsilon = _check_unit(epsilon, "epsilon")
    v_star = value_iteration(mdp)
    greedy = q_from_v(mdp, v_star).argmax(axis=1)  # ties to the lowest action
    pi = np.full((mdp.n_states, mdp.n_actions), epsilon / mdp.n_actions)
    pi[np.arange(mdp.n_states), greedy] += 1.0 - epsilon
    return pi


@dataclass
class Rollout:
    """Sampled episodes one after the other, in the layout :func:`solutions.ppo.gae` takes: step t went from
    ``states[t]`` with ``actions[t]`` to ``next_states[t]`` and paid ``rewards[t]``; an episode ends where
    ``terminated`` or ``truncated`` is True."""

    states: np.ndarray  #: int (T,): S_t
    actions: np.ndarray  #: int (T,): A_t
    rewards: np.ndarray  #: float (T,): R_{t+1}
    next_states: np.ndarray  #: int (T,): S_{t+1}
    terminated: np.ndarray  #: bool (T,): S_{t+1} is terminal
    truncated: np.ndarray  #: bool (T,): the episode was cut after step t at ``max_steps`` (not terminal)

    @property
    def episode_ends(self) -> np.ndarray:
        """bool (T,): step t is the last of its episode."""
        return self.terminated | self.truncated


def sample_rollout(mdp: TabularMDP, pi, n_episodes: int, rng: np.random.Generator, max_steps: int = 1000,
                   progress: bool | None = None) -> Rollout:
    """``n_episodes`` episodes of ``pi`` on ``mdp`` from its initial distribution, sampled one after the other with
    :func:`solutions.mdp.sample_trajectory` and laid end to end.

    Args:
        mdp: the MDP.
        pi: float ``(S, A)``, the policy.
        n_episodes: >= 1.
        rng: all randomness (start states, actions, transitions) comes from it, in that order per episode.
        max_steps: an episode still running after this many steps is cut (``truncated``).
        progress: show a tqdm bar over episodes (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`Rollout`.

    Raises:
        ValueError: if ``n_episodes`` or ``max_steps`` < 1 (and as :func:`~solutions.mdp.sample_trajectory`).
    """
    n_episodes = _check_count(n_episodes, "n_episodes")
    max_steps = _check_count(max_steps, "max_steps")
    parts = []
    for _ in tqdm(range(n_episodes), desc="episodes", disable=not show_progress(progress), leave=False):
        s0 = int(rng.choice(mdp.n_states, p=mdp.initial))
        states, actions, rewards = sample_trajectory(mdp, pi, s0, rng, max_steps)
        T = len(actions)
        terminated = np.zeros(T, dtype=bool)
        truncated = np.zeros(T, dtype=bool)
        if T:
            terminated[-1] = mdp.terminal[states[-1]]
            truncated[-1] = not terminated[-1]
        parts.append((states[:-1], actions, rewards, states[1:], terminated, truncated))
    return Rollout(*(np.concatenate(columns) for columns in zip(*parts)))


def gae_expected_bias(mdp: TabularMDP, pi, V_hat, lam: float) -> np.ndarray:
    """The exact bias b_lambda(s, a) = E[A_hat_t | S_t = s, A_t = a] - A_pi(s, a) of the GAE(gamma, lambda)
    estimate computed with the value estimate ``V_hat`` on episodes of ``pi`` that run until they terminate.

    With e = V_hat - v_pi (0 at terminal states) and d(s, a) = gamma sum_s' p(s' | s, a) e(s') - e(s), the expected
    value error carried by the TD error of one step, the bias obeys the Bellman-like equations

        b(s, a) = d(s, a) + gamma lambda sum_s' p(s' | s, a) B(s'),   B(s) = sum_a pi(a | s) b(s, a),  B(end) = 0,

    solved as (I - gamma lambda P_pi) B = d_pi on the non-terminal states. At lambda = 0, b = d; at lambda = 1,
    b(s, a) = -e(s) (see the module docstring). Schulman et al. (2016), Section 3.

    Args:
        mdp: the MDP (the model gives the expectations).
        pi: float ``(S, A)``, the policy that samples the episodes.
        V_hat: float ``(S,)``, the value estimate the TD errors use (its entries at terminal states are ignored).
        lam: lambda in [0, 1].

    Returns:
        float64 ``(S, A)``; rows of terminal states are 0.

    Raises:
        ValueError: if the shapes are wrong, ``lam`` is outside [0, 1], or (at gamma lambda = 1) the policy does
            not terminate (and as :func:`~solutions.mdp.policy_evaluation_exact`).
    """
    lam = _check_unit(lam, "lam")
    v_pi = policy_evaluation_exact(mdp, pi)  # checks pi, and that it terminates when gamma = 1
    V_hat = np.asarray(V_hat, dtype=np.float64)
    if V_hat.shape != (mdp.n_states,):
        raise ValueError(f"V_hat must have shape (S,) = {(mdp.n_states,)}; got {V_hat.shape}")
    pi = np.asarray(pi, dtype=np.float64)
    alive = ~mdp.terminal
    e = np.where(alive, V_hat - v_pi, 0.0)
    d = mdp.gamma * mdp.P @ e - e[:, None]                       # (S, A)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    B = np.zeros(mdp.n_states)
    system = np.eye(alive.sum()) - mdp.gamma * lam * P_pi[np.ix_(alive, alive)]
    B[alive] = np.linalg.solve(system, (pi * d).sum(axis=1)[alive])
    b = d + mdp.gamma * lam * mdp.P @ B
    b[~alive] = 0.0
    return b


@dataclass
class GAEBiasVariance:
    """What :func:`gae_bias_variance` returns. "By visit" means weighted by how often each (s, a) was visited, i.e.
    averaged over the sampled steps. Arrays over lambda have shape ``(L,)`` in the order of ``lams``."""

    lams: np.ndarray  #: float (L,)
    mean_bias: np.ndarray  #: float (L,): the mean over all sampled steps of A_hat_t - A_pi(S_t, A_t)
    bias_sq: np.ndarray  #: float (L,): bias(s, a)^2 averaged by visit, bias(s, a) the sample mean at (s, a)
    action_bias_sq: np.ndarray  #: float (L,): the same for the action-dependent part of bias(s, a) (what biases
    #: the policy gradient): bias(s, a) - sum_a' pi(a' | s) bias(s, a')
    variance: np.ndarray  #: float (L,): the sample variance of A_hat at (s, a) (divisor n), averaged by visit
    mse: np.ndarray  #: float (L,): the mean over sampled steps of (A_hat_t - A_pi)^2 = bias_sq + variance
    sampled_bias: np.ndarray  #: float (L, S, A): bias(s, a); NaN where (s, a) was not visited
    expected_bias: np.ndarray  #: float (L, S, A): the exact bias (:func:`gae_expected_bias`)
    expected_action_bias_sq: np.ndarray  #: float (L,): action_bias_sq of the exact bias, averaged by visit
    visits: np.ndarray  #: int (S, A): sampled steps at each (s, a)
    advantages: np.ndarray  #: float (S, A): A_pi = q_pi - v_pi
    v_pi: np.ndarray  #: float (S,)
    value_error: np.ndarray  #: float (S,): e = V_hat - v_pi (0 at terminal states)
    pi: np.ndarray  #: float (S, A): the policy
    estimates: dict = field(repr=False)  #: {lam: float (T,) the GAE estimates of the rollout}
    rollout: Rollout = field(repr=False)  #: the sampled episodes (every lambda uses the same ones)
    n_episodes: int = 0


def gae_bias_variance(lams=GAE_LAMBDAS, n_episodes: int = 2_000, seed: int = 0, value_offset: float = 0.3,
                      value_noise: float = 0.3, error_seed: int = 1, mdp: TabularMDP | None = None,
                      pi=None, max_steps: int = 1_000, progress: bool | None = None) -> GAEBiasVariance:
    """The bias and the variance of GAE(gamma, lambda) advantage estimates for each lambda of ``lams``, on an MDP
    whose true advantages are known (Schulman et al. 2016, Sections 3-4; the figure of Chapter 5).

    By default the MDP is Russell & Norvig's 4x3 world (:func:`~solutions.envs.gridworlds.aima_4x3`: gamma = 1,
    moves slip sideways with probability 0.2, every step -0.04, exits +1 and -1, start at (1, 1)) and pi the
    epsilon-soft optimal policy with epsilon = 0.5 (:func:`epsilon_soft_optimal_policy`). The estimator's value
    function is V_hat = v_pi + e with the stated error e(s) = ``value_offset`` + ``value_noise`` * z(s), z(s)
    standard normal drawn once from ``np.random.default_rng(error_seed)`` (e = 0 at terminal states). One set of
    ``n_episodes`` episodes (:func:`sample_rollout`) is scored by :func:`solutions.ppo.gae` for every lambda.

    Args:
        lams: the lambdas, each in [0, 1].
        n_episodes: episodes sampled (>= 2).
        seed: seeds the episodes.
        value_offset: the systematic part of V_hat's error, in reward units.
        value_noise: the standard deviation of its per-state part.
        error_seed: seeds the per-state part (fixed, so every seed sees the same V_hat).
        mdp, pi: another MDP and policy (pi must terminate with probability 1 if gamma = 1).
        max_steps: episodes are cut after this many steps (``truncated``; gae then bootstraps from V_hat). The
            exact bias assumes no cut; with the default MDP and policy no episode comes near 1,000 steps.
        progress: show a bar over the sampled episodes (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`GAEBiasVariance`.

    Raises:
        ValueError: for a lambda outside [0, 1], an empty ``lams``, ``n_episodes < 2``, a negative
            ``value_noise`` or non-finite error parameters (and as the functions called).
    """
    lams = np.array([_check_unit(lam, "each lambda") for lam in lams], dtype=np.float64)
    if lams.size == 0:
        raise ValueError("lams is empty")
    n_episodes = _check_count(n_episodes, "n_episodes", 2)
    if not (math.isfinite(value_offset) and math.isfinite(value_noise)) or value_noise < 0:
        raise ValueError(f"value_offset must be finite and value_noise finite and >= 0; got {value_offset!r}, "
                         f"{value_noise!r}")
    mdp = aima_4x3() if mdp is None else mdp
    pi = epsilon_soft_optimal_policy(mdp, 0.5) if pi is None else np.asarray(pi, dtype=np.float64)
    v_pi = policy_evaluation_exact(mdp, pi)
    A_pi = q_from_v(mdp, v_pi) - v_pi[:, None]
    z = np.random.default_rng(error_seed).standard_normal(mdp.n_states)
    e = np.where(mdp.terminal, 0.0, value_offset + value_noise * z)
    V_hat = v_pi + e

    rollout = sample_rollout(mdp, pi, n_episodes, np.random.default_rng(seed), max_steps, progress)
    s, a = rollout.states, rollout.actions
    cell = s * mdp.n_actions + a                                     # (s, a) as one index
    visits = np.bincount(cell, minlength=mdp.n_states * mdp.n_actions)
    seen = visits > 0
    weights = visits / visits.sum()                                  # the visit distribution over (s, a)

    def by_cell(x):  # the mean of x over the steps at each (s, a); NaN where none
        sums = np.bincount(cell, weights=x, minlength=len(visits))
        return np.where(seen, sums / np.maximum(visits, 1), np.nan)

    def action_part(bias):  # bias(s, a) - sum_a' pi(a' | s) bias(s, a'), unvisited pairs counted as 0
        b = np.nan_to_num(bias).reshape(mdp.n_states, mdp.n_actions)
        return (b - (pi * b).sum(axis=1, keepdims=True)).reshape(-1)

    L = len(lams)
    out = {name: np.zeros(L) for name in ("mean_bias", "bias_sq", "action_bias_sq", "variance", "mse",
                                           "expected_action_bias_sq")}
    sampled_bias = np.zeros((L, mdp.n_states, mdp.n_actions))
    expected_bias = np.zeros_like(sampled_bias)
    estimates = {}
    for k, lam in enumerate(lams):
        A_hat = gae(rollout.rewards, V_hat[s], V_hat[rollout.next_states], rollout.terminated, rollout.truncated,
                    gamma=mdp.gamma, lam=float(lam))
        estimates[float(lam)] = A_hat
        error = A_hat - A_pi[s, a]
        bias = by_cell(error)
        variance = by_cell(error ** 2) - bias ** 2
        out["mean_bias"][k] = error.mean()
        out["bias_sq"][k] = np.nansum(weights * bias ** 2)
        out["action_bias_sq"][k] = np.sum(weights * action_part(bias) ** 2)
        out["variance"][k] = np.nansum(weights * variance)
        out["mse"][k] = np.mean(error ** 2)
        sampled_bias[k] = bias.reshape(mdp.n_states, mdp.n_actions)
        expected_bias[k] = gae_expected_bias(mdp, pi, V_hat, float(lam))
        out["expected_action_bias_sq"][k] = np.sum(weights * action_part(expected_bias[k].reshape(-1)) ** 2)
    return GAEBiasVariance(lams=lams, sampled_bias=sampled_bias, expected_bias=expected_bias,
                           visits=visits.reshape(mdp.n_states, mdp.n_actions), advantages=A_pi, v_pi=v_pi,
                           value_error=e, pi=pi, estimates=estimates, rollout=rollout, n_episodes=n_episodes,
                           **out)


# ------------------------------------------------------------------------ GRPO, episode form, on CartPole-v1

def episode_group_advantages(returns_to_go_list, scale_rewards: str = "group", eps: float = 1e-4) -> list:
    """GRPO's advantages in the episode form: the return-to-go of each episode of a group at step n, normalised
    across the members of the group still running at step n (the lecture's episode form of the group baseline of
    Shao et al. 2024, Section 4.1):

        A_n^g = (R_n^g - mean_{h alive at n} R_n^h) / (std_{h alive at n} R_n^h + eps)    (``"group"``),
        A_n^g =  R_n^g - mean_{h alive at n} R_n^h                                        (``"none"``),

    with the sample standard deviation (divisor k - 1 for k members alive, as :func:`solutions.grpo.
    group_advantages` and TRL). Member h is alive at step n when its episode has more than n steps.

    * One member alive at step n: its advantage is 0 (the mean of one return is itself: there is nothing to
      compare it with, so no signal, as for a group whose rewards are all equal).
    * No member alive: there is no step n to score.
    * Members alive with equal returns get 0 (for ``"group"``, 0 / (0 + eps)).

    Args:
        returns_to_go_list: one 1-D float array per episode of the group, ``R^g = [R_0^g, ..., R_{T_g - 1}^g]``,
            T_g >= 1; the group has at least 2 episodes. Any positive scale common to all members at a step (such
            as gamma^n) cancels under ``"group"``.
        scale_rewards: ``"group"`` or ``"none"``.
        eps: > 0, added to the standard deviation (TRL: 1e-4).

    Returns:
        A list of float64 arrays, one per episode, of the lengths of the inputs.

    Raises:
        ValueError: if there are fewer than 2 episodes, one is empty, not 1-D or not finite, ``scale_rewards`` is
            not one of :data:`EPISODE_SCALE_REWARDS`, or ``eps`` is not positive.
    """
    returns = [np.asarray(R, dtype=np.float64) for R in returns_to_go_list]
    if len(returns) < 2:
        raise ValueError(f"a group needs at least 2 episodes; got {len(returns)}")
    for g, R in enumerate(returns):
        if R.ndim != 1 or len(R) == 0 or not np.all(np.isfinite(R)):
            raise ValueError(f"episode {g}: the returns-to-go must be a non-empty 1-D finite array; got shape "
                             f"{R.shape}")
    if scale_rewards not in EPISODE_SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {EPISODE_SCALE_REWARDS}; got {scale_rewards!r}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive number; got {eps!r}")

    # The group as a table: row g is episode g, column n is step n; NaN after an episode has ended.
    lengths = np.array([len(R) for R in returns])
    table = np.full((len(returns), lengths.max()), np.nan)
    for g, R in enumerate(returns):
        table[g, :len(R)] = R
    alive = ~np.isnan(table)                                          # (G, T_max)
    k = alive.sum(axis=0)                                             # members alive at each step n
    mean = np.nansum(table, axis=0) / k
    centred = np.where(alive, table - mean, 0.0)
    if scale_rewards == "group":
        std = np.sqrt((centred ** 2).sum(axis=0) / np.maximum(k - 1, 1))  # sample std over the alive members
        centred = centred / (std + eps)
    centred[:, k < 2] = 0.0                                           # a lone member: no signal
    advantages = [centred[g, :length] for g, length in enumerate(lengths)]
    return advantages


@dataclass
class EpisodeGroup:
    """The ``num_generations`` episodes of one group, all started with ``env.reset(seed=start_seed)``."""

    start_seed: int
    states: list  #: per episode float32 (T_g, d): S_0 .. S_{T_g - 1}
    actions: list  #: per episode int64 (T_g,)
    rewards: list  #: per episode float64 (T_g,)
    truncated: list  #: per episode bool: cut by the time limit rather than terminated


def sample_episode_groups(policy: torch.nn.Module, start_seeds, num_generations: int, rng: np.random.Generator,
                          envs: list | None = None, env_id: str = "CartPole-v1") -> tuple[list, list]:
    """Sample ``num_generations`` episodes from each start state: group k starts every one of its episodes with
    ``env.reset(seed=start_seeds[k])`` (so they share S_0) and then samples actions independently from ``policy``.
    All the episodes run side by side, one batched forward pass per time step for those still running.

    Args:
        policy: maps float32 states ``(B, d)`` to logits ``(B, A)``.
        start_seeds: ints, one per group.
        num_generations: G >= 2, episodes per group.
        rng: the action sampling (one ``rng.random()`` per running episode per step, in the order of the episodes:
            group by group, member by member).
        envs: ``len(start_seeds) * num_generations`` Gymnasium environments to reuse (episode k of group j runs in
            ``envs[j * num_generations + k]``); default: new ``gym.make(env_id)`` ones, closed at the end.
        env_id: the task when ``envs`` is None.

    Returns:
        ``(groups, ends)``: a list of :class:`EpisodeGroup` in the order of ``start_seeds``, and for every episode
        (in the same order) the number of environment steps taken by all episodes together when it ended.

    Raises:
        ValueError: if ``num_generations < 2``, ``start_seeds`` is empty, or ``envs`` has the wrong length.
    """
    num_generations = _check_count(num_generations, "num_generations", 2)
    start_seeds = [int(s) for s in start_seeds]
    if not start_seeds:
        raise ValueError("start_seeds is empty")
    n = len(start_seeds) * num_generations
    own_envs = envs is None
    envs = [gym.make(env_id) for _ in range(n)] if own_envs else list(envs)
    if len(envs) != n:
        raise ValueError(f"need {n} environments (groups x num_generations); got {len(envs)}")
    states = [[] for _ in range(n)]
    actions = [[] for _ in range(n)]
    rewards = [[] for _ in range(n)]
    truncated = [False] * n
    ends = [0] * n
    current = np.stack([envs[i].reset(seed=start_seeds[i // num_generations])[0] for i in range(n)])
    running = list(range(n))
    steps = 0
    while running:
        with torch.inference_mode():
            chosen = _sample_actions(policy(torch.as_tensor(current[running], dtype=torch.float32)), rng)
        still_running = []
        for i, action in zip(running, chosen):
            states[i].append(current[i].copy())
            actions[i].append(int(action))
            observation, reward, terminated, cut, _ = envs[i].step(int(action))
            rewards[i].append(float(reward))
            steps += 1
            current[i] = observation
            if terminated or cut:
                truncated[i] = bool(cut and not terminated)
                ends[i] = steps
            else:
                still_running.append(i)
        running = still_running
    if own_envs:
        for env in envs:
            env.close()
    groups = []
    for j, seed in enumerate(start_seeds):
        members = range(j * num_generations, (j + 1) * num_generations)
        groups.append(EpisodeGroup(seed, [np.array(states[i], dtype=np.float32) for i in members],
                                   [np.array(actions[i], dtype=np.int64) for i in members],
                                   [np.array(rewards[i], dtype=np.float64) for i in members],
                                   [truncated[i] for i in members]))
    return groups, ends


@dataclass
class GRPOCartPoleRun(CartPoleRun):
    """What :func:`train_grpo_cartpole` returns: a :class:`~solutions.policy_gradients.CartPoleRun` (training
    curve, evaluations; ``variant`` is ``"grpo"``, ``value`` None: there is no critic) with the groups' starts."""

    start_seeds: np.ndarray = None  #: int (n_updates, groups_per_update): the reset seed of each group
    start_states: np.ndarray = None  #: float32 (n_updates, groups_per_update, num_generations, d): every S_0
    zero_signal_share: list = field(default_factory=list)  #: per update, the share of steps with advantage 0


@single_threaded()
def train_grpo_cartpole(seed: int, n_updates: int | None = None, groups_per_update: int = 2,
                        num_generations: int = 8, lr: float = 1e-2, epsilon: float = 0.2, num_iterations: int = 2,
                        gamma: float = 0.99, beta: float = 0.0, scale_rewards: str = "group",
                        total_steps: int | None = None, hidden: int = 64, eval_every: int | None = None,
                        eval_episodes: int = 20, env_id: str = "CartPole-v1",
                        progress: bool | None = None) -> GRPOCartPoleRun:
    """GRPO without a critic on CartPole-v1, in the lecture's episode form (Shao et al. 2024, Section 4.1; the
    module docstring).

    Each update:

    1. draws ``groups_per_update`` start seeds from the run's generator and samples ``num_generations`` episodes
       from each (:func:`sample_episode_groups`: every episode of a group starts with ``env.reset(seed=s)``, the
       same s, and is then sampled independently);
    2. computes every episode's returns-to-go G_n = sum_{t >= n} gamma^(t-n) r_t
       (:func:`solutions.mdp.discounted_returns`) and the advantages :func:`episode_group_advantages` (normalised
       across the group members alive at step n). An episode cut at 500 steps is treated as if it had ended:
       there is no critic to bootstrap from;
    3. records ln pi_theta_old(A_n | S_n) and takes ``num_iterations`` Adam steps on the clipped surrogate of every
       step of the batch (:func:`solutions.ppo.ppo_clip_loss` with ``cliprange=epsilon``, a mean over all the
       steps of the batch: the token-level mean of ``loss_type="bnpo"``), plus ``beta`` times the mean k3 estimate
       of KL(pi_theta || pi_ref) (:func:`solutions.grpo.kl_k3`) to the initial policy when ``beta > 0``.

    The defaults were the best of a small search at 60,000 steps (seeds 0-2 or 0-4): Adam 3e-3, 1e-2 or 2e-2;
    1, 2, 4 or 8 gradient steps per batch; 1, 2, 4 or 8 groups of 8, 8, 8 or 4 episodes (and 2 of 16). With them,
    seeds 0-4: the sampled policy's evaluation at the end 493, 500, 500, 466, 500, the mean training return at
    60,000 steps 455 (Chapter 4's REINFORCE with a learned baseline: 452; :func:`compare_grpo_with_reinforce`),
    5-7 s of CPU a run. Fewer, larger updates learn slower per step (4 groups of 8 with Adam 3e-3 and 4 gradient
    steps: 332 and 416 over the last 10,000 steps, seeds 0-1).

    Every environment step counts against ``total_steps``; evaluation episodes do not. Training stops after
    ``n_updates`` updates or at the first update that reaches ``total_steps`` (it is not cut short: the run may
    pass ``total_steps`` by up to one update's episodes), whichever comes first.

    Args:
        seed: seeds torch (initial weights), the action sampling and the start seeds.
        n_updates: the number of updates (>= 1), or None.
        groups_per_update: start states per update (>= 1).
        num_generations: G, episodes per start state (>= 2; TRL's ``num_generations``).
        lr: Adam's step size.
        epsilon: the clip range in (0, 1) (TRL's ``epsilon``).
        num_iterations: gradient steps on each batch (>= 1; TRL's ``num_iterations``, DeepSeekMath's mu).
        gamma: discount in [0, 1].
        beta: the KL coefficient (>= 0; 0 as TRL's default).
        scale_rewards: ``"group"`` or ``"none"`` (:func:`episode_group_advantages`).
        total_steps: the environment-step budget, or None.
        hidden: the width of the policy's hidden layers (:class:`~solutions.policy_gradients.PolicyNetwork`).
        eval_every: after the update that passes each multiple of this many steps, and at the end, evaluate the
            sampled and the greedy policy over ``eval_episodes`` episodes (:func:`~solutions.policy_gradients.
            evaluate_cartpole_policy`, seed 10,000 + steps, as Chapter 4); None: never.
        eval_episodes: episodes per evaluation.
        env_id: a Gymnasium task with a vector state and discrete actions.
        progress: show a tqdm bar over updates (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`GRPOCartPoleRun`.

    Raises:
        ValueError: if both ``n_updates`` and ``total_steps`` are None, a count is below its minimum, ``gamma`` is
            outside [0, 1], ``beta`` is negative, or ``scale_rewards`` is unknown (``epsilon`` as
            :func:`~solutions.ppo.ppo_clip_loss`).
    """
    if n_updates is None and total_steps is None:
        raise ValueError("give n_updates or total_steps (or both)")
    if n_updates is not None:
        n_updates = _check_count(n_updates, "n_updates")
    if total_steps is not None:
        total_steps = _check_count(total_steps, "total_steps")
    groups_per_update = _check_count(groups_per_update, "groups_per_update")
    num_generations = _check_count(num_generations, "num_generations", 2)
    num_iterations = _check_count(num_iterations, "num_iterations")
    eval_episodes = _check_count(eval_episodes, "eval_episodes")
    gamma = _check_unit(gamma, "gamma")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0 <= beta < math.inf:
        raise ValueError(f"beta must be a finite number >= 0; got {beta!r}")
    if scale_rewards not in EPISODE_SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {EPISODE_SCALE_REWARDS}; got {scale_rewards!r}")
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be a number in (0, 1); got {epsilon!r}")

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    envs = [gym.make(env_id) for _ in range(groups_per_update * num_generations)]
    state_dim, n_actions = envs[0].observation_space.shape[0], int(envs[0].action_space.n)
    policy = PolicyNetwork(state_dim, n_actions, hidden)
    reference = copy.deepcopy(policy).requires_grad_(False) if beta > 0 else None
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    run = GRPOCartPoleRun("grpo", seed, policy, None, np.zeros(0, dtype=np.int64), np.zeros(0), 0, 0)
    ends, episode_returns, start_seeds, start_states = [], [], [], []
    steps = 0
    bar = tqdm(total=n_updates, desc=f"GRPO seed {seed}", disable=not show_progress(progress), mininterval=1.0,
               leave=False)
    while (n_updates is None or run.n_updates < n_updates) and (total_steps is None or steps < total_steps):
        seeds = rng.integers(2**31 - 1, size=groups_per_update)
        groups, group_ends = sample_episode_groups(policy, seeds, num_generations, rng, envs)
        ends += [steps + e for e in group_ends]
        steps_before, steps = steps, steps + max(group_ends)
        start_seeds.append(seeds)
        start_states.append(np.array([[s[0] for s in group.states] for group in groups]))

        states, actions, advantages = [], [], []
        for group in groups:
            returns_to_go = [discounted_returns(r, gamma) for r in group.rewards]
            advantages += episode_group_advantages(returns_to_go, scale_rewards)
            states += group.states
            actions += group.actions
            episode_returns += [float(r.sum()) for r in group.rewards]
        states = torch.as_tensor(np.concatenate(states))
        actions = torch.as_tensor(np.concatenate(actions))
        advantages = torch.as_tensor(np.concatenate(advantages), dtype=torch.float32)
        run.zero_signal_share.append(float((advantages == 0).float().mean()))
        with torch.no_grad():
            old_log_probs = torch.log_softmax(policy(states), dim=-1).gather(1, actions[:, None]).squeeze(1)
            ref_log_probs = (torch.log_softmax(reference(states), dim=-1).gather(1, actions[:, None]).squeeze(1)
                             if reference is not None else None)
        for _ in range(num_iterations):
            log_probs = torch.log_softmax(policy(states), dim=-1).gather(1, actions[:, None]).squeeze(1)
            loss = ppo_clip_loss(log_probs, old_log_probs, advantages, cliprange=epsilon)
            if reference is not None:
                loss = loss + beta * kl_k3(log_probs, ref_log_probs).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        run.n_updates += 1
        bar.update()
        if eval_every is not None and steps // eval_every > steps_before // eval_every:
            _evaluate(run, steps, eval_episodes, env_id)
    bar.close()
    for env in envs:
        env.close()
    run.episode_ends, run.episode_returns = np.array(ends, dtype=np.int64), np.array(episode_returns)
    run.total_steps = steps
    run.start_seeds = np.array(start_seeds, dtype=np.int64)
    run.start_states = np.array(start_states, dtype=np.float32)
    if eval_every is not None and (not run.eval_steps or run.eval_steps[-1] != steps):
        _evaluate(run, steps, eval_episodes, env_id)
    return run


def _evaluate(run: CartPoleRun, steps: int, n_episodes: int, env_id: str) -> None:
    """Append the sampled and the greedy policy's mean return at ``steps`` to ``run`` (Chapter 4's protocol)."""
    run.eval_steps.append(steps)
    run.eval_sampled.append(evaluate_cartpole_policy(run.policy, n_episodes, 10_000 + steps, False, env_id))
    run.eval_greedy.append(evaluate_cartpole_policy(run.policy, n_episodes, 10_000 + steps, True, env_id))


def _summary(runs: list, total_steps: int, grid_step: int, window: int) -> dict:
    """Chapter 4's figure dict (:func:`~solutions.policy_gradients.cartpole_runs`) for runs in the seeds' order."""
    grid = np.arange(grid_step, total_steps + 1, grid_step)
    curves = np.array([run.curve(grid, window) for run in runs])
    return {"steps": grid, "curves": curves, "mean": curves.mean(axis=0),
            "final": np.array([run.mean_return(10_000) for run in runs]), "runs": runs}


def compare_grpo_with_reinforce(seeds, total_steps: int = 60_000, grid_step: int = 1_000, window: int = 10_000,
                                n_jobs: int = 1, grpo_kwargs: dict | None = None,
                                reinforce_kwargs: dict | None = None, include_reinforce: bool = True,
                                progress: bool | None = None) -> dict[str, dict]:
    """GRPO (:func:`train_grpo_cartpole`) and Chapter 4's REINFORCE with a learned baseline
    (:func:`~solutions.policy_gradients.reinforce_cartpole`, variant ``"baseline"``) on the same seeds and the same
    budget of environment steps, all runs shared out among ``n_jobs`` processes (Chapter 4's pattern: fresh
    "spawn" processes; the runs are independent and seeded, so the results do not depend on ``n_jobs``).

    Args:
        seeds: the seeds, one run of each method each.
        total_steps: the environment-step budget of every run (GRPO may pass it by its last update's episodes).
        grid_step, window: the step grid ``grid_step, ..., total_steps`` of the training curves, and the window of
            each point (:meth:`~solutions.policy_gradients.CartPoleRun.curve`). A GRPO update's episodes end
            together, up to groups_per_update x num_generations x 500 steps apart (8,000 with the defaults): a
            shorter window than that can hold no episode end and give a NaN point.
        n_jobs: processes (>= 1).
        grpo_kwargs: more arguments of :func:`train_grpo_cartpole`.
        reinforce_kwargs: more arguments of :func:`~solutions.policy_gradients.reinforce_cartpole`.
        include_reinforce: False runs GRPO only.
        progress: a bar over the runs (default: :func:`~solutions.progress.show_progress`).

    Measured on the shared 2-core machine (seeds 0-4, 60,000 steps, ``n_jobs=2``): GRPO alone with one
    evaluation at the end, 32.6 s of CPU (this process and its workers) and 50 s of wall time; GRPO and REINFORCE
    with evaluations every 10,000 steps, 91 s of CPU. The mean training return of the five seeds at 10k, 20k, 30k,
    50k and 60k steps: GRPO 114, 255, 324, 385, 455 (window 5,000); REINFORCE with baseline 153, 286, 320, 446,
    452.

    Returns:
        ``{"grpo": figure dict, "baseline": figure dict}`` (only ``"grpo"`` without REINFORCE), each as Chapter 4's
        :func:`~solutions.policy_gradients.cartpole_runs` returns: ``"steps"``, ``"curves"`` ``(n_seeds, G)``,
        ``"mean"``, ``"final"`` (each run's mean training return over its last 10,000 steps) and ``"runs"`` in the
        order of ``seeds``.

    Raises:
        ValueError: if ``seeds`` is empty or ``n_jobs < 1`` (and as the training functions).
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("need at least one seed")
    n_jobs = _check_count(n_jobs, "n_jobs")
    total_steps = _check_count(total_steps, "total_steps")
    grpo_kwargs = {"progress": False, **(grpo_kwargs or {}), "total_steps": total_steps}
    reinforce_kwargs = {"progress": False, **(reinforce_kwargs or {}), "total_steps": total_steps}
    jobs = {("grpo", seed): (train_grpo_cartpole, (seed,), grpo_kwargs) for seed in seeds}
    if include_reinforce:
        jobs.update({("baseline", seed): (reinforce_cartpole, ("baseline", seed), reinforce_kwargs)
                     for seed in seeds})
    bar = tqdm(total=len(jobs), desc="GRPO and REINFORCE on CartPole", disable=not show_progress(progress))
    runs = {}
    if n_jobs == 1:
        for key, (function, args, kwargs) in jobs.items():
            runs[key] = function(*args, **kwargs)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # fork would copy a running kernel's threads and state
        with ProcessPoolExecutor(min(n_jobs, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(function, *args, **kwargs): key
                       for key, (function, args, kwargs) in jobs.items()}
            for future in as_completed(futures):
                runs[futures[future]] = future.result()
                bar.update()
    bar.close()
    methods = ("grpo", "baseline") if include_reinforce else ("grpo",)
    return {method: _summary([runs[method, seed] for seed in seeds], total_steps, grid_step, window)
            for method in methods}


def grpo_cartpole_runs(seeds, total_steps: int = 60_000, grid_step: int = 1_000, window: int = 10_000,
                       n_jobs: int = 1, progress: bool | None = None, **kwargs) -> dict:
    """Runs of :func:`train_grpo_cartpole` for several seeds with their training curves on a common step grid, as
    Chapter 4's :func:`~solutions.policy_gradients.cartpole_runs` (same dict); ``**kwargs`` go to
    :func:`train_grpo_cartpole`. Raises ValueError as :func:`compare_grpo_with_reinforce`."""
    return compare_grpo_with_reinforce(seeds, total_steps, grid_step, window, n_jobs, grpo_kwargs=kwargs,
                                       include_reinforce=False, progress=progress)["grpo"]
