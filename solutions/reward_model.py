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
from tqdm.auto import tqdm

from .corpus import (CONJUNCTIONS, NEGATIVE_WORDS, NEUTRAL_WORDS, NOUNS, POSITIVE_WORDS, review_prompts,
                     well_formed_review)
from .language_model import TinyLM, completion_batch, pretrained_model, sample
from .progress import show_progress
from .rlhf import sft_loss
from .threads import single_threaded

__all__ = [
    "ADJECTIVE_VALUES",
    "MALFORMED_SCORE",
    "SFTResult",
    "demonstrations",
    "hidden_preference",
    "response_loss",
    "sft_model",
    "train_sft",
]

# ------------------------------------------------------------------------------------------------ the hidden preference

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


# ------------------------------------------------------------------------------------------------ demonstrations and SFT

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
