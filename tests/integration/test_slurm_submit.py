"""``hydra/launcher=slurm``: what a sweep submits to SLURM, and one submitted job run, without a cluster.

Fake ``sbatch`` / ``srun`` executables on PATH stand in for the cluster: ``sbatch`` keeps the batch
script it is given and answers with a job id. submitit then waits for jobs that never run, so
the test stops the sweep once every sweep point is submitted and reads what was submitted. One
submitted job is then run the way its batch script would run it (``submitit.core._submit``) with
the variables SLURM sets for a one-task allocation.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_ddp
import yaml

from expconf.callbacks.job_record import config_digest
from helpers import TINY, cli_env, run_dirs

pytestmark = pytest.mark.slow

FAKE_SBATCH = """#!/bin/sh
cp "$1" "$EXPCONF_FAKE_SBATCH_SCRIPT"
echo "Submitted batch job 4242"
"""


def submit_sweep(tmp_path: Path, args: list[str]) -> tuple[Path, str, list[Path]]:
    """Run the sweep against the fake cluster: (experiment folder, batch script, submitted jobs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / "submitted.sh"
    env = cli_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", EXPCONF_FAKE_SBATCH_SCRIPT=str(script))
    proc = subprocess.Popen(
        [sys.executable, "-m", "expconf.train", "-m", *TINY, "hydra/launcher=slurm", *args],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    folder = work / "nemo_experiments" / "gpt" / ".submitit"
    try:
        deadline = time.monotonic() + 180
        while len(list(folder.glob("4242_*/4242_*_submitted.pkl"))) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "the sweep submitted nothing"
            time.sleep(0.5)
    finally:
        proc.kill()
        out, _ = proc.communicate()
    submitted = sorted(folder.glob("4242_*/4242_*_submitted.pkl"))
    assert len(submitted) == 2, out[-3000:]
    return work / "nemo_experiments", script.read_text(), submitted


def test_sweep_submits_one_slurm_job_per_point(tmp_path: Path) -> None:
    args = ["hydra.launcher.partition=gpu", "trainer.devices=4", "trainer.num_nodes=2", "trainer.strategy=ddp"]
    exp, text, submitted = submit_sweep(tmp_path, [*args, "optim.lr=1e-3,2e-3"])
    folder = exp / "gpt" / ".submitit"
    # One array job, one task per sweep point; each point: 2 nodes, 4 tasks (= GPUs) per node.
    for line in (
        "#SBATCH --array=0-1",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=4",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --partition=gpu",
        "#SBATCH --job-name=gpt",
    ):
        assert line in text, text
    assert f"--output {folder}/%A_%a/%A_%a_%t_log.out" in text  # logs stay in the experiment folder
    assert "srun " in text and "submitit.core._submit" in text
    # Each array task runs the sweep with that point's overrides.
    points = []
    for f in submitted:
        with f.open("rb") as fh:
            job = pickle.load(fh)
        overrides = job.args[0]
        points.append([o for o in overrides if o.startswith("optim.lr=")])
        assert "trainer.devices=4" in overrides and "trainer.num_nodes=2" in overrides
    assert sorted(points) == [["optim.lr=0.001"], ["optim.lr=0.002"]]
    assert not run_dirs(exp)  # the submitting process makes no run dir: each job makes its own


def test_submitted_job_trains_its_point_under_slurm(tmp_path: Path) -> None:
    args = ["trainer.max_steps=2", "trainer.val_check_interval=2", "trainer.limit_val_batches=1"]
    exp, _, _ = submit_sweep(tmp_path, [*args, "trainer.accelerator=cpu", "trainer.devices=1", "optim.lr=1e-3,2e-3"])
    slurm = {  # what SLURM sets for array task 1 of job 4242, one task on one node
        "SLURM_JOB_ID": "4243",
        "SLURM_ARRAY_JOB_ID": "4242",
        "SLURM_ARRAY_TASK_ID": "1",
        "SLURM_JOB_NAME": "gpt",
        "SLURM_NTASKS": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
        "SLURM_JOB_NODELIST": "localhost",
        "SUBMITIT_EXECUTOR": "slurm",
    }
    job = subprocess.run(
        [sys.executable, "-u", "-m", "submitit.core._submit", str(exp / "gpt" / ".submitit" / "%j")],
        cwd=tmp_path / "work",
        env=cli_env(**slurm),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    [run_dir] = run_dirs(exp)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 2e-3  # array task 1 is the second sweep point
    assert test_ddp.rank_records(run_dir) == {0: config_digest(saved)}
    rank_log = (run_dir / "nemo_log_globalrank-0_localrank-0.txt").read_text()
    assert "SLURM auto-requeueing enabled" in rank_log  # Lightning saw the SLURM environment
    assert any(p.name.endswith("-end.ckpt") for p in (run_dir / "checkpoints").iterdir())
