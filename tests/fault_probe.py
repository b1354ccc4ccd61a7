"""Test-only callback for the fault-tolerance tests: an exact per-micro-batch loss log and a
real signal sent to its own process when a given optimizer step is reached.

Enabled in a CLI run with ``EXPCONF_ALLOWED_TARGETS=fault_probe.*``, ``PYTHONPATH=tests`` and
``callbacks.extra=[{_target_:fault_probe.StepProbe,path:...,signal_at:N}]``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

_SIGNALS = signal.Signals  # the constructor's ``signal`` argument hides the module


class StepProbe(Callback):
    """Appends ``step micro loss.hex()`` per micro-batch to ``path`` (rank 0, flushed at once).

    Each start line also records the process's intra-op thread count (``start STEP threads=N``):
    tests that compare these losses bit for bit assert every run used the same count, since a
    CPU reduction split over a different number of threads sums in a different order.

    ``signal_at``: send ``signal`` to this process right after optimizer step ``signal_at``
    completes, unless the run started at or after that step (a resumed run).
    ``repeat_signal``: send it again 1.5 s later (a second, separate request).
    ``signal_at=-2``: send it while the run is being built (from this constructor), before fit.
    ``copy_at_exit``: send a copy of it again once training has torn down (Lightning's signal
    handlers gone), as a scheduler's duplicate that arrives while the process exits; the
    preemption callback's duplicate window is widened so the copy counts as one on any load.
    """

    def __init__(
        self,
        path: str,
        signal_at: int = -1,
        signal: str = "SIGTERM",
        repeat_signal: bool = False,
        copy_at_exit: bool = False,
    ) -> None:
        self.path = Path(path)
        self.signal_at = signal_at
        self.signal = signal
        self.repeat_signal = repeat_signal
        self.copy_at_exit = copy_at_exit
        self._step = 0
        self._micro = 0
        self._start_step = -1
        if signal_at == -2:
            os.kill(os.getpid(), _SIGNALS[self.signal])

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.copy_at_exit and stage == "fit":
            os.kill(os.getpid(), _SIGNALS[self.signal])

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.copy_at_exit:
            from expconf import early_signal

            early_signal.DUPLICATE_WINDOW_S = 3600.0
        self._start_step = trainer.global_step
        if trainer.is_global_zero:
            with self.path.open("a") as f:
                f.write(f"start {trainer.global_step} threads={torch.get_num_threads()}\n")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            with self.path.open("a") as f:
                f.write(f"val {trainer.global_step}\n")

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step != self._step:
            self._step, self._micro = trainer.global_step, 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if trainer.is_global_zero:
            with self.path.open("a") as f:
                f.write(f"{self._step} {self._micro} {float(loss).hex()}\n")
                f.flush()
        self._micro += 1
        done = trainer.global_step
        if done == self.signal_at and self._start_step < self.signal_at and trainer.is_global_zero:
            sig = signal.Signals[self.signal]
            os.kill(os.getpid(), sig)
            if self.repeat_signal:
                import time

                time.sleep(1.5)  # past the duplicate window: a second, separate request
                os.kill(os.getpid(), sig)


def validations(path: Path) -> list[int]:
    """The global steps at which validation ran, in order."""
    return [int(line.split()[1]) for line in path.read_text().splitlines() if line.startswith("val ")]


def thread_counts(*paths: Path) -> set[int]:
    """The intra-op thread counts recorded by every run start in ``paths``."""
    counts = set()
    for path in paths:
        for line in path.read_text().splitlines():
            if line.startswith("start "):
                counts.add(int(line.split("threads=")[1]))
    return counts


def read_log(path: Path) -> tuple[dict[tuple[int, int], str], list[int], list[str]]:
    """Losses by (step, micro-batch), the start steps of each run, and any replayed entry that differed."""
    losses: dict[tuple[int, int], str] = {}
    starts: list[int] = []
    conflicts: list[str] = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts[0] == "start":
            starts.append(int(parts[1]))
            continue
        if parts[0] == "val":
            continue
        key = (int(parts[0]), int(parts[1]))
        if key in losses and losses[key] != parts[2]:
            conflicts.append(f"{key}: {losses[key]} then {parts[2]}")
        losses[key] = parts[2]
    return losses, starts, conflicts


class TouchAt(Callback):
    """Creates the file ``path`` right after optimizer step ``step`` completes (silences a
    ``silent_server.SilentServer`` that forwards until that file exists)."""

    def __init__(self, path: str, step: int) -> None:
        self.path = Path(path)
        self.step = step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self.step:
            self.path.touch()


class HoldAt(TouchAt):
    """Right after optimizer step ``step`` completes, creates ``path`` and then sleeps until the
    process is killed: a live run that holds its run dir for as long as a test needs."""

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        while trainer.global_step == self.step:
            time.sleep(60)


class HoldBeforeMarker(Callback):
    """Holds the checkpoint writer of rank 0 just before it writes the completion marker of the
    sharded folder of optimizer step ``step``: creates ``path``, then sleeps until the process is
    killed. Every rank's shard and DCP's metadata are then written, the marker is not."""

    def __init__(self, path: str, step: int) -> None:
        self.path = Path(path)
        self.step = step

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from expconf.checkpoint.meta import MARKER_SUFFIX, CheckpointMeta
        from expconf.storage import Storage

        write = Storage.write_bytes_atomic

        def held(storage: Storage, name: str, data: bytes) -> int:
            if name.endswith(MARKER_SUFFIX):
                meta = CheckpointMeta.from_json(data)
                if meta.files and meta.global_step == self.step:
                    self.path.touch()
                    while True:
                        time.sleep(60)
            return write(storage, name, data)

        Storage.write_bytes_atomic = held  # type: ignore[method-assign]
