"""DDP launched by expconf: children start from the job's resolved config, not from argv.

Lightning's own launcher re-runs ``sys.argv``; under ``python -m expconf.train -m ...`` each child
would re-run the whole sweep. Here every child runs ``python -m expconf.train`` with the
resolved config of *its* job in a private file named by ``$EXPCONF_CHILD_CONFIG`` (mode 0600,
removed by the child once read: secrets never enter an environment) and the run dir and resume decisions
in ``$EXPCONF_RUN_DIR`` / ``$EXPCONF_RESUME_CKPT``, so all ranks train the same job in one dir.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.strategies import DDPStrategy

from expconf.launch import CHILD_CONFIG_ENV, config_digest, write_child_config
from expconf.lightning_internals import SubprocessScriptLauncher
from expconf.redact import collect_secrets, redact

log = logging.getLogger("expconf")


class ChildConfigLauncher(SubprocessScriptLauncher):
    """Starts local ranks 1..n-1 as ``python -m expconf.train`` children of this job."""

    def _call_children_scripts(self) -> None:
        self._check_can_spawn_children()
        self.procs = []
        env = self.cluster_environment
        os.environ["MASTER_ADDR"] = env.main_address
        os.environ["MASTER_PORT"] = str(env.main_port)
        os.environ["NODE_RANK"] = str(env.node_rank())
        os.environ["LOCAL_RANK"] = str(env.local_rank())
        os.environ["WORLD_SIZE"] = f"{self.num_processes * self.num_nodes}"
        for local_rank in range(1, self.num_processes):
            child_env = os.environ.copy()
            child_env["LOCAL_RANK"] = str(local_rank)
            child_env[CHILD_CONFIG_ENV] = write_child_config(local_rank)
            cmd = [sys.executable, "-m", "expconf.train"]
            self.procs.append(subprocess.Popen(cmd, env=child_env))


class ExpconfDDPStrategy(DDPStrategy):
    """DDPStrategy whose launcher is :class:`ChildConfigLauncher`."""

    strategy_name = "expconf_ddp"

    def _configure_launcher(self) -> None:
        assert self.cluster_environment is not None
        self._launcher = ChildConfigLauncher(self.cluster_environment, self.num_processes, self.num_nodes)


class JobRecord(pl.Callback):
    """Writes, into each rank's own log file, the digest of the job config that rank trains.

    The run dir holds one ``config.yaml`` (rank 0's); the digest (:func:`expconf.launch.config_digest`
    of the redacted config, the same value ``config.yaml`` gives) lets anyone check that every rank
    of a job, DDP children and other nodes' ranks included, trained that job.
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
