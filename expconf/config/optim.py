"""``optim``: AdamW with linear warmup and cosine decay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from expconf.config.fields import doc, require
from expconf.config.limits import check_finite


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule."""

    name: str = doc("adamw", "optimizer (adamw)")
    lr: float = doc(1e-3, "peak learning rate")
    min_lr: float = doc(1e-4, "learning rate at the end of the cosine decay")
    weight_decay: float = doc(0.1, "decoupled weight decay (not applied to biases, norms, embeddings)")
    betas: list[float] = doc(help="Adam betas", factory=lambda: [0.9, 0.95])
    eps: float = doc(1e-8, "Adam epsilon")
    warmup_steps: int = doc(20, "linear warmup steps")
    decay_steps: Optional[int] = doc(None, "cosine decay steps (null: trainer.max_steps)")
    fused: Optional[bool] = doc(None, "fused AdamW kernel (null: on for CUDA)")

    def validate(self) -> None:
        """Check ranges; raises ConfigError."""
        require(self.name == "adamw", "optim.name", self.name, "'adamw'")
        for key in ("lr", "min_lr", "weight_decay", "eps"):
            check_finite(f"optim.{key}", getattr(self, key), "a finite number")
        require(self.lr > 0, "optim.lr", self.lr, "a number > 0")
        require(0 <= self.min_lr <= self.lr, "optim.min_lr", self.min_lr, f"a number in [0, optim.lr={self.lr}]")
        require(self.weight_decay >= 0, "optim.weight_decay", self.weight_decay, "a number >= 0")
        require(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "optim.betas",
            self.betas,
            "two numbers in [0, 1)",
        )
        require(self.eps > 0, "optim.eps", self.eps, "a number > 0")
        require(self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, "an integer >= 0")
        require(
            self.decay_steps is None or self.decay_steps >= 1,
            "optim.decay_steps",
            self.decay_steps,
            "null or an integer >= 1",
        )
