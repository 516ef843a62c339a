"""The synthetic corpus of the tiny language model (Chapters 4-6): its vocabulary, its sentences, its rewards.

Nothing is downloaded: the code writes the corpus itself, from a seed, in two families of short sentences.

* **Reviews** (Chapter 4's sentiment reward, Chapter 6's hidden "human" preference), e.g.
  ``the food was fine but the staff were rude .`` -- a subject, ``was``/``were`` (agreeing with the subject),
  an adjective, and with probability :data:`SECOND_CLAUSE_PROBABILITY` a second clause joined by ``and`` or
  ``but``. Each adjective is neutral with probability 0.6, positive with 0.2 and negative with 0.2
  (:data:`ADJECTIVE_PROBABILITIES`), so the corpus is mostly neutral or mixed and its mean sentiment is 0: a
  model pre-trained on it has room to become more positive.
* **Arithmetic** (Chapter 5's verifiable reward), e.g. ``two plus three is five .`` -- one of the 66 additions
  of whole numbers whose sum is at most ten, written as words. The corpus is deliberately sloppy: a fraction
  :data:`ARITHMETIC_ERROR_RATE` (30 %) of its sentences state a wrong answer, drawn uniformly from the ten other
  numbers. A model that learned the corpus perfectly would
  therefore be right about 70 % of the time when it samples, and reinforcement learning with the rule
  :func:`arithmetic_reward` has room to raise that.

Every sentence splits into a *prompt* (``the food was``, ``two plus three is``) and a *completion*
(``fine but the staff were rude .``, ``five .``); the model reads ``<bos>`` + prompt and writes the completion
followed by ``<eos>``.

Tokens are whole words. Token 0 is ``<pad>``, 1 is ``<bos>`` (beginning of sequence), 2 is ``<eos>`` (end of
sequence); the words follow (:data:`VOCAB`, 56 tokens in all).

The two programmatic rewards score a completion against a rule the reader can see, so that every effect of
training can be measured against the truth:

* :func:`sentiment_reward` -- +1 per positive word, -1 per negative word, clipped to [-2, 2];
* :func:`review_reward` -- the same for a well-formed review (:func:`well_formed_review`), -2 for anything else
  (what Chapter 4's REINFORCE optimises: on the words alone it learns to write strings of positive words);
* :func:`arithmetic_reward` -- 1 if the completion is the right answer followed by ``.``, else 0.

The lexicons (:data:`POSITIVE_WORDS`, :data:`NEGATIVE_WORDS`, :data:`NEUTRAL_WORDS`, :data:`NOUNS`) are public
so that Chapter 6 can write its own hidden preference over the reviews.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "ADJECTIVE_PROBABILITIES",
    "ARITHMETIC_ERROR_RATE",
    "BOS_ID",
    "EOS_ID",
    "NEGATIVE_WORDS",
    "NEUTRAL_WORDS",
    "NOUNS",
    "NUMBER_WORDS",
    "PAD_ID",
    "POSITIVE_WORDS",
    "SECOND_CLAUSE_PROBABILITY",
    "TOKEN_ID",
    "VOCAB",
    "arithmetic_answer",
    "arithmetic_prompts",
    "arithmetic_reward",
    "decode",
    "encode",
    "make_arithmetic",
    "make_corpus",
    "make_reviews",
    "review_prompts",
    "review_reward",
    "sentiment_reward",
    "well_formed_review",
    "word_sentiments",
]

# ------------------------------------------------------------------------------------------------ vocabulary

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, EOS)

#: The subjects of a review and the verb each takes ("the staff were", "the food was").
NOUNS = {"food": "was", "service": "was", "room": "was", "coffee": "was", "music": "was", "view": "was",
         "bed": "was", "staff": "were", "prices": "were", "waiters": "were"}
POSITIVE_WORDS = ("great", "good", "kind", "lovely", "excellent", "fresh", "friendly", "perfect")
NEGATIVE_WORDS = ("bad", "awful", "rude", "cold", "terrible", "dirty", "slow", "poor")
NEUTRAL_WORDS = ("fine", "okay", "quiet", "small", "plain", "busy", "average", "simple")
CONJUNCTIONS = ("and", "but")
#: zero .. ten; the word of n is NUMBER_WORDS[n].
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

#: Every token, by id: the special tokens (``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2), then the words.
VOCAB: tuple[str, ...] = (SPECIAL_TOKENS + ("the", "was", "were") + tuple(NOUNS) + POSITIVE_WORDS
                          + NEGATIVE_WORDS + NEUTRAL_WORDS + CONJUNCTIONS + (".",) + NUMBER_WORDS + ("plus", "is"))
#: The id of each token.
TOKEN_ID: dict[str, int] = {token: i for i, token in enumerate(VOCAB)}
PAD_ID, BOS_ID, EOS_ID = TOKEN_ID[PAD], TOKEN_ID[BOS], TOKEN_ID[EOS]

# ------------------------------------------------------------------------------------------------ the corpus

#: Probability that an adjective of a review is neutral, positive, negative.
ADJECTIVE_PROBABILITIES = {"neutral": 0.6, "positive": 0.2, "negative": 0.2}
#: Probability that a review has a second clause ("... and the staff were kind").
SECOND_CLAUSE_PROBABILITY = 0.5
#: Fraction of the corpus's arithmetic sentences that state a wrong answer.
ARITHMETIC_ERROR_RATE = 0.3


def encode(text: str, *, bos: bool = True, eos: bool = False) -> list[int]:
    """Token ids of a text whose words are separated by spaces.

    Args:
        text: e.g. ``"the food was"``; every word must be in :data:`VOCAB`.
        bos: put ``<bos>`` (id 1) first -- what a prompt needs.
        eos: put ``<eos>`` (id 2) last -- what a finished sentence or a completion needs.

    Returns:
        A list of ints, e.g. ``encode("the food was") == [1, 3, 6, 4]``.

    Raises:
        ValueError: for a word that is not in the vocabulary (the message names it).
    """
    words = text.split()
    unknown = [w for w in words if w not in TOKEN_ID]
    if unknown:
        raise ValueError(f"not in the vocabulary: {unknown}; the words are {list(VOCAB[3:])}")
    return [BOS_ID] * bos + [TOKEN_ID[w] for w in words] + [EOS_ID] * eos


def decode(tokens) -> str:
    """The text of a sequence of token ids: stops at the first ``<eos>``, drops ``<pad>`` and ``<bos>``.

    Args:
        tokens: ints, as a list or a 1-D integer tensor or array.

    Raises:
        ValueError: for a tensor or array that is not 1-D, or an id outside 0 .. len(VOCAB) - 1.
    """
    if isinstance(tokens, torch.Tensor | np.ndarray):
        if tokens.ndim != 1:
            raise ValueError(f"decode takes one sequence (1-D); got shape {tuple(tokens.shape)}")
        tokens = tokens.tolist()
    words = []
    for t in tokens:
        if not 0 <= t < len(VOCAB):
            raise ValueError(f"token id {t} is outside the vocabulary (0 .. {len(VOCAB) - 1})")
        if t == EOS_ID:
            break
        if t not in (PAD_ID, BOS_ID):
            words.append(VOCAB[t])
    return " ".join(words)


def make_reviews(n: int, seed: int) -> list[tuple[str, str]]:
    """``n`` reviews as (prompt, completion) pairs, e.g. ``("the food was", "fine but the staff were rude .")``.

    The prompt is ``the <noun> <verb>``; the completion an adjective, then with probability
    :data:`SECOND_CLAUSE_PROBABILITY` ``and``/``but`` (equally likely) ``the <another noun> <verb> <adjective>``,
    then ``.``. Nouns are drawn uniformly, adjectives as :data:`ADJECTIVE_PROBABILITIES` says.

    Args:
        n: number of reviews.
        seed: seeds a ``numpy.random.Generator``; the same seed gives the same reviews.
    """
    rng = np.random.default_rng(seed)
    nouns = list(NOUNS)
    lexicons = {"neutral": NEUTRAL_WORDS, "positive": POSITIVE_WORDS, "negative": NEGATIVE_WORDS}
    kinds = list(ADJECTIVE_PROBABILITIES)
    kind_probabilities = list(ADJECTIVE_PROBABILITIES.values())

    def adjective() -> str:
        lexicon = lexicons[kinds[rng.choice(len(kinds), p=kind_probabilities)]]
        return lexicon[rng.integers(len(lexicon))]

    reviews = []
    for _ in range(n):
        first = nouns[rng.integers(len(nouns))]
        prompt = f"the {first} {NOUNS[first]}"
        completion = adjective()
        if rng.random() < SECOND_CLAUSE_PROBABILITY:
            second = rng.choice([noun for noun in nouns if noun != first])
            completion += f" {CONJUNCTIONS[rng.integers(2)]} the {second} {NOUNS[second]} {adjective()}"
        reviews.append((prompt, completion + " ."))
    return reviews


def _arithmetic_problems() -> list[tuple[int, int]]:
    """Every (a, b) of whole numbers with a + b <= 10: 66 problems."""
    return [(a, b) for a in range(11) for b in range(11 - a)]


def make_arithmetic(n: int, seed: int, error_rate: float = ARITHMETIC_ERROR_RATE) -> list[tuple[str, str]]:
    """``n`` arithmetic sentences as (prompt, completion) pairs, e.g. ``("two plus three is", "five .")``.

    Each is one of the 66 problems ``a plus b`` with a + b <= 10, drawn uniformly; with probability ``error_rate``
    its answer is replaced by one of the ten wrong numbers of 0..10, drawn uniformly.

    Args:
        n: number of sentences.
        seed: seeds a ``numpy.random.Generator``.
        error_rate: probability of a wrong answer, in [0, 1].

    Raises:
        ValueError: if ``error_rate`` is outside [0, 1].
    """
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError(f"error_rate must be in [0, 1]; got {error_rate}")
    rng = np.random.default_rng(seed)
    problems = _arithmetic_problems()
    sentences = []
    for _ in range(n):
        a, b = problems[rng.integers(len(problems))]
        answer = a + b
        if rng.random() < error_rate:
            wrong = [k for k in range(11) if k != answer]
            answer = wrong[rng.integers(len(wrong))]
        sentences.append((f"{NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]} is", f"{NUMBER_WORDS[answer]} ."))
    return sentences


def make_corpus(n: int, seed: int, review_fraction: float = 0.3,
                error_rate: float = ARITHMETIC_ERROR_RATE) -> list[str]:
    """The pre-training corpus: ``n`` whole sentences (prompt + completion), reviews and arithmetic mixed.

    Args:
        n: number of sentences.
        seed: seeds everything (the number of reviews, the reviews, the sums, their order).
        review_fraction: expected fraction of reviews, in [0, 1]; the rest is arithmetic. The default 0.3 gives
            the 66 sums most of the examples: a small model learns the grammar of the reviews in a few hundred
            steps but needs many examples of each sum to learn it.
        error_rate: passed to :func:`make_arithmetic`.

    Returns:
        A list of ``n`` strings such as ``"the food was fine ."`` and ``"two plus three is five ."``, in random
        order (without ``<bos>``/``<eos>``: ``encode(s, eos=True)`` adds them).

    Raises:
        ValueError: if ``review_fraction`` or ``error_rate`` is outside [0, 1].
    """
    if not 0.0 <= review_fraction <= 1.0:
        raise ValueError(f"review_fraction must be in [0, 1]; got {review_fraction}")
    rng = np.random.default_rng(seed)
    n_reviews = int(rng.binomial(n, review_fraction))
    seeds = rng.integers(2**31, size=2)
    pairs = make_reviews(n_reviews, int(seeds[0])) + make_arithmetic(n - n_reviews, int(seeds[1]), error_rate)
    return [f"{prompt} {completion}" for prompt, completion in (pairs[i] for i in rng.permutation(n))]


def review_prompts() -> list[str]:
    """The 10 review prompts, one per noun: ``["the food was", ..., "the waiters were"]``."""
    return [f"the {noun} {verb}" for noun, verb in NOUNS.items()]


def arithmetic_prompts() -> list[str]:
    """The 66 arithmetic prompts: ``"zero plus zero is"``, ``"zero plus one is"``, ..., ``"ten plus zero is"``."""
    return [f"{NUMBER_WORDS[a]} plus {NUMBER_WORDS[b]} is" for a, b in _arithmetic_problems()]


# ------------------------------------------------------------------------------------------------ rewards


def word_sentiments() -> torch.Tensor:
    """Float32 tensor ``(len(VOCAB),)``: +1 at each positive word, -1 at each negative word, 0 elsewhere."""
    scores = torch.zeros(len(VOCAB))
    scores[[TOKEN_ID[w] for w in POSITIVE_WORDS]] = 1.0
    scores[[TOKEN_ID[w] for w in NEGATIVE_WORDS]] = -1.0
    return scores


def sentiment_reward(completions, mask: torch.Tensor | None = None, clip: float = 2.0) -> torch.Tensor:
    """The sentiment of each completion: (number of positive words) - (number of negative words), clipped.

    A review of two clauses scores from -2 ("awful and the staff were rude .") to +2; the clip keeps a longer
    text from collecting more. Words outside the lexicons, the prompt's words included, score 0, but pass the
    completion only: that is what the policy chose.

    Args:
        completions: a list of B texts (completions, e.g. ``"great and the staff were kind ."``), or an integer
            tensor of token ids ``(B, L)``.
        mask: with a tensor, a bool tensor ``(B, L)`` selecting the tokens to score (e.g. a sample's
            ``completion_mask``); default: every token. Not allowed with texts.
        clip: the reward is clipped to [-clip, clip] (a positive number of words).

    Returns:
        Float32 tensor ``(B,)``.

    Raises:
        ValueError: for a word outside the vocabulary, a mask with texts, a mask of another shape than the
            tokens, or a non-positive ``clip``.
    """
    if clip <= 0:
        raise ValueError(f"clip must be positive; got {clip}")
    scores = word_sentiments()
    if isinstance(completions, torch.Tensor):
        if completions.ndim != 2 or completions.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor (B, L); got {completions.dtype} "
                             f"{tuple(completions.shape)}")
        if mask is None:
            mask = torch.ones_like(completions, dtype=torch.bool)
        elif mask.shape != completions.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, the tokens {tuple(completions.shape)}")
        word_scores = torch.where(mask, scores[completions], 0.0)
        return word_scores.sum(dim=1).clamp(-clip, clip)
    if mask is not None:
        raise ValueError("mask is for token tensors; pass the completion texts alone")
    totals = [sum(scores[t].item() for t in encode(text, bos=False)) for text in completions]
    return torch.tensor(totals, dtype=torch.float32).clamp(-clip, clip)


def well_formed_review(text: str) -> bool:
    """Whether a text is a review the corpus could contain: ``the <noun> <verb> <adjective> .`` or
    ``the <noun> <verb> <adjective> and|but the <other noun> <verb> <adjective> .``, each verb agreeing with its
    noun (``was``/``were``, :data:`NOUNS`) and the second noun different from the first.

    Args:
        text: a whole review, prompt and completion (e.g. ``"the food was great ."``), without special tokens.
    """
    words = text.split()
    adjectives = POSITIVE_WORDS + NEGATIVE_WORDS + NEUTRAL_WORDS

    def clause(w: list[str]) -> bool:
        return len(w) == 4 and w[0] == "the" and w[1] in NOUNS and w[2] == NOUNS[w[1]] and w[3] in adjectives

    if len(words) == 5:
        return clause(words[:4]) and words[4] == "."
    return (len(words) == 10 and clause(words[:4]) and words[4] in CONJUNCTIONS and clause(words[5:9])
            and words[6] != words[1] and words[9] == ".")


def review_reward(prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
    """The reward of Chapter 4's REINFORCE: the sentiment of a well-formed review, and -2 for anything else.

    ``review_reward(["the food was"], ["great and the staff were kind ."]) == tensor([2.])``; ``"great kind ."``
    (not a sentence of the corpus) gets -2, as low as the worst review. :func:`sentiment_reward` alone scores
    words, not reviews, and REINFORCE optimises exactly what it is given: on it the policy soon writes strings of
    positive words that never end ("good perfect kind fresh great ...") -- reward hacking (100 updates of
    :func:`~solutions.language_model.reinforce_sequences`, seeds 0-2: sentiment 2, every completion cut at the
    length limit, no well-formed review left). The grammar condition says what else we want; Chapter 6 gets the
    same effect from a KL penalty that keeps the policy near the pre-trained model. On this reward the same
    100 updates take the mean from about 0 to about +1 (seeds 0-2): short positive reviews, "the food was great
    .". None reached the +2 of two positive clauses: a second clause starts out as likely to lower the reward
    as to raise it, so the policy learns to stop after the first.

    Args:
        prompts: B review prompts (``"the food was"``).
        completions: B completion texts (without ``<eos>``).

    Returns:
        Float32 tensor ``(B,)`` with values in {-2, -1, 0, 1, 2}.

    Raises:
        ValueError: if the lengths differ or a completion has a word outside the vocabulary.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    sentiment = sentiment_reward(completions)
    well_formed = torch.tensor([well_formed_review(f"{p} {c}") for p, c in zip(prompts, completions)])
    return torch.where(well_formed, sentiment, -2.0)


def arithmetic_answer(prompt: str) -> str:
    """The right answer to an arithmetic prompt: ``arithmetic_answer("two plus three is") == "five"``.

    Raises:
        ValueError: if the prompt is not ``<number> plus <number> is`` or its answer is more than ten.
    """
    words = prompt.split()
    if (len(words) != 4 or words[0] not in NUMBER_WORDS or words[1] != "plus" or words[2] not in NUMBER_WORDS
            or words[3] != "is"):
        raise ValueError(f"not an arithmetic prompt ('<number> plus <number> is'): {prompt!r}")
    answer = NUMBER_WORDS.index(words[0]) + NUMBER_WORDS.index(words[2])
    if answer > 10:
        raise ValueError(f"the answer to {prompt!r} is {answer}, outside zero..ten")
    return NUMBER_WORDS[answer]


def arithmetic_reward(prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
    """The verifiable reward: 1 if a completion is exactly the right answer followed by ``.``, else 0.

    ``arithmetic_reward(["two plus three is"], ["five ."]) == tensor([1.])``; ``"five five ."``, ``"five"`` (cut
    before the full stop) and ``"four ."`` all get 0. Reinforcement learning from verifiable rewards (Shao et al.
    2024, DeepSeekMath; DeepSeek-AI 2025, R1) checks the answer with a rule in the same way. The signature is
    that of TRL's reward functions: prompts and completions, as texts (``Completions.prompt_texts()`` and
    ``Completions.completion_texts()`` of a sample).

    Args:
        prompts: B arithmetic prompts such as ``"two plus three is"``.
        completions: B completion texts (what :func:`decode` gives, without ``<eos>``).

    Returns:
        Float32 tensor ``(B,)`` of 0s and 1s.

    Raises:
        ValueError: if the lengths differ or a prompt is not an arithmetic prompt.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    return torch.tensor([float(completion.split() == [arithmetic_answer(prompt), "."])
                         for prompt, completion in zip(prompts, completions)], dtype=torch.float32)
