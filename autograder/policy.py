"""The static policy that every answer cell must pass before it is graded (issue 12, design (b)).

Why: grading runs the release notebook with the student's answer cells spliced in. The checks
(:mod:`autograder.checks`) run in the same Python process as the student's functions, so code in an answer could
otherwise reach the checks and forge a score: replace ``check_*`` or ``run_check``, patch ``Score.__repr__`` or
``builtins.round``, walk up the call stack to the check's frame (``sys._getframe``, ``gen.gi_frame.f_back``,
``exc.__traceback__.tb_frame``, ``fn.__globals__``), patch a module the check uses (``np.allclose = ...``),
return an object that lies in comparisons, install a torch hook on the check's model, exec code read from a file,
call the reference implementation, or read the check's freed arrays back through uninitialised memory
(``np.empty``). :func:`check_answer` parses an answer cell and reports every construct outside the rules below as
a :class:`Violation`; an answer cell with a violation is not run when grading (its exercise scores 0 and the
reasons are shown to the student by ``validate`` and to the instructor in report.csv).

The policy is an allow-list first: at the top level of a cell only imports of :data:`ALLOWED_MODULES`,
definitions (``def``, ``class``), assignments to plain names, constants and ``pass`` are kept; anything else
(``print(f(x))``, ``for`` loops, ...) is *dropped* from the source that is graded, with a note, because students
test their code in the answer cell and that must not cost them. Inside what is kept, deny-lists close the known
routes: forbidden names (``getattr``, ``exec``, dunder names...), forbidden attributes (anything starting with
``_``, frame and code attributes, file loading, torch hooks, global settings, uninitialised memory, modules
outside the allow-list that allowed modules expose, such as ``torch.os`` or ``typing.sys``), attribute assignment
(except ``self.x = ...`` in ``__init__``), special methods, restricted class bases and more;
:func:`describe_rules` lists them all for the book, from the same constants. tests/test_policy.py walks numpy,
torch and the allowed stdlib modules through every attribute the policy allows and fails if a path leads to
another module, a dangerous built-in or a metaclass, so a new library version cannot silently open a route.

Threat model and limits. The student's notebook runs in a sandbox (no network, read-only system, private scratch
folder, resource limits): that is what protects the grader, the other students and the machine. This policy is
the second line of defence with a narrower job: it protects the *check* from the code of the student whose
answer it is grading, in the same process. It is a static check of Python source, so it is conservative (some
unusual but correct styles are refused, with a message saying what to write instead) and it is not a proof:

* the allowed libraries are large C code bases; a memory-safety bug in one of them (an unchecked index, say)
  would give an answer powers the policy does not model;
* it sees one cell, not the notebook: names that the release's narrative cells bind to modules are refused by
  name (:data:`_NOTEBOOK_MODULE_NAMES`: ``sys``, ``plt``, ``ref``...), and a new chapter that binds another name
  to a dangerous module must be added there; reference helpers that a chapter gives to students by name
  (``epsilon_greedy`` in Chapter 2) stay callable, and only the grader's run-time guard stops an answer that
  calls the reference implementation of its own exercise through them;
* it cannot stop an answer from changing the objects a check passes it: ``torch.from_numpy(mdp.R).zero_()``
  writes into an array even if the check made it read-only. So ``run_check`` gives every call of an answer
  private deep copies of its arguments, except the ones an exercise updates in place or whose change it reports
  and stateful objects (generators, environments, networks); for those the check computes its expected values
  from its own copies, made before the call (tests/test_input_mutation.py tries both with adversarial
  answers). Likewise the checks treat an answer's return value as untrusted data (convert it to a plain array
  before comparing).
"""

from __future__ import annotations
import __future__

import ast
import builtins
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["ALLOWED_MODULES", "CheckedAnswer", "Violation", "check_answer", "defined_functions", "describe_rules"]

#: Top-level modules an answer may import (and their submodules, except those whose path holds a forbidden
#: attribute name, e.g. ``numpy.lib`` or ``torch.utils``).
ALLOWED_MODULES: frozenset[str] = frozenset({
    "numpy", "math", "cmath", "random", "statistics", "collections", "itertools", "functools", "heapq", "bisect",
    "typing", "copy", "numbers", "fractions", "torch",
})

#: The longest cell checked (characters); a longer one is a violation, not parsed.
MAX_CELL_CHARS = 200_000

# ------------------------------------------------------------------------------------------------------ names

_DUNDER_HINT = "names starting with `__` reach Python's internals"

#: Names that may not be used at all (load, store or del), with what to do instead.
_FORBIDDEN_NAMES: dict[str, str] = {
    "exec": "it runs code from a string",
    "eval": "it runs code from a string",
    "compile": "it builds code from a string",
    "globals": "it reaches the notebook's variables by name",
    "locals": "it reaches variables by name",
    "vars": "it reaches an object's internals: use `obj.name`",
    "getattr": "use `obj.name`",
    "setattr": "answers may not change attributes of objects",
    "delattr": "answers may not change attributes of objects",
    "open": "answers may not read or write files",
    "input": "answers are graded without a keyboard",
    "breakpoint": "it starts the debugger, which reaches every frame",
    "help": "it is interactive",
    "exit": "it stops the kernel",
    "quit": "it stops the kernel",
    "memoryview": "it exposes raw memory",
    "get_ipython": "it reaches the notebook's kernel",
    "display": "it reaches the notebook's display machinery: use `print`",
    "In": "it is IPython's input history",
    "Out": "it is IPython's output history",
}

#: IPython's history variables: _ih _oh _dh _i _ii _iii _i<n> _<n> (``__`` and ``___`` are dunder names anyway).
_IPYTHON_HISTORY = re.compile(r"_(?:ih|oh|dh|i{1,3}|i\d+|\d+)")

#: Names that the book's notebooks (or any notebook) may bind to modules other than the allowed ones. An answer
#: may not use them unless its own function binds them (a parameter or local variable of that name is fine):
#: Chapter 1's first cell imports ``sys``, and every chapter binds its reference module to ``ref``/``dp``.
_NOTEBOOK_MODULE_NAMES: dict[str, str] = {
    "solutions": "it holds the reference implementations: write your own",
    "ref": "in the book's notebooks `ref` is the reference implementations (`solutions`): write your own",
    "dp": "in the book's notebooks `dp` is Chapter 1's reference implementations (`solutions`): write your own",
    "bandits": "in the book's notebooks `bandits` is a reference module (`solutions`): write your own",
    "autograder": "it is the grader",
    "plt": "plot outside your functions (top-level statements are not run while grading)",
    "matplotlib": "plot outside your functions (top-level statements are not run while grading)",
    "mpl": "plot outside your functions (top-level statements are not run while grading)",
    **{name: "answers may use only the allowed modules" for name in (
        "sys", "os", "builtins", "importlib", "gc", "inspect", "ctypes", "IPython", "ipykernel", "subprocess",
        "pickle", "marshal", "shutil", "pathlib", "threading", "multiprocessing", "socket", "tempfile", "logging",
        "traceback", "linecache", "weakref", "copyreg", "runpy", "codeop", "contextlib", "dataclasses",
        "operator", "types", "signal", "io", "gym", "gymnasium", "tqdm", "warnings", "posix", "site", "string",
        "abc", "dis", "ast", "atexit", "asyncio", "concurrent", "sysconfig",
    )},
}

#: Names an answer may not bind at all (assign, define, import as, use as a parameter, delete): the policy relies
#: on them meaning the built-in (``type(x)``, ``isinstance(x, np.ndarray)``, ``super().__init__()``, class bases).
_BUILTIN_EXCEPTIONS = frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException))
_UNBINDABLE = frozenset({"object", "super", "type", "isinstance", "issubclass"}) | _BUILTIN_EXCEPTIONS

#: Names an answer may bind only by importing the right module (class bases such as ``nn.Module`` rely on them).
_IMPORT_ONLY: dict[str, tuple[str, str]] = {  # name: (the module or object it must be, the import to write)
    "np": ("numpy", "import numpy as np"),
    "numpy": ("numpy", "import numpy"),
    "torch": ("torch", "import torch"),
    "nn": ("torch.nn", "from torch import nn"),
    "Module": ("torch.nn.Module", "from torch.nn import Module"),
    "NamedTuple": ("typing.NamedTuple", "from typing import NamedTuple"),
}
_EXCEPTION_SUFFIXES = ("Error", "Exception", "Warning")
_MODULE_CLASS_PATH = "torch.nn.modules.module.Module"  # where nn.Module is defined: importing it from there is ok

# ------------------------------------------------------------------------------------------------- attributes

_FRAMES = "it reaches the running program's frames, code or globals"
_FILES = "answers may not load or save files, pickles or compiled code"
_CODE = "it compiles or runs code, or loads native libraries"
_MODULE = "it is a module that answers may not use"
_HOOK = "it installs a hook that runs inside the grader's computations"
_SETTING = "it changes a setting that the grader's code shares"
_UNINIT = "it returns uninitialised memory (which may hold the grader's values): use np.zeros / torch.zeros"
_PATCH = "it changes or reads attributes by name"
_CLASS = "it builds classes from a dictionary (with any special method): use a `class` statement"
_TESTS = "it is a test suite or tool of a library, not for answers"
_MEMORY = "it builds tensors from indices that are not checked (memory errors)"

#: Attributes an answer may not use (besides every name starting with ``_``), with why. Each entry was found by
#: reading numpy 2.x, torch 2.x and the allowed stdlib modules; tests/test_policy.py walks those modules and fails
#: if a path of allowed attributes reaches a module outside the allowed ones.
_FORBIDDEN_ATTRIBUTES: dict[str, str] = {
    # frames, code objects, tracebacks, class internals: the ways up to the caller (the check) and its globals
    **dict.fromkeys((
        "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "cr_origin", "ag_frame",
        "ag_code", "ag_await", "f_back", "f_globals", "f_locals", "f_builtins", "f_code", "f_trace", "f_lasti",
        "f_lineno", "tb_frame", "tb_next", "tb_lasti", "tb_lineno", "co_code", "co_consts", "co_names",
        "func_globals", "func_code", "func_closure", "cell_contents", "mro",
    ), _FRAMES),
    # file, pickle and compiled-code loading (numpy, torch), including modules that hold them
    **dict.fromkeys((
        "load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt", "fromfile",
        "tofile", "memmap", "fromregex", "DataSource", "dump", "dumps", "from_file", "load_library", "hub",
        "package", "serialization", "open", "imread", "imsave", "savefig", "read_array", "write_array",
    ), _FILES),
    # code generation and execution, native code, and the modules that expose them
    **dict.fromkeys((
        "exec", "eval", "compile", "globals", "locals", "vars", "jit", "fx", "export", "onnx", "dynamo",
        "compiler", "ops", "classes", "library", "utils", "cpp_extension", "f2py", "distutils", "testing",
        "ctypeslib", "ctypes", "lib", "cpp", "get_type_hints", "ForwardRef", "evaluate_forward_ref",
        "Formatter", "vformat", "system", "popen", "distributed", "multiprocessing", "profiler", "overrides",
        "monitor", "mtia", "xpu", "mps", "accelerator", "quantization", "ao", "backends",
    ), _CODE),
    # getattr/setattr by another name: functools.update_wrapper(np, fake, assigned=["allclose"]) patches numpy,
    # operator.attrgetter("__globals__") reads a dunder, copy.dispatch_table changes how objects are copied
    **dict.fromkeys((
        "getattr", "setattr", "delattr", "update_wrapper", "wraps", "attrgetter", "methodcaller",
        "dispatch_table", "copyreg", "sctypeDict", "typecodes", "EXCLUDED_ATTRIBUTES",
    ), _PATCH),
    # modules outside the allow-list that allowed modules expose as attributes (torch.os, typing.sys,
    # fractions.operator, numpy.ma.core.inspect, ...)
    **dict.fromkeys((
        "os", "sys", "builtins", "importlib", "inspect", "gc", "types", "operator", "subprocess", "pickle",
        "marshal", "shutil", "pathlib", "tempfile", "glob", "io", "threading", "signal", "warnings", "logging",
        "traceback", "linecache", "weakref", "contextlib", "contextvars", "dataclasses", "abc", "ast", "dis",
        "enum", "re", "stdlib_re", "string", "struct", "json", "platform", "sysconfig", "textwrap", "zipfile",
        "tarfile", "gzip", "hashlib", "uuid", "socket", "codecs", "pickletools", "argparse", "mp", "reduction",
        "reducer", "python_multiprocessing", "typing_extensions", "gym", "gymnasium", "matplotlib", "pyplot",
        "IPython", "autograder", "solutions", "concurrent", "fileinput", "fnmatch", "difflib", "errno",
    ), _MODULE),
    # torch hooks that run the answer's code inside the grader's forward/backward passes (every "register*"
    # attribute is forbidden as well), and the nn.utils helpers that install hooks under other names
    **dict.fromkeys((
        "saved_tensors_hooks", "save_on_cpu", "disable_saved_tensors_hooks", "graph", "prune", "parametrize",
        "parametrizations", "weight_norm", "spectral_norm",
    ), _HOOK),
    # process-wide settings the grader's code shares (every "set_*" attribute is forbidden as well)
    **dict.fromkeys((
        "printoptions", "use_deterministic_algorithms", "setflags", "flags", "rcParams", "rc", "rc_context",
        "switch_backend",
    ), _SETTING),
    # uninitialised memory: `np.empty(n)` often returns the buffer of an array the check just freed, such as the
    # reference's last iterate (an answer `return np.empty(mdp.n_states)` passed value iteration's hidden cases)
    **dict.fromkeys((
        "empty", "empty_like", "empty_strided", "empty_permuted", "empty_quantized", "new_empty",
        "new_empty_strided", "new", "resize_", "resize_as_", "as_strided", "masked_all", "masked_all_like",
        "recarray", "chararray", "rec", "materialize", "UninitializedParameter", "UninitializedBuffer",
        "getfield", "setfield", "mrecords", "MaskedRecords", "mrecarray",
    ), _UNINIT),
    # test suites and tools shipped inside numpy (numpy.tests, numpy.conftest...): importing them runs their code,
    # and their functions reload modules, start processes and load libraries
    **dict.fromkeys(("tests", "test", "conftest", "testutils", "mypy_plugin"), _TESTS),
    # sparse tensors built from indices torch does not check by default ("Memory errors (e.g. SEGFAULT) will
    # occur when operating on a sparse tensor which violates the invariants")
    **dict.fromkeys(("sparse_coo_tensor", "sparse_csr_tensor", "sparse_csc_tensor", "sparse_bsr_tensor",
                     "sparse_bsc_tensor", "sparse_compressed_tensor"), _MEMORY),
    # metaclasses and `type` by another name: calling one with three arguments builds a class from a dict, so
    # with any special method (typing.ABCMeta("X", (), {"__eq__": ...}), typing.Type("X", (), {...}))
    **dict.fromkeys(("ABCMeta", "FunctionMeta", "NamedTupleMeta", "EnumMeta", "EnumType", "Type"), _CLASS),
}

#: Attribute prefixes that are forbidden, with why.
_FORBIDDEN_PREFIXES: dict[str, str] = {
    "register": _HOOK,  # Module.register_forward_hook, Tensor.register_hook, torch.nn.modules.module.register_*...
    "set_": _SETTING,  # torch.set_default_dtype, torch.set_grad_enabled, np.set_printoptions, Tensor.set_...
    "gi_": _FRAMES, "cr_": _FRAMES, "ag_": _FRAMES, "tb_": _FRAMES, "co_": _FRAMES,
}

#: Attribute suffixes that are forbidden, with why.
_FORBIDDEN_SUFFIXES: dict[str, str] = {
    "Meta": _CLASS,  # metaclasses: ABCMeta, NamedTupleMeta...
}

#: Classes that may be named only in type hints, isinstance checks and comparisons: calling them returns
#: uninitialised memory (``np.ndarray((3,))``, ``torch.Tensor(3)``, ``torch.FloatTensor(3)``).
_TYPE_ONLY = re.compile(r"ndarray|(?:[A-Z][A-Za-z0-9]*)?Tensor|[A-Z][A-Za-z0-9]*Storage")

#: Reductions whose ``where=`` needs no ``out=`` (masked-out entries are skipped, not left uninitialised).
_REDUCTIONS = frozenset({
    "sum", "prod", "mean", "std", "var", "max", "min", "amax", "amin", "any", "all", "nansum", "nanprod",
    "nanmean", "nanstd", "nanvar", "nanmax", "nanmin", "reduce", "copyto",
})


def _forbidden_attribute(attr: str) -> str | None:
    """Why an answer may not use attribute ``attr`` (also a module path part or an imported name), or None."""
    if attr.startswith("_"):
        return "names starting with `_` are private or internal"
    reason = _FORBIDDEN_ATTRIBUTES.get(attr)
    if reason is None:
        reason = next((r for p, r in _FORBIDDEN_PREFIXES.items() if attr.startswith(p)), None)
    if reason is None:
        reason = next((r for p, r in _FORBIDDEN_SUFFIXES.items() if attr.endswith(p)), None)
    return reason


# --------------------------------------------------------------------------------------------------- the API


@dataclass(frozen=True)
class Violation:
    """One construct of an answer cell that the policy forbids.

    Attributes:
        line: 1-based line in the cell.
        message: one sentence a student understands, e.g. "`getattr` is not allowed in answers: use `obj.name`".
    """

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class CheckedAnswer:
    """The result of :func:`check_answer`.

    Attributes:
        source: the source to run when grading: the cell with its dropped top-level statements blanked out (line
            numbers are kept), or ``""`` if the cell does not parse or keeps nothing.
        violations: what the policy forbids, by line; the answer is not run when there is any.
        dropped: notes on the top-level statements that are not run, e.g.
            "line 12: top-level `print(...)` is not run while grading".
        defines: names of the top-level functions and classes the cell defines, in order, each once.
    """

    source: str
    violations: tuple[Violation, ...]
    dropped: tuple[str, ...]
    defines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether the cell passes the policy (no violation)."""
        return not self.violations


def check_answer(source: str) -> CheckedAnswer:
    """Check an answer cell against the policy and compute the source to grade.

    Args:
        source: the raw text of the answer cell.

    Returns:
        A :class:`CheckedAnswer`. A cell that is not valid Python (IPython magics and shell commands included) has
        one violation and ``source == ""``. Never raises for any string input.

    Raises:
        TypeError: if ``source`` is not a ``str``.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    if len(source) > MAX_CELL_CHARS:
        return CheckedAnswer("", (Violation(1, f"the cell is longer than {MAX_CELL_CHARS} characters: it is not "
                                               "checked or run"),), (), ())
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as error:
        line = getattr(error, "lineno", None) or 1
        reason = getattr(error, "msg", None) or str(error)
        message = f"not valid Python ({reason}) (IPython magics and shell commands are not allowed in answers)"
        return CheckedAnswer("", (Violation(line, message),), (), ())
    except (RecursionError, MemoryError):
        return CheckedAnswer("", (Violation(1, "the cell is nested too deeply to be checked"),), (), ())

    try:
        return _check_tree(source, tree)
    except (RecursionError, MemoryError):
        return CheckedAnswer("", (Violation(1, "the cell is nested too deeply to be checked"),), (), ())


def _check_tree(source: str, tree: ast.Module) -> CheckedAnswer:
    kept: list[ast.stmt] = []
    dropped: list[str] = []
    for statement in tree.body:
        if _kept_at_top_level(statement):
            kept.append(statement)
        else:
            dropped.append(f"line {statement.lineno}: top-level {_describe_statement(statement)} is not run "
                           "while grading")
    violations = _Checker(ast.Module(body=kept, type_ignores=[])).run()
    defines = tuple(dict.fromkeys(s.name for s in kept if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                        ast.ClassDef))))
    unique = sorted(set(violations), key=lambda v: (v.line, v.message))
    return CheckedAnswer(_kept_source(source, tree.body, kept), tuple(unique), tuple(dropped), defines)


def defined_functions(source: str) -> tuple[str, ...]:
    """The names of the functions a cell defines at its top level (``def`` statements), in order, each once.

    Args:
        source: the text of a cell.

    Returns:
        The names; ``()`` if the cell is not valid Python.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ()
    functions = (ast.FunctionDef, ast.AsyncFunctionDef)
    return tuple(dict.fromkeys(s.name for s in tree.body if isinstance(s, functions)))


def describe_rules() -> str:
    """The rules as a short Markdown bullet list for the book, generated from this module's constants.

    Returns:
        Markdown text: one bullet per rule (the forbidden attributes in sub-bullets, one per reason).
    """
    modules = ", ".join(f"`{m}`" for m in sorted(ALLOWED_MODULES))
    names = ", ".join(f"`{n}`" for n in sorted(_FORBIDDEN_NAMES))
    notebook = ", ".join(f"`{n}`" for n in sorted(_NOTEBOOK_MODULE_NAMES))
    affixes = ", ".join([f"`{p}...`" for p in _FORBIDDEN_PREFIXES] + [f"`...{p}`" for p in _FORBIDDEN_SUFFIXES])
    reasons = list(dict.fromkeys(_FORBIDDEN_ATTRIBUTES.values()))
    attribute_lines = [
        f"  - {', '.join(f'`.{a}`' for a in sorted(a for a, r in _FORBIDDEN_ATTRIBUTES.items() if r == reason))}: "
        f"{reason}" for reason in reasons]
    return "\n".join([
        "- At the top level of an answer cell, only imports, `def` and `class` statements, assignments to plain "
        "names (`gamma = 0.9`), constants and `pass` are run while grading. Anything else (`print(...)`, "
        "`value_iteration(mdp)`, loops, `if`) is fine for testing your code but is skipped while grading.",
        f"- Imports: only {modules} and their submodules; no `from ... import *`, no relative imports.",
        "- Not allowed: the reference implementations (`solutions`) and the grader (`autograder`); a function "
        "that calls the reference implementation of its own exercise scores 0.",
        f"- Names that may not be used: any name starting with `__`; {names}; IPython's history variables "
        f"(`_i1`, `_3`, `_ih`...); and {notebook} (except as a parameter or local variable of your own "
        "function).",
        "- `type(x)` only with one argument, and only to compare or print it (prefer `isinstance`).",
        f"- Attributes: none starting with `_`, none named {affixes}, and none of these:",
        *attribute_lines,
        "- `np.ndarray`, `torch.Tensor`, `torch.FloatTensor` and the like only in type hints, `isinstance` and "
        "comparisons (calling them returns uninitialised memory): create arrays with `np.zeros`, `np.array`, "
        "`torch.zeros`, `torch.tensor`.",
        "- A call with `where=` (other than a NumPy reduction written `np.sum(x, where=m)`) also passes "
        "`out=np.zeros(...)` (or a local variable only ever set to a new NumPy array, `P = np.full(...)`); "
        "`np.pad` only called directly, with a literal mode "
        "other than `\"empty\"`; no `**kwargs` in calls (pass keyword arguments by name).",
        "- `.format(...)` only on a string literal whose fields have no `.` or `[` (f-strings are fine).",
        "- No assignment to or deletion of attributes (`x.y = 1`, `x.y += 1`, `del x.y`), except `self.y = ...` "
        "directly in the `__init__` of a class defined in the cell (with `self` its first parameter, not "
        "reassigned, and `__init__` not decorated).",
        "- Functions: no name starting with `__` other than `__init__`; no `async`/`await`; no `global` "
        "(`nonlocal` is fine); no `yield` inside a `with` block.",
        "- Classes: no keywords in the header (`metaclass=`); bases only `object`, exception classes, `nn.Module` "
        "(or `torch.nn.Module`, `Module`), `NamedTuple`, or a class defined earlier at the top of the same cell; "
        "no class attribute or method starting with `_` other than `__init__`.",
        "- `object`, `super`, `type`, `isinstance`, `issubclass` and the built-in exception names may not be "
        "redefined; `np`, `numpy`, `torch`, `nn`, `Module`, `NamedTuple` only by importing them; names ending in "
        "`Error`, `Exception` or `Warning` only by a `class` statement or by importing them under their own name.",
        "- Type hints name types only (`x: np.ndarray`, `-> float`, `list[int] | None`).",
    ])


# ---------------------------------------------------------------------------------------- top-level statements

def _plain_target(target: ast.expr) -> bool:
    if isinstance(target, ast.Name):
        return True
    if isinstance(target, ast.Starred):
        return _plain_target(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_plain_target(t) for t in target.elts)
    return False


def _kept_at_top_level(statement: ast.stmt) -> bool:
    """Whether a top-level statement is kept for grading: imports, definitions, plain assignments, constants."""
    if isinstance(statement, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                              ast.Pass)):
        return True
    if isinstance(statement, ast.Assign):
        return all(_plain_target(t) for t in statement.targets)
    if isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
        return isinstance(statement.target, ast.Name)
    if isinstance(statement, ast.Expr):
        return isinstance(statement.value, ast.Constant)
    return False


def _describe_statement(statement: ast.stmt) -> str:
    if isinstance(statement, ast.Expr):
        value = statement.value
        if isinstance(value, ast.Call):
            return f"`{_callee_text(value.func)}(...)`"
        return "expression"
    names = {
        ast.For: "`for` loop", ast.While: "`while` loop", ast.If: "`if` statement", ast.With: "`with` statement",
        ast.Try: "`try` statement", ast.Assert: "`assert`", ast.Raise: "`raise`", ast.Delete: "`del`",
        ast.Match: "`match` statement", ast.Global: "`global` statement", ast.Nonlocal: "`nonlocal` statement",
        ast.Assign: "assignment to an attribute or item", ast.AugAssign: "assignment to an attribute or item",
        ast.AnnAssign: "assignment to an attribute or item",
    }
    return names.get(type(statement), f"`{type(statement).__name__}` statement")


def _callee_text(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        inner = _callee_text(func.value)
        return f"{inner}.{func.attr}" if inner != "..." else f"....{func.attr}"
    return "..."


def _kept_source(source: str, body: list[ast.stmt], kept: list[ast.stmt]) -> str:
    """``source`` with the lines of the dropped statements blanked, or the kept statements unparsed if a dropped
    statement shares a line with a kept one (``x = 1; print(x)``)."""
    if not kept:
        return ""
    kept_ids = {id(s) for s in kept}
    kept_lines: set[int] = set()
    for s in kept:
        first = min([s.lineno] + [d.lineno for d in getattr(s, "decorator_list", [])])
        kept_lines.update(range(first, s.end_lineno + 1))
    lines = source.splitlines(keepends=True)
    blank: set[int] = set()
    for s in body:
        if id(s) not in kept_ids:
            blank.update(range(s.lineno, s.end_lineno + 1))
    if blank & kept_lines:
        return ast.unparse(ast.Module(body=kept, type_ignores=[])) + "\n"
    out = []
    for number, line in enumerate(lines, start=1):
        if number in blank:
            ending = line[len(line.rstrip("\r\n")):]
            out.append(ending)
        else:
            out.append(line)
    result = "".join(out)
    try:  # the blanked text must be exactly the kept statements
        same = ast.dump(ast.parse(result)) == ast.dump(ast.Module(body=kept, type_ignores=[]))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        same = False
    if not same:
        return ast.unparse(ast.Module(body=kept, type_ignores=[])) + "\n"
    return result


# -------------------------------------------------------------------------------------------- scope analysis

_FUNCTION_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
                    ast.GeneratorExp)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _arguments(args: ast.arguments) -> list[ast.arg]:
    every = list(args.posonlyargs) + list(args.args) + list(args.kwonlyargs)
    if args.vararg:
        every.append(args.vararg)
    if args.kwarg:
        every.append(args.kwarg)
    return every


def _target_names(node: ast.AST) -> Iterator[str]:
    """Names bound by a target expression (assignment, for, with-as)."""
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Starred):
        yield from _target_names(node.value)
    elif isinstance(node, (ast.Tuple, ast.List)):
        for element in node.elts:
            yield from _target_names(element)


def _scope_bindings(scope: ast.AST) -> set[str]:
    """The names local to a function-like scope (parameters and every name it binds, not counting nested scopes;
    a walrus inside a nested comprehension binds in this scope)."""
    bound: set[str] = set()
    nonlocal_names: set[str] = set()
    if isinstance(scope, _COMPREHENSIONS):  # its targets; a walrus in it binds in the enclosing function
        for generator in scope.generators:
            bound.update(_target_names(generator.target))
        return bound
    bound.update(a.arg for a in _arguments(scope.args))
    roots = scope.body if isinstance(scope.body, list) else [scope.body]

    def visit(node: ast.AST, in_comprehension: bool) -> None:
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)) and not in_comprehension:
            bound.add(node.id)
        elif isinstance(node, ast.NamedExpr):
            bound.add(node.target.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not in_comprehension:
                bound.add(node.name)
            for child in node.decorator_list:
                visit(child, in_comprehension)
            if not isinstance(node, ast.ClassDef):
                for child in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                    visit(child, in_comprehension)
            else:
                for child in node.bases + [k.value for k in node.keywords]:
                    visit(child, in_comprehension)
            return
        elif isinstance(node, ast.Lambda):
            for child in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
                visit(child, in_comprehension)
            return
        elif isinstance(node, _COMPREHENSIONS):
            visit(node.generators[0].iter, in_comprehension)
            for child in ast.iter_child_nodes(node):  # walruses inside bind here
                if child is not node.generators[0].iter:
                    visit(child, True)
            return
        elif isinstance(node, (ast.Import, ast.ImportFrom)) and not in_comprehension:
            for alias in node.names:
                bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name and not in_comprehension:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name and not in_comprehension:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest and not in_comprehension:
            bound.add(node.rest)
        elif isinstance(node, ast.Nonlocal):
            nonlocal_names.update(node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, in_comprehension)

    for root in roots:
        visit(root, False)
    return bound - nonlocal_names


def _bound_names(node: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """Every (name, node) that binds or deletes a name anywhere under ``node``, nested scopes included."""
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, (ast.Store, ast.Del)):
            yield child.id, child
        elif isinstance(child, ast.NamedExpr):
            yield child.target.id, child
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield child.name, child
            if not isinstance(child, ast.ClassDef):
                for argument in _arguments(child.args):
                    yield argument.arg, argument
        elif isinstance(child, ast.Lambda):
            for argument in _arguments(child.args):
                yield argument.arg, argument
        elif isinstance(child, ast.ExceptHandler) and child.name:
            yield child.name, child
        elif isinstance(child, (ast.MatchAs, ast.MatchStar)) and child.name:
            yield child.name, child
        elif isinstance(child, ast.MatchMapping) and child.rest:
            yield child.rest, child
        elif isinstance(child, (ast.Nonlocal, ast.Global)):
            for name in child.names:
                yield name, child


# ---------------------------------------------------------------------------------------------------- checker

class _Checker(ast.NodeVisitor):
    """Walks the kept statements of a cell and collects the violations."""

    def __init__(self, module: ast.Module):
        self.module = module
        self.violations: list[Violation] = []
        self.parents: dict[int, ast.AST] = {}
        for parent in ast.walk(module):
            for child in ast.iter_child_nodes(parent):
                self.parents[id(child)] = parent
        # the stack of scopes: (node, names local to it); the module scope binds nothing that counts
        self.scopes: list[tuple[ast.AST, set[str]]] = [(module, set())]
        self.classes: list[ast.ClassDef] = []
        self.with_depth: list[int] = [0]  # per function: how many `with` blocks enclose the current node
        self.allowed_stores: set[int] = set()  # ids of `self.x` targets allowed in __init__
        self.allowed_init_attribute: set[int] = set()  # ids of `super().__init__` attribute nodes
        self.annotations: set[int] = set()
        self.top_classes: dict[str, int] = {}  # undecorated top-level classes: name -> line
        self.bound_once: set[str] = set()  # names bound exactly once in the whole cell

    def add(self, node: ast.AST, message: str) -> None:
        self.violations.append(Violation(getattr(node, "lineno", 1) or 1, message))

    def run(self) -> list[Violation]:
        self.check_bindings()
        for statement in self.module.body:
            self.visit(statement)
            if isinstance(statement, ast.ClassDef) and not statement.decorator_list:
                self.top_classes.setdefault(statement.name, statement.lineno)
        return self.violations

    # ----------------------------------------------------------------------------------------- bindings

    def check_bindings(self) -> None:
        """Protected names: never bound (``type``, ``object``...), or bound only by the right import; and the
        names bound by definitions, parameters and imports follow the rules for names."""
        counts: dict[str, int] = {}
        for name, node in _bound_names(self.module):
            counts[name] = counts.get(name, 0) + 1
            if name in _UNBINDABLE:
                self.add(node, f"`{name}` may not be redefined in answers")
            elif name in _IMPORT_ONLY:
                self.add(node, f"`{name}` may be defined in answers only as `{_IMPORT_ONLY[name][1]}`")
            elif name.endswith(_EXCEPTION_SUFFIXES) and not (
                    isinstance(node, ast.ClassDef) and not node.decorator_list):
                self.add(node, f"`{name}` may be defined in answers only by a `class` statement or by importing "
                               "an exception class under its own name")
        for node in ast.walk(self.module):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.check_import_bindings(node)
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    counts[bound] = counts.get(bound, 0) + 1
        self.bound_once = {name for name, count in counts.items() if count == 1}

    def check_global_binding(self, node: ast.AST, name: str) -> None:
        """A definition or import at the top of the cell or in a class body may not take a forbidden name (a
        parameter or local variable of that name is the function's own, and harmless)."""
        if isinstance(self.scopes[-1][0], (ast.Module, ast.ClassDef)):
            if name in _FORBIDDEN_NAMES:
                self.add(node, f"`{name}` is not allowed in answers: {_FORBIDDEN_NAMES[name]}")
            elif _IPYTHON_HISTORY.fullmatch(name):
                self.add(node, f"`{name}` is not allowed in answers: it is IPython's input/output history")

    def check_import_bindings(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if isinstance(node, ast.Import):
                bound = alias.asname or alias.name.split(".")[0]
                meaning = alias.name if alias.asname else alias.name.split(".")[0]
            else:
                bound = alias.asname or alias.name
                meaning = f"{node.module}.{alias.name}" if node.module else alias.name
            if bound in _UNBINDABLE:
                self.add(node, f"`{bound}` may not be redefined in answers")
            elif bound in _IMPORT_ONLY and meaning != _IMPORT_ONLY[bound][0] and not (
                    bound == "Module" and meaning == _MODULE_CLASS_PATH):
                self.add(node, f"`{bound}` may be defined in answers only as `{_IMPORT_ONLY[bound][1]}`")
            elif bound.endswith(_EXCEPTION_SUFFIXES) and alias.asname not in (None, alias.name):
                self.add(node, f"an exception class may be imported in answers only under its own name, "
                               f"not as `{bound}`")
            elif bound.endswith(_EXCEPTION_SUFFIXES) and isinstance(node, ast.Import):
                self.add(node, f"`{bound}` may not be used as a module name in answers")

    # ------------------------------------------------------------------------------------------ imports

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.check_module_path(node, alias.name)
            self.check_global_binding(node, alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.add(node, "relative imports are not allowed in answers")
            return
        if node.module == "__future__":
            for alias in node.names:
                if alias.name not in __future__.all_feature_names:
                    self.add(node, f"`from __future__ import {alias.name}` is not a Python feature")
            return
        if not self.check_module_path(node, node.module or ""):
            return
        for alias in node.names:
            self.check_global_binding(node, alias.asname or alias.name)
            if alias.name == "*":
                self.add(node, f"`from {node.module} import *` is not allowed in answers: import the names you "
                               "use")
            elif self.check_attribute_name(node, alias.name, f"`from {node.module} import {alias.name}`"):
                if _TYPE_ONLY.fullmatch(alias.name) and alias.asname not in (None, alias.name):
                    self.add(node, f"`{alias.name}` may be imported in answers only under its own name")

    def check_module_path(self, node: ast.AST, path: str) -> bool:
        parts = path.split(".")
        top = parts[0]
        if top == "solutions":
            self.add(node, "answers may not import `solutions` (the reference implementations): write your own")
            return False
        if top == "autograder":
            self.add(node, "answers may not import `autograder` (the grader)")
            return False
        if top not in ALLOWED_MODULES:
            allowed = ", ".join(sorted(ALLOWED_MODULES))
            self.add(node, f"`import {path}` is not allowed in answers: answers may import only {allowed}")
            return False
        for depth in range(1, len(parts)):
            if not self.check_attribute_name(node, parts[depth], f"`{'.'.join(parts[:depth + 1])}`"):
                return False
        return True

    # -------------------------------------------------------------------------------------------- names

    def visit_Name(self, node: ast.Name) -> None:
        name = node.id
        if name.startswith("__"):
            self.add(node, f"`{name}` is not allowed in answers: {_DUNDER_HINT}")
        elif name in _FORBIDDEN_NAMES and not self.bound_in_function(name):
            self.add(node, f"`{name}` is not allowed in answers: {_FORBIDDEN_NAMES[name]}")
        elif _IPYTHON_HISTORY.fullmatch(name) and not self.bound_in_function(name):
            self.add(node, f"`{name}` is not allowed in answers: it is IPython's input/output history")
        elif name in _NOTEBOOK_MODULE_NAMES and not self.bound_in_function(name):
            self.add(node, f"`{name}` is not allowed in answers: {_NOTEBOOK_MODULE_NAMES[name]}")
        elif name == "pad" and not self.called_directly(node) and not self.bound_in_function(name):
            self.add(node, "`pad` may only be called directly in answers (`np.pad(x, width)`)")
        elif name == "type" and not self.called_directly(node):
            self.add(node, "`type` may only be called directly in answers, with one argument: `type(x)`")
        elif _TYPE_ONLY.fullmatch(name) and not self.type_only_allowed(node):
            self.add(node, f"`{name}` may be used in answers only in type hints, isinstance checks and "
                           "comparisons: calling it returns uninitialised memory; use np.zeros or torch.zeros")

    def called_directly(self, node: ast.expr) -> bool:
        parent = self.parents.get(id(node))
        return isinstance(parent, ast.Call) and parent.func is node

    def bound_in_function(self, name: str) -> bool:
        """Whether ``name`` here resolves to a local of the enclosing function (or of a function around it)."""
        innermost = True
        for scope, bound in reversed(self.scopes):
            if isinstance(scope, ast.ClassDef):
                if innermost:
                    return False  # a class body looks names up dynamically: treat as the notebook's
                continue
            innermost = False
            if isinstance(scope, ast.Module):
                return False
            if name in bound:
                return True
        return False

    # --------------------------------------------------------------------------------------- attributes

    def check_attribute_name(self, node: ast.AST, attr: str, what: str | None = None) -> bool:
        reason = _forbidden_attribute(attr)
        if reason is not None:
            self.add(node, f"{what or f'`.{attr}`'} is not allowed in answers: {reason}")
            return False
        return True

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if id(node) in self.allowed_init_attribute:
            pass
        elif attr in ("format", "format_map"):
            self.check_format(node)
        else:
            self.check_attribute_name(node, attr)
            if attr == "pad" and isinstance(node.ctx, ast.Load) and not self.called_directly(node):
                self.add(node, "`.pad` may only be called directly in answers (`np.pad(x, width)`)")
            if _TYPE_ONLY.fullmatch(attr) and not self.type_only_allowed(node):
                self.add(node, f"`.{attr}` may be used in answers only in type hints, isinstance checks and "
                               "comparisons: calling it returns uninitialised memory; use np.zeros or torch.zeros")
        if isinstance(node.ctx, (ast.Store, ast.Del)) and id(node) not in self.allowed_stores:
            if isinstance(node.ctx, ast.Del):
                self.add(node, "deleting an attribute (`del x.y`) is not allowed in answers")
            else:
                self.add(node, "assigning to an attribute (`x.y = ...`) is not allowed in answers, except "
                               "`self.y = ...` in `__init__`")
        self.generic_visit(node)

    def check_format(self, node: ast.Attribute) -> None:
        value = node.value
        message = (f"`.{node.attr}(...)` is allowed in answers only on a string literal whose fields have no `.` "
                   "or `[`: use an f-string")
        if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
            self.add(node, message)
            return
        if not _plain_format_fields(value.value):
            self.add(node, message)

    # ------------------------------------------------------------------------------------ type-only uses

    def type_only_allowed(self, node: ast.AST) -> bool:
        """np.ndarray-like names: in an annotation, as isinstance's/issubclass's second argument, or compared."""
        child, parent = node, self.parents.get(id(node))
        while isinstance(parent, ast.Tuple) and isinstance(parent.ctx, ast.Load):
            child, parent = parent, self.parents.get(id(parent))
        if id(node) in self.annotations:
            return True
        if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id in (
                "isinstance", "issubclass") and len(parent.args) == 2 and parent.args[1] is child:
            return True
        return isinstance(parent, ast.Compare)

    # ----------------------------------------------------------------------------------------- calls

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "type":
            self.check_type_call(node)
        if isinstance(func, ast.Attribute) and func.attr == "__init__" and self.is_super_init(node):
            self.allowed_init_attribute.add(id(func))
        for keyword in node.keywords:
            if keyword.arg is None:
                self.add(keyword.value, "`**` in a call is not allowed in answers: pass keyword arguments by name")
            elif keyword.arg.startswith("__"):
                self.add(node, f"the keyword `{keyword.arg}` is not allowed in answers: {_DUNDER_HINT}")
        self.check_uninitialised_output(node)
        self.generic_visit(node)

    def check_uninitialised_output(self, node: ast.Call) -> None:
        """``ufunc(..., where=m)`` leaves the entries where ``m`` is False uninitialised unless ``out=`` is a fresh
        array; ``np.pad(x, w, mode="empty")`` pads with uninitialised memory."""
        func = node.func
        callee = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        # a reduction only as np.sum(...) or np.add.reduce(...): `np` can only be NumPy, while a name or a method
        # called `sum` could be np.multiply under another name
        reduction = (isinstance(func, ast.Attribute) and callee in _REDUCTIONS
                     and (_dotted(func.value) or "").split(".")[0] in ("np", "numpy"))
        if "where" in keywords and not reduction and not self.fresh_output(keywords.get("out")):
            self.add(node, f"`{callee or 'a call'}(..., where=...)` leaves the masked-out entries uninitialised "
                           "unless `out=` is a new array: pass out=np.zeros(...), or write np.sum(x, where=...) "
                           "for a reduction, or use np.where")
        if callee == "pad":
            mode = keywords.get("mode", node.args[2] if len(node.args) > 2 else None)
            if mode is not None and not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)
                                         and mode.value != "empty"):
                self.add(node, "`pad` may be given only a literal `mode` other than \"empty\" in answers "
                               "(\"empty\" pads with uninitialised memory)")

    def fresh_output(self, out: ast.expr | None) -> bool:
        """Whether ``out=`` is a new NumPy array: ``np.zeros(...)``-like, or a local variable of the enclosing
        function that is only ever bound to one (``P = np.full(...)``, then ``P += ...``), or a tuple of those."""
        if isinstance(out, ast.Tuple):
            return bool(out.elts) and all(self.fresh_output(element) for element in out.elts)
        if _fresh_array(out):
            return True
        if not isinstance(out, ast.Name):
            return False
        function = next((scope for scope, bound in reversed(self.scopes)
                         if not isinstance(scope, ast.ClassDef) and out.id in bound), None)
        if not isinstance(function, ast.FunctionDef) or out.id in {a.arg for a in _arguments(function.args)}:
            return False
        for name, node in _bound_names(ast.Module(body=function.body, type_ignores=[])):
            if name != out.id:
                continue
            parent = self.parents.get(id(node))
            if not (isinstance(node, ast.Name) and (
                    isinstance(parent, ast.AugAssign)
                    or isinstance(parent, ast.Assign) and parent.targets == [node] and _fresh_array(parent.value)
                    or isinstance(parent, ast.AnnAssign) and _fresh_array(parent.value))):
                return False
        return True

    def check_type_call(self, node: ast.Call) -> None:
        if len(node.args) != 1 or node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            self.add(node, "`type(...)` with more than one argument creates a class: use a `class` statement")
            return
        parent = self.parents.get(id(node))
        if isinstance(parent, (ast.Compare, ast.FormattedValue)):
            return
        if (isinstance(parent, ast.Call) and node in parent.args and isinstance(parent.func, ast.Name)
                and parent.func.id in ("print", "str", "repr")):
            return
        self.add(node, "`type(x)` may only be compared or printed in answers: use `isinstance(x, ...)`")

    def is_super_init(self, call: ast.Call) -> bool:
        """``super().__init__(...)`` or ``super(ThisClass, self).__init__(...)`` directly in ``__init__``."""
        attribute = call.func
        if not (isinstance(attribute, ast.Attribute) and isinstance(attribute.value, ast.Call)):
            return False
        inner = attribute.value
        if not (isinstance(inner.func, ast.Name) and inner.func.id == "super" and not inner.keywords):
            return False
        init = self.current_init()
        if init is None:
            return False
        if not inner.args:
            return True
        first = _first_parameter(init)
        return (len(inner.args) == 2 and isinstance(inner.args[0], ast.Name) and self.classes
                and inner.args[0].id == self.classes[-1].name and isinstance(inner.args[1], ast.Name)
                and first is not None and inner.args[1].id == first)

    def current_init(self) -> ast.FunctionDef | None:
        """The ``__init__`` method whose body (not a nested function) holds the current node, if any."""
        scope = self.scopes[-1][0]
        if (isinstance(scope, ast.FunctionDef) and scope.name == "__init__" and len(self.scopes) >= 2
                and isinstance(self.scopes[-2][0], ast.ClassDef) and scope in self.scopes[-2][0].body):
            return scope
        return None

    # ------------------------------------------------------------------------------------ definitions

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.check_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.add(node, "`async def` is not allowed in answers")
        self.check_function(node)

    def check_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        in_class = isinstance(self.scopes[-1][0], ast.ClassDef)
        self.check_global_binding(node, node.name)
        if node.name.startswith("__") and node.name != "__init__":
            self.add(node, f"defining `{node.name}` is not allowed in answers: special methods other than "
                           "`__init__` change how Python treats objects")
        for argument in _arguments(node.args):
            if argument.arg.startswith("__"):
                self.add(argument, f"the parameter `{argument.arg}` is not allowed in answers: {_DUNDER_HINT}")
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.visit_arguments_outside(node.args)
        if node.returns is not None:
            self.visit_annotation(node.returns)
        init = in_class and node.name == "__init__"
        if init:
            self.prepare_init(node)
        self.scopes.append((node, _scope_bindings(node)))
        self.with_depth.append(0)
        for statement in node.body:
            self.visit(statement)
        self.with_depth.pop()
        self.scopes.pop()

    def visit_arguments_outside(self, args: ast.arguments) -> None:
        """Defaults (evaluated where the function is defined) and annotations."""
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self.visit(default)
        for argument in _arguments(args):
            if argument.annotation is not None:
                self.visit_annotation(argument.annotation)

    def prepare_init(self, node: ast.FunctionDef) -> None:
        """Allow ``self.x = ...`` in ``__init__`` when ``self`` is its first parameter and is never rebound."""
        if node.decorator_list:
            self.add(node, "`__init__` may not be decorated in answers")
            return
        first = _first_parameter(node)
        if first is None:
            return
        rebound = [n for name, n in _bound_names(ast.Module(body=node.body, type_ignores=[])) if name == first]
        rebound += [a for a in _arguments(node.args)[1:] if a.arg == first]
        if rebound:
            for n in rebound:
                self.add(n, f"`{first}` may not be reassigned in `__init__` in answers")
            return

        for child in _same_scope_nodes(node):
            if (isinstance(child, ast.Attribute) and isinstance(child.ctx, ast.Store)
                    and isinstance(child.value, ast.Name) and child.value.id == first):
                self.allowed_stores.add(id(child))

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for argument in _arguments(node.args):
            if argument.arg.startswith("__"):
                self.add(node, f"the parameter `{argument.arg}` is not allowed in answers: {_DUNDER_HINT}")
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            self.visit(default)
        self.scopes.append((node, _scope_bindings(node)))
        self.with_depth.append(0)
        self.visit(node.body)
        self.with_depth.pop()
        self.scopes.pop()

    def visit_comprehension_scope(self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
        self.visit(node.generators[0].iter)  # evaluated in the enclosing scope
        self.scopes.append((node, _scope_bindings(node)))
        self.with_depth.append(0)
        for index, generator in enumerate(node.generators):
            self.visit(generator.target)
            if index:
                self.visit(generator.iter)
            for condition in generator.ifs:
                self.visit(condition)
            if generator.is_async:
                self.add(node, "`async for` is not allowed in answers")
        if isinstance(node, ast.DictComp):
            self.visit(node.key)
            self.visit(node.value)
        else:
            self.visit(node.elt)
        self.with_depth.pop()
        self.scopes.pop()

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_comprehension_scope

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.check_global_binding(node, node.name)
        if node.name.startswith("__"):
            self.add(node, f"the class name `{node.name}` is not allowed in answers: {_DUNDER_HINT}")
        if node.keywords:
            self.add(node, "keywords in a class header (`metaclass=...`) are not allowed in answers")
        for decorator in node.decorator_list:
            self.visit(decorator)
        for base in node.bases:
            if not self.allowed_base(base):
                self.add(base, f"a class in an answer may derive only from object, an exception class, "
                               f"nn.Module or NamedTuple, not `{_expression_text(base)}`")
            self.visit(base)
        for keyword in node.keywords:
            self.visit(keyword.value)
        for statement in node.body:  # hooks such as _repr_html_, _ipython_display_, nn.Module._apply
            for name, member in _class_members(statement):
                if name.startswith("_") and not name.startswith("__"):
                    self.add(member, f"the class member `{name}` is not allowed in answers: in a class, names "
                                     "starting with `_` are hooks for Python, IPython or torch")
        self.scopes.append((node, set()))
        self.classes.append(node)
        for statement in node.body:
            self.visit(statement)
        self.classes.pop()
        self.scopes.pop()

    def allowed_base(self, base: ast.expr) -> bool:
        if isinstance(base, ast.Name):
            if base.id in ("object", "Module", "NamedTuple") or base.id in _BUILTIN_EXCEPTIONS:
                return True
            if base.id.endswith(_EXCEPTION_SUFFIXES):  # imported under its own name from an allowed module
                return True
            # a class defined earlier at the top of this cell, undecorated and bound nowhere else in the cell,
            # and this class at the top too (the two statements run one after the other)
            return base.id in self.top_classes and base.id in self.bound_once and len(self.scopes) == 1
        if isinstance(base, ast.Attribute):
            path = _dotted(base)
            if path in ("nn.Module", "torch.nn.Module"):
                return True
            if path and path.split(".")[0] in ("np", "numpy", "torch", "nn") and base.attr.endswith(
                    _EXCEPTION_SUFFIXES):
                return True
        return False

    # --------------------------------------------------------------------------------------- statements

    def visit_Global(self, node: ast.Global) -> None:
        self.add(node, "`global` is not allowed in answers: return the value instead")

    def visit_Await(self, node: ast.Await) -> None:
        self.add(node, "`await` is not allowed in answers")
        self.generic_visit(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.add(node, "`async for` is not allowed in answers")
        self.generic_visit(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self.add(node, "`async with` is not allowed in answers")
        self.generic_visit(node)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            self.visit(item)
        self.with_depth[-1] += 1
        for statement in node.body:
            self.visit(statement)
        self.with_depth[-1] -= 1

    def visit_Yield(self, node: ast.Yield | ast.YieldFrom) -> None:
        if self.with_depth[-1]:
            self.add(node, "`yield` inside a `with` block is not allowed in answers: it can leave the context "
                           "(e.g. `torch.no_grad()`) active after your function returns")
        self.generic_visit(node)

    visit_YieldFrom = visit_Yield

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        self.visit_annotation(node.annotation)
        if node.value is not None:
            self.visit(node.value)

    def visit_annotation(self, annotation: ast.expr) -> None:
        for child in ast.walk(annotation):
            self.annotations.add(id(child))
            if not isinstance(child, _ANNOTATION_NODES) or (
                    isinstance(child, ast.BinOp) and not isinstance(child.op, ast.BitOr)):
                self.add(child, "type hints may only name types in answers (`x: np.ndarray`, `-> float`)")
                break
        self.visit(annotation)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for attr in node.kwd_attrs:
            self.check_attribute_name(node, attr)
        self.generic_visit(node)


_FRESH_ARRAYS = frozenset({"zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "array", "copy"})


def _fresh_array(node: ast.expr | None) -> bool:
    """Whether ``node`` is ``np.zeros(...)``-like: a call that returns a new, initialised NumPy array (``np`` and
    ``numpy`` can only be the real module in answers)."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    return node.func.attr in _FRESH_ARRAYS and _dotted(node.func.value) in ("np", "numpy")


_ANNOTATION_NODES = (ast.Name, ast.Attribute, ast.Subscript, ast.Tuple, ast.List, ast.Constant, ast.BinOp,
                     ast.BitOr, ast.Load, ast.Slice)


def _class_members(statement: ast.stmt) -> Iterator[tuple[str, ast.AST]]:
    """The names a statement of a class body defines (methods, nested classes, assigned names)."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield statement.name, statement
    elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        for target in targets:
            for name in _target_names(target):
                yield name, statement


def _first_parameter(node: ast.FunctionDef) -> str | None:
    positional = list(node.args.posonlyargs) + list(node.args.args)
    return positional[0].arg if positional else None


def _same_scope_nodes(function: ast.FunctionDef) -> Iterator[ast.AST]:
    """The nodes of ``function``'s body that run in its own scope (not inside nested functions, lambdas, classes
    or comprehensions)."""
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda) + _COMPREHENSIONS
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, nested):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _expression_text(node: ast.expr) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # noqa: BLE001 -- only for a message
        return "..."
    return text if len(text) <= 40 else text[:39] + "…"


def _plain_format_fields(template: str) -> bool:
    """Whether every replacement field of a format string (nested ones in format specs too) is a plain name or
    index, without attribute (``.``) or item (``[``) access."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return False
    for _literal, field, spec, _conversion in parsed:
        if field is not None and ("." in field or "[" in field):
            return False
        if spec and not _plain_format_fields(spec):
            return False
    return True
