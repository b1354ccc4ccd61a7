"""This process's place among the ranks, read from the launcher's environment (torchrun, srun, expconf's DDP)."""

from __future__ import annotations

import os

from expconf.errors import ConfigError

#: Path of a DDP child's private job file (:mod:`expconf.distributed.handoff`), set only in the
#: environment of the child it is for.
CHILD_CONFIG_ENV = "EXPCONF_CHILD_CONFIG"


def global_rank() -> int:
    """This process's global rank from the launcher's environment (0 when not distributed)."""
    for var in ("RANK", "SLURM_PROCID", "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    if "LOCAL_RANK" in os.environ and "NODE_RANK" in os.environ and "LOCAL_WORLD_SIZE" in os.environ:
        return int(os.environ["NODE_RANK"]) * int(os.environ["LOCAL_WORLD_SIZE"]) + int(os.environ["LOCAL_RANK"])
    return int(os.environ.get("LOCAL_RANK", 0))


def local_rank() -> int:
    """This process's rank on its node."""
    for var in ("LOCAL_RANK", "SLURM_LOCALID"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def world_size_from_env() -> int:
    """Number of processes the external launcher started (1 when none)."""
    for var in ("WORLD_SIZE", "SLURM_NTASKS"):
        if var in os.environ:
            return int(os.environ[var])
    return 1


def launched_externally() -> bool:
    """True under torchrun or srun, where every rank runs the entry point itself."""
    return "TORCHELASTIC_RUN_ID" in os.environ or (
        "SLURM_PROCID" in os.environ and world_size_from_env() > 1 and "SLURM_JOB_ID" in os.environ
    )


def is_child() -> bool:
    """True in a DDP child that expconf started (local rank > 0 with a job file to read)."""
    return CHILD_CONFIG_ENV in os.environ and os.environ.get("LOCAL_RANK", "0") != "0"


def check_slurm_tasks() -> None:
    """Raise a one-line ConfigError for a SLURM job whose tasks were asked for with ``--ntasks``
    alone: Lightning reads the layout from ``SLURM_NTASKS_PER_NODE`` and refuses such a job with
    a traceback, after the run dir would exist. Interactive allocations (job name ``bash`` or
    ``interactive``) are not SLURM launches for Lightning and pass."""
    ntasks = int(os.environ.get("SLURM_NTASKS", "1"))
    interactive = os.environ.get("SLURM_JOB_NAME") in ("bash", "interactive")
    if ntasks > 1 and "SLURM_NTASKS_PER_NODE" not in os.environ and not interactive:
        raise ConfigError(
            "SLURM_NTASKS",
            ntasks,
            f"tasks asked for per node: sbatch/srun --ntasks-per-node={ntasks} (with --nodes)",
            "Lightning refuses --ntasks alone",
        )
