"""``data``: token data, batch sizes and the loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from expconf.config.fields import doc, require


@dataclass
class DataConfig:
    """Token data for language-model pretraining."""

    path: Optional[str] = doc(None, "text file, folder of text files or pre-tokenized .bin (null: embedded corpus)")
    tokenizer: str = doc("byte", "'byte' (no files needed) or the path of a tokenizers tokenizer.json")
    seq_length: int = doc(128, "tokens per sample")
    micro_batch_size: int = doc(16, "samples per device per forward pass")
    global_batch_size: int = doc(32, "samples per optimizer step over all devices (gradient accumulation derived)")
    num_workers: int = doc(0, "DataLoader worker processes")
    val_fraction: float = doc(0.05, "share of the tokens held out for validation")
    shuffle: bool = doc(True, "shuffle training samples each epoch (seeded, resumable)")
    corpus_megabytes: int = doc(4, "size of the embedded default corpus built from the stdlib sources")
    cache_dir: Optional[str] = doc(None, "token cache (null: $EXPCONF_CACHE or ~/.cache/expconf)")

    def validate(self) -> None:
        """Check sizes; paths are checked by validate_paths."""
        for key in ("seq_length", "micro_batch_size", "global_batch_size", "corpus_megabytes"):
            v = getattr(self, key)
            require(v >= 1, f"data.{key}", v, "an integer >= 1")
        require(self.num_workers >= 0, "data.num_workers", self.num_workers, "an integer >= 0")
        require(0.0 < self.val_fraction < 0.5, "data.val_fraction", self.val_fraction, "a number in (0, 0.5)")
