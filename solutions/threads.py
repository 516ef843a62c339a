"""One CPU thread for torch while the book trains its small networks.

The networks of this book (a 128-unit Q-network, a dynamics model, later a tiny transformer) do too little work
per operation for torch's intra-op threads to pay off, and on a busy 2-core machine the threads wait on each other:
4,000 DQN steps on CartPole took 40-60 s with torch's default two threads and 4-6 s with one, for the same
numbers (four 4,000-step runs on this 2-core machine while other jobs ran).
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["single_threaded"]


class single_threaded(contextlib.ContextDecorator):
    """Context manager and decorator: torch runs on one intra-op thread inside, as it did before outside.

    Usage: ``with single_threaded(): ...`` or ``@single_threaded()`` on a training function. The results do not
    change (the same operations in the same order); only the time does.
    """

    def __enter__(self):
        self._previous = torch.get_num_threads()
        torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self._previous)
        return False
