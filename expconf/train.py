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

from expconf.errors import USER_ERROR_EXIT_CODE, ConfigError
from expconf.launch import CHILD_CONFIG_ENV, clean_dist_env, global_rank, snapshot_dist_env

MODEL_CLASS_KEY = "__model_config_class__"


def to_root(cfg: Any) -> Any:
    """Composed DictConfig -> validated RootConfig (the real dataclasses)."""
    from omegaconf import OmegaConf

    root: Any = OmegaConf.to_object(cfg)
    root.validate(world_size=_cheap_world_size(root))
    return root


def _cheap_world_size(root: Any) -> int:
    # Counting CUDA devices needs torch; validation must not import it. An 'auto' device count
    # is checked again by the builder with the real number.
    return int(root.trainer.devices_per_node(0)) * int(root.trainer.num_nodes)


def _task(cfg: Any) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    env_before = snapshot_dist_env()
    overrides = list(HydraConfig.get().overrides.task)
    root = to_root(cfg)
    from expconf.storage import check_remote

    check_remote(root)  # before torch and Lightning load: a wrong endpoint or key fails in seconds
    resolved: Any = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    model_cls = type(root.model)
    child = dict(resolved, **{MODEL_CLASS_KEY: f"{model_cls.__module__}.{model_cls.__qualname__}"})
    os.environ[CHILD_CONFIG_ENV] = yaml.safe_dump(child)
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
    os.environ.pop(CHILD_CONFIG_ENV, None)


def run_child() -> None:
    """A DDP child rank: rebuild the job from the parent's resolved config."""
    from omegaconf import OmegaConf

    from expconf import targets
    from expconf.build import run
    from expconf.config.root import RootConfig
    from expconf.config.store import register_all

    register_all()
    data = yaml.safe_load(os.environ[CHILD_CONFIG_ENV])
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
    from expconf.cli_args import one_line, reorder_options

    args = list(sys.argv[1:] if argv is None else argv)
    if CHILD_CONFIG_ENV in os.environ and os.environ.get("LOCAL_RANK", "0") != "0" and not args:
        run_child()
        return
    debug = os.environ.get("EXPCONF_DEBUG") == "1"
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    sys.argv = [sys.argv[0], *reorder_options(args)]
    from expconf.config.store import register_all

    register_all()
    try:
        _hydra_main()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        err = one_line(e) if not isinstance(e, ConfigError) else e
        failure = None if debug else _write_failure(e)
        if failure is not None:
            print(f"error: {failure}", file=sys.stderr)
            sys.exit(1)
        if debug or not _is_user_error(e):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)


def _write_failure(e: BaseException) -> BaseException | None:
    """The CheckpointWriteError behind ``e`` (storage down mid-run), if any: reported in one line."""
    from expconf.checkpoint.writer import CheckpointWriteError

    chain: BaseException | None = e
    while chain is not None:
        if isinstance(chain, CheckpointWriteError):
            return chain
        chain = chain.__cause__ or chain.__context__
    return None


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
    chain: BaseException | None = e
    while chain is not None:
        if isinstance(chain, user):
            return True
        chain = chain.__cause__ or chain.__context__
    return False


class _CallableModule(types.ModuleType):
    """Lets ``expconf.train(...)`` work even after ``import expconf.train`` bound the module."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from expconf.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    main()
