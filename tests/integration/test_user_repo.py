"""examples/user_repo: a user's conf/ and dataclass, run through expconf's CLI and the user's own @hydra.main."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_ddp
import yaml

from expconf.callbacks.job_record import config_digest
from helpers import REPO, TINY, child_pids, proc_environ, run_dirs
from helpers import cli_env as make_env

pytestmark = pytest.mark.slow

# The tiny run settings without the recipe and model size: the user repo brings its own.
SMALL = [o for o in TINY if not o.startswith(("+recipe=", "model.", "trainer.log_every_n_steps"))]


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "user_repo"
    shutil.copytree(REPO / "examples" / "user_repo", repo, ignore=shutil.ignore_patterns("nemo_experiments", "outputs"))
    return repo


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=make_env(PYTHONPATH=str(cwd), **env),
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def _check_run(repo: Path, proc: subprocess.CompletedProcess[str]) -> None:
    import torch
    import yaml

    assert proc.returncode == 0, proc.stderr[-3000:]
    [run_dir] = run_dirs(repo / "nemo_experiments")
    assert run_dir == repo / "nemo_experiments" / "user_wide"  # log.name from conf/log/user_tb.yaml
    assert list((run_dir / "user_tb").glob("events.out.tfevents.*")), "custom TensorBoard folder"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["_target_"] == "my_models.WideGPT"
    assert config["model"]["mlp_ratio"] == 6 and config["model"]["n_embd"] == 48
    [last] = (run_dir / "checkpoints").glob("wide--*-last.ckpt")
    state = torch.load(last, map_location="cpu", weights_only=False)["state_dict"]
    assert tuple(state["model.blocks.0.mlp.0.weight"].shape) == (6 * 48, 48), "the user's WideGPT was built"
    assert "(global step 8)" in proc.stdout
    assert not (repo / "outputs").exists()


def test_expconf_cli_with_user_config_dir(user_repo: Path) -> None:
    cli = [sys.executable, "-m", "expconf.train", "+recipe=gpt", "--config-dir", "conf", "+experiment=small_wide"]
    env = {"EXPCONF_CONFIG_MODULES": "my_models", "EXPCONF_ALLOWED_TARGETS": "my_models.*"}
    # the user's own validation rule, through expconf's one-line errors
    bad = _run([*cli, "model.mlp_ratio=0"], user_repo, **env)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: model.mlp_ratio=0: expected an integer in [1, 64]"
    # the user's target must be allowed by the environment, not by the config file
    denied = _run([*cli, *SMALL], user_repo, EXPCONF_CONFIG_MODULES="my_models")
    assert denied.returncode == 2 and "model._target_='my_models.WideGPT'" in denied.stderr
    assert not (user_repo / "nemo_experiments").exists()
    _check_run(user_repo, _run([*cli, *SMALL], user_repo, **env))


def test_users_own_hydra_main(user_repo: Path) -> None:
    proc = _run([sys.executable, "train_mine.py", "+experiment=small_wide", *SMALL], user_repo)
    _check_run(user_repo, proc)


def test_users_own_hydra_main_runs_ddp(user_repo: Path, tmp_path: Path) -> None:
    """``expconf.run(cfg)`` with two gloo ranks: both train one job in one run dir, and the config
    (a secret in it) reaches rank 1 through its private file, never through an environment."""
    secret = "UserRepo-Secret-0123-abcd"
    ddp = ["trainer.strategy=ddp", "trainer.devices=2", "trainer.accelerator=cpu", "trainer.max_steps=4"]
    cmd = [sys.executable, "train_mine.py", "+experiment=small_wide", *SMALL, *ddp]
    out_file = tmp_path / "out.txt"
    with out_file.open("w") as out:
        proc = subprocess.Popen(
            [*cmd, f"++log.ckpt.storage_options.secret={secret}"],
            cwd=user_repo,
            env=make_env(PYTHONPATH=str(user_repo)),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        environments = [proc_environ(proc.pid)]
        children: dict[int, dict[str, str]] = {}
        while proc.poll() is None:
            for pid in child_pids(proc.pid):
                children[pid] = children.get(pid) or proc_environ(pid)
            time.sleep(0.05)
    output = out_file.read_text()
    assert proc.returncode == 0, output[-3000:]
    [rank1] = [env for env in children.values() if env.get("LOCAL_RANK") == "1"]
    assert not any(secret in value for env in [*environments, *children.values()] for value in env.values())
    job_file = Path(rank1["EXPCONF_CHILD_CONFIG"])
    assert not job_file.exists() and not job_file.parent.exists()
    assert "EXPCONF_CHILD_CONFIG" not in environments[0]

    [run_dir] = run_dirs(user_repo / "nemo_experiments")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["_target_"] == "my_models.WideGPT" and saved["trainer"]["devices"] == 2
    assert test_ddp.rank_records(run_dir) == {0: config_digest(saved), 1: config_digest(saved)}
    [last] = (run_dir / "checkpoints").glob("wide--*-last.ckpt")
    assert "step=4" in last.name and len(list(run_dir.parent.iterdir())) == 1
    assert "(global step 4)" in output and secret not in output
