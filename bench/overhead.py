"""A near-zero-compute LightningModule trained by a plain Trainer and by ``expconf.train``.

Both sides get the same module, data, step count and Lightning settings (no progress bar, no
model summary, default ``log_every_n_steps``, TensorBoard logging, a checkpoint callback), so
the difference of their step times is what expconf's callbacks, logger and checkpointing add.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.steplog import StepLog, intervals


class TinyModule(pl.LightningModule):
    """``Linear(1, 1)`` on a constant input: the step costs almost nothing but Lightning's own work."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.steps = steps

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).pow(2).mean()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=1e-3)

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(torch.ones(self.steps, 1), batch_size=1)


def _trainer_kwargs(steps: int) -> dict[str, Any]:
    return {
        "max_steps": steps,
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }


def run_bare(workdir: Path, steps: int) -> tuple[list[float], list[float]]:
    """Wall and CPU step times of a plain ``pl.Trainer`` (its default TensorBoard logger and ModelCheckpoint)."""
    pl.seed_everything(0, verbose=False)
    log = StepLog(str(workdir / "steps.json"))
    trainer = pl.Trainer(**_trainer_kwargs(steps), callbacks=[log], default_root_dir=str(workdir))
    trainer.fit(TinyModule(steps))
    return intervals(log.ends, log.train_start), intervals(log.cpu_ends, log.cpu_start)


def run_expconf_api(workdir: Path, steps: int) -> tuple[list[float], list[float]]:
    """Wall and CPU step times under ``expconf.train``: TimingCallback, PreemptionCallback, NeMoLogger, ModelCheckpoint."""
    import expconf
    from expconf.distributed.handoff import clean_dist_env

    pl.seed_everything(0, verbose=False)
    log = StepLog(str(workdir / "steps.json"))
    trainer = pl.Trainer(
        **_trainer_kwargs(steps), callbacks=[expconf.TimingCallback(), expconf.PreemptionCallback(), log]
    )
    try:
        expconf.train(
            TinyModule(steps),
            None,
            trainer,
            log=expconf.NeMoLogger(name="overhead", log_dir=str(workdir), ckpt=expconf.ModelCheckpoint()),
            resume=expconf.AutoResume(),
            exit_on_preemption=False,
        )
    finally:
        clean_dist_env()  # the run-dir decision must not carry over to the next run
    return intervals(log.ends, log.train_start), intervals(log.cpu_ends, log.cpu_start)
