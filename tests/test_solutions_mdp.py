"""The reference implementations reproduce the textbooks' numbers and reject bad input."""

import gymnasium as gym
import numpy as np
import pytest

from solutions import mdp
from solutions.envs import (TabularMDP, TabularMDPEnv, aima_4x3, from_toy_text, penguin_on_ice, random_mdp,
                            sutton_barto_4x4)

PENGUIN_REWARDS = [1, 0, 2, 0, 6, 0, 10, 0, 9, 1, 10, 0, 11, 1, 15, 0][1::2]


def test_penguin_returns_match_the_lecture():
    G = [mdp.discounted_return(PENGUIN_REWARDS[t:], 0.9) for t in range(3)]
    assert np.round(G, 4).tolist() == [1.1875, 1.3195, 1.4661]
    assert np.allclose(mdp.discounted_returns(PENGUIN_REWARDS, 0.9)[:3], G)


def test_penguin_chain_moves_to_neighbours_with_equal_probability():
    P = penguin_on_ice().P[:, 0, :]
    assert np.allclose(P.sum(axis=1), 1)
    assert np.allclose(P[0, [1, 4]], 0.5)  # corner: two neighbours
    assert np.allclose(P[1, [0, 2, 5]], 1 / 3)  # edge: three
    assert np.allclose(P[5, [1, 4, 6, 9]], 0.25)  # inside: four
    assert np.count_nonzero(P) == 2 * 24  # 24 pairs of neighbouring squares, each pair both ways


def test_aima_4x3_value_iteration_matches_figure_17_3():
    V = mdp.value_iteration(aima_4x3())
    expected = [0.812, 0.868, 0.918, 1.0, 0.762, 0.660, -1.0, 0.705, 0.655, 0.611, 0.388, 0.0]
    assert np.round(V, 3).tolist() == expected


def test_aima_policy_takes_the_long_way_and_flips_with_a_harsh_step_reward():
    world = aima_4x3()
    s31, s32 = world.state_names.index("(3,1)"), world.state_names.index("(3,2)")
    policy = mdp.greedy_policy(world, mdp.value_iteration(world))
    assert world.action_names[policy[s31]] == "left"
    harsh = aima_4x3(step_reward=-2.0)
    policy = mdp.greedy_policy(harsh, mdp.value_iteration(harsh))
    assert world.action_names[policy[s32]] == "right"  # straight into the -1 exit


def test_sutton_barto_figure_4_1():
    grid = sutton_barto_4x4()
    pi = mdp.uniform_random_policy(grid)
    expected = [0, -14, -20, -22, -14, -18, -20, -20, -20, -20, -18, -14, -22, -20, -14, 0]
    assert np.allclose(mdp.policy_evaluation(grid, pi), expected, atol=1e-6)
    assert np.allclose(mdp.policy_evaluation_exact(grid, pi), expected, atol=1e-9)
    # the k = 1, 2, 3 panels (the book prints one decimal)
    assert np.allclose(mdp.policy_evaluation(grid, pi, max_sweeps=1)[1:15], -1.0)
    assert np.allclose(mdp.policy_evaluation(grid, pi, max_sweeps=2)[[1, 2, 5]], [-1.75, -2.0, -2.0])
    assert np.allclose(np.round(mdp.policy_evaluation(grid, pi, max_sweeps=3)[[1, 2, 3]], 1), [-2.4, -2.9, -3.0])


@pytest.mark.parametrize("seed", range(5))
def test_policy_iteration_agrees_with_value_iteration(seed):
    m = random_mdp(np.random.default_rng(seed), 9, 3, 0.9, n_terminal=1)
    policy, V = mdp.policy_iteration(m)
    assert np.allclose(V, mdp.value_iteration(m), atol=1e-8)
    assert np.allclose(mdp.policy_evaluation_exact(m, mdp.deterministic_to_stochastic(m, policy)), V)


def test_iterative_and_exact_evaluation_agree():
    rng = np.random.default_rng(0)
    m = random_mdp(rng, 8, 3, 0.95, n_terminal=2)
    pi = rng.dirichlet(np.ones(3), size=8)
    assert np.allclose(mdp.policy_evaluation(m, pi), mdp.policy_evaluation_exact(m, pi), atol=1e-8)


def test_q_from_v_ignores_terminal_values():
    world = aima_4x3()
    V = mdp.value_iteration(world)
    V_dirty = V.copy()
    V_dirty[world.terminal] = 123.0
    assert np.allclose(mdp.q_from_v(world, V), mdp.q_from_v(world, V_dirty))


def test_sample_trajectory_stops_at_terminal_and_is_reproducible():
    grid = sutton_barto_4x4()
    pi = mdp.uniform_random_policy(grid)
    states, actions, rewards = mdp.sample_trajectory(grid, pi, 5, np.random.default_rng(0))
    assert grid.terminal[states[-1]] and not grid.terminal[states[:-1]].any()
    assert len(states) == len(actions) + 1 == len(rewards) + 1
    assert np.all(rewards == -1)
    again = mdp.sample_trajectory(grid, pi, 5, np.random.default_rng(0))
    assert np.array_equal(states, again[0])


def test_gymnasium_env_follows_the_api_and_the_model():
    from gymnasium.utils.env_checker import check_env

    env = TabularMDPEnv(aima_4x3())
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs == env.mdp.state_names.index("(1,1)") and info == {}
    counts = np.zeros(env.mdp.n_states)
    for _ in range(2000):
        env.reset(seed=None)
        obs, reward, terminated, truncated, _ = env.step(0)  # up from (1,1)
        counts[obs] += 1
        assert reward == pytest.approx(-0.04) and not terminated and not truncated
    assert np.allclose(counts / counts.sum(), env.mdp.P[obs_start := env.mdp.state_names.index("(1,1)"), 0],
                       atol=0.04), obs_start


def test_toy_text_conversion_keeps_the_frozen_lake_model():
    env = gym.make("FrozenLake-v1", map_name="4x4", is_slippery=True)
    model = from_toy_text(env.unwrapped.P, gamma=0.99, initial=np.eye(16)[0])
    assert model.terminal.tolist() == [c in "HG" for c in "SFFFFHFHFFFHHFFG"]
    assert np.allclose(model.P[14, 2, 15], 1 / 3) and np.isclose(model.R[14, 2], 1 / 3)
    V = mdp.value_iteration(model)
    assert 0.5 < V[0] < 0.6  # the well-known optimum of slippery FrozenLake at gamma = 0.99 is about 0.54


@pytest.mark.parametrize("bad, message", [
    (dict(P=np.ones((2, 1, 2)), R=np.zeros((2, 1)), gamma=0.9), "sums to 2"),
    (dict(P=np.full((2, 1, 2), 0.5), R=np.zeros((3, 1)), gamma=0.9), "R must have shape"),
    (dict(P=np.full((2, 1, 2), 0.5), R=np.zeros((2, 1)), gamma=-0.1), "gamma must lie in"),
    (dict(P=np.array([[[1.5, -0.5]], [[0.5, 0.5]]]), R=np.zeros((2, 1)), gamma=0.9), "negative probability"),
    (dict(P=np.full((2, 1, 2), 0.5), R=np.zeros((2, 1)), gamma=0.9, terminal=[False, True]), "absorbing"),
])
def test_malformed_mdps_are_rejected_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        TabularMDP(**bad)


def test_bad_arguments_raise_value_errors():
    grid = sutton_barto_4x4()
    with pytest.raises(ValueError, match="gamma"):
        mdp.discounted_return([1.0], 1.5)
    with pytest.raises(ValueError, match="shape"):
        mdp.policy_evaluation(grid, np.ones((16, 3)) / 3)
    with pytest.raises(ValueError, match="probability distribution"):
        mdp.policy_evaluation(grid, np.ones((16, 4)))
    with pytest.raises(ValueError, match="V must have shape"):
        mdp.q_from_v(grid, np.zeros(5))
    with pytest.raises(ValueError, match="loop forever"):
        mdp.policy_evaluation_exact(grid, mdp.deterministic_to_stochastic(grid, np.zeros(16, dtype=int)))
