"""``trainer.strategy=fsdp`` under a real SLURM (tests/slurm_cluster.py: munged, slurmctld, slurmd on
loopback): two tasks started by ``srun``, and an ``sbatch --requeue`` job preempted by a signal from
SLURM, requeued by SLURM and resumed from its ``-last`` checkpoint.

The preemption goes the way the docs describe it (docs/fault-tolerance.md, "SLURM requeue"):
``scancel --signal=USR1`` reaches every task of the job step (as ``#SBATCH --signal=USR1@T`` would),
the ranks agree to stop, save ``-last`` and exit 75, and rank 0 runs ``scontrol requeue``; SLURM
then starts the batch script again (``SLURM_RESTART_COUNT=1``) and the run resumes. The test
cluster lets a requeued job start again after 5 s instead of SLURM's default 120 s.

Losses are compared with one process training the same global batch, as in test_fsdp_runs.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import test_fsdp_runs
from daemons import free_ports
from fault_probe import read_log
from slurm_cluster import SlurmCluster
from test_fsdp_runs import BASE, FSDP, STEPS, assert_tracks, probe_callback, step_losses

import helpers
from helpers import REPO

pytestmark = pytest.mark.slow

reference = test_fsdp_runs.reference  # one process's losses, shared fixture

#: Job states after which SLURM does nothing more with a job.
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def job_env(cluster: SlurmCluster) -> dict[str, str]:
    """The CLI environment for a job on ``cluster`` (srun and sbatch pass it on to the tasks).

    MASTER_PORT is a free port: Lightning would take 15000 plus the job id's last four digits, and
    every test cluster on this machine numbers its jobs from 1.
    """
    env = helpers.cli_env(
        EXPCONF_ALLOWED_TARGETS="fault_probe.*", PYTHONPATH=str(REPO / "tests"), MASTER_PORT=str(free_ports(1)[0])
    )
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "NODE_RANK"):
        env.pop(var, None)
    return cluster.env({k: v for k, v in env.items() if not k.startswith("TORCHELASTIC_")})


def srun_train(*extra: str) -> list[str]:
    """``srun`` of two tasks on one node, each running ``python -m expconf.train`` with BASE, FSDP and ``extra``."""
    srun = ["srun", "--nodes=1", "--ntasks-per-node=2", "--kill-on-bad-exit=1", "--wait=60", "--job-name=expconf"]
    return [*srun, sys.executable, "-m", "expconf.train", *BASE, *FSDP, *extra]


def only_run_dir(cwd: Path) -> Path:
    [run_dir] = (cwd / "nemo_experiments" / "fsdp").iterdir()
    return run_dir


def assert_two_ranks_ended(run_dir: Path) -> None:
    [end] = (run_dir / "checkpoints").glob("*-end.ckpt")
    assert sorted(p.name for p in end.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    logs = sorted(p.name for p in run_dir.glob("nemo_log_*.txt"))
    assert logs == ["nemo_log_globalrank-0_localrank-0.txt", "nemo_log_globalrank-1_localrank-1.txt"]
    assert "SLURM auto-requeueing enabled" in (run_dir / logs[0]).read_text()  # Lightning saw SLURM


def test_srun_two_tasks_train_fsdp_and_track_one_process(
    slurm_cluster: SlurmCluster, tmp_path: Path, reference: dict[int, float]
) -> None:
    proc = subprocess.run(
        srun_train(),
        cwd=tmp_path,
        env=job_env(slurm_cluster),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=helpers.shell_signals,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    run_dir = only_run_dir(tmp_path)
    assert_two_ranks_ended(run_dir)
    assert_tracks(step_losses(run_dir), reference)


def wait_for(done: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll ``done()`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_sbatch_job_preempted_is_requeued_by_slurm_and_resumes(
    slurm_cluster: SlurmCluster, tmp_path: Path, reference: dict[int, float]
) -> None:
    probe = tmp_path / "probe.log"
    script = tmp_path / "train.sh"
    script.write_text(
        f"#!/bin/bash\n{shlex.join(srun_train('callbacks.preemption_signal=SIGUSR1', probe_callback(probe)))}\n"
    )
    submit = [
        "sbatch",
        "--parsable",
        "--requeue",
        "--nodes=1",
        "--ntasks-per-node=2",
        "--job-name=expconf",
        "--open-mode=append",
        f"--output={tmp_path}/slurm-%j.out",
        f"--chdir={tmp_path}",
        str(script),
    ]
    job_id = subprocess.run(
        submit, env=job_env(slurm_cluster), capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    output = tmp_path / f"slurm-{job_id}.out"

    def log() -> str:
        return output.read_text() if output.exists() else ""

    def ended() -> bool:
        return slurm_cluster.job(job_id)["JobState"] in DONE

    def started() -> bool:
        return probe.exists() and probe.read_text().startswith("start 0")

    # Preempt once rank 0 trains (both ranks have the handler by then); the run requeues itself.
    wait_for(lambda: started() or ended(), "training to start", 180)
    assert started(), log()[-4000:]
    slurm_cluster.run("scancel", "--signal=USR1", job_id)
    wait_for(ended, "the job to end", 240)
    job = slurm_cluster.job(job_id)
    assert (job["JobState"], job["Restarts"], job["ExitCode"]) == ("COMPLETED", "1", "0:0"), log()[-4000:]
    assert "preemption checkpoint written at step" in log()  # the first launch stopped on the signal

    starts = read_log(probe)[1]
    assert len(starts) == 2 and starts[0] == 0 and 0 < starts[1] < STEPS, starts  # resumed mid-run
    run_dir = only_run_dir(tmp_path)
    assert_two_ranks_ended(run_dir)
    assert_tracks(step_losses(run_dir), reference)
