"""expconf.cli.args: groups in the defaults list (``recipe=gpt`` without ``+``, precedence independent of argv
order) and Hydra options moved in front of the overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from expconf.cli.args import DEFAULTS_GROUPS, reorder_options, select_groups
from expconf.config.store import register_all
from helpers import REPO


def _compose(argv: list[str]) -> Any:
    """What ``python -m expconf.train ARGV`` composes (the same rewriting as main)."""
    register_all()
    with initialize_config_module(config_module="expconf.conf", version_base="1.3"):
        return OmegaConf.to_object(compose("expconf", overrides=select_groups(argv)))


def test_defaults_groups_match_the_primary_config() -> None:
    defaults = yaml.safe_load((REPO / "conf" / "expconf.yaml").read_text())["defaults"]
    slots = [next(iter(d)) for d in defaults if isinstance(d, dict) and None in d.values()]
    assert tuple(slots) == DEFAULTS_GROUPS


@pytest.mark.parametrize(
    "argv",
    [
        ["+recipe=gpt", "+model=gpt_124m"],
        ["+model=gpt_124m", "+recipe=gpt"],
        ["recipe=gpt", "model=gpt_124m"],
        ["model=gpt_124m", "recipe=gpt"],
    ],
)
def test_a_model_group_wins_over_the_recipe_in_any_order(argv: list[str]) -> None:
    root = _compose(argv)
    assert root.model.n_layer == 12 and root.model.n_embd == 768
    assert root.trainer.max_steps == 400, "the rest of the gpt recipe is kept"


def test_a_trainer_preset_changes_only_its_own_keys() -> None:
    root = _compose(["trainer=gpu", "recipe=gpt"])
    assert root.trainer.accelerator == "gpu" and root.trainer.precision == "bf16-mixed"
    assert root.trainer.max_steps == 400 and root.trainer.val_check_interval == 100


@pytest.mark.parametrize("order", [0, 1])
def test_experiment_wins_over_the_recipe_and_the_command_line_over_both(order: int) -> None:
    groups = ["+experiment=megatron_gpt_migrated", "+recipe=gpt"]
    root = _compose(groups[::-1] if order else groups)
    assert root.log.name == "megatron_gpt" and root.log.ckpt.save_top_k == 10
    assert root.trainer.max_steps == 400
    root = _compose(["log.name=mine", *(groups[::-1] if order else groups)])
    assert root.log.name == "mine"


def test_plus_spelling_is_rewritten_only_for_defaults_groups() -> None:
    argv = ["+recipe=gpt", "+experiment=x", "+trainer.max_stepz=3", "+log.foo=1", "++recipe=gpt", "model.n_layer=2"]
    assert select_groups(argv) == ["recipe=gpt", "experiment=x", *argv[2:]]
    own_primary = ["--config-name", "mine", "+recipe=gpt"]
    assert select_groups(own_primary) == own_primary


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["+recipe=gpt", "--info", "defaults"], ["--info", "defaults", "+recipe=gpt"]),
        (["--info", "+recipe=gpt"], ["--info", "+recipe=gpt"]),
        (["+recipe=gpt", "-i", "searchpath"], ["-i", "searchpath", "+recipe=gpt"]),
        (["+recipe=gpt", "--cfg", "hydra", "--resolve"], ["--cfg", "hydra", "--resolve", "+recipe=gpt"]),
        (["-sc", "install=bash"], ["-sc", "install=bash"]),
        (["a=1", "--config-dir", "conf", "b=2", "-m"], ["--config-dir", "conf", "-m", "a=1", "b=2"]),
    ],
)
def test_options_move_in_front_with_their_values(argv: list[str], expected: list[str]) -> None:
    assert reorder_options(argv) == expected


def test_a_recipe_includes_a_model_preset_that_a_model_option_replaces(tmp_path: Path) -> None:
    """The pattern for recipes: ``- /model/NAME@model`` in their defaults, so ``model=...`` still wins."""
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "r124.yaml").write_text(
        "# @package _global_\ndefaults:\n  - /model/gpt_124m@model\n  - _self_\nmodel:\n  dropout: 0.1\n"
    )
    search = f"hydra.searchpath=[file://{tmp_path}]"
    root = _compose([search, "recipe=r124"])
    assert (root.model.n_layer, root.model.dropout) == (12, 0.1)
    for argv in (["recipe=r124", "model=gpt_tiny"], ["+model=gpt_tiny", "+recipe=r124"]):
        root = _compose([search, *argv])
        assert (root.model.n_layer, root.model.dropout) == (4, 0.0)
