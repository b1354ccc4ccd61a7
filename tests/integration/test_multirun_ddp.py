"""Hydra multirun of DDP jobs: one dir per job, no stray sweep dirs, every rank trains its job's values."""

from __future__ import annotations

from pathlib import Path

import pytest
import test_ddp
import yaml

from expconf.callbacks.job_record import config_digest
from helpers import TINY, run_cli, run_dirs

pytestmark = pytest.mark.slow


def test_multirun_of_ddp_jobs(tmp_path: Path) -> None:
    proc = run_cli(
        [
            "-m",
            *TINY,
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.limit_val_batches=1",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.strategy=ddp",
            "optim.lr=1e-3,2e-3",
        ],
        cwd=tmp_path,
        timeout=480,  # a job whose ranks kept the previous job's environment would hang here
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Nothing but the experiment folder; in it one dir per job and Hydra's multirun.yaml.
    assert [p.name for p in tmp_path.iterdir()] == ["nemo_experiments"]
    exp = tmp_path / "nemo_experiments" / "gpt"
    dirs = run_dirs(tmp_path / "nemo_experiments")
    assert sorted(p.name for p in exp.iterdir()) == sorted([*(d.name for d in dirs), "multirun.yaml"])
    assert len(dirs) == 2
    lrs = []
    for run_dir in dirs:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        lrs.append(saved["optim"]["lr"])
        # Rank 0 (the sweep process) and rank 1 (its child) logged this job's config, not the other's.
        digest = config_digest(saved)
        assert test_ddp.rank_records(run_dir) == {0: digest, 1: digest}, run_dir
        assert any(p.name.endswith("-end.ckpt") for p in (run_dir / "checkpoints").iterdir())
    assert sorted(lrs) == [1e-3, 2e-3]
    assert proc.stdout.count("run dir:") == 2
