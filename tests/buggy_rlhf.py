"""Chapter 6 answers with the mistakes students make, written the way a student might write them.

Each entry of ``BUGGY`` is ``(exercise, function, words the check's output must contain)``: the hint that names the
mistake, or a message stating what is wrong with the output.
"""

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------- SFT loss


def sft_prompt_not_masked(logits, tokens, completion_mask):
    real = tokens != 0  # every real token, the prompt's included
    targets = real[:, 1:] & real[:, :-1]
    log_p = torch.log_softmax(logits[:, :-1], -1).gather(2, tokens[:, 1:, None]).squeeze(2)
    return -(log_p * targets).sum() / targets.sum()


def sft_mask_not_shifted(logits, tokens, completion_mask):
    log_p = torch.log_softmax(logits[:, :-1], -1).gather(2, tokens[:, 1:, None]).squeeze(2)
    mask = completion_mask[:, :-1].float()
    return -(log_p * mask).sum() / mask.sum()


def sft_logits_not_shifted(logits, tokens, completion_mask):
    log_p = torch.log_softmax(logits, -1).gather(2, tokens[..., None]).squeeze(2)
    return -log_p[completion_mask].mean()


def sft_summed(logits, tokens, completion_mask):
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return (ce * completion_mask[:, 1:]).sum()


def sft_mean_per_demonstration(logits, tokens, completion_mask):
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    mask = completion_mask[:, 1:].float()
    return ((ce * mask).sum(1) / mask.sum(1)).mean()


def sft_divided_by_padded_size(logits, tokens, completion_mask):
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
    return (ce * completion_mask[:, 1:]).mean()


def sft_naive_log_softmax(logits, tokens, completion_mask):
    probs = torch.softmax(logits[:, :-1], -1)
    log_p = torch.log(probs.gather(2, tokens[:, 1:, None]).squeeze(2))
    return -log_p[completion_mask[:, 1:]].mean()


def sft_on_the_prompt(logits, tokens, completion_mask):
    real = tokens != 0
    prompt = real & ~completion_mask
    log_p = torch.log_softmax(logits[:, :-1], -1).gather(2, tokens[:, 1:, None]).squeeze(2)
    targets = prompt[:, 1:] & real[:, :-1]
    return -(log_p * targets).sum() / targets.sum()


# ----------------------------------------------------------------------------------------------- ranking pairs


def pairs_of_neighbours(ranking):
    return [(ranking[i], ranking[i + 1]) for i in range(len(ranking) - 1)]


def pairs_swapped(ranking):
    return [(ranking[j], ranking[i]) for i in range(len(ranking)) for j in range(i + 1, len(ranking))]


def pairs_both_ways(ranking):
    return [(a, b) for i, a in enumerate(ranking) for j, b in enumerate(ranking) if i < j] + \
           [(b, a) for i, a in enumerate(ranking) for j, b in enumerate(ranking) if i < j]


def pairs_of_positions(ranking):
    K = len(ranking)
    return [(i, j) for i in range(K) for j in range(i + 1, K)]


# ------------------------------------------------------------------------------------------ reward model loss


def reward_swapped(rewards_chosen, rewards_rejected):
    return -F.logsigmoid(rewards_rejected - rewards_chosen).mean()


def reward_pairs_summed(rewards_chosen, rewards_rejected):
    loss = -F.logsigmoid(rewards_chosen - rewards_rejected)
    return loss.sum(-1).mean() if loss.dim() == 2 else loss.sum()


def reward_log_of_sigmoid(rewards_chosen, rewards_rejected):
    return -torch.log(torch.sigmoid(rewards_chosen - rewards_rejected)).mean()


def reward_without_minus(rewards_chosen, rewards_rejected):
    return F.logsigmoid(rewards_chosen - rewards_rejected).mean()


def reward_probability_not_log(rewards_chosen, rewards_rejected):
    return -torch.sigmoid(rewards_chosen - rewards_rejected).mean()


def reward_as_a_float(rewards_chosen, rewards_rejected):
    diff = (rewards_chosen - rewards_rejected).detach().numpy()
    return torch.tensor(float(np.mean(np.log1p(np.exp(-diff)))))


# ------------------------------------------------------------------------------------------ pairwise accuracy


def accuracy_ties_right(rewards_chosen, rewards_rejected):
    return float(np.mean(np.asarray(rewards_chosen) >= np.asarray(rewards_rejected)))


def accuracy_ties_wrong(rewards_chosen, rewards_rejected):
    return float(np.mean(np.asarray(rewards_chosen) > np.asarray(rewards_rejected)))


def accuracy_count(rewards_chosen, rewards_rejected):
    c, r = np.asarray(rewards_chosen), np.asarray(rewards_rejected)
    return float(np.sum(c > r) + 0.5 * np.sum(c == r))


def accuracy_swapped(rewards_chosen, rewards_rejected):
    c, r = np.asarray(rewards_chosen), np.asarray(rewards_rejected)
    return float(np.mean(r > c) + 0.5 * np.mean(c == r))


# ------------------------------------------------------------------------------------------ per-token rewards


def _last_positions(completion_mask):
    return completion_mask.long().cumsum(1).argmax(1)


def rewards_score_on_first_token(scores, log_probs, ref_log_probs, completion_mask, kl_coef):
    with torch.no_grad():
        rewards = -kl_coef * (log_probs - ref_log_probs) * completion_mask
        first = completion_mask.long().argmax(1)
        rewards[torch.arange(len(scores)), first] += scores
    return rewards


def rewards_score_in_last_column(scores, log_probs, ref_log_probs, completion_mask, kl_coef):
    with torch.no_grad():
        rewards = -kl_coef * (log_probs - ref_log_probs) * completion_mask
        rewards[:, -1] += scores
    return rewards


def rewards_kl_sign_flipped(scores, log_probs, ref_log_probs, completion_mask, kl_coef):
    with torch.no_grad():
        rewards = kl_coef * (log_probs - ref_log_probs) * completion_mask
        rewards[torch.arange(len(scores)), _last_positions(completion_mask)] += scores
    return rewards


def rewards_padding_penalised(scores, log_probs, ref_log_probs, completion_mask, kl_coef):
    with torch.no_grad():
        rewards = -kl_coef * (log_probs - ref_log_probs)
        rewards[torch.arange(len(scores)), _last_positions(completion_mask)] += scores
    return rewards


def rewards_score_replaces_penalty(scores, log_probs, ref_log_probs, completion_mask, kl_coef):
    with torch.no_grad():
        rewards = -kl_coef * (log_probs - ref_log_probs) * completion_mask
        rewards[torch.arange(len(scores)), _last_positions(completion_mask)] = scores
    return rewards


def rewards_not_detached(scores, log_probs, ref_log_probs, completion_mask, kl_coef):
    rewards = -kl_coef * (log_probs - ref_log_probs) * completion_mask
    bonus = torch.zeros_like(rewards)
    bonus[torch.arange(len(scores)), _last_positions(completion_mask)] = scores
    return rewards + bonus


def rewards_kl_summed_at_the_end(scores, log_probs, ref_log_probs, completion_mask, kl_coef):
    with torch.no_grad():
        kl = ((log_probs - ref_log_probs) * completion_mask).sum(1)
        rewards = torch.zeros_like(log_probs)
        rewards[torch.arange(len(scores)), _last_positions(completion_mask)] = scores - kl_coef * kl
    return rewards


# ------------------------------------------------------------------------------------------------ sequence KL


def kl_averaged(log_probs, ref_log_probs, completion_mask, estimator="k1"):
    r = ref_log_probs.detach() - log_probs
    per_token = -r if estimator == "k1" else r.exp() - r - 1
    return (per_token * completion_mask).sum(1) / completion_mask.sum(1)


def kl_mask_ignored(log_probs, ref_log_probs, completion_mask, estimator="k1"):
    r = ref_log_probs.detach() - log_probs
    return (-r if estimator == "k1" else r.exp() - r - 1).sum(1)


def kl_k1_reversed(log_probs, ref_log_probs, completion_mask, estimator="k1"):
    r = log_probs - ref_log_probs.detach()  # the wrong way round
    per_token = -r if estimator == "k1" else torch.exp(-r) + r - 1
    return (per_token * completion_mask).sum(1)


def kl_reference_not_detached(log_probs, ref_log_probs, completion_mask, estimator="k1"):
    r = ref_log_probs - log_probs
    per_token = -r if estimator == "k1" else r.exp() - r - 1
    return (per_token * completion_mask).sum(1)


def kl_k3_without_minus_one(log_probs, ref_log_probs, completion_mask, estimator="k1"):
    r = ref_log_probs.detach() - log_probs
    per_token = -r if estimator == "k1" else r.exp() - r
    return (per_token * completion_mask).sum(1)


# ---------------------------------------------------------------------------------------------------- DPO loss


def dpo_swapped(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    margin = (rejected_logps - ref_rejected_logps.detach()) - (chosen_logps - ref_chosen_logps.detach())
    return -F.logsigmoid(beta * margin).mean()


def dpo_without_reference(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    return -F.logsigmoid(beta * (chosen_logps - rejected_logps)).mean()


def dpo_reference_not_detached(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    margin = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * margin).mean()


def dpo_beta_outside(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    margin = (chosen_logps - ref_chosen_logps.detach()) - (rejected_logps - ref_rejected_logps.detach())
    return -beta * F.logsigmoid(margin).mean()


def dpo_log_of_sigmoid(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    margin = (chosen_logps - ref_chosen_logps.detach()) - (rejected_logps - ref_rejected_logps.detach())
    return -torch.log(torch.sigmoid(beta * margin)).mean()


def dpo_summed(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    margin = (chosen_logps - ref_chosen_logps.detach()) - (rejected_logps - ref_rejected_logps.detach())
    return -F.logsigmoid(beta * margin).sum()


def dpo_beta_ignored(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=0.1):
    margin = (chosen_logps - ref_chosen_logps.detach()) - (rejected_logps - ref_rejected_logps.detach())
    return -F.logsigmoid(0.1 * margin).mean()  # the default, whatever beta is passed


BUGGY = [
    ("sft_loss", sft_prompt_not_masked, "mask the prompt"),
    ("sft_loss", sft_mask_not_shifted, "shift the mask with the targets"),
    ("sft_loss", sft_logits_not_shifted, "the logits at position t - 1 predict token t"),
    ("sft_loss", sft_summed, "divide the sum by their number"),
    ("sft_loss", sft_mean_per_demonstration, "not per demonstration first"),
    ("sft_loss", sft_divided_by_padded_size, "not by the padded size"),
    ("sft_loss", sft_naive_log_softmax, "use torch.log_softmax"),
    ("sft_loss", sft_on_the_prompt, "the mask is reversed"),
    ("ranking_to_pairs", pairs_of_neighbours, "preferred to *every* completion ranked below it"),
    ("ranking_to_pairs", pairs_swapped, "chosen is the better-ranked completion"),
    ("ranking_to_pairs", pairs_both_ways, "each pair once"),
    ("ranking_to_pairs", pairs_of_positions, "not their positions i and j"),
    ("reward_model_loss", reward_swapped, "chosen and rejected are swapped"),
    ("reward_model_loss", reward_pairs_summed, "do not sum them"),
    ("reward_model_loss", reward_log_of_sigmoid, "logsigmoid"),
    ("reward_model_loss", reward_without_minus, "*negative* log-likelihood"),
    ("reward_model_loss", reward_probability_not_log, "take the log of the probability"),
    ("reward_model_loss", reward_as_a_float, "carries no gradient"),
    ("pairwise_accuracy", accuracy_ties_right, "a tie (equal scores) counts one half"),
    ("pairwise_accuracy", accuracy_ties_wrong, "a tie (equal scores) counts one half"),
    ("pairwise_accuracy", accuracy_count, "not their count"),
    ("pairwise_accuracy", accuracy_swapped, "the *chosen* completion scores higher"),
    ("per_token_rewards", rewards_score_on_first_token, "not the first"),
    ("per_token_rewards", rewards_score_in_last_column, "last column is padding"),
    ("per_token_rewards", rewards_kl_sign_flipped, "is penalised"),
    ("per_token_rewards", rewards_padding_penalised, "0 on the prompt and on the padding"),
    ("per_token_rewards", rewards_score_replaces_penalty, "*add* the score"),
    ("per_token_rewards", rewards_not_detached, "rewards are constants to PPO"),
    ("per_token_rewards", rewards_kl_summed_at_the_end, "not summed at the end"),
    ("sequence_kl", kl_averaged, "not their mean"),
    ("sequence_kl", kl_mask_ignored, "count only the completion tokens"),
    ("sequence_kl", kl_k1_reversed, "yours is reversed"),
    ("sequence_kl", kl_reference_not_detached, "detach the reference log-probabilities"),
    ("sequence_kl", kl_k3_without_minus_one, "the -1 is missing"),
    ("dpo_loss", dpo_swapped, "chosen and rejected are swapped"),
    ("dpo_loss", dpo_without_reference, "subtract the reference"),
    ("dpo_loss", dpo_reference_not_detached, "detach the reference log-probabilities"),
    ("dpo_loss", dpo_beta_outside, "not the loss"),
    ("dpo_loss", dpo_log_of_sigmoid, "logsigmoid"),
    ("dpo_loss", dpo_summed, "do not sum"),
    ("dpo_loss", dpo_beta_ignored, "Smallest failing case"),
]
