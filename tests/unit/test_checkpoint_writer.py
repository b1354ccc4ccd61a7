"""CheckpointWriter: ordered plans, marker last, staging isolation, background errors, waiting."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from expconf.checkpoint.io import StorageCheckpointIO
from expconf.checkpoint.meta import CheckpointMeta, marker_name, scan
from expconf.checkpoint.writer import CheckpointWriteError, CheckpointWriter, SavePlan, stage, wait_all
from expconf.storage import Storage


def meta(name: str, step: int = 1) -> CheckpointMeta:
    return CheckpointMeta(name=name, global_step=step, epoch=0, kind="last")


def gated(writer: CheckpointWriter) -> threading.Event:
    """Queue a plan that blocks the writer until the returned event is set."""
    gate = threading.Event()
    plan = SavePlan(label="gate")
    plan.call(lambda: gate.wait(30))
    writer.submit(plan)
    return gate


def test_stage_copies_every_tensor() -> None:
    w = torch.arange(4.0)
    state = {"model": {"w": w}, "opt": [torch.ones(2)], "step": 3, "pair": (torch.zeros(1), "x")}
    staged = stage(state)
    w.add_(100)
    state["opt"][0].mul_(5)
    assert torch.equal(staged["model"]["w"], torch.arange(4.0))
    assert torch.equal(staged["opt"][0], torch.ones(2))
    assert staged["step"] == 3 and staged["pair"][1] == "x"
    assert staged["model"]["w"].data_ptr() != w.data_ptr()


def test_stage_reuses_free_buffers_but_never_busy_ones(tmp_path: Path) -> None:
    state = {"w": torch.arange(3.0), "opt": [torch.ones(2)], "n": 1}
    first = stage(state)
    state["w"].add_(1)
    again = stage(state, into=first)
    assert again["w"].data_ptr() == first["w"].data_ptr() and torch.equal(again["w"], torch.arange(3.0) + 1)
    assert stage({"w": torch.ones(5)}, into=first)["w"].shape == (5,)  # shape changed: fresh memory

    writer = CheckpointWriter(async_save=True)
    a = writer.stage(state)
    gate = gated(writer)  # a write is pending: its buffers must not be overwritten
    b = writer.stage(state)
    assert b["w"].data_ptr() != a["w"].data_ptr()
    gate.set()
    writer.drain()
    c = writer.stage(state)
    assert c["w"].data_ptr() == b["w"].data_ptr()
    writer.close()


def test_sync_write_puts_marker_after_data(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    order: list[str] = []
    real = storage.write_atomic

    def spy(name: str, write):  # type: ignore[no-untyped-def]
        order.append(name)
        return real(name, write)

    storage.write_atomic = spy  # type: ignore[method-assign]
    plan = SavePlan(label="a")
    plan.write(storage, "a.ckpt", {"x": torch.ones(3)}, meta("a.ckpt"))
    CheckpointWriter().submit(plan)
    assert order == ["a.ckpt", marker_name("a.ckpt")]
    listing = scan(storage)
    assert list(listing.complete) == ["a.ckpt"] and listing.complete["a.ckpt"].size_bytes > 0
    assert torch.equal(torch.load(tmp_path / "a.ckpt")["x"], torch.ones(3))


def test_failed_write_leaves_no_marker_and_keeps_previous(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    writer = CheckpointWriter()
    first = SavePlan(label="old")
    first.write(storage, "old-last.ckpt", {"x": torch.zeros(1)}, meta("old-last.ckpt"))
    writer.submit(first)

    def boom(f: object) -> None:
        raise OSError("disk\nfull")

    plan = SavePlan(label="new-last")
    plan.call(lambda: storage.write_atomic("new-last.ckpt", boom))  # type: ignore[arg-type]
    plan.write(storage, "never.ckpt", {}, meta("never.ckpt"))
    plan.delete(storage, "old-last.ckpt")
    with pytest.raises(CheckpointWriteError) as err:
        writer.submit(plan)
    assert str(err.value) == "checkpoint write failed (new-last): disk full"
    listing = scan(storage)
    assert list(listing.complete) == ["old-last.ckpt"]  # later steps of the failed plan did not run
    assert not list(tmp_path.glob("*.tmp-*")) and not list(tmp_path.glob(".*tmp*"))


def test_async_saves_the_staged_state_not_later_changes(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    writer = CheckpointWriter(async_save=True)
    param = torch.nn.Parameter(torch.arange(6.0))
    gate = gated(writer)  # the write below cannot start before the parameter changes
    plan = SavePlan(label="s")
    plan.write(storage, "s.ckpt", stage({"w": param}), meta("s.ckpt"))
    writer.submit(plan)
    assert writer.pending() == 2
    with torch.no_grad():
        param.add_(1000)  # the training loop moves on
    gate.set()
    writer.wait()
    assert torch.equal(torch.load(tmp_path / "s.ckpt")["w"], torch.arange(6.0))
    writer.close()


def test_async_failure_is_raised_at_the_next_save_once(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    writer = CheckpointWriter(async_save=True)

    def fail() -> None:
        raise ConnectionError("endpoint went away")

    bad = SavePlan(label="bad")
    bad.call(fail)
    writer.submit(bad)  # returns at once: the failure happens in the background
    writer.drain()
    good = SavePlan(label="good")
    good.write(storage, "g.ckpt", {}, meta("g.ckpt"))
    with pytest.raises(CheckpointWriteError, match=r"^checkpoint write failed \(bad\): endpoint went away$"):
        writer.submit(good)
    assert not (tmp_path / "g.ckpt").exists()  # nothing is written after an unreported failure
    writer.submit(good)
    writer.close()
    assert (tmp_path / marker_name("g.ckpt")).exists()


def test_wait_all_and_loading_wait_for_pending_saves(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    writer = CheckpointWriter(async_save=True)
    gate = gated(writer)
    plan = SavePlan(label="p")
    plan.write(storage, "p-last.ckpt", {"state_dict": {"w": torch.ones(2)}}, meta("p-last.ckpt"))
    writer.submit(plan)
    assert not (tmp_path / "p-last.ckpt").exists()
    threading.Timer(0.5, gate.set).start()
    # Loading (what a resumed fit does) waits for this process's pending saves first.
    loaded = StorageCheckpointIO().load_checkpoint(str(tmp_path / "p-last.ckpt"))
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2))
    gate2 = gated(writer)
    threading.Timer(0.3, gate2.set).start()
    wait_all()
    assert writer.pending() == 0
    writer.close()


def test_markers_record_the_size_also_for_a_copy(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    plan = SavePlan(label="a")
    plan.write(storage, "a.ckpt", {"x": torch.arange(100.0)}, meta("a.ckpt"))
    plan.copy(storage, "a.ckpt", "a-last.ckpt", meta("a-last.ckpt"))
    CheckpointWriter().submit(plan)
    size = (tmp_path / "a.ckpt").stat().st_size
    for name in ("a.ckpt", "a-last.ckpt"):
        assert CheckpointMeta.from_json((tmp_path / marker_name(name)).read_bytes()).size_bytes == size, name
