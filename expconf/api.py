"""``expconf.train``: the one training path shared by the CLI and Python users."""

from __future__ import annotations

import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from expconf.callbacks.preemption import REQUEUE_EXIT_CODE, PreemptionCallback, requeue_slurm_job
from expconf.callbacks.run_stats import RunStats, run_stats_lines
from expconf.checkpoint.fit import check_fits
from expconf.distributed import handoff
from expconf.hparams import log_hyperparameters
from expconf.logger import NeMoLogger
from expconf.resume import AutoResume
from expconf.run_lock import RunLocks
from expconf.rundir import resume_dir

log = logging.getLogger("expconf")


@dataclass
class TrainResult:
    """Where a run went and how it ended."""

    run_dir: Path
    best_model_path: str
    best_model_score: float | None
    last_model_path: str
    val_loss: float | None
    global_step: int
    preempted: bool
    wall_time_s: float | None = None
    tokens_per_sec: float | None = None
    mfu: float | None = None
    tensorboard: bool = False

    @property
    def exit_code(self) -> int:
        """0, or the requeue code after a preemption."""
        return REQUEUE_EXIT_CODE if self.preempted else 0

    def summary(self) -> str:
        """Human-readable lines for the end of a run."""
        val = f"{self.val_loss:.4f}" if self.val_loss is not None else "n/a"
        lines = [
            f"run dir:         {self.run_dir}",
            f"best checkpoint: {self.best_model_path or 'n/a'}",
            f"last checkpoint: {self.last_model_path or 'n/a'}",
            f"final val_loss:  {val}   (global step {self.global_step})",
        ]
        lines += run_stats_lines(self.wall_time_s, self.tokens_per_sec, self.mfu)
        if self.tensorboard:
            lines.append(f"tensorboard:     tensorboard --logdir {shlex.quote(str(self.run_dir))}")
        if self.preempted:
            lines.append(f"preempted: resumable checkpoint written; exit code {REQUEUE_EXIT_CODE} (requeue)")
        return "\n".join(lines)


def train(
    model: pl.LightningModule,
    data: pl.LightningDataModule | None,
    trainer: pl.Trainer,
    log: NeMoLogger | None = None,
    resume: AutoResume | None = None,
    optim: Any = None,
    *,
    task_config: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    exit_on_preemption: bool = True,
) -> TrainResult:
    """Set up the run dir, decide what to resume from, and fit (NeMo 2.0's ``llm.train``).

    ``optim`` (an :class:`expconf.config.OptimConfig` or an object with ``connect(model)``) is
    attached to the model; a module that configures its own optimizers needs none. After a
    preemption the process exits with the requeue code unless ``exit_on_preemption`` is false.
    """
    log = log or NeMoLogger()
    resume = resume or AutoResume()
    if optim is not None:
        if hasattr(optim, "connect"):
            optim.connect(model)
        else:
            model.optim_config = optim
    # Under expconf.train the preemption exit (and its summary) happens here, after fit returns.
    preemption = [c for c in trainer.callbacks if isinstance(c, PreemptionCallback)]  # type: ignore[attr-defined]
    exits = [c.exit_on_preemption for c in preemption]
    failed = True
    locks = RunLocks()
    try:
        locks.acquire(log, resume.resume_if_exists)  # before anything reads or writes the run dir
        for c in preemption:
            c.exit_on_preemption = False
            c.keep_after_signal = exit_on_preemption  # this function exits after a signal: count its copies
            c.arm()  # a signal during the setup below is honoured after the first step
        _check_resume_first(log, resume, model)
        app = log.setup(trainer, resume_if_exists=resume.resume_if_exists, task_config=task_config, overrides=overrides)
        run_dir = Path(app.log_dir)
        resume.setup(trainer, model)  # sets trainer.ckpt_path, as NeMo's does
        log_hyperparameters(trainer.loggers, task_config)
        stats = RunStats()
        trainer.callbacks.append(stats)  # type: ignore[attr-defined]
        if data is not None:
            trainer.fit(model, datamodule=data)
        else:
            trainer.fit(model)
        failed = False
    finally:
        for c, flag in zip(preemption, exits, strict=True):
            c.exit_on_preemption = flag
            c.disarm()  # after a failure before fit, or when this function will not exit
        log.finish(exit_code=1 if failed else 0)
        log.teardown()
        # Decisions this call made are forgotten (also when it failed before fit), so a second
        # ``train()`` in the same process decides its own run dir and checkpoint.
        handoff.release(handoff.RUN_DIR_ENV)
        handoff.release(handoff.RESUME_ENV)
        locks.release()
    result = _result(trainer, run_dir, stats)
    if result.preempted and exit_on_preemption:
        if trainer.is_global_zero:
            requeue_slurm_job()
            print(result.summary(), flush=True)
        sys.exit(REQUEUE_EXIT_CODE)
    return result


def _check_resume_first(log: NeMoLogger, resume: AutoResume, model: pl.LightningModule) -> None:
    """Refuse (training already completed, only incomplete checkpoints, nothing found, a checkpoint
    that does not fit the model) before the run dir is touched, so a refused start leaves the
    previous run's files where they were."""
    if handoff.inherited(handoff.RESUME_ENV) is not None:
        return  # a relaunched rank: the launching process checked
    if resume.path:
        check_fits("resume.path", resume.path, model)
        return
    if resume.import_path:
        check_fits("resume.import_path", resume.import_path, model, training_state=False)
    if not resume.resume_if_exists:
        return
    planned = log.planned_run_dir(resume_if_exists=True)
    ckpt = log.ckpt
    where = resume_dir(planned, ckpt.dirpath if ckpt is not None else None, resume.dirpath)
    chosen = resume.check(str(where), getattr(ckpt, "storage_options", None)) if where is not None else None
    if chosen is not None:
        check_fits("resume.resume_if_exists", chosen, model, message_head="resume.resume_if_exists=true picked ")


def _result(trainer: pl.Trainer, run_dir: Path, stats: RunStats) -> TrainResult:
    ckpt = trainer.checkpoint_callback
    preempted = any(isinstance(c, PreemptionCallback) and c.preempted for c in trainer.callbacks)  # type: ignore[attr-defined]
    val = trainer.callback_metrics.get("val_loss")
    score = getattr(ckpt, "best_model_score", None)  # a 0-d tensor, as Lightning's
    return TrainResult(
        run_dir=run_dir,
        best_model_path=str(getattr(ckpt, "best_model_path", "") or ""),
        best_model_score=float(score) if score is not None else None,
        last_model_path=str(getattr(ckpt, "last_model_path", "") or ""),
        val_loss=float(val) if val is not None else None,
        global_step=int(trainer.global_step),
        preempted=preempted,
        wall_time_s=stats.wall_time_s,
        tokens_per_sec=stats.tokens_per_sec,
        mfu=stats.mfu,
        tensorboard=any(isinstance(lg, TensorBoardLogger) for lg in trainer.loggers),
    )
