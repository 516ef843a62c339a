"""The InstructGPT recipe on the tiny language model (Chapter 6): a hidden "human" preference, supervised
fine-tuning on demonstrations, preference data from noisy labellers, the Bradley-Terry reward model, direct
preference optimisation, and the measurements the chapter makes of them.

Everything is judged against a preference the reader can see but that no training stage reads:

* :func:`hidden_preference` -- the score a "human" gives a review: the value of its adjectives, a fitting second
  clause, no repeated adjective; malformed or repetitive text far below every review;
* :func:`rank_completions` -- the labellers: they rank K completions by hidden score plus Gumbel noise
  (Plackett-Luce, so every pair follows Bradley-Terry); two of them agree on about 71 % of the SFT model's pairs
  (:func:`labeller_agreement`), within the 65-75 % quoted for people;
* :func:`demonstrations`, :func:`train_sft`, :func:`sft_model` -- stage 1 of Ouyang et al. (2022): 300 reviews by
  a demonstrator who writes good ones, the pre-trained model fine-tuned on them with the prompt masked;
* :func:`preference_data` -- 800 groups of K = 6 SFT completions, each ranked by a labeller and expanded into its
  C(6, 2) = 15 (chosen, rejected) pairs; 20 % of the groups held out;
* :class:`RewardModel`, :func:`train_reward_model`, :func:`reward_model` -- stage 2: the SFT network with a scalar
  head at the last real token, fitted with all pairs of a group in one batch element, normalised on SFT samples;
* :func:`train_dpo`, :class:`DPOConfig`, :func:`likelihood_displacement` -- direct preference optimisation on the
  same pairs, and its failure at a too-large learning rate;
* :func:`evaluate_policy`, :func:`win_rate` -- head-to-head win rate against the SFT model by the hidden
  preference, and the KL divergence to it (k1 and k3), for this module's DPO and the RL stage's PPO and GRPO
  (:mod:`solutions.rlhf_policy`);
* :func:`fit_reader_reward`, :func:`completions_to_rank` -- the back end of the chapter's preference widget.

The stages follow Ouyang et al. (2022, "Training language models to follow instructions with human feedback",
Section 3.5) and Rafailov et al. (2023); the losses are the chapter's exercises in :mod:`solutions.rlhf`
(``sft_loss``, ``ranking_to_pairs``, ``reward_model_loss``, ``pairwise_accuracy``, ``sequence_kl``, ``dpo_loss``),
which this module only runs. Measured figures (seeds 0-3, ``benchmarks/rlhf_pipeline.py``) are in the docstrings
of the functions that produce them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .corpus import (CONJUNCTIONS, NEGATIVE_WORDS, NEUTRAL_WORDS, NOUNS, POSITIVE_WORDS, VOCAB, encode,
                     review_prompts, well_formed_review)
from .language_model import (TinyLM, completion_batch, create_reference_model, last_token_positions,
                             pretrained_model, sample, sequence_log_probs, token_log_probs)
from .progress import show_progress
from .rlhf import dpo_loss, pairwise_accuracy, ranking_to_pairs, reward_model_loss, sequence_kl, sft_loss
from .threads import single_threaded

__all__ = [
    "ADJECTIVE_VALUES",
    "LABEL_TEMPERATURE",
    "MALFORMED_SCORE",
    "DPOConfig",
    "DPOResult",
    "PolicyEvaluation",
    "PreferenceData",
    "ReaderRewardModel",
    "RewardModel",
    "RewardModelResult",
    "SFTResult",
    "completions_to_rank",
    "demonstrations",
    "evaluate_policy",
    "fit_reader_reward",
    "group_scores",
    "hidden_preference",
    "labeller_agreement",
    "likelihood_displacement",
    "preference_data",
    "rank_completions",
    "response_loss",
    "reward_model",
    "reward_model_accuracy",
    "sft_model",
    "sft_samples",
    "train_dpo",
    "train_reward_model",
    "train_sft",
    "win_rate",
]

# ----------------------------------------------------------------------------------------- the hidden preference

#: What the hidden "human" thinks of each adjective: strong praise 1.5, praise 1, neutral 0, complaints -1, strong
#: complaints -1.5.
ADJECTIVE_VALUES: dict[str, float] = {
    **{word: 1.0 for word in POSITIVE_WORDS}, "excellent": 1.5, "perfect": 1.5,
    **{word: 0.0 for word in NEUTRAL_WORDS},
    **{word: -1.0 for word in NEGATIVE_WORDS}, "awful": -1.5, "terrible": -1.5,
}
#: A second clause makes a fuller review: +0.5.
SECOND_CLAUSE_BONUS = 0.5
#: ``and`` joining clauses of different sentiment, or ``but`` joining clauses of the same: -0.5.
CONJUNCTION_MISFIT = -0.5
#: The same adjective twice in one review: -0.5.
REPEATED_ADJECTIVE = -0.5
#: Anything that is not a well-formed review (:func:`solutions.corpus.well_formed_review`), cut completions
#: included, scores this, below every well-formed review (the lowest of which scores -3.5).
MALFORMED_SCORE = -4.0
#: A malformed text loses a further 0.5 per repeated word, down to MALFORMED_SCORE - 2.
REPETITION_PENALTY = 0.5
MAX_REPETITION_PENALTY = 2.0


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def _review_score(prompt: str, completion: str) -> float:
    """The hidden score of one review (see :func:`hidden_preference`)."""
    words = completion.split()
    if not well_formed_review(f"{prompt} {completion}"):
        repeats = len(words) - len(set(words))
        return MALFORMED_SCORE - min(MAX_REPETITION_PENALTY, REPETITION_PENALTY * repeats)
    first = ADJECTIVE_VALUES[words[0]]
    if len(words) == 2:  # "<adjective> ."
        return first
    conjunction, second = words[1], ADJECTIVE_VALUES[words[5]]  # "<adj> and|but the <noun> <verb> <adj> ."
    fits = (conjunction == "and") == (_sign(first) == _sign(second))
    return (first + second + SECOND_CLAUSE_BONUS + (0.0 if fits else CONJUNCTION_MISFIT)
            + (REPEATED_ADJECTIVE if words[0] == words[5] else 0.0))


def hidden_preference(prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
    """The hidden "human" score of each completion of a review prompt: higher is preferred.

    It plays the part of the people whose judgement RLHF learns. It is public code the reader can read, but no
    training stage reads it: the labellers see it only through noisy comparisons (:func:`rank_completions`),
    and every other stage learns from those. Each effect of the recipe can therefore be measured against it.

    A well-formed review (:func:`solutions.corpus.well_formed_review`: ``the food was great .`` or ``the food was
    great and the staff were kind .``) scores

    * the value of each adjective (:data:`ADJECTIVE_VALUES`: ``excellent``/``perfect`` 1.5, other praise 1,
      neutral words 0, complaints -1, ``awful``/``terrible`` -1.5),
    * with a second clause, +0.5 (a fuller review), and -0.5 if its conjunction does not fit: ``but`` should join
      clauses of different sentiment (signs), ``and`` clauses of the same (``great and the staff were kind``
      scores 2.5, ``great but the staff were kind`` 2),
    * -0.5 if the same adjective is used twice.

    The best review scores 3.5 (``excellent and the staff were perfect .``), the worst -3.5. Anything else --
    a cut completion, a wrong verb, a run of words -- scores :data:`MALFORMED_SCORE` (-4), and 0.5 less per
    repeated word down to -6: ``great great great great`` scores -5.5. So the preference is richer than
    Chapter 4's sentiment reward: it rewards the words, the shape of the review and its coherence, and it
    punishes the degenerate text that a policy maximising a learned reward without a KL penalty drifts to.

    Args:
        prompts: B review prompts such as ``"the food was"`` (:func:`solutions.corpus.review_prompts`).
        completions: B completion texts, without ``<eos>`` (what ``Completions.completion_texts()`` gives).

    Returns:
        Float64 tensor ``(B,)``.

    Raises:
        ValueError: if the lengths differ or a prompt is not a review prompt.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    known = set(review_prompts())
    for prompt in prompts:
        if prompt not in known:
            raise ValueError(f"not a review prompt ('the <noun> was|were'): {prompt!r}")
    return torch.tensor([_review_score(p, c) for p, c in zip(prompts, completions)], dtype=torch.float64)


# ---------------------------------------------------------------------------------------- demonstrations and SFT

#: How the demonstrator picks each adjective: mostly praise, some neutral words, a few complaints.
DEMONSTRATOR_PROBABILITIES = {"positive": 0.6, "neutral": 0.3, "negative": 0.1}
#: How often the demonstrator writes a second clause, and how often its conjunction fits the two sentiments.
DEMONSTRATOR_SECOND_CLAUSE = 0.5
DEMONSTRATOR_FITTING_CONJUNCTION = 0.9


def demonstrations(n: int = 300, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` demonstrations (prompt, completion) written by a demonstrator who writes good reviews.

    The demonstrator is the labeller of Ouyang et al.'s SFT data (Section 3.4): asked to write what a user would
    want, they write well-formed reviews, mostly positive (adjectives positive, neutral, negative with
    probabilities 0.6, 0.3, 0.1), with a second clause half the time whose conjunction fits the sentiments 90 %
    of the time. Good, not the best: the mean :func:`hidden_preference` of the demonstrations is about 1, against
    the best 3.5, which leaves room for the preference stages. Demonstrations are expensive (a person writes
    each one), so there are few; comparisons (:func:`rank_completions`) are cheaper.

    Args:
        n: number of demonstrations (>= 1); the prompts cycle through :func:`solutions.corpus.review_prompts`,
            each ``n / 10`` times.
        seed: seeds a ``numpy.random.Generator``.

    Returns:
        A list of ``n`` (prompt, completion) pairs, e.g. ``("the food was", "great and the staff were kind .")``.

    Raises:
        ValueError: if ``n`` < 1.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1; got {n!r}")
    rng = np.random.default_rng(seed)
    prompts = review_prompts()
    lexicons = {"positive": POSITIVE_WORDS, "neutral": NEUTRAL_WORDS, "negative": NEGATIVE_WORDS}
    kinds, kind_probabilities = list(DEMONSTRATOR_PROBABILITIES), list(DEMONSTRATOR_PROBABILITIES.values())

    def adjective() -> str:
        lexicon = lexicons[kinds[rng.choice(len(kinds), p=kind_probabilities)]]
        return lexicon[rng.integers(len(lexicon))]

    pairs = []
    for i in range(n):
        prompt = prompts[i % len(prompts)]
        first_noun = prompt.split()[1]
        completion = adjective()
        if rng.random() < DEMONSTRATOR_SECOND_CLAUSE:
            second_noun = [noun for noun in NOUNS if noun != first_noun][rng.integers(len(NOUNS) - 1)]
            second = adjective()
            same = _sign(ADJECTIVE_VALUES[completion]) == _sign(ADJECTIVE_VALUES[second])
            fitting = "and" if same else "but"
            conjunction = fitting if rng.random() < DEMONSTRATOR_FITTING_CONJUNCTION else \
                CONJUNCTIONS[1 - CONJUNCTIONS.index(fitting)]
            completion += f" {conjunction} the {second_noun} {NOUNS[second_noun]} {second}"
        pairs.append((prompt, completion + " ."))
    return pairs


@torch.no_grad()
def response_loss(model: TinyLM, pairs: Sequence[tuple[str, str]]) -> float:
    """The SFT loss of ``model`` on (prompt, completion) pairs: nats per response token (the prompt masked;
    :func:`solutions.rlhf.sft_loss`), e.g. on held-out demonstrations."""
    tokens, attention_mask, completion_mask = completion_batch([p for p, _ in pairs], [c for _, c in pairs])
    logits, _ = model(tokens, attention_mask)
    return float(sft_loss(logits, tokens, completion_mask))


@dataclass
class SFTResult:
    """What :func:`train_sft` returns."""

    model: TinyLM  #: the fine-tuned policy (the model passed in, trained in place), in evaluation mode
    losses: list[float] = field(default_factory=list)  #: the SFT loss of each step's minibatch (nats per token)


@single_threaded()
def train_sft(model: TinyLM, pairs: Sequence[tuple[str, str]], *, n_steps: int = 100, batch_size: int = 32,
              lr: float = 1e-3, seed: int = 0, progress: bool | None = None) -> SFTResult:
    """Supervised fine-tuning (Ouyang et al. 2022, Section 3.5, "SFT"): next-token cross-entropy on the
    demonstrations' responses, the prompt masked (:func:`solutions.rlhf.sft_loss`), minibatches drawn uniformly,
    Adam, the learning rate falling linearly to 0. Trains ``model`` in place, on one CPU thread.

    Args:
        model: the policy to fine-tune (e.g. :func:`solutions.language_model.pretrained_model`).
        pairs: (prompt, completion) demonstrations, e.g. :func:`demonstrations`.
        n_steps: Adam steps (>= 1).
        batch_size: demonstrations per step (>= 1), drawn with replacement.
        lr: initial learning rate (> 0).
        seed: seeds the minibatches (a ``torch.Generator``).
        progress: show a tqdm progress bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        :class:`SFTResult`.

    Raises:
        ValueError: for no demonstrations, or ``n_steps``, ``batch_size`` or ``lr`` not positive.
    """
    if not len(pairs):
        raise ValueError("no demonstrations")
    if n_steps < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"n_steps, batch_size and lr must be positive; got {n_steps}, {batch_size}, {lr}")
    tokens, attention_mask, completion_mask = completion_batch([p for p, _ in pairs], [c for _, c in pairs])
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / n_steps)
    result = SFTResult(model)
    model.train()
    for _ in tqdm(range(n_steps), desc="SFT", disable=not show_progress(progress), mininterval=1.0):
        batch = torch.randint(len(pairs), (batch_size,), generator=generator)
        logits, _ = model(tokens[batch], attention_mask[batch])
        loss = sft_loss(logits, tokens[batch], completion_mask[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        result.losses.append(loss.item())
    model.eval()
    return result


#: SFT weights by the arguments of :func:`sft_model` (in memory only).
_SFT: dict[tuple, dict[str, torch.Tensor]] = {}


def sft_model(seed: int = 0, *, n_demonstrations: int = 300, n_steps: int = 100,
              progress: bool | None = None) -> TinyLM:
    """The SFT policy: :func:`solutions.language_model.pretrained_model` (``seed``) fine-tuned by
    :func:`train_sft` on ``demonstrations(n_demonstrations, seed)``.

    The first call with given arguments trains (1.2 s of CPU after the pre-training); later calls copy the
    weights kept in memory. Each call returns a new model, so training it leaves the next call's model untouched.

    What SFT does (seeds 0-3, ``benchmarks/rlhf_pipeline.py``): the response loss on 200 held-out
    demonstrations falls from 1.33-1.35 to 1.23-1.26 nats per token (100 steps; 300 overfit the 300
    demonstrations and raise it again), the mean hidden score of the samples rises from about -0.25 to 0.5-0.64,
    and the share of well-formed positive reviews from 0.26 to 0.61 (seed 0). About 9 % of its samples are still
    malformed, mostly a repeated subject (``the food was fresh and the food was perfect .``), as the pre-trained
    model's are: 300 demonstrations do not teach that.

    Args:
        seed: seeds the pre-trained model, the demonstrations and the minibatches.
        n_demonstrations: number of demonstrations.
        n_steps: SFT steps (batches of 32).
        progress: show tqdm progress bars while training (default: :func:`~solutions.progress.show_progress`).

    Returns:
        The model, in evaluation mode.
    """
    key = (seed, n_demonstrations, n_steps)
    if key not in _SFT:
        with torch.enable_grad():  # also when called under torch.no_grad()
            model = pretrained_model(seed, progress=progress)
            train_sft(model, demonstrations(n_demonstrations, seed), n_steps=n_steps, seed=seed, progress=progress)
        _SFT[key] = {name: value.clone() for name, value in model.state_dict().items()}
    model = TinyLM(seed=seed)
    model.load_state_dict(_SFT[key])
    return model.eval()


# ----------------------------------------------------------------------------------------------- preference data

#: The labellers' noise: each ranks by hidden score + LABEL_TEMPERATURE x Gumbel noise (Plackett-Luce).
LABEL_TEMPERATURE = 0.75


def rank_completions(scores: torch.Tensor, generator: torch.Generator, temperature: float = LABEL_TEMPERATURE
                     ) -> torch.Tensor:
    """Simulated labellers: each group of K completions ranked, best first, by hidden score plus Gumbel noise.

    Sorting s_i + temperature * g_i with g_i ~ Gumbel(0, 1) independent draws a ranking from the Plackett-Luce
    model with weights exp(s_i / temperature) (Luce 1959; Plackett 1975): the best is completion i with
    probability softmax(s / temperature)_i, the next from the rest likewise, and so on. Every pair of the ranking
    then follows the Bradley-Terry model, P(i ranked above j) = sigma((s_i - s_j) / temperature) -- the model the
    reward model fits, so it is the right model here. Two labellers agree on a pair with probability p^2 +
    (1 - p)^2, p = sigma((s_i - s_j) / temperature): 1/2 on ties, close to 1 on a clear difference.

    With the default temperature 0.75, on the SFT model's samples (:func:`preference_data`, seeds 0-3) two
    labellers agree on 71.7-73.6 % of the pairs (76-78 % of those whose hidden scores differ), within the
    65-75 % quoted for people (Ouyang et al. 2022, Section 5.1: 72.6 +- 1.5 %), and the hidden preference
    orders 78-80 % of the labelled pairs the labeller's way (ties 1/2): the ceiling of any reward model's
    accuracy against the labels. :func:`labeller_agreement` computes the agreement from the noise model.

    Args:
        scores: float ``(N, K)``, the hidden score of each completion of N groups.
        generator: the source of the noise (``torch.Generator().manual_seed(seed)``).
        temperature: the scale of the noise (> 0); 0 is not allowed (the labellers would never disagree).

    Returns:
        Int64 ``(N, K)``: each row the indices 0 .. K - 1 of its completions, best first.

    Raises:
        ValueError: for scores that are not a 2-D floating-point tensor or a temperature that is not positive.
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point() or scores.ndim != 2:
        raise ValueError("scores must be a floating-point tensor (N, K)")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    uniform = torch.rand(scores.shape, generator=generator, dtype=torch.float64)
    gumbel = -torch.log(-torch.log(uniform.clamp_min(1e-300)))
    return torch.argsort(scores.double() + temperature * gumbel, dim=1, descending=True)


def labeller_agreement(scores: torch.Tensor, temperature: float = LABEL_TEMPERATURE,
                       exclude_ties: bool = False) -> float:
    """The probability that two independent labellers (:func:`rank_completions`) order a pair the same way,
    averaged over every pair within each group: the mean of p^2 + (1 - p)^2, p = sigma((s_i - s_j) / temperature).

    Args:
        scores: float ``(N, K)``, hidden scores of N groups of K >= 2 completions.
        temperature: the labellers' noise (> 0).
        exclude_ties: leave out the pairs of equal hidden score (on which labellers agree half the time).

    Returns:
        A float in [0.5, 1].

    Raises:
        ValueError: for fewer than two completions per group, a temperature that is not positive, or (with
            ``exclude_ties``) no pair of different scores.
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError("scores must be a tensor (N, K) with K >= 2")
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    i, j = torch.triu_indices(scores.shape[1], scores.shape[1], 1)
    differences = (scores[:, i] - scores[:, j]).double().flatten()
    if exclude_ties:
        differences = differences[differences != 0]
        if not len(differences):
            raise ValueError("no pair of different scores")
    p = torch.sigmoid(differences / temperature)
    return float((p**2 + (1 - p) ** 2).mean())


@dataclass
class PreferenceData:
    """Comparison groups: K completions of a prompt, their labellers' ranking, and its C(K, 2) pairs.

    Group n is the K rows ``n * K .. n * K + K - 1`` of ``tokens`` (the sampler's order: TRL's). A pair is
    ``(chosen[n, c], rejected[n, c])``, indices 0 .. K - 1 within group n, in the order of
    :func:`solutions.rlhf.ranking_to_pairs`.
    """

    prompts: list[str]  #: the N groups' prompts
    tokens: torch.Tensor  #: int64 (N * K, L): the completions as sampled (a cut completion has no <eos>)
    attention_mask: torch.Tensor  #: bool (N * K, L)
    completion_mask: torch.Tensor  #: bool (N * K, L)
    completions: list[str]  #: the N * K completion texts
    hidden_scores: torch.Tensor  #: float64 (N, K): hidden_preference of each completion (for measuring only)
    rankings: torch.Tensor  #: int64 (N, K): the labeller's ranking of each group, best first
    chosen: torch.Tensor  #: int64 (N, C(K, 2)): the preferred completion of each pair
    rejected: torch.Tensor  #: int64 (N, C(K, 2)): the other one
    train_groups: torch.Tensor  #: int64: the groups the models train on
    held_out_groups: torch.Tensor  #: int64: the groups kept for measuring

    @property
    def num_generations(self) -> int:
        """K, the completions per group."""
        return self.rankings.shape[1]

    def rows(self, groups: torch.Tensor) -> torch.Tensor:
        """Int64: the rows of ``tokens`` of the given groups, group after group."""
        K = self.num_generations
        return (groups[:, None] * K + torch.arange(K)).flatten()

    def pair_scores(self, scores: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(scores of the chosen, scores of the rejected)``, each ``(len(groups), C(K, 2))``, from ``scores``
        ``(len(groups), K)`` of the given groups' completions."""
        return scores.gather(1, self.chosen[groups]), scores.gather(1, self.rejected[groups])

    def hidden_pairs(self, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs of the given groups oriented by the hidden preference, ties left out: ``(preferred,
        other)``, each int64 ``(M, 2)`` of (group, index within the group)."""
        chosen, rejected = self.chosen[groups], self.rejected[groups]
        group = groups[:, None].expand_as(chosen)
        h_chosen = self.hidden_scores[group, chosen]
        h_rejected = self.hidden_scores[group, rejected]
        keep = h_chosen != h_rejected
        right = h_chosen > h_rejected
        better = torch.where(right, chosen, rejected)[keep]
        worse = torch.where(right, rejected, chosen)[keep]
        return torch.stack([group[keep], better], 1), torch.stack([group[keep], worse], 1)


def preference_data(policy: TinyLM | None = None, *, n_groups: int = 800, num_generations: int = 6,
                    held_out_fraction: float = 0.2, temperature: float = LABEL_TEMPERATURE,
                    max_new_tokens: int = 10, seed: int = 0) -> PreferenceData:
    """Preference data as in Ouyang et al. (2022, Section 3.5): for each of ``n_groups`` prompts, K =
    ``num_generations`` completions sampled from the SFT policy, ranked by a noisy labeller
    (:func:`rank_completions`), the ranking expanded into its C(K, 2) (chosen, rejected) pairs
    (:func:`solutions.rlhf.ranking_to_pairs`).

    The prompts cycle through the 10 review prompts, so each appears ``n_groups / 10`` times; the split into
    training and held-out data is therefore by *comparison group* (a random ``held_out_fraction`` of the groups),
    not by prompt: the held-out pairs are new completions of the same prompts. All pairs of a group stay on one
    side, as Ouyang et al. keep a prompt's comparisons together (they are correlated).

    With the default policy the data are kept in memory: a second call with the same arguments returns the same
    data (a new :class:`PreferenceData` holding the same tensors) at once.

    Args:
        policy: the policy that writes the completions (default: ``sft_model(seed)``).
        n_groups: N >= 2, comparison groups.
        num_generations: K >= 2, completions per group (Ouyang et al.: 4 to 9).
        held_out_fraction: in (0, 1); at least one group on each side.
        temperature: the labellers' noise (:func:`rank_completions`).
        max_new_tokens: the most tokens sampled per completion, ``<eos>`` included.
        seed: seeds the sampling, the labels and the split.

    Returns:
        :class:`PreferenceData`.

    Raises:
        ValueError: for a count out of range or a fraction outside (0, 1).
    """
    if isinstance(n_groups, bool) or not isinstance(n_groups, int) or n_groups < 2:
        raise ValueError(f"n_groups must be an integer >= 2; got {n_groups!r}")
    if isinstance(num_generations, bool) or not isinstance(num_generations, int) or num_generations < 2:
        raise ValueError(f"num_generations must be an integer >= 2; got {num_generations!r}")
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1); got {held_out_fraction!r}")
    key = (seed, n_groups, num_generations, held_out_fraction, temperature, max_new_tokens)
    if policy is None and key in _PREFERENCE_DATA:
        return dataclasses.replace(_PREFERENCE_DATA[key])
    cache = policy is None
    policy = sft_model(seed) if policy is None else policy
    generator = torch.Generator().manual_seed(seed + 1_000)
    all_prompts = review_prompts()
    prompts = [all_prompts[n % len(all_prompts)] for n in range(n_groups)]
    with single_threaded():
        batch = sample(policy, prompts, max_new_tokens, num_generations=num_generations, generator=generator)
    completions = batch.completion_texts()
    K = num_generations
    hidden = hidden_preference(batch.prompt_texts(), completions).reshape(n_groups, K)
    rankings = rank_completions(hidden, generator, temperature)
    pairs = torch.tensor([ranking_to_pairs(r.tolist()) for r in rankings], dtype=torch.int64)  # (N, C, 2)
    n_held_out = min(n_groups - 1, max(1, round(held_out_fraction * n_groups)))
    order = torch.randperm(n_groups, generator=generator)
    data = PreferenceData(prompts, batch.tokens, batch.attention_mask, batch.completion_mask, completions, hidden,
                          rankings, pairs[..., 0], pairs[..., 1], order[n_held_out:].sort().values,
                          order[:n_held_out].sort().values)
    if cache:
        _PREFERENCE_DATA[key] = dataclasses.replace(data)
    return data


#: Preference data of the SFT model by the arguments of :func:`preference_data` (in memory only).
_PREFERENCE_DATA: dict[tuple, PreferenceData] = {}


# ---------------------------------------------------------------------------------------------- the reward model


class RewardModel(nn.Module):
    """A reward model r(x, y): the SFT network with its output head replaced by a scalar head, read at the last
    real token (Ouyang et al. 2022, Section 3.5, "Reward modeling": "the SFT model with the final unembedding
    layer removed"; Stiennon et al. 2020).

    The transformer (embeddings, blocks, final layer norm) starts as a copy of the policy's; the head
    ``nn.Linear(d_model, 1)`` starts from N(0, 0.02^2) weights and bias 0. The score of a sequence is the head
    applied to :meth:`TinyLM.hidden_states` at its last real token (:func:`last_token_positions`): the
    ``<eos>`` of a finished completion, the last word of a cut one. The causal network has read the prompt and
    the whole completion there.

    Only differences of rewards are learned (:func:`solutions.rlhf.reward_model_loss`), so the scale and the
    offset are free: after training, :meth:`normalise` stores the mean and the standard deviation of the raw
    scores of SFT samples, and :meth:`forward` and :meth:`score` return (raw - mean) / std, so the SFT model's
    samples score 0 on average with standard deviation 1 (Ouyang et al. normalise to mean 0 so that the RL stage
    starts with no reward on average).

    Args:
        policy: the network to start from (e.g. :func:`sft_model`); it is copied, not changed.
        seed: seeds the head's initial weights.
    """

    def __init__(self, policy: TinyLM, *, seed: int = 0):
        super().__init__()
        self.transformer = copy.deepcopy(policy)
        self.transformer.head = nn.Identity()  # the unembedding is removed; hidden_states does not use it
        self.transformer.requires_grad_(True)
        self.score_head = nn.Linear(policy.config.d_model, 1)
        nn.init.normal_(self.score_head.weight, std=0.02, generator=torch.Generator().manual_seed(seed))
        nn.init.zeros_(self.score_head.bias)
        self.register_buffer("reward_mean", torch.tensor(0.0))
        self.register_buffer("reward_std", torch.tensor(1.0))

    def raw_score(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Float32 ``(B,)``: the head's output at each row's last real token, before normalisation, with
        gradient. Arguments as :meth:`forward`."""
        hidden, _ = self.transformer.hidden_states(tokens, attention_mask)  # (B, L, d_model)
        last = last_token_positions(attention_mask)  # (B,)
        return self.score_head(hidden[torch.arange(len(tokens)), last]).squeeze(1)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The normalised reward of each sequence, float32 ``(B,)``, with gradient.

        Args:
            tokens: int64 ``(B, L)``, prompt and completion in the sampler's layout
                (:func:`solutions.language_model.sample`, :func:`~solutions.language_model.completion_batch`).
            attention_mask: bool ``(B, L)``, True on real tokens.

        Raises:
            ValueError: as :meth:`TinyLM.hidden_states` and :func:`last_token_positions`.
        """
        return (self.raw_score(tokens, attention_mask) - self.reward_mean) / self.reward_std

    @torch.no_grad()
    def score(self, prompts: Sequence, completions: Sequence) -> torch.Tensor:
        """The normalised reward of each (prompt, completion), float32 ``(B,)``, without gradient -- TRL's form of
        a reward function.

        Args:
            prompts: B prompts, texts (``"the food was"``) or token-id lists.
            completions: B completions: texts are read as finished (``<eos>`` is put at the end, as
                :func:`~solutions.language_model.completion_batch` does); pass token-id lists (e.g.
                ``Completions.completion_tokens()``) to score cut completions as they were sampled.

        Raises:
            ValueError: as :func:`~solutions.language_model.completion_batch`.
        """
        tokens, attention_mask, _ = completion_batch(prompts, completions)
        was_training = self.training
        self.eval()
        with single_threaded():
            scores = self(tokens, attention_mask)
        self.train(was_training)
        return scores

    @torch.no_grad()
    def normalise(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """Set the normalisation so that these sequences (SFT samples) score mean 0 and standard deviation 1.

        Raises:
            ValueError: for fewer than two sequences or raw scores that are all equal.
        """
        if len(tokens) < 2:
            raise ValueError("need at least two sequences to normalise")
        raw = self.raw_score(tokens, attention_mask)
        if not raw.std() > 0:
            raise ValueError("the raw scores are all equal: nothing to normalise by")
        self.reward_mean.copy_(raw.mean())
        self.reward_std.copy_(raw.std())


@dataclass
class RewardModelResult:
    """What :func:`train_reward_model` returns; the accuracies are :func:`reward_model_accuracy`'s, one per
    epoch."""

    model: RewardModel  #: the trained, normalised reward model, in evaluation mode
    losses: list[float] = field(default_factory=list)  #: reward_model_loss of each step's minibatch
    train_accuracies: list[float] = field(default_factory=list)  #: on the training pairs, against the labels
    held_out_accuracies: list[float] = field(default_factory=list)  #: on the held-out pairs, against the labels
    held_out_hidden_accuracies: list[float] = field(default_factory=list)  #: held out, against the hidden scores


@torch.no_grad()
def group_scores(model: RewardModel, data: PreferenceData, groups: torch.Tensor) -> torch.Tensor:
    """Float32 ``(len(groups), K)``: the reward model's score of every completion of the given groups."""
    rows = data.rows(groups)
    was_training = model.training
    model.eval()
    scores = model(data.tokens[rows], data.attention_mask[rows]).reshape(len(groups), data.num_generations)
    model.train(was_training)
    return scores


@torch.no_grad()
def reward_model_accuracy(model: RewardModel, data: PreferenceData, groups: torch.Tensor | None = None
                          ) -> dict[str, float]:
    """Pairwise accuracy (:func:`solutions.rlhf.pairwise_accuracy`) of a reward model on the pairs of some groups.

    Returns:
        ``labels``: the fraction of pairs the model orders as the noisy labeller did (ties of the model 1/2);
        ``hidden``: the fraction of pairs with different hidden scores that it orders as the hidden preference
        (pairs of equal hidden score are left out: there is no right answer);
        ``labels_by_hidden``: the fraction of pairs the hidden preference itself orders as the labeller did (ties
        1/2), what a perfect model of the average labeller would score against the labels.

    Args:
        model: the reward model.
        data: the preference data.
        groups: int64 group indices (default ``data.held_out_groups``).
    """
    groups = data.held_out_groups if groups is None else groups
    scores = group_scores(model, data, groups)
    preferred, other = data.hidden_pairs(groups)
    position = {int(g): k for k, g in enumerate(groups)}
    rows_preferred = torch.tensor([position[int(g)] for g in preferred[:, 0]], dtype=torch.int64)
    return {
        "labels": pairwise_accuracy(*data.pair_scores(scores, groups)),
        "hidden": pairwise_accuracy(scores[rows_preferred, preferred[:, 1]], scores[rows_preferred, other[:, 1]]),
        "labels_by_hidden": pairwise_accuracy(*data.pair_scores(data.hidden_scores[groups], groups)),
    }


@torch.no_grad()
def sft_samples(policy: TinyLM, n_per_prompt: int = 50, seed: int = 0, max_new_tokens: int = 10):
    """``n_per_prompt`` completions of each review prompt sampled from ``policy`` (a
    :class:`~solutions.language_model.Completions`): what the reward model is normalised on."""
    with single_threaded():
        return sample(policy, review_prompts(), max_new_tokens, num_generations=n_per_prompt,
                      generator=torch.Generator().manual_seed(seed + 2_000))


@single_threaded()
def train_reward_model(data: PreferenceData, policy: TinyLM, *, n_epochs: int = 4, batch_size: int = 8,
                       lr: float = 1e-3, seed: int = 0, progress: bool | None = None) -> RewardModelResult:
    """Train a Bradley-Terry reward model on comparison groups (Ouyang et al. 2022, Section 3.5, eq. 1).

    Each step takes ``batch_size`` training groups, scores their K completions (K forward rows each, one pass),
    gathers the scores of the C(K, 2) (chosen, rejected) pairs of each group into ``(batch_size, C(K, 2))``
    tensors -- all pairs of a prompt in one batch element, so each completion is scored once and a group counts
    once -- and takes one Adam step on :func:`solutions.rlhf.reward_model_loss`. Each epoch visits the training
    groups once in a random order. The network starts as the SFT policy (:class:`RewardModel`). At the end the
    rewards are normalised on ``policy``'s samples (:func:`sft_samples`, 500 completions).

    The held-out accuracy against the hidden preference rises over the 4 epochs (seed 0: 0.837, 0.851, 0.879,
    0.898) while the accuracy against the labels stays near 0.72: the model learns the average labeller, not
    the noise of each label. 8.6 s of CPU for 640 groups of 6.

    Args:
        data: the comparisons (:func:`preference_data`); the model trains on ``data.train_groups``.
        policy: the SFT policy: the reward model's starting network and the samples it is normalised on.
        n_epochs: passes over the training groups (>= 1).
        batch_size: groups per step (>= 1).
        lr: Adam's learning rate (> 0).
        seed: seeds the head, the order of the groups and the normalisation's samples.
        progress: show a tqdm progress bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        :class:`RewardModelResult`.

    Raises:
        ValueError: for ``n_epochs``, ``batch_size`` or ``lr`` not positive.
    """
    if n_epochs < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"n_epochs, batch_size and lr must be positive; got {n_epochs}, {batch_size}, {lr}")
    model = RewardModel(policy, seed=seed)
    result = RewardModelResult(model)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    K = data.num_generations
    train = data.train_groups
    n_batches = math.ceil(len(train) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / (n_epochs * n_batches))
    bar = tqdm(total=n_epochs * n_batches, desc="reward model", disable=not show_progress(progress),
               mininterval=1.0)
    for _ in range(n_epochs):
        model.train()
        order = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(order), batch_size):
            groups = order[start: start + batch_size]
            rows = data.rows(groups)
            scores = model(data.tokens[rows], data.attention_mask[rows]).reshape(len(groups), K)  # (B, K)
            rewards_chosen, rewards_rejected = data.pair_scores(scores, groups)  # (B, C(K, 2)) each
            loss = reward_model_loss(rewards_chosen, rewards_rejected)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            result.losses.append(loss.item())
            bar.update()
        train_accuracy = reward_model_accuracy(model, data, train)
        held_out = reward_model_accuracy(model, data, data.held_out_groups)
        result.train_accuracies.append(train_accuracy["labels"])
        result.held_out_accuracies.append(held_out["labels"])
        result.held_out_hidden_accuracies.append(held_out["hidden"])
    bar.close()
    model.eval()
    samples = sft_samples(policy, seed=seed)
    model.normalise(samples.tokens, samples.attention_mask)
    return result


#: Reward-model weights by the arguments of :func:`reward_model` (in memory only).
_REWARD_MODELS: dict[tuple, dict[str, torch.Tensor]] = {}


def reward_model(seed: int = 0, *, progress: bool | None = None) -> RewardModel:
    """The chapter's reward model: :func:`train_reward_model` with its defaults on ``preference_data(seed=seed)``
    (800 groups of 6 completions of ``sft_model(seed)``), normalised on the SFT model's samples.

    The first call trains (8.6 s of CPU after the SFT model); later calls copy the weights kept in memory.
    Each call returns a new model, in evaluation mode.

    Held-out pairwise accuracy (160 groups, 2,400 pairs; seeds 0-3, ``benchmarks/rlhf_pipeline.py``): against
    the hidden preference 0.898, 0.888, 0.871, 0.876 (target >= 0.85; pairs of equal hidden score left out),
    against the noisy labels 0.708-0.740, where the hidden preference itself scores 0.779-0.800.

    What it gets wrong is what a policy will find. Seed 0's model scores ``excellent and the staff were perfect
    .`` (the best review, hidden 3.5) 1.59, but ``great great great great great great .`` 1.43, nine
    ``perfect`` in a row 1.61 and ``great and the food was kind .`` (the subject repeated) 1.06 -- all malformed,
    hidden -4 to -6. The SFT samples it learned from hold almost no repeated compliments, so nothing taught it
    that they are bad; the repeated subject is in about 5 % of them, but it is one word's difference from a
    good review, and the model has not learned to see it. Maximised without a KL penalty, it leads the policy
    to such text.

    Args:
        seed: seeds the SFT model, the preference data and the training.
        progress: show tqdm progress bars while training (default: :func:`~solutions.progress.show_progress`).
    """
    key = (seed,)
    if key not in _REWARD_MODELS:
        policy = sft_model(seed, progress=progress)
        with torch.enable_grad():  # also when called under torch.no_grad()
            result = train_reward_model(preference_data(seed=seed), policy, seed=seed, progress=progress)
        _REWARD_MODELS[key] = {name: value.clone() for name, value in result.model.state_dict().items()}
    model = RewardModel(TinyLM(seed=seed), seed=seed)
    model.load_state_dict(_REWARD_MODELS[key])
    return model.eval()


# ----------------------------------------------------------------------------------------- evaluating a policy


@dataclass
class PolicyEvaluation:
    """What :func:`evaluate_policy` measures of a policy against the reference (SFT) policy."""

    win_rate: float  #: share of head-to-head comparisons the policy's completion wins by the hidden preference
    hidden_score: float  #: mean hidden preference of the policy's samples
    reference_hidden_score: float  #: the same for the reference policy's samples
    kl_k1: float  #: mean over the policy's samples of the k1 estimate of KL(pi || pi_ref) (nats per completion)
    kl_k3: float  #: the same with the k3 estimate
    well_formed: float  #: share of the policy's samples that are well-formed reviews
    reward: float | None = None  #: mean reward-model score of the policy's samples (if a reward model is given)
    samples: list[str] = field(default_factory=list)  #: the first samples' texts


def _hidden_of(batch) -> torch.Tensor:
    return hidden_preference(batch.prompt_texts(), batch.completion_texts())


@torch.no_grad()
def evaluate_policy(policy: TinyLM, reference_policy: TinyLM, prompts: Sequence[str] | None = None, *,
                    n_per_prompt: int = 50, max_new_tokens: int = 10, reward: RewardModel | None = None,
                    seed: int = 0, n_shown: int = 10) -> PolicyEvaluation:
    """Measure a policy against a reference policy (the SFT model) on the review prompts.

    ``n_per_prompt`` completions of each prompt are sampled from each policy (two independent generators seeded
    from ``seed``), and

    * the win rate: completion i of the policy against completion i of the reference, same prompt, judged by
      :func:`hidden_preference`; a tie counts 1/2 (the head-to-head comparisons of Ouyang et al. 2022, Section
      4.1, with the hidden preference as the judge);
    * the KL divergence KL(pi || pi_ref) of whole completions, estimated on the policy's own samples with
      :func:`solutions.rlhf.sequence_kl` (k1 and k3, each the mean over the samples): the log-probabilities of
      the sampled tokens under the policy come from the sampler, those under the reference from one forward pass
      (:func:`~solutions.language_model.token_log_probs`).

    Args:
        policy: the policy to measure.
        reference_policy: the policy it is compared with and whose divergence is measured (the SFT model).
        prompts: review prompts (default: the 10 of :func:`solutions.corpus.review_prompts`).
        n_per_prompt: samples per prompt and policy (>= 1).
        max_new_tokens: as :func:`~solutions.language_model.sample`.
        reward: a reward model whose mean score of the policy's samples to report too (optional).
        seed: seeds the sampling.
        n_shown: how many of the policy's samples to keep as texts.

    Returns:
        :class:`PolicyEvaluation`.

    Raises:
        ValueError: for ``n_per_prompt`` < 1, a prompt that is not a review prompt, and as
            :func:`~solutions.language_model.sample`.
    """
    if isinstance(n_per_prompt, bool) or not isinstance(n_per_prompt, int) or n_per_prompt < 1:
        raise ValueError(f"n_per_prompt must be an integer >= 1; got {n_per_prompt!r}")
    prompts = review_prompts() if prompts is None else list(prompts)
    with single_threaded():
        ours = sample(policy, prompts, max_new_tokens, num_generations=n_per_prompt,
                      generator=torch.Generator().manual_seed(seed))
        theirs = sample(reference_policy, prompts, max_new_tokens, num_generations=n_per_prompt,
                        generator=torch.Generator().manual_seed(seed + 1))
        ref_log_probs = token_log_probs(reference_policy, ours.tokens, ours.attention_mask)
        scores = None if reward is None else reward(ours.tokens, ours.attention_mask)
    h_ours, h_theirs = _hidden_of(ours), _hidden_of(theirs)
    texts = ours.texts()
    return PolicyEvaluation(
        win_rate=pairwise_accuracy(h_ours, h_theirs),
        hidden_score=float(h_ours.mean()), reference_hidden_score=float(h_theirs.mean()),
        kl_k1=float(sequence_kl(ours.log_probs, ref_log_probs, ours.completion_mask, "k1").mean()),
        kl_k3=float(sequence_kl(ours.log_probs, ref_log_probs, ours.completion_mask, "k3").mean()),
        well_formed=float(np.mean([well_formed_review(t) for t in texts])),
        reward=None if scores is None else float(scores.mean()), samples=texts[:n_shown])


def win_rate(policy: TinyLM, reference_policy: TinyLM, prompts: Sequence[str] | None = None, *,
             n_per_prompt: int = 50, max_new_tokens: int = 10, seed: int = 0) -> float:
    """The fraction of head-to-head comparisons (same prompt, one sample of each policy) that ``policy``'s
    completion wins by :func:`hidden_preference`, ties counted 1/2 -- :attr:`PolicyEvaluation.win_rate` of
    :func:`evaluate_policy` with the same arguments."""
    return evaluate_policy(policy, reference_policy, prompts, n_per_prompt=n_per_prompt,
                           max_new_tokens=max_new_tokens, seed=seed, n_shown=0).win_rate


# ------------------------------------------------------------------------------------------------------- DPO


@dataclass
class DPOConfig:
    """Hyper-parameters of :func:`train_dpo`, with the names of TRL's ``DPOConfig``.

    The defaults are the chapter's, chosen on seeds 0-4 with :func:`preference_data`'s 800 groups; TRL's differ
    where a large model needs it (``learning_rate`` 1e-6, ``beta`` 0.1, ``rpo_alpha`` None). What was measured
    (win rate against the SFT model by the hidden preference, :func:`evaluate_policy` with 1,000 head-to-head
    comparisons, standard error about 0.014; KL k1 to the SFT model in nats per completion):

    * the defaults (beta 0.3, 2e-3, 3 epochs, ``rpo_alpha`` 0.1): win rate 0.780, 0.748, 0.764, 0.768, 0.780
      (seeds 0-4), KL 1.1-1.4, 89-93 % well-formed reviews, mean hidden score about 1.5 against the SFT model's
      0.5. Just above the issue's 0.75, not far: what is left are malformed reviews (about 7 %, mostly the
      subject repeated, ``the food was fresh and the food was perfect .``, as often as in the SFT model's own
      samples) and ``but`` joining two compliments (a 0.5 difference, which the labellers get right 66 % of the
      time). Two epochs gave 0.739-0.764, 1,200 groups 0.740-0.806, K = 8 (600 groups) 0.744-0.777,
      beta 0.5 0.723-0.740, 4 epochs at 1e-3 0.745-0.761: a plateau;
    * plain DPO (``rpo_alpha=None``, otherwise the defaults; 500 comparisons): 0.819, 0.755, 0.715, 0.720
      (seeds 0-3) with KL 2.3-4.0 and 77-88 % well-formed; at beta 0.5, 1e-3 it reached 0.78 on seeds 0 and 1
      and 0.63 on seed 2, and at beta 0.3, 1e-3 seed 0 collapsed (win rate 0.44, KL 6, half the samples
      malformed). Its loss sees only differences of log-probabilities, so the tokens that the chosen and the
      rejected completion share (the full stop, ``<eos>``, ``the`` after ``and``) get no net gradient and drift
      as the network changes for other reasons: the policy stops ending its reviews. The SFT loss on the
      chosen completions (RPO: Pang et al. 2024, "Iterative reasoning preference optimization"; TRL's
      ``rpo_alpha``) holds them in place; with ``rpo_alpha`` 1 it holds them too well (win rate 0.65-0.68);
    * beta: the DPO optimum, pi_ref exp(r / beta) with the labellers' reward r = hidden / 0.75, would beat the
      SFT model 81 % of the time at beta 1 (KL 0.75), 94 % at 0.5 (KL 2.1), 98 % at 0.3 (KL 3.5): a small beta
      asks for a large move, which the offline data cannot guide (at beta 0.1 every setting tried lost
      well-formedness).

    Raises:
        ValueError: (on construction) for ``beta`` or ``learning_rate`` not positive, a count < 1, or a negative
            ``rpo_alpha``.
    """

    beta: float = 0.3  #: the KL coefficient of the implicit reward beta ln(pi_theta / pi_ref)
    learning_rate: float = 2e-3  #: Adam's step size, falling linearly to 0
    num_train_epochs: int = 3  #: passes over the training groups
    per_device_train_batch_size: int = 8  #: groups per step (each brings its C(K, 2) pairs)
    rpo_alpha: float | None = 0.1  #: weight of the SFT loss on the chosen completions (RPO); None: plain DPO

    def __post_init__(self):
        for name in ("beta", "learning_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number; got {value!r}")
        for name in ("num_train_epochs", "per_device_train_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        if self.rpo_alpha is not None and (isinstance(self.rpo_alpha, bool) or not isinstance(
                self.rpo_alpha, int | float) or not 0 <= self.rpo_alpha < math.inf):
            raise ValueError(f"rpo_alpha must be None or a number >= 0; got {self.rpo_alpha!r}")


@dataclass
class DPOResult:
    """What :func:`train_dpo` returns: the policy and, per step, what TRL's ``DPOTrainer`` logs (means over the
    step's pairs)."""

    model: TinyLM  #: the trained policy, in evaluation mode
    config: DPOConfig
    losses: list[float] = field(default_factory=list)  #: dpo_loss (without the RPO term)
    nll_losses: list[float] = field(default_factory=list)  #: the SFT loss on the chosen (with ``rpo_alpha``)
    chosen_logps: list[float] = field(default_factory=list)  #: ln pi_theta(y_w | x) (TRL: logps/chosen)
    rejected_logps: list[float] = field(default_factory=list)  #: ln pi_theta(y_l | x) (logps/rejected)
    rewards_chosen: list[float] = field(default_factory=list)  #: beta ln(pi_theta / pi_ref)(y_w) (rewards/chosen)
    rewards_rejected: list[float] = field(default_factory=list)  #: the same for y_l (rewards/rejected)
    reward_accuracies: list[float] = field(default_factory=list)  #: share of pairs with the chosen reward higher
    held_out_accuracy: float = float("nan")  #: implicit-reward accuracy on the held-out pairs, against the labels
    held_out_hidden_accuracy: float = float("nan")  #: the same against the hidden preference (ties left out)

    @property
    def reward_margins(self) -> list[float]:
        """rewards/margins: the mean of beta (log-ratio of y_w - log-ratio of y_l) of each step."""
        return [c - r for c, r in zip(self.rewards_chosen, self.rewards_rejected)]


def _group_logps(model: TinyLM, data: PreferenceData, groups: torch.Tensor) -> torch.Tensor:
    """``(len(groups), K)``: ln pi(completion | prompt) of the groups' completions, with gradient."""
    rows = data.rows(groups)
    log_probs = token_log_probs(model, data.tokens[rows], data.attention_mask[rows])
    return (log_probs * data.completion_mask[rows]).sum(dim=1).reshape(len(groups), data.num_generations)


@single_threaded()
def train_dpo(data: PreferenceData, policy: TinyLM, config: DPOConfig | None = None, *, seed: int = 0,
              progress: bool | None = None) -> DPOResult:
    """Direct preference optimisation (Rafailov et al. 2023, eq. 7) on the reward model's comparisons.

    The policy starts as a copy of ``policy`` (the SFT model), which is also the frozen reference pi_ref
    (:func:`~solutions.language_model.create_reference_model`); the reference's log-probabilities of every
    completion are computed once. Each step takes ``per_device_train_batch_size`` training groups, computes
    ln pi_theta(y | x) of their K completions (one forward pass, sums over the completion tokens), gathers the
    C(K, 2) (chosen, rejected) pairs of each group, flattens them to (N,) and takes one Adam step on
    :func:`solutions.rlhf.dpo_loss` -- plus, with ``rpo_alpha``, that weight times the SFT loss
    (:func:`solutions.rlhf.sft_loss`, prompt masked) on the chosen completion of every pair, as TRL's
    ``rpo_alpha`` does (:class:`DPOConfig` says why the chapter uses it). The learning rate falls linearly to 0.
    No reward model, no sampling: the labels act on the policy directly.

    What it logs per step is what TRL's ``DPOTrainer`` logs (:class:`DPOResult`); at the end it measures the
    implicit reward beta ln(pi_theta / pi_ref) as a reward model on the held-out pairs.

    Args:
        data: the comparisons (:func:`preference_data`); training on ``data.train_groups``.
        policy: the SFT policy (copied, not changed).
        config: hyper-parameters (default :class:`DPOConfig`).
        seed: seeds the order of the groups.
        progress: show a tqdm progress bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        :class:`DPOResult`.

    Raises:
        ValueError: if ``config`` is not a :class:`DPOConfig`.
    """
    config = config or DPOConfig()
    if not isinstance(config, DPOConfig):
        raise ValueError(f"config must be a DPOConfig; got {type(config).__name__}")
    reference = create_reference_model(policy)
    model = copy.deepcopy(policy)
    model.requires_grad_(True)
    with torch.no_grad():
        all_groups = torch.arange(len(data.prompts))
        ref_logps = _group_logps(reference, data, all_groups)  # (N, K)
    result = DPOResult(model, config)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, foreach=True)
    train, size, K = data.train_groups, config.per_device_train_batch_size, data.num_generations
    n_steps = config.num_train_epochs * math.ceil(len(train) / size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / n_steps)
    bar = tqdm(total=n_steps, desc="DPO", disable=not show_progress(progress), mininterval=1.0)
    model.eval()  # no dropout; the same network as the reference at the start
    for _ in range(config.num_train_epochs):
        order = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(order), size):
            groups = order[start: start + size]
            rows = data.rows(groups)
            tokens, completion_mask = data.tokens[rows], data.completion_mask[rows]
            logits, _ = model(tokens, data.attention_mask[rows])
            logps = sequence_log_probs(logits, tokens, completion_mask).reshape(len(groups), K)  # (B, K)
            chosen_logps, rejected_logps = (t.flatten() for t in data.pair_scores(logps, groups))
            ref_chosen, ref_rejected = (t.flatten() for t in data.pair_scores(ref_logps[groups], groups))
            loss = preference_loss = dpo_loss(chosen_logps, rejected_logps, ref_chosen, ref_rejected,
                                              beta=config.beta)
            if config.rpo_alpha is not None:  # the chosen completion of every pair, as often as it is chosen
                chosen_rows = (torch.arange(len(groups))[:, None] * K + data.chosen[groups]).flatten()
                nll = sft_loss(logits[chosen_rows], tokens[chosen_rows], completion_mask[chosen_rows])
                loss = loss + config.rpo_alpha * nll
                result.nll_losses.append(nll.item())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                rewards_chosen = config.beta * (chosen_logps - ref_chosen)
                rewards_rejected = config.beta * (rejected_logps - ref_rejected)
            result.losses.append(preference_loss.item())
            result.chosen_logps.append(chosen_logps.mean().item())
            result.rejected_logps.append(rejected_logps.mean().item())
            result.rewards_chosen.append(rewards_chosen.mean().item())
            result.rewards_rejected.append(rewards_rejected.mean().item())
            result.reward_accuracies.append(pairwise_accuracy(rewards_chosen, rewards_rejected))
            bar.update()
    bar.close()
    with torch.no_grad():
        held = data.held_out_groups
        implicit = config.beta * (_group_logps(model, data, held) - ref_logps[held])  # (H, K)
        result.held_out_accuracy = pairwise_accuracy(*data.pair_scores(implicit, held))
        preferred, other = data.hidden_pairs(held)
        position = torch.full((len(data.prompts),), -1, dtype=torch.int64)
        position[held] = torch.arange(len(held))
        result.held_out_hidden_accuracy = pairwise_accuracy(implicit[position[preferred[:, 0]], preferred[:, 1]],
                                                            implicit[position[other[:, 0]], other[:, 1]])
    model.eval()
    return result


# ------------------------------------------------------------------------------------- the preference widget


@dataclass
class ReaderRewardModel:
    """A Bradley-Terry reward model fitted to a reader's own rankings by :func:`fit_reader_reward`: a weight per
    word, r(y) = sum of the weights of the words of completion y."""

    weights: np.ndarray  #: float64 (len(VOCAB),): the weight of each token (0 for words never compared)
    n_pairs: int  #: the comparisons it was fitted to
    training_accuracy: float  #: the share of those comparisons it orders the reader's way (ties 1/2)
    l2: float  #: the strength of the prior that pulls each weight towards 0

    def score(self, prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
        """Float64 ``(B,)``: the reward of each completion (the prompt does not enter: the model sees the
        completion's words only).

        Raises:
            ValueError: if the lengths differ or a word is not in the vocabulary.
        """
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        return torch.from_numpy(_word_counts(completions) @ self.weights)

    def word_weights(self) -> dict[str, float]:
        """The non-zero weights by word, largest first: what the model learned from the reader."""
        order = np.argsort(-self.weights)
        return {VOCAB[i]: float(self.weights[i]) for i in order if self.weights[i] != 0}


def _word_counts(completions: Sequence[str]) -> np.ndarray:
    """Float64 ``(B, len(VOCAB))``: how often each token occurs in each completion text."""
    counts = np.zeros((len(completions), len(VOCAB)))
    for row, text in enumerate(completions):
        for token in encode(text, bos=False):
            counts[row, token] += 1
    return counts


def fit_reader_reward(completions: Sequence[str], rankings: Sequence[Sequence[int]], *, l2: float = 0.1,
                      n_iterations: int = 50) -> ReaderRewardModel:
    """Fit a reward model to a reader's rankings in milliseconds: the back end of the chapter's preference widget.

    The reader ranks a few completions (say 4 to 8, of one prompt or two); each ranking is expanded into its
    pairs (:func:`solutions.rlhf.ranking_to_pairs`) and a linear Bradley-Terry model on word counts,
    r(y) = w . counts(y), is fitted by maximising the likelihood sum ln sigma(r(y_w) - r(y_l)) minus
    ``l2`` / 2 |w|^2 -- the reward model's loss with a Gaussian prior, convex, solved by Newton's method. A
    network would overfit a handful of labels at once; a weight per word can be read.

    What so few labels can teach, and what they cannot: a word that occurs in no compared completion, or equally
    often on both sides of every pair, gets weight 0 (the model knows nothing about it); words that always occur
    together share the credit; the model cannot see order, grammar or the prompt, so a string of the words the
    reader liked scores higher still (a miniature of reward hacking). The training accuracy is near 1 whenever
    the reader was consistent; it says nothing about new completions.

    Args:
        completions: the completion texts the reader saw (without the prompt), e.g. from
            :func:`completions_to_rank`.
        rankings: one or more rankings, each the indices (into ``completions``) of the completions of one prompt,
            best first; together at least one pair.
        l2: the prior's strength (> 0): larger keeps the weights smaller and the fit smoother.
        n_iterations: Newton steps (the fit converges in a few).

    Returns:
        :class:`ReaderRewardModel`.

    Raises:
        ValueError: for no pair, an index outside ``completions``, a malformed ranking, ``l2`` not positive, or a
            word outside the vocabulary.
    """
    if isinstance(l2, bool) or not isinstance(l2, int | float) or not l2 > 0:
        raise ValueError(f"l2 must be positive; got {l2!r}")
    pairs = [pair for ranking in rankings for pair in ranking_to_pairs(ranking)]
    if not pairs:
        raise ValueError("the rankings give no pair: rank at least two completions")
    if any(not 0 <= index < len(completions) for pair in pairs for index in pair):
        raise ValueError(f"a ranking names a completion outside 0 .. {len(completions) - 1}")
    counts = _word_counts(completions)
    chosen, rejected = np.array(pairs).T
    X = counts[chosen] - counts[rejected]  # (P, V): r(y_w) - r(y_l) = X @ w
    w = np.zeros(len(VOCAB))
    for _ in range(n_iterations):
        p = 1.0 / (1.0 + np.exp(-(X @ w)))  # P(y_w preferred) under the model
        gradient = X.T @ (1.0 - p) - l2 * w  # of the log-likelihood plus the log-prior
        hessian = -(X.T * (p * (1.0 - p))) @ X - l2 * np.eye(len(VOCAB))
        step = np.linalg.solve(hessian, gradient)
        w = w - step
        if np.abs(step).max() < 1e-10:
            break
    w[np.abs(w) < 1e-12] = 0.0
    margins = X @ w
    return ReaderRewardModel(w, len(pairs), float(np.mean((margins > 0) + 0.5 * (margins == 0))), float(l2))


def completions_to_rank(prompt: str = "the food was", n: int = 6, *, policy: TinyLM | None = None, seed: int = 0,
                        max_new_tokens: int = 10) -> list[str]:
    """``n`` different completions of ``prompt`` sampled from the SFT policy, for the reader to rank.

    Samples in batches of ``4 n`` until ``n`` distinct texts are found (at most 20 batches).

    Args:
        prompt: a review prompt.
        n: how many (>= 2).
        policy: the policy to sample (default ``sft_model(0)``).
        seed: seeds the sampling.
        max_new_tokens: as :func:`~solutions.language_model.sample`.

    Raises:
        ValueError: for ``n`` < 2 or if fewer than ``n`` distinct completions turned up.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2; got {n!r}")
    policy = sft_model(0) if policy is None else policy
    generator = torch.Generator().manual_seed(seed)
    found: list[str] = []
    with single_threaded():
        for _ in range(20):
            for text in sample(policy, [prompt], max_new_tokens, num_generations=4 * n,
                               generator=generator).completion_texts():
                if text not in found:
                    found.append(text)
                if len(found) == n:
                    return found
    raise ValueError(f"found only {len(found)} distinct completions of {prompt!r}")


def likelihood_displacement(data: PreferenceData, policy: TinyLM, *,
                            learning_rates: Sequence[float] = (2e-3, 2e-2), config: DPOConfig | None = None,
                            seed: int = 0, progress: bool | None = None) -> dict[float, DPOResult]:
    """DPO's failure mode, for the chapter's figure: plain DPO (no RPO term) at the chapter's learning rate and at
    ten times it, with the logged ln pi_theta(y_w | x) and ln pi_theta(y_l | x) of every step
    (:attr:`DPOResult.chosen_logps`, :attr:`DPOResult.rejected_logps`).

    The DPO loss depends only on the *difference* of the two log-ratios, so it falls as well when both
    log-probabilities fall, the rejected faster; the probability taken from the data's completions goes where
    the loss does not look -- here, to text that is not a review ("likelihood displacement": Razin et al. 2024,
    "Unintentional unalignment"; Pal et al. 2024, "Smaug", Section 3; Rafailov et al. 2024, "From r to Q*",
    Section 5.2, on the chosen log-probability falling in DPO). Measured (seed 0, 800 groups, beta 0.3,
    3 epochs, means of the first and the last tenth of the steps; both start near -6.6 nats): at 2e-3 the
    chosen log-probability goes from -8.0 to -8.2 and the rejected from -8.7 to -10.7 (win rate against SFT
    0.82 but KL 2.3 and 88 % well-formed, against the chapter's 1.1 and 93 % with ``rpo_alpha`` 0.1); at 2e-2
    both crash in the first step, to about -30, end near -24 and -26, and the policy writes no review at all
    (win rate 0.001, KL 54 nats). 10.6 s of CPU for the pair.

    Args:
        data, policy, seed, progress: as :func:`train_dpo`.
        learning_rates: the learning rates to compare (each > 0).
        config: the other hyper-parameters (default: :class:`DPOConfig` with ``rpo_alpha=None``); its
            ``learning_rate`` is replaced.

    Returns:
        ``{learning_rate: DPOResult}``.

    Raises:
        ValueError: as :class:`DPOConfig` and :func:`train_dpo`.
    """
    config = config or DPOConfig(rpo_alpha=None)
    return {lr: train_dpo(data, policy, dataclasses.replace(config, learning_rate=lr), seed=seed,
                          progress=progress)
            for lr in learning_rates}
