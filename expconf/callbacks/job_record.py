"""A line in each rank's log naming the job config that rank trains."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import pytorch_lightning as pl

from expconf.redact import collect_secrets, redact

log = logging.getLogger("expconf")


def config_digest(cfg: Any) -> str:
    """sha256 of a config container, independent of key order (``config.yaml`` loads to the same)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


class JobRecord(pl.Callback):
    """Writes, into each rank's own log file, the digest of the job config that rank trains.

    The run dir holds one ``config.yaml`` (rank 0's); the digest (:func:`config_digest` of the
    redacted config, the same value ``config.yaml`` gives) lets anyone check that every rank of a
    job, DDP children and other nodes' ranks included, trained that job.
    """

    PREFIX = "expconf job config"

    def __init__(self, task_config: dict[str, Any] | None) -> None:
        self.task_config = task_config

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.task_config is None:
            return
        cfg = redact(self.task_config, collect_secrets(self.task_config))
        log.info(
            "%s (global rank %d of %d): sha256=%s",
            self.PREFIX,
            trainer.global_rank,
            trainer.world_size,
            config_digest(cfg),
        )
