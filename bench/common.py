"""What every benchmark module shares: a result row and the A/B interleaving helper.

A benchmark module is ``bench/rows_<topic>.py`` with a function ``rows(quick: bool) -> list[Row]``.
Every row is a ratio of two things measured in the same invocation, interleaved A B A B.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Row:
    """One line of docs/benchmarks.md."""

    topic: str  # section heading, e.g. "Step time", "S3", "Fault tolerance"
    name: str  # what is compared, e.g. "expconf step / raw PyTorch step"
    ratio: float  # median of A / median of B (or the quantity named by `unit`)
    goal: str  # e.g. "<= 1.03"
    met: bool
    a_median: float = 0.0
    b_median: float = 0.0
    a_spread: float = 0.0  # (max - min) / median of A's repeats
    b_spread: float = 0.0
    unit: str = "s"
    repeats: int = 0
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)


def spread(xs: list[float]) -> float:
    """(max - min) / median."""
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / m if m else 0.0


def interleave(a: Callable[[], float], b: Callable[[], float], repeats: int = 5) -> tuple[list[float], list[float]]:
    """Run ``a`` and ``b`` alternately ``repeats`` times each; each returns the seconds it measured."""
    xs, ys = [], []
    for _ in range(repeats):
        xs.append(a())
        ys.append(b())
    return xs, ys


def ratio_row(
    topic: str, name: str, a: list[float], b: list[float], goal_max: float, *, unit: str = "s", note: str = ""
) -> Row:
    """A row whose goal is median(a) / median(b) <= goal_max."""
    am, bm = statistics.median(a), statistics.median(b)
    r = am / bm if bm else float("inf")
    return Row(
        topic,
        name,
        r,
        f"<= {goal_max}",
        r <= goal_max,
        am,
        bm,
        spread(a),
        spread(b),
        unit,
        len(a),
        note,
        {"a": a, "b": b},
    )


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn`` took."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
