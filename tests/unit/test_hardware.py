"""An accelerator or device count this machine lacks is refused in one line before anything is written."""

from __future__ import annotations

import pytest
import torch

from expconf.config.trainer import TrainerConfig
from expconf.errors import ConfigError
from expconf.hardware import check_accelerator, requested_devices


@pytest.mark.parametrize(
    "devices, count", [(2, 2), ("3", 3), ([0, 2], 2), ("0,1,", 2), ("auto", None), (-1, None), ("-1", None)]
)
def test_requested_devices(devices: object, count: int | None) -> None:
    assert requested_devices(devices) == count


def missing_gpu_request() -> tuple[TrainerConfig, str]:
    """A GPU request this machine cannot meet: any GPU without CUDA, else one GPU more than it has."""
    if not torch.cuda.is_available():
        return TrainerConfig(accelerator="gpu", devices=1), "trainer.accelerator='gpu'"
    n = torch.cuda.device_count()
    return TrainerConfig(accelerator="gpu", devices=n + 1), f"trainer.devices={n + 1}"


def test_a_gpu_request_this_machine_cannot_meet_is_refused() -> None:
    trainer, named = missing_gpu_request()
    with pytest.raises(ConfigError) as e:
        check_accelerator(trainer)
    assert str(e.value).startswith(named)


def test_cpu_always_passes() -> None:
    check_accelerator(TrainerConfig(accelerator="cpu", devices=2))
