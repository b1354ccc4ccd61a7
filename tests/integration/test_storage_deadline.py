"""No hang: a server that accepts connections and never answers, or a FIFO as a checkpoint, fails
a run in one line.

Outcomes only (exit code, the error line, the files left), never durations: the deadlines are
short so the runs end soon, and the subprocess timeouts are generous.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from s3server import ACCESS_KEY, SECRET_KEY, SeaweedS3
from silent_server import SilentServer

from helpers import REPO, TINY, train_process
from helpers import cli_env as base_env

pytestmark = [pytest.mark.s3, pytest.mark.slow]


def env_for(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in base_env().items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        EXPCONF_ALLOWED_TARGETS="fault_probe.*",
        PYTHONPATH=str(REPO / "tests"),
    )
    return env


def run(args: list[str], cwd: Path, endpoint: str) -> subprocess.CompletedProcess[str]:
    return train_process([*TINY, *args], cwd, env_for(endpoint), timeout=600)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_probe_of_a_silent_endpoint_fails_in_one_line(tmp_path: Path) -> None:
    with SilentServer() as silent:
        proc = run(["log.ckpt.dirpath=s3://bucket/x", "log.ckpt.storage_timeout=2"], tmp_path, silent.endpoint)
    assert proc.returncode == 2, proc.stderr[-3000:]
    [line] = error_lines(proc.stderr)
    assert line.startswith("error: log.ckpt.dirpath='s3://bucket/x': expected a reachable"), line
    assert "no answer within 2 s" in line, line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "nemo_experiments").exists()


def test_save_to_a_server_gone_silent_fails_in_one_line_keeping_the_previous_checkpoint(
    s3_server: SeaweedS3, s3_bucket: str, tmp_path: Path
) -> None:
    silence = tmp_path / "silence"
    host, port = s3_server.endpoint.removeprefix("http://").split(":")
    prefix = f"{s3_bucket}/ck"
    args = [
        f"log.ckpt.dirpath=s3://{prefix}",
        "log.ckpt.every_n_train_steps=2",
        "log.ckpt.storage_timeout=3",
        "trainer.max_steps=8",
        f"callbacks.extra=[{{_target_:fault_probe.TouchAt,path:'{silence}',step:3}}]",
    ]
    with SilentServer(upstream=(host, int(port)), silence_file=silence) as proxy:
        # Saves at steps 2 and 4; the server goes silent after step 3, so step 4's save hangs,
        # and a preemption signal arrives meanwhile: it must not wait behind the hung call.
        proc = subprocess.Popen(
            [sys.executable, "-m", "expconf.train", *TINY, *args],
            cwd=tmp_path,
            env=env_for(proxy.endpoint),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            while not silence.exists() and proc.poll() is None:  # a wait, not a timing assertion
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, stderr[-3000:]
    [line] = error_lines(stderr)
    assert "checkpoint write failed" in line and "no answer within 3 s" in line, line
    assert "Traceback" not in stderr
    fs = s3_server.client()
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(prefix, detail=False, refresh=True)}
    complete = sorted(n for n in names if f"{n}.meta.json" in names)
    assert any("step=2-" in n for n in complete), names  # the previous checkpoint, with its marker
    assert not any("step=4-" in n for n in complete), names


def test_resume_path_fifo_is_refused_in_one_line(tmp_path: Path) -> None:
    fifo = tmp_path / "ckpt.fifo"
    os.mkfifo(fifo)
    proc = run([f"resume.path={fifo}"], tmp_path, "http://127.0.0.1:9")
    assert proc.returncode == 2, proc.stderr[-3000:]
    [line] = error_lines(proc.stderr)
    assert line.startswith(f"error: resume.path='{fifo}'") and "not a regular file or folder" in line, line
    assert not (tmp_path / "nemo_experiments").exists()
