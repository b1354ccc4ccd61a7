"""Random-number states of every rank: captured into checkpoints, restored on resume."""

from __future__ import annotations

import io
import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch


def capture() -> dict[str, Any]:
    """This process's Python, NumPy, torch and CUDA RNG states, in types torch.load(weights_only) accepts."""
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(states: dict[str, Any], rank: int) -> None:
    """Restore the states saved for ``rank`` (rank 0's when that rank was not saved)."""
    per_rank = states.get("per_rank", [])
    if not per_rank:
        return
    state = per_rank[rank] if rank < len(per_rank) else per_rank[0]
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), int(n[2]), int(n[3]), float(n[4])))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather(trainer: pl.Trainer) -> dict[str, Any]:
    """Every rank's states (collective under DDP), indexed by global rank."""
    mine = capture()
    if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        # Exchanged as torch.save bytes: all_gather_object's own pickling of tensors cannot be
        # unpickled by current torch (legacy storages), and bytes load back with weights_only.
        buf = io.BytesIO()
        torch.save(mine, buf)
        out: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(out, buf.getvalue())
        return {"per_rank": [torch.load(io.BytesIO(b), weights_only=True) for b in out]}
    return {"per_rank": [mine]}


def _to_lists(obj: Any) -> Any:
    return [_to_lists(o) for o in obj] if isinstance(obj, tuple) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(o) for o in obj) if isinstance(obj, list) else obj
