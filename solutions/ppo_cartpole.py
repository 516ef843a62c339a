"""PPO on CartPole-v1 (Chapter 5): the algorithm, the implementation details that matter, and why a single large
policy-gradient step is dangerous.

Proximal policy optimisation (Schulman et al. 2017, "Proximal Policy Optimization Algorithms", Algorithm 1)
alternates two phases:

1. run the current policy pi_theta_old in N environments for T steps each (one *rollout* of N T steps), and
   estimate the advantage of every step by generalised advantage estimation (:func:`solutions.ppo.gae`);
2. take several epochs of minibatch gradient steps on the clipped surrogate (:func:`solutions.ppo.ppo_clip_loss`)
   plus ``vf_coef`` times the value loss, reusing the same rollout; then the updated policy collects the next one.

The implementation follows the choices that Huang et al. (2022, "The 37 implementation details of proximal policy
optimization", ICLR blog track) list for the classic-control tasks, with the hyper-parameters that
rl-baselines3-zoo uses for CartPole-v1 (:class:`PPOConfig`). Five of those details can be switched off to measure
what each does (:func:`ppo_ablation`): advantage normalisation per minibatch, orthogonal initialisation, gradient
clipping, annealing the step size and the clip range to 0, and bootstrapping episodes cut by the time limit.

Experience comes from a Gymnasium vector environment in *same-step* autoreset mode: when an environment's episode
ends at step t, ``step`` already returns the first observation of its next episode, and the last observation of
the finished episode is in ``info["final_obs"]`` (with the mask ``info["_final_obs"]``). CartPole-v1 cuts
episodes at 500 steps (``truncated``): the pole is still up, and the return after step t would have gone on, so the
advantage of that last step bootstraps from V(final observation), never from the next episode's first observation.

Policies are judged by the *sampled* (stochastic) policy, the one that is trained, over 20 evaluation episodes
(:func:`solutions.policy_gradients.evaluate_cartpole_policy`); the greedy policy's return is recorded beside it.

Measured with ``benchmarks/ppo_cartpole.py`` (seeds 0-4, 50,000 steps, evaluations every 512 steps): the sampled
policy reached 475 for 5 of 5 seeds, first at 12,288-17,920 steps (median 16,384), with 23.6 s of CPU time for the
training (median; evaluations excluded); Stable-Baselines3 2.9.2's PPO with the same hyper-parameters and protocol
reached it for 5 of 5 seeds at a median of 20,992 steps with 28.1 s of CPU time. Seeds 5-9 (evaluations every
2,048 steps): ours 5 of 5, median 18,432 steps; SB3 5 of 5, median 24,576. Reaching 475 once is not keeping it:
on both sides some seeds dip afterwards (the share of later evaluations still >= 475 was below 70 % for 4 of our 10
seeds and 2 of SB3's 10), so the book shows curves with bands, not a single "solved" step.

Notation: ``theta`` the policy parameters (:class:`~solutions.policy_gradients.PolicyNetwork`), ``w`` the value
weights (:class:`~solutions.policy_gradients.ValueNetwork`), ``gamma``, ``lam`` (lambda), ``cliprange`` (epsilon).
"""

from __future__ import annotations

import copy
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
from .policy_gradients import PolicyNetwork, ValueNetwork, evaluate_cartpole_policy
from .ppo import clipped_value_loss, gae, importance_ratio, ppo_clip_loss
from .progress import show_progress
from .threads import single_threaded

__all__ = [
    "ABLATIONS",
    "PPOConfig",
    "PPOResult",
    "Rollout",
    "collect_rollout",
    "evaluation_seed",
    "make_cartpole_envs",
    "one_step_collapse",
    "orthogonal_init",
    "ppo_ablation",
    "ppo_runs",
    "ppo_update",
    "rollout_advantages",
    "train_ppo",
]

THRESHOLD = 475.0  #: CartPole-v1's "solved" level: a mean return of at least 475 (of 500)


# --------------------------------------------------------------------------------------------- configuration

@dataclass(frozen=True)
class PPOConfig:
    """The hyper-parameters of :func:`train_ppo`. The defaults are rl-baselines3-zoo's for CartPole-v1 (PPO,
    ``n_envs 8, n_steps 32, batch_size 256, n_epochs 20, gamma 0.98, gae_lambda 0.8, learning_rate lin_1e-3,
    clip_range lin_0.2, ent_coef 0.0``) with Stable-Baselines3's defaults for the rest (separate 64-64 tanh actor
    and critic, orthogonal initialisation, Adam with eps 1e-5, ``vf_coef`` 0.5, ``max_grad_norm`` 0.5, advantages
    normalised per minibatch, no value clipping).

    The switches ``normalize_advantages``, ``orthogonal_init``, ``max_grad_norm`` (None), ``anneal`` and
    ``bootstrap_truncated`` turn off the details of Huang et al. (2022) one at a time (:data:`ABLATIONS`).

    Raises:
        ValueError: on construction, for a count below 1, ``minibatch_size`` not dividing the rollout size
            ``num_envs * num_steps``, ``gamma``/``lam`` outside [0, 1], ``cliprange`` outside (0, 1), a
            non-positive learning rate, ``clip_value`` or ``max_grad_norm`` that is neither None nor positive,
            or negative ``ent_coef``/``vf_coef``.
    """

    num_envs: int = 8  #: N, environments run side by side
    num_steps: int = 32  #: T, steps per environment in one rollout (the rollout holds N T steps)
    n_epochs: int = 20  #: passes of minibatch gradient steps over each rollout
    minibatch_size: int = 256  #: samples per gradient step (must divide N T)
    gamma: float = 0.98  #: discount
    lam: float = 0.8  #: GAE's lambda
    learning_rate: float = 1e-3  #: Adam's step size (at the first update if ``anneal``)
    cliprange: float = 0.2  #: epsilon of the clipped surrogate (at the first update if ``anneal``)
    ent_coef: float = 0.0  #: weight of the entropy bonus
    vf_coef: float = 0.5  #: weight of the value loss
    max_grad_norm: float | None = 0.5  #: clip the global gradient norm to this; None: no clipping
    hidden: int = 64  #: width of the two hidden layers of the actor and of the critic
    adam_eps: float = 1e-5  #: Adam's epsilon (Stable-Baselines3's and Huang et al.'s 1e-5, not torch's 1e-8)
    normalize_advantages: bool = True  #: standardise the advantages within each minibatch
    orthogonal_init: bool = True  #: orthogonal weights (gain sqrt 2, policy head 0.01, value head 1), zero biases
    anneal: bool = True  #: decay the learning rate and the clip range linearly to 0 over the run
    bootstrap_truncated: bool = True  #: False: treat a time-limit cut as a terminal state (the common bug)
    clip_value: float | None = None  #: ``cliprange_value`` of :func:`~solutions.ppo.clipped_value_loss`; None: MSE

    def __post_init__(self):
        for name in ("num_envs", "num_steps", "n_epochs", "minibatch_size", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"minibatch_size {self.minibatch_size} must divide the rollout size num_envs * "
                             f"num_steps = {self.batch_size}")
        for name in ("gamma", "lam"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
        if isinstance(self.cliprange, bool) or not isinstance(self.cliprange, (int, float)) \
                or not 0 < self.cliprange < 1:
            raise ValueError(f"cliprange must be a number in (0, 1); got {self.cliprange!r}")
        for name in ("learning_rate", "adam_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number; got {value!r}")
        for name in ("max_grad_norm", "clip_value"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < math.inf):
                raise ValueError(f"{name} must be None or a positive number; got {value!r}")
        for name in ("ent_coef", "vf_coef"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a number >= 0; got {value!r}")
        for name in ("normalize_advantages", "orthogonal_init", "anneal", "bootstrap_truncated"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")

    @property
    def batch_size(self) -> int:
        """N T, the environment steps of one rollout."""
        return self.num_envs * self.num_steps


#: The ablation: each entry switches one implementation detail of Huang et al. (2022) off (``"full"`` keeps all).
ABLATIONS: dict[str, dict] = {
    "full": {},
    "no advantage normalisation": {"normalize_advantages": False},
    "no orthogonal initialisation": {"orthogonal_init": False},
    "no gradient clipping": {"max_grad_norm": None},
    "no annealing": {"anneal": False},
    "truncation as termination": {"bootstrap_truncated": False},
}


# ------------------------------------------------------------------------------------ networks and environments

def orthogonal_init(network: nn.Module, output_gain: float) -> nn.Module:
    """Orthogonal initialisation of the linear layers of a multilayer perceptron, in place (Huang et al. 2022,
    detail 2; Saxe et al. 2014): every weight matrix is a scaled (semi-)orthogonal matrix, gain sqrt(2) for the
    hidden layers and ``output_gain`` for the last one (0.01 for a policy head, so that the first policy is close
    to uniform; 1 for a value head); biases 0.

    Draws from torch's global random generator (seed it with ``torch.manual_seed``).

    Args:
        network: a module whose ``nn.Linear`` layers, in order of ``network.modules()``, are the layers of the
            perceptron (as :class:`~solutions.policy_gradients.PolicyNetwork` and ``ValueNetwork``).
        output_gain: the gain of the last linear layer, > 0.

    Returns:
        ``network`` itself.

    Raises:
        ValueError: if ``network`` has no linear layer or ``output_gain`` is not positive.
    """
    linears = [module for module in network.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError("network has no nn.Linear layer")
    if not output_gain > 0:
        raise ValueError(f"output_gain must be positive; got {output_gain!r}")
    for k, layer in enumerate(linears):
        nn.init.orthogonal_(layer.weight, gain=output_gain if k == len(linears) - 1 else math.sqrt(2.0))
        nn.init.zeros_(layer.bias)
    return network


def make_cartpole_envs(num_envs: int, env_id: str = "CartPole-v1",
                       max_episode_steps: int | None = None) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` in a ``SyncVectorEnv`` with same-step autoreset: an environment whose
    episode ends is reset inside the same ``step`` call, which returns the next episode's first observation and
    puts the finished episode's last one in ``info["final_obs"][i]`` (``info["_final_obs"][i]`` True).

    Args:
        num_envs: >= 1.
        env_id: a Gymnasium id with a vector observation and discrete actions.
        max_episode_steps: override the time limit (CartPole-v1: 500), e.g. a short one for tests.

    Returns:
        The vector environment (not reset yet: call ``reset(seed=...)``).
    """
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}, **kwargs)


# ------------------------------------------------------------------------------------------------ the rollout

@dataclass
class Rollout:
    """One rollout of T steps in N environments (time first). Step t of environment i took ``actions[t, i]`` in
    ``observations[t, i]``, received ``rewards[t, i]`` and led to ``next_observations[t, i]``: the true successor
    state S'_t, which is the episode's *final* observation where the episode ended at step t (not the next
    episode's first observation, which is ``observations[t + 1, i]``)."""

    observations: np.ndarray  #: float32 (T, N, d), S_t
    actions: np.ndarray  #: int64 (T, N), A_t
    log_probs: np.ndarray  #: float32 (T, N), ln pi_theta_old(A_t | S_t) when the action was sampled
    rewards: np.ndarray  #: float64 (T, N), R_{t+1}
    terminated: np.ndarray  #: bool (T, N): S'_t is terminal (the pole fell or the cart left the track)
    truncated: np.ndarray  #: bool (T, N): the episode was cut by the time limit after step t
    next_observations: np.ndarray  #: float32 (T, N, d), S'_t (the final observation where the episode ended)
    last_observations: np.ndarray  #: float32 (N, d): where the environments are after the rollout (next S_0)


def collect_rollout(envs: gym.vector.VectorEnv, observations: np.ndarray, policy: nn.Module, num_steps: int,
                    generator: torch.Generator) -> Rollout:
    """Run the policy for ``num_steps`` steps in every environment of a same-step-autoreset vector environment
    (:func:`make_cartpole_envs`), sampling A_t ~ pi_theta(. | S_t) (Schulman et al. 2017, Algorithm 1, "run policy
    pi_theta_old in environment for T timesteps").

    Args:
        envs: the vector environment, already reset; it is stepped ``num_steps`` times.
        observations: float ``(N, d)``, the environments' current observations.
        policy: maps float32 ``(B, d)`` to logits ``(B, A)``.
        num_steps: T >= 1.
        generator: the torch generator that samples the actions.

    Returns:
        A :class:`Rollout`.
    """
    num_envs = len(observations)
    obs_dim = observations.shape[1]
    rollout = Rollout(observations=np.zeros((num_steps, num_envs, obs_dim), dtype=np.float32),
                      actions=np.zeros((num_steps, num_envs), dtype=np.int64),
                      log_probs=np.zeros((num_steps, num_envs), dtype=np.float32),
                      rewards=np.zeros((num_steps, num_envs)),
                      terminated=np.zeros((num_steps, num_envs), dtype=bool),
                      truncated=np.zeros((num_steps, num_envs), dtype=bool),
                      next_observations=np.zeros((num_steps, num_envs, obs_dim), dtype=np.float32),
                      last_observations=np.zeros((num_envs, obs_dim), dtype=np.float32))
    for t in range(num_steps):
        with torch.no_grad():
            log_pi = torch.log_softmax(policy(torch.as_tensor(observations, dtype=torch.float32)), dim=-1)
            actions = torch.multinomial(log_pi.exp(), 1, generator=generator).squeeze(1)
            log_probs = log_pi.gather(1, actions[:, None]).squeeze(1)
        next_observations, rewards, terminated, truncated, info = envs.step(actions.numpy())
        rollout.observations[t] = observations
        rollout.actions[t] = actions.numpy()
        rollout.log_probs[t] = log_probs.numpy()
        rollout.rewards[t] = rewards
        rollout.terminated[t] = terminated
        rollout.truncated[t] = truncated
        # S'_t: the observation the step led to; where the episode ended, the final observation, because
        # next_observations[i] is already the first observation of the environment's next episode.
        rollout.next_observations[t] = next_observations
        for i in np.flatnonzero(info.get("_final_obs", np.zeros(num_envs, dtype=bool))):
            rollout.next_observations[t, i] = info["final_obs"][i]
        observations = next_observations
    rollout.last_observations[:] = observations
    return rollout


def rollout_advantages(rollout: Rollout, value: nn.Module, config: PPOConfig) -> tuple[np.ndarray, np.ndarray]:
    """The values V_w(S_t) and the GAE advantages of a rollout (Schulman et al. 2016, eq. 16, with
    :func:`solutions.ppo.gae`).

    The TD error of step t bootstraps from V_w(S'_t), the value of the true successor (``next_observations``);
    where S'_t is terminal it contributes 0. With ``config.bootstrap_truncated`` False a time-limit cut is treated
    as a terminal state (V(S'_t) = 0), the bug this switch measures.

    Args:
        rollout: from :func:`collect_rollout`.
        value: maps float32 states ``(..., d)`` to values ``(...)``.
        config: supplies ``gamma``, ``lam`` and ``bootstrap_truncated``.

    Returns:
        ``(values, advantages)``: float64 arrays ``(T, N)``.
    """
    with torch.no_grad():
        values = value(torch.as_tensor(rollout.observations)).numpy().astype(np.float64)
        next_values = value(torch.as_tensor(rollout.next_observations)).numpy().astype(np.float64)
    terminated = rollout.terminated if config.bootstrap_truncated else rollout.terminated | rollout.truncated
    advantages = gae(rollout.rewards, values, next_values, terminated, rollout.truncated, config.gamma, config.lam)
    return values, advantages


# ---------------------------------------------------------------------------------------------- the update

def ppo_update(policy: nn.Module, value: nn.Module, optimizer: torch.optim.Optimizer, rollout: Rollout,
               values: np.ndarray, advantages: np.ndarray, config: PPOConfig, cliprange: float,
               rng: np.random.Generator) -> dict[str, float]:
    """``config.n_epochs`` epochs of minibatch gradient steps on one rollout (Schulman et al. 2017, Algorithm 1,
    "optimize surrogate L wrt theta, with K epochs and minibatch size M").

    Each minibatch's loss is ``ppo_clip_loss + vf_coef * value_loss - ent_coef * entropy``: the clipped surrogate
    with the (optionally standardised) advantages, the value loss against the targets G_t = A_t + V_w_old(S_t)
    (plain mean squared error, or :func:`~solutions.ppo.clipped_value_loss` with ``config.clip_value``), and the
    mean entropy of pi_theta(. | S_t). One Adam step per minibatch on the parameters of both networks, after
    clipping their joint gradient norm to ``config.max_grad_norm`` (if set). The optimiser's step size is set by
    the caller.

    Args:
        policy, value: the networks, trained in place.
        optimizer: over the parameters of both networks.
        rollout: from :func:`collect_rollout`.
        values, advantages: float ``(T, N)`` from :func:`rollout_advantages`.
        config: the hyper-parameters.
        cliprange: epsilon for this update, in (0, 1).
        rng: shuffles the samples into minibatches.

    Returns:
        Means over the update's gradient steps: ``"policy_loss"``, ``"value_loss"``, ``"entropy"`` (nats),
        ``"approx_kl"`` (the k3 estimate mean((rho - 1) - ln rho) of KL(pi_old || pi_theta) on the minibatch,
        measured before each step) and ``"clip_fraction"`` (share of samples with |rho - 1| > cliprange).
    """
    states = torch.as_tensor(rollout.observations.reshape(-1, rollout.observations.shape[-1]))
    actions = torch.as_tensor(rollout.actions.reshape(-1))
    old_log_probs = torch.as_tensor(rollout.log_probs.reshape(-1))
    old_values = torch.as_tensor(values.reshape(-1), dtype=torch.float32)
    all_advantages = torch.as_tensor(advantages.reshape(-1), dtype=torch.float32)
    returns = all_advantages + old_values  # the value targets G_t = A_t + V_w_old(S_t)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    sums = dict.fromkeys(("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"), 0.0)
    n_steps = 0
    for _ in range(config.n_epochs):
        order = torch.as_tensor(rng.permutation(len(states)))
        for start in range(0, len(states), config.minibatch_size):
            batch = order[start:start + config.minibatch_size]
            log_pi = torch.log_softmax(policy(states[batch]), dim=-1)
            log_probs = log_pi.gather(1, actions[batch, None]).squeeze(1)
            A = all_advantages[batch]
            if config.normalize_advantages:
                A = (A - A.mean()) / (A.std() + 1e-8)
            policy_loss = ppo_clip_loss(log_probs, old_log_probs[batch], A, cliprange)
            v = value(states[batch])
            if config.clip_value is None:
                value_loss = ((v - returns[batch]) ** 2).mean()
            else:
                value_loss = clipped_value_loss(v, old_values[batch], returns[batch], config.clip_value)
            entropy = -(log_pi.exp() * log_pi).sum(dim=1).mean()
            loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
            optimizer.zero_grad()
            loss.backward()
            if config.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                ratio = importance_ratio(log_probs, old_log_probs[batch])
                sums["approx_kl"] += float(((ratio - 1) - torch.log(ratio)).mean())
                sums["clip_fraction"] += float(((ratio - 1).abs() > cliprange).float().mean())
            sums["policy_loss"] += float(policy_loss.detach())
            sums["value_loss"] += float(value_loss.detach())
            sums["entropy"] += float(entropy.detach())
            n_steps += 1
    return {name: total / n_steps for name, total in sums.items()}


# ---------------------------------------------------------------------------------------------- training

@dataclass
class PPOResult:
    """What :func:`train_ppo` returns."""

    config: PPOConfig
    seed: int
    policy: PolicyNetwork  #: the trained pi_theta
    value: ValueNetwork  #: the trained V_w
    total_steps: int = 0  #: environment steps taken (a whole number of rollouts)
    episode_ends: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  #: step each ended
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))  #: their undiscounted returns
    eval_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  #: steps of evaluations
    eval_sampled: np.ndarray = field(default_factory=lambda: np.zeros(0))  #: sampled policy's mean return there
    eval_greedy: np.ndarray = field(default_factory=lambda: np.zeros(0))  #: greedy policy's mean return there
    update_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  #: step of each update
    #: per-update diagnostics, each float (n_updates,): ``learning_rate``, ``cliprange``, ``policy_loss``,
    #: ``value_loss``, ``entropy``, ``approx_kl``, ``clip_fraction`` (see :func:`ppo_update`)
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    #: ``{step: (policy, value)}``: copies of the networks after the update that reached each of ``snapshot_steps``
    snapshots: dict[int, tuple[PolicyNetwork, ValueNetwork]] = field(default_factory=dict)
    cpu_seconds: float = 0.0  #: CPU time of the training (this process), evaluations excluded
    eval_cpu_seconds: float = 0.0  #: CPU time of the evaluations

    def first_step_reaching(self, level: float = THRESHOLD) -> int | None:
        """The first evaluation step at which the sampled policy's mean return was >= ``level``, or None."""
        reached = np.flatnonzero(self.eval_sampled >= level)
        return int(self.eval_steps[reached[0]]) if reached.size else None

    def curve(self, grid, window: int = 5_000) -> np.ndarray:
        """The training curve on a step grid: at each step s of ``grid``, the mean return of the training episodes
        that ended in (s - window, s]; NaN where none did."""
        return training_curve(self.episode_ends, self.episode_returns, grid, window)


def _check_run_arguments(config: PPOConfig, total_steps: int, eval_every: int | None, eval_episodes: int,
                         stop_after: int | None) -> None:
    if not isinstance(config, PPOConfig):
        raise ValueError(f"config must be a PPOConfig; got {type(config).__name__}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an integer >= 1; got {total_steps!r}")
    if eval_every is not None and (isinstance(eval_every, bool) or not isinstance(eval_every, int)
                                   or eval_every < 1 or eval_every % config.batch_size):
        raise ValueError(f"eval_every must be None or a positive multiple of the rollout size "
                         f"{config.batch_size} (evaluations happen between updates); got {eval_every!r}")
    if isinstance(eval_episodes, bool) or not isinstance(eval_episodes, int) or eval_episodes < 1:
        raise ValueError(f"eval_episodes must be an integer >= 1; got {eval_episodes!r}")
    if stop_after is not None:
        if eval_every is None:
            raise ValueError("stop_after needs evaluations: give eval_every")
        if isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1:
            raise ValueError(f"stop_after must be None or an integer >= 1; got {stop_after!r}")


def evaluation_seed(steps: int) -> int:
    """The seed of the evaluation after ``steps`` environment steps (environment resets and action draws): the
    same for every run, every configuration and the Stable-Baselines3 benchmark, so that evaluations at the same
    step face the same episodes."""
    return 10_000 + steps


@single_threaded()
def train_ppo(config: PPOConfig = PPOConfig(), total_steps: int = 50_000, seed: int = 0,
              eval_every: int | None = 512, eval_episodes: int = 20, eval_greedy: bool = True,
              stop_after: int | None = None, snapshot_steps=(), env_id: str = "CartPole-v1",
              progress: bool | None = None) -> PPOResult:
    """PPO-clip (Schulman et al. 2017, Algorithm 1) on CartPole-v1 with the details of Huang et al. (2022).

    U = ceil(total_steps / (N T)) iterations of: collect a rollout of T steps in each of N environments
    (:func:`collect_rollout`), compute GAE advantages (:func:`rollout_advantages`), then ``n_epochs`` epochs of
    minibatch steps on the clipped surrogate and the value loss (:func:`ppo_update`). With ``config.anneal`` the
    step size and the clip range of update k = 1..U are ``(1 - (k - 1) / U)`` times their initial values (Huang et
    al. 2022, detail 4: linear decay towards 0 at the end of the run).

    Every ``eval_every`` environment steps (and before training, at step 0) the sampled policy is evaluated over
    ``eval_episodes`` episodes with :func:`~solutions.policy_gradients.evaluate_cartpole_policy` (seed
    :func:`evaluation_seed`), and the greedy one beside it if ``eval_greedy``. Evaluation episodes are not
    training steps, draw from random generators of their own (they do not change the training), and their CPU
    time is counted apart (``eval_cpu_seconds``).

    Randomness: ``seed`` seeds torch's global generator (the initial weights), a torch generator for the actions,
    a numpy generator for the minibatch shuffles and the environments' resets (environment i gets seed + i). The
    result is a function of ``(config, total_steps, seed, eval_every, stop_after)``.

    Args:
        config: the hyper-parameters (:class:`PPOConfig`).
        total_steps: environment steps of training, summed over the N environments; rounded up to whole
            rollouts (50,000 steps with the default config: 196 rollouts of 256, 50,176 steps).
        seed: an integer >= 0.
        eval_every: steps between evaluations, a multiple of the rollout size N T; None: no evaluation.
        eval_episodes: episodes per evaluation (20: the issue's protocol).
        eval_greedy: evaluate the greedy policy too.
        stop_after: stop the run once this many consecutive evaluations of the sampled policy have been >= 475
            (a budget saver for figures; the learning-rate schedule still counts towards ``total_steps``); None:
            run to the end.
        snapshot_steps: keep copies of the networks as they are after these steps (multiples of the rollout
            size) in ``PPOResult.snapshots``, e.g. a half-trained policy for :func:`one_step_collapse`.
        env_id: a Gymnasium id with a vector observation and discrete actions.
        progress: show a tqdm bar over environment steps (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A :class:`PPOResult`.

    Raises:
        ValueError: if ``config`` is not a :class:`PPOConfig`, ``total_steps``/``eval_episodes`` < 1,
            ``eval_every`` is not a multiple of the rollout size, ``stop_after`` < 1 or given without
            evaluations, or ``seed`` is negative.
    """
    _check_run_arguments(config, total_steps, eval_every, eval_episodes, stop_after)
    snapshot_steps = {int(s) for s in snapshot_steps}
    if any(s < 1 or s % config.batch_size for s in snapshot_steps):
        raise ValueError(f"snapshot_steps must be positive multiples of the rollout size {config.batch_size}; got "
                         f"{sorted(snapshot_steps)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    seed = int(seed)
    cpu_start = time.process_time()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    envs = make_cartpole_envs(config.num_envs, env_id)
    obs_dim, n_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)
    policy = PolicyNetwork(obs_dim, n_actions, config.hidden)
    value = ValueNetwork(obs_dim, config.hidden)
    if config.orthogonal_init:
        orthogonal_init(policy, output_gain=0.01)
        orthogonal_init(value, output_gain=1.0)
    optimizer = torch.optim.Adam([*policy.parameters(), *value.parameters()], lr=config.learning_rate,
                                 eps=config.adam_eps)
    n_updates = math.ceil(total_steps / config.batch_size)
    result = PPOResult(config, seed, policy, value)
    evaluations = []  # (step, sampled, greedy)
    eval_cpu = 0.0

    def evaluate(steps: int) -> None:
        nonlocal eval_cpu
        start = time.process_time()
        sampled = evaluate_cartpole_policy(policy, eval_episodes, evaluation_seed(steps), env_id=env_id)
        greedy = (evaluate_cartpole_policy(policy, eval_episodes, evaluation_seed(steps), greedy=True,
                                           env_id=env_id) if eval_greedy else math.nan)
        evaluations.append((steps, sampled, greedy))
        eval_cpu += time.process_time() - start

    observations = envs.reset(seed=seed)[0]
    running_returns = np.zeros(config.num_envs)
    ends, episode_returns, update_steps, diagnostics = [], [], [], []
    steps = 0
    if eval_every is not None:
        evaluate(0)
    bar = tqdm(total=n_updates * config.batch_size, desc=f"PPO seed {seed}", disable=not show_progress(progress),
               mininterval=1.0, leave=False)
    for k in range(n_updates):
        rollout = collect_rollout(envs, observations, policy, config.num_steps, generator)
        observations = rollout.last_observations
        for t in range(config.num_steps):  # the training episodes that ended in this rollout
            running_returns += rollout.rewards[t]
            for i in np.flatnonzero(rollout.terminated[t] | rollout.truncated[t]):
                ends.append(steps + (t + 1) * config.num_envs)
                episode_returns.append(running_returns[i])
                running_returns[i] = 0.0
        steps += config.batch_size
        values, advantages = rollout_advantages(rollout, value, config)
        fraction = 1.0 - k / n_updates if config.anneal else 1.0
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate * fraction
        cliprange = config.cliprange * fraction
        stats = ppo_update(policy, value, optimizer, rollout, values, advantages, config, cliprange, rng)
        update_steps.append(steps)
        diagnostics.append({"learning_rate": config.learning_rate * fraction, "cliprange": cliprange, **stats})
        bar.update(config.batch_size)
        if steps in snapshot_steps:
            result.snapshots[steps] = (copy.deepcopy(policy), copy.deepcopy(value))
        if eval_every is not None and steps % eval_every == 0:
            evaluate(steps)
            if stop_after is not None and len(evaluations) >= stop_after \
                    and all(e[1] >= THRESHOLD for e in evaluations[-stop_after:]):
                break
    bar.close()
    envs.close()
    result.total_steps = steps
    result.episode_ends = np.array(ends, dtype=np.int64)
    result.episode_returns = np.array(episode_returns, dtype=np.float64)
    result.eval_steps = np.array([e[0] for e in evaluations], dtype=np.int64)
    result.eval_sampled = np.array([e[1] for e in evaluations], dtype=np.float64)
    result.eval_greedy = np.array([e[2] for e in evaluations], dtype=np.float64)
    result.update_steps = np.array(update_steps, dtype=np.int64)
    result.diagnostics = {name: np.array([d[name] for d in diagnostics]) for name in diagnostics[0]}
    result.eval_cpu_seconds = eval_cpu
    result.cpu_seconds = time.process_time() - cpu_start - eval_cpu
    return result


# ------------------------------------------------------------------------------------- runs over seeds, ablation

def _grid_values(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``values`` (recorded at ``steps``) on ``grid``: the value recorded at each grid step; after the last
    recorded step (a run stopped by ``stop_after``), the last recorded value; NaN before the first one."""
    out = np.full(grid.shape, np.nan)
    index = np.searchsorted(steps, grid, side="right") - 1
    known = index >= 0
    out[known] = values[index[known]]
    return out


def ppo_runs(configs, seeds, total_steps: int = 50_000, eval_every: int | None = 512, n_jobs: int = 1,
             window: int = 5_000, progress: bool | None = None, **kwargs) -> dict[str, dict]:
    """:func:`train_ppo` for several configurations and seeds, the runs shared out among ``n_jobs`` processes, with
    their curves on a common step grid (for figures with bands over seeds).

    Args:
        configs: a :class:`PPOConfig`, or a dict ``{name: PPOConfig}``; they must share the rollout size if
            ``eval_every`` is given.
        seeds: the seeds, one run each per configuration.
        total_steps, eval_every: as in :func:`train_ppo`.
        n_jobs: how many runs train at the same time, each in a fresh "spawn" process of its own (like
            :func:`~solutions.policy_gradients.compare_cartpole_variants`). Every run is a function of its
            arguments and seed, so the results are the same for every ``n_jobs`` (a test checks it).
        window: the training curves average the training episodes that ended in the last ``window`` steps
            (:meth:`PPOResult.curve`).
        progress: a bar over the runs (default: :func:`~solutions.progress.show_progress`).
        **kwargs: passed on to :func:`train_ppo` (``eval_episodes``, ``eval_greedy``, ``stop_after``, ``env_id``).

    Returns:
        ``{name: {...}}`` (the name ``"ppo"`` for a single config) with, for ``n_seeds`` seeds:

        * ``"steps"``: int ``(G,)``, the evaluation grid ``0, eval_every, 2 eval_every, ...`` up to the run length
          (empty without evaluations);
        * ``"eval_sampled"``, ``"eval_greedy"``: float ``(n_seeds, G)``, the mean evaluation returns there (a run
          stopped early by ``stop_after`` keeps its last value to the end of the grid);
        * ``"train_steps"``: int ``(G2,)``, the grid ``window, window + 1024, ...``; ``"train_curves"``: float
          ``(n_seeds, G2)``, the mean return of the training episodes in the window before each grid step (NaN
          after a stopped run's end);
        * ``"first_step"``: float ``(n_seeds,)``, :meth:`PPOResult.first_step_reaching` (475), NaN if never;
        * ``"cpu_seconds"``, ``"eval_cpu_seconds"``: float ``(n_seeds,)``; ``"results"``: the :class:`PPOResult`
          of each seed in the order of ``seeds``.

    Raises:
        ValueError: if ``seeds`` or ``configs`` is empty, ``n_jobs`` < 1, the configurations' rollout sizes differ
            while evaluating, or as :func:`train_ppo`.
    """
    named = {"ppo": configs} if isinstance(configs, PPOConfig) else dict(configs)
    seeds = [int(s) for s in seeds]
    if not named or not seeds:
        raise ValueError(f"need at least one configuration and one seed; got {len(named)} and {seeds}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be an integer >= 1; got {n_jobs!r}")
    for config in named.values():
        _check_run_arguments(config, total_steps, eval_every, kwargs.get("eval_episodes", 20),
                             kwargs.get("stop_after"))
    if eval_every is not None and len({c.batch_size for c in named.values()}) > 1:
        raise ValueError("the configurations must share the rollout size num_envs * num_steps to share a grid")
    jobs = [(name, seed) for name in named for seed in seeds]
    runs = {}
    bar = tqdm(total=len(jobs), desc="PPO runs", disable=not show_progress(progress))
    if n_jobs == 1:
        for name, seed in jobs:
            runs[name, seed] = train_ppo(named[name], total_steps, seed, eval_every, progress=False, **kwargs)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # fork would copy a running kernel's threads and state
        with ProcessPoolExecutor(min(n_jobs, len(jobs)), mp_context=context) as pool:
            futures = {pool.submit(train_ppo, named[name], total_steps, seed, eval_every, progress=False,
                                   **kwargs): (name, seed) for name, seed in jobs}
            for future in as_completed(futures):
                runs[futures[future]] = future.result()
                bar.update()
    bar.close()
    output = {}
    for name, config in named.items():
        results = [runs[name, seed] for seed in seeds]
        length = math.ceil(total_steps / config.batch_size) * config.batch_size
        grid = np.arange(0, length + 1, eval_every) if eval_every is not None else np.zeros(0, dtype=np.int64)
        train_grid = np.arange(window, length + 1, 1024)
        output[name] = {
            "steps": grid,
            "eval_sampled": np.array([_grid_values(r.eval_steps, r.eval_sampled, grid) for r in results]),
            "eval_greedy": np.array([_grid_values(r.eval_steps, r.eval_greedy, grid) for r in results]),
            "train_steps": train_grid,
            "train_curves": np.array([np.where(train_grid <= r.total_steps, r.curve(train_grid, window), np.nan)
                                      for r in results]),
            "first_step": np.array([np.nan if r.first_step_reaching() is None else r.first_step_reaching()
                                    for r in results]),
            "cpu_seconds": np.array([r.cpu_seconds for r in results]),
            "eval_cpu_seconds": np.array([r.eval_cpu_seconds for r in results]),
            "results": results,
        }
    return output


def ppo_ablation(seeds=range(5), total_steps: int = 50_000, eval_every: int = 1024, details=tuple(ABLATIONS),
                 base: PPOConfig = PPOConfig(), n_jobs: int = 1, progress: bool | None = None,
                 **kwargs) -> dict[str, dict]:
    """The ablation of Huang et al.'s (2022) implementation details on CartPole-v1: the full configuration and
    each detail of :data:`ABLATIONS` switched off, the same seeds for each (:func:`ppo_runs`).

    What it showed (seeds 0-4, 50,000 steps, the sampled policy evaluated every 1,024 steps over 20 episodes;
    first step at which it reached 475, median over the seeds; the mean of all evaluations of the run; the final
    evaluations), measured on this machine:

    ============================  ===============  ================  =========================
    configuration                 first >= 475     mean evaluation   final evaluations
    ============================  ===============  ================  =========================
    full                          16,384 (5 of 5)  335               500 500 233 500 500
    no advantage normalisation    24,576 (5 of 5)  316               500 500 500 490 209
    no orthogonal initialisation  22,528 (5 of 5)  358               500 x 5
    no gradient clipping          31,744 (4 of 5)  262               308 287 500 481 500
    no annealing                  22,528 (5 of 5)  370               500 x 5
    truncation as termination     16,384 (5 of 5)  337               500 500 185 500 500
    ============================  ===============  ================  =========================

    On CartPole with these hyper-parameters gradient clipping matters most (one seed never reached 475, the mean
    dropped by 70); advantage normalisation and orthogonal initialisation delay the first 475 by 6-8k steps but
    end as well or better; annealing does not help (without it the mean is higher and every seed ends at 500: the
    annealed schedule freezes a policy that dips late, seed 2 of the full run); bootstrapping cut episodes makes
    no difference (with gamma = 0.98 a cut changes the targets of the last ~50 steps of a 500-step episode only,
    and the runs are identical until the first 500-step episode). Five seeds separate only large effects.

    Cost: a 50,000-step run takes 18-26 s of CPU time for its training on this 2-core machine (196 rollouts, 3,920
    gradient steps on minibatches of 256), plus 0.1-0.3 s per evaluation of 20 episodes (the longer the episodes,
    the dearer). The table above took 1,050 s of CPU time (6 x 5 runs, evaluations included); with
    ``total_steps=20_480, eval_every=2048, eval_greedy=False`` it takes 315 s (173 s of wall time with
    ``n_jobs=2``), and most runs have not reached 475 by then (``benchmarks/ppo_cartpole.py --ablation``).

    Args:
        seeds: the seeds (>= 5 for the figure).
        total_steps: environment steps per run (the annealing runs over them).
        eval_every: steps between evaluations of the sampled (and greedy) policy, a multiple of the rollout size.
        details: names from :data:`ABLATIONS`.
        base: the configuration the details are switched off from.
        n_jobs, progress, **kwargs: as in :func:`ppo_runs` (e.g. ``stop_after`` to end the runs that have held
            475, ``eval_greedy=False`` to halve the evaluation cost).

    Returns:
        ``{detail: the dict of ppo_runs}`` in the order of ``details``.

    Raises:
        ValueError: for an unknown detail name (and as :func:`ppo_runs`).
    """
    unknown = [d for d in details if d not in ABLATIONS]
    if unknown or not details:
        raise ValueError(f"details must be names from {list(ABLATIONS)}; got {list(details)}")
    configs = {d: dataclasses.replace(base, **ABLATIONS[d]) for d in details}
    return ppo_runs(configs, seeds, total_steps, eval_every, n_jobs=n_jobs, progress=progress, **kwargs)


# ----------------------------------------------------------------------------------- one large step collapses

def _log_probs(policy: nn.Module, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """ln pi_theta(A_t | S_t) of each row: float (B,), from states (B, d) and int64 actions (B,)."""
    return torch.log_softmax(policy(states), dim=-1).gather(1, actions[:, None]).squeeze(1)


def _exact_kl(old_log_pi: torch.Tensor, new_log_pi: torch.Tensor) -> float:
    """Mean over the states of KL(pi_old(. | s) || pi_new(. | s)) = sum_a pi_old(a | s) ln(pi_old / pi_new)."""
    return float((old_log_pi.exp() * (old_log_pi - new_log_pi)).sum(dim=1).mean())


@single_threaded()
def one_step_collapse(results, learning_rates=(1e-2, 1e-1, 1.0, 10.0), at_step: int | None = None,
                      batch_steps: int | None = None, eval_episodes: int = 20, seed: int = 0,
                      progress: bool | None = None) -> dict:
    """Why vanilla policy gradients are fragile: a single large policy-gradient step can collapse a good policy,
    while PPO's clipped surrogate reuses the same batch for many steps and stays close to the old policy
    (Schulman et al. 2015, Section 1; Schulman et al. 2017, Section 3).

    For each trained policy pi_old (one per given run, e.g. PPO runs of several seeds): collect one batch with
    pi_old in its config's ``num_envs`` environments for ``batch_steps`` steps each, compute GAE advantages with
    the run's own value network (its config's gamma and lambda), standardised over the batch, then, each time
    starting again from pi_old:

    * ``"vanilla"``: one plain gradient-ascent step of size alpha on the Chapter 4 surrogate
      mean_t A_t ln pi_theta(A_t | S_t) (averaged over the steps), for every alpha in ``learning_rates``;
    * ``"ppo-clip"``: one PPO update as :func:`train_ppo` makes it at its first update, on the same batch: the
      config's ``n_epochs`` epochs of Adam steps (``learning_rate``, ``adam_eps``) on minibatches of
      ``minibatch_size`` with :func:`~solutions.ppo.ppo_clip_loss` (``cliprange``);
    * ``"no clip"``: the same epochs on the unclipped importance-sampled surrogate mean_t rho_t A_t (the batch
      reused without PPO's clip).

    After each, the sampled policy is evaluated over ``eval_episodes`` episodes (the same episodes for every row
    of a policy), and KL(pi_old || pi_new), averaged over the batch's states, is computed exactly from the two
    action distributions. Only the policy changes (the value network only supplies the advantages).

    Measured on the five 50,000-step runs of the full configuration (seeds 0-4, sampled returns before
    500 500 245 500 500): one vanilla step of alpha = 10 leaves every policy at a mean return of 9 (KL 6-14 nats:
    it pushes one way whatever the state), alpha = 1 keeps four of five at 500 (KL 0.6-2.2), while one PPO update
    on the same batch (20 epochs of Adam 1e-3, clip 0.2) keeps KL at 0.002-0.012 and the returns (500 x 4, 366),
    and the same epochs without the clip reach KL 0.2-1.5 (263 500 342 500 500). From half-trained policies
    (snapshots at 8,192 steps, returns 60-210) the picture is the same but noisier: alpha = 10 gives 10-38
    (median 19), PPO-clip medians 161 at KL 0.008.

    Cost: about 2.5 s of CPU time per trained policy with 20 evaluation episodes (13 s for five policies that
    balance for 500 steps, 9 s for five half-trained ones), mostly the evaluations; ``eval_episodes=10`` halves it.

    Args:
        results: a sequence of :class:`PPOResult` (their ``policy``, ``value`` and ``config`` are used, not
            changed), or of ``(policy, value, config)`` triples.
        learning_rates: the step sizes alpha of the vanilla step, each > 0.
        at_step: take each result's networks from its snapshot at this step (``train_ppo(...,
            snapshot_steps=...)``) instead of the trained ones.
        batch_steps: steps per environment in the batch; None: the config's ``num_steps`` (one PPO rollout).
        eval_episodes: episodes per evaluation.
        seed: the batch of policy k is collected with environment and action seed ``seed + 1000 k`` and
            evaluated with seed ``seed + 1000 k + 1``.
        progress: a bar over the policies (default: :func:`~solutions.progress.show_progress`).

    Returns:
        A dict with ``"labels"`` (list of n_rows strings), ``"kind"`` (list of n_rows: ``"vanilla"``,
        ``"ppo-clip"``, ``"no clip"``), ``"learning_rate"`` (float ``(n_rows,)``; for the PPO rows, the first
        policy's config's), ``"return_before"`` (float ``(n_policies,)``), ``"return_after"`` and ``"kl"``
        (float ``(n_rows, n_policies)``), ``"median_return_after"`` and ``"median_kl"`` (float ``(n_rows,)``).

    Raises:
        ValueError: if ``results`` is empty, a learning rate is not positive, a count is below 1, or a result
            has no snapshot at ``at_step``.
    """
    items = []
    for r in results:
        if isinstance(r, PPOResult):
            if at_step is None:
                items.append((r.policy, r.value, r.config))
            elif at_step in r.snapshots:
                items.append((*r.snapshots[at_step], r.config))
            else:
                raise ValueError(f"the run of seed {r.seed} has no snapshot at step {at_step}; it has "
                                 f"{sorted(r.snapshots)}")
        else:
            items.append(tuple(r))
    if not items:
        raise ValueError("results is empty")
    learning_rates = [float(a) for a in learning_rates]
    if not learning_rates or any(not a > 0 for a in learning_rates):
        raise ValueError(f"learning_rates must be positive; got {learning_rates}")
    for name, value in (("batch_steps", batch_steps), ("eval_episodes", eval_episodes)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    first = items[0][2]
    labels = [f"vanilla alpha={a:g}" for a in learning_rates]
    labels += [f"ppo-clip {first.n_epochs} epochs", f"no clip {first.n_epochs} epochs"]
    kinds = ["vanilla"] * len(learning_rates) + ["ppo-clip", "no clip"]
    before = np.zeros(len(items))
    after = np.zeros((len(labels), len(items)))
    kl = np.zeros((len(labels), len(items)))
    for k, (policy, value, config) in enumerate(tqdm(items, desc="one large step", leave=False,
                                                       disable=not show_progress(progress))):
        generator = torch.Generator().manual_seed(seed + 1000 * k)
        rng = np.random.default_rng(seed + 1000 * k)
        envs = make_cartpole_envs(config.num_envs)
        rollout = collect_rollout(envs, envs.reset(seed=seed + 1000 * k)[0], policy,
                                  batch_steps or config.num_steps, generator)
        envs.close()
        _, advantages = rollout_advantages(rollout, value, config)
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        states = torch.as_tensor(rollout.observations.reshape(-1, rollout.observations.shape[-1]))
        actions = torch.as_tensor(rollout.actions.reshape(-1))
        A = torch.as_tensor(advantages.reshape(-1), dtype=torch.float32)
        with torch.no_grad():
            old_log_pi = torch.log_softmax(policy(states), dim=-1)
        old_log_probs = old_log_pi.gather(1, actions[:, None]).squeeze(1)
        eval_seed = seed + 1000 * k + 1
        before[k] = evaluate_cartpole_policy(policy, eval_episodes, eval_seed)

        new_policies = []
        for alpha in learning_rates:  # one step of gradient ascent on mean_t A_t ln pi(A_t | S_t)
            new = copy.deepcopy(policy)
            surrogate = (A * _log_probs(new, states, actions)).mean()
            gradients = torch.autograd.grad(surrogate, list(new.parameters()))
            with torch.no_grad():
                for theta, g in zip(new.parameters(), gradients, strict=True):
                    theta += alpha * g
            new_policies.append(new)
        for clip in (True, False):  # n_epochs epochs of minibatch Adam steps on the same batch
            new = copy.deepcopy(policy)
            optimizer = torch.optim.Adam(new.parameters(), lr=config.learning_rate, eps=config.adam_eps)
            for _ in range(config.n_epochs):
                order = torch.as_tensor(rng.permutation(len(states)))
                for start in range(0, len(states), config.minibatch_size):
                    batch = order[start:start + config.minibatch_size]
                    log_probs = _log_probs(new, states[batch], actions[batch])
                    if clip:
                        loss = ppo_clip_loss(log_probs, old_log_probs[batch], A[batch], config.cliprange)
                    else:
                        loss = -(importance_ratio(log_probs, old_log_probs[batch]) * A[batch]).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            new_policies.append(new)
        for row, new in enumerate(new_policies):
            with torch.no_grad():
                kl[row, k] = _exact_kl(old_log_pi, torch.log_softmax(new(states), dim=-1))
            after[row, k] = evaluate_cartpole_policy(new, eval_episodes, eval_seed)
    return {"labels": labels, "kind": kinds,
            "learning_rate": np.array(learning_rates + [first.learning_rate] * 2),
            "return_before": before, "return_after": after, "kl": kl,
            "median_return_after": np.median(after, axis=1), "median_kl": np.median(kl, axis=1)}
