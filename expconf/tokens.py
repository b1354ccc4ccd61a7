"""Token data without Lightning: the embedded corpus, tokenizers, the token cache, windows and loaders.

The raw-PyTorch benchmark loop uses this module directly; ``expconf.data`` wraps it in a DataModule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from expconf.batch import BatchSizes
from expconf.config.data import DataConfig
from expconf.errors import ConfigError
from expconf.sampler import ResumableSampler

TEXT_SUFFIXES = (".txt", ".md", ".py", ".rst", ".json", ".csv", ".tex", ".html")
TOKEN_DTYPE = np.uint16  # token files of vocabularies up to 65536 ids
WIDE_TOKEN_DTYPE = np.uint32  # larger vocabularies (Llama 3: 128256)
BPE_SPECIALS = ("<|endoftext|>",)


def token_dtype(vocab_size: int) -> type[np.unsignedinteger[Any]]:
    """The narrowest token-file dtype that holds ids below ``vocab_size``."""
    return TOKEN_DTYPE if vocab_size <= np.iinfo(TOKEN_DTYPE).max + 1 else WIDE_TOKEN_DTYPE


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
                raise ConfigError("data.tokenizer", spec, "'byte', 'bpe' or an existing tokenizer.json file")
            try:
                from tokenizers import Tokenizer as HFTokenizer
            except ImportError as e:  # pragma: no cover - a dependency since the recipes need it
                raise ConfigError("data.tokenizer", spec, "'byte' (the tokenizers package is missing)") from e
            self._tok = HFTokenizer.from_file(spec)
            self.vocab_size = int(self._tok.get_vocab_size())
            if self.vocab_size > np.iinfo(WIDE_TOKEN_DTYPE).max:
                raise ConfigError("data.tokenizer", spec, "a vocabulary of at most 2**32 tokens")
        self.dtype = token_dtype(self.vocab_size)

    def encode(self, text: bytes) -> np.ndarray:
        """Token ids of ``text``."""
        if self._tok is None:
            return np.frombuffer(text, dtype=np.uint8).astype(self.dtype)
        return np.asarray(self._tok.encode(text.decode("utf-8", errors="replace")).ids, dtype=self.dtype)

    def fingerprint(self) -> str:
        """Identifies the tokenizer in cache keys."""
        if self._tok is None:
            return "byte"
        return hashlib.sha256(Path(self.spec).read_bytes()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """What a run records about its tokenizer."""
        return {"tokenizer": self.spec, "vocab_size": self.vocab_size, "sha256_16": self.fingerprint()}


def content_hash(path: Path, root: Path) -> str:
    """SHA-256 of a file's bytes: what the token caches are keyed by.

    Remembered under ``root`` per file status (size, modification and change times, inode), so a
    file is read again only after something changed it; the change time (ctime) cannot be set
    back, so a file rewritten with its old size and mtime is still read again. A file changed in
    the last seconds is not remembered: a clock tick is coarser than a nanosecond, so a second
    write within the same tick would leave its status unchanged.
    """
    now = time.time_ns()
    st = path.stat()
    status = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}"
    memo = root / "hashes" / hashlib.sha256(status.encode()).hexdigest()[:32]
    if memo.is_file():
        return memo.read_text()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    if now - max(st.st_mtime_ns, st.st_ctime_ns) < 2_000_000_000:
        return digest.hexdigest()
    memo.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=memo.parent, prefix=f".{memo.name}.tmp-")
    with os.fdopen(fd, "w") as out:
        out.write(digest.hexdigest())
    os.replace(tmp, memo)
    return digest.hexdigest()


def _corpus_label(cfg: DataConfig) -> tuple[str, list[Path] | None, int | None]:
    """Cache label, text files (None: the stdlib corpus, listed lazily) and byte budget of the text source."""
    if cfg.path is None:
        return f"stdlib:{sys.version_info[:2]}", None, cfg.corpus_megabytes * 1_000_000
    src = Path(cfg.path).expanduser()
    files = _text_files(src)
    root = cache_root(cfg)
    return f"text:{src.resolve()}:" + ",".join(f"{p}:{content_hash(p, root)}" for p in files), files, None


def _corpus_bytes(files: list[Path] | None, budget: int | None) -> list[bytes]:
    """The text of ``files`` (the stdlib corpus when None), cut at ``budget`` bytes."""
    chunks, total = [], 0
    for p in files if files is not None else default_corpus_files():
        data = p.read_bytes()
        if budget is not None:
            data = data[: max(budget - total, 0)]
        if data:
            chunks.append(data)
            total += len(data)
        if budget is not None and total >= budget:
            break
    return chunks


def trained_bpe(cfg: DataConfig) -> Path:
    """The byte-level BPE tokenizer.json trained on the data's text with ``data.bpe_vocab_size``
    entries (fewer when the text runs out of merges), cached under the token cache."""
    if cfg.bpe_vocab_size is None:
        raise ConfigError("data.bpe_vocab_size", None, "the vocabulary size to train (tokenizer=bpe)")
    if cfg.path is not None and Path(cfg.path).suffix == ".bin":
        raise ConfigError("data.tokenizer", "bpe", "'byte' or a tokenizer.json for pre-tokenized .bin data")
    label, files, budget = _corpus_label(cfg)
    key = hashlib.sha256(f"bpe|{label}|{budget}|{cfg.bpe_vocab_size}".encode()).hexdigest()[:16]
    out = cache_root(cfg) / "tokenizers" / key / "tokenizer.json"
    if out.is_file():
        return out
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.bpe_vocab_size,
        special_tokens=list(BPE_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((c.decode("utf-8", errors="replace") for c in _corpus_bytes(files, budget)), trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".tokenizer.json.tmp-")
    os.close(fd)
    tok.save(tmp)
    os.replace(tmp, out)
    return out


def resolve_tokenizer(cfg: DataConfig) -> Tokenizer:
    """The tokenizer ``data.tokenizer`` names: byte, the trained BPE, or a tokenizer.json file."""
    return Tokenizer(str(trained_bpe(cfg)) if cfg.tokenizer == "bpe" else cfg.tokenizer)


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
    tok = resolve_tokenizer(cfg)
    if cfg.path is not None:
        src = Path(cfg.path).expanduser()
        if not src.exists():
            raise ConfigError("data.path", cfg.path, "an existing text file, folder of text files or .bin file")
        if src.suffix == ".bin":
            tokens: np.ndarray = np.memmap(src, dtype=tok.dtype, mode="r")
            if tokens.size == 0:
                raise ConfigError("data.path", cfg.path, f"a non-empty .bin file of {np.dtype(tok.dtype).name} tokens")
            label = f"bin:{src.resolve()}:{content_hash(src, cache_root(cfg))}"
            return _split_cached(cfg, tokens, label, tok.vocab_size)
    label, files, budget = _corpus_label(cfg)
    key = hashlib.sha256(f"{label}|{tok.fingerprint()}|{budget}|{cfg.val_fraction}".encode()).hexdigest()[:16]
    out = cache_root(cfg) / "tokens" / key
    if (out / "meta.json").is_file():
        return out / "train.bin", out / "val.bin", tok.vocab_size
    chunks = [tok.encode(c) for c in _corpus_bytes(files, budget)]
    tokens = np.concatenate(chunks) if chunks else np.zeros(0, dtype=tok.dtype)
    if tokens.size == 0:
        raise ConfigError("data.path", cfg.path, "a file or folder with some text in it")
    return _write_split(out, tokens, cfg.val_fraction, tok.vocab_size, {"source": label[:200]})


def _split_cached(cfg: DataConfig, tokens: np.ndarray, label: str, vocab: int) -> tuple[Path, Path, int]:
    key = hashlib.sha256(f"{label}|{cfg.val_fraction}|{tokens.dtype}".encode()).hexdigest()[:16]
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
    meta = {
        "train_tokens": len(tokens) - n_val,
        "val_tokens": n_val,
        "vocab_size": vocab,
        "dtype": np.dtype(tokens.dtype).name,
        **extra,
    }
    tmp = out / ".meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, out / "meta.json")  # written last: the cache counts only once it exists
    return out / "train.bin", out / "val.bin", vocab


class TokenWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Non-overlapping windows of ``seq_length + 1`` tokens from a memory-mapped token file."""

    def __init__(self, path: Path, seq_length: int, vocab_size: int = 256) -> None:
        self.path = path
        self.seq_length = seq_length
        self.tokens = np.memmap(path, dtype=token_dtype(vocab_size), mode="r")
        self.count = (len(self.tokens) - 1) // seq_length

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.seq_length
        window = torch.from_numpy(self.tokens[start : start + self.seq_length + 1].astype(np.int64))
        return window[:-1], window[1:]


class BlendedWindows(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Windows of several token files mixed by weight in a fixed interleaving.

    Source ``d`` gets ``round(w_d * total)`` of the ``total`` (= all sources' windows) samples,
    spread evenly: its ``k``-th sample sits at time ``(k + 0.5) / w_d`` and the samples of all
    sources are merged by time (ties by source order). An up-weighted source repeats its windows,
    a down-weighted one uses evenly spaced windows. Index -> sample is a pure function, so the
    sampler resumes a blend at the exact sample as it does a single file.
    """

    def __init__(self, parts: list[TokenWindows], weights: list[float]) -> None:
        self.parts = parts
        total = sum(len(p) for p in parts)
        sources, samples, times = [], [], []
        for d, (part, w) in enumerate(zip(parts, weights, strict=True)):
            n = max(round(w * total), 1)
            k = np.arange(n, dtype=np.int64)
            sources.append(np.full(n, d, dtype=np.int64))
            samples.append(k % len(part) if n >= len(part) else (k * len(part)) // n)
            times.append((k + 0.5) / w)
        order = np.argsort(np.concatenate(times), kind="stable")
        self.source = np.concatenate(sources)[order]
        self.sample = np.concatenate(samples)[order]

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.parts[int(self.source[i])][int(self.sample[i])]


def source_configs(cfg: DataConfig) -> list[tuple[float, DataConfig]]:
    """The single source, or each source of ``data.blend`` with its normalised weight."""
    if not cfg.blend:
        return [(1.0, cfg)]
    return [(w, dataclasses.replace(cfg, path=p, blend=None)) for w, p in cfg.blend_pairs()]


def prepare_sources(cfg: DataConfig) -> tuple[list[tuple[float, Path, Path]], int]:
    """Token caches of every source: (weight, train, val) triples and the largest vocabulary."""
    triples, vocab = [], 0
    for w, sub in source_configs(cfg):
        train, val, v = prepare_tokens(sub)
        triples.append((w, train, val))
        vocab = max(vocab, v)
    return triples, vocab


def windows(
    sources: list[tuple[float, Path, Path]], split: str, seq_length: int, vocab_size: int
) -> TokenWindows | BlendedWindows:
    """The ``split`` ('train' or 'val') dataset over ``sources``: one file, or their blend."""
    parts = [TokenWindows(train if split == "train" else val, seq_length, vocab_size) for _, train, val in sources]
    if len(parts) == 1:
        return parts[0]
    return BlendedWindows(parts, [w for w, _, _ in sources])


def make_loader(cfg: DataConfig, ds: Dataset[Any], sampler: ResumableSampler, seed: int) -> DataLoader[Any]:
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
    return ResumableSampler(
        num_samples,
        seed=seed,
        shuffle=cfg.shuffle,
        rank=rank,
        world_size=world,
        step_samples=BatchSizes.of(cfg, world).rank_step_samples,
        epoch_steps=epoch_steps,
    )
