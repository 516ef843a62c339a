"""Checks for Chapter 6 (reinforcement learning from human feedback).

Each ``check_<exercise>(fn, hidden=False)`` runs the student's ``fn`` on worked cases and fixed random instances,
compares it with the reference in :mod:`solutions.rlhf`, prints one line per case and returns a
:class:`~autograder.checks._harness.Score`. ``hidden=True`` runs only instances drawn from
:func:`~autograder.checks._harness.hidden_rng`.

As in Chapters 4 and 5, every known mistake (the prompt left in the SFT loss, the targets shifted the wrong way,
chosen and rejected swapped, pairs summed instead of averaged, ln(sigmoid(x)) that overflows, the score on the first
token or on the padding, the KL penalty's sign flipped, log-probabilities averaged where they are summed, the
reference not detached...) is computed on each case's own inputs, and a failing case lists the mistakes it
reproduces; a hint is printed only when it explains every failing case.

The torch exercises are judged by value and by gradient (:mod:`autograder.checks._autograd`): tensors are built
afresh for each call from the case's seed, and the inputs that must be constants of the gradient (the reference
policy's log-probabilities) are given ``requires_grad=True`` so that a loss that forgets to detach them is caught.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import torch
import torch.nn.functional as F

from solutions import rlhf as ref

from ._autograd import judge_loss, judge_tensor
from ._harness import Case, Failure, Score, compare_arrays, hidden_rng, run_check

__all__ = [
    "POINTS",
    "check_dpo_loss",
    "check_pairwise_accuracy",
    "check_per_token_rewards",
    "check_ranking_to_pairs",
    "check_reward_model_loss",
    "check_sequence_kl",
    "check_sft_loss",
]

#: Points of each exercise; the test cells' nbgrader metadata must agree (a test checks it).
POINTS = {
    "sft_loss": 2,
    "ranking_to_pairs": 1,
    "reward_model_loss": 2,
    "pairwise_accuracy": 1,
    "per_token_rewards": 2,
    "sequence_kl": 1,
    "dpo_loss": 2,
}

#: The torch inputs each case builds afresh for every call and whose gradients it inspects (passed as they are:
#: a deep copy would be a new leaf, cut from the graph), and the tensors the answer's graph may keep for its
#: backward pass (token ids, masks): the check never reads the answer's copies after the call.
_PASSED_AS_IS = {
    "sft_loss": ("logits", "tokens", "completion_mask"),
    "reward_model_loss": ("rewards_chosen", "rewards_rejected"),
    "per_token_rewards": ("log_probs", "ref_log_probs", "completion_mask"),
    "sequence_kl": ("log_probs", "ref_log_probs", "completion_mask"),
    "dpo_loss": ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps"),
}


def _scored(name: str, fn, cases: list[Case]) -> Score:
    return run_check(name, fn, cases, POINTS[name], passed_as_is=_PASSED_AS_IS.get(name, ()))


_DTYPE_NAMES = {torch.float64: "float64", torch.float32: "float32"}

_HINT_DETACH_REF = ("detach the reference log-probabilities (ref_log_probs.detach()): the reference policy is "
                    "frozen, the loss must not train it")
_HINT_LOGSIGMOID = ("compute ln sigma(x) with torch.nn.functional.logsigmoid(x): torch.log(torch.sigmoid(x)) is "
                    "ln 0 = -inf once sigmoid(x) underflows (x below about -745 in float64)")


# ---------------------------------------------------------------------------------------------- batch layout


def _layout(prompt_lengths, completion_lengths, extra_padding: int = 0):
    """The masks of a batch laid out as :func:`solutions.language_model.completion_batch` lays it out: prompts
    left-padded to the longest, completions right-padded, every completion starting at the same column."""
    B = len(prompt_lengths)
    P = max(prompt_lengths)
    L = P + max(completion_lengths) + extra_padding
    attention = torch.zeros(B, L, dtype=torch.bool)
    completion = torch.zeros(B, L, dtype=torch.bool)
    for b, (p, c) in enumerate(zip(prompt_lengths, completion_lengths)):
        attention[b, P - p: P + c] = True
        completion[b, P: P + c] = True
    return attention, completion


def _describe_layout(prompt_lengths, completion_lengths, L) -> str:
    return (f"bool ({len(prompt_lengths)}, {L}): prompts of {list(prompt_lengths)} tokens (left-padded), "
            f"completions of {list(completion_lengths)} tokens (right-padded), True on the completions")


# --------------------------------------------------------------------------------------------------- SFT loss


def _sft_inputs(seed, prompt_lengths, completion_lengths, *, V=9, scale=1.0, dtype=torch.float64):
    """Fresh tensors: logits (leaf, requires_grad), tokens (pad 0 where there is no token), the masks."""
    attention, completion = _layout(prompt_lengths, completion_lengths)
    B, L = attention.shape
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(B, L, V, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True)
    tokens = torch.where(attention, torch.randint(3, V, (B, L), generator=g), 0)
    return logits, tokens, attention, completion


def _sft_bugs(logits, tokens, attention, completion):
    """The known mistakes on the reference's inputs (their gradients are compared with respect to its leaves)."""
    log_p = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = log_p.gather(2, tokens[:, 1:, None]).squeeze(2)  # (B, L - 1): log p of tokens 1 .. L - 1
    targets = completion[:, 1:].to(picked.dtype)

    def mean_over(mask):
        mask = mask.to(picked.dtype)
        return -(picked * mask).sum() / mask.sum().clamp(min=1)

    same_position = torch.log_softmax(logits, dim=-1).gather(2, tokens[..., None]).squeeze(2)
    naive = torch.log(torch.softmax(logits[:, :-1], dim=-1)).gather(2, tokens[:, 1:, None]).squeeze(2)
    predicted = (attention[:, 1:] & attention[:, :-1])
    per_row = (picked * targets).sum(1) / targets.sum(1).clamp(min=1)
    prompt_targets = predicted & ~completion[:, 1:]
    bugs = [
        (mean_over(predicted), "mask the prompt: only the response tokens (completion_mask) are targets; the "
         "prompt was given to the labeller, not written by them"),
        (mean_over(torch.ones_like(completion[:, 1:])), "only the response tokens are targets: the prompt and the "
         "padding must be masked out (completion_mask)"),
        (mean_over(completion[:, :-1]), "shift the mask with the targets: the logits at position t - 1 predict "
         "token t, so the targets tokens[:, 1:] are masked by completion_mask[:, 1:]"),
        (-(same_position * completion).sum() / completion.sum(), "the logits at position t - 1 predict token t: "
         "compare logits[:, :-1] with tokens[:, 1:] (yours scores each token with its own position's logits)"),
        (-(picked * targets).sum(), "average over the response tokens: divide the sum by their number"),
        (-per_row.mean(), "average over all the response tokens of the batch at once (sum / their number), not "
         "per demonstration first"),
        (-(picked * targets).sum() / picked.numel(), "divide by the number of response tokens, "
         "completion_mask[:, 1:].sum(), not by the padded size"),
        ((picked * targets).sum() / targets.sum(), "the loss is the *negative* log-likelihood (cross-entropy): "
         "minus the mean log-probability"),
        (mean_over(prompt_targets), "the mask is reversed: train on the response tokens, not on the prompt"),
        (-torch.where(completion[:, 1:], naive, 0.0).sum() / targets.sum(), "use torch.log_softmax (or "
         "F.cross_entropy): torch.log(torch.softmax(...)) is ln 0 = -inf once a probability underflows"),
    ]
    return bugs


def _sft_case(name, seed, prompt_lengths, completion_lengths, *, scale=1.0, dtype=torch.float64, V=9) -> Case:
    def make():
        return _sft_inputs(seed, prompt_lengths, completion_lengths, V=V, scale=scale, dtype=dtype)

    def run(fn):
        logits, tokens, _, completion = make()
        got = fn(logits, tokens, completion)
        ref_logits, ref_tokens, ref_attention, ref_completion = make()
        expected = ref.sft_loss(ref_logits, ref_tokens, ref_completion)
        bugs = _sft_bugs(ref_logits, ref_tokens, ref_attention, ref_completion)
        return judge_loss(got, expected, [logits], [ref_logits], bugs)

    B, L = len(prompt_lengths), max(prompt_lengths) + max(completion_lengths)
    dtype_name = _DTYPE_NAMES[dtype]
    big = f", of scale {scale:g} (a very confident model)" if scale != 1 else ""
    return Case(name, run, size=B * L, inputs={
        "logits": f"{dtype_name} ({B}, {L}, {V}): random (seed {seed}){big}, requires_grad=True",
        "tokens": f"int64 ({B}, {L}): random ids, 0 on the padding",
        "completion_mask": _describe_layout(prompt_lengths, completion_lengths, L)})


def check_sft_loss(fn, hidden: bool = False) -> Score:
    """Check ``sft_loss(logits, tokens, completion_mask) -> torch.Tensor`` (Ouyang et al. 2022, Section 3.5)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            B = int(rng.integers(2, 7))
            cases.append(_sft_case(f"random demonstrations #{i + 1} ({B} rows)", int(rng.integers(2**31)),
                                   [int(p) for p in rng.integers(1, 5, size=B)],
                                   [int(c) for c in rng.integers(1, 7, size=B)], V=int(rng.integers(5, 12))))
        return _scored("sft_loss", fn, cases)
    cases = [
        _sft_case("one demonstration: a prompt of 3 tokens, a response of 2", 0, [3], [2]),
        _sft_case("3 demonstrations, prompts of 2-4 tokens, responses of 1-4 tokens", 1, [2, 4, 3], [4, 1, 3]),
        _sft_case("5 demonstrations, every response the same length", 2, [3, 1, 2, 3, 2], [3, 3, 3, 3, 3]),
        _sft_case("float32 logits", 3, [2, 3], [5, 2], dtype=torch.float32),
        _sft_case("a very confident model (logits of scale 400: probabilities that underflow)", 4, [2, 2],
                  [3, 2], scale=400.0),
    ]
    return _scored("sft_loss", fn, cases)


# ----------------------------------------------------------------------------------------------- ranking pairs


def _pairs_bugs(ranking):
    r = list(ranking)
    K = len(r)
    return [
        ([(r[i], r[i + 1]) for i in range(K - 1)], "a ranking says more than its neighbours: every completion is "
         "preferred to *every* completion ranked below it, C(K, 2) pairs"),
        ([(r[j], r[i]) for i, j in combinations(range(K), 2)], "chosen is the better-ranked completion: the "
         "ranking is best first, so (ranking[i], ranking[j]) with i < j"),
        ([(r[i], r[j]) for i in range(K) for j in range(K) if i != j], "each pair once, as (better, worse): "
         "C(K, 2) pairs, not K (K - 1)"),
        ([(r[i], r[j]) for i in range(K) for j in range(i, K)], "a completion is not compared with itself: pairs "
         "i < j"),
        (list(combinations(range(K), 2)), "return the completions' indices, ranking[i] and ranking[j], not their "
         "positions i and j in the ranking"),
        (list(combinations(sorted(r), 2)), "the pairs follow the ranking (best first), not the completions' "
         "index order"),
    ]


def _as_pair_list(got):
    """The answer as a list of (int, int), or a message saying why it is not one."""
    if isinstance(got, torch.Tensor):
        got = got.tolist()
    if isinstance(got, np.ndarray):
        if got.size == 0:
            return []
        if got.ndim != 2 or got.shape[1] != 2:
            return f"return a list of (chosen, rejected) pairs; got an array of shape {got.shape}"
        got = got.tolist()
    if not isinstance(got, (list, tuple)):
        return f"return a list of (chosen, rejected) pairs; got {type(got).__name__}"
    pairs = []
    for item in got:
        try:
            chosen, rejected = item
            pairs.append((int(chosen), int(rejected)))
        except (TypeError, ValueError):
            return f"each entry should be a pair (chosen, rejected) of completion indices; got {item!r}"
    return pairs


def _pairs_case(name, ranking, as_array=False) -> Case:
    def run(fn):
        given = np.array(ranking) if as_array else list(ranking)
        got = _as_pair_list(fn(given))
        if isinstance(got, str):
            return got
        expected = ref.ranking_to_pairs(list(ranking))
        if sorted(got) == sorted(expected):
            return None
        hints = [hint for bug, hint in _pairs_bugs(ranking) if sorted(map(tuple, bug)) == sorted(got)]
        if len(got) != len(expected):
            message = f"{len(got)} pairs; a ranking of {len(ranking)} completions gives C(K, 2) = {len(expected)}"
        else:
            message = "the pairs differ from the expected ones"
        return Failure(message, hints=hints, expected=expected, got=got, what="pairs")

    return Case(name, run, inputs={"ranking": list(ranking)}, size=len(ranking))


def check_ranking_to_pairs(fn, hidden: bool = False) -> Score:
    """Check ``ranking_to_pairs(ranking) -> list[tuple[int, int]]`` (Ouyang et al. 2022, Section 3.5). The pairs
    may come in any order."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            K = int(rng.integers(3, 8))
            ranking = [int(x) for x in rng.permutation(K)]
            cases.append(_pairs_case(f"a random ranking of {K} completions #{i + 1}", ranking, as_array=i == 1))
        return _scored("ranking_to_pairs", fn, cases)
    rng = np.random.default_rng(7)
    cases = [
        _pairs_case("3 completions ranked 2 > 0 > 1", [2, 0, 1]),
        _pairs_case("2 completions: one comparison", [1, 0]),
        _pairs_case("4 completions ranked 3 > 1 > 0 > 2 (InstructGPT's K = 4 gives 6 pairs)", [3, 1, 0, 2]),
        _pairs_case("one completion: nothing to compare", [0]),
        _pairs_case("completion ids that are not 0 .. K - 1: [10, 7, 42]", [10, 7, 42]),
        _pairs_case("9 completions (InstructGPT's largest K) given as a numpy array",
                    [int(x) for x in rng.permutation(9)], as_array=True),
    ]
    return _scored("ranking_to_pairs", fn, cases)


# ------------------------------------------------------------------------------------------ reward model loss


def _reward_inputs(seed, shape, *, spread=1.0, offset=0.0, dtype=torch.float64):
    """Fresh leaves (requires_grad): the scores of the chosen and of the rejected completions (``offset`` is
    added to the rejected ones: a large offset makes pairs the model gets badly wrong)."""
    g = torch.Generator().manual_seed(seed)
    chosen = spread * torch.randn(*shape, generator=g, dtype=torch.float64)
    rejected = spread * torch.randn(*shape, generator=g, dtype=torch.float64) + offset
    return chosen.to(dtype).requires_grad_(True), rejected.to(dtype).requires_grad_(True)


_HINT_PAIRS_SUMMED = ("average the pairs, do not sum them: (1 / C(K, 2)) times the sum over a prompt's pairs, then "
                      "the mean over the prompts (a prompt with more completions must not count more)")


def _reward_bugs(chosen, rejected):
    d = chosen - rejected
    per_pair = -F.logsigmoid(d)

    def prompt_mean(x):
        return x.mean(dim=1).mean() if x.ndim == 2 else x.mean()

    bugs = [
        (prompt_mean(-F.logsigmoid(-d)), "chosen and rejected are swapped: the loss is -ln sigma(r_chosen - "
         "r_rejected), small when the chosen completion scores higher"),
        (prompt_mean(F.logsigmoid(d)), "the loss is the *negative* log-likelihood: -ln sigma(r_chosen - "
         "r_rejected)"),
        (prompt_mean(-torch.log(torch.sigmoid(d))), _HINT_LOGSIGMOID),
        (prompt_mean(-torch.sigmoid(d)), "take the log of the probability: -ln sigma(r_chosen - r_rejected)"),
        (per_pair.sum(), _HINT_PAIRS_SUMMED),
        (prompt_mean(-(F.logsigmoid(chosen) - F.logsigmoid(rejected))), "take sigma of the *difference* of the "
         "two rewards: P(chosen preferred) = sigma(r_chosen - r_rejected)"),
    ]
    if d.ndim == 2:
        bugs.insert(4, (per_pair.sum(dim=1).mean(), _HINT_PAIRS_SUMMED))
    return bugs


def _reward_case(name, seed, shape, *, spread=1.0, offset=0.0, dtype=torch.float64) -> Case:
    def make():
        return _reward_inputs(seed, shape, spread=spread, offset=offset, dtype=dtype)

    def run(fn):
        chosen, rejected = make()
        got = fn(chosen, rejected)
        ref_chosen, ref_rejected = make()
        expected = ref.reward_model_loss(ref_chosen, ref_rejected)
        return judge_loss(got, expected, [chosen, rejected], [ref_chosen, ref_rejected],
                          _reward_bugs(ref_chosen, ref_rejected))

    layout = (f"({shape[0]} prompts, {shape[1]} pairs each)" if len(shape) == 2 else f"({shape[0]} pairs)")
    extra = f", {offset:g} added (pairs the model gets badly wrong)" if offset else ""
    return Case(name, run, size=int(np.prod(shape)), inputs={
        "rewards_chosen": f"{_DTYPE_NAMES[dtype]} {layout}: N(0, {spread:g}^2) scores (seed {seed}), "
                          "requires_grad=True",
        "rewards_rejected": f"{_DTYPE_NAMES[dtype]}, the same shape, N(0, {spread:g}^2){extra}, requires_grad=True"})


def check_reward_model_loss(fn, hidden: bool = False) -> Score:
    """Check ``reward_model_loss(rewards_chosen, rewards_rejected) -> torch.Tensor`` (Ouyang et al. 2022, eq. 1)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            K = int(rng.integers(3, 7))
            shape = (int(rng.integers(2, 6)), K * (K - 1) // 2) if i < 2 else (int(rng.integers(3, 20)),)
            cases.append(_reward_case(f"random scores #{i + 1} {shape}", int(rng.integers(2**31)), shape,
                                      spread=float(rng.uniform(0.5, 3.0))))
        return _scored("reward_model_loss", fn, cases)
    cases = [
        _reward_case("5 comparisons, one per prompt (N,)", 0, (5,)),
        _reward_case("2 prompts x K = 3 completions: 3 pairs each (B, C(K, 2))", 1, (2, 3)),
        _reward_case("4 prompts x K = 4 completions: 6 pairs each", 2, (4, 6), spread=2.0),
        _reward_case("float32 scores, 3 prompts x 10 pairs (K = 5)", 3, (3, 10), dtype=torch.float32),
        _reward_case("pairs the model gets badly wrong (rejected scores 800 higher)", 4, (2, 3), offset=800.0),
    ]
    return _scored("reward_model_loss", fn, cases)


# ------------------------------------------------------------------------------------------ pairwise accuracy


def _accuracy_bugs(chosen, rejected):
    c, r = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    return [
        (np.mean(c >= r), "a tie (equal scores) counts one half: the model has no preference"),
        (np.mean(c > r), "a tie (equal scores) counts one half: the model has no preference"),
        (np.mean(c < r) + 0.5 * np.mean(c == r), "a comparison is right when the *chosen* completion scores "
         "higher: r_chosen > r_rejected"),
        (np.sum(c > r) + 0.5 * np.sum(c == r), "return the fraction of comparisons ranked right (a number in "
         "[0, 1]), not their count"),
    ]


def _accuracy_case(name, chosen, rejected, as_tensor=False) -> Case:
    def run(fn):
        if as_tensor:
            got = fn(torch.tensor(chosen, dtype=torch.float64), torch.tensor(rejected, dtype=torch.float64))
        else:
            got = fn(np.array(chosen, dtype=float), np.array(rejected, dtype=float))
        if isinstance(got, torch.Tensor):
            if got.numel() != 1:
                return f"return one number (the fraction of comparisons); got a tensor of shape {tuple(got.shape)}"
            got = got.detach()
        expected = ref.pairwise_accuracy(chosen, rejected)
        return compare_arrays(got, np.float64(expected), atol=1e-12, what="accuracy",
                              diagnoses=_accuracy_bugs(chosen, rejected))

    kind = "torch tensors" if as_tensor else "numpy arrays"
    shown = {"rewards_chosen": f"{kind}: {list(chosen) if len(chosen) <= 12 else f'({len(chosen)},)'}",
             "rewards_rejected": f"{list(rejected) if len(rejected) <= 12 else f'({len(rejected)},)'}"}
    return Case(name, run, inputs=shown, size=len(chosen))


def check_pairwise_accuracy(fn, hidden: bool = False) -> Score:
    """Check ``pairwise_accuracy(rewards_chosen, rewards_rejected) -> float`` (ties count one half)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            n = int(rng.integers(5, 40))
            chosen = rng.integers(-3, 4, size=n).astype(float)
            rejected = rng.integers(-3, 4, size=n).astype(float)
            cases.append(_accuracy_case(f"random integer scores #{i + 1} ({n} pairs, some tied)", chosen.tolist(),
                                        rejected.tolist(), as_tensor=i == 1))
        return _scored("pairwise_accuracy", fn, cases)
    rng = np.random.default_rng(8)
    chosen = rng.normal(size=200).round(1)
    cases = [
        _accuracy_case("4 comparisons, 3 ranked right", [1.0, 2.0, 0.5, -1.0], [0.0, 1.0, 0.7, -2.0]),
        _accuracy_case("ties: [1, 2, 3] against [1, 0, 3]", [1.0, 2.0, 3.0], [1.0, 0.0, 3.0]),
        _accuracy_case("torch tensors, every comparison wrong", [-1.0, 0.0, 2.0], [0.0, 1.0, 5.0], as_tensor=True),
        _accuracy_case("200 pairs of scores rounded to 0.1 (some tied)", chosen.tolist(),
                       (chosen + rng.normal(size=200).round(1) * 0.5 - 0.2).round(1).tolist()),
    ]
    return _scored("pairwise_accuracy", fn, cases)


# ------------------------------------------------------------------------------------------ per-token rewards


def _rl_inputs(seed, prompt_lengths, completion_lengths, *, shift=0.5, dtype=torch.float64, extra_padding=0):
    """Fresh tensors: logits (leaf), log_probs of random tokens (with gradient, finite on prompt and padding too,
    so an answer that ignores the mask is caught), ref_log_probs from logits moved by ``shift`` (leaf,
    requires_grad), scores (B,), the completion mask."""
    _, completion = _layout(prompt_lengths, completion_lengths, extra_padding)
    B, L = completion.shape
    V = 7
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64)
    tokens = torch.randint(V, (B, L), generator=g)
    ref_logits = logits + shift * torch.randn(B, L, V, generator=g, dtype=torch.float64)
    scores = (2 * torch.randn(B, generator=g, dtype=torch.float64)).to(dtype)
    logits = logits.to(dtype).requires_grad_(True)
    log_probs = torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    ref_log_probs = torch.log_softmax(ref_logits, -1).gather(-1, tokens[..., None]).squeeze(-1)
    return logits, log_probs, ref_log_probs.to(dtype).requires_grad_(True), scores, completion


def _token_reward_bugs(scores, lp, rf, mask, kl_coef):
    lp, rf = lp.detach(), rf.detach()
    B, L = mask.shape
    rows = torch.arange(B)
    columns = torch.arange(L).expand(B, L)
    last = torch.where(mask, columns, -1).max(dim=1).values
    first = torch.where(mask, columns, L).min(dim=1).values
    penalty = torch.where(mask, -kl_coef * (lp - rf), 0.0)

    def with_score(base, at, replace=False):
        out = base.clone()
        if replace:
            out[rows, at] = scores
        else:
            out[rows, at] += scores
        return out

    bugs = [
        (with_score(penalty, first), "the reward model's score goes on the *last* completion token (it judges the "
         "whole completion), not the first"),
        (with_score(penalty, torch.full((B,), L - 1)), "put the score on each row's last *completion* token: the "
         "rows are right-padded, so the last column is padding in the shorter rows"),
        (with_score(-penalty, last), "the penalty is -kl_coef * (log_probs - ref_log_probs): a token the policy "
         "likes more than the reference does is penalised"),
        (with_score(-kl_coef * (lp - rf), last), "the KL penalty applies to the completion tokens only: 0 on the "
         "prompt and on the padding (completion_mask)"),
        (with_score(penalty, last, replace=True), "*add* the score to the last token's KL penalty (+=): every "
         "completion token, the last one included, pays its penalty"),
        (with_score(torch.where(mask, -(lp - rf), 0.0), last), "multiply the log-ratio by kl_coef"),
        (with_score(torch.zeros_like(penalty), last), "every completion token gets the KL penalty -kl_coef * "
         "(log_probs - ref_log_probs); the score is added at the last one"),
    ]
    total = torch.zeros_like(penalty)
    total[rows, last] = scores + penalty.sum(1)
    bugs.append((total, "the KL penalty goes on every completion token, not summed at the end: PPO credits each "
                 "token with its own penalty"))
    return bugs


def _token_reward_case(name, seed, prompt_lengths, completion_lengths, kl_coef, *, shift=0.5,
                       dtype=torch.float64, extra_padding=0) -> Case:
    def make():
        return _rl_inputs(seed, prompt_lengths, completion_lengths, shift=shift, dtype=dtype,
                          extra_padding=extra_padding)

    def run(fn):
        _, lp, rf, scores, mask = make()
        got = fn(scores, lp, rf, mask, kl_coef)
        _, ref_lp, ref_rf, ref_scores, ref_mask = make()
        expected = ref.per_token_rewards(ref_scores, ref_lp, ref_rf, ref_mask, kl_coef)
        if not isinstance(got, torch.Tensor):
            return f"return the rewards as a torch tensor ({tuple(expected.shape)}); got {type(got).__name__}"
        problem = compare_arrays(got.detach(), expected, atol=1e-9, what="rewards",
                                 diagnoses=_token_reward_bugs(ref_scores, ref_lp, ref_rf, ref_mask, kl_coef),
                                 match_atol=1e-6)
        if problem:
            return problem
        if got.requires_grad:
            return Failure("the rewards carry a gradient (requires_grad is True)", hints=[
                "rewards are constants to PPO: compute them under torch.no_grad() or .detach() the log-probabilities"
                " (a gradient through them would train the policy to change its own rewards)"],
                expected="no gradient", got="a gradient", what="the rewards")
        return None

    B, L = len(prompt_lengths), max(prompt_lengths) + max(completion_lengths) + extra_padding
    name_dtype = _DTYPE_NAMES[dtype]
    return Case(name, run, size=B * L, inputs={
        "scores": f"{name_dtype} ({B},): N(0, 4) (seed {seed})",
        "log_probs": f"{name_dtype} ({B}, {L}): log-probabilities of random tokens, with gradient (finite on the "
                     "prompt and the padding too)",
        "ref_log_probs": f"{name_dtype} ({B}, {L}): under logits moved by N(0, {shift:g}^2) noise, "
                         "requires_grad=True",
        "completion_mask": _describe_layout(prompt_lengths, completion_lengths, L), "kl_coef": kl_coef})


def check_per_token_rewards(fn, hidden: bool = False) -> Score:
    """Check ``per_token_rewards(scores, log_probs, ref_log_probs, completion_mask, kl_coef) -> torch.Tensor``
    (Ziegler et al. 2019, Section 2.2; Ouyang et al. 2022, eq. 2)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            B = int(rng.integers(2, 7))
            cases.append(_token_reward_case(
                f"random batch #{i + 1} ({B} completions)", int(rng.integers(2**31)),
                [int(p) for p in rng.integers(1, 4, size=B)], [int(c) for c in rng.integers(1, 8, size=B)],
                round(float(rng.uniform(0.02, 0.5)), 3)))
        return _scored("per_token_rewards", fn, cases)
    cases = [
        _token_reward_case("one completion of 3 tokens after a prompt of 2, kl_coef = 0.1", 0, [2], [3], 0.1),
        _token_reward_case("4 completions of 1-5 tokens (right-padded), kl_coef = 0.05", 1, [2, 3, 1, 2],
                           [5, 1, 3, 2], 0.05),
        _token_reward_case("kl_coef = 0: the score alone, at each completion's last token", 2, [1, 2, 3],
                           [2, 4, 1], 0.0),
        _token_reward_case("3 completions of equal length, 2 padding columns after them, kl_coef = 0.2", 3,
                           [2, 2, 2], [3, 3, 3], 0.2, extra_padding=2),
        _token_reward_case("float32 inputs, kl_coef = 0.3", 4, [1, 3], [4, 2], 0.3, dtype=torch.float32),
    ]
    return _scored("per_token_rewards", fn, cases)


# ------------------------------------------------------------------------------------------------ sequence KL


def _kl_bugs(lp, rf, mask, estimator):
    rf = rf.detach()
    r = rf - lp
    m = mask.to(lp.dtype)
    k1, k3 = -r, torch.exp(r) - r - 1
    per_token = k1 if estimator == "k1" else k3
    bugs = [
        ((per_token * m).sum(1) / m.sum(1).clamp(min=1), "sum the tokens' estimates: the KL of a completion is "
         "the sum over its tokens (its log-probability is a sum), not their mean"),
        ((per_token * m).sum(1) / m.shape[1], "sum the tokens' estimates over the completion, do not divide by "
         "the width"),
        (per_token.sum(1), "count only the completion tokens (completion_mask): the prompt and the padding are "
         "not the policy's choices"),
    ]
    if estimator == "k1":
        bugs += [
            ((-k1 * m).sum(1), "k1 = log pi_theta - log pi_ref (the policy minus the reference): yours is "
             "reversed"),
            ((k3 * m).sum(1), "estimator='k1' asks for the plain log-ratio log pi_theta - log pi_ref, not k3"),
        ]
    else:
        rev = torch.exp(-r) + r - 1
        bugs += [
            ((rev * m).sum(1), "k3 = exp(r) - r - 1 with r = log pi_ref - log pi_theta (the reference minus the "
             "policy): yours is reversed"),
            ((k1 * m).sum(1), "estimator='k3' asks for exp(r) - r - 1, not the plain log-ratio (k1)"),
            (((torch.exp(r) - r) * m).sum(1), "k3 = exp(r) - r - 1: the -1 is missing"),
            ((0.5 * r**2 * m).sum(1), "that is k2 = r^2 / 2; k3 is exp(r) - r - 1"),
        ]
    return bugs


def _kl_case(name, seed, prompt_lengths, completion_lengths, estimator, *, shift=0.5, dtype=torch.float64,
             default=False) -> Case:
    def make():
        return _rl_inputs(seed, prompt_lengths, completion_lengths, shift=shift, dtype=dtype)

    def run(fn):
        logits, lp, rf, _, mask = make()
        got = fn(lp, rf, mask) if default else fn(lp, rf, mask, estimator=estimator)
        ref_logits, ref_lp, ref_rf, _, ref_mask = make()
        expected = ref.sequence_kl(ref_lp, ref_rf, ref_mask, estimator)
        weights = torch.linspace(0.5, 1.5, expected.numel(), dtype=torch.float64)
        return judge_tensor(got, expected, [logits], [ref_logits], _kl_bugs(ref_lp, ref_rf, ref_mask, estimator),
                            what="KL", weights=weights, detach=[(rf, "ref_log_probs", _HINT_DETACH_REF)],
                            atol=1e-9)

    B, L = len(prompt_lengths), max(prompt_lengths) + max(completion_lengths)
    name_dtype = _DTYPE_NAMES[dtype]
    inputs = {
        "log_probs": f"{name_dtype} ({B}, {L}): log-probabilities of random tokens (seed {seed}), with gradient "
                     "(finite on the prompt and the padding too)",
        "ref_log_probs": f"{name_dtype} ({B}, {L}): under logits moved by N(0, {shift:g}^2) noise, "
                         "requires_grad=True",
        "completion_mask": _describe_layout(prompt_lengths, completion_lengths, L)}
    if not default:
        inputs["estimator"] = repr(estimator)
    return Case(name, run, size=B * L, inputs=inputs)


def check_sequence_kl(fn, hidden: bool = False) -> Score:
    """Check ``sequence_kl(log_probs, ref_log_probs, completion_mask, estimator="k1") -> torch.Tensor``
    (Schulman 2020)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i, estimator in enumerate(["k1", "k3", "k3"]):
            B = int(rng.integers(2, 7))
            cases.append(_kl_case(f"random batch #{i + 1} ({B} completions), {estimator}", int(rng.integers(2**31)),
                                  [int(p) for p in rng.integers(1, 4, size=B)],
                                  [int(c) for c in rng.integers(1, 8, size=B)], estimator,
                                  shift=float(rng.uniform(0.2, 1.5))))
        return _scored("sequence_kl", fn, cases)
    cases = [
        _kl_case("3 completions of 1-4 tokens, k1 (the default estimator)", 0, [2, 1, 3], [4, 1, 2], "k1",
                 default=True),
        _kl_case("the same batch, k3", 0, [2, 1, 3], [4, 1, 2], "k3"),
        _kl_case("the policy equal to the reference: 0 for both", 1, [1, 2], [3, 3], "k3", shift=0.0),
        _kl_case("5 completions far from the reference, k1", 2, [2, 2, 1, 3, 1], [6, 2, 5, 1, 3], "k1", shift=2.0),
        _kl_case("float32 inputs, k3", 3, [1, 3], [5, 2], "k3", dtype=torch.float32),
    ]
    return _scored("sequence_kl", fn, cases)


# ---------------------------------------------------------------------------------------------------- DPO loss


def _dpo_inputs(seed, n, *, spread=3.0, offset=0.0, same_as_reference=False, dtype=torch.float64):
    """Fresh leaves (requires_grad): sequence log-probabilities of the chosen and rejected completions under the
    policy and under the reference (``offset`` moves the policy's rejected log-probabilities up: a margin the
    policy gets badly wrong)."""
    g = torch.Generator().manual_seed(seed)
    ref_chosen = -torch.empty(n, dtype=torch.float64).uniform_(5, 30, generator=g)
    ref_rejected = -torch.empty(n, dtype=torch.float64).uniform_(5, 30, generator=g)
    if same_as_reference:
        chosen, rejected = ref_chosen.clone(), ref_rejected.clone()
    else:
        chosen = ref_chosen + spread * torch.randn(n, generator=g, dtype=torch.float64)
        rejected = ref_rejected + spread * torch.randn(n, generator=g, dtype=torch.float64) + offset
    return [x.to(dtype).requires_grad_(True) for x in (chosen, rejected, ref_chosen, ref_rejected)]


def _dpo_bugs(chosen, rejected, ref_chosen, ref_rejected, beta):
    rc, rr = ref_chosen.detach(), ref_rejected.detach()
    margin = (chosen - rc) - (rejected - rr)
    return [
        (-F.logsigmoid(-beta * margin).mean(), "chosen and rejected are swapped: the loss falls as the chosen "
         "completion's log-ratio rises above the rejected one's"),
        (-F.logsigmoid(beta * (chosen - rejected)).mean(), "subtract the reference: the implicit reward is "
         "beta * (log pi_theta(y) - log pi_ref(y)), a log-*ratio*"),
        (-F.logsigmoid(beta * ((chosen + rc) - (rejected + rr))).mean(), "subtract the reference's "
         "log-probabilities, do not add them: the log-ratio is log pi_theta(y) - log pi_ref(y)"),
        (-F.logsigmoid(margin).mean(), "multiply the margin by beta inside the sigmoid: -ln sigma(beta * margin)"),
        (-beta * F.logsigmoid(margin).mean(), "beta multiplies the margin *inside* the sigmoid, not the loss"),
        (-torch.log(torch.sigmoid(beta * margin)).mean(), _HINT_LOGSIGMOID),
        (-F.logsigmoid(beta * margin).sum(), "average over the pairs (mean), do not sum"),
        (F.logsigmoid(beta * margin).mean(), "the loss is the *negative* log-likelihood: -ln sigma(beta * margin)"),
    ]


def _dpo_case(name, seed, n, beta=None, *, spread=3.0, offset=0.0, same_as_reference=False,
              dtype=torch.float64) -> Case:
    b = 0.1 if beta is None else beta

    def make():
        return _dpo_inputs(seed, n, spread=spread, offset=offset, same_as_reference=same_as_reference, dtype=dtype)

    def run(fn):
        chosen, rejected, ref_chosen, ref_rejected = make()
        kwargs = {} if beta is None else {"beta": beta}
        got = fn(chosen, rejected, ref_chosen, ref_rejected, **kwargs)
        expected_inputs = make()
        expected = ref.dpo_loss(*expected_inputs, beta=b)
        return judge_loss(got, expected, [chosen, rejected], expected_inputs[:2], _dpo_bugs(*expected_inputs, b),
                          detach=[(ref_chosen, "ref_chosen_logps", _HINT_DETACH_REF),
                                  (ref_rejected, "ref_rejected_logps", _HINT_DETACH_REF)])

    name_dtype = _DTYPE_NAMES[dtype]
    policy = "equal to the reference's" if same_as_reference else f"the reference's + N(0, {spread:g}^2)"
    extra = f", rejected ones {offset:g} higher (a margin the policy gets badly wrong)" if offset else ""
    inputs = {
        "chosen_logps, rejected_logps": f"{name_dtype} ({n},): {policy}{extra} (seed {seed}), requires_grad=True",
        "ref_chosen_logps, ref_rejected_logps": f"{name_dtype} ({n},): uniform in [-30, -5], requires_grad=True",
        "beta": f"{b:g}" + (" (the default)" if beta is None else "")}
    return Case(name, run, size=n, inputs=inputs)


def check_dpo_loss(fn, hidden: bool = False) -> Score:
    """Check ``dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1) ->
    torch.Tensor`` (Rafailov et al. 2023, eq. 7)."""
    if hidden:
        rng = hidden_rng()
        cases = [_dpo_case(f"random pairs #{i + 1}", int(rng.integers(2**31)), int(rng.integers(2, 30)),
                           round(float(rng.uniform(0.05, 1.0)), 3), spread=float(rng.uniform(1.0, 10.0)))
                 for i in range(3)]
        return _scored("dpo_loss", fn, cases)
    cases = [
        _dpo_case("4 pairs, beta = 0.1 (the default)", 0, 4),
        _dpo_case("the policy equal to the reference: the loss is ln 2", 1, 3, 0.1, same_as_reference=True),
        _dpo_case("8 pairs, beta = 0.5", 2, 8, 0.5, spread=5.0),
        _dpo_case("float32, beta = 0.2", 3, 6, 0.2, dtype=torch.float32),
        _dpo_case("a margin the policy gets badly wrong (-900), beta = 1", 4, 3, 1.0, offset=900.0),
    ]
    return _scored("dpo_loss", fn, cases)
