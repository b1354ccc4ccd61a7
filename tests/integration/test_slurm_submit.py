"""``hydra/launcher=slurm``: what a sweep submits to SLURM, checked without a cluster.

Fake ``sbatch`` / ``srun`` executables on PATH stand in for the cluster: ``sbatch`` keeps the batch
script it is given and answers with a job id. submitit then waits for jobs that never run, so
the test stops the sweep once both sweep points are submitted and reads what was submitted.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import TINY
from helpers import test_env as cli_env

pytestmark = pytest.mark.slow

FAKE_SBATCH = """#!/bin/sh
cp "$1" "$EXPCONF_FAKE_SBATCH_SCRIPT"
echo "Submitted batch job 4242"
"""


def test_sweep_submits_one_slurm_job_per_point(tmp_path: Path) -> None:
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
    args = [
        *TINY,
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "trainer.strategy=ddp",
        "optim.lr=1e-3,2e-3",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "expconf.train", "-m", *args],
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

    # One array job, one task per sweep point; each point: 2 nodes, 4 tasks (= GPUs) per node.
    text = script.read_text()
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
    # No run dir was made by the submitting process: the jobs make their own.
    assert not list((work / "nemo_experiments").rglob("cmd-args.log"))
