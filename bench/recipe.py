"""The GPT recipe's composed config, for the raw loop to train exactly what the CLI trains."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any


def raw_job(root: Any, steps: int) -> dict[str, Any]:
    """The JSON job of ``python -m bench.raw_loop`` for the same model, data, optimizer and seed."""
    return {
        "model": asdict(root.model),
        "data": asdict(root.data),
        "optim": asdict(root.optim),
        "steps": steps,
        "seed": root.seed,
        "grad_clip": root.trainer.gradient_clip_val,
    }
