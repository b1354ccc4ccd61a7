"""A few steps of ``python -m expconf.train`` and of the raw PyTorch loop give bitwise-equal losses.

This is a correctness test of the benchmark's baseline (bench/raw_loop.py) and of expconf's
training path: same model init, data order, optimizer, schedule, accumulation and clipping.

Bitwise equality is valid only when both sides execute the same ops in the same order. The CLI
run is a child process with ``helpers.CLI_THREADS`` intra-op threads while the raw loop runs in
this test process, whose thread count follows the machine (``OMP_NUM_THREADS`` unset: one per
core). A CPU reduction (a matmul's inner sum, a norm) split over another number of threads sums
in another order, so the raw loop runs with the thread count the CLI run recorded, and the test
asserts that both counts are equal.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from helpers import CLI_THREADS, REPO, TINY, intra_op_threads, run_cli

sys.path.insert(0, str(REPO))

from bench.steplog import read

pytestmark = pytest.mark.slow


def test_expconf_and_raw_loop_losses_are_bitwise_equal(tmp_path: Path) -> None:
    from bench.raw_loop import raw_train
    from bench.rows_step import steplog_override
    from expconf.train import compose_root

    steps = 6
    # TINY has 2 micro-batches per step, so accumulation and the micro-batch mean are exercised;
    # the warmup is short so that the learning rate moves and the schedule matters.
    overrides = [*TINY, f"trainer.max_steps={steps}", "trainer.limit_val_batches=0", "optim.warmup_steps=2"]
    out = tmp_path / "steps.json"
    proc = run_cli(
        [*overrides, steplog_override(out)],
        cwd=tmp_path,
        PYTHONPATH=str(REPO),
        EXPCONF_ALLOWED_TARGETS="bench.steplog.*",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = read(out)
    expconf_losses = record["losses"]
    assert record["threads"] == CLI_THREADS

    root = compose_root(overrides)
    assert root.data.global_batch_size // root.data.micro_batch_size == 2
    with intra_op_threads(record["threads"]) as raw_threads:
        raw = raw_train(
            root.model, root.data, root.optim, steps, seed=root.seed, grad_clip=root.trainer.gradient_clip_val
        )
    assert raw_threads == record["threads"]

    assert len(expconf_losses) == steps
    assert expconf_losses == raw.losses  # exact float equality, step by step
    assert len(set(raw.losses)) == steps  # the losses move: a frozen model would not prove much
