"""The InstructGPT recipe on the tiny language model (Chapter 6): a hidden "human" preference, supervised
fine-tuning on demonstrations, preference data from noisy labellers, the Bradley-Terry reward model, direct
preference optimisation, and the measurements the chapter makes of them.

Everything is judged against a preference the reader can see but that no training stage reads:

* :func:`hidden_preference` -- the score a "human" gives a review (well-formed, positive, a fitting second
  clause; malformed or repetitive text far below). The labellers (:func:`rank_completions`) see it only through
  Plackett-Luce noise, so two of them agree on about 70 % of pairs, as the lecture notes quote for people;
* :func:`demonstrations` and :func:`sft_model` -- stage 1 of Ouyang et al. (2022): a few hundred reviews written by
  a demonstrator who writes good reviews, and the pre-trained model fine-tuned on them with the prompt masked
  (:func:`solutions.rlhf.sft_loss`).

The stages follow Ouyang et al. (2022, "Training language models to follow instructions with human feedback",
Section 3.5); the losses are the chapter's exercises in :mod:`solutions.rlhf`, which this module only runs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .corpus import (CONJUNCTIONS, NEGATIVE_WORDS, NEUTRAL_WORDS, NOUNS, POSITIVE_WORDS, review_prompts,
                     well_formed_review)
from .language_model import TinyLM, completion_batch, last_token_positions, pretrained_model, sample
from .progress import show_progress
from .rlhf import pairwise_accuracy, ranking_to_pairs, reward_model_loss, sft_loss
from .threads import single_threaded

__all__ = [
    "ADJECTIVE_VALUES",
    "LABEL_TEMPERATURE",
    "MALFORMED_SCORE",
    "PreferenceData",
    "RewardModel",
    "RewardModelResult",
    "SFTResult",
    "demonstrations",
    "group_scores",
    "hidden_preference",
    "labeller_agreement",
    "preference_data",
    "rank_completions",
    "response_loss",
    "reward_model",
    "reward_model_accuracy",
    "sft_model",
    "sft_samples",
    "train_reward_model",
    "train_sft",
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

    The first call with given arguments trains (about 1 s of CPU after the pre-training); later calls copy the
    weights kept in memory. Each call returns a new model, so training it leaves the next call's model untouched.

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

    With the default temperature 0.75, on the SFT model's samples (6 per prompt, 300 groups) two labellers agree
    on 71 % of the pairs (76 % of those whose hidden scores differ), within the 65-75 % quoted for people
    (Ouyang et al. 2022, Section 5.1: 72.6 +- 1.5 %), and a labeller ranks a pair the hidden preference's way
    84 % of the time (ties excluded). :func:`labeller_agreement` computes the agreement from the noise model.

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


@torch.no_grad()
def preference_data(policy: TinyLM | None = None, *, n_groups: int = 400, num_generations: int = 6,
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
    return PreferenceData(prompts, batch.tokens, batch.attention_mask, batch.completion_mask, completions, hidden,
                          rankings, pairs[..., 0], pairs[..., 1], order[n_held_out:].sort().values,
                          order[:n_held_out].sort().values)


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
    (400 groups of 6 completions of ``sft_model(seed)``), normalised on the SFT model's samples.

    The first call trains (about 5 s of CPU after the SFT model); later calls copy the weights kept in memory.
    Each call returns a new model, in evaluation mode.

    Args:
        seed: seeds the SFT model, the preference data and the training.
        progress: show tqdm progress bars while training (default: :func:`~solutions.progress.show_progress`).
    """
    key = (seed,)
    if key not in _REWARD_MODELS:
        policy = sft_model(seed, progress=progress)
        result = train_reward_model(preference_data(policy, seed=seed), policy, seed=seed, progress=progress)
        _REWARD_MODELS[key] = {name: value.clone() for name, value in result.model.state_dict().items()}
    model = RewardModel(TinyLM(seed=seed), seed=seed)
    model.load_state_dict(_REWARD_MODELS[key])
    return model.eval()
