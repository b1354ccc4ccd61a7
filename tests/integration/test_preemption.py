"""Preemption and bitwise-identical resume, with real processes and real signals.

Every interrupted run here is compared, micro-batch by micro-batch, with one uninterrupted
run of the same config (dropout on, shuffled data): the losses must be equal bit for bit.
That comparison is valid because every run executes the same ops in the same order: same code,
same config, and the same intra-op thread count (``helpers.CLI_THREADS``, recorded by the probe
at each start and asserted), so every CPU reduction sums in the same order.
The signal is sent by the run to itself when a given step completes (tests/fault_probe.py),
so the interruption point is deterministic while the signal is real.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fault_probe import read_log, thread_counts, validations

import helpers
from helpers import CLI_THREADS, REPO, TINY

pytestmark = pytest.mark.slow

# 2,700 bytes of text: 80 training windows of 32 tokens, so one epoch is 10 steps of 8 samples.
CORPUS = (Path(os.__file__).read_text()[:2700]).encode()
STEPS = 14
STEPS_PER_EPOCH = 10
BASE = [
    *TINY,
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=6",  # micro-batches: validation every 3 steps
    "model.dropout=0.1",
    "data.shuffle=true",
    "log.name=fault",
    "log.version=v1",
    "resume.resume_if_exists=true",
    "resume.resume_ignore_no_checkpoint=true",
]


def launch(
    tmp: Path,
    log: Path,
    *extra: str,
    signal_at: int = -1,
    sig: str = "SIGTERM",
    repeat: bool = False,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m expconf.train`` with the probe; the same call again resumes the same run."""
    corpus = tmp / "corpus.txt"
    if not corpus.exists():
        corpus.write_bytes(CORPUS)
    probe = (
        f"callbacks.extra=[{{_target_:fault_probe.StepProbe,path:'{log}',signal_at:{signal_at},"
        f"signal:{sig},repeat_signal:{str(repeat).lower()}}}]"
    )
    args = [*BASE, f"data.path={corpus}", probe, *extra]
    run_env = helpers.cli_env(EXPCONF_ALLOWED_TARGETS="fault_probe.*", PYTHONPATH=str(REPO / "tests"), **(env or {}))
    return helpers.train_process(args, tmp, run_env, timeout)


def checkpoints(tmp: Path) -> Path:
    return tmp / "nemo_experiments" / "fault" / "v1" / "checkpoints"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], str]:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    proc = launch(tmp, tmp / "losses.log")
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses, starts, _ = read_log(tmp / "losses.log")
    assert starts == [0] and len(losses) == STEPS * 2  # two micro-batches per step
    assert thread_counts(tmp / "losses.log") == {CLI_THREADS}
    return losses


def assert_same_losses(log: Path, expected: dict[tuple[int, int], str], resumed_at: int) -> None:
    losses, starts, conflicts = read_log(log)
    assert starts == [0, resumed_at], starts
    assert not conflicts, conflicts
    assert thread_counts(log) == {CLI_THREADS}, "bitwise comparison needs the reference's thread count"
    differ = [k for k in expected if losses.get(k) != expected[k]]
    assert not differ, f"losses differ from the uninterrupted run at (step, micro-batch) {differ[:5]}"


def test_sigterm_mid_epoch_checkpoints_exits_75_and_resumes_bitwise(
    tmp_path: Path, uninterrupted: dict[tuple[int, int], str]
) -> None:
    log = tmp_path / "losses.log"
    # The signal arrives right after step 5 completes; the step in progress (6) finishes first.
    proc = launch(tmp_path, log, signal_at=5)
    assert proc.returncode == 75, proc.stderr[-3000:]
    assert "preempted: resumable checkpoint written; exit code 75" in proc.stdout
    [last] = checkpoints(tmp_path).glob("*-last.ckpt")
    assert "step=6-" in last.name
    assert Path(f"{last}.meta.json").is_file()  # complete: resume may pick it
    again = launch(tmp_path, log)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_losses(log, uninterrupted, resumed_at=6)


def test_sigusr1_at_epoch_boundary_with_workers_requeues_under_slurm(
    tmp_path: Path, uninterrupted: dict[tuple[int, int], str]
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "scontrol.args"
    stub = bin_dir / "scontrol"
    stub.write_text(f'#!/bin/sh\necho "$@" >> "{record}"\n')
    stub.chmod(0o755)
    env = {"SLURM_JOB_ID": "4242", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    log = tmp_path / "losses.log"
    common = ("callbacks.preemption_signal=SIGUSR1", "data.num_workers=2")
    # Step 10 is the last of epoch 0: the checkpoint sits exactly on the epoch boundary.
    proc = launch(tmp_path, log, *common, signal_at=STEPS_PER_EPOCH - 1, sig="SIGUSR1", env=env)
    assert proc.returncode == 75, proc.stderr[-3000:]
    assert record.read_text().split() == ["requeue", "4242"]
    again = launch(tmp_path, log, *common, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert record.read_text().count("requeue") == 1  # a run that completes does not requeue
    assert_same_losses(log, uninterrupted, resumed_at=STEPS_PER_EPOCH)


def test_signal_during_async_save_waits_for_it_and_resumes_bitwise(
    tmp_path: Path, uninterrupted: dict[tuple[int, int], str]
) -> None:
    log = tmp_path / "losses.log"
    common = ("log.ckpt.async_save=true", "log.ckpt.every_n_train_steps=2", "data.num_workers=2")
    # Step 6's background save starts right after the signal; the preemption save of step 7
    # queues behind it and the process exits only when both are durable.
    proc = launch(tmp_path, log, *common, signal_at=6)
    assert proc.returncode == 75, proc.stderr[-3000:]
    folder = checkpoints(tmp_path)
    names = {p.name for p in folder.iterdir()}
    assert not [n for n in names if ".tmp-" in n], names
    lasts = [n for n in names if n.endswith("-last.ckpt")]
    assert len(lasts) == 1 and "step=7-" in lasts[0], names
    assert lasts[0] + ".meta.json" in names
    # Validation runs every 3 steps; Lightning would also validate before honouring should_stop,
    # but a preempted job has no time for it: none at step 7.
    assert validations(log) == [3, 6]
    again = launch(tmp_path, log, *common)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_same_losses(log, uninterrupted, resumed_at=7)


def test_ddp_every_rank_stops_at_the_same_step_and_resumes(tmp_path: Path) -> None:
    import torch

    ddp = (
        "trainer.strategy=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.max_steps=6",
        "data.path=null",
        "data.corpus_megabytes=1",
    )
    log = tmp_path / "losses.log"
    # Only rank 0 receives the signal: the flag is agreed across ranks at the end of every step,
    # so both ranks finish step 3, write one checkpoint together and stop.
    proc = launch(tmp_path, log, *ddp, signal_at=2)
    assert proc.returncode == 75, proc.stderr[-3000:]
    [last] = checkpoints(tmp_path).glob("*-last.ckpt")
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 3
    assert len(saved["expconf_rng"]["per_rank"]) == 2  # both ranks' RNG states
    again = launch(tmp_path, log, *ddp)
    assert again.returncode == 0, again.stderr[-3000:]
    losses, starts, _ = read_log(log)
    assert starts == [0, 3] and sorted(losses) == [(s, 0) for s in range(6)]


def test_second_signal_is_not_swallowed_and_takes_launched_ranks_down(tmp_path: Path) -> None:
    # The run signals itself after step 2 and again 1.5 s later, before the preemption checkpoint
    # of step 3 is taken: the second request terminates the process by the signal itself.
    ddp = (
        "trainer.strategy=ddp",
        "trainer.devices=2",
        "trainer.accelerator=cpu",
        "trainer.max_steps=6",
        "data.path=null",
        "data.corpus_megabytes=1",
    )
    # A rank left behind would hold the output pipes open: the run would not return in time.
    proc = launch(tmp_path, tmp_path / "losses.log", *ddp, signal_at=2, repeat=True, timeout=240)
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]  # not a rank failing on a lost peer
    left = [p for p in Path("/proc").glob("[0-9]*") if _cwd(p) == tmp_path]
    assert not left, f"ranks still running: {left}"


def _cwd(proc: Path) -> Path | None:
    try:
        return Path(os.readlink(proc / "cwd"))
    except OSError:
        return None


def test_sigterm_caught_by_lightning_before_training_is_taken_over() -> None:
    """A SIGTERM during setup or restore lands in Lightning's handler; it must still checkpoint."""
    from types import SimpleNamespace

    from expconf.callbacks.preemption import PreemptionCallback

    connector = SimpleNamespace(received_sigterm=True)
    trainer: Any = SimpleNamespace(global_step=0, _signal_connector=connector, strategy=None)
    cb = PreemptionCallback("SIGTERM")
    try:
        cb.on_train_start(trainer, None)  # type: ignore[arg-type]
        assert cb.received and not connector.received_sigterm
    finally:
        cb.uninstall()


def test_requeue_names_the_array_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from expconf.callbacks.preemption import requeue_slurm_job

    record = tmp_path / "args"
    stub = tmp_path / "scontrol"
    stub.write_text(f'#!/bin/sh\necho "$@" > "{record}"\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert not requeue_slurm_job()  # not under SLURM: nothing to requeue
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert requeue_slurm_job()
    assert record.read_text().split() == ["requeue", "70_3"]


def test_signal_before_fit_is_honoured_after_the_first_step(tmp_path: Path) -> None:
    # Sent while the run is being built (the probe's constructor), before any Lightning handler.
    proc = launch(tmp_path, tmp_path / "losses.log", signal_at=-2)
    assert proc.returncode == 75, (proc.returncode, proc.stderr[-3000:])
    [last] = checkpoints(tmp_path).glob("*-last.ckpt")
    assert "step=1-" in last.name and Path(f"{last}.meta.json").is_file()


def test_copy_of_the_signal_while_exiting_counts_as_one(tmp_path: Path) -> None:
    # The copy arrives after Lightning's teardown put its handlers back: still one request.
    proc = launch(tmp_path, tmp_path / "losses.log", "+callbacks.extra.0.copy_at_exit=true", signal_at=2)
    assert proc.returncode == 75, (proc.returncode, proc.stderr[-3000:])
    assert "preempted: resumable checkpoint written; exit code 75" in proc.stdout
    [last] = checkpoints(tmp_path).glob("*-last.ckpt")
    assert "step=3-" in last.name and Path(f"{last}.meta.json").is_file()


def test_sigint_exits_130(tmp_path: Path) -> None:
    proc = launch(tmp_path, tmp_path / "losses.log", signal_at=2, sig="SIGINT")
    assert proc.returncode == 130, (proc.returncode, proc.stderr[-3000:])
