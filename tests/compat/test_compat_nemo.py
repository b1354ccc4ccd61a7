"""The behaviours NeMo's own unit tests check for NeMoLogger, AutoResume and PreemptionCallback
(tests/lightning/test_nemo_logger.py, tests/lightning/pytorch/callbacks/test_preemption.py,
tests/lightning/test_resume.py), where they do not need Megatron. Written anew for expconf;
the deliberate differences are listed in docs/migration.md."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger
from toys import Toy

import expconf
from helpers import make_trainer


def default_trainer(root: Path) -> pl.Trainer:
    """Lightning's defaults (its own TensorBoard logger and checkpoint callback), on the CPU."""
    return pl.Trainer(accelerator="cpu", default_root_dir=str(root), enable_progress_bar=False)


# -- NeMoLogger ---------------------------------------------------------------------------------------------


def test_wandb_joins_the_trainers_logger_and_keeps_its_name(workdir: Path) -> None:
    log = expconf.NeMoLogger(update_logger_directory=True, wandb=WandbLogger(name="custom", offline=True))
    trainer = default_trainer(workdir)
    app = log.setup(trainer)
    assert log.tensorboard is None and log.extra_loggers == []
    assert len(trainer.loggers) == 2 and isinstance(trainer.loggers[0], TensorBoardLogger)
    assert isinstance(trainer.loggers[1], WandbLogger) and trainer.loggers[1]._name == "custom"
    assert trainer.loggers[1].save_dir == str(app.log_dir)  # a deliberate difference: W&B files in the run dir


def test_explicit_log_dir_ignores_name_and_version(workdir: Path) -> None:
    with pytest.warns(UserWarning, match="ignored"):
        app = expconf.NeMoLogger(name="test", explicit_log_dir="explicit_test_dir").setup(default_trainer(workdir))
    assert app.log_dir == workdir / "explicit_test_dir"
    assert app.name == "" and app.version == ""


def test_default_log_dir_without_datetime_version(workdir: Path) -> None:
    app = expconf.NeMoLogger(use_datetime_version=False).setup(default_trainer(workdir))
    assert app.log_dir == Path.cwd() / "nemo_experiments" / "default"
    assert app.version is None and app.exp_dir == Path.cwd() / "nemo_experiments"


def test_custom_version(workdir: Path) -> None:
    app = expconf.NeMoLogger(name="test", version="v1.0", use_datetime_version=False).setup(default_trainer(workdir))
    assert app.version == "v1.0" and app.log_dir.name == "v1.0"


def test_a_log_file_per_rank(workdir: Path) -> None:
    log = expconf.NeMoLogger(name="test")
    app = log.setup(default_trainer(workdir))
    try:
        logging.getLogger("expconf").info("into the rank's file")
    finally:
        log.teardown()
    assert "into the rank's file" in (app.log_dir / "nemo_log_globalrank-0_localrank-0.txt").read_text()


def test_a_lightning_checkpoint_with_dirpath_and_filename_is_left_as_given(workdir: Path) -> None:
    ckpt = LightningModelCheckpoint(dirpath="test_ckpt", filename="test-{epoch:02d}-{val_loss:.2f}")
    trainer = default_trainer(workdir)
    expconf.NeMoLogger(name="test", ckpt=ckpt).setup(trainer)
    [installed] = [cb for cb in trainer.callbacks if isinstance(cb, LightningModelCheckpoint)]
    assert installed is ckpt and str(ckpt.dirpath).endswith("test_ckpt")
    assert ckpt.filename == "test-{epoch:02d}-{val_loss:.2f}"


# -- AutoResume ---------------------------------------------------------------------------------------------


def test_resume_errors_and_ignoring_them(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, 2)
    with pytest.raises(expconf.NotFoundError):
        expconf.AutoResume(dirpath=str(tmp_path / "test_resume"), resume_if_exists=True).setup(trainer)
    with pytest.raises(expconf.NotFoundError):
        expconf.AutoResume(path=str(tmp_path / "does_not_exist"), resume_if_exists=True).setup(trainer)
    with pytest.warns(UserWarning, match="no checkpoint found"):
        expconf.AutoResume(
            dirpath=str(tmp_path / "nowhere"), resume_if_exists=True, resume_ignore_no_checkpoint=True
        ).setup(trainer)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(expconf.NotFoundError):
        expconf.AutoResume(dirpath=str(empty), resume_if_exists=True).setup(trainer)


def test_an_end_checkpoint_means_training_already_completed(tmp_path: Path) -> None:
    done = tmp_path / "done"
    make_trainer(tmp_path, 2, [expconf.ModelCheckpoint(dirpath=str(done))]).fit(Toy())
    with pytest.raises(ValueError, match="already completed"):
        expconf.AutoResume(dirpath=str(done), resume_if_exists=True).setup(make_trainer(tmp_path, 4))


def test_of_several_last_checkpoints_the_newest_is_chosen(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    for steps, name in ((2, "mymodel"), (4, "mymodel2")):
        ckpt = expconf.ModelCheckpoint(dirpath=str(folder), filename=name + "--{step}", monitor=None, save_top_k=0)
        make_trainer(tmp_path, steps, [ckpt]).fit(Toy())
    for end in folder.glob("*-end.ckpt*"):
        end.unlink()
    trainer = make_trainer(tmp_path, 6)
    expconf.AutoResume(dirpath=str(folder), resume_if_exists=True).setup(trainer)
    # Without NeMoLogger the names are Lightning's: the second run's 'last.ckpt' became 'last-v1.ckpt'.
    assert Path(str(trainer.ckpt_path)).name == "last-v1.ckpt"
    assert torch.load(str(trainer.ckpt_path), weights_only=True)["global_step"] == 4


def test_after_nemo_logger_setup_resume_searches_the_run_dir(tmp_path: Path) -> None:
    def start(steps: int) -> tuple[pl.Trainer, expconf.AppState]:
        trainer = make_trainer(tmp_path, steps)
        log = expconf.NeMoLogger(
            name="default", log_dir=str(tmp_path / "test_resume"), version="version_0", ckpt=expconf.ModelCheckpoint()
        )
        return trainer, log.setup(trainer)

    trainer, app = start(2)
    trainer.fit(Toy())
    for end in (app.log_dir / "checkpoints").glob("*-end.ckpt*"):
        end.unlink()
    again, _ = start(4)
    expconf.AutoResume(resume_if_exists=True).setup(again)
    [last] = (app.log_dir / "checkpoints").glob("*-last.ckpt")
    assert Path(str(again.ckpt_path)).resolve() == last.resolve()


def test_dirpath_wins_over_the_run_dir(tmp_path: Path) -> None:
    elsewhere = tmp_path / "ckpts"
    make_trainer(tmp_path, 2, [expconf.ModelCheckpoint(dirpath=str(elsewhere))]).fit(Toy())
    for end in elsewhere.glob("*-end.ckpt*"):
        end.unlink()
    trainer = make_trainer(tmp_path, 4)
    expconf.NeMoLogger(explicit_log_dir=str(tmp_path / "logs")).setup(trainer)
    expconf.AutoResume(resume_if_exists=True, dirpath=str(elsewhere)).setup(trainer)
    assert Path(str(trainer.ckpt_path)).parent == elsewhere


def test_nemo_attribute_names_are_settable() -> None:
    resume = expconf.AutoResume()
    resume.resume_if_exists = True
    resume.resume_from_directory = "some/checkpoints"
    resume.resume_from_path = "some/checkpoints/step=10-epoch=0-last"
    assert resume.dirpath == "some/checkpoints" and resume.path == "some/checkpoints/step=10-epoch=0-last"


# -- PreemptionCallback -------------------------------------------------------------------------------------


def test_preemption_defaults_and_custom_signal() -> None:
    callback = expconf.PreemptionCallback()
    assert callback.sig == signal.SIGTERM and callback.interrupted is False
    assert expconf.PreemptionCallback(sig=signal.SIGUSR1).sig == signal.SIGUSR1


def test_interrupted_after_the_signal_and_the_handler_restored_at_train_end(tmp_path: Path) -> None:
    callback = expconf.PreemptionCallback(sig=signal.SIGUSR1)
    before = signal.getsignal(signal.SIGUSR1)
    trainer = make_trainer(tmp_path, 2)
    callback.on_train_start(trainer, Toy())
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert callback.interrupted is True
    finally:
        callback.on_train_end(trainer, Toy())
    assert signal.getsignal(signal.SIGUSR1) == before


def test_an_interrupted_step_stops_the_trainer(tmp_path: Path) -> None:
    class SignalAt(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
            if trainer.global_step == 1:
                os.kill(os.getpid(), signal.SIGUSR1)

    callback = expconf.PreemptionCallback(sig=signal.SIGUSR1, exit_on_preemption=False)
    trainer = make_trainer(tmp_path, 10, [SignalAt(), callback], limit_val_batches=0)
    trainer.fit(Toy())
    # The signal came during step 1's end hooks: that step is the last one.
    assert callback.interrupted and trainer.should_stop and trainer.global_step == 1
