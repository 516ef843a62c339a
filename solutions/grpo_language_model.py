"""GRPO on the tiny language model with a verifiable reward (Chapter 5): reinforcement learning from verifiable
rewards, as in DeepSeekMath (Shao et al. 2024) and DeepSeek-R1 (DeepSeek-AI 2025), on a scale that runs in
seconds on a CPU.

The task is Chapter 4's arithmetic: the prompt is ``two plus three is``, the completion should be ``five .``, and
:func:`solutions.corpus.arithmetic_reward` checks it with a rule (1 for the right answer followed by ``.``, 0
otherwise). The pre-trained model (:func:`solutions.language_model.pretrained_model`) learned from a corpus in
which 30 % of the sums are wrong, and samples the right answer only about half the time. GRPO (Shao et al.
2024, Algorithm 1) trains it on that reward alone, without a value network:

    for each update:
        draw a batch of prompts; sample G = num_generations completions of each from pi_theta_old (= pi_theta now)
        score them: r_i = reward(prompt, completion_i)
        advantages A_i = (r_i - mean of the group) / (std of the group + eps)       (group_advantages)
        record ln pi_ref of every completion token, and ln pi_theta_old = ln pi_theta before the first step
        (no gradient)
        repeat num_iterations (TRL's mu) times:
            one Adam step on grpo_loss: the clipped surrogate with the importance ratio pi_theta / pi_theta_old,
            plus beta times the k3 estimate of KL(pi_theta || pi_ref)

The advantages, the KL estimate and the loss are the chapter's exercises, imported from :mod:`solutions.grpo`
(and the ratio, for the clip fraction, from :func:`solutions.ppo.importance_ratio`); this module only runs them.
Names follow TRL's ``GRPOConfig`` (``num_generations``, ``beta``, ``epsilon``, ``loss_type``, ``scale_rewards``,
``num_iterations``, ``learning_rate``, ``max_completion_length``, ``temperature``).

What it does (:func:`grpo_runs`, 50 updates of 8 prompts x 8 completions, seeds 0-4,
``benchmarks/grpo_language_model.py``): the sampled accuracy on the 50 training prompts rises from 0.549 to
0.731-0.762 without a KL penalty, and on the 16 held-out prompts, never rewarded, from 0.535 to 0.570-0.629;
the share of groups whose G rewards are all equal (no signal) grows from 0.09 to 0.24 (first and last 10 updates)
as more prompts are always answered right; the loss at each update's first step is 0 up to rounding (at most
3e-8 in 50 updates, seed 3) while the accuracy climbs: it is not a progress signal. With ``beta = 1`` the
per-token KL to the reference stays at 0.040 instead of 0.096 (last 10 updates) and the training accuracy
reaches 0.668-0.700 (the held-out accuracy, 0.570-0.621, is no lower).

Also here: :func:`arithmetic_split` (the prompts GRPO trains on and those it never sees),
:func:`sampled_accuracy`, :func:`length_bias_table` (the worked example of how each ``loss_type`` weighs the
tokens of short and long completions), :func:`zero_variance_fraction`, and :func:`grpo_runs` (several
configurations over several seeds, for the chapter's figures and its widget).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .corpus import arithmetic_prompts, arithmetic_reward
from .grpo import LOSS_TYPES, SCALE_REWARDS, group_advantages, grpo_loss, kl_k3
from .language_model import TinyLM, create_reference_model, pretrained_model, sample, token_log_probs
from .ppo import importance_ratio
from .progress import show_progress
from .threads import single_threaded

__all__ = [
    "CURVES",
    "GRPOConfig",
    "GRPOResult",
    "arithmetic_split",
    "chapter_configs",
    "format_length_bias_table",
    "grpo_runs",
    "length_bias_table",
    "sampled_accuracy",
    "train_grpo",
    "zero_variance_fraction",
]

RewardFunction = Callable[[list[str], list[str]], "torch.Tensor | Sequence[float]"]


# ------------------------------------------------------------------------------------------------ configuration


@dataclass
class GRPOConfig:
    """Hyper-parameters of :func:`train_grpo`, with the names of TRL's ``GRPOConfig`` where it has them.

    The defaults are the chapter's: 8 prompts x 8 completions per update, 50 updates, on-policy (one gradient
    step per batch), Adam at 5e-4, ``beta = 0.04`` as in DeepSeekMath (Shao et al. 2024, Section 4.2). TRL's
    defaults differ where a large model needs it (learning rate 1e-6, ``beta = 0``); a model of 10^5 parameters
    learns at 5e-4 (in 60 updates at 1e-3, some of seeds 0-4 lost accuracy on the held-out prompts; at 3e-3
    every seed fell below its starting accuracy).

    What ``beta`` does here (:func:`grpo_runs` on the arithmetic task, 50 updates, seeds 0-4, mean per-token KL
    over the last 10 updates and sampled accuracy on the training prompts, from 0.549): ``beta = 0``: KL 0.096,
    accuracy 0.750; 0.04: 0.098, 0.726; 0.3: 0.074, 0.731; 1: 0.040, 0.684. The penalty's gradient per token is
    about beta (1 - pi_ref / pi_theta), against an advantage of about 1: at 0.04 it is lost in the noise of 50
    updates, at 1 it holds the policy at half the KL and costs accuracy. Over 300 updates (seeds 0-2,
    ``benchmarks/grpo_language_model.py --long``) the penalty matters more: without it the training accuracy
    reaches 0.868 but the held-out accuracy falls back to 0.530 (the KL grows to 0.24), at 0.04 one seed of three
    drifted away (KL 0.50, training accuracy 0.66), at 0.2 the runs reached 0.866 on the training prompts and
    kept 0.613 on the held-out ones (KL 0.15), at 1 they stayed at 0.702 (KL 0.066).

    Raises:
        ValueError: (on construction) for ``num_generations`` < 2, a count that is not a positive integer,
            a negative or non-finite ``beta``, ``epsilon`` outside (0, 1), a ``learning_rate`` that is not
            positive, a ``temperature`` that is not positive, or an unknown ``loss_type`` / ``scale_rewards``.
    """

    num_generations: int = 8  #: G, completions sampled per prompt (a group)
    prompts_per_update: int = 8  #: prompts drawn per update; the batch holds prompts_per_update * G completions
    n_updates: int = 50  #: updates, each on a freshly sampled batch
    num_iterations: int = 1  #: TRL's mu: gradient steps on each batch (1: on-policy, the ratio is exactly 1)
    beta: float = 0.04  #: KL coefficient (k3 estimate against the frozen reference model); 0: no penalty
    epsilon: float = 0.2  #: clip range of the importance ratio
    loss_type: str = "grpo"  #: "grpo", "bnpo", "dr_grpo" or "dapo" (see solutions.grpo.grpo_loss)
    scale_rewards: str = "group"  #: "group", "batch" or "none" (see solutions.grpo.group_advantages)
    learning_rate: float = 5e-4  #: Adam's step size
    max_completion_length: int = 8  #: the most tokens sampled per completion, <eos> included
    temperature: float = 1.0  #: sampling temperature (the log-probabilities use the same, as TRL does)

    def __post_init__(self):
        for name in ("num_generations", "prompts_per_update", "n_updates", "num_iterations",
                     "max_completion_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (a group of one has no baseline); got "
                             f"{self.num_generations}")
        if not (isinstance(self.beta, int | float) and math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0; got {self.beta!r}")
        if not (isinstance(self.epsilon, int | float) and 0 < self.epsilon < 1):
            raise ValueError(f"epsilon must be a number in (0, 1); got {self.epsilon!r}")
        if not (isinstance(self.learning_rate, int | float) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be positive; got {self.learning_rate!r}")
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise ValueError(f"temperature must be positive (the log-probabilities divide by it); got "
                             f"{self.temperature!r}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}; got {self.loss_type!r}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}; got {self.scale_rewards!r}")


@dataclass
class GRPOResult:
    """What :func:`train_grpo` returns: the trained policy and one number per update for each curve."""

    model: TinyLM  #: the policy, trained in place
    config: GRPOConfig
    mean_rewards: list[float] = field(default_factory=list)  #: mean reward of the update's sampled batch
    zero_variance_fractions: list[float] = field(default_factory=list)  #: share of groups with all-equal rewards
    losses: list[float] = field(default_factory=list)  #: grpo_loss at the update's first gradient step (ratio 1)
    kls: list[float] = field(default_factory=list)  #: mean k3 per token, policy before the update vs pi_ref
    completion_lengths: list[float] = field(default_factory=list)  #: mean completion tokens (<eos> included)
    right_lengths: list[float] = field(default_factory=list)  #: the same over rewards > 0 (nan if none)
    wrong_lengths: list[float] = field(default_factory=list)  #: the same over rewards <= 0 (nan if none)
    clip_fractions: list[float] = field(default_factory=list)  #: share of tokens clipped, mean over the mu steps
    samples_before: list[str] = field(default_factory=list)  #: texts sampled before training
    samples_after: list[str] = field(default_factory=list)  #: texts sampled after, same prompts and seed


# ------------------------------------------------------------------------------------------------ measurements


def zero_variance_fraction(rewards: torch.Tensor, num_generations: int) -> float:
    """The fraction of groups whose rewards are all equal: their advantages are all 0, so they give no gradient.

    With a 0/1 reward a group has no signal when every completion is wrong (a prompt too hard for the policy) or
    every one is right (a prompt it has mastered); as the policy improves, the second kind grows.

    Args:
        rewards: float tensor ``(B,)``, the groups one after the other (B a multiple of ``num_generations``).
        num_generations: G >= 1.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: if ``rewards`` is not 1-D or its length is not a positive multiple of ``num_generations``.
    """
    if not isinstance(rewards, torch.Tensor) or rewards.ndim != 1:
        raise ValueError("rewards must be a 1-D torch tensor (B,)")
    if isinstance(num_generations, bool) or not isinstance(num_generations, int) or num_generations < 1:
        raise ValueError(f"num_generations must be an integer >= 1; got {num_generations!r}")
    if len(rewards) == 0 or len(rewards) % num_generations:
        raise ValueError(f"the number of rewards ({len(rewards)}) must be a positive multiple of num_generations "
                         f"({num_generations})")
    groups = rewards.reshape(-1, num_generations)
    return float((groups == groups[:, :1]).all(dim=1).float().mean())


def arithmetic_split(n_held_out: int = 16, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split the 66 arithmetic prompts (:func:`solutions.corpus.arithmetic_prompts`) into those GRPO trains on
    and ``n_held_out`` it never sees, drawn uniformly without replacement.

    The held-out sums are not new to the model: pre-training saw all 66 (with 30 % wrong answers). What they
    measure is whether GRPO's gain carries over to prompts it was not rewarded on.

    Args:
        n_held_out: prompts held out, in 1 .. 65.
        seed: seeds the draw (``numpy.random.default_rng``).

    Returns:
        ``(train_prompts, held_out_prompts)``, each in the order of :func:`~solutions.corpus.arithmetic_prompts`.

    Raises:
        ValueError: if ``n_held_out`` is outside 1 .. 65.
    """
    prompts = arithmetic_prompts()
    if isinstance(n_held_out, bool) or not isinstance(n_held_out, int) or not 1 <= n_held_out < len(prompts):
        raise ValueError(f"n_held_out must be an integer in 1 .. {len(prompts) - 1}; got {n_held_out!r}")
    held = set(np.random.default_rng(seed).choice(len(prompts), size=n_held_out, replace=False).tolist())
    return ([p for i, p in enumerate(prompts) if i not in held], [p for i, p in enumerate(prompts) if i in held])


@torch.no_grad()
def sampled_accuracy(model: TinyLM, prompts: Sequence[str], *, num_generations: int = 16, max_new_tokens: int = 8,
                     temperature: float = 1.0, seed: int = 0) -> float:
    """The share of sampled completions that :func:`~solutions.corpus.arithmetic_reward` scores 1.

    ``num_generations`` completions of every prompt, sampled at ``temperature`` (0: greedy, one per prompt is
    enough) from a generator seeded with ``seed``.

    Args:
        model: the policy.
        prompts: arithmetic prompts such as ``"two plus three is"``.
        num_generations, max_new_tokens, temperature: as :func:`solutions.language_model.sample`.
        seed: seeds the sampling.

    Returns:
        A float in [0, 1].

    Raises:
        ValueError: as :func:`~solutions.language_model.sample` and :func:`~solutions.corpus.arithmetic_reward`.
    """
    with single_threaded():
        completions = sample(model, prompts, max_new_tokens, temperature=temperature,
                             num_generations=num_generations, generator=torch.Generator().manual_seed(seed))
    return float(arithmetic_reward(completions.prompt_texts(), completions.completion_texts()).mean())


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> float:
    """The mean of ``values`` where ``mask`` is True."""
    return float((values * mask).sum() / mask.sum())


# ------------------------------------------------------------------------------------------------ GRPO


@single_threaded()
def train_grpo(model: TinyLM, prompts: Sequence[str], reward_fn: RewardFunction, config: GRPOConfig | None = None,
               seed: int = 0, progress: bool | None = None, n_shown: int = 8) -> GRPOResult:
    """Train a language model with GRPO (Shao et al. 2024, "DeepSeekMath", Algorithm 1, with outcome rewards).

    Each of ``config.n_updates`` updates:

    1. draws ``prompts_per_update`` prompts uniformly (with replacement) and samples ``num_generations``
       completions of each (:func:`~solutions.language_model.sample`), the groups one after the other;
    2. scores them with ``reward_fn`` and turns the rewards into advantages within each group
       (:func:`~solutions.grpo.group_advantages` with ``scale_rewards``);
    3. records, without gradient, ln pi_ref (the frozen copy of the model as it was before training,
       :func:`~solutions.language_model.create_reference_model`) of every token
       (:func:`~solutions.language_model.token_log_probs`); the loss uses ln pi_ref only when ``beta > 0``, but
       the KL to the reference is recorded in every run;
    4. takes ``num_iterations`` steps of Adam on :func:`~solutions.grpo.grpo_loss`. Before the first step
       pi_theta is pi_theta_old, the policy that sampled: its log-probabilities, detached, are ln pi_theta_old
       (one forward pass serves both, as in TRL), so at the first step the ratio is exactly 1 and nothing is
       clipped. Later steps reuse the same batch: the ratio moves away from 1 and the clip stops the gradient
       of a token once its ratio has left [1 - epsilon, 1 + epsilon] in the direction its advantage pushes
       (with ``num_iterations=4``, ``beta=0``, seed 3: 5.6 % of the tokens clipped on average over the four
       steps, 16 % at most).

    The same ``n_shown`` prompts are sampled before and after training with the same seed, for the book.

    Args:
        model: the policy, trained in place (e.g. :func:`~solutions.language_model.pretrained_model`); it is left
            in evaluation mode.
        prompts: the training prompts, texts such as ``"two plus three is"``.
        reward_fn: ``reward_fn(prompt_texts, completion_texts)`` -> B rewards (TRL's form), a tensor or a list of
            floats, e.g. :func:`solutions.corpus.arithmetic_reward`.
        config: hyper-parameters (default :class:`GRPOConfig`).
        seed: seeds the prompts drawn and the sampling (one ``torch.Generator``); the same seed, model and config
            give the same run.
        progress: show a tqdm progress bar (default: :func:`~solutions.progress.show_progress`).
        n_shown: number of samples kept before and after (0: none).

    Returns:
        :class:`GRPOResult`, with one value per update in each list.

    Raises:
        ValueError: for no prompts, a negative ``n_shown``, ``reward_fn`` not returning one finite reward per
            completion, and as :func:`~solutions.language_model.sample`.
    """
    config = config or GRPOConfig()
    if not isinstance(config, GRPOConfig):
        raise ValueError(f"config must be a GRPOConfig; got {type(config).__name__}")
    if not len(prompts):
        raise ValueError("no prompts")
    if n_shown < 0:
        raise ValueError(f"n_shown must be >= 0; got {n_shown}")
    G = config.num_generations
    shown = [prompts[i % len(prompts)] for i in range(n_shown)]

    def show() -> list[str]:
        if not shown:
            return []
        return sample(model, shown, config.max_completion_length, temperature=config.temperature,
                      generator=torch.Generator().manual_seed(seed + 1)).texts()

    model.eval()  # no dropout: the policy that samples is the policy that is trained
    result = GRPOResult(model, config, samples_before=show())
    reference = create_reference_model(model)  # with beta = 0 too: the KL to it is measured, not penalised
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, foreach=True)
    for _ in tqdm(range(config.n_updates), desc="GRPO", disable=not show_progress(progress), mininterval=1.0):
        # 1. a group of G completions for each prompt, sampled from the current policy pi_theta_old
        picked = torch.randint(len(prompts), (config.prompts_per_update,), generator=generator)
        batch = sample(model, [prompts[i] for i in picked], config.max_completion_length,
                       temperature=config.temperature, generator=generator, num_generations=G)
        tokens, attention_mask, mask = batch.tokens, batch.attention_mask, batch.completion_mask

        # 2. rewards and group-relative advantages
        rewards = torch.as_tensor(reward_fn(batch.prompt_texts(), batch.completion_texts()), dtype=torch.float32)
        if rewards.shape != (len(batch),) or not torch.isfinite(rewards).all():
            raise ValueError(f"reward_fn must return {len(batch)} finite rewards; got shape "
                             f"{tuple(rewards.shape)}")
        advantages = group_advantages(rewards, G, config.scale_rewards)

        # 3. log-probabilities of the reference policy, a constant
        with torch.no_grad():
            ref_log_probs = token_log_probs(reference, tokens, attention_mask, config.temperature)

        # 4. num_iterations gradient steps on the same batch
        clipped = []
        for iteration in range(config.num_iterations):
            log_probs = token_log_probs(model, tokens, attention_mask, config.temperature)
            if iteration == 0:  # before the first step pi_theta is pi_theta_old: its log-probs are the old ones
                old_log_probs = log_probs.detach()
            loss = grpo_loss(log_probs, old_log_probs, advantages, mask, ref_log_probs=ref_log_probs,
                             beta=config.beta, epsilon=config.epsilon, loss_type=config.loss_type,
                             max_completion_length=config.max_completion_length)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():  # the tokens whose gradient the clip removed (TRL's clip_ratio)
                ratio = importance_ratio(log_probs, old_log_probs)
                A = advantages[:, None]
                was_clipped = ((ratio < 1 - config.epsilon) & (A < 0)) | ((ratio > 1 + config.epsilon) & (A > 0))
                clipped.append(_masked_mean(was_clipped.float(), mask))
            if iteration == 0:
                result.losses.append(loss.item())

        # what the book plots
        lengths = mask.sum(dim=1).float()
        right = rewards > 0
        result.mean_rewards.append(rewards.mean().item())
        result.zero_variance_fractions.append(zero_variance_fraction(rewards, G))
        result.kls.append(_masked_mean(kl_k3(old_log_probs, ref_log_probs), mask))
        result.completion_lengths.append(lengths.mean().item())
        result.right_lengths.append(lengths[right].mean().item() if right.any() else float("nan"))
        result.wrong_lengths.append(lengths[~right].mean().item() if (~right).any() else float("nan"))
        result.clip_fractions.append(float(np.mean(clipped)))
    model.eval()
    result.samples_after = show()
    return result


# ------------------------------------------------------------------------------------------------ the length bias


def length_bias_table(lengths: Sequence[int] = (2, 8), advantages: Sequence[float] = (1.0, -1.0),
                      max_completion_length: int = 8) -> list[dict]:
    """A worked example of how each ``loss_type`` weighs the tokens of short and long completions (Liu et al.
    2025, "Understanding R1-Zero-like training", Section 3.1; Yu et al. 2025, DAPO).

    A batch of B completions of the given lengths, with the given advantages, on-policy (ratio 1) and without KL
    (``beta = 0``). For each ``loss_type``, :func:`~solutions.grpo.grpo_loss` is differentiated by autograd with
    respect to the log-probability of every completion token. Gradient descent changes ln pi of a token by
    minus that gradient (times the step size), so a negative gradient makes the token more likely. With one
    advantage per completion the gradient is the same at all tokens of a completion:

    * ``"grpo"``: -A_i / (B |o_i|) -- a token of a long completion weighs less than one of a short completion;
      each completion's tokens together get -A_i / B whatever its length, so a long wrong answer is pushed down
      less per token than a short wrong one, and a short right answer is pushed up more per token than a long one;
    * ``"bnpo"`` and ``"dapo"``: -A_i / (|o_1| + ... + |o_B|) -- every token of the batch weighs the same;
    * ``"dr_grpo"``: -A_i / (B * max_completion_length) -- every token weighs the same, by a constant.

    In training the effect is small but shows: most wrong arithmetic completions are a wrong number and ``.``
    (3 tokens with ``<eos>``), but some run on past the full stop (``seven . one seven perfect .``). With
    ``beta = 0`` and seeds 0-4 (``benchmarks/grpo_language_model.py --loss-types``), the wrong completions of
    the last 25 of 50 updates were 3.23 tokens long on average under ``"grpo"`` (3.12 to 3.43 by seed),
    3.10 under ``"dr_grpo"`` with ``scale_rewards="none"`` (3.01 to 3.17) and 3.09 under ``"bnpo"``: longer
    under ``"grpo"`` for every seed, by 0.02 to 0.28 tokens.

    Args:
        lengths: B >= 2 completion lengths in tokens, each in 1 .. ``max_completion_length``.
        advantages: B advantages A_i (e.g. +1 for a right answer and -1 for a wrong one).
        max_completion_length: the sampler's limit (Dr. GRPO's constant normaliser).

    Returns:
        One dict per ``loss_type`` and completion, in the order of :data:`solutions.grpo.LOSS_TYPES` then the
        completions: ``loss_type``, ``completion`` (index i), ``length`` |o_i|, ``advantage`` A_i,
        ``token_gradient`` (d loss / d ln pi at each of its tokens, a float) and ``completion_gradient`` (the sum
        over its tokens, ``length * token_gradient``).

    Raises:
        ValueError: if fewer than two completions are given, the lengths and advantages differ in number, a length
            is outside 1 .. ``max_completion_length`` or an advantage is not finite.
    """
    lengths, advantages = list(lengths), [float(a) for a in advantages]
    if len(lengths) < 2 or len(lengths) != len(advantages):
        raise ValueError(f"need two or more completions, as many lengths as advantages; got {len(lengths)} "
                         f"lengths and {len(advantages)} advantages")
    if isinstance(max_completion_length, bool) or not isinstance(max_completion_length, int) \
            or max_completion_length < 1:
        raise ValueError(f"max_completion_length must be an integer >= 1; got {max_completion_length!r}")
    if any(isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max_completion_length for n in lengths):
        raise ValueError(f"each length must be an integer in 1 .. {max_completion_length}; got {lengths}")
    if not all(math.isfinite(a) for a in advantages):
        raise ValueError(f"advantages must be finite; got {advantages}")
    B = len(lengths)
    completion_mask = torch.arange(max_completion_length)[None, :] < torch.tensor(lengths)[:, None]  # (B, L)
    A = torch.tensor(advantages, dtype=torch.float64)
    rows = []
    for loss_type in LOSS_TYPES:
        # any log-probabilities will do: on-policy the ratio is 1 and the gradient does not depend on them
        log_probs = torch.full((B, max_completion_length), math.log(0.5), dtype=torch.float64, requires_grad=True)
        loss = grpo_loss(log_probs, log_probs.detach(), A, completion_mask, loss_type=loss_type,
                         max_completion_length=max_completion_length)
        (gradient,) = torch.autograd.grad(loss, log_probs)
        for i in range(B):
            token_gradient = float(gradient[i, 0])
            rows.append({"loss_type": loss_type, "completion": i, "length": lengths[i], "advantage": advantages[i],
                         "token_gradient": token_gradient,
                         "completion_gradient": float(gradient[i, completion_mask[i]].sum())})
    return rows


def format_length_bias_table(rows: list[dict]) -> str:
    """The rows of :func:`length_bias_table` as a text table, one line per ``loss_type`` and completion."""
    lines = [f"{'loss_type':<9} {'i':>2} {'|o_i|':>5} {'A_i':>6} {'d loss/d ln pi per token':>25} "
             f"{'summed over o_i':>16}"]
    for row in rows:
        lines.append(f"{row['loss_type']:<9} {row['completion']:>2} {row['length']:>5} {row['advantage']:>+6.2f} "
                     f"{row['token_gradient']:>+25.4f} {row['completion_gradient']:>+16.4f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ several runs

#: The curves :func:`grpo_runs` stacks over seeds: the per-update lists of :class:`GRPOResult`.
CURVES = ("mean_rewards", "zero_variance_fractions", "losses", "kls", "completion_lengths", "right_lengths",
          "wrong_lengths", "clip_fractions")


def chapter_configs() -> dict[str, GRPOConfig]:
    """The chapter's comparison, to pass to :func:`grpo_runs` with seeds 0-4: GRPO without a KL penalty
    (``beta = 0``, TRL's default) and with a strong one (``beta = 1``), everything else :class:`GRPOConfig`'s
    defaults. A new dict each call. At DeepSeekMath's ``beta = 0.04`` the runs are indistinguishable from
    ``beta = 0`` in 50 updates (see :class:`GRPOConfig`)."""
    return {"beta = 0": GRPOConfig(beta=0.0), "beta = 1": GRPOConfig(beta=1.0)}


def grpo_runs(configs: dict[str, GRPOConfig], seeds: Sequence[int], *, model_seed: int = 0, n_held_out: int = 16,
              split_seed: int = 0, eval_generations: int = 16, eval_seed: int = 100,
              progress: bool | None = None) -> dict[str, dict]:
    """GRPO on the arithmetic task for several configurations over the same seeds (the chapter's figures).

    Every run starts from the same pre-trained model (:func:`~solutions.language_model.pretrained_model` with
    ``model_seed``: trained once, about 10 s of CPU, then copied) and trains on the prompts that
    :func:`arithmetic_split` does not hold out, with reward :func:`~solutions.corpus.arithmetic_reward`; ``seed``
    seeds the GRPO run (prompts drawn, samples). Before and after, :func:`sampled_accuracy` measures the share of
    right answers among ``eval_generations`` sampled completions of every training and every held-out prompt,
    always from the same sampling seed ``eval_seed``.

    Args:
        configs: ``{name: GRPOConfig}``, e.g. ``{"beta = 0": GRPOConfig(beta=0.0), "beta = 0.04": GRPOConfig()}``.
        seeds: the GRPO seeds, the same for every configuration.
        model_seed: the pre-trained model's seed.
        n_held_out, split_seed: as :func:`arithmetic_split`.
        eval_generations, eval_seed: as ``num_generations`` and ``seed`` of :func:`sampled_accuracy`.
        progress: show a tqdm progress bar over the runs (default: :func:`~solutions.progress.show_progress`).

    Returns:
        ``{name: run}`` where run is a dict of numpy arrays: each name of :data:`CURVES` (float ``(n_seeds,
        n_updates)``, one row per seed), ``"train_before"`` and ``"held_out_before"`` (floats: the pre-trained
        model's accuracies), ``"train_after"`` and ``"held_out_after"`` (float ``(n_seeds,)``), and ``"results"``
        (the :class:`GRPOResult` of each seed, models included).

    Raises:
        ValueError: if ``configs`` or ``seeds`` is empty or a configuration is not a :class:`GRPOConfig`.
    """
    seeds = list(seeds)
    if not configs or not seeds:
        raise ValueError(f"need at least one configuration and one seed; got {len(configs)} and {len(seeds)}")
    bad = [name for name, config in configs.items() if not isinstance(config, GRPOConfig)]
    if bad:
        raise ValueError(f"configs must map names to GRPOConfig; not for {bad}")
    train_prompts, held_out_prompts = arithmetic_split(n_held_out, split_seed)

    def accuracy(model: TinyLM, prompts: list[str]) -> float:
        return sampled_accuracy(model, prompts, num_generations=eval_generations, seed=eval_seed)

    pretrained = pretrained_model(model_seed, progress=False)
    train_before, held_out_before = accuracy(pretrained, train_prompts), accuracy(pretrained, held_out_prompts)
    bar = tqdm(total=len(configs) * len(seeds), desc="GRPO runs", disable=not show_progress(progress))
    runs = {}
    for name, config in configs.items():
        results, train_after, held_out_after = [], [], []
        for seed in seeds:
            model = pretrained_model(model_seed)  # a fresh copy of the same weights
            results.append(train_grpo(model, train_prompts, arithmetic_reward, config, seed, progress=False))
            train_after.append(accuracy(model, train_prompts))
            held_out_after.append(accuracy(model, held_out_prompts))
            bar.update()
        run = {curve: np.array([getattr(result, curve) for result in results]) for curve in CURVES}
        run.update(train_before=train_before, held_out_before=held_out_before, train_after=np.array(train_after),
                   held_out_after=np.array(held_out_after), results=results)
        runs[name] = run
    bar.close()
    return runs
