"""Cross-check of the book's RLHF losses against Hugging Face TRL's own implementations (issue 15, Chapter 6).

On one small batch, the same numbers are computed twice:

* by TRL's own code paths: ``GRPOTrainer._generate_and_score_completions`` (sampling, padding, rewards, group
  advantages, the old and reference log-probabilities) and ``GRPOTrainer._compute_loss``; ``RLOOTrainer``'s
  KL-shaped rewards and advantages; ``DPOTrainer.compute_loss`` on a batch from its own dataset preparation and
  collator; ``RewardTrainer.compute_loss`` likewise;
* by the book's functions (``solutions.grpo``: ``group_advantages``, ``grpo_loss``; ``solutions.rlhf``:
  ``sequence_kl``, ``per_token_rewards``, ``dpo_loss``, ``reward_model_loss``, ``pairwise_accuracy``;
  ``solutions.language_model.sequence_log_probs``) on log-probabilities and rewards that this script computes
  itself from the same models' logits (one forward pass, ``log_softmax``, the tokens picked).

The models are a tiny randomly initialised Llama causal LM (2 layers, 16 dimensions, a 16-word vocabulary) and a
sequence-classification model of the same shape, built and seeded here; the tokenizer is a word-level one built
here too; nothing is downloaded (``HF_HUB_OFFLINE=1``). The GRPO batch is off-policy: the reference policy, the
policy that sampled (``old``) and the current one are three different parameter vectors, so the ratio is clipped
on some tokens and the KL term is not zero.

Where TRL's default differs from the book's form, TRL is set to the book's form and the script prints what TRL
does by default (and, where it changes the number, by how much on this batch).

It prints a table (quantity, ours, TRL's, |difference|) and exits with status 1 if any difference exceeds 1e-5
(values and gradients alike). ``--perturb 1.001`` multiplies every number on the book's side by 1.001 to show that
the comparison can fail (that run must exit 1).

Measured with TRL 1.16.0 (transformers 5.23.0, torch 2.13.0, float32): all 39 comparisons agree within 4.8e-7
(log-probabilities and gradients included); the run takes 12-15 s of CPU (10-12 s of it the imports), 24-39 s of
wall time on this 2-core machine while other jobs ran (load 7-9). Installing requirements-trl.txt into .venv/trl
with benchmarks/trl_venv.sh takes 22-25 s of CPU, about a minute of wall time, with or without pip's cache.

Run (TRL is not in the book's environment; ``benchmarks/requirements-trl.txt``)::

    make setup && bash benchmarks/trl_venv.sh && .venv/trl/bin/python benchmarks/trl_crosscheck.py
"""

from __future__ import annotations

import os

# Nothing from the hub: set before transformers, datasets and huggingface_hub are imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

WALL_START, CPU_START = time.perf_counter(), time.process_time()
_children = resource.getrusage(resource.RUSAGE_CHILDREN)
CHILDREN_CPU_START = _children.ru_utime + _children.ru_stime  # inherited across exec (e.g. from `bash -c`)

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)
from trl import (  # noqa: E402
    DPOConfig,
    DPOTrainer,
    GRPOConfig,
    GRPOTrainer,
    RewardConfig,
    RewardTrainer,
    RLOOConfig,
    RLOOTrainer,
)

from solutions.grpo import group_advantages, grpo_loss  # noqa: E402
from solutions.language_model import sequence_log_probs  # noqa: E402
from solutions.rlhf import (  # noqa: E402
    dpo_loss,
    pairwise_accuracy,
    per_token_rewards,
    ranking_to_pairs,
    reward_model_loss,
    sequence_kl,
)
from solutions.threads import single_threaded  # noqa: E402

IMPORT_WALL, IMPORT_CPU = time.perf_counter() - WALL_START, time.process_time() - CPU_START

TOLERANCE = 1e-5
SEED = 4  # a seed whose GRPO batch has groups with and without reward variance, lengths 2 to 6
NUDGE = 0.02  # the scale of the noise that stands in for an update (reference -> old -> current policy)
WORDS = ["<pad>", "<eos>", "<unk>", *"abcdefghijklm"]  # ids 0, 1, 2, then the 13 letters
PAD_ID, EOS_ID, UNK_ID = 0, 1, 2

# GRPO: 4 prompts of 1 to 4 words (left padding), 3 completions each of at most 6 tokens (right padding)
GRPO_PROMPTS = ["a b c", "d e", "f g h i", "j"]
CONSTANT_PROMPT = "j"  # every completion of this prompt gets the same reward: a zero-variance group
NUM_GENERATIONS = 3
MAX_COMPLETION_LENGTH = 6
EPSILON = 0.2
BETA = 0.04  # DeepSeekMath's KL coefficient
KL_COEF = 0.05  # RLOO's beta

# DPO: prompts with a chosen and a rejected completion of different lengths
DPO_DATA = {
    "prompt": ["a b", "c", "d e f", "g h"],
    "chosen": [" c d e", " f", " g", " i j k l"],
    "rejected": [" f", " k l m a", " b c", " m"],
}
DPO_BETAS = (0.1, 0.5)

# Reward model: two prompts, K = 3 completions ranked best first, expanded into C(3, 2) = 3 pairs each
RM_PROMPTS = ["a b", "c d e"]
RM_COMPLETIONS = [[" f g", " h", " i j k"], [" l", " m a b", " c"]]
RM_RANKINGS = [[2, 0, 1], [0, 2, 1]]


class Table:
    """The rows of the report; a row with a difference above TOLERANCE is a mismatch."""

    def __init__(self, perturb: float):
        self.perturb = perturb
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.mismatches: list[str] = []

    def ours(self, x):
        """The book's side of a comparison (scaled by --perturb)."""
        return x * self.perturb

    def section(self, title: str) -> None:
        self.rows.append((title, "", "", "", ""))

    def compare(self, name: str, ours, theirs, *, note: str = "") -> None:
        """Scalars are shown as they are; tensors by their L2 norm, with the largest elementwise difference."""
        ours = torch.as_tensor(ours, dtype=torch.float64).detach()
        theirs = torch.as_tensor(theirs, dtype=torch.float64).detach()
        if ours.shape != theirs.shape:
            raise RuntimeError(f"{name}: shapes differ, ours {tuple(ours.shape)} and TRL's {tuple(theirs.shape)}")
        diff = (ours - theirs).abs().max().item() if ours.numel() else 0.0
        if ours.numel() == 1:
            shown = f"{ours.item():.7f}", f"{theirs.item():.7f}"
        else:
            name += " (norm)"
            shown = f"{ours.norm().item():.7f}", f"{theirs.norm().item():.7f}"
        ok = diff <= TOLERANCE and math.isfinite(diff)
        if not ok:
            self.mismatches.append(name.strip())
        status = ("ok" if ok else "MISMATCH") + (f"  {note}" if note else "")
        self.rows.append((name, *shown, f"{diff:.1e}", status))

    def show(self) -> None:
        width = max(len(r[0]) for r in self.rows if r[1])
        print(f"{'quantity':<{width}}  {'ours':>13}  {'TRL':>13}  {'|diff|':>8}")
        for name, ours, theirs, diff, status in self.rows:
            if not ours:
                print(f"\n{name}")
            else:
                print(f"{name:<{width}}  {ours:>13}  {theirs:>13}  {diff:>8}  {status}")


# ------------------------------------------------------------------------------------------- models and data


def make_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer: one token per letter, <eos> and <pad> (each trainer sets the padding side)."""
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def llama_config(**extra) -> LlamaConfig:
    return LlamaConfig(vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                       initializer_range=0.3, tie_word_embeddings=False, pad_token_id=PAD_ID, eos_token_id=EOS_ID,
                       bos_token_id=None, **extra)


def nudge(model: torch.nn.Module, seed: int, scale: float) -> None:
    """Move every parameter by scale * N(0, 1) noise from its own seeded stream: a stand-in for an update."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator, dtype=p.dtype))


def gradient(model: torch.nn.Module) -> torch.Tensor:
    """All parameter gradients as one float64 vector (zeros where a parameter got none), then cleared."""
    parts = [torch.zeros(p.numel(), dtype=torch.float64) if p.grad is None else p.grad.reshape(-1).double()
             for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return torch.cat(parts)


def completion_log_probs(model, prompt_ids, prompt_mask, completion_ids, completion_mask) -> torch.Tensor:
    """ln pi(token t | tokens before t) at every completion column, (B, C), by one forward pass: the logits at
    position t - 1, log-softmax, the token picked. Padding columns hold whatever the model says (masks drop
    them)."""
    tokens = torch.cat([prompt_ids, completion_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    logits = model(input_ids=tokens, attention_mask=attention_mask).logits
    log_p = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, tokens[:, 1:, None]).squeeze(2)
    return log_p[:, -completion_ids.shape[1]:]


def trainer_options(out_dir: str, batch_size: int) -> dict:
    """What every trainer here shares: CPU in float32 (TRL's configs default to bf16 autocast), no gradient
    checkpointing (no effect on the numbers), no logging or saving, the batch in one step."""
    return dict(output_dir=out_dir, per_device_train_batch_size=batch_size, use_cpu=True, bf16=False,
                gradient_checkpointing=False, report_to="none", save_strategy="no", logging_strategy="no",
                seed=SEED, disable_dropout=True)


# --------------------------------------------------------------------------------------------------- GRPO


class RecordedReward:
    """A programmatic reward that remembers what it returned: a function of the completion's tokens, constant on
    CONSTANT_PROMPT's group."""

    __name__ = "recorded_reward"

    def __init__(self):
        self.last: list[float] = []

    def __call__(self, prompts, completions, completion_ids, **kwargs):
        self.last = [1.0 if prompt == CONSTANT_PROMPT else float(sum(ids) % 7) + 0.25 * len(ids)
                     for prompt, ids in zip(prompts, completion_ids, strict=True)]
        return self.last


def grpo_config(out_dir: str, **options) -> GRPOConfig:
    """The book's form of GRPO in TRL's options (see grpo_defaults for TRL's own defaults)."""
    settings = dict(num_generations=NUM_GENERATIONS, max_completion_length=MAX_COMPLETION_LENGTH, epsilon=EPSILON,
                    temperature=1.0, num_iterations=2, use_bias_correction_kl=False, scale_rewards="group",
                    loss_type="grpo", beta=0.0, mask_truncated_completions=False, top_entropy_quantile=1.0,
                    generation_kwargs={"suppress_tokens": [PAD_ID, UNK_ID]})
    settings.update(options)
    return GRPOConfig(**{**trainer_options(out_dir, len(GRPO_PROMPTS) * NUM_GENERATIONS), **settings})


class GRPOCase:
    """One GRPOTrainer on the shared off-policy batch: TRL's batch, rewards, advantages and loss, with gradient."""

    def __init__(self, model_dir: str, out_dir: str, **options):
        self.reward = RecordedReward()
        args = grpo_config(out_dir, **options)
        policy = AutoModelForCausalLM.from_pretrained(model_dir)  # theta_ref; TRL loads its reference from here
        self.trainer = GRPOTrainer(model=policy, reward_funcs=self.reward, args=args,
                                   processing_class=make_tokenizer(),
                                   train_dataset=Dataset.from_dict({"prompt": GRPO_PROMPTS}))
        model = self.model = self.trainer.model
        nudge(model, seed=1, scale=NUDGE)  # theta_old: the policy that samples
        model.train()
        torch.manual_seed(SEED)
        rows = [{"prompt": p} for p in GRPO_PROMPTS for _ in range(NUM_GENERATIONS)]  # RepeatSampler's order
        self.batch = self.trainer._generate_and_score_completions(rows)
        self.rewards = torch.tensor(self.reward.last)
        with torch.no_grad():
            self.old_log_probs = completion_log_probs(model, *self.tensors())  # ours, from theta_old
        nudge(model, seed=2, scale=NUDGE)  # theta: the policy after an update, so the ratio is not 1
        self.trainer.current_gradient_accumulation_steps = 1  # what Trainer's loop sets: one micro-batch per step
        model.zero_grad(set_to_none=True)
        self.loss = self.trainer._compute_loss(model, self.batch)
        self.loss.backward()
        self.gradient = gradient(model)
        self.metrics = {k: v[-1] for k, v in self.trainer._metrics["train"].items()}

    def tensors(self):
        b = self.batch
        return b["prompt_ids"], b["prompt_mask"], b["completion_ids"], b["completion_mask"]


def grpo_checks(table: Table, model_dir: str, ref_model, out_dir: str) -> GRPOCase:
    """Each loss_type with beta 0 and BETA, then scale_rewards 'batch' and 'none'; returns the first case."""
    first = None

    def run(**options) -> GRPOCase:
        case = GRPOCase(model_dir, out_dir, **options)
        if first is not None and not all(torch.equal(case.batch[k], first.batch[k])
                                         for k in ("prompt_ids", "completion_ids", "completion_mask")):
            raise RuntimeError("the seeded sampling gave another batch: the cases would not be comparable")
        return case

    for beta in (0.0, BETA):
        for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
            case = run(loss_type=loss_type, beta=beta)
            if first is None:
                first = case
                describe_grpo_batch(table, case)
            mask = case.batch["completion_mask"].bool()
            log_probs = completion_log_probs(case.model, *case.tensors())  # ours, from theta, with gradient
            with torch.no_grad():
                ref_log_probs = completion_log_probs(ref_model, *case.tensors())
            advantages = group_advantages(case.rewards, NUM_GENERATIONS, "group")
            ours = grpo_loss(log_probs, case.old_log_probs, advantages, mask, ref_log_probs=ref_log_probs,
                             beta=beta, epsilon=EPSILON, loss_type=loss_type,
                             max_completion_length=MAX_COMPLETION_LENGTH)
            table.ours(ours).backward()
            table.compare(f"  loss_type={loss_type!r:10} beta={beta:<5}  loss", table.ours(ours.detach()),
                          case.loss.detach())
            table.compare(f"  loss_type={loss_type!r:10} beta={beta:<5}  gradient", gradient(case.model),
                          case.gradient)
            if beta > 0 and loss_type == "grpo":
                table.compare("  reference log-probs on completion tokens (TRL: ref_per_token_logps)",
                              table.ours(ref_log_probs[mask]), case.batch["ref_per_token_logps"][mask])
                with torch.no_grad():
                    k3 = sequence_kl(log_probs, ref_log_probs, mask, estimator="k3").sum() / mask.sum()
                table.compare("  mean k3 per completion token (TRL's logged 'kl'), sequence_kl 'k3'",
                              table.ours(k3), case.metrics["kl"])

    for scale_rewards in ("batch", "none"):
        case = run(scale_rewards=scale_rewards)
        mask = case.batch["completion_mask"].bool()
        advantages = group_advantages(case.rewards, NUM_GENERATIONS, scale_rewards)
        table.compare(f"  advantages scale_rewards={scale_rewards!r}", table.ours(advantages),
                      case.batch["advantages"])
        with torch.no_grad():
            log_probs = completion_log_probs(case.model, *case.tensors())
            ours = grpo_loss(log_probs, case.old_log_probs, advantages, mask, epsilon=EPSILON)
        table.compare(f"  loss_type='grpo'      scale_rewards={scale_rewards!r:7} loss", table.ours(ours),
                      case.loss.detach())
    return first


def describe_grpo_batch(table: Table, case: GRPOCase) -> None:
    """The shared batch: TRL's layout and log-probabilities against ours, and the advantages ("group")."""
    b = case.batch
    mask = b["completion_mask"].bool()
    lengths = mask.sum(1).tolist()
    last_tokens = [row[n - 1] for row, n in zip(b["completion_ids"].tolist(), lengths, strict=True)]
    truncated = sum(1 for token in last_tokens if token != EOS_ID)
    print(f"GRPO batch: {len(GRPO_PROMPTS)} prompts x {NUM_GENERATIONS} completions; prompt lengths "
          f"{b['prompt_mask'].sum(1).tolist()[::NUM_GENERATIONS]} (left-padded), completion lengths {lengths} "
          f"(right-padded, <eos> included; {truncated} cut at max_completion_length={MAX_COMPLETION_LENGTH})")
    print(f"rewards {[round(r, 2) for r in case.rewards.tolist()]}")
    if len(set(lengths)) < 2 or truncated == 0 or truncated == len(lengths):
        raise RuntimeError("the batch should hold completions of several lengths, some ended by <eos>, some cut")
    table.section("GRPO (GRPOTrainer._generate_and_score_completions and _compute_loss; group_advantages, "
                  "grpo_loss)")
    table.compare("  old log-probs on completion tokens (TRL: old_per_token_logps)",
                  table.ours(case.old_log_probs[mask]), b["old_per_token_logps"][mask])
    ratio = torch.exp(completion_log_probs(case.model, *case.tensors()).detach() - case.old_log_probs)[mask]
    clipped = ((ratio < 1 - EPSILON) | (ratio > 1 + EPSILON)).double().mean().item()
    print(f"ratio pi_theta / pi_old on completion tokens: {ratio.min():.3f} .. {ratio.max():.3f}, "
          f"{clipped:.0%} of them outside [1 - epsilon, 1 + epsilon]")
    if clipped == 0:
        raise RuntimeError("no ratio reaches the clip range: the batch would not test the clipping")
    table.compare("  advantages scale_rewards='group'",
                  table.ours(group_advantages(case.rewards, NUM_GENERATIONS, "group")), b["advantages"])


def grpo_defaults(table: Table, model_dir: str, ref_model, out_dir: str) -> list[str]:
    """TRL's GRPO defaults that differ from the book's form; the one that changes the loss is measured."""
    default = GRPOConfig.__dataclass_fields__
    notes = [
        f"GRPOConfig.beta = {default['beta'].default}: no KL term and no reference model by default "
        f"(DeepSeekMath used 0.04, as does the book's GRPOConfig in solutions.grpo_language_model).",
        f"GRPOConfig.loss_type = {default['loss_type'].default!r}: a token-level mean over the whole generation "
        f"batch (DAPO); the book's grpo_loss defaults to 'grpo', DeepSeekMath's per-completion mean.",
        f"GRPOConfig.use_bias_correction_kl = {default['use_bias_correction_kl'].default}: TRL multiplies the k3 "
        "term by the ratio pi_theta / pi_old (DeepSeek-V3.2) -- a different value off-policy and a different "
        "gradient even on-policy; the book (and DeepSeekMath eq. 3) adds beta * k3 unweighted. Set to False "
        "above.",
        f"GRPOConfig.num_iterations = {default['num_iterations'].default}: on-policy, old log-probs = current "
        "ones detached (ratio 1, no clipping); set to 2 above so that TRL records old log-probs and the batch is "
        "off-policy.",
        f"GRPOConfig.scale_rewards = {default['scale_rewards'].default!r}, epsilon = "
        f"{default['epsilon'].default}, epsilon_high = {default['epsilon_high'].default} (symmetric clip), "
        f"temperature = {default['temperature'].default}: the book's form. TRL computes the log-probabilities of "
        "softmax(logits / temperature) at the sampling temperature; the book's token_log_probs uses temperature "
        "1 unless asked.",
        f"GRPOConfig.top_entropy_quantile = {default['top_entropy_quantile'].default}, mask_truncated_completions "
        f"= {default['mask_truncated_completions'].default}, importance_sampling_level = "
        f"{default['importance_sampling_level'].default!r}, delta = {default['delta'].default}, "
        f"off_policy_mask_threshold = {default['off_policy_mask_threshold'].default}, entropy_coef = "
        f"{default['entropy_coef'].default}: off by default, as in the book (which has none of them).",
        "loss_type 'dapo': TRL divides by the completion tokens of the whole generation batch across processes "
        "(num_items_in_batch); in one process with one step per generation that is 'bnpo', the book's form.",
    ]
    # The default KL form on the same batch, and what the whole difference is
    case = GRPOCase(model_dir, out_dir, loss_type="grpo", beta=BETA, use_bias_correction_kl=True)
    ours, log_probs, ref_log_probs = book_grpo_loss(case, ref_model)
    with torch.no_grad():
        mask = case.batch["completion_mask"].bool()
        ratio = torch.exp(log_probs - case.old_log_probs)
        r = ref_log_probs - log_probs
        k3 = torch.exp(r) - r - 1
        extra = BETA * (((ratio - 1) * k3 * mask).sum(1) / mask.sum(1)).mean()  # 'grpo' aggregation
    notes[2] += (f" On this batch TRL's default gives {case.loss.item():.4f}, the book's form {ours.item():.4f} "
                 "('grpo', beta=0.04).")
    table.section("TRL's default use_bias_correction_kl=True (loss_type='grpo', beta=0.04), same batch")
    table.compare("  book's loss + beta * mean((ratio - 1) * k3)  vs  TRL's default", table.ours(ours + extra),
                  case.loss.detach(), note="the whole difference is the ratio weighting")
    # TRL's configs run the forward passes under bfloat16 autocast by default, on the CPU too
    low = GRPOCase(model_dir, out_dir, loss_type="grpo", beta=BETA, bf16=None)
    ours, _, _ = book_grpo_loss(low, ref_model)
    low_mask = low.batch["completion_mask"].bool()
    shift = (low.batch["old_per_token_logps"][low_mask] - low.old_log_probs[low_mask]).abs().max().item()
    loss_shift = abs(low.loss.item() - ours.item())
    notes.insert(0, f"TRL's configs set bf16 = {low.trainer.args.bf16} unless fp16 (trl's _BaseConfig): the "
                 "forward passes run under bfloat16 autocast, on the CPU too. On this batch that moves the old "
                 f"log-probs by up to {shift:.2f} nats and the GRPO loss ('grpo', beta={BETA}) by "
                 f"{loss_shift:.1e} from float32; bf16=False above. gradient_checkpointing = "
                 f"{default['gradient_checkpointing'].default} by default (no effect on the numbers; off above).")
    return notes


def book_grpo_loss(case: GRPOCase, ref_model, loss_type: str = "grpo", beta: float = BETA):
    """The book's GRPO loss on a case's batch (float32, 'group' advantages), with the log-probabilities used."""
    mask = case.batch["completion_mask"].bool()
    with torch.no_grad():
        log_probs = completion_log_probs(case.model, *case.tensors())
        ref_log_probs = completion_log_probs(ref_model, *case.tensors())
        advantages = group_advantages(case.rewards, NUM_GENERATIONS, "group")
        loss = grpo_loss(log_probs, case.old_log_probs, advantages, mask, ref_log_probs=ref_log_probs, beta=beta,
                         epsilon=EPSILON, loss_type=loss_type, max_completion_length=MAX_COMPLETION_LENGTH)
    return loss, log_probs, ref_log_probs


# --------------------------------------------------------------------------------------------------- RLOO


def rloo_checks(table: Table, model_dir: str, ref_model, out_dir: str) -> list[str]:
    """RLOOTrainer subtracts beta * (summed k1 KL) from each completion's reward: the sum over tokens of the
    book's per_token_rewards, whose KL part is sequence_kl 'k1'."""
    reward = RecordedReward()
    args = RLOOConfig(**trainer_options(out_dir, len(GRPO_PROMPTS) * NUM_GENERATIONS),
                      num_generations=NUM_GENERATIONS, max_completion_length=MAX_COMPLETION_LENGTH, beta=KL_COEF,
                      normalize_advantages=False, temperature=1.0,
                      generation_kwargs={"suppress_tokens": [PAD_ID, UNK_ID]})
    trainer = RLOOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=reward, args=args,
                          processing_class=make_tokenizer(),
                          train_dataset=Dataset.from_dict({"prompt": GRPO_PROMPTS}))
    model = trainer.model
    nudge(model, seed=1, scale=NUDGE)
    model.train()
    torch.manual_seed(SEED)
    batch = trainer._generate_and_score_completions(
        [{"prompt": p} for p in GRPO_PROMPTS for _ in range(NUM_GENERATIONS)])
    tensors = batch["prompt_ids"], batch["prompt_mask"], batch["completion_ids"], batch["completion_mask"]
    mask = batch["completion_mask"].bool()
    with torch.no_grad():
        log_probs = completion_log_probs(model, *tensors)
        ref_log_probs = completion_log_probs(ref_model, *tensors)
    scores = torch.tensor(reward.last)
    k1 = sequence_kl(log_probs, ref_log_probs, mask, estimator="k1")
    shaped = per_token_rewards(scores, log_probs, ref_log_probs, mask, kl_coef=KL_COEF).sum(dim=1)
    groups = shaped.reshape(-1, NUM_GENERATIONS)
    baseline = (groups.sum(dim=1, keepdim=True) - groups) / (NUM_GENERATIONS - 1)  # leave-one-out mean
    table.section("RLOO (RLOOTrainer._generate_and_score_completions; sequence_kl 'k1', per_token_rewards)")
    table.compare("  mean k1 per completion token (TRL's logged 'kl'), sequence_kl 'k1'",
                  table.ours(k1.sum() / mask.sum()), trainer._metrics["train"]["kl"][-1])
    table.compare("  advantages: sum of per_token_rewards minus the leave-one-out mean",
                  table.ours((groups - baseline).reshape(-1)), batch["advantages"])
    return ["RLOOTrainer puts the KL penalty (k1, summed over the completion) on the completion's reward "
            "(Ahmadian et al. 2024); the book's PPO puts -kl_coef * k1 on every token and the score on the last "
            "(per_token_rewards): the same total, spread over the tokens (which matters once GAE discounts)."]


# ---------------------------------------------------------------------------------------------------- DPO


def dpo_checks(table: Table, model_dir: str, out_dir: str) -> list[str]:
    table.section("DPO (DPOTrainer.compute_loss, loss_type 'sigmoid'; sequence_log_probs, dpo_loss)")
    n = len(DPO_DATA["prompt"])
    for beta in DPO_BETAS:
        policy = AutoModelForCausalLM.from_pretrained(model_dir)
        nudge(policy, seed=3, scale=NUDGE)  # theta != theta_ref, so the log-ratios are not 0
        ref = AutoModelForCausalLM.from_pretrained(model_dir)
        args = DPOConfig(**trainer_options(out_dir, n), beta=beta, loss_type=["sigmoid"], max_length=None)
        trainer = DPOTrainer(model=policy, ref_model=ref, args=args, processing_class=make_tokenizer(),
                             train_dataset=Dataset.from_dict(DPO_DATA))
        model = trainer.model
        model.train()
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(n)])  # [chosen..., rejected...]
        model.zero_grad(set_to_none=True)
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        theirs = gradient(model)
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
        tokens, completion_mask = batch["input_ids"], batch["completion_mask"].bool()
        logps = sequence_log_probs(model(input_ids=tokens, attention_mask=batch["attention_mask"]).logits,
                                   tokens, completion_mask)
        with torch.no_grad():
            ref_logps = sequence_log_probs(trainer.ref_model(input_ids=tokens,
                                                             attention_mask=batch["attention_mask"]).logits,
                                           tokens, completion_mask)
        chosen, rejected = logps.chunk(2)
        ref_chosen, ref_rejected = ref_logps.chunk(2)
        ours = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=beta)
        table.ours(ours).backward()
        if beta == DPO_BETAS[0]:
            lengths = completion_mask.sum(1).tolist()
            print(f"DPO batch: {n} pairs, chosen/rejected completion lengths {lengths[:n]} / {lengths[n:]} "
                  f"(<eos> added by TRL), right-padded")
            table.compare("  mean ln pi(chosen) (TRL's logged logps/chosen)", table.ours(chosen.mean()),
                          metrics["logps/chosen"])
            table.compare("  mean ln pi(rejected) (TRL's logged logps/rejected)", table.ours(rejected.mean()),
                          metrics["logps/rejected"])
        table.compare(f"  beta={beta}  mean beta * log-ratio of chosen (TRL's rewards/chosen)",
                      table.ours(beta * (chosen - ref_chosen).mean()), metrics["rewards/chosen"])
        table.compare(f"  beta={beta}  loss", table.ours(ours.detach()), loss.detach())
        table.compare(f"  beta={beta}  gradient", gradient(model), theirs)
    default = DPOConfig.__dataclass_fields__
    return [f"DPOConfig.beta = {default['beta'].default}, loss_type = {default['loss_type'].default_factory()}, "
            f"f_divergence_type = {default['f_divergence_type'].default!r}, ld_alpha = "
            f"{default['ld_alpha'].default}, "
            f"use_weighting = {default['use_weighting'].default}: the book's form (Rafailov et al. eq. 7). "
            f"label_smoothing = {default['label_smoothing'].default}, and in TRL {trl.__version__} the 'sigmoid' "
            "loss ignores it (it enters 'robust', 'exo_pair' and 'aot' only): no conservative-DPO smoothing."]


# ------------------------------------------------------------------------------------------- reward model


def reward_model_checks(table: Table, out_dir: str) -> list[str]:
    pairs = [(p, RM_COMPLETIONS[i][c], RM_COMPLETIONS[i][r])
             for i, p in enumerate(RM_PROMPTS) for c, r in ranking_to_pairs(RM_RANKINGS[i])]
    n, per_prompt = len(pairs), len(pairs) // len(RM_PROMPTS)
    torch.manual_seed(SEED)
    model = LlamaForSequenceClassification(llama_config(num_labels=1))
    args = RewardConfig(**trainer_options(out_dir, n))
    data = Dataset.from_dict({"prompt": [p for p, _, _ in pairs], "chosen": [c for _, c, _ in pairs],
                              "rejected": [r for _, _, r in pairs]})
    trainer = RewardTrainer(model=model, args=args, processing_class=make_tokenizer(), train_dataset=data)
    model = trainer.model
    model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(n)])  # [chosen..., rejected...]
    model.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    theirs = gradient(model)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    # ours: the scalar head read at each sequence's last real token (right padding)
    hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    last = batch["attention_mask"].sum(dim=1) - 1
    rewards = model.score(hidden[torch.arange(2 * n), last]).squeeze(-1)
    chosen, rejected = rewards.chunk(2)
    grouped = reward_model_loss(chosen.reshape(-1, per_prompt), rejected.reshape(-1, per_prompt))
    table.ours(grouped).backward()
    table.section(f"Reward model (RewardTrainer.compute_loss; reward_model_loss, pairwise_accuracy): "
                  f"{len(RM_PROMPTS)} prompts x C(3, 2) pairs")
    table.compare("  Bradley-Terry loss, (B, P) = (prompts, pairs) form", table.ours(grouped.detach()),
                  loss.detach())
    table.compare("  Bradley-Terry loss, (N,) pairs form",
                  table.ours(reward_model_loss(chosen, rejected).detach()), loss.detach())
    table.compare("  gradient", gradient(model), theirs)
    table.compare("  pairwise accuracy (TRL's logged 'accuracy')",
                  table.ours(pairwise_accuracy(chosen, rejected)), metrics["accuracy"])
    default = RewardConfig.__dataclass_fields__
    return ["RewardTrainer: one (chosen, rejected) pair per example, the loss the mean over pairs; the book puts "
            "a prompt's C(K, 2) pairs in one batch element (the mean over prompts of the mean over their pairs, "
            "InstructGPT): the same number when every prompt has K completions, as here.",
            f"RewardConfig.center_rewards_coefficient = {default['center_rewards_coefficient'].default} (the "
            "auxiliary loss that centres rewards is off) and no 'margin' column: the plain Bradley-Terry loss. "
            "TRL's logged accuracy counts a tie as wrong; the book's pairwise_accuracy counts it 1/2 (no ties "
            "here)."]


# ------------------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--perturb", type=float, default=1.0,
                        help="multiply every number on the book's side by this factor (1.001 shows a failure)")
    options = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    print(f"TRL {trl.__version__}, transformers {transformers.__version__}, datasets {datasets.__version__}, "
          f"torch {torch.__version__}; tolerance {TOLERANCE:g}")
    if options.perturb != 1.0:
        print(f"*** --perturb {options.perturb}: the book's side is scaled on purpose; this run must FAIL ***")
    table = Table(options.perturb)
    notes: list[str] = []
    with single_threaded(), tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "policy")
        torch.manual_seed(SEED)
        LlamaForCausalLM(llama_config()).save_pretrained(model_dir)  # theta_ref
        make_tokenizer().save_pretrained(model_dir)
        ref_model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        out_dir = os.path.join(tmp, "out")
        grpo_checks(table, model_dir, ref_model, out_dir)
        notes += grpo_defaults(table, model_dir, ref_model, out_dir)
        notes += rloo_checks(table, model_dir, ref_model, out_dir)
        notes += dpo_checks(table, model_dir, out_dir)
        notes += reward_model_checks(table, out_dir)
    print()
    table.show()
    print("\nWhere TRL's defaults differ from the book's form (TRL was set to the book's form above):")
    for note in notes:
        print(f"- {note}")
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(u.ru_utime + u.ru_stime for u in usage) - CHILDREN_CPU_START
    print(f"\nimports {IMPORT_WALL:.1f} s wall, {IMPORT_CPU:.1f} s CPU; whole script "
          f"{time.perf_counter() - WALL_START:.1f} s wall, {cpu:.1f} s CPU (children included)")
    checked = sum(1 for row in table.rows if row[1])
    if table.mismatches:
        print(f"FAILED: {len(table.mismatches)} of {checked} comparisons differ by more than {TOLERANCE:g}: "
              + "; ".join(table.mismatches))
        return 1
    print(f"OK: all {checked} comparisons agree within {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
