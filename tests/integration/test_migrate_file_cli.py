"""A migrated whole NeMo 1.0 file composes with +recipe=gpt and its settings arrive in ``--cfg job``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import run_cli

pytestmark = pytest.mark.slow

# A Llama-like NeMo 1.0 pretraining config (written for this test).
OLD = """
name: small_llama
trainer:
  devices: 2
  num_nodes: 1
  accelerator: gpu
  precision: bf16
  logger: false
  enable_checkpointing: false
  max_epochs: -1
  max_steps: 5000
  log_every_n_steps: 20
  val_check_interval: 250
  limit_val_batches: 10
  accumulate_grad_batches: 1
  gradient_clip_val: 1.0
exp_manager:
  name: ${name}
  resume_if_exists: true
  resume_ignore_no_checkpoint: true
  checkpoint_callback_params:
    monitor: val_loss
    save_top_k: 2
    filename: '${name}--{val_loss:.2f}-{step}'
model:
  micro_batch_size: 4
  global_batch_size: 32
  tensor_model_parallel_size: 2
  encoder_seq_length: 1024
  num_layers: 8
  hidden_size: 512
  ffn_hidden_size: 1408
  num_attention_heads: 8
  num_query_groups: 4
  normalization: rmsnorm
  position_embedding_type: rope
  activation: fast-swiglu
  optim:
    name: distributed_fused_adam
    lr: 6e-4
    weight_decay: 0.1
    betas: [0.9, 0.95]
    sched:
      name: CosineAnnealing
      warmup_steps: 100
      constant_steps: 0
      min_lr: 6e-5
"""


def _leaves(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, dict) and v:
            out |= _leaves(v, f"{prefix}{k}.")
        else:
            out[prefix + k] = v
    return out


def test_migrated_file_settings_arrive_unchanged_in_cfg_job(tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(OLD)
    mig = run_cli(["old.yaml", "-o", "conf/experiment/old.yaml"], cwd=tmp_path, module="expconf.migrate")
    assert mig.returncode == 0, mig.stderr
    assert "note: model.tensor_model_parallel_size: dropped" in mig.stderr
    migrated = _leaves(yaml.safe_load((tmp_path / "conf" / "experiment" / "old.yaml").read_text()))
    job = run_cli(["+recipe=gpt", "--config-dir", "conf", "+experiment=old", "--cfg", "job"], cwd=tmp_path)
    assert job.returncode == 0, job.stderr[-2000:]
    composed = _leaves(yaml.safe_load(job.stdout))
    for key, value in migrated.items():
        assert composed[key] == value, (key, value, composed.get(key))
    expected = {
        "trainer.devices": 2,
        "trainer.precision": "bf16-mixed",
        "trainer.max_steps": 5000,
        "trainer.val_check_interval": 250,
        "trainer.gradient_clip_val": 1.0,
        "log.name": "small_llama",
        "log.ckpt.filename": "small_llama--{val_loss:.2f}-{step}",
        "log.ckpt.save_top_k": 2,
        "model.n_layer": 8,
        "model.n_embd": 512,
        "model.n_head": 8,
        "data.seq_length": 1024,
        "data.micro_batch_size": 4,
        "data.global_batch_size": 32,
        "optim.lr": 6e-4,
        "optim.min_lr": 6e-5,
        "optim.warmup_steps": 100,
        "optim.betas": [0.9, 0.95],
    }
    for key, value in expected.items():
        assert composed[key] == value, (key, value, composed.get(key))
    # the Llama keys arrive once the model schema has them, and are notes until then
    for nemo, key, value in (
        ("ffn_hidden_size", "model.ffn_hidden_size", 1408),
        ("num_query_groups", "model.n_kv_head", 4),
    ):
        assert composed.get(key) == value or f"note: model.{nemo}:" in mig.stderr, key
