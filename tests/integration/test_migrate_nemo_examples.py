"""Every NeMo example config with ``trainer:`` and ``exp_manager:`` migrates and composes with +recipe=gpt.

The configs are read from a local mirror of NVIDIA/NeMo (``git --git-dir=... show``), never
copied into this repository; without the mirror the test is skipped. The ``exp_manager``
blocks in ../shared/data stay the offline fixture (tests/unit/test_migrate.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from migrate_support import NEMO_GIT_DIR, nemo_available, nemo_git

from expconf.migrate import main, migrate_config, to_python
from expconf.migrate_core import Migration, Unresolved
from expconf.migrate_file import ADAM_FAMILY, GPT_SHAPE, PRECISION
from helpers import REPO, compose_and_validate

pytestmark = pytest.mark.slow

# trainer keys whose literal value must arrive unchanged (or be noted)
SAME = (
    "accelerator",
    "num_nodes",
    "max_steps",
    "log_every_n_steps",
    "val_check_interval",
    "check_val_every_n_epoch",
    "limit_train_batches",
    "num_sanity_val_steps",
    "enable_progress_bar",
    "enable_model_summary",
    "deterministic",
    "benchmark",
    "sync_batchnorm",
    "max_epochs",
    "strategy",
)


def _examples() -> list[str]:
    if not nemo_available():
        return []
    paths = nemo_git("ls-tree", "-r", "--name-only", "HEAD", "examples").split()
    out = []
    for path in paths:
        if not path.endswith((".yaml", ".yml")):
            continue
        text = nemo_git("show", f"HEAD:{path}")
        if any(ln.startswith("trainer:") for ln in text.splitlines()) and any(
            ln.startswith("exp_manager:") for ln in text.splitlines()
        ):
            out.append(path)
    return out


EXAMPLES = _examples()
RECIPE_MBS = yaml.safe_load((REPO / "conf" / "recipe" / "gpt.yaml").read_text())["data"]["micro_batch_size"]


def test_the_mirror_has_the_configs_issue_19_counts() -> None:
    if not EXAMPLES:
        pytest.skip(f"no NeMo mirror at {NEMO_GIT_DIR} (set EXPCONF_NEMO_GIT_DIR or fetch github:NVIDIA/NeMo)")
    assert len(EXAMPLES) >= 150, len(EXAMPLES)
    assert "examples/nlp/language_modeling/conf/megatron_gpt_config.yaml" in EXAMPLES


def _literal(v: Any) -> bool:
    return not (isinstance(v, str) and ("${" in v or v == "???")) and not isinstance(v, Unresolved)


def _noted(m: Migration, key: str) -> bool:
    return any(n.startswith(f"{key}:") for n in m.notes)


def _check_trainer(m: Migration, trainer: dict[str, Any], root: Any) -> None:
    for key, v in trainer.items():
        got = getattr(root.trainer, key, None)
        if not _literal(v) or _noted(m, f"trainer.{key}"):
            continue  # noted (dropped, converted or unresolved): never silent
        if key in SAME or key == "devices":
            assert got == v, (key, v, got)
        elif key == "precision":
            assert got == PRECISION[str(v)], (key, v, got)
        elif key == "gradient_clip_val":
            assert got == v, (key, v, got)
        elif key == "limit_val_batches":
            assert got == v or (v == 0.0 and got == 0), (key, v, got)
        else:
            raise AssertionError(f"trainer.{key}={v!r} neither carried nor noted")


@pytest.mark.skipif(not EXAMPLES, reason=f"no NeMo mirror at {NEMO_GIT_DIR} (set EXPCONF_NEMO_GIT_DIR)")
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.removeprefix("examples/") for p in EXAMPLES])
def test_nemo_example_migrates_and_composes(
    path: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old = workdir / "old.yaml"
    old.write_text(nemo_git("show", f"HEAD:{path}"))
    out = workdir / "conf" / "experiment" / "migrated.yaml"
    assert main([str(old), "-o", str(out), "-q"]) == 0
    doc = yaml.safe_load(old.read_text())
    m = migrate_config(doc)
    args = ["+recipe=gpt", "--config-dir", "conf", "+experiment=migrated"]
    if _noted(m, "data.global_batch_size"):
        # no per-device batch size in the file: do what the note says, with the recipe's micro batch
        t = doc["trainer"]
        devices = t["devices"] if isinstance(t.get("devices"), int) and t["devices"] > 0 else 1
        factor = devices * t.get("num_nodes", 1) * t.get("accumulate_grad_batches", 1)
        args.append(f"data.global_batch_size={RECIPE_MBS * factor}")
    root = compose_and_validate(args, monkeypatch)
    capsys.readouterr()
    _check_trainer(m, doc["trainer"], root)
    optim = (doc.get("model") or {}).get("optim") or {}
    name = optim.get("name", optim.get("_target_"))
    lr = optim.get("lr")
    if name in ADAM_FAMILY and lr is not None and _literal(lr) and not _noted(m, "model.optim.lr"):
        assert math.isclose(root.optim.lr, float(lr)), (lr, root.optim.lr)
    elif optim:
        assert _noted(m, "model.optim.name") or _noted(m, "model.optim.lr") or not _literal(lr)
    # the --python output runs: it builds NeMoLogger, AutoResume, ModelCheckpoint and the callbacks
    scope: dict[str, Any] = {}
    exec(compile(to_python(m), path, "exec"), scope)
    assert scope["resume"].resume_if_exists == root.resume.resume_if_exists
    em_name = doc["exp_manager"].get("name")
    if isinstance(em_name, str) and _literal(em_name):
        assert root.log.name == em_name and scope["log"].name == em_name
    carried = {*GPT_SHAPE, "seed", "hidden_dropout", "attention_dropout", "optim"}
    for key in doc.get("model") or {}:
        assert _noted(m, f"model.{key}") or key in carried, f"model.{key} neither carried nor noted"
