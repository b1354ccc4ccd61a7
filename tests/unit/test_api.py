"""``expconf.train`` with AutoResume in-process: import_path trains from step 0; each call decides afresh."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from toys import Toy

import expconf
from expconf.distributed import handoff
from helpers import make_trainer


def trainer(steps: int) -> pl.Trainer:
    """Lightning's default logger stays: NeMoLogger decides what happens to it."""
    return make_trainer(None, steps, logger=None)


def test_import_path_initialises_weights_and_trains_from_step_zero(tmp_path: Path) -> None:
    source = Toy()
    result = expconf.train(
        model=source,
        data=None,
        trainer=trainer(4),
        log=expconf.NeMoLogger(name="src", log_dir=str(tmp_path), ckpt=expconf.ModelCheckpoint()),
    )
    assert result.global_step == 4
    [end] = (result.run_dir / "checkpoints").glob("*-end.ckpt")

    target = Toy()
    assert not torch.equal(target.net.weight, source.net.weight)
    log = expconf.NeMoLogger(name="dst", log_dir=str(tmp_path), ckpt=expconf.ModelCheckpoint())
    result = expconf.train(
        model=target, data=None, trainer=trainer(3), log=log, resume=expconf.AutoResume(import_path=str(end))
    )
    assert target.start_step == 0, "import_path must not restore the trainer state"
    assert target.start_weight is not None and torch.equal(target.start_weight, source.net.weight.detach())
    assert result.global_step == 3


def test_each_train_call_decides_its_own_run_dir_and_checkpoint(tmp_path: Path) -> None:
    runs = []
    for _ in range(2):
        log = expconf.NeMoLogger(name="exp", log_dir=str(tmp_path), ckpt=expconf.ModelCheckpoint())
        runs.append(expconf.train(model=Toy(), data=None, trainer=trainer(2), log=log).run_dir)
    assert runs[0] != runs[1] and all(r.parent == tmp_path / "exp" for r in runs)
    assert handoff.RUN_DIR_ENV not in __import__("os").environ
    assert handoff.RESUME_ENV not in __import__("os").environ


def test_a_refused_resume_leaves_the_run_dir_untouched(tmp_path: Path) -> None:
    import pytest

    from expconf.resume import NotFoundError, TrainingCompletedError

    def start(**resume: bool) -> expconf.TrainResult:
        log = expconf.NeMoLogger(name="exp", log_dir=str(tmp_path), ckpt=expconf.ModelCheckpoint())
        return expconf.train(
            model=Toy(),
            data=None,
            trainer=trainer(2),
            log=log,
            resume=expconf.AutoResume(resume_if_exists=True, **resume),
        )

    with pytest.raises(NotFoundError, match="exp/checkpoints"):
        start()
    assert not (tmp_path / "exp").exists(), "nothing is created for a refused start"
    run_dir = start(resume_ignore_no_checkpoint=True).run_dir
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    with pytest.raises(TrainingCompletedError, match="training already completed"):
        start()
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before
    assert not (run_dir / "run_0").exists()
