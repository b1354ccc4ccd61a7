"""The migrated seed exp_manager block drops into conf/experiment/ and trains, checkpoints and resumes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TINY, run_cli, run_dirs
from helpers import cli_env as make_env

pytestmark = pytest.mark.slow

SEED_TEST = Path(__file__).resolve().parents[1] / "unit" / "test_migrate.py"


def _seed_block() -> str:
    text = SEED_TEST.read_text()
    return text.split('SEED = """', 1)[1].split('"""', 1)[0]


def test_migrated_seed_trains_with_its_name_checkpoints_and_resume(tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(_seed_block())
    proc = subprocess.run(
        [sys.executable, "-m", "expconf.migrate", "old.yaml", "-o", "conf/experiment/seed.yaml"],
        cwd=tmp_path,
        env=make_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "model_parallel_size: dropped" in proc.stderr
    args = [*TINY, "--config-dir", "conf", "+experiment=seed", "trainer.val_check_interval=3"]

    first = run_cli([*args, "trainer.max_steps=6"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    # name from the migrated block; resume_if_exists=true means no version level
    [run_dir] = run_dirs(tmp_path / "nemo_experiments")
    assert run_dir == tmp_path / "nemo_experiments" / "megatron_gpt"
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert ckpts and all(n.startswith("megatron_gpt--") for n in ckpts), ckpts
    assert any("consumed_samples" in n for n in ckpts), ckpts
    assert any(n.endswith("-last.ckpt") for n in ckpts), ckpts
    assert "(global step 6)" in first.stdout

    # resume_if_exists (migrated): the finished run is found; going on needs resume_past_end
    again = run_cli([*args, "trainer.max_steps=9"], cwd=tmp_path)
    assert again.returncode == 2 and "training already completed" in again.stderr, again.stderr[-2000:]
    second = run_cli([*args, "trainer.max_steps=9", "resume.resume_past_end=true"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert run_dirs(tmp_path / "nemo_experiments") == [run_dir]
    assert "(global step 9)" in second.stdout
    names = [p.name for p in (run_dir / "checkpoints").glob("*.ckpt")]
    assert any("step=9" in n for n in names) and any("step=6" in n for n in names), names
