"""``data``: token data, batch sizes and the loader."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from expconf.config.fields import check_local_path, doc, require
from expconf.config.limits import check_num_workers


@dataclass
class DataConfig:
    """Token data for language-model pretraining."""

    path: Optional[str] = doc(None, "text file, folder of text files or pre-tokenized .bin (null: embedded corpus)")
    blend: Optional[list[Any]] = doc(
        None,
        "several sources mixed by weight, NeMo's paths form [w1, path1, w2, path2, ...] (replaces data.path)",
    )
    tokenizer: str = doc(
        "byte",
        "'byte' (ids 0-255), 'bpe' (byte-level BPE trained offline on the data's text, cached) "
        "or the path of a tokenizers tokenizer.json",
    )
    bpe_vocab_size: Optional[int] = doc(
        None, "vocabulary the 'bpe' tokenizer is trained to (recipes: model.vocab_size)"
    )
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
        if self.tokenizer == "bpe":
            require(
                self.bpe_vocab_size is not None and self.bpe_vocab_size >= 257,
                "data.bpe_vocab_size",
                self.bpe_vocab_size,
                "an integer >= 257 (256 byte tokens and <|endoftext|>) when data.tokenizer=bpe",
            )
        if self.blend is not None:
            self.validate_blend()
        check_num_workers("data.num_workers", self.num_workers)
        require(0.0 < self.val_fraction < 0.5, "data.val_fraction", self.val_fraction, "a number in (0, 0.5)")

    def validate_blend(self) -> None:
        """``blend``: pairs of a positive weight and an existing source; raises ConfigError."""
        b = list(self.blend or [])
        require(self.path is None, "data.path", self.path, "null when data.blend is set (the blend names the sources)")
        require(
            len(b) >= 2 and len(b) % 2 == 0,
            "data.blend",
            b,
            "a list [weight1, path1, weight2, path2, ...] of at least one pair",
        )
        for i in range(0, len(b), 2):
            w, path = b[i], b[i + 1]
            ok = isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0
            require(ok, f"data.blend[{i}]", w, "a weight > 0")
            require(isinstance(path, str) and bool(path), f"data.blend[{i + 1}]", path, "a path")
            check_local_path(
                f"data.blend[{i + 1}]", path, "an existing text file, folder of text files or pre-tokenized .bin file"
            )

    def blend_pairs(self) -> list[tuple[float, str]]:
        """(normalised weight, path) pairs of ``blend``."""
        b = list(self.blend or [])
        total = float(sum(b[0::2]))
        return [(float(w) / total, str(p)) for w, p in zip(b[0::2], b[1::2], strict=True)]
