"""Batch arithmetic: accumulation from global batch, micro batch and world size, checked in one place."""

from __future__ import annotations

import dataclasses

import pytest

from expconf.batch import BatchSizes
from expconf.config.data import DataConfig
from expconf.errors import ConfigError


@pytest.mark.parametrize(
    ("global_", "micro", "world", "accumulate"),
    [(32, 16, 1, 2), (32, 16, 2, 1), (64, 4, 4, 4), (8, 8, 1, 1), (48, 4, 3, 4)],
)
def test_accumulation(global_: int, micro: int, world: int, accumulate: int) -> None:
    b = BatchSizes(global_, micro, world)
    assert b.even
    assert b.accumulate == accumulate
    assert b.rank_step_samples == micro * accumulate
    assert b.rank_step_samples * world == global_
    b.check()


def test_of_reads_the_data_section() -> None:
    b = BatchSizes.of(DataConfig(micro_batch_size=4, global_batch_size=24), world_size=3)
    assert (b.global_batch_size, b.micro_batch_size, b.world_size, b.accumulate) == (24, 4, 3, 2)
    assert BatchSizes.of(DataConfig(micro_batch_size=4, global_batch_size=24)).world_size == 1


def test_uneven_split_is_one_config_error_naming_the_key() -> None:
    b = BatchSizes(global_batch_size=30, micro_batch_size=4, world_size=2)
    assert not b.even
    with pytest.raises(ConfigError) as e:
        b.check()
    assert str(e.value) == (
        "data.global_batch_size=30: expected a multiple of data.micro_batch_size x devices x nodes = 4 x 2"
    )


def test_at_least_one_micro_batch_per_step() -> None:
    """A global batch smaller than one micro-batch per rank (rejected by ``check``) still accumulates 1."""
    assert BatchSizes(4, 8, 2).accumulate == 1


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        BatchSizes(8, 4).world_size = 2  # type: ignore[misc]
