"""Every use of Lightning's private API (underscored modules, classes and attributes), in one place.

Checked against pytorch_lightning 2.4.0, 2.5.0 and 2.6.6 (pyproject allows ``>=2.4,<2.7``): every
name used here exists in all three, except the epoch loop's ``_skip_next_val``, new in 2.5 (see
:func:`skip_next_validation`). When Lightning moves one of these, this module is the one to follow it;
``tests/unit/test_lightning_internals.py`` fails when another module reaches into Lightning's
private names, and checks that each name still exists in the installed Lightning.

Subclasses that override Lightning's private hooks (the launchers' ``_configure_launcher`` /
``_call_children_scripts`` in the DDP and FSDP strategies) keep those overrides in their own
classes; they import the private base class from here.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import Logger, WandbLogger
from pytorch_lightning.strategies.launchers.subprocess_script import (
    _SubprocessScriptLauncher as SubprocessScriptLauncher,
)
from pytorch_lightning.utilities.model_summary.model_summary import _format_summary_table as format_summary_table

__all__ = [
    "SubprocessScriptLauncher",
    "default_hp_metric",
    "dump_checkpoint",
    "forget_wandb_experiment",
    "format_summary_table",
    "logs_this_step",
    "point_logger_at",
    "set_default_root_dir",
    "set_wandb_id",
    "set_wandb_name",
    "set_wandb_save_dir",
    "skip_next_validation",
    "take_over_sigterm",
    "wandb_experiment",
    "wandb_init_args",
]


# -- Trainer ------------------------------------------------------------------------------------------
def dump_checkpoint(trainer: pl.Trainer, weights_only: bool) -> dict[str, Any]:
    """The checkpoint dict Lightning would save now (model, optimizers, loops, callbacks)."""
    return trainer._checkpoint_connector.dump_checkpoint(weights_only)


def set_default_root_dir(trainer: pl.Trainer, path: str) -> None:
    """Make ``path`` the Trainer's ``default_root_dir`` (a read-only property in Lightning)."""
    trainer._default_root_dir = path  # type: ignore[attr-defined]


def take_over_sigterm(trainer: pl.Trainer) -> bool:
    """Whether Lightning's own handler caught a SIGTERM; if so, clear it so Lightning does not act on it."""
    connector = getattr(trainer, "_signal_connector", None)
    if connector is None or not connector.received_sigterm:
        return False
    connector.received_sigterm = False
    return True


def skip_next_validation(trainer: pl.Trainer) -> None:
    """Stop the fit loop without the validation it runs before honouring ``should_stop``
    (Lightning 2.5 and later; 2.4 has no such switch and validates once more)."""
    trainer.fit_loop.epoch_loop._skip_next_val = True


def logs_this_step(trainer: pl.Trainer) -> bool:
    """Whether Lightning writes this step's metrics to the loggers (True when it cannot tell)."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))


# -- loggers ------------------------------------------------------------------------------------------
def point_logger_at(logger: Logger, folder: str) -> None:
    """Root a file-based logger (TensorBoard, CSV) at ``folder``, without a version subfolder;
    loggers without a root dir are left as they are."""
    if not hasattr(logger, "_root_dir"):
        return
    logger._root_dir = folder  # type: ignore[attr-defined]
    if hasattr(logger, "_save_dir"):
        logger._save_dir = folder  # type: ignore[attr-defined]
    logger._version = ""  # type: ignore[attr-defined]


def default_hp_metric(logger: Logger) -> bool:
    """A TensorBoardLogger's ``default_hp_metric`` argument (False for other loggers)."""
    return bool(getattr(logger, "_default_hp_metric", False))


def wandb_init_args(wandb: WandbLogger) -> dict[str, Any]:
    """The live keyword arguments ``wandb`` passes to ``wandb.init`` when its run starts."""
    return wandb._wandb_init


def set_wandb_save_dir(wandb: WandbLogger, folder: str) -> None:
    """Put the W&B run's files under ``folder``."""
    wandb._save_dir = folder
    wandb._wandb_init["dir"] = folder


def set_wandb_name(wandb: WandbLogger, name: str) -> None:
    """Name the W&B run."""
    wandb._wandb_init["name"] = name
    wandb._name = name


def set_wandb_id(wandb: WandbLogger, run_id: str) -> None:
    """The W&B run id (a run with this id is continued)."""
    wandb._wandb_init["id"] = run_id
    wandb._id = run_id


def wandb_experiment(wandb: WandbLogger) -> Any:
    """The W&B run ``wandb`` started, or None when it has not started one."""
    return getattr(wandb, "_experiment", None)


def forget_wandb_experiment(wandb: WandbLogger) -> None:
    """Drop the finished run, so a later use of ``wandb`` starts (or resumes) a run again."""
    wandb._experiment = None
