"""Fault tolerance: preemption latency and the cost of resuming (``make bench``).

Each repeat is two real CLI runs of a small GPT on the CPU. The first, fresh, times one
optimizer step plus one synchronous checkpoint save, then signals itself with SIGTERM at the
end of a step (the worst case: a whole step still to finish) and times the signal to the
moment PreemptionCallback has its ``-last`` checkpoint fsynced and marked complete. The second resumes from that checkpoint. Both record
when their first training step completes, counted from the moment the process was started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from bench.common import Row, ratio_row

REPO = Path(__file__).resolve().parents[1]
TOPIC = "Fault tolerance"
SIGNAL_AT = 6
MODEL = [
    "+recipe=gpt",
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_embd=64",
    "model.dropout=0.1",
    "data.seq_length=64",
    "data.micro_batch_size=8",
    "data.global_batch_size=8",
    "data.corpus_megabytes=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.num_sanity_val_steps=0",
    "trainer.val_check_interval=1000",
    "trainer.limit_val_batches=1",
    "log.name=bench",
    "log.version=v1",
    "log.tensorboard.enabled=false",
    "resume.resume_if_exists=true",
    "resume.resume_ignore_no_checkpoint=true",
]


class FaultBenchProbe(Callback):
    """Times a step plus a synchronous save, the signal-to-checkpoint latency and the first step."""

    def __init__(self, out: str, signal_at: int = -1) -> None:
        self.out = Path(out)
        self.signal_at = signal_at
        self.times: dict[str, float] = {}
        self._last_end = 0.0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        self.times.setdefault("first_step_wall", time.time())
        step, self._last_end = now - self._last_end, now  # a whole step: loading, loop, hooks
        if trainer.global_step == self.signal_at - 2:
            ckpt: Any = trainer.checkpoint_callback
            t0 = time.perf_counter()
            ckpt.save(trainer)
            ckpt.wait()
            self.times["step_plus_save"] = step + time.perf_counter() - t0
            self._last_end = time.perf_counter()
        if trainer.global_step == self.signal_at:
            self.times["signal_sent"] = time.perf_counter()
            os.kill(os.getpid(), signal.SIGTERM)
        if trainer.global_step == self.signal_at + 1 and trainer.should_stop:
            # PreemptionCallback runs before this callback and returns only once its checkpoint
            # (and any pending async save) is fsynced and marked complete.
            self.times["signal_to_checkpoint"] = time.perf_counter() - self.times["signal_sent"]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out.write_text(json.dumps(self.times))


def _run(workdir: Path, out: Path, max_steps: int, signal_at: int) -> tuple[int, float, dict[str, float]]:
    probe = f"callbacks.extra=[{{_target_:bench.rows_fault.FaultBenchProbe,out:'{out}',signal_at:{signal_at}}}]"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPCONF_", "PL_"))}
    env.update(EXPCONF_ALLOWED_TARGETS="bench.rows_fault.*", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.update(WANDB_MODE="offline", EXPCONF_CACHE=os.environ.get("EXPCONF_CACHE", ""))
    if not env["EXPCONF_CACHE"]:
        del env["EXPCONF_CACHE"]  # the user's token cache (~/.cache/expconf)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "expconf.train", *MODEL, f"trainer.max_steps={max_steps}", probe],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if not out.is_file():
        raise RuntimeError(f"bench run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.returncode, started, json.loads(out.read_text())


def rows(quick: bool) -> list[Row]:
    """Preemption latency over one step + one save; first resumed step over first fresh step."""
    repeats = 2 if quick else 5
    latency, step_save, fresh_first, resumed_first = [], [], [], []
    for i in range(repeats):
        with tempfile.TemporaryDirectory(prefix="expconf-bench-fault-") as tmp:
            work = Path(tmp)
            code, started, fresh = _run(work, work / f"fresh{i}.json", 50, SIGNAL_AT)
            if code != 75:
                raise RuntimeError(f"the preempted run exited with {code}, not 75")
            latency.append(fresh["signal_to_checkpoint"])
            step_save.append(fresh["step_plus_save"])
            fresh_first.append(fresh["first_step_wall"] - started)
            code, started, resumed = _run(work, work / f"resumed{i}.json", SIGNAL_AT + 3, -1)
            if code != 0:
                raise RuntimeError(f"the resumed run exited with {code}")
            resumed_first.append(resumed["first_step_wall"] - started)
    return [
        ratio_row(
            TOPIC,
            "SIGTERM to fsynced -last checkpoint / (one step + one synchronous save)",
            latency,
            step_save,
            1.1,
            note="signal at the end of a step: a whole step still to finish",
        ),
        ratio_row(
            TOPIC,
            "first resumed step / first step of a fresh run (from process start)",
            resumed_first,
            fresh_first,
            1.2,
            note=f"resumed at step {SIGNAL_AT + 1}; includes imports and setup",
        ),
    ]
