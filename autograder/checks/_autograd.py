"""Judging torch answers by value *and* gradient (the exercises of Chapters 4-6).

A loss can have the right value and the wrong gradient (a weight that should be a constant and is not detached) or
the right gradient up to a constant and a wrong value. The checks therefore compare both with the reference, on
fresh tensors built for each call from the case's seed (the student's function and the reference never share a
tensor), and name the known mistake a wrong value or a wrong gradient reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ._harness import Failure, compare_arrays

__all__ = ["gradient", "judge_loss", "judge_tensor", "leaked_gradient", "scalar_problem"]


def gradient(value, leaves) -> np.ndarray | None:
    """The gradient of the scalar ``value`` with respect to ``leaves`` as one float64 vector, or None if ``value``
    carries no gradient. Leaves the graph intact (``retain_graph``)."""
    if not (isinstance(value, torch.Tensor) and value.requires_grad):
        return None
    grads = torch.autograd.grad(value, leaves, allow_unused=True, retain_graph=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                      for g, p in zip(grads, leaves, strict=True)]).double().numpy()


def leaked_gradient(value, leaf) -> bool:
    """Whether gradient from the scalar ``value`` reaches ``leaf`` (a tensor that should have been detached)."""
    leaked = gradient(value, [leaf])
    return leaked is not None and bool(np.any(leaked != 0))


def scalar_problem(value, what: str) -> str | None:
    """A message if ``value`` is not a 0-dimensional torch tensor, else None."""
    if not isinstance(value, torch.Tensor):
        return f"return {what} as a torch tensor (so that backward() works); got {type(value).__name__}"
    if value.dim() != 0:
        return f"{what} should be a scalar tensor (shape ()); got shape {tuple(value.shape)}"
    return None


def _precision(got: torch.Tensor, grad: np.ndarray | None) -> np.ndarray | None:
    if grad is not None and got.dtype in (torch.float32, torch.float16, torch.bfloat16):
        return grad.astype(np.float32)  # judged to the precision the answer was computed in
    return grad


def judge_tensor(got, expected: torch.Tensor, leaves_got: Sequence[torch.Tensor],
                 leaves_expected: Sequence[torch.Tensor], bugs: Sequence[tuple[torch.Tensor, str]], *,
                 what: str, weights: torch.Tensor | None = None,
                 detach: Sequence[tuple[torch.Tensor, str, str]] = (), atol: float = 1e-6,
                 match_atol: float = 1e-4) -> str | None:
    """Compare a tensor answer with the expected one by value, then by gradient.

    Args:
        got: the answer's tensor.
        expected: the reference's tensor, computed from ``leaves_expected``.
        leaves_got, leaves_expected: the leaf tensors each was computed from (the parameters whose gradient a
            training step would use), built afresh for each.
        bugs: ``(value of a known mistake on the same inputs, hint)``; a mistake's gradient is compared too
            when its value equals the expected one (a missing detach, say).
        what: the name of the value in messages.
        weights: the gradient is that of ``(got * weights).sum()`` (default: ``got.sum()``), so every entry counts
            with its own weight; for a scalar, of ``got`` itself.
        detach: ``(student's leaf, what it is, hint)`` for each input that must get no gradient.
        atol: tolerance for a float64 answer (scaled for float32 by the harness).
        match_atol: how close to a mistake's value counts as reproducing it.

    Returns:
        None if the answer passes, else the message (a :class:`Failure` for a value that differs).
    """
    if not isinstance(got, torch.Tensor):
        return f"return {what} as a torch tensor (so that backward() works); got {type(got).__name__}"
    expected_value = expected.detach()
    bug_values = [(b.detach(), hint) for b, hint in bugs]
    if not got.requires_grad:
        same = compare_arrays(got.detach(), expected_value, atol=atol) is None
        hints = ["keep the computation in torch, attached to the inputs' graph (no .item(), torch.tensor(...), "
                 ".numpy() or .detach() on the log-probabilities)"] if same else []
        return Failure(f"{what} carries no gradient (its requires_grad is False), so backward() fails",
                       hints=hints, expected=expected_value, got=got.detach(), what=what)
    problem = compare_arrays(got.detach(), expected_value, atol=atol, what=what, diagnoses=bug_values,
                             match_atol=match_atol)
    if problem:
        return problem

    def total(value, w):
        return value if value.dim() == 0 else (value * w).sum()

    w = torch.ones_like(expected_value) if weights is None else weights
    for leaf, name, hint in detach:
        if leaked_gradient(total(got, w.to(got.dtype)), leaf):
            return Failure(f"gradient reaches {name}", hints=[hint], expected="no gradient", got="a gradient",
                           what="the gradient")
    grad = _precision(got, gradient(total(got, w.to(got.dtype)), list(leaves_got)))
    expected_grad = gradient(total(expected, w), list(leaves_expected))
    bug_grads = []
    for b, hint in bugs:
        if b.requires_grad and compare_arrays(b.detach(), expected_value, atol=atol) is None:
            bug_grads.append((gradient(total(b, w.to(b.dtype)), list(leaves_expected)), hint))
    return compare_arrays(grad, expected_grad, atol=atol, what=f"the gradient of {what}", diagnoses=bug_grads)


def judge_loss(got, expected, leaves_got, leaves_expected, bugs, *, what="the loss", detach_leaf=None,
               detach_hint="", detach=()) -> str | None:
    """:func:`judge_tensor` for a scalar loss: it must be a 0-dimensional tensor.

    ``detach_leaf``: ``(student's leaf, what it is)`` that must get no gradient, with ``detach_hint`` (the
    one-input form); ``detach`` the general form of :func:`judge_tensor`.
    """
    if problem := scalar_problem(got, what):
        return problem
    detach = list(detach)
    if detach_leaf is not None:
        detach.append((detach_leaf[0], detach_leaf[1], detach_hint))
    return judge_tensor(got, expected, leaves_got, leaves_expected, bugs, what=what, detach=detach)
