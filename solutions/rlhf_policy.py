"""Reinforcement learning against a learned reward model on the tiny language model (Chapter 6, stage 3 of the
InstructGPT recipe): PPO with a per-token KL penalty, GRPO with the k3 KL term, and over-optimisation.

The policy pi_theta starts as the SFT model and is trained to maximise

    E_{x ~ prompts, y ~ pi_theta(. | x)} [r(x, y)] - beta KL(pi_theta(. | x) || pi_ref(. | x)),

with r a reward function ``reward_fn(prompts, completions) -> (B,)`` (in the chapter: the reward model's
normalised score) and pi_ref the frozen SFT model (Ziegler et al. 2019, "Fine-tuning language models from human
preferences", Section 2.2; Stiennon et al. 2020, Section 3.4; Ouyang et al. 2022, eq. 2). Two algorithms:

* :func:`train_ppo_rlhf` -- PPO as in TRL's ``PPOTrainer``: every completion token is an action, the reward of
  token t is -kl_coef (ln pi_theta - ln pi_ref) with the score added at the last token
  (:func:`solutions.rlhf.per_token_rewards`), a value network V_w reads every prefix (:class:`ValueModel`), GAE
  over the tokens (:func:`solutions.ppo.gae`, gamma = 1, lam = 0.95), then ``num_ppo_epochs`` epochs of
  :func:`solutions.ppo.ppo_clip_loss` + ``vf_coef`` x :func:`solutions.ppo.clipped_value_loss`;
* :func:`train_grpo_rlhf` -- Chapter 5's :func:`solutions.grpo_language_model.train_grpo`, unchanged, with the
  reward model's score as its reward and ``beta`` on the k3 estimate of the KL in the loss (no value network, the
  group's mean reward as the baseline).

Both record, at every update and on the completions that update sampled, the learned reward, the hidden "human"
preference (when a ``hidden_fn`` is given) and the KL to the reference, summed over each completion's tokens
(:func:`solutions.rlhf.sequence_kl`): the three curves of over-optimisation (Gao et al. 2023, "Scaling laws for
reward model overoptimization"), which :func:`rlhf_runs` collects over configurations and seeds, in parallel
processes if asked, and :func:`overoptimisation_sweep` runs for a range of ``beta``.

What it does (``benchmarks/rlhf_pipeline.py``; the SFT model and the reward model of
:mod:`solutions.reward_model`; the reward model scores completions as sampled, :class:`RewardModelScore`; win
rates against the SFT model by the hidden preference, with the benchmark's protocol, 1,000 head-to-head
comparisons, pipeline seeds 0-2 each with its own SFT and reward model, and with 500 comparisons on seed 0's
models for RL seeds 0-4):

* PPO (:class:`PPORLHFConfig`'s defaults: 30 updates of 64 completions, 4 epochs x 2 minibatches, Adam 5e-4,
  ``kl_coef`` 0.1; 9-11 s of CPU) raises the reward model's score of its samples from about 0.4 to 1.4 and wins
  0.78-0.83 (0.80-0.87) at a KL to the SFT model of 2.5-3.8 nats per completion;
* GRPO as the issue asks (:func:`chapter_grpo_config`: 40 updates of 8 prompts x 8 completions, ``beta`` 0.3 on
  the k3 term in the loss, ``scale_rewards`` "none", Adam 2e-3; 3-5 s of CPU) wins only 0.72-0.74 (0.76-0.79)
  at a KL of 0.8-1.2 nats: it stays close to the SFT model, and a smaller ``beta`` lets some seeds over-optimise;
  with PPO's KL penalty in the reward instead (``chapter_grpo_config(beta=0.0, kl_coef=0.1)``,
  :class:`GRPORLHFConfig`) the same GRPO wins 0.82-0.84 (with seed 0's models, RL seeds 0-4 and 1,000
  comparisons: 0.84 for each) at a KL of about 3;
* over-optimisation (:func:`overoptimisation_sweep`, that GRPO at ``beta`` 0, 0.1, 0.3, seeds 0-4): without the
  penalty every seed's learned reward rises throughout (from 0.6-0.9 over the first 10 updates to 1.5-1.6 over
  the last 10) while its hidden score falls to -4.5 to -6.0, far below the SFT model's 0.40 -- malformed,
  repetitive text (``excellent was perfect excellent was fresh .``, strings of praise cut at the length limit)
  at a KL of 16-79 nats; at 0.1 three of five seeds end below the SFT model's hidden score (KL 5-11); at 0.3
  both rise for every seed (learned 0.8-1.0, hidden 1.0-1.2, KL 0.8-1.4). Binned by sqrt(KL)
  (:func:`sqrt_kl_bins`, every update of every seed), the hidden score is highest below sqrt(KL) = 1.5 and
  falls past 2 (to about -4.9 beyond 5) while the learned reward keeps rising: Gao et al.'s picture.

Names follow TRL (``kl_coef``, ``cliprange``, ``cliprange_value``, ``vf_coef``, ``num_ppo_epochs``,
``num_mini_batches``, ``response_length``, ``gamma``, ``lam``, ``beta``, ``num_generations``) and Sutton & Barto
(theta the policy's parameters, w the value function's).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .corpus import encode
from .grpo_language_model import GRPOConfig, GRPOResult, train_grpo
from .language_model import TinyLM, completion_batch, create_reference_model, sample, token_log_probs
from .ppo import clipped_value_loss, gae, importance_ratio, ppo_clip_loss
from .progress import show_progress
from .rlhf import per_token_rewards, sequence_kl
from .threads import single_threaded

__all__ = [
    "CHAPTER_BETAS",
    "CURVES",
    "GRPORLHFConfig",
    "PPORLHFConfig",
    "RLHFResult",
    "RewardModelScore",
    "ValueModel",
    "as_sampled",
    "chapter_grpo_config",
    "overoptimisation_sweep",
    "rlhf_runs",
    "score_samples",
    "sqrt_kl_bins",
    "token_advantages",
    "train_grpo_rlhf",
    "train_ppo_rlhf",
]

RewardFunction = Callable[[list[str], list[str]], "torch.Tensor | Sequence[float]"]

#: The per-update curves every :class:`RLHFResult` has (one float per update), stacked over seeds by
#: :func:`rlhf_runs`.
CURVES = ("learned_rewards", "hidden_scores", "kls", "completion_lengths")


def _rewards_of(reward_fn: RewardFunction, prompts: list[str], completions: list[str], name: str) -> torch.Tensor:
    """``reward_fn``'s rewards as float32 ``(B,)``; ValueError unless there is one finite reward per completion."""
    rewards = torch.as_tensor(reward_fn(prompts, completions), dtype=torch.float32)
    if rewards.shape != (len(completions),) or not torch.isfinite(rewards).all():
        raise ValueError(f"{name} must return {len(completions)} finite rewards; got shape {tuple(rewards.shape)}")
    return rewards


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """The mean of ``values`` where ``mask`` is True."""
    return float((values * mask).sum() / mask.sum())


class RewardModelScore:
    """The reward model's score of completions as they were sampled, as a reward function of texts
    (``reward_fn(prompt_texts, completion_texts) -> (B,)``, TRL's form, what the trainers call).

    A text does not say whether its completion ended with ``<eos>`` or was cut by the length limit, and a reward
    model scores the two differently: it reads its score at the last real token, the ``<eos>`` of a finished
    completion, the last word of a cut one (:class:`solutions.reward_model.RewardModel`). Scoring every text as
    finished would hand a policy a reward for cut completions that the reward model never gives them: at
    ``beta = 0`` GRPO learns to write runs of words cut at the limit, scored as if they had ended. So the token
    ids are rebuilt as sampled: every word is one token, and a completion of ``max_completion_length`` words had
    no room for ``<eos>`` (it was cut); any shorter one ended with it.

    Args:
        reward_model: a module with ``score(prompts, completions) -> (B,)`` accepting token-id lists as
            completions (:class:`solutions.reward_model.RewardModel`).
        max_completion_length: the sampler's limit, ``<eos>`` included (the trainers check that it is theirs).
    """

    def __init__(self, reward_model: nn.Module, max_completion_length: int):
        if isinstance(max_completion_length, bool) or not isinstance(max_completion_length, int) \
                or max_completion_length < 1:
            raise ValueError(f"max_completion_length must be an integer >= 1; got {max_completion_length!r}")
        self.reward_model = reward_model
        self.max_completion_length = max_completion_length

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """Float32 ``(B,)``: the reward model's score of each completion's tokens as sampled."""
        return self.reward_model.score(list(prompts), as_sampled(completions, self.max_completion_length))


def as_sampled(completions: Sequence[str], max_completion_length: int) -> list[list[int]]:
    """The token ids of completion texts as the sampler wrote them: ``<eos>`` at the end of every completion
    shorter than ``max_completion_length`` words, none after a completion cut at the limit (each word is one
    token of :data:`solutions.corpus.VOCAB`).

    Raises:
        ValueError: for a word outside the vocabulary or a completion longer than the limit.
    """
    ids = []
    for text in completions:
        n_words = len(text.split())
        if n_words > max_completion_length:
            raise ValueError(f"a completion of {n_words} words is longer than max_completion_length = "
                             f"{max_completion_length}: {text!r}")
        ids.append(encode(text, bos=False, eos=n_words < max_completion_length))
    return ids


def _check_reward_length(reward_fn: RewardFunction, length: int) -> None:
    if isinstance(reward_fn, RewardModelScore) and reward_fn.max_completion_length != length:
        raise ValueError(f"the reward function rebuilds completions of at most {reward_fn.max_completion_length} "
                         f"tokens but the sampler writes up to {length}")


# ------------------------------------------------------------------------------------------------ configuration


@dataclass
class PPORLHFConfig:
    """Hyper-parameters of :func:`train_ppo_rlhf`, with the names of TRL's ``PPOConfig``.

    TRL's defaults are kept where they carry over (``cliprange`` 0.2, ``cliprange_value`` 0.2, ``vf_coef`` 0.1,
    ``gamma`` 1, ``lam`` 0.95, ``num_ppo_epochs`` 4); the sizes and the step size are the tiny model's (TRL's
    learning rate 3e-6 and ``kl_coef`` 0.05 are for models of 10^8-10^9 parameters and scores of their own
    scale).

    Raises:
        ValueError: (on construction) for a count that is not a positive integer, ``num_mini_batches`` not
            dividing ``batch_size``, a negative or non-finite ``kl_coef``, ``cliprange`` outside (0, 1), a
            ``cliprange_value``, ``learning_rate`` or ``temperature`` that is not positive, ``vf_coef`` < 0,
            ``gamma`` or ``lam`` outside [0, 1], or ``max_grad_norm`` neither None nor positive.
    """

    batch_size: int = 64  #: completions sampled per update, one per prompt drawn (prompts drawn with replacement)
    num_mini_batches: int = 2  #: each epoch splits the batch into this many minibatches, one Adam step each
    num_ppo_epochs: int = 4  #: passes over each batch
    n_updates: int = 30  #: updates, each on a freshly sampled batch
    learning_rate: float = 5e-4  #: Adam's step size, for the policy and the value network
    kl_coef: float = 0.1  #: beta, the weight of the per-token KL penalty in the reward
    cliprange: float = 0.2  #: epsilon of the clipped surrogate
    cliprange_value: float = 0.2  #: how far a value may move from the old one in the clipped value loss
    vf_coef: float = 0.1  #: weight of the value loss
    gamma: float = 1.0  #: discount over the tokens of a completion
    lam: float = 0.95  #: GAE's lambda
    max_grad_norm: float | None = 1.0  #: clip the joint gradient norm (TRL's TrainingArguments default); None: no
    response_length: int = 10  #: the most tokens sampled per completion, <eos> included
    temperature: float = 1.0  #: sampling temperature (the log-probabilities use the same, as TRL does)

    def __post_init__(self):
        for name in ("batch_size", "num_mini_batches", "num_ppo_epochs", "n_updates", "response_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if self.batch_size % self.num_mini_batches:
            raise ValueError(f"num_mini_batches ({self.num_mini_batches}) must divide batch_size "
                             f"({self.batch_size})")
        checks = {"kl_coef": lambda v: 0 <= v < math.inf, "cliprange": lambda v: 0 < v < 1,
                  "cliprange_value": lambda v: 0 < v < math.inf, "vf_coef": lambda v: 0 <= v < math.inf,
                  "gamma": lambda v: 0 <= v <= 1, "lam": lambda v: 0 <= v <= 1,
                  "learning_rate": lambda v: 0 < v < math.inf, "temperature": lambda v: 0 < v < math.inf}
        for name, ok in checks.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
                raise ValueError(f"{name} is out of range: {value!r}")
        if self.max_grad_norm is not None and (isinstance(self.max_grad_norm, bool)
                                               or not isinstance(self.max_grad_norm, int | float)
                                               or not 0 < self.max_grad_norm < math.inf):
            raise ValueError(f"max_grad_norm must be None or a positive number; got {self.max_grad_norm!r}")

    @property
    def mini_batch_size(self) -> int:
        """Completions per gradient step: ``batch_size // num_mini_batches``."""
        return self.batch_size // self.num_mini_batches


@dataclass
class GRPORLHFConfig(GRPOConfig):
    """:class:`~solutions.grpo_language_model.GRPOConfig` (Chapter 5) with one more field for RLHF: ``kl_coef``, a
    KL penalty in the *reward*, as PPO has it (:class:`PPORLHFConfig`), besides ``beta``'s k3 term in the loss.

    With ``kl_coef`` > 0 the reward of a completion y is r(x, y) - kl_coef (ln pi_theta(y | x) - ln pi_ref(y | x)),
    the k1 estimate of its KL summed over its tokens (:func:`solutions.rlhf.sequence_kl`) -- the sum over the
    tokens of :func:`solutions.rlhf.per_token_rewards`, which is all GRPO's one-advantage-per-completion can use
    -- and the group advantages are computed from it. GRPO as DeepSeekMath and TRL write it (``kl_coef`` 0, the
    default) puts the KL in the loss only.

    Why offer both: the k3 term's derivative with respect to ln pi_theta at a token is beta (1 - pi_ref /
    pi_theta) (:func:`solutions.grpo.kl_k3`; on the policy's own samples its expected gradient is that of the
    forward KL(pi_ref || pi_theta), which barely charges for probability where pi_ref has almost none), at most
    beta however unlikely the token is under the reference, while the
    penalty in the reward charges -kl_coef ln(pi_theta / pi_ref), without bound, for tokens the reference finds
    unlikely -- the ones of malformed text. Measured against the chapter's reward model (seeds 0-4, 40 updates,
    :func:`chapter_grpo_config` otherwise; win rate against the SFT model by the hidden preference, 1,000
    comparisons, evaluation seed 7): ``beta`` 0.3 alone: 0.69-0.73 at a KL of 0.8-1.4 nats (``beta`` 0.2: one
    seed of five over-optimised); ``kl_coef`` 0.1 alone: 0.84 for every seed at a KL of about 3; both (0.1 and
    0.05): 0.80-0.82.

    Raises:
        ValueError: (on construction) as :class:`~solutions.grpo_language_model.GRPOConfig`, or for a negative
            or non-finite ``kl_coef``.
    """

    kl_coef: float = 0.0  #: KL penalty in the reward (k1, per completion); 0: GRPO's own form, the KL in the loss

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.kl_coef, bool) or not isinstance(self.kl_coef, int | float) \
                or not 0 <= self.kl_coef < math.inf:
            raise ValueError(f"kl_coef must be a finite number >= 0; got {self.kl_coef!r}")


#: The KL coefficients of the chapter's over-optimisation sweep: none, a small one, the chapter's GRPO value.
CHAPTER_BETAS = (0.0, 0.1, 0.3)


def chapter_grpo_config(**changes) -> GRPORLHFConfig:
    """The chapter's GRPO configuration against the reward model: Chapter 5's
    :class:`~solutions.grpo_language_model.GRPOConfig` (8 prompts x ``num_generations`` 8 per update, one
    gradient step per batch, ``loss_type`` "grpo") with ``beta = 0.3``, ``scale_rewards = "none"``, Adam at
    2e-3, 40 updates and completions of at most 10 tokens (a two-clause review is 7 words, ``.`` and ``<eos>``).
    A new object each call; ``changes`` replace fields (e.g. ``beta=0.0``).

    Why ``scale_rewards = "none"`` (Liu et al. 2025, Dr. GRPO) and not Chapter 5's "group": dividing by a
    group's standard deviation turns the smallest differences of the reward model's scores among near-identical
    completions into advantages of +-1, so the policy chases exactly the differences a learned reward cannot be
    trusted on; without it the advantages are in the reward model's units (its scores have standard deviation 1
    on SFT samples) and shrink when a group's completions score alike, and ``beta`` weighs the KL against score
    differences, as ``kl_coef`` does in PPO. Measured against the chapter's reward model (seeds 0-4, win rate
    against the SFT model by the hidden preference, 500 comparisons, evaluation seed 0): "group" at Adam 1e-3, 40
    updates, ``beta`` 0.3: 0.18-0.81, three seeds below 0.75 (at 0.5: 0.75-0.80 after 40 updates, but one seed
    fell to 0.33 after 60; at 1: 0.67-0.70, too close to the SFT model); "none" at 2e-3, ``beta`` 0.3: 0.76-0.79
    for every seed, while at 0.1 three of five end below the SFT model's hidden score and at 0 all five.

    That is not far above the issue's 0.75: with 1,000 comparisons and evaluation seed 7 (the protocol of
    ``benchmarks/rlhf_pipeline.py``) the same policies score 0.69-0.73. Nothing tried with the KL in the loss alone
    did better without some seed over-optimising (60 updates; two gradient steps per batch; 16 prompts per update;
    16 completions per prompt; ``loss_type`` "dr_grpo"; ``beta`` 0.2-0.25): the k3 term's gradient is bounded
    (:class:`GRPORLHFConfig`). The same GRPO with PPO's KL penalty in the reward instead,
    ``chapter_grpo_config(beta=0.0, kl_coef=0.1)``, wins 0.84 for every seed.

    Raises:
        ValueError: as :class:`~solutions.grpo_language_model.GRPOConfig`, for a bad or unknown field.
    """
    return dataclasses.replace(GRPORLHFConfig(beta=0.3, scale_rewards="none", learning_rate=2e-3, n_updates=40,
                                              max_completion_length=10), **changes)


@dataclass
class RLHFResult:
    """What :func:`train_ppo_rlhf` and :func:`train_grpo_rlhf` return: the trained policy and one number per update
    for each curve, measured on the completions that update sampled (before its gradient steps)."""

    model: TinyLM  #: the policy, trained in place
    config: PPORLHFConfig | GRPOConfig
    seed: int
    learned_rewards: list[float] = field(default_factory=list)  #: mean reward_fn score (the reward model's)
    hidden_scores: list[float] = field(default_factory=list)  #: mean hidden_fn score (NaN without hidden_fn)
    kls: list[float] = field(default_factory=list)  #: mean KL(pi_theta || pi_ref), nats per completion (k1 sum)
    completion_lengths: list[float] = field(default_factory=list)  #: mean tokens per completion, <eos> included
    #: algorithm-specific curves, one float per update. PPO: ``policy_loss``, ``value_loss`` (means over the
    #: update's gradient steps), ``clip_fraction`` (share of tokens with |rho - 1| > cliprange), ``approx_kl``
    #: (mean k3 of KL(pi_old || pi_theta) per token), ``kl_penalty`` (mean of -kl_coef x the k1 sum, the part of
    #: the return that the penalty contributes). GRPO: the curves of
    #: :class:`~solutions.grpo_language_model.GRPOResult` (its ``mean_rewards`` are the rewards GRPO trained on:
    #: with ``kl_coef`` > 0, the learned reward minus the penalty).
    diagnostics: dict[str, list[float]] = field(default_factory=dict)
    samples_before: list[str] = field(default_factory=list)  #: texts sampled before training
    samples_after: list[str] = field(default_factory=list)  #: texts sampled after, same prompts and seed
    cpu_seconds: float = 0.0  #: CPU time of the training in this process


# ------------------------------------------------------------------------------------------------ PPO


class ValueModel(nn.Module):
    """The value function V_w of PPO for language: a copy of a :class:`~solutions.language_model.TinyLM` whose
    output head (one logit per word) is replaced by a scalar head.

    Its output is aligned with :func:`~solutions.language_model.token_log_probs`: ``values[:, t]`` is V_w of the
    state in which token t is chosen (the tokens before t), the scalar head read at position t - 1; column 0 is 0
    (no state chooses the first token). A separate network, not a head on the policy: TRL's ``PPOTrainer`` keeps
    a separate value model (InstructGPT initialises it from the reward model), so the value loss never moves the
    policy's weights and ``vf_coef`` only scales the value function's step; the price is one more forward and
    backward pass of a small network per minibatch. The scalar head starts at 0 (weights and bias): V_w = 0
    everywhere, the mean of the normalised reward-model scores on SFT samples.

    Args:
        model: the network to copy (the SFT model); it is not changed.
    """

    def __init__(self, model: TinyLM):
        super().__init__()
        self.network = copy.deepcopy(model).train(model.training)
        self.network.requires_grad_(True)
        self.network.head = nn.Linear(model.config.d_model, 1)  # the scalar head in place of the vocabulary head
        nn.init.zeros_(self.network.head.weight)
        nn.init.zeros_(self.network.head.bias)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Float32 ``(B, L)``: ``values[:, t]`` = V_w(tokens before t), 0 in column 0 (meaningless on padding).
        Arguments and errors as :meth:`TinyLM.forward`."""
        head, _ = self.network(tokens, attention_mask)  # (B, L, 1): the head at every position
        return torch.cat([torch.zeros_like(head[:, :1, 0]), head[:, :-1, 0]], dim=1)


def token_advantages(rewards: torch.Tensor, values: torch.Tensor, completion_mask: torch.Tensor, gamma: float,
                     lam: float) -> torch.Tensor:
    """GAE over the tokens of each completion (Schulman et al. 2016, eq. 16, by :func:`solutions.ppo.gae`).

    A completion is an episode whose time steps are its tokens: at step t the state S_t is the prompt and the
    tokens before t, the action is token t, the reward ``rewards[:, t]``, and S_{t+1} the state that chooses the
    next token, so V(S_t) = ``values[:, t]`` and V(S_{t+1}) = ``values[:, t + 1]``. The episode ends at the
    completion's last token (``<eos>``, or the length limit: the reward model has scored it and nothing follows),
    so that step is terminal. Prompt and padding columns are outside the episode: terminal, reward 0, value 0,
    advantage 0, nothing carried back over them.

    Args:
        rewards: float ``(B, L)``, from :func:`solutions.rlhf.per_token_rewards` (0 outside the completions).
        values: float ``(B, L)``, V_w(S_t) in column t (:class:`ValueModel`).
        completion_mask: bool ``(B, L)``, True on the completion tokens (contiguous in each row).
        gamma, lam: discount and GAE's lambda, in [0, 1].

    Returns:
        Float32 ``(B, L)``: A_t on the completion tokens, 0 elsewhere.

    Raises:
        ValueError: for mismatched shapes or a mask that is not bool, and as :func:`solutions.ppo.gae`.
    """
    if rewards.ndim != 2 or values.shape != rewards.shape or completion_mask.shape != rewards.shape:
        raise ValueError(f"rewards, values and completion_mask must have one shape (B, L); got "
                         f"{tuple(rewards.shape)}, {tuple(values.shape)}, {tuple(completion_mask.shape)}")
    if completion_mask.dtype != torch.bool:
        raise ValueError(f"completion_mask must be bool; got {completion_mask.dtype}")
    following = torch.cat([completion_mask[:, 1:], torch.zeros_like(completion_mask[:, :1])], dim=1)
    last = completion_mask & ~following  # the completion's last token: its episode ends there
    next_values = torch.cat([values[:, 1:], torch.zeros_like(values[:, :1])], dim=1)
    # gae wants time first, (L, B), in float64
    advantages = gae(rewards.T.double().numpy(), torch.where(completion_mask, values, 0.0).T.double().numpy(),
                     next_values.T.double().numpy(), (last | ~completion_mask).T.numpy(),
                     np.zeros(rewards.shape[::-1], dtype=bool), gamma, lam)
    return torch.as_tensor(advantages.T, dtype=torch.float32) * completion_mask


def _check_common(policy: TinyLM, prompts: Sequence[str], seed: int, n_shown: int) -> None:
    if not isinstance(policy, TinyLM):
        raise ValueError(f"policy must be a TinyLM; got {type(policy).__name__}")
    if not len(prompts):
        raise ValueError("no prompts")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    if isinstance(n_shown, bool) or not isinstance(n_shown, int) or n_shown < 0:
        raise ValueError(f"n_shown must be an integer >= 0; got {n_shown!r}")


@single_threaded()
def train_ppo_rlhf(policy: TinyLM, prompts: Sequence[str], reward_fn: RewardFunction,
                   config: PPORLHFConfig | None = None, seed: int = 0, *, hidden_fn: RewardFunction | None = None,
                   reference: TinyLM | None = None, progress: bool | None = None, n_shown: int = 8) -> RLHFResult:
    """Train a language model with PPO against a reward function and a per-token KL penalty (Ziegler et al. 2019,
    Section 2.2; Stiennon et al. 2020; Ouyang et al. 2022, Section 3.5 "Reinforcement learning"; TRL's
    ``PPOTrainer``).

    Each of ``config.n_updates`` updates:

    1. draw ``batch_size`` prompts uniformly (with replacement) and sample one completion of each from pi_theta
       (:func:`~solutions.language_model.sample`, at most ``response_length`` tokens);
    2. score them: ``scores = reward_fn(prompts, completions)``;
    3. without gradient: ln pi_theta_old and ln pi_ref of every token (:func:`~solutions.language_model.
       token_log_probs`) and V_w_old at every position (:class:`ValueModel`);
    4. per-token rewards r_t = -kl_coef (ln pi_theta_old - ln pi_ref), plus the score at the last token
       (:func:`solutions.rlhf.per_token_rewards`); GAE over the tokens (:func:`token_advantages`, gamma, lam);
       value targets G_t = A_t + V_w_old; the advantages whitened over the batch's completion tokens (as TRL);
    5. ``num_ppo_epochs`` epochs, each over ``num_mini_batches`` minibatches of the completions in a fresh random
       order: one Adam step (gradient norm clipped to ``max_grad_norm``) on
       ``ppo_clip_loss + vf_coef * clipped_value_loss`` over the minibatch's completion tokens (each token a
       sample: :func:`solutions.ppo.ppo_clip_loss` and :func:`~solutions.ppo.clipped_value_loss` averaged over
       tokens, TRL's masked mean).

    The reference pi_ref is a frozen copy of ``policy`` as it is when called (the SFT model), unless given.
    One Adam optimiser holds the parameters of the policy and of the value network (TRL wraps the two in one
    module). Without ``hidden_fn`` the hidden scores are NaN.

    Args:
        policy: the policy (the SFT model), trained in place.
        prompts: texts (e.g. :func:`solutions.corpus.review_prompts`).
        reward_fn: ``reward_fn(prompt_texts, completion_texts)`` -> B rewards (e.g. the reward model's score).
        config: :class:`PPORLHFConfig` (default: its defaults).
        seed: seeds the prompts drawn, the samples and the minibatch order (torch generators); the value head
            starts at 0, so the same policy, config and seed give the same run.
        hidden_fn: another reward function, only measured (e.g. the hidden "human" preference), never trained on.
        reference: pi_ref; default a frozen copy of ``policy`` before training.
        progress: show a tqdm progress bar (default: :func:`~solutions.progress.show_progress`).
        n_shown: number of samples kept before and after (0: none).

    Returns:
        :class:`RLHFResult`, with one value per update in each curve.

    Raises:
        ValueError: for a config that is not a :class:`PPORLHFConfig`, no prompts, a negative seed or ``n_shown``,
            a reward function that does not return one finite reward per completion, and as
            :func:`~solutions.language_model.sample`.
    """
    config = config or PPORLHFConfig()
    if not isinstance(config, PPORLHFConfig):
        raise ValueError(f"config must be a PPORLHFConfig; got {type(config).__name__}")
    _check_common(policy, prompts, seed, n_shown)
    _check_reward_length(reward_fn, config.response_length)
    cpu_start = time.process_time()
    shown = [prompts[i % len(prompts)] for i in range(n_shown)]

    def show() -> list[str]:
        if not shown:
            return []
        return sample(policy, shown, config.response_length, temperature=config.temperature,
                      generator=torch.Generator().manual_seed(seed + 1)).texts()

    policy.eval()  # no dropout: the policy that samples is the policy that is trained
    result = RLHFResult(policy, config, int(seed), samples_before=show())
    reference = create_reference_model(policy) if reference is None else reference
    value_model = ValueModel(policy).eval()
    parameters = [*policy.parameters(), *value_model.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate, foreach=True)
    generator = torch.Generator().manual_seed(seed)
    diagnostics = {name: [] for name in ("policy_loss", "value_loss", "clip_fraction", "approx_kl", "kl_penalty")}
    for _ in tqdm(range(config.n_updates), desc="PPO (RLHF)", disable=not show_progress(progress),
                  mininterval=1.0):
        # 1-2. a batch of completions from pi_theta_old, scored by the reward function
        picked = torch.randint(len(prompts), (config.batch_size,), generator=generator)
        batch = sample(policy, [prompts[i] for i in picked], config.response_length,
                       temperature=config.temperature, generator=generator)
        tokens, attention_mask, mask = batch.tokens, batch.attention_mask, batch.completion_mask
        prompt_texts, completion_texts = batch.prompt_texts(), batch.completion_texts()
        scores = _rewards_of(reward_fn, prompt_texts, completion_texts, "reward_fn")

        # 3. the old policy's and the reference's log-probabilities, the old values: constants
        with torch.no_grad():
            old_log_probs = token_log_probs(policy, tokens, attention_mask, config.temperature)
            ref_log_probs = token_log_probs(reference, tokens, attention_mask, config.temperature)
            old_values = value_model(tokens, attention_mask)  # column t: V_w_old(S_t)

        # 4. per-token rewards, GAE, value targets, whitened advantages
        rewards = per_token_rewards(scores, old_log_probs, ref_log_probs, mask, config.kl_coef)
        advantages = token_advantages(rewards, old_values, mask, config.gamma, config.lam)
        returns = advantages + old_values  # G_t = A_t + V_w_old(S_t)
        mean, std = advantages[mask].mean(), advantages[mask].std()
        whitened = (advantages - mean) / (std + 1e-8)

        # 5. num_ppo_epochs epochs of minibatch steps
        sums = dict.fromkeys(("policy_loss", "value_loss", "clip_fraction", "approx_kl"), 0.0)
        n_steps = 0
        for _ in range(config.num_ppo_epochs):
            order = torch.randperm(config.batch_size, generator=generator)
            for start in range(0, config.batch_size, config.mini_batch_size):
                rows = order[start:start + config.mini_batch_size]
                m = mask[rows]
                log_probs = token_log_probs(policy, tokens[rows], attention_mask[rows], config.temperature)
                values = value_model(tokens[rows], attention_mask[rows])
                policy_loss = ppo_clip_loss(log_probs[m], old_log_probs[rows][m], whitened[rows][m],
                                            config.cliprange)
                value_loss = clipped_value_loss(values[m], old_values[rows][m], returns[rows][m],
                                                config.cliprange_value)
                loss = policy_loss + config.vf_coef * value_loss
                optimizer.zero_grad()
                loss.backward()
                if config.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
                optimizer.step()
                with torch.no_grad():
                    ratio = importance_ratio(log_probs[m], old_log_probs[rows][m])
                    sums["clip_fraction"] += float(((ratio - 1).abs() > config.cliprange).float().mean())
                    sums["approx_kl"] += float(((ratio - 1) - torch.log(ratio)).mean())
                sums["policy_loss"] += float(policy_loss.detach())
                sums["value_loss"] += float(value_loss.detach())
                n_steps += 1

        # what the book plots, on this update's samples
        kl = sequence_kl(old_log_probs, ref_log_probs, mask)
        result.learned_rewards.append(scores.mean().item())
        hidden = math.nan if hidden_fn is None else \
            _rewards_of(hidden_fn, prompt_texts, completion_texts, "hidden_fn").mean().item()
        result.hidden_scores.append(hidden)
        result.kls.append(kl.mean().item())
        result.completion_lengths.append(mask.sum(dim=1).float().mean().item())
        for name, total in sums.items():
            diagnostics[name].append(total / n_steps)
        diagnostics["kl_penalty"].append(-config.kl_coef * kl.mean().item())
    policy.eval()
    result.diagnostics = diagnostics
    result.samples_after = show()
    result.cpu_seconds = time.process_time() - cpu_start
    return result


# ------------------------------------------------------------------------------------------------ GRPO


class _MeasuredReward:
    """A reward function that returns ``reward_fn``'s rewards minus ``kl_coef`` times each completion's KL to the
    reference, and, as a side effect, records for each call (one per GRPO update, on the completions that update
    sampled) the mean ``reward_fn`` reward, the mean ``hidden_fn`` score and the mean KL(policy || reference) per
    completion (k1 summed over tokens, :func:`solutions.rlhf.sequence_kl`).

    The reward function sees texts only; the completions' tokens are rebuilt from them: a completion of
    ``max_completion_length`` words was cut by the length limit (it has no ``<eos>``), any shorter one ended with
    ``<eos>``. The policy is the one that sampled: the call comes before the update's gradient step.
    """

    def __init__(self, reward_fn: RewardFunction, hidden_fn: RewardFunction | None, policy: TinyLM,
                 reference: TinyLM, max_completion_length: int, temperature: float, kl_coef: float = 0.0):
        self.reward_fn, self.hidden_fn, self.kl_coef = reward_fn, hidden_fn, kl_coef
        self.policy, self.reference = policy, reference
        self.max_completion_length, self.temperature = max_completion_length, temperature
        self.learned_rewards, self.hidden_scores, self.kls = [], [], []

    @torch.no_grad()
    def __call__(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        rewards = _rewards_of(self.reward_fn, prompts, completions, "reward_fn")
        self.learned_rewards.append(rewards.mean().item())
        self.hidden_scores.append(math.nan if self.hidden_fn is None else
                                  _rewards_of(self.hidden_fn, prompts, completions, "hidden_fn").mean().item())
        tokens, attention_mask, mask = completion_batch(prompts, as_sampled(completions,
                                                                             self.max_completion_length))
        log_probs = token_log_probs(self.policy, tokens, attention_mask, self.temperature)
        ref_log_probs = token_log_probs(self.reference, tokens, attention_mask, self.temperature)
        kl = sequence_kl(log_probs, ref_log_probs, mask)  # (B,): ln pi_theta(y) - ln pi_ref(y)
        self.kls.append(kl.mean().item())
        return rewards - self.kl_coef * kl if self.kl_coef else rewards


def train_grpo_rlhf(policy: TinyLM, prompts: Sequence[str], reward_fn: RewardFunction,
                    config: GRPOConfig | None = None, seed: int = 0, *, hidden_fn: RewardFunction | None = None,
                    progress: bool | None = None, n_shown: int = 8) -> RLHFResult:
    """Train a language model with GRPO against a reward function: Chapter 5's
    :func:`~solutions.grpo_language_model.train_grpo`, unchanged, with ``reward_fn`` (the reward model's score) as
    its reward and ``config.beta`` times the k3 estimate of KL(pi_theta || pi_ref) in its loss (Shao et al. 2024,
    eq. 3-4). GRPO puts the KL in the loss, not in the reward as PPO does: the group-normalised advantage is the
    score's alone -- unless ``config`` is a :class:`GRPORLHFConfig` with ``kl_coef`` > 0, which subtracts
    ``kl_coef`` times each completion's log-ratio ln pi_theta(y) - ln pi_ref(y) from its reward (PPO's penalty).

    The reward function is wrapped so that each update also records, on the completions it sampled, the hidden
    score and the KL to the SFT model per completion (k1 summed over tokens, as for PPO), which ``train_grpo``
    does not measure; ``train_grpo``'s own per-update curves are in ``diagnostics``. Its reference model is a
    frozen copy of ``policy`` as it is when called, the same as the one measured here.

    Args:
        policy: the policy (the SFT model), trained in place.
        prompts: texts.
        reward_fn: ``reward_fn(prompt_texts, completion_texts)`` -> B rewards.
        config: :class:`~solutions.grpo_language_model.GRPOConfig` (default: its defaults).
        seed: as :func:`~solutions.grpo_language_model.train_grpo`.
        hidden_fn: another reward function, only measured (e.g. the hidden "human" preference).
        progress: show a tqdm progress bar (default: :func:`~solutions.progress.show_progress`).
        n_shown: number of samples kept before and after (0: none).

    Returns:
        :class:`RLHFResult`; ``diagnostics`` holds the curves of
        :class:`~solutions.grpo_language_model.GRPOResult` (``mean_rewards``, ``kls`` -- there the mean k3 per
        token --, ``zero_variance_fractions``, ...).

    Raises:
        ValueError: for a config that is not a ``GRPOConfig``, and as :func:`train_grpo`.
    """
    config = config or GRPOConfig()
    if not isinstance(config, GRPOConfig):
        raise ValueError(f"config must be a GRPOConfig; got {type(config).__name__}")
    _check_common(policy, prompts, seed, n_shown)
    _check_reward_length(reward_fn, config.max_completion_length)
    cpu_start = time.process_time()
    measured = _MeasuredReward(reward_fn, hidden_fn, policy, create_reference_model(policy),
                               config.max_completion_length, config.temperature, getattr(config, "kl_coef", 0.0))
    grpo: GRPOResult = train_grpo(policy, prompts, measured, config, int(seed), progress=progress, n_shown=n_shown)
    lengths = grpo.completion_lengths
    curves = ("mean_rewards", "zero_variance_fractions", "losses", "kls", "completion_lengths", "clip_fractions")
    return RLHFResult(policy, config, int(seed), learned_rewards=measured.learned_rewards,
                      hidden_scores=measured.hidden_scores, kls=measured.kls, completion_lengths=list(lengths),
                      diagnostics={name: list(getattr(grpo, name)) for name in curves},
                      samples_before=grpo.samples_before, samples_after=grpo.samples_after,
                      cpu_seconds=time.process_time() - cpu_start)


# ------------------------------------------------------------------------------------------------ evaluation


@single_threaded()
@torch.no_grad()
def score_samples(policy: TinyLM, prompts: Sequence[str], reward_fn: RewardFunction, *,
                    hidden_fn: RewardFunction | None = None, reference: TinyLM | None = None,
                    num_generations: int = 16, max_new_tokens: int = 10, temperature: float = 1.0,
                    seed: int = 0) -> dict[str, float]:
    """The mean learned reward, hidden score and KL to a reference of a policy's samples.

    ``num_generations`` completions of every prompt are sampled (:func:`~solutions.language_model.sample`,
    generator seeded with ``seed``: the same seed gives every policy the same random numbers).

    Args:
        policy: the policy.
        prompts: texts.
        reward_fn: the learned reward, ``reward_fn(prompt_texts, completion_texts)`` -> B rewards.
        hidden_fn: the hidden score (None: NaN).
        reference: pi_ref for the KL (None: NaN); the KL is k1 summed over each completion's tokens
            (:func:`solutions.rlhf.sequence_kl`), nats per completion, averaged over the completions.
        num_generations, max_new_tokens, temperature: as :func:`~solutions.language_model.sample`
            (temperature > 0).
        seed: seeds the sampling.

    Returns:
        ``{"learned_reward", "hidden_score", "kl", "completion_length"}``, Python floats.

    Raises:
        ValueError: as :func:`~solutions.language_model.sample`, or for a reward function that does not return one
            finite reward per completion.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    _check_reward_length(reward_fn, max_new_tokens)
    batch = sample(policy, list(prompts), max_new_tokens, temperature=temperature, num_generations=num_generations,
                   generator=torch.Generator().manual_seed(seed))
    prompt_texts, completion_texts = batch.prompt_texts(), batch.completion_texts()
    out = {"learned_reward": _rewards_of(reward_fn, prompt_texts, completion_texts, "reward_fn").mean().item(),
           "hidden_score": math.nan, "kl": math.nan,
           "completion_length": batch.completion_mask.sum(dim=1).float().mean().item()}
    if hidden_fn is not None:
        out["hidden_score"] = _rewards_of(hidden_fn, prompt_texts, completion_texts, "hidden_fn").mean().item()
    if reference is not None:
        log_probs = token_log_probs(policy, batch.tokens, batch.attention_mask, temperature)
        ref_log_probs = token_log_probs(reference, batch.tokens, batch.attention_mask, temperature)
        out["kl"] = sequence_kl(log_probs, ref_log_probs, batch.completion_mask).mean().item()
    return out


# ------------------------------------------------------------------------------------------------ several runs


def _train(policy: TinyLM, prompts: list[str], reward_fn: RewardFunction, hidden_fn: RewardFunction | None,
           config: PPORLHFConfig | GRPOConfig, seed: int, evaluation: dict) -> tuple[RLHFResult, dict]:
    """One run from a copy of ``policy`` (PPO or GRPO by the config's type) and its final evaluation."""
    reference = create_reference_model(policy)
    model = copy.deepcopy(policy)
    train = train_ppo_rlhf if isinstance(config, PPORLHFConfig) else train_grpo_rlhf
    result = train(model, prompts, reward_fn, config, seed, hidden_fn=hidden_fn, progress=False)
    after = score_samples(model, prompts, reward_fn, hidden_fn=hidden_fn, reference=reference, **evaluation)
    return result, after


def rlhf_runs(configs: dict[str, PPORLHFConfig | GRPOConfig], seeds: Sequence[int], policy: TinyLM,
              prompts: Sequence[str], reward_fn: RewardFunction, *, hidden_fn: RewardFunction | None = None,
              n_jobs: int = 1, eval_generations: int = 16, eval_seed: int = 100, progress: bool | None = None
              ) -> dict[str, dict]:
    """PPO and/or GRPO runs for several configurations over the same seeds, each from a copy of the same policy
    (the SFT model), shared out among ``n_jobs`` processes (the pattern of
    :func:`solutions.ppo_cartpole.ppo_runs`).

    Every run trains a copy of ``policy`` with :func:`train_ppo_rlhf` (a :class:`PPORLHFConfig`) or
    :func:`train_grpo_rlhf` (a :class:`~solutions.grpo_language_model.GRPOConfig`), the reference being
    ``policy`` itself, then :func:`score_samples` measures its samples (``eval_generations`` of each prompt,
    seed ``eval_seed``); the same evaluation of ``policy`` gives the baseline.

    With ``n_jobs > 1`` each run trains in a fresh "spawn" process; the policy and the two reward functions are
    sent to it by pickling (a reward model's score method pickles with its network), so nothing is trained twice.
    Every run is a function of its arguments and seed: the results are the same for every ``n_jobs`` (a test
    checks it).

    Args:
        configs: ``{name: PPORLHFConfig or GRPOConfig}``.
        seeds: the seeds, the same for every configuration.
        policy: the starting policy and reference (not changed).
        prompts: texts.
        reward_fn: the reward trained on; must pickle when ``n_jobs > 1`` (a module-level function or a method of
            a picklable object, not a lambda).
        hidden_fn: the hidden score, measured only (None: NaN curves); must pickle when ``n_jobs > 1``.
        n_jobs: processes (>= 1).
        eval_generations, eval_seed: the final evaluation's completions per prompt and sampling seed.
        progress: a bar over the runs (default: :func:`~solutions.progress.show_progress`).

    Returns:
        ``{name: run}`` with, for ``n_seeds`` seeds and ``n_updates`` updates: each of :data:`CURVES` as float
        ``(n_seeds, n_updates)``; ``"before"`` (the evaluation of ``policy``: a dict of floats as
        :func:`score_samples` returns); ``"after"``: a dict of float arrays ``(n_seeds,)`` with the same keys;
        ``"cpu_seconds"``: float ``(n_seeds,)`` (the training's CPU time in its process); ``"results"``: the
        :class:`RLHFResult` of each seed, models included.

    Raises:
        ValueError: if ``configs`` or ``seeds`` is empty, a configuration is neither a ``PPORLHFConfig`` nor a
            ``GRPOConfig``, ``n_jobs`` < 1, or as the training functions.
    """
    seeds = [int(s) for s in seeds]
    if not configs or not seeds:
        raise ValueError(f"need at least one configuration and one seed; got {len(configs)} and {len(seeds)}")
    bad = [name for name, c in configs.items() if not isinstance(c, PPORLHFConfig | GRPOConfig)]
    if bad:
        raise ValueError(f"configs must map names to PPORLHFConfig or GRPOConfig; not for {bad}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be an integer >= 1; got {n_jobs!r}")
    _check_common(policy, prompts, 0, 0)
    prompts = list(prompts)
    evaluation = {"num_generations": eval_generations, "seed": eval_seed,
                  "max_new_tokens": max(_length(c) for c in configs.values())}
    reference = create_reference_model(policy)
    before = score_samples(policy, prompts, reward_fn, hidden_fn=hidden_fn, reference=reference, **evaluation)
    jobs = [(name, seed) for name in configs for seed in seeds]
    outcomes = {}
    bar = tqdm(total=len(jobs), desc="RLHF runs", disable=not show_progress(progress))
    if n_jobs == 1:
        for name, seed in jobs:
            outcomes[name, seed] = _train(policy, prompts, reward_fn, hidden_fn, configs[name], seed, evaluation)
            bar.update()
    else:
        context = multiprocessing.get_context("spawn")  # fork would copy a running kernel's threads and state
        with ProcessPoolExecutor(min(n_jobs, len(jobs)), mp_context=context) as pool:
            futures = {(name, seed): pool.submit(_train, policy, prompts, reward_fn, hidden_fn, configs[name],
                                                 seed, evaluation) for name, seed in jobs}
            for key, future in futures.items():
                outcomes[key] = future.result()
                bar.update()
    bar.close()
    runs = {}
    for name in configs:
        results = [outcomes[name, seed][0] for seed in seeds]
        afters = [outcomes[name, seed][1] for seed in seeds]
        run = {curve: np.array([getattr(r, curve) for r in results]) for curve in CURVES}
        run.update(before=before, after={key: np.array([a[key] for a in afters]) for key in before},
                   cpu_seconds=np.array([r.cpu_seconds for r in results]), results=results)
        runs[name] = run
    return runs


def _length(config: PPORLHFConfig | GRPOConfig) -> int:
    return config.response_length if isinstance(config, PPORLHFConfig) else config.max_completion_length


def overoptimisation_sweep(policy: TinyLM, prompts: Sequence[str], reward_fn: RewardFunction,
                           hidden_fn: RewardFunction, *, betas: Sequence[float] = CHAPTER_BETAS,
                           seeds: Sequence[int] = range(5), base: GRPOConfig | None = None, n_jobs: int = 1,
                           progress: bool | None = None, **kwargs) -> dict[str, dict]:
    """Over-optimisation of a learned reward (Gao et al. 2023, "Scaling laws for reward model overoptimization"):
    GRPO on ``reward_fn`` for each KL coefficient ``beta`` over the same seeds (:func:`rlhf_runs`), recording at
    every update, on that update's samples, the learned reward, the hidden score and the KL to the starting
    policy.

    Gao et al. plot the gold (here: hidden) score against sqrt(KL), the distance travelled from the initial
    policy: each run's ``"kls"`` and ``"hidden_scores"`` give that plot, one point per update and seed, and
    :func:`sqrt_kl_bins` averages them in bins.

    Args:
        policy, prompts, reward_fn: as :func:`rlhf_runs` (the SFT model, the review prompts, the reward model's
            score, e.g. :class:`RewardModelScore`).
        hidden_fn: the hidden score (e.g. :func:`solutions.reward_model.hidden_preference`).
        betas: the KL coefficients, each >= 0 (include 0).
        seeds: the seeds, the same for every beta (>= 5 for the figure if the budget allows).
        base: the GRPO configuration whose ``beta`` is replaced (default :func:`chapter_grpo_config`).
        n_jobs, progress, **kwargs: as :func:`rlhf_runs`.

    Returns:
        ``{f"beta = {beta:g}": run}`` as :func:`rlhf_runs`, in the order of ``betas``.

    Raises:
        ValueError: for no beta, a negative one, and as :func:`rlhf_runs`.
    """
    betas = [float(b) for b in betas]
    if not betas:
        raise ValueError("no beta")
    base = base or chapter_grpo_config()
    configs = {f"beta = {beta:g}": dataclasses.replace(base, beta=beta) for beta in betas}
    return rlhf_runs(configs, seeds, policy, prompts, reward_fn, hidden_fn=hidden_fn, n_jobs=n_jobs,
                     progress=progress, **kwargs)


def sqrt_kl_bins(run: dict, n_bins: int = 8, max_sqrt_kl: float | None = None) -> dict[str, np.ndarray]:
    """The data of Gao et al.'s (2023) figures: the hidden ("gold") score and the learned ("proxy") reward
    against d = sqrt(KL(pi || pi_ref)), the KL in nats per completion, pooled over the seeds and updates of a run
    and averaged in ``n_bins`` equal bins of d from 0 to ``max_sqrt_kl``.

    Every update of every seed is one point (its batch's mean KL, hidden score and learned reward; a negative k1
    estimate counts as 0). Points beyond ``max_sqrt_kl`` are left out.

    Args:
        run: one entry of :func:`rlhf_runs` or :func:`overoptimisation_sweep` (``"kls"``, ``"hidden_scores"``,
            ``"learned_rewards"``: float ``(n_seeds, n_updates)``).
        n_bins: number of bins (>= 1).
        max_sqrt_kl: the upper edge (default: the largest d of the run).

    Returns:
        ``"edges"`` float ``(n_bins + 1,)``; ``"sqrt_kl"``, ``"hidden_score"``, ``"learned_reward"``: float
        ``(n_bins,)``, the bins' means (NaN for an empty bin); ``"count"``: int ``(n_bins,)``, points per bin.

    Raises:
        ValueError: for ``n_bins`` < 1, a non-positive ``max_sqrt_kl``, or curves of different shapes.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1; got {n_bins!r}")
    kls, hidden, learned = (np.asarray(run[key], dtype=np.float64) for key in ("kls", "hidden_scores",
                                                                             "learned_rewards"))
    if not kls.shape == hidden.shape == learned.shape:
        raise ValueError(f"the curves must have one shape; got {kls.shape}, {hidden.shape}, {learned.shape}")
    d = np.sqrt(np.clip(kls, 0.0, None)).ravel()
    top = float(d.max()) if max_sqrt_kl is None else float(max_sqrt_kl)
    if not top > 0:
        raise ValueError(f"max_sqrt_kl must be positive; got {top!r}")
    edges = np.linspace(0.0, top, n_bins + 1)
    index = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, n_bins - 1)
    inside = d <= top
    out = {"edges": edges, "count": np.zeros(n_bins, dtype=np.int64)}
    for key, values in (("sqrt_kl", d), ("hidden_score", hidden.ravel()), ("learned_reward", learned.ravel())):
        out[key] = np.full(n_bins, np.nan)
        for b in range(n_bins):
            chosen = inside & (index == b)
            if chosen.any():
                out[key][b] = values[chosen].mean()
                out["count"][b] = chosen.sum()
    return out
