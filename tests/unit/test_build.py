"""expconf.build: each config section becomes the object it names (objects only: nothing trains)."""

from __future__ import annotations

import dataclasses
import signal

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, RichProgressBar, TQDMProgressBar
from pytorch_lightning.callbacks import ModelSummary as LightningModelSummary
from pytorch_lightning.loggers import WandbLogger

from expconf import build
from expconf.build import (
    build_callbacks,
    build_checkpoint,
    build_logger,
    build_resume,
    build_trainer,
    resolve_precision,
)
from expconf.callbacks.finite_loss import FiniteLossCallback
from expconf.callbacks.preemption import PreemptionCallback
from expconf.callbacks.progress import StepProgressBar
from expconf.callbacks.summary import ModelSummary
from expconf.callbacks.timing import TimingCallback
from expconf.checkpoint.callback import ModelCheckpoint
from expconf.config.ckpt import CheckpointConfig
from expconf.config.log import LogConfig
from expconf.config.resume import ResumeConfig
from expconf.config.root import RootConfig
from expconf.config.trainer import TrainerConfig
from expconf.distributed.world_resume import WorldSizeResume
from expconf.errors import ConfigError
from expconf.logger import RunDirTensorBoardLogger
from expconf.resume import AutoResume


def cpu_root(**trainer: object) -> RootConfig:
    """The default tree on one CPU process, with ``trainer`` keys replaced."""
    root = RootConfig()
    root.trainer = dataclasses.replace(root.trainer, accelerator="cpu", devices=1, **trainer)  # type: ignore[arg-type]
    return root


# -- log.ckpt, log, resume -----------------------------------------------------------------------------


def test_every_checkpoint_field_reaches_the_callback() -> None:
    cfg = CheckpointConfig(
        dirpath="/tmp/ckpts",
        monitor="val_acc",
        save_top_k=5,
        mode="max",
        save_last=False,
        every_n_train_steps=7,
        filename="x--{step}",
        save_weights_only=True,
        auto_insert_metric_name=False,
        verbose=False,
        save_on_exception=True,
        enable_version_counter=False,
        storage_options={"anon": True},
    )
    ckpt = build_checkpoint(cfg)
    assert isinstance(ckpt, ModelCheckpoint)
    lightnings = {"every_n_epochs": 0}  # as Lightning's: no epoch trigger once another trigger is set
    for f in dataclasses.fields(cfg):
        assert getattr(ckpt, f.name) == lightnings.get(f.name, getattr(cfg, f.name)), f.name


def test_logger_gets_tensorboard_in_the_run_dir_and_the_checkpoint_callback() -> None:
    cfg = LogConfig(name="exp", log_dir="/tmp/runs", version="v1")
    log = build_logger(cfg)
    assert (log.name, log.log_dir, log.version) == ("exp", "/tmp/runs", "v1")
    assert isinstance(log.tensorboard, RunDirTensorBoardLogger) and log.tensorboard.name == "tb_logs"
    assert log.wandb is None
    assert isinstance(log.ckpt, ModelCheckpoint) and log.ckpt.monitor == cfg.ckpt.monitor


def test_logger_without_tensorboard_and_with_offline_wandb() -> None:
    cfg = LogConfig(name="exp")
    cfg.tensorboard.enabled = False
    cfg.wandb.project, cfg.wandb.offline, cfg.wandb.tags = "proj", True, ["a"]
    log = build_logger(cfg)
    assert log.tensorboard is False
    assert isinstance(log.wandb, WandbLogger)
    assert log.wandb._name == "exp", "the W&B run is named after log.name unless log.wandb.name is set"
    assert log.wandb._wandb_init["project"] == "proj" and log.wandb._wandb_init["tags"] == ["a"]
    assert "anonymous" not in log.wandb._wandb_init


def test_every_resume_field_reaches_auto_resume() -> None:
    cfg = ResumeConfig(dirpath="/tmp/ckpts", resume_if_exists=True, resume_ignore_no_checkpoint=True)
    resume = build_resume(cfg)
    assert isinstance(resume, AutoResume)
    for f in dataclasses.fields(cfg):
        if f.name != "import_path":
            assert getattr(resume, f.name) == getattr(cfg, f.name), f.name
    imported = build_resume(ResumeConfig(import_path="/tmp/w.ckpt"))
    assert imported.restore_config is not None and imported.restore_config.path == "/tmp/w.ckpt"


# -- trainer -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "precision", "cuda", "expected"),
    [
        ("cpu", None, True, "32-true"),
        ("gpu", None, False, "bf16-mixed"),
        ("cuda", None, False, "bf16-mixed"),
        ("auto", None, True, "bf16-mixed"),
        ("auto", None, False, "32-true"),
        ("gpu", "16-mixed", True, "16-mixed"),
        ("cpu", "bf16-true", False, "bf16-true"),
    ],
)
def test_resolve_precision(
    accelerator: str, precision: str | None, cuda: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_precision(TrainerConfig(accelerator=accelerator, precision=precision)) == expected


def test_default_callbacks() -> None:
    root = cpu_root()
    root.callbacks.preemption_signal = "SIGUSR1"
    cbs = build_callbacks(root)
    assert [type(c) for c in cbs][:4] == [WorldSizeResume, TimingCallback, PreemptionCallback, FiniteLossCallback]
    assert isinstance(cbs[-1], ModelSummary) and len(cbs) == 6
    assert cbs[2].sig == signal.SIGUSR1  # type: ignore[attr-defined]


def test_callbacks_follow_their_switches() -> None:
    root = cpu_root(enable_progress_bar=False, enable_model_summary=False)
    root.callbacks.timing = root.callbacks.preemption = root.callbacks.finite_loss = False
    assert [type(c) for c in build_callbacks(root)] == [WorldSizeResume]


@pytest.mark.parametrize(
    ("choice", "env", "expected"),
    [("steps", "rich", StepProgressBar), ("rich", "rich", RichProgressBar), ("rich", "tqdm", TQDMProgressBar)],
)
def test_progress_bar_choice(choice: str, env: str, expected: type, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPCONF_PROGRESS", env)
    root = cpu_root(enable_model_summary=False)
    root.callbacks.progress_bar = choice
    assert type(build_callbacks(root)[-1]) is expected


def test_extra_callbacks_are_instantiated_from_allow_listed_targets() -> None:
    root = cpu_root()
    root.callbacks.extra = [{"_target_": "pytorch_lightning.callbacks.LearningRateMonitor", "logging_interval": "step"}]
    extra = build_callbacks(root)[-1]
    assert isinstance(extra, LearningRateMonitor) and extra.logging_interval == "step"
    root.callbacks.extra = [{"_target_": "os.system"}]
    with pytest.raises(ConfigError, match=r"callbacks\.extra\[0\]"):
        build_callbacks(root)


def test_trainer_takes_the_config_and_derives_accumulation() -> None:
    root = cpu_root(max_steps=5, val_check_interval=3, gradient_clip_val=0.5, log_every_n_steps=2)
    root.data.global_batch_size, root.data.micro_batch_size = 32, 8
    marker = TimingCallback()
    trainer = build_trainer(root, [marker, ModelSummary()])
    assert isinstance(trainer, pl.Trainer)
    assert trainer.accumulate_grad_batches == 4
    assert (trainer.max_steps, trainer.max_epochs, trainer.val_check_interval) == (5, -1, 3)
    assert trainer.gradient_clip_val == 0.5 and trainer.log_every_n_steps == 2
    assert trainer.precision == "32-true" and trainer.num_devices == 1
    assert trainer.logger is None, "NeMoLogger attaches the loggers, not the Trainer"
    assert marker in trainer.callbacks
    summaries = [c for c in trainer.callbacks if isinstance(c, LightningModelSummary)]
    assert [type(c) for c in summaries] == [ModelSummary], "expconf's summary replaces Lightning's default one"
    plain = build_trainer(cpu_root(), []).callbacks  # no expconf summary: Lightning keeps its own
    [own] = [c for c in plain if isinstance(c, LightningModelSummary)]
    assert not isinstance(own, ModelSummary)


@pytest.mark.parametrize(("max_steps", "max_epochs", "expected"), [(-1, None, 1000), (10, None, -1), (10, 3, 3)])
def test_trainer_epoch_limit(max_steps: int, max_epochs: int | None, expected: int) -> None:
    root = cpu_root(max_steps=max_steps, max_epochs=max_epochs)
    assert build_trainer(root, []).max_epochs == expected


def test_trainer_checks_the_batch_sizes_against_the_world_size(monkeypatch: pytest.MonkeyPatch) -> None:
    root = cpu_root()
    root.data.global_batch_size, root.data.micro_batch_size = 24, 16
    with pytest.raises(ConfigError, match=r"data\.global_batch_size.*16 x 1"):
        build_trainer(root, [])
    root.data.global_batch_size, root.data.micro_batch_size = 32, 8
    assert build_trainer(root, []).accumulate_grad_batches == 4
    monkeypatch.setattr(build, "world_size", lambda cfg: 3)  # three ranks: 32 is not a multiple of 8 x 3
    with pytest.raises(ConfigError, match=r"data\.global_batch_size.*8 x 3"):
        build_trainer(root, [])
