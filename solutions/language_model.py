"""A tiny language model that is a policy (Chapter 4; reused by Chapters 5 and 6).

A causal transformer language model (Vaswani et al. 2017, "Attention is all you need"; decoder-only as in
Radford et al. 2018/2019, GPT and GPT-2) small enough to read in one sitting and to train in seconds on a CPU:

    tokens --> token embedding + position embedding
           --> n_layers x [ x + causal self-attention(layer norm(x));  x + MLP(layer norm(x)) ]
           --> layer norm --> output head: one logit per word of the vocabulary

Seen as a reinforcement-learning agent, the *state* is the prompt and the tokens written so far, the *action*
is the next token, drawn from the policy pi_theta(token | tokens so far) = softmax(logits); an *episode* is one
completion, which ends at ``<eos>``, and the reward comes at its end. What the three chapters need from it:

* :func:`sample` -- batched sampling with a key-value cache: the tokens, the log-probability of every sampled
  token and a ``completion_mask`` that marks the tokens the policy chose;
* :func:`token_log_probs` -- log pi_theta of every token of a batch in one forward pass, with gradient (for the
  losses: REINFORCE, PPO and GRPO ratios, DPO, the KL to a reference model);
* :func:`sequence_log_probs` -- log pi_theta(completion | prompt), the sum over completion tokens only
  (Chapter 4, exercise 6), and :func:`sequence_reinforce_loss`, REINFORCE for sequences with the mean-reward
  baseline (exercise 7);
* :func:`pretrained_model` -- a model pre-trained on the corpus of :mod:`solutions.corpus` (seconds);
  :func:`reinforce_sequences` -- REINFORCE on a programmatic reward, e.g. the sentiment of a review;
* for Chapters 5 and 6: :func:`create_reference_model` (a frozen copy for the KL penalty),
  :meth:`TinyLM.hidden_states` and :func:`last_token_positions` (to put a scalar head on the network: a reward
  model or a value function), :func:`completion_batch` (prompt/completion pairs such as ``chosen`` and
  ``rejected`` laid out as the sampler lays out its samples) and :func:`next_token_loss` (pre-training, and
  supervised fine-tuning with the prompt masked).

Layout of a batch (the sampler's and :func:`completion_batch`'s): each row is left padding, ``<bos>`` and the
prompt, the completion, ``<eos>``, then right padding; the completion starts at the same column ``prompt_length``
in every row. ``attention_mask`` is True on real tokens, ``completion_mask`` on the completion and its ``<eos>``.
Positions count real tokens only, so a left-padded prompt gets the same logits as the prompt alone.

Names follow TRL (von Werra et al., the Hugging Face library for RL from language-model feedback) where it has
them: ``num_generations``, ``completion_mask``, ``create_reference_model``; a reward function takes the prompts
and the completions as texts and returns one reward each.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from .corpus import EOS_ID, PAD_ID, VOCAB, decode, encode, make_corpus
from .progress import show_progress
from .threads import single_threaded

__all__ = [
    "Completions",
    "ReinforceResult",
    "TinyLM",
    "TinyLMConfig",
    "completion_batch",
    "create_reference_model",
    "last_token_positions",
    "mean_reward",
    "next_token_loss",
    "pretrain",
    "pretrained_model",
    "reinforce_sequences",
    "sample",
    "sequence_log_probs",
    "sequence_reinforce_loss",
    "token_log_probs",
]

#: The key-value cache: one (keys, values) pair per layer, each float ``(B, n_heads, T_past, d_model // n_heads)``.
PastKeyValues = tuple[tuple[torch.Tensor, torch.Tensor], ...]

# ------------------------------------------------------------------------------------------------ the model


@dataclass
class TinyLMConfig:
    """The shape of a :class:`TinyLM`.

    Raises:
        ValueError: if a size is not positive, ``d_model`` is not a multiple of ``n_heads`` or ``dropout`` is
            outside [0, 1).
    """

    vocab_size: int = len(VOCAB)  #: number of tokens (56 for :mod:`solutions.corpus`)
    d_model: int = 64  #: width of the residual stream (the embedding size)
    n_layers: int = 2  #: transformer blocks
    n_heads: int = 4  #: attention heads per block, each of width d_model // n_heads
    max_len: int = 32  #: the most real tokens in a sequence (padding not counted): positions 0 .. max_len - 1
    dropout: float = 0.0  #: dropout probability (0: the policy is the same network in training and sampling)

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout}")


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each token sees only itself and the real tokens before it.

    For each head, with queries q, keys k and values v (linear maps of the input, width d_head):
    weights = softmax(q k^T / sqrt(d_head)) over the allowed keys, output = weights v; the heads' outputs are
    concatenated and mixed by a last linear map. With a cache, the keys and values of earlier tokens are not
    recomputed: the new ones are appended to them.
    """

    def __init__(self, config: TinyLMConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.d_head = config.d_model // config.n_heads
        self.query = nn.Linear(config.d_model, config.d_model)
        self.key = nn.Linear(config.d_model, config.d_model)
        self.value = nn.Linear(config.d_model, config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, d_model)`` -> ``(B, n_heads, T, d_head)``."""
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor,
                past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x ``(B, T, d_model)``; allowed bool ``(B, 1, T, T_past + T)``; returns the output and (keys, values)."""
        B, T, _ = x.shape
        q = self.split_heads(self.query(x))  # (B, H, T, d_head)
        k = self.split_heads(self.key(x))
        v = self.split_heads(self.value(x))
        if past is not None:  # the cached keys and values of the tokens before these
            k = torch.cat([past[0], k], dim=2)  # (B, H, T_past + T, d_head)
            v = torch.cat([past[1], v], dim=2)
        scores = q @ k.transpose(2, 3) / math.sqrt(self.d_head)  # (B, H, T, T_past + T)
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = self.dropout(torch.softmax(scores, dim=-1))
        heads = weights @ v  # (B, H, T, d_head)
        return self.out(heads.transpose(1, 2).reshape(B, T, -1)), (k, v)


class Block(nn.Module):
    """One transformer block with layer norm before each part (as in GPT-2): attention, then an MLP, each added
    to the residual stream x."""

    def __init__(self, config: TinyLMConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attention = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, 4 * config.d_model), nn.ReLU(),
                                 nn.Linear(4 * config.d_model, config.d_model), nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, past=None):
        attended, present = self.attention(self.ln_1(x), allowed, past)
        x = x + attended
        x = x + self.mlp(self.ln_2(x))
        return x, present


class TinyLM(nn.Module):
    """A causal transformer language model: ``model(tokens, attention_mask, past_key_values) -> (logits, past)``.

    Weights start from N(0, 0.02^2) (linear maps and embeddings; biases 0), drawn from ``seed``. With the default
    :class:`TinyLMConfig` it has 109,368 parameters.

    Args:
        config: the sizes (default :class:`TinyLMConfig`).
        seed: seeds the initial weights (a ``torch.Generator``; the global random state is left alone).
    """

    def __init__(self, config: TinyLMConfig | None = None, *, seed: int = 0):
        super().__init__()
        self.config = config = config or TinyLMConfig()
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.max_len, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_final = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)  # the output head: a logit per token
        generator = torch.Generator().manual_seed(seed)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02, generator=generator)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def hidden_states(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      past_key_values: PastKeyValues | None = None) -> tuple[torch.Tensor, PastKeyValues]:
        """The last layer's output after the final layer norm, before the output head.

        A reward model or a value function is this network with a scalar head ``nn.Linear(d_model, 1)`` in place
        of the output head, read at the last real token (:func:`last_token_positions`).

        Args:
            tokens: int64 ``(B, T)``, ids in 0 .. vocab_size - 1: the new tokens (all of them without a cache).
            attention_mask: bool ``(B, T_past + T)``, True on real tokens, False on padding, covering the cached
                tokens and the new ones; default all True.
            past_key_values: the cache returned by the previous call, or None.

        Returns:
            hidden float32 ``(B, T, d_model)`` and the cache extended by these tokens.

        Raises:
            ValueError: for tokens that are not a 2-D integer tensor of valid ids, a mask of the wrong shape or
                dtype, a cache of the wrong number of layers or batch size, or more than ``max_len`` real tokens.
        """
        if tokens.ndim != 2 or tokens.dtype != torch.int64:
            raise ValueError(f"tokens must be an int64 tensor (B, T); got {tokens.dtype} {tuple(tokens.shape)}")
        if tokens.numel() and not 0 <= int(tokens.min()) <= int(tokens.max()) < self.config.vocab_size:
            raise ValueError(f"token ids must lie in 0 .. {self.config.vocab_size - 1}")
        B, T = tokens.shape
        past_length = 0
        if past_key_values is not None:
            if len(past_key_values) != self.config.n_layers or past_key_values[0][0].shape[0] != B:
                raise ValueError(f"past_key_values must hold {self.config.n_layers} layers of batch size {B}")
            past_length = past_key_values[0][0].shape[2]
        if attention_mask is None:
            attention_mask = torch.ones(B, past_length + T, dtype=torch.bool)
        if attention_mask.dtype != torch.bool or attention_mask.shape != (B, past_length + T):
            raise ValueError(f"attention_mask must be a bool tensor of shape ({B}, {past_length + T}) (cached + "
                             f"new tokens); got {attention_mask.dtype} {tuple(attention_mask.shape)}")

        # positions count real tokens only, so that left padding does not shift them
        positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)[:, past_length:]  # (B, T)
        if T and int(positions.max()) >= self.config.max_len:
            raise ValueError(f"a sequence has more than max_len = {self.config.max_len} real tokens")
        # query i (at column past_length + i) may look at key j if j <= its column and key j is a real token;
        # a padding position also looks at itself, so that its softmax is defined (its output is never used)
        query_column = torch.arange(past_length, past_length + T)[:, None]  # (T, 1)
        key_column = torch.arange(past_length + T)[None, :]  # (1, T_past + T)
        allowed = (key_column <= query_column) & attention_mask[:, None, :]  # (B, T, T_past + T)
        allowed = allowed | (key_column == query_column)
        allowed = allowed[:, None]  # (B, 1, T, T_past + T): the same for every head

        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))  # (B, T, d_model)
        presents = []
        for layer, block in enumerate(self.blocks):
            x, present = block(x, allowed, None if past_key_values is None else past_key_values[layer])
            presents.append(present)
        return self.ln_final(x), tuple(presents)

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None,
                past_key_values: PastKeyValues | None = None) -> tuple[torch.Tensor, PastKeyValues]:
        """Logits float32 ``(B, T, vocab_size)`` of the next token at every position, and the extended cache.

        ``logits[b, t]`` are the unnormalised log-probabilities of the token that follows ``tokens[b, t]``.
        Arguments and errors as :meth:`hidden_states`.
        """
        hidden, presents = self.hidden_states(tokens, attention_mask, past_key_values)
        return self.head(hidden), presents


def create_reference_model(model: TinyLM) -> TinyLM:
    """A frozen copy of ``model`` (no gradients, evaluation mode): the reference policy pi_ref of a KL penalty.

    TRL's function of the same name does the same for its models (Chapters 5 and 6).
    """
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)
    return reference


def last_token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Int64 ``(B,)``: the column of the last real token of each row (where a reward model reads its score).

    Raises:
        ValueError: if ``attention_mask`` is not a 2-D bool tensor or a row has no real token.
    """
    if attention_mask.dtype != torch.bool or attention_mask.ndim != 2:
        raise ValueError("attention_mask must be a 2-D bool tensor")
    if not attention_mask.any(dim=1).all():
        raise ValueError("a row of attention_mask has no real token")
    columns = torch.arange(attention_mask.shape[1]).expand_as(attention_mask)
    return torch.where(attention_mask, columns, -1).max(dim=1).values


# ------------------------------------------------------------------------------------------------ batches


def _prompt_tokens(prompt) -> list[int]:
    """A prompt as token ids: a text gets ``<bos>`` in front; a list of ids is taken as it is."""
    tokens = encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    if not tokens:
        raise ValueError("a prompt is empty: it needs at least <bos>")
    return tokens


def completion_batch(prompts: Sequence, completions: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lay (prompt, completion) pairs out as :func:`sample` lays out its samples.

    Prompts are left-padded to the longest, completions right-padded to the longest, so every completion starts
    at the same column. Use it for demonstrations (supervised fine-tuning) and for ``chosen``/``rejected``
    completions (reward model, DPO).

    Args:
        prompts: B prompts, each a text (``"the food was"``; ``<bos>`` is put in front) or a list of token ids
            (taken as given).
        completions: B completions, each a text (``"great ."``; ``<eos>`` is put at the end) or a list of token
            ids (taken as given: a completion cut before ``<eos>`` stays cut).

    Returns:
        ``tokens`` int64 ``(B, L)``, ``attention_mask`` bool ``(B, L)`` and ``completion_mask`` bool ``(B, L)``.

    Raises:
        ValueError: if the lengths differ, a prompt is empty or a word is not in the vocabulary.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    prompt_ids = [_prompt_tokens(p) for p in prompts]
    completion_ids = [encode(c, bos=False, eos=True) if isinstance(c, str) else [int(t) for t in c]
                      for c in completions]
    P = max(len(p) for p in prompt_ids)
    L = P + max(len(c) for c in completion_ids)
    tokens = torch.full((len(prompts), L), PAD_ID, dtype=torch.int64)
    attention_mask = torch.zeros(len(prompts), L, dtype=torch.bool)
    completion_mask = torch.zeros(len(prompts), L, dtype=torch.bool)
    for row, (p, c) in enumerate(zip(prompt_ids, completion_ids)):
        tokens[row, P - len(p): P] = torch.tensor(p)
        tokens[row, P: P + len(c)] = torch.tensor(c, dtype=torch.int64)
        attention_mask[row, P - len(p): P + len(c)] = True
        completion_mask[row, P: P + len(c)] = True
    return tokens, attention_mask, completion_mask


# ------------------------------------------------------------------------------------------------ sampling


@dataclass
class Completions:
    """What :func:`sample` returns: B = number of prompts x ``num_generations`` rows, L columns.

    Row ``i * num_generations + g`` is the g-th completion of prompt i (TRL's order).
    """

    tokens: torch.Tensor  #: int64 (B, L): left padding, <bos> and prompt, completion, <eos>, right padding
    attention_mask: torch.Tensor  #: bool (B, L): True on real tokens
    completion_mask: torch.Tensor  #: bool (B, L): True exactly on the sampled tokens, up to and including <eos>
    log_probs: torch.Tensor  #: float32 (B, L): log pi(token | tokens before) of each sampled token, 0 elsewhere
    prompt_length: int  #: the completions start at this column
    num_generations: int = 1  #: completions per prompt

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def prompt_index(self) -> torch.Tensor:
        """Int64 ``(B,)``: the index of each row's prompt in the list given to :func:`sample`."""
        return torch.arange(len(self)) // self.num_generations

    @property
    def truncated(self) -> torch.Tensor:
        """Bool ``(B,)``: the completions cut at ``max_new_tokens`` before ``<eos>``."""
        return ~((self.tokens == EOS_ID) & self.completion_mask).any(dim=1)

    def texts(self) -> list[str]:
        """Prompt and completion of each row as one text (without the special tokens)."""
        return [decode(row) for row in self.tokens]

    def prompt_texts(self) -> list[str]:
        """The prompt of each row."""
        return [decode(row[: self.prompt_length]) for row in self.tokens]

    def completion_texts(self) -> list[str]:
        """The completion of each row, up to (without) ``<eos>``."""
        return [decode(row[self.prompt_length:]) for row in self.tokens]

    def completion_tokens(self) -> list[list[int]]:
        """The completion of each row as token ids, ``<eos>`` included when it was sampled."""
        return [row[mask].tolist() for row, mask in zip(self.tokens, self.completion_mask)]


@torch.no_grad()
def sample(model: TinyLM, prompts: Sequence, max_new_tokens: int, *, temperature: float = 1.0,
           generator: torch.Generator | None = None, num_generations: int = 1,
           use_cache: bool = True) -> Completions:
    """Sample completions of a batch of prompts, one token at a time, with a key-value cache.

    The prompts are left-padded to the same length and read in one forward pass; then each step feeds only the
    newest token, the keys and values of the earlier ones coming from the cache (``use_cache=False`` recomputes
    the whole sequence at every step instead: the same numbers, more slowly -- for comparison). A row stops at
    ``<eos>``; its later columns are padding, outside every mask. Sampling stops when every row has stopped or
    after ``max_new_tokens`` tokens.

    Temperature: the tokens are drawn from softmax(logits / temperature) (``temperature=0``: the most probable
    token, greedy decoding), but ``log_probs`` are always those of the policy itself, log softmax(logits), at
    temperature 1 -- the pi_theta that :func:`token_log_probs` recomputes and that the policy-gradient losses
    differentiate. With a temperature other than 1 the samples therefore come from another distribution than
    the policy's (off-policy). TRL's GRPO trainer (recent versions) instead divides the logits by its
    ``temperature`` when it computes log-probabilities (``token_log_probs(..., temperature=...)`` gives that form).

    Args:
        model: the policy; its training/evaluation mode is restored afterwards.
        prompts: the prompts, each a text (``"the food was"``; ``<bos>`` is put in front) or a non-empty list of
            token ids (taken as given), of any lengths.
        max_new_tokens: the most tokens to sample per row (>= 1), ``<eos>`` included.
        temperature: >= 0; see above.
        generator: the source of randomness (``torch.Generator().manual_seed(seed)``); same generator state,
            same samples. None uses torch's global generator.
        num_generations: completions per prompt (>= 1).
        use_cache: use the key-value cache (True) or recompute everything at each step (False).

    Returns:
        :class:`Completions`.

    Raises:
        ValueError: for no prompts, an empty prompt, an unknown word or id, ``max_new_tokens`` < 1,
            ``num_generations`` < 1, a negative temperature, or prompt + completion longer than ``max_len``.
    """
    if not len(prompts):
        raise ValueError("no prompts")
    if max_new_tokens < 1 or num_generations < 1:
        raise ValueError(f"max_new_tokens and num_generations must be >= 1; got {max_new_tokens}, "
                         f"{num_generations}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    prompt_ids = [_prompt_tokens(p) for p in prompts for _ in range(num_generations)]
    if max(len(p) for p in prompt_ids) + max_new_tokens > model.config.max_len:
        raise ValueError(f"prompt + max_new_tokens exceeds max_len = {model.config.max_len}")
    tokens, attention_mask, completion_mask = completion_batch(prompt_ids, [[] for _ in prompt_ids])
    B, prompt_length = tokens.shape
    log_probs = torch.zeros(B, prompt_length)
    finished = torch.zeros(B, dtype=torch.bool)

    was_training = model.training
    model.eval()
    logits, past = model(tokens, attention_mask)
    for _ in range(max_new_tokens):
        next_logits = logits[:, -1]  # (B, V): the distribution of the next token of each row
        if temperature == 0:
            next_token = next_logits.argmax(dim=-1)
        else:
            probs = torch.softmax(next_logits / temperature, dim=-1)
            next_token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        active = ~finished  # rows still writing; the others get padding
        next_token = torch.where(active, next_token, PAD_ID)
        token_log_prob = torch.log_softmax(next_logits, dim=-1).gather(1, next_token[:, None]).squeeze(1)

        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        attention_mask = torch.cat([attention_mask, active[:, None]], dim=1)
        completion_mask = torch.cat([completion_mask, active[:, None]], dim=1)
        log_probs = torch.cat([log_probs, torch.where(active, token_log_prob, 0.0)[:, None]], dim=1)
        finished = finished | (next_token == EOS_ID)
        if finished.all():
            break
        if use_cache:
            logits, past = model(next_token[:, None], attention_mask, past)
        else:
            logits, _ = model(tokens, attention_mask)
    model.train(was_training)
    return Completions(tokens, attention_mask, completion_mask, log_probs, prompt_length, num_generations)


# ----------------------------------------------------------------------------------------------- log-probabilities


def token_log_probs(model: TinyLM, tokens: torch.Tensor, attention_mask: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """log pi(tokens[:, t] | tokens[:, :t]) at every position t, by one forward pass, with gradient.

    The logits at position t - 1 give the distribution of token t. Position 0, padding, and the first real
    token of a row (nothing before it predicts it) get 0. Select the completion with ``completion_mask``.

    Args:
        model: the policy (or a reference or old policy: wrap the call in ``torch.no_grad()`` then).
        tokens: int64 ``(B, L)``.
        attention_mask: bool ``(B, L)``.
        temperature: > 0; the log-probabilities of softmax(logits / temperature) (1: the policy itself; see
            :func:`sample`).

    Returns:
        Float32 ``(B, L)``.

    Raises:
        ValueError: for a non-positive temperature, and as :meth:`TinyLM.forward`.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    logits, _ = model(tokens, attention_mask)
    log_p = torch.log_softmax(logits[:, :-1] / temperature, dim=-1)  # (B, L - 1, V)
    picked = log_p.gather(2, tokens[:, 1:, None]).squeeze(2)  # (B, L - 1): log p of tokens[:, 1:]
    predicted = attention_mask[:, 1:] & attention_mask[:, :-1]  # a real token after a real token
    picked = torch.where(predicted, picked, 0.0)
    return torch.cat([torch.zeros(tokens.shape[0], 1, dtype=picked.dtype), picked], dim=1)


def sequence_log_probs(logits: torch.Tensor, tokens: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """log pi(completion | prompt) of each sequence: the sum of its completion tokens' log-probabilities.

    seq[b] = sum_t completion_mask[b, t] * log softmax(logits[b, t - 1])[tokens[b, t]]. The logits at position
    t - 1 predict token t; the prompt was given, not chosen, and padding is nothing, so the mask leaves both out.
    It is the log of the probability of the whole completion (a product over its tokens). Chapter 4, exercise 6.

    Args:
        logits: float ``(B, L, V)`` (float32 or float64), with gradient.
        tokens: int64 ``(B, L)``.
        completion_mask: bool ``(B, L)``, True on completion tokens; column 0 must be False (nothing predicts the
            first token).

    Returns:
        ``(B,)``, the dtype of ``logits``, with gradient.

    Raises:
        ValueError: for mismatched shapes, a mask that is not bool, or a True in column 0 of the mask.
    """
    if logits.ndim != 3 or tokens.shape != logits.shape[:2] or completion_mask.shape != tokens.shape:
        raise ValueError(f"need logits (B, L, V), tokens (B, L) and completion_mask (B, L); got "
                         f"{tuple(logits.shape)}, {tuple(tokens.shape)}, {tuple(completion_mask.shape)}")
    if completion_mask.dtype != torch.bool:
        raise ValueError(f"completion_mask must be bool; got {completion_mask.dtype}")
    if completion_mask[:, 0].any():
        raise ValueError("completion_mask[:, 0] must be False: no logits predict the first token")
    log_p = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, L - 1, V): the distribution of tokens 1 .. L - 1
    token_log_p = log_p.gather(2, tokens[:, 1:, None]).squeeze(2)  # (B, L - 1): log p(tokens[:, t] | before)
    return (token_log_p * completion_mask[:, 1:]).sum(dim=1)


def sequence_reinforce_loss(seq_log_probs: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE for sequences with the mean-reward baseline: -(1/n) sum_i (R_i - mean R) log pi(x_i).

    Each completion is one episode with one reward at its end, so its return is that reward and its
    log-probability is :func:`sequence_log_probs`. The gradient of this loss is minus the Monte Carlo estimate
    of the policy gradient (Williams 1992; Sutton & Barto 2018, Section 13.4, with the batch's mean reward as the
    baseline b). The advantages R_i - mean R are detached: they weigh the log-probabilities and must not be
    trained themselves. The mean is over the n sequences (episodes), not over tokens: the gradient's scale does
    not depend on the batch size, and a longer completion, being one action sequence with one reward, counts
    through its summed log-probability (Chapter 5 compares the per-token averages of GRPO and its variants).
    The baseline includes the sequence's own reward, which biases the estimate by a factor (n - 1) / n.
    Chapter 4, exercise 7.

    Args:
        seq_log_probs: float ``(n,)``, with gradient.
        rewards: float ``(n,)`` (any gradient they carry is cut).

    Returns:
        A scalar tensor. With n = 1 the advantage, hence the loss, is 0.

    Raises:
        ValueError: if the arguments are not tensors of the same shape ``(n,)`` with n >= 1.
    """
    if not isinstance(seq_log_probs, torch.Tensor) or not isinstance(rewards, torch.Tensor):
        raise ValueError("seq_log_probs and rewards must be torch tensors")
    if seq_log_probs.ndim != 1 or rewards.shape != seq_log_probs.shape or len(rewards) == 0:
        raise ValueError(f"need seq_log_probs and rewards of the same shape (n,); got "
                         f"{tuple(seq_log_probs.shape)} and {tuple(rewards.shape)}")
    advantages = (rewards - rewards.mean()).detach()
    return -(advantages * seq_log_probs).mean()


# ------------------------------------------------------------------------------------------------ training


def next_token_loss(model: TinyLM, tokens: torch.Tensor, attention_mask: torch.Tensor,
                    loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of the next token: -mean over the chosen positions t of log pi(tokens[:, t] | before).

    Pre-training uses every real token after the first (``loss_mask=None``); supervised fine-tuning passes the
    ``completion_mask`` so that the prompt's tokens, which the model is given, are not trained on (Chapter 6).

    Args:
        model: the language model.
        tokens: int64 ``(B, L)``.
        attention_mask: bool ``(B, L)``.
        loss_mask: bool ``(B, L)``: the positions whose token is a target; default ``attention_mask``. A
            position counts only if it and the one before are real tokens.

    Returns:
        A scalar tensor (nats per token), with gradient.

    Raises:
        ValueError: for a loss_mask of the wrong shape or dtype, or one that selects no target.
    """
    if loss_mask is None:
        loss_mask = attention_mask
    if loss_mask.shape != tokens.shape or loss_mask.dtype != torch.bool:
        raise ValueError(f"loss_mask must be bool {tuple(tokens.shape)}; got {loss_mask.dtype} "
                         f"{tuple(loss_mask.shape)}")
    targets = loss_mask[:, 1:] & attention_mask[:, 1:] & attention_mask[:, :-1]  # (B, L - 1)
    if not targets.any():
        raise ValueError("loss_mask selects no target token")
    logits, _ = model(tokens, attention_mask)
    cross_entropy = nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return (cross_entropy * targets).sum() / targets.sum()


@single_threaded()
def pretrain(model: TinyLM, sentences: Sequence, n_steps: int, *, lr: float = 3e-3, batch_size: int = 64,
             seed: int = 0, progress: bool | None = None) -> list[float]:
    """Pre-train a language model on sentences: next-token cross-entropy, minibatches drawn uniformly, Adam.

    Each step draws ``batch_size`` sentences (with replacement) and takes one step of Adam (Kingma & Ba 2015)
    on :func:`next_token_loss`, the padding masked out. The learning rate falls linearly from ``lr`` to 0 over the
    steps, which lets the last steps settle. Trains ``model`` in place, on one CPU thread.

    Args:
        model: the language model.
        sentences: texts (``"the food was great ."``, encoded as ``<bos>`` ... ``<eos>``) or lists of token ids.
        n_steps: number of gradient steps (>= 1).
        lr: initial learning rate (> 0).
        batch_size: sentences per step (>= 1).
        seed: seeds the minibatches (a ``torch.Generator``).
        progress: show a tqdm progress bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        The loss of each step (nats per token), a list of ``n_steps`` floats.

    Raises:
        ValueError: for no sentences, ``n_steps``, ``batch_size`` or ``lr`` not positive, or an unknown word.
    """
    if not len(sentences):
        raise ValueError("no sentences")
    if n_steps < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"n_steps, batch_size and lr must be positive; got {n_steps}, {batch_size}, {lr}")
    sequences = [encode(s, eos=True) if isinstance(s, str) else list(s) for s in sentences]
    width = max(len(s) for s in sequences)
    tokens = torch.tensor([s + [PAD_ID] * (width - len(s)) for s in sequences])  # (N, width), right-padded
    attention_mask = tokens != PAD_ID
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / n_steps)
    model.train()
    losses = []
    for _ in tqdm(range(n_steps), desc="pre-training", disable=not show_progress(progress), mininterval=1.0):
        batch = torch.randint(len(sequences), (batch_size,), generator=generator)
        loss = next_token_loss(model, tokens[batch], attention_mask[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


#: Pre-trained weights by the arguments of :func:`pretrained_model` (in memory only).
_PRETRAINED: dict[tuple, dict[str, torch.Tensor]] = {}


def pretrained_model(seed: int = 0, *, n_sentences: int = 10_000, n_steps: int = 500,
                     config: TinyLMConfig | None = None, progress: bool | None = None) -> TinyLM:
    """A :class:`TinyLM` pre-trained on :func:`solutions.corpus.make_corpus` -- the starting point of Chapters 4-6.

    The first call with given arguments trains (about 10 s of CPU here: :func:`pretrain` with its defaults on
    ``make_corpus(n_sentences, seed)``, initial weights from ``seed``); later calls copy the weights kept in
    memory. Each call returns a new model, so training it leaves the next call's model untouched. The tokenizer
    is :func:`solutions.corpus.encode` / :func:`~solutions.corpus.decode`, the configuration ``model.config``.

    What it has learned (seeds 0, 1, 2; ``benchmarks/language_model_times.py``): 93-95 % of its reviews are
    well-formed (:func:`~solutions.corpus.well_formed_review`), with a mean sentiment of -0.03 to -0.015; it
    samples the right sum 50-57 % of the time (the corpus is right 70 % of the time, and 500 steps do not learn
    every sum) and greedy decoding gets 92-97 % right -- room for reinforcement learning on both.

    Args:
        seed: seeds the corpus, the initial weights and the minibatches.
        n_sentences: size of the corpus.
        n_steps: pre-training steps.
        config: the model's sizes (default :class:`TinyLMConfig`).
        progress: show a tqdm progress bar while training (default: :func:`~solutions.progress.show_progress`).

    Returns:
        The model, in evaluation mode.
    """
    config = config or TinyLMConfig()
    key = (seed, n_sentences, n_steps, tuple(vars(config).items()))
    if key not in _PRETRAINED:
        model = TinyLM(config, seed=seed)
        pretrain(model, make_corpus(n_sentences, seed), n_steps, seed=seed, progress=progress)
        _PRETRAINED[key] = {name: value.clone() for name, value in model.state_dict().items()}
    model = TinyLM(config, seed=seed)
    model.load_state_dict(_PRETRAINED[key])
    return model.eval()


RewardFunction = Callable[[list[str], list[str]], "torch.Tensor | Sequence[float]"]


@torch.no_grad()
def mean_reward(model: TinyLM, prompts: Sequence, reward_fn: RewardFunction, *, num_generations: int = 1,
                max_new_tokens: int = 10, temperature: float = 1.0, seed: int = 0) -> float:
    """The mean reward of ``num_generations`` sampled completions of every prompt (e.g. the arithmetic accuracy).

    Args:
        model, prompts, max_new_tokens, temperature: as :func:`sample` (``temperature=0``: greedy).
        reward_fn: ``reward_fn(prompt_texts, completion_texts)`` -> B rewards (TRL's form), e.g.
            :func:`solutions.corpus.arithmetic_reward`.
        num_generations: completions per prompt.
        seed: seeds the sampling.
    """
    with single_threaded():
        completions = sample(model, prompts, max_new_tokens, temperature=temperature,
                             num_generations=num_generations, generator=torch.Generator().manual_seed(seed))
    return float(torch.as_tensor(reward_fn(completions.prompt_texts(), completions.completion_texts())).mean())


@dataclass
class ReinforceResult:
    """What :func:`reinforce_sequences` returns."""

    model: TinyLM  #: the trained policy (the model passed in, trained in place)
    mean_rewards: list[float] = field(default_factory=list)  #: mean reward of each update's batch of samples
    losses: list[float] = field(default_factory=list)  #: the loss of each update
    samples_before: list[str] = field(default_factory=list)  #: texts sampled before training
    samples_after: list[str] = field(default_factory=list)  #: texts sampled after training, same prompts and seed


@single_threaded()
def reinforce_sequences(model: TinyLM, prompts: Sequence, reward_fn: RewardFunction, n_updates: int, *,
                        batch_size: int = 32, num_generations: int = 1, lr: float = 1e-3, max_new_tokens: int = 10,
                        temperature: float = 1.0, seed: int = 0, n_shown: int = 10,
                        progress: bool | None = None) -> ReinforceResult:
    """REINFORCE for a language model: sample completions, score them, raise the log-probability of the good ones.

    Each update (Williams 1992; Sutton & Barto 2018, Section 13.4, with the batch's mean reward as baseline):

    1. draw ``batch_size / num_generations`` prompts uniformly and sample ``num_generations`` completions of
       each (:func:`sample`);
    2. score them: ``rewards = reward_fn(prompt_texts, completion_texts)``;
    3. one forward pass gives the logits, :func:`sequence_log_probs` the log-probability of each completion;
    4. one step of Adam on :func:`sequence_reinforce_loss`.

    The same ``n_shown`` prompts are sampled before and after training, with the same seed, for the book.

    Args:
        model: the policy, trained in place (e.g. :func:`pretrained_model`).
        prompts: texts or token lists (as :func:`sample`).
        reward_fn: ``reward_fn(prompt_texts, completion_texts)`` -> B rewards, a tensor or a list of floats (TRL's
            form); for the sentiment of a review: ``lambda prompts, completions: sentiment_reward(completions)``.
        n_updates: number of updates (>= 1).
        batch_size: completions per update, a multiple of ``num_generations``.
        num_generations: completions per prompt.
        lr: Adam's learning rate.
        max_new_tokens, temperature: as :func:`sample`.
        seed: seeds the prompts drawn and the sampling (a ``torch.Generator``).
        n_shown: number of samples kept before and after (0: none).
        progress: show a tqdm progress bar (default: :func:`~solutions.progress.show_progress`).

    Returns:
        :class:`ReinforceResult`.

    Raises:
        ValueError: if ``batch_size`` is not a positive multiple of ``num_generations``, ``n_updates`` < 1, or
            ``reward_fn`` does not return one reward per completion.
    """
    if n_updates < 1:
        raise ValueError(f"n_updates must be >= 1; got {n_updates}")
    if batch_size < 1 or num_generations < 1 or batch_size % num_generations:
        raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of num_generations "
                         f"({num_generations})")
    shown = [prompts[i % len(prompts)] for i in range(n_shown)]

    def show() -> list[str]:
        if not shown:
            return []
        return sample(model, shown, max_new_tokens, temperature=temperature,
                      generator=torch.Generator().manual_seed(seed + 1)).texts()

    result = ReinforceResult(model, samples_before=show())
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in tqdm(range(n_updates), desc="REINFORCE", disable=not show_progress(progress), mininterval=1.0):
        picked = torch.randint(len(prompts), (batch_size // num_generations,), generator=generator)
        completions = sample(model, [prompts[i] for i in picked], max_new_tokens, temperature=temperature,
                             generator=generator, num_generations=num_generations)
        rewards = torch.as_tensor(reward_fn(completions.prompt_texts(), completions.completion_texts()),
                                  dtype=torch.float32)
        if rewards.shape != (len(completions),):
            raise ValueError(f"reward_fn returned shape {tuple(rewards.shape)}; need ({len(completions)},)")
        model.train()
        logits, _ = model(completions.tokens, completions.attention_mask)
        seq_log_probs = sequence_log_probs(logits, completions.tokens, completions.completion_mask)
        loss = sequence_reinforce_loss(seq_log_probs, rewards)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        result.mean_rewards.append(rewards.mean().item())
        result.losses.append(loss.item())
    model.eval()
    result.samples_after = show()
    return result
