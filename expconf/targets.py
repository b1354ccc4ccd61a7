"""The allow-list of classes a config may instantiate through ``_target_``.

Hydra 1.3 would import and call anything a YAML names; expconf only builds classes listed
here: its own, those a user adds with :func:`allow`, and patterns in ``$EXPCONF_ALLOWED_TARGETS``
(comma-separated, ``my_pkg.models.*`` style). The environment, not a config file, grants trust.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from typing import Any

from expconf.errors import ConfigError, did_you_mean

_ALLOWED: set[str] = {
    "expconf.recipes.gpt.GPTModule",
    "expconf.config.model.GPTModelConfig",
    "expconf.config.model.ModelConfig",
    "expconf.callbacks.timing.TimingCallback",
    "expconf.callbacks.preemption.PreemptionCallback",
    "pytorch_lightning.callbacks.LearningRateMonitor",
    "pytorch_lightning.callbacks.EarlyStopping",
    "pytorch_lightning.callbacks.RichModelSummary",
    "pytorch_lightning.callbacks.DeviceStatsMonitor",
}


def allow(*paths: str) -> None:
    """Allow ``paths`` (dotted class paths or fnmatch patterns) as ``_target_`` values."""
    _ALLOWED.update(paths)


def allowed(path: str) -> bool:
    """Whether ``path`` may be instantiated."""
    patterns = set(_ALLOWED) | {
        p.strip() for p in os.environ.get("EXPCONF_ALLOWED_TARGETS", "").split(",") if p.strip()
    }
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def check(path: str, key: str) -> None:
    """Raise :class:`ConfigError` unless ``path`` is allow-listed (imports nothing)."""
    if not allowed(path):
        hint = did_you_mean(path, _ALLOWED) or "add it with expconf.targets.allow() or $EXPCONF_ALLOWED_TARGETS"
        raise ConfigError(key, path, "an allow-listed class", hint)


def resolve(path: str, key: str) -> Any:
    """Import the allow-listed class ``path``; ``key`` names the config key in errors."""
    check(path, key)
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(key, path, "an importable class path", str(e).splitlines()[0]) from e


def instantiate(node: dict[str, Any], key: str, **extra: Any) -> Any:
    """Build ``node`` (a mapping with ``_target_``) after checking the allow-list."""
    kwargs = {k: v for k, v in node.items() if k != "_target_"}
    cls = resolve(str(node.get("_target_")), f"{key}._target_")
    return cls(**kwargs, **extra)
