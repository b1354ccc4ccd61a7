"""A non-editable install carries conf/ and recipes/, so the CLI works from any directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, TINY, cli_env

pytestmark = pytest.mark.slow


def test_wheel_install_runs_from_anywhere(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = list(wheels.glob("expconf-*.whl"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (target / "expconf" / "conf" / "recipe" / "gpt.yaml").is_file()
    assert (target / "expconf" / "recipes" / "gpt.py").is_file()
    assert (target / "expconf" / "py.typed").is_file(), "PEP 561 marker for downstream type checkers"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # PYTHONPATH puts the installed copy ahead of the editable checkout of the test environment.
    env = cli_env(PYTHONPATH=str(target))
    where = subprocess.run(
        [sys.executable, "-c", "import expconf, expconf.conf; print(expconf.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(target)), where
    proc = subprocess.run(
        [sys.executable, "-m", "expconf.train", *TINY, "trainer.max_steps=3", "trainer.val_check_interval=3"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (elsewhere / "nemo_experiments" / "gpt").is_dir()
    assert "run dir:         " + str(elsewhere) in proc.stdout
