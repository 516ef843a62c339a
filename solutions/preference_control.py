"""Deep reinforcement learning from human preferences on a control task (Chapter 6): Christiano et al. (2017),
"Deep reinforcement learning from human preferences", Section 2.2, on Gymnasium's CartPole-v1 with Chapter 5's PPO.

The agent never sees a reward. It runs its policy; from its own rollouts we cut trajectory *segments* of
``segment_length`` steps and show pairs of them to an overseer, who says which one is better. A reward model
r_hat(s, a) is fitted to all the comparisons so far by the Bradley-Terry likelihood (the paper's eq. 1,
:func:`segment_preference_loss`), and PPO (:mod:`solutions.ppo_cartpole`) trains the policy on r_hat alone. The
loop goes on: the policy visits new states, new pairs are asked about, the reward model is refitted.

The parts, in the paper's words and ours:

* **The overseer** (:func:`overseer_labels`) is simulated: it judges a segment by a *hidden reward*
  (:func:`hidden_reward`) that the agent is never given, and it makes mistakes. By default it behaves like the
  paper's synthetic oracle (it prefers the segment with the larger hidden return) except that with probability
  ``label_noise`` = 0.1 it answers at random, the error model Christiano et al. assume of their human raters
  (Section 2.2.3: "a 10 % chance that the human responds uniformly at random"): so 5 % of its labels are wrong, at
  any difference in quality. We chose this over a Bradley-Terry (Boltzmann) overseer because it is the paper's,
  its error rate is one number the chapter can state and a test can check, and it does not hand the reward model a
  label distribution of exactly the form the model assumes. A Bradley-Terry overseer is there too
  (``overseer_temperature`` > 0: it prefers segment 1 with probability sigma((G_1 - G_2) / temperature)).
* **The reward model** (:class:`RewardEnsemble`) is an ensemble of ``ensemble_size`` = 3 multilayer perceptrons
  (the paper's 64-64 with leaky ReLU), each fitted on a bootstrap resample of the comparisons; the reward the agent
  receives is the mean of the members' outputs, each first divided by its own scale (see "termination" below).
* **The queries** (:func:`select_queries`): new comparisons are asked on a schedule that starts with a quarter of
  the budget on the untrained policy and then decays as 1 / (T + T_0) (the paper's "label annealing", Appendix A;
  :func:`comparisons_schedule`). Which pairs are asked follows one of two rules: ``"random"`` pairs, or the pairs
  on which the ensemble *disagrees* most (Section 2.2.4): ``pool_factor`` = 10 times as many candidate pairs as
  are asked, the variance across members of each member's predicted probability that segment 1 is preferred, and
  the pairs with the largest variance.

The hidden reward and termination. CartPole's own reward, +1 per step, carries no information inside a segment of
fixed length unless the episode ends in it; and a Bradley-Terry reward is only defined up to an additive
constant, so an agent whose learned reward happens to be negative prefers to end its episodes early. Christiano et
al. met the same problem and removed termination from their tasks, replacing it by a penalty the agent had to
learn (Appendix A: termination conditions "encode information about the task even when the reward function is not
observable"). CartPole cannot run on after the pole has fallen, so we keep the termination but make it part of
what is compared and learned:

* The hidden reward of a step in state s = (x, x_dot, theta, theta_dot) is
  r(s) = 1 - (x / 2.4)^2 / 2 - (theta / 12 deg)^2 / 2, which lies in [0, 1] wherever the pole is still up: being
  alive is worth up to 1 a step, and more so with the cart near the centre of the track and the pole upright (what
  a person watching a video would judge, and what the agent is not told). Once the pole has fallen or the cart has
  left the track the episode is over: the "fallen" state is absorbing and worth 0 a step.
* A segment in which the episode ends is padded to its full length with that fallen state: hidden reward 0, and
  learned reward 0 as well. The fallen state is the learned reward's fixed zero: r_hat is learned for living
  states only and is measured *against* being fallen, which removes Bradley-Terry's free constant. For PPO the
  terminal state then has value 0, as in every other chapter, and an episode's end costs the agent exactly the
  learned reward it would have collected by staying alive: if the comparisons say that living states are better
  than falling, r_hat > 0 there and the agent wants to stay up; nothing else tells it so.
* Normalisation keeps that zero: the paper normalises r_hat to zero mean and unit standard deviation (Section
  2.2.1), which would move the fallen level; we only divide each member by its root mean square over the current
  rollout's steps (so that the reward is of order 1, like the hidden one), then average the members.
* The reference run, PPO on the hidden reward itself (``train_from_preferences(..., true_reward=True)``), uses the
  same hidden reward, the same termination and the same PPO: the only difference is where the reward comes from.

What we measure: the policy's *true return* (the hidden return of its episodes, and their length, CartPole-v1's
own return) against the number of comparisons collected, for both query rules, over seeds; the reward model's
pairwise accuracy on each new rollout's segment pairs *before* it has seen any of them, against the hidden reward's
ordering; and the correlation between the learned and the hidden reward over the rollout's steps.

Measured with ``benchmarks/preference_control.py`` (five seeds, 16,384 steps and 300 comparisons a run): both query
rules learn to balance from the learned reward alone (final true return, median over seeds: random 113,
disagreement 208, against 292 for PPO on the hidden reward and about 20 for the untrained policy), and ten seeds do
not separate the two rules. See :func:`preference_runs` for the numbers and the cost.

Notation: ``theta`` the policy parameters, ``w`` the value weights, sigma the logistic function, G a segment's
(undiscounted) return, mu the overseer's label (the probability it gives to segment 1 being the better one).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .envs.evaluation import training_curve
from .policy_gradients import PolicyNetwork, ValueNetwork
from .ppo_cartpole import (PPOConfig, Rollout, collect_rollout, evaluation_seed, make_cartpole_envs,
                           orthogonal_init, ppo_update, rollout_advantages)
from .progress import show_progress
from .rlhf import pairwise_accuracy
from .threads import single_threaded

__all__ = [
    "QUERY_RULES",
    "RULES",
    "PreferenceConfig",
    "PreferenceResult",
    "RewardEnsemble",
    "Segments",
    "candidate_pairs",
    "comparisons_schedule",
    "cut_segments",
    "evaluate_true_return",
    "hidden_reward",
    "normalised_reward",
    "overseer_labels",
    "preference_probabilities",
    "preference_runs",
    "segment_preference_loss",
    "segment_rewards",
    "select_queries",
    "train_from_preferences",
    "train_reward_model",
]

CART_LIMIT = 2.4  #: CartPole's track half-length: the episode ends when |x| > 2.4
ANGLE_LIMIT = 12 * 2 * math.pi / 360  #: CartPole's pole-angle limit, 12 degrees in radians
QUERY_RULES = ("random", "disagreement")  #: how the pairs to be compared are chosen
RULES = ("random", "disagreement", "true reward")  #: the runs of :func:`preference_runs`


# --------------------------------------------------------------------------------------------- the hidden reward

def hidden_reward(observations) -> np.ndarray:
    """The overseer's hidden reward of a step taken in state s = (x, x_dot, theta, theta_dot):

        r(s) = 1 - (x / 2.4)^2 / 2 - (theta / theta_max)^2 / 2,   theta_max = 12 degrees,

    in [0, 1] for every state in which the episode is still going (|x| <= 2.4, |theta| <= 12 degrees): a step alive
    is worth up to 1, more with the cart near the centre and the pole upright. The fallen state after a termination
    is worth 0 (it is not an observation; segments and rollouts handle it). The agent never sees this function.

    Args:
        observations: float array ``(..., 4)`` of CartPole states.

    Returns:
        float64 array ``(...)``.

    Raises:
        ValueError: if the last axis does not have length 4.
    """
    observations = np.asarray(observations, dtype=np.float64)
    if observations.ndim < 1 or observations.shape[-1] != 4:
        raise ValueError(f"observations must have shape (..., 4); got {observations.shape}")
    x, theta = observations[..., 0], observations[..., 2]
    return 1.0 - 0.5 * (x / CART_LIMIT) ** 2 - 0.5 * (theta / ANGLE_LIMIT) ** 2


# ------------------------------------------------------------------------------------------------- segments

@dataclass
class Segments:
    """B trajectory segments of L steps (the paper's sigma = ((o_0, a_0), ..., (o_{L-1}, a_{L-1}))). Where the
    episode ended inside a segment, the steps after the terminating one are the absorbing "fallen" state:
    ``alive`` is False there, the hidden reward is 0 and the learned reward is 0 (their observations and actions
    are zeros and never used)."""

    observations: np.ndarray  #: float32 (B, L, d), S_t
    actions: np.ndarray  #: int64 (B, L), A_t
    alive: np.ndarray  #: bool (B, L): the step was taken in a living state (False: padded with the fallen state)
    hidden_rewards: np.ndarray  #: float64 (B, L): r(S_t) where alive, 0 where fallen
    envs: np.ndarray  #: int64 (B,): the environment of the rollout the segment was cut from

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def hidden_returns(self) -> np.ndarray:
        """float64 (B,): each segment's hidden return G = sum_t r(S_t) (what the overseer compares)."""
        return self.hidden_rewards.sum(axis=1)

    def take(self, index) -> Segments:
        """The segments at ``index`` (an int array or a slice), as a new :class:`Segments`."""
        return Segments(self.observations[index], self.actions[index], self.alive[index],
                        self.hidden_rewards[index], self.envs[index])

    @staticmethod
    def concatenate(parts) -> Segments:
        """One :class:`Segments` from several (in order)."""
        parts = list(parts)
        return Segments(*(np.concatenate([getattr(p, f.name) for p in parts])
                          for f in dataclasses.fields(Segments)))


def cut_segments(rollout: Rollout, segment_length: int) -> Segments:
    """Every window of ``segment_length`` consecutive steps of one environment of a rollout, as segments.

    A window in which the episode terminated (the pole fell or the cart left the track) at step k keeps steps
    0..k (the terminating step was taken alive) and is padded with the fallen state after k. A window whose episode
    was cut by the time limit before its last step is left out: what comes after the cut is another episode, and
    the episode did not end badly, so no padding would be honest. (Windows of one environment overlap; pairs are
    only ever made of segments from different environments.)

    Args:
        rollout: from :func:`~solutions.ppo_cartpole.collect_rollout`, T steps of N environments.
        segment_length: L, 1 <= L <= T.

    Returns:
        :class:`Segments`, ordered by environment, then by first step; at most N (T - L + 1) of them.

    Raises:
        ValueError: if ``segment_length`` is not an integer in [1, T].
    """
    T, N = rollout.actions.shape
    L = segment_length
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or not 1 <= L <= T:
        raise ValueError(f"segment_length must be an integer in [1, T = {T}]; got {segment_length!r}")
    rewards = hidden_reward(rollout.observations)  # (T, N)
    kept = []
    for i in range(N):
        for start in range(T - L + 1):
            steps = slice(start, start + L)
            if rollout.truncated[steps, i][:-1].any():
                continue
            alive = np.ones(L, dtype=bool)
            ended = np.flatnonzero(rollout.terminated[steps, i])
            if ended.size:
                alive[ended[0] + 1:] = False
            kept.append((i, start, alive))
    d = rollout.observations.shape[-1]
    segments = Segments(np.zeros((len(kept), L, d), dtype=np.float32), np.zeros((len(kept), L), dtype=np.int64),
                        np.zeros((len(kept), L), dtype=bool), np.zeros((len(kept), L)),
                        np.array([i for i, _, _ in kept], dtype=np.int64))
    for b, (i, start, alive) in enumerate(kept):
        steps = slice(start, start + L)
        segments.alive[b] = alive
        segments.observations[b][alive] = rollout.observations[steps, i][alive]
        segments.actions[b][alive] = rollout.actions[steps, i][alive]
        segments.hidden_rewards[b][alive] = rewards[steps, i][alive]
    return segments


def candidate_pairs(segments: Segments, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_pairs`` distinct pairs (i, j), i < j, of segments from different environments, drawn uniformly without
    replacement (all of them if there are fewer): int64 ``(n, 2)``."""
    i, j = np.triu_indices(len(segments), k=1)
    different = segments.envs[i] != segments.envs[j]
    pairs = np.stack([i[different], j[different]], axis=1)
    if n_pairs < len(pairs):
        pairs = pairs[rng.choice(len(pairs), size=n_pairs, replace=False)]
    return pairs


# ------------------------------------------------------------------------------------------------- the overseer

def overseer_labels(returns_1, returns_2, rng: np.random.Generator, label_noise: float = 0.1,
                    temperature: float = 0.0) -> np.ndarray:
    """The simulated overseer's answers to B comparisons of segment 1 with segment 2, from their hidden returns.

    The overseer answers at random (1 or 0 with probability 1/2 each) with probability ``label_noise``; otherwise

    * ``temperature`` = 0 (default): it prefers the segment with the larger hidden return, and says "equally good"
      (mu = 1/2) on an exact tie (the paper's synthetic oracle, Section 3.1);
    * ``temperature`` > 0: it prefers segment 1 with probability sigma((G_1 - G_2) / temperature) (Bradley-Terry),
      so close calls are nearly coin flips.

    So with ``temperature`` 0 a label agrees with the hidden ordering with probability 1 - label_noise / 2 (0.95
    at the paper's 10 %), however clear the difference.

    Args:
        returns_1, returns_2: float ``(B,)``, the hidden returns G of the two segments of each pair.
        rng: draws the noise.
        label_noise: the probability of a random answer, in [0, 1].
        temperature: >= 0, in units of hidden return.

    Returns:
        float64 ``(B,)``: mu, the probability the label gives to segment 1 being preferred: 1, 0, or 1/2 for a tie.

    Raises:
        ValueError: for different shapes, non-finite returns, ``label_noise`` outside [0, 1] or a negative
            ``temperature``.
    """
    returns_1 = np.asarray(returns_1, dtype=np.float64)
    returns_2 = np.asarray(returns_2, dtype=np.float64)
    if returns_1.shape != returns_2.shape or returns_1.ndim != 1:
        raise ValueError(f"returns_1 and returns_2 must have the same shape (B,); got {returns_1.shape} and "
                         f"{returns_2.shape}")
    if not (np.isfinite(returns_1).all() and np.isfinite(returns_2).all()):
        raise ValueError("the returns must be finite")
    if isinstance(label_noise, bool) or not isinstance(label_noise, (int, float)) or not 0 <= label_noise <= 1:
        raise ValueError(f"label_noise must be a number in [0, 1]; got {label_noise!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not 0 <= temperature < math.inf:
        raise ValueError(f"temperature must be a number >= 0; got {temperature!r}")
    difference = returns_1 - returns_2
    if temperature == 0:
        mu = np.where(difference > 0, 1.0, np.where(difference < 0, 0.0, 0.5))
    else:
        p = 1.0 / (1.0 + np.exp(-difference / temperature))
        mu = (rng.random(len(p)) < p).astype(np.float64)
    guess = rng.random(len(mu)) < label_noise
    mu[guess] = (rng.random(int(guess.sum())) < 0.5).astype(np.float64)
    return mu


# ------------------------------------------------------------------------------------------ the Bradley-Terry loss

def segment_preference_loss(rewards_1: torch.Tensor, rewards_2: torch.Tensor, mu: torch.Tensor,
                            weights: torch.Tensor | None = None) -> torch.Tensor:
    """The Bradley-Terry loss of a reward model on comparisons of trajectory segments (Christiano et al. 2017,
    Section 2.2.3, eq. 1 and the cross-entropy after it):

        P_hat[sigma_1 > sigma_2] = exp(sum_t r_hat_1t) / (exp(sum_t r_hat_1t) + exp(sum_t r_hat_2t))
                                 = sigma(sum_t r_hat_1t - sum_t r_hat_2t),
        loss = -mean over pairs of [mu log P_hat[sigma_1 > sigma_2] + (1 - mu) log P_hat[sigma_2 > sigma_1]].

    The rewards are summed over each segment (no discounting: the overseer judges the whole clip), and the log of
    the logistic function of the difference is taken with ``logsigmoid`` (stable for large differences).
    Only differences of sums enter, so adding a constant to every step's reward changes nothing: the loss
    identifies r_hat up to that constant (here fixed by the fallen state's 0, see the module docstring). With hard
    labels (mu 0 or 1) it is the language-model chapter's :func:`solutions.rlhf.reward_model_loss` applied to the
    segments' returns, the preferred segment's sum_t r_hat as ``rewards_chosen`` (a test checks it).

    Args:
        rewards_1: float ``(B, L)``, r_hat(S_t, A_t) of each step of the first segment of each pair (0 on padded
            steps), carrying the gradient.
        rewards_2: float ``(B, L)``, the same for the second segments.
        mu: float ``(B,)`` in [0, 1], the label: 1 if the overseer preferred segment 1, 0 if segment 2, 1/2 for
            "equally good".
        weights: optional float ``(B,)`` >= 0, a weight per pair (a bootstrap resample's counts): the loss is then
            sum_b w_b loss_b / sum_b w_b.

    Returns:
        A scalar tensor (nats per comparison).

    Raises:
        ValueError: for shapes other than ``(B, L)``, ``(B, L)``, ``(B,)`` (and ``(B,)`` weights), an empty batch,
            labels outside [0, 1], or negative weights / weights summing to 0.
    """
    for name, value in (("rewards_1", rewards_1), ("rewards_2", rewards_2), ("mu", mu)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point torch tensor; got {type(value).__name__}")
    if rewards_1.ndim != 2 or rewards_1.shape != rewards_2.shape or mu.shape != rewards_1.shape[:1]:
        raise ValueError(f"rewards_1 and rewards_2 must have shape (B, L) and mu shape (B,); got "
                         f"{tuple(rewards_1.shape)}, {tuple(rewards_2.shape)} and {tuple(mu.shape)}")
    if mu.numel() == 0:
        raise ValueError("the batch is empty")
    if ((mu < 0) | (mu > 1)).any():
        raise ValueError("mu must lie in [0, 1]")
    difference = rewards_1.sum(dim=1) - rewards_2.sum(dim=1)  # sum_t r_hat(sigma_1) - sum_t r_hat(sigma_2)
    mu = mu.detach()
    losses = -(mu * nn.functional.logsigmoid(difference) + (1 - mu) * nn.functional.logsigmoid(-difference))
    if weights is None:
        return losses.mean()
    if not isinstance(weights, torch.Tensor) or weights.shape != mu.shape or (weights < 0).any() \
            or not weights.sum() > 0:
        raise ValueError("weights must be a tensor of shape (B,), >= 0, with a positive sum")
    return (weights * losses).sum() / weights.sum()


# ------------------------------------------------------------------------------------------ the reward model

class RewardEnsemble(nn.Module):
    """An ensemble of M reward models r_hat_m(s, a), each a multilayer perceptron from the state and the one-hot
    action, (d + A) -> hidden -> hidden -> 1 with leaky ReLU (slope 0.01), as Christiano et al.'s (Appendix A.1:
    two layers of 64). The M members' weights are stacked, ``weights[k]`` of shape ``(M, fan_in, fan_out)``, so
    that one batched matrix product evaluates all of them; :meth:`member` gives member m as an ordinary
    ``nn.Sequential`` (a test checks that the two agree). Each layer is initialised like ``nn.Linear``: weights
    and biases uniform in +-1/sqrt(fan_in), from torch's global generator.

    The states are standardised before they enter the networks, with a mean and a standard deviation per state
    variable that :meth:`set_input_scale` takes from the states the overseer has judged (0 and 1 until then).
    CartPole's variables live on very different scales (the pole's angle within +-0.21 rad, the velocities of
    order 1): on raw states the networks learned the angle's part of a known reward poorly (held-out accuracy 0.76
    after 600 steps on 400 comparisons, against 0.94 standardised).

    Args:
        ensemble_size: M >= 1.
        state_dim: d.
        n_actions: A.
        hidden: width of the two hidden layers.

    Input: observations float ``(..., d)`` and actions int64 ``(...)``; output float32 ``(M, ...)``, r_hat_m of
    every step under every member.
    """

    def __init__(self, ensemble_size: int = 3, state_dim: int = 4, n_actions: int = 2, hidden: int = 64):
        super().__init__()
        self.ensemble_size, self.state_dim, self.n_actions = ensemble_size, state_dim, n_actions
        sizes = [state_dim + n_actions, hidden, hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(ensemble_size, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(ensemble_size, 1, fan_out).uniform_(-bound, bound)))
        self.register_buffer("observation_mean", torch.zeros(state_dim))
        self.register_buffer("observation_std", torch.ones(state_dim))

    def set_input_scale(self, observations) -> None:
        """Standardise the states from now on with the mean and standard deviation (at least 1e-3) of each state
        variable over ``observations``, float ``(..., d)``."""
        observations = torch.as_tensor(observations, dtype=torch.float32).reshape(-1, self.state_dim)
        self.observation_mean.copy_(observations.mean(dim=0))
        self.observation_std.copy_(observations.std(dim=0, correction=0).clamp(min=1e-3))

    def inputs(self, observations, actions) -> torch.Tensor:
        """The network input ((s - mean) / std, one_hot(a)): float32 ``(..., d + A)``."""
        observations = torch.as_tensor(observations, dtype=torch.float32)
        actions = torch.as_tensor(actions, dtype=torch.int64)
        standardised = (observations - self.observation_mean) / self.observation_std
        return torch.cat([standardised, nn.functional.one_hot(actions, self.n_actions).float()], dim=-1)

    def forward(self, observations, actions) -> torch.Tensor:
        x = self.inputs(observations, actions)
        batch_shape = x.shape[:-1]
        h = x.reshape(1, -1, x.shape[-1])  # (1, R, d + A), the same rows for every member
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.matmul(h, w) + b  # (M, R, fan_out)
            if k < len(self.weights) - 1:
                h = nn.functional.leaky_relu(h, 0.01)
        return h.reshape(self.ensemble_size, *batch_shape)

    def member(self, m: int) -> nn.Sequential:
        """Member m as a plain ``nn.Sequential`` of ``nn.Linear`` and ``nn.LeakyReLU`` layers (a copy: input
        ``(B, d + A)`` from :meth:`inputs`, output ``(B, 1)``)."""
        layers = []
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            linear = nn.Linear(w.shape[1], w.shape[2])
            with torch.no_grad():
                linear.weight.copy_(w[m].T)
                linear.bias.copy_(b[m, 0])
            layers.append(linear)
            if k < len(self.weights) - 1:
                layers.append(nn.LeakyReLU(0.01))
        return nn.Sequential(*layers)


def segment_rewards(model: RewardEnsemble, segments: Segments) -> torch.Tensor:
    """r_hat_m(S_t, A_t) of every step of every segment under every member, 0 on the padded (fallen) steps:
    float32 ``(M, B, L)``, carrying the gradient."""
    alive = torch.as_tensor(segments.alive)
    return model(segments.observations, segments.actions) * alive


def preference_probabilities(model: RewardEnsemble, segments_1: Segments, segments_2: Segments) -> np.ndarray:
    """Each member's predicted probability that the overseer prefers segment 1, by the Bradley-Terry model (eq. 1):
    P_m = sigma(sum_t r_hat_m(sigma_1) - sum_t r_hat_m(sigma_2)), float64 ``(M, B)``."""
    with torch.no_grad():
        difference = segment_rewards(model, segments_1).sum(-1) - segment_rewards(model, segments_2).sum(-1)
    return torch.sigmoid(difference.double()).numpy()


def select_queries(probabilities: np.ndarray, n_queries: int, rule: str) -> np.ndarray:
    """Which of P candidate pairs to show the overseer (Christiano et al. 2017, Section 2.2.4).

    * ``"disagreement"``: the ``n_queries`` pairs with the largest variance across the ensemble members of the
      predicted probability that segment 1 is preferred (the paper's "crude approximation" of the uncertainty),
      most uncertain first (ties broken by the candidates' order);
    * ``"random"``: the first ``n_queries`` candidates (the candidates are drawn at random, so this is a random
      choice).

    Args:
        probabilities: float ``(M, P)``, each member's P[sigma_1 > sigma_2] of each candidate
            (:func:`preference_probabilities`).
        n_queries: 0 <= n_queries <= P.
        rule: ``"disagreement"`` or ``"random"``.

    Returns:
        int64 ``(n_queries,)``, indices into the candidates.

    Raises:
        ValueError: for a shape other than ``(M, P)``, ``n_queries`` outside [0, P] or an unknown rule.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probabilities must have shape (M, P); got {probabilities.shape}")
    if isinstance(n_queries, bool) or not isinstance(n_queries, (int, np.integer)) \
            or not 0 <= n_queries <= probabilities.shape[1]:
        raise ValueError(f"n_queries must be an integer in [0, {probabilities.shape[1]}]; got {n_queries!r}")
    if rule == "random":
        return np.arange(n_queries, dtype=np.int64)
    if rule == "disagreement":
        variance = probabilities.var(axis=0)
        return np.argsort(-variance, kind="stable")[:n_queries].astype(np.int64)
    raise ValueError(f"rule must be one of {QUERY_RULES}; got {rule!r}")


@single_threaded()
def train_reward_model(model: RewardEnsemble, optimizer: torch.optim.Optimizer, segments_1: Segments,
                       segments_2: Segments, mu: np.ndarray, counts: np.ndarray, n_steps: int, batch_size: int,
                       rng: np.random.Generator) -> float:
    """``n_steps`` Adam steps of every member of the ensemble on the comparisons so far (Section 2.2.3).

    Each step draws ``batch_size`` comparisons uniformly (with replacement) from all D of them; member m's loss is
    :func:`segment_preference_loss` weighted by its bootstrap counts ``counts[m]``, so that it is fitted to its own
    resample of D (the paper: "each trained on |D| triples sampled from D with replacement"); the step minimises
    the sum of the members' losses (each member's gradient is its own loss's).

    Args:
        model: the ensemble, trained in place.
        optimizer: over its parameters.
        segments_1, segments_2: the D compared pairs.
        mu: float ``(D,)``, the labels.
        counts: float ``(M, D)``, how often each comparison appears in each member's resample.
        n_steps, batch_size: >= 1.
        rng: draws the minibatches.

    Returns:
        The mean over the steps of the members' mean loss (nats per comparison).
    """
    mu = torch.as_tensor(mu, dtype=torch.float32)
    counts = torch.as_tensor(counts, dtype=torch.float32)
    total = 0.0
    for _ in range(n_steps):
        batch = rng.integers(len(mu), size=batch_size)
        r_1 = segment_rewards(model, segments_1.take(batch))  # (M, B, L)
        r_2 = segment_rewards(model, segments_2.take(batch))
        losses = []
        for m in range(model.ensemble_size):
            weights = counts[m, batch]
            if weights.sum() > 0:  # a minibatch may miss member m's resample altogether
                losses.append(segment_preference_loss(r_1[m], r_2[m], mu[batch], weights))
        if not losses:
            continue
        loss = torch.stack(losses).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) / len(losses)
    return total / n_steps


def normalised_reward(raw: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """The reward the agent receives: each member's r_hat_m divided by its root mean square over the living steps
    given, then averaged over the members; 0 where not alive (the fallen level stays 0).

    Args:
        raw: float ``(M, ...)``, r_hat_m of each step.
        alive: bool ``(...)``.

    Returns:
        float ``(...)``.
    """
    mask = alive.to(raw.dtype)
    rms = torch.sqrt(((raw * mask) ** 2).sum(dim=tuple(range(1, raw.ndim))) / mask.sum().clamp(min=1) + 1e-12)
    return (raw / rms.reshape(-1, *([1] * (raw.ndim - 1)))).mean(dim=0) * mask


# ---------------------------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class PreferenceConfig:
    """The settings of :func:`train_from_preferences`: the paper's choices (Christiano et al. 2017, Section 2.2 and
    Appendix A) where they carry over, with Chapter 5's PPO for CartPole
    (:class:`~solutions.ppo_cartpole.PPOConfig`, rl-baselines3-zoo's hyper-parameters) as the policy optimiser.

    Raises:
        ValueError: on construction, for counts below 1 (``num_comparisons`` below 2), ``segment_length`` longer
            than the PPO rollout's ``num_steps``, an unknown ``query_rule``, ``initial_fraction`` or
            ``label_noise`` outside [0, 1], a negative temperature, or non-positive step sizes.
    """

    segment_length: int = 25  #: L, steps per compared segment (0.5 s of CartPole; the paper's Atari clips: 25)
    num_comparisons: int = 300  #: comparisons asked over the whole run
    initial_fraction: float = 0.25  #: share of them asked on the untrained policy's first rollout (Appendix A.1)
    label_annealing_steps: int = 5_000  #: T_0: the rate of new comparisons after T steps is proportional to
    #: T_0 / (T + T_0) (Appendix A: "labels are fed in at a rate decaying inversely with the number of timesteps")
    query_rule: str = "disagreement"  #: ``"disagreement"`` (Section 2.2.4) or ``"random"``
    pool_factor: int = 10  #: candidate pairs drawn per pair asked (Appendix A: "a factor 10 more")
    ensemble_size: int = 3  #: M reward models (Appendix A: "an ensemble of 3 predictors")
    label_noise: float = 0.1  #: probability that the overseer answers at random (Section 2.2.3: 10 %)
    overseer_temperature: float = 0.0  #: 0: the overseer prefers the larger hidden return; > 0: Bradley-Terry
    reward_hidden: int = 64  #: width of the reward models' two hidden layers (Appendix A.1: 64)
    reward_learning_rate: float = 1e-3  #: Adam's step size for the reward models
    reward_batch_size: int = 16  #: comparisons per reward-model gradient step
    reward_pretrain_steps: int = 100  #: reward-model steps on the initial comparisons, before the first PPO update
    reward_steps: int = 5  #: reward-model steps after each later batch of new comparisons
    accuracy_pairs: int = 64  #: pairs of each new rollout on which the reward model's accuracy is measured
    ppo: PPOConfig = PPOConfig()  #: the policy optimiser (Chapter 5)

    def __post_init__(self):
        for name in ("segment_length", "label_annealing_steps", "pool_factor", "ensemble_size", "reward_hidden",
                     "reward_batch_size", "reward_pretrain_steps", "reward_steps", "accuracy_pairs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if isinstance(self.num_comparisons, bool) or not isinstance(self.num_comparisons, int) \
                or self.num_comparisons < 2:
            raise ValueError(f"num_comparisons must be an integer >= 2; got {self.num_comparisons!r}")
        if not isinstance(self.ppo, PPOConfig):
            raise ValueError(f"ppo must be a PPOConfig; got {type(self.ppo).__name__}")
        if self.segment_length > self.ppo.num_steps:
            raise ValueError(f"segment_length {self.segment_length} must not exceed the rollout's num_steps "
                             f"{self.ppo.num_steps} (segments are cut from one rollout)")
        if self.ppo.num_envs < 2:
            raise ValueError("ppo.num_envs must be >= 2: compared segments come from different environments")
        if self.query_rule not in QUERY_RULES:
            raise ValueError(f"query_rule must be one of {QUERY_RULES}; got {self.query_rule!r}")
        for name in ("initial_fraction", "label_noise"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
        if isinstance(self.overseer_temperature, bool) or not isinstance(self.overseer_temperature, (int, float)) \
                or not 0 <= self.overseer_temperature < math.inf:
            raise ValueError(f"overseer_temperature must be a number >= 0; got {self.overseer_temperature!r}")
        if isinstance(self.reward_learning_rate, bool) or not isinstance(self.reward_learning_rate, (int, float)) \
                or not 0 < self.reward_learning_rate < math.inf:
            raise ValueError(f"reward_learning_rate must be a positive number; got {self.reward_learning_rate!r}")


def comparisons_schedule(config: PreferenceConfig, steps, total_steps: int) -> np.ndarray:
    """How many comparisons have been asked once the policy has taken ``steps`` environment steps (the queries of
    an update are asked after its rollout): the ``initial_fraction`` n_0 of the budget N on the first rollout, then
    at a rate proportional to T_0 / (T + T_0) (Christiano et al. 2017, Appendix A), so that

        n(T) = floor(n_0 + (N - n_0) ln(1 + (T - T_1) / T_0) / ln(1 + (T_end - T_1) / T_0)),

    with T_1 the size of one rollout (the first queries) and T_end = ``total_steps`` rounded up to whole rollouts:
    n(T_1) = n_0 and n(T_end) = N. After twice as many steps, about half as many new comparisons per step.

    Args:
        config: supplies N (``num_comparisons``), ``initial_fraction``, T_0 (``label_annealing_steps``) and the
            rollout size.
        steps: int ``(...)``, multiples of the rollout size, >= T_1.
        total_steps: the run's length (>= 2 rollouts).

    Returns:
        int64 ``(...)``, non-decreasing in ``steps``.

    Raises:
        ValueError: if ``total_steps`` covers fewer than 2 rollouts or a step is below T_1.
    """
    batch = config.ppo.batch_size
    end = math.ceil(total_steps / batch) * batch
    if end < 2 * batch:
        raise ValueError(f"total_steps must cover at least 2 rollouts of {batch} steps; got {total_steps}")
    steps = np.asarray(steps, dtype=np.float64)
    if (steps < batch).any():
        raise ValueError(f"steps must be >= one rollout ({batch}); got {steps.min()}")
    n_0 = round(config.initial_fraction * config.num_comparisons)
    T_0 = config.label_annealing_steps
    share = np.log1p((np.minimum(steps, end) - batch) / T_0) / math.log1p((end - batch) / T_0)
    return np.floor(n_0 + (config.num_comparisons - n_0) * share + 1e-9).astype(np.int64)


# ---------------------------------------------------------------------------------------------- evaluation

def evaluate_true_return(policy: nn.Module, n_episodes: int = 20, seed: int = 0,
                         greedy: bool = False) -> tuple[float, float]:
    """The mean hidden return (:func:`hidden_reward` summed over the episode) and the mean length (CartPole-v1's
    own return) of ``n_episodes`` episodes of the policy, run side by side.

    Args:
        policy: maps float32 states ``(B, 4)`` to logits ``(B, 2)``.
        n_episodes: >= 1, each counted until it first ends (terminated, or cut at 500 steps).
        seed: seeds the environments' resets (episode i: seed + i) and the sampled actions.
        greedy: take the most probable action instead of sampling one.

    Returns:
        ``(mean hidden return, mean length)``.

    Raises:
        ValueError: if ``n_episodes`` < 1.
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"n_episodes must be an integer >= 1; got {n_episodes!r}")
    envs = gym.make_vec("CartPole-v1", num_envs=n_episodes, vectorization_mode="sync")
    states, _ = envs.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes)
    running = np.ones(n_episodes, dtype=bool)
    with torch.no_grad():
        while running.any():
            logits = policy(torch.as_tensor(states, dtype=torch.float32))
            actions = logits.argmax(dim=1) if greedy else \
                torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).squeeze(1)
            returns += hidden_reward(states) * running
            lengths += running
            states, _, terminated, truncated, _ = envs.step(actions.numpy())
            running &= ~(terminated | truncated)
    envs.close()
    return float(returns.mean()), float(lengths.mean())


# ---------------------------------------------------------------------------------------------- training

@dataclass
class PreferenceResult:
    """What :func:`train_from_preferences` returns. Per-update arrays have one entry per PPO update (U of them),
    recorded after the update's queries and before its gradient steps."""

    config: PreferenceConfig
    seed: int
    rule: str  #: ``"random"``, ``"disagreement"`` or ``"true reward"`` (the reference run)
    policy: PolicyNetwork  #: the trained pi_theta
    value: ValueNetwork  #: the trained V_w
    reward_model: RewardEnsemble | None  #: the fitted ensemble (None for the reference run)
    total_steps: int = 0  #: environment steps taken
    update_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  #: (U,) steps so far
    comparisons: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  #: (U,) asked so far
    #: (U,) share of each new rollout's segment pairs that the reward model, before seeing them, orders as the
    #: hidden reward does (NaN for the reference run)
    accuracy: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: (U,) Pearson correlation between the agent's reward and the hidden reward over the rollout's living steps
    reward_correlation: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: (U,) mean reward the agent received per step of the rollout, every step taken alive (> 0: living is valued
    #: above the fallen state); for the reference, the hidden reward's mean
    learned_reward_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: (U,) the reward models' training loss at the update (NaN where none was trained)
    reward_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))
    episode_ends: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  #: step each ended
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))  #: their hidden returns
    episode_lengths: np.ndarray = field(default_factory=lambda: np.zeros(0))  #: their lengths (CartPole's return)
    label_agreement: float = math.nan  #: share of the collected labels that agree with the hidden ordering
    final_return: float = math.nan  #: hidden return of the sampled policy at the end (``eval_episodes`` episodes)
    final_length: float = math.nan  #: their mean length
    final_greedy_return: float = math.nan  #: the same for the greedy policy (if evaluated)
    final_greedy_length: float = math.nan
    cpu_seconds: float = 0.0  #: CPU time of the training (this process), the final evaluation excluded
    eval_cpu_seconds: float = 0.0  #: CPU time of the final evaluation

    def curve(self, grid, window: int = 5_000) -> np.ndarray:
        """The true-return curve on a step grid: at each step s of ``grid``, the mean hidden return of the training
        episodes that ended in (s - window, s]; NaN where none did."""
        return training_curve(self.episode_ends, self.episode_returns, grid, window)

    def length_curve(self, grid, window: int = 5_000) -> np.ndarray:
        """The same for the episodes' lengths (CartPole-v1's return)."""
        return training_curve(self.episode_ends, self.episode_lengths, grid, window)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return int(seed)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


@single_threaded()
def train_from_preferences(config: PreferenceConfig = PreferenceConfig(), total_steps: int = 16_384, seed: int = 0,
                           true_reward: bool = False, eval_episodes: int = 20, eval_greedy: bool = False,
                           progress: bool | None = None) -> PreferenceResult:
    """Deep RL from human preferences (Christiano et al. 2017, Section 2.2) on CartPole-v1: PPO on a reward model
    fitted to a simulated overseer's comparisons of segments of the policy's own rollouts.

    U = ceil(total_steps / (N T)) iterations of:

    1. collect a rollout of T steps in each of N environments with the current policy
       (:func:`~solutions.ppo_cartpole.collect_rollout`; the environments' +1 rewards are ignored);
    2. cut its segments (:func:`cut_segments`); measure the reward model's pairwise accuracy
       (:func:`solutions.rlhf.pairwise_accuracy`, the learned returns of the two segments) on ``accuracy_pairs``
       random pairs of them against the hidden reward's ordering, before it sees them;
    3. if the schedule (:func:`comparisons_schedule`) asks for n new comparisons: draw ``pool_factor`` n candidate
       pairs at random, choose n of them by ``query_rule`` (:func:`select_queries`), have the overseer label them
       (:func:`overseer_labels`), give each a bootstrap count for each member (Poisson(1): member m's resample of
       the comparisons, the online form of the bootstrap, kept as D grows), and train the ensemble
       (:func:`train_reward_model`: ``reward_pretrain_steps`` steps the first time, ``reward_steps`` after);
    4. replace the rollout's rewards by the ensemble's normalised reward (:func:`normalised_reward`; 0 in the
       fallen state, where the episode terminated), compute GAE advantages
       (:func:`~solutions.ppo_cartpole.rollout_advantages`) and make one PPO update
       (:func:`~solutions.ppo_cartpole.ppo_update`) with the step size and clip range annealed as in
       :func:`~solutions.ppo_cartpole.train_ppo`.

    With ``true_reward=True`` the same loop skips the comparisons and gives PPO the hidden reward itself: the
    reference line.

    Randomness: ``seed`` seeds torch's global generator (the policy, value and reward-model initial weights), a
    torch generator for the actions, a numpy generator for the minibatches, queries and labels, and the
    environments (environment i gets seed + i). The result is a function of ``(config, total_steps, seed,
    true_reward)`` (and the evaluation's arguments for the final evaluation).

    Args:
        config: :class:`PreferenceConfig`.
        total_steps: environment steps, rounded up to whole rollouts (16,384 = 64 rollouts of 256 by default).
        seed: an integer >= 0.
        true_reward: train on the hidden reward (no comparisons): the reference run.
        eval_episodes: episodes of the final evaluation of the sampled policy (seed
            :func:`~solutions.ppo_cartpole.evaluation_seed` of the run's length); 0: none.
        eval_greedy: evaluate the greedy policy too.
        progress: a tqdm bar over environment steps (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`PreferenceResult`.

    Raises:
        ValueError: for a config that is not a :class:`PreferenceConfig`, ``total_steps`` covering fewer than 2
            rollouts, a negative seed or ``eval_episodes``.
    """
    if not isinstance(config, PreferenceConfig):
        raise ValueError(f"config must be a PreferenceConfig; got {type(config).__name__}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an integer >= 1; got {total_steps!r}")
    if isinstance(eval_episodes, bool) or not isinstance(eval_episodes, int) or eval_episodes < 0:
        raise ValueError(f"eval_episodes must be an integer >= 0; got {eval_episodes!r}")
    seed = _check_seed(seed)
    ppo = config.ppo
    n_updates = math.ceil(total_steps / ppo.batch_size)
    schedule = comparisons_schedule(config, ppo.batch_size * np.arange(1, n_updates + 1), total_steps)

    cpu_start = time.process_time()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    envs = make_cartpole_envs(ppo.num_envs)
    obs_dim, n_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)
    policy = PolicyNetwork(obs_dim, n_actions, ppo.hidden)
    value = ValueNetwork(obs_dim, ppo.hidden)
    if ppo.orthogonal_init:
        orthogonal_init(policy, output_gain=0.01)
        orthogonal_init(value, output_gain=1.0)
    optimizer = torch.optim.Adam([*policy.parameters(), *value.parameters()], lr=ppo.learning_rate,
                                 eps=ppo.adam_eps)
    model = reward_optimizer = None
    if not true_reward:
        model = RewardEnsemble(config.ensemble_size, obs_dim, n_actions, config.reward_hidden)
        reward_optimizer = torch.optim.Adam(model.parameters(), lr=config.reward_learning_rate)
    asked_1, asked_2, labels, counts = [], [], [], []  # the database D of comparisons and the bootstrap counts
    agreements = []
    n_asked = 0

    rule = "true reward" if true_reward else config.query_rule
    result = PreferenceResult(config, seed, rule, policy, value, model)
    records = {name: [] for name in ("comparisons", "accuracy", "reward_correlation", "learned_reward_mean",
                                     "reward_loss")}
    ends, episode_returns, episode_lengths, update_steps = [], [], [], []
    running_return, running_length = np.zeros(ppo.num_envs), np.zeros(ppo.num_envs)
    observations = envs.reset(seed=seed)[0]
    steps = 0
    bar = tqdm(total=n_updates * ppo.batch_size, desc=f"{rule} seed {seed}", disable=not show_progress(progress),
               mininterval=1.0, leave=False)
    for k in range(n_updates):
        rollout = collect_rollout(envs, observations, policy, ppo.num_steps, generator)
        observations = rollout.last_observations
        hidden = hidden_reward(rollout.observations)  # (T, N): r(S_t) of every step (all were taken alive)
        for t in range(ppo.num_steps):  # the training episodes that ended in this rollout, judged by r
            running_return += hidden[t]
            running_length += 1
            for i in np.flatnonzero(rollout.terminated[t] | rollout.truncated[t]):
                ends.append(steps + (t + 1) * ppo.num_envs)
                episode_returns.append(running_return[i])
                episode_lengths.append(running_length[i])
                running_return[i] = running_length[i] = 0.0
        steps += ppo.batch_size

        if true_reward:
            rewards = hidden
            records["comparisons"].append(0)
            for name in ("accuracy", "reward_correlation", "reward_loss"):
                records[name].append(math.nan)
            records["learned_reward_mean"].append(float(hidden.mean()))
        else:
            segments = cut_segments(rollout, config.segment_length)
            # 2. accuracy on pairs of the new rollout, before the model has seen any of them
            held_out = candidate_pairs(segments, config.accuracy_pairs, rng)
            first, second = segments.take(held_out[:, 0]), segments.take(held_out[:, 1])
            hidden_difference = first.hidden_returns - second.hidden_returns
            with torch.no_grad():
                alive = torch.as_tensor(np.concatenate([first.alive, second.alive]))
                both = Segments.concatenate([first, second])
                learned = normalised_reward(segment_rewards(model, both), alive).sum(-1).double().numpy()
            learned_first, learned_second = learned[:len(held_out)], learned[len(held_out):]
            decided = hidden_difference != 0  # the chosen segment is the one with the larger hidden return
            chosen = np.where(hidden_difference > 0, learned_first, learned_second)[decided]
            rejected = np.where(hidden_difference > 0, learned_second, learned_first)[decided]
            records["accuracy"].append(pairwise_accuracy(chosen, rejected) if decided.any() else math.nan)
            # 3. new comparisons on the schedule, chosen by the query rule
            n_new = int(schedule[k]) - n_asked
            loss = math.nan
            if n_new > 0:
                pool = candidate_pairs(segments, config.pool_factor * n_new, rng)
                first, second = segments.take(pool[:, 0]), segments.take(pool[:, 1])
                chosen = select_queries(preference_probabilities(model, first, second), min(n_new, len(pool)),
                                        config.query_rule)
                first, second = first.take(chosen), second.take(chosen)
                mu = overseer_labels(first.hidden_returns, second.hidden_returns, rng, config.label_noise,
                                     config.overseer_temperature)
                truth = np.sign(first.hidden_returns - second.hidden_returns)
                agreements.extend(np.sign(mu - 0.5)[truth != 0] == truth[truth != 0])
                asked_1.append(first)
                asked_2.append(second)
                labels.append(mu)
                n_asked += len(mu)
                counts.append(rng.poisson(1.0, size=(config.ensemble_size, len(mu))))
                n_steps = config.reward_pretrain_steps if len(labels) == 1 else config.reward_steps
                database_1, database_2 = Segments.concatenate(asked_1), Segments.concatenate(asked_2)
                model.set_input_scale(np.concatenate([database_1.observations[database_1.alive],
                                                      database_2.observations[database_2.alive]]))
                loss = train_reward_model(model, reward_optimizer, database_1, database_2, np.concatenate(labels),
                                          np.concatenate(counts, axis=1), n_steps, config.reward_batch_size, rng)
            records["reward_loss"].append(loss)
            records["comparisons"].append(n_asked)
            # 4. the agent's reward: the ensemble's, normalised, 0 in the fallen state
            with torch.no_grad():
                rewards = normalised_reward(model(rollout.observations, rollout.actions),
                                            torch.ones(rollout.actions.shape, dtype=torch.bool)).double().numpy()
            records["reward_correlation"].append(_pearson(rewards.ravel(), hidden.ravel()))
            records["learned_reward_mean"].append(float(rewards.mean()))

        values, advantages = rollout_advantages(dataclasses.replace(rollout, rewards=rewards), value, ppo)
        fraction = 1.0 - k / n_updates if ppo.anneal else 1.0
        for group in optimizer.param_groups:
            group["lr"] = ppo.learning_rate * fraction
        ppo_update(policy, value, optimizer, rollout, values, advantages, ppo, ppo.cliprange * fraction, rng)
        update_steps.append(steps)
        bar.update(ppo.batch_size)
    bar.close()
    envs.close()
    result.cpu_seconds = time.process_time() - cpu_start
    result.total_steps = steps
    result.update_steps = np.array(update_steps, dtype=np.int64)
    result.comparisons = np.array(records.pop("comparisons"), dtype=np.int64)
    for name, values_ in records.items():
        setattr(result, name, np.array(values_, dtype=np.float64))
    result.episode_ends = np.array(ends, dtype=np.int64)
    result.episode_returns = np.array(episode_returns, dtype=np.float64)
    result.episode_lengths = np.array(episode_lengths, dtype=np.float64)
    result.label_agreement = float(np.mean(agreements)) if agreements else math.nan
    if eval_episodes:
        start = time.process_time()
        result.final_return, result.final_length = evaluate_true_return(policy, eval_episodes,
                                                                        evaluation_seed(steps))
        if eval_greedy:
            result.final_greedy_return, result.final_greedy_length = evaluate_true_return(
                policy, eval_episodes, evaluation_seed(steps), greedy=True)
        result.eval_cpu_seconds = time.process_time() - start
    return result


# ------------------------------------------------------------------------------------- runs over rules and seeds

def preference_runs(config: PreferenceConfig = PreferenceConfig(), seeds=range(5), rules=RULES,
                    total_steps: int = 16_384, n_jobs: int = 1, window: int = 4_096,
                    progress: bool | None = None, **kwargs) -> dict[str, dict]:
    """:func:`train_from_preferences` for each query rule (and the reference on the hidden reward) and seed, the
    runs shared out among ``n_jobs`` processes, with their curves on the common grid of update steps (for the
    figure: true return against comparisons, bands over seeds).

    What it showed (``benchmarks/preference_control.py``: ``PreferenceConfig()``, 16,384 steps, 300 comparisons;
    the final evaluation, 20 episodes of the sampled policy, median [range] over seeds 0-4):

    ============  ===================  ===============  ===================================================
    run           true return          episode length   reward model on new pairs (last 16 updates)
    ============  ===================  ===============  ===================================================
    random        113 [74, 286]        138 [81, 318]    accuracy 0.91, learned/hidden correlation 0.66
    disagreement  208 [116, 260]       233 [140, 291]   accuracy 0.88, learned/hidden correlation 0.75
    true reward   292 [120, 464]       324 [145, 498]   (PPO on the hidden reward itself)
    ============  ===================  ===============  ===================================================

    Both preference rules learn to balance from 300 comparisons (the untrained policy's episodes last about 20
    steps), behind PPO on the hidden reward itself, which has 16,384 rewards instead. Whether the disagreement rule
    beats random queries is not settled by these runs: per seed, disagreement minus random in final true return was
    34, 3, 162, 114, -45 for seeds 0-4 (ahead for 4 of 5) but 158, -39, -96, 8, -10 for seeds 5-9 (random's
    median 188, disagreement's 178): ahead for 6 of 10 seeds, median difference +5.5, and with 12,288 steps per
    run (seeds 0-4) random was ahead for 4 of 5 (medians 161 and 97). The paper too found that its disagreement
    rule helped on some tasks and hurt on others (Sections 2.2.4 and 3.3). The overseer's labels agreed with the
    hidden ordering 95 % of the time, as its 10 % of random answers predict.

    Cost: a preference run takes 8-12 s of CPU time (the PPO updates about 5.5 s, the reward models' training
    about 2.5 s, the environments about 1.2 s; more when the machine is busy), a reference run 6-7 s. The figure's
    15 runs took 168 s of CPU time and 246 s of wall time with ``n_jobs=2`` on this 2-core machine while other jobs
    ran; on a quiet machine about 120 s of CPU and 60 s of wall time (over the chapter's target of 90 s and 45 s);
    with ``total_steps=12_288`` about a quarter less.

    Args:
        config: the settings; its ``query_rule`` is replaced by each rule's.
        seeds: one run per rule and seed (>= 5 for the figure).
        rules: names from :data:`RULES`: ``"random"``, ``"disagreement"``, ``"true reward"``.
        total_steps: as in :func:`train_from_preferences`.
        n_jobs: how many runs train at the same time, each in a fresh "spawn" process (as
            :func:`~solutions.ppo_cartpole.ppo_runs`); every run is a function of its arguments and seed, so the
            results are the same for every ``n_jobs`` (a test checks it).
        window: the curves average the training episodes that ended in the last ``window`` steps.
        progress: a bar over the runs (default: :func:`~solutions.progress.show_progress`).
        **kwargs: passed on to :func:`train_from_preferences` (``eval_episodes``, ``eval_greedy``).

    Returns:
        ``{rule: {...}}`` with, for ``n_seeds`` seeds and U updates:

        * ``"steps"``: int ``(U,)``, environment steps after each update; ``"comparisons"``: int ``(U,)``, the
          comparisons asked by then (the schedule is the same for every seed and both rules; for the reference the
          number a preference run would have asked, so that it can be drawn on the same axis);
        * ``"true_return"``, ``"episode_length"``: float ``(n_seeds, U)``, the mean hidden return and length of the
          training episodes that ended in the ``window`` steps before (NaN before the first);
        * ``"accuracy"``, ``"reward_correlation"``, ``"learned_reward_mean"``: float ``(n_seeds, U)``, as in
          :class:`PreferenceResult` (for the reference the first two are NaN and the third is the mean hidden
          reward per step of its rollouts, the reward it was given);
        * ``"final_return"``, ``"final_length"`` (and ``"final_greedy_return"``, ``"final_greedy_length"``): float
          ``(n_seeds,)``, the final evaluation; ``"label_agreement"``: float ``(n_seeds,)``;
        * ``"cpu_seconds"``, ``"eval_cpu_seconds"``: float ``(n_seeds,)``; ``"results"``: the
          :class:`PreferenceResult` of each seed, in the order of ``seeds``.

    Raises:
        ValueError: for an unknown rule, no rule or seed, ``n_jobs`` < 1, or as :func:`train_from_preferences`.
    """
    rules, seeds = list(rules), [_check_seed(s) for s in seeds]
    if not rules or not seeds or any(rule not in RULES for rule in rules):
        raise ValueError(f"rules must be names from {RULES} and seeds non-empty; got {rules} and {seeds}")
    if not isinstance(config, PreferenceConfig):
        raise ValueError(f"config must be a PreferenceConfig; got {type(config).__name__}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be an integer >= 1; got {n_jobs!r}")

    def arguments(rule: str, seed: int) -> tuple:
        if rule == "true reward":
            return config, total_steps, seed, True
        return dataclasses.replace(config, query_rule=rule), total_steps, seed, False

    jobs = [(rule, seed) for rule in rules for seed in seeds]
    runs = {}
    bar = tqdm(total=len(jobs), desc="preference runs", disable=not show_progress(progress))
    if n_jobs == 1:
        for rule, seed in jobs:
            runs[rule, seed] = train_from_preferences(*arguments(rule, seed), progress=False, **kwargs)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # fork would copy a running kernel's threads and state
        with ProcessPoolExecutor(min(n_jobs, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(train_from_preferences, *arguments(rule, seed), progress=False, **kwargs):
                       (rule, seed) for rule, seed in jobs}
            for future in as_completed(futures):
                runs[futures[future]] = future.result()
                bar.update()
    bar.close()
    n_updates = math.ceil(total_steps / config.ppo.batch_size)
    steps = config.ppo.batch_size * np.arange(1, n_updates + 1)
    comparisons = comparisons_schedule(config, steps, total_steps)
    output = {}
    for rule in rules:
        results = [runs[rule, seed] for seed in seeds]
        output[rule] = {
            "steps": steps,
            "comparisons": comparisons,
            "true_return": np.array([r.curve(steps, window) for r in results]),
            "episode_length": np.array([r.length_curve(steps, window) for r in results]),
            **{name: np.array([getattr(r, name) for r in results])
               for name in ("accuracy", "reward_correlation", "learned_reward_mean", "final_return",
                            "final_length", "final_greedy_return", "final_greedy_length", "label_agreement",
                            "cpu_seconds", "eval_cpu_seconds")},
            "results": results,
        }
    return output
