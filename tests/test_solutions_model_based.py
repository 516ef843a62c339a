"""Chapter 2's reference code reproduces the lecture's estimates and Sutton & Barto's Figure 8.2."""

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import LogNorm

from solutions import mdp
from solutions import model_based as mb
from solutions.envs import TabularMDPEnv, aima_4x3, blocking_maze, dyna_maze, random_mdp, shortcut_maze
from solutions.plotting import plot_grid_values, plot_mean_band
from solutions.q_learning import epsilon_greedy, greedy_action, q_learning_update

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def lecture():
    world = aima_4x3()
    n, R_hat = mb.counts_from_transitions(mb.lecture_transitions(world), world.n_states, world.n_actions)
    return world, n, R_hat


def test_lecture_estimates(lecture):
    world, n, R_hat = lecture
    names, actions = list(world.state_names), list(world.action_names)
    s, a = names.index("(1,3)"), actions.index("right")
    P_hat = mb.ml_transition_model(n)
    assert n[s, a].sum() == 3
    assert P_hat[s, a, names.index("(2,3)")] == pytest.approx(2 / 3)
    assert P_hat[s, a, names.index("(1,2)")] == pytest.approx(1 / 3)
    assert R_hat[s, a] == pytest.approx(-0.04)
    exit_plus = names.index("(4,3)")
    assert R_hat[exit_plus, actions.index("up")] == 1.0 and n[exit_plus].sum() == 2


def test_the_lectures_third_trajectory_makes_a_move_the_world_cannot(lecture):
    """(2,1) -> (3,1) under "left" goes backwards; the 4x3 world only slips at right angles. Counting believes
    it."""
    world, n, _ = lecture
    names, actions = list(world.state_names), list(world.action_names)
    s, a, s_next = names.index("(2,1)"), actions.index("left"), names.index("(3,1)")
    assert world.P[s, a, s_next] == 0.0
    assert world.P[s, a, names.index("(1,1)")] == pytest.approx(0.8) and world.P[s, a, s] == pytest.approx(0.2)
    assert mb.ml_transition_model(n)[s, a, s_next] == 1.0


def test_model_rows_are_distributions_or_zero(lecture):
    _, n, _ = lecture
    sums = mb.ml_transition_model(n).sum(axis=2)
    seen = n.sum(axis=2) > 0
    assert np.allclose(sums[seen], 1.0) and np.all(sums[~seen] == 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        mb.ml_transition_model(-np.ones((2, 1, 2)))
    with pytest.raises(ValueError, match="shape"):
        mb.ml_transition_model(np.ones((2, 1, 3)))


def test_running_mean_equals_the_average():
    rewards = [3.0, -1.0, 4.0, 1.5, 5.0]
    n, R_hat = mb.counts_from_transitions([(0, 1, r, i % 2) for i, r in enumerate(rewards)], 2, 2)
    assert R_hat[0, 1] == pytest.approx(np.mean(rewards))
    assert n[0, 1].tolist() == [3, 2]
    with pytest.raises(ValueError, match="shape"):
        mb.update_model(np.zeros((2, 2, 2), int), np.zeros((2, 3)), 0, 0, 1.0, 1)


def test_certainty_equivalence_with_exact_data_gives_q_star():
    world = random_mdp(np.random.default_rng(4), 6, 3, 0.9, n_terminal=1)
    n = np.round(world.P * 10_000).astype(int)  # counts proportional to the true probabilities
    n[world.terminal] = 0  # no data from the terminal state
    Q = mb.certainty_equivalent_q(n, world.R, world.gamma, world.terminal)
    Q_star = mdp.q_from_v(world, mdp.value_iteration(world))
    live = ~world.terminal
    assert np.allclose(Q[live], Q_star[live], atol=1e-3)


def test_certainty_equivalence_ignores_untried_actions_and_terminal_data():
    # state 0: action 0 tried (reward -1, back to 0 half the time, to terminal 1 otherwise); action 1 never tried
    n = np.zeros((2, 2, 2), dtype=int)
    n[0, 0] = [1, 1]
    n[1, 0, 1] = 5  # data "from" the terminal state must not give it value
    R_hat = np.array([[-1.0, 0.0], [7.0, 0.0]])
    Q = mb.certainty_equivalent_q(n, R_hat, 0.5, np.array([False, True]))
    # Q(0,0) = -1 + 0.5 * (0.5 Q(0,0) + 0.5 * 0)  =>  Q(0,0) = -4/3; the untried Q(0,1) = 0 is not in V(0)
    assert Q[0, 0] == pytest.approx(-4 / 3) and Q[0, 1] == 0.0
    with pytest.raises(ValueError, match="gamma"):
        mb.certainty_equivalent_q(n, R_hat, 1.0, np.array([False, True]))


def test_certainty_equivalence_from_a_warm_start_reaches_the_same_plan(lecture):
    world, n, R_hat = lecture
    cold = mb.certainty_equivalent_q(n, R_hat, 0.9, world.terminal)
    start = cold + np.random.default_rng(0).normal(0.0, 0.1, size=cold.shape)  # untried entries are ignored
    assert np.allclose(mb.certainty_equivalent_q(n, R_hat, 0.9, world.terminal, Q_init=start), cold, atol=1e-8)
    with pytest.raises(ValueError, match="Q_init"):
        mb.certainty_equivalent_q(n, R_hat, 0.9, world.terminal, Q_init=np.zeros((2, 2)))


def test_untried_pairs_stop_looking_best_once_the_exit_is_known(lecture):
    """The plan gives untried pairs 0; after the +1 exit has been seen, tried actions near it are worth more."""
    world, n, R_hat = lecture
    Q = mb.certainty_equivalent_q(n, R_hat, 0.9, world.terminal)
    names, actions = list(world.state_names), list(world.action_names)
    s = names.index("(1,3)")
    tried = n[s].sum(axis=1) > 0
    assert tried[actions.index("right")] and not tried.all()
    assert Q[s, actions.index("right")] == pytest.approx(0.249, abs=1e-3)  # > 0, the number the chapter prints
    assert np.all(Q[s, ~tried] == 0.0) and greedy_action(Q[s], np.random.default_rng(0)) == actions.index("right")


@pytest.fixture(scope="module")
def agents_on_the_4x3_world():
    """The chapter's comparison: 20 runs of 50 episodes, true values of the greedy policies at the start."""
    world = aima_4x3(gamma=0.95)
    start = int(np.argmax(world.initial))

    def value(policy):
        return mdp.policy_evaluation_exact(world, mdp.deterministic_to_stochastic(world, policy))[start]

    runs = [mb.certainty_equivalence_agent(world, 50, 0.1, np.random.default_rng(i), return_counts=True)
            for i in range(20)]
    model_based = np.array([[value(p) for p in policies] for policies, _ in runs])
    model_free = np.array([[value(p) for p in mb.q_learning_agent(world, 50, 0.1, 0.1, np.random.default_rng(i))]
                           for i in range(20)])
    return world, mdp.value_iteration(world)[start], model_based, model_free, [n for _, n in runs]


def _band(values):
    return values.mean(axis=0), 1.96 * values.std(axis=0, ddof=1) / np.sqrt(len(values))


@pytest.mark.slow
def test_model_based_agent_learns_faster_than_q_learning(agents_on_the_4x3_world):
    _, optimum, model_based, model_free, _ = agents_on_the_4x3_world
    (m_mb, h_mb), (m_mf, h_mf) = _band(model_based), _band(model_free)
    overlap = np.flatnonzero(m_mb - h_mb <= m_mf + h_mf) + 1
    assert overlap.tolist() == [43]  # the chapter: "the bands overlap only at episode 43"
    assert m_mb[9] == pytest.approx(0.40, abs=0.005) and m_mf[9] == pytest.approx(-0.62, abs=0.005)
    assert m_mf[-1] < optimum - 0.05 < m_mb[9] + h_mb[9]


@pytest.mark.slow
def test_the_model_based_agent_leaves_pairs_untried(agents_on_the_4x3_world):
    world, optimum, model_based, _, counts = agents_on_the_4x3_world
    inner = [s for s, name in enumerate(world.state_names) if name not in ("(4,3)", "(4,2)", "end")]
    tried = np.array([(n[inner].sum(axis=2) > 0).sum() for n in counts])
    assert tried.mean() == pytest.approx(30.6, abs=0.05) and tried.min() < 36  # pairs stay untried in 50 episodes
    assert np.sum(model_based[:, -1] < optimum - 0.01) == 7  # runs that end with a worse policy


def test_agent_returns_its_counts_on_request():
    world = aima_4x3(gamma=0.95)
    policies, n = mb.certainty_equivalence_agent(world, 2, 0.1, np.random.default_rng(0), return_counts=True)
    again = mb.certainty_equivalence_agent(world, 2, 0.1, np.random.default_rng(0))
    assert np.array_equal(policies, again) and n.shape == (12, 4, 12) and n.sum() > 0


def shortest_path_length(maze) -> int:
    """Steps from the start to the goal, by breadth-first search over the deterministic moves."""
    start, goal = int(np.argmax(maze.initial)), int(np.flatnonzero(maze.terminal)[0])
    distance, frontier = {start: 0}, [start]
    while frontier:
        reached = []
        for s in frontier:
            for t in np.argmax(maze.P[s], axis=1).tolist():
                if t not in distance:
                    distance[t] = distance[s] + 1
                    reached.append(t)
        frontier = reached
    return distance[goal]


def test_dyna_maze_layout():
    maze = dyna_maze()
    assert (maze.n_states, maze.n_actions, maze.gamma) == (47, 4, 0.95)
    start, goal = int(np.argmax(maze.initial)), int(np.flatnonzero(maze.terminal)[0])
    assert maze.state_names[start] == "(2,0)" and maze.state_names[goal] == "(0,8)"
    assert shortest_path_length(maze) == 14  # S&B Example 8.1
    assert np.count_nonzero(maze.R) == 1  # the one move into the goal, up from (1,8): (0,7) is a wall
    with pytest.raises(ValueError, match="blocked"):
        dyna_maze(start=(1, 2))


@pytest.fixture(scope="module")
def figure_8_2():
    maze = dyna_maze()
    return {n: mb.dyna_q_runs(maze, n, n_runs=30, n_episodes=50, seed=0) for n in (0, 5, 50)}


@pytest.mark.slow
@pytest.mark.parametrize("n_planning, earliest, latest", [(50, 2, 4), (5, 4, 9), (0, 18, 40)])
def test_figure_8_2_planning_speeds_learning(figure_8_2, n_planning, earliest, latest):
    first = mb.first_episode_at_most(figure_8_2[n_planning], 20)
    assert first is not None and earliest <= first <= latest


@pytest.mark.slow
def test_figure_8_2_bands_separate_as_the_chapter_says(figure_8_2):
    def below(high, low):  # episodes (from 2) at which the band of n = high lies below that of n = low
        (m_low, h_low), (m_high, h_high) = _band(figure_8_2[low][:, 1:]), _band(figure_8_2[high][:, 1:])
        return (np.flatnonzero(m_low - h_low > m_high + h_high) + 2).tolist()

    assert below(5, 0)[:23] == list(range(2, 25))
    assert below(50, 5) == [2, 3, 4, 5]
    third = _band(figure_8_2[50])
    assert (round(third[0][2], 1), round(third[1][2], 1)) == (18.5, 1.2)


@pytest.mark.slow
@pytest.mark.parametrize("n_planning", [0, 5, 50])
def test_figure_8_2_late_episodes_near_the_shortest_path(figure_8_2, n_planning):
    late = figure_8_2[n_planning][:, 40:50].mean()
    assert 14 <= late <= 20


@pytest.mark.slow
def test_one_run_at_a_time_matches_figure_8_2_too():
    maze = dyna_maze()
    rng = np.random.default_rng(3)
    steps = np.array([mb.dyna_q(maze, 5, 50, rng)[0] for _ in range(30)])
    assert 4 <= mb.first_episode_at_most(steps, 20) <= 9
    assert 14 <= steps[:, 40:].mean() <= 20


@pytest.mark.parametrize("make, before_length, after_length", [(blocking_maze, 10, 16), (shortcut_maze, 16, 10)])
def test_changing_mazes(make, before_length, after_length):
    before, after = make()
    assert before.n_states == after.n_states == 47 and before.state_names == after.state_names
    assert before.state_names[int(np.argmax(before.initial))] == "(5,3)"
    assert before.state_names[int(np.flatnonzero(before.terminal)[0])] == "(0,8)"
    assert (shortest_path_length(before), shortest_path_length(after)) == (before_length, after_length)


def test_an_agent_in_a_gap_that_closes_can_step_off():
    _, after = blocking_maze()
    gap = after.state_names.index("(3,8)")  # open before the change, blocked after it
    below = after.state_names.index("(4,8)")
    assert np.argmax(after.P[gap, 2]) == below  # "down" leaves the blocked square
    assert after.P[:, :, gap][np.arange(after.n_states) != gap].sum() == 0  # nothing enters it


def test_dyna_maze_squares_must_cover_the_open_squares():
    with pytest.raises(ValueError, match="every open square"):
        dyna_maze(squares=((2, 0), (0, 8)))


def test_dyna_q_draws_planning_pairs_uniformly_so_states_with_more_tried_actions_come_up_more():
    """Not S&B's box (a state uniformly, then one of its tried actions): with 3 pairs tried in state 0 and one in
    state 1, state 0 is planned from 3/4 of the time, not 1/2."""
    model = {(0, 0): (0.0, 1, False), (0, 1): (0.0, 1, False), (0, 2): (0.0, 1, False), (1, 0): (1.0, 2, True)}
    rng = np.random.default_rng(0)
    Q = np.zeros((3, 3))
    from_state_1 = 0
    for _ in range(4000):
        before = Q[1, 0]
        mb.dyna_q_planning_step(Q, model, 1e-6, 0.9, rng)
        from_state_1 += Q[1, 0] != before
    assert abs(from_state_1 / 4000 - 0.25) < 0.025


@pytest.fixture(scope="module")
def shortcut_runs():
    before, after = shortcut_maze()
    return {kappa: mb.changing_maze_runs(before, after, 3000, 6000, 10, kappa, n_runs=20, seed=0)
            for kappa in (None, 1e-3)}


@pytest.mark.slow
def test_dyna_q_plus_finds_the_shortcut_and_dyna_q_does_not(shortcut_runs):
    # In the last 1000 steps an episode through the old (left) gap takes at least 16 steps, so more than
    # 1000 / 16 = 62.5 episodes prove that a run uses the 10-step shortcut.
    late = {kappa: runs[:, -1] - runs[:, -1001] for kappa, runs in shortcut_runs.items()}
    assert late[None].max() <= 62 and late[1e-3].min() >= 70
    before_switch = {kappa: runs[:, 2999].mean() for kappa, runs in shortcut_runs.items()}
    assert 0.8 < before_switch[1e-3] / before_switch[None] < 1.25  # alike while the world stands still
    # the chapter's numbers: no short episode for Dyna-Q; Dyna-Q+ finds the shortcut in every run
    assert np.all(mb.first_short_episode(shortcut_runs[None], 3000, 16) == -1)
    found = mb.first_short_episode(shortcut_runs[1e-3], 3000, 16) - 3000
    assert found.min() == 121 and found.max() == 1019 and np.median(found) == 394


def test_first_short_episode_reads_episode_lengths_off_cumulative_rewards():
    # episodes end at steps 5, 9 (4 steps), 20 (11 steps), 22 (2 steps); in the second run never
    rewards = np.zeros((2, 25), dtype=int)
    for end in (5, 9, 20, 22):
        rewards[0, end - 1:] += 1
    assert mb.first_short_episode(rewards, 0, 5).tolist() == [9, -1]
    assert mb.first_short_episode(rewards, 9, 5).tolist() == [22, -1]
    assert mb.first_short_episode(rewards, 0, 3).tolist() == [22, -1]
    with pytest.raises(ValueError, match="rise by 0 or 1"):
        mb.first_short_episode(np.array([[0, 2]]), 0, 3)
    with pytest.raises(ValueError, match="shape"):
        mb.first_short_episode(np.zeros(4), 0, 3)


def test_figure_8_3_after_two_episodes_planning_gives_a_shortest_greedy_path():
    maze = dyna_maze()
    _, plain = mb.dyna_q(maze, 0, 2, np.random.default_rng(4))
    _, planned = mb.dyna_q(maze, 50, 2, np.random.default_rng(4))
    assert np.count_nonzero(plain.max(axis=1) > 0) == 2
    single_best = (planned == planned.max(axis=1, keepdims=True)).sum(axis=1) == 1
    assert single_best.sum() == 45
    assert len(mb.greedy_path(maze, planned)) - 1 == 14


def test_plot_mean_band_and_a_log_value_scale():
    fig, ax = plt.subplots()
    runs = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 5.0]])
    mean, half = plot_mean_band(ax, [1, 2, 3], runs, label="x")
    assert np.allclose(mean, [2.0, 2.0, 4.0])
    assert np.allclose(half, 1.96 * np.array([np.sqrt(2), 0.0, np.sqrt(2)]) / np.sqrt(2))
    with pytest.raises(ValueError, match="n_runs >= 2"):
        plot_mean_band(ax, [1, 2, 3], runs[:1])
    with pytest.raises(ValueError, match="z"):
        plot_mean_band(ax, [1, 2, 3], runs, z=0)
    maze = dyna_maze()
    plot_grid_values(maze, np.linspace(1e-6, 1, maze.n_states), ax=ax, fmt="", norm=LogNorm(1e-6, 1))
    assert isinstance(ax.images[-1].norm, LogNorm)
    plt.close(fig)


@pytest.mark.slow
def test_dyna_q_plus_gets_round_the_blocking_wall():
    before, after = blocking_maze()
    runs = mb.changing_maze_runs(before, after, 1000, 3000, 10, 1e-3, n_runs=10, seed=0)
    assert np.all(runs[:, -1] - runs[:, -1001] >= 20)  # every run reaches the goal by the new (left) gap


def test_changing_maze_runs_checks_its_arguments():
    before, after = shortcut_maze()
    with pytest.raises(ValueError, match="kappa"):
        mb.changing_maze_runs(before, after, 10, 20, 5, kappa=0.0)
    with pytest.raises(ValueError, match="same states"):
        mb.changing_maze_runs(before, dyna_maze(walls=()), 10, 20, 5)
    with pytest.raises(ValueError, match="switch_step"):
        mb.changing_maze_runs(before, after, 30, 20, 5)
    with pytest.raises(ValueError, match="deterministic"):
        mb.changing_maze_runs(aima_4x3(), aima_4x3(), 10, 20, 5)


def test_dyna_q_runs_rejects_stochastic_worlds():
    with pytest.raises(ValueError, match="deterministic"):
        mb.dyna_q_runs(aima_4x3(), 5, n_runs=2, n_episodes=2)


def test_dyna_q_episode_follows_the_documented_random_stream():
    maze = dyna_maze()
    env = TabularMDPEnv(maze)
    env.reset(seed=0)
    Q, model = np.zeros((maze.n_states, 4)), {}
    steps = mb.dyna_q_episode(env, Q, model, 5, 0.1, 0.1, 0.95, np.random.default_rng(1))
    assert steps >= 14 and len(model) <= steps
    assert Q.max() > 0  # the goal's reward reached Q
    with pytest.raises(ValueError, match="empty"):
        mb.dyna_q_planning_step(Q, {}, 0.1, 0.95, np.random.default_rng(0))


def test_greedy_path_of_the_learned_values_reaches_the_goal():
    maze = dyna_maze()
    _, Q = mb.dyna_q(maze, 50, 20, np.random.default_rng(0))
    path = mb.greedy_path(maze, Q)
    assert maze.terminal[path[-1]] and len(path) - 1 <= 20


def test_epsilon_greedy_breaks_ties_at_random_and_explores():
    rng = np.random.default_rng(0)
    greedy = np.bincount([epsilon_greedy(np.array([1.0, 3.0, 3.0, 0.0]), 0.0, rng) for _ in range(4000)],
                         minlength=4)
    assert greedy[0] == greedy[3] == 0 and abs(greedy[1] - greedy[2]) < 300
    explore = np.bincount([epsilon_greedy(np.array([0.0, 1.0, 0.0]), 1.0, rng) for _ in range(3000)], minlength=3)
    assert np.all(np.abs(explore - 1000) < 150)
    assert greedy_action(np.array([0.0, 2.0, 1.0]), rng) == 1
    with pytest.raises(ValueError, match="epsilon"):
        epsilon_greedy(np.zeros(2), 1.5, rng)


def test_q_learning_update_terminal_and_bootstrapped():
    Q = np.array([[0.0, 1.0], [2.0, 4.0]])
    q_learning_update(Q, 0, 0, 1.0, 1, False, 0.5, 0.9)
    assert Q[0, 0] == pytest.approx(0.5 * (1.0 + 0.9 * 4.0))
    q_learning_update(Q, 0, 1, 1.0, 1, True, 0.5, 0.9)
    assert Q[0, 1] == pytest.approx(1.0)
