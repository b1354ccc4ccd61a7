"""expconf.tokens: weighted blends (proportions, exact resume), the trained BPE tokenizer, wide ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from expconf.config.data import DataConfig
from expconf.data import TokenDataModule
from expconf.errors import ConfigError
from expconf.tokens import BlendedWindows, TokenWindows, resolve_tokenizer, token_dtype, trained_bpe


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
