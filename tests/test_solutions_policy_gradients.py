"""Chapter 4's reference code (policy gradients): S&B Example 13.1 and Figures 13.1-13.2, the score-function
estimator against the exact gradient, the pieces of deep REINFORCE, and REINFORCE on CartPole."""

import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from solutions import policy_gradients as pg
from solutions.envs import TabularMDPEnv

P_STAR = 2 - math.sqrt(2)  # the best probability of right (S&B Example 13.1: "about 0.59")
J_STAR = -(6 + 4 * math.sqrt(2))  # its value, -11.657... (S&B: "about -11.6")


def closed_form_value(p):
    """J(p) at gamma = 1, by hand. With v(goal) = 0 the Bellman equations of the three states are
        v0 = -1 + p v1 + (1-p) v0,   v1 = -1 + p v0 + (1-p) v2,   v2 = -1 + (1-p) v1.
    The first gives v0 = v1 - 1/p; putting it and the third into the second, v1 p (1-p) = p - 3, so
    v0 = (p - 3 - (1 - p)) / (p (1-p)) = (2p - 4) / (p (1-p)). Its derivative vanishes where p^2 - 4p + 2 = 0,
    p = 2 - sqrt(2), and there v0 = -(6 + 4 sqrt(2))."""
    return (2 * p - 4) / (p * (1 - p))


def theta_for(p_right):
    """A theta of the short-corridor features with pi(right) = p_right."""
    return np.array([0.5 * math.log(p_right / (1 - p_right)), -0.5 * math.log(p_right / (1 - p_right))])


# ---------------------------------------------------------------------------------------- Example 13.1

def test_short_corridor_is_the_switched_corridor():
    mdp = pg.short_corridor()
    moves = {(s, a): int(mdp.P[s, a].argmax()) for s in range(3) for a in range(2)}
    assert moves == {(0, pg.LEFT): 0, (0, pg.RIGHT): 1, (1, pg.LEFT): 2, (1, pg.RIGHT): 0,
                     (2, pg.LEFT): 1, (2, pg.RIGHT): 3}
    assert np.array_equal(mdp.P.max(axis=2), np.ones((4, 2)))  # deterministic
    assert np.array_equal(mdp.R, [[-1, -1], [-1, -1], [-1, -1], [0, 0]])
    assert mdp.terminal.tolist() == [False, False, False, True]
    assert mdp.initial.tolist() == [1, 0, 0, 0] and mdp.gamma == 1.0
    assert mdp.action_names == ("left", "right") and len(mdp.state_names) == 4
    check_env(TabularMDPEnv(mdp), skip_render_check=True)
    with pytest.raises(ValueError, match="gamma"):
        pg.short_corridor(1.5)


def test_short_corridor_value_is_the_closed_form_and_peaks_at_2_minus_sqrt2():
    for p in (0.05, 0.2, 0.5, P_STAR, 0.8, 0.95):
        assert pg.short_corridor_value(p) == pytest.approx(closed_form_value(p), rel=1e-12)
    grid = np.linspace(0.001, 0.999, 999)  # step 1e-3
    values = np.array([pg.short_corridor_value(p) for p in grid])
    assert abs(grid[values.argmax()] - P_STAR) <= 1e-3
    assert round(grid[values.argmax()], 2) == 0.59  # S&B: "about 0.59"
    assert pg.short_corridor_value(P_STAR) == pytest.approx(J_STAR, abs=1e-9)
    assert round(J_STAR, 1) == -11.7 and -11.66 < J_STAR < -11.65  # S&B print -11.6
    # S&B's epsilon-greedy policies (epsilon = 0.1): "less than -44 and -82"
    assert -45 < pg.short_corridor_value(0.95) < -44 and -83 < pg.short_corridor_value(0.05) < -82
    assert pg.short_corridor_value(0.0) == -math.inf and pg.short_corridor_value(1.0) == -math.inf


def test_short_corridor_value_with_discounting_matches_iterative_evaluation():
    mdp = pg.short_corridor(0.9)
    for p in (0.0, 0.3, 0.7, 1.0):
        P_pi = (1 - p) * mdp.P[:, 0] + p * mdp.P[:, 1]
        r_pi = (1 - p) * mdp.R[:, 0] + p * mdp.R[:, 1]
        v = np.zeros(4)
        for _ in range(2_000):  # iterative policy evaluation, an independent method
            v = r_pi + 0.9 * P_pi @ v
        assert pg.short_corridor_value(p, gamma=0.9) == pytest.approx(v[0], rel=1e-10)
    assert pg.short_corridor_value(1.0, gamma=0.9) == pytest.approx(-10.0)  # never arrives: -1 / (1 - gamma)


@pytest.mark.parametrize("bad", [-0.1, 1.1, math.nan])
def test_short_corridor_value_rejects_bad_probabilities(bad):
    with pytest.raises(ValueError, match="p_right"):
        pg.short_corridor_value(bad)


def test_short_corridor_value_rejects_bad_gamma():
    with pytest.raises(ValueError, match="gamma"):
        pg.short_corridor_value(0.5, gamma=-0.1)


def test_short_corridor_value_agrees_with_monte_carlo():
    """Episodes of the environment at p = 2 - sqrt(2), sampled independently of the linear solve."""
    env = TabularMDPEnv(pg.short_corridor())
    env.reset(seed=0)
    rng = np.random.default_rng(1)
    returns = []
    for _ in range(3_000):
        env.reset()
        G, terminated = 0.0, False
        while not terminated:
            _, r, terminated, _, _ = env.step(int(rng.random() < P_STAR))
            G += r
        returns.append(G)
    returns = np.array(returns)
    standard_error = returns.std(ddof=1) / np.sqrt(len(returns))
    assert standard_error < 0.25
    assert abs(returns.mean() - pg.short_corridor_value(P_STAR)) < 4 * standard_error


# ------------------------------------------------------------------------ the linear-softmax policy

def test_softmax_policy_is_normalised_and_stable():
    x = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0], [0.5, 0.5, 0.5]])
    theta = np.array([0.3, -0.2, 0.1])
    h = x @ theta
    assert np.allclose(pg.softmax_policy(theta, x), np.exp(h) / np.exp(h).sum(), rtol=1e-14)
    big = pg.softmax_policy(np.array([1000.0, -1000.0]), pg.SHORT_CORRIDOR_FEATURES)  # exp(1000) overflows
    assert np.array_equal(big, [0.0, 1.0])
    assert pg.softmax_policy(pg.SHORT_CORRIDOR_THETA0, pg.SHORT_CORRIDOR_FEATURES)[pg.RIGHT] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="shape"):
        pg.softmax_policy(theta, x[:, :2])
    with pytest.raises(ValueError, match="finite"):
        pg.softmax_policy(np.array([np.nan, 0.0, 0.0]), x)


def test_grad_log_softmax_policy_matches_finite_differences_and_autograd():
    rng = np.random.default_rng(0)
    for _ in range(5):
        A, d = rng.integers(2, 5), rng.integers(1, 6)
        x, theta = rng.normal(size=(A, d)), rng.normal(size=d)
        for a in range(A):
            grad = pg.grad_log_softmax_policy(theta, x, a)
            assert grad.shape == (d,)
            eps = 1e-6
            numeric = [(np.log(pg.softmax_policy(theta + eps * e, x)[a])
                        - np.log(pg.softmax_policy(theta - eps * e, x)[a])) / (2 * eps) for e in np.eye(d)]
            assert np.allclose(grad, numeric, atol=1e-8)
            theta_t = torch.tensor(theta, requires_grad=True)
            torch.log_softmax(torch.tensor(x) @ theta_t, dim=0)[a].backward()
            assert np.allclose(grad, theta_t.grad.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="action"):
        pg.grad_log_softmax_policy(theta, x, A)


# ------------------------------------------------------------------- REINFORCE on the short corridor

def test_reinforce_follows_the_books_update_on_one_episode():
    """theta after one episode, recomputed here from the same draws: theta <- theta + alpha gamma^t G_t grad ln pi,
    for t = 0, 1, ..., with the current theta in grad ln pi (S&B Section 13.3)."""
    alpha, gamma = 0.01, 0.9
    run = pg.reinforce_short_corridor(alpha, 1, np.random.default_rng(5), theta0=theta_for(0.6), gamma=gamma,
                                      progress=False)
    rng, theta, s, actions = np.random.default_rng(5), theta_for(0.6), 0, []
    p = 1 / (1 + math.exp(theta[1] - theta[0]))  # pi(right), fixed during the episode
    while s != 3:
        actions.append(int(rng.random() < p))
        s = {(0, 0): 0, (0, 1): 1, (1, 0): 2, (1, 1): 0, (2, 0): 1, (2, 1): 3}[(s, actions[-1])]
    T = len(actions)
    assert run.returns[0] == -T
    for t, a in enumerate(actions):
        G = -sum(gamma**k for k in range(T - t))
        p = 1 / (1 + math.exp(theta[1] - theta[0]))
        grad = np.array([a - p, (1 - a) - (1 - p)])
        theta = theta + alpha * gamma**t * G * grad
    assert np.allclose(run.theta, theta, rtol=1e-12)


def test_reinforce_with_baseline_follows_the_books_update_on_one_episode():
    alpha, alpha_w = 0.01, 0.1
    run = pg.reinforce_short_corridor(alpha, 1, np.random.default_rng(7), theta0=theta_for(0.5), alpha_w=alpha_w,
                                      progress=False)
    rng, theta, w, s, actions = np.random.default_rng(7), theta_for(0.5), 0.0, 0, []
    while s != 3:
        actions.append(int(rng.random() < 0.5))
        s = {(0, 0): 0, (0, 1): 1, (1, 0): 2, (1, 1): 0, (2, 0): 1, (2, 1): 3}[(s, actions[-1])]
    T = len(actions)
    for t, a in enumerate(actions):
        delta = -(T - t) - w
        w += alpha_w * delta
        p = 1 / (1 + math.exp(theta[1] - theta[0]))
        theta = theta + alpha * delta * np.array([a - p, p - a])
    assert run.w == pytest.approx(w, rel=1e-12)
    assert np.allclose(run.theta, theta, rtol=1e-12)


def test_one_step_actor_critic_follows_the_books_update_on_one_episode():
    alpha_theta, alpha_w, gamma = 0.05, 0.2, 0.95
    run = pg.one_step_actor_critic_short_corridor(alpha_theta, alpha_w, 1, np.random.default_rng(2),
                                                  theta0=theta_for(0.5), gamma=gamma, progress=False)
    rng, theta, w, s, I, T = np.random.default_rng(2), theta_for(0.5), np.zeros(4), 0, 1.0, 0
    while s != 3:
        p = 1 / (1 + math.exp(theta[1] - theta[0]))  # changes at every step
        a = int(rng.random() < p)
        s_next = {(0, 0): 0, (0, 1): 1, (1, 0): 2, (1, 1): 0, (2, 0): 1, (2, 1): 3}[(s, a)]
        delta = -1 + gamma * (0.0 if s_next == 3 else w[s_next]) - w[s]
        w[s] += alpha_w * delta
        theta = theta + alpha_theta * I * delta * np.array([a - p, p - a])
        I *= gamma
        s, T = s_next, T + 1
    assert run.returns[0] == -T
    assert np.allclose(run.w, w, rtol=1e-12) and w[3] == 0 and np.count_nonzero(w[:3]) == 3
    assert np.allclose(run.theta, theta, rtol=1e-12)


def test_uniform_streams_are_the_generators_draws_in_order():
    """What the batch runners rely on: rng.random(n) continues the stream of rng.random() calls."""
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    blocks = np.concatenate([a.random(5), a.random(1), a.random(64)])
    assert np.array_equal(blocks, [b.random() for _ in range(70)])
    streams = pg._UniformStreams(pg.run_generators(11, 3), width=4)
    reference = [g.random(40) for g in pg.run_generators(11, 3)]
    assert np.array_equal(streams.peek(0, 3), np.array([r[:3] for r in reference]))
    streams.advance(np.array([1, 2, 3]))
    assert np.array_equal(streams.peek(2, 9), np.array([r[k + 2:k + 11] for k, r in zip([1, 2, 3], reference)]))
    assert np.array_equal(streams.next(np.array([2, 0])), [reference[2][3], reference[0][1]])


@pytest.mark.parametrize("settings", [
    dict(alpha=2**-12),
    dict(alpha=2**-9, alpha_w=2**-6),
    dict(alpha=0.002, gamma=0.9),  # exercises gamma^t
    dict(alpha=0.004, alpha_w=0.05, max_steps=12),  # many episodes are cut
], ids=["reinforce", "baseline", "discounted", "cut"])
def test_short_corridor_runs_equal_the_readable_function_run_by_run(settings):
    n_runs, n_episodes, seed = 3, 150, 21
    returns, theta, w = pg.short_corridor_runs(n_runs=n_runs, n_episodes=n_episodes, seed=seed,
                                               return_parameters=True, progress=False, **settings)
    assert returns.shape == (n_runs, n_episodes)
    if "max_steps" in settings:
        assert (returns == -12).any()
    for i, rng in enumerate(pg.run_generators(seed, n_runs)):
        run = pg.reinforce_short_corridor(n_episodes=n_episodes, rng=rng, progress=False, **settings)
        assert np.array_equal(run.returns, returns[i])
        assert np.array_equal(run.theta, theta[i])
        if "alpha_w" in settings:
            assert run.w == w[i]
        else:
            assert run.w is None and w is None
    assert len({tuple(r) for r in returns}) == n_runs  # the runs are independent streams


@pytest.mark.parametrize("settings", [dict(), dict(gamma=0.9, max_steps=10)], ids=["book", "discounted-cut"])
def test_actor_critic_runs_equal_the_readable_function_run_by_run(settings):
    n_runs, n_episodes, seed = 3, 150, 8
    returns, theta, w = pg.actor_critic_runs(2**-6, 2**-3, n_runs, n_episodes, seed, return_parameters=True,
                                             progress=False, **settings)
    for i, rng in enumerate(pg.run_generators(seed, n_runs)):
        run = pg.one_step_actor_critic_short_corridor(2**-6, 2**-3, n_episodes, rng, progress=False, **settings)
        assert np.array_equal(run.returns, returns[i])
        assert np.array_equal(run.theta, theta[i]) and np.array_equal(run.w, w[i])


def test_short_corridor_runs_reject_bad_arguments():
    with pytest.raises(ValueError, match="alpha"):
        pg.short_corridor_runs(-1.0, 2, 2, 0)
    with pytest.raises(ValueError, match="n_runs"):
        pg.short_corridor_runs(0.1, 0, 2, 0)
    with pytest.raises(ValueError, match="theta0"):
        pg.reinforce_short_corridor(0.1, 2, np.random.default_rng(0), theta0=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="gamma"):
        pg.actor_critic_runs(0.1, 0.1, 2, 2, 0, gamma=2.0)


def test_short_corridor_runs_with_alpha_zero_estimate_the_value_of_the_start_policy():
    returns = pg.short_corridor_runs(0.0, 20, 300, seed=4, progress=False)
    standard_error = returns.std(ddof=1) / np.sqrt(returns.size)
    assert abs(returns.mean() - pg.short_corridor_value(0.05)) < 4 * standard_error  # -82.1


# ------------------------------------------------------------------- S&B Figures 13.1 and 13.2, and actor-critic

def median_and_standard_error(x, n_boot=2_000):
    """The median of the per-run values ``x`` and its bootstrap standard error (resampling runs)."""
    resamples = np.random.default_rng(0).integers(len(x), size=(n_boot, len(x)))
    return np.median(x), np.median(x[resamples], axis=1).std()


def assert_ordered(stats, margin=6.0):
    """Each (median, se) above the next by more than ``margin`` standard errors of the difference."""
    for (high, se_high), (low, se_low) in zip(stats, stats[1:]):
        assert high - low > margin * math.hypot(se_high, se_low), stats


def test_figure_13_1_larger_step_sizes_approach_the_optimum_faster():
    """In the typical run (median over 100 runs of each run's mean total reward over its first 200 episodes),
    alpha = 2^-12 > 2^-13 > 2^-14. Measured: -27.3, -36.8, -48.4 with bootstrap standard errors of about 0.5, so
    the gaps are 15+ standard errors. (Seeds 0 and 2 give the same within 1.)"""
    runs = [pg.short_corridor_runs(alpha, 100, 200, seed=1, progress=False) for alpha in (2**-12, 2**-13, 2**-14)]
    stats = [median_and_standard_error(returns.mean(axis=1)) for returns in runs]
    assert_ordered(stats)
    assert stats[0][0] > -30 and stats[2][0] < -45


def test_figure_13_1_the_largest_step_size_strands_some_runs():
    """The price of alpha = 2^-12: a long early episode can push pi(right) to almost 1, after which the agent goes
    back and forth between the first two states and never reaches the goal again (every later episode is cut at
    max_steps = 1,000). Over 500 runs of 60 episodes: 15 such runs at 2^-12 (7 and 9 of 300 with seeds 1, 2),
    none at 2^-14; were the two rates equal, all k stranded runs would fall on one side with probability 2^-k."""
    stranded = {alpha: int((pg.short_corridor_runs(alpha, 500, 60, seed=1, progress=False)[:, -5:] <= -1_000)
                           .all(axis=1).sum()) for alpha in (2**-12, 2**-14)}
    assert stranded[2**-12] >= 8 and stranded[2**-14] == 0, stranded


def test_figure_13_2_a_baseline_learns_faster():
    """REINFORCE with baseline (alpha^theta = 2^-9, alpha^w = 2^-6) against REINFORCE at alpha = 2^-13, 100 runs of
    1,000 episodes each: the median over runs of the mean total reward per episode is -12.8 against -18.9
    (bootstrap standard errors 0.10 and 0.11: a 40-standard-error gap); the mean over runs, the statistic S&B plot,
    is -13.1 against -18.9; with the baseline the last 100 episodes average -11.9, near v*(S_0) = -11.66."""
    plain = pg.short_corridor_runs(2**-13, 100, 1_000, seed=1, progress=False)
    baseline = pg.short_corridor_runs(2**-9, 100, 1_000, seed=1, alpha_w=2**-6, progress=False)
    assert_ordered([median_and_standard_error(baseline.mean(axis=1)),
                    median_and_standard_error(plain.mean(axis=1))])
    assert baseline.mean() > plain.mean() + 4
    assert abs(baseline[:, -100:].mean() - J_STAR) < 0.5


def test_one_step_actor_critic_finds_the_best_policy_and_its_critic_the_state_values():
    """20 runs of 1,000 episodes at alpha^theta = 2^-9, alpha^w = 2^-6: pi(right) ends at 0.588 +- 0.016 (sd over
    runs) and the tabular critic at v_pi of the best policy in each state (the critic sees the states)."""
    returns, theta, w = pg.actor_critic_runs(2**-9, 2**-6, 20, 1_000, seed=1, return_parameters=True,
                                             progress=False)
    p_right = 1 / (1 + np.exp(theta[:, 1] - theta[:, 0]))
    assert abs(p_right.mean() - P_STAR) < 0.02
    v1 = (P_STAR - 3) / (P_STAR * (1 - P_STAR))
    v_star = np.array([v1 - 1 / P_STAR, v1, -1 + (1 - P_STAR) * v1])  # -11.66, -9.95, -5.12
    assert np.all(np.abs(w[:, :3].mean(axis=0) - v_star) < 0.5) and np.all(w[:, 3] == 0)
    assert abs(returns[:, -100:].mean() - J_STAR) < 1.0


# ------------------------------------------------------------------------ the score-function estimator

THETA = np.array([0.5, -1.0, 2.0, 0.0])
REWARDS = np.array([11.0, 13.0, 8.0, 10.5])  # all far from 0, as with a reward of +1 per step


def test_exact_softmax_gradient_matches_finite_differences_and_autograd():
    exact = pg.exact_softmax_gradient(THETA, REWARDS)
    expected_reward = lambda th: np.exp(th - th.max()) @ REWARDS / np.exp(th - th.max()).sum()  # noqa: E731
    numeric = [(expected_reward(THETA + 1e-6 * e) - expected_reward(THETA - 1e-6 * e)) / 2e-6 for e in np.eye(4)]
    assert np.allclose(exact, numeric, atol=1e-8)
    theta_t = torch.tensor(THETA, requires_grad=True)
    (torch.softmax(theta_t, dim=0) @ torch.tensor(REWARDS)).backward()
    assert np.allclose(exact, theta_t.grad.numpy(), atol=1e-12)
    assert abs(exact.sum()) < 1e-12  # adding a constant to every logit changes nothing


def score_samples(n, seed, b=0.0):
    """The per-sample terms (R(x_i) - b)(e_{x_i} - p), drawn as score_function_gradient draws them."""
    p = np.exp(THETA - THETA.max()) / np.exp(THETA - THETA.max()).sum()
    x = np.random.default_rng(seed).choice(4, size=n, p=p)
    return (REWARDS[x] - b)[:, None] * (np.eye(4)[x] - p)


def test_score_function_estimate_is_within_a_few_standard_errors_of_the_exact_gradient():
    n = 20_000
    exact = pg.exact_softmax_gradient(THETA, REWARDS)
    p = np.exp(THETA - THETA.max()) / np.exp(THETA - THETA.max()).sum()
    for b in (None, float(p @ REWARDS)):
        estimate = pg.score_function_gradient(THETA, REWARDS, n, np.random.default_rng(0), baseline=b)
        samples = score_samples(n, 0, 0.0 if b is None else b)
        assert np.allclose(estimate, samples.mean(axis=0), rtol=1e-12, atol=1e-15)
        standard_error = samples.std(axis=0, ddof=1) / np.sqrt(n)
        assert np.all(np.abs(estimate - exact) < 4 * standard_error)  # four components, each within 4 SE
        assert np.all(standard_error < 0.05)


def exact_variance(rewards, b):
    """The variance of each component of one term (R(x) - b) grad ln p(x), x ~ p, summed over components."""
    p = np.exp(THETA - THETA.max()) / np.exp(THETA - THETA.max()).sum()
    second_moment = p @ ((rewards - b)[:, None] * (np.eye(4) - p)) ** 2
    return second_moment - pg.exact_softmax_gradient(THETA, rewards) ** 2


def test_a_mean_reward_baseline_lowers_the_variance_of_the_estimate():
    p = np.exp(THETA - THETA.max()) / np.exp(THETA - THETA.max()).sum()
    b = float(p @ REWARDS)  # E_p[R] = 8.89
    assert exact_variance(REWARDS, b).sum() < exact_variance(REWARDS, 0.0).sum() / 30  # 1.58 against 51.4
    for c in (0.0, b):  # the samples agree with the exact variances
        assert np.allclose(score_samples(50_000, 1, c).var(axis=0), exact_variance(REWARDS, c), rtol=0.05)
    plain = [pg.score_function_gradient(THETA, REWARDS, 100, np.random.default_rng(k)) for k in range(400)]
    with_b = [pg.score_function_gradient(THETA, REWARDS, 100, np.random.default_rng(k), baseline=b)
              for k in range(400)]
    assert np.var(with_b, axis=0).sum() < np.var(plain, axis=0).sum() / 10


def test_the_mean_reward_is_not_always_a_better_baseline_than_zero():
    """Rewards near 0 whose likeliest outcome is the worst: b = E_p[R] = -1.11 triples the variance."""
    rewards = REWARDS - 10.0
    b = float(np.exp(THETA) @ rewards / np.exp(THETA).sum())
    assert exact_variance(rewards, b).sum() > 3 * exact_variance(rewards, 0.0).sum()


def test_score_function_gradient_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="same length"):
        pg.score_function_gradient(THETA, REWARDS[:3], 10, rng)
    with pytest.raises(ValueError, match="n_samples"):
        pg.score_function_gradient(THETA, REWARDS, 0, rng)
    with pytest.raises(ValueError, match="finite"):
        pg.exact_softmax_gradient(THETA, np.array([1.0, np.inf, 0.0, 0.0]))


# ---------------------------------------------------------------- reward-to-go and the REINFORCE losses

def test_reward_to_go_restarts_at_each_episode():
    rewards = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 5.0])
    ends = np.array([False, False, True, False, True, True])
    assert np.allclose(pg.reward_to_go(rewards, 0.5, ends),
                       [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3, 10 + 0.5 * 20, 20, 5], rtol=1e-15)
    assert np.array_equal(pg.reward_to_go(rewards, 1.0, ends), [6, 5, 3, 30, 20, 5])
    assert np.array_equal(pg.reward_to_go(rewards, 0.0, ends), rewards)
    G = pg.reward_to_go([1, 1, 1], 0.9, [False, False, True])
    assert G.dtype == np.float64 and np.allclose(G, [2.71, 1.9, 1.0])


@pytest.mark.parametrize("rewards, gamma, ends, match", [
    ([1.0, 2.0], 0.9, [True, False], r"episode_ends\[-1\] must be True"),
    ([1.0, 2.0], 0.9, [True], "shape"),
    ([], 0.9, [], "shape"),
    ([1.0, 2.0], 1.1, [False, True], "gamma"),
    ([1.0, 2.0], 0.9, [0, 1], "boolean"),
    ([1.0, np.nan], 0.9, [False, True], "finite"),
])
def test_reward_to_go_rejects_bad_input(rewards, gamma, ends, match):
    with pytest.raises(ValueError, match=match):
        pg.reward_to_go(np.array(rewards), gamma, np.array(ends))


def test_reinforce_loss_value_sign_and_gradient():
    log_probs = torch.tensor([-0.1, -2.0, -0.5, -1.0], requires_grad=True)
    returns = torch.tensor([3.0, 1.0, -2.0, 0.5], requires_grad=True)
    loss = pg.reinforce_loss(log_probs, returns, n_episodes=2)
    assert loss.item() == pytest.approx(-(-0.3 - 2.0 + 1.0 - 0.5) / 2)
    loss.backward()
    assert torch.allclose(log_probs.grad, -returns.detach() / 2)  # descent raises log pi where the return is high
    assert returns.grad is None  # no gradient through the weights
    with pytest.raises(ValueError, match="shape"):
        pg.reinforce_loss(log_probs, returns[:3], 1)
    with pytest.raises(ValueError, match="n_episodes"):
        pg.reinforce_loss(log_probs, returns, 0)


def test_advantages_and_value_loss():
    returns = torch.tensor([3.0, 1.0, -2.0])
    values = torch.tensor([1.0, 1.5, 0.0], requires_grad=True)
    advantages, value_loss = pg.advantages_and_value_loss(returns, values)
    assert torch.equal(advantages, torch.tensor([2.0, -0.5, -2.0])) and not advantages.requires_grad
    assert value_loss.item() == pytest.approx((4 + 0.25 + 4) / 3)  # mean squared error, no 1/2
    value_loss.backward()
    assert torch.allclose(values.grad, 2 * (values.detach() - returns) / 3)
    with pytest.raises(ValueError, match="shape"):
        pg.advantages_and_value_loss(returns, values[:2])


# ---------------------------------------------------------------------------------- CartPole REINFORCE

def test_reinforce_cartpole_counts_every_step_and_is_reproducible():
    runs = [pg.reinforce_cartpole("reward_to_go", seed=3, total_steps=2_000, progress=False) for _ in range(2)]
    run = runs[0]
    assert np.array_equal(run.episode_returns, runs[1].episode_returns)
    assert run.total_steps == 2_000 and run.episode_ends.max() <= 2_000
    assert np.all(np.diff(run.episode_ends) >= 0)
    # CartPole pays +1 per step: the finished episodes hold at most the steps taken
    assert run.episode_returns.sum() <= 2_000 and run.episode_returns.min() >= 1
    assert run.n_updates >= len(run.episode_returns) // 16
    assert run.value is None
    other = pg.reinforce_cartpole("reward_to_go", seed=4, total_steps=2_000, progress=False)
    assert not np.array_equal(other.episode_returns[:20], run.episode_returns[:20])
    with pytest.raises(ValueError, match="variant"):
        pg.reinforce_cartpole("advantage", 0)


def make_episode(length, truncated, state_dim=4):
    states = np.random.default_rng(length).normal(size=(length, state_dim)).astype(np.float32)
    final = np.ones(state_dim, dtype=np.float32) if truncated else None
    return states, np.zeros(length, dtype=np.int64), np.ones(length), final


def test_the_baseline_variant_bootstraps_truncated_episodes_from_the_final_state(monkeypatch):
    gamma, v_final = 0.9, 5.0
    value = pg.ValueNetwork()
    with torch.no_grad():  # V(s) = 5 everywhere
        value.layers[-1].weight.zero_()
        value.layers[-1].bias.fill_(v_final)
    seen, original = {}, pg.advantages_and_value_loss

    def spy(returns, values):
        seen["returns"] = returns.clone()
        return original(returns, values)

    monkeypatch.setattr(pg, "advantages_and_value_loss", spy)
    policy = pg.PolicyNetwork()
    episodes = [make_episode(3, truncated=True), make_episode(2, truncated=False)]
    pg._reinforce_update("baseline", episodes, policy, torch.optim.Adam(policy.parameters()), value,
                         torch.optim.Adam(value.parameters()), gamma)
    expected = [1 + gamma + gamma**2 + gamma**3 * v_final, 1 + gamma + gamma**2 * v_final, 1 + gamma * v_final,
                1 + gamma, 1]
    assert torch.allclose(seen["returns"], torch.tensor(expected, dtype=torch.float32))


@pytest.mark.parametrize("variant, expected", [
    ("return", [2.71, 2.71, 2.71, 1.9, 1.9]),
    ("reward_to_go", [2.71, 1.9, 1.0, 1.9, 1.0]),
])
def test_the_weights_of_the_return_and_reward_to_go_variants(monkeypatch, variant, expected):
    seen, original = {}, pg.reinforce_loss

    def spy(log_probs, returns, n_episodes):
        seen["returns"], seen["n"] = returns.clone(), n_episodes
        return original(log_probs, returns, n_episodes)

    monkeypatch.setattr(pg, "reinforce_loss", spy)
    policy = pg.PolicyNetwork()
    before = [p.detach().clone() for p in policy.parameters()]
    episodes = [make_episode(3, truncated=True), make_episode(2, truncated=False)]  # no bootstrap here
    pg._reinforce_update(variant, episodes, policy, torch.optim.Adam(policy.parameters()), None, None, 0.9)
    assert torch.allclose(seen["returns"], torch.tensor(expected))
    assert seen["n"] == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_evaluate_cartpole_policy_of_a_fixed_push_and_of_a_balancing_rule():
    class Rule(torch.nn.Module):
        def __init__(self, balance):
            super().__init__()
            self.balance = balance

        def forward(self, states):
            if not self.balance:  # always push left (logits favour action 0 strongly)
                return torch.tensor([[50.0, -50.0]]).repeat(len(states), 1)
            push_right = states[:, 2] + 0.5 * states[:, 3] > 0  # towards the side the pole falls to
            return torch.stack([(~push_right).float(), push_right.float()], dim=1) * 50

    always_left = pg.evaluate_cartpole_policy(Rule(False), n_episodes=20, seed=0)
    assert 8 <= always_left <= 11  # the pole falls within about ten steps
    assert pg.evaluate_cartpole_policy(Rule(False), 20, seed=0, greedy=True) == always_left
    assert pg.evaluate_cartpole_policy(Rule(True), n_episodes=20, seed=0, greedy=True) >= 150
    with pytest.raises(ValueError, match="n_episodes"):
        pg.evaluate_cartpole_policy(Rule(False), n_episodes=0)


def test_cartpole_curves_on_a_grid():
    run = pg.CartPoleRun("return", 0, pg.PolicyNetwork(), None, np.array([10, 30, 60, 100]),
                         np.array([10.0, 20.0, 30.0, 40.0]), total_steps=100, n_updates=0)
    assert np.allclose(run.curve([5, 30, 60, 100], window=40), [np.nan, 15.0, 25.0, 40.0], equal_nan=True)
    assert run.curve([100], window=50)[0] == 35.0  # the episodes that ended at 60 and 100
    assert run.mean_return(last_steps=50) == 35.0 and math.isnan(run.mean_return(last_steps=0))


@pytest.mark.slow
def test_on_cartpole_reward_to_go_beats_the_whole_return_and_the_baseline_does_well():
    """60,000 steps, seeds 0-2 (about 3.5 s of CPU each). Measured mean return over the last 10,000 steps: whole
    return 111, 179, 139; reward-to-go 446, 340, 453; with baseline 478, 466, 441."""
    last = {variant: [pg.reinforce_cartpole(variant, seed, progress=False).mean_return(10_000)
                      for seed in range(3)] for variant in pg.CARTPOLE_VARIANTS}
    assert min(last["reward_to_go"]) > max(last["return"]) + 100, last
    assert min(last["baseline"]) > 400, last


def test_cartpole_runs_put_the_seeds_on_one_grid():
    out = pg.cartpole_runs("baseline", [0, 1], total_steps=1_600, grid_step=400, window=800, progress=False)
    assert np.array_equal(out["steps"], [400, 800, 1_200, 1_600])
    assert out["curves"].shape == (2, 4) and not np.isnan(out["curves"]).any()
    assert np.allclose(out["mean"], out["curves"].mean(axis=0))
    run = out["runs"][1]
    assert run.seed == 1 and run.value is not None and run.total_steps == 1_600
    assert np.allclose(out["curves"][1], run.curve(out["steps"], 800))
    assert out["final"][1] == run.mean_return(10_000) == run.episode_returns.mean()


def test_cartpole_runs_in_parallel_processes_give_the_same_runs_in_the_seeds_order():
    kwargs = dict(seeds=[3, 0], total_steps=1_600, grid_step=400, window=800, progress=False)
    serial = {variant: pg.cartpole_runs(variant, **kwargs) for variant in ("reward_to_go", "baseline")}
    parallel = pg.compare_cartpole_variants(["reward_to_go", "baseline"], n_jobs=2, **kwargs)
    assert list(parallel) == ["reward_to_go", "baseline"]
    for variant in serial:
        assert [run.seed for run in parallel[variant]["runs"]] == [3, 0]
        assert np.array_equal(serial[variant]["curves"], parallel[variant]["curves"])
        for a, b in zip(serial[variant]["runs"], parallel[variant]["runs"]):
            assert a.variant == b.variant == variant
            assert np.array_equal(a.episode_returns, b.episode_returns)
            assert np.array_equal(a.episode_ends, b.episode_ends)
            assert all(torch.equal(x, y) for x, y in zip(a.policy.state_dict().values(),
                                                         b.policy.state_dict().values()))
    with pytest.raises(ValueError, match="n_jobs"):
        pg.cartpole_runs("reward_to_go", [0], total_steps=800, n_jobs=0)
    with pytest.raises(ValueError, match="at least one seed"):
        pg.cartpole_runs("reward_to_go", [], total_steps=800)
    with pytest.raises(ValueError, match="unknown variant"):
        pg.compare_cartpole_variants(["reward-to-go"], [0], total_steps=800)
