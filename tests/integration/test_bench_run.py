"""``python -m bench.run --quick --only rows_startup`` runs end to end and writes a table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, cli_env

pytestmark = pytest.mark.slow


def test_bench_run_quick_writes_the_startup_rows(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--only", "rows_startup", "--out", str(out)],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    md = out.read_text()
    assert md.startswith("# Benchmarks") and "## Startup" in md
    rows = [
        line
        for line in md.splitlines()
        if line.startswith("| ") and ("--cfg job" in line or "first training step" in line)
    ]
    assert len(rows) == 3, md  # --cfg job, first step vs raw PyTorch, first step vs bare Lightning
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        ratio, a_median, b_median = float(cells[1]), cells[4], cells[5]
        assert ratio > 0
        assert re.fullmatch(r"[0-9.e+-]+ s", a_median) and re.fullmatch(r"[0-9.e+-]+ s", b_median)
