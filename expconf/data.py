"""``data``: the resumable LightningDataModule over the token cache of ``expconf.tokens``."""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from expconf.batch import BatchSizes
from expconf.config.data import DataConfig
from expconf.sampler import ResumableSampler
from expconf.tokens import (
    TEXT_SUFFIXES,
    TOKEN_DTYPE,
    BlendedWindows,
    Tokenizer,
    TokenWindows,
    cache_root,
    default_corpus_files,
    make_loader,
    prepare_sources,
    prepare_tokens,
    resolve_tokenizer,
    train_sampler,
    windows,
)

__all__ = [
    "TEXT_SUFFIXES",
    "TOKEN_DTYPE",
    "BlendedWindows",
    "TokenDataModule",
    "TokenWindows",
    "Tokenizer",
    "cache_root",
    "default_corpus_files",
    "prepare_tokens",
]


class TokenDataModule(pl.LightningDataModule):
    """Train/val loaders over cached tokens, with a sampler that resumes mid-epoch exactly."""

    def __init__(self, cfg: DataConfig, seed: int = 1234) -> None:
        super().__init__()
        self.cfg = cfg
        self.seed = seed
        self.vocab_size: int | None = None
        self.sources: list[tuple[float, Path, Path]] = []
        self.sampler: ResumableSampler | None = None
        self._resume_step: int | None = None

    def prepare_data(self) -> None:
        """Build the token cache once per node (Lightning calls it on local rank 0)."""
        self.sources, self.vocab_size = prepare_sources(self.cfg)

    def setup(self, stage: str) -> None:
        """Every rank opens the cache (built by prepare_data; rebuilt here if needed); rank 0
        records the tokenizer in the run dir."""
        self.sources, self.vocab_size = prepare_sources(self.cfg)
        trainer = self.trainer
        if trainer is not None and trainer.is_global_zero and stage == "fit":
            record_tokenizer(self.cfg, Path(trainer.default_root_dir))

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
        assert self.sources and self.vocab_size is not None
        ds = windows(self.sources, "train", self.cfg.seq_length, self.vocab_size)
        rank, world = self._world()
        batches = BatchSizes.of(self.cfg, world)
        full_steps = (len(ds) // world) // batches.rank_step_samples
        epoch_steps = self._trainer_epoch_steps(full_steps * batches.accumulate, batches.accumulate)
        self.sampler = train_sampler(self.cfg, len(ds), self.seed, rank, world, epoch_steps)
        if self._resume_step is not None:
            self.sampler.resume_at(self._resume_step)
        return make_loader(self.cfg, ds, self.sampler, self.seed)

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
        assert self.sources and self.vocab_size is not None
        ds = windows(self.sources, "val", self.cfg.seq_length, self.vocab_size)
        rank, world = self._world()
        sampler = ResumableSampler(
            len(ds),
            seed=self.seed,
            shuffle=False,
            rank=rank,
            world_size=world,
            step_samples=self.cfg.micro_batch_size,
        )
        return make_loader(self.cfg, ds, sampler, self.seed)

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


#: Written into the run dir: which tokenizer fed the run.
TOKENIZER_RECORD = "tokenizer_info.json"


def record_tokenizer(cfg: DataConfig, run_dir: Path) -> None:
    """Write ``tokenizer_info.json`` (spec, vocabulary, content hash) into a NeMoLogger run dir and,
    for a file tokenizer (trained BPE or the user's), a copy as ``tokenizer.json``. Nothing is
    written outside a run dir (a folder without NeMoLogger's cmd-args.log) or over a file."""
    import json
    import shutil

    if not (run_dir / "cmd-args.log").is_file():
        return
    tok = resolve_tokenizer(cfg)
    info = {**tok.describe(), "requested": cfg.tokenizer}
    target = run_dir / TOKENIZER_RECORD
    if not target.exists():
        target.write_text(json.dumps(info, indent=2) + "\n")
    copy = run_dir / "tokenizer.json"
    if tok.spec != "byte" and not copy.exists():
        shutil.copyfile(tok.spec, copy)
