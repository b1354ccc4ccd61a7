"""Checkpoint names follow Lightning's template semantics (checked against Lightning itself)."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning.callbacks import ModelCheckpoint as LightningCheckpoint

from expconf.checkpoint.naming import default_template, format_checkpoint_name, is_end, is_last

METRICS = {"val_loss": 0.123456, "step": 1200, "epoch": 3, "consumed_samples": 38400.0, "epoch_test": 7}


def lightning_name(template: str, auto_insert: bool) -> str:
    cb = LightningCheckpoint(filename=template, auto_insert_metric_name=auto_insert)
    metrics = {k: torch.tensor(v) for k, v in METRICS.items()}
    return cb._format_checkpoint_name(template, metrics, auto_insert_metric_name=auto_insert)


@pytest.mark.parametrize(
    "template",
    [
        "megatron_gpt--{val_loss:.2f}-{step}-{consumed_samples}",
        "{epoch}-{step}",
        "{epoch:03d}",
        "gpt--{val_loss:.3f}-{step}-{consumed_samples}",
        "{missing:d}-{missing_float:.2f}-{step}",
        "{epoch}-{epoch_test}",
        "plain-name",
    ],
)
@pytest.mark.parametrize("auto_insert", [True, False])
def test_same_names_as_lightning(template: str, auto_insert: bool) -> None:
    assert format_checkpoint_name(template, METRICS, auto_insert) == lightning_name(template, auto_insert)


def test_nemo_template_example() -> None:
    name = format_checkpoint_name("megatron_gpt--{val_loss:.2f}-{step}-{consumed_samples}", METRICS)
    assert name == "megatron_gpt--val_loss=0.12-step=1200-consumed_samples=38400.0"


def test_default_template() -> None:
    assert default_template("gpt", "val_loss") == "gpt--{val_loss:.4f}-{epoch}-{step}"
    assert format_checkpoint_name(default_template("gpt", "val_loss"), METRICS) == (
        "gpt--val_loss=0.1235-epoch=3-step=1200"
    )
    assert default_template("gpt", None) == "gpt--{epoch}-{step}"


def test_slash_in_a_metric_name_stays_in_one_file() -> None:
    # Lightning would create a sub-folder here; a checkpoint name must be a single path component.
    assert format_checkpoint_name("{val/loss:.1f}", {"val/loss": 0.25}) == "val_loss=0.2"


@pytest.mark.parametrize(
    ("name", "last", "end"),
    [
        ("gpt--step=10-last.ckpt", True, False),
        ("gpt--step=10-last", True, False),  # a sharded checkpoint is a folder
        ("gpt--step=10-end.ckpt", False, True),
        ("gpt--step=10-end", False, True),
        ("gpt--step=10.ckpt", False, False),
        ("gpt--step=10-last.ckpt.meta", False, False),
        ("last.ckpt", True, False),  # Lightning's default last name
        ("blast.ckpt", False, False),
    ],
)
def test_last_and_end_names(name: str, last: bool, end: bool) -> None:
    assert (is_last(name), is_end(name)) == (last, end)
