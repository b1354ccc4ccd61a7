"""``RunStats``: wall time, tokens per second and MFU of one ``fit``, for the end-of-run summary."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from expconf.flops import device_peak_flops, mfu


def tokens_per_step(trainer: pl.Trainer) -> int | None:
    """Tokens in one optimizer step over all ranks, when the datamodule says (``tokens_per_step()``)."""
    fn = getattr(getattr(trainer, "datamodule", None), "tokens_per_step", None)
    return int(fn()) if callable(fn) else None


def flops_per_token(model: torch.nn.Module) -> int | None:
    """Training FLOPs per token from the first submodule with a ``flops_per_token()`` method."""
    for module in model.modules():
        fn = getattr(module, "flops_per_token", None)
        if callable(fn):
            return int(fn())
    return None


class RunStats(Callback):
    """Measures the training part of one ``fit`` (validation included): seconds, optimizer steps,
    tokens per second and, on a GPU whose peak is known, model FLOPs utilisation."""

    def __init__(self) -> None:
        self.wall_time_s: float | None = None
        self.steps = 0
        self.tokens_per_sec: float | None = None
        self.mfu: float | None = None
        self._start = 0.0
        self._first_step = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._first_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.wall_time_s = time.perf_counter() - self._start
        self.steps = trainer.global_step - self._first_step
        tokens = tokens_per_step(trainer)
        if not tokens or not self.steps or self.wall_time_s <= 0:
            return
        self.tokens_per_sec = tokens * self.steps / self.wall_time_s
        self.mfu = _mfu(trainer, pl_module, self.tokens_per_sec)


def _mfu(trainer: pl.Trainer, pl_module: Any, tokens_per_sec: float) -> float | None:
    peak = device_peak_flops(trainer.strategy.root_device)
    flops = flops_per_token(pl_module)
    if peak is None or flops is None:
        return None
    return mfu(flops, tokens_per_sec, peak * trainer.world_size)


def run_stats_lines(wall_time_s: float | None, tokens_per_sec: float | None, mfu: float | None) -> list[str]:
    """The summary lines for what :class:`RunStats` measured (none when training did not start)."""
    if wall_time_s is None:
        return []
    from expconf.callbacks.progress import clock

    speed = f"{tokens_per_sec:,.0f} tokens/s" if tokens_per_sec is not None else "n/a"
    if mfu is not None:
        speed += f"   (MFU {100 * mfu:.1f}%)"
    return [f"wall time:       {clock(wall_time_s)}   (training, this start)", f"throughput:      {speed}"]
