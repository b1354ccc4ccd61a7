"""Fixtures shared by the unit and integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import REPO


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No decision of one test leaks into the next (run dir, resume, child config)."""
    for var in list(os.environ):
        if var.startswith("EXPCONF_") and var != "EXPCONF_TEST_CACHE":
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("EXPCONF_CACHE", os.environ.get("EXPCONF_TEST_CACHE", str(REPO / ".pytest_expconf_cache")))
    yield


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory (run dirs land in ./nemo_experiments)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
