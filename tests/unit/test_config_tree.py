"""The config tree: every dataclass composes, overrides type-check, the store refuses overwrites."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from expconf.cli.args import select_groups
from expconf.config import RootConfig
from expconf.config.store import StoreOverwriteError, register_all, store
from expconf.errors import ConfigError


def _compose(overrides: list[str]) -> RootConfig:
    register_all()
    with initialize_config_module(config_module="expconf.conf", version_base="1.3"):
        cfg = compose("expconf", overrides=select_groups(overrides))
    root = OmegaConf.to_object(cfg)
    assert isinstance(root, RootConfig)
    return root


def test_every_root_key_composes_with_the_gpt_recipe() -> None:
    root = _compose(["+recipe=gpt"])
    assert {f.name for f in dataclasses.fields(root)} == {
        "trainer",
        "log",
        "resume",
        "model",
        "data",
        "optim",
        "callbacks",
        "seed",
    }
    assert root.log.name == "gpt" and root.model.n_layer == 4
    root.validate(world_size=1)


@pytest.mark.parametrize(
    ("override", "path", "value"),
    [
        ("log.ckpt.save_top_k=5", ("log", "ckpt", "save_top_k"), 5),
        ("resume.resume_if_exists=true", ("resume", "resume_if_exists"), True),
        ("trainer.max_steps=100", ("trainer", "max_steps"), 100),
        ("log.wandb.project=x", ("log", "wandb", "project"), "x"),
        ("model.n_layer=2", ("model", "n_layer"), 2),
        ("data.global_batch_size=64", ("data", "global_batch_size"), 64),
        ("optim.lr=0.01", ("optim", "lr"), 0.01),
    ],
)
def test_spec_overrides_apply(override: str, path: tuple[str, ...], value: object) -> None:
    node: object = _compose(["+recipe=gpt", override])
    for part in path:
        node = getattr(node, part)
    assert node == value


def test_wrong_type_is_rejected() -> None:
    with pytest.raises(Exception) as info:
        _compose(["trainer.max_steps=lots"])
    assert isinstance(info.value.__cause__ or info.value, (ValidationError, Exception))
    assert "max_steps" in str(info.value)


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(Exception) as info:
        _compose(["trainer.max_stepz=3"])
    assert "max_stepz" in str(info.value)
    assert isinstance(info.value.__cause__, (ConfigKeyError, type(None))) or "max_stepz" in str(info.value)


def test_store_refuses_overwrite() -> None:
    register_all()
    with pytest.raises(StoreOverwriteError):
        store(RootConfig, name="expconf_schema")
    store({"a": 1}, group="test_group_unique", name="one")
    with pytest.raises(StoreOverwriteError):
        store({"a": 2}, group="test_group_unique", name="one")


def test_cross_field_rules() -> None:
    root = _compose(["+recipe=gpt", "data.global_batch_size=30", "data.micro_batch_size=16"])
    with pytest.raises(ConfigError, match=r"data\.global_batch_size"):
        root.validate(world_size=1)
    root = _compose(["+recipe=gpt", "model.n_embd=130", "model.n_head=4"])
    with pytest.raises(ConfigError, match=r"model\.n_embd"):
        root.validate(world_size=1)


def test_composing_does_not_import_torch() -> None:
    code = (
        "import sys; from expconf.train import main; sys.argv=['x','+recipe=gpt','--cfg','job'];\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "bad=[m for m in ('torch','pytorch_lightning','wandb','s3fs') if m in sys.modules]; print('HEAVY', bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
