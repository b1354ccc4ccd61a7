"""``bench/gpu_check.sh --dry-run``: the GPU check's own code path on the CPU (gloo DDP through both
launchers, FSDP with async sharded checkpoints, describe and the throughput of gpt2_124m and
tinyllama_1b, shrunk)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, cli_env

pytestmark = pytest.mark.slow


def test_gpu_check_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        cwd=REPO,
        env=cli_env(PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = (out / "figures.txt").read_text()
    assert "ddp (expconf, 2 ranks): ok" in figures and "ddp (torchrun, 2 ranks): ok" in figures
    assert "fsdp (2 ranks): ok" in figures and "shards in the -end checkpoint: 2;" in figures
    for recipe in ("gpt2_124m", "tinyllama_1b"):
        assert f"{recipe}: parameters: " in figures
        assert f"{recipe}: expconf / raw tokens/s: " in figures
        report = json.loads((out / f"throughput_{recipe}.json").read_text())
        assert report["recipe"] == recipe and {r["path"] for r in report["runs"]} == {"expconf", "raw"}
