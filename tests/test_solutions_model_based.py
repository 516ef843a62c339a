"""Chapter 2's reference code reproduces the lecture's estimates and Sutton & Barto's Figure 8.2."""

import numpy as np
import pytest

from solutions import mdp
from solutions import model_based as mb
from solutions.envs import TabularMDPEnv, aima_4x3, blocking_maze, dyna_maze, random_mdp, shortcut_maze
from solutions.q_learning import epsilon_greedy, greedy_action, q_learning_update


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


def test_model_based_agent_learns_faster_than_q_learning():
    world = aima_4x3(gamma=0.95)
    start = int(np.argmax(world.initial))

    def value(policy):
        return mdp.policy_evaluation_exact(world, mdp.deterministic_to_stochastic(world, policy))[start]

    after = 10
    model_based = [value(mb.certainty_equivalence_agent(world, after, 0.1, np.random.default_rng(i))[-1])
                   for i in range(8)]
    model_free = [value(mb.q_learning_agent(world, after, 0.1, 0.1, np.random.default_rng(i))[-1])
                  for i in range(8)]
    optimum = mdp.value_iteration(world)[start]
    assert np.mean(model_based) > optimum - 0.15
    assert np.mean(model_based) > np.mean(model_free) + 0.3


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


@pytest.fixture(scope="module")
def shortcut_runs():
    before, after = shortcut_maze()
    return {kappa: mb.changing_maze_runs(before, after, 3000, 6000, 10, kappa, n_runs=10, seed=0)
            for kappa in (None, 1e-3)}


@pytest.mark.slow
def test_dyna_q_plus_finds_the_shortcut_and_dyna_q_does_not(shortcut_runs):
    # In the last 1000 steps an episode through the old (left) gap takes at least 16 steps, so more than
    # 1000 / 16 = 62.5 episodes prove that a run uses the 10-step shortcut.
    late = {kappa: runs[:, -1] - runs[:, -1001] for kappa, runs in shortcut_runs.items()}
    assert late[None].max() <= 62 and late[1e-3].min() >= 70
    before_switch = {kappa: runs[:, 2999].mean() for kappa, runs in shortcut_runs.items()}
    assert 0.8 < before_switch[1e-3] / before_switch[None] < 1.25  # alike while the world stands still


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
