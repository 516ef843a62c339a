"""Checks for Chapter 4 (policy gradients; a language model is a policy).

Each ``check_<exercise>(fn, hidden=False)`` runs the student's ``fn`` on textbook cases and fixed random instances,
compares it with the reference in :mod:`solutions.policy_gradients` or :mod:`solutions.language_model`, prints one
line per case and returns a :class:`~autograder.checks._harness.Score`. ``hidden=True`` runs only instances drawn
from :func:`~autograder.checks._harness.hidden_rng`.

How mistakes are named (issue 11): on every case the check computes what each known mistake (the ``_bug_*``
variants below: discounting from the start of the episode instead of from t, a sum that runs into the next
episode, a missing minus sign, a return that carries gradient, the logits of position t used for token t, prompt
tokens counted...) outputs on *that case's* inputs, and a failing case lists the mistakes it reproduces. A hint is
printed only when it explains every failing case; otherwise the smallest failing case is shown in full.

The torch exercises are judged on two things: the value of what they return and its gradient. Every tensor a
case passes is built afresh for that call from the case's seed (the student's function and the reference never
share one), the gradient is taken by ``backward()`` with respect to the leaf parameters the inputs were computed
from, and a tensor that must not carry gradient (a return, a reward, a baseline) is given ``requires_grad=True``
so that a loss that forgets to detach it is caught: gradient reaches it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from solutions import language_model as ref_lm
from solutions import policy_gradients as ref

from ._autograd import gradient, judge_loss
from ._harness import Case, Failure, Score, compare_arrays, hidden_rng, run_check

__all__ = [
    "POINTS",
    "check_advantages_and_value_loss",
    "check_grad_log_softmax_policy",
    "check_reinforce_loss",
    "check_reward_to_go",
    "check_sequence_log_probs",
    "check_sequence_reinforce_loss",
    "check_short_corridor_value",
]

#: Points of each exercise; the test cells' nbgrader metadata must agree (a test checks it).
POINTS = {
    "reward_to_go": 1,
    "grad_log_softmax_policy": 1,
    "short_corridor_value": 1,
    "reinforce_loss": 2,
    "advantages_and_value_loss": 2,
    "sequence_log_probs": 2,
    "sequence_reinforce_loss": 2,
}

#: The arguments each exercise gets as they are (see ``run_check``): the torch inputs, which each case builds
#: afresh for every call and whose gradients it inspects (a deep copy would be a new leaf, cut from the graph).
_PASSED_AS_IS = {
    "reinforce_loss": ("log_probs", "returns"),
    "advantages_and_value_loss": ("returns", "values"),
    "sequence_log_probs": ("logits", "tokens", "completion_mask"),
    "sequence_reinforce_loss": ("seq_log_probs", "rewards"),
}


def _scored(name: str, fn, cases: list[Case]) -> Score:
    return run_check(name, fn, cases, POINTS[name], passed_as_is=_PASSED_AS_IS.get(name, ()))


# -------------------------------------------------------------------------------------------------- reward-to-go


def _episodes(episode_ends: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each episode laid end to end, from the mask of last steps."""
    stops = np.flatnonzero(episode_ends) + 1
    starts = np.concatenate([[0], stops[:-1]])
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _rtg_per_episode(rewards, episode_ends, weights) -> np.ndarray:
    """G_t = sum over k in t's episode of ``weights(t, k, start, stop)`` * r_k (the shape every variant shares)."""
    r = np.asarray(rewards, dtype=float)
    out = np.zeros(len(r))
    for start, stop in _episodes(np.asarray(episode_ends, dtype=bool)):
        for t in range(start, stop):
            out[t] = sum(weights(t, k, start) * r[k] for k in range(start, stop))
    return out


def _bug_rtg_across_episodes(rewards, gamma, episode_ends):
    ends = np.zeros(len(rewards), dtype=bool)
    ends[-1] = True
    return ref.reward_to_go(np.asarray(rewards, dtype=float), gamma, ends)


def _bug_rtg_gamma_from_start(rewards, gamma, episode_ends):
    return _rtg_per_episode(rewards, episode_ends, lambda t, k, start: gamma ** (k - start) if k >= t else 0.0)


def _bug_rtg_whole_episode(rewards, gamma, episode_ends):
    return _rtg_per_episode(rewards, episode_ends, lambda t, k, start: gamma ** (k - start))


def _bug_rtg_up_to_t(rewards, gamma, episode_ends):
    return _rtg_per_episode(rewards, episode_ends, lambda t, k, start: gamma ** (t - k) if k <= t else 0.0)


def _bug_rtg_first_discounted(rewards, gamma, episode_ends):
    return gamma * ref.reward_to_go(np.asarray(rewards, dtype=float), gamma, np.asarray(episode_ends, dtype=bool))


def _bug_rtg_ends_as_starts(rewards, gamma, episode_ends):
    """The flags read as "first step of the next episode": each cut one step early."""
    ends = np.append(np.asarray(episode_ends, dtype=bool)[1:], True)
    return ref.reward_to_go(np.asarray(rewards, dtype=float), gamma, ends)


_RTG_BUGS = [
    (_bug_rtg_across_episodes, "restart the sum at each episode's end: G_t adds the rewards of its own episode "
     "only, never the next episode's (episode_ends[t] is True on the last step of an episode)"),
    (_bug_rtg_gamma_from_start, "discount from time t: G_t = r_t + gamma r_(t+1) + ..., the weight of r_k is "
     "gamma^(k - t), not gamma^k counted from the start of the episode"),
    (_bug_rtg_whole_episode, "reward-to-go sums the rewards from t to the end of the episode; you gave every step "
     "the return of the whole episode"),
    (_bug_rtg_up_to_t, "sum the rewards from t *to the end* of the episode (loop backwards: G_t = r_t + "
     "gamma G_(t+1)), not from its start up to t"),
    (_bug_rtg_first_discounted, "the first reward is not discounted: G_t = r_t + gamma r_(t+1) + ..., with "
     "weight 1 on r_t"),
    (_bug_rtg_ends_as_starts, "episode_ends[t] is True on the *last* step of an episode, not on the first step "
     "of the next one: cut the sum after that step"),
]


def _rtg_case(name, rewards, gamma, episode_ends, as_lists=False) -> Case:
    rewards = np.asarray(rewards, dtype=float)
    episode_ends = np.asarray(episode_ends, dtype=bool)

    def run(fn):
        expected = ref.reward_to_go(rewards.copy(), gamma, episode_ends.copy())
        args = (rewards.tolist(), gamma, episode_ends.tolist()) if as_lists else (rewards.copy(), gamma,
                                                                                   episode_ends.copy())
        got = fn(*args)
        diagnoses = [(bug(rewards, gamma, episode_ends), hint) for bug, hint in _RTG_BUGS]
        return compare_arrays(got, expected, atol=1e-9, what="G", diagnoses=diagnoses)

    return Case(name, run, inputs={"rewards": rewards, "gamma": gamma, "episode_ends": episode_ends},
                size=len(rewards))


def _random_ends(rng, T: int) -> np.ndarray:
    ends = rng.random(T) < 0.25
    ends[-1] = True
    return ends


def check_reward_to_go(fn, hidden: bool = False) -> Score:
    """Check ``reward_to_go(rewards, gamma, episode_ends) -> np.ndarray`` (Chapter 4, reward-to-go)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(4):
            T = int(rng.integers(5, 40))
            gamma = [float(rng.uniform(0.5, 0.99)), 1.0, float(rng.uniform(0.5, 0.99)), 0.0][i]
            cases.append(_rtg_case(f"random batch #{i + 1} ({T} steps, gamma = {gamma:.3g})",
                                   rng.normal(size=T).round(2), gamma, _random_ends(rng, T), as_lists=i == 2))
        return _scored("reward_to_go", fn, cases)
    rng = np.random.default_rng(4)
    cases = [
        _rtg_case("one episode of three rewards of 1, gamma = 0.9: G = [2.71, 1.9, 1]", [1.0, 1.0, 1.0], 0.9,
                  [False, False, True]),
        _rtg_case("two episodes laid end to end: [1, 2 | 3, 4], gamma = 0.5: G = [2, 2, 5, 4]",
                  [1.0, 2.0, 3.0, 4.0], 0.5, [False, True, False, True]),
        _rtg_case("episodes of one step each: G_t = r_t", [3.0, -1.0, 2.0], 0.9, [True, True, True]),
        _rtg_case("CartPole-like: +1 per step, two episodes, gamma = 0.99", np.ones(7), 0.99,
                  [False, False, True, False, False, False, True]),
        _rtg_case("random rewards, 30 steps, several episodes, gamma = 0.95", rng.normal(size=30).round(2), 0.95,
                  _random_ends(rng, 30)),
        _rtg_case("the same given as Python lists", rng.normal(size=12).round(2), 0.8, _random_ends(rng, 12),
                  as_lists=True),
    ]
    return _scored("reward_to_go", fn, cases)


# ------------------------------------------------------------------------------- gradient of log softmax policy


def _softmax(h: np.ndarray) -> np.ndarray:
    z = np.exp(h - h.max())
    return z / z.sum()


def _bug_grad_log_pi(theta, x, a, *, kind):
    theta, x = np.asarray(theta, dtype=float), np.asarray(x, dtype=float)
    pi = _softmax(x @ theta)
    if kind == "no_expectation":
        return x[a].copy()
    if kind == "sign":
        return pi @ x - x[a]
    if kind == "unweighted":
        return x[a] - x.mean(axis=0)
    if kind == "grad_pi":
        return pi[a] * (x[a] - pi @ x)
    if kind == "unnormalised":
        return x[a] - np.exp(x @ theta) @ x
    raise ValueError(kind)


_GRAD_LOG_PI_BUGS = [
    ("no_expectation", "subtract the features the policy expects, sum_b pi(b|s) x(s, b): the gradient of "
     "ln pi(a|s) is x(s, a) minus that average (S&B eq. 13.9)"),
    ("sign", "the sign is reversed: x(s, a) - sum_b pi(b|s) x(s, b), the chosen action's features minus the "
     "average"),
    ("unweighted", "average the features with the policy's probabilities pi(b|s, theta), not equally over the "
     "actions"),
    ("grad_pi", "that is the gradient of pi(a|s), not of ln pi(a|s): divide by pi(a|s) (eq. 13.9 has no "
     "pi(a|s) factor)"),
    ("unnormalised", "normalise the exponentiated preferences: pi(b|s) = exp(h_b) / sum_c exp(h_c)"),
]


def _grad_log_pi_case(name, theta, x, a) -> Case:
    theta, x = np.asarray(theta, dtype=float), np.asarray(x, dtype=float)

    def run(fn):
        expected = ref.grad_log_softmax_policy(theta.copy(), x.copy(), a)
        got = fn(theta.copy(), x.copy(), a)
        diagnoses = [(_bug_grad_log_pi(theta, x, a, kind=kind), hint) for kind, hint in _GRAD_LOG_PI_BUGS]
        return compare_arrays(got, expected, atol=1e-9, what="grad ln pi(a|s)", diagnoses=diagnoses)

    return Case(name, run, inputs={"theta": theta, "x": x, "a": a}, size=x.size)


def check_grad_log_softmax_policy(fn, hidden: bool = False) -> Score:
    """Check ``grad_log_softmax_policy(theta, x, a) -> np.ndarray`` (Sutton & Barto 2018, eq. 13.9)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(4):
            A, d = int(rng.integers(2, 6)), int(rng.integers(2, 7))
            cases.append(_grad_log_pi_case(f"random features #{i + 1} ({A} actions, d = {d})",
                                           rng.normal(size=d).round(2), rng.normal(size=(A, d)).round(2),
                                           int(rng.integers(A))))
        return _scored("grad_log_softmax_policy", fn, cases)
    rng = np.random.default_rng(13)
    corridor = ref.SHORT_CORRIDOR_FEATURES
    cases = [
        _grad_log_pi_case("short corridor features, theta = [0, 0], action right", [0.0, 0.0], corridor, 1),
        _grad_log_pi_case("short corridor features, theta = [1.5, -0.5], action left", [1.5, -0.5], corridor, 0),
        _grad_log_pi_case("three actions, d = 4", rng.normal(size=4).round(2), rng.normal(size=(3, 4)).round(2), 2),
        _grad_log_pi_case("large preferences (softmax must not overflow): theta = [800, -800]", [800.0, -800.0],
                          np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]), 1),
        _grad_log_pi_case("five actions, d = 3", rng.normal(size=3).round(2), rng.normal(size=(5, 3)).round(2), 0),
    ]
    return _scored("grad_log_softmax_policy", fn, cases)


# ----------------------------------------------------------------------------------------- short corridor value


def _corridor_values(p_right: float, gamma: float, *, switched=(1,), reward=-1.0) -> np.ndarray:
    """v_pi of the three non-terminal states of a corridor whose actions are switched in ``switched``."""
    A = np.eye(3)
    b = np.full(3, reward)
    for s in range(3):
        right, left = min(s + 1, 3), max(s - 1, 0)
        if s in switched:
            right, left = left, right
        for next_state, prob in ((right, p_right), (left, 1.0 - p_right)):
            if next_state < 3:
                A[s, next_state] -= gamma * prob
    return np.linalg.solve(A, b)


_CORRIDOR_BUGS = [
    (lambda p, g: _corridor_values(p, g, switched=())[0], "in state 1 the actions are switched: right moves "
     "left and left moves right (that is why no deterministic policy reaches the goal)"),
    (lambda p, g: _corridor_values(1 - p, g)[0], "p_right is the probability of choosing *right*; you used it "
     "for left"),
    (lambda p, g: -_corridor_values(p, g)[0], "every step gives reward -1, so J is negative: the expected "
     "number of steps to the goal, with a minus sign"),
    (lambda p, g: _corridor_values(p, g)[1], "J(theta) is the value of the start state, v(S_0) with S_0 the "
     "leftmost state, not of the middle one"),
    (lambda p, g: _corridor_values(p, 1.0)[0], "discount with the gamma passed in"),
]


def _corridor_case(name, p_right, gamma=None) -> Case:
    def run(fn):
        g = 1.0 if gamma is None else gamma
        expected = ref.short_corridor_value(p_right, g)
        got = fn(p_right) if gamma is None else fn(p_right, gamma)
        diagnoses = []
        for bug, hint in _CORRIDOR_BUGS:
            try:
                diagnoses.append((bug(p_right, g), hint))
            except np.linalg.LinAlgError:
                pass
        return compare_arrays(got, expected, atol=1e-7, what="J", diagnoses=diagnoses)

    inputs = {"p_right": p_right} if gamma is None else {"p_right": p_right, "gamma": gamma}
    return Case(name, run, inputs=inputs, size=1)


def check_short_corridor_value(fn, hidden: bool = False) -> Score:
    """Check ``short_corridor_value(p_right, gamma=1.0) -> float`` (Sutton & Barto 2018, Example 13.1)."""
    if hidden:
        rng = hidden_rng()
        cases = [_corridor_case(f"random p_right = {p:.4f}", p) for p in rng.uniform(0.05, 0.95, size=3).round(4)]
        cases += [_corridor_case(f"random p_right = {p:.4f}, gamma = {g:.3f}", p, g)
                  for p, g in zip(rng.uniform(0.05, 0.95, size=2).round(4), rng.uniform(0.5, 0.99, size=2).round(3),
                                  strict=True)]
        return _scored("short_corridor_value", fn, cases)
    best = 2 - math.sqrt(2)
    cases = [
        _corridor_case("p_right = 0.5", 0.5),
        _corridor_case(f"the best p_right = 2 - sqrt(2) = {best:.4f}: J = -11.657 (S&B Example 13.1)", best),
        _corridor_case("p_right = 0.1 (almost always left)", 0.1),
        _corridor_case("p_right = 0.95 (almost always right)", 0.95),
        _corridor_case("p_right = 0.5, gamma = 0.9", 0.5, 0.9),
    ]
    return _scored("short_corridor_value", fn, cases)


# -------------------------------------------------------------------------------------------------- REINFORCE loss


def _reinforce_inputs(seed: int, T: int, A: int):
    """Fresh tensors for one call: logits (leaf), log_probs of the actions taken, returns (requires_grad)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(T, A, generator=g, dtype=torch.float64).requires_grad_(True)
    actions = torch.randint(A, (T,), generator=g)
    returns = (torch.randn(T, generator=g, dtype=torch.float64) * 5 + 3).requires_grad_(True)
    log_probs = torch.log_softmax(logits, dim=1).gather(1, actions[:, None]).squeeze(1)
    return logits, log_probs, returns


def _reinforce_bugs(seed, T, A, n_episodes):
    def loss(kind):
        _, lp, G = _reinforce_inputs(seed, T, A)
        if kind == "sign":
            return (lp * G.detach()).sum() / n_episodes
        if kind == "mean_steps":
            return -(lp * G.detach()).mean()
        if kind == "sum":
            return -(lp * G.detach()).sum()
        if kind == "probs":
            return -(lp.exp() * G.detach()).sum() / n_episodes
        raise ValueError(kind)

    return [
        (loss("sign"), "minimise the *negative* of the objective: gradient descent on -sum G log pi climbs J"),
        (loss("mean_steps"), "divide by the number of episodes n_episodes (the Monte Carlo average of the "
         "episodes' sums), not by the number of steps T (that is .mean() over the steps)"),
        (loss("sum"), "divide the sum by n_episodes: the estimate of the gradient is an average over episodes"),
        (loss("probs"), "weight the log-probabilities log pi(A_t|S_t), not the probabilities"),
    ]


def _reinforce_case(name, seed, T, A, n_episodes) -> Case:
    def run(fn):
        logits, log_probs, returns = _reinforce_inputs(seed, T, A)
        got = fn(log_probs, returns, n_episodes)
        ref_logits, ref_log_probs, ref_returns = _reinforce_inputs(seed, T, A)
        expected = ref.reinforce_loss(ref_log_probs, ref_returns, n_episodes)
        return judge_loss(got, expected, [logits], [ref_logits], _reinforce_bugs(seed, T, A, n_episodes),
                           detach_leaf=(returns, "the returns"),
                           detach_hint="detach the returns (returns.detach()): they are weights, constants of the "
                           "gradient; only log pi(A_t|S_t, theta) depends on theta")

    return Case(name, run, size=T, inputs={
        "log_probs": f"float64 ({T},): log pi(A_t|S_t) of random actions under random logits "
                     f"(torch.manual_seed-like generator seeded {seed}), with gradient",
        "returns": f"float64 ({T},), requires_grad=True (to see whether you detach them)", "n_episodes": n_episodes})


def check_reinforce_loss(fn, hidden: bool = False) -> Score:
    """Check ``reinforce_loss(log_probs, returns, n_episodes) -> torch.Tensor`` (Williams 1992; Chapter 4)."""
    if hidden:
        rng = hidden_rng()
        cases = [_reinforce_case(f"random batch #{i + 1}", int(rng.integers(2**31)), int(rng.integers(5, 80)),
                                 int(rng.integers(2, 5)), int(rng.integers(1, 9))) for i in range(3)]
        return _scored("reinforce_loss", fn, cases)
    cases = [
        _reinforce_case("12 steps from 3 episodes, 2 actions", 0, 12, 2, 3),
        _reinforce_case("one episode of 5 steps, 4 actions", 1, 5, 4, 1),
        _reinforce_case("a CartPole-sized batch: 200 steps from 8 episodes", 2, 200, 2, 8),
    ]
    return _scored("reinforce_loss", fn, cases)


# ----------------------------------------------------------------------------------- advantages and value loss


def _baseline_inputs(seed: int, T: int):
    """Fresh tensors for one call: the value head's weights (leaf), values computed from them, returns."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(T, 3, generator=g, dtype=torch.float64)
    w = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_(True)
    values = features @ w
    returns = torch.randn(T, generator=g, dtype=torch.float64) * 4 + 2
    return w, values, returns


def _baseline_bugs(seed, T):
    def pair(kind):
        _, v, G = _baseline_inputs(seed, T)
        if kind == "half":
            return 0.5 * ((v - G) ** 2).mean()
        if kind == "sum":
            return ((v - G) ** 2).sum()
        if kind == "sqrt":
            return ((v - G) ** 2).mean().sqrt()
        if kind == "abs":
            return (v - G).abs().mean()
        raise ValueError(kind)

    return [
        (pair("half"), "use the plain mean squared error, mean((V - G)^2), without the factor 1/2"),
        (pair("sum"), "average the squared errors over the steps (.mean()), do not sum them"),
        (pair("sqrt"), "the value loss is the mean squared error, not its square root"),
        (pair("abs"), "square the errors: mean((V - G)^2), not mean(|V - G|)"),
    ]


_HINT_ADVANTAGE_SIGN = "the advantage is the return minus the baseline, G_t - V(S_t), not V(S_t) - G_t"
_HINT_ADVANTAGE_GRAD = ("detach the values in the advantages (returns - values.detach()): the policy's loss must "
                        "not train the critic")


def _baseline_case(name, seed, T) -> Case:
    def run(fn):
        w, values, returns = _baseline_inputs(seed, T)
        result = fn(returns, values)
        if not (isinstance(result, tuple) and len(result) == 2):
            return f"return a pair (advantages, value_loss); got {type(result).__name__}"
        advantages, value_loss = result
        ref_w, ref_values, ref_returns = _baseline_inputs(seed, T)
        expected_adv, expected_loss = ref.advantages_and_value_loss(ref_returns, ref_values)
        if not isinstance(advantages, torch.Tensor):
            return f"advantages should be a torch tensor; got {type(advantages).__name__}"
        problem = compare_arrays(advantages.detach(), expected_adv.detach(), atol=1e-9, what="advantages",
                                 diagnoses=[(-expected_adv.detach(), _HINT_ADVANTAGE_SIGN)])
        if problem:
            return problem
        if advantages.requires_grad and gradient(advantages.sum(), [w]) is not None and \
                np.any(gradient(advantages.sum(), [w]) != 0):
            return Failure("the advantages carry gradient to the value network", hints=[_HINT_ADVANTAGE_GRAD],
                           expected="no gradient", got="a gradient", what="advantages")
        return judge_loss(value_loss, expected_loss, [w], [ref_w], _baseline_bugs(seed, T), what="the value loss")

    return Case(name, run, size=T, inputs={
        "returns": f"float64 ({T},)",
        "values": f"float64 ({T},): a linear value function of random features (seed {seed}), with gradient"})


def check_advantages_and_value_loss(fn, hidden: bool = False) -> Score:
    """Check ``advantages_and_value_loss(returns, values) -> (advantages, value_loss)`` (Chapter 4, baselines)."""
    if hidden:
        rng = hidden_rng()
        cases = [_baseline_case(f"random batch #{i + 1}", int(rng.integers(2**31)), int(rng.integers(4, 90)))
                 for i in range(3)]
        return _scored("advantages_and_value_loss", fn, cases)
    cases = [
        _baseline_case("6 steps", 0, 6),
        _baseline_case("one step", 1, 1),
        _baseline_case("a CartPole-sized batch of 300 steps", 2, 300),
    ]
    return _scored("advantages_and_value_loss", fn, cases)


# ------------------------------------------------------------------------------------ sequence log-probabilities


def _sequence_inputs(seed: int, B: int, L: int, V: int, prompt_lengths, completion_lengths):
    """Fresh tensors for one call: logits (leaf, with gradient), tokens, and the completion mask.

    Row b holds left padding, then a prompt of ``prompt_lengths[b]`` tokens, then ``completion_lengths[b]``
    completion tokens, then right padding (token 0), as the sampler lays them out.
    """
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, L, V, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    tokens = torch.randint(1, V, (B, L), generator=g)
    mask = torch.zeros(B, L, dtype=torch.bool)
    start = max(prompt_lengths)
    for b in range(B):
        tokens[b, : start - prompt_lengths[b]] = 0
        mask[b, start: start + completion_lengths[b]] = True
        tokens[b, start + completion_lengths[b]:] = 0
    return logits, tokens, mask


def _token_log_probs(logits, tokens, shift: bool = True):
    """log p(token t) at each position: from the logits at t - 1 (``shift``, position 0 gets 0) or, wrongly, at t."""
    log_p = torch.log_softmax(logits, dim=-1)
    if not shift:
        return log_p.gather(2, tokens[:, :, None]).squeeze(2)
    return torch.cat([torch.zeros(tokens.shape[0], 1, dtype=logits.dtype),
                      log_p[:, :-1].gather(2, tokens[:, 1:, None]).squeeze(2)], dim=1)


def _sequence_bugs(seed, B, L, V, prompts, completions, attention):
    def value(kind):
        logits, tokens, mask = _sequence_inputs(seed, B, L, V, prompts, completions)
        if kind == "no_shift":
            return (_token_log_probs(logits, tokens, shift=False) * mask).sum(1)
        if kind == "prompt":
            return (_token_log_probs(logits, tokens) * attention).sum(1)
        if kind == "all":
            return _token_log_probs(logits, tokens).sum(1)
        if kind == "raw":
            raw = torch.cat([torch.zeros(B, 1, dtype=logits.dtype),
                             logits[:, :-1].gather(2, tokens[:, 1:, None]).squeeze(2)], dim=1)
            return (raw * mask).sum(1)
        if kind == "mean":
            return (_token_log_probs(logits, tokens) * mask).sum(1) / mask.sum(1).clamp(min=1)
        if kind == "prob":
            return (_token_log_probs(logits, tokens).exp() * mask).sum(1)
        raise ValueError(kind)

    return [
        (value("no_shift"), "the logits at position t - 1 predict token t: take log_softmax(logits[:, :-1]) and "
         "gather tokens[:, 1:] (the logits at t already look at token t)"),
        (value("prompt"), "sum over the completion tokens only (completion_mask): the prompt was given, not "
         "chosen by the policy"),
        (value("all"), "multiply by completion_mask: prompt and padding tokens are not part of the completion"),
        (value("raw"), "take log_softmax of the logits first: a logit is not a log-probability"),
        (value("mean"), "sum the token log-probabilities (the log of a product), do not average them"),
        (value("prob"), "sum log-probabilities, not probabilities"),
    ]


def _sequence_case(name, seed, B, L, V, prompts, completions) -> Case:
    def run(fn):
        logits, tokens, mask = _sequence_inputs(seed, B, L, V, prompts, completions)
        got = fn(logits, tokens, mask)
        ref_logits, ref_tokens, ref_mask = _sequence_inputs(seed, B, L, V, prompts, completions)
        expected = ref_lm.sequence_log_probs(ref_logits, ref_tokens, ref_mask)
        if not isinstance(got, torch.Tensor):
            return f"return a torch tensor of shape ({B},); got {type(got).__name__}"
        attention = (ref_tokens != 0) | ref_mask
        bugs = _sequence_bugs(seed, B, L, V, prompts, completions, attention)
        problem = compare_arrays(got.detach(), expected.detach(), atol=1e-7, what="log p(completion)",
                                 diagnoses=[(b.detach(), hint) for b, hint in bugs])
        if problem:
            return problem
        if not got.requires_grad:
            return Failure("the result carries no gradient: keep it attached to the logits (no .item(), "
                           "torch.tensor(...) or .detach())", expected=expected.detach(), got=got.detach(),
                           what="log p(completion)")
        weights = torch.linspace(1.0, 2.0, B, dtype=torch.float64)  # a loss that weighs the rows differently
        return compare_arrays(gradient((got * weights).sum(), [logits]),
                              gradient((expected * weights).sum(), [ref_logits]), atol=1e-7,
                              what="the gradient with respect to the logits")

    return Case(name, run, size=B * L, inputs={
        "logits": f"float64 ({B}, {L}, {V}), random, with gradient (seed {seed})",
        "tokens": f"int64 ({B}, {L}): left padding (0), prompts of {list(prompts)} tokens, completions of "
                  f"{list(completions)} tokens, right padding (0)",
        "completion_mask": f"bool ({B}, {L}), True on the completion tokens"})


def check_sequence_log_probs(fn, hidden: bool = False) -> Score:
    """Check ``sequence_log_probs(logits, tokens, completion_mask) -> torch.Tensor`` of shape (B,) (Chapter 4)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(3):
            B, V = int(rng.integers(2, 6)), int(rng.integers(5, 30))
            prompts = [int(p) for p in rng.integers(1, 6, size=B)]
            completions = [int(c) for c in rng.integers(1, 8, size=B)]
            L = max(prompts) + max(completions) + int(rng.integers(0, 3))
            cases.append(_sequence_case(f"random batch #{i + 1} ({B} sequences, vocabulary of {V})",
                                        int(rng.integers(2**31)), B, L, V, prompts, completions))
        return _scored("sequence_log_probs", fn, cases)
    cases = [
        _sequence_case("one sequence: 2 prompt tokens, 3 completion tokens, vocabulary of 5", 0, 1, 5, 5, [2], [3]),
        _sequence_case("4 sequences with prompts of 1-3 tokens (left-padded) and completions of 1-4 tokens", 1, 4,
                       8, 11, [3, 1, 2, 3], [4, 1, 3, 2]),
        _sequence_case("8 sequences, vocabulary of 40, trailing padding after early <eos>", 2, 8, 12, 40,
                       [3, 3, 2, 1, 3, 2, 3, 3], [6, 2, 9, 4, 1, 7, 3, 5]),
    ]
    return _scored("sequence_log_probs", fn, cases)


# ------------------------------------------------------------------------------------ REINFORCE for sequences


def _sequence_loss_inputs(seed: int, n: int, binary: bool):
    """Fresh tensors for one call: a parameter per sequence (leaf), seq_log_probs from it, rewards (with grad)."""
    g = torch.Generator().manual_seed(seed)
    theta = (torch.randn(n, generator=g, dtype=torch.float64) - 8).requires_grad_(True)
    seq_log_probs = -torch.nn.functional.softplus(-theta) * 3  # negative, as log-probabilities are
    raw = torch.randint(0, 2, (n,), generator=g).double() if binary else torch.randn(n, generator=g,
                                                                                    dtype=torch.float64) * 2
    rewards = raw.requires_grad_(True)
    return theta, seq_log_probs, rewards


def _sequence_loss_bugs(seed, n, binary):
    def loss(kind):
        _, lp, r = _sequence_loss_inputs(seed, n, binary)
        r = r.detach()
        if kind == "no_baseline":
            return -(r * lp).mean()
        if kind == "sign":
            return ((r - r.mean()) * lp).mean()
        if kind == "sum":
            return -((r - r.mean()) * lp).sum()
        if kind == "std":
            return -((r - r.mean()) / (r.std() + 1e-8) * lp).mean()
        if kind == "loo":
            baseline = (r.sum() - r) / max(n - 1, 1)
            return -((r - baseline) * lp).mean()
        raise ValueError(kind)

    return [
        (loss("no_baseline"), "subtract the baseline, the mean reward of the batch: (rewards - rewards.mean())"),
        (loss("sign"), "minimise the *negative* of the objective: -mean((R - b) log p)"),
        (loss("sum"), "average over the sequences (.mean()), do not sum"),
        (loss("std"), "subtract the mean reward only; dividing by the standard deviation is GRPO's normalisation "
         "(Chapter 5), not this exercise's"),
        (loss("loo"), "the baseline is the mean reward of the whole batch, the sequence's own reward included"),
    ]


def _sequence_loss_case(name, seed, n, binary=False) -> Case:
    def run(fn):
        theta, seq_log_probs, rewards = _sequence_loss_inputs(seed, n, binary)
        got = fn(seq_log_probs, rewards)
        ref_theta, ref_lp, ref_rewards = _sequence_loss_inputs(seed, n, binary)
        expected = ref_lm.sequence_reinforce_loss(ref_lp, ref_rewards)
        return judge_loss(got, expected, [theta], [ref_theta], _sequence_loss_bugs(seed, n, binary),
                           detach_leaf=(rewards, "the rewards"),
                           detach_hint="detach the rewards and the baseline ((rewards - rewards.mean()).detach()): "
                           "a reward model's output must not be trained by the policy's loss")

    return Case(name, run, size=n, inputs={
        "seq_log_probs": f"float64 ({n},), negative, with gradient (seed {seed})",
        "rewards": f"float64 ({n},) {'of 0 and 1' if binary else 'random'}, requires_grad=True (to see whether "
                   "you detach them)"})


def check_sequence_reinforce_loss(fn, hidden: bool = False) -> Score:
    """Check ``sequence_reinforce_loss(seq_log_probs, rewards) -> torch.Tensor`` (Chapter 4)."""
    if hidden:
        rng = hidden_rng()
        cases = [_sequence_loss_case(f"random batch #{i + 1}", int(rng.integers(2**31)), int(rng.integers(3, 40)),
                                     binary=i == 1) for i in range(3)]
        return _scored("sequence_reinforce_loss", fn, cases)
    cases = [
        _sequence_loss_case("4 completions with random rewards", 0, 4),
        _sequence_loss_case("16 completions with rewards 0 or 1 (a verifiable reward)", 1, 16, binary=True),
        _sequence_loss_case("64 completions", 2, 64),
    ]
    return _scored("sequence_reinforce_loss", fn, cases)
