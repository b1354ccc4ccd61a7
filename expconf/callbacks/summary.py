"""``ModelSummary``: Lightning's model table, without the FLOPs column when nothing was counted."""

from __future__ import annotations

import logging
from typing import Any

from pytorch_lightning.callbacks import ModelSummary as LightningModelSummary

from expconf.lightning_internals import format_summary_table

log = logging.getLogger("pytorch_lightning.callbacks.model_summary")


class ModelSummary(LightningModelSummary):
    """Lightning's text summary; the ``FLOPs`` column and ``Total Flops`` line are left out when the
    count is 0 (Lightning counts FLOPs only for a module with ``example_input_array``)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        if total_flops:
            LightningModelSummary.summarize(
                summary_data,
                total_parameters,
                trainable_parameters,
                model_size,
                total_training_modes,
                total_flops,
                **summarize_kwargs,
            )
            return
        columns = [c for c in summary_data if c[0] != "FLOPs"]
        table = format_summary_table(
            total_parameters, trainable_parameters, model_size, total_training_modes, 0, *columns
        )
        head, _, last = table.rpartition("\n")
        log.info("\n" + (head if "Flops" in last else table))
