"""Checks for Chapter 5 (PPO and GRPO).

Each ``check_<exercise>(fn, hidden=False)`` runs the student's ``fn`` on worked cases and fixed random instances,
compares it with the reference in :mod:`solutions.ppo` or :mod:`solutions.grpo`, prints one line per case and
returns a :class:`~autograder.checks._harness.Score`. ``hidden=True`` runs only instances drawn from
:func:`~autograder.checks._harness.hidden_rng`.

As in Chapter 4, every known mistake (an inverted ratio, max instead of min, the advantage clipped instead of the
ratio, a missing minus sign, GAE carried across an episode's end, a truncated episode bootstrapped with 0, the
batch mean used where the group's was asked for, the wrong token count...) is computed on each case's own inputs,
and a failing case lists the mistakes it reproduces; a hint is printed only when it explains every failing case.

The torch exercises are judged by value and by gradient (:mod:`autograder.checks._autograd`): tensors are built
afresh for each call from the case's seed, and the inputs that must be constants of the gradient (old and
reference log-probabilities, advantages, old values, returns) are given ``requires_grad=True`` so that a loss that
forgets to detach them is caught.
"""

from __future__ import annotations

import numpy as np
import torch

from solutions import grpo as ref_grpo
from solutions import ppo as ref

from ._autograd import judge_loss, judge_tensor
from ._harness import Case, Score, compare_arrays, hidden_rng, run_check

__all__ = [
    "POINTS",
    "check_clipped_value_loss",
    "check_gae",
    "check_group_advantages",
    "check_grpo_loss",
    "check_importance_ratio",
    "check_kl_k3",
    "check_ppo_clip_loss",
]

#: Points of each exercise; the test cells' nbgrader metadata must agree (a test checks it).
POINTS = {
    "importance_ratio": 1,
    "ppo_clip_loss": 2,
    "clipped_value_loss": 1,
    "gae": 2,
    "group_advantages": 2,
    "kl_k3": 1,
    "grpo_loss": 3,
}

#: The torch inputs each case builds afresh for every call and whose gradients it inspects (passed as they are:
#: a deep copy would be a new leaf, cut from the graph).
_PASSED_AS_IS = {
    "importance_ratio": ("log_probs", "old_log_probs"),
    "ppo_clip_loss": ("log_probs", "old_log_probs", "advantages"),
    "clipped_value_loss": ("values", "old_values", "returns"),
    "kl_k3": ("log_probs", "ref_log_probs"),
    "grpo_loss": ("log_probs", "old_log_probs", "advantages", "completion_mask", "ref_log_probs"),
}


def _scored(name: str, fn, cases: list[Case]) -> Score:
    return run_check(name, fn, cases, POINTS[name], passed_as_is=_PASSED_AS_IS.get(name, ()))


_DTYPE_NAMES = {torch.float64: "float64", torch.float32: "float32"}

_HINT_DETACH_OLD = ("detach the old log-probabilities (old_log_probs.detach()): they were recorded when the batch "
                    "was collected and are constants; only log pi_theta depends on theta")
_HINT_DETACH_ADV = "detach the advantages: they are weights, constants of the gradient"
_HINT_DETACH_REF = ("detach the reference log-probabilities: the reference policy is frozen, the loss must not "
                    "train it")


# ------------------------------------------------------------------------------------ log-probabilities of a batch


def _policy_inputs(seed: int, shape: tuple[int, ...], *, n_actions: int = 3, shift: float = 0.5,
                   dtype=torch.float64, offset: float = 0.0):
    """Fresh tensors for one call: logits (leaf), ln pi_theta of the actions taken (with gradient), ln pi_old of
    the same actions under logits moved by ``shift`` (a leaf with ``requires_grad``, to see whether it is
    detached; ``shift = 0`` gives the on-policy case, old = current), advantages (leaf, ``requires_grad``).
    ``offset`` is added to both log-probabilities (very negative: probabilities that underflow)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, n_actions, generator=g, dtype=torch.float64)
    actions = torch.randint(n_actions, shape, generator=g)
    old_logits = logits + shift * torch.randn(*shape, n_actions, generator=g, dtype=torch.float64)
    advantages = (torch.randn(*shape, generator=g, dtype=torch.float64) * 2).to(dtype).requires_grad_(True)
    logits = logits.to(dtype).requires_grad_(True)
    log_probs = torch.log_softmax(logits, -1).gather(-1, actions[..., None]).squeeze(-1) + offset
    old = torch.log_softmax(old_logits, -1).gather(-1, actions[..., None]).squeeze(-1) + offset
    old_log_probs = old.to(dtype).requires_grad_(True)
    return logits, log_probs, old_log_probs, advantages


def _describe_policy_inputs(seed, shape, shift, dtype, offset=0.0) -> dict:
    name = _DTYPE_NAMES.get(dtype, str(dtype))
    extra = f", all about {offset:g} (probabilities that underflow to 0)" if offset else ""
    old = "equal to log_probs (on-policy)" if shift == 0 else "from logits moved by N(0, " f"{shift:g}^2) noise"
    return {"log_probs": f"{name} {shape}: log pi(a|s) of random actions under random logits (seed {seed}), with "
                         f"gradient{extra}",
            "old_log_probs": f"{name} {shape}, {old}, requires_grad=True (to see whether you detach them)"}


# ------------------------------------------------------------------------------------------------ importance ratio


def _ratio_bugs(lp, old):
    """The known mistakes on the reference's inputs (their gradients are compared with respect to its leaves)."""
    old = old.detach()
    return [
        (torch.exp(old - lp), "the ratio is pi_theta / pi_theta_old = exp(log_probs - old_log_probs): yours is "
         "inverted"),
        (lp - old, "exponentiate the difference: rho = exp(log pi_theta - log pi_theta_old); the difference "
         "itself is the log-ratio"),
        (lp / old, "divide the probabilities, not the log-probabilities: rho = exp(log_probs - old_log_probs)"),
        (torch.exp(lp) / torch.exp(old), "compute the ratio from the difference of the logs, exp(log_probs - "
         "old_log_probs): exp(log_probs) / exp(old_log_probs) is 0 / 0 when the probabilities underflow"),
    ]


def _ratio_case(name, seed, shape, *, shift=0.5, dtype=torch.float64, offset=0.0) -> Case:
    def make():
        return _policy_inputs(seed, shape, shift=shift, dtype=dtype, offset=offset)

    def run(fn):
        logits, log_probs, old_log_probs, _ = make()
        got = fn(log_probs, old_log_probs)
        ref_logits, ref_lp, ref_old, _ = make()
        expected = ref.importance_ratio(ref_lp, ref_old)
        weights = torch.linspace(0.5, 1.5, expected.numel(), dtype=torch.float64).reshape(expected.shape)
        return judge_tensor(got, expected, [logits], [ref_logits], _ratio_bugs(ref_lp, ref_old), what="rho",
                            weights=weights, detach=[(old_log_probs, "old_log_probs", _HINT_DETACH_OLD)],
                            atol=1e-9)

    return Case(name, run, inputs=_describe_policy_inputs(seed, shape, shift, dtype, offset),
                size=int(np.prod(shape)))


def check_importance_ratio(fn, hidden: bool = False) -> Score:
    """Check ``importance_ratio(log_probs, old_log_probs) -> torch.Tensor`` (Schulman et al. 2017, Section 3)."""
    if hidden:
        rng = hidden_rng()
        cases = [_ratio_case(f"random batch #{i + 1}", int(rng.integers(2**31)), (int(rng.integers(3, 60)),),
                             shift=float(rng.uniform(0.2, 1.0))) for i in range(2)]
        cases.append(_ratio_case("random batch of completions (B, L)", int(rng.integers(2**31)),
                                 (int(rng.integers(2, 6)), int(rng.integers(3, 9)))))
        return _scored("importance_ratio", fn, cases)
    cases = [
        _ratio_case("6 actions of a batch, the policy has moved a little since collection", 0, (6,)),
        _ratio_case("on-policy (old_log_probs = log_probs): every ratio is 1", 1, (5,), shift=0.0),
        _ratio_case("a batch of token log-probabilities (4, 7)", 2, (4, 7), shift=1.0),
        _ratio_case("long sequences: log-probabilities around -800 (exp underflows to 0)", 3, (5,), offset=-800.0),
        _ratio_case("float32 inputs", 4, (8,), dtype=torch.float32),
    ]
    return _scored("importance_ratio", fn, cases)


# ---------------------------------------------------------------------------------------------- PPO clipped loss


def _ppo_bugs(lp, old, A, cliprange):
    """The known mistakes on the reference's inputs (their gradients are compared with respect to its leaves)."""
    old, A = old.detach(), A.detach()

    def loss(kind):
        rho = torch.exp(lp - old)
        lo, hi = 1 - cliprange, 1 + cliprange
        if kind == "max":
            return -torch.max(rho * A, torch.clamp(rho, lo, hi) * A).mean()
        if kind == "clip_adv":
            return -torch.min(rho * A, rho * torch.clamp(A, lo, hi)).mean()
        if kind == "clip_adv_eps":
            return -torch.min(rho * A, rho * torch.clamp(A, -cliprange, cliprange)).mean()
        if kind == "sign":
            return torch.min(rho * A, torch.clamp(rho, lo, hi) * A).mean()
        if kind == "clipped_only":
            return -(torch.clamp(rho, lo, hi) * A).mean()
        if kind == "unclipped":
            return -(rho * A).mean()
        if kind == "inverted":
            inv = torch.exp(old - lp)
            return -torch.min(inv * A, torch.clamp(inv, lo, hi) * A).mean()
        if kind == "sum":
            return -torch.min(rho * A, torch.clamp(rho, lo, hi) * A).sum()
        if kind == "log_clip":
            return -torch.min(rho * A, torch.exp(torch.clamp(lp - old, -cliprange, cliprange)) * A).mean()
        raise ValueError(kind)

    return [
        (loss("max"), "take the minimum of the two terms, min(rho A, clip(rho) A): the pessimistic bound; the "
         "maximum rewards the moves the clip should stop"),
        (loss("clip_adv"), "clip the ratio rho to [1 - cliprange, 1 + cliprange], not the advantage"),
        (loss("clip_adv_eps"), "clip the ratio rho to [1 - cliprange, 1 + cliprange], not the advantage"),
        (loss("sign"), "minimise the *negative* of the clipped objective: loss = -mean(min(rho A, clip(rho) A))"),
        (loss("clipped_only"), "take the minimum of the unclipped term rho A and the clipped term clip(rho) A, "
         "not the clipped term alone"),
        (loss("unclipped"), "clip the ratio: the objective is min(rho A, clip(rho, 1 - cliprange, 1 + cliprange) "
         "A)"),
        (loss("inverted"), "the ratio is pi_theta / pi_theta_old = exp(log_probs - old_log_probs): yours is "
         "inverted"),
        (loss("sum"), "average over the samples (.mean()), do not sum"),
        (loss("log_clip"), "clip the ratio itself to [1 - cliprange, 1 + cliprange], not the log-ratio to "
         "[-cliprange, cliprange]"),
    ]


def _ppo_case(name, seed, T, *, cliprange=None, shift=0.5, n_actions=3, dtype=torch.float64) -> Case:
    c = 0.2 if cliprange is None else cliprange

    def make():
        return _policy_inputs(seed, (T,), n_actions=n_actions, shift=shift, dtype=dtype)

    def run(fn):
        logits, lp, old, A = make()
        got = fn(lp, old, A) if cliprange is None else fn(lp, old, A, cliprange)
        ref_logits, ref_lp, ref_old, ref_A = make()
        expected = ref.ppo_clip_loss(ref_lp, ref_old, ref_A, c)
        return judge_loss(got, expected, [logits], [ref_logits], _ppo_bugs(ref_lp, ref_old, ref_A, c),
                          detach=[(old, "old_log_probs", _HINT_DETACH_OLD),
                                  (A, "the advantages", _HINT_DETACH_ADV)])

    inputs = _describe_policy_inputs(seed, (T,), shift, dtype)
    inputs["advantages"] = f"({T},) random, both signs, requires_grad=True (to see whether you detach them)"
    inputs["cliprange"] = f"{c:g}" + (" (the default)" if cliprange is None else "")
    return Case(name, run, inputs=inputs, size=T)


def check_ppo_clip_loss(fn, hidden: bool = False) -> Score:
    """Check ``ppo_clip_loss(log_probs, old_log_probs, advantages, cliprange=0.2) -> torch.Tensor`` (Schulman et
    al. 2017, eq. 7)."""
    if hidden:
        rng = hidden_rng()
        cases = [_ppo_case(f"random batch #{i + 1}", int(rng.integers(2**31)), int(rng.integers(5, 120)),
                           cliprange=[None, round(float(rng.uniform(0.05, 0.3)), 3)][i % 2],
                           shift=float(rng.uniform(0.3, 1.0))) for i in range(3)]
        return _scored("ppo_clip_loss", fn, cases)
    cases = [
        _ppo_case("8 samples: ratios inside and outside [0.8, 1.2], advantages of both signs", 0, 8),
        _ppo_case("on-policy (old = current, every ratio 1): the loss is -mean(A), the policy-gradient surrogate",
                  1, 6, shift=0.0),
        _ppo_case("cliprange = 0.1, the policy far from the old one (most ratios clipped)", 2, 10, cliprange=0.1,
                  shift=1.5),
        _ppo_case("a CartPole minibatch: 256 samples, 2 actions", 3, 256, n_actions=2),
        _ppo_case("float32 inputs", 4, 12, dtype=torch.float32),
    ]
    return _scored("ppo_clip_loss", fn, cases)


# --------------------------------------------------------------------------------------------- clipped value loss


def _value_inputs(seed: int, T: int, move: float):
    """Fresh tensors: the value head's weights (leaf), V_w(S_t) from them, V_old (leaf, requires_grad) within
    about ``move`` of V_w, returns (leaf, requires_grad)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(T, 3, generator=g, dtype=torch.float64)
    w = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_(True)
    values = features @ w
    old_values = (values.detach() + move * torch.randn(T, generator=g, dtype=torch.float64)).requires_grad_(True)
    returns = (values.detach() + 2 * torch.randn(T, generator=g, dtype=torch.float64)).requires_grad_(True)
    return w, values, old_values, returns


def _value_bugs(V, old, G, c):
    """The known mistakes on the reference's inputs (their gradients are compared with respect to its leaves)."""
    old, G = old.detach(), G.detach()

    def loss(kind):
        clipped = old + torch.clamp(V - old, -c, c)
        if kind == "min":
            return torch.min((V - G) ** 2, (clipped - G) ** 2).mean()
        if kind == "half":
            return 0.5 * torch.max((V - G) ** 2, (clipped - G) ** 2).mean()
        if kind == "plain":
            return ((V - G) ** 2).mean()
        if kind == "clipped_only":
            return ((clipped - G) ** 2).mean()
        if kind == "around_returns":
            around = G + torch.clamp(V - G, -c, c)
            return torch.max((V - G) ** 2, (around - G) ** 2).mean()
        if kind == "ratio_style":
            ratio_clipped = torch.clamp(V, old * (1 - c), old * (1 + c))
            return torch.max((V - G) ** 2, (ratio_clipped - G) ** 2).mean()
        if kind == "sum":
            return torch.max((V - G) ** 2, (clipped - G) ** 2).sum()
        raise ValueError(kind)

    return [
        (loss("min"), "take the larger (max) of the two squared errors: the clipped value loss is pessimistic, "
         "like the policy's clipped objective"),
        (loss("half"), "use the plain mean of the squared errors, without the factor 1/2 (as the statement and "
         "Chapter 4's value loss)"),
        (loss("plain"), "clip the value: V_clip = V_old + clip(V - V_old, -cliprange_value, cliprange_value), "
         "and take the max of (V - G)^2 and (V_clip - G)^2"),
        (loss("clipped_only"), "take the max of the unclipped error (V - G)^2 and the clipped one (V_clip - G)^2, "
         "not the clipped one alone"),
        (loss("around_returns"), "clip the new value around the *old* value, V_old + clip(V - V_old, -c, c), not "
         "around the returns"),
        (loss("ratio_style"), "the value is clipped by an absolute amount, V_old + clip(V - V_old, -c, +c), not "
         "to [V_old (1 - c), V_old (1 + c)]"),
        (loss("sum"), "average over the samples (.mean()), do not sum"),
    ]


def _value_case(name, seed, T, *, move=0.5, cliprange_value=None) -> Case:
    c = 0.2 if cliprange_value is None else cliprange_value

    def make():
        return _value_inputs(seed, T, move)

    def run(fn):
        w, values, old_values, returns = make()
        args = (values, old_values, returns) + (() if cliprange_value is None else (cliprange_value,))
        got = fn(*args)
        ref_w, ref_V, ref_old, ref_G = make()
        expected = ref.clipped_value_loss(ref_V, ref_old, ref_G, c)
        hint = "detach {}: {} constants of the regression, only V_w(S_t) is trained"
        return judge_loss(got, expected, [w], [ref_w], _value_bugs(ref_V, ref_old, ref_G, c),
                          what="the value loss",
                          detach=[(old_values, "old_values", hint.format("old_values", "the old values are")),
                                  (returns, "the returns", hint.format("the returns", "the targets are"))])

    return Case(name, run, size=T, inputs={
        "values": f"float64 ({T},): a linear value function of random features (seed {seed}), with gradient",
        "old_values": f"float64 ({T},): values moved by N(0, {move:g}^2) noise, requires_grad=True",
        "returns": f"float64 ({T},), requires_grad=True", "cliprange_value": f"{c:g}"})


def check_clipped_value_loss(fn, hidden: bool = False) -> Score:
    """Check ``clipped_value_loss(values, old_values, returns, cliprange_value=0.2) -> torch.Tensor``."""
    if hidden:
        rng = hidden_rng()
        cases = [_value_case(f"random batch #{i + 1}", int(rng.integers(2**31)), int(rng.integers(5, 100)),
                             move=float(rng.uniform(0.2, 1.0)),
                             cliprange_value=[None, round(float(rng.uniform(0.1, 1.0)), 3)][i % 2])
                 for i in range(3)]
        return _scored("clipped_value_loss", fn, cases)
    cases = [
        _value_case("8 samples: some values moved more than 0.2 from the old ones", 0, 8),
        _value_case("no value moved more than cliprange_value: the plain mean squared error", 1, 6, move=0.01),
        _value_case("cliprange_value = 0.5", 2, 12, cliprange_value=0.5),
        _value_case("a minibatch of 256", 3, 256),
    ]
    return _scored("clipped_value_loss", fn, cases)


# ------------------------------------------------------------------------------------------------------------ GAE


def _gae_variant(rewards, values, next_values, terminated, truncated, gamma, lam, *, cut_terminated=True,
                 cut_truncated=True, bootstrap_truncated=True, zero_terminal=True, next_from_values=False,
                 carry_lam=True, carry_gamma=True, bootstrap_last=True) -> np.ndarray:
    """GAE with one of the known mistakes switched on (all defaults: the correct estimate)."""
    r, v = np.asarray(rewards, float), np.asarray(values, float)
    nv = np.asarray(next_values, float).copy()
    term, trunc = np.asarray(terminated, bool), np.asarray(truncated, bool)
    T = len(r)
    if next_from_values:
        nv[:-1] = np.where(term[:-1], nv[:-1], v[1:])
    if not bootstrap_last:
        nv[-1] = np.where(term[-1] | trunc[-1], nv[-1], 0.0)
    zero = term | (trunc if not bootstrap_truncated else np.zeros_like(trunc))
    if not zero_terminal:
        zero = np.zeros_like(term)
    cut = (term if cut_terminated else np.zeros_like(term)) | (trunc if cut_truncated else np.zeros_like(trunc))
    factor = (gamma if carry_gamma else 1.0) * (lam if carry_lam else 1.0)
    A = np.zeros_like(r)
    carried = np.zeros_like(r[0])
    for t in range(T - 1, -1, -1):
        delta = r[t] + gamma * (1.0 - zero[t]) * nv[t] - v[t]
        A[t] = delta + factor * (1.0 - cut[t]) * carried
        carried = A[t]
    return A


_GAE_BUGS = [
    (dict(bootstrap_truncated=False), "a truncated episode did not reach a terminal state: bootstrap delta_t from "
     "next_values[t], the value of its final observation; only terminated steps have V(S') = 0"),
    (dict(cut_terminated=False, cut_truncated=False), "stop the sum at the end of each episode: carry "
     "gamma * lam * A_(t+1) back only if step t neither terminated nor was truncated"),
    (dict(cut_terminated=False), "stop the sum where an episode terminates: A_(t+1) then belongs to the next "
     "episode"),
    (dict(cut_truncated=False), "a truncated step ends its episode too: do not carry A_(t+1), which belongs to "
     "the next episode, back into it"),
    (dict(zero_terminal=False), "a terminal state has value 0: delta_t = r_t - V(S_t) when terminated[t] "
     "(multiply gamma V(S') by 1 - terminated[t])"),
    (dict(next_from_values=True), "bootstrap from next_values[t], the value of the observation step t led to; "
     "after an episode ends, values[t + 1] is the first state of the next episode"),
    (dict(carry_lam=False), "carry gamma * lam * A_(t+1) back, not gamma * A_(t+1): lam is missing"),
    (dict(carry_gamma=False), "carry gamma * lam * A_(t+1) back, not lam * A_(t+1): gamma is missing"),
    (dict(bootstrap_last=False), "the rollout's last step bootstraps from next_values[-1] (unless it "
     "terminated): the episode goes on after the rollout"),
]


def _gae_case(name, rewards, values, next_values, terminated, truncated, gamma, lam, *, as_lists=False) -> Case:
    inputs = {"rewards": np.asarray(rewards, float), "values": np.asarray(values, float),
              "next_values": np.asarray(next_values, float), "terminated": np.asarray(terminated, bool),
              "truncated": np.asarray(truncated, bool), "gamma": gamma, "lam": lam}

    def run(fn):
        arrays = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in inputs.items()}
        expected = ref.gae(**arrays)
        given = {k: (v.tolist() if as_lists and isinstance(v, np.ndarray) else v) for k, v in arrays.items()}
        got = fn(given["rewards"], given["values"], given["next_values"], given["terminated"], given["truncated"],
                 gamma, lam)
        diagnoses = [(_gae_variant(**inputs, **flags), hint) for flags, hint in _GAE_BUGS]
        diagnoses.append((expected + inputs["values"], "return the advantages A_t, not the lambda-returns "
                          "A_t + V(S_t)"))
        return compare_arrays(got, expected, atol=1e-9, what="A", diagnoses=diagnoses)

    return Case(name, run, inputs=inputs, size=np.size(rewards))


def _random_rollout(rng, T: int, N: int | None, *, p_terminated=0.08, p_truncated=0.05):
    """A rollout as vector environments produce it: V(S_t), and next_values = V(S_(t+1)) except where an episode
    ended (then the value of its final observation, which the rollout's next state is not)."""
    shape = (T,) if N is None else (T, N)
    rewards = rng.normal(size=shape).round(2)
    values_ext = rng.normal(size=(T + 1,) + shape[1:]).round(2)
    terminated = rng.random(shape) < p_terminated
    truncated = ~terminated & (rng.random(shape) < p_truncated)
    next_values = values_ext[1:].copy()
    ended = terminated | truncated
    next_values[ended] = rng.normal(size=int(ended.sum())).round(2)
    return rewards, values_ext[:T], next_values, terminated, truncated


def check_gae(fn, hidden: bool = False) -> Score:
    """Check ``gae(rewards, values, next_values, terminated, truncated, gamma, lam) -> np.ndarray`` (Schulman et
    al. 2016, eq. 16, with terminated and truncated episodes)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i in range(4):
            T = int(rng.integers(6, 40))
            N = None if i % 2 == 0 else int(rng.integers(2, 6))
            gamma, lam = round(float(rng.uniform(0.8, 1.0)), 3), [0.0, 1.0, round(float(rng.uniform(0.5, 0.99)),
                                                                                    3)][i % 3]
            envs = "" if N is None else f" x {N} envs"
            cases.append(_gae_case(f"random rollout #{i + 1} ({T} steps{envs}, gamma = {gamma:g}, lam = {lam:g})",
                                   *_random_rollout(rng, T, N, p_truncated=0.1), gamma, lam, as_lists=i == 2))
        return _scored("gae", fn, cases)
    # one episode of three steps that terminates; the final state's value (ignored) is 7.0
    ep = dict(rewards=[1.0, 1.0, 1.0], values=[2.5, 1.8, 0.9], next_values=[1.8, 0.9, 7.0],
              terminated=[False, False, True], truncated=[False, False, False], gamma=0.9)
    rng = np.random.default_rng(5)
    # two episodes in one rollout: the first is truncated after step 2 (its final observation has value 4.0; the
    # next episode starts in a state of value 0.5), the second is still running when the rollout ends
    cut = dict(rewards=[1.0, 1.0, 1.0, 1.0, 1.0], values=[3.0, 2.8, 2.5, 0.5, 0.7],
               next_values=[2.8, 2.5, 4.0, 0.7, 1.1], terminated=[False] * 5,
               truncated=[False, False, True, False, False], gamma=0.9)
    cases = [
        _gae_case("an episode that terminates after 3 steps, lam = 1: the Monte Carlo advantages G_t - V(S_t)",
                  **ep, lam=1.0),
        _gae_case("the same episode, lam = 0: the TD errors delta_t", **ep, lam=0.0),
        _gae_case("an episode truncated by a time limit after step 2, then a new one cut by the rollout's end, "
                  "lam = 0.8", **cut, lam=0.8),
        _gae_case("the same rollout, lam = 1", **cut, lam=1.0),
        _gae_case("8 environments x 32 steps with terminations and truncations, gamma = 0.98, lam = 0.8",
                  *_random_rollout(rng, 32, 8, p_truncated=0.08), 0.98, 0.8),
        _gae_case("40 steps of one environment given as Python lists, gamma = 1, lam = 0.5",
                  *_random_rollout(rng, 40, None, p_truncated=0.08), 1.0, 0.5, as_lists=True),
    ]
    return _scored("gae", fn, cases)


# ---------------------------------------------------------------------------------------------- group advantages


_HINT_NONE_SCALED = ("scale_rewards='none' (Dr. GRPO) only subtracts the group mean: no division by a standard "
                     "deviation")


def _group_bugs(rewards: torch.Tensor, G: int, scale: str, eps: float):
    r = rewards.detach().double()
    groups = r.reshape(-1, G)
    centred = groups - groups.mean(1, keepdim=True)
    group_std = groups.std(1, keepdim=True)
    batch_std = r.std()

    def flat(x):
        return x.reshape(-1)

    bugs = [
        (flat((groups - r.mean()) / ((group_std if scale == "group" else batch_std if scale == "batch" else 1.0)
                                    + (eps if scale != "none" else 0.0))),
         "subtract each group's own mean reward (the baseline of its prompt), not the mean of the whole batch"),
    ]
    inter = r.reshape(G, -1).T  # column g of the (G, n) table taken as a group: interleaved
    inter_adv = inter - inter.mean(1, keepdim=True)
    if scale == "group":
        inter_adv = inter_adv / (inter.std(1, keepdim=True) + eps)
    elif scale == "batch":
        inter_adv = inter_adv / (batch_std + eps)
    bugs.append((inter_adv.T.reshape(-1), "the groups lie one after the other: entries g*G ... g*G + G - 1 are "
                 "the completions of prompt g (rewards.reshape(-1, num_generations))"))
    if scale == "group":
        bugs += [
            (flat(centred / (groups.std(1, unbiased=False, keepdim=True) + eps)), "use the sample standard "
             "deviation (divisor n - 1: torch's default .std(); numpy's np.std needs ddof=1)"),
            (flat(centred / group_std), "add eps to the standard deviation: a group whose rewards are all equal "
             "has std 0"),
            (flat(centred / torch.sqrt(groups.var(1, keepdim=True) + eps)), "divide by (std + eps): eps is added "
             "to the standard deviation, not to the variance under the square root"),
            (flat(centred / (batch_std + eps)), "scale_rewards='group' divides by each group's own standard "
             "deviation, not the whole batch's"),
            (flat(centred), "scale_rewards='group' divides by the group's standard deviation (+ eps)"),
        ]
    elif scale == "batch":
        bugs += [
            (flat(centred / (group_std + eps)), "scale_rewards='batch' divides by the standard deviation of the "
             "whole batch, not of each group"),
            (flat(centred / (r.std(unbiased=False) + eps)), "use the sample standard deviation (divisor n - 1: "
             "torch's default .std(); numpy's np.std needs ddof=1)"),
            (flat(centred / batch_std), "add eps to the standard deviation: a group whose rewards are all equal "
             "has std 0"),
            (flat(centred), "scale_rewards='batch' divides by the batch's standard deviation (+ eps)"),
        ]
    else:
        bugs += [
            (flat(centred / (group_std + eps)), _HINT_NONE_SCALED),
            (flat(centred / (batch_std + eps)), _HINT_NONE_SCALED),
        ]
    return bugs


def _group_case(name, rewards, num_generations, scale_rewards=None, eps=None, dtype=torch.float64) -> Case:
    rewards = torch.as_tensor(rewards, dtype=dtype)
    scale = "group" if scale_rewards is None else scale_rewards
    e = 1e-4 if eps is None else eps

    def run(fn):
        kwargs = {} if scale_rewards is None else {"scale_rewards": scale_rewards}
        if eps is not None:
            kwargs["eps"] = eps
        got = fn(rewards.clone(), num_generations, **kwargs)
        expected = ref_grpo.group_advantages(rewards.clone(), num_generations, scale, e)
        if not isinstance(got, (torch.Tensor, np.ndarray)):
            return f"return a tensor of shape ({len(rewards)},); got {type(got).__name__}"
        if isinstance(got, torch.Tensor):
            got = got.detach()
        return compare_arrays(got, expected, atol=1e-7, what="advantages",
                              diagnoses=_group_bugs(rewards, num_generations, scale, e), match_atol=1e-5)

    shown = {"rewards": rewards.tolist() if len(rewards) <= 24 else f"{_DTYPE_NAMES[dtype]} ({len(rewards)},)",
             "num_generations": num_generations, "scale_rewards": f"{scale!r}", "eps": e}
    return Case(name, run, inputs=shown, size=len(rewards))


def check_group_advantages(fn, hidden: bool = False) -> Score:
    """Check ``group_advantages(rewards, num_generations, scale_rewards="group", eps=1e-4) -> torch.Tensor``
    (Shao et al. 2024, Section 4.1.2; TRL's ``scale_rewards``)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i, scale in enumerate(["group", "batch", "none", "group"]):
            G, n = int(rng.integers(2, 9)), int(rng.integers(2, 6))
            rewards = rng.integers(0, 2, size=G * n).astype(float) if i % 2 else rng.normal(size=G * n).round(2)
            cases.append(_group_case(f"random rewards #{i + 1}: {n} prompts x {G} generations, {scale!r}",
                                     rewards, G, scale))
        return _scored("group_advantages", fn, cases)
    worked = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    rng = np.random.default_rng(6)
    cases = [
        _group_case("two prompts x 3 generations, rewards [1, 0, 0 | 1, 1, 1] (the second group: no signal)",
                    worked, 3),
        _group_case("the same, scale_rewards='batch'", worked, 3, "batch"),
        _group_case("the same, scale_rewards='none' (Dr. GRPO)", worked, 3, "none"),
        _group_case("rewards on different scales: [0, 10, 20 | 0, 1, 2 | 5, 5, 6]",
                    [0.0, 10, 20, 0, 1, 2, 5, 5, 6], 3),
        _group_case("4 prompts x 8 generations, verifiable rewards 0 or 1", rng.integers(0, 2, 32).astype(float),
                    8),
        _group_case("float32 rewards, eps = 0.01, 3 prompts x 4", rng.normal(size=12).round(2), 4, "group", 0.01,
                    dtype=torch.float32),
    ]
    return _scored("group_advantages", fn, cases)


# ----------------------------------------------------------------------------------------------------------- k3


def _kl_inputs(seed: int, shape: tuple[int, ...], shift: float, dtype=torch.float64):
    """Fresh tensors: logits (leaf), ln pi_theta of sampled tokens (with gradient), ln pi_ref of the same tokens
    under logits moved by ``shift`` (leaf, requires_grad)."""
    logits, log_probs, ref_log_probs, _ = _policy_inputs(seed, shape, n_actions=6, shift=shift, dtype=dtype)
    return logits, log_probs, ref_log_probs


def _kl_bugs(lp, rf):
    """The known mistakes on the reference's inputs (their gradients are compared with respect to its leaves)."""
    rf = rf.detach()
    r = rf - lp
    return [
        (torch.exp(-r) + r - 1, "r = log pi_ref - log pi_theta (the reference minus the current policy): yours is "
         "reversed"),
        (-r, "that is the plain estimate log pi_theta - log pi_ref (k1); k3 is exp(r) - r - 1, never negative"),
        (0.5 * r**2, "that is k2 = r^2 / 2; k3 is exp(r) - r - 1"),
        (torch.exp(r) - r, "subtract 1: k3 = exp(r) - r - 1 (0 where the policies agree)"),
        (torch.exp(r) - 1, "k3 = exp(r) - r - 1: the - r term is missing"),
    ]


def _kl_case(name, seed, shape, *, shift=0.5, dtype=torch.float64) -> Case:
    def make():
        return _kl_inputs(seed, shape, shift, dtype)

    def run(fn):
        logits, lp, rf = make()
        got = fn(lp, rf)
        ref_logits, ref_lp, ref_rf = make()
        expected = ref_grpo.kl_k3(ref_lp, ref_rf)
        weights = torch.linspace(0.5, 1.5, expected.numel(), dtype=torch.float64).reshape(expected.shape)
        return judge_tensor(got, expected, [logits], [ref_logits], _kl_bugs(ref_lp, ref_rf), what="k3",
                            weights=weights, detach=[(rf, "ref_log_probs", _HINT_DETACH_REF)], atol=1e-9)

    name_dtype = _DTYPE_NAMES[dtype]
    return Case(name, run, size=int(np.prod(shape)), inputs={
        "log_probs": f"{name_dtype} {shape}: log-probabilities of sampled tokens (seed {seed}), with gradient",
        "ref_log_probs": f"{name_dtype} {shape}: the same tokens under logits moved by N(0, {shift:g}^2) noise, "
                         "requires_grad=True"})


def check_kl_k3(fn, hidden: bool = False) -> Score:
    """Check ``kl_k3(log_probs, ref_log_probs) -> torch.Tensor`` (Schulman 2020; Shao et al. 2024, eq. 4)."""
    if hidden:
        rng = hidden_rng()
        cases = [_kl_case(f"random tokens #{i + 1}", int(rng.integers(2**31)),
                          (int(rng.integers(2, 6)), int(rng.integers(3, 12))), shift=float(rng.uniform(0.2, 1.5)))
                 for i in range(3)]
        return _scored("kl_k3", fn, cases)
    cases = [
        _kl_case("6 tokens, the policy a little away from the reference", 0, (6,)),
        _kl_case("the policy equal to the reference: k3 = 0 everywhere", 1, (5,), shift=0.0),
        _kl_case("a batch of completions (4, 9), far from the reference", 2, (4, 9), shift=2.0),
        _kl_case("float32 inputs", 3, (3, 5), dtype=torch.float32),
    ]
    return _scored("kl_k3", fn, cases)


# ----------------------------------------------------------------------------------------------------- GRPO loss


def _grpo_inputs(seed: int, B: int, L: int, prompt_lengths, completion_lengths, shift: float):
    """Fresh tensors for one call, laid out as the sampler lays out a batch: row b holds left padding, a prompt
    of ``prompt_lengths[b]`` tokens, ``completion_lengths[b]`` completion tokens and right padding.

    Returns logits (leaf), log_probs (B, L) of the tokens (with gradient; finite on prompt and padding too, so an
    answer that ignores the mask is caught), old_log_probs and ref_log_probs (leaves, requires_grad) from logits
    moved by ``shift``, advantages (B,) (leaf, requires_grad), completion_mask (B, L) bool.
    """
    V = 7
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, L, V, generator=g, dtype=torch.float64)
    tokens = torch.randint(V, (B, L), generator=g)
    old_logits = logits + shift * torch.randn(B, L, V, generator=g, dtype=torch.float64)
    ref_logits = logits + 0.7 * torch.randn(B, L, V, generator=g, dtype=torch.float64)
    advantages = (torch.randn(B, generator=g, dtype=torch.float64) * 1.5).requires_grad_(True)
    mask = torch.zeros(B, L, dtype=torch.bool)
    start = max(prompt_lengths)
    for b in range(B):
        mask[b, start: start + completion_lengths[b]] = True
    logits = logits.requires_grad_(True)

    def chosen(x):
        return torch.log_softmax(x, -1).gather(-1, tokens[..., None]).squeeze(-1)

    old_log_probs = chosen(old_logits).requires_grad_(True)
    ref_log_probs = chosen(ref_logits).requires_grad_(True)
    return logits, chosen(logits), old_log_probs, ref_log_probs, advantages, mask


def _grpo_variant(lp, old, rf, A, mask, *, beta, epsilon, loss_type, max_completion_length, agg=None,
                  use_mask=True, per_seq_length=None, clip="min", kl="k3", sign=1.0, ratio="normal"):
    """The GRPO loss with one known mistake (the defaults and ``agg=None``: the correct loss)."""
    old, rf, A = old.detach(), rf.detach(), A.detach()[:, None]
    rho = torch.exp(lp - old) if ratio == "normal" else torch.exp(old - lp)
    clipped = torch.clamp(rho, 1 - epsilon, 1 + epsilon) * A
    pick = torch.min if clip == "min" else torch.max
    per_token = -sign * pick(rho * A, clipped)
    r = rf - lp
    if beta > 0 and kl != "none":
        k = {"k3": torch.exp(r) - r - 1, "k1": -r, "minus": -(torch.exp(r) - r - 1)}[kl]
        per_token = per_token + beta * k
    m = mask.to(per_token.dtype) if use_mask else torch.ones_like(per_token)
    agg = agg or loss_type
    if agg == "grpo":
        lengths = m.sum(1) if per_seq_length is None else per_seq_length
        return ((per_token * m).sum(1) / lengths.clamp(min=1)).mean()
    if agg in ("bnpo", "dapo"):
        return (per_token * m).sum() / m.sum()
    if agg == "dr_grpo":
        return (per_token * m).sum() / (lp.shape[0] * max_completion_length)
    if agg == "dr_grpo_width":
        return (per_token * m).sum() / lp.numel()
    if agg == "dr_grpo_no_batch":
        return (per_token * m).sum() / max_completion_length
    raise ValueError(agg)


def _grpo_bugs(lp, old, rf, A, mask, settings, prompt_lengths):
    """The known mistakes on the reference's inputs (their gradients are compared with respect to its leaves)."""
    loss_type = settings["loss_type"]

    def loss(**flags):
        return _grpo_variant(lp, old, rf, A, mask, **settings, **flags)

    attention = torch.tensor([[1.0] * lp.shape[1] for _ in range(lp.shape[0])], dtype=lp.dtype)
    start = max(prompt_lengths)
    for b, p in enumerate(prompt_lengths):
        attention[b, : start - p] = 0.0
        attention[b, start + int(mask[b].sum()):] = 0.0
    bugs = [
        (loss(clip="max"), "take the minimum of rho A and clip(rho) A (the pessimistic bound), not the maximum"),
        (loss(sign=-1.0), "minimise the *negative* of the clipped objective: per-token loss = -min(rho A, "
         "clip(rho) A) + beta k3"),
        (loss(ratio="inverted"), "the ratio is pi_theta / pi_theta_old = exp(log_probs - old_log_probs): yours is "
         "inverted"),
        (loss(use_mask=False), "count only the completion tokens (completion_mask): prompt and padding tokens "
         "were not chosen by the policy"),
    ]
    if settings["beta"] > 0:
        bugs += [
            (loss(kl="none"), "add beta times the k3 estimate of the KL to the reference policy at each "
             "completion token"),
            (loss(kl="k1"), "use the k3 estimator exp(r) - r - 1 with r = log pi_ref - log pi_theta"),
            (loss(kl="minus"), "add + beta * k3: the KL penalty raises the loss"),
        ]
    if loss_type == "grpo":
        bugs += [
            (loss(agg="bnpo"), "loss_type='grpo' averages each completion's token losses over its own length "
             "first, then over the completions; yours is one mean over all the batch's tokens ('bnpo')"),
            (loss(per_seq_length=attention.sum(1)), "divide each completion's sum by its number of *completion* "
             "tokens, completion_mask.sum(1), not by the length of prompt + completion"),
            (loss(per_seq_length=torch.full((lp.shape[0],), float(lp.shape[1]), dtype=lp.dtype)),
             "divide each completion's sum by its number of completion tokens, completion_mask.sum(1), not by the "
             "padded width L"),
        ]
    elif loss_type in ("bnpo", "dapo"):
        bugs += [
            (loss(agg="grpo"), f"loss_type={loss_type!r} is one token-level mean: the sum over all completion "
             "tokens of the batch divided by their number; yours averages per completion first ('grpo')"),
        ]
    else:
        bugs += [
            (loss(agg="bnpo"), "loss_type='dr_grpo' divides the sum by the constant B * max_completion_length, "
             "not by the number of completion tokens"),
            (loss(agg="grpo"), "loss_type='dr_grpo' divides the sum by the constant B * max_completion_length; "
             "yours averages per completion ('grpo')"),
            (loss(agg="dr_grpo_width"), "loss_type='dr_grpo' divides by B * max_completion_length, not by the "
             "padded size B * L"),
            (loss(agg="dr_grpo_no_batch"), "loss_type='dr_grpo' divides by B * max_completion_length: the number "
             "of completions B is missing"),
        ]
    return bugs


def _grpo_case(name, seed, prompt_lengths, completion_lengths, *, loss_type="grpo", beta=0.0, epsilon=0.2,
               max_completion_length=None, shift=0.5) -> Case:
    B = len(prompt_lengths)
    L = max(prompt_lengths) + max(completion_lengths) + 1
    settings = {"beta": beta, "epsilon": epsilon, "loss_type": loss_type,
                "max_completion_length": max_completion_length}

    def make():
        return _grpo_inputs(seed, B, L, prompt_lengths, completion_lengths, shift)

    def run(fn):
        logits, lp, old, rf, A, mask = make()
        got = fn(lp, old, A, mask, ref_log_probs=rf, **settings)
        ref_logits, ref_lp, ref_old, ref_rf, ref_A, ref_mask = make()
        expected = ref_grpo.grpo_loss(ref_lp, ref_old, ref_A, ref_mask, ref_log_probs=ref_rf, **settings)
        detach = [(old, "old_log_probs", _HINT_DETACH_OLD), (A, "the advantages", _HINT_DETACH_ADV)]
        if beta > 0:
            detach.append((rf, "ref_log_probs", _HINT_DETACH_REF))
        bugs = _grpo_bugs(ref_lp, ref_old, ref_rf, ref_A, ref_mask, settings, prompt_lengths)
        return judge_loss(got, expected, [logits], [ref_logits], bugs,
                          detach=detach)

    old = "equal to log_probs (on-policy)" if shift == 0 else f"from logits moved by N(0, {shift:g}^2) noise"
    inputs = {
        "log_probs": f"float64 ({B}, {L}): token log-probabilities (seed {seed}), with gradient; prompts of "
                     f"{list(prompt_lengths)} tokens (left-padded), completions of {list(completion_lengths)} "
                     "tokens",
        "old_log_probs": f"float64 ({B}, {L}), {old}, requires_grad=True",
        "advantages": f"float64 ({B},), requires_grad=True",
        "completion_mask": f"bool ({B}, {L}), True on the completion tokens",
        "ref_log_probs": f"float64 ({B}, {L}), requires_grad=True", **{k: repr(v) for k, v in settings.items()}}
    return Case(name, run, inputs=inputs, size=B * L)


def check_grpo_loss(fn, hidden: bool = False) -> Score:
    """Check ``grpo_loss(log_probs, old_log_probs, advantages, completion_mask, *, ref_log_probs=None, beta=0.0,
    epsilon=0.2, loss_type="grpo", max_completion_length=None) -> torch.Tensor`` (Shao et al. 2024, eq. 3; the
    aggregations of TRL's ``loss_type``)."""
    if hidden:
        rng = hidden_rng()
        cases = []
        for i, loss_type in enumerate(["grpo", "bnpo", "dr_grpo", "dapo"]):
            B = int(rng.integers(2, 7))
            prompts = [int(p) for p in rng.integers(1, 4, size=B)]
            completions = [int(c) for c in rng.integers(1, 9, size=B)]
            cases.append(_grpo_case(f"random batch #{i + 1} ({B} completions), loss_type={loss_type!r}",
                                    int(rng.integers(2**31)), prompts, completions, loss_type=loss_type,
                                    beta=[0.0, 0.04][i % 2], epsilon=round(float(rng.uniform(0.1, 0.3)), 3),
                                    max_completion_length=max(completions) + int(rng.integers(0, 4))))
        return _scored("grpo_loss", fn, cases)
    prompts4, completions4 = [2, 3, 2, 1], [3, 1, 5, 2]
    cases = [
        _grpo_case("4 completions on-policy (ratio 1), beta = 0, loss_type='grpo': the loss is -mean(A)", 0,
                   prompts4, completions4, shift=0.0),
        _grpo_case("4 completions after a few updates (ratios inside and outside [0.8, 1.2]), beta = 0.04", 1,
                   prompts4, completions4, beta=0.04),
        _grpo_case("8 completions of 1 to 9 tokens, loss_type='grpo'", 2, [3] * 8, [1, 9, 4, 2, 7, 3, 8, 5]),
        _grpo_case("the same batch, loss_type='bnpo' (one token-level mean)", 2, [3] * 8, [1, 9, 4, 2, 7, 3, 8, 5],
                   loss_type="bnpo"),
        _grpo_case("the same batch, loss_type='dr_grpo', max_completion_length = 10", 2, [3] * 8,
                   [1, 9, 4, 2, 7, 3, 8, 5], loss_type="dr_grpo", max_completion_length=10),
        _grpo_case("loss_type='dapo', epsilon = 0.1, beta = 0.1", 3, [1, 2, 3, 2, 1, 3], [4, 6, 1, 3, 2, 5],
                   loss_type="dapo", epsilon=0.1, beta=0.1),
    ]
    return _scored("grpo_loss", fn, cases)
