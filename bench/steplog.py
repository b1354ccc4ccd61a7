"""``StepLog``: a benchmark callback that records per-step losses and step-end times of a run.

Added to a CLI run without touching its config files::

    EXPCONF_ALLOWED_TARGETS='bench.steplog.*' PYTHONPATH=<repo> python -m expconf.train +recipe=gpt \\
        '+callbacks.extra=[{_target_: bench.steplog.StepLog, path: /tmp/steps.json}]'

The loss of an optimizer step is the mean over its micro-batches computed as Lightning's
backward sees it: the sum, in float32 and in order, of each micro-batch's ``loss / k`` (``k``
micro-batches per step). The raw loop (bench/raw_loop.py) computes the same quantity the same
way, so the two lists compare bitwise when both sides run with the same intra-op thread count
(recorded here as ``threads``: a CPU reduction split over another number of threads sums in
another order). Per step the callback only appends a tensor and a
``perf_counter`` reading; floats are taken and the file is written once, at the end of training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


class StepLog(Callback):
    """Per optimizer step: the micro-batch-mean loss and the wall (``perf_counter``) and CPU
    (``process_time``) times at which the step ended."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.losses: list[torch.Tensor] = []
        self.ends: list[float] = []
        self.cpu_ends: list[float] = []
        self.first_step_unix = 0.0
        self.train_start = 0.0
        self.cpu_start = 0.0
        self._total: torch.Tensor | None = None
        self._last_step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_step = trainer.global_step
        self.train_start = time.perf_counter()
        self.cpu_start = time.process_time()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._total = loss if self._total is None else self._total + loss
        if trainer.global_step == self._last_step:
            return  # mid gradient accumulation
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())
        if len(self.ends) == 1:
            self.first_step_unix = time.time()
        self._last_step = trainer.global_step
        self.losses.append(self._total)
        self._total = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        write(
            self.path,
            losses=[float(x) for x in self.losses],
            ends=self.ends,
            train_start=self.train_start,
            cpu_ends=self.cpu_ends,
            cpu_start=self.cpu_start,
            first_step_unix=self.first_step_unix,
            threads=torch.get_num_threads(),
        )


def write(path: str, **data: Any) -> None:
    """Write one JSON result file."""
    Path(path).write_text(json.dumps(data))


def read(path: str | Path) -> dict[str, Any]:
    """Read a result file written by :func:`write`."""
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def intervals(ends: list[float], start: float) -> list[float]:
    """Step wall times: from ``start`` to the first step end, then between consecutive step ends."""
    out, prev = [], start
    for t in ends:
        out.append(t - prev)
        prev = t
    return out
