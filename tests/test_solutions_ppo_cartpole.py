"""Chapter 5's PPO on CartPole-v1 (solutions/ppo_cartpole.py): the same-step autoreset bookkeeping (a truncated
episode bootstraps from its final observation), the update's schedule and diagnostics, reproducibility (serial runs
= parallel runs, evaluations do not change the training), PPO learning CartPole, the one-large-step table, and the
errors."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from solutions import ppo_cartpole as pc
from solutions.policy_gradients import PolicyNetwork, ValueNetwork


class LinearValue(nn.Module):
    """A value function we can compute by hand: V(s) = 10 s_0 + s_1 + 1."""

    def forward(self, states):
        return 10 * states[..., 0] + states[..., 1] + 1


class AlwaysRight(nn.Module):
    """The policy that pushes right (logits [-30, 30]), so that replays can follow the same actions."""

    def forward(self, states):
        return torch.tensor([-30.0, 30.0]).expand(states.shape[0], 2)


def parameters_of(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


# ------------------------------------------------------------------------ same-step autoreset and truncation

@pytest.fixture(scope="module")
def cut_rollout():
    """Two CartPole environments with a 5-step time limit, 8 steps of a random policy: every episode is cut at
    step 4 (index), before the pole can fall."""
    envs = pc.make_cartpole_envs(2, max_episode_steps=5)
    observations = envs.reset(seed=3)[0]
    torch.manual_seed(0)
    policy = PolicyNetwork()
    rollout = pc.collect_rollout(envs, observations, policy, 8, torch.Generator().manual_seed(0))
    envs.close()
    return rollout


def test_truncated_steps_keep_the_final_observation_not_the_next_episodes_first(cut_rollout):
    r = cut_rollout
    assert r.truncated.tolist() == [[False, False]] * 4 + [[True, True]] + [[False, False]] * 3
    assert not r.terminated.any()
    # S'_t = S_{t+1} inside an episode ...
    assert np.array_equal(r.next_observations[:4], r.observations[1:5])
    assert np.array_equal(r.next_observations[5:7], r.observations[6:8])
    assert np.array_equal(r.last_observations, r.next_observations[7])
    # ... but where the episode was cut, S'_4 is its final observation, not the next episode's first S_5.
    assert not np.allclose(r.next_observations[4], r.observations[5])
    # Replaying each environment alone with the same seed and actions gives the same observations.
    for i in range(2):
        env = gym.make("CartPole-v1", max_episode_steps=5)
        obs, _ = env.reset(seed=3 + i)
        assert np.array_equal(obs, r.observations[0, i])
        for t in range(5):
            obs, reward, terminated, truncated, _ = env.step(int(r.actions[t, i]))
            assert np.array_equal(obs, r.next_observations[t, i]) and reward == r.rewards[t, i]
        assert truncated and not terminated
        obs, _ = env.reset()  # the vector environment's autoreset: no seed, the environment's own generator
        assert np.array_equal(obs, r.observations[5, i])


def test_truncated_step_bootstraps_from_the_value_of_the_final_observation(cut_rollout):
    r, V = cut_rollout, LinearValue()

    def v(states):
        return V(torch.as_tensor(states)).double().numpy()

    for bootstrap in (True, False):
        config = pc.PPOConfig(gamma=0.9, lam=0.0, bootstrap_truncated=bootstrap)
        values, advantages = pc.rollout_advantages(r, V, config)
        assert np.allclose(values, v(r.observations), atol=1e-6)
        # lam = 0: A_t is the TD error r_t + gamma V(S'_t) - V(S_t)
        expected = r.rewards + 0.9 * v(r.next_observations) - v(r.observations)
        if not bootstrap:  # the bug this switch measures: V(final observation) replaced by 0
            expected[4] = r.rewards[4] - v(r.observations[4])
        assert np.allclose(advantages, expected, atol=1e-5)
        # the value of the next episode's first observation is never used at the cut
        wrong = r.rewards[4] + 0.9 * v(r.observations[5]) - v(r.observations[4])
        assert np.all(np.abs(advantages[4] - wrong) > 0.05)
    # lam = 1 inside an episode: A_3 = r_3 + gamma r_4 + gamma^2 V(final obs) - V(S_3), nothing from the next one
    config = pc.PPOConfig(gamma=0.9, lam=1.0)
    _, advantages = pc.rollout_advantages(r, V, config)
    expected = r.rewards[3] + 0.9 * r.rewards[4] + 0.81 * v(r.next_observations[4]) - v(r.observations[3])
    assert np.allclose(advantages[3], expected, atol=1e-5)


def test_a_terminated_step_contributes_no_bootstrap():
    envs = pc.make_cartpole_envs(1)
    observations = envs.reset(seed=0)[0]
    rollout = pc.collect_rollout(envs, observations, AlwaysRight(), 30, torch.Generator().manual_seed(0))
    envs.close()
    t = int(np.flatnonzero(rollout.terminated[:, 0])[0])  # pushing right, the pole falls within ~10 steps
    assert t < 20 and not rollout.truncated.any()
    _, advantages = pc.rollout_advantages(rollout, LinearValue(), pc.PPOConfig(gamma=0.9, lam=0.5))
    v_t = float(LinearValue()(torch.as_tensor(rollout.observations[t, 0])[None]))
    assert advantages[t, 0] == pytest.approx(1.0 - v_t, abs=1e-5)
    # with lam = 0.5 the step before carries 0.9 * 0.5 of it
    v = LinearValue()(torch.as_tensor(rollout.observations[t - 1:t + 1, 0])).double().numpy()
    delta = 1.0 + 0.9 * v[1] - v[0]
    assert advantages[t - 1, 0] == pytest.approx(delta + 0.45 * advantages[t, 0], abs=1e-5)


# ----------------------------------------------------------------------------------- networks and the update

def test_orthogonal_init_gains_and_zero_biases():
    torch.manual_seed(0)
    policy = pc.orthogonal_init(PolicyNetwork(4, 2, 64), output_gain=0.01)
    value = pc.orthogonal_init(ValueNetwork(4, 64), output_gain=1.0)
    for network, gains in ((policy, (2.0, 2.0, 1e-4)), (value, (2.0, 2.0, 1.0))):
        linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
        for layer, gain2 in zip(linears, gains, strict=True):
            W = layer.weight.detach().double()
            small = W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T  # gain^2 I on the smaller side
            assert torch.allclose(small, gain2 * torch.eye(small.shape[0], dtype=torch.float64), atol=1e-5 * gain2)
            assert not layer.bias.any()
    with pytest.raises(ValueError, match="output_gain"):
        pc.orthogonal_init(PolicyNetwork(), 0.0)


def test_schedule_diagnostics_and_reproducibility():
    run = pc.train_ppo(pc.PPOConfig(), total_steps=1000, seed=4, eval_every=None, progress=False)
    assert run.total_steps == 1024 and run.update_steps.tolist() == [256, 512, 768, 1024]  # rounded up to rollouts
    d = run.diagnostics
    assert np.allclose(d["learning_rate"], 1e-3 * np.array([1, 0.75, 0.5, 0.25]))  # 1 - (k - 1) / U
    assert np.allclose(d["cliprange"], 0.2 * np.array([1, 0.75, 0.5, 0.25]))
    assert np.all(d["approx_kl"] >= 0) and np.all((d["clip_fraction"] >= 0) & (d["clip_fraction"] <= 1))
    assert np.all(d["entropy"] > 0.5) and np.all(d["entropy"] <= math.log(2) + 1e-6)  # near uniform at first
    assert d["clip_fraction"].max() > 0  # 20 epochs on one rollout move some ratios past 1 +- epsilon
    flat = pc.train_ppo(pc.PPOConfig(anneal=False), total_steps=512, seed=4, eval_every=None, progress=False)
    assert flat.diagnostics["learning_rate"].tolist() == [1e-3, 1e-3]
    # the same seed gives the same run, evaluations or not; another seed another one
    again = pc.train_ppo(pc.PPOConfig(), total_steps=1000, seed=4, eval_every=512, eval_episodes=3,
                         progress=False)
    assert torch.equal(parameters_of(run.policy), parameters_of(again.policy))
    assert torch.equal(parameters_of(run.value), parameters_of(again.value))
    assert np.array_equal(run.episode_returns, again.episode_returns)
    assert again.eval_steps.tolist() == [0, 512, 1024] and len(run.eval_steps) == 0
    other = pc.train_ppo(pc.PPOConfig(), total_steps=256, seed=5, eval_every=None, progress=False)
    first = pc.train_ppo(pc.PPOConfig(), total_steps=256, seed=4, eval_every=None, progress=False)
    assert not torch.equal(parameters_of(other.policy), parameters_of(first.policy))


def test_training_episode_returns_are_the_episodes_lengths():
    run = pc.train_ppo(pc.PPOConfig(), total_steps=2048, seed=1, eval_every=None, progress=False)
    # CartPole pays 1 per step: the finished episodes' steps plus the unfinished ones' make up all steps
    assert run.episode_returns.sum() <= 2048 and run.episode_returns.sum() > 2048 - 8 * 500
    assert np.all(np.diff(run.episode_ends) >= 0) and run.episode_ends.max() <= 2048
    assert np.all(run.episode_returns == np.round(run.episode_returns)) and run.episode_returns.min() >= 8


def test_serial_and_parallel_runs_are_identical():
    configs = {"full": pc.PPOConfig(), "no clipping": pc.PPOConfig(max_grad_norm=None)}
    kwargs = dict(seeds=[0, 1], total_steps=1024, eval_every=512, eval_episodes=4, progress=False,
                  snapshot_steps=(512,))
    serial = pc.ppo_runs(configs, n_jobs=1, **kwargs)
    parallel = pc.ppo_runs(configs, n_jobs=2, **kwargs)
    for name in configs:
        s, p = serial[name], parallel[name]
        assert s["steps"].tolist() == [0, 512, 1024]
        for key in ("eval_sampled", "eval_greedy", "train_curves", "first_step"):
            assert np.array_equal(s[key], p[key], equal_nan=True), (name, key)
        for a, b in zip(s["results"], p["results"], strict=True):
            assert torch.equal(parameters_of(a.policy), parameters_of(b.policy))
            assert torch.equal(parameters_of(a.snapshots[512][0]), parameters_of(b.snapshots[512][0]))
            assert np.array_equal(a.episode_returns, b.episode_returns)
            assert all(np.array_equal(a.diagnostics[k], b.diagnostics[k]) for k in a.diagnostics)
    # the two configurations differ, and each seed differs
    assert not np.array_equal(serial["full"]["results"][0].diagnostics["approx_kl"],
                              serial["no clipping"]["results"][0].diagnostics["approx_kl"])
    assert not torch.equal(parameters_of(serial["full"]["results"][0].policy),
                           parameters_of(serial["full"]["results"][1].policy))


def test_grid_values_hold_the_last_value_after_a_stop():
    out = pc._grid_values(np.array([0, 512, 1024]), np.array([20.0, 480.0, 490.0]), np.arange(0, 2049, 512))
    assert out.tolist() == [20.0, 480.0, 490.0, 490.0, 490.0]


# --------------------------------------------------------------------- learning CartPole, one large step

@pytest.fixture(scope="module")
def trained_runs():
    """Three seeds of the full configuration, 30,720 steps each (the annealing over that budget), evaluated every
    2,048 steps, with the half-trained networks at 8,192 steps."""
    return pc.ppo_runs(pc.PPOConfig(), seeds=[0, 1, 2], total_steps=30_720, eval_every=2048, eval_greedy=False,
                       snapshot_steps=(8192,), progress=False)["ppo"]


@pytest.mark.slow
def test_ppo_learns_cartpole(trained_runs):
    # benchmarks/ppo_cartpole.py: 475 within 50,000 steps for 10 of 10 seeds; here the schedule spans 30,720 steps
    first = trained_runs["first_step"]
    assert np.sum(first <= 30_720) >= 2, first  # a mean sampled return of 475 for at least 2 of 3 seeds
    assert np.all(trained_runs["eval_sampled"][:, 0] < 60)  # from a near-uniform policy
    assert np.median(trained_runs["eval_sampled"][:, -1]) >= 400
    for run in trained_runs["results"]:
        assert run.diagnostics["entropy"][-1] < run.diagnostics["entropy"][0] - 0.2  # more certain
        assert run.diagnostics["approx_kl"].max() < 0.1  # the clip keeps the updates small


@pytest.mark.slow
def test_one_large_step_collapses_the_policy_where_ppo_does_not(trained_runs):
    table = pc.one_step_collapse(trained_runs["results"], learning_rates=(1e-2, 1.0, 100.0), at_step=8192,
                                 progress=False)
    assert table["labels"] == ["vanilla alpha=0.01", "vanilla alpha=1", "vanilla alpha=100", "ppo-clip 20 epochs",
                               "no clip 20 epochs"]
    before, after, kl = table["return_before"], table["return_after"], table["kl"]
    assert np.all(before >= 60)  # a policy that balances for a while
    assert np.allclose(after[0], before, rtol=0.1)  # a tiny step changes little
    # the large vanilla step collapses every policy; the PPO update stays near the old policy
    assert np.all(after[2] <= 30) and np.all(kl[2] > 0.5)
    assert np.all(kl[3] < 0.05) and np.all(after[3] >= 0.4 * before)
    assert np.all(after[2] < after[3])
    assert np.all(kl[0] < kl[1]) and np.all(kl[1] < kl[2])  # KL grows with the step size


# ------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("changes, match", [
    ({"num_envs": 0}, "num_envs"), ({"n_epochs": 1.5}, "n_epochs"), ({"minibatch_size": 100}, "divide"),
    ({"gamma": 1.5}, "gamma"), ({"lam": -0.1}, "lam"), ({"cliprange": 1.0}, "cliprange"),
    ({"cliprange": 0}, "cliprange"), ({"learning_rate": 0}, "learning_rate"), ({"max_grad_norm": 0}, "max_grad"),
    ({"clip_value": -1.0}, "clip_value"), ({"ent_coef": -0.1}, "ent_coef"), ({"anneal": 1}, "anneal"),
    ({"normalize_advantages": "yes"}, "normalize_advantages"),
])
def test_config_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        pc.PPOConfig(**changes)
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(pc.PPOConfig(), **changes)


def test_run_errors():
    with pytest.raises(ValueError, match="eval_every"):
        pc.train_ppo(pc.PPOConfig(), 1024, 0, eval_every=500, progress=False)
    with pytest.raises(ValueError, match="total_steps"):
        pc.train_ppo(pc.PPOConfig(), 0, 0, progress=False)
    with pytest.raises(ValueError, match="stop_after"):
        pc.train_ppo(pc.PPOConfig(), 1024, 0, eval_every=None, stop_after=2, progress=False)
    with pytest.raises(ValueError, match="seed"):
        pc.train_ppo(pc.PPOConfig(), 1024, -1, progress=False)
    with pytest.raises(ValueError, match="snapshot_steps"):
        pc.train_ppo(pc.PPOConfig(), 1024, 0, snapshot_steps=(300,), progress=False)
    with pytest.raises(ValueError, match="PPOConfig"):
        pc.train_ppo({"num_envs": 8}, 1024, 0, progress=False)
    with pytest.raises(ValueError, match="seed"):
        pc.ppo_runs(pc.PPOConfig(), seeds=[], total_steps=256)
    with pytest.raises(ValueError, match="n_jobs"):
        pc.ppo_runs(pc.PPOConfig(), seeds=[0], total_steps=256, n_jobs=0)
    with pytest.raises(ValueError, match="rollout size"):
        pc.ppo_runs({"a": pc.PPOConfig(), "b": pc.PPOConfig(num_steps=64)}, seeds=[0], total_steps=256)
    with pytest.raises(ValueError, match="details"):
        pc.ppo_ablation(details=["no entropy"], total_steps=256)
    with pytest.raises(ValueError, match="empty"):
        pc.one_step_collapse([])
    run = pc.train_ppo(pc.PPOConfig(), 256, 0, eval_every=None, progress=False)
    with pytest.raises(ValueError, match="learning_rates"):
        pc.one_step_collapse([run], learning_rates=(0.1, -1.0))
    with pytest.raises(ValueError, match="snapshot"):
        pc.one_step_collapse([run], at_step=8192)
