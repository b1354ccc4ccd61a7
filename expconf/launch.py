"""Ranks and the decisions every rank must share (run dir, resume checkpoint).

A decision is made once, by the launching process (or global rank 0), and handed to every
rank and relaunched child through an environment variable, so no two ranks can disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

RUN_DIR_ENV = "EXPCONF_RUN_DIR"
RESUME_ENV = "EXPCONF_RESUME_CKPT"
#: Path of the private file (mode 0600, removed by the child once read) holding a DDP child's config.
CHILD_CONFIG_ENV = "EXPCONF_CHILD_CONFIG"
NO_CHECKPOINT = "<none>"

#: Variables a DDP job leaves behind that would make the next job of a sweep hang.
DIST_ENV_VARS = (
    "LOCAL_RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "GROUP_RANK",
    RUN_DIR_ENV,
    RESUME_ENV,
    "PL_GLOBAL_SEED",
)


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


def agree(env_var: str, decide: Callable[[], str]) -> str:
    """The one value of a decision for every rank.

    If the launching process already decided (the variable is set) that value is used.
    Otherwise this process decides and exports it, so children it launches inherit it.
    Under an external launcher the ranks exchange it through the torch.distributed store.
    """
    if env_var in os.environ:
        return os.environ[env_var]
    if launched_externally() and world_size_from_env() > 1:
        from expconf.distributed import agree_with_rank0

        value = agree_with_rank0(env_var, decide)
    else:
        value = decide()
    os.environ[env_var] = value
    return value


def snapshot_dist_env() -> dict[str, str]:
    """The distributed variables as a job starts (those torchrun or srun gave this process)."""
    return {var: os.environ[var] for var in DIST_ENV_VARS if var in os.environ}


def clean_dist_env(before: dict[str, str] | None = None) -> None:
    """Forget what the previous job of a sweep set: back to ``before`` (its snapshot at start).

    Variables the job's launcher set (MASTER_PORT, WORLD_SIZE, LOCAL_RANK of expconf's own DDP
    launch, the run-dir and resume decisions) are removed; those the process was started with
    (torchrun's RANK, MASTER_ADDR, ...) keep their values, so the next job runs on the same ranks.
    """
    before = before or {}
    for var in DIST_ENV_VARS:
        if var in before:
            os.environ[var] = before[var]
        else:
            os.environ.pop(var, None)


def config_digest(cfg: Any) -> str:
    """sha256 of a config container, independent of key order (``config.yaml`` loads to the same)."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()


# The resolved config of the running job (secrets included) for the DDP children this process
# starts. It never enters an environment: each child gets a file of its own that only this user
# can read, and removes it as soon as it has read it.
_child_config: dict[str, Any] | None = None
_child_dir: str | None = None


def keep_child_config(cfg: dict[str, Any]) -> None:
    """Remember the job's resolved config for the DDP children of this job."""
    global _child_config
    _child_config = cfg


def write_child_config(local_rank: int) -> str:
    """A new private file holding the job config for child ``local_rank``; returns its path."""
    import yaml

    global _child_dir
    if _child_config is None:
        raise RuntimeError("no job config to hand to DDP children: start DDP runs through python -m expconf.train")
    if _child_dir is None:
        _child_dir = tempfile.mkdtemp(prefix="expconf-child-")  # mode 0700
    path = os.path.join(_child_dir, f"rank{local_rank}.yaml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(_child_config, f)
    return path


def read_child_config() -> dict[str, Any]:
    """In a DDP child: the job config its parent wrote; the file is removed once read."""
    import yaml

    path = os.environ.pop(CHILD_CONFIG_ENV)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    finally:
        os.unlink(path)
    assert isinstance(data, dict)
    return data


def forget_child_config() -> None:
    """At the end of a job: drop the config and any child file a dead child left unread."""
    global _child_config, _child_dir
    _child_config = None
    if _child_dir is not None:
        shutil.rmtree(_child_dir, ignore_errors=True)
        _child_dir = None
