"""The CLI trains a tiny GPT end to end: checkpoints, TensorBoard scalars, falling loss, summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import TINY, run_cli, run_dirs, scalars

pytestmark = pytest.mark.slow


def test_cli_trains_and_checkpoints(tmp_path: Path) -> None:
    proc = run_cli(
        [*TINY, "trainer.max_steps=60", "trainer.val_check_interval=20", "optim.lr=3e-3", "optim.warmup_steps=5"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run_dir] = run_dirs(tmp_path / "nemo_experiments")
    assert run_dir.parent.name == "gpt"
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert any(n.endswith("-last.ckpt") for n in ckpts), ckpts
    assert any(n.endswith("-end.ckpt") for n in ckpts), ckpts
    for name in ckpts:
        assert (run_dir / "checkpoints" / f"{name}.meta.json").is_file()
    losses = scalars(run_dir, "reduced_train_loss")
    assert len(losses) >= 50
    first = sum(v for _, v in losses[:5]) / 5
    last = sum(v for _, v in losses[-5:]) / 5
    assert last < first - 0.5, (first, last)
    assert scalars(run_dir, "val_loss"), "val_loss was not logged"
    assert scalars(run_dir, "train_step_timing in s"), "TimingCallback did not log"
    out = proc.stdout
    assert f"run dir:         {run_dir}" in out
    assert "best checkpoint:" in out and "final val_loss:" in out
