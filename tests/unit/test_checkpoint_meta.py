"""Checkpoint markers: what they record is verified, and templates cannot take expconf's reserved names."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from expconf.checkpoint.callback import ModelCheckpoint
from expconf.checkpoint.meta import CheckpointMeta, reserved_clash, verify
from expconf.config.ckpt import CheckpointConfig
from expconf.errors import ConfigError
from expconf.storage import Storage


def written(folder: Path, name: str, data: bytes) -> CheckpointMeta:
    """A checkpoint file and the marker expconf's writer would give it."""
    (folder / name).write_bytes(data)
    return CheckpointMeta(name, 1, 0, "topk", size_bytes=len(data), crc32=zlib.crc32(data))


def test_verify_compares_size_and_crc32(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    meta = written(tmp_path, "a.ckpt", b"0123456789")
    assert verify(storage, meta) is None
    (tmp_path / "a.ckpt").write_bytes(b"01234")
    assert verify(storage, meta) == "it has 5 bytes, its marker records 10"
    (tmp_path / "a.ckpt").write_bytes(b"0123456780")
    assert verify(storage, meta) == "its CRC-32 differs from the one its marker records"
    (tmp_path / "a.ckpt").unlink()
    assert verify(storage, meta) == "it is gone"


def test_verify_accepts_what_a_marker_does_not_record(tmp_path: Path) -> None:
    # Markers of older expconf versions record neither; sharded checkpoints are folders.
    storage = Storage(tmp_path)
    (tmp_path / "old.ckpt").write_bytes(b"whatever")
    assert verify(storage, CheckpointMeta("old.ckpt", 1, 0, "last")) is None
    (tmp_path / "sharded-last").mkdir()
    assert verify(storage, CheckpointMeta("sharded-last", 1, 0, "last", size_bytes=5, crc32=1)) is None


@pytest.mark.parametrize(
    ("template", "clash"),
    [
        ("gpt-{step}-end", "'-end'"),
        ("gpt-{step}-last.ckpt", "'-last'"),
        ("gpt.tmp-{step}", "'.tmp-'"),
        ("gpt-{step}.meta.json", "'.meta.json'"),
        ("gpt-{step}-ending", None),
        ("gpt--{val_loss:.2f}-{step}-last-run", None),
    ],
)
def test_reserved_names(template: str, clash: str | None) -> None:
    found = reserved_clash(template)
    assert (found is None) if clash is None else (found is not None and clash in found)


@pytest.mark.parametrize("template", ["gpt-{step}-end", "x.tmp-{step}"])
def test_templates_with_reserved_names_are_refused_in_one_line(template: str) -> None:
    with pytest.raises(ConfigError) as config:
        CheckpointConfig(filename=template).validate()
    assert str(config.value).startswith(f"log.ckpt.filename={template!r}: expected a template that neither")
    with pytest.raises(ValueError, match=r"filename=.* collides with reserved names") as python:
        ModelCheckpoint(filename=template)
    assert "\n" not in str(config.value) + str(python.value)
