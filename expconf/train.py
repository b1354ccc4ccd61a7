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
from expconf.distributed.ranks import global_rank
from expconf.redact import job_secrets, scrub_argv


def to_root(cfg: Any) -> Any:
    """Composed DictConfig -> validated RootConfig (the real dataclasses); raises ConfigError.

    Checks unknown keys (``+trainer.max_stepz=3`` composes in Hydra), types, choices, ranges,
    cross-field rules and local paths. Remote locations are probed, once per run, by
    :func:`expconf.storage.check_remote`, which :func:`expconf.job.prepare` calls right after this.
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
            _run(cfg, overrides)
        except Exception as e:
            # Reported here, not by Hydra: a failed job makes Hydra print an extra stderr line,
            # with the raw overrides (secrets included).
            exit_on_error(e, overrides)
            raise


def _run(cfg: Any, overrides: list[str]) -> None:
    """The job: the same path as :func:`expconf.run` (validate, probe once, build, train), then the summary."""
    from expconf.job import prepare

    job = prepare(cfg)
    scrub_argv()  # W&B and others record sys.argv
    result = job.run(overrides)
    if global_rank() == 0:  # other ranks know no checkpoint paths; one summary per job
        print(result.summary(), flush=True)


def _hydra_main() -> None:
    import hydra

    hydra.main(version_base="1.3", config_path="pkg://expconf.conf", config_name="expconf")(_task)()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m expconf.train`` and the ``expconf-train`` script."""
    from expconf.cli.args import import_config_modules, reorder_options, select_groups
    from expconf.distributed.ranks import is_child

    args = list(sys.argv[1:] if argv is None else argv)
    if is_child() and not args:
        from expconf.job import run_child

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
        except SystemExit as e:
            from expconf.cli.report import in_chain

            if in_chain(e, (KeyboardInterrupt,)):
                sys.exit(130)  # Lightning turns Ctrl-C into exit(1); 130 is what the shell expects
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
