"""expconf.data: what the DataModule leaves in the run dir."""

from __future__ import annotations

import json
from pathlib import Path

from expconf.config.data import DataConfig
from expconf.data import record_tokenizer
from expconf.tokens import Tokenizer


def _text(tmp_path: Path) -> Path:
    text = "".join(f"def function_{i}(value):\n    return value * {i} + offset\n" for i in range(400))
    (tmp_path / "src.py").write_text(text)
    return tmp_path / "src.py"


def test_the_run_dir_records_the_tokenizer(tmp_path: Path) -> None:
    src = _text(tmp_path)
    cfg = DataConfig(path=str(src), tokenizer="bpe", bpe_vocab_size=300, cache_dir=str(tmp_path / "c"))
    run = tmp_path / "run"
    run.mkdir()
    record_tokenizer(cfg, run)
    assert not (run / "tokenizer_info.json").exists()  # not a NeMoLogger run dir: nothing written
    (run / "cmd-args.log").write_text("x\n")
    record_tokenizer(cfg, run)
    info = json.loads((run / "tokenizer_info.json").read_text())
    assert info["requested"] == "bpe" and info["vocab_size"] == 300
    assert Tokenizer(str(run / "tokenizer.json")).fingerprint() == info["sha256_16"]
    (run / "tokenizer.json").write_text("mine")
    record_tokenizer(cfg, run)
    assert (run / "tokenizer.json").read_text() == "mine"  # never over a file
