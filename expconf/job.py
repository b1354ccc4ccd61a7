"""``expconf.run(cfg)``: the one path from a composed config to a trained run.

``python -m expconf.train`` and a user's own ``@hydra.main`` both go through :func:`prepare`
(validate as the CLI does, probe remote locations once, check the accelerator) and
:meth:`Job.run` (build, train, and hand the job to the DDP children it spawns through a
:class:`~expconf.distributed.handoff.JobHandoff` of its own). A DDP child comes back in
through :func:`run_child`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expconf.api import TrainResult
    from expconf.config.root import RootConfig


@dataclass
class Job:
    """A validated, probed job: the config as dataclasses and as the resolved container."""

    root: RootConfig
    #: The resolved config (secrets included): ``config.yaml`` (redacted) and the DDP children's job.
    config: dict[str, Any]

    def run(self, overrides: list[str] | None = None) -> TrainResult:
        """Build and train; the process's distributed state is restored afterwards (for the next job)."""
        from expconf import early_signal

        if self.root.callbacks.preemption:
            early_signal.record(self.root.callbacks.preemption_signal)  # honoured once training starts
        import torch.distributed as dist

        from expconf.build import run
        from expconf.distributed.handoff import ChildJob, JobHandoff, clean_dist_env, snapshot_dist_env

        env_before = snapshot_dist_env()
        try:
            with JobHandoff(ChildJob(self.config, _model_class(self.root), _trusted(self.root))) as handoff:
                return run(self.root, task_config=self.config, overrides=overrides, handoff=handoff)
        finally:
            early_signal.release()  # taken over by the run's PreemptionCallback unless it failed first
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
            clean_dist_env(env_before)


def prepare(cfg: Any) -> Job:
    """Validate ``cfg`` (a composed ``DictConfig`` or a :class:`RootConfig`) as the CLI does, probe
    its remote locations (once) and check the accelerator and a SLURM job's task layout; raises :class:`~expconf.errors.ConfigError`."""
    from omegaconf import DictConfig, OmegaConf

    from expconf.distributed.ranks import check_slurm_tasks
    from expconf.hardware import check_accelerator
    from expconf.storage import check_remote

    if isinstance(cfg, DictConfig):
        from expconf.train import to_root

        root = to_root(cfg)
        resolved: Any = OmegaConf.to_container(cfg, resolve=True)
    else:
        root = cfg
        root.validate()
        root.validate_paths()
        resolved = OmegaConf.to_container(OmegaConf.structured(root), resolve=True)
    check_remote(root)
    check_accelerator(root.trainer)
    check_slurm_tasks()
    assert isinstance(resolved, dict)
    return Job(root, resolved)


def run(cfg: Any, overrides: list[str] | None = None) -> TrainResult:
    """Validate, build and train ``cfg`` (a composed ``DictConfig`` or a ``RootConfig``), DDP included.

    What ``python -m expconf.train`` does after composition; call it from your own ``@hydra.main``.
    ``overrides`` (the command line's) are recorded in the run dir. Only this run's secrets are
    redacted from what it logs (a second run in the process does not inherit them).
    """
    from expconf.redact import job_secrets

    job = prepare(cfg)
    with job_secrets(job.config):
        return job.run(overrides)


def run_child() -> None:
    """A DDP child rank: rebuild the job its parent handed over and train it."""
    from omegaconf import OmegaConf

    from expconf import targets
    from expconf.build import run as build_and_train
    from expconf.config.root import RootConfig
    from expconf.config.store import register_all
    from expconf.distributed.handoff import read_child_job

    register_all()
    job = read_child_job()
    targets.allow(*job.trusted)  # the parent checked them against its allow-list
    schema = OmegaConf.structured(RootConfig)
    schema.model = OmegaConf.structured(targets.resolve(job.model_class, "model"))
    root: Any = OmegaConf.to_object(OmegaConf.merge(schema, job.config))
    build_and_train(root, task_config=job.config)


def _model_class(root: RootConfig) -> str:
    cls = type(root.model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _trusted(root: RootConfig) -> list[str]:
    """The targets this job resolves, for its children's allow-list (all passed the parent's)."""
    from expconf import targets

    extra = [dict(node).get("_target_") for node in root.callbacks.extra]
    names = [root.model._target_, _model_class(root), *(str(n) for n in extra if n)]
    return sorted({n for n in names if targets.allowed(n)})
