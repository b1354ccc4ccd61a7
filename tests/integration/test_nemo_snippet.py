"""The NeMo 2.0 snippet of the migration guide runs with ``nl.``/``llm.`` replaced by ``expconf.``.

A user script with a plain LightningModule and LightningDataModule, a plain Lightning Trainer
carrying TimingCallback and PreemptionCallback, and an offline WandbLogger: the first run is
preempted by a real SIGTERM, the second (resume_if_exists) continues the same W&B run id, the
same TensorBoard dir and the same step counter, and keeps the first run's files in ``run_0/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import cli_env, scalars

pytestmark = pytest.mark.slow

USER_SCRIPT = '''
import os
import signal
import sys

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import WandbLogger
from torch.utils.data import DataLoader, TensorDataset

import expconf

if sys.argv[3] == "module":
    import expconf.train  # noqa: F401  (binds the module; expconf.train(...) must still work)


class ToyModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(8, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class ToyData(pl.LightningDataModule):
    def setup(self, stage=None):
        x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
        self.ds = TensorDataset(x, x.sum(1, keepdim=True))

    def train_dataloader(self):
        return DataLoader(self.ds, batch_size=4)

    def val_dataloader(self):
        return DataLoader(self.ds, batch_size=32)


class Scheduler(pl.Callback):
    """Plays the cluster scheduler: a real SIGTERM to this process after step N."""

    def __init__(self, at):
        self.at = at

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.at:
            os.kill(os.getpid(), signal.SIGTERM)


# ---- the snippet, verbatim except nl. -> expconf. ----
log = expconf.NeMoLogger(
    name="megatron_gpt",
    log_dir=None,  # This will default to ./nemo_experiments
    explicit_log_dir=None,
    version=None,
    use_datetime_version=True,
    log_local_rank_0_only=False,
    log_global_rank_0_only=False,
    files_to_copy=None,
    update_logger_directory=True,
    wandb=WandbLogger(project=None, name=None),
    ckpt=expconf.ModelCheckpoint(
        dirpath=None,  # to use S3 checkpointing, set the dirpath in format s3://bucket/key
        monitor="val_loss",
        save_top_k=10,
        mode="min",
        always_save_nemo=False,
        save_nemo_on_train_end=False,
        filename='megatron_gpt--{val_loss:.2f}-{step}-{consumed_samples}',
    )
)

resume = expconf.AutoResume(
    path=None,  # Equivalent to resume_from_checkpoint
    dirpath=None,
    import_path=None,
    resume_if_exists=True,
    resume_past_end=False,
    resume_ignore_no_checkpoint=True,
)
# ---- end of the snippet ----

callbacks = [expconf.TimingCallback(), expconf.PreemptionCallback(), Scheduler(int(sys.argv[2]))]
trainer = pl.Trainer(
    max_steps=int(sys.argv[1]),
    callbacks=callbacks,
    accelerator="cpu",
    val_check_interval=5,
    log_every_n_steps=1,
    enable_progress_bar=False,
    enable_model_summary=False,
)
expconf.train(model=ToyModule(), data=ToyData(), trainer=trainer, log=log, resume=resume)
'''


def run(cwd: Path, max_steps: int, preempt_at: int, form: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "user_train.py", str(max_steps), str(preempt_at), form],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def wandb_runs(run_dir: Path) -> list[Path]:
    """The offline W&B run folders (``offline-run-<time>-<id>``) under the run dir."""
    return sorted(p for p in (run_dir / "wandb").glob("offline-run-*") if p.is_dir())


def test_nemo2_snippet_runs_and_resumes(tmp_path: Path) -> None:
    (tmp_path / "user_train.py").write_text(USER_SCRIPT)

    first = run(tmp_path, 20, 8, "module")
    assert first.returncode == 75, first.stdout[-2000:] + first.stderr[-3000:]  # preempted: requeue code
    run_dir = tmp_path / "nemo_experiments" / "megatron_gpt"  # resume_if_exists: no version level
    [w1] = wandb_runs(run_dir)
    run_id = w1.name.rsplit("-", 1)[-1]
    assert (w1 / f"run-{run_id}.wandb").stat().st_size > 0
    assert not (tmp_path / "wandb").exists(), "W&B files must land under the run dir"
    lasts = list((run_dir / "checkpoints").glob("*-last.ckpt"))
    assert [p.name for p in lasts] == ["megatron_gpt--val_loss=" + lasts[0].name.split("=", 1)[1]]
    # The signal came after step 8 had ended (the scheduler callback runs last): step 9 finished, then the save.
    assert lasts[0].name.endswith("-step=9-consumed_samples=0-last.ckpt")
    assert json.loads(Path(f"{lasts[0]}.meta.json").read_text())["global_step"] == 9

    second = run(tmp_path, 20, -1, "function")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]

    # Same W&B run id, continued in a second offline run folder under the same run dir.
    runs = wandb_runs(run_dir)
    assert len(runs) == 2 and {p.name.rsplit("-", 1)[-1] for p in runs} == {run_id}
    assert all((p / f"run-{run_id}.wandb").stat().st_size > 0 for p in runs)
    assert (run_dir / ".wandb_run_id").read_text().strip() == run_id

    # Same TensorBoard dir; the step counter continues after the preemption checkpoint.
    tb = run_dir / "lightning_logs"  # the Trainer's own TensorBoard logger, moved under the run dir
    assert len(list(tb.glob("events.out.tfevents.*"))) == 2
    steps = [s for s, _ in scalars(run_dir, "train_loss")]
    assert steps == list(range(20)), steps
    assert [s for s, _ in scalars(run_dir, "train_step_timing in s")] == list(range(20))

    # Trained to the end: an '-end' checkpoint at step 20, and the first run's files kept.
    [end] = (run_dir / "checkpoints").glob("*-end.ckpt")
    assert json.loads(Path(f"{end}.meta.json").read_text())["global_step"] == 20
    assert (run_dir / "run_0" / "cmd-args.log").read_text().split() == ["user_train.py", "20", "8", "module"]
    assert (run_dir / "cmd-args.log").read_text().split() == ["user_train.py", "20", "-1", "function"]
    assert "resuming from" in (run_dir / "nemo_log_globalrank-0_localrank-0.txt").read_text()
