"""Every example of README.md, run.

Each line of the README's ``bash`` blocks has an entry in ``CHECKS`` (a README line without one
fails, and so does an entry whose line left the README). Training examples run as real processes
with their own keys plus ``SHRINK`` appended (a 1-layer model, 4 steps), and the saved config
shows that the example's own keys took effect. Two examples need hardware this machine lacks
(32 GPUs; a GPU) and are composed and validated in-process instead, and ``make test`` is checked
with ``make -n`` (running the suite from inside the suite would recurse). The ``text`` block's
error line and the Python block run as written.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, TINY, cli_env, compose_and_validate, run_cli, run_dirs

pytestmark = pytest.mark.slow

README = REPO / "README.md"
BIN = Path(sys.executable).parent
SHRINK = [o for o in TINY if not o.startswith("+recipe=")] + ["trainer.max_steps=4", "trainer.val_check_interval=4"]


def blocks(lang: str) -> list[str]:
    """The README's fenced code blocks of ``lang``."""
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), re.M | re.S)


def commands() -> list[str]:
    """Lines of the bash blocks, without their trailing comments."""
    lines = (re.sub(r"\s+#\s.*$", "", line).strip() for block in blocks("bash") for line in block.splitlines())
    return [line for line in lines if line]


def _args(line: str) -> list[str]:
    words = shlex.split(line)
    assert words[:3] == ["python", "-m", "expconf.train"], line
    return words[3:]


def _train(cwd: Path, args: list[str], **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    proc = run_cli([*args, *SHRINK], cwd, **env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, run_dirs(cwd / "nemo_experiments")[-1]


def _config(run_dir: Path) -> Any:
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def _script(name: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = cli_env(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run([name, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def make_run(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    out = subprocess.run(["make", "-n", "-C", str(REPO), "run"], capture_output=True, text=True, check=True).stdout
    [cmd] = [c for c in out.splitlines() if "-m expconf.train" in c]
    assert cmd.split("-m expconf.train", 1)[1].split() == ["+recipe=gpt"]
    _train(cwd, ["+recipe=gpt"])


def make_test(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    out = subprocess.run(["make", "-n", "-C", str(REPO), "test"], capture_output=True, text=True, check=True).stdout
    for step in ("ruff check", "ruff format --check", "mypy", "gen_reference.py check", "pytest tests"):
        assert step in out, step


def console_train(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    proc = _script("expconf-train", [*shlex.split(line)[1:], *SHRINK], cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _config(run_dirs(cwd / "nemo_experiments")[0])["log"]["name"] == "gpt"


def console_runs_ls(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    _train(cwd, ["recipe=gpt", "optim.lr=1e-3"])
    proc = _script("expconf-runs", ["ls"], cwd)
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "VERSION", "KIND", "STATE"]
    assert row.split()[0] == "gpt" and " run " in row and "completed" in row and "optim.lr=1e-3" in row


def console_migrate(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    (cwd / "old.yaml").write_text("exp_manager:\n  name: old\n  checkpoint_callback_params:\n    save_top_k: 3\n")
    proc = _script("expconf-migrate", shlex.split(line)[1:], cwd)
    assert proc.returncode == 0, proc.stderr
    assert "expconf.NeMoLogger(" in proc.stdout and "save_top_k=3" in proc.stdout


def completion(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    script = line + '\nCOMP_LINE="expconf-train recipe="; COMP_POINT=${#COMP_LINE}; COMP_CWORD=1\n'
    script += 'hydra_bash_completion; printf "%s\\n" "${COMPREPLY[@]}"\n'
    proc = _script("bash", ["-c", script], cwd)
    assert proc.returncode == 0, proc.stderr
    assert {"recipe=gpt", "recipe=gpt_124m"} <= set(proc.stdout.split())


def steps_and_lr(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    args = _args(line)
    assert "trainer.max_steps=1000" in args
    _, run_dir = _train(cwd, args)
    assert _config(run_dir)["optim"]["lr"] == 1e-3


def first_run_then_resume(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    first, run_dir = _train(cwd, _args(line))
    assert run_dir == cwd / "nemo_experiments" / "exp1", "a first run starts from scratch"
    assert list((run_dir / "checkpoints").glob("*-last.ckpt"))
    # The first run finished (an -end checkpoint): going on past its end is what resume_past_end allows.
    second = run_cli([*_args(line), *SHRINK, "trainer.max_steps=6", "resume.resume_past_end=true"], cwd)
    assert second.returncode == 0, second.stderr[-3000:]
    assert run_dirs(cwd / "nemo_experiments") == [run_dir], "the rerun continues the same run dir"
    assert "(global step 6)" in second.stdout and "(global step 4)" in first.stdout
    steps = [int(m) for m in re.findall(r"step=(\d+)", " ".join(p.name for p in (run_dir / "checkpoints").iterdir()))]
    assert max(steps) == 6


def s3_checkpoints(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    args = [a.replace("s3://bucket/", f"s3://{bucket}/") for a in _args(line)]
    _, run_dir = _train(cwd, args, **server.env())
    ckpt = _config(run_dir)["log"]["ckpt"]
    assert ckpt["dirpath"] == f"s3://{bucket}/ckpts" and ckpt["save_top_k"] == 5
    assert any(p.endswith("-last.ckpt") for p in server.client().ls(f"{bucket}/ckpts"))


def wandb_offline(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    _, run_dir = _train(cwd, _args(line))
    assert _config(run_dir)["log"]["wandb"]["project"] == "myproj"
    assert list(run_dir.rglob("offline-run-*")), "W&B wrote its offline run"


def gpt_124m_on_32_gpus(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    root = compose_and_validate(_args(line), request.getfixturevalue("monkeypatch"))
    assert (root.trainer.devices, root.trainer.num_nodes, root.model.n_layer) == (8, 4, 12)
    assert root.data.global_batch_size == 512


def storage_options(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    _, run_dir = _train(cwd, _args(line))
    # The value itself is the redaction rules' business (expconf/redact.py), not this example's.
    assert list(_config(run_dir)["log"]["ckpt"]["storage_options"]) == ["endpoint_url"]


def groups_any_order(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    monkeypatch = request.getfixturevalue("monkeypatch")
    args = _args(line)
    for argv in (args, args[::-1]):
        root = compose_and_validate(argv, monkeypatch)
        assert (root.model.n_layer, root.trainer.accelerator, root.trainer.max_steps) == (12, "gpu", 400)


def own_experiment(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    (cwd / "conf" / "experiment").mkdir(parents=True)
    (cwd / "conf" / "experiment" / "foo.yaml").write_text(
        "# @package _global_\nlog:\n  name: foo\noptim:\n  lr: 5.0e-4\n"
    )
    _, run_dir = _train(cwd, _args(line))
    assert run_dir.parent.name == "foo" and _config(run_dir)["optim"]["lr"] == 5e-4


def print_tree(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    proc = run_cli(_args(line), cwd)
    assert proc.returncode == 0, proc.stderr
    assert "n_layer: 4" in proc.stdout and not (cwd / "nemo_experiments").exists()


def help_page(cwd: Path, line: str, request: pytest.FixtureRequest) -> None:
    proc = run_cli(_args(line), cwd)
    assert proc.returncode == 0 and "Recipes" in proc.stdout and "expconf-runs" in proc.stdout


Check = Callable[[Path, str, pytest.FixtureRequest], None]
CHECKS: dict[str, Check] = {
    "make run": make_run,
    "make test": make_test,
    "expconf-train recipe=gpt": console_train,
    "expconf-runs ls": console_runs_ls,
    "expconf-migrate old.yaml --python": console_migrate,
    'eval "$(expconf-train -sc install=bash)"': completion,
    "python -m expconf.train recipe=gpt trainer.max_steps=1000 optim.lr=1e-3": steps_and_lr,
    "python -m expconf.train recipe=gpt log.name=exp1 resume.resume_if_exists=true "
    "resume.resume_ignore_no_checkpoint=true": first_run_then_resume,
    "python -m expconf.train recipe=gpt log.ckpt.save_top_k=5 log.ckpt.dirpath=s3://bucket/ckpts": s3_checkpoints,
    "python -m expconf.train recipe=gpt log.wandb.project=myproj": wandb_offline,
    "python -m expconf.train recipe=gpt_124m trainer.devices=8 trainer.num_nodes=4 data.global_batch_size=512": (
        gpt_124m_on_32_gpus
    ),
    "python -m expconf.train recipe=gpt '++log.ckpt.storage_options={endpoint_url:http://localhost:8333}'": (
        storage_options
    ),
    "python -m expconf.train recipe=gpt model=gpt_124m trainer=gpu": groups_any_order,
    "python -m expconf.train recipe=gpt --config-dir ./conf experiment=foo": own_experiment,
    "python -m expconf.train recipe=gpt --cfg job": print_tree,
    "python -m expconf.train --help": help_page,
}


def test_every_readme_example_has_a_check() -> None:
    assert set(commands()) == set(CHECKS)


@pytest.mark.parametrize("line", commands())
def test_readme_example(line: str, workdir: Path, request: pytest.FixtureRequest) -> None:
    assert line in CHECKS, f"README example without a check in {__file__}: {line}"
    CHECKS[line](workdir, line, request)


def test_readme_error_example(tmp_path: Path) -> None:
    [block] = blocks("text")
    command, expected = block.strip().splitlines()
    proc = run_cli(_args(command.removeprefix("$ ")), tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == expected
    assert not (tmp_path / "nemo_experiments").exists()


PRELUDE = """
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class Toy(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def step(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def training_step(self, batch, _):
        return self.step(batch)

    def validation_step(self, batch, _):
        self.log("val_loss", self.step(batch))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Data(pl.LightningDataModule):
    def loader(self):
        g = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(torch.randn(32, 4, generator=g), torch.randn(32, 1, generator=g)), batch_size=8)

    def train_dataloader(self):
        return self.loader()

    def val_dataloader(self):
        return self.loader()


model, data = Toy(), Data()
trainer = pl.Trainer(max_steps=4, val_check_interval=2, accelerator="cpu", devices=1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
"""


def test_readme_python_block(tmp_path: Path) -> None:
    """The Python block as written, after a prelude that defines its model, data and trainer."""
    [block] = blocks("python")
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + block],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run_dir] = run_dirs(tmp_path / "nemo_experiments")
    assert run_dir.parent.name == "megatron_gpt" or run_dir.name == "megatron_gpt"
    assert list(run_dir.rglob("*-last.ckpt"))
