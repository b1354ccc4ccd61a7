"""The toy LightningModule the tests share (a linear layer on fixed random data)."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class Toy(pl.LightningModule):
    """A linear layer; logs ``val_loss``; remembers the step and weights it started from and can
    fail on purpose."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.fail_at = fail_at
        self.start_step: int | None = None
        self.start_weight: torch.Tensor | None = None

    def on_train_start(self) -> None:
        self.start_step = self.trainer.global_step
        self.start_weight = self.net.weight.detach().clone()

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
