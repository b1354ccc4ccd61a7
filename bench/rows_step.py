"""Step time: the GPT recipe through ``python -m expconf.train`` against the raw PyTorch loop.

Two rows:

* **GPT step**: A is ``python -m expconf.train +recipe=gpt`` (TimingCallback, PreemptionCallback,
  TensorBoard and ModelCheckpoint on; the progress bar off; validation off so that no step
  carries it), B is ``python -m bench.raw_loop`` on the same composed
  config. A step's time is the wall time between consecutive optimizer-step ends (so data
  loading, logging and every callback count), taken by :class:`bench.steplog.StepLog` on A
  and by the loop itself on B; startup and the first ``WARMUP`` steps are left out. Each run
  gives the median of its steady steps; the row compares the medians of those over the runs.
  Every run's per-step losses must equal the raw loop's bitwise, or the benchmark fails.
* **Fixed overhead**: a near-zero-compute module (``Linear(1, 1)``) trained by a plain
  ``pl.Trainer`` (B) and by ``expconf.train`` with expconf's callbacks, NeMoLogger and
  ModelCheckpoint (A), in this process; the row is the difference of the median step times.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, interleave, ratio_row, run_process, steady
from bench.steplog import intervals, read

WARMUP = 4
QUICK_MODEL = [
    "model.n_layer=1",
    "model.n_head=2",
    "model.n_embd=32",
    "data.seq_length=32",
    "data.micro_batch_size=4",
    "data.global_batch_size=8",
    "data.corpus_megabytes=1",
]


def step_overrides(steps: int, quick: bool) -> list[str]:
    """The CLI overrides of the timed GPT runs: the recipe, ``steps`` steps, no validation."""
    return [
        "+recipe=gpt",
        *(QUICK_MODEL if quick else []),
        f"trainer.max_steps={steps}",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
    ]


def steplog_override(path: Path) -> str:
    """The override that adds :class:`bench.steplog.StepLog` writing to ``path``."""
    return f"+callbacks.extra=[{{_target_: bench.steplog.StepLog, path: '{path}'}}]"


def _steplog_intervals(rec: dict[str, Any]) -> dict[str, Any]:
    """Add wall and CPU step intervals to a StepLog record."""
    rec["intervals"] = intervals(rec["ends"], rec["train_start"])
    rec["cpu_intervals"] = intervals(rec["cpu_ends"], rec["cpu_start"])
    return rec


def run_expconf(overrides: list[str], workdir: Path) -> dict[str, Any]:
    """One CLI run in a fresh folder; StepLog's record plus the launch time (unix seconds)."""
    workdir.mkdir(parents=True)
    out = workdir / "steps.json"
    launched = time.time()
    run_process(["-m", "expconf.train", *overrides, steplog_override(out)], workdir)
    rec = read(out)
    rec["launched"] = launched
    return _steplog_intervals(rec)


def _run_job(module: str, job: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """``python -m MODULE job.json out.json`` in a fresh folder; its record plus the launch time."""
    workdir.mkdir(parents=True)
    (workdir / "job.json").write_text(json.dumps(job))
    launched = time.time()
    run_process(["-m", module, "job.json", "out.json"], workdir)
    rec = read(workdir / "out.json")
    rec["launched"] = launched
    return rec


def run_raw(job: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One raw-loop process (bench/raw_loop.py) on ``job``."""
    rec = _run_job("bench.raw_loop", job, workdir)
    rec["intervals"] = rec["step_times"]
    rec["cpu_intervals"] = rec["cpu_times"]
    return rec


def run_bare_lightning(job: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """One bare ``pl.Trainer`` process (bench/bare_lightning.py) on the raw loop's job."""
    return _steplog_intervals(_run_job("bench.bare_lightning", job, workdir))


def prepare(overrides: list[str]) -> Any:
    """Compose the config and build the token cache once, so no timed run pays for it."""
    from expconf.data import prepare_tokens
    from expconf.train import compose_root

    root = compose_root(overrides)
    prepare_tokens(root.data)
    return root


def gpt_step_rows(quick: bool, plot_path: Path | None) -> list[Row]:
    """expconf's steady-state GPT step time over the raw loop's and over a bare Lightning
    script's (A B C interleaved), losses checked bitwise on all three."""
    from bench.recipe import raw_job

    steps, repeats = (8, 2) if quick else (24, 5)
    overrides = step_overrides(steps, quick)
    job = raw_job(prepare(overrides), steps)
    losses: list[list[float]] = []
    cpu: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    all_steps: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    medians: dict[str, list[float]] = {"a": [], "b": [], "c": []}
    runners: dict[str, Callable[[Path], dict[str, Any]]] = {
        "a": lambda work: run_expconf(overrides, work),
        "b": lambda work: run_raw(job, work),
        "c": lambda work: run_bare_lightning(job, work),
    }
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        for i in range(repeats):
            for key, runner in runners.items():  # A B C interleaved
                rec = runner(Path(tmp) / f"{key}{i}")
                losses.append(rec["losses"])
                cpu[key].append(statistics.median(steady(rec["cpu_intervals"], WARMUP)))
                s = steady(rec["intervals"], WARMUP)
                all_steps[key].extend(s)
                medians[key].append(statistics.median(s))
    xs, ys, zs = medians["a"], medians["b"], medians["c"]
    a_steps, b_steps = all_steps["a"], all_steps["b"]
    reference = losses[1]
    if len(reference) != steps or any(run != reference for run in losses):
        raise AssertionError(f"per-step losses differ between expconf, the raw loop and bare Lightning: {losses}")
    if plot_path is not None:
        from bench.plot import plot_step_times

        plot_step_times(a_steps, b_steps, plot_path)
    cpu_ratio = statistics.median(cpu["a"]) / statistics.median(cpu["b"])
    return [
        ratio_row(
            "Step time",
            "GPT recipe step: `python -m expconf.train` / raw PyTorch loop",
            xs,
            ys,
            1.03,
            note=f"wall time between step ends; {steps} steps per run, first {WARMUP} left out; progress bar off; "
            f"CPU-time ratio {cpu_ratio:.3f}; "
            f"per-step losses bitwise equal in all {len(losses)} runs ({steps} steps each)",
        ),
        ratio_row(
            "Step time",
            "GPT recipe step: `python -m expconf.train` / bare `pl.Trainer` script",
            xs,
            zs,
            1.03,
            note="same runs as the row above (A B C interleaved); the bare script is bench/bare_lightning.py: "
            "what expconf adds on top of Lightning's own loop; "
            f"CPU-time ratio {statistics.median(cpu['a']) / statistics.median(cpu['c']):.3f}",
        ),
    ]


def overhead_row(quick: bool) -> Row:
    """Fixed per-step cost of expconf over a plain Lightning Trainer, on a near-zero-compute model."""
    from bench.overhead import run_bare, run_expconf_api

    steps, repeats = (60, 2) if quick else (600, 11)
    cpu: dict[str, list[float]] = {"a": [], "b": []}

    def side(key: str, fn: Callable[[Path, int], tuple[list[float], list[float]]], tmp: Path) -> float:
        wall, cpu_s = fn(tmp / f"{key}{len(cpu[key])}", steps)
        cpu[key].append(statistics.median(steady(cpu_s, 20)))
        return statistics.median(steady(wall, 20))

    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        xs, ys = interleave(
            lambda: side("a", run_expconf_api, Path(tmp)), lambda: side("b", run_bare, Path(tmp)), repeats
        )
    cpu_diff = (statistics.median(cpu["a"]) - statistics.median(cpu["b"])) * 1e3
    a_ms, b_ms = [x * 1e3 for x in xs], [y * 1e3 for y in ys]
    diff = statistics.median(a_ms) - statistics.median(b_ms)
    row = ratio_row(
        "Step time",
        "fixed per-step overhead: expconf.train minus plain pl.Trainer, Linear(1, 1) model (ms)",
        a_ms,
        b_ms,
        float("inf"),
        unit="ms",
        note=f"the ratio column is the difference A - B in ms (CPU time: {cpu_diff:+.3f} ms); "
        f"{steps} steps per run, first 20 left out",
    )
    row.ratio, row.goal, row.met = diff, "<= +0.1 ms", diff <= 0.1
    return row


def rows(quick: bool) -> list[Row]:
    """The step-time rows (and docs/step_times.png when not quick)."""
    plot = None if quick else REPO / "docs" / "step_times.png"
    return [*gpt_step_rows(quick, plot), overhead_row(quick)]
