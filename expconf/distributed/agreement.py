"""Sharing a value from global rank 0 with the other ranks before Lightning starts its process group.

Under torchrun the elastic agent already serves a TCPStore at ``MASTER_ADDR:MASTER_PORT``
(``TORCHELASTIC_USE_AGENT_STORE=True``); the ranks exchange the value there. Under srun there is no
store before the process group exists, so rank 0 publishes the value as a file in a folder every
node sees (the working directory by default: a run dir shared by all ranks needs a shared file
system anyway).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from expconf.distributed.ranks import global_rank

#: Folder for file-based agreement (srun and other launchers without a store).
AGREE_DIR_ENV = "EXPCONF_AGREE_DIR"
#: A published file older than this process by more than this is a previous launch's, not ours
#: (a reused job id); the slack covers rank 0 starting and deciding before this rank started.
STALE_SLACK_S = 120.0
_STARTED = time.time()


#: How many times this process has agreed on each key: the jobs of a sweep run in the same order
#: on every rank, so the n-th decision of a key is the same job's everywhere.
_rounds: dict[str, int] = {}


def agreement_key(key: str, round_: int = 0) -> str:
    """``key`` scoped to this launch: the launcher's run id, its restart count and the sweep job.

    An elastic restart (torchrun ``--max-restarts``) or a SLURM requeue makes a fresh decision
    instead of reading the previous attempt's, and the second job of a sweep does not read the
    first job's.
    """
    if "TORCHELASTIC_RUN_ID" in os.environ:
        run_id = os.environ["TORCHELASTIC_RUN_ID"]
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    else:
        run_id = os.environ.get("SLURM_JOB_ID", "run")
        restart = os.environ.get("SLURM_RESTART_COUNT", "0")
    return f"expconf/{run_id}/{restart}/{key}/{round_}"


def agree_with_rank0(
    key: str,
    decide: Callable[[], str],
    timeout_s: float = 600.0,
    rank: int | None = None,
    round_: int | None = None,
) -> str:
    """Rank 0 runs ``decide`` and publishes the result; every other rank waits for it and returns it.

    ``rank`` and ``round_`` (which decision of ``key`` this is) default to this process's.
    """
    rank = global_rank() if rank is None else rank
    if round_ is None:
        round_ = _rounds.get(key, 0)
        _rounds[key] = round_ + 1
    full_key = agreement_key(key, round_)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return _via_agent_store(full_key, decide, timeout_s, rank)
    return _via_file(full_key, decide, timeout_s, rank)


def _via_agent_store(full_key: str, decide: Callable[[], str], timeout_s: float, rank: int) -> str:
    from torch.distributed import TCPStore

    host = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = int(os.environ.get("MASTER_PORT", "29500"))
    store = TCPStore(host, port, is_master=False, timeout=timedelta(seconds=timeout_s))
    if rank == 0:
        value = decide()
        store.set(full_key, value)
        return value
    return store.get(full_key).decode()  # blocks until rank 0 has set it (or the timeout)


def _via_file(full_key: str, decide: Callable[[], str], timeout_s: float, rank: int) -> str:
    folder = Path(os.environ.get(AGREE_DIR_ENV, ".expconf")) / "agree"
    path = folder / full_key.replace("/", "__")
    if rank == 0:
        value = decide()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(value)
        os.replace(tmp, path)  # readers never see a half-written value
        return value
    deadline = time.monotonic() + timeout_s
    while not _fresh(path):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"rank {rank} waited {timeout_s:.0f}s for rank 0 to publish {full_key} in {path}: is "
                f"{folder} on a file system every node sees? (set {AGREE_DIR_ENV} to one that is)"
            )
        time.sleep(0.2)
    return path.read_text()


def _fresh(path: Path) -> bool:
    try:
        return path.stat().st_mtime >= _STARTED - STALE_SLACK_S
    except FileNotFoundError:
        return False
