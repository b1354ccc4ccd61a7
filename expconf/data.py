"""Token data: the embedded default corpus, user text or .bin files, and the resumable DataModule."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
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


class TokenDataModule(pl.LightningDataModule):
    """Train/val loaders over cached tokens, with a sampler that resumes mid-epoch exactly."""

    def __init__(self, cfg: DataConfig, seed: int = 1234) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = seed
        self.vocab_size: int | None = None
        self.train_path: Path | None = None
        self.val_path: Path | None = None
        self.sampler: ResumableSampler | None = None
        self._resume_step: int | None = None

    def prepare_data(self) -> None:
        """Build the token cache once per node (Lightning calls it on local rank 0)."""
        self.train_path, self.val_path, self.vocab_size = prepare_tokens(self.cfg)

    def setup(self, stage: str) -> None:
        """Every rank opens the cache (built by prepare_data; rebuilt here if needed)."""
        self.train_path, self.val_path, self.vocab_size = prepare_tokens(self.cfg)

    def tokens_per_step(self) -> int:
        """Tokens in one optimizer step over all ranks."""
        return self.cfg.global_batch_size * self.cfg.seq_length

    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def train_dataloader(self) -> DataLoader[Any]:
        """Loader over the train split, sharded by rank (Lightning's sampler replacement is off)."""
        assert self.train_path is not None
        ds = TokenWindows(self.train_path, self.cfg.seq_length)
        rank, world = self._world()
        accumulate = max(self.cfg.global_batch_size // (self.cfg.micro_batch_size * world), 1)
        step_samples = self.cfg.micro_batch_size * accumulate
        full_steps = (len(ds) // world) // step_samples
        self.sampler = ResumableSampler(
            len(ds),
            seed=self.seed,
            shuffle=self.cfg.shuffle,
            rank=rank,
            world_size=world,
            step_samples=step_samples,
            epoch_steps=self._trainer_epoch_steps(full_steps * accumulate, accumulate),
        )
        if self._resume_step is not None:
            self.sampler.resume_at(self._resume_step)
        return self._loader(ds, self.sampler)

    def _trainer_epoch_steps(self, batches: int, accumulate: int) -> int | None:
        """Optimizer steps in one of the trainer's epochs of ``batches`` micro-batches under
        ``trainer.limit_train_batches`` (None: no limit)."""
        limit = getattr(self.trainer, "limit_train_batches", None) if self.trainer is not None else None
        if limit is None or (isinstance(limit, float) and limit == 1.0):
            return None
        # Lightning's own rule (data_connector._parse_num_batches): int caps, float scales.
        limited = min(batches, limit) if isinstance(limit, int) else int(batches * float(limit))
        return max(limited // accumulate, 1)

    def val_dataloader(self) -> DataLoader[Any]:
        """Loader over the validation split, in order."""
        assert self.val_path is not None
        ds = TokenWindows(self.val_path, self.cfg.seq_length)
        rank, world = self._world()
        sampler = ResumableSampler(
            len(ds),
            seed=self.seed,
            shuffle=False,
            rank=rank,
            world_size=world,
            step_samples=self.cfg.micro_batch_size,
        )
        return self._loader(ds, sampler)

    def _loader(self, ds: TokenWindows, sampler: ResumableSampler) -> DataLoader[Any]:
        # A private generator keeps worker seeding from drawing on the global torch RNG, whose
        # state the checkpoint restores: resumed and uninterrupted runs then draw the same dropout.
        g = torch.Generator()
        g.manual_seed(self.seed)
        return DataLoader(
            ds,
            batch_size=self.cfg.micro_batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=self.cfg.num_workers,
            generator=g,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.cfg.num_workers > 0,
        )

    def state_dict(self) -> dict[str, Any]:
        """The data position is the optimizer step: samples consumed follow from it exactly."""
        step = self.trainer.global_step if self.trainer is not None else 0
        return {"global_step": int(step), "config": asdict(self.cfg)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the sampler right after the saved step."""
        # Lightning warns that a mid-epoch resume is unreliable unless the *loader* is stateful;
        # here the DataModule carries the position, so the warning does not apply.
        warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch")
        self._resume_step = int(state_dict["global_step"])
        if self.sampler is not None:
            self.sampler.resume_at(self._resume_step)
