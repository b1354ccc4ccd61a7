"""What every benchmark module shares: a result row and the A/B interleaving helper.

A benchmark module is ``bench/rows_<topic>.py`` with a function ``rows(quick: bool) -> list[Row]``.
Every row is a ratio of two things measured in the same invocation, interleaved A B A B.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


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


REPO = Path(__file__).resolve().parents[1]


def bench_env(**extra: str) -> dict[str, str]:
    """Environment of every benchmarked process: one intra-op thread, offline W&B, bench callbacks allowed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPCONF_", "WANDB_", "PL_"))}
    if "EXPCONF_CACHE" in os.environ:
        env["EXPCONF_CACHE"] = os.environ["EXPCONF_CACHE"]
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        EXPCONF_ALLOWED_TARGETS="bench.steplog.*",
    )
    env.update(extra)
    return env


def run_process(args: list[str], cwd: Path, timeout: float = 900) -> float:
    """Run ``python ARGS`` in ``cwd`` with :func:`bench_env`; its wall seconds. Raises on failure."""
    log = cwd / f"proc-{time.monotonic_ns()}.log"
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, *args], cwd=cwd, env=bench_env(), stdout=out, stderr=subprocess.STDOUT, timeout=timeout
        )
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{log.read_text()[-3000:]}")
    return dt


def steady(intervals: list[float], warmup: int) -> list[float]:
    """Step times after the first ``warmup`` steps (lazy initialisation, allocator warm-up)."""
    return intervals[warmup:] if len(intervals) > warmup else intervals
