"""``torchrun -m expconf.train``: one node with two ranks, and two nodes on loopback, one run dir each.

Every rank runs the Hydra entry point itself; rank 0 picks the run dir and hands it to the others
through the torchrun agent's store. Had any rank decided on its own, the exclusive creation of
datetime versions would have made a second dir.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import test_ddp
import yaml
from daemons import free_ports

from expconf.callbacks.job_record import config_digest
from helpers import TINY, cli_env, run_dirs

pytestmark = pytest.mark.slow

ARGS = [
    *TINY,
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.accelerator=cpu",
    "trainer.strategy=ddp",
]


def torchrun(*opts: str, args: list[str], cwd: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", *opts, "-m", "expconf.train", *args]
    return subprocess.Popen(cmd, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(procs: list[subprocess.Popen[str]]) -> list[str]:
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=420)
        assert p.returncode == 0, out[-3000:]
        outs.append(out)
    return outs


def check_one_run(cwd: Path, logs: list[str]) -> None:
    [run_dir] = run_dirs(cwd / "nemo_experiments")
    assert len(list((cwd / "nemo_experiments" / "gpt").iterdir())) == 1, "ranks made separate run dirs"
    assert sorted(p.name for p in run_dir.glob("nemo_log_*.txt")) == logs
    digest = config_digest(yaml.safe_load((run_dir / "config.yaml").read_text()))
    assert test_ddp.rank_records(run_dir) == {0: digest, 1: digest}
    assert any(p.name.endswith("-end.ckpt") for p in (run_dir / "checkpoints").iterdir())


def test_torchrun_one_node_two_ranks(tmp_path: Path) -> None:
    proc = torchrun("--standalone", "--nproc_per_node=2", args=[*ARGS, "trainer.devices=2"], cwd=tmp_path)
    [out] = finish([proc])
    assert out.count("run dir:") == 1
    check_one_run(tmp_path, ["nemo_log_globalrank-0_localrank-0.txt", "nemo_log_globalrank-1_localrank-1.txt"])


def test_torchrun_two_nodes_on_loopback(tmp_path: Path) -> None:
    endpoint = f"127.0.0.1:{free_ports(1)[0]}"
    args = [*ARGS, "trainer.devices=1", "trainer.num_nodes=2"]
    nodes = [
        torchrun(
            "--nnodes=2",
            "--nproc_per_node=1",
            f"--node_rank={n}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            "--rdzv-id=expconf-test",
            args=args,
            cwd=tmp_path,
        )
        for n in (0, 1)
    ]
    finish(nodes)
    check_one_run(tmp_path, ["nemo_log_globalrank-0_localrank-0.txt", "nemo_log_globalrank-1_localrank-0.txt"])
