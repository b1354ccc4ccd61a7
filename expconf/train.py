"""``python -m expconf.train``: compose (Hydra) -> validate -> build -> train.

Also importable as ``expconf.train(model=..., data=..., trainer=..., log=..., resume=...)``:
the module is callable and forwards to :func:`expconf.api.train`.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

import yaml

from expconf.errors import DEBUG_ENV, USER_ERROR_EXIT_CODE, ConfigError
from expconf.launch import (
    CHILD_CONFIG_ENV,
    clean_dist_env,
    forget_child_config,
    global_rank,
    keep_child_config,
    read_child_config,
    snapshot_dist_env,
)
from expconf.redact import scrub_argv

MODEL_CLASS_KEY = "__model_config_class__"


def to_root(cfg: Any) -> Any:
    """Composed DictConfig -> validated RootConfig (the real dataclasses); raises ConfigError.

    Checks unknown keys (``+trainer.max_stepz=3`` composes in Hydra), types, choices, ranges,
    cross-field rules and local paths. Remote locations are probed by ``build.check_remote``.
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

    from expconf.cli_args import select_groups
    from expconf.config.store import register_all

    register_all()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="expconf.conf", version_base="1.3"):
        cfg = compose(config_name="expconf", overrides=select_groups(overrides))
    return to_root(cfg)


def _task(cfg: Any) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    env_before = snapshot_dist_env()
    # resolve=False: an override such as key=${oops} must not be resolved just to be listed.
    overrides = [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)]  # type: ignore[union-attr]
    try:
        root = to_root(cfg)
        if root.callbacks.preemption:
            from expconf import early_signal

            early_signal.record(root.callbacks.preemption_signal)  # honoured once training starts
        from expconf.storage import check_remote

        check_remote(root)  # before torch and Lightning load: a wrong endpoint or key fails in seconds
        from expconf.hardware import check_accelerator

        check_accelerator(root.trainer)
        resolved: Any = OmegaConf.to_container(cfg, resolve=True)
    except Exception as e:
        # Reported here, not by Hydra: a failed job makes Hydra print an extra stderr line.
        _forget_sweep_file(e, sys.argv)
        _fail_or_raise(e, overrides)
        raise
    assert isinstance(resolved, dict)
    model_cls = type(root.model)
    child = dict(resolved, **{MODEL_CLASS_KEY: f"{model_cls.__module__}.{model_cls.__qualname__}"})
    keep_child_config(child)  # handed to DDP children in private files, never in the environment
    scrub_argv()  # W&B and others record sys.argv
    try:
        from expconf.build import run

        try:
            result = run(root, task_config=resolved, overrides=overrides)
        except Exception as e:
            _report_failed_job(e, overrides)
            raise
        if global_rank() == 0:  # other ranks know no checkpoint paths; one summary per job
            print(result.summary(), flush=True)
    finally:
        _end_job(env_before)


#: Comma-separated modules imported before composition, so a user repo can register its own
#: dataclasses (``expconf.config.store.store``) for ``python -m expconf.train --config-dir``.
CONFIG_MODULES_ENV = "EXPCONF_CONFIG_MODULES"


def _import_config_modules() -> None:
    import importlib

    for name in (n.strip() for n in os.environ.get(CONFIG_MODULES_ENV, "").split(",")):
        if not name:
            continue
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(
                CONFIG_MODULES_ENV, name, "an importable module (is its folder on PYTHONPATH?)", str(e)
            ) from e


def _forget_sweep_file(e: BaseException, argv: list[str]) -> None:
    """A sweep stopped by a config error leaves nothing behind: drop the multirun.yaml Hydra wrote."""
    from expconf.config import store

    if _debug() or not _is_user_error(e) or not ({"-m", "--multirun"} & set(argv)):
        return
    for root, sweep in sorted(store.sweep_dirs, key=lambda p: len(p[1]), reverse=True):
        try:
            os.unlink(os.path.join(sweep, "multirun.yaml"))
        except OSError:
            pass
        folder = sweep
        while os.path.commonpath([folder, root]) == root and os.path.isdir(folder):  # Hydra made these
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV) == "1"


def _fail_or_raise(e: BaseException, argv: list[str]) -> None:
    """Exit with one ``error:`` line for a user mistake; return (so the caller re-raises) otherwise."""
    from expconf.cli_args import one_line
    from expconf.redact import redact_text

    if _debug() or not _is_user_error(e):
        return
    print(f"error: {redact_text(str(one_line(e, argv)))}", file=sys.stderr, flush=True)
    sys.exit(USER_ERROR_EXIT_CODE)


def _report_failed_job(e: BaseException, argv: list[str]) -> None:
    """Report a failed job here and exit; Hydra would print the raw overrides, secrets included.

    Returns only under EXPCONF_DEBUG=1, so that the caller re-raises with the full traceback.
    """
    import traceback

    from expconf.redact import known_secrets, redact_text

    _fail_or_raise(e, argv)  # a user mistake: one line, exit 2
    if _debug():
        return
    failure = _write_failure(e)
    if failure is not None:  # storage died mid-run: one line, the previous checkpoint stays resumable
        print(f"error: {redact_text(str(failure), known_secrets())}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(redact_text("".join(traceback.format_exception(e)), known_secrets()), file=sys.stderr, flush=True)
    sys.exit(1)


def _end_job(env_before: dict[str, str] | None = None) -> None:
    """Leave the process as the job found it, for the next job of a sweep."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    clean_dist_env(env_before)
    forget_child_config()
    from expconf import early_signal

    early_signal.release()


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
    from expconf.cli_args import reorder_options, select_groups

    args = list(sys.argv[1:] if argv is None else argv)
    if CHILD_CONFIG_ENV in os.environ and os.environ.get("LOCAL_RANK", "0") != "0" and not args:
        run_child()
        return
    from expconf.cli_help import answer_help_or_version

    if answer_help_or_version(args):
        return
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    sys.argv = [sys.argv[0], *reorder_options(select_groups(args))]
    from expconf.config.store import register_all

    register_all()
    from expconf.config import store

    store.sweep_dirs.clear()
    try:
        _import_config_modules()
        from expconf import hydra_guard

        hydra_guard.install()  # every composed config is checked before Hydra acts on it
        _hydra_main()
    except SystemExit as e:
        if _in_chain(e, (KeyboardInterrupt,)):
            sys.exit(130)  # Lightning turns Ctrl-C into exit(1); 130 is what the shell expects
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        failure = None if _debug() else _write_failure(e)
        if failure is not None:
            print(f"error: {failure}", file=sys.stderr)
            sys.exit(1)
        _forget_sweep_file(e, args)
        _fail_or_raise(e, args)
        raise


def _in_chain(e: BaseException, types_: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of one of ``types_`` in ``e``'s cause/context chain, if any."""
    chain: BaseException | None = e
    while chain is not None:
        if isinstance(chain, types_):
            return chain
        chain = chain.__cause__ or chain.__context__
    return None


def _write_failure(e: BaseException) -> BaseException | None:
    """The CheckpointWriteError behind ``e`` (storage down mid-run), if any: reported in one line."""
    from expconf.checkpoint.writer import CheckpointWriteError

    return _in_chain(e, (CheckpointWriteError,))


def _is_user_error(e: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from expconf.resume import IncompleteCheckpointError, NotFoundError, TrainingCompletedError

    user = (
        ConfigError,
        HydraException,
        OmegaConfBaseException,
        NotFoundError,
        IncompleteCheckpointError,
        TrainingCompletedError,
        yaml.YAMLError,
    )
    return _in_chain(e, user) is not None


class _CallableModule(types.ModuleType):
    """Lets ``expconf.train(...)`` work even after ``import expconf.train`` bound the module."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from expconf.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
