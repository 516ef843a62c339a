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
    with pytest.raises(ValueError, match="improper"):
        mdp.policy_evaluation_exact(grid, mdp.deterministic_to_stochastic(grid, np.zeros(16, dtype=int)))
    with pytest.raises(ValueError, match="atol"):
        mdp.greedy_actions(grid, np.zeros(16), atol=-1.0)


def _deterministic(world, action):
    return mdp.deterministic_to_stochastic(world, np.full(world.n_states, action))


def test_proper_policies_of_the_grid_worlds():
    grid, world = sutton_barto_4x4(), aima_4x3()
    # "up" everywhere on the 4x4 grid: every square outside the left column ends in the top row, bumping forever
    assert mdp.never_terminating_states(grid, _deterministic(grid, 0)).tolist() == [1, 2, 3, 5, 6, 7, 9, 10, 11,
                                                                                   13, 14]
    assert mdp.is_proper(grid, mdp.uniform_random_policy(grid))
    # "left" everywhere in the 4x3 world: slips are at right angles, so it never leaves the three left columns
    stuck = [world.state_names[s] for s in mdp.never_terminating_states(world, _deterministic(world, 3))]
    assert stuck == ["(1,3)", "(2,3)", "(3,3)", "(1,2)", "(3,2)", "(1,1)", "(2,1)", "(3,1)"]
    assert mdp.is_proper(world, _deterministic(world, 0))  # "up" everywhere slips into an exit eventually
    # a stochastic policy is proper when one of its actions leads out, however unlikely
    leaky = 0.999 * _deterministic(world, 3) + 0.001 * _deterministic(world, 1)
    assert mdp.is_proper(world, leaky)


def test_value_iteration_converges_at_gamma_1_although_an_improper_policy_exists():
    """The 4x3 world is a stochastic shortest path problem: "left" everywhere is improper, but it costs -infinity,
    so value iteration still converges at gamma = 1 (Bertsekas & Tsitsiklis 1991)."""
    world = aima_4x3()
    assert not mdp.is_proper(world, _deterministic(world, 3))
    V = mdp.value_iteration(world)
    assert np.allclose(mdp.bellman_optimality_backup(world, V), V, atol=1e-9)
    # the improper policy's iterative evaluation falls by about 0.04 per sweep in the squares it never leaves
    V_100 = mdp.policy_evaluation(world, _deterministic(world, 3), max_sweeps=100)
    assert V_100[world.state_names.index("(1,1)")] == pytest.approx(-4.0)
    with pytest.raises(ValueError, match="improper"):
        mdp.policy_evaluation_exact(world, _deterministic(world, 3))


def test_policy_iteration_at_gamma_1_needs_a_proper_start():
    grid = sutton_barto_4x4()
    with pytest.raises(ValueError, match="starting policy is improper"):
        mdp.policy_iteration(grid)  # the default start, "up" everywhere
    down_then_right = np.where(np.arange(16) >= 12, 1, 2)
    assert mdp.is_proper(grid, mdp.deterministic_to_stochastic(grid, down_then_right))
    policy, V = mdp.policy_iteration(grid, down_then_right)
    assert np.allclose(V, mdp.value_iteration(grid))
    assert V.reshape(4, 4).tolist() == [[0, -1, -2, -3], [-1, -2, -3, -2], [-2, -3, -2, -1], [-3, -2, -1, 0]]
    with pytest.raises(ValueError, match="starting policy is improper"):
        mdp.policy_iteration(aima_4x3(), np.full(12, 3))
    # with discounting every policy can be evaluated, so the same start is fine
    policy, V = mdp.policy_iteration(grid.replace(gamma=0.9))
    assert np.allclose(V, mdp.value_iteration(grid.replace(gamma=0.9)))


def test_greedy_actions_mark_every_tie_as_in_figure_4_1():
    grid = sutton_barto_4x4()
    pi = mdp.uniform_random_policy(grid)
    assert mdp.greedy_actions(grid, np.zeros(16)).all()  # v_0 = 0: every action ties
    v_1 = mdp.policy_evaluation(grid, pi, max_sweeps=1)
    marks = mdp.greedy_actions(grid, v_1)
    assert marks[1].tolist() == [False, False, False, True]  # square 1: only left, into the corner
    assert marks[5].all()  # square 5: all four neighbours are worth -1
    optimal = mdp.greedy_actions(grid, mdp.value_iteration(grid))
    v_2, v_3 = (mdp.policy_evaluation(grid, pi, max_sweeps=k) for k in (2, 3))
    assert not optimal[mdp.greedy_actions(grid, v_2)].all()
    assert optimal[mdp.greedy_actions(grid, v_3)].all()  # from k = 3 on the greedy policy is optimal
    assert mdp.greedy_actions(grid, mdp.policy_evaluation(grid, pi))[5].tolist() == [True, False, False, True]
    assert np.array_equal(mdp.greedy_policy(grid, v_3), np.argmax(mdp.greedy_actions(grid, v_3), axis=1))


def test_figure_4_1_tie_at_k_2_prints_as_minus_1_8():
    """S&B print -1.7 for v_2 next to a corner; the value is exactly -1.75, which Python formats as -1.8."""
    grid = sutton_barto_4x4()
    v_2 = mdp.policy_evaluation(grid, mdp.uniform_random_policy(grid), max_sweeps=2)
    v_3 = mdp.policy_evaluation(grid, mdp.uniform_random_policy(grid), max_sweeps=3)
    assert v_2[1] == -1.75 and f"{v_2[1]:.1f}" == "-1.8"
    assert v_3[5] == -2.875 and f"{v_3[5]:.1f}" == "-2.9"  # rounded to nearest, as in the book


ARROWS = "↑→↓←"


def _greedy(step_reward, gamma):
    world = aima_4x3(step_reward=step_reward, gamma=gamma)
    V = mdp.value_iteration(world)
    policy, ties = mdp.greedy_policy(world, V), mdp.greedy_actions(world, V).sum(axis=1)
    squares = [s for s in range(world.n_states) if not world.terminal[s] and s not in world.layout.labels]
    assert ties[squares].max() == 1  # one greedy action in every square: the arrows drawn are the policy
    return {world.state_names[s]: ARROWS[policy[s]] for s in squares}


def test_explorer_regimes_at_gamma_1():
    """The four step rewards of the chapter's explorer give the four policies its text describes."""
    cheap, standard, dear, harsh = (_greedy(r, 1.0) for r in (-0.01, -0.04, -0.4, -2.0))
    assert (cheap["(3,2)"], cheap["(4,1)"], cheap["(3,1)"]) == ("←", "↓", "←")  # never risks the -1
    assert (standard["(3,2)"], standard["(3,1)"], standard["(4,1)"]) == ("↑", "←", "←")  # long way round
    assert (dear["(3,1)"], dear["(2,1)"], dear["(4,1)"]) == ("↑", "→", "←")  # short way past the -1
    assert (harsh["(3,2)"], harsh["(4,1)"]) == ("→", "↑")  # straight into the -1
    assert len({tuple(p.items()) for p in (cheap, standard, dear, harsh)}) == 4


def test_explorer_discounting_is_not_just_a_step_cost():
    dear = _greedy(-0.4, 1.0)
    for step_reward in (-0.04, -0.01):
        assert _greedy(step_reward, 0.9) == dear  # discounting makes the long way less attractive ...
        short_but_careful = _greedy(step_reward, 0.5)
        assert short_but_careful == {**dear, "(4,1)": "↓"}  # ... but at gamma = 0.5 (4,1) avoids the -1 again
    for step_reward in (-0.4, -2.0):
        assert all(_greedy(step_reward, g) == _greedy(step_reward, 1.0) for g in (0.5, 0.9, 0.99))


# ------------------------------------------------------------- the notebook's answers behave as `solutions` does

@pytest.fixture(scope="module")
def notebook_answers():
    """The reference answers of the chapter's notebook, defined in one namespace as a student's would be."""
    import nbformat

    from .conftest import CHAPTER_1
    from .notebooks import solution_sources

    namespace = {"np": np}
    for name, source in solution_sources(nbformat.read(CHAPTER_1, as_version=4)).items():
        exec(compile(source, f"<answer {name}>", "exec"), namespace)
    return namespace


def _instances():
    grid, world = sutton_barto_4x4(), aima_4x3()
    yield grid, np.where(np.arange(16) >= 12, 1, 2)  # gamma = 1, a proper start
    yield world, None
    yield aima_4x3(step_reward=-2.0), np.full(12, 1)
    yield grid.replace(gamma=0.9), None
    for seed in range(3):
        yield random_mdp(np.random.default_rng(seed), 7, 3, 0.9, n_terminal=1), None


@pytest.mark.parametrize("case", range(7))
def test_notebook_answers_agree_with_the_reference(notebook_answers, case):
    world, pi0 = list(_instances())[case]
    nb = notebook_answers
    rng = np.random.default_rng(case)
    pi = rng.dirichlet(np.ones(world.n_actions), size=world.n_states)
    V = rng.normal(size=world.n_states)
    assert nb["discounted_return"](V.tolist(), 0.9) == pytest.approx(mdp.discounted_return(V, 0.9))
    ours = nb["sample_trajectory"](world, pi, 1, np.random.default_rng(5), 50)
    theirs = mdp.sample_trajectory(world, pi, 1, np.random.default_rng(5), 50)
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs))
    for theta, sweeps in ((1e-10, None), (0.01, None), (1e-10, 0), (1e-10, 3)):
        assert np.allclose(nb["policy_evaluation"](world, pi, theta, sweeps),
                           mdp.policy_evaluation(world, pi, theta, sweeps), atol=1e-12)
        assert np.allclose(nb["value_iteration"](world, theta, sweeps), mdp.value_iteration(world, theta, sweeps),
                           atol=1e-12)
    assert np.allclose(nb["q_from_v"](world, V), mdp.q_from_v(world, V))
    assert np.array_equal(nb["greedy_policy"](world, V), mdp.greedy_policy(world, V))
    policy, V_pi = nb["policy_iteration"](world, pi0)
    ref_policy, ref_V = mdp.policy_iteration(world, pi0)
    assert np.allclose(V_pi, ref_V, atol=1e-8)
    assert np.allclose(mdp.policy_evaluation_exact(world, mdp.deterministic_to_stochastic(world, policy)), ref_V,
                       atol=1e-8)


@pytest.mark.parametrize("world, pi0", [(sutton_barto_4x4(), None), (aima_4x3(), np.full(12, 3))],
                         ids=["4x4 grid, default 'up'", "4x3 world, 'left'"])
def test_notebook_answer_and_reference_reject_an_improper_start_alike(notebook_answers, world, pi0):
    for policy_iteration in (notebook_answers["policy_iteration"], mdp.policy_iteration):
        with pytest.raises(ValueError, match="starting policy is improper"):
            policy_iteration(world, pi0)
