"""Token data without Lightning: the embedded corpus, tokenizers, the token cache, windows and loaders.

The raw-PyTorch benchmark loop uses this module directly; ``expconf.data`` wraps it in a DataModule.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from expconf.config.data import DataConfig
from expconf.errors import ConfigError
from expconf.sampler import ResumableSampler

TEXT_SUFFIXES = (".txt", ".md", ".py", ".rst", ".json", ".csv", ".tex", ".html")
TOKEN_DTYPE = np.uint16  # byte tokens and tokenizers vocabularies up to 65535


def cache_root(cfg: DataConfig) -> Path:
    """Where token caches live: data.cache_dir, $EXPCONF_CACHE or ~/.cache/expconf."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir)
    env = os.environ.get("EXPCONF_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "expconf"


def default_corpus_files() -> list[Path]:
    """The standard library's own sources: text every Python installation has, in a fixed order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p for p in sorted(stdlib.rglob("*.py")) if "test" not in p.relative_to(stdlib).parts[0]]
    return files


def _text_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in TEXT_SUFFIXES]


class Tokenizer:
    """Byte-level by default; a ``tokenizers`` tokenizer.json when given a path."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._tok: Any = None
        if spec == "byte":
            self.vocab_size = 256
        else:
            if not Path(spec).is_file():
                raise ConfigError("data.tokenizer", spec, "'byte' or an existing tokenizer.json file")
            try:
                from tokenizers import Tokenizer as HFTokenizer
            except ImportError as e:  # pragma: no cover - optional extra
                raise ConfigError("data.tokenizer", spec, "'byte' (install expconf[tokenizers] for files)") from e
            self._tok = HFTokenizer.from_file(spec)
            self.vocab_size = int(self._tok.get_vocab_size())
            if self.vocab_size > np.iinfo(TOKEN_DTYPE).max:
                raise ConfigError("data.tokenizer", spec, "a vocabulary of at most 65535 tokens")

    def encode(self, text: bytes) -> np.ndarray:
        """Token ids of ``text``."""
        if self._tok is None:
            return np.frombuffer(text, dtype=np.uint8).astype(TOKEN_DTYPE)
        return np.asarray(self._tok.encode(text.decode("utf-8", errors="replace")).ids, dtype=TOKEN_DTYPE)

    def fingerprint(self) -> str:
        """Identifies the tokenizer in cache keys."""
        if self._tok is None:
            return "byte"
        return hashlib.sha256(Path(self.spec).read_bytes()).hexdigest()[:16]


def _atomic_write_array(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(arr.tobytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def prepare_tokens(cfg: DataConfig) -> tuple[Path, Path, int]:
    """Build (or reuse) the cached train/val token files; returns their paths and the vocab size."""
    tok = Tokenizer(cfg.tokenizer)
    if cfg.path is not None:
        src = Path(cfg.path).expanduser()
        if not src.exists():
            raise ConfigError("data.path", cfg.path, "an existing text file, folder of text files or .bin file")
        if src.suffix == ".bin":
            tokens: np.ndarray = np.memmap(src, dtype=TOKEN_DTYPE, mode="r")
            if tokens.size == 0:
                raise ConfigError("data.path", cfg.path, "a non-empty .bin file of uint16 tokens")
            return _split_cached(cfg, tokens, f"bin:{src.resolve()}:{src.stat().st_size}", tok.vocab_size)
        files = _text_files(src)
        label = f"text:{src.resolve()}:" + ",".join(f"{p}:{p.stat().st_size}" for p in files)
        budget = None
    else:
        files = []  # listed only when the cache misses: walking the stdlib takes seconds
        label = f"stdlib:{sys.version_info[:2]}"
        budget = cfg.corpus_megabytes * 1_000_000
    key = hashlib.sha256(f"{label}|{tok.fingerprint()}|{budget}|{cfg.val_fraction}".encode()).hexdigest()[:16]
    out = cache_root(cfg) / "tokens" / key
    if (out / "meta.json").is_file():
        return out / "train.bin", out / "val.bin", tok.vocab_size
    if cfg.path is None:
        files = default_corpus_files()
    chunks, total = [], 0
    for p in files:
        data = p.read_bytes()
        if budget is not None:
            data = data[: max(budget - total, 0)]
        if data:
            chunks.append(tok.encode(data))
            total += len(data)
        if budget is not None and total >= budget:
            break
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=TOKEN_DTYPE)
    if tokens.size == 0:
        raise ConfigError("data.path", cfg.path, "a file or folder with some text in it")
    return _write_split(out, tokens, cfg.val_fraction, tok.vocab_size, {"source": label[:200]})


def _split_cached(cfg: DataConfig, tokens: np.ndarray, label: str, vocab: int) -> tuple[Path, Path, int]:
    key = hashlib.sha256(f"{label}|{cfg.val_fraction}".encode()).hexdigest()[:16]
    out = cache_root(cfg) / "tokens" / key
    if (out / "meta.json").is_file():
        return out / "train.bin", out / "val.bin", vocab
    return _write_split(out, np.asarray(tokens), cfg.val_fraction, max(vocab, int(tokens.max()) + 1), {})


def _write_split(
    out: Path, tokens: np.ndarray, val_fraction: float, vocab: int, extra: dict[str, Any]
) -> tuple[Path, Path, int]:
    n_val = max(int(len(tokens) * val_fraction), 2)
    _atomic_write_array(out / "train.bin", tokens[:-n_val])
    _atomic_write_array(out / "val.bin", tokens[-n_val:])
    meta = {"train_tokens": len(tokens) - n_val, "val_tokens": n_val, "vocab_size": vocab, **extra}
    tmp = out / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out / "meta.json")  # written last: the cache counts only once it exists
    return out / "train.bin", out / "val.bin", vocab


class TokenWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Non-overlapping windows of ``seq_length + 1`` tokens from a memory-mapped token file."""

    def __init__(self, path: Path, seq_length: int) -> None:
        self.path = path
        self.seq_length = seq_length
        self.tokens = np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
        self.count = (len(self.tokens) - 1) // seq_length

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.seq_length
        window = torch.from_numpy(self.tokens[start : start + self.seq_length + 1].astype(np.int64))
        return window[:-1], window[1:]


def make_loader(cfg: DataConfig, ds: TokenWindows, sampler: ResumableSampler, seed: int) -> DataLoader[Any]:
    """A DataLoader over ``ds`` in ``sampler``'s order."""
    # A private generator keeps worker seeding from drawing on the global torch RNG, whose
    # state the checkpoint restores: resumed and uninterrupted runs then draw the same dropout.
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=cfg.micro_batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.num_workers,
        generator=g,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=cfg.num_workers > 0,
    )


def train_sampler(
    cfg: DataConfig, num_samples: int, seed: int, rank: int = 0, world: int = 1, epoch_steps: int | None = None
) -> ResumableSampler:
    """The training sampler: seeded, sharded by rank, epochs cut to whole optimizer steps."""
    accumulate = max(cfg.global_batch_size // (cfg.micro_batch_size * world), 1)
    return ResumableSampler(
        num_samples,
        seed=seed,
        shuffle=cfg.shuffle,
        rank=rank,
        world_size=world,
        step_samples=cfg.micro_batch_size * accumulate,
        epoch_steps=epoch_steps,
    )
