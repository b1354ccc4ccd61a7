"""The config dataclasses and the objects they build cannot drift apart.

``log.ckpt`` / ``ModelCheckpoint``, ``log`` / ``NeMoLogger`` and ``resume`` / ``AutoResume``: every
config field is a constructor keyword with the same default, every constructor keyword is a
config field, and each argument rule is one function that both sides call. Deliberate
differences are listed here, each with its reason.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from expconf import AutoResume, ModelCheckpoint, NeMoLogger
from expconf.config.ckpt import CheckpointConfig
from expconf.config.log import LogConfig
from expconf.config.resume import ResumeConfig
from expconf.errors import ConfigError

TWINS: list[tuple[type, Callable[..., Any]]] = [
    (CheckpointConfig, ModelCheckpoint),
    (LogConfig, NeMoLogger),
    (ResumeConfig, AutoResume),
]

#: Config fields whose default differs from the constructor's on purpose.
OTHER_DEFAULT: dict[tuple[type, str], str] = {
    (CheckpointConfig, "storage_options"): "a dataclass needs a factory ({}); the keyword's None means the same",
    (LogConfig, "ckpt"): "the CLI always checkpoints (build_checkpoint); NeMoLogger installs none unless given",
    (LogConfig, "wandb"): "settings that build a WandbLogger when active; the keyword takes the logger",
    (LogConfig, "tensorboard"): "TensorBoard is on in the CLI, an expconf opinion; NeMoLogger's default is NeMo's",
}

#: Config fields with no constructor keyword.
CONFIG_ONLY: dict[tuple[type, str], str] = {
    (LogConfig, "allow_existing_dir"): "consent checked by LogConfig.validate before any object exists",
}

#: Constructor keywords with no config field.
CONSTRUCTOR_ONLY: dict[tuple[type, str], str] = {
    (CheckpointConfig, "save_optim_on_train_end"): "NeMo keyword; the CLI's '-end' keeps the optimizer state",
    (CheckpointConfig, "always_save_context"): "NeMo's name of always_save_nemo",
    (CheckpointConfig, "save_context_on_train_end"): "NeMo's name of save_nemo_on_train_end",
    (LogConfig, "extra_loggers"): "Logger objects, which have no config form",
    (ResumeConfig, "restore_config"): "a RestoreConfig object; resume.import_path is its config spelling",
    (ResumeConfig, "resume_from_path"): "NeMo's current name of path",
    (ResumeConfig, "resume_from_directory"): "NeMo's current name of dirpath",
}


def field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def keywords(constructor: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(constructor).parameters
    return {n: p for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD}


@pytest.mark.parametrize(("config", "constructor"), TWINS, ids=lambda t: t.__name__)
def test_every_field_is_a_keyword_with_the_same_default(config: type, constructor: Callable[..., Any]) -> None:
    params = keywords(constructor)
    for f in dataclasses.fields(config):
        if (config, f.name) in CONFIG_ONLY:
            assert f.name not in params, f"{f.name} is a keyword now: remove it from CONFIG_ONLY"
            continue
        assert f.name in params, f"{config.__name__}.{f.name} is not a keyword of {constructor.__name__}"
        if (config, f.name) in OTHER_DEFAULT:
            continue
        assert field_default(f) == params[f.name].default, (
            f"{config.__name__}.{f.name} defaults to {field_default(f)!r}, "
            f"{constructor.__name__}({f.name}=...) to {params[f.name].default!r}"
        )


@pytest.mark.parametrize(("config", "constructor"), TWINS, ids=lambda t: t.__name__)
def test_every_keyword_is_a_field(config: type, constructor: Callable[..., Any]) -> None:
    names = {f.name for f in dataclasses.fields(config)}
    for name in keywords(constructor):
        if (config, name) in CONSTRUCTOR_ONLY:
            assert name not in names, f"{name} is a field now: remove it from CONSTRUCTOR_ONLY"
            continue
        assert name in names, f"{constructor.__name__}({name}=...) has no field in {config.__name__}"


def test_the_listed_exceptions_name_real_fields_and_keywords() -> None:
    for config, name in [*OTHER_DEFAULT, *CONFIG_ONLY]:
        assert name in {f.name for f in dataclasses.fields(config)}, (config, name)
    twin = dict(TWINS)
    for config, name in CONSTRUCTOR_ONLY:
        assert name in keywords(twin[config]), (config, name)


# -- the shared argument rules ------------------------------------------------------------------------

RULES = [
    # (config, its validate() prefix, the constructor's prefix, bad arguments, key named)
    (CheckpointConfig, "log.ckpt.", "ModelCheckpoint.", {"mode": "mid"}, "mode"),
    (CheckpointConfig, "log.ckpt.", "ModelCheckpoint.", {"save_top_k": -2}, "save_top_k"),
    (CheckpointConfig, "log.ckpt.", "ModelCheckpoint.", {"every_n_train_steps": -1}, "every_n_train_steps"),
    (CheckpointConfig, "log.ckpt.", "ModelCheckpoint.", {"every_n_epochs": -1}, "every_n_epochs"),
    (CheckpointConfig, "log.ckpt.", "ModelCheckpoint.", {"train_time_interval": -1.0}, "train_time_interval"),
    (
        CheckpointConfig,
        "log.ckpt.",
        "ModelCheckpoint.",
        {"every_n_train_steps": 2, "train_time_interval": 5.0},
        "train_time_interval",
    ),
    (
        LogConfig,
        "log.",
        "NeMoLogger.",
        {"log_local_rank_0_only": True, "log_global_rank_0_only": True},
        "log_global_rank_0_only",
    ),
    (ResumeConfig, "resume.", "AutoResume.", {"path": "a.ckpt", "import_path": "b.ckpt"}, "import_path"),
]


@pytest.mark.parametrize(("config", "prefix", "own_prefix", "bad", "key"), RULES)
def test_config_and_constructor_refuse_with_one_rule(
    config: type, prefix: str, own_prefix: str, bad: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as from_config:
        config(**bad).validate()
    with pytest.raises(ConfigError) as from_object:
        dict(TWINS)[config](**bad)
    assert from_config.value.key == prefix + key and from_object.value.key == own_prefix + key
    # One function decides: the same value, expectation (up to the key prefix) and hint.
    shown = from_object.value.expected.replace(own_prefix, prefix)
    assert (from_config.value.value, from_config.value.expected, from_config.value.hint) == (
        from_object.value.value,
        shown,
        from_object.value.hint,
    )


@pytest.mark.parametrize(
    "good",
    [
        {"every_n_train_steps": 0, "every_n_epochs": 0},  # 0 is off, as in Lightning
        {"train_time_interval": 0.0},  # due at every step
        {"every_n_train_steps": 0, "train_time_interval": 5.0},  # an off trigger does not count
        {"save_top_k": -1, "mode": "max"},
    ],
)
def test_config_and_constructor_accept_the_same_checkpoint_arguments(good: dict[str, Any]) -> None:
    CheckpointConfig(**good).validate()
    ModelCheckpoint(**good)


def test_the_constructor_accepts_a_timedelta_as_lightning_does() -> None:
    assert ModelCheckpoint(train_time_interval=timedelta(minutes=2)).train_time_interval == timedelta(minutes=2)
    with pytest.raises(ValueError, match="train_time_interval"):
        ModelCheckpoint(train_time_interval=timedelta(seconds=-1))


def test_model_checkpoint_refusals_are_lightnings_exception_type() -> None:
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    with pytest.raises(MisconfigurationException, match="save_top_k"):
        ModelCheckpoint(save_top_k=-5)


def test_logger_kwargs_are_every_field_but_the_built_ones() -> None:
    cfg = LogConfig(name="exp", version="v1", files_to_copy=["a.txt"], log_local_rank_0_only=True)
    kwargs = cfg.logger_kwargs()
    assert kwargs["files_to_copy"] == ["a.txt"] and kwargs["files_to_copy"] is not cfg.files_to_copy
    built_separately = {"ckpt", "wandb", "tensorboard"}
    assert set(kwargs) == {f.name for f in dataclasses.fields(LogConfig)} - built_separately - {
        name for c, name in CONFIG_ONLY if c is LogConfig
    }
    NeMoLogger(**kwargs)
