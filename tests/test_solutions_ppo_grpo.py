"""The Chapter 5 exercise references against worked values: the clipped objective of Schulman et al. (2017,
Figure 1), GAE at lambda = 0 and 1 against the TD errors and the Monte Carlo advantages, GRPO's advantages on a
hand-worked group, k3 against the exact KL, and the per-token weights of the four loss aggregations."""

import math

import numpy as np
import pytest
import torch

from solutions.grpo import LOSS_TYPES, group_advantages, grpo_loss, kl_k3
from solutions.policy_gradients import reward_to_go
from solutions.ppo import clipped_value_loss, gae, importance_ratio, ppo_clip_loss


def test_importance_ratio_is_the_probability_ratio_and_its_gradient_the_ratio():
    log_probs = torch.log(torch.tensor([0.5, 0.2, 0.9], dtype=torch.float64)).requires_grad_(True)
    old = torch.log(torch.tensor([0.25, 0.4, 0.9], dtype=torch.float64)).requires_grad_(True)
    rho = importance_ratio(log_probs, old)
    assert torch.allclose(rho, torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64))
    rho.sum().backward()
    assert torch.allclose(log_probs.grad, rho.detach())  # d exp(l - l_old) / dl = rho
    assert old.grad is None  # the old log-probabilities are constants
    # from log-probabilities, long sequences do not underflow: exp(-800) / exp(-801) would be 0 / 0
    assert importance_ratio(torch.tensor([-800.0]), torch.tensor([-801.0])).item() == pytest.approx(math.e)


@pytest.mark.parametrize("rho, A, loss, moves", [
    (0.5, 1.0, -0.5, True),     # A > 0, ratio below 1 + eps: the unclipped term, gradient A
    (1.5, 1.0, -1.2, False),    # A > 0, ratio above 1 + eps: flat at (1 + eps) A, no gradient
    (0.5, -1.0, 0.8, False),    # A < 0, ratio below 1 - eps: flat at (1 - eps) A, no gradient
    (1.5, -1.0, 1.5, True),     # A < 0, ratio above 1 + eps: never clipped (the move made things worse)
    (1.1, -2.0, 2.2, True),     # inside the range: the plain surrogate
])
def test_clipped_objective_follows_figure_1_of_the_ppo_paper(rho, A, loss, moves):
    log_probs = torch.tensor([math.log(rho)], dtype=torch.float64, requires_grad=True)
    value = ppo_clip_loss(log_probs, torch.zeros(1, dtype=torch.float64), torch.tensor([A], dtype=torch.float64))
    assert value.item() == pytest.approx(loss)
    value.backward()
    # d(-rho A)/d log rho = -rho A where the sample still pushes, 0 where the clip holds it
    assert log_probs.grad.item() == pytest.approx(-rho * A if moves else 0.0)


def test_on_policy_the_clipped_loss_is_the_policy_gradient_surrogate():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 3, generator=g, dtype=torch.float64, requires_grad=True)
    actions = torch.randint(3, (20,), generator=g)
    A = torch.randn(20, generator=g, dtype=torch.float64)
    lp = torch.log_softmax(logits, 1)[torch.arange(20), actions]
    loss = ppo_clip_loss(lp, lp.detach(), A)
    assert loss.item() == pytest.approx(-A.mean().item())
    (grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
    (expected,) = torch.autograd.grad(-(lp * A).mean(), logits)
    assert torch.allclose(grad, expected)


def test_clipped_value_loss_by_hand():
    values = torch.tensor([1.0, 3.0, 0.0], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([0.0, 2.9, 0.0], dtype=torch.float64)
    returns = torch.tensor([2.0, 0.0, 1.0], dtype=torch.float64)
    # sample 0: V moved 1.0 > 0.2 towards the return; clipped value 0.2: max(1, 3.24) = 3.24
    # sample 1: V moved 0.1 (inside); both errors 9.0. sample 2: no move; both errors 1.0
    loss = clipped_value_loss(values, old, returns, cliprange_value=0.2)
    assert loss.item() == pytest.approx((3.24 + 9.0 + 1.0) / 3)
    loss.backward()
    # sample 0: the clipped error is the larger and constant in V: no gradient
    assert values.grad.tolist() == pytest.approx([0.0, 2 * 3.0 / 3, 2 * (-1.0) / 3])


def _episode_rollout():
    """Two episodes and a half: the first terminates after step 2, the second is truncated after step 5, the third
    is cut by the end of the rollout."""
    rng = np.random.default_rng(3)
    T = 9
    rewards = rng.normal(size=T)
    values = rng.normal(size=T)
    terminated = np.zeros(T, bool)
    truncated = np.zeros(T, bool)
    terminated[2], truncated[5] = True, True
    next_values = np.append(values[1:], 0.7)
    next_values[2], next_values[5] = 99.0, 0.3  # a terminal state's value is ignored; 0.3 = V(final observation)
    return rewards, values, next_values, terminated, truncated


def test_gae_at_lambda_0_is_the_td_error():
    rewards, values, next_values, terminated, truncated = _episode_rollout()
    gamma = 0.9
    delta = rewards + gamma * np.where(terminated, 0.0, next_values) - values
    assert np.allclose(gae(rewards, values, next_values, terminated, truncated, gamma, 0.0), delta)
    assert delta[2] == pytest.approx(rewards[2] - values[2])
    assert delta[5] == pytest.approx(rewards[5] + gamma * 0.3 - values[5])


def test_gae_at_lambda_1_is_the_monte_carlo_advantage():
    rewards, values, next_values, terminated, truncated = _episode_rollout()
    gamma = 0.9
    # the Monte Carlo return of Chapter 4, with the bootstrap value added as a last reward where the episode was
    # cut (after step 5: V(final observation) = 0.3; after step 8: next_values[8] = 0.7)
    boosted = rewards.copy()
    boosted[5] += gamma * 0.3
    boosted[8] += gamma * 0.7
    ends = terminated | truncated
    ends[-1] = True
    G = reward_to_go(boosted, gamma, ends)
    assert np.allclose(gae(rewards, values, next_values, terminated, truncated, gamma, 1.0), G - values)


def test_gae_keeps_environments_apart_and_reads_time_first():
    rewards, values, next_values, terminated, truncated = _episode_rollout()
    stacked = [np.stack([x, x[::-1]], axis=1) for x in (rewards, values, next_values)]
    masks = [np.stack([m, np.zeros_like(m)], axis=1) for m in (terminated, truncated)]
    both = gae(*stacked, *masks, 0.95, 0.8)
    assert np.allclose(both[:, 0], gae(rewards, values, next_values, terminated, truncated, 0.95, 0.8))
    alone = gae(rewards[::-1], values[::-1], next_values[::-1], np.zeros(9, bool), np.zeros(9, bool), 0.95, 0.8)
    assert np.allclose(both[:, 1], alone)


def test_gae_rejects_bad_input():
    r = np.zeros(3)
    with pytest.raises(ValueError, match="boolean"):
        gae(r, r, r, np.zeros(3), np.zeros(3, bool), 0.9, 0.9)
    with pytest.raises(ValueError, match="lam"):
        gae(r, r, r, np.zeros(3, bool), np.zeros(3, bool), 0.9, 1.5)
    with pytest.raises(ValueError, match="shape"):
        gae(r, np.zeros(4), r, np.zeros(3, bool), np.zeros(3, bool), 0.9, 0.9)


def test_group_advantages_on_a_hand_worked_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    # group 1: mean 1/3, sample std sqrt(((2/3)^2 + 2 (1/3)^2) / 2) = 1/sqrt(3); group 2: all equal -> 0
    s = 1 / math.sqrt(3)
    expected = torch.tensor([(2 / 3) / (s + 1e-4), (-1 / 3) / (s + 1e-4), (-1 / 3) / (s + 1e-4), 0.0, 0.0, 0.0])
    assert torch.allclose(group_advantages(rewards, 3), expected, atol=1e-6)
    assert torch.allclose(group_advantages(rewards, 3, "none"), torch.tensor([2 / 3, -1 / 3, -1 / 3, 0, 0, 0]))
    batch_std = rewards.std().item()  # 0.5164, over all six rewards
    assert torch.allclose(group_advantages(rewards, 3, "batch"),
                          torch.tensor([2 / 3, -1 / 3, -1 / 3, 0, 0, 0]) / (batch_std + 1e-4), atol=1e-6)
    # the group's scale does not matter under "group" scaling: rewards x10 give the same advantages
    assert torch.allclose(group_advantages(10 * rewards[:3], 3), group_advantages(rewards[:3], 3), atol=1e-3)
    with pytest.raises(ValueError, match="multiple"):
        group_advantages(rewards, 4)
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(rewards, 3, "std")


def test_k3_is_an_unbiased_nonnegative_estimate_of_the_kl():
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    exact = float((p * (p / q).log()).sum())
    g = torch.Generator().manual_seed(0)
    tokens = torch.multinomial(p, 200_000, replacement=True, generator=g)
    k3 = kl_k3(p.log()[tokens], q.log()[tokens])
    assert (k3 >= 0).all()
    standard_error = k3.std().item() / math.sqrt(len(k3))
    assert abs(k3.mean().item() - exact) < 4 * standard_error
    assert torch.equal(kl_k3(p.log(), p.log()), torch.zeros(3, dtype=torch.float64))


def _batch():
    """Two completions: 1 token with advantage +1 and 3 tokens with advantage -1, after a 2-token prompt."""
    log_probs = torch.full((2, 6), -1.0, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 2] = True
    mask[1, 2:5] = True
    return log_probs, mask, torch.tensor([1.0, -1.0], dtype=torch.float64)


@pytest.mark.parametrize("loss_type, weight_short, weight_long", [
    ("grpo", 1 / (2 * 1), 1 / (2 * 3)),    # each completion's own length: a long completion's tokens weigh less
    ("bnpo", 1 / 4, 1 / 4),                # one mean over the batch's 4 completion tokens
    ("dapo", 1 / 4, 1 / 4),
    ("dr_grpo", 1 / (2 * 8), 1 / (2 * 8)),  # the constant B * max_completion_length
])
def test_each_loss_type_weighs_the_tokens_as_stated(loss_type, weight_short, weight_long):
    log_probs, mask, A = _batch()
    loss = grpo_loss(log_probs, log_probs.detach(), A, mask, loss_type=loss_type, max_completion_length=8)
    loss.backward()
    grad = log_probs.grad
    # on-policy, d loss / d log pi of a token = -A_i * (the token's weight)
    assert grad[0, 2].item() == pytest.approx(-1.0 * weight_short)
    assert grad[1, 2:5].tolist() == pytest.approx([weight_long] * 3)
    assert grad[~mask].abs().max().item() == 0.0  # prompt and padding do not count
    assert loss.item() == pytest.approx(-(1.0 * weight_short) + 3 * weight_long)


def test_grpo_loss_on_policy_with_centred_advantages_is_zero_and_beta_adds_the_kl():
    g = torch.Generator().manual_seed(1)
    log_probs = -torch.rand(6, 7, generator=g, dtype=torch.float64) * 3
    mask = torch.rand(6, 7, generator=g) < 0.6
    mask[:, 0] = True
    A = group_advantages(torch.tensor([1.0, 0, 0, 1, 0, 1], dtype=torch.float64), 3)
    assert grpo_loss(log_probs, log_probs, A, mask).item() == pytest.approx(0.0, abs=1e-12)
    ref = log_probs + 0.3
    with_kl = grpo_loss(log_probs, log_probs, A, mask, ref_log_probs=ref, beta=0.1)
    per_token_kl = math.exp(0.3) - 0.3 - 1
    assert with_kl.item() == pytest.approx(0.1 * per_token_kl)
    for loss_type in LOSS_TYPES:
        assert torch.isfinite(grpo_loss(log_probs, log_probs, A, mask, loss_type=loss_type,
                                        max_completion_length=7))


def test_grpo_loss_rejects_bad_input():
    log_probs, mask, A = _batch()
    with pytest.raises(ValueError, match="max_completion_length"):
        grpo_loss(log_probs, log_probs, A, mask, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="ref_log_probs"):
        grpo_loss(log_probs, log_probs, A, mask, beta=0.04)
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(log_probs, log_probs, A, mask, loss_type="sum")
    with pytest.raises(ValueError, match="completion_mask"):
        grpo_loss(log_probs, log_probs, A, mask.float())
    with pytest.raises(ValueError, match="cliprange"):
        ppo_clip_loss(log_probs[0], log_probs[0], log_probs[0], cliprange=1.5)
