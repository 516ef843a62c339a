"""Chapter 6's deep RL from human preferences on CartPole (solutions/preference_control.py): the Bradley-Terry
segment loss on a hand-worked case, the overseer's error rate, segments padded with the fallen state, the reward
model learning a known reward from comparisons, disagreement queries, the comparison schedule, serial = parallel
runs, and a short run in which the policy's true return rises far above the untrained policy's."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from solutions import preference_control as pf
from solutions.policy_gradients import PolicyNetwork
from solutions.ppo_cartpole import PPOConfig, collect_rollout, make_cartpole_envs
from solutions.rlhf import reward_model_loss


class AlwaysRight(nn.Module):
    """The policy that pushes right (logits [-30, 30]): the pole falls within about ten steps."""

    def forward(self, states):
        return torch.tensor([-30.0, 30.0]).expand(states.shape[0], 2)


def parameters_of(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def random_segments(n, length, rng):
    """n segments of ``length`` independent living CartPole-like states (uniform over the region where the episode
    goes on, velocities standard normal), random actions."""
    observations = np.stack([rng.uniform(-2.4, 2.4, (n, length)), rng.normal(size=(n, length)),
                             rng.uniform(-pf.ANGLE_LIMIT, pf.ANGLE_LIMIT, (n, length)),
                             rng.normal(size=(n, length))], axis=-1).astype(np.float32)
    return pf.Segments(observations, rng.integers(2, size=(n, length)), np.ones((n, length), dtype=bool),
                       pf.hidden_reward(observations), np.arange(n))


# ------------------------------------------------------------------------------------- the hidden reward

def test_hidden_reward_values():
    states = np.array([[0.0, 5.0, 0.0, -3.0], [2.4, 0.0, 0.0, 0.0], [0.0, 0.0, pf.ANGLE_LIMIT, 0.0],
                       [1.2, 0.0, -pf.ANGLE_LIMIT / 2, 0.0], [-2.4, 1.0, -pf.ANGLE_LIMIT, 1.0]])
    assert np.allclose(pf.hidden_reward(states), [1.0, 0.5, 0.5, 1 - 0.125 - 0.125, 0.0])
    assert pf.hidden_reward(states[None]).shape == (1, 5)  # any leading shape
    assert pf.ANGLE_LIMIT == pytest.approx(math.radians(12))
    with pytest.raises(ValueError, match="shape"):
        pf.hidden_reward(np.zeros((3, 2)))


# --------------------------------------------------------------------------------------------- the loss

def test_segment_loss_on_a_hand_worked_case():
    # segment 1 sums to 1 + 2 = 3, segment 2 to 0.5 + 0.5 = 1: P_hat[1 > 2] = sigma(3 - 1) = 0.880797
    r_1 = torch.tensor([[1.0, 2.0]] * 3, requires_grad=True)
    r_2 = torch.tensor([[0.5, 0.5]] * 3, requires_grad=True)
    p = 1 / (1 + math.exp(-2.0))
    for mu, expected in ((1.0, -math.log(p)), (0.0, -math.log(1 - p)), (0.5, -0.5 * math.log(p * (1 - p)))):
        loss = pf.segment_preference_loss(r_1[:1], r_2[:1], torch.tensor([mu]))
        assert float(loss.detach()) == pytest.approx(expected, abs=1e-6)
    assert -math.log(p) == pytest.approx(0.126928, abs=1e-6)
    assert -math.log(1 - p) == pytest.approx(2.126928, abs=1e-6)
    # the mean over pairs, and its gradient: d loss / d r_1t = (P_hat - mu) / B for every step t of segment 1
    mu = torch.tensor([1.0, 0.0, 1.0])
    loss = pf.segment_preference_loss(r_1, r_2, mu)
    assert float(loss.detach()) == pytest.approx((2 * 0.126928 + 2.126928) / 3, abs=1e-5)
    loss.backward()
    expected = ((p - mu) / 3)[:, None].expand(3, 2)
    assert torch.allclose(r_1.grad, expected, atol=1e-6) and torch.allclose(r_2.grad, -expected, atol=1e-6)
    # weights (a bootstrap resample's counts): pair 0 twice, pair 1 not at all, pair 2 once
    weighted = pf.segment_preference_loss(r_1, r_2, mu, torch.tensor([2.0, 0.0, 1.0]))
    assert float(weighted.detach()) == pytest.approx(0.126928, abs=1e-5)


def test_segment_loss_sums_before_comparing_and_ignores_a_constant():
    rng = torch.Generator().manual_seed(0)
    r_1, r_2 = torch.randn(5, 7, generator=rng), torch.randn(5, 7, generator=rng)
    mu = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0])
    loss = pf.segment_preference_loss(r_1, r_2, mu)
    # only the sums matter: any reshuffling of the steps inside a segment gives the same loss
    assert torch.allclose(pf.segment_preference_loss(r_1.flip(1), r_2[:, torch.randperm(7, generator=rng)], mu),
                          loss)
    # adding a constant to every step (padded ones included) changes nothing: Bradley-Terry's free constant
    assert torch.allclose(pf.segment_preference_loss(r_1 + 3.0, r_2 + 3.0, mu), loss)
    # the same as binary cross-entropy on the difference of the sums
    bce = nn.functional.binary_cross_entropy_with_logits(r_1.sum(1) - r_2.sum(1), mu)
    assert torch.allclose(loss, bce, atol=1e-6)
    # with hard labels, the language-model chapter's reward_model_loss on the segments' returns
    hard = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    chosen = torch.where(hard == 1, r_1.sum(1), r_2.sum(1))
    rejected = torch.where(hard == 1, r_2.sum(1), r_1.sum(1))
    assert torch.allclose(pf.segment_preference_loss(r_1, r_2, hard), reward_model_loss(chosen, rejected))
    # stable where the difference is huge
    huge = pf.segment_preference_loss(torch.tensor([[500.0]]), torch.tensor([[-500.0]]), torch.tensor([0.0]))
    assert float(huge) == pytest.approx(1000.0)


@pytest.mark.parametrize("args, match", [
    ((torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2)), "shape"),
    ((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3)), "shape"),
    ((torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0)), "empty"),
    ((torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0.0, 1.5])), "mu"),
    ((torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3), torch.zeros(2)), "floating"),
    ((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.zeros(2)), "weights"),
    ((torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.tensor([1.0, -1.0])), "weights"),
])
def test_segment_loss_errors(args, match):
    with pytest.raises(ValueError, match=match):
        pf.segment_preference_loss(*args)


# -------------------------------------------------------------------------------------------- the overseer

def test_overseer_labels_agree_with_the_hidden_reward_at_the_stated_rate():
    rng = np.random.default_rng(0)
    n = 40_000
    g_1, g_2 = rng.normal(size=n), rng.normal(size=n)
    truth = g_1 > g_2
    for noise in (0.0, 0.1, 0.3):
        mu = pf.overseer_labels(g_1, g_2, np.random.default_rng(1), label_noise=noise)
        assert set(np.unique(mu)) <= {0.0, 1.0}
        agreement = np.mean((mu == 1) == truth)
        expected = 1 - noise / 2  # a random answer is right half the time
        assert abs(agreement - expected) < 4 * math.sqrt(expected * (1 - expected) / n) + 1e-12, (noise, agreement)
    # ties are "equally good" (mu = 1/2) for the noiseless overseer
    tie = pf.overseer_labels(np.array([1.0, 2.0]), np.array([1.0, 1.0]), rng, label_noise=0.0)
    assert tie.tolist() == [0.5, 1.0]
    # all noise: a coin flip whatever the returns
    mu = pf.overseer_labels(g_1, g_2, np.random.default_rng(2), label_noise=1.0)
    assert abs(np.mean((mu == 1) == truth) - 0.5) < 4 * math.sqrt(0.25 / n)


def test_bradley_terry_overseer_prefers_at_the_logistic_rate():
    n = 20_000
    for difference, temperature in ((0.0, 1.0), (1.0, 1.0), (3.0, 2.0), (-2.0, 0.5)):
        mu = pf.overseer_labels(np.full(n, difference), np.zeros(n), np.random.default_rng(3), label_noise=0.1,
                                temperature=temperature)
        p = 0.05 + 0.9 / (1 + math.exp(-difference / temperature))
        assert abs(mu.mean() - p) < 4 * math.sqrt(p * (1 - p) / n), (difference, temperature, mu.mean(), p)


def test_overseer_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="shape"):
        pf.overseer_labels(np.zeros(3), np.zeros(2), rng)
    with pytest.raises(ValueError, match="label_noise"):
        pf.overseer_labels(np.zeros(3), np.zeros(3), rng, label_noise=1.5)
    with pytest.raises(ValueError, match="temperature"):
        pf.overseer_labels(np.zeros(3), np.zeros(3), rng, temperature=-1.0)
    with pytest.raises(ValueError, match="finite"):
        pf.overseer_labels(np.array([np.nan]), np.zeros(1), rng)


# --------------------------------------------------------------------------------------------- segments

def test_segments_are_padded_with_the_fallen_state_after_a_termination():
    envs = make_cartpole_envs(2)
    rollout = collect_rollout(envs, envs.reset(seed=0)[0], AlwaysRight(), 24, torch.Generator().manual_seed(0))
    envs.close()
    segments = pf.cut_segments(rollout, 12)
    assert len(segments) == 2 * 13 and segments.envs.tolist() == [0] * 13 + [1] * 13
    t = int(np.flatnonzero(rollout.terminated[:, 0])[0])  # the pole falls within ~10 steps
    assert t < 11
    first = segments.take(np.array([0]))  # environment 0 from step 0: alive up to t, fallen after
    assert first.alive[0].tolist() == [True] * (t + 1) + [False] * (11 - t)
    assert np.array_equal(first.observations[0, :t + 1], rollout.observations[:t + 1, 0])
    assert np.all(first.observations[0, t + 1:] == 0) and np.all(first.hidden_rewards[0, t + 1:] == 0)
    assert np.allclose(first.hidden_rewards[0, :t + 1], pf.hidden_reward(rollout.observations[:t + 1, 0]))
    assert first.hidden_returns[0] == pytest.approx(first.hidden_rewards[0].sum())
    # a segment that starts after the termination belongs to the next episode and is alive until it ends
    later = segments.take(np.array([t + 1]))
    assert later.alive[0, 0] and np.array_equal(later.observations[0, 0], rollout.observations[t + 1, 0])
    # a learned reward is 0 on the padded steps, whatever the network says about the zero observation
    torch.manual_seed(0)
    model = pf.RewardEnsemble(2)
    r = pf.segment_rewards(model, first)
    assert r.shape == (2, 1, 12) and torch.all(r[:, 0, t + 1:] == 0) and torch.all(r[:, 0, :t + 1] != 0)


def test_windows_cut_by_the_time_limit_are_left_out():
    envs = make_cartpole_envs(2, max_episode_steps=5)
    torch.manual_seed(0)
    rollout = collect_rollout(envs, envs.reset(seed=3)[0], PolicyNetwork(), 8, torch.Generator().manual_seed(0))
    envs.close()
    assert rollout.truncated[4].all() and not rollout.terminated.any()  # cut after step 4, nothing fell
    segments = pf.cut_segments(rollout, 3)
    # windows of 3 steps starting at 0..5: those starting at 3 and 4 contain the cut before their last step
    starts = [0, 1, 2, 5]
    assert len(segments) == 2 * len(starts) and segments.alive.all()
    for b, start in enumerate(starts):
        assert np.array_equal(segments.observations[b], rollout.observations[start:start + 3, 0])
    with pytest.raises(ValueError, match="segment_length"):
        pf.cut_segments(rollout, 9)


def test_candidate_pairs_come_from_different_environments():
    segments = random_segments(12, 3, np.random.default_rng(0))
    segments.envs = np.repeat(np.arange(4), 3)
    everything = pf.candidate_pairs(segments, 1000, np.random.default_rng(0))
    assert len(everything) == (12 * 11 // 2) - 4 * 3  # all pairs but the 3 within each environment
    assert np.all(segments.envs[everything[:, 0]] != segments.envs[everything[:, 1]])
    some = pf.candidate_pairs(segments, 10, np.random.default_rng(1))
    assert len(some) == 10 and len({tuple(p) for p in some}) == 10


# ------------------------------------------------------------------------------------------ the reward model

def test_ensemble_members_are_ordinary_networks():
    torch.manual_seed(0)
    model = pf.RewardEnsemble(3, hidden=16)
    observations, actions = torch.randn(5, 7, 4), torch.randint(2, (5, 7))
    out = model(observations, actions)
    assert out.shape == (3, 5, 7)
    x = model.inputs(observations, actions).reshape(-1, 6)
    for m in range(3):
        assert torch.allclose(out[m].reshape(-1), model.member(m)(x).squeeze(-1), atol=1e-6)
    assert not torch.allclose(out[0], out[1])  # the members start apart


def test_reward_model_learns_a_known_reward_from_noiseless_comparisons():
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    train_1, train_2 = random_segments(400, 5, rng), random_segments(400, 5, rng)
    test_1, test_2 = random_segments(1000, 5, rng), random_segments(1000, 5, rng)
    mu = pf.overseer_labels(train_1.hidden_returns, train_2.hidden_returns, rng, label_noise=0.0)
    model = pf.RewardEnsemble(3)
    model.set_input_scale(np.concatenate([train_1.observations, train_2.observations]))
    uniform_std = [2.4 / math.sqrt(3), 1, pf.ANGLE_LIMIT / math.sqrt(3), 1]  # of the uniform and normal draws
    assert torch.allclose(model.observation_std, torch.tensor(uniform_std), rtol=0.05)

    def accuracy():
        p = pf.preference_probabilities(model, test_1, test_2).mean(axis=0)
        return np.mean((p > 0.5) == (test_1.hidden_returns > test_2.hidden_returns))

    before = accuracy()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    counts = rng.poisson(1.0, size=(3, 400))
    pf.train_reward_model(model, optimizer, train_1, train_2, mu, counts, 300, 16, rng)
    after = accuracy()
    assert before < 0.7 and after > 0.9, (before, after)
    # the learned reward follows the hidden one state by state
    states = test_1.observations.reshape(-1, 4)
    with torch.no_grad():
        learned = model(states, np.zeros(len(states), dtype=np.int64)).mean(0).numpy()
    assert np.corrcoef(learned, pf.hidden_reward(states))[0, 1] > 0.85


def test_normalised_reward_keeps_the_fallen_level_at_zero():
    raw = torch.tensor([[[2.0, 2.0, 4.0]], [[-1.0, -1.0, -1.0]]])  # two members, one segment of 3 steps
    alive = torch.tensor([[True, True, False]])
    out = pf.normalised_reward(raw, alive)
    # member 0: rms over living steps = 2, member 1: rms 1; the fallen step stays 0
    assert torch.allclose(out, torch.tensor([[(1 - 1) / 2, (1 - 1) / 2, 0.0]]))
    out = pf.normalised_reward(torch.tensor([[[3.0, 1.0]]]), torch.tensor([[True, True]]))
    assert torch.allclose(out, torch.tensor([[3.0, 1.0]]) / math.sqrt(5))


# ---------------------------------------------------------------------------------------------- the queries

def test_disagreement_queries_take_the_pairs_with_the_largest_variance():
    probabilities = np.array([[0.5, 0.9, 0.1, 0.5, 0.99],
                              [0.5, 0.1, 0.2, 0.6, 0.01],
                              [0.5, 0.5, 0.3, 0.7, 0.5]])
    # variances across members: 0, 0.1067, 0.0067, 0.0067, 0.1601
    assert pf.select_queries(probabilities, 2, "disagreement").tolist() == [4, 1]
    assert pf.select_queries(probabilities, 4, "disagreement").tolist() == [4, 1, 2, 3]
    assert pf.select_queries(probabilities, 3, "random").tolist() == [0, 1, 2]
    assert pf.select_queries(probabilities, 0, "disagreement").tolist() == []
    # on an ensemble's own predictions over candidate pairs: the chosen ones are the most disputed
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = pf.RewardEnsemble(4)
    first, second = random_segments(50, 5, rng), random_segments(50, 5, rng)
    p = pf.preference_probabilities(model, first, second)
    assert p.shape == (4, 50) and np.all((p > 0) & (p < 1))
    chosen = pf.select_queries(p, 5, "disagreement")
    variance = p.var(axis=0)
    assert np.all(variance[chosen] >= np.delete(variance, chosen).max())
    with pytest.raises(ValueError, match="rule"):
        pf.select_queries(probabilities, 2, "uncertainty")
    with pytest.raises(ValueError, match="n_queries"):
        pf.select_queries(probabilities, 6, "random")


def test_comparisons_schedule():
    config = pf.PreferenceConfig(num_comparisons=300, initial_fraction=0.25, label_annealing_steps=5000)
    steps = 256 * np.arange(1, 65)
    n = pf.comparisons_schedule(config, steps, 16_384)
    assert n[0] == 75 and n[-1] == 300 and np.all(np.diff(n) >= 0)
    # the rate decays: about half as many new comparisons in the second half of the run as in the first
    assert n[31] == 223 and n[31] - n[0] > 1.8 * (n[-1] - n[31])
    # ln(1 + (T - 256) / 5000) / ln(1 + 16128 / 5000) of the remaining 225 at T = 4096
    assert n[15] == math.floor(75 + 225 * math.log1p(3840 / 5000) / math.log1p(16128 / 5000))
    with pytest.raises(ValueError, match="2 rollouts"):
        pf.comparisons_schedule(config, [256], 256)


# ------------------------------------------------------------------------------------------------ training

SMALL = pf.PreferenceConfig(num_comparisons=40, ppo=PPOConfig(num_envs=4, num_steps=32, minibatch_size=64,
                                                               n_epochs=4), reward_pretrain_steps=20)


def test_a_run_records_its_curve_and_is_reproducible():
    run = pf.train_from_preferences(SMALL, 1024, seed=3, eval_episodes=3, progress=False)
    assert run.rule == "disagreement" and run.total_steps == 1024
    assert run.update_steps.tolist() == [128 * k for k in range(1, 9)]
    assert run.comparisons.tolist() == pf.comparisons_schedule(SMALL, run.update_steps, 1024).tolist()
    assert run.comparisons[0] == 10 and run.comparisons[-1] == 40
    assert np.all((run.accuracy >= 0) & (run.accuracy <= 1))
    assert np.all(np.abs(run.reward_correlation) <= 1) and np.isfinite(run.reward_loss[0])
    assert run.episode_lengths.sum() <= 1024 and np.all(run.episode_returns <= run.episode_lengths)
    assert 0.8 <= run.label_agreement <= 1.0  # 40 labels at 5 % error
    assert np.isfinite(run.final_return) and run.final_length >= run.final_return
    again = pf.train_from_preferences(SMALL, 1024, seed=3, eval_episodes=0, progress=False)
    assert torch.equal(parameters_of(run.policy), parameters_of(again.policy))
    assert torch.equal(parameters_of(run.reward_model), parameters_of(again.reward_model))
    assert np.array_equal(run.accuracy, again.accuracy)
    other = pf.train_from_preferences(dataclasses.replace(SMALL, query_rule="random"), 1024, seed=3,
                                      eval_episodes=0, progress=False)
    assert not torch.equal(parameters_of(run.reward_model), parameters_of(other.reward_model))
    reference = pf.train_from_preferences(SMALL, 1024, seed=3, true_reward=True, eval_episodes=0, progress=False)
    assert reference.rule == "true reward" and reference.reward_model is None
    assert reference.comparisons.tolist() == [0] * 8 and np.all(np.isnan(reference.accuracy))


def test_serial_and_parallel_runs_are_identical():
    kwargs = dict(seeds=[0, 1], total_steps=512, eval_episodes=2, progress=False, window=256)
    serial = pf.preference_runs(SMALL, n_jobs=1, **kwargs)
    parallel = pf.preference_runs(SMALL, n_jobs=2, **kwargs)
    assert list(serial) == list(pf.RULES)
    for rule in pf.RULES:
        s, p = serial[rule], parallel[rule]
        assert s["steps"].tolist() == [128, 256, 384, 512] and s["comparisons"].tolist() == [10, 20, 30, 40]
        for key in ("true_return", "episode_length", "accuracy", "reward_correlation", "final_return"):
            assert np.array_equal(s[key], p[key], equal_nan=True), (rule, key)
        for a, b in zip(s["results"], p["results"], strict=True):
            assert torch.equal(parameters_of(a.policy), parameters_of(b.policy))
    # the seeds differ
    assert not torch.equal(parameters_of(serial["random"]["results"][0].policy),
                           parameters_of(serial["random"]["results"][1].policy))


def test_the_true_return_rises_far_above_the_untrained_policys():
    """One seed, 8,192 steps and 150 comparisons: the policy learns to balance from the learned reward alone.
    Measured: the untrained policy's training episodes (first 1,024 steps) had a mean hidden return of 19 and a
    mean length of 22; after training, 20 evaluation episodes of the sampled policy 68 and 79 (a 20-episode mean
    of the untrained policy varies by about +-3)."""
    config = pf.PreferenceConfig(num_comparisons=150)
    run = pf.train_from_preferences(config, 8192, seed=0, eval_episodes=20, progress=False)
    untrained = run.curve([1024], window=1024)[0]  # the training episodes of the first four rollouts
    untrained_length = run.length_curve([1024], window=1024)[0]
    assert untrained < 30 and untrained_length < 30
    assert run.final_return > 3 * untrained and run.final_length > 3 * untrained_length, \
        (untrained, untrained_length, run.final_return, run.final_length)
    assert np.nanmean(run.accuracy[-8:]) > 0.7  # the reward model orders new segments mostly right
    assert run.learned_reward_mean[-1] > 0  # being alive is worth more than the fallen state


# ------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("changes, match", [
    ({"segment_length": 0}, "segment_length"), ({"segment_length": 40}, "num_steps"),
    ({"num_comparisons": 1}, "num_comparisons"), ({"query_rule": "uncertain"}, "query_rule"),
    ({"initial_fraction": 1.5}, "initial_fraction"), ({"label_noise": -0.1}, "label_noise"),
    ({"overseer_temperature": -1}, "temperature"), ({"reward_learning_rate": 0}, "reward_learning_rate"),
    ({"ensemble_size": 0}, "ensemble_size"), ({"pool_factor": 1.5}, "pool_factor"), ({"ppo": {}}, "ppo"),
    ({"ppo": PPOConfig(num_envs=1, minibatch_size=32)}, "num_envs"),
])
def test_config_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        pf.PreferenceConfig(**changes)


def test_run_errors():
    with pytest.raises(ValueError, match="PreferenceConfig"):
        pf.train_from_preferences(PPOConfig(), 1024, 0, progress=False)
    with pytest.raises(ValueError, match="seed"):
        pf.train_from_preferences(SMALL, 1024, -1, progress=False)
    with pytest.raises(ValueError, match="2 rollouts"):
        pf.train_from_preferences(SMALL, 100, 0, progress=False)
    with pytest.raises(ValueError, match="eval_episodes"):
        pf.train_from_preferences(SMALL, 1024, 0, eval_episodes=-1, progress=False)
    with pytest.raises(ValueError, match="rules"):
        pf.preference_runs(SMALL, seeds=[0], rules=["best"])
    with pytest.raises(ValueError, match="n_jobs"):
        pf.preference_runs(SMALL, seeds=[0], n_jobs=0)
    with pytest.raises(ValueError, match="n_episodes"):
        pf.evaluate_true_return(nn.Linear(4, 2), 0)
