"""The accelerator a config asks for, checked against this machine before any run dir exists."""

from __future__ import annotations

from typing import Any

from expconf.errors import ConfigError


def requested_devices(devices: Any) -> int | None:
    """How many devices ``trainer.devices`` names (None for 'auto' and -1: all there are)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([p for p in devices.split(",") if p.strip()])
    if devices in ("auto", -1, "-1"):
        return None
    return int(devices)


def check_accelerator(trainer: Any) -> None:
    """Raise a one-line ConfigError when ``trainer.accelerator``/``devices`` cannot run here.

    Imports torch (Lightning would a moment later); a GPU or MPS request on a machine without one,
    or more GPUs than it has, stops here instead of inside Lightning's Trainer.
    """
    import torch

    accelerator = trainer.accelerator
    if accelerator in ("gpu", "cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                "trainer.accelerator", accelerator, "an accelerator this machine has: cpu", "torch sees no CUDA GPU"
            )
        wanted = requested_devices(trainer.devices)
        if wanted is not None and wanted > count:
            raise ConfigError("trainer.devices", trainer.devices, f"at most {count} (the CUDA GPUs of this machine)")
    elif accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator", accelerator, "an accelerator this machine has: cpu", "MPS is absent")
