"""``log.name`` / ``log.version`` are single folder names; ``log.explicit_log_dir`` is not someone else's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from expconf.config.log import LogConfig, check_name
from expconf.errors import ConfigError
from expconf.logger import NeMoLogger


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("..", "outside the run dir"),
        (".", "outside the run dir"),
        ("a/b", "separator"),
        ("../../etc", "separator"),
        ("a\\b", "separator"),
        ("a\nb", "control character"),
        ("a\x00b", "control character"),
        ("", "empty"),
        ("x" * 129, "129 bytes"),
        ("é" * 65, "130 bytes"),
    ],
)
def test_bad_names_are_refused(name: str, why: str) -> None:
    for key in ("log.name", "log.version"):
        with pytest.raises(ConfigError, match=why) as info:
            LogConfig(**{key.split(".")[1]: name}).validate()  # type: ignore[arg-type]
        assert str(info.value).startswith(f"{key}=") and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=why):
        NeMoLogger(version=name)
    if name:  # NeMo's NeMoLogger turns an empty name into "default"
        with pytest.raises(ConfigError, match=why):
            NeMoLogger(name=name)


@pytest.mark.parametrize("name", ["gpt", "exp-1.2_b", "x" * 128, "run 3", "…", "2026-11-29_21-00-00"])
def test_plain_names_pass(name: str) -> None:
    check_name("log.name", name)
    LogConfig(name=name, version=name).validate()
    NeMoLogger(name=name, version=name)


def test_explicit_log_dir_with_foreign_files_needs_consent(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("mine: true\n")
    with pytest.raises(ConfigError, match=r"log\.explicit_log_dir=.*config\.yaml.*log\.allow_existing_dir=true"):
        LogConfig(explicit_log_dir=str(tmp_path)).validate()
    LogConfig(explicit_log_dir=str(tmp_path), allow_existing_dir=True).validate()


@pytest.mark.parametrize("setup", ["missing", "empty", "run dir"])
def test_explicit_log_dir_that_is_new_empty_or_a_run_dir(tmp_path: Path, setup: str) -> None:
    folder = tmp_path / "run"
    if setup != "missing":
        folder.mkdir()
    if setup == "run dir":
        (folder / "cmd-args.log").write_text("python -m expconf.train\n")
        (folder / "config.yaml").write_text("seed: 1\n")
    LogConfig(explicit_log_dir=str(folder)).validate()
