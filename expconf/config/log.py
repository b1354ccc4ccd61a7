"""``log``: the twin of :class:`expconf.NeMoLogger` (run dir, loggers, checkpoints)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from expconf.config.ckpt import CheckpointConfig
from expconf.config.fields import doc, require


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
    name: str = doc("tb_logs", "folder inside the run dir")


@dataclass
class LogConfig:
    """Run dir, loggers and checkpointing; keyword names equal ``NeMoLogger``'s."""

    name: str = doc("default", "experiment name, the second level of the run dir")
    log_dir: Optional[str] = doc(None, "root of all runs (null: ./nemo_experiments)")
    explicit_log_dir: Optional[str] = doc(None, "use exactly this run dir; name and version are ignored")
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
        require(
            not (self.log_local_rank_0_only and self.log_global_rank_0_only),
            "log.log_global_rank_0_only",
            True,
            "false when log.log_local_rank_0_only is true",
            "at most one of the rank-0-only flags",
        )
        require(bool(self.name) and "/" not in self.name, "log.name", self.name, "a non-empty name without '/'")
        if self.version is not None:
            require("/" not in str(self.version), "log.version", self.version, "a folder name without '/'")
        self.ckpt.validate()

    def logger_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``NeMoLogger`` (loggers and ckpt are built separately)."""
        return {
            "name": self.name,
            "log_dir": self.log_dir,
            "explicit_log_dir": self.explicit_log_dir,
            "version": self.version,
            "use_datetime_version": self.use_datetime_version,
            "log_local_rank_0_only": self.log_local_rank_0_only,
            "log_global_rank_0_only": self.log_global_rank_0_only,
            "files_to_copy": list(self.files_to_copy) if self.files_to_copy else None,
            "update_logger_directory": self.update_logger_directory,
        }
