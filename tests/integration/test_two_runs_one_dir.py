"""Two runs on one run dir, as real processes: the second is refused while the first lives, and
a restart after ``kill -9`` of the holder takes the lock over and resumes. The S3 lease against
a real server (SeaweedFS)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_probe import read_log
from s3server import ACCESS_KEY, SECRET_KEY, SeaweedS3

import helpers
from expconf.run_lock import LEASE_NAME, RemoteLease, RunLockedError
from helpers import REPO, TINY

pytestmark = pytest.mark.slow

ARGS = [
    *TINY,
    "trainer.max_steps=5",
    "log.ckpt.every_n_train_steps=2",
    "log.name=locked",
    "log.version=v1",
    "resume.resume_if_exists=true",
    "resume.resume_ignore_no_checkpoint=true",
]


def command(tmp: Path, *extra: str) -> list[str]:
    probe = f"{{_target_:fault_probe.StepProbe,path:'{tmp / 'losses.log'}'}}"
    return [sys.executable, "-m", "expconf.train", *ARGS, f"callbacks.extra=[{','.join([probe, *extra])}]"]


def env() -> dict[str, str]:
    return helpers.cli_env(EXPCONF_ALLOWED_TARGETS="fault_probe.*", PYTHONPATH=str(REPO / "tests"))


def run(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(tmp, *extra), cwd=tmp, env=env(), capture_output=True, text=True, timeout=600)


def test_second_run_is_refused_and_a_restart_after_kill_9_takes_over(tmp_path: Path) -> None:
    ready = tmp_path / "holding"
    # The first run saves at step 2, then holds the run dir (sleeps) after step 3.
    hold = f"{{_target_:fault_probe.HoldAt,path:'{ready}',step:3}}"
    first = subprocess.Popen(
        command(tmp_path, hold), cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while not ready.exists():  # a wait, not a timing assertion: the subprocess timeouts bound it
            assert first.poll() is None, f"the first run ended early ({first.returncode})"
            time.sleep(0.2)
        second = run(tmp_path)
        assert second.returncode == 2, second.stderr[-3000:]
        lines = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in second.stderr, second.stderr[-3000:]
        assert "is in use by another run" in lines[0] and f"pid {first.pid}" in lines[0], lines
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    third = run(tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    _, starts, _ = read_log(tmp_path / "losses.log")
    assert starts == [0, 2], starts  # the second run started nothing; the third resumed at step 2


@pytest.mark.s3
def test_s3_lease_refuses_a_second_holder_and_is_taken_over_once_expired(s3_server: SeaweedS3, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/ck"
    options = {"key": ACCESS_KEY, "secret": SECRET_KEY, "endpoint_url": s3_server.endpoint}
    first = RemoteLease(url, options, ttl=600)
    first.acquire()
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
        RemoteLease(url, options).acquire()
    first.release()
    assert not s3_server.client().exists(f"{s3_bucket}/ck/{LEASE_NAME}")
    # A holder on another machine that died: its lease (short, never renewed) lapses and the next
    # start takes it over.
    dead = RemoteLease(url, options, ttl=0.5)
    dead.owner["host"] = "elsewhere"
    dead._write()
    later = RemoteLease(url, options)
    while True:  # a wait for the expiry, not a timing assertion
        try:
            later.acquire()
            break
        except RunLockedError:
            time.sleep(0.2)
    later.release()


@pytest.mark.s3
def test_s3_lease_of_a_dead_process_on_this_host_is_taken_over_at_once(s3_server: SeaweedS3, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/ck"
    options = {"key": ACCESS_KEY, "secret": SECRET_KEY, "endpoint_url": s3_server.endpoint}
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = RemoteLease(url, options, ttl=600)
    dead.owner["pid"] = int(gone.stdout)
    dead._write()
    taker = RemoteLease(url, options)
    taker.acquire()  # no wait for the expiry
    taker.release()
