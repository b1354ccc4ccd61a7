"""The token cache: keyed by the content of the data, not by its path and size."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from expconf import tokens
from expconf.config.data import DataConfig
from expconf.tokens import content_hash, prepare_tokens


def _cfg(tmp_path: Path, path: Path) -> DataConfig:
    return DataConfig(
        path=str(path), seq_length=8, micro_batch_size=2, global_batch_size=2, cache_dir=str(tmp_path / "c")
    )


def _replace_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """Put other bytes of the same size at ``path`` with its old modification time, as a copy
    tool that preserves times (cp -p, rsync -t) would."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("kind", ["text", "bin"])
def test_a_corpus_replaced_by_other_bytes_of_the_same_size_is_tokenized_again(tmp_path: Path, kind: str) -> None:
    if kind == "text":
        src = tmp_path / "corpus.txt"
        old, new = b"the old text " * 40, b"THE NEW TEXT " * 40
    else:
        src = tmp_path / "corpus.bin"
        old, new = np.arange(520, dtype=np.uint16).tobytes(), np.arange(520, 0, -1, dtype=np.uint16).tobytes()
    src.write_bytes(old)
    train_old, _, _ = prepare_tokens(_cfg(tmp_path, src))
    _replace_keeping_size_and_mtime(src, new)
    train_new, val_new, _ = prepare_tokens(_cfg(tmp_path, src))
    assert train_new.parent != train_old.parent
    dtype = np.uint8 if kind == "text" else np.uint16
    expected = np.frombuffer(new, dtype=dtype).astype(np.uint16)
    got = np.concatenate([np.fromfile(train_new, dtype=np.uint16), np.fromfile(val_new, dtype=np.uint16)])
    assert np.array_equal(got, expected)
    # Unchanged content: the same cache.
    assert prepare_tokens(_cfg(tmp_path, src))[0] == train_new


def test_content_hashes_of_settled_files_are_remembered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"abc")
    root = tmp_path / "c"
    first = content_hash(src, root)
    assert not (root / "hashes").exists(), "a file changed a moment ago must not be remembered"
    later = time.time_ns() + 10_000_000_000
    monkeypatch.setattr(tokens.time, "time_ns", lambda: later)
    assert content_hash(src, root) == first
    [memo] = (root / "hashes").iterdir()
    memo.write_text("0" * 64)  # the remembered value is what a second call returns
    assert content_hash(src, root) == "0" * 64
