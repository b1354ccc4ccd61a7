"""expconf.job: expconf.run's validation, the job it hands to DDP children, and the CLI on the same path."""

from __future__ import annotations

from typing import Any

import pytest
from omegaconf import OmegaConf

import expconf
from expconf import job
from expconf.config.root import RootConfig
from expconf.errors import ConfigError
from helpers import compose_and_validate


def test_run_is_public_and_lazy() -> None:
    assert expconf.run is job.run and "run" in expconf.__all__


def test_prepare_validates_a_dictconfig_as_the_cli_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("expconf.hardware.check_accelerator", lambda trainer: None)
    cfg = OmegaConf.structured(RootConfig)
    cfg.trainer.max_steps = -7
    with pytest.raises(ConfigError, match=r"trainer\.max_steps"):
        job.prepare(cfg)
    cfg.trainer.max_steps = 3
    prepared = job.prepare(cfg)
    assert isinstance(prepared.root, RootConfig) and prepared.root.trainer.max_steps == 3
    assert prepared.config["trainer"]["max_steps"] == 3  # the resolved container, for config.yaml


def test_prepare_takes_a_root_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("expconf.hardware.check_accelerator", lambda trainer: None)
    root = RootConfig()
    root.seed = 11
    prepared = job.prepare(root)
    assert prepared.root is root and prepared.config["seed"] == 11
    root.trainer.max_steps = 0
    with pytest.raises(ConfigError, match=r"trainer\.max_steps"):
        job.prepare(root)


def test_children_get_the_model_class_and_the_targets_the_parent_allowed() -> None:
    root = RootConfig()
    root.callbacks.extra = [{"_target_": "pytorch_lightning.callbacks.LearningRateMonitor"}]
    assert job._model_class(root) == "expconf.config.model.GPTModelConfig"
    assert job._trusted(root) == sorted(
        {
            root.model._target_,
            "expconf.config.model.GPTModelConfig",
            "pytorch_lightning.callbacks.LearningRateMonitor",
        }
    )


def test_the_cli_goes_through_job_prepare(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    prepare = job.prepare
    monkeypatch.setattr(job, "prepare", lambda cfg: seen.append(cfg) or prepare(cfg))
    root = compose_and_validate(["+recipe=gpt", "trainer.max_steps=5"], monkeypatch)
    assert len(seen) == 1 and root.trainer.max_steps == 5
