"""DDP launched by expconf: children start from the job's resolved config, not from argv.

Lightning's own launcher re-runs ``sys.argv``; under ``python -m expconf.train -m ...`` each child
would re-run the whole sweep, and from a user's own script it would re-run that script. Here every
child runs ``python -m expconf.train`` with no arguments and reads *its* job from the run's
:class:`~expconf.distributed.handoff.JobHandoff` (a private file named by ``$EXPCONF_CHILD_CONFIG``,
removed once read); the run dir and resume decisions reach it through the environment
(:mod:`expconf.distributed.handoff`), so all ranks train the same job in one dir.
"""

from __future__ import annotations

import os
import subprocess
import sys

from lightning_fabric.plugins.environments.cluster_environment import ClusterEnvironment
from pytorch_lightning.strategies import DDPStrategy

from expconf.distributed.handoff import JobHandoff
from expconf.distributed.ranks import CHILD_CONFIG_ENV
from expconf.lightning_internals import SubprocessScriptLauncher


class ChildConfigLauncher(SubprocessScriptLauncher):
    """Starts local ranks 1..n-1 as ``python -m expconf.train`` children of this job."""

    def __init__(
        self, cluster_environment: ClusterEnvironment, num_processes: int, num_nodes: int, handoff: JobHandoff | None
    ) -> None:
        super().__init__(cluster_environment, num_processes, num_nodes)
        self.handoff = handoff

    def _call_children_scripts(self) -> None:
        if self.handoff is None:
            raise RuntimeError(
                "DDP children need the job's config: start the run with expconf.run(cfg) or python -m expconf.train"
            )
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
            child_env[CHILD_CONFIG_ENV] = self.handoff.write_for(local_rank)
            cmd = [sys.executable, "-m", "expconf.train"]
            self.procs.append(subprocess.Popen(cmd, env=child_env))


class ExpconfDDPStrategy(DDPStrategy):
    """DDPStrategy whose launcher is :class:`ChildConfigLauncher`, handing children ``handoff``'s job."""

    strategy_name = "expconf_ddp"

    def __init__(self, *args: object, handoff: JobHandoff | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.handoff = handoff

    def _configure_launcher(self) -> None:
        assert self.cluster_environment is not None
        self._launcher = ChildConfigLauncher(self.cluster_environment, self.num_processes, self.num_nodes, self.handoff)
