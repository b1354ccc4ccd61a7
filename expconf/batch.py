"""Batch arithmetic: the global batch split over ranks, micro-batches and accumulation steps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from expconf.errors import ConfigError


@dataclass(frozen=True)
class BatchSizes:
    """The global batch of one optimizer step and how it is split.

    Each of ``world_size`` ranks runs ``accumulate`` micro-batches of ``micro_batch_size`` samples
    per optimizer step, so ``global_batch_size = micro_batch_size x world_size x accumulate``.
    """

    global_batch_size: int
    micro_batch_size: int
    world_size: int = 1

    @classmethod
    def of(cls, data: Any, world_size: int = 1) -> BatchSizes:
        """The batch sizes of a ``data`` config section (a :class:`~expconf.config.DataConfig`)."""
        return cls(data.global_batch_size, data.micro_batch_size, world_size)

    @property
    def accumulate(self) -> int:
        """Micro-batches each rank runs per optimizer step (at least one)."""
        return max(self.global_batch_size // (self.micro_batch_size * self.world_size), 1)

    @property
    def rank_step_samples(self) -> int:
        """Samples one rank draws per optimizer step."""
        return self.micro_batch_size * self.accumulate

    @property
    def even(self) -> bool:
        """Whether the global batch splits evenly over ranks and micro-batches."""
        return self.global_batch_size % (self.micro_batch_size * self.world_size) == 0

    def check(self) -> None:
        """Raise :class:`ConfigError` unless the global batch splits evenly (:attr:`even`)."""
        if not self.even:
            raise ConfigError(
                "data.global_batch_size",
                self.global_batch_size,
                f"a multiple of data.micro_batch_size x devices x nodes = {self.micro_batch_size} x {self.world_size}",
            )
