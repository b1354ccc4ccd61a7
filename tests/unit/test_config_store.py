"""expconf.config.store: the sweep dirs Hydra resolves belong to the command that resolved them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from expconf.config.store import recorded_sweep_dirs, recording_sweep_dirs, sweep_dir


def _resolve(tmp_path: Path, name: str) -> tuple[str, str]:
    root: Any = OmegaConf.create({"log": {"log_dir": str(tmp_path), "name": name}})
    assert sweep_dir(_root_=root) == str(tmp_path / name)
    return str(tmp_path), str(tmp_path / name)


def test_each_command_records_only_its_own_sweep_dirs(tmp_path: Path) -> None:
    with recording_sweep_dirs() as first:
        a = _resolve(tmp_path, "a")
        assert recorded_sweep_dirs() == {a}
    with recording_sweep_dirs() as second:
        assert recorded_sweep_dirs() == set()
        b = _resolve(tmp_path, "b")
    assert (first, second) == ({a}, {b})
    _resolve(tmp_path, "c")  # outside a command (a user's own compose): nothing to clean up later
    assert recorded_sweep_dirs() == set()
