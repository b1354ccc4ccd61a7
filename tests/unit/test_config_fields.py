"""expconf.config.fields.check_local_path: what a local path key accepts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from expconf.config.fields import check_local_path
from expconf.errors import ConfigError


def test_regular_files_and_folders_pass_fifos_and_devices_do_not(tmp_path: Path) -> None:
    (tmp_path / "a.ckpt").write_bytes(b"x")
    check_local_path("resume.path", str(tmp_path / "a.ckpt"), "a checkpoint")
    check_local_path("resume.path", str(tmp_path), "a checkpoint")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (str(fifo), "/dev/zero"):
        with pytest.raises(ConfigError, match="not a regular file or folder") as err:
            check_local_path("resume.path", path, "a checkpoint")
        assert str(err.value).startswith(f"resume.path='{path}': expected a checkpoint")
    with pytest.raises(ConfigError, match="no such file or folder"):
        check_local_path("resume.path", str(tmp_path / "missing"), "a checkpoint")
