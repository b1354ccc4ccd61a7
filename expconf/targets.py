"""The one allow-list of everything a config may name to call or import.

Hydra 1.3 would import and call anything a YAML names: ``_target_`` nodes (Hydra's own callbacks,
launcher and sweeper included), ``()``/``class`` factories of its logging configs, ``ext://``
objects and resolvers. expconf checks each against this list, per kind of use (:data:`KINDS`), after
composition and before Hydra acts on it (:mod:`expconf.cli.hydra_guard`). Entries: expconf's own,
Lightning's callbacks and loggers, the Hydra plugins expconf ships, those a user adds with
:func:`allow`, and patterns in ``$EXPCONF_ALLOWED_TARGETS`` (comma-separated, ``my_pkg.models.*``
style, every kind). The environment and code, not a config file, grant trust.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from typing import Any

from expconf.errors import ConfigError, did_you_mean

#: target: expconf's own ``_target_`` (model, callbacks.extra, archives); hydra_callback:
#: ``hydra.callbacks.*``; hydra_plugin: ``hydra.launcher`` / ``hydra.sweeper``; logging: ``()`` and
#: ``class`` in ``hydra.job_logging`` / ``hydra.hydra_logging``; ext: ``ext://`` objects; resolver:
#: ``${name:...}`` interpolations.
KINDS = ("target", "hydra_callback", "hydra_plugin", "logging", "ext", "resolver")

_ALLOWED: dict[str, set[str]] = {
    "target": {
        "expconf.recipes.gpt.GPTModule",
        "expconf.config.model.GPTModelConfig",
        "expconf.config.model.ModelConfig",
        "expconf.callbacks.timing.TimingCallback",
        "expconf.callbacks.preemption.PreemptionCallback",
    },
    "hydra_callback": {
        "hydra.experimental.callbacks.LogJobReturnCallback",
    },
    "hydra_plugin": {
        "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
        "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    },
    "logging": {
        "logging.StreamHandler",
        "logging.FileHandler",
        "logging.NullHandler",
        "logging.Formatter",
        "logging.Filter",
        "logging.handlers.RotatingFileHandler",
        "logging.handlers.TimedRotatingFileHandler",
        "logging.handlers.WatchedFileHandler",
        "colorlog.ColoredFormatter",
        "expconf.redact.RedactingFilter",
    },
    "ext": {"sys.stdout", "sys.stderr"},
    # oc.decode / oc.create are left out: they turn a string into config nodes (a hidden _target_).
    "resolver": {
        "oc.env",
        "oc.select",
        "oc.deprecated",
        "oc.dict.keys",
        "oc.dict.values",
        "now",
        "hydra",
        "expconf_sweep_dir",
    },
}

#: Lightning's own callbacks and loggers, listed by name so that validation (which imports no
#: Lightning) can tell a typo; abstract bases and LitLogger (uploads to a cloud by default) are left out.
_LIGHTNING_CALLBACKS = (
    "BackboneFinetuning BatchSizeFinder DeviceStatsMonitor EarlyStopping GradientAccumulationScheduler "
    "LearningRateFinder LearningRateMonitor ModelCheckpoint ModelPruning ModelSummary OnExceptionCheckpoint "
    "RichModelSummary RichProgressBar StochasticWeightAveraging SpikeDetection ThroughputMonitor Timer "
    "TQDMProgressBar EMAWeightAveraging WeightAveraging"
).split()
_LIGHTNING_LOGGERS = "CometLogger CSVLogger MLFlowLogger TensorBoardLogger WandbLogger".split()
for _package in ("pytorch_lightning", "lightning.pytorch"):
    _ALLOWED["target"].update(f"{_package}.callbacks.{n}" for n in _LIGHTNING_CALLBACKS)
    _ALLOWED["target"].update(f"{_package}.loggers.{n}" for n in _LIGHTNING_LOGGERS)


def allow(*paths: str, kind: str = "target") -> None:
    """Allow ``paths`` (dotted paths or fnmatch patterns) for ``kind`` of use (see :data:`KINDS`)."""
    _ALLOWED[kind].update(paths)


def allowed(path: str, kind: str = "target") -> bool:
    """Whether ``path`` may be used as ``kind``."""
    if path in _ALLOWED[kind]:
        return True
    patterns = set(_ALLOWED[kind]) | {
        p.strip() for p in os.environ.get("EXPCONF_ALLOWED_TARGETS", "").split(",") if p.strip()
    }
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


_EXPECTED = {
    "target": "an allow-listed class",
    "hydra_callback": "an allow-listed Hydra callback class",
    "hydra_plugin": "an allow-listed Hydra launcher or sweeper",
    "logging": "an allow-listed logging handler, formatter or filter class",
    "ext": "ext://sys.stdout or ext://sys.stderr",
    "resolver": "an allow-listed resolver (oc.env, oc.select, now, hydra, ...)",
}


def check(path: str, key: str, kind: str = "target") -> None:
    """Raise :class:`ConfigError` unless ``path`` is allow-listed for ``kind`` (imports nothing)."""
    if not isinstance(path, str) or not allowed(path, kind):
        hint = did_you_mean(str(path), _ALLOWED[kind]) or (
            "add it with expconf.targets.allow() or $EXPCONF_ALLOWED_TARGETS"
        )
        raise ConfigError(key, path, _EXPECTED[kind], hint)


def resolve(path: str, key: str) -> Any:
    """Import the allow-listed class ``path``; ``key`` names the config key in errors."""
    check(path, key)
    # One Lightning in the process: a lightning.pytorch callback would not be accepted by the
    # pytorch_lightning Trainer expconf builds (isinstance checks), so both spellings build the same.
    if path.startswith("lightning.pytorch."):
        path = "pytorch_lightning." + path.removeprefix("lightning.pytorch.")
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(key, path, "an importable class path", str(e).splitlines()[0]) from e
    if not isinstance(obj, type):  # a pattern matched a function or module: only classes are built
        raise ConfigError(key, path, "a class (this names a " + type(obj).__name__ + ")")
    return obj


def instantiate(node: dict[str, Any], key: str, **extra: Any) -> Any:
    """Build ``node`` (a mapping with ``_target_``) after checking the allow-list."""
    kwargs = {k: v for k, v in node.items() if k != "_target_"}
    cls = resolve(str(node.get("_target_")), f"{key}._target_")
    return cls(**kwargs, **extra)
