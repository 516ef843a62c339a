"""The static policy for answer cells (autograder/policy.py, issue 12): every forbidden route is rejected with a
message that names it, attacks written to slip past a naive checker are caught, and correct answers in many styles
(the book's reference answers, tests/correct_*.py, the styles the book promises) pass."""

from __future__ import annotations

import builtins
import importlib
import inspect
import json
import pathlib
import textwrap
import types
import warnings

import pytest

from autograder import policy
from autograder.policy import ALLOWED_MODULES, CheckedAnswer, Violation, check_answer, defined_functions

from . import (buggy_mdp, buggy_model_based, buggy_policy_gradients, buggy_ppo_grpo, buggy_q_learning, buggy_rlhf,
               correct_mdp, correct_model_based, correct_policy_gradients, correct_ppo_grpo, correct_q_learning,
               correct_rlhf)
from .conftest import CHAPTERS


def messages(source: str) -> list[str]:
    return [str(v) for v in check_answer(textwrap.dedent(source)).violations]


def assert_rejected(source: str, *fragments: str) -> None:
    found = messages(source)
    assert found, f"no violation for:\n{source}"
    for fragment in fragments:
        assert any(fragment in m for m in found), f"{fragment!r} not in {found}"


def assert_accepted(source: str) -> CheckedAnswer:
    checked = check_answer(textwrap.dedent(source))
    assert checked.ok, [str(v) for v in checked.violations]
    return checked


# ----------------------------------------------------------------------------------------- the attacks of issue 12

ATTACKS = {
    # the eight routes that forged 11/11 on Chapter 1
    "replace a check": ("""
        import autograder.checks.mdp as checks
        checks.check_value_iteration = lambda *a, **k: 2
        """, "`autograder`"),
    "replace a check through sys.modules": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            sys.modules["autograder.checks.mdp"].check_value_iteration = lambda *a, **k: 2
        """, "`sys` is not allowed"),
    "patch run_check": ("""
        from autograder.checks import _harness
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            _harness.run_check = lambda name, fn, cases, points, **k: points
        """, "`autograder`"),
    "patch Score.__repr__": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            import autograder.checks._harness as h
            h.Score.__repr__ = lambda self: "2"
        """, "`autograder`", "`.__repr__`"),
    "patch builtins.round": ("""
        import builtins
        def discounted_return(rewards, gamma):
            builtins.round = lambda x, n=None: 10.0
            return 0.0
        """, "`import builtins`", "assigning to an attribute"),
    "patch round through __builtins__": ("""
        def discounted_return(rewards, gamma):
            __builtins__["round"] = lambda x, n=None: 10.0
        """, "`__builtins__`"),
    "silence the test cell's output": ("""
        def discounted_return(rewards, gamma):
            get_ipython().ast_node_interactivity = "none"
            return 0.0
        """, "`get_ipython`", "assigning to an attribute"),
    "call the reference": ("""
        def value_iteration(*a, **k):
            return solutions.mdp.value_iteration(*a, **k)
        """, "`solutions`"),
    "import the reference": ("""
        from solutions.mdp import value_iteration as reference
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return reference(mdp, theta, max_sweeps)
        """, "may not import `solutions`"),
    "call the notebook's reference module": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return ref.value_iteration(mdp, theta, max_sweeps)
        """, "`ref` is not allowed"),
    "call Chapter 1's reference from Chapter 2": ("""
        def certainty_equivalent_q(n, R_hat, gamma, terminal, theta=1e-10):
            return dp.q_from_v(None, None)
        """, "`dp` is not allowed"),
    "exec an answer read from a file": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            namespace = {}
            exec(open("/course/source/01_mdp/mdp.ipynb").read(), namespace)
            return namespace["value_iteration"](mdp)
        """, "`exec`", "`open`"),
    "load classmates' answers with numpy": ("""
        import numpy as np
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return np.load("/submissions/alice/V.npy", allow_pickle=True)
        """, "`.load`"),
    "load a pickle with torch": ("""
        import torch
        def dqn_loss(*args):
            return torch.load("answers.pt", weights_only=False)
        """, "`.load`"),
    # the general ways up to the caller's frame and globals
    "sys._getframe": ("""
        import sys
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            frame = sys._getframe(1)
        """, "`import sys`"),
    "frames through a generator": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            def walk():
                yield
            gen = walk()
            next(gen)
            return gen.gi_frame.f_back.f_locals["expected"]
        """, "`.gi_frame`", "`.f_back`", "`.f_locals`"),
    "frames through a traceback": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            try:
                raise ValueError
            except ValueError as error:
                return error.__traceback__.tb_frame.f_back.f_globals
        """, "`.__traceback__`", "`.tb_frame`"),
    "a function's globals": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return (lambda: 0).__globals__["ref"].value_iteration(mdp)
        """, "`.__globals__`"),
    "globals through str.format": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return "{0.__globals__}".format(value_iteration)
        """, "`.format(...)`"),
    "str.format called on the type": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return str.format("{0.__globals__[ref]}", value_iteration)
        """, "`.format(...)`"),
    "format string in a variable": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            template = "{0.__globals__}"
            return template.format(value_iteration)
        """, "`.format(...)`"),
    "format with an index": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return "{0[ref]}".format(globals)
        """, "`.format(...)`"),
    "format_map with an attribute": ("""
        def f(x):
            return "{x.__class__}".format_map({"x": x})
        """, "`.format_map(...)`"),
    "nested format spec with an attribute": ("""
        def f(x):
            return "{0:{1.real}}".format(x, 2)
        """, "`.format(...)`"),
    "getattr with a string-built dunder": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return getattr(value_iteration, "__" + "glob" + "als__")
        """, "`getattr` is not allowed in answers: use `obj.name`"),
    "getattr through an alias": ("""
        look = getattr
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return look(value_iteration, "__globals__")
        """, "`getattr`"),
    "vars and globals": ("""
        def f():
            return vars(f), globals()["check_value_iteration"]
        """, "`vars`", "`globals`"),
    "type with three arguments": ("""
        Liar = type("Liar", (), {"__eq__": lambda self, other: True})
        """, "`type(...)` with more than one argument"),
    "type through functools.partial": ("""
        import functools
        make = functools.partial(type, "Liar", ())
        """, "`type` may only be called directly"),
    "calling type(x)": ("""
        import numpy as np
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return type(np.zeros(1))(mdp.n_states)
        """, "`type(x)` may only be compared or printed"),
    "a metaclass by another name": ("""
        import typing
        Liar = typing.ABCMeta("Liar", (), {"__eq__": lambda self, other: True})
        """, "`.ABCMeta`"),
    "typing.Type calls type": ("""
        import typing
        Liar = typing.Type("Liar", (), {"__eq__": lambda self, other: True})
        """, "`.Type`"),
    "an object that lies in comparisons": ("""
        class Anything:
            def __eq__(self, other):
                return True
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return Anything()
        """, "defining `__eq__`"),
    "lies through __array__": ("""
        class Fake:
            def __array__(self, dtype=None, copy=None):
                return expected
        """, "defining `__array__`"),
    "class attribute dunder": ("""
        class Fake:
            __eq__ = lambda self, other: True
        """, "`__eq__` is not allowed"),
    "subclass of float": ("""
        class A(float):
            pass
        """, "may derive only from object"),
    "ndarray subclass overriding all": ("""
        import numpy as np
        class Lying(np.ndarray):
            def all(self, *args, **kwargs):
                return True
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return np.zeros(mdp.n_states).view(Lying)
        """, "may derive only from object", "`.ndarray` may be used in answers only in type hints"),
    "ndarray subclass through a name ending in Error": ("""
        import numpy as np
        Error = np.ndarray
        class Lying(Error):
            def sum(self, *args, **kwargs):
                return 0.0
        """, "`Error` may be defined in answers only by a `class` statement"),
    "ndarray imported as an exception name": ("""
        from numpy import ndarray as ValueError
        class Lying(ValueError):
            pass
        """, "`ValueError` may not be redefined"),
    "ndarray imported under another name": ("""
        from numpy import ndarray as Base
        """, "only under its own name"),
    "fake nn with a Module attribute": ("""
        import numpy as nn
        class Lying(nn.Module):
            pass
        """, "`nn` may be defined in answers only as `from torch import nn`"),
    "base class rebound later in the cell": ("""
        import numpy as np
        class Base:
            pass
        Base = np.float64
        class Lying(Base):
            def all(self):
                return True
        """, "may derive only from object"),
    "base class used from inside a function": ("""
        class Base:
            pass
        def make():
            class Lying(Base):
                pass
            return Lying
        """, "may derive only from object"),
    "decorated base class": ("""
        import numpy as np
        @lambda cls: np.float64
        class Base:
            pass
        class Lying(Base):
            pass
        """, "may derive only from object"),
    "metaclass keyword": ("""
        class A(metaclass=Meta):
            pass
        """, "keywords in a class header"),
    # monkey-patching a module the check uses
    "patch np.allclose": ("""
        import numpy as np
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            np.allclose = lambda *a, **k: True
            return np.zeros(mdp.n_states)
        """, "assigning to an attribute (`x.y = ...`) is not allowed"),
    "patch through augmented assignment": ("""
        import math
        def f():
            math.pi += 1
        """, "assigning to an attribute"),
    "delete a module attribute": ("""
        import numpy as np
        def f():
            del np.allclose
        """, "deleting an attribute"),
    "setattr": ("""
        import numpy as np
        def f():
            setattr(np, "allclose", lambda *a, **k: True)
        """, "`setattr`"),
    "method called with the module as self": ("""
        import numpy as np
        class Patch:
            def apply(self):
                self.allclose = lambda *a, **k: True
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            Patch.apply(np)
        """, "assigning to an attribute"),
    "__init__ called on a module": ("""
        import numpy as np
        class Patch:
            def __init__(self):
                self.allclose = lambda *a, **k: True
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            Patch.__init__(np)
        """, "`.__init__` is not allowed"),
    "a helper inside __init__ with its own self": ("""
        import numpy as np
        class Patch:
            def __init__(self):
                def patch(self):
                    self.allclose = lambda *a, **k: True
                patch(np)
        """, "assigning to an attribute"),
    "self rebound in __init__": ("""
        import numpy as np
        class Patch:
            def __init__(self):
                self = np
                self.allclose = lambda *a, **k: True
        """, "`self` may not be reassigned"),
    "self rebound through nonlocal": ("""
        import numpy as np
        class Patch:
            def __init__(self):
                def swap():
                    nonlocal self
                    self = np
                swap()
                self.allclose = lambda *a, **k: True
        """, "`self` may not be reassigned"),
    "static __init__": ("""
        import numpy as np
        class Patch:
            @staticmethod
            def __init__(self):
                self.allclose = lambda *a, **k: True
        def f():
            Patch(np)
        """, "`__init__` may not be decorated"),
    "super(cls, module).__init__": ("""
        import numpy as np
        class A:
            def __init__(self):
                super(A, np).__init__()
        """, "`.__init__` is not allowed"),
    "super().__init__ outside __init__": ("""
        class A:
            def reset(self):
                super().__init__()
        """, "`.__init__` is not allowed"),
    # torch
    "a forward hook on the check's model": ("""
        def model_gradient_step(model, optimizer, states, actions, next_states):
            model.register_forward_hook(lambda module, inputs, output: output * 0)
        """, "`.register_forward_hook` is not allowed in answers: it installs a hook"),
    "a tensor hook": ("""
        def dqn_loss(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
            states.register_hook(print)
        """, "`.register_hook`"),
    "a global module hook": ("""
        import torch
        def f():
            torch.nn.modules.module.register_module_forward_hook(print)
        """, "`.register_module_forward_hook`"),
    "pruning installs a hook": ("""
        import torch
        def model_gradient_step(model, optimizer, states, actions, next_states):
            torch.nn.utils.prune.identity(model.net[0], "weight")
        """, "`.utils`"),
    "saved tensor hooks": ("""
        import torch
        def f():
            return torch.autograd.graph.saved_tensors_hooks(print, print)
        """, "`.graph`", "`.saved_tensors_hooks`"),
    "a context left open in a generator": ("""
        import torch
        def leave_grad_off():
            with torch.no_grad():
                yield
        """, "`yield` inside a `with` block"),
    "global torch setting": ("""
        import torch
        def f():
            torch.set_grad_enabled(False)
            torch.set_default_dtype(torch.float16)
        """, "`.set_grad_enabled`", "`.set_default_dtype`"),
    "numpy print options": ("""
        import numpy as np
        def f():
            np.set_printoptions(formatter={"float": lambda x: "2"})
        """, "`.set_printoptions`"),
    "typing.get_type_hints evaluates strings": ("""
        import typing
        def f(x: "__import__('os').system('id')"):
            return typing.get_type_hints(f)
        """, "`.get_type_hints`"),
    "get_type_hints imported": ("""
        from typing import get_type_hints
        """, "`from typing import get_type_hints`"),
    "numpy ctypeslib": ("""
        import numpy as np
        def f():
            return np.ctypeslib.load_library("libc", ".")
        """, "`.ctypeslib`"),
    "torch from_file": ("""
        import torch
        def f():
            return torch.from_file("/etc/passwd", size=10)
        """, "`.from_file`"),
    "torch native library": ("""
        import torch
        def f():
            torch.ops.load_library("evil.so")
        """, "`.ops`"),
    "make a read-only array writable": ("""
        def q_from_v(mdp, V):
            mdp.R.setflags(write=True)
        """, "`.setflags`"),
    "flags attribute": ("""
        def q_from_v(mdp, V):
            return mdp.R.flags
        """, "`.flags`"),
    # uninitialised memory: np.empty often returns the buffer of an array the check just freed
    "np.empty": ("""
        import numpy as np
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return np.empty(mdp.n_states)
        """, "`.empty` is not allowed in answers: it returns uninitialised memory"),
    "np.empty imported": ("""
        from numpy import empty
        """, "`from numpy import empty`"),
    "torch.empty_like": ("""
        import torch
        def f(x):
            return torch.empty_like(x)
        """, "`.empty_like`"),
    "ndarray constructor": ("""
        import numpy as np
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return np.ndarray((mdp.n_states,))
        """, "`.ndarray` may be used in answers only in type hints"),
    "legacy tensor constructor": ("""
        import torch
        def f(n):
            return torch.FloatTensor(n)
        """, "`.FloatTensor` may be used in answers only"),
    "Tensor.new": ("""
        def f(x):
            return x.new(3)
        """, "`.new`"),
    "a ufunc with where and no out": ("""
        import numpy as np
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            return np.multiply(np.zeros(mdp.n_states), 1.0, where=False)
        """, "leaves the masked-out entries uninitialised"),
    "a ufunc with where and out=None": ("""
        import numpy as np
        def f(x):
            return np.add(x, x, out=None, where=x > 0)
        """, "leaves the masked-out entries uninitialised"),
    "out= a variable that may be None": ("""
        import numpy as np
        def f(x, out=None):
            buffer = np.zeros(x.shape)
            if x.size:
                buffer = None
            return np.add(x, x, out=buffer, where=x > 0), np.add(x, x, out=out, where=x > 0)
        """, "leaves the masked-out entries uninitialised"),
    "where hidden in **kwargs": ("""
        import numpy as np
        def f(x):
            return np.add(x, x, **{"where": False})
        """, "`**` in a call"),
    "np.pad with empty mode": ("""
        import numpy as np
        def f(x):
            return np.pad(x[:0], (0, 5), mode="empty")
        """, "`pad` may be given only a literal `mode`"),
    "a ufunc under a reduction's name": ("""
        import numpy as np
        def f(x):
            sum = np.multiply
            return sum(x, 1.0, where=False), x.sum(where=False)
        """, "leaves the masked-out entries uninitialised"),
    "np.pad under another name": ("""
        import numpy as np
        def f(x, mode):
            p = np.pad
            return p(x, 1, mode)
        """, "`.pad` may only be called directly"),
    "a sparse tensor with unchecked indices": ("""
        import torch
        def f():
            return torch.sparse_coo_tensor(torch.tensor([[10**9]]), torch.ones(1), (2,)).to_dense()
        """, "`.sparse_coo_tensor`"),
    "masked_all": ("""
        import numpy as np
        def f(n):
            return np.ma.masked_all(n).data
        """, "`.masked_all`"),
    "recarray": ("""
        import numpy as np
        def f(n):
            return np.rec.array(None, shape=n, formats="f8")
        """, "`.rec`"),
    # imports written to slip past a naive checker
    "import os": ("import os\n", "`import os` is not allowed in answers: answers may import only"),
    "import os as o": ("import os as o\n", "`import os`"),
    "from os import path": ("from os import path\n", "`import os`"),
    "__import__": ("""
        def f():
            return __import__("os")
        """, "`__import__`"),
    "importlib": ("""
        import importlib
        """, "`import importlib`"),
    "star import": ("from numpy import *\n", "`from numpy import *`"),
    "relative import": ("from . import checks\n", "relative imports"),
    "a forbidden submodule": ("from numpy.lib import stride_tricks\n", "`numpy.lib` is not allowed"),
    "a forbidden nested submodule": ("import numpy.lib.format\n", "`numpy.lib`"),
    "torch.utils": ("from torch.utils import data\n", "`torch.utils`"),
    "a library's test suite": ("import numpy.tests.test_reloading\n", "`numpy.tests`"),
    "masked records": ("""
        import numpy.ma.mrecords as records
        """, "`numpy.ma.mrecords`"),
    "a private submodule": ("import numpy._core\n", "`numpy._core`"),
    "operator through fractions": ("""
        import fractions
        get = fractions.operator.attrgetter("__globals__")
        """, "`.operator`", "`.attrgetter`"),
    "sys through typing": ("""
        import typing
        def f():
            return typing.sys.modules
        """, "`.sys`"),
    "os through torch": ("""
        import torch
        def f():
            return torch.os.system("id")
        """, "`.os`", "`.system`"),
    "setattr by another name": ("""
        import functools
        import numpy as np
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            fake = lambda: None
            functools.update_wrapper(np, fake, assigned=["allclose"], updated=[])
        """, "`.update_wrapper`"),
    "functools.wraps": ("from functools import wraps\n", "`from functools import wraps`"),
    "copy's dispatch table": ("""
        import copy
        def f():
            copy.dispatch_table[list] = print
        """, "`.dispatch_table`"),
    "types.SimpleNamespace": ("""
        def f():
            return types.SimpleNamespace(x=1)
        """, "`types` is not allowed"),
    "dunder keyword": ("""
        def f(make):
            return make(__array_interface__={"data": (0, False)})
        """, "the keyword `__array_interface__`"),
    # IPython and other names
    "IPython history": ("""
        def f():
            return _i3, Out[2], In, _ih, _2
        """, "`_i3`", "`Out`", "`In`", "`_ih`", "`_2`"),
    "a forbidden name defined at the top": ("""
        def display(x):
            return x
        import numpy as exec
        """, "`display`", "`exec`"),
    "a forbidden name bound at the top, used in a function": ("""
        input = 3
        def f():
            return input
        """, "`input`"),
    "display": ("""
        def f(x):
            display(x)
        """, "`display`"),
    "dunder names": ("""
        def f():
            return __name__, __spec__, __loader__
        """, "`__name__`", "`__spec__`", "`__loader__`"),
    "breakpoint, input, help, compile, eval, memoryview": ("""
        def f():
            breakpoint()
            input()
            help(f)
            eval(compile("1", "", "eval"))
            memoryview(b"")
        """, "`breakpoint`", "`input`", "`help`", "`compile`", "`eval`", "`memoryview`"),
    "plotting module": ("""
        def f():
            plt.savefig("/tmp/x.png")
        """, "`plt` is not allowed", "`.savefig`"),
    # banned code in places a naive checker does not look
    "in a decorator": ("""
        @(lambda fn: getattr(fn, "__globals__"))
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            pass
        """, "`getattr`"),
    "in a default value": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None, namespace=globals()):
            pass
        """, "`globals`"),
    "in an annotation": ("""
        def value_iteration(mdp: eval("1"), theta=1e-10, max_sweeps=None):
            pass
        """, "`eval`"),
    "a walrus in an annotation": ("""
        import numpy as np
        def f(x: (make := np.ndarray)):
            return make((3,))
        """, "type hints may only name types"),
    "in a nested function": ("""
        def value_iteration(mdp, theta=1e-10, max_sweeps=None):
            def helper():
                def deeper():
                    return vars()
                return deeper()
            return helper()
        """, "`vars`"),
    "in a lambda": ("""
        f = lambda x: getattr(x, "y")
        """, "`getattr`"),
    "in a comprehension": ("""
        def f(xs):
            return [getattr(x, "__dict__") for x in xs]
        """, "`getattr`"),
    "in a class body": ("""
        class A:
            x = eval("1")
        """, "`eval`"),
    "in a match pattern": ("""
        def f(fn):
            match fn:
                case object(__globals__=g):
                    return g
        """, "`.__globals__`"),
    "an IPython display hook": ("""
        class Result:
            def _repr_html_(self):
                return "2"
        """, "the class member `_repr_html_`"),
    # statements
    "async": ("""
        async def f():
            await g()
        """, "`async def`", "`await`"),
    "global": ("""
        def f():
            global check_value_iteration
            check_value_iteration = print
        """, "`global` is not allowed"),
    "redefine isinstance": ("""
        isinstance = lambda obj, cls: True
        """, "`isinstance` may not be redefined"),
    "redefine type as a parameter": ("""
        def f(type):
            return type("X", (), {})
        """, "`type` may not be redefined"),
    "np bound to something else": ("""
        def f():
            np = None
        """, "`np` may be defined in answers only as `import numpy as np`"),
    "dunder parameter": ("""
        def f(__x):
            return 1
        """, "the parameter `__x`"),
    "IPython magic": ("%timeit value_iteration(mdp)\n", "not valid Python", "IPython magics"),
    "shell command": ("!cat /course/gradebook.db\n", "not valid Python"),
    "help syntax": ("value_iteration?\n", "not valid Python"),
}


@pytest.mark.parametrize("source,fragments", [(s, f) for s, *f in ATTACKS.values()], ids=list(ATTACKS))
def test_attack_is_rejected_with_a_message_naming_it(source, fragments):
    assert_rejected(source, *fragments)


def test_messages_say_what_to_do():
    assert "line 2: `getattr` is not allowed in answers: use `obj.name`" in messages(
        "def f(x):\n    return getattr(x, 'y')\n")
    assert messages("from solutions.mdp import value_iteration\n") == [
        "line 1: answers may not import `solutions` (the reference implementations): write your own"]
    assert any("use np.zeros" in m for m in messages("import numpy as np\nx = np.empty(3)\n"))


# ------------------------------------------------------------------------------------------------- correct answers

#: Imports a function from tests/correct_*.py would need in an answer cell (names the notebook provides, such as
#: the earlier exercises and the given helpers, are free names: the policy allows them).
HEADER = "import math\n\nimport numpy as np\nimport torch\n\n\n"

#: Correct answers that the policy rejects on purpose, with the violation: np.empty returns uninitialised memory,
#: often the buffer of an array the check just freed (an answer `return np.empty(mdp.n_states)` scored the hidden
#: value-iteration cases when tried), so it is forbidden although this answer fills the arrays before use.
REJECTED_ON_PURPOSE = {"trajectory_with_a_while_loop": "`.empty` is not allowed in answers: it returns "
                                                       "uninitialised memory"}


def _correct_functions():
    for module in (correct_mdp, correct_model_based, correct_q_learning, correct_policy_gradients, correct_ppo_grpo,
                   correct_rlhf):
        for name, value in vars(module).items():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                yield pytest.param(value, id=f"{module.__name__.split('.')[-1]}.{name}")


@pytest.mark.parametrize("fn", list(_correct_functions()))
def test_correct_answers_in_other_styles_pass(fn):
    source = HEADER + textwrap.dedent(inspect.getsource(fn))
    checked = check_answer(source)
    if fn.__name__ in REJECTED_ON_PURPOSE:
        expected = REJECTED_ON_PURPOSE[fn.__name__]
        assert checked.violations and all(expected in v.message for v in checked.violations)
        return
    assert checked.ok, [str(v) for v in checked.violations]
    assert checked.defines == (fn.__name__,) and not checked.dropped


def _buggy_functions():
    for module in (buggy_mdp, buggy_model_based, buggy_q_learning, buggy_policy_gradients, buggy_ppo_grpo,
                   buggy_rlhf):
        for value in vars(module).values():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                yield value


def test_known_buggy_answers_break_no_rule():
    """The known-buggy answers of tests/buggy_*.py are honest code in many students' styles (wrong, not hostile):
    none may be refused by the policy."""
    refused = {}
    for fn in _buggy_functions():
        checked = check_answer(HEADER + textwrap.dedent(inspect.getsource(fn)))
        if not checked.ok:
            refused[fn.__name__] = [str(v) for v in checked.violations]
    assert len(list(_buggy_functions())) > 200
    assert not refused, refused


def _solution_cells():
    for chapter, path in CHAPTERS.items():
        for index, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
            text = "".join(cell["source"])
            if cell["cell_type"] == "code" and "### BEGIN SOLUTION" in text:
                lines = [line for line in text.splitlines()
                         if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
                yield pytest.param("\n".join(lines) + "\n", id=f"{chapter}-cell{index}")


SOLUTION_CELLS = list(_solution_cells())


def test_the_book_has_reference_answers():
    assert len(SOLUTION_CELLS) >= 20


@pytest.mark.parametrize("source", SOLUTION_CELLS)
def test_reference_answers_of_the_book_pass(source):
    checked = assert_accepted(source)
    assert not checked.dropped and len(checked.defines) == 1
    assert checked.source == source


STYLES = {
    "numpy, type hints, docstring, assert, raise": """
        import numpy as np
        from typing import Optional

        def value_iteration(mdp, theta: float = 1e-10, max_sweeps: Optional[int] = None) -> np.ndarray:
            \"\"\"Value iteration.\"\"\"
            if theta <= 0:
                raise ValueError(f"theta must be positive, got {theta}")
            V: np.ndarray = np.zeros(mdp.n_states)
            assert V.ndim == 1, "V is a vector"
            return V
        """,
    "loops, for _ in range, try/except, print, format": """
        import math

        def discounted_return(rewards: list[float] | None, gamma: float) -> float:
            total = 0.0
            for _ in range(1):
                for k, r in enumerate(rewards or []):
                    try:
                        total += gamma ** k * r
                    except (TypeError, OverflowError) as error:
                        print("skipped", error)
            print(f"G = {total:.3f}", "{:.2f}".format(total), "{0} {name}".format(1, name="x"), "%d" % 3)
            assert math.isclose(total, total)
            return total
        """,
    "comprehensions, lambdas, nested helpers, generators, walrus, nonlocal": """
        def greedy_policy(mdp, V):
            def look_ahead(s, a):
                return mdp.R[s, a] + mdp.gamma * sum(p * V[t] for t, p in enumerate(mdp.P[s, a]))

            def states():
                yield from range(mdp.n_states)

            count = 0

            def bump():
                nonlocal count
                count += 1

            policy = [max(range(mdp.n_actions), key=lambda a, s=s: look_ahead(s, a)) for s in states()]
            if (n := len(policy)) != mdp.n_states:
                bump()
            return {s: a for s, a in enumerate(policy)}, {a for a in policy}, n
        """,
    "rng, defaultdict, lru_cache, itertools, copy, heapq, bisect, statistics, fractions, random": """
        import bisect
        import copy
        import functools
        import heapq
        import itertools
        import random
        import statistics
        from collections import defaultdict, deque
        from fractions import Fraction

        @functools.lru_cache(maxsize=None)
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        def sample(rng, probabilities, q):
            counts = defaultdict(int)
            queue = deque([0])
            heap = []
            heapq.heappush(heap, (1, 0))
            for s, a in itertools.product(range(2), range(3)):
                counts[s, a] += 1
            x = rng.random() + rng.choice(3, p=probabilities) + rng.integers(0, 5) + rng.uniform()
            return (x, copy.deepcopy(counts), bisect.bisect_left([1, 2], 2), statistics.mean([1, 2]),
                    Fraction(1, 3), random.random(), functools.reduce(lambda a, b: a + b, q), queue)
        """,
    "in-place updates, copies, np.divide with out and where, np.errstate, reductions with where": """
        import numpy as np

        def q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma):
            td = r + (0.0 if terminated else gamma * Q[s_next].max()) - Q[s, a]
            Q[s, a] += alpha * td
            old = Q.copy()
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.divide(Q, old, out=np.zeros(Q.shape), where=old != 0)
            P = np.full(Q.shape, 0.5)
            P += 1
            np.divide(Q, old, out=P, where=old != 0)
            return ratio, P, np.sum(Q, where=Q > 0), np.max(Q, where=Q > 0, initial=-np.inf), np.pad(Q, 1)
        """,
    "torch: no_grad, optimizer, backward, functional, isinstance, type(x)": """
        import torch
        import torch.nn.functional as F
        from torch import nn

        def dqn_loss(q_network, target_network, states, actions, rewards, next_states, terminated, gamma):
            if not isinstance(states, (torch.Tensor,)) or type(states) is not torch.Tensor:
                print(type(states), f"{type(states)}")
            q = q_network(states).gather(1, actions.unsqueeze(1)).squeeze(1)
            with torch.no_grad():
                target = rewards + gamma * (1 - terminated.float()) * target_network(next_states).max(dim=1).values
            return F.smooth_l1_loss(q, target) + 0 * nn.functional.mse_loss(q, target)

        def model_gradient_step(model, optimizer, states, actions, next_states):
            optimizer.zero_grad()
            loss = F.mse_loss(model(torch.cat([states, F.one_hot(actions, 4).float()], dim=1)), next_states)
            loss.backward()
            optimizer.step()
            return loss.item()
        """,
    "small helper classes, nn.Module, NamedTuple, exceptions": """
        from typing import NamedTuple

        import numpy as np
        import torch
        from torch import nn

        class Transition(NamedTuple):
            state: int
            reward: float = 0.0

        class ImproperPolicyError(ValueError):
            \"\"\"The starting policy never reaches a terminal state.\"\"\"

        class StrictError(ImproperPolicyError):
            pass

        class Counter:
            \"\"\"Counts visits.\"\"\"

            def __init__(self, n_states: int):
                self.n = np.zeros(n_states)
                self.total: int = 0
                self.total += 1
                self.first, self.last = None, None

            def visit(self, s):
                self.n[s] += 1
                return self.n[s]

        class Net(nn.Module):
            def __init__(self, n_in, n_out):
                super().__init__()
                self.layer = nn.Linear(n_in, n_out)

            def forward(self, x):
                return self.layer(x)

        class OldStyleNet(torch.nn.Module):
            def __init__(self):
                super(OldStyleNet, self).__init__()
                self.w = nn.Parameter(torch.zeros(3))

        def hasattr_check(x):
            return hasattr(x, "shape") and isinstance(x, np.ndarray)
        """,
    "match, del, hasattr, str methods, dict methods": """
        def f(model, key):
            d = dict(model)
            match key:
                case (s, a):
                    del d[s, a]
                case _:
                    pass
            return ", ".join(str(k) for k in d.keys()), d.get(key), sorted(d.items())
        """,
    "future annotations and local names that shadow notebook module names or built-ins": """
        from __future__ import annotations

        from torch import nn

        def f(ref: float, dp: list, sys=None) -> float:
            queue = [ref]
            for _i in range(2):
                queue.append(_i)
            return queue[0] + len(dp)

        class Net(nn.Module):
            def forward(self, input, vars=None):
                open = [input]
                return open[0]
        """,
}


@pytest.mark.parametrize("source", list(STYLES.values()), ids=list(STYLES))
def test_correct_styles_pass(source):
    assert_accepted(source)


# ---------------------------------------------------------------------------------------------- dropped statements

def test_top_level_statements_are_dropped_with_notes_and_the_rest_runs():
    checked = check_answer("def f():\n    return 3\nprint(f())\nfor i in range(3): f()\n")
    assert checked.ok and checked.defines == ("f",)
    assert checked.dropped == ("line 3: top-level `print(...)` is not run while grading",
                               "line 4: top-level `for` loop is not run while grading")
    namespace: dict = {}
    exec(checked.source, namespace)  # noqa: S102 -- the policy's own output, in a fresh namespace
    assert namespace["f"]() == 3 and "i" not in namespace
    assert checked.source.splitlines()[0] == "def f():"  # line numbers are kept


def test_dropped_statements_are_not_checked_but_kept_ones_are():
    checked = check_answer("import numpy as np\ngamma = 0.9\nS, A = 3, 2\nprint(getattr(np, 'x'))\nsys.exit()\n"
                           "if True:\n    import os\nnp.allclose = print\n")
    assert checked.ok, checked.violations
    assert len(checked.dropped) == 4 and "assignment to an attribute or item" in checked.dropped[-1]
    namespace: dict = {}
    exec(checked.source, namespace)  # noqa: S102
    assert namespace["gamma"] == 0.9 and (namespace["S"], namespace["A"]) == (3, 2)


def test_a_statement_sharing_a_line_with_a_dropped_one():
    checked = check_answer("x = 1; print(x)\ndef f():\n    return x\n")
    assert checked.ok and len(checked.dropped) == 1
    namespace: dict = {}
    exec(checked.source, namespace)  # noqa: S102
    assert namespace["f"]() == 1 and "print" not in checked.source


def test_a_cell_that_keeps_nothing():
    checked = check_answer("print(1)\n")
    assert checked.ok and checked.source == "" and checked.defines == ()


# --------------------------------------------------------------------------------------------------------- the API

def test_violation_and_result_api():
    violation = Violation(3, "`getattr` is not allowed in answers")
    assert str(violation) == "line 3: `getattr` is not allowed in answers"
    bad = check_answer("x = getattr\n")
    assert not bad.ok and bad.violations[0].line == 1 and isinstance(bad.violations, tuple)
    assert check_answer("x = 1\n").ok
    with pytest.raises(TypeError):
        check_answer(b"x = 1")  # type: ignore[arg-type]


def test_invalid_python_is_one_violation():
    checked = check_answer("def f(:\n    pass\n")
    assert len(checked.violations) == 1 and checked.source == "" and checked.defines == ()
    assert "not valid Python" in checked.violations[0].message
    assert not check_answer("x = 1\0").ok


def test_hostile_sizes_do_not_crash():
    assert not check_answer("x = " + "(" * 5000 + ")" * 5000 + "\n").ok
    assert not check_answer("x = " + "-" * 100_000 + "1\n").ok
    assert not check_answer("x = 1\n" * 50_000).ok


def test_defined_functions():
    assert defined_functions("import numpy as np\ndef f():\n    pass\nclass A:\n    def g(self):\n        pass\n"
                             "def h():\n    pass\n") == ("f", "h")
    assert defined_functions("def f(:\n") == ()
    assert check_answer("class A:\n    pass\ndef f():\n    pass\n").defines == ("A", "f")


def test_describe_rules_names_every_allowed_module_and_rule():
    text = policy.describe_rules()
    assert text.startswith("- ")
    for module in ALLOWED_MODULES:
        assert f"`{module}`" in text
    for fragment in ("`getattr`", "`solutions`", "`__init__`", "`where=`", "`sys`", "`ref`"):
        assert fragment in text
    for attribute in policy._FORBIDDEN_ATTRIBUTES:
        assert f"`.{attribute}`" in text
    for prefix in policy._FORBIDDEN_PREFIXES:
        assert f"`{prefix}...`" in text


# ---------------------------------------------------------------------------- the deny-lists against the libraries

DANGEROUS_BUILTINS = {id(getattr(builtins, n)): n for n in (
    "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "getattr", "setattr", "delattr", "open",
    "input", "breakpoint", "memoryview")}


def _allowed_attribute(name: str) -> bool:
    return (policy._forbidden_attribute(name) is None and not policy._TYPE_ONLY.fullmatch(name)
            and name not in ("format", "format_map"))


def _importable_modules() -> list[tuple[str, types.ModuleType]]:
    """The allowed modules, and every submodule of an allowed package that an answer may import (its path has no
    forbidden part), imported: importing runs a module's code, and it may not be reachable as an attribute."""
    found = []
    for top in sorted(ALLOWED_MODULES):
        module = importlib.import_module(top)
        found.append((top, module))
        for folder in getattr(module, "__path__", []):
            for file in sorted(pathlib.Path(folder).rglob("*.py")):
                parts = [top, *file.relative_to(folder).with_suffix("").parts]
                if parts[-1] == "__init__":
                    parts.pop()
                if len(parts) > 1 and all(policy._forbidden_attribute(part) is None for part in parts[1:]):
                    name = ".".join(parts)
                    try:
                        found.append((name, importlib.import_module(name)))
                    except Exception:  # noqa: BLE001 -- a module that fails to import gives an answer nothing
                        continue
    return found


def test_allowed_attribute_paths_stay_inside_the_allowed_modules():
    """Walks every allowed module (and every submodule an answer may import) through attribute names the policy
    allows (modules, and classes of modules):
    no path may reach another module (``torch.os``, ``typing.sys``, ``fractions.operator``...), a dangerous
    built-in under another name, ``type`` or a metaclass (which build classes from a dict), and every name that
    ends in Error/Exception/Warning must be an exception class (class bases rely on it). This fails when a new
    numpy or torch exposes something new."""
    problems: list[str] = []
    seen: set[int] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        queue = [(name, module, 0) for name, module in _importable_modules()]
        while queue:
            path, obj, depth = queue.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            for name in dir(obj):
                if not _allowed_attribute(name):
                    continue
                try:
                    value = getattr(obj, name)
                except Exception:  # noqa: BLE001 -- lazy attributes that fail to load cannot be reached either
                    continue
                where = f"{path}.{name}"
                origin = getattr(value, "__origin__", None) if not isinstance(value, type) else None
                if isinstance(value, types.ModuleType):
                    if value.__name__.split(".")[0] not in ALLOWED_MODULES:
                        problems.append(f"{where} is module {value.__name__}")
                    elif depth < 8:
                        queue.append((where, value, depth + 1))
                elif id(value) in DANGEROUS_BUILTINS:
                    problems.append(f"{where} is {DANGEROUS_BUILTINS[id(value)]}")
                elif any(isinstance(v, type) and issubclass(v, type) for v in (value, origin)):
                    problems.append(f"{where} builds classes (a metaclass)")
                elif isinstance(value, type):
                    if name.endswith(("Error", "Exception", "Warning")) and not issubclass(value, BaseException):
                        problems.append(f"{where} is not an exception class")
                    if depth < 3 and isinstance(obj, types.ModuleType):
                        queue.append((where, value, depth + 2))
    assert len(seen) > 500  # numpy and torch were walked
    assert not problems, "\n".join(problems)
