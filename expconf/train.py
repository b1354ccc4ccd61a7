"""``python -m expconf.train``: compose (Hydra) -> validate -> run -> report.

Argument rewriting, error lines and the one exit path live in :mod:`expconf.cli`.

Also importable as ``expconf.train(model=..., data=..., trainer=..., log=..., resume=...)``:
the module is callable and forwards to :func:`expconf.api.train`.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

from expconf.cli.report import exit_on_error
from expconf.launch import (
    CHILD_CONFIG_ENV,
    clean_dist_env,
    forget_child_config,
    global_rank,
    keep_child_config,
    read_child_config,
    snapshot_dist_env,
)
from expconf.redact import job_secrets, scrub_argv

MODEL_CLASS_KEY = "__model_config_class__"


def to_root(cfg: Any) -> Any:
    """Composed DictConfig -> validated RootConfig (the real dataclasses); raises ConfigError.

    Checks unknown keys (``+trainer.max_stepz=3`` composes in Hydra), types, choices, ranges,
    cross-field rules and local paths. Remote locations are probed, once per run, by
    :func:`expconf.storage.check_remote` (a job calls it right after this).
    """
    from omegaconf import OmegaConf

    from expconf.config.schema import check_known_keys

    check_known_keys(cfg)
    root: Any = OmegaConf.to_object(cfg)
    # Counting CUDA devices needs torch; validation must not import it. An 'auto' device count
    # is checked again by the builder with the real number.
    root.validate()
    root.validate_paths()
    return root


def compose_root(overrides: list[str]) -> Any:
    """``python -m expconf.train OVERRIDES`` composed and validated in-process: a RootConfig.

    For tools that need the run's config without running it (``expconf.describe``, the bench).
    """
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from expconf.cli.args import select_groups
    from expconf.config.store import register_all

    register_all()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="expconf.conf", version_base="1.3"):
        cfg = compose(config_name="expconf", overrides=select_groups(overrides))
    return to_root(cfg)


def _task(cfg: Any) -> None:
    """One job of Hydra's: validate, run, and report a failure through the one exit path."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    # resolve=False: an override such as key=${oops} must not be resolved just to be listed.
    overrides = [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)]  # type: ignore[union-attr]
    with job_secrets(OmegaConf.to_container(cfg, resolve=False)):
        try:
            _run(cfg, to_root(cfg), overrides)
        except Exception as e:
            # Reported here, not by Hydra: a failed job makes Hydra print an extra stderr line,
            # with the raw overrides (secrets included).
            exit_on_error(e, overrides)
            raise


def _run(cfg: Any, root: Any, overrides: list[str]) -> None:
    """The run part of a job, after validation: probe, accelerator check, child config, build.run, summary."""
    from omegaconf import OmegaConf

    env_before = snapshot_dist_env()
    from expconf.storage import check_remote

    check_remote(root)  # before torch and Lightning load: a wrong endpoint or key fails in seconds
    from expconf.hardware import check_accelerator

    check_accelerator(root.trainer)
    resolved: Any = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    model_cls = type(root.model)
    child = dict(resolved, **{MODEL_CLASS_KEY: f"{model_cls.__module__}.{model_cls.__qualname__}"})
    keep_child_config(child)  # handed to DDP children in private files, never in the environment
    scrub_argv()  # W&B and others record sys.argv
    try:
        from expconf.build import run

        result = run(root, task_config=resolved, overrides=overrides)
        if global_rank() == 0:  # other ranks know no checkpoint paths; one summary per job
            print(result.summary(), flush=True)
    finally:
        _end_job(env_before)


def _end_job(env_before: dict[str, str] | None = None) -> None:
    """Leave the process as the job found it, for the next job of a sweep."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    clean_dist_env(env_before)
    forget_child_config()


def run_child() -> None:
    """A DDP child rank: rebuild the job from the parent's resolved config."""
    from omegaconf import OmegaConf

    from expconf import targets
    from expconf.build import run
    from expconf.config.root import RootConfig
    from expconf.config.store import register_all

    register_all()
    data = read_child_config()
    model_cls = (
        targets.resolve(data.pop(MODEL_CLASS_KEY, "expconf.config.model.GPTModelConfig"), MODEL_CLASS_KEY)
        if MODEL_CLASS_KEY in data
        else None
    )
    schema = OmegaConf.structured(RootConfig)
    if model_cls is not None:
        schema.model = OmegaConf.structured(model_cls)
    root: Any = OmegaConf.to_object(OmegaConf.merge(schema, data))
    run(root, task_config=data)


def _hydra_main() -> None:
    import hydra

    hydra.main(version_base="1.3", config_path="pkg://expconf.conf", config_name="expconf")(_task)()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m expconf.train`` and the ``expconf-train`` script."""
    from expconf.cli.args import import_config_modules, reorder_options, select_groups

    args = list(sys.argv[1:] if argv is None else argv)
    if CHILD_CONFIG_ENV in os.environ and os.environ.get("LOCAL_RANK", "0") != "0" and not args:
        run_child()
        return
    from expconf.cli.help import answer_help_or_version

    if answer_help_or_version(args):
        return
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    sys.argv = [sys.argv[0], *reorder_options(select_groups(args))]
    from expconf.config.store import recording_sweep_dirs, register_all

    register_all()
    # This command's sweep dirs and secrets are its own: a second call in this process starts clean.
    with recording_sweep_dirs(), job_secrets():
        try:
            import_config_modules()
            from expconf.cli import hydra_guard

            hydra_guard.install()  # every composed config is checked before Hydra acts on it
            _hydra_main()
        except SystemExit:
            raise
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as e:
            exit_on_error(e, args)
            raise


class _CallableModule(types.ModuleType):
    """Lets ``expconf.train(...)`` work even after ``import expconf.train`` bound the module."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from expconf.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
