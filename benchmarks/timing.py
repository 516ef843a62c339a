"""Timing helpers shared by the benchmark scripts (imported as ``timing``: the scripts run as
``python benchmarks/<script>.py``, which puts this folder on ``sys.path``)."""

import resource
import statistics
import time


def timed(fn):
    """(result, CPU seconds, wall seconds) of one call of ``fn()`` (CPU time of this process)."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def median_line(label: str, cpus: list[float], walls: list[float]) -> str:
    """``"label: <median CPU> s CPU, <median wall> s wall (median of n)"``."""
    return (f"{label}: {statistics.median(cpus):.2f} s CPU, {statistics.median(walls):.2f} s wall "
            f"(median of {len(cpus)})")


def cpu_all() -> float:
    """CPU seconds of this process and its finished children (worker processes it has waited for)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
