"""The machinery every check shares: cases, time limits, hints, and the score nbgrader reads.

A check runs a student's function on a list of :class:`Case` objects, prints one line per case (``✓`` or
``✗`` with a hint naming the likely bug) and returns a :class:`Score`. The score is the last expression of
the test cell, so nbgrader reads it as partial credit (its ``text/plain`` form is a bare number).

Nothing here writes to stderr: nbgrader gives 0 points to a cell with stderr output, so warnings raised by
the student's code are caught and printed on stdout, and so is anything the code prints to stderr.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = [
    "PASS_MARK", "FAIL_MARK", "Case", "CheckTimeout", "Score", "compare_arrays", "hidden_rng", "run_check",
    "using_reference_helpers",
]

PASS_MARK = "✓"
FAIL_MARK = "✗"

#: Seconds one case may take before it is stopped (the student's code probably never terminates).
DEFAULT_TIME_LIMIT = 10.0


class CheckTimeout(Exception):
    """Raised inside the student's code when a case runs past its time limit."""


@dataclass(frozen=True)
class Score:
    """Points earned by one check: ``points * passed / total``, shown as a bare number.

    ``a + b`` combines the cases of two runs of the same check (the visible and the hidden ones).
    """

    name: str
    passed: int
    total: int
    points: float

    @property
    def earned(self) -> float:
        if self.total == 0:
            return 0.0
        return round(self.points * self.passed / self.total, 2)

    def __float__(self) -> float:
        return self.earned

    def __repr__(self) -> str:
        return repr(self.earned)

    def __add__(self, other: Score) -> Score:
        if not isinstance(other, Score) or (other.name, other.points) != (self.name, self.points):
            return NotImplemented
        return Score(self.name, self.passed + other.passed, self.total + other.total, self.points)


@dataclass(frozen=True)
class Case:
    """One test case: ``run(fn)`` returns None when ``fn`` passes, else a message (the hint) saying why not."""

    name: str
    run: Callable[[Callable], str | None]


def hidden_rng() -> np.random.Generator:
    """The generator for hidden cases: seeded from ``AUTOGRADER_SEED`` (set by the grader), else at random.

    The grader draws a fresh seed for every grading run, so a student cannot know the hidden instances.
    """
    seed = os.environ.get("AUTOGRADER_SEED")
    return np.random.default_rng(int(seed) if seed else secrets.randbits(64))


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise :class:`CheckTimeout` in the running code after ``seconds`` (main thread on POSIX only)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable or seconds is None:
        yield
        return

    def _alarm(signum, frame):
        raise CheckTimeout

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _short(value: Any, limit: int = 160) -> str:
    with np.printoptions(precision=4, suppress=True, threshold=20, linewidth=200):
        text = repr(value) if not isinstance(value, np.ndarray) else np.array2string(value, separator=", ")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compare_arrays(got: Any, expected: np.ndarray, *, atol: float, what: str = "result",
                   diagnoses: list[tuple[Any, str]] = (), dtype: Any = np.float64) -> str | None:
    """None if ``got`` equals ``expected`` within ``atol``; else a message with a hint.

    Args:
        got: what the student's function returned.
        expected: the reference value (array or scalar).
        atol: absolute tolerance.
        what: how to call the value in the message.
        diagnoses: ``(buggy_value, hint)`` pairs: when ``got`` matches a buggy value, the hint names the bug.
        dtype: the dtype ``got`` is converted to before comparing.
    """
    expected = np.asarray(expected)
    try:
        arr = np.asarray(got, dtype=dtype)
    except (TypeError, ValueError):
        return f"{what} should be {'a number' if expected.ndim == 0 else 'an array'}; got {_short(got)}"
    if arr.shape != expected.shape:
        for buggy, hint in diagnoses:
            if np.shape(buggy) == arr.shape and np.allclose(arr, buggy, atol=atol):
                return hint
        return f"{what} should have shape {expected.shape}; got shape {arr.shape}"
    if np.allclose(arr, expected, atol=atol, rtol=0, equal_nan=False):
        return None
    for buggy, hint in diagnoses:
        if np.shape(buggy) == arr.shape and np.allclose(arr, buggy, atol=atol, rtol=0):
            return hint
    if expected.ndim == 0:
        return f"{what} should be {float(expected):.6g}; got {float(arr):.6g}"
    worst = np.unravel_index(np.argmax(np.abs(arr - expected)), arr.shape)
    index = int(worst[0]) if len(worst) == 1 else tuple(int(i) for i in worst)
    return (f"{what} differs from the reference; largest difference at index {index}: "
            f"expected {float(expected[worst]):.6g}, got {float(arr[worst]):.6g}")


@contextlib.contextmanager
def using_reference_helpers(fn: Callable, helpers: dict[str, Callable]):
    """While active, the names in ``helpers`` that ``fn`` looks up as globals resolve to the given functions.

    An exercise that calls an earlier exercise (Dyna-Q's episode calls the planning step) is then checked on
    its own: a mistake in the earlier function is not counted twice. The student's own functions are put back
    afterwards. Functions without ``__globals__`` (builtins, callables) are left alone.
    """
    namespace = getattr(fn, "__globals__", None)
    if namespace is None:
        yield
        return
    missing = object()
    saved = {name: namespace.get(name, missing) for name in helpers}
    namespace.update(helpers)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


def _reference_module(fn: Callable) -> bool:
    module = getattr(fn, "__module__", "") or ""
    return module == "solutions" or module.startswith("solutions.")


def run_check(name: str, fn: Callable, cases: list[Case], points: float, *,
              time_limit: float | None = None, helpers: dict[str, Callable] | None = None) -> Score:
    """Run ``cases`` on ``fn``, print one line per case and a summary, and return the :class:`Score`.

    A case fails when its ``run`` returns a message or raises; the student's warnings and stderr output are
    shown on stdout. After a case times out the remaining ones are skipped (they would likely time out too).
    ``time_limit`` is in seconds per case (default: ``DEFAULT_TIME_LIMIT``). ``helpers`` maps the names of
    earlier exercises that ``fn`` calls to their reference implementations, used while the cases run
    (see :func:`using_reference_helpers`).
    """
    time_limit = DEFAULT_TIME_LIMIT if time_limit is None else time_limit
    out = sys.stdout
    if not callable(fn):
        print(f"{FAIL_MARK} {name}: expected a function, got {_short(fn)}", file=out)
        return Score(name, 0, max(len(cases), 1), points)
    if _reference_module(fn):
        print(f"{FAIL_MARK} {name}: this is the reference implementation from `solutions`; write your own",
              file=out)
        return Score(name, 0, max(len(cases), 1), points)
    with using_reference_helpers(fn, helpers or {}):
        passed = _run_cases(fn, cases, time_limit, out)
    score = Score(name, passed, len(cases), points)
    print(f"{name}: {passed}/{len(cases)} cases passed, {score.earned:g}/{points:g} points", file=out)
    return score


def _run_cases(fn: Callable, cases: list[Case], time_limit: float, out) -> int:
    """Run and report each case; returns how many passed."""
    passed = 0
    timed_out = False
    for case in cases:
        if timed_out:
            print(f"  {FAIL_MARK} {case.name}: skipped after the time-out above", file=out)
            continue
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(out):
            warnings.simplefilter("always")
            try:
                with _time_limit(time_limit):
                    message = case.run(fn)
            except NotImplementedError:
                message = "not implemented yet (the function raises NotImplementedError)"
            except CheckTimeout:
                timed_out = True
                message = (f"did not return within {time_limit:g} s: the loop probably never ends "
                           "(check its stopping rule)")
            except Exception as exc:  # noqa: BLE001 -- any error in student code fails just this case
                message = f"raised {type(exc).__name__}: {_short(str(exc), 200)}"
        elapsed = time.perf_counter() - start
        if message is None:
            passed += 1
            print(f"  {PASS_MARK} {case.name}", file=out)
        else:
            print(f"  {FAIL_MARK} {case.name}: {message}", file=out)
        for warning in caught[:3]:
            print(f"      (warning from your code: {warning.category.__name__}: {warning.message})", file=out)
        if elapsed > time_limit / 2 and not timed_out:
            print(f"      (this case took {elapsed:.1f} s; the limit is {time_limit:g} s)", file=out)
    return passed
