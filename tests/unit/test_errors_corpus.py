"""The bad-input corpus: every mistake exits 2 with one ``error:`` line naming the key, and writes nothing.

Runs ``expconf.train.main`` in-process (composition and validation need no subprocess); the
builder is replaced by a tripwire so a case that wrongly passes validation fails loudly instead
of training. ``tests/integration/test_bad_inputs.py`` repeats a handful as real processes.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# A closed loopback port: connecting is refused at once. retries=1 keeps s3fs from backing off.
CLOSED_ENDPOINT = "http://127.0.0.1:9"
FAST_S3 = "+log.ckpt.storage_options.retries=1"


@dataclass
class Case:
    """One bad input: the arguments, the key the line must name, and more fragments it must contain."""

    id: str
    args: list[str]
    key: str
    says: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    hidden: list[str] = field(default_factory=list)


R = "+recipe=gpt"
CD = ["--config-dir", "conf"]
S3_ENV = {"AWS_ENDPOINT_URL": CLOSED_ENDPOINT, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "testsecretvalue"}

CASES = [
    # unknown keys and group options: did-you-mean
    Case("unknown-key", [R, "trainer.max_stepz=3"], "trainer.max_stepz", ["did you mean 'trainer.max_steps'?"]),
    Case("unknown-key-plus", [R, "+trainer.max_stepz=3"], "trainer.max_stepz", ["did you mean 'trainer.max_steps'?"]),
    Case("unknown-root", [R, "tranier.max_steps=3"], "tranier", ["did you mean 'trainer'?"]),
    Case("unknown-nested", [R, "log.ckpt.save_topk=3"], "log.ckpt.save_topk", ["'log.ckpt.save_top_k'"]),
    Case("unknown-model-key", [R, "model.n_layers=3"], "model.n_layers", ["'model.n_layer'"]),
    Case("unknown-recipe", ["+recipe=gtp"], "recipe", ["did you mean 'gpt'?", "gpt_124m"]),
    Case("unknown-trainer-option", [R, "trainer=cpuu"], "trainer", ["did you mean 'cpu'?", "ddp_cpu"]),
    Case("unknown-model-option", [R, "model=gpt_tny"], "model", ["did you mean 'gpt_tiny'?"]),
    Case("no-such-experiment", [R, "+experiment=nope"], "experiment", ["megatron_gpt_migrated"]),
    Case(
        "unknown-experiment",
        [*CD, R, "+experiment=baseline_typo"],
        "experiment",
        ["did you mean 'baseline'?"],
        files={"conf/experiment/baseline.yaml": "# @package _global_\ntrainer:\n  max_steps: 3\n"},
    ),
    Case(
        "experiment-selects-group",
        [*CD, R, "+experiment=picks"],
        "model",
        ["'- override /model: gpt_124m'"],
        files={"conf/experiment/picks.yaml": "# @package _global_\ndefaults:\n  - /model: gpt_124m\n  - _self_\n"},
    ),
    Case("strategy-deepspeed", [R, "trainer.strategy=deepspeed"], "trainer.strategy", ["DeepSpeed is not supported"]),
    Case("missing-config-dir", ["--config-dir", "no_such_dir", R], "--config-dir", ["no_such_dir"]),
    # free-form mappings need ++
    Case(
        "free-form-dict",
        [R, "log.ckpt.storage_options.endpoint_url=http://x"],
        "log.ckpt.storage_options.endpoint_url",
        ["++log.ckpt.storage_options.endpoint_url", "free-form"],
    ),
    Case(
        "free-form-secret",
        [R, "log.ckpt.storage_options.secret=AKIAVERYSECRETVALUE"],
        "log.ckpt.storage_options.secret",
        ["++log.ckpt.storage_options.secret"],
        hidden=["AKIAVERYSECRETVALUE"],
    ),
    # types
    Case("type-int", [R, "trainer.max_steps=lots"], "trainer.max_steps", ["'lots'", "an integer"]),
    Case("type-bool", [R, "resume.resume_if_exists=maybe"], "resume.resume_if_exists", ["true or false"]),
    Case("type-float", [R, "optim.lr=fast"], "optim.lr", ["a number"]),
    Case("type-list", [R, "log.wandb.tags=3"], "log.wandb.tags", ["a list"]),
    Case("type-group", [R, "log.ckpt=3"], "log.ckpt", ["CheckpointConfig"]),
    Case("override-syntax", [R, "trainer.max_steps=[1"], "trainer.max_steps", ["override syntax"]),
    Case("interpolation", [R, "trainer.max_steps=${nothing.here}"], "trainer.max_steps", ["interpolation"]),
    # choices and ranges
    Case("ckpt-mode", [R, "log.ckpt.mode=mid"], "log.ckpt.mode", ["'mid'", "'min', 'max'"]),
    Case("save-top-k", [R, "log.ckpt.save_top_k=-2"], "log.ckpt.save_top_k", ["-2", ">= -1"]),
    Case("lr-negative", [R, "optim.lr=-1"], "optim.lr", ["> 0"]),
    Case("lr-zero", [R, "optim.lr=0"], "optim.lr", ["> 0"]),
    Case("min-lr", [R, "optim.min_lr=1.0"], "optim.min_lr", ["optim.lr="]),
    Case("betas", [R, "optim.betas=[0.9]"], "optim.betas", ["two numbers"]),
    Case("accelerator", [R, "trainer.accelerator=tpu"], "trainer.accelerator", ["'cpu'"]),
    Case("precision", [R, "trainer.precision=8"], "trainer.precision", ["bf16-mixed"]),
    Case("devices", [R, "trainer.devices=abc"], "trainer.devices", ["'auto'"]),
    Case("num-nodes", [R, "trainer.num_nodes=0"], "trainer.num_nodes", [">= 1"]),
    Case("max-steps-zero", [R, "trainer.max_steps=0"], "trainer.max_steps", ["positive"]),
    Case("val-interval", [R, "trainer.val_check_interval=0"], "trainer.val_check_interval", ["fraction"]),
    Case("seq-length", [R, "data.seq_length=0"], "data.seq_length", [">= 1"]),
    Case("val-fraction", [R, "data.val_fraction=0.9"], "data.val_fraction", ["(0, 0.5)"]),
    Case("dropout", [R, "model.dropout=1.5"], "model.dropout", ["[0, 1)"]),
    Case("signal", [R, "callbacks.preemption_signal=SIGFOO"], "callbacks.preemption_signal", ["SIGUSR1"]),
    Case("progress-bar", [R, "callbacks.progress_bar=fancy"], "callbacks.progress_bar", ["'rich'"]),
    Case("seed", [R, "seed=-1"], "seed", [">= 0"]),
    Case("log-name", [R, "log.name=a/b"], "log.name", ["a single folder name", "path separator"]),
    Case("ckpt-filename-end", [R, "log.ckpt.filename='gpt-{step}-end'"], "log.ckpt.filename", ["'-end'"]),
    Case("ckpt-filename-tmp", [R, "log.ckpt.filename='gpt.tmp-{step}'"], "log.ckpt.filename", ["'.tmp-'"]),
    Case("ckpt-filename-slash", [R, "log.ckpt.filename=dir/gpt"], "log.ckpt.filename", ["dirpath"]),
    Case("ckpt-filename-braces", [R, "log.ckpt.filename='gpt--{val_loss'"], "log.ckpt.filename", ["braces"]),
    Case(
        "rank0-flags",
        [R, "log.log_local_rank_0_only=true", "log.log_global_rank_0_only=true"],
        "log.log_global_rank_0_only",
        ["at most one"],
    ),
    # cross-field rules
    Case(
        "batch-divisible",
        [R, "data.global_batch_size=30", "data.micro_batch_size=16"],
        "data.global_batch_size",
        ["30", "micro_batch_size"],
    ),
    Case(
        "batch-devices",
        [R, "trainer.accelerator=cpu", "trainer.devices=3", "data.global_batch_size=32", "data.micro_batch_size=16"],
        "data.global_batch_size",
        ["16 x 3"],
    ),
    Case("heads", [R, "model.n_embd=130", "model.n_head=4"], "model.n_embd", ["130", "model.n_head=4"]),
    Case(
        "path-and-import",
        [R, "resume.path=a.ckpt", "resume.import_path=b.ckpt"],
        "resume.import_path",
        ["mutually exclusive"],
        files={"a.ckpt": "x", "b.ckpt": "x"},
    ),
    # paths that must exist
    Case("data-path", [R, "data.path=no_such_corpus"], "data.path", ["no_such_corpus", "no such file"]),
    Case("tokenizer", [R, "data.tokenizer=missing.json"], "data.tokenizer", ["tokenizer.json"]),
    Case("resume-path", [R, "resume.path=missing.ckpt"], "resume.path", ["missing.ckpt"]),
    Case("import-path", [R, "resume.import_path=missing.ckpt"], "resume.import_path", ["missing.ckpt"]),
    Case("files-to-copy", [R, "log.files_to_copy=[missing.txt]"], "log.files_to_copy[0]", ["missing.txt"]),
    Case("log-dir-is-file", [R, "log.log_dir=afile"], "log.log_dir", ["a folder"], files={"afile": "x"}),
    # YAML files
    Case(
        "yaml-tab",
        [*CD, R, "+experiment=tabs"],
        "tabs.yaml:3",
        ["malformed YAML"],
        files={"conf/experiment/tabs.yaml": "# @package _global_\ntrainer:\n\tmax_steps: 3\n"},
    ),
    Case(
        "yaml-flow",
        [*CD, R, "+experiment=flow"],
        "flow.yaml:4",
        ["malformed YAML", "starts at line 3"],
        files={"conf/experiment/flow.yaml": "# @package _global_\ntrainer:\n  devices: [0, 1\n  max_steps: 3\n"},
    ),
    Case(
        "yaml-recipe-in-config-dir",
        [*CD, "+recipe=mine"],
        "mine.yaml:2",
        ["malformed YAML"],
        files={"conf/recipe/mine.yaml": "# @package _global_\ntrainer: max_steps: 3\n"},
    ),
    Case(
        "yaml-unknown-key",
        [*CD, R, "+experiment=typo"],
        "trainer.max_stepz",
        ["did you mean 'trainer.max_steps'?", "experiment/typo"],
        files={"conf/experiment/typo.yaml": "# @package _global_\ntrainer:\n  max_stepz: 3\n"},
    ),
    Case(
        "yaml-bad-type",
        [*CD, R, "+experiment=wrongtype"],
        "trainer.max_steps",
        ["an integer", "experiment/wrongtype"],
        files={"conf/experiment/wrongtype.yaml": "# @package _global_\ntrainer:\n  max_steps: lots\n"},
    ),
    Case(
        "yaml-bad-choice",
        [*CD, R, "+experiment=mode"],
        "log.ckpt.mode",
        ["'min', 'max'"],
        files={"conf/experiment/mode.yaml": "# @package _global_\nlog:\n  ckpt:\n    mode: best\n"},
    ),
    Case(
        "yaml-no-package",
        [*CD, R, "+experiment=nopkg"],
        "experiment",
        ["# @package _global_"],
        files={"conf/experiment/nopkg.yaml": "trainer:\n  max_steps: 3\n"},
    ),
    # sweeps (-m): the first bad job stops the sweep; Hydra's multirun.yaml is removed again
    Case("multirun-range", ["-m", R, "optim.lr=-1,1e-3"], "optim.lr", ["> 0"]),
    Case("multirun-unknown-key", ["-m", R, "trainer.max_stepz=1,2"], "trainer.max_stepz", ["'trainer.max_steps'"]),
    Case("multirun-name", ["-m", R, "log.name=a,b", "optim.lr=0"], "optim.lr", ["> 0"]),
    # _target_ only from the allow-list
    Case(
        "target-model", [R, "model._target_=os.system"], "model._target_", ["allow-listed", "EXPCONF_ALLOWED_TARGETS"]
    ),
    Case(
        "target-callback",
        [R, "callbacks.extra=[{_target_:subprocess.Popen,args:ls}]"],
        "callbacks.extra[0]._target_",
        ["allow-listed"],
    ),
    Case(
        "target-typo",
        [R, "callbacks.extra=[{_target_:pytorch_lightning.callbacks.EarlyStoping}]"],
        "callbacks.extra[0]._target_",
        ["did you mean 'pytorch_lightning.callbacks.EarlyStopping'?"],
    ),
    # remote endpoints (a refused loopback port)
    Case(
        "s3-dirpath",
        [R, "log.ckpt.dirpath=s3://bucket/x", FAST_S3],
        "log.ckpt.dirpath",
        ["s3://bucket/x", "reachable"],
        env=S3_ENV,
        hidden=["testsecretvalue"],
    ),
    Case(
        "s3-resume-dirpath",
        [R, "resume.dirpath=s3://bucket/runs", FAST_S3],
        "resume.dirpath",
        ["reachable"],
        env=S3_ENV,
    ),
    Case(
        "s3-resume-path",
        [R, "resume.path=s3://bucket/runs/x-last.ckpt", FAST_S3],
        "resume.path",
        ["s3://bucket/runs/x-last.ckpt"],
        env=S3_ENV,
    ),
]


def test_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.fixture
def tripwire(monkeypatch: pytest.MonkeyPatch) -> None:
    """A case that passes validation must not train: building the run objects fails the test."""
    import expconf.build

    def no_build(*_: object, **__: object) -> None:
        raise AssertionError("validation accepted a bad input; the builder was reached")

    monkeypatch.setattr(expconf.build, "build", no_build)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case,
    workdir: Path,
    tripwire: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from expconf.train import main

    for rel, text in case.files.items():
        (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (workdir / rel).write_text(text)
    for k, v in case.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", ["expconf.train"])
    before = set(os.listdir(workdir))
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(case.args))
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("error: "), line
    assert case.key in line, line
    for fragment in case.says:
        assert fragment in line, (fragment, line)
    for secret in case.hidden:
        assert secret not in line, line
    assert "Traceback" not in err
    assert set(os.listdir(workdir)) == before, "a failed run must write nothing"
