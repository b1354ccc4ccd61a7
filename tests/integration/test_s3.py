"""Checkpoints on a real S3 server (SeaweedFS on loopback): save, top-k, -last/-end, resume, faults."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from s3server import ACCESS_KEY, SECRET_KEY, SeaweedS3

from helpers import TINY, train_process
from helpers import cli_env as base_env

pytestmark = [pytest.mark.s3, pytest.mark.slow]


def env_for(server: SeaweedS3 | None, **extra: str) -> dict[str, str]:
    """The CLI's environment: no inherited AWS settings; the server's when given."""
    env = {k: v for k, v in base_env().items() if not k.startswith("AWS_")}
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    if server is not None:
        env.update(server.env())
    env.update(extra)
    return env


def cli(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return train_process(args, cwd, env, timeout)


def listing(server: SeaweedS3, prefix: str) -> dict[str, Any]:
    """name -> marker dict (None for objects without a marker) under ``prefix``.

    Safe while a run writes there: a checkpoint whose marker is deleted between the listing and
    the read (the run replacing its '-last') is left out, as expconf's own scan does.
    """
    fs = server.client()
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(prefix, detail=False, refresh=True)] if fs.exists(prefix) else []
    out: dict[str, Any] = {}
    for n in names:
        if n.endswith(".meta.json"):
            continue
        marker = f"{n}.meta.json"
        if marker not in names:
            out[n] = None
            continue
        try:
            out[n] = json.loads(fs.cat(f"{prefix}/{marker}"))
        except FileNotFoundError:
            continue
    return out


def expconf_payload(step: int) -> bytes:
    """The bytes of a checkpoint expconf wrote (its own record inside) whose marker never followed."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": {}, "global_step": step, "expconf": {"kind": "last", "global_step": step}}, buf)
    return buf.getvalue()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_save_topk_last_end_async_and_resume_path(s3_server: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    """Credentials and endpoint from storage_options only; async saves; then resume.path=s3://..."""
    prefix = f"{s3_bucket}/ckpt"
    creds = [
        f"+log.ckpt.storage_options.key={ACCESS_KEY}",
        f"+log.ckpt.storage_options.secret={SECRET_KEY}",
        f"+log.ckpt.storage_options.endpoint_url={s3_server.endpoint}",
    ]
    common = [
        *TINY,
        f"log.ckpt.dirpath=s3://{prefix}",
        "log.ckpt.save_top_k=2",
        "trainer.val_check_interval=8",
    ]  # every 4 steps
    proc = cli([*common, *creds, "trainer.max_steps=12", "log.ckpt.async_save=true"], tmp_path, env_for(None))
    assert proc.returncode == 0, proc.stderr[-3000:]

    ckpts = listing(s3_server, prefix)
    assert all(meta is not None for meta in ckpts.values()), f"incomplete after a finished run: {ckpts}"
    topk = sorted(int(m["global_step"]) for m in ckpts.values() if m["kind"] == "topk")
    assert topk == [8, 12], ckpts  # step 4 was the worst and got deleted
    assert [m["global_step"] for m in ckpts.values() if m["kind"] == "last"] == [12]
    assert [m["global_step"] for m in ckpts.values() if m["kind"] == "end"] == [12]
    assert not s3_server.client().exists(f"{prefix}/.expconf-probe"), "the reachability probe was left behind"

    # The secret given in storage_options reaches no file of the run (config, overrides, cmd-args, logs).
    run_files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in run_files)
    for p in run_files:
        assert SECRET_KEY.encode() not in p.read_bytes(), f"secret leaked into {p}"

    step8 = next(n for n, m in ckpts.items() if m["kind"] == "topk" and m["global_step"] == 8)
    proc = cli(
        [*common, *creds, "trainer.max_steps=14", f"resume.path='s3://{prefix}/{step8}'"], tmp_path, env_for(None)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Restored all states from the checkpoint at s3://{prefix}/{step8}" in proc.stdout + proc.stderr
    assert "(global step 14)" in proc.stdout
    after = listing(s3_server, prefix)
    assert step8 in after, "the checkpoint resumed from was deleted"
    assert sorted(m["global_step"] for m in after.values() if m and m["kind"] == "end") == [12, 14]


def test_server_killed_mid_run_then_auto_resume(tmp_path: Path) -> None:
    """Kill -9 the server while checkpoints stream: one error line; the next run resumes the last complete one."""
    server = SeaweedS3(tmp_path / "weed")
    server.start()
    try:
        bucket = server.make_bucket()
        prefix = f"{bucket}/run"
        # A model of ~1.6 MB of checkpoint, saved every step, so the kill lands during an upload more often than not.
        args = [
            *TINY,
            "model.n_embd=96",
            "model.n_layer=2",
            f"log.ckpt.dirpath=s3://{prefix}",
            "log.ckpt.every_n_train_steps=1",
            "trainer.val_check_interval=1000",
            "trainer.max_steps=100000",
        ]
        (tmp_path / "a").mkdir()
        proc = subprocess.Popen(
            [sys.executable, "-m", "expconf.train", *args],
            cwd=tmp_path / "a",
            env=env_for(server),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and proc.poll() is None:
                done = [n for n, m in listing(server, prefix).items() if m and m["global_step"] >= 3]
                if done:
                    break
                time.sleep(0.2)
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            server.kill()
            _, stderr = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 1, stderr[-3000:]
        lines = error_lines(stderr)
        assert len(lines) == 1 and "checkpoint write failed" in lines[0], stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]

        server.restart()
        before = listing(server, prefix)
        complete = {n: m for n, m in before.items() if m is not None}
        last = max((m for m in complete.values() if m["kind"] == "last"), key=lambda m: m["global_step"])
        # expconf's checkpoint of a later step whose marker the kill prevented: removable, never resumed.
        planted = f"gpt--val_loss=1.000-step={last['global_step'] + 50}-consumed_samples=0.0-last.ckpt"
        server.client().pipe(f"{prefix}/{planted}", expconf_payload(int(last["global_step"]) + 50))

        (tmp_path / "b").mkdir()
        target = int(last["global_step"]) + 2
        args2 = [a for a in args if not a.startswith("trainer.max_steps")]
        done2 = cli(
            [*args2, f"trainer.max_steps={target}", "resume.resume_if_exists=true"], tmp_path / "b", env_for(server)
        )
        assert done2.returncode == 0, done2.stderr[-3000:]
        out2 = done2.stdout + done2.stderr
        assert f"resuming from s3://{prefix}/{last['name']}" in out2, out2[-3000:]
        assert f"(global step {target})" in done2.stdout
        after = listing(server, prefix)
        assert planted not in after, "rank 0 did not remove the incomplete checkpoint"
        assert all(m is not None for m in after.values()), after
    finally:
        server.close()


@pytest.mark.parametrize("fault", ["endpoint", "credentials"])
def test_wrong_endpoint_or_credentials_fail_at_start(
    s3_server: SeaweedS3, s3_bucket: str, tmp_path: Path, fault: str
) -> None:
    env = env_for(s3_server)
    if fault == "endpoint":
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # discard port: nothing listens
    else:
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    proc = cli([*TINY, f"log.ckpt.dirpath=s3://{s3_bucket}/x", "trainer.max_steps=5"], tmp_path, env, timeout=180)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"error: log.ckpt.dirpath='s3://{s3_bucket}/x': expected a reachable"), lines
    assert ("127.0.0.1:9" in lines[0]) if fault == "endpoint" else ("signature" in lines[0].lower()), lines
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "nemo_experiments").exists(), "a run dir was created before the check"
    assert "not-the-secret" not in proc.stderr + proc.stdout


def test_async_preemption_waits_for_pending_upload(s3_server: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    """SIGTERM with async_save on S3: exit 75 only after the preemption checkpoint is complete."""
    prefix = f"{s3_bucket}/pre"
    args = [
        *TINY,
        f"log.ckpt.dirpath=s3://{prefix}",
        "log.ckpt.async_save=true",
        "log.ckpt.every_n_train_steps=3",
        "trainer.val_check_interval=1000",
        "trainer.max_steps=100000",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "expconf.train", *args],
        cwd=tmp_path,
        env=env_for(s3_server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None and not any(listing(s3_server, prefix).values()):
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 75, stderr[-3000:]
    m = re.search(r"last checkpoint: (s3://\S+)", stdout)
    assert m, stdout
    name = m.group(1).rsplit("/", 1)[-1]
    ckpts = listing(s3_server, prefix)
    assert ckpts.get(name) is not None, f"{name} is not complete at exit: {ckpts}"
    step = int(re.search(r"\(global step (\d+)\)", stdout).group(1))  # type: ignore[union-attr]
    assert ckpts[name]["global_step"] == step
    assert all(meta is not None for meta in ckpts.values()), ckpts
    assert not any(n.endswith("-end.ckpt") for n in ckpts), "a preempted run must not write '-end'"


def test_incomplete_uploads_are_never_resumed_and_get_cleaned(s3_server: SeaweedS3, s3_bucket: str) -> None:
    """Objects without a marker (cut-off uploads) are incomplete: resume skips them, rank 0 removes them;
    one whose size no longer matches its marker is refused too."""
    import torch

    from expconf.checkpoint.meta import CheckpointMeta, clean_incomplete, scan
    from expconf.checkpoint.writer import CheckpointWriter, SavePlan
    from expconf.resume import IncompleteCheckpointError, decide
    from expconf.storage import Storage

    storage = Storage(
        f"s3://{s3_bucket}/ck", {"key": ACCESS_KEY, "secret": SECRET_KEY, "endpoint_url": s3_server.endpoint}
    )
    fs = s3_server.client()
    # Only a marker-less '-last': resume refuses it and says which one.
    fs.pipe(f"{s3_bucket}/ck/m-step=9-last.ckpt", expconf_payload(9))
    with pytest.raises(IncompleteCheckpointError, match=r"m-step=9-last\.ckpt"):
        decide(storage, resume_past_end=False)

    plan = SavePlan(label="ok")
    meta = CheckpointMeta(name="m-step=4-last.ckpt", global_step=4, epoch=0, kind="last")
    plan.write(storage, "m-step=4-last.ckpt", {"w": torch.ones(2)}, meta)
    CheckpointWriter().submit(plan)
    fs.pipe(f"{s3_bucket}/ck/gone.ckpt.meta.json", b"{}")  # orphan marker: its checkpoint was being deleted
    decision = decide(storage, resume_past_end=False)
    assert decision.chosen is not None and decision.chosen.name == "m-step=4-last.ckpt"
    assert decision.listing.incomplete == ["gone.ckpt.meta.json", "m-step=9-last.ckpt"]
    assert sorted(clean_incomplete(storage, decision.listing)) == ["gone.ckpt.meta.json", "m-step=9-last.ckpt"]
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(f"{s3_bucket}/ck")) == [
        "m-step=4-last.ckpt",
        "m-step=4-last.ckpt.meta.json",
    ]
    assert scan(storage).incomplete == []

    # An object cut off after its marker was written: its size no longer matches, resume refuses it.
    fs.pipe(f"{s3_bucket}/ck/m-step=4-last.ckpt", fs.cat_file(f"{s3_bucket}/ck/m-step=4-last.ckpt")[:100])
    with pytest.raises(IncompleteCheckpointError, match=r"m-step=4-last\.ckpt \(it has 100 bytes, its marker records"):
        decide(storage, resume_past_end=False)
