"""Chapter 3's reference code: the textbook reproductions (S&B Figure 2.2, Example 6.6) and the pieces."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from solutions import bandits, dqn
from solutions import mdp as dp
from solutions import q_learning as ql
from solutions.envs import DungeonEnv, cliff_walking, dungeon
from solutions.model_based import greedy_path


# ------------------------------------------------------------------------------------------------ the Q-table

def test_dungeon_q_star_uses_every_action_once():
    world = dungeon()
    Q_star = dp.q_from_v(world, dp.value_iteration(world))
    policy = [world.action_names[a] for a in Q_star[~world.terminal].argmax(axis=1)]
    assert policy == ["move back", "use sword", "heal", "move forward"]
    assert Q_star[3, 1] == pytest.approx(10.0)  # monster dead: one step to the treasure
    assert Q_star[2, 0] == pytest.approx(0.5 * (-1.0 + 0.9 * 10.0) + 0.5 * -10.0)  # fight wounded: win or die


def test_dungeon_env_samples_its_model():
    check_env(DungeonEnv(), skip_render_check=True)
    env = DungeonEnv()
    env.reset(seed=0)
    outcomes = []
    for _ in range(4000):
        env.reset()
        env.step(2)  # fetch the sword
        outcomes.append(env.step(0)[:3])  # fight, healthy: dies with p_hit = 0.6
    killed = np.mean([s == 3 for s, _, _ in outcomes])
    assert abs(killed - 0.6) < 4 * np.sqrt(0.24 / 4000)
    assert {(s, r, t) for s, r, t in outcomes} == {(3, -1.0, False), (2, -1.0, False)}


def test_q_learning_finds_the_dungeon_policy_and_alpha_one_does_not():
    world = dungeon()
    Q_star = dp.q_from_v(world, dp.value_iteration(world))
    learned = {}
    for alpha in (0.1, 1.0):
        env = DungeonEnv()
        env.reset(seed=0)
        learned[alpha], history = ql.q_learning(env, 2000, alpha, 0.2, 0.9, np.random.default_rng(0),
                                                progress=False)
        assert history.shape == (2000, 6, 4) and np.array_equal(history[-1], learned[alpha])
    live = ~world.terminal
    assert np.array_equal(learned[0.1][live].argmax(axis=1), Q_star[live].argmax(axis=1))
    assert np.abs(learned[0.1] - Q_star)[live].max() < 3
    assert not np.array_equal(learned[1.0][live].argmax(axis=1), Q_star[live].argmax(axis=1))


def test_q_learning_bootstraps_through_a_time_limit(monkeypatch):
    """An episode cut by a time limit (truncated) must not be treated as ending in a terminal state."""
    flags = []
    update = ql.q_learning_update

    def spy(Q, s, a, r, s_next, terminated, alpha, gamma):
        flags.append((s_next, terminated))
        update(Q, s, a, r, s_next, terminated, alpha, gamma)

    monkeypatch.setattr(ql, "q_learning_update", spy)
    env = gym.wrappers.TimeLimit(DungeonEnv(), max_episode_steps=1)  # every episode is cut after one step
    env.reset(seed=0)
    ql.q_learning(env, 200, 0.1, 0.5, 0.9, np.random.default_rng(0), progress=False)
    assert len(flags) == 200  # one update per episode
    terminal = dungeon().terminal
    assert all(terminated == terminal[s_next] for s_next, terminated in flags)
    assert sum(not terminated for _, terminated in flags) > 100  # most episodes were truncated, not terminated


# ------------------------------------------------------------------------------------------------- exploration

def test_boltzmann_is_stable_and_tends_to_greedy_and_uniform():
    p = ql.boltzmann_probabilities([1000.0, 999.0, 0.0], 0.1)
    assert np.all(np.isfinite(p)) and p.sum() == pytest.approx(1.0) and p[0] > 0.9999
    assert np.allclose(ql.boltzmann_probabilities([1.0, 2.0, 3.0], 1e6), 1 / 3, atol=1e-5)
    assert np.allclose(ql.boltzmann_probabilities([2.0, 2.0, -5.0], 1e-3), [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="temperature"):
        ql.boltzmann_probabilities([1.0, 2.0], 0.0)


def test_bandit_update_sample_average_and_constant_step():
    rewards = [2.0, 4.0, 9.0, -1.0]
    Q, N = np.zeros(2), np.zeros(2, dtype=int)
    for r in rewards:
        bandits.bandit_update(Q, N, 1, r)
    assert Q[1] == pytest.approx(np.mean(rewards)) and N.tolist() == [0, 4]
    Q, N = np.zeros(1), np.zeros(1, dtype=int)
    for r in rewards:
        bandits.bandit_update(Q, N, 0, r, alpha=0.5)
    expected = sum(0.5 * 0.5 ** (len(rewards) - 1 - i) * r for i, r in enumerate(rewards))  # S&B eq. 2.6
    assert Q[0] == pytest.approx(expected)
    with pytest.raises(ValueError, match="alpha"):
        bandits.bandit_update(Q, N, 0, 1.0, alpha=0.0)


@pytest.fixture(scope="module")
def figure_2_2():
    return {epsilon: bandits.run_testbed(2000, 1000, epsilon=epsilon, seed=0) for epsilon in (0.0, 0.01, 0.1)}


@pytest.mark.slow
@pytest.mark.parametrize("epsilon, low, high", [(0.0, 0.9, 1.15), (0.01, 1.2, 1.4), (0.1, 1.3, 1.45)])
def test_figure_2_2_average_reward(figure_2_2, epsilon, low, high):
    assert low <= figure_2_2[epsilon].average_reward[-100:].mean() <= high


@pytest.mark.slow
@pytest.mark.parametrize("epsilon, low, high", [(0.0, 0.28, 0.42), (0.1, 0.75, 0.87)])
def test_figure_2_2_optimal_action(figure_2_2, epsilon, low, high):
    assert low <= figure_2_2[epsilon].optimal_action[-100:].mean() <= high


def test_testbed_per_run_values_average_to_the_curves_and_change_no_draw():
    plain = bandits.run_testbed(50, 40, epsilon=0.1, seed=4)
    full = bandits.run_testbed(50, 40, epsilon=0.1, seed=4, per_run=True)
    assert plain.rewards is None and plain.optimal is None
    assert full.rewards.shape == full.optimal.shape == (50, 40) and full.optimal.dtype == bool
    np.testing.assert_array_equal(plain.average_reward, full.average_reward)
    np.testing.assert_array_equal(plain.optimal_action, full.optimal_action)
    np.testing.assert_allclose(full.rewards.mean(axis=0), full.average_reward, atol=1e-6)
    np.testing.assert_array_equal(full.optimal.mean(axis=0), full.optimal_action)


def test_testbed_rules_beat_greedy_and_check_their_arguments():
    greedy = bandits.run_testbed(300, 500, epsilon=0.0, seed=3).average_reward[-100:].mean()
    for rule in (dict(c=2.0), dict(temperature=0.2), dict(epsilon=lambda t: min(1.0, 10.0 / t))):
        assert bandits.run_testbed(300, 500, seed=3, **rule).average_reward[-100:].mean() > greedy + 0.15
    with pytest.raises(ValueError, match="exactly one"):
        bandits.run_testbed(10, 10, epsilon=0.1, c=2.0)
    with pytest.raises(ValueError, match="epsilon"):
        bandits.run_testbed(10, 10, epsilon=lambda t: 2.0)


# --------------------------------------------------------------------------------------- SARSA vs Q-learning

@pytest.fixture(scope="module")
def cliff_runs():
    cliff = cliff_walking()
    return cliff, {method: ql.td_control_runs(cliff, method, n_runs=30, n_episodes=500, alpha=0.5, epsilon=0.1,
                                              seed=1) for method in ("sarsa", "q-learning")}


def test_cliff_walking_is_example_6_6():
    cliff = cliff_walking()
    assert (cliff.n_states, cliff.n_actions) == (48, 4) and np.flatnonzero(cliff.terminal).tolist() == [47]
    assert cliff.R[36, 1] == -100 and np.argmax(cliff.P[36, 1]) == 36  # into the cliff: back to the start
    assert cliff.R[36, 0] == -1 and cliff.R[35, 2] == -1  # a step; the step into the goal


@pytest.mark.slow
def test_sarsa_and_q_learning_rewards_per_episode(cliff_runs):
    _, runs = cliff_runs
    assert -35 <= runs["sarsa"][0][:, 100:].mean() <= -18
    assert -65 <= runs["q-learning"][0][:, 100:].mean() <= -40


@pytest.mark.slow
def test_q_learning_walks_the_edge_and_sarsa_keeps_away(cliff_runs):
    cliff, runs = cliff_runs
    q_path = greedy_path(cliff, runs["q-learning"][1].mean(axis=0))
    sarsa_path = greedy_path(cliff, runs["sarsa"][1].mean(axis=0))
    assert len(q_path) - 1 == 13 and cliff.terminal[q_path[-1]]
    assert all(s // 12 >= 2 for s in q_path)  # along the row above the cliff
    assert cliff.terminal[sarsa_path[-1]] and len(sarsa_path) - 1 > 13
    assert min(s // 12 for s in sarsa_path) <= 1  # further from the edge


def test_a_constant_epsilon_schedule_gives_the_constant_epsilon_run_and_sees_per_state_counts():
    cliff = cliff_walking()
    counts = []

    def schedule(n):
        counts.append(n.copy())
        return np.full(n.shape, 0.1)

    for method in ("sarsa", "q-learning"):
        counts.clear()
        fixed = ql.td_control_runs(cliff, method, n_runs=4, n_episodes=30, seed=5, progress=False)
        scheduled = ql.td_control_runs(cliff, method, n_runs=4, n_episodes=30, epsilon=schedule, seed=5,
                                       progress=False)
        assert all(np.array_equal(x, y) for x, y in zip(fixed, scheduled))  # same draws, same values
        assert counts[0].tolist() == [1, 1, 1, 1]  # the first visit of each run to its start state
        assert max(c.max() for c in counts) > 30  # the start state is visited at least once per episode
        assert any(np.any(c == 1) for c in counts[1:])  # first visits to other states: counts per state, not time


def test_glie_per_state_schedule_ends_near_optimal_returns():
    """With epsilon(s) = 0.5 / n(s) (GLIE, Singh et al. 2000) exploration dies out: Q-learning's episodes end
    near the optimal -13, where a constant epsilon = 0.1 keeps paying for its exploration (about -50)."""
    cliff = cliff_walking()
    glie, _ = ql.td_control_runs(cliff, "q-learning", n_runs=10, n_episodes=300, epsilon=lambda n: 0.5 / n,
                                 seed=2, progress=False)
    constant, _ = ql.td_control_runs(cliff, "q-learning", n_runs=10, n_episodes=300, epsilon=0.1, seed=2,
                                     progress=False)
    assert -14.0 <= glie[:, -100:].mean() <= -13.0
    assert constant[:, -100:].mean() < -35.0
    with pytest.raises(ValueError, match="epsilon"):
        ql.td_control_runs(cliff, "sarsa", n_runs=2, n_episodes=2, epsilon=lambda n: 2.0 / n, progress=False)
    with pytest.raises(ValueError, match="epsilon"):
        ql.td_control_runs(cliff, "sarsa", n_runs=2, n_episodes=2, epsilon=1.5, progress=False)


def test_sarsa_update_uses_the_next_action():
    Q = np.array([[0.0, 0.0], [1.0, 5.0]])
    ql.sarsa_update(Q, 0, 0, 1.0, 1, 0, False, 0.5, 0.9)
    assert Q[0, 0] == pytest.approx(0.5 * (1.0 + 0.9 * 1.0))
    ql.sarsa_update(Q, 0, 1, 2.0, 1, 1, True, 0.5, 0.9)
    assert Q[0, 1] == pytest.approx(1.0)


# -------------------------------------------------------------------------------------- function approximation

def test_semi_gradient_update_with_one_hot_features_is_the_tabular_update():
    rng = np.random.default_rng(0)
    S, A = 5, 3
    Q = rng.normal(size=(S, A))
    w = Q.ravel().copy()
    eye = np.eye(S * A)
    for _ in range(50):
        s, a, s_next = rng.integers(S), rng.integers(A), rng.integers(S)
        r, terminated = rng.normal(), bool(rng.random() < 0.2)
        ql.q_learning_update(Q, s, a, r, s_next, terminated, 0.3, 0.9)
        ql.semi_gradient_q_update(w, eye[s * A + a], eye[s_next * A:(s_next + 1) * A], r, terminated, 0.3, 0.9)
    assert np.allclose(w, Q.ravel())


def test_semi_gradient_update_takes_w_and_rejects_mismatched_shapes():
    w = np.array([0.5, -1.0, 2.0])
    delta = ql.semi_gradient_q_update(w=w, features=np.array([1.0, 0.0, 1.0]),
                                      next_features=np.array([[0.0, 1.0, 0.0], [1.0, 1.0, 0.0]]), r=1.0,
                                      terminated=False, alpha=0.1, gamma=0.9)
    assert delta == pytest.approx(1.0 + 0.9 * -0.5 - 2.5)
    assert np.allclose(w, [0.5 + 0.1 * delta, -1.0, 2.0 + 0.1 * delta])
    with pytest.raises(ValueError, match="next_features"):
        ql.semi_gradient_q_update(np.zeros(3), np.zeros(3), np.zeros((2, 4)), 0.0, False, 0.1, 0.9)
    with pytest.raises(ValueError, match="features"):
        ql.semi_gradient_q_update(np.zeros(3), np.zeros(2), np.zeros((2, 3)), 0.0, False, 0.1, 0.9)


def test_mountain_car_bootstraps_through_the_time_limit(monkeypatch):
    flags = []
    update = ql.semi_gradient_q_update

    def spy(w, features, next_features, r, terminated, alpha, gamma):
        flags.append(terminated)
        return update(w, features, next_features, r, terminated, alpha, gamma)

    monkeypatch.setattr(ql, "semi_gradient_q_update", spy)
    steps, _, _ = ql.linear_q_learning_mountain_car(2, seed=0, max_steps=40, progress=False)
    assert steps.tolist() == [40, 40]  # both episodes cut by the time limit: the flag is never reached in 40 steps
    assert len(flags) == 80 and not any(flags)


def test_tile_coder_activates_one_tile_per_tiling_and_neighbours_share():
    coder = ql.TileCoder([-1.2, -0.07], [0.6, 0.07], n_tilings=8, n_tiles=8)
    assert coder.n_features == 8 * 9 * 9
    tiles = coder.active_tiles(np.array([-0.5, 0.0]))
    assert tiles.shape == (8,) and len(set(tiles.tolist())) == 8
    assert np.all((tiles >= 0) & (tiles < coder.n_features))
    assert coder.features(np.array([-0.5, 0.0])).sum() == 8
    near = coder.active_tiles(np.array([-0.49, 0.001]))
    far = coder.active_tiles(np.array([0.5, 0.06]))
    assert len(set(tiles) & set(near)) >= 4 and not set(tiles) & set(far)
    assert np.array_equal(coder.active_tiles(np.array([5.0, 1.0])), coder.active_tiles(np.array([0.6, 0.07])))


@pytest.mark.slow
def test_mountain_car_learns_with_tile_coding():
    steps, w, coder = ql.linear_q_learning_mountain_car(60, seed=0, progress=False)
    assert steps[0] > 500 and steps[-10:].mean() < 250  # S&B Figure 10.2: from ~1000 steps to ~150-200
    assert w.shape == (3 * coder.n_features,)
    start = coder.active_tiles(np.array([-0.5, 0.0]))  # the valley, at rest: many steps to go, all values < 0
    q_start = [w[a * coder.n_features:(a + 1) * coder.n_features][start].sum() for a in range(3)]
    assert max(q_start) < -20


# -------------------------------------------------------------------------------------------------------- DQN

def test_dqn_loss_is_zero_at_the_target_and_ignores_the_future_at_terminals():
    torch.manual_seed(0)
    net = dqn.QNetwork(4, 2, 8)
    states, next_states = torch.randn(6, 4), torch.randn(6, 4)
    actions = torch.tensor([0, 1, 0, 1, 1, 0])
    terminated = torch.ones(6)
    rewards = net(states).gather(1, actions[:, None]).squeeze(1).detach()  # terminal: target = r = Q(s, a)
    loss = dqn.dqn_loss(net, net, states, actions, rewards, next_states, terminated, 0.99)
    assert loss.item() == pytest.approx(0.0)
    loss = dqn.dqn_loss(net, net, states, actions, rewards, next_states, torch.zeros(6), 0.99)
    assert loss.item() > 0
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


def test_replay_buffer_keeps_the_newest_transitions():
    buffer = dqn.ReplayBuffer(3, 2)
    for i in range(5):
        buffer.add([i, i], i % 2, float(i), [i + 1, i + 1], i == 4)
    assert len(buffer) == 3 and sorted(buffer.rewards.tolist()) == [2.0, 3.0, 4.0]
    states, actions, rewards, next_states, terminated = buffer.sample(10, np.random.default_rng(0))
    assert states.shape == (10, 2) and states.dtype == torch.float32 and actions.dtype == torch.int64
    assert torch.all(next_states == states + 1) and torch.all(terminated == (rewards == 4.0).float())
    with pytest.raises(ValueError, match="empty"):
        dqn.ReplayBuffer(2, 2).sample(1, np.random.default_rng(0))


def test_train_dqn_runs_and_evaluates():
    config = dqn.DQNConfig(n_steps=1500, learning_starts=200, eval_every=500, eval_episodes=3, hidden=16)
    result = dqn.train_dqn(0, config, progress=False)
    assert result.eval_steps == [500, 1000, 1500] and len(result.eval_returns) == 3
    assert all(1 <= r <= 500 for r in result.eval_returns)
    assert sum(result.episode_returns) <= 1500 and result.episode_ends == sorted(result.episode_ends)
    assert result.first_step_reaching(1e9) is None


def test_soft_update_moves_the_target_weights_a_fraction_tau_and_tau_one_copies():
    torch.manual_seed(0)
    online, target = dqn.QNetwork(4, 2, 8), dqn.QNetwork(4, 2, 8)
    before = [p.detach().clone() for p in target.parameters()]
    dqn.soft_update(target, online, 0.25)
    for old, new, w in zip(before, target.parameters(), online.parameters()):
        assert torch.allclose(new, 0.75 * old + 0.25 * w, atol=1e-7)
        assert new.grad is None
    dqn.soft_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters()))
    with pytest.raises(ValueError, match="tau"):
        dqn.soft_update(target, online, 0.0)
    with pytest.raises(ValueError, match="shapes"):
        dqn.soft_update(dqn.QNetwork(4, 3, 8), online, 0.5)


def test_train_dqn_updates_the_target_network_as_configured_and_stores_truncation_as_not_terminal(monkeypatch):
    """Soft updates every `target_update` steps; an episode cut by the time limit is stored with terminated = 0."""
    taus, stored = [], []
    soft_update, add, make = dqn.soft_update, dqn.ReplayBuffer.add, gym.make

    def spy_update(target_network, q_network, tau):
        taus.append(tau)
        soft_update(target_network, q_network, tau)

    def spy_add(self, state, action, reward, next_state, terminated):
        stored.append(bool(terminated))
        add(self, state, action, reward, next_state, terminated)

    monkeypatch.setattr(dqn, "soft_update", spy_update)
    monkeypatch.setattr(dqn.ReplayBuffer, "add", spy_add)
    monkeypatch.setattr(gym, "make", lambda env_id, **kwargs: make(env_id, max_episode_steps=6))
    config = dqn.DQNConfig(n_steps=300, learning_starts=100, target_update=3, tau=0.5, eval_every=10_000,
                           hidden=8)
    result = dqn.train_dqn(0, config, progress=False)
    assert taus == [0.5] * 100
    assert len(stored) == 300
    ends = np.array(result.episode_ends) - 1  # the index of each episode's last transition
    lengths = np.diff(np.concatenate([[0], result.episode_ends]))
    truncated = ends[lengths == 6]  # CartPole does not fall within 6 steps from its start
    assert truncated.size > 20 and not any(stored[i] for i in truncated)
