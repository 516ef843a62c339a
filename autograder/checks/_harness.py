"""The machinery every check shares: cases, time limits, hints, and the score nbgrader reads.

A check runs a student's function on a list of :class:`Case` objects, prints one line per case (``✓``, or ``✗``
with what is wrong) and returns a :class:`Score`. The score is the last expression of the test cell, so nbgrader
reads it as partial credit (its ``text/plain`` form is a bare number).

How a failure is explained (issue 11): a case that compares a value returns a :class:`Failure` carrying the
expected and received values and the *diagnoses* (hints naming a known mistake) whose buggy output the received
value matches. After the cases, a hint is named only if it explains **every** failing case; otherwise the check
shows the smallest failing case -- its inputs, the expected and the received value side by side -- so the student
can debug it. One coincidence on one case never names a mistake.

Nothing here writes to stderr: nbgrader gives 0 points to a cell with stderr output, so warnings raised by
the student's code are caught and printed on stdout, and so is anything the code prints to stderr.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
import os
import random
import secrets
import signal
import sys
import threading
import time
import types
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "PASS_MARK", "FAIL_MARK", "REFERENCE_CALLED", "Case", "CheckTimeout", "Failure", "Score", "as_float_array", "compare_arrays",
    "format_pair", "hidden_rng", "precision_tolerance", "run_check", "student_copy", "using_reference_helpers",
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
    """One test case: ``run(fn)`` returns None when ``fn`` passes, else a message saying why not.

    The message is a plain ``str`` (a fact about the output: wrong type, an episode that goes on after a terminal
    state...) or a :class:`Failure` (a value that differs from the reference, with the diagnoses it matches).

    Args:
        name: shown on the case's line.
        run: the test.
        inputs: what the function is called with, by argument name, shown when this is the smallest failing
            case (values are abbreviated).
        size: how big the case is, to pick the smallest failing one; default: the number of array elements in
            ``inputs`` (1 per scalar or object), or the case's position when there are no inputs.
    """

    name: str
    run: Callable[[Callable], str | None]
    inputs: dict[str, Any] | None = None
    size: float | None = None

    def measure(self) -> float:
        if self.size is not None:
            return float(self.size)
        if not self.inputs:
            return float("inf")
        return float(sum(np.size(v) if isinstance(v, (np.ndarray, list, tuple)) else 1
                         for v in self.inputs.values()))


class Failure(str):
    """A failed comparison: the message, plus what the received value tells about the mistake.

    It is a ``str`` (the message shown on the case's line), so a case may return it wherever it returned a message.

    Attributes:
        hints: the diagnoses (hint texts) whose buggy output the received value matches on this case.
        expected, got: the reference and the received value, for the smallest-failing-case report.
        what: the name of the value (``"Q"``, ``"G_t"``...).
        tolerance: the absolute tolerance the comparison used (entries closer than this count as equal).
    """

    hints: tuple[str, ...]
    expected: Any
    got: Any
    what: str
    tolerance: float

    def __new__(cls, message: str, *, hints=(), expected: Any = None, got: Any = None, what: str = "result",
                tolerance: float = 1e-9):
        self = super().__new__(cls, message)
        self.hints = tuple(dict.fromkeys(hints))  # unique, in order
        self.expected, self.got, self.what, self.tolerance = expected, got, what, tolerance
        return self

    def with_hints(self, hints) -> Failure:
        """The same failure with ``hints`` added to its diagnoses (a mistake this case detected another way)."""
        return Failure(str(self), hints=tuple(self.hints) + tuple(hints), expected=self.expected, got=self.got,
                       what=self.what, tolerance=self.tolerance)


#: Where a sandboxed kernel finds the hidden tests' seed (``autograder.sandbox.SEED_FILE``).
_SEED_FILE = "/tmp/.autograder-seed"


def _take_seed_file() -> str | None:
    """The seed the sandbox left in :data:`_SEED_FILE`, which is then deleted (read once, at import)."""
    try:
        with open(_SEED_FILE, encoding="ascii") as file:
            seed = file.read().strip()
        os.unlink(_SEED_FILE)
    except OSError:
        return None
    return seed or None


# A sandboxed kernel imports this module when it starts, before any cell runs; after that the seed lives only here.
_SANDBOX_SEED = _take_seed_file()


def hidden_rng() -> np.random.Generator:
    """The generator for hidden cases: seeded by the grader, else at random.

    The grader draws a fresh seed for every grading run, so a student cannot know the hidden instances. In the
    sandbox (:mod:`autograder.sandbox`) the seed comes from a file that this module reads and deletes when the
    kernel starts; without a sandbox, from the environment variable ``AUTOGRADER_SEED``.
    """
    seed = _SANDBOX_SEED or os.environ.get("AUTOGRADER_SEED")
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


def as_float_array(value: Any) -> np.ndarray:
    """``value`` as a NumPy array, keeping a floating dtype if it has one (float16/32/64, torch tensors too).

    Integers and booleans become float64. Raises TypeError or ValueError when ``value`` is not numeric.
    """
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    elif isinstance(value, (list, tuple)) and value and type(value[0]).__module__.startswith("torch"):
        value = [v.detach().cpu().numpy() for v in value]
    arr = np.asarray(value)
    if arr.dtype.kind == "f":
        return arr
    if arr.dtype.kind not in "biu":
        arr = np.asarray(value, dtype=np.float64)  # raises on non-numeric input
    return arr.astype(np.float64)


def precision_tolerance(dtype: Any, expected: np.ndarray, atol: float) -> float:
    """The tolerance for a float answer of ``dtype``: ``atol``, or what that dtype can represent if coarser.

    A float32 answer to a value of size 10 is only good to about 10 * 1.2e-7 per operation; the tolerance is
    ``max(atol, 256 * eps(dtype) * max(1, |expected|))`` so that a correct float32 computation passes while a
    wrong formula, whose error is of the size of the values, still fails. Half precision is judged as float32
    (its 3 significant digits would let wrong answers through).
    """
    eps = float(np.finfo(dtype).eps) if np.dtype(dtype).kind == "f" else float(np.finfo(np.float64).eps)
    eps = min(eps, float(np.finfo(np.float32).eps))
    scale = float(np.max(np.abs(expected))) if np.size(expected) else 1.0
    return max(atol, 256 * eps * max(1.0, scale))


def format_pair(expected: Any, got: Any) -> tuple[str, str]:
    """The expected and the received value as strings that differ whenever the values differ.

    Numbers get more significant digits (6, then up to 17) until the two print differently; when they still
    print the same (the values are equal but the dtypes are not, say) the dtypes are added.
    """
    e_arr, g_arr = np.asarray(expected), np.asarray(got)
    numeric = e_arr.dtype.kind in "biuf" and g_arr.dtype.kind in "biuf"
    if not numeric:
        return _short(expected), _short(got)
    for digits in (6, 8, 10, 12, 15, 17):
        def fmt(a, digits=digits):
            if a.ndim == 0:
                return f"{a.item():.{digits}g}"
            with np.printoptions(precision=digits, threshold=20, linewidth=200, floatmode="maxprec"):
                return " ".join(np.array2string(a, separator=", ").split())
        e_text, g_text = fmt(e_arr), fmt(g_arr)
        if e_text != g_text:
            return e_text, g_text
    return f"{e_text} ({e_arr.dtype})", f"{g_text} ({g_arr.dtype})"


def compare_arrays(got: Any, expected: np.ndarray, *, atol: float, what: str = "result",
                   diagnoses: list[tuple[Any, str]] = (), dtype: Any = None,
                   match_atol: float | None = None) -> Failure | None:
    """None if ``got`` equals ``expected`` within tolerance; else a :class:`Failure`.

    Any float dtype is accepted and judged to the precision it can represent (:func:`precision_tolerance`);
    torch tensors are converted. The Failure lists the diagnoses whose buggy value ``got`` matches; the check
    names a hint only if it matches on every failing case (:func:`run_check`).

    Args:
        got: what the student's function returned.
        expected: the reference value (array or scalar).
        atol: absolute tolerance for a float64 answer (float64 numbers).
        what: how to call the value in the message.
        diagnoses: ``(buggy_value, hint)`` pairs: the value a known mistake produces on this case, and the hint
            that names that mistake. A buggy value may hold inf or NaN: it matches where the answer has them.
        dtype: if given, ``got`` is converted to it first (for a value whose dtype the statement fixes).
        match_atol: how close ``got`` must be to a buggy value to match it (default ``atol``); smaller when
            ``atol`` is a loose threshold within which several mistakes would match.
    """
    expected = np.asarray(expected)
    try:
        arr = as_float_array(got) if dtype is None else np.asarray(got, dtype=dtype)
    except (TypeError, ValueError, AttributeError):
        return Failure(f"{what} should be {'a number' if expected.ndim == 0 else 'an array'}; got {_short(got)}",
                       expected=expected, got=got, what=what)
    tol = precision_tolerance(arr.dtype, expected, atol)
    match_tol = tol if match_atol is None else precision_tolerance(arr.dtype, expected, match_atol)
    matched = []
    for buggy, hint in diagnoses:
        buggy = np.asarray(buggy, dtype=float)
        if buggy.shape == arr.shape and np.allclose(arr, buggy, atol=match_tol, rtol=0, equal_nan=True) and not (
                buggy.shape == expected.shape and np.allclose(buggy, expected, atol=tol, rtol=0)):
            matched.append(hint)
    if arr.shape != expected.shape:
        return Failure(f"{what} should have shape {expected.shape}; got shape {arr.shape}", hints=matched,
                       expected=expected, got=got, what=what, tolerance=tol)
    if np.allclose(arr, expected, atol=tol, rtol=0, equal_nan=False):
        return None
    if expected.ndim == 0:
        e_text, g_text = format_pair(expected, arr)
        return Failure(f"{what} should be {e_text}; got {g_text}", hints=matched, expected=expected, got=arr,
                       what=what, tolerance=tol)
    diff = np.abs(arr - expected)
    worst = np.unravel_index(np.argmax(np.where(np.isnan(diff), np.inf, diff)), arr.shape)
    index = int(worst[0]) if len(worst) == 1 else tuple(int(i) for i in worst)
    e_text, g_text = format_pair(expected[worst], arr[worst])
    return Failure(f"{what} differs from the reference; largest difference at index {index}: "
                   f"expected {e_text}, got {g_text}", hints=matched, expected=expected, got=arr, what=what,
                   tolerance=tol)


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


#: Printed (after the ✗) when an answer calls the reference implementation of its own exercise.
REFERENCE_CALLED = "your function calls the reference implementation of this exercise"


def _reference_functions(name: str) -> list[Callable]:
    """The reference implementations of exercise ``name``: functions so named in the loaded ``solutions`` modules."""
    found = []
    for module_name, module in list(sys.modules.items()):
        if module_name == "solutions" or module_name.startswith("solutions."):
            candidate = getattr(module, name, None)
            if (isinstance(candidate, types.FunctionType) and _reference_module(candidate)
                    and candidate not in found and not candidate.__closure__):
                found.append(candidate)
    return found


def _tripwire(*args, **kwargs):
    """Stands in for a reference implementation while the student's function runs (see ``_guarding_reference``).

    It runs with the globals of the module it replaces a function of, so it names this module by import.
    """
    import autograder.checks._harness as harness  # noqa: PLC0415

    harness._REFERENCE_CALLS.append(harness._GUARDED_NOW[-1] if harness._GUARDED_NOW else "solutions")
    raise RuntimeError("the reference implementation of this exercise is not available to answers")


_REFERENCE_CALLS: list[str] = []
_GUARDED_NOW: list[str] = []


def _guarding_reference(fn: Callable, name: str) -> tuple[Callable, list[str]]:
    """``fn`` wrapped so that, while it runs, the reference implementation of exercise ``name`` cannot run.

    Calling it (by any name or alias: an import in an earlier cell, ``functools.partial``, a wrapper) raises
    ``RuntimeError`` inside the student's code and is recorded in the returned list, which the caller checks
    after the cases (a student who catches the error is still caught). The reference functions' code objects
    are swapped for :func:`_tripwire` during each call and put back after it, so the check's own use of the
    reference, outside the student's calls, is unaffected.
    """
    targets = _reference_functions(name)
    calls: list[str] = []
    if not targets:
        return fn, calls

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        saved = [(target, target.__code__) for target in targets]
        _GUARDED_NOW.append(f"{targets[0].__module__}.{name}")
        before = len(_REFERENCE_CALLS)
        try:
            for target in targets:
                target.__code__ = _tripwire.__code__
            return fn(*args, **kwargs)
        finally:
            for target, code in saved:
                target.__code__ = code
            _GUARDED_NOW.pop()
            calls.extend(_REFERENCE_CALLS[before:])
            del _REFERENCE_CALLS[before:]

    return guarded, calls


def student_copy(fn: types.FunctionType) -> types.FunctionType:
    """A copy of the reference function ``fn`` that the checks treat as a student's answer (for tests, benchmarks).

    The copy runs the same code but is a function object of its own in module ``__main__``: the checks refuse
    the reference itself, and block it while an answer runs (``_guarding_reference``), not a copy of its code.
    """
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = dict(fn.__kwdefaults__) if fn.__kwdefaults__ else None
    copy.__doc__, copy.__module__, copy.__qualname__ = fn.__doc__, "__main__", fn.__qualname__
    return copy


#: Values that cannot be changed in place: passed without copying (the exact types first, for speed).
_SCALAR_TYPES = frozenset({int, float, bool, str, type(None), np.float64, np.float32, np.int64, np.bool_})
_IMMUTABLE = (int, float, complex, str, bytes, type(None), np.generic)


def _kept_as_is(value: Any) -> bool:
    """Objects an answer receives as they are, not copied: those an honest answer changes by using them.

    Random generators (drawing advances them), Gymnasium environments (stepping changes them), torch modules
    and optimizers (a training step updates them), functions and modules. A check that passes one of these
    must build its expected values from objects of its own (a second environment reset with the same seed, a
    copy of the network made before the call), never from the one the answer used.
    """
    if isinstance(value, (np.random.Generator, np.random.RandomState, random.Random, types.FunctionType,
                          types.BuiltinFunctionType, types.MethodType, types.ModuleType, functools.partial, type)):
        return True
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, (torch.nn.Module, torch.optim.Optimizer)):
        return True
    return any((cls.__module__ or "").split(".")[0] == "gymnasium" for cls in type(value).__mro__[:-1])


def _parameter_names(name: str) -> list[str]:
    """The positional parameter names of the reference implementation of exercise ``name`` (empty if none)."""
    for reference in _reference_functions(name):
        try:
            parameters = inspect.signature(reference).parameters.values()
        except (TypeError, ValueError):
            continue
        return [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return []


def _with_private_copies(fn: Callable, name: str, passed_as_is: Collection[str]) -> Callable:
    """``fn`` called with deep copies of its arguments, except those named in ``passed_as_is`` and stateful ones.

    An answer may write into whatever it is given (the rules for answers cannot stop
    ``torch.from_numpy(mdp.R).zero_()``). With private copies, nothing it does to its inputs reaches the check's
    objects: not the expected value a case computes after the call, nor the instances of later cases. Arguments
    are named by the reference implementation's signature. ``passed_as_is`` names the arguments an exercise
    updates in place (its answer is the change: ``Q`` in a Q-learning update) and those whose change a case
    checks itself; a case must compute its expected values from its own copy of those, before the call.
    Objects for which :func:`_kept_as_is` holds are never copied; a value that cannot be deep-copied (a torch
    tensor inside an autograd graph) is passed as it is.
    """
    as_is = frozenset(passed_as_is)
    as_is_positions = frozenset(i for i, parameter in enumerate(_parameter_names(name)) if parameter in as_is)

    def copy_of(value: Any, memo: dict) -> Any:
        if isinstance(value, _IMMUTABLE) or _kept_as_is(value):
            return value
        try:
            copied = copy.deepcopy(value, memo)
        except Exception:  # noqa: BLE001 -- not copyable (a non-leaf tensor): the case must not rely on it
            return value
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            copied.flags.writeable = False  # an input the statement says is read-only stays so
        return copied

    @functools.wraps(fn)
    def call(*args, **kwargs):
        memo: dict = {}
        args = [value if (type(value) in _SCALAR_TYPES or i in as_is_positions) else copy_of(value, memo)
                for i, value in enumerate(args)]
        for key, value in kwargs.items():
            if not (type(value) in _SCALAR_TYPES or key in as_is):
                kwargs[key] = copy_of(value, memo)
        return fn(*args, **kwargs)

    return call


def run_check(name: str, fn: Callable, cases: list[Case], points: float, *,
              time_limit: float | None = None, helpers: dict[str, Callable] | None = None,
              passed_as_is: Collection[str] = ()) -> Score:
    """Run ``cases`` on ``fn``, print one line per case and a summary, and return the :class:`Score`.

    A case fails when its ``run`` returns a message or raises; the student's warnings and stderr output are
    shown on stdout. After a case times out the remaining ones are skipped (they would likely time out too).
    ``time_limit`` is in seconds per case (default: ``DEFAULT_TIME_LIMIT``). ``helpers`` maps the names of
    earlier exercises that ``fn`` calls to their reference implementations, used while the cases run
    (see :func:`using_reference_helpers`). Every call of ``fn`` gets private copies of its arguments except
    the parameters named in ``passed_as_is`` (see :func:`_with_private_copies`).
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
    guarded, calls = _guarding_reference(fn, name)
    with using_reference_helpers(fn, helpers or {}):
        passed = _run_cases(_with_private_copies(guarded, name, passed_as_is), cases, time_limit, out)
    if calls:
        print(f"{FAIL_MARK} {name}: {REFERENCE_CALLED} (`{calls[0]}`): an answer must compute its result "
              "itself; 0 points", file=out)
        return Score(name, 0, max(len(cases), 1), points)
    score = Score(name, passed, len(cases), points)
    print(f"{name}: {passed}/{len(cases)} cases passed, {score.earned:g}/{points:g} points", file=out)
    return score


#: Folders of the checks and the reference code: a warning raised there (e.g. by a check computing what a known
#: mistake would return on an extreme case) is not the student's and is not reported as theirs.
_OUR_FOLDERS = (str(Path(__file__).resolve().parent) + os.sep,
                str(Path(__file__).resolve().parents[2] / "solutions") + os.sep)


def _from_our_code(warning: warnings.WarningMessage) -> bool:
    """Whether ``warning`` was raised by a line of the checks or of the reference solutions."""
    try:
        return str(Path(warning.filename).resolve()).startswith(_OUR_FOLDERS)
    except (OSError, ValueError, TypeError):
        return False


def _run_cases(fn: Callable, cases: list[Case], time_limit: float, out) -> int:
    """Run and report each case, then explain the failures; returns how many passed."""
    passed = 0
    timed_out = False
    failures: list[tuple[Case, str]] = []
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
            failures.append((case, message))
            print(f"  {FAIL_MARK} {case.name}: {message}", file=out)
        for warning in [w for w in caught if not _from_our_code(w)][:3]:
            print(f"      (warning from your code: {warning.category.__name__}: {warning.message})", file=out)
        if elapsed > time_limit / 2 and not timed_out:
            print(f"      (this case took {elapsed:.1f} s; the limit is {time_limit:g} s)", file=out)
    _explain(failures, out)
    return passed


def explaining_hints(messages: list[str]) -> list[str]:
    """The hints that explain every failing case: those every message is a :class:`Failure` matching."""
    if not messages or not all(isinstance(m, Failure) for m in messages):
        return []
    return [h for h in messages[0].hints if all(h in m.hints for m in messages[1:])]


def _explain(failures: list[tuple[Case, str]], out) -> None:
    """After the cases: the hint that explains every failure, or else the smallest failing case in full."""
    if not failures:
        return
    messages = [m for _, m in failures]
    if any(m.startswith("not implemented yet") for m in messages):
        return
    hints = explaining_hints(messages)
    if hints:
        lead = "Likely mistake" if len(failures) > 1 else "Likely mistake (from the one failing case)"
        if len(hints) == 1:
            print(f"  → {lead}: {hints[0]}", file=out)
        else:
            print(f"  → {lead}, one of: " + "; or ".join(hints), file=out)
        return
    if not any(isinstance(m, Failure) for m in messages):
        return  # every message states what is wrong with the output itself
    ranked = sorted(enumerate(failures), key=lambda item: (item[1][0].measure(), item[0]))
    case, message = next((c, m) for _, (c, m) in ranked if isinstance(m, Failure))
    print(f"  → Smallest failing case, to debug: {case.name}", file=out)
    for name, value in (case.inputs or {}).items():
        print(f"      {name} = {_short(value, 300)}", file=out)
    for line in _side_by_side(message.expected, message.got, message.what, message.tolerance):
        print(f"      {line}", file=out)


def _side_by_side(expected: Any, got: Any, what: str, tolerance: float) -> list[str]:
    """Lines that show the expected and the received value together; for big arrays, the entries that differ."""
    if not (_numeric(expected) and _numeric(got)):
        return [f"expected {what} = {_short(expected, 300)}", f"your     {what} = {_short(got, 300)}"]
    e_arr, g_arr = as_float_array(expected), as_float_array(got)
    if e_arr.shape != g_arr.shape or e_arr.size <= 12:
        e_text, g_text = format_pair(e_arr, g_arr)
        return [f"expected {what} = {e_text}", f"your     {what} = {g_text}"]
    differ = np.argwhere(~np.isclose(g_arr, e_arr, atol=tolerance, rtol=0))
    lines = [f"{len(differ)} of the {e_arr.size} entries of {what} (shape {e_arr.shape}) differ; the first ones:"]
    for index in differ[:5]:
        index = tuple(int(i) for i in index)
        e_text, g_text = format_pair(e_arr[index], g_arr[index])
        lines.append(f"  {what}[{', '.join(map(str, index))}]: expected {e_text}, yours {g_text}")
    return lines


def _numeric(value: Any) -> bool:
    try:
        return as_float_array(value).dtype.kind == "f"
    except (TypeError, ValueError, AttributeError):
        return False
