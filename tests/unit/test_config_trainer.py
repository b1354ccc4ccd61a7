"""TrainerConfig: the world size every other part asks for."""

from __future__ import annotations

from typing import Any

import pytest

from expconf.config.trainer import TrainerConfig


@pytest.mark.parametrize(
    ("devices", "accelerator", "num_nodes", "cuda", "expected"),
    [
        (2, "cpu", 1, 0, 2),
        ("0,1,2", "gpu", 2, 8, 6),
        ([0, 1], "gpu", 1, 8, 2),
        ("auto", "gpu", 2, 4, 8),
        ("auto", "cpu", 3, 4, 3),
        (-1, "auto", 1, 0, 1),
    ],
)
def test_world_size_is_processes_per_node_times_nodes(
    devices: Any, accelerator: str, num_nodes: int, cuda: int, expected: int
) -> None:
    cfg = TrainerConfig(devices=devices, accelerator=accelerator, num_nodes=num_nodes)
    assert cfg.world_size(cuda) == expected
