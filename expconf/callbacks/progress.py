"""``StepProgressBar``: progress in optimizer steps of the run's total, with tokens/s and time left."""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ProgressBar

from expconf.callbacks.run_stats import tokens_per_step

BAR_WIDTH = 20


def clock(seconds: float) -> str:
    """``3725.2`` -> ``1:02:05``."""
    s = max(0, round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_line(
    step: int, total: int | None, metrics: dict[str, Any], tokens_per_sec: float | None, left_s: float | None
) -> str:
    """One progress line: ``step 40/100 [########------------] loss 5.39 | 12,345 tokens/s | 0:01:02 left``."""
    parts = [f"step {step}/{total}" if total else f"step {step}"]
    if total:
        filled = min(BAR_WIDTH, BAR_WIDTH * step // total)
        parts.append("[" + "#" * filled + "-" * (BAR_WIDTH - filled) + "]")
    parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()]
    line = " ".join(parts)
    if tokens_per_sec is not None:
        line += f" | {tokens_per_sec:,.0f} tokens/s"
    if left_s is not None:
        line += f" | {clock(left_s)} left"
    return line


class StepProgressBar(ProgressBar):
    """Counts optimizer steps (not micro-batches) against ``max_steps``, so gradient accumulation
    and a resumed run read right (``step 6/8`` after resuming at 4). On a terminal one line is
    redrawn at most every ``refresh_s`` seconds; otherwise (a log file, a pipe) a line is printed
    every ``log_every_n_steps`` steps and at the end. Tokens per second and time left are the
    averages since this process's first step, validation included.
    """

    def __init__(self, refresh_s: float = 0.2, stream: TextIO | None = None) -> None:
        super().__init__()
        self.refresh_s = refresh_s
        self._stream = stream
        self._enabled = True
        self._last_step = -1
        self._printed_step = -1
        self._redrawn_at = 0.0
        self._first: tuple[int, float] | None = None

    @property
    def stream(self) -> TextIO:
        """Where the lines go (stdout unless given)."""
        return self._stream or sys.stdout

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def total_steps(self, trainer: pl.Trainer) -> int | None:
        """``max_steps``, or the optimizer steps Lightning expects from the epochs; None if unbounded."""
        if trainer.max_steps > 0:
            return trainer.max_steps
        try:
            total = trainer.estimated_stepping_batches
        except Exception:  # no train dataloader length to estimate from
            return None
        return int(total) if math.isfinite(total) else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_step = trainer.global_step
        self._first = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_step:  # a micro-batch inside one optimizer step
            return
        self._last_step = step
        now = time.perf_counter()
        if self._first is None:
            self._first = (step, now)
        if not self._enabled or not trainer.is_global_zero:
            return
        if self._tty():
            if now - self._redrawn_at >= self.refresh_s:
                self._redrawn_at = now
                self._write("\r" + self._line(trainer, pl_module, step, now) + "\033[K")
        elif step % max(1, int(getattr(trainer, "log_every_n_steps", 1) or 1)) == 0:
            self._print(trainer, pl_module, step, now)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero or self._last_step < 0:
            return
        if self._tty():
            self._write("\r" + self._line(trainer, pl_module, self._last_step, time.perf_counter()) + "\033[K\n")
        elif self._printed_step != self._last_step:
            self._print(trainer, pl_module, self._last_step, time.perf_counter())

    def _print(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int, now: float) -> None:
        self._printed_step = step
        self._write(self._line(trainer, pl_module, step, now) + "\n")

    def _line(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int, now: float) -> str:
        total = self.total_steps(trainer)
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        rate = left = None
        if self._first is not None and step > self._first[0] and now > self._first[1]:
            per_step = (now - self._first[1]) / (step - self._first[0])
            tokens = tokens_per_step(trainer)
            rate = tokens / per_step if tokens else None
            left = per_step * (total - step) if total else None
        return format_line(step, total, metrics, rate, left)

    def _tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
