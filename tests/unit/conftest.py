"""Fixtures shared by the unit tests of expconf.distributed."""

from __future__ import annotations

import os

import pytest

DIST_VARS = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "PL_GLOBAL_SEED",
)


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process no launcher started: no torchrun, SLURM, MPI or rank variables."""
    for var in list(os.environ):
        if var.startswith(("SLURM_", "TORCHELASTIC_", "PMI_", "OMPI_")) or var in DIST_VARS:
            monkeypatch.delenv(var)
