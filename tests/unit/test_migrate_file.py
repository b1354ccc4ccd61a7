"""Whole NeMo 1.0 files: trainer, model.optim, GPT shape and batch sizes migrate or become notes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from expconf import migrate_file as mf
from expconf.migrate import load, main, markdown_table, migrate_config, to_python, to_yaml
from expconf.migrate_core import Migration
from helpers import REPO, compose_and_validate

# A small GPT pretraining config in NeMo 1.0's layout (written for this test).
GPT = """
name: tiny_gpt
trainer:
  devices: 1
  num_nodes: 1
  accelerator: cpu
  precision: 16
  logger: false
  enable_checkpointing: false
  max_epochs: -1
  max_steps: 1000
  log_every_n_steps: 5
  val_check_interval: 50
  limit_val_batches: 4
  accumulate_grad_batches: 1
  gradient_clip_val: 0.5
exp_manager:
  name: ${name}
  resume_if_exists: true
  resume_ignore_no_checkpoint: true
  checkpoint_callback_params:
    monitor: val_loss
    save_top_k: 3
    model_parallel_size: ${multiply:${model.tensor_model_parallel_size}, ${model.pipeline_model_parallel_size}}
model:
  micro_batch_size: 2
  global_batch_size: 8
  tensor_model_parallel_size: 1
  pipeline_model_parallel_size: 1
  encoder_seq_length: 64
  max_position_embeddings: ${.encoder_seq_length}
  num_layers: 3
  hidden_size: 96
  ffn_hidden_size: 384
  num_attention_heads: 6
  num_query_groups: null
  hidden_dropout: 0.1
  attention_dropout: 0.1
  masked_softmax_fusion: true
  optim:
    name: fused_adam
    lr: 3e-4
    weight_decay: 0.05
    betas: [0.9, 0.95]
    sched:
      name: CosineAnnealing
      warmup_ratio: 0.1
      constant_steps: 200
      min_lr: 3e-5
"""


def _write(tmp_path: Path, text: str, name: str = "old.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _noted(m: Migration, key: str) -> bool:
    return any(n.startswith(f"{key}:") for n in m.notes)


def test_gpt_file_carries_trainer_optim_shape_and_batches(tmp_path: Path) -> None:
    m = migrate_config(load(_write(tmp_path, GPT)))
    expected = {
        "trainer.devices": 1,
        "trainer.accelerator": "cpu",
        "trainer.precision": "16-mixed",
        "trainer.max_epochs": None,
        "trainer.max_steps": 1000,
        "trainer.log_every_n_steps": 5,
        "trainer.val_check_interval": 50,
        "trainer.limit_val_batches": 4,
        "trainer.gradient_clip_val": 0.5,
        "log.name": "tiny_gpt",  # ${name} resolved against the whole file
        "log.ckpt.save_top_k": 3,
        "model.n_layer": 3,
        "model.n_embd": 96,
        "model.n_head": 6,
        "model.dropout": 0.1,
        "data.seq_length": 64,
        "data.micro_batch_size": 2,
        "data.global_batch_size": 8,
        "optim.lr": 3e-4,  # YAML 1.1 reads 3e-4 as a string; it arrives as the number
        "optim.weight_decay": 0.05,
        "optim.betas": [0.9, 0.95],
        "optim.warmup_steps": 100,  # warmup_ratio 0.1 x max_steps 1000
        "optim.decay_steps": 800,  # the decay ends constant_steps=200 before max_steps
        "optim.min_lr": 3e-5,
    }
    for key, value in expected.items():
        assert m.get(key) == value, key
    for key in (
        "trainer.logger",
        "trainer.enable_checkpointing",
        "trainer.accumulate_grad_batches",
        "trainer.precision",
        "trainer.max_epochs",
        "model.tensor_model_parallel_size",
        "model.masked_softmax_fusion",
        "model.max_position_embeddings",
        "model.optim.name",
        "model.optim.sched.warmup_ratio",
        "checkpoint_callback_params.model_parallel_size",
        "name",
    ):
        assert _noted(m, key), key
    assert m.unknown == []
    assert m.python_only == {"accumulate_grad_batches": 4}, "8 / (2 x 1 device x 1 node)"


@pytest.mark.parametrize(
    ("given", "expected"),
    [(16, "16-mixed"), ("16", "16-mixed"), ("bf16", "bf16-mixed"), (32, "32-true"), ("bf16-true", "bf16-true")],
)
def test_precision_gets_lightning_2_names(given: Any, expected: str) -> None:
    m = migrate_config({"trainer": {"precision": given}})
    assert m.get("trainer.precision") == expected


def test_precision_without_counterpart_is_a_note() -> None:
    m = migrate_config({"trainer": {"precision": "transformer-engine"}})
    assert m.get("trainer.precision") is None and _noted(m, "trainer.precision")


def test_trainer_conversions_and_notes() -> None:
    m = migrate_config(
        {
            "trainer": {
                "devices": -1,
                "strategy": {"_target_": "lightning.pytorch.strategies.DDPStrategy", "find_unused_parameters": True},
                "gradient_clip_val": 0.0,
                "limit_val_batches": 0.0,
                "amp_backend": "apex",
                "val_check_interval": 2.5,
                "made_up": 1,
            }
        }
    )
    assert m.get("trainer.devices") == -1 and _noted(m, "trainer.devices")
    assert m.get("trainer.strategy") == "ddp_find_unused_parameters_true"
    assert m.get("trainer") is not None and m.get("trainer")["gradient_clip_val"] is None
    assert m.get("trainer.limit_val_batches") == 0
    assert _noted(m, "trainer.amp_backend")
    # 2.5 is not an interval expconf accepts: reported, not emitted
    assert "val_check_interval" not in m.get("trainer") and _noted(m, "trainer.val_check_interval")
    assert m.unknown == ["trainer.made_up"]


def test_accumulation_becomes_batch_sizes_for_a_task_config() -> None:
    doc = {
        "trainer": {"devices": 2, "num_nodes": 3, "accumulate_grad_batches": 4},
        "model": {"train_ds": {"batch_size": 8, "manifest_filepath": "x.json"}, "encoder": {"d_model": 4}},
    }
    m = migrate_config(doc)
    assert m.get("data.micro_batch_size") == 8
    assert m.get("data.global_batch_size") == 8 * 2 * 3 * 4
    assert _noted(m, "trainer.accumulate_grad_batches") and _noted(m, "model.encoder") and _noted(m, "model.train_ds")
    assert m.python_only == {"accumulate_grad_batches": 4}


def test_all_devices_counts_one_device_and_says_so() -> None:
    m = migrate_config(
        {"trainer": {"devices": -1, "accumulate_grad_batches": 2}, "model": {"train_ds": {"batch_size": 16}}}
    )
    assert m.get("data.global_batch_size") == 32
    assert any("counted as 1" in n for n in m.notes)


def test_other_optimizers_are_notes_not_a_silent_lr() -> None:
    m = migrate_config({"model": {"optim": {"name": "novograd", "lr": 0.01, "sched": {"name": "CosineAnnealing"}}}})
    assert m.get("optim") is None and _noted(m, "model.optim.name")


def test_no_schedule_keeps_the_learning_rate_constant() -> None:
    m = migrate_config({"model": {"optim": {"_target_": "torch.optim.AdamW", "lr": "2e-4", "betas": [0.8, 0.99]}}})
    assert m.get("optim") == {"lr": 2e-4, "betas": [0.8, 0.99], "min_lr": 2e-4, "warmup_steps": 0}


def test_noam_scale_becomes_the_peak_learning_rate() -> None:
    doc = {
        "model": {
            "encoder": {"d_model": 256},
            "optim": {
                "name": "adamw",
                "lr": 5.0,
                "sched": {"name": "NoamAnnealing", "d_model": "${model.encoder.d_model}", "warmup_steps": 400},
            },
        }
    }
    m = migrate_config(doc)
    assert m.get("optim.lr") == pytest.approx(5.0 / (256 * 400) ** 0.5)
    assert _noted(m, "model.optim.lr") and _noted(m, "model.optim.sched.name")
    no_warmup = migrate_config(
        {"model": {"optim": {"name": "adamw", "lr": 5.0, "sched": {"name": "NoamAnnealing", "d_model": 256}}}}
    )
    assert no_warmup.get("optim.lr") is None and _noted(no_warmup, "model.optim.lr")


def test_unresolvable_interpolations_stay_visible(tmp_path: Path) -> None:
    doc = {"trainer": {"max_steps": "${model.max_steps}", "devices": "???"}, "model": {}}
    m = migrate_config(doc)
    assert m.unresolved == {"trainer.max_steps": "${model.max_steps}", "trainer.devices": "???"}
    text = to_yaml(m)
    assert "# max_steps: ${model.max_steps}" in text and "# devices: ???" in text
    assert "max_steps" not in (yaml.safe_load(text).get("trainer") or {})


def test_new_schema_keys_are_carried_as_soon_as_they_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    """ffn_hidden_size / num_query_groups map to whatever the model schema has when migrating."""
    model = yaml.safe_load(GPT)["model"] | {"num_query_groups": 2}
    without = Migration("x")
    monkeypatch.setattr(mf, "schema_keys", lambda: {"model.n_layer", "model.n_embd", "model.n_head"})
    mf.migrate_model(without, model, True, lambda v, where: v)
    assert without.get("model.n_kv_head") is None and _noted(without, "model.num_query_groups")
    with_keys = Migration("x")
    monkeypatch.setattr(mf, "schema_keys", lambda: {"model.n_kv_head", "model.ffn_hidden_size", "data.seq_length"})
    mf.migrate_model(with_keys, model, True, lambda v, where: v)
    assert with_keys.get("model.n_kv_head") == 2 and with_keys.get("model.ffn_hidden_size") == 384


def test_composes_with_gpt_recipe(tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _write(tmp_path, GPT.replace("accelerator: cpu", "accelerator: cpu\n  strategy: ddp"))
    assert main([str(old), "-o", str(workdir / "conf" / "experiment" / "tiny.yaml"), "-q"]) == 0
    root = compose_and_validate(["+recipe=gpt", "--config-dir", "conf", "+experiment=tiny"], monkeypatch)
    assert root.trainer.precision == "16-mixed" and root.trainer.max_steps == 1000
    assert root.trainer.strategy == "ddp" and root.trainer.gradient_clip_val == 0.5
    assert (root.model.n_layer, root.model.n_head, root.model.n_embd) == (3, 6, 96)
    assert (root.data.micro_batch_size, root.data.global_batch_size, root.data.seq_length) == (2, 8, 64)
    assert root.optim.lr == 3e-4 and root.optim.warmup_steps == 100 and root.optim.decay_steps == 800
    assert root.log.name == "tiny_gpt"


def test_docs_table_is_generated_from_the_rules() -> None:
    docs = (REPO / "docs" / "migration.md").read_text()
    assert markdown_table() in docs, "run: python -m expconf.migrate --table, and paste it into docs/migration.md"
    rows = markdown_table().splitlines()[2:]
    sources = {r.split("`")[1] for r in rows}
    for key in ("trainer.precision", "trainer.accumulate_grad_batches", "model.optim.lr", "model.num_layers"):
        assert key in sources, key


def test_python_output_builds_the_objects_and_trains_two_steps(
    tmp_path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from toys import Toy

    code = to_python(migrate_config(load(_write(tmp_path, GPT))))
    scope: dict[str, Any] = {}
    exec(compile(code, "migrated.py", "exec"), scope)
    assert scope["trainer_kwargs"]["precision"] == "16-mixed" and scope["trainer_kwargs"]["max_steps"] == 1000
    assert scope["trainer_kwargs"]["accumulate_grad_batches"] == 4
    assert scope["optim"].lr == 3e-4 and scope["optim"].decay_steps == 800
    assert scope["model_config"].n_layer == 3 and scope["data_config"].global_batch_size == 8
    assert scope["log"].name == "tiny_gpt" and scope["log"].ckpt.save_top_k == 3
    assert scope["resume"].resume_if_exists is True

    result = scope["run"](
        Toy(), None, max_steps=2, precision="32-true", val_check_interval=2, enable_progress_bar=False
    )
    assert result.global_step == 2
    assert result.run_dir == workdir / "nemo_experiments" / "tiny_gpt"
