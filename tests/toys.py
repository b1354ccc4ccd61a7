"""A tiny LightningModule and quiet CPU trainers for the drop-in fidelity tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class Toy(pl.LightningModule):
    """A linear layer; logs ``val_loss``; remembers the step it started from and can fail on purpose."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.fail_at = fail_at
        self.start_step: int | None = None

    def on_train_start(self) -> None:
        self.start_step = self.trainer.global_step

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.fail_at is not None and self.trainer.global_step == self.fail_at:
            raise RuntimeError(f"failing on purpose at step {self.fail_at}")
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y), batch_size=len(x))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.05)

    def train_dataloader(self) -> DataLoader[Any]:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(64, 4, generator=g)
        return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(torch.ones(2, 4), torch.full((2, 1), 4.0)), batch_size=2)


def make_trainer(root: Path, max_steps: int, callbacks: list[pl.Callback] | None = None, **kwargs: Any) -> pl.Trainer:
    """A quiet CPU trainer that validates every 2 steps (``logger`` and more through ``kwargs``)."""
    kwargs.setdefault("logger", False)
    kwargs.setdefault("val_check_interval", 2)
    kwargs.setdefault("limit_val_batches", 1)
    return pl.Trainer(
        max_steps=max_steps,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=str(root),
        callbacks=callbacks or [],
        **kwargs,
    )
