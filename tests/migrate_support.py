"""Shared by the migrate tests: read NeMo's mirror."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

#: where the fetch tool puts NVIDIA/NeMo (a bare git dir); EXPCONF_NEMO_GIT_DIR overrides it
NEMO_GIT_DIR = Path(os.environ.get("EXPCONF_NEMO_GIT_DIR", "/work/.mirror/NVIDIA+NeMo/repo"))


def nemo_git(*args: str) -> str:
    """``git --git-dir=<NeMo mirror> ARGS`` stdout."""
    return subprocess.run(
        ["git", f"--git-dir={NEMO_GIT_DIR}", *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def nemo_available() -> bool:
    """Whether NeMo's mirror is on this machine."""
    return (NEMO_GIT_DIR / "HEAD").is_file()
