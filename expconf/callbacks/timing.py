"""``TimingCallback``: per-step wall times (and tokens per second) as logged metrics."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from expconf.lightning_internals import logs_this_step


class TimingCallback(Callback):
    """Logs ``train_step_timing in s``, ``train_backward_timing in s``, validation and test step
    timings, ``tokens_per_sec`` when the model or datamodule knows its tokens per step, and
    ``model_tflops_per_sec`` / ``mfu`` when the model also has ``flops_per_token()``.

    Times are taken with ``time.perf_counter``; on CUDA the device is synchronised only at
    logging steps so the callback does not stall the pipeline on every step. Training timings
    are handed to ``self.log`` only on the steps whose metrics Lightning writes to the loggers
    (every ``log_every_n_steps``): a ``self.log`` call costs far more than the step of a small
    model, and values logged in between would be overwritten unseen. ``trainer.callback_metrics``
    therefore holds the timing of the last logging step.
    """

    def __init__(
        self,
        timer_kwargs: dict[str, Any] | None = None,
        log_tokens_per_sec: bool = False,
        tokens_per_step: int | None = None,
    ) -> None:
        """NeMo's keywords: ``log_tokens_per_sec`` (off by default, as in NeMo) turns on
        ``tokens_per_sec`` (also on when ``tokens_per_step`` is given); ``timer_kwargs`` takes
        ``sync_cuda`` (synchronise the device before each logged step time, default true)."""
        unknown = set(timer_kwargs or {}) - {"sync_cuda"}
        if unknown:
            raise ValueError(f"TimingCallback timer_kwargs: unsupported keys {sorted(unknown)} (expected sync_cuda)")
        self.sync_cuda = bool((timer_kwargs or {}).get("sync_cuda", True))
        self.log_tokens_per_sec = log_tokens_per_sec or tokens_per_step is not None
        self.tokens_per_step = tokens_per_step
        self._start: dict[str, float] = {}
        self._batch_start = 0.0
        self._micro_batches = 0
        self._last_step = -1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_step = trainer.global_step
        self._micro_batches = 0

    def _tokens(self, trainer: pl.Trainer) -> int | None:
        if self.tokens_per_step is not None:
            return self.tokens_per_step
        dm = getattr(trainer, "datamodule", None)
        fn = getattr(dm, "tokens_per_step", None)
        return int(fn()) if callable(fn) else None

    def _log(self, pl_module: pl.LightningModule, name: str, value: float, prog_bar: bool = False) -> None:
        pl_module.log(name, value, on_step=True, on_epoch=False, batch_size=1, prog_bar=prog_bar)

    @staticmethod
    def _logging_step(trainer: pl.Trainer) -> bool:
        """Whether Lightning writes this step's metrics to the loggers (always, if it cannot tell)."""
        return logs_this_step(trainer)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        if self._micro_batches == 0:
            self._start["train"] = now
        self._micro_batches += 1

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._start["backward"] = time.perf_counter()

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if "backward" in self._start:
            dt = time.perf_counter() - self._start.pop("backward")
            if self._logging_step(trainer):
                self._log(pl_module, "train_backward_timing in s", dt)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # One optimizer step may span several micro-batches (gradient accumulation).
        step = trainer.global_step
        if self._last_step == step:
            return
        self._last_step = step
        self._micro_batches = 0
        if "train" not in self._start:
            return
        logging_step = self._logging_step(trainer)
        if logging_step and self.sync_cuda and torch.cuda.is_available():
            torch.cuda.synchronize()
        dt = time.perf_counter() - self._start.pop("train")
        if not logging_step:
            return
        self._log(pl_module, "train_step_timing in s", dt)
        tokens = self._tokens(trainer) if self.log_tokens_per_sec else None
        if tokens and dt > 0:
            self._log(pl_module, "tokens_per_sec", tokens / dt, prog_bar=False)
            self._log_flops(trainer, pl_module, tokens / dt)

    def _log_flops(self, trainer: pl.Trainer, pl_module: pl.LightningModule, tokens_per_s: float) -> None:
        """``model_tflops_per_sec`` (all ranks) when the module knows its FLOPs per token, and ``mfu``
        over the devices' dense bf16 peak on a known CUDA card (expconf.flops)."""
        fn = getattr(pl_module, "flops_per_token", None)
        if not callable(fn):
            return
        from expconf.flops import device_peak_flops, mfu

        per_token = int(fn())
        self._log(pl_module, "model_tflops_per_sec", per_token * tokens_per_s / 1e12)
        peak = device_peak_flops(pl_module.device)
        if peak:
            self._log(pl_module, "mfu", mfu(per_token, tokens_per_s, peak * trainer.world_size), prog_bar=True)

    def on_validation_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._start["validation"] = time.perf_counter()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._log_eval_step(pl_module, "validation")

    def on_test_batch_start(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._start["test"] = time.perf_counter()

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._log_eval_step(pl_module, "test")

    def _log_eval_step(self, pl_module: pl.LightningModule, stage: str) -> None:
        """``<stage>_step_timing in s``, averaged over the epoch, for the batch that just ended."""
        if stage in self._start:
            dt = time.perf_counter() - self._start.pop(stage)
            pl_module.log(f"{stage}_step_timing in s", dt, on_step=False, on_epoch=True, batch_size=1)
