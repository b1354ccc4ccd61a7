"""Crash safety: ``kill -9`` of the whole process group at random instants, and during
checkpoint writes, for 20+ rounds; every restart resumes from the newest complete checkpoint
and the final weights equal those of a run that was never killed. Shorter runs that kill
themselves after a given step check which checkpoint the restart picks: one '-last' remains
after several rounds, a damaged one is passed over, and without '-last' the newest top-k.

Each round is a real process in its own process group, forked from a fork server that has
already imported torch, Lightning and expconf (so that a round costs the training, not the
imports) and that nothing else ran in: a child forked from the test worker itself inherited what
earlier tests left in that process and could crash at start (SIGSEGV). It runs the CLI's own
entry point, ``expconf.train.main``.

The final weights and the per-micro-batch losses are compared bit for bit with the uninterrupted
run. That is valid because both execute the same ops in the same order: same code, config and
data order, and the same intra-op thread count (``helpers.CLI_THREADS``, set in this process
before the rounds fork, recorded by the probe at every start and asserted).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.process
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
from fault_probe import read_log, thread_counts

import helpers
from helpers import CLI_THREADS, REPO, TINY

pytestmark = pytest.mark.slow

ROUNDS = 20
STEPS = 30
ARGS = [
    *TINY,
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=1000",
    "model.dropout=0.1",
    "log.name=crash",
    "log.version=v1",
    "log.ckpt.every_n_train_steps=1",
    "log.tensorboard.enabled=false",
    "callbacks.timing=false",
    "resume.resume_if_exists=true",
    "resume.resume_ignore_no_checkpoint=true",
]


#: Rounds are forked from this server's process (see the module docstring).
FORK_SERVER = multiprocessing.get_context("forkserver")
FORK_SERVER.set_forkserver_preload(["torch", "pytorch_lightning", "expconf.build", "expconf.train", "fault_probe"])


def _round(workdir: str, out: str, argv: list[str]) -> None:
    """A training round, in the forked child: its own process group, output to ``out``."""
    code = 1
    try:
        os.setsid()
        os.chdir(workdir)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ.clear()
        os.environ.update(helpers.cli_env(EXPCONF_ALLOWED_TARGETS="fault_probe.*"))
        import torch

        torch.set_num_threads(CLI_THREADS)
        from expconf.train import main

        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def spawn(
    workdir: Path, log: Path, out: Path, args: list[str] = ARGS, kill_at: int = -1
) -> multiprocessing.process.BaseProcess:
    """Start a round that runs ``python -m expconf.train args`` in ``workdir``; with ``kill_at``,
    the run sends itself SIGKILL when optimizer step ``kill_at`` is done (before that step is saved)."""
    probe = f"callbacks.extra=[{{_target_:fault_probe.StepProbe,path:'{log}',signal_at:{kill_at},signal:SIGKILL}}]"
    proc = FORK_SERVER.Process(target=_round, args=(str(workdir), str(out), [*args, probe]))
    proc.start()
    return proc


def wait(proc: multiprocessing.process.BaseProcess, timeout: float = 300) -> int:
    """The round's exit code (minus the signal number when a signal ended it)."""
    proc.join(timeout)
    if proc.exitcode is None:
        assert proc.pid is not None
        os.killpg(proc.pid, signal.SIGKILL)
        proc.join()
        raise AssertionError("training round did not finish")
    return proc.exitcode


def newest_complete_last(folder: Path) -> int:
    from expconf.checkpoint.meta import scan
    from expconf.storage import Storage

    if not folder.exists():
        return 0
    lasts = scan(Storage(str(folder))).by_kind("last")
    return lasts[-1].global_step if lasts else 0


def has_partial(folder: Path) -> bool:
    from expconf.checkpoint.meta import scan
    from expconf.storage import Storage

    return folder.exists() and bool(scan(Storage(str(folder))).incomplete)


def final_weights(workdir: Path) -> dict[str, object]:
    import torch

    [end] = (workdir / "nemo_experiments" / "crash" / "v1" / "checkpoints").glob("*-end.ckpt")
    state: dict[str, object] = torch.load(end, map_location="cpu", weights_only=True)["state_dict"]
    return state


@pytest.fixture(autouse=True)
def _tests_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # The fork server, started by the first round, takes this sys.path to preload fault_probe.
    monkeypatch.syspath_prepend(str(REPO / "tests"))


def test_kill9_at_random_instants_resumes_from_newest_complete_checkpoint(tmp_path: Path) -> None:
    import torch

    rng = random.Random(1234)
    ref, crashed = tmp_path / "ref", tmp_path / "crashed"
    ref.mkdir()
    crashed.mkdir()
    assert wait(spawn(ref, ref / "losses.log", ref / "out.txt")) == 0, (ref / "out.txt").read_text()[-3000:]

    folder = crashed / "nemo_experiments" / "crash" / "v1" / "checkpoints"
    log, out = crashed / "losses.log", crashed / "out.txt"
    expected_starts: list[int] = []
    partial_rounds = 0
    for round_ in range(ROUNDS):
        expected_starts.append(newest_complete_last(folder))
        starts_before = len(read_log(log)[1]) if log.exists() else 0
        proc = spawn(crashed, log, out)
        # Wait until this round trains, then kill after a random number of micro-batches plus a
        # random fraction of one or, every other round, as soon as a checkpoint write is seen in
        # progress (a temporary file in the folder). Counting batches, not seconds, keeps the
        # progress per round small however fast or loaded the machine is.
        while not (log.exists() and len(read_log(log)[1]) > starts_before):
            assert proc.exitcode is None, out.read_text()[-3000:]
            time.sleep(0.002)
        if round_ % 2:
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and not any(".tmp-" in n for n in os.listdir(folder)):
                time.sleep(0.0005)
        else:
            lines = len(log.read_text().splitlines()) + rng.randint(0, 3)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and len(log.read_text().splitlines()) < lines:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.05))
        assert proc.pid is not None
        os.killpg(proc.pid, signal.SIGKILL)
        assert wait(proc) == -signal.SIGKILL, out.read_text()[-3000:]
        partial_rounds += has_partial(folder)
    expected_starts.append(newest_complete_last(folder))
    assert newest_complete_last(folder) < STEPS, "training finished before all kill rounds: raise STEPS"
    assert wait(spawn(crashed, log, out)) == 0, out.read_text()[-3000:]

    losses, starts, conflicts = read_log(log)
    assert starts == expected_starts, "a restart did not resume from the newest complete checkpoint"
    assert partial_rounds >= 1, "no kill landed during a checkpoint write"
    assert not conflicts, conflicts
    assert thread_counts(log, ref / "losses.log") == {CLI_THREADS}
    assert losses == read_log(ref / "losses.log")[0]
    a, b = final_weights(ref), final_weights(crashed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "final weights differ from the uninterrupted run"  # type: ignore[arg-type]
    print(f"{ROUNDS} kill -9 rounds, {partial_rounds} left a partial checkpoint, resumed at {starts}", file=sys.stderr)


KEEP_ALL = [
    *TINY,
    "trainer.max_steps=8",
    "trainer.val_check_interval=1000",
    "log.ckpt.every_n_train_steps=1",
    "log.ckpt.monitor=null",
    "log.ckpt.save_top_k=-1",  # a top-k checkpoint at every step: older ones to fall back to
    "log.tensorboard.enabled=false",
    "callbacks.timing=false",
    "resume.resume_if_exists=true",
    "resume.resume_ignore_no_checkpoint=true",
]


def lasts(folder: Path) -> dict[str, int]:
    """The '-last' checkpoint files in ``folder`` and the steps their markers record."""
    from expconf.checkpoint.meta import CheckpointMeta, marker_name

    return {
        p.name: CheckpointMeta.from_json((folder / marker_name(p.name)).read_bytes()).global_step
        for p in folder.glob("*-last.ckpt")
    }


def test_kill9_rounds_leave_one_last_and_a_damaged_one_is_passed_over(tmp_path: Path) -> None:
    args = [*KEEP_ALL, "log.name=lasts", "log.version=v1"]
    folder = tmp_path / "nemo_experiments" / "lasts" / "v1" / "checkpoints"
    log, out = tmp_path / "losses.log", tmp_path / "out.txt"
    for kill in (2, 4, 6):
        assert wait(spawn(tmp_path, log, out, args, kill_at=kill)) == -signal.SIGKILL, out.read_text()[-3000:]
        # Killed before step `kill` was saved; the '-last' resumed from is gone once a newer one is complete.
        assert list(lasts(folder).values()) == [kill - 1], sorted(os.listdir(folder))
    # Damage the newest '-last' (step 5). It is a hard link of the top-k file of step 5, so that
    # one is damaged too: the restart passes over both and resumes from step 4.
    [last] = folder.glob("*-last.ckpt")
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    assert wait(spawn(tmp_path, log, out, args)) == 0, out.read_text()[-3000:]
    assert read_log(log)[1] == [0, 1, 3, 4]
    rank_log = folder.parent / "nemo_log_globalrank-0_localrank-0.txt"  # this start's log
    warnings = [line for line in rank_log.read_text().splitlines() if "damaged checkpoint" in line]
    assert len(warnings) == 2 and all("its marker records" in w and "step=4" in w for w in warnings), warnings
    assert list(lasts(folder).values()) == [8]


def test_kill9_without_last_resumes_from_the_newest_top_k(tmp_path: Path) -> None:
    args = [*KEEP_ALL, "log.name=nolast", "log.version=v1", "log.ckpt.save_last=false"]
    log, out = tmp_path / "losses.log", tmp_path / "out.txt"
    assert wait(spawn(tmp_path, log, out, args, kill_at=4)) == -signal.SIGKILL, out.read_text()[-3000:]
    first = len(out.read_text())  # the first round started from scratch and said so
    assert wait(spawn(tmp_path, log, out, args)) == 0, out.read_text()[-3000:]
    assert read_log(log)[1] == [0, 3]
    assert "no checkpoint found" not in out.read_text()[first:]
