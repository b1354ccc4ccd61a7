"""Train 20 steps, resume to 40: the same weights, optimizer, scheduler, counters and losses as 40 straight.

The three runs go through the real CLI entry point (``expconf.train.main``) in this process, so the
run dir also shows the CLI's resolved config and overrides, and the previous run's files in ``run_0/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from helpers import TINY, scalars

pytestmark = pytest.mark.slow

COMMON = [
    *TINY,
    "trainer.val_check_interval=10",
    "optim.warmup_steps=5",
    "optim.decay_steps=40",  # the schedule must not depend on max_steps
    "optim.lr=3e-3",
    "callbacks.progress_bar=tqdm",
]


def cli(args: list[str], monkeypatch: pytest.MonkeyPatch, cwd: Path) -> None:
    from expconf.train import main

    monkeypatch.chdir(cwd)
    main(args)


def end_checkpoint(run_dir: Path) -> dict[str, Any]:
    ends = {
        json.loads(Path(f"{p}.meta.json").read_text())["global_step"]: p
        for p in (run_dir / "checkpoints").glob("*-end.ckpt")
    }
    end = ends[max(ends)]
    loaded: dict[str, Any] = torch.load(end, map_location="cpu", weights_only=True)
    return loaded


def assert_same(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = tmp_path / "straight"
    straight.mkdir()
    cli([*COMMON, "log.version=v1", "trainer.max_steps=40"], monkeypatch, straight)

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    resume = [
        "resume.resume_if_exists=true",
        "resume.resume_ignore_no_checkpoint=true",
        "log.wandb.project=expconf-test",  # W&B from the config tree, offline (WANDB_MODE)
    ]
    cli([*COMMON, *resume, "trainer.max_steps=20"], monkeypatch, resumed)
    cli([*COMMON, *resume, "resume.resume_past_end=true", "trainer.max_steps=40"], monkeypatch, resumed)

    a_dir = straight / "nemo_experiments" / "gpt" / "v1"
    b_dir = resumed / "nemo_experiments" / "gpt"  # resume_if_exists: no version level
    a, b = end_checkpoint(a_dir), end_checkpoint(b_dir)
    assert a["global_step"] == b["global_step"] == 40
    assert_same(a["state_dict"], b["state_dict"], "state_dict")
    assert_same(a["optimizer_states"], b["optimizer_states"], "optimizer")
    assert_same(a["lr_schedulers"], b["lr_schedulers"], "lr_scheduler")
    assert a["loops"]["fit_loop"]["epoch_loop.state_dict"] == b["loops"]["fit_loop"]["epoch_loop.state_dict"]

    # Per-step losses: the resumed run logs steps 20..39 with the uninterrupted run's values,
    # into the same TensorBoard dir as its first part.
    a_loss = dict(scalars(a_dir, "reduced_train_loss"))
    b_loss = dict(scalars(b_dir, "reduced_train_loss"))
    assert set(b_loss) == set(a_loss) and len(a_loss) == 40
    for step in a_loss:
        assert b_loss[step] == pytest.approx(a_loss[step], rel=1e-5), step
    assert len(list((b_dir / "tb_logs").glob("events.out.tfevents.*"))) == 2
    assert [p.name for p in b_dir.iterdir() if p.name.startswith("events")] == []

    # W&B through log.wandb.*: real offline run files under the run dir, one run id for both parts.
    wandb_runs = sorted((b_dir / "wandb").glob("offline-run-*"))
    ids = {p.name.rsplit("-", 1)[-1] for p in wandb_runs}
    assert len(wandb_runs) == 2 and len(ids) == 1, wandb_runs
    assert all((p / f"run-{next(iter(ids))}.wandb").stat().st_size > 0 for p in wandb_runs)

    # The CLI's resolved config and overrides, and the first part's files kept in run_0/.
    assert yaml.safe_load((b_dir / "config.yaml").read_text())["trainer"]["max_steps"] == 40
    assert "resume.resume_past_end=true" in yaml.safe_load((b_dir / "overrides.yaml").read_text())
    assert yaml.safe_load((b_dir / "run_0" / "config.yaml").read_text())["trainer"]["max_steps"] == 20
    assert "trainer.max_steps=20" in yaml.safe_load((b_dir / "run_0" / "overrides.yaml").read_text())
