"""The two-rooms world behaves as documented, and the learned models fit it as Chapter 2 says."""

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from solutions.envs.continuous import ContinuousTwoRooms, make_two_rooms, transition
from solutions.learned_models import (DynamicsModel, LinearGaussianModel, StateAggregation, fit_dynamics_model,
                                      model_gradient_step, one_hot, run_two_rooms, two_rooms_runs)


def test_environment_follows_the_gymnasium_api():
    check_env(ContinuousTwoRooms(), skip_render_check=True)
    with pytest.raises(ValueError, match="noise"):
        ContinuousTwoRooms(noise=-1)


def test_wall_blocks_below_the_doorway_and_edges_clip():
    rng = np.random.default_rng(0)
    positions = np.array([[0.45, 0.3], [0.45, 0.8], [0.55, 0.3], [0.95, 0.5], [0.2, 0.2]])
    actions = np.array([1, 1, 3, 1, 2])  # right, right, left, right, down
    moved = transition(positions, actions, rng, noise=0.0)
    assert np.allclose(moved, [[0.45, 0.3], [0.55, 0.8], [0.55, 0.3], [1.0, 0.5], [0.2, 0.1]])
    with pytest.raises(ValueError, match="shape|\\(N, 2\\)"):
        transition(positions[:, :1], actions, rng)
    with pytest.raises(ValueError, match="0..3"):
        transition(positions, actions + 4, rng)


def test_the_route_through_the_doorway_reaches_the_goal():
    env = make_two_rooms(noise=0.0)
    env.reset(seed=0)
    route = [0] * 6 + [1] * 7 + [2] * 6  # up to the doorway, across, down to the goal
    for step, action in enumerate(route, start=1):
        _, reward, terminated, truncated, _ = env.step(action)
        assert reward == -1.0 and not truncated
        if terminated:
            break
    assert terminated and step <= 21


def test_linear_model_recovers_linear_moves():
    rng = np.random.default_rng(1)
    states = rng.uniform(0.15, 0.35, size=(500, 2))  # well inside the left room: no move reaches a wall
    actions = rng.integers(4, size=500)
    model = LinearGaussianModel(2, 4).fit(states, actions, transition(states, actions, rng, noise=0.01))
    probe = np.array([[0.2, 0.3]] * 4)
    moves = 0.1 * np.array([[0, 1], [1, 0], [0, -1], [-1, 0]])  # up, right, down, left
    assert np.allclose(model.predict(probe, np.arange(4)) - probe, moves, atol=0.01)
    assert np.allclose(np.sqrt(np.diagonal(model.cov, axis1=1, axis2=2)), 0.01, atol=0.003)
    assert model.sample(probe, np.arange(4), rng).shape == (4, 2)


def test_gradient_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = DynamicsModel(2, 4, hidden=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    rng = np.random.default_rng(0)
    states = rng.random((64, 2))
    actions = rng.integers(4, size=64)
    batch = (torch.as_tensor(states, dtype=torch.float32), torch.as_tensor(actions),
             torch.as_tensor(transition(states, actions, rng), dtype=torch.float32))
    losses = [model_gradient_step(model, optimizer, *batch) for _ in range(50)]
    assert isinstance(losses[0], float) and losses[-1] < 0.5 * losses[0]
    assert one_hot([2, 0], 3).tolist() == [[0, 0, 1], [1, 0, 0]]


@pytest.mark.slow
def test_the_network_learns_the_wall_and_the_linear_model_cannot():
    rng = np.random.default_rng(0)
    states = rng.random((8000, 2))
    actions = rng.integers(4, size=8000)
    next_states = transition(states, actions, rng)
    torch.manual_seed(0)
    network = DynamicsModel(2, 4)
    fit_dynamics_model(network, torch.optim.Adam(network.parameters(), lr=3e-3), states, actions, next_states,
                       1500, 256, np.random.default_rng(1))
    linear = LinearGaussianModel(2, 4).fit(states, actions, next_states)
    below, above = np.array([[0.45, 0.2]]), np.array([[0.45, 0.9]])  # moving right: blocked, then through the door
    right = np.array([1])
    assert (network.predict(below, right) - below)[0, 0] < 0.03
    assert (network.predict(above, right) - above)[0, 0] > 0.07
    assert (linear.predict(below, right) - below)[0, 0] > 0.07


@pytest.fixture(scope="module")
def two_rooms():
    """The chapter's experiment: 20 runs of each method, side by side."""
    methods = ("q_learning", "replay", "true model", "linear model")
    return {m: two_rooms_runs(m, n_runs=20, seed=0) for m in methods}


def _mean_half(steps, episodes):
    """Mean over runs of each run's average over ``episodes``, and 1.96 standard errors."""
    per_run = steps[:, episodes].mean(axis=1)
    return per_run.mean(), 1.96 * per_run.std(ddof=1) / np.sqrt(len(per_run))


@pytest.mark.slow
def test_replay_and_a_true_model_learn_the_route_and_q_learning_alone_does_not(two_rooms):
    late = {m: _mean_half(steps, slice(20, 30)) for m, steps in two_rooms.items()}
    assert late["replay"][0] < 30 and late["true model"][0] < 30  # the shortest route takes about 21 steps
    assert late["q_learning"][0] - late["q_learning"][1] > 60
    methods = ("q_learning", "replay", "true model", "linear model")
    assert [round(late[m][0]) for m in methods] == [106, 24, 23, 109]  # the numbers the chapter quotes


@pytest.mark.slow
def test_a_true_model_beats_replay_early_and_they_meet_later(two_rooms):
    (true_early, h_true), (replay_early, h_replay) = (_mean_half(two_rooms[m], slice(4, 9))
                                                      for m in ("true model", "replay"))
    assert true_early + h_true < replay_early - h_replay  # the bands are apart in episodes 5-9
    (true_late, h_true), (replay_late, h_replay) = (_mean_half(two_rooms[m], slice(20, 30))
                                                    for m in ("true model", "replay"))
    assert abs(true_late - replay_late) < h_true + h_replay  # and overlap in episodes 21-30


@pytest.mark.slow
def test_the_linear_models_shortcut_through_the_wall_leaves_the_agent_no_faster_than_q_learning(two_rooms):
    for episodes in (slice(4, 9), slice(20, 30)):
        (linear, h_linear), (plain, h_plain) = (_mean_half(two_rooms[m], episodes)
                                                for m in ("linear model", "q_learning"))
        assert abs(linear - plain) < h_linear + h_plain  # the chapter: the bands overlap
    per_episode = {m: (two_rooms[m].mean(axis=0), 1.96 * two_rooms[m].std(axis=0, ddof=1) / np.sqrt(20))
                   for m in ("linear model", "q_learning")}
    (m_linear, h_linear), (m_plain, h_plain) = per_episode.values()
    assert (np.flatnonzero(np.abs(m_linear - m_plain) > h_linear + h_plain) + 1).tolist() == [3]  # as printed
    late = {m: _mean_half(steps, slice(20, 30)) for m, steps in two_rooms.items()}
    assert late["linear model"][0] - late["linear model"][1] > 2 * late["true model"][0]
    assert late["linear model"][1] > 3 * late["q_learning"][1]  # "its runs vary far more"


@pytest.mark.slow
def test_the_side_by_side_runs_agree_with_the_readable_version():
    """Different random streams, the same algorithm: the mean learning curves agree within their noise."""
    readable = np.array([run_two_rooms("replay", seed, n_episodes=12) for seed in range(12)])
    vectorised = two_rooms_runs("replay", n_runs=12, seed=0, n_episodes=12)
    for episodes in (slice(0, 1), slice(1, 4), slice(4, 8), slice(8, 12)):
        (a, h_a), (b, h_b) = _mean_half(readable, episodes), _mean_half(vectorised, episodes)
        assert abs(a - b) < 1.5 * np.hypot(h_a, h_b), (episodes, a, b)  # 1.5 * 1.96 = 2.9 standard errors


def test_two_rooms_runs_checks_its_arguments_and_counts_steps():
    steps = two_rooms_runs("true model", n_runs=3, seed=1, n_episodes=2, max_episode_steps=5)
    assert steps.shape == (3, 2) and np.all((steps >= 1) & (steps <= 5))
    with pytest.raises(ValueError, match="method"):
        two_rooms_runs("dreaming")
    with pytest.raises(ValueError, match="n_runs"):
        two_rooms_runs("replay", n_runs=0)


def test_state_aggregation_and_methods():
    aggregate = StateAggregation(10)
    assert aggregate(np.array([0.05, 0.95])) == 9 and aggregate(np.array([1.0, 1.0])) == 99
    assert aggregate(np.array([[0.0, 0.0], [0.15, 0.0]])).tolist() == [0, 10]
    with pytest.raises(ValueError, match="method"):
        run_two_rooms("dreaming")
