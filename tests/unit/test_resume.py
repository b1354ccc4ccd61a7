"""AutoResume: every row of the resume decision table (docs/run-dir-checkpoints-resume.md), over real folders."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from expconf.checkpoint.callback import ModelCheckpoint
from expconf.checkpoint.meta import MARKER_SUFFIX, CheckpointMeta
from expconf.distributed import handoff
from expconf.resume import AutoResume, IncompleteCheckpointError, NotFoundError, TrainingCompletedError
from helpers import quiet_trainer


def put(folder: Path, name: str, step: int, kind: str, *, marker: bool = True, mtime: float | None = None) -> Path:
    """A checkpoint file (or, for names without '.ckpt', a folder) with or without its marker; the
    marker records the file's size (a folder's: each file's), as expconf's writers do."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    meta = CheckpointMeta(name, step, 0, kind)
    if name.endswith(".ckpt") and not marker:
        path.write_bytes(b"weights")  # cut off mid-write: not a readable checkpoint
    elif name.endswith(".ckpt"):
        torch.save({"state_dict": {"w": torch.full((64,), float(step))}, "global_step": step}, path)
        meta.size_bytes = path.stat().st_size
    else:
        path.mkdir()
        (path / "shard0").write_bytes(b"weights")
        meta.files = {"shard0": len(b"weights")}
    if marker:
        (folder / (name + MARKER_SUFFIX)).write_bytes(meta.to_json())
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def trainer(root: Path, ckpt_dir: Path | None = None) -> pl.Trainer:
    callbacks: list[pl.Callback] = [ModelCheckpoint(dirpath=str(ckpt_dir))] if ckpt_dir else []
    return quiet_trainer(root, callbacks, enable_checkpointing=ckpt_dir is not None)


def choose(resume: AutoResume, t: Any, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """One fresh decision (as a new job would make it)."""
    monkeypatch.delenv(handoff.RESUME_ENV, raising=False)
    return resume.setup(t)


# -- arguments ------------------------------------------------------------------------------------------


def test_path_and_import_path_are_mutually_exclusive() -> None:
    with pytest.raises(ValueError, match="mutually exclusive"):
        AutoResume(path="a.ckpt", import_path="b.ckpt")


def test_path_resumes_from_that_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt = put(tmp_path / "elsewhere", "x--step=3.ckpt", 3, "topk")
    assert choose(AutoResume(path=str(ckpt)), trainer(tmp_path), monkeypatch) == str(ckpt)
    with pytest.raises(FileNotFoundError, match=re.escape("missing.ckpt")):
        choose(AutoResume(path=str(tmp_path / "missing.ckpt")), trainer(tmp_path), monkeypatch)


def test_without_resume_if_exists_nothing_is_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    put(tmp_path / "checkpoints", "a-last.ckpt", 5, "last")
    assert choose(AutoResume(), trainer(tmp_path), monkeypatch) is None


# -- where it searches ----------------------------------------------------------------------------------


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = put(tmp_path / "resume_dir", "a-last.ckpt", 1, "last")
    b = put(tmp_path / "ckpt_dir", "b-last.ckpt", 1, "last")
    c = put(tmp_path / "root" / "checkpoints", "c-last.ckpt", 1, "last")
    with_cb = trainer(tmp_path / "root", tmp_path / "ckpt_dir")
    without_cb = trainer(tmp_path / "root")
    assert choose(AutoResume(resume_if_exists=True, dirpath=str(a.parent)), with_cb, monkeypatch) == str(a)
    assert choose(AutoResume(resume_if_exists=True), with_cb, monkeypatch) == str(b)
    assert choose(AutoResume(resume_if_exists=True), without_cb, monkeypatch) == str(c)


def test_protects_the_chosen_checkpoint_from_eviction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    put(tmp_path / "c", "a-last.ckpt", 1, "last")
    t = trainer(tmp_path, tmp_path / "c")
    choose(AutoResume(resume_if_exists=True), t, monkeypatch)
    cb = t.checkpoint_callback
    assert isinstance(cb, ModelCheckpoint) and cb.protected == {"a-last.ckpt"}


# -- which candidate --------------------------------------------------------------------------------------


def test_several_last_highest_step_from_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    # Names and modification times both point at the wrong one.
    put(folder, "gpt--step=900-last.ckpt", 100, "last", mtime=2_000_000_000)
    right = put(folder, "gpt--step=1-last.ckpt", 300, "last", mtime=1_000_000_000)
    put(folder, "gpt--step=500-last.ckpt", 200, "last", mtime=1_500_000_000)
    put(folder, "gpt--step=999.ckpt", 999, "topk")  # not a resume candidate
    resume = AutoResume(resume_if_exists=True)
    assert choose(resume, trainer(tmp_path, folder), monkeypatch) == str(right)
    assert resume.decision is not None and "highest global step (300)" in resume.decision.reason


def test_folder_checkpoints_are_candidates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    put(folder, "gpt--step=10-last.ckpt", 10, "last")
    sharded = put(folder, "gpt--step=20-last", 20, "last")
    assert choose(AutoResume(resume_if_exists=True), trainer(tmp_path, folder), monkeypatch) == str(sharded)


def test_end_without_resume_past_end_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    put(folder, "gpt--step=10-last.ckpt", 10, "last")
    end = put(folder, "gpt--step=20-end.ckpt", 20, "end")
    with pytest.raises(TrainingCompletedError, match="training already completed") as info:
        choose(AutoResume(resume_if_exists=True), trainer(tmp_path, folder), monkeypatch)
    assert str(end) in str(info.value) and "resume_past_end" in str(info.value)
    # resume_ignore_no_checkpoint does not turn a completed run into a fresh one.
    with pytest.raises(TrainingCompletedError):
        choose(
            AutoResume(resume_if_exists=True, resume_ignore_no_checkpoint=True), trainer(tmp_path, folder), monkeypatch
        )


def test_single_end_with_resume_past_end_resumes_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    end = put(folder, "gpt--step=20-end.ckpt", 20, "end")
    got = choose(AutoResume(resume_if_exists=True, resume_past_end=True), trainer(tmp_path, folder), monkeypatch)
    assert got == str(end)


def test_end_preferred_over_last_with_resume_past_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    put(folder, "gpt--step=10-last.ckpt", 10, "last")
    put(folder, "gpt--step=20-end.ckpt", 20, "end")
    end2 = put(folder, "gpt--step=40-end.ckpt", 40, "end")
    got = choose(AutoResume(resume_if_exists=True, resume_past_end=True), trainer(tmp_path, folder), monkeypatch)
    assert got == str(end2)


def test_last_past_the_end_wins_with_resume_past_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Trained to 20 (-end), resumed past the end, preempted at 30 (-last): continue from 30.
    folder = tmp_path / "c"
    put(folder, "gpt--step=20-end.ckpt", 20, "end")
    later = put(folder, "gpt--step=30-last.ckpt", 30, "last")
    got = choose(AutoResume(resume_if_exists=True, resume_past_end=True), trainer(tmp_path, folder), monkeypatch)
    assert got == str(later)


def test_incomplete_candidates_are_never_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    good = put(folder, "gpt--step=10-last.ckpt", 10, "last")
    put(folder, "gpt--step=99-last.ckpt", 99, "last", marker=False)
    put(folder, "gpt--step=99-end.ckpt", 99, "end", marker=False)
    assert choose(AutoResume(resume_if_exists=True), trainer(tmp_path, folder), monkeypatch) == str(good)


@pytest.mark.parametrize("ignore", [False, True])
def test_only_incomplete_candidates_is_an_error_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignore: bool
) -> None:
    folder = tmp_path / "c"
    broken = put(folder, "gpt--step=99-last.ckpt", 99, "last", marker=False)
    put(folder, "notes.txt", 5, "topk", marker=False)  # not a checkpoint
    resume = AutoResume(resume_if_exists=True, resume_ignore_no_checkpoint=ignore)
    with pytest.raises(IncompleteCheckpointError) as info:
        choose(resume, trainer(tmp_path, folder), monkeypatch)
    msg = str(info.value)
    assert str(broken) in msg and "rm -r" in msg and "incomplete" in msg


def test_nothing_found_is_a_not_found_error_naming_the_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    put(folder, "notes.txt", 5, "topk", marker=False)  # not a checkpoint
    with pytest.raises(NotFoundError, match=re.escape(str(folder))) as info:
        choose(AutoResume(resume_if_exists=True), trainer(tmp_path, folder), monkeypatch)
    assert "resume_ignore_no_checkpoint" in str(info.value)
    with pytest.raises(NotFoundError, match=re.escape(str(tmp_path / "never_created"))):
        choose(
            AutoResume(resume_if_exists=True, dirpath=str(tmp_path / "never_created")), trainer(tmp_path), monkeypatch
        )


def test_nothing_found_with_ignore_warns_and_starts_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "empty"
    with pytest.warns(UserWarning, match=re.escape(str(folder))):
        got = choose(
            AutoResume(resume_if_exists=True, resume_ignore_no_checkpoint=True), trainer(tmp_path, folder), monkeypatch
        )
    assert got is None


def test_without_last_the_newest_complete_checkpoint_by_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # save_last=false: only top-k checkpoints; names and modification times point at the wrong one.
    folder = tmp_path / "c"
    put(folder, "gpt--step=900.ckpt", 300, "topk", mtime=2_000_000_000)
    right = put(folder, "gpt--step=1.ckpt", 700, "topk", mtime=1_000_000_000)
    put(folder, "gpt--step=800.ckpt", 800, "topk", marker=False)  # incomplete
    resume = AutoResume(resume_if_exists=True)
    assert choose(resume, trainer(tmp_path, folder), monkeypatch) == str(right)
    assert resume.decision is not None and "newest complete checkpoint by global step (700)" in resume.decision.reason


def test_kind_comes_from_the_marker_not_the_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A template ending in '-end' (refused since, but such folders exist): a top-k file named
    # like an '-end' checkpoint does not make the run "completed", and a '-last' named so resumes.
    folder = tmp_path / "c"
    put(folder, "gpt--step=4-end.ckpt", 4, "topk")
    last = put(folder, "gpt--step=6-end-last.ckpt", 6, "last")
    resume = AutoResume(resume_if_exists=True)
    assert choose(resume, trainer(tmp_path, folder), monkeypatch) == str(last)
    assert resume.decision is not None and resume.decision.reason == "the only '-last' checkpoint"


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_checkpoint_is_passed_over_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    folder = tmp_path / "c"
    put(folder, "gpt--step=10.ckpt", 10, "topk")
    good = put(folder, "gpt--step=20.ckpt", 20, "topk")
    older_last = put(folder, "gpt--step=15-last.ckpt", 15, "last")
    bad = put(folder, "gpt--step=30-last.ckpt", 30, "last")
    data = bad.read_bytes()
    if damage == "truncated":
        bad.write_bytes(data[:5])
    else:  # same size, other bytes: only the CRC-32 of its records tells
        bad.write_bytes(
            data.replace(torch.full((64,), 30.0).numpy().tobytes(), torch.full((64,), 31.0).numpy().tobytes())
        )
    resume = AutoResume(resume_if_exists=True)
    with caplog.at_level("WARNING", logger="expconf"):
        assert choose(resume, trainer(tmp_path, folder), monkeypatch) == str(older_last)
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(bad) in line and f"resuming from {older_last} instead" in line and "\n" not in line
    # Every '-last' damaged (a '-last' is a hard link of the top-k file of its step): the newest
    # top-k checkpoint that verifies.
    older_last.write_bytes(b"")
    assert choose(AutoResume(resume_if_exists=True), trainer(tmp_path, folder), monkeypatch) == str(good)


@pytest.mark.parametrize("damage", ["shard gone", "shard truncated"])
def test_a_damaged_sharded_folder_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    folder = tmp_path / "c"
    older = put(folder, "gpt--step=10-last", 10, "last")
    bad = put(folder, "gpt--step=20-last", 20, "last")
    if damage == "shard gone":
        (bad / "shard0").unlink()
        why = "its file shard0 is gone"
    else:
        (bad / "shard0").write_bytes(b"wei")
        why = "its file shard0 has 3 bytes, its marker records 7"
    with caplog.at_level("WARNING", logger="expconf"):
        assert choose(AutoResume(resume_if_exists=True), trainer(tmp_path, folder), monkeypatch) == str(older)
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert str(bad) in line and why in line


def test_only_damaged_checkpoints_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    bad = put(folder, "gpt--step=30-last.ckpt", 30, "last")
    bad.write_bytes(bad.read_bytes()[:3])
    resume = AutoResume(resume_if_exists=True, resume_ignore_no_checkpoint=True)
    with pytest.raises(IncompleteCheckpointError) as info:
        choose(resume, trainer(tmp_path, folder), monkeypatch)
    msg = str(info.value)
    assert "\n" not in msg and str(bad) in msg and "it has 3 bytes, its marker records" in msg


# -- one decision for all ranks ---------------------------------------------------------------------------


def test_decision_is_exported_and_reused_by_other_ranks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    first = put(folder, "a-last.ckpt", 1, "last")
    assert choose(AutoResume(resume_if_exists=True), trainer(tmp_path, folder), monkeypatch) == str(first)
    assert os.environ[handoff.RESUME_ENV] == str(first)
    # A rank started with the launcher's decision does not search again, even if the folder changed.
    put(folder, "b-last.ckpt", 50, "last")
    monkeypatch.setenv("RANK", "1")
    assert AutoResume(resume_if_exists=True).setup(trainer(tmp_path, folder)) == str(first)
    monkeypatch.setenv(handoff.RESUME_ENV, handoff.NO_CHECKPOINT)
    assert AutoResume(resume_if_exists=True).setup(trainer(tmp_path, folder)) is None


# -- import_path --------------------------------------------------------------------------------------------


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3, 2)


def test_import_path_loads_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = Tiny()
    torch.nn.init.constant_(source.net.weight, 0.5)
    path = tmp_path / "pretrained-last.ckpt"
    torch.save({"state_dict": source.state_dict(), "global_step": 1234, "optimizer_states": [{}]}, path)
    target = Tiny()
    resume = AutoResume(import_path=str(path), resume_if_exists=True)
    t = trainer(tmp_path)
    assert resume.setup(t, target) is None, "import_path must not resume the trainer state"
    assert torch.equal(target.net.weight, source.net.weight)

    wrong = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"other.weight": torch.zeros(1)}}, wrong)
    with pytest.raises(ValueError, match="do not fit"):
        AutoResume(import_path=str(wrong)).setup(t, Tiny())


class _Payload:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.target), "w"))


def test_import_path_never_executes_pickled_code(tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Payload(pwned)}, bad)
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Payload(live)))
    assert live.exists(), "the payload must really run code when unpickled"
    with pytest.raises(pickle.UnpicklingError):
        AutoResume(import_path=str(bad)).setup(trainer(tmp_path), Tiny())
    assert not pwned.exists()
