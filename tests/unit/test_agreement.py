"""Rank 0 decides, the other ranks read its value: torchrun's agent store and a shared folder."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from expconf.distributed import handoff
from expconf.distributed.agreement import agree_with_rank0, agreement_key

pytestmark = pytest.mark.usefixtures("no_launcher")


def _other_rank(fn: object, out: list[str]) -> threading.Thread:
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)  # type: ignore[operator]
    t.start()
    return t


def test_torchrun_ranks_agree_through_the_agent_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.distributed import TCPStore

    agent = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # what torchrun's agent serves
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(agent.port))
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")

    def never() -> str:
        raise AssertionError("only rank 0 decides")

    got: list[str] = []
    waiting = _other_rank(lambda: agree_with_rank0("RUN", never, timeout_s=60, rank=1, round_=0), got)
    assert agree_with_rank0("RUN", lambda: "dir-A", rank=0, round_=0) == "dir-A"
    waiting.join(60)
    assert got == ["dir-A"]
    # An elastic restart is a new attempt: a new key, so a new decision rather than the old value.
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert agreement_key("RUN") == "expconf/job/1/RUN/0"
    waiting = _other_rank(lambda: agree_with_rank0("RUN", never, timeout_s=60, rank=1, round_=0), got)
    assert agree_with_rank0("RUN", lambda: "dir-B", rank=0, round_=0) == "dir-B"
    waiting.join(60)
    assert got == ["dir-A", "dir-B"]


def test_the_next_sweep_job_waits_for_its_own_decision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPCONF_AGREE_DIR", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert agree_with_rank0("RUN", lambda: "job-1", rank=0, round_=0) == "job-1"
    got: list[str] = []
    waiting = _other_rank(lambda: agree_with_rank0("RUN", lambda: "wrong", timeout_s=60, rank=1, round_=1), got)
    waiting.join(0.5)
    assert waiting.is_alive() and not got  # job 1's value is not job 2's
    assert agree_with_rank0("RUN", lambda: "job-2", rank=0, round_=1) == "job-2"
    waiting.join(60)
    assert got == ["job-2"]
    # Without an explicit round, each call of a process is the next round.
    assert agree_with_rank0("OTHER", lambda: "a", rank=0) == "a"
    assert agree_with_rank0("OTHER", lambda: "b", rank=0) == "b"
    assert sorted(p.read_text() for p in (tmp_path / "agree").glob("*OTHER*")) == ["a", "b"]


def test_srun_ranks_agree_through_a_shared_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPCONF_AGREE_DIR", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    got: list[str] = []
    waiting = _other_rank(lambda: agree_with_rank0("RUN", lambda: "wrong", timeout_s=60, rank=1, round_=0), got)
    assert agree_with_rank0("RUN", lambda: "dir-S", rank=0, round_=0) == "dir-S"
    waiting.join(60)
    assert got == ["dir-S"]
    # A file a previous launch with the same job id left behind is not this launch's decision.
    stale = next((tmp_path / "agree").iterdir())
    os.utime(stale, (1e9, 1e9))
    with pytest.raises(TimeoutError):
        agree_with_rank0("RUN", lambda: "wrong", timeout_s=0.3, rank=1, round_=0)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a requeued job decides again
    with pytest.raises(TimeoutError, match="EXPCONF_AGREE_DIR"):
        agree_with_rank0("RUN", lambda: "wrong", timeout_s=0.3, rank=1, round_=0)


def test_agree_under_srun_goes_through_rank0(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPCONF_AGREE_DIR", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.delenv("EXPCONF_TEST_DECISION", raising=False)
    assert handoff.export_decision("EXPCONF_TEST_DECISION", lambda: "dir-0") == "dir-0"
    [published] = (tmp_path / "agree").iterdir()
    assert published.read_text() == "dir-0" and "9" in published.name
