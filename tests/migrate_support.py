"""Shared by the migrate tests: compose a migrated experiment with a recipe, read NeMo's mirror."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

#: where the fetch tool puts NVIDIA/NeMo (a bare git dir); EXPCONF_NEMO_GIT_DIR overrides it
NEMO_GIT_DIR = Path(os.environ.get("EXPCONF_NEMO_GIT_DIR", "/work/.mirror/NVIDIA+NeMo/repo"))


def compose_and_validate(args: list[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``expconf.train.main(args)`` up to the builder and return the validated RootConfig.

    The check that this machine has the configured accelerator is skipped.
    """
    import expconf.build
    import expconf.hardware
    from expconf.train import main as train_main

    seen: dict[str, Any] = {}

    class Done:
        def summary(self) -> str:
            return "validated"

    def fake_run(root: Any, **_: Any) -> Done:
        seen["root"] = root
        return Done()

    monkeypatch.setattr(expconf.build, "run", fake_run)
    # the accelerator check is about this machine, not the config: a migrated GPU config is valid here too
    monkeypatch.setattr(expconf.hardware, "check_accelerator", lambda trainer: None)
    monkeypatch.setattr(sys, "argv", ["expconf.train"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    train_main(args)
    return seen["root"]


def nemo_git(*args: str) -> str:
    """``git --git-dir=<NeMo mirror> ARGS`` stdout."""
    return subprocess.run(
        ["git", f"--git-dir={NEMO_GIT_DIR}", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def nemo_available() -> bool:
    """Whether NeMo's mirror is on this machine."""
    return (NEMO_GIT_DIR / "HEAD").is_file()
