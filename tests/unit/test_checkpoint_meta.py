"""Checkpoint markers: what they record is verified, and templates cannot take expconf's reserved names."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

import expconf.checkpoint.meta as meta_module
from expconf.checkpoint.callback import ModelCheckpoint
from expconf.checkpoint.meta import CheckpointMeta, folder_files, marker_name, reserved_clash, scan, verify
from expconf.config.ckpt import CheckpointConfig
from expconf.errors import ConfigError
from expconf.storage import Storage


def written(folder: Path, name: str) -> tuple[CheckpointMeta, bytes]:
    """A checkpoint file as expconf's writer leaves it (a torch.save archive) and its marker."""
    torch.save({"state_dict": {"w": torch.arange(1000.0)}, "global_step": 1}, folder / name)
    data = (folder / name).read_bytes()
    return CheckpointMeta(name, 1, 0, "topk", size_bytes=len(data)), data


def test_verify_compares_the_size_and_the_records_crc32(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    meta, data = written(tmp_path, "a.ckpt")
    assert verify(storage, meta) is None
    (tmp_path / "a.ckpt").write_bytes(data[:100])
    assert verify(storage, meta) == f"it has 100 bytes, its marker records {len(data)}"
    # Same size, one bit of the weights flipped: only the CRC-32 torch.save stored tells.
    flipped = bytearray(data)
    flipped[data.index(torch.arange(1000.0).numpy().tobytes()) + 17] ^= 1
    (tmp_path / "a.ckpt").write_bytes(bytes(flipped))
    assert verify(storage, meta) == "its record a/data/0 fails its CRC-32"
    (tmp_path / "a.ckpt").write_bytes(b"\0" * len(data))
    problem = verify(storage, meta)
    assert problem is not None and problem.startswith("it is not a readable torch.save archive")
    (tmp_path / "a.ckpt").unlink()
    assert verify(storage, meta) == "it is gone"


def test_verify_accepts_what_a_marker_does_not_record(tmp_path: Path) -> None:
    # Markers of another tool's checkpoints (built from their content) and of older expconf
    # '-last' copies record no size; older expconf recorded for a folder only one file's size.
    storage = Storage(tmp_path)
    (tmp_path / "old.ckpt").write_bytes(b"whatever")
    assert verify(storage, CheckpointMeta("old.ckpt", 1, 0, "last")) is None
    (tmp_path / "sharded-last").mkdir()
    assert verify(storage, CheckpointMeta("sharded-last", 1, 0, "last", size_bytes=5)) is None


def test_verify_compares_every_file_of_a_folder(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    folder = tmp_path / "s.ckpt"
    folder.mkdir()
    for name, data in {".metadata": b"m" * 10, "__0_0.distcp": b"a" * 30, "__1_0.distcp": b"b" * 30}.items():
        (folder / name).write_bytes(data)
    meta = CheckpointMeta("s.ckpt", 1, 0, "last", files=folder_files(storage, "s.ckpt"))
    assert meta.files == {".metadata": 10, "__0_0.distcp": 30, "__1_0.distcp": 30}
    assert CheckpointMeta.from_json(meta.to_json()) == meta
    assert verify(storage, meta) is None
    (folder / "__1_0.distcp").write_bytes(b"b" * 29)
    assert verify(storage, meta) == "its file __1_0.distcp has 29 bytes, its marker records 30"
    (folder / "__1_0.distcp").unlink()
    assert verify(storage, meta) == "its file __1_0.distcp is gone"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    assert verify(storage, meta) == "it is gone"


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


def test_only_hidden_tmp_files_are_temporary(tmp_path: Path) -> None:
    # A complete checkpoint of an older run whose template contained '.tmp-' is kept and counted.
    storage = Storage(tmp_path)
    meta, _ = written(tmp_path, "gpt.tmp-5.ckpt")
    (tmp_path / marker_name("gpt.tmp-5.ckpt")).write_bytes(meta.to_json())
    (tmp_path / ".gpt-6.ckpt.tmp-k2j3").write_bytes(b"cut off")
    listing = scan(storage)
    assert list(listing.complete) == ["gpt.tmp-5.ckpt"]
    assert listing.removable == [".gpt-6.ckpt.tmp-k2j3"]


def test_a_settled_file_is_read_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The check before the run dir is touched and the decision at setup both verify the choice.
    written(tmp_path, "a.ckpt")
    reads: list[str] = []
    real = meta_module._bad_record
    monkeypatch.setattr(meta_module, "_bad_record", lambda path: reads.append(path) or real(path))
    path = str(tmp_path / "a.ckpt")
    assert meta_module.bad_record(path) is None and meta_module.bad_record(path) is None
    assert len(reads) == 2, "a file written a moment ago is read again"
    later = time.time_ns() + 10_000_000_000
    monkeypatch.setattr(meta_module.time, "time_ns", lambda: later)
    assert meta_module.bad_record(path) is None and meta_module.bad_record(path) is None
    assert len(reads) == 3
