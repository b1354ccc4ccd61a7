"""``python -m expconf.migrate``: every exp_manager key is mapped, dropped with a note or reported."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from expconf.migrate import load_exp_manager, main, migrate, to_python, to_yaml
from expconf.migrate_file import schema_keys
from helpers import REPO, compose_and_validate

# The exp_manager block of the seed document (NeMo's exp_manager migration guide).
SEED = """
exp_manager:
  explicit_log_dir: null
  exp_dir: null
  name: megatron_gpt
  create_wandb_logger: False
  wandb_logger_kwargs:
    project: null
    name: null
  resume_if_exists: True
  resume_ignore_no_checkpoint: True
  resume_from_checkpoint: ${model.resume_from_checkpoint}
  create_checkpoint_callback: True
  checkpoint_callback_params:
    dirpath: null # to use S3 checkpointing, set the dirpath in format s3://bucket/key
    monitor: val_loss
    save_top_k: 10
    mode: min
    always_save_nemo: False
    save_nemo_on_train_end: False
    filename: 'megatron_gpt--{val_loss:.2f}-{step}-{consumed_samples}'
    model_parallel_size: ${multiply:${model.tensor_model_parallel_size}, ${model.pipeline_model_parallel_size}}
    async_save: False
"""

SHARED = REPO.parent / "shared" / "data" / "nemo-exp-manager"
SHARED_FILES = sorted(SHARED.glob("*.yaml")) if SHARED.is_dir() else []


def _write(tmp_path: Path, text: str, name: str = "old.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_seed_block_maps_every_key(tmp_path: Path) -> None:
    m = migrate(load_exp_manager(_write(tmp_path, SEED)))
    assert m.get("log.name") == "megatron_gpt"
    assert m.get("log.log_dir") is None and m.get("log.explicit_log_dir") is None
    assert m.get("resume.resume_if_exists") is True
    assert m.get("resume.resume_ignore_no_checkpoint") is True
    assert m.get("log.ckpt") == {
        "dirpath": None,
        "monitor": "val_loss",
        "save_top_k": 10,
        "mode": "min",
        "always_save_nemo": False,
        "save_nemo_on_train_end": False,
        "filename": "megatron_gpt--{val_loss:.2f}-{step}-{consumed_samples}",
        "async_save": False,
    }
    assert m.get("log.wandb") is None, "create_wandb_logger=False keeps W&B off"
    # the interpolation stays visible, is not fatal and sets nothing
    assert m.unresolved == {"resume.path": "${model.resume_from_checkpoint}"}
    assert m.get("resume.path") is None
    assert any(n.startswith("checkpoint_callback_params.model_parallel_size: dropped") for n in m.notes)
    assert m.unknown == []


def test_yaml_output_is_a_global_package_with_visible_interpolation(tmp_path: Path) -> None:
    text = to_yaml(migrate(load_exp_manager(_write(tmp_path, SEED))))
    assert text.splitlines()[0] == "# @package _global_"
    assert "# path: ${model.resume_from_checkpoint}" in text
    assert "model_parallel_size" in text  # in a note, not as a key
    data = yaml.safe_load(text)
    assert data["log"]["ckpt"]["save_top_k"] == 10
    assert "model_parallel_size" not in data["log"]["ckpt"]
    assert data["resume"] == {"resume_if_exists": True, "resume_ignore_no_checkpoint": True}


def test_every_key_kind(tmp_path: Path) -> None:
    old = """
exp_manager:
  name: &n run1
  exp_dir: /tmp/exps
  explicit_log_dir: /tmp/exact
  version: v1
  use_datetime_version: false
  log_local_rank_0_only: true
  log_global_rank_0_only: false
  files_to_copy: [a.txt]
  resume_if_exists: true
  resume_past_end: true
  resume_ignore_no_checkpoint: false
  resume_from_checkpoint: /ckpts/x.ckpt
  create_tensorboard_logger: false
  create_wandb_logger: true
  wandb_logger_kwargs: {project: p, name: *n, entity: e, save_dir: /w, resume: true, weird: 1}
  create_checkpoint_callback: false
  checkpoint_callback_params: {monitor: val_acc, mode: max, filename: "${exp_manager.name}--{val_acc:.2f}", every_n_epochs: 2, save_best_model: true, bogus: 1}
  create_early_stopping_callback: true
  early_stopping_callback_params: {monitor: val_loss, patience: 3, mode: min}
  ema: {enable: false}
  max_time_per_run: "00:03:50:00"
  model_parallel_size: 2
  totally_new: 1
"""
    m = migrate(load_exp_manager(_write(tmp_path, old)))
    expected = {
        "log.name": "run1",
        "log.log_dir": "/tmp/exps",
        "log.explicit_log_dir": "/tmp/exact",
        "log.version": "v1",
        "log.use_datetime_version": False,
        "log.log_local_rank_0_only": True,
        "log.log_global_rank_0_only": False,
        "log.files_to_copy": ["a.txt"],
        "resume.resume_if_exists": True,
        "resume.resume_past_end": True,
        "resume.resume_ignore_no_checkpoint": False,
        "resume.path": "/ckpts/x.ckpt",
        "log.tensorboard.enabled": False,
        "log.wandb.enabled": True,
        "log.wandb.project": "p",
        "log.wandb.name": "run1",
        "log.wandb.entity": "e",
        "log.ckpt.save_top_k": 0,
        "log.ckpt.save_last": False,
        "log.ckpt.monitor": "val_acc",
        "log.ckpt.mode": "max",
        "log.ckpt.filename": "run1--{val_acc:.2f}",  # ${exp_manager.name} resolved inside the block
        "log.ckpt.every_n_epochs": 2,
    }
    for key, value in expected.items():
        assert m.get(key) == value, key
    assert m.get("callbacks.extra") == [
        {"_target_": "pytorch_lightning.callbacks.EarlyStopping", "monitor": "val_loss", "patience": 3, "mode": "min"}
    ]
    assert sorted(m.unknown) == ["checkpoint_callback_params.bogus", "totally_new", "wandb_logger_kwargs.weird"]
    text = "\n".join(m.notes)
    for dropped in ("ema", "max_time_per_run", "model_parallel_size", "save_best_model", "save_dir", "resume"):
        assert dropped in text, dropped
    assert "create_checkpoint_callback=false" in text


def test_python_output_runs_and_builds_the_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    old = SEED.replace("create_wandb_logger: False", "create_wandb_logger: True").replace(
        "project: null", "project: proj"
    )
    code = to_python(migrate(load_exp_manager(_write(tmp_path, old))))
    assert "${model.resume_from_checkpoint}" in code
    scope: dict[str, Any] = {}
    exec(compile(code, "migrated.py", "exec"), scope)
    log, resume = scope["log"], scope["resume"]
    assert log.name == "megatron_gpt"
    assert log.ckpt.save_top_k == 10 and log.ckpt.mode == "min"
    assert log.ckpt.filename == "megatron_gpt--{val_loss:.2f}-{step}-{consumed_samples}"
    assert type(log.wandb).__name__ == "WandbLogger"
    assert resume.resume_if_exists is True and resume.resume_ignore_no_checkpoint is True
    assert resume.path is None
    assert [type(c).__name__ for c in scope["callbacks"]] == ["TimingCallback", "PreemptionCallback"]


def test_cli_stdout_file_and_notes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _write(tmp_path, SEED)
    assert main([str(old)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("# @package _global_")
    assert "note: checkpoint_callback_params.model_parallel_size: dropped" in err
    target = tmp_path / "conf" / "experiment" / "seed.yaml"
    assert main([str(old), "-o", str(target), "-q"]) == 0
    assert target.read_text() == out
    assert capsys.readouterr().err == ""
    assert main([str(old), "--python"]) == 0
    assert "expconf.NeMoLogger(" in capsys.readouterr().out


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path, "exp_manager:\n  name: [x\n")
    assert main([str(bad)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "old.yaml:3" in line
    assert main([str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main([str(_write(tmp_path, "- a\n- b\n", "list.yaml"))]) == 2
    assert "exp_manager" in capsys.readouterr().err


@pytest.mark.skipif(not SHARED_FILES, reason="../shared/data/nemo-exp-manager is absent")
def test_shared_corpus_is_present() -> None:
    assert len(SHARED_FILES) >= 40


def test_shipped_example_experiment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = compose_and_validate(["+recipe=gpt", "+experiment=megatron_gpt_migrated"], monkeypatch)
    assert root.log.name == "megatron_gpt" and root.log.ckpt.save_top_k == 10
    assert root.resume.resume_if_exists is True
    shipped = yaml.safe_load((REPO / "conf" / "experiment" / "megatron_gpt_migrated.yaml").read_text())
    migrated = yaml.safe_load(to_yaml(migrate(load_exp_manager(_write(workdir, SEED)))))
    assert shipped == migrated


@pytest.mark.parametrize("path", SHARED_FILES, ids=[p.stem.removeprefix("examples__") for p in SHARED_FILES])
def test_real_nemo_blocks_migrate_and_compose_with_gpt(
    path: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = workdir / "conf" / "experiment" / "migrated.yaml"
    assert main([str(path), "-o", str(out), "-q"]) == 0
    root = compose_and_validate(["+recipe=gpt", "--config-dir", "conf", "+experiment=migrated"], monkeypatch)
    old = load_exp_manager(path)
    name = old.get("name")
    if isinstance(name, str) and "${" not in name and not name.startswith("*"):
        assert root.log.name == name
    params = old.get("checkpoint_callback_params") or {}
    if isinstance(params.get("save_top_k"), int) and old.get("create_checkpoint_callback", True):
        assert root.log.ckpt.save_top_k == params["save_top_k"]
    assert root.resume.resume_if_exists == bool(old.get("resume_if_exists", False))
    assert not os.path.exists(workdir / "nemo_experiments")
    capsys.readouterr()


# -- nothing taken from the input becomes code (--python) or config (YAML) ----------------------------------
# Each test performs the attack through the real CLI (``main``) and then runs what it wrote: the
# Python is executed in a temporary directory, the YAML is parsed and composed.

PAYLOAD = "x\nimport os; os.system('touch pwned')\n#"
YAML_PAYLOAD = "x\nhydra:\n  callbacks:\n    evil:\n      _target_: builtins.open\n#"
# every line break Python or YAML knows, each followed by code/config
BREAKS = ["\n", "\r", "\r\n", "\x85", "\u2028", "\u2029", "\x0b", "\x0c"]


def _attack_doc(payload: str) -> dict[str, Any]:
    """A NeMo 1.0 config with ``payload`` as key names and values in every section migrate reads."""
    return {
        payload: 1,
        "hydra": {"callbacks": {"evil": {"_target_": "builtins.open", "file": "victim.txt", "mode": "w"}}},
        "trainer": {payload: 1, "devices": payload, "precision": payload, "max_steps": f"${{{payload}}}"},
        "exp_manager": {
            payload: True,
            "name": payload,
            "version": f"${{model.{payload}}}",
            "resume_from_checkpoint": f"${{oc.env:{payload}}}",
            "checkpoint_callback_params": {payload: 1, "filename": payload, "monitor": {"hydra": payload}},
            "wandb_logger_kwargs": {payload: 1},
            "create_early_stopping_callback": True,
            "early_stopping_callback_params": {payload: 1, "monitor": payload, "mode": [payload]},
        },
        "model": {
            payload: 1,
            "num_layers": 2,
            "hidden_size": 8,
            "num_attention_heads": 2,
            "encoder_seq_length": payload,
            "normalization": payload,
            "train_ds": {"batch_size": payload},
            "optim": {"name": "adamw", payload: 1, "lr": payload, "sched": {payload: 1, "name": payload}},
        },
    }


def _write_doc(tmp_path: Path, doc: dict[str, Any], name: str = "old.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _leaf_keys(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    out = set()
    for k, v in node.items():
        out.add(f"{prefix}{k}")
        out |= _leaf_keys(v, f"{prefix}{k}.") if k != "extra" else set()
    return out


@pytest.mark.parametrize("brk", BREAKS, ids=[repr(b) for b in BREAKS])
def test_python_output_never_runs_input_as_code(
    brk: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = PAYLOAD.replace("\n", brk)
    old = _write_doc(tmp_path, _attack_doc(payload), name=f"evil{brk}import os; os.system('touch pwned')#.yaml")
    out = tmp_path / "migrated.py"
    assert main([str(old), "--python", "-o", str(out)]) == 0
    assert "unknown keys" in capsys.readouterr().err
    run_dir = tmp_path / "exec"
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)
    exec(compile(out.read_text(), str(out), "exec"), {})
    assert not (run_dir / "pwned").exists()
    assert not (tmp_path / "pwned").exists()
    code_lines = [ln for ln in out.read_text().splitlines() if "os.system" in ln]
    assert code_lines and all(ln.lstrip().startswith("#") or "'" in ln for ln in code_lines), code_lines


@pytest.mark.parametrize("payload", [PAYLOAD, YAML_PAYLOAD, YAML_PAYLOAD.replace("\n", "\u2028")])
def test_yaml_output_has_only_schema_keys(payload: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _write_doc(tmp_path, _attack_doc(payload))
    out = tmp_path / "conf" / "experiment" / "evil.yaml"
    assert main([str(old), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    data = yaml.safe_load(out.read_text())
    assert "hydra" not in data
    assert _leaf_keys(data) <= schema_keys(), _leaf_keys(data) - schema_keys()
    for line in out.read_text().splitlines():
        assert (
            line.startswith(("#", " ", "log", "trainer", "model", "optim", "data", "resume", "callbacks", "seed"))
            or not line
        )
    assert "unknown keys" in err and payload not in err  # reported, escaped onto one line
    # the values that were text arrive as text, not as structure
    # the name arrives as the same text, or (control characters) is refused by the schema and reported
    refused = "name" not in data["log"] and any(ln.startswith("note: log.name:") for ln in err.splitlines())
    assert data["log"].get("name") == payload or refused
    assert data["callbacks"]["extra"] == [{"_target_": "pytorch_lightning.callbacks.EarlyStopping", "monitor": payload}]


def test_reported_unknown_keys_are_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _write_doc(tmp_path, {"exp_manager": {PAYLOAD: 1}})
    assert main([str(old)]) == 0
    out, err = capsys.readouterr()
    assert all(not ln.startswith("import") for ln in out.splitlines() + err.splitlines())
    assert f"unknown keys (not migrated): {PAYLOAD!r}" in err  # quoted and escaped
