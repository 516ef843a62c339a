"""The two-rooms world behaves as documented, and the learned models fit it as Chapter 2 says."""

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from solutions.envs.continuous import ContinuousTwoRooms, make_two_rooms, transition
from solutions.learned_models import (DynamicsModel, LinearGaussianModel, StateAggregation, fit_dynamics_model,
                                      model_gradient_step, one_hot, run_two_rooms)


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
def two_rooms_runs():
    methods = ("q_learning", "replay", "true model", "linear model")
    return {m: np.array([run_two_rooms(m, seed) for seed in range(3)]) for m in methods}


@pytest.mark.slow
def test_replay_and_a_true_model_learn_the_route_and_q_learning_alone_does_not(two_rooms_runs):
    late = {m: steps[:, 20:].mean() for m, steps in two_rooms_runs.items()}
    assert late["replay"] < 30 and late["true model"] < 30  # the shortest route takes about 21 steps
    assert late["q_learning"] > 60


@pytest.mark.slow
def test_the_linear_models_shortcut_through_the_wall_misleads_planning(two_rooms_runs):
    late = {m: steps[:, 20:].mean() for m, steps in two_rooms_runs.items()}
    assert late["linear model"] > 2 * late["true model"]


def test_state_aggregation_and_methods():
    aggregate = StateAggregation(10)
    assert aggregate(np.array([0.05, 0.95])) == 9 and aggregate(np.array([1.0, 1.0])) == 99
    assert aggregate(np.array([[0.0, 0.0], [0.15, 0.0]])).tolist() == [0, 10]
    with pytest.raises(ValueError, match="method"):
        run_two_rooms("dreaming")
