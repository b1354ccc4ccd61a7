"""TimingCallback and PreemptionCallback in a plain Lightning Trainer; both on by default in the config."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from pytorch_lightning.loggers import Logger
from torch.utils.data import DataLoader, TensorDataset

import expconf
from expconf.build import build_callbacks
from expconf.checkpoint.meta import MARKER_SUFFIX
from expconf.checkpoint.naming import is_last
from expconf.config.store import register_all
from helpers import quiet_trainer

STEP = "train_step_timing in s"
BACKWARD = "train_backward_timing in s"
VALIDATION = "validation_step_timing in s"


class Capture(Logger):
    """Records every ``log_metrics`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "capture"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows.append((step, dict(metrics)))

    def series(self, key: str) -> list[tuple[int | None, float]]:
        return [(step, m[key]) for step, m in self.rows if key in m]


class Toy(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class ToyData(pl.LightningDataModule):
    def __init__(self, tokens: int | None = None) -> None:
        super().__init__()
        self.tokens = tokens
        g = torch.Generator().manual_seed(0)
        self.ds = TensorDataset(torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g))

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.ds, batch_size=4)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.ds, batch_size=32)

    def tokens_per_step(self) -> int:
        assert self.tokens is not None
        return self.tokens


def run(tmp_path: Path, callbacks: list[pl.Callback], steps: int = 6, data: Any = None, **kwargs: Any) -> Capture:
    capture = Capture()
    trainer = quiet_trainer(
        tmp_path,
        callbacks,
        max_steps=steps,
        val_check_interval=3,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
        logger=capture,
        enable_checkpointing=False,
        **kwargs,
    )
    if data is None:
        trainer.fit(Toy(), ToyData().train_dataloader(), ToyData().val_dataloader())
    else:
        trainer.fit(Toy(), datamodule=data)
    return capture


def test_step_backward_and_validation_timings_every_step(tmp_path: Path) -> None:
    capture = run(tmp_path, [expconf.TimingCallback()])
    steps = capture.series(STEP)
    assert [s for s, _ in steps] == [0, 1, 2, 3, 4, 5]
    assert all(v > 0 for _, v in steps)
    assert len(capture.series(BACKWARD)) == 6 and all(v > 0 for _, v in capture.series(BACKWARD))
    # Two validations (after steps 3 and 6), sanity checking excluded.
    assert len(capture.series(VALIDATION)) == 2
    assert not capture.series("tokens_per_sec")


def test_test_step_timing(tmp_path: Path) -> None:
    capture = Capture()
    trainer = quiet_trainer(tmp_path, [expconf.TimingCallback()], logger=capture, limit_test_batches=2)
    trainer.test(Toy(), ToyData().val_dataloader(), verbose=False)
    [(_, seconds)] = capture.series("test_step_timing in s")
    assert seconds > 0


def test_one_step_timing_per_optimizer_step_under_accumulation(tmp_path: Path) -> None:
    capture = run(tmp_path, [expconf.TimingCallback()], steps=3, accumulate_grad_batches=2)
    assert [s for s, _ in capture.series(STEP)] == [0, 1, 2]


def test_tokens_per_second_when_known(tmp_path: Path) -> None:
    capture = run(tmp_path, [expconf.TimingCallback(tokens_per_step=1000)])
    tps = dict(capture.series("tokens_per_sec"))
    timing = dict(capture.series(STEP))
    assert tps.keys() == timing.keys()
    for step, seconds in timing.items():
        assert tps[step] == pytest.approx(1000 / seconds, rel=1e-4)
    from_datamodule = run(tmp_path, [expconf.TimingCallback(log_tokens_per_sec=True)], data=ToyData(tokens=64))
    assert len(from_datamodule.series("tokens_per_sec")) == 6


def test_preemption_callback_in_a_plain_trainer(tmp_path: Path) -> None:
    class SigtermAt(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    preemption = expconf.PreemptionCallback()
    ckpt = expconf.ModelCheckpoint(dirpath=str(tmp_path / "c"))
    # The handler must be ours only during fit, not clobber SIGTERM for the process.
    before = signal.getsignal(signal.SIGTERM)
    trainer = quiet_trainer(tmp_path, [expconf.TimingCallback(), SigtermAt(), preemption, ckpt], max_steps=20)
    # In a plain Trainer the process ends with the requeue code once the checkpoint is durable.
    with pytest.raises(SystemExit) as exited:
        trainer.fit(Toy(), ToyData().train_dataloader())
    assert exited.value.code == 75
    assert preemption.preempted and preemption.exit_code() != 0
    assert trainer.global_step == 2
    lasts = [p for p in (tmp_path / "c").glob("*.ckpt") if is_last(p.name)]  # last.ckpt without NeMoLogger
    assert len(lasts) == 1 and (tmp_path / "c" / (lasts[0].name + MARKER_SUFFIX)).is_file()
    assert not list((tmp_path / "c").glob("*-end.ckpt")), "a preempted run has not completed"
    assert signal.getsignal(signal.SIGTERM) == before


def test_both_callbacks_on_by_default_in_the_config() -> None:
    register_all()
    with initialize_config_module(config_module="expconf.conf", version_base="1.3"):
        cfg = compose("expconf", overrides=["recipe=gpt"])
    root = OmegaConf.to_object(cfg)
    kinds = [type(c) for c in build_callbacks(root)]  # type: ignore[arg-type]
    assert expconf.TimingCallback in kinds and expconf.PreemptionCallback in kinds
    [pre] = [c for c in build_callbacks(root) if isinstance(c, expconf.PreemptionCallback)]  # type: ignore[arg-type]
    assert pre.sig == signal.SIGTERM
    with initialize_config_module(config_module="expconf.conf", version_base="1.3"):
        cfg = compose(
            "expconf", overrides=["recipe=gpt", "callbacks.preemption_signal=SIGUSR1", "callbacks.timing=false"]
        )
    root = OmegaConf.to_object(cfg)
    cbs = build_callbacks(root)  # type: ignore[arg-type]
    assert not any(isinstance(c, expconf.TimingCallback) for c in cbs)
    [pre] = [c for c in cbs if isinstance(c, expconf.PreemptionCallback)]
    assert pre.sig == signal.SIGUSR1
