"""expconf: typed, composable experiment configs for PyTorch Lightning.

The public names (``__all__``) are imported lazily, so ``import expconf`` (and composing
or printing a config) never pulls in torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "NeMoLogger": "expconf.logger",
    "AutoResume": "expconf.resume",
    "ModelCheckpoint": "expconf.checkpoint.callback",
    "TimingCallback": "expconf.callbacks.timing",
    "PreemptionCallback": "expconf.callbacks.preemption",
    "train": "expconf.api",
    "run": "expconf.job",
    "TrainResult": "expconf.api",
    "load_model": "expconf.checkpoint.archive",
    "ConfigError": "expconf.errors",
    "NotFoundError": "expconf.errors",
    "IncompleteCheckpointError": "expconf.errors",
    "TrainingCompletedError": "expconf.errors",
    "CheckpointWriteError": "expconf.checkpoint.writer",
    "RestoreConfig": "expconf.resume",
    "AppState": "expconf.logger",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'expconf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
