"""``FiniteLossCallback``: a NaN or infinite loss stops training before that state is checkpointed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from expconf import ModelCheckpoint
from expconf.callbacks.finite_loss import DIVERGED_EXIT_CODE, FiniteLossCallback, NonFiniteLossError
from expconf.checkpoint.meta import scan
from expconf.storage import Storage
from helpers import quiet_trainer


class Net(pl.LightningModule):
    """Loss ``bad`` (NaN or inf) from optimizer step ``bad_step`` on (1-based)."""

    def __init__(self, bad_step: int, bad: float = float("nan")) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.bad_step = bad_step
        self.bad = bad

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch[0]).pow(2).mean()
        if self.global_step + 1 >= self.bad_step:
            loss = loss * self.bad
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(tmp_path: Path, model: Net, log_every_n_steps: int = 1, max_steps: int = 6) -> ModelCheckpoint:
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "ck"), monitor=None, save_top_k=0, every_n_train_steps=1)
    trainer = quiet_trainer(
        tmp_path, [FiniteLossCallback(), ckpt], max_steps=max_steps, log_every_n_steps=log_every_n_steps
    )
    trainer.fit(model, DataLoader(TensorDataset(torch.ones(16, 2)), batch_size=2))
    return ckpt


def last_step(tmp_path: Path) -> int:
    listing = scan(Storage(str(tmp_path / "ck")))
    [last] = listing.by_kind("last")
    return last.global_step


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_stops_at_the_first_bad_step_and_keeps_the_checkpoint_before_it(tmp_path: Path, bad: float) -> None:
    with pytest.raises(NonFiniteLossError, match="NaN or infinite in global step 3; stopped before saving"):
        fit(tmp_path, Net(bad_step=3, bad=bad))
    assert last_step(tmp_path) == 2


def test_between_logging_steps_the_save_is_refused(tmp_path: Path) -> None:
    """With the flag read only every 4th step, the NaN weights of step 3 still never reach a checkpoint."""
    with pytest.raises(NonFiniteLossError, match="in global step 3"):
        fit(tmp_path, Net(bad_step=3), log_every_n_steps=4)
    assert last_step(tmp_path) == 2


def test_a_finite_run_is_untouched(tmp_path: Path) -> None:
    fit(tmp_path, Net(bad_step=100), max_steps=3)
    assert last_step(tmp_path) == 3


def test_the_command_line_reports_it_in_one_line_with_its_own_code() -> None:
    from expconf.cli.report import failure_text

    try:
        raise RuntimeError("fit failed") from NonFiniteLossError(
            "training loss became NaN or infinite in global step 3"
        )
    except RuntimeError as e:
        code, text = failure_text(e, [])
    assert code == DIVERGED_EXIT_CODE == 3
    assert text == "error: training loss became NaN or infinite in global step 3"


class Exploding(Net):
    """A finite loss whose optimizer step makes the weights infinite (a learning rate of 1e38)."""

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e38)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).sum() * 1e10 if self.global_step == 0 else super().training_step(batch, batch_idx)


def test_weights_that_overflowed_are_never_saved(tmp_path: Path) -> None:
    """Step 1's loss is finite but its update is not: the save after it is refused."""
    with pytest.raises(NonFiniteLossError, match="training diverged: the weights are no longer finite"):
        fit(tmp_path, Exploding(bad_step=100))
    assert not list((tmp_path / "ck").glob("*.ckpt"))
