"""Resuming on a different number of ranks: the loop counters follow the new gradient accumulation.

The global batch is fixed (``data.global_batch_size``), so a checkpoint written by N ranks and
resumed on M accumulates ``N / M`` times as many micro-batches per optimizer step. Lightning counts
training batches in micro-batches, and on resume it uses those counts to decide where an epoch and
an accumulation cycle stand; :class:`WorldSizeResume` records the accumulation of the run that
saved and rescales those counts to the resuming run's. Saves happen on optimizer-step boundaries,
so the counts are whole multiples of the old accumulation. The data position follows from the
global step (:meth:`expconf.sampler.ResumableSampler.resume_at`), the same on any world size.
"""

from __future__ import annotations

import logging
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger("expconf")

KEY = "expconf_world"
#: The Lightning loop entries counted in micro-batches.
_MICRO_BATCH_PROGRESS = ("epoch_loop.batch_progress",)


def rescale_batch_progress(loops: dict[str, Any], old_accumulate: int, new_accumulate: int) -> None:
    """Turn ``loops``' micro-batch counts of a run accumulating ``old_accumulate`` into the new one's, in place.

    ``ready`` (micro-batches fetched) is a whole number of steps; the other counters may trail it
    by the micro-batch whose end hook took the checkpoint, and keep that lag.
    """
    fit = loops.get("fit_loop", {})
    for key in _MICRO_BATCH_PROGRESS:
        progress = fit.get(key)
        if not progress:
            continue
        for part in ("total", "current"):
            counts = progress.get(part, {})
            ready = int(counts.get("ready", 0))
            steps, rest = divmod(ready, old_accumulate)
            if rest:
                raise ValueError(
                    f"checkpoint saved mid-step ({key}.{part}.ready={ready} micro-batches with "
                    f"accumulation {old_accumulate}): it cannot resume with accumulation {new_accumulate}"
                )
            new_ready = steps * new_accumulate
            for name, value in counts.items():
                counts[name] = new_ready - (ready - int(value))


class WorldSizeResume(pl.Callback):
    """Stores world size and accumulation in each checkpoint; adapts the loop counters on resume."""

    @property
    def state_key(self) -> str:
        return "expconf.WorldSizeResume"

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[KEY] = {"world_size": trainer.world_size, "accumulate": trainer.accumulate_grad_batches}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        saved = checkpoint.get(KEY)
        if not saved or saved["accumulate"] == trainer.accumulate_grad_batches:
            return
        rescale_batch_progress(checkpoint.get("loops", {}), saved["accumulate"], trainer.accumulate_grad_batches)
        log.info(
            "resuming a checkpoint of %d ranks on %d: gradient accumulation %d -> %d (same global batch)",
            saved["world_size"],
            trainer.world_size,
            saved["accumulate"],
            trainer.accumulate_grad_batches,
        )
