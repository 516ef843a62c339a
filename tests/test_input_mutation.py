"""An answer that changes the objects a check passes it can neither forge a score nor spoil its later cases.

The rules for answers (autograder/policy.py) cannot stop an answer from writing into the arrays it is given
(``torch.from_numpy(mdp.R).zero_()`` does). So the checks must compute every expected value from objects no
answer has seen. Two adversaries, built for every exercise from its reference implementation:

* the *forger* zeroes everything it is given (arrays, tensors, lists of numbers, the MDP inside an environment,
  the weights of a network), or everything but the probability tables so that the inputs stay valid, and then
  returns what the reference computes from the zeroed inputs. If a check
  computed its expected value from the same objects after the call, the forger would agree with it. It must
  lose points on every exercise.
* the *vandal* returns the reference's correct answer and then zeroes the inputs the reference leaves unchanged.
  It must keep full marks: what an answer does to its private copies after computing its result must not change
  how it or later cases are judged. It leaves alone the arguments a check passes as they are (``_PASSED_AS_IS``:
  arrays an exercise updates in place, which are its answer, and inputs whose change the check reports as a
  mistake) and stateful objects such as environments and random generators, which an honest answer changes too.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from autograder.checks._harness import student_copy

from .test_checks import EXERCISES


def _stateful(obj) -> bool:
    """Objects an honest answer changes by using them: generators, environments, networks, optimizers."""
    import gymnasium as gym

    return isinstance(obj, (np.random.Generator, gym.Env, torch.nn.Module, torch.optim.Optimizer))


#: Objects of these packages are walked through their attributes (an environment's MDP, say).
_OUR_PACKAGES = ("solutions", "gymnasium", "autograder")


def _reachable(obj, depth: int = 0, seen: set | None = None):
    """The arrays, tensors and lists of numbers reachable from ``obj`` (through containers and objects)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6 or obj is None or isinstance(obj, (str, bytes, int, float, bool, type)):
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biuf":
            yield obj
    elif isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, torch.nn.Module):
        for tensor in list(obj.parameters()) + list(obj.buffers()):
            yield from _reachable(tensor, depth + 1, seen)
    elif isinstance(obj, list):
        if obj and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in obj):
            yield obj
        else:
            for item in obj:
                yield from _reachable(item, depth + 1, seen)
    elif isinstance(obj, (tuple, set, frozenset)):
        for item in obj:
            yield from _reachable(item, depth + 1, seen)
    elif isinstance(obj, dict):
        for item in list(obj.values()):
            yield from _reachable(item, depth + 1, seen)
    elif isinstance(obj, (np.random.Generator, torch.optim.Optimizer)):
        return
    elif hasattr(obj, "__dict__") and type(obj).__module__.split(".")[0] in _OUR_PACKAGES:
        for item in list(vars(obj).values()):
            yield from _reachable(item, depth + 1, seen)


def _distribution(found) -> bool:
    """Whether ``found`` is a table of probability distributions (P, pi): its last axis sums to 1."""
    if isinstance(found, list) or found.ndim == 0 or found.shape[-1] == 0:
        return False
    values = found.detach().numpy() if isinstance(found, torch.Tensor) else found
    return values.dtype.kind == "f" and bool(np.all(values >= 0)) and np.allclose(values.sum(-1), 1)


def _zero(obj, keep_distributions: bool = False) -> None:
    """Zero every array, tensor and list of numbers reachable from ``obj``, in place, as an answer could.

    With ``keep_distributions``, tables of probabilities (P, pi) are left alone, so that the inputs stay valid
    and the reference still runs on them.
    """
    for found in list(_reachable(obj)):
        if keep_distributions and _distribution(found):
            continue
        if isinstance(found, list):
            found[:] = [0] * len(found)
        elif isinstance(found, torch.Tensor):
            with torch.no_grad():
                found.zero_()
        else:
            if not found.flags.writeable:
                torch.from_numpy(found)  # an answer's route around the flag: the same memory, writable
                try:
                    found.setflags(write=True)
                except ValueError:
                    continue
            found[...] = 0


def _fingerprint(obj) -> list[bytes]:
    out = []
    for found in _reachable(obj):
        if isinstance(found, torch.Tensor):
            out.append(found.detach().numpy().tobytes())
        else:
            out.append(np.asarray(found, dtype=float).tobytes())
    return out


def _reference(checks_module, reference_modules, name):
    solution = next(getattr(m, name) for m in reference_modules if hasattr(m, name))
    return student_copy(solution)


def _forger(honest, keep_distributions):
    def forger(*args, **kwargs):
        for value in (*args, *kwargs.values()):
            forger.zeroed += len(list(_reachable(value)))
            _zero(value, keep_distributions)
        return honest(*args, **kwargs)

    forger.zeroed = 0

    return forger


def _vandal(honest, passed_as_is):
    names = [p.name for p in inspect.signature(honest).parameters.values()]

    def vandal(*args, **kwargs):
        values = [value for i, value in enumerate(args) if i >= len(names) or names[i] not in passed_as_is]
        values += [value for key, value in kwargs.items() if key not in passed_as_is]
        before = [None if _stateful(v) else _fingerprint(v) for v in values]
        result = honest(*args, **kwargs)
        for value, fingerprint in zip(values, before, strict=True):
            if fingerprint is not None and _fingerprint(value) == fingerprint:  # an input the reference left alone
                _zero(value)
        return result

    return vandal


@pytest.mark.parametrize("chapter, checks_module, reference_modules, name", EXERCISES,
                         ids=[f"{e[0]}-{e[3]}" for e in EXERCISES])
@pytest.mark.parametrize("keep_distributions", [False, True], ids=["everything", "all but P and pi"])
def test_zeroing_the_inputs_does_not_forge_a_score(chapter, checks_module, reference_modules, name,
                                                   keep_distributions, capsys, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_SEED", "777")
    forger = _forger(_reference(checks_module, reference_modules, name), keep_distributions)
    score = getattr(checks_module, f"check_{name}")(forger, hidden=True)
    out = capsys.readouterr().out
    if not forger.zeroed:  # every input is a number (short_corridor_value): the forger is the honest answer
        assert float(score) == checks_module.POINTS[name], out
        return
    assert float(score) < checks_module.POINTS[name], out
    assert score.passed < score.total


@pytest.mark.parametrize("chapter, checks_module, reference_modules, name", EXERCISES,
                         ids=[f"{e[0]}-{e[3]}" for e in EXERCISES])
def test_an_answer_that_spoils_its_inputs_afterwards_keeps_full_marks(chapter, checks_module, reference_modules,
                                                                      name, capsys, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_SEED", "778")
    passed_as_is = getattr(checks_module, "_PASSED_AS_IS", {}).get(name, ())
    vandal = _vandal(_reference(checks_module, reference_modules, name), passed_as_is)
    score = getattr(checks_module, f"check_{name}")(vandal, hidden=True)
    out = capsys.readouterr().out
    assert float(score) == checks_module.POINTS[name], out


@pytest.mark.parametrize("checks_module, reference_modules",
                         sorted({(e[1], e[2]) for e in EXERCISES}, key=lambda e: e[0].__name__))
def test_the_arguments_passed_as_is_are_parameters_of_the_reference(checks_module, reference_modules):
    for name, passed in getattr(checks_module, "_PASSED_AS_IS", {}).items():
        assert name in checks_module.POINTS
        solution = _reference(checks_module, reference_modules, name)
        assert set(passed) <= set(inspect.signature(solution).parameters), (name, passed)
