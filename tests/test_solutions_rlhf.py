"""The Chapter 6 exercise references (solutions/rlhf.py) on hand-worked cases and on the identities the chapter
states: the SFT loss is next-token training restricted to the response, the reward model's loss is the
Bradley-Terry likelihood with each prompt counted once, the per-token rewards sum to the KL-regularised return,
the sequence KL estimators are unbiased, and DPO is the Bradley-Terry loss of the implicit reward."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from solutions import rlhf
from solutions.grpo import kl_k3
from solutions.language_model import TinyLM, TinyLMConfig, completion_batch, next_token_loss


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------------------------------------------- SFT loss


def test_sft_loss_on_a_hand_worked_demonstration():
    # one row: <bos> p r1 r2, a vocabulary of 3; the response is r1 r2 (columns 2 and 3)
    logits = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [5.0, 5.0, 5.0]]],
                          dtype=torch.float64, requires_grad=True)
    tokens = torch.tensor([[1, 2, 0, 1]])
    mask = torch.tensor([[False, False, True, True]])
    loss = rlhf.sft_loss(logits, tokens, mask)
    # token 0 at column 2 is predicted by logits[1] = (1, 0, 0); token 1 at column 3 by logits[2] = (0, 2, 0)
    p_first = math.e / (math.e + 2)
    p_second = math.exp(2) / (math.exp(2) + 2)
    assert loss.item() == pytest.approx(-(math.log(p_first) + math.log(p_second)) / 2, abs=1e-12)
    loss.backward()
    assert torch.all(logits.grad[0, 0] == 0) and torch.all(logits.grad[0, 3] == 0)  # the prompt's and the last


def test_sft_loss_weighs_every_response_token_once_across_the_batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 5, generator=g, dtype=torch.float64)
    tokens = torch.randint(5, (2, 6), generator=g)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 2:3] = True  # one response token
    mask[1, 2:6] = True  # four
    token_loss = -torch.log_softmax(logits[:, :-1], -1).gather(2, tokens[:, 1:, None]).squeeze(2)
    expected = (token_loss[0, 1] + token_loss[1, 1:5].sum()) / 5
    assert rlhf.sft_loss(logits, tokens, mask).item() == pytest.approx(expected.item(), abs=1e-12)
    per_demonstration = (token_loss[0, 1] + token_loss[1, 1:5].mean()) / 2
    assert abs(expected.item() - per_demonstration.item()) > 1e-3  # the two conventions do differ here


def test_sft_loss_is_next_token_training_on_the_response_of_a_real_batch():
    model = TinyLM(TinyLMConfig(), seed=0)
    tokens, attention, completion = completion_batch(["the food was", "two plus three is"],
                                                     ["great and the staff were kind .", "five ."])
    logits, _ = model(tokens, attention)
    expected = next_token_loss(model, tokens, attention, loss_mask=completion)
    assert rlhf.sft_loss(logits, tokens, completion).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("bad", ["column 0", "no token", "float mask"])
def test_sft_loss_refuses_bad_masks(bad):
    logits = torch.zeros(1, 4, 3)
    tokens = torch.zeros(1, 4, dtype=torch.int64)
    mask = {"column 0": torch.tensor([[True, False, True, True]]), "no token": torch.zeros(1, 4, dtype=torch.bool),
            "float mask": torch.tensor([[0.0, 0.0, 1.0, 1.0]])}[bad]
    with pytest.raises(ValueError):
        rlhf.sft_loss(logits, tokens, mask)


# ----------------------------------------------------------------------------------------------- ranking pairs


def test_a_ranking_expands_into_all_its_pairs():
    assert rlhf.ranking_to_pairs([2, 0, 1]) == [(2, 0), (2, 1), (0, 1)]
    assert rlhf.ranking_to_pairs(np.array([3, 1, 0, 2])) == [(3, 1), (3, 0), (3, 2), (1, 0), (1, 2), (0, 2)]
    assert rlhf.ranking_to_pairs([5]) == []
    assert len(rlhf.ranking_to_pairs(list(range(9)))) == 36  # InstructGPT's K = 9: C(9, 2)


@pytest.mark.parametrize("ranking", [[], [0, 1, 0], [0.5, 1], [True, False]])
def test_a_ranking_that_is_not_an_order_of_distinct_completions_is_refused(ranking):
    with pytest.raises(ValueError):
        rlhf.ranking_to_pairs(ranking)


# ------------------------------------------------------------------------------------------ reward model loss


def test_reward_model_loss_on_hand_worked_pairs():
    chosen = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64, requires_grad=True)
    rejected = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    loss = rlhf.reward_model_loss(chosen, rejected)
    expected = -sum(math.log(_sigmoid(d)) for d in (1, 2, 3)) / 3
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss.backward()
    # d/dr_w of -ln sigma(r_w - r_l) / 3 = -(1 - sigma(d)) / 3; the rejected rewards get the opposite
    assert chosen.grad[0].tolist() == pytest.approx([-(1 - _sigmoid(d)) / 3 for d in (1, 2, 3)], abs=1e-12)
    assert torch.allclose(rejected.grad, -chosen.grad)


def test_each_prompt_counts_once_and_only_differences_matter():
    g = torch.Generator().manual_seed(1)
    chosen, rejected = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    loss = rlhf.reward_model_loss(chosen, rejected)
    assert loss.item() == pytest.approx(rlhf.reward_model_loss(chosen.flatten(), rejected.flatten()).item())
    assert loss.item() == pytest.approx(rlhf.reward_model_loss(chosen + 7.0, rejected + 7.0).item(), abs=1e-6)
    # a pair ranked wrong by a margin of 800 costs its margin, not infinity
    far = rlhf.reward_model_loss(torch.tensor([0.0]), torch.tensor([800.0]))
    assert far.item() == pytest.approx(800.0)


def test_pairwise_accuracy_counts_ties_one_half():
    assert rlhf.pairwise_accuracy([1, 2, 3], [0, 2, 4]) == pytest.approx(0.5)
    assert rlhf.pairwise_accuracy(torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 2.0]])) == pytest.approx(0.5)
    assert rlhf.pairwise_accuracy(np.ones(4), np.zeros(4)) == 1.0
    with pytest.raises(ValueError):
        rlhf.pairwise_accuracy([1, 2], [1])


# ------------------------------------------------------------------------------------------ per-token rewards


def test_per_token_rewards_on_a_hand_worked_batch():
    lp = torch.tensor([[-1.0, -1.0, -2.0, -0.5, 0.0], [-3.0, -1.0, -1.0, -1.0, -1.0]], dtype=torch.float64)
    rf = torch.tensor([[-9.0, -2.0, -1.0, -1.5, 0.0], [-3.0, -1.5, -0.5, -2.0, -4.0]], dtype=torch.float64)
    mask = torch.tensor([[False, True, True, True, False], [False, False, True, True, True]])
    rewards = rlhf.per_token_rewards(torch.tensor([2.0, -1.0], dtype=torch.float64), lp.requires_grad_(), rf,
                                     mask, kl_coef=0.5)
    expected = torch.tensor([[0.0, -0.5, 0.5, -0.5 + 2.0, 0.0], [0.0, 0.0, 0.25, -0.5, -1.5 - 1.0]],
                            dtype=torch.float64)
    assert torch.allclose(rewards, expected, atol=1e-12)
    assert not rewards.requires_grad
    # the return of each completion is its score minus kl_coef times its log-ratio
    assert rewards.sum(1).tolist() == pytest.approx([2.0 - 0.5 * 1.0, -1.0 - 0.5 * 3.5])


def test_per_token_rewards_refuses_a_row_without_completion_and_a_negative_kl_coef():
    lp = torch.zeros(2, 3)
    mask = torch.tensor([[False, True, True], [False, False, False]])
    with pytest.raises(ValueError, match="at least one completion token"):
        rlhf.per_token_rewards(torch.zeros(2), lp, lp, mask, 0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        rlhf.per_token_rewards(torch.zeros(2), lp, lp, mask | True, -0.1)


# ------------------------------------------------------------------------------------------------ sequence KL


def test_sequence_kl_estimators_are_unbiased_for_the_kl_of_whole_completions():
    """Completions of 3 tokens drawn independently per position from pi; the exact KL of the sequences is the
    sum of the three positions' KLs (the chain rule). Both estimators' means over 200,000 samples lie within 4
    standard errors of it; k3 is never negative, k1 sometimes is."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 6, generator=g, dtype=torch.float64)
    ref_logits = logits + 0.6 * torch.randn(3, 6, generator=g, dtype=torch.float64)
    log_pi, log_ref = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    exact = (log_pi.exp() * (log_pi - log_ref)).sum().item()
    n = 200_000
    tokens = torch.multinomial(log_pi.exp(), n, replacement=True, generator=g).T  # (n, 3)
    columns = torch.arange(3)
    lp, rf = log_pi[columns, tokens], log_ref[columns, tokens]
    mask = torch.ones(n, 3, dtype=torch.bool)
    for estimator in ("k1", "k3"):
        kl = rlhf.sequence_kl(lp, rf, mask, estimator)
        assert abs(kl.mean().item() - exact) < 4 * kl.std().item() / math.sqrt(n), estimator
    k1, k3 = rlhf.sequence_kl(lp, rf, mask, "k1"), rlhf.sequence_kl(lp, rf, mask, "k3")
    assert (k3 >= 0).all() and (k1 < 0).any()
    assert k3.std() < k1.std()  # Schulman (2020): lower variance when the policies are close


def test_sequence_kl_sums_the_completion_tokens_and_passes_gradient_to_the_policy_only():
    lp = torch.tensor([[-1.0, -2.0, -0.5, -9.0]], dtype=torch.float64, requires_grad=True)
    rf = torch.tensor([[-3.0, -1.0, -1.5, -1.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[False, True, True, False]])
    assert rlhf.sequence_kl(lp, rf, mask).item() == pytest.approx((-2.0 + 1.0) + (-0.5 + 1.5))
    k3 = rlhf.sequence_kl(lp, rf, mask, "k3")
    assert k3.item() == pytest.approx((kl_k3(lp, rf) * mask).sum().item())
    k3.backward()
    assert rf.grad is None and lp.grad[0, 0] == 0 and lp.grad[0, 3] == 0
    with pytest.raises(ValueError, match="estimator"):
        rlhf.sequence_kl(lp, rf, mask, "k2")


# ---------------------------------------------------------------------------------------------------- DPO loss


def test_dpo_loss_is_ln_2_at_the_reference_and_the_bradley_terry_loss_of_the_implicit_reward():
    g = torch.Generator().manual_seed(4)
    ref_c, ref_r = -10 * torch.rand(5, generator=g, dtype=torch.float64), -10 * torch.rand(5, generator=g,
                                                                                            dtype=torch.float64)
    assert rlhf.dpo_loss(ref_c.clone(), ref_r.clone(), ref_c, ref_r).item() == pytest.approx(math.log(2))
    chosen = (ref_c + torch.randn(5, generator=g, dtype=torch.float64)).requires_grad_()
    rejected = (ref_r + torch.randn(5, generator=g, dtype=torch.float64)).requires_grad_()
    beta = 0.3
    loss = rlhf.dpo_loss(chosen, rejected, ref_c.requires_grad_(), ref_r.requires_grad_(), beta=beta)
    implicit = rlhf.reward_model_loss(beta * (chosen - ref_c), beta * (rejected - ref_r))
    assert loss.item() == pytest.approx(implicit.item(), abs=1e-12)
    loss.backward()
    margin = beta * ((chosen - ref_c) - (rejected - ref_r)).detach()
    # Rafailov et al. (2023), Section 4: the gradient weighs each pair by sigma(-margin), how wrong it is
    assert torch.allclose(chosen.grad, -beta * torch.sigmoid(-margin) / 5)
    assert torch.allclose(rejected.grad, -chosen.grad)
    assert ref_c.grad is None and ref_r.grad is None


def test_dpo_loss_is_finite_for_a_margin_the_policy_gets_badly_wrong_and_refuses_bad_beta():
    zero = torch.zeros(1, dtype=torch.float64)
    loss = rlhf.dpo_loss(zero, torch.tensor([900.0], dtype=torch.float64), zero, zero, beta=1.0)
    assert loss.item() == pytest.approx(900.0)
    assert F.logsigmoid(torch.tensor(-900.0, dtype=torch.float64)).item() == pytest.approx(-900.0)
    for beta in (0.0, -1.0, True):
        with pytest.raises(ValueError, match="beta"):
            rlhf.dpo_loss(zero, zero, zero, zero, beta=beta)
