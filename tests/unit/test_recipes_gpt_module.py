"""The GPT recipe's LightningModule in a real (tiny) Lightning fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from expconf.config.model import GPTModelConfig
from expconf.recipes.gpt import GPTModule
from helpers import quiet_trainer


class GradientsSeen(pl.Callback):
    """Whether any parameter holds a gradient, seen before each optimizer step and after each batch."""

    def __init__(self) -> None:
        self.before_step: list[bool] = []
        self.after_batch: list[bool] = []

    def on_before_optimizer_step(self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: Any) -> None:
        self.before_step.append(any(p.grad is not None for p in module.parameters()))

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        self.after_batch.append(any(p.grad is not None for p in module.parameters()))


def test_gradients_are_freed_right_after_the_optimizer_step(tmp_path: Path) -> None:
    """Between steps (checkpoint saves, validation, the next forward pass) no gradient is held; within
    an accumulation window the gradients of the earlier micro-batches are kept."""
    torch.manual_seed(0)
    module = GPTModule(GPTModelConfig(n_layer=1, n_head=2, n_embd=16, dropout=0.0), vocab_size=64, seq_length=8)
    tokens = torch.randint(0, 64, (8, 8))
    loader = DataLoader(TensorDataset(tokens, tokens), batch_size=2)
    seen = GradientsSeen()
    trainer = quiet_trainer(tmp_path, [seen], max_steps=2, accumulate_grad_batches=2, enable_checkpointing=False)
    trainer.fit(module, loader)
    assert seen.before_step == [True, True]
    # Batches 0 and 2 end an accumulation window's first half, 1 and 3 its optimizer step.
    assert seen.after_batch == [True, False, True, False]
