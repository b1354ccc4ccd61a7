"""``python -m bench.run --quick --only rows_fsdp``: two gloo ranks measure the three FSDP rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, cli_env

pytestmark = pytest.mark.slow

NAMES = ("sharded save per rank", "async sharded save stall", "peak memory per rank: FSDP / DDP")


def test_bench_fsdp_rows(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "rows_fsdp", "--out", str(out)],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    md = out.read_text()
    assert "## FSDP and sharded checkpoints" in md
    for name in NAMES:
        [line] = [line for line in md.splitlines() if line.startswith("| ") and name in line]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[1]) > 0, line
