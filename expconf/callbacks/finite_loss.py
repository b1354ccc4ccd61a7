"""``FiniteLossCallback``: stop a run whose training loss became NaN or infinite.

A diverged run otherwise trains on (every later step is NaN), overwrites its good ``-last``
checkpoint with NaN weights and exits 0. The check costs no host-device synchronisation per
step: each step's verdict is folded into a flag on the loss's device, read on the steps whose
metrics are logged (where TimingCallback synchronises anyway), before every checkpoint is
written and when training ends. All ranks read the flag together, so they stop together.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

#: Exit status of the command line when training stopped on a NaN or infinite loss.
DIVERGED_EXIT_CODE = 3


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; no checkpoint of that state was written."""


class FiniteLossCallback(Callback):
    """Raises :class:`NonFiniteLossError` (the CLI exits with :data:`DIVERGED_EXIT_CODE`) once a
    training step's loss is NaN or infinite, before any checkpoint of the diverged weights is saved."""

    def __init__(self) -> None:
        self._first_bad: torch.Tensor | None = None  # the first optimizer step with a bad loss; -1: none
        self._step = 0  # the optimizer step the current batch belongs to (1-based)
        self._checked = -1

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step = int(trainer.global_step) + 1

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            if self._first_bad is None or self._first_bad.device != loss.device:
                self._first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
            bad = ~torch.isfinite(loss.detach()).all()
            step = torch.full_like(self._first_bad, self._step)
            self._first_bad = torch.where(bad & (self._first_bad < 0), step, self._first_bad)
        done = int(trainer.global_step)
        if done != self._checked and done % max(int(getattr(trainer, "log_every_n_steps", 1)), 1) == 0:
            self._checked = done
            self._stop_if(trainer.strategy.reduce_boolean_decision(self._first() >= 0, all=False), "on another rank")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if(trainer.strategy.reduce_boolean_decision(self._first() >= 0, all=False), "on another rank")

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # No collective here (an exception checkpoint is written by rank 0 alone): the weights are
        # the same on every rank, a rank's own loss only in a single process.
        local_loss = trainer.world_size == 1 and self._first() >= 0
        self._stop_if(local_loss or not weights_finite(pl_module), "the weights are no longer finite")

    def _first(self) -> int:
        return int(self._first_bad.item()) if self._first_bad is not None else -1

    def _stop_if(self, diverged: bool, otherwise: str) -> None:
        """Raise when ``diverged``; the message names the first bad step this rank saw, else ``otherwise``."""
        if not diverged:
            return
        first = self._first()
        what = (
            f"training loss became NaN or infinite in global step {first}"
            if first >= 0
            else f"training diverged: {otherwise}"
        )
        raise NonFiniteLossError(
            f"{what}; stopped before saving that state "
            f"(exit code {DIVERGED_EXIT_CODE}): lower optim.lr, raise optim.warmup_steps, set "
            "trainer.gradient_clip_val, or check the data; the checkpoints written before it are intact"
        )


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter (this rank's shard of a sharded one) is finite; one device sync."""
    flags = []
    for p in module.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p  # a DTensor shard (FSDP2)
        if local.numel():
            flags.append(torch.isfinite(local.detach()).all())
    return bool(torch.stack([f.to(flags[0].device) for f in flags]).all().item()) if flags else True
