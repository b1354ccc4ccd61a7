"""A seeded, rank-aware sampler that resumes mid-epoch at the exact next sample, without replay."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Yields this rank's share of a seeded permutation, one epoch at a time.

    The order depends only on ``(seed, epoch)``; every epoch is cut to a whole number of
    optimizer steps (``step_samples`` per rank) so that epochs and steps line up; ``epoch_steps``
    is the trainer's epoch when ``limit_train_batches`` makes it shorter. After
    :meth:`resume_at` the first epoch starts ``skip`` samples in: resuming at step 1000 costs
    the same as resuming at step 10.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        step_samples: int = 1,
        epoch_steps: int | None = None,
    ) -> None:
        per_rank = num_samples // world_size
        self.epoch_length = (per_rank // step_samples) * step_samples
        if self.epoch_length == 0:
            raise ValueError(
                f"{num_samples} samples cannot fill one optimizer step of {step_samples} samples "
                f"on each of {world_size} ranks: use more data or smaller batches"
            )
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.step_samples = step_samples
        # Lightning's epoch in optimizer steps: shorter than this sampler's under
        # trainer.limit_train_batches, when Lightning stops reading before the sampler runs out.
        self._epoch_steps = min(epoch_steps, self.epoch_length // step_samples) if epoch_steps else None
        self.epoch = 0
        self._resume_epoch = -1
        self._resume_skip = 0

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one of the trainer's epochs."""
        return self._epoch_steps or self.epoch_length // self.step_samples

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch."""
        self.epoch = epoch

    def resume_at(self, global_step: int) -> None:
        """Position the sampler right after optimizer step ``global_step``.

        Pure arithmetic: no sample before that point is drawn, loaded or replayed.
        """
        self._resume_epoch, done = divmod(global_step, self.steps_per_epoch)
        self._resume_skip = done * self.step_samples
        self.epoch = self._resume_epoch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=g)
        else:
            order = torch.arange(self.num_samples)
        mine = order[self.rank :: self.world_size][: self.epoch_length]
        if self.epoch == self._resume_epoch:
            mine = mine[self._resume_skip :]
            self._resume_epoch = -1  # only the first epoch after a resume is partial
        return iter(mine.tolist())

    def __len__(self) -> int:
        # The full epoch length even right after a resume: Lightning's loop counters were
        # restored to mid-epoch and stop when the iterator is exhausted.
        return self.epoch_length
