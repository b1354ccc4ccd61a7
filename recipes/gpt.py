"""GPT-style pretraining: the decoder of ``gpt_model`` (GPT-2 and Llama families) as a LightningModule.

The CLI presets live in ``conf/recipe/`` (``gpt`` for the CPU, the published models for GPUs) and
the model shapes in ``conf/model/``.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from expconf.config.model import GPTModelConfig
from expconf.config.optim import OptimConfig
from expconf.errors import ConfigError
from expconf.recipes.gpt_model import GPT, Block, CausalSelfAttention, build_optimizer, lr_lambda, padded_vocab

__all__ = ["GPT", "Block", "CausalSelfAttention", "GPTModule", "build_optimizer", "lr_lambda", "padded_vocab"]


class GPTModule(pl.LightningModule):
    """LightningModule for GPT pretraining; logs reduced_train_loss, val_loss, lr, consumed_samples."""

    def __init__(
        self,
        config: GPTModelConfig,
        *,
        vocab_size: int = 256,
        seq_length: int = 128,
        optim: OptimConfig | None = None,
        global_batch_size: int = 1,
    ) -> None:
        super().__init__()
        self.config = config
        self.optim_config = optim or OptimConfig()
        self.global_batch_size = global_batch_size
        self.seq_length = seq_length
        if config.vocab_size is not None and config.vocab_size < vocab_size:
            raise ConfigError(
                "model.vocab_size", config.vocab_size, f"at least the tokenizer's {vocab_size} tokens (or null)"
            )
        self.vocab_size = config.vocab_size or padded_vocab(vocab_size)
        self.model = GPT(config, self.vocab_size, seq_length)
        self._step_loss: torch.Tensor | None = None
        if config.compile:
            self.model = torch.compile(self.model)  # type: ignore[assignment]

    @property
    def gpt(self) -> GPT:
        """The uncompiled GPT module."""
        return getattr(self.model, "_orig_mod", self.model)  # type: ignore[no-any-return]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx)  # type: ignore[no-any-return]

    def flops_per_token(self) -> int:
        """Training FLOPs per token (the MFU formula of ``GPT.flops_per_token``)."""
        return self.gpt.flops_per_token()

    def consumed_samples(self) -> int:
        """Samples consumed after the step in progress completes."""
        return (self.trainer.global_step + 1) * self.global_batch_size

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss: torch.Tensor = self.model(x, y)
        # Logged once per optimizer step, on its last micro-batch: each self.log call costs
        # about as much as a small model's step. reduced_train_loss is the mean over the step's
        # micro-batches (NeMo's meaning), summed as the scaled losses the backward pass sees, and
        # the mean over ranks (one scalar all-reduce per step; a no-op on one process), so the
        # logged loss of a DDP run equals that of one process with the same global batch.
        k = self.trainer.accumulate_grad_batches
        part = loss.detach() / k
        self._step_loss = part if self._step_loss is None else self._step_loss + part
        if self.trainer.fit_loop._should_accumulate():
            return loss
        self.log("reduced_train_loss", self._step_loss, prog_bar=True, sync_dist=True, batch_size=x.size(0) * k)
        self._step_loss = None
        # Logged here (not in on_train_batch_end, which runs after the callbacks') with the value
        # the step reaches, so a checkpoint named by {consumed_samples} agrees with its {step}.
        self.log("consumed_samples", float(self.consumed_samples()), batch_size=1)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=True, batch_size=1)
        return loss

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """The optimizer step, then the gradients are freed at once (as nanoGPT does).

        Lightning frees them only before the next backward pass, so the next forward pass,
        validation and checkpoint saves would run with a whole set of gradients still held.
        """
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        optimizer.zero_grad(set_to_none=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss: torch.Tensor = self.model(x, y)
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=x.size(0))
        return loss

    def configure_optimizers(self) -> Any:
        opt = build_optimizer(self.model, self.optim_config)
        total = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else 10_000
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, self.optim_config, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def model_config(self) -> dict[str, Any]:
        """What a model archive needs to rebuild this module (see expconf.load_model)."""
        from dataclasses import asdict

        return {
            "config": asdict(self.config),
            "vocab_size": self.vocab_size,
            "seq_length": self.seq_length,
            "config_class": f"{type(self.config).__module__}.{type(self.config).__qualname__}",
        }
