"""Hydra's own flags, expconf's --help/--version, the console scripts and bash completion, as real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TINY, cli_env, run_cli

BIN = Path(sys.executable).parent


def _script(name: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / name), *args], cwd=cwd, env=cli_env(), capture_output=True, text=True, timeout=300, check=False
    )


def test_info_defaults_after_an_override(tmp_path: Path) -> None:
    proc = run_cli(["+recipe=gpt", "--info", "defaults"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "recipe/gpt" in proc.stdout and "expconf_schema" in proc.stdout
    assert not (tmp_path / "nemo_experiments").exists()


def test_cfg_hydra_resolve(tmp_path: Path) -> None:
    proc = run_cli(["+recipe=gpt", "--cfg", "hydra", "--resolve"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dir: <log.log_dir>/<log.name>" in proc.stdout and "chdir: false" in proc.stdout


def test_group_without_plus_and_order_independent(tmp_path: Path) -> None:
    outs = [run_cli([*argv, "--cfg", "job"], tmp_path) for argv in (["model=gpt_124m", "+recipe=gpt"], ["recipe=gpt"])]
    assert all(p.returncode == 0 for p in outs), [p.stderr for p in outs]
    assert "n_layer: 12" in outs[0].stdout and "max_steps: 400" in outs[0].stdout
    assert "n_layer: 4" in outs[1].stdout


def test_version_names_expconf_and_hydra(tmp_path: Path) -> None:
    from importlib import metadata

    proc = run_cli(["--version"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith(f"expconf {metadata.version('expconf')} (Hydra {metadata.version('hydra-core')}, ")


def test_help_is_expconfs_own_page(tmp_path: Path) -> None:
    proc = run_cli(["+recipe=gpt", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "powered by Hydra" not in text and "group=option" not in text
    for part in ("Recipes", "gpt_124m", "Groups", "trainer.max_steps=1000", "expconf-runs ls", "expconf-migrate"):
        assert part in text, part
    assert "docs/getting-started.md" in text
    assert not (tmp_path / "nemo_experiments").exists()


def test_console_scripts(tmp_path: Path) -> None:
    version = _script("expconf-train", ["--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("expconf "), version.stderr
    helped = _script("expconf-train", ["-h"], tmp_path)
    assert helped.stdout.startswith("expconf-train: "), helped.stdout[:200]
    runs = _script("expconf-runs", ["ls"], tmp_path)
    assert runs.returncode == 2 and "log dir nemo_experiments does not exist" in runs.stderr, runs.stderr
    (tmp_path / "nemo_experiments").mkdir()
    runs = _script("expconf-runs", ["ls"], tmp_path)
    assert runs.returncode == 1 and "no runs under nemo_experiments" in runs.stdout, runs.stderr
    migrate = _script("expconf-migrate", ["--help"], tmp_path)
    assert migrate.returncode == 0 and "usage:" in migrate.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_from_the_installed_script(tmp_path: Path) -> None:
    """``eval "$(expconf-train -sc install=bash)"`` then a real completion request, as bash makes it."""
    script = r"""
eval "$(expconf-train -sc install=bash)"
complete_line() { COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}; COMP_CWORD=$2; hydra_bash_completion;
                  printf '%s\n' "${COMPREPLY[@]}"; echo ---; }
complete_line "expconf-train rec" 1
complete_line "expconf-train recipe=" 1
complete_line "expconf-train recipe=gpt trainer.max_s" 2
"""
    env = cli_env(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    first, second, third, _ = proc.stdout.split("---\n")
    assert "recipe=" in first.split()
    assert {"recipe=gpt", "recipe=gpt_124m"} <= set(second.split())
    assert third.split() == ["trainer.max_steps="]


def test_missing_accelerator_refused_in_one_line_before_any_run_dir(tmp_path: Path) -> None:
    """Without CUDA any GPU is missing; with it, one GPU more than the machine has."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    named = f"trainer.devices={n + 1}" if n else "trainer.accelerator='gpu'"
    proc = run_cli(["recipe=gpt", "trainer.accelerator=gpu", f"trainer.devices={n + 1}"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(f"error: {named}") and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nemo_experiments").exists()


def test_runs_ls_tells_sweep_jobs_from_runs(tmp_path: Path) -> None:
    """A real ``-m`` sweep of two jobs and a single run, then ``python -m expconf.runs ls`` (no argument)."""
    short = [*TINY, "trainer.max_steps=2", "trainer.val_check_interval=2"]
    sweep = run_cli(["-m", *short, "log.name=lr", "optim.lr=1e-3,2e-3"], tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    single = run_cli([*short, "log.name=one"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    proc = run_cli(["ls"], tmp_path, module="expconf.runs")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:]]
    kinds = {(r[0], " ".join(r[2:4]) if r[2] == "sweep" else r[2]) for r in rows}
    assert kinds == {("lr", "sweep job"), ("one", "run")} and len(rows) == 3
    assert {next(w for w in r if w.startswith("optim.lr=")) for r in rows if r[0] == "lr"} == {
        "optim.lr=0.001",
        "optim.lr=0.002",
    }
