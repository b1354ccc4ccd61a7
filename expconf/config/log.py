"""``log``: the twin of :class:`expconf.NeMoLogger` (run dir, loggers, checkpoints)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from expconf.config.ckpt import CheckpointConfig
from expconf.config.fields import doc, require
from expconf.errors import ConfigError
from expconf.rundir import TB_LOGS

#: Longest ``log.name`` / ``log.version`` in bytes: one folder name, with room for ``_<k>`` suffixes
#: and the file names inside it (file systems allow 255 bytes per name).
MAX_NAME_BYTES = 128


def check_name(key: str, value: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` is a single, plain folder name.

    Used for ``log.name`` and ``log.version`` (config validation and :class:`expconf.NeMoLogger`):
    ``..``, separators, control characters or a very long name would put the run dir elsewhere.
    """
    text = str(value)
    problem = ""
    if not text.strip():
        problem = "it is empty"
    elif text in (".", ".."):
        problem = f"'{text}' names a folder outside the run dir"
    elif any(sep in text for sep in {"/", "\\", os.sep, os.altsep or "/"}):
        problem = "it contains a path separator"
    elif any(ord(c) < 32 or ord(c) == 127 for c in text):
        problem = "it contains a control character"
    elif len(text.encode()) > MAX_NAME_BYTES:
        problem = f"it is {len(text.encode())} bytes long"
    if problem:
        raise ConfigError(
            key,
            value,
            f"a single folder name: not '.' or '..', no '/' or '\\', no control characters, "
            f"at most {MAX_NAME_BYTES} bytes",
            problem,
        )


def check_rank_0_only(prefix: str, local_only: bool, global_only: bool) -> None:
    """Raise :class:`ConfigError` when both rank-0-only flags are set (``log.`` or ``NeMoLogger.`` keys)."""
    require(
        not (local_only and global_only),
        f"{prefix}log_global_rank_0_only",
        True,
        f"false when {prefix}log_local_rank_0_only is true",
        "at most one of the rank-0-only flags: log_local_rank_0_only and log_global_rank_0_only cannot both be true",
    )


def written_by_expconf(folder: Path) -> bool:
    """Whether ``folder`` is a run dir (expconf or NeMo wrote its ``cmd-args.log`` and rank logs)."""
    return (folder / "cmd-args.log").is_file() or any(folder.glob("nemo_log_globalrank-*"))


@dataclass
class WandbConfig:
    """Weights & Biases; on when ``project`` is set or ``enabled`` is true."""

    enabled: bool = doc(False, "turn W&B on even without a project")
    project: Optional[str] = doc(None, "W&B project; setting it turns W&B on")
    name: Optional[str] = doc(None, "W&B run name (default: log.name)")
    entity: Optional[str] = doc(None, "W&B team or user")
    group: Optional[str] = doc(None, "W&B run group")
    tags: Optional[list[str]] = doc(None, "W&B tags")
    offline: bool = doc(False, "log offline (same as WANDB_MODE=offline)")
    log_model: bool = doc(False, "upload checkpoints as W&B artifacts")

    @property
    def active(self) -> bool:
        """Whether a WandbLogger is built."""
        return self.enabled or self.project is not None


@dataclass
class TensorBoardConfig:
    """TensorBoard event files under the run dir."""

    enabled: bool = doc(True, "write TensorBoard event files")
    name: str = doc(TB_LOGS, "folder inside the run dir")


@dataclass
class LogConfig:
    """Run dir, loggers and checkpointing; keyword names equal ``NeMoLogger``'s."""

    name: str = doc("default", "experiment name, the second level of the run dir")
    log_dir: Optional[str] = doc(None, "root of all runs (null: ./nemo_experiments)")
    explicit_log_dir: Optional[str] = doc(None, "use exactly this run dir; name and version are ignored")
    allow_existing_dir: bool = doc(
        False,
        "accept a log.explicit_log_dir holding files expconf did not write (ones named like run files move to run_<k>/)",
    )
    version: Optional[str] = doc(None, "version folder (null: a datetime stamp, or none with resume_if_exists)")
    use_datetime_version: bool = doc(True, "use %Y-%m-%d_%H-%M-%S as the version when none is given")
    log_local_rank_0_only: bool = doc(False, "only local rank 0 of each node writes a log file")
    log_global_rank_0_only: bool = doc(False, "only global rank 0 writes a log file")
    files_to_copy: Optional[list[str]] = doc(None, "files copied into the run dir at start")
    update_logger_directory: bool = doc(True, "put TensorBoard and W&B files under the run dir")
    ckpt: CheckpointConfig = doc(help="checkpointing (log.ckpt.*)", factory=CheckpointConfig)
    wandb: WandbConfig = doc(help="Weights & Biases (log.wandb.*)", factory=WandbConfig)
    tensorboard: TensorBoardConfig = doc(help="TensorBoard (log.tensorboard.*)", factory=TensorBoardConfig)

    def validate(self) -> None:
        """Check the flags and nested configs; raises ConfigError."""
        check_rank_0_only("log.", self.log_local_rank_0_only, self.log_global_rank_0_only)
        check_name("log.name", self.name)
        if self.version is not None:
            check_name("log.version", self.version)
        check_name("log.tensorboard.name", self.tensorboard.name)
        self._check_explicit_log_dir()
        self.ckpt.validate()

    def _check_explicit_log_dir(self) -> None:
        """A folder holding files expconf did not write is only used when the user says so."""
        value = self.explicit_log_dir
        if not value or value.startswith(("s3://", "gs://")) or self.allow_existing_dir:
            return
        folder = Path(value)
        if not folder.is_dir() or written_by_expconf(folder):
            return
        entries = sorted(p.name for p in folder.iterdir())
        if entries:
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            require(
                False,
                "log.explicit_log_dir",
                value,
                "an empty or new folder, or a run dir expconf wrote",
                f"it holds files expconf did not write ({shown}); set log.allow_existing_dir=true to use it anyway",
            )

    def logger_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``NeMoLogger``: every field but the loggers and ckpt (built
        separately) and the config-only ``allow_existing_dir``."""
        kwargs = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("ckpt", "wandb", "tensorboard", "allow_existing_dir")
        }
        kwargs["files_to_copy"] = list(self.files_to_copy) if self.files_to_copy else None
        return kwargs
