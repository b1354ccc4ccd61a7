"""The step progress bar, the model summary without zero FLOPs, the tip filter and the summary lines."""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from expconf.api import TrainResult
from expconf.callbacks.progress import StepProgressBar, clock, format_line
from expconf.callbacks.run_stats import RunStats
from expconf.callbacks.summary import ModelSummary
from expconf.console import quiet_library_noise
from expconf.flops import peak_flops
from helpers import quiet_trainer


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        (x,) = batch
        loss = self.layer(x).pow(2).mean()
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Data(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(torch.ones(64, 2)), batch_size=4)

    def tokens_per_step(self) -> int:
        return 100


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def fit(tmp_path: Path, callbacks: list[pl.Callback], steps: int = 5) -> pl.Trainer:
    trainer = quiet_trainer(
        tmp_path,
        callbacks,
        max_steps=steps,
        accumulate_grad_batches=2,  # two micro-batches per optimizer step: the bar counts steps
        log_every_n_steps=2,
        enable_checkpointing=False,
        enable_progress_bar=True,
    )
    trainer.fit(Tiny(), datamodule=Data())
    return trainer


def test_bar_counts_optimizer_steps_with_tokens_and_time_left(tmp_path: Path) -> None:
    out = io.StringIO()
    fit(tmp_path, [StepProgressBar(stream=out)])
    lines = out.getvalue().splitlines()
    assert [ln.split(" [")[0] for ln in lines] == ["step 2/5", "step 4/5", "step 5/5"]
    assert all(" loss " in ln and "tokens/s" in ln and ln.endswith(" left") for ln in lines)
    assert lines[-1].startswith("step 5/5 [####################] ")


def test_bar_redraws_one_line_on_a_terminal(tmp_path: Path) -> None:
    out = Terminal()
    fit(tmp_path, [StepProgressBar(refresh_s=0.0, stream=out)], steps=3)
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert [part.split(" [")[0] for part in text.split("\r")[1:]] == ["step 1/3", "step 2/3", "step 3/3", "step 3/3"]


def test_run_stats_measure_this_fit(tmp_path: Path) -> None:
    stats = RunStats()
    fit(tmp_path, [stats], steps=4)
    assert stats.steps == 4 and stats.wall_time_s is not None and stats.wall_time_s > 0
    assert stats.tokens_per_sec == pytest.approx(400 / stats.wall_time_s)
    assert stats.mfu is None  # CPU


def test_format_line_and_clock() -> None:
    assert clock(3725.2) == "1:02:05" and clock(-1) == "0:00:00"
    line = format_line(3, 12, {"loss": 0.123456, "lr": 3e-4}, 12345.6, 62.0)
    assert line == "step 3/12 [#####---------------] loss 0.1235 lr 0.0003 | 12,346 tokens/s | 0:01:02 left"
    assert format_line(7, None, {}, None, None) == "step 7"


def test_summary_lines_name_wall_time_speed_and_tensorboard() -> None:
    result = TrainResult(Path("/runs/a b"), "", None, "", None, 8, False, 75.0, 1234.0, 0.4123, tensorboard=True)
    text = result.summary()
    assert "wall time:       0:01:15" in text
    assert "throughput:      1,234 tokens/s   (MFU 41.2%)" in text
    assert "tensorboard:     tensorboard --logdir '/runs/a b'" in text
    bare = TrainResult(Path("/r"), "", None, "", None, 0, False).summary()
    assert "wall time" not in bare and "tensorboard" not in bare


def test_peak_flops_by_card_name() -> None:
    assert peak_flops("NVIDIA H100 PCIe") == 756e12 and peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("Some CPU") is None


def _summary_args(flops: int) -> tuple[Any, ...]:
    data = [(" ", ["0"]), ("Name", ["model"]), ("Type", ["GPT"]), ("Params", ["21.6 K"]), ("FLOPs", [str(flops)])]
    return (data, 21600, 21600, 0.086, {"train": 19, "eval": 0}, flops)


def test_model_summary_leaves_out_zero_flops(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.callbacks.model_summary"):
        ModelSummary.summarize(*_summary_args(0))
    assert "Trainable params" in caplog.text and "Params" in caplog.text
    assert "FLOPs" not in caplog.text and "Flops" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.callbacks.model_summary"):
        ModelSummary.summarize(*_summary_args(5000))
    assert "FLOPs" in caplog.text and "Total Flops" in caplog.text


def test_tips_and_the_leafspec_warning_are_dropped_other_messages_stay(caplog: pytest.LogCaptureFixture) -> None:
    quiet_library_noise()
    quiet_library_noise()  # idempotent
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        logger.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        logger.info("GPU available: False, used: False")
    assert "litlogger" not in caplog.text and "GPU available" in caplog.text
    assert logger.filters.count(logger.filters[-1]) == 1
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_library_noise()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=1)
        warnings.warn("your val_check_interval is larger than the epoch", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["your val_check_interval is larger than the epoch"]


def test_lightnings_srun_hint_is_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with SLURM's clients but outside a job, Lightning warns that srun is unused
    (quoting the command line); expconf starts the ranks itself there, so the hint is noise."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    (tmp_path / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for var in [v for v in os.environ if v.startswith("SLURM_")]:
        monkeypatch.delenv(var)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        SLURMEnvironment._validate_srun_used()
    assert any("`srun` command is available" in str(w.message) for w in seen)  # Lightning's own hint
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_library_noise()
        SLURMEnvironment._validate_srun_used()
    assert seen == []


def test_mfu_on_a_known_gpu_from_the_models_flops_per_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU needed: the device and its name are stand-ins; the arithmetic is the real one."""
    from types import SimpleNamespace

    from expconf.callbacks import run_stats

    class Inner(torch.nn.Module):
        def flops_per_token(self) -> int:
            return 6_000_000

    model = torch.nn.Sequential(torch.nn.Linear(1, 1), Inner())
    assert run_stats.flops_per_token(model) == 6_000_000
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    trainer: Any = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), world_size=2)
    assert run_stats._mfu(trainer, model, 1e8) == pytest.approx(6e6 * 1e8 / (989e12 * 2))
    trainer.strategy.root_device = torch.device("cpu")
    assert run_stats._mfu(trainer, model, 1e8) is None
    assert (
        run_stats._mfu(
            SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cuda", 0)), world_size=1),
            torch.nn.Linear(1, 1),
            1e8,
        )
        is None
    )
