"""Sharing a value from global rank 0 with the other ranks before Lightning starts its process group."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

from expconf.launch import global_rank


def agree_with_rank0(key: str, decide: Callable[[], str], timeout_s: float = 600.0) -> str:
    """Rank 0 runs ``decide`` and publishes the result through a TCPStore; the others wait for it.

    Under torchrun the agent's store serves MASTER_ADDR:MASTER_PORT; the key carries the restart
    count so an elastic restart makes a fresh decision.
    """
    from torch.distributed import TCPStore

    host = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = int(os.environ.get("MASTER_PORT", "29500"))
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", os.environ.get("SLURM_JOB_ID", "run"))
    full_key = f"expconf/{run_id}/{restart}/{key}"
    store = (
        TCPStore(host, port, is_master=False, timeout=timedelta(seconds=timeout_s), use_libuv=True)
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        else None
    )
    if store is None:
        raise RuntimeError(
            "expconf needs the launcher's store to share decisions between ranks: use torchrun, "
            f"or set {key} for every rank"
        )
    if global_rank() == 0:
        value = decide()
        store.set(full_key, value)
        return value
    return store.get(full_key).decode()
