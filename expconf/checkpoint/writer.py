"""Writes checkpoints durably, in order, either inline or on a background thread.

Each save is a short plan of steps (write, copy, delete) run in order; a checkpoint's marker
is written only after its bytes, and an old checkpoint loses its marker before its bytes.
With ``async_save`` the training loop only pays for *staging* (a CPU copy of every tensor),
so parameters changed right after the call cannot leak into the saved state.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import torch

from expconf.checkpoint.meta import TMP_TAG, CheckpointMeta, marker_name
from expconf.storage import Storage, describe

log = logging.getLogger(__name__)

Step = Callable[[], None]


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the previous complete checkpoint is untouched."""


# Every writer of this process, so that a read (a resume, a load) can first wait for the
# background writes that may still be producing what it is about to read.
_WRITERS: weakref.WeakSet[CheckpointWriter] = weakref.WeakSet()


def wait_all() -> None:
    """Block until every writer in this process has no pending save (failures stay with their writer)."""
    for writer in list(_WRITERS):
        writer.drain()


def stage(obj: Any, into: Any = None) -> Any:
    """A deep copy of ``obj`` whose tensors live on the CPU and share no memory with the originals.

    ``into``, an earlier result of ``stage`` that no write uses any more, is reused where a
    tensor's shape and dtype match: copying into memory already mapped is several times
    faster than allocating fresh pages, and staging is the part of a save the loop waits for.
    """
    if isinstance(obj, torch.Tensor):
        if (
            isinstance(into, torch.Tensor)
            and into.shape == obj.shape
            and into.dtype == obj.dtype
            and into.device.type == "cpu"
        ):
            return into.copy_(obj.detach())
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        prev = into if isinstance(into, dict) else {}
        return obj.__class__((k, stage(v, prev.get(k))) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        prev_seq = into if isinstance(into, (list, tuple)) and len(into) == len(obj) else [None] * len(obj)
        items = [stage(v, p) for v, p in zip(obj, prev_seq, strict=True)]
        return items if isinstance(obj, list) else tuple(items)
    return obj


def torch_save_to(payload: dict[str, Any]) -> Callable[[IO[bytes]], None]:
    """A writer function for Storage.write_atomic that serialises ``payload`` with torch.save."""
    return lambda f: torch.save(payload, f)


@dataclass
class SavePlan:
    """The ordered steps of one save and the numbers it reports."""

    steps: list[Step] = field(default_factory=list)
    label: str = ""
    #: Markers of the checkpoints this plan writes (a copy's marker takes its source's size).
    written: dict[str, CheckpointMeta] = field(default_factory=dict)

    def write(self, storage: Storage, name: str, payload: dict[str, Any], meta: CheckpointMeta) -> None:
        """Write ``name`` then its marker (which records the size of what was written)."""
        self.written[name] = meta

        def run() -> None:
            meta.size_bytes = storage.write_atomic(name, torch_save_to(payload))
            storage.write_bytes_atomic(marker_name(name), meta.to_json())

        self.steps.append(run)

    def copy(self, storage: Storage, src: str, dst: str, meta: CheckpointMeta) -> None:
        """Copy a written checkpoint to ``dst`` then write ``dst``'s marker."""

        def run() -> None:
            storage.copy(src, dst)
            source = self.written.get(src)
            if source is not None:
                meta.size_bytes = source.size_bytes
            storage.write_bytes_atomic(marker_name(dst), meta.to_json())

        self.steps.append(run)

    def link(self, storage: Storage, src: str, dst: str, meta: CheckpointMeta) -> None:
        """Make ``dst`` a relative symbolic link to ``src`` (local folders), then write its marker."""

        def run() -> None:
            tmp = storage.path(f".{dst}{TMP_TAG}{uuid.uuid4().hex[:8]}")
            os.symlink(src, tmp)  # relative: the folder can move
            os.replace(tmp, storage.path(dst))
            storage.write_bytes_atomic(marker_name(dst), meta.to_json())

        self.steps.append(run)

    def delete(self, storage: Storage, name: str) -> None:
        """Make ``name`` incomplete (marker first), then remove its bytes."""

        def run() -> None:
            storage.remove(marker_name(name))
            storage.remove(name)

        self.steps.append(run)

    def call(self, fn: Step) -> None:
        """Any other step (a model archive, say)."""
        self.steps.append(fn)


class CheckpointWriter:
    """Runs save plans inline, or in order on one background thread when ``async_save``.

    A thread, not a process: the bench (``bench/rows_s3.py``) measured both, and a process
    must first receive the staged state (a second copy, or shared memory set up per save)
    while the thread writes straight from the staged copy; file and socket writes release
    the GIL, so the training thread keeps running while the thread waits on I/O.
    """

    def __init__(self, async_save: bool = False) -> None:
        self.async_save = async_save
        self._queue: queue.Queue[SavePlan | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._error_label = ""
        self._staged: Any = None
        _WRITERS.add(self)

    def stage(self, obj: Any) -> Any:
        """:func:`stage` ``obj``, reusing the previous staging buffers once no write uses them."""
        reuse = self._staged if self.pending() == 0 else None
        self._staged = stage(obj, reuse)
        return self._staged

    def submit(self, plan: SavePlan) -> None:
        """Run ``plan`` now, or queue it behind earlier plans."""
        self.raise_if_failed()
        if not self.async_save:
            self._run(plan)
            self.raise_if_failed()
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="expconf-ckpt-writer", daemon=True)
            self._thread.start()
        self._queue.put(plan)

    def wait(self) -> None:
        """Block until every queued plan is written; re-raise a write failure."""
        self.drain()
        self.raise_if_failed()

    def drain(self) -> None:
        """Block until every queued plan has run (succeeded or failed)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()

    def pending(self) -> int:
        """Plans queued or running."""
        return self._queue.unfinished_tasks if self.async_save else 0

    def close(self) -> None:
        """Finish pending writes and stop the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.join()
            self._queue.put(None)
            self._thread.join()
        self._thread = None
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        """Re-raise the first background failure, once."""
        if self._error is not None:
            err, self._error = self._error, None
            where = f" ({self._error_label})" if self._error_label else ""
            raise CheckpointWriteError(f"checkpoint write failed{where}: {describe(err)}") from err

    def _loop(self) -> None:
        while True:
            plan = self._queue.get()
            try:
                if plan is None:
                    return
                self._run(plan)
            finally:
                self._queue.task_done()

    def _run(self, plan: SavePlan) -> None:
        try:
            for step in plan.steps:
                step()
        except BaseException as e:  # keep the first failure for the training thread
            if self.async_save:
                # The training thread re-raises it at the next save or at the end; say it now too.
                log.warning("background checkpoint write failed (%s): %s", plan.label, describe(e))
            if self._error is None:
                self._error, self._error_label = e, plan.label
