"""Shared pieces of the side-by-side benchmarks: timing, a result row, the registry of comparisons.

Each ``bench_<name>.py`` defines ``COMPARISON`` (a short title), ``PEER`` (the library it compares with),
``SUMMARY`` (what the numbers say: its paragraph of the page), ``REQUIRES`` (the modules it imports beyond
optlab's core) and ``run(quick: bool) -> list[Row]``.  In quick
mode a benchmark uses tiny sizes, asserts that optlab and the peer agree (identical iterates, equal objectives
within a stated tolerance) and measures no time; the test suite runs it.  In full mode it measures quality and
wall time, both in the same process and run, one thread, the median of several repeats, and
``benchmarks/run.py`` turns the rows into the book's page.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


@dataclass
class Row:
    """One comparison on one problem: quality of each side (lower is better) and their wall times."""

    comparison: str
    problem: str
    metric: str
    optlab: float
    peer: float
    optlab_seconds: float = float("nan")
    peer_seconds: float = float("nan")
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def quality_ratio(self) -> float:
        """optlab's metric over the peer's (lower is better for both: < 1 means optlab is better)."""
        return self.optlab / self.peer if self.peer else float("nan")

    @property
    def time_ratio(self) -> float:
        """optlab's wall time over the peer's (< 1 means optlab is faster)."""
        return self.optlab_seconds / self.peer_seconds if self.peer_seconds else float("nan")

    def as_dict(self) -> dict:
        return dict(asdict(self), quality_ratio=self.quality_ratio, time_ratio=self.time_ratio)


def timed(fn, repeats: int = 5):
    """``(result of the last call, median wall time in seconds over repeats)``."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def timed_alternating(calls: dict, repeats: int = 5, min_seconds: float = 0.02) -> dict:
    """``{name: median seconds of one call}`` for several sides timed in turns, so that load bursts hit them all.

    Each repeat calls every side in turn, in an order rotated from one repeat to the next (a long call would
    otherwise always precede the same short one, which then pays for the scheduler's catch-up), and calls a
    fast side enough times to last ``min_seconds`` (counted from a first call), timing the mean per call.
    """
    names = list(calls)
    inner = {}
    for k in names:
        start = time.perf_counter()
        calls[k]()
        inner[k] = max(1, int(min_seconds / max(time.perf_counter() - start, 1e-9)))
    times = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(inner[k]):
                calls[k]()
            times[k].append((time.perf_counter() - start) / inner[k])
    return {k: statistics.median(v) for k, v in times.items()}


def missing(bench) -> list:
    """The modules of ``bench.REQUIRES`` that are not installed (a benchmark with missing peers is skipped)."""
    return [m for m in bench.REQUIRES if importlib.util.find_spec(m) is None]


def benchmarks() -> list:
    """Every ``bench_*.py`` module of this folder, imported, in name order."""
    import sys

    sys.path.insert(0, str(HERE))
    return [importlib.import_module(p.stem) for p in sorted(HERE.glob("bench_*.py"))]
