"""The run dir's layout: one answer to "where do this run's checkpoints live", used by every caller."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from expconf import rundir, runs
from expconf.checkpoint.callback import ModelCheckpoint
from expconf.resume import AutoResume


def test_experiment_dir_defaults_to_nemo_experiments() -> None:
    assert rundir.experiment_dir(None, "gpt") == Path("nemo_experiments") / "gpt"
    assert rundir.experiment_dir("/logs", "gpt") == Path("/logs/gpt")


def test_checkpoint_dir_is_dirpath_else_under_the_run_dir() -> None:
    assert rundir.checkpoint_dir(Path("/runs/gpt/v1")) == "/runs/gpt/v1/checkpoints"
    assert rundir.checkpoint_dir("s3://b/runs/v1") == "s3://b/runs/v1/checkpoints"
    assert rundir.checkpoint_dir("/runs/v1", "s3://b/ck") == "s3://b/ck"


@pytest.mark.parametrize(
    ("run_dir", "ckpt", "resume", "expected"),
    [
        ("/r", None, None, "/r/checkpoints"),
        ("/r", "/ck", None, "/ck"),
        ("/r", "/ck", "/other", "/other"),
        (None, None, None, None),  # a new datetime version: not known before it is created
        (None, "/ck", None, "/ck"),
        (None, None, "/other", "/other"),
    ],
)
def test_resume_dir_order(run_dir: str | None, ckpt: str | None, resume: str | None, expected: str | None) -> None:
    assert rundir.resume_dir(run_dir, ckpt, resume) == expected


@pytest.mark.parametrize(("ckpt", "resume"), [(None, None), ("/ck", None), ("/ck", "/other"), (None, "/other")])
def test_every_caller_gives_the_same_answer(tmp_path: Path, ckpt: str | None, resume: str | None) -> None:
    """AutoResume, ModelCheckpoint and ``runs`` all ask :mod:`expconf.rundir`."""
    run_dir = tmp_path / "gpt" / "v1"
    run_dir.mkdir(parents=True)
    callback = ModelCheckpoint(dirpath=ckpt)
    trainer = SimpleNamespace(default_root_dir=str(run_dir), checkpoint_callback=callback)
    expected = rundir.resume_dir(run_dir, ckpt, resume)
    assert AutoResume(dirpath=resume).search_dir(trainer)[0] == expected
    assert callback.resolved_dirpath(trainer) == rundir.checkpoint_dir(run_dir, ckpt)  # type: ignore[arg-type]
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump({"log": {"ckpt": {"dirpath": ckpt}}, "resume": {"dirpath": resume}})
    )
    assert runs.run_info(run_dir).ckpt_dir == expected
