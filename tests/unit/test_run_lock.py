"""expconf.run_lock: an exclusive lock per folder, naming its holder, removed when nothing was written."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from expconf.run_lock import LOCK_NAME, RunLock, RunLockedError, RunLocks


def test_a_second_lock_is_refused_naming_the_holder_until_released(tmp_path: Path) -> None:
    first, second = RunLock(str(tmp_path / "run")), RunLock(str(tmp_path / "run"))
    first.acquire()
    (tmp_path / "run" / "config.yaml").write_text("x: 1\n")  # the run wrote something
    with pytest.raises(RunLockedError) as err:
        second.acquire()
    line = str(err.value)
    assert "\n" not in line and "is in use by another run" in line
    assert f"pid {os.getpid()}" in line and f"host {socket.gethostname()}" in line
    first.release()
    second.acquire()  # a released (or dead) holder's lock is taken over
    second.release()
    assert (tmp_path / "run" / LOCK_NAME).exists()  # kept beside the run's files


def test_release_removes_what_a_start_that_wrote_nothing_created(tmp_path: Path) -> None:
    lock = RunLock(str(tmp_path / "a" / "b"))
    lock.acquire()
    lock.release()
    assert list(tmp_path.iterdir()) == []
    foreign = tmp_path / "theirs"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    lock = RunLock(str(foreign))
    lock.acquire()
    lock.release()
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_locks_cover_the_run_dir_and_a_checkpoint_folder_outside_it_on_rank_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir, ckpt = tmp_path / "run", tmp_path / "ck"
    log = SimpleNamespace(planned_run_dir=lambda resume: run_dir, ckpt=SimpleNamespace(dirpath=str(ckpt)))
    locks = RunLocks()
    locks.acquire(log, True)
    assert [lock.folder for lock in locks.held] == [str(run_dir), str(ckpt)]
    with pytest.raises(RunLockedError, match=str(ckpt)):
        RunLock(str(ckpt)).acquire()
    locks.release()
    inside = SimpleNamespace(planned_run_dir=lambda resume: run_dir, ckpt=SimpleNamespace(dirpath=str(run_dir / "c")))
    locks.acquire(inside, True)
    assert [lock.folder for lock in locks.held] == [str(run_dir)]
    locks.release()
    monkeypatch.setenv("RANK", "1")
    locks.acquire(log, True)
    assert locks.held == []  # only rank 0 locks
