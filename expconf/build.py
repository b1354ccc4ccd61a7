"""Turns a validated :class:`RootConfig` into the objects of one run and launches it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch

from expconf import targets
from expconf.api import TrainResult, train
from expconf.batch import BatchSizes
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
from expconf.console import quiet_library_noise
from expconf.data import TokenDataModule
from expconf.distributed.handoff import JobHandoff
from expconf.distributed.ranks import launched_externally
from expconf.lightning_internals import wandb_init_args
from expconf.logger import NeMoLogger, RunDirTensorBoardLogger
from expconf.resume import AutoResume


@dataclass
class Built:
    """Everything ``expconf.train`` needs for one run."""

    model: pl.LightningModule
    data: pl.LightningDataModule
    trainer: pl.Trainer
    log: NeMoLogger
    resume: AutoResume


def build_checkpoint(cfg: CheckpointConfig) -> ModelCheckpoint:
    """``log.ckpt`` -> ModelCheckpoint."""
    return ModelCheckpoint(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})


def build_logger(cfg: LogConfig) -> NeMoLogger:
    """``log`` -> NeMoLogger with its TensorBoard / W&B loggers and checkpoint callback."""
    wandb = None
    if cfg.wandb.active:
        from pytorch_lightning.loggers import WandbLogger

        w = cfg.wandb
        wandb = WandbLogger(
            project=w.project,
            name=w.name or cfg.name,
            entity=w.entity,
            group=w.group,
            tags=w.tags,
            offline=w.offline,
            log_model=w.log_model,
        )
        init = wandb_init_args(wandb)
        if init.get("anonymous") is None:
            init.pop("anonymous", None)  # Lightning passes None, W&B warns that it is ignored
    tensorboard: Any = None
    if cfg.tensorboard.enabled:
        tensorboard = RunDirTensorBoardLogger(
            save_dir=".", name=cfg.tensorboard.name, version="", default_hp_metric=False
        )
    else:
        tensorboard = False
    return NeMoLogger(**cfg.logger_kwargs(), wandb=wandb, tensorboard=tensorboard, ckpt=build_checkpoint(cfg.ckpt))


def build_resume(cfg: ResumeConfig) -> AutoResume:
    """``resume`` -> AutoResume."""
    return AutoResume(**dataclasses.asdict(cfg))


def resolve_precision(cfg: TrainerConfig) -> str:
    """bf16-mixed on CUDA, 32-true elsewhere, unless set."""
    if cfg.precision:
        return cfg.precision
    wants_gpu = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if wants_gpu else "32-true"


def world_size(cfg: TrainerConfig) -> int:
    """Processes over all nodes for these trainer settings, counting this machine's CUDA devices."""
    return cfg.world_size(torch.cuda.device_count() if cfg.accelerator in ("auto", "gpu", "cuda") else 0)


def build_strategy(cfg: TrainerConfig, handoff: JobHandoff | None = None) -> Any:
    """``trainer.strategy`` -> a strategy; ``ddp`` and ``fsdp`` get expconf's launcher, which hands
    the children ``handoff``'s job (see :mod:`expconf.distributed.ddp`)."""
    if cfg.strategy in ("ddp", "ddp_find_unused_parameters_true") and not launched_externally():
        from expconf.distributed.ddp import ExpconfDDPStrategy

        return ExpconfDDPStrategy(find_unused_parameters=cfg.strategy.endswith("_true"), handoff=handoff)
    if cfg.strategy == "fsdp":
        from expconf.distributed.fsdp import ExpconfFSDPStrategy

        return ExpconfFSDPStrategy(cfg.fsdp, handoff=handoff)
    return cfg.strategy


def build_callbacks(root: RootConfig) -> list[pl.Callback]:
    """TimingCallback, PreemptionCallback, progress bar, model summary and the allow-listed extras."""
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

    from expconf.distributed.world_resume import WorldSizeResume

    cbs: list[pl.Callback] = [WorldSizeResume()]  # a checkpoint resumes on any number of ranks
    c = root.callbacks
    if c.timing:
        cbs.append(TimingCallback(log_tokens_per_sec=True))
    if c.preemption:
        cbs.append(PreemptionCallback(c.preemption_signal))
    if c.finite_loss:
        cbs.append(FiniteLossCallback())
    if root.trainer.enable_progress_bar:
        bars = {"steps": StepProgressBar, "rich": RichProgressBar if _rich_ok() else TQDMProgressBar}
        cbs.append(bars.get(c.progress_bar, TQDMProgressBar)())
    if root.trainer.enable_model_summary is not False:
        cbs.append(ModelSummary())
    for i, node in enumerate(c.extra):
        cbs.append(targets.instantiate(dict(node), f"callbacks.extra[{i}]"))
    return cbs


def _rich_ok() -> bool:
    return os.environ.get("EXPCONF_PROGRESS", "rich") == "rich"


def build_trainer(root: RootConfig, callbacks: list[pl.Callback], handoff: JobHandoff | None = None) -> pl.Trainer:
    """``trainer`` -> pytorch_lightning.Trainer (gradient accumulation derived from the batch sizes)."""
    t = root.trainer
    world = world_size(t)
    root.validate(world_size=world)
    accumulate = BatchSizes.of(root.data, world).accumulate
    kwargs: dict[str, Any] = {
        f.name: getattr(t, f.name)
        for f in dataclasses.fields(t)
        if f.name not in ("precision", "strategy", "max_epochs", "fsdp") and getattr(t, f.name) is not None
    }
    kwargs["max_epochs"] = t.max_epochs if t.max_epochs is not None else (1000 if t.max_steps == -1 else -1)
    if any(isinstance(c, ModelSummary) for c in callbacks):
        kwargs["enable_model_summary"] = False  # expconf's summary replaces Lightning's default one
    return pl.Trainer(
        **kwargs,
        precision=resolve_precision(t),  # type: ignore[arg-type]
        strategy=build_strategy(t, handoff),
        accumulate_grad_batches=accumulate,
        callbacks=callbacks,
        use_distributed_sampler=False,  # the DataModule's sampler shards by rank and resumes exactly
        default_root_dir=".",
        logger=False,  # NeMoLogger attaches the configured loggers (log.tensorboard, log.wandb)
    )


def build_model(root: RootConfig, data: TokenDataModule) -> pl.LightningModule:
    """``model`` -> the LightningModule named by ``model._target_`` (allow-listed)."""
    cls = targets.resolve(root.model._target_, "model._target_")
    data.prepare_data()
    assert data.vocab_size is not None

    def make() -> pl.LightningModule:
        return cls(
            root.model,
            vocab_size=data.vocab_size,
            seq_length=root.data.seq_length,
            optim=root.optim,
            global_batch_size=root.data.global_batch_size,
        )

    t = root.trainer
    # Weights imported from a file are loaded into the built model: it must exist in full.
    if t.strategy == "fsdp" and t.fsdp.meta_init and not root.resume.import_path:
        from expconf.distributed.fsdp import build_on_meta

        return build_on_meta(make)
    return make()


def build(root: RootConfig, handoff: JobHandoff | None = None) -> Built:
    """All objects of one run, from a validated config (``handoff``: the job for DDP children)."""
    quiet_library_noise()
    pl.seed_everything(root.seed, workers=True, verbose=False)
    data = TokenDataModule(root.data, seed=root.seed)
    model = build_model(root, data)
    trainer = build_trainer(root, build_callbacks(root), handoff)
    return Built(model, data, trainer, build_logger(root.log), build_resume(root.resume))


def run(
    root: RootConfig,
    task_config: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    handoff: JobHandoff | None = None,
) -> TrainResult:
    """Build and train a validated config whose remote locations were probed once
    (:func:`expconf.storage.check_remote`); :func:`expconf.run` is the public entry point.

    ``handoff`` carries the job to the DDP children this run spawns (None in a child).
    """
    built = build(root, handoff)
    from expconf.callbacks.job_record import JobRecord

    built.trainer.callbacks.append(JobRecord(task_config))  # type: ignore[attr-defined]
    return train(
        built.model,
        built.data,
        built.trainer,
        built.log,
        built.resume,
        task_config=task_config,
        overrides=overrides,
    )
