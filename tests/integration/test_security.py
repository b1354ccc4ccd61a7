"""Attacks through a shared config or the command line fail safely, in one line, exit 2.

Each test performs the attack for real (``python -m expconf.train`` in a fresh folder) and checks
the victim is untouched: Hydra would otherwise call what the config names before expconf validates.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from helpers import TINY, run_cli


class _Touch:
    """Unpickling this creates ``path``: the proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.path),))  # type: ignore[return-value]


def _evil_pickle(folder: Path) -> Path:
    path = folder / "evil.pkl"
    path.write_bytes(pickle.dumps(_Touch(folder / "pwned")))
    return path


def _experiment(folder: Path, text: str) -> list[str]:
    (folder / "conf" / "experiment").mkdir(parents=True)
    (folder / "conf" / "experiment" / "shared.yaml").write_text("# @package _global_\n" + text)
    return ["--config-dir", "conf", "+experiment=shared"]


def _refused(proc: object, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]  # type: ignore[attr-defined]
    lines = proc.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]  # type: ignore[attr-defined]
    for word in words:
        assert word in lines[0]


def test_hydra_callback_on_the_command_line_cannot_truncate_a_file(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    proc = run_cli(
        [
            "+recipe=gpt",
            "+hydra.callbacks.y._target_=builtins.open",
            "+hydra.callbacks.y.file=victim.txt",
            "+hydra.callbacks.y.mode=w",
        ],
        cwd=tmp_path,
    )
    _refused(proc, "hydra.callbacks.y._target_='builtins.open'", "allow-listed Hydra callback")
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "nemo_experiments").exists()


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        (
            "hydra:\n  callbacks:\n    w:\n      _target_: torch.load\n      f: evil.pkl\n      weights_only: false\n",
            "hydra.callbacks.w._target_",
        ),
        (
            "hydra:\n  job_logging:\n    handlers:\n      evil:\n        '()': torch.load\n        f: evil.pkl\n"
            "        weights_only: false\n    root:\n      handlers: [evil]\n",
            "hydra.job_logging.handlers.evil.()",
        ),
        (
            "hydra:\n  hydra_logging:\n    formatters:\n      evil:\n        '()': torch.load\n        f: evil.pkl\n"
            "        weights_only: false\n",
            "hydra.hydra_logging.formatters.evil.()",
        ),
        # a node built from a string would hide its _target_ from any check
        ("hydra:\n  callbacks:\n    w: \"${oc.create:'{_target_: torch.load, f: evil.pkl}'}\"\n", "oc.create"),
        ("model:\n  _target_: torch.load\n", "model._target_='torch.load'"),
    ],
    ids=["hydra-callback", "job-logging-factory", "hydra-logging-factory", "oc-create", "model-target"],
)
def test_a_shared_experiment_yaml_cannot_run_a_pickle(tmp_path: Path, yaml_text: str, key: str) -> None:
    _evil_pickle(tmp_path)
    proc = run_cli([*TINY, *_experiment(tmp_path, yaml_text)], cwd=tmp_path)
    _refused(proc, key)
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "nemo_experiments").exists()


def test_a_sweep_cannot_name_a_callback(tmp_path: Path) -> None:
    """A sweep is checked as composed (Hydra itself refuses to sweep over hydra.* keys)."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    proc = run_cli(
        [*TINY, "-m", "+hydra.callbacks.y._target_=builtins.open", "+hydra.callbacks.y.file=victim.txt", "seed=1,2"],
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "hydra.callbacks.y._target_='builtins.open'" in proc.stderr
    assert victim.read_text() == "precious\n"


SECRET = "SuperSecret-0123-abcd"
SHORT = [
    *TINY,
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    f"++log.ckpt.storage_options.secret={SECRET}",
]


def _files_holding(root: Path, secret: str) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow
def test_a_command_line_secret_reaches_no_wandb_file(tmp_path: Path) -> None:
    """W&B records sys.argv in its run metadata; the offline run files are read as W&B wrote them."""
    proc = run_cli([*SHORT, "log.wandb.project=p"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list(tmp_path.rglob("offline-run-*/run-*.wandb"))
    assert runs, "W&B wrote no offline run"
    assert any(b"storage_options.secret" in p.read_bytes() for p in runs)  # the argv is recorded ...
    assert _files_holding(tmp_path, SECRET) == []  # ... redacted, as is every other file
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_sweep_writes_and_prints_no_secret(tmp_path: Path) -> None:
    proc = run_cli([*SHORT, "-m", "seed=1,2"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [multirun] = list(tmp_path.rglob("multirun.yaml"))
    assert "storage_options.secret=***REDACTED***" in multirun.read_text()
    assert _files_holding(tmp_path, SECRET) == []
    out = proc.stdout + proc.stderr
    assert out.count("++log.ckpt.storage_options.secret=***REDACTED***") == 2  # Hydra's two job lines
    assert SECRET not in out


def test_an_error_about_a_mistyped_key_shows_no_secret(tmp_path: Path) -> None:
    proc = run_cli(["+recipe=gpt", f"++log.ckpt.storage_option={{key:AKIAEXAMPLE12345,secret:{SECRET}}}"], cwd=tmp_path)
    _refused(proc, "log.ckpt.storage_option")
    assert SECRET not in proc.stderr and "AKIAEXAMPLE12345" not in proc.stderr


def test_cfg_job_shows_secrets_only_when_asked(tmp_path: Path) -> None:
    args = ["+recipe=gpt", f"++log.ckpt.storage_options.secret={SECRET}", "--cfg", "job"]
    shown = run_cli(args, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "secret: '***REDACTED***'" in shown.stdout and SECRET not in shown.stdout
    asked = run_cli(args, cwd=tmp_path, EXPCONF_SHOW_SECRETS="1")
    assert asked.returncode == 0 and f"secret: {SECRET}" in asked.stdout


@pytest.mark.slow
def test_ddp_rank_1_environment_holds_no_secret(tmp_path: Path) -> None:
    """A real two-rank gloo run: rank 1 gets the job config from a private file, not its environment."""
    import subprocess
    import sys
    import time

    from helpers import child_pids, cli_env, proc_environ

    args = [*SHORT, "trainer.max_steps=40", "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "expconf.train", *args],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: dict[str, str] = {}
    parent_env: dict[str, str] = {}
    while proc.poll() is None and not seen:
        parent_env = proc_environ(proc.pid) or parent_env
        for child in child_pids(proc.pid):
            env = proc_environ(child)
            if env.get("LOCAL_RANK") == "1":
                seen = env
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert seen, "rank 1 was never seen running"
    assert not any(SECRET in v for v in seen.values()), "the secret is in rank 1's environment"
    assert not any(SECRET in v for v in parent_env.values())
    path = Path(seen["EXPCONF_CHILD_CONFIG"])
    assert path.name == "rank1.yaml" and not path.exists() and not path.parent.exists()
    assert SECRET not in out


@pytest.mark.parametrize(
    "override", ["log.name=..", "log.version=..", "log.name=a/../..", "log.version='a\\nb'", "log.name=" + "n" * 300]
)
def test_a_name_cannot_escape_the_log_dir(tmp_path: Path, override: str) -> None:
    """From proj/sub, log.name=.. made proj/ the run dir and moved the user's config.yaml away."""
    work = tmp_path / "proj" / "sub"
    work.mkdir(parents=True)
    (tmp_path / "proj" / "config.yaml").write_text("mine: true\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = run_cli(["+recipe=gpt", "log.log_dir=..", override], cwd=work)
    _refused(proc, "expected a single folder name")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "proj" / "config.yaml").read_text() == "mine: true\n"


def test_explicit_log_dir_holding_foreign_files_is_refused(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("mine: true\n")
    proc = run_cli(["+recipe=gpt", f"log.explicit_log_dir={mine}"], cwd=tmp_path)
    _refused(proc, "log.explicit_log_dir=", "log.allow_existing_dir=true")
    assert [p.name for p in mine.iterdir()] == ["config.yaml"]


@pytest.mark.slow
def test_a_slurm_sweep_is_checked_before_anything_is_submitted(tmp_path: Path) -> None:
    """A submitit job composes its config on the node; expconf composes every job before submitting."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\ntouch "$EXPCONF_FAKE_SBATCH_SCRIPT"\necho "Submitted batch job 4242"\n')
    (bin_dir / "sbatch").chmod(0o755)
    script = tmp_path / "submitted"
    # Hydra refuses to sweep hydra.* itself; a swept node that a callback points at is only seen
    # when each job is composed, which submitit does on the node.
    proc = run_cli(
        [
            "-m",
            *TINY,
            "hydra/launcher=slurm",
            "trainer.devices=1",
            "+evil={_target_:expconf.callbacks.timing.TimingCallback},{_target_:builtins.open}",
        ],
        cwd=tmp_path,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        EXPCONF_FAKE_SBATCH_SCRIPT=str(script),
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "evil._target_='builtins.open'" in proc.stderr
    assert not script.exists()


@pytest.mark.slow
def test_lightning_callbacks_in_either_spelling_train(tmp_path: Path) -> None:
    """Lightning's own callbacks are on the default allow-list, as users write them."""
    extra = (
        "callbacks.extra=[{_target_:lightning.pytorch.callbacks.EarlyStopping,monitor:val_loss},"
        "{_target_:pytorch_lightning.callbacks.LearningRateMonitor}]"
    )
    proc = run_cli([*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2", extra], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
