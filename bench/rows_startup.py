"""Startup: composing and printing the config, and the time to the first training step.

* ``--cfg job``: ``python -m expconf.train +recipe=gpt --cfg job`` (compose with the ConfigStore
  schema, print) over ``python -m bench.bare_hydra --cfg job``, a bare Hydra app whose YAML is
  that same composed config: what expconf's entry point, schema and recipe cost to compose.
* First step: from launching ``python -m expconf.train +recipe=gpt trainer.max_steps=1`` to the
  end of its first optimizer step, over the same for ``python -m bench.raw_loop`` on the same
  composed config. Both skip validation (the raw script has none; the CLI's default sanity check
  is turned off) and both find the token cache built.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Row, interleave, ratio_row, run_process
from bench.rows_step import prepare, run_bare_lightning, run_expconf, run_raw, step_overrides


def cfg_job_row(quick: bool) -> Row:
    """``--cfg job`` wall time of expconf over a bare Hydra app."""
    repeats = 2 if quick else 7
    with tempfile.TemporaryDirectory(prefix="bench-cfg-") as tmp:
        cwd = Path(tmp)
        xs, ys = interleave(
            lambda: run_process(["-m", "expconf.train", "+recipe=gpt", "--cfg", "job"], cwd),
            lambda: run_process(["-m", "bench.bare_hydra", "--cfg", "job"], cwd),
            repeats,
        )
    return ratio_row(
        "Startup",
        "`python -m expconf.train +recipe=gpt --cfg job` / bare Hydra app `--cfg job`",
        xs,
        ys,
        1.5,
        note="process wall time, launch to exit; the bare app loads the same composed config as YAML",
    )


def first_step_row(quick: bool) -> Row:
    """Launch-to-first-step time of the CLI over the raw loop's script; first losses compared bitwise."""
    from bench.recipe import raw_job

    repeats = 1 if quick else 5
    overrides = step_overrides(1, quick)
    job = raw_job(prepare(overrides), 1)
    losses: list[list[float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-first-") as tmp:
        n = iter(range(10_000))

        def a() -> float:
            rec = run_expconf(overrides, Path(tmp) / f"a{next(n)}")
            losses.append(rec["losses"])
            return float(rec["first_step_unix"] - rec["launched"])

        def b() -> float:
            rec = run_raw(job, Path(tmp) / f"b{next(n)}")
            losses.append(rec["losses"])
            return float(rec["first_step_unix"] - rec["launched"])

        xs, ys = interleave(a, b, repeats)
    if any(run != losses[0] for run in losses):
        raise AssertionError(f"first-step losses differ between expconf and the raw loop: {losses}")
    return ratio_row(
        "Startup",
        "time to the first training step: `python -m expconf.train` / raw PyTorch script",
        xs,
        ys,
        1.3,
        note="launch to the end of optimizer step 1 (unix clock on both sides); no validation on either side",
    )


def first_step_lightning_row(quick: bool) -> Row:
    """Launch-to-first-step time of the CLI over a bare ``pl.Trainer`` script of the same job.

    The raw-PyTorch row above also pays for importing Lightning (about 3 s here: torch._dynamo
    pulls in sympy, torchmetrics pulls in matplotlib when it is installed); this row shows
    what expconf itself adds on top of Lightning.
    """
    from bench.recipe import raw_job

    repeats = 1 if quick else 5
    overrides = step_overrides(1, quick)
    job = raw_job(prepare(overrides), 1)
    with tempfile.TemporaryDirectory(prefix="bench-first-pl-") as tmp:
        n = iter(range(10_000))

        def a() -> float:
            rec = run_expconf(overrides, Path(tmp) / f"a{next(n)}")
            return float(rec["first_step_unix"] - rec["launched"])

        def b() -> float:
            rec = run_bare_lightning(job, Path(tmp) / f"b{next(n)}")
            return float(rec["first_step_unix"] - rec["launched"])

        xs, ys = interleave(a, b, repeats)
    return ratio_row(
        "Startup",
        "time to the first training step: `python -m expconf.train` / bare `pl.Trainer` script",
        xs,
        ys,
        1.3,
        note="same job; the bare script has no run dir, loggers, checkpointing or config composition",
    )


def rows(quick: bool) -> list[Row]:
    """The startup rows."""
    return [cfg_job_row(quick), first_step_row(quick), first_step_lightning_row(quick)]
