"""expconf.tokens: weighted blends (proportions, exact resume), the trained BPE tokenizer, wide ids,
and the token cache keyed by the content of the data, not by its path and size."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from expconf import tokens
from expconf.config.data import DataConfig
from expconf.data import TokenDataModule
from expconf.errors import ConfigError
from expconf.tokens import (
    BlendedWindows,
    TokenWindows,
    content_hash,
    prepare_tokens,
    resolve_tokenizer,
    token_dtype,
    trained_bpe,
)


def _bin(path: Path, start: int, n: int) -> str:
    """A token file whose ids tell where a window came from: source ``start`` + position."""
    np.arange(start, start + n, dtype=np.uint16).tofile(path)
    return str(path)


@pytest.fixture
def sources(tmp_path: Path) -> tuple[str, str]:
    return _bin(tmp_path / "a.bin", 0, 4000), _bin(tmp_path / "b.bin", 10000, 2000)


def _cfg(tmp_path: Path, blend: list[object], **kw: object) -> DataConfig:
    cfg = DataConfig(blend=blend, seq_length=8, micro_batch_size=2, global_batch_size=4, cache_dir=str(tmp_path / "c"))
    for k, v in kw.items():
        setattr(cfg, k, v)
    cfg.validate()
    return cfg


def test_blend_follows_the_weights(tmp_path: Path, sources: tuple[str, str]) -> None:
    a, b = sources
    dm = TokenDataModule(_cfg(tmp_path, [3, a, 1, b]))
    dm.setup("fit")
    ds = dm.train_dataloader().dataset
    assert isinstance(ds, BlendedWindows)
    from_b = [int(ds[i][0][0]) >= 10000 for i in range(len(ds))]
    assert len(ds) == len(ds.parts[0]) + len(ds.parts[1])
    assert sum(from_b) == round(0.25 * len(ds))
    # spread evenly: every window of 8 consecutive samples holds 2 from b
    assert all(sum(from_b[i : i + 8]) == 2 for i in range(0, len(ds) - 8, 8))
    # a gets 75% of the blend, more than its own windows: they repeat, in order
    a_firsts = [int(ds[i][0][0]) for i in range(len(ds)) if not from_b[i]]
    n_a = len(ds.parts[0])
    assert len(a_firsts) > n_a and a_firsts[:n_a] == [8 * k for k in range(n_a)]
    assert a_firsts[n_a:] == a_firsts[: len(a_firsts) - n_a]
    # b gets fewer samples than it has windows: evenly spaced ones, each at most once
    b_firsts = [int(ds[i][0][0]) for i in range(len(ds)) if from_b[i]]
    assert len(set(b_firsts)) == len(b_firsts) and b_firsts == sorted(b_firsts)
    assert b_firsts[-1] - b_firsts[0] > 0.9 * 8 * (len(ds.parts[1]) - 1)


def test_blend_resumes_at_the_exact_sample(tmp_path: Path, sources: tuple[str, str]) -> None:
    """A DataModule restored at step k yields what the uninterrupted one yields after k steps."""
    a, b = sources
    cfg = _cfg(tmp_path, [0.5, a, 0.5, b])
    full = TokenDataModule(cfg, seed=7)
    full.setup("fit")
    batches = [x for x, _ in full.train_dataloader()]  # micro-batches of one epoch, 2 per step
    k = 5
    resumed = TokenDataModule(cfg, seed=7)
    resumed.setup("fit")
    resumed.load_state_dict({"global_step": k})
    after = [x for x, _ in resumed.train_dataloader()]
    assert len(after) == len(batches) - 2 * k
    assert all(torch.equal(x, y) for x, y in zip(after, batches[2 * k :], strict=True))


@pytest.mark.parametrize(
    ("blend", "key"),
    [
        ([1.0], "data.blend"),
        ([0, "A"], "data.blend[0]"),
        ([-1, "A"], "data.blend[0]"),
        ([1, "A", "x", "B"], "data.blend[2]"),
        ([1, "A", 1, "/no/such/file.bin"], "data.blend[3]"),
    ],
)
def test_bad_blends_name_the_entry(tmp_path: Path, sources: tuple[str, str], blend: list[object], key: str) -> None:
    blend = [sources[0] if x == "A" else sources[1] if x == "B" else x for x in blend]
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, blend)
    assert str(e.value).startswith(f"{key}=")


def test_blend_and_path_together_are_refused(tmp_path: Path, sources: tuple[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"data\.path"):
        _cfg(tmp_path, [1, sources[0]], path=sources[1])


def test_wide_vocabularies_get_uint32_token_files(tmp_path: Path) -> None:
    assert token_dtype(256) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32 and token_dtype(128256) == np.uint32
    ids = np.array([0, 70000, 128255, 5, 99999, 1, 2, 3, 4], dtype=np.uint32)
    ids.tofile(tmp_path / "t.bin")
    ds = TokenWindows(tmp_path / "t.bin", 4, 128256)
    assert ds[0][0].tolist() == [0, 70000, 128255, 5]
    assert ds[1][0].tolist() == [99999, 1, 2, 3] and ds[1][1].tolist() == [1, 2, 3, 4]


def _text(tmp_path: Path) -> Path:
    text = "".join(f"def function_{i}(value):\n    return value * {i} + offset\n" for i in range(400))
    (tmp_path / "src.py").write_text(text)
    return tmp_path / "src.py"


def test_trained_bpe_fits_the_vocabulary_and_is_cached(tmp_path: Path) -> None:
    src = _text(tmp_path)
    cfg = DataConfig(path=str(src), tokenizer="bpe", bpe_vocab_size=300, cache_dir=str(tmp_path / "c"))
    cfg.validate()
    path = trained_bpe(cfg)
    first = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    tok = resolve_tokenizer(cfg)
    assert tok.vocab_size == 300  # the corpus has far more than 300 - 257 merges
    ids = tok.encode(src.read_bytes())
    assert int(ids.max()) < 300 and len(ids) < len(src.read_bytes()) / 2  # merges shorten the text
    assert tok._tok.decode(ids.tolist()) == src.read_text()  # byte-level: lossless
    assert trained_bpe(cfg) == path and path.stat().st_mtime_ns == mtime  # reused, not retrained
    other = DataConfig(path=str(src), tokenizer="bpe", bpe_vocab_size=280, cache_dir=str(tmp_path / "c"))
    assert trained_bpe(other) != path and path.read_bytes() == first


def test_bpe_needs_its_size(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.bpe_vocab_size"):
        DataConfig(tokenizer="bpe").validate()


def _path_cfg(tmp_path: Path, path: Path) -> DataConfig:
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
    train_old, _, _ = prepare_tokens(_path_cfg(tmp_path, src))
    _replace_keeping_size_and_mtime(src, new)
    train_new, val_new, _ = prepare_tokens(_path_cfg(tmp_path, src))
    assert train_new.parent != train_old.parent
    dtype = np.uint8 if kind == "text" else np.uint16
    expected = np.frombuffer(new, dtype=dtype).astype(np.uint16)
    got = np.concatenate([np.fromfile(train_new, dtype=np.uint16), np.fromfile(val_new, dtype=np.uint16)])
    assert np.array_equal(got, expected)
    # Unchanged content: the same cache.
    assert prepare_tokens(_path_cfg(tmp_path, src))[0] == train_new


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
