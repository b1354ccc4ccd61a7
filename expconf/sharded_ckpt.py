"""Sharded checkpoints: folders written by every rank through ``torch.distributed.checkpoint`` (DCP).

A sharded checkpoint has the name a file checkpoint would have (``...-last.ckpt``, ``...-end.ckpt``,
top-k) but is a folder: one ``__<rank>_0.distcp`` per rank with that rank's shard of the model and
optimizer, DCP's ``.metadata`` (written by rank 0 after every rank reported its shard written), and
``expconf_meta.pt`` (loop counters, callbacks, RNG states: everything that is not a shard). Like a
file checkpoint it becomes a candidate for resume only once its ``.meta.json`` marker exists, and
rank 0 writes that marker last, after DCP's save has returned on rank 0, which happens only after
the shards of all ranks and the metadata are written. While a folder is being written it holds
``.expconf-unfinished`` (from before any rank writes until after the marker), so a save cut off at
any instant is recognisably expconf's and removed at the next start.

:class:`ModelCheckpoint` plans the names on rank 0 as for files (the plan's ``write`` records a
folder instead of writing a file); :meth:`ShardedCheckpoints.write` then has every rank save its
shard into those folders, and the plan's remaining steps (metadata, marker, ``-last`` copy,
evictions) run on rank 0, inline or on the writer thread.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import torch

from expconf.checkpoint.meta import META_FILE, UNFINISHED_FILE, CheckpointMeta, folder_files, marker_name
from expconf.checkpoint.writer import SavePlan, torch_save_to
from expconf.storage import Storage, s3_options

#: Keys of a Lightning checkpoint that DCP saves as shards.
SHARD_KEYS = ("state_dict", "optimizer_states")


def is_sharded(storage: Storage, name: str) -> bool:
    """Whether checkpoint ``name`` in ``storage`` is a sharded folder."""
    path = storage.path(name)
    return bool(storage.fs.isdir(path)) if storage.remote else os.path.isdir(path)


def dcp_writer(url: str, storage_options: dict[str, Any]) -> Any:
    """DCP's writer for a local folder or an fsspec URL."""
    from torch.distributed.checkpoint import FileSystemWriter

    storage = Storage(url, storage_options)
    if not storage.remote:
        return FileSystemWriter(storage.url)
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecWriter

    return FsspecWriter(storage.url, **_fs_options(storage))


def dcp_reader(url: str, storage_options: dict[str, Any]) -> Any:
    """DCP's reader for a local folder or an fsspec URL."""
    from torch.distributed.checkpoint import FileSystemReader

    storage = Storage(url, storage_options)
    if not storage.remote:
        return FileSystemReader(storage.url)
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader

    return FsspecReader(storage.url, **_fs_options(storage))


def _fs_options(storage: Storage) -> dict[str, Any]:
    opts = dict(storage.storage_options)
    return s3_options(opts) if storage.protocol in ("s3", "s3a") else opts


def shard_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Pop the shard part (model and optimizer states) out of a Lightning checkpoint dict."""
    state = {k: checkpoint.pop(k) for k in SHARD_KEYS if k in checkpoint}
    optimizers = state.pop("optimizer_states", [])
    state.update({f"optimizer_{i}": s for i, s in enumerate(optimizers)})
    return state


def full_model_state(module: torch.nn.Module) -> dict[str, Any]:
    """Collective: the whole model state as plain CPU tensors on rank 0 (empty elsewhere)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def copy_folder(storage: Storage, src: str, dst: str) -> None:
    """Copy folder ``src`` to ``dst`` (hard links locally when possible, server-side copies remotely)."""
    if storage.remote:
        storage.fs.copy(storage.path(src), storage.path(dst), recursive=True)
        return
    import shutil

    tmp = storage.path(f".{dst}.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        for name in os.listdir(storage.path(src)):
            try:
                os.link(os.path.join(storage.path(src), name), os.path.join(tmp, name))
            except OSError:
                shutil.copyfile(os.path.join(storage.path(src), name), os.path.join(tmp, name))
        storage.remove(dst)
        os.replace(tmp, storage.path(dst))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class ShardedSavePlan(SavePlan):
    """A rank-0 save plan whose checkpoints are folders; :attr:`folders` lists those every rank writes."""

    def __init__(self, label: str, owner: ShardedCheckpoints) -> None:
        super().__init__(label=label)
        self.owner = owner
        self.folders: list[str] = []

    def claim(self, folder_url: str, storage_options: dict[str, Any]) -> None:
        """Rank 0, before any rank writes a shard: :data:`UNFINISHED_FILE` in each folder marks it
        expconf's until its marker is written, so start-up clean-up may remove it if the save never completes."""
        for name in self.folders:
            Storage(f"{folder_url.rstrip('/')}/{name}", storage_options).write_bytes_atomic(UNFINISHED_FILE, b"")

    def write(self, storage: Storage, name: str, payload: dict[str, Any], meta: CheckpointMeta) -> None:
        """Folder ``name`` gets every rank's shard; then rank 0 adds the non-shard part and the marker,
        which records the size of every file in the folder."""
        self.folders.append(name)
        self.written[name] = meta
        # A copy: the plan may change payload["expconf"] for a later write. A full state_dict here is
        # for a model archive only: the folder has the weights as shards.
        rest = {k: v for k, v in payload.items() if k != "state_dict"}

        def run() -> None:
            self.owner.wait_written(name)
            inner = Storage(storage.path(name), storage.storage_options)
            inner.write_atomic(META_FILE, torch_save_to(rest))
            meta.files = folder_files(storage, name)
            storage.write_bytes_atomic(marker_name(name), meta.to_json())
            inner.remove(UNFINISHED_FILE)

        self.steps.append(run)

    def copy(self, storage: Storage, src: str, dst: str, meta: CheckpointMeta) -> None:
        """Copy a written folder to ``dst`` then write ``dst``'s marker."""

        def run() -> None:
            copy_folder(storage, src, dst)
            source = self.written.get(src)
            if source is not None:
                meta.files = dict(source.files)
            storage.write_bytes_atomic(marker_name(dst), meta.to_json())

        self.steps.append(run)


def _layout(state: Any) -> Any:
    """The structure of a state dict: keys, and each tensor's type, shape and dtype."""
    if isinstance(state, dict):
        return tuple((k, _layout(v)) for k, v in state.items())
    if isinstance(state, (list, tuple)):
        return tuple(_layout(v) for v in state)
    if isinstance(state, torch.Tensor):
        return (type(state).__name__, tuple(state.shape), state.dtype)
    return type(state).__name__


class ReusedStaging:
    """DCP stager (``async_save(async_stager=...)``) that copies into the same CPU buffers at every save.

    DCP's default stager allocates a fresh CPU copy of the shard at every save, and on a warm
    machine allocating (page faults) costs several times the copy itself. These buffers are
    allocated at the first save (pinned when CUDA is there) and again only when the state's
    layout changes. Reusing them is safe only because :class:`ShardedCheckpoints` starts a save
    after the previous one has finished writing.
    """

    #: Staging is a blocking copy: nothing to synchronise after DCP starts the write.
    _synchronize_after_execute = False

    def __init__(self) -> None:
        self._buffers: dict[str, Any] | None = None
        self._layout: Any = None

    @property
    def should_synchronize_after_execute(self) -> bool:
        """False: :meth:`stage` returns once the copy is done."""
        return self._synchronize_after_execute

    def stage(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """Copy ``state_dict`` into the buffers; the copy is what DCP writes in the background."""
        from torch.distributed._state_dict_utils import _copy_state_dict, _create_cpu_state_dict

        layout = _layout(state_dict)
        if self._buffers is None or layout != self._layout:
            self._buffers = _create_cpu_state_dict(state_dict, pin_memory=torch.cuda.is_available())
            self._layout = layout
        return _copy_state_dict(state_dict, self._buffers)

    def synchronize_staging(self) -> None:
        """Nothing to wait for (see :attr:`should_synchronize_after_execute`)."""

    def close(self) -> None:
        """Drop the buffers."""
        self._buffers = None


class ShardedCheckpoints:
    """Every rank's side of sharded saves: DCP writes (sync or async) and waiting for them."""

    def __init__(self, storage_options: dict[str, Any] | None = None, async_save: bool = False) -> None:
        self.storage_options = dict(storage_options or {})
        self.async_save = async_save
        self._pending: dict[str, Any] = {}  # folder -> DCP's future
        self._group: Any = None
        self._stager: ReusedStaging | None = None

    def setup(self) -> None:
        """Collective: a gloo group of its own for async saves, whose collectives run on a
        background thread and must not interleave with the training's on the default group."""
        import torch.distributed as dist

        if self.async_save and self._group is None and dist.is_initialized():
            self._group = dist.new_group(backend="gloo")

    def plan(self, label: str) -> ShardedSavePlan:
        """A save plan for rank 0 (see :class:`ShardedSavePlan`)."""
        return ShardedSavePlan(label, self)

    def write(self, strategy: Any, plan: SavePlan | None, folder_url: str, shards: dict[str, Any]) -> None:
        """Collective: every rank saves ``shards`` into each folder of rank 0's ``plan``.

        Synchronous saves return once written; asynchronous ones once DCP has staged the state
        into CPU memory of its own, the write going on in the background.
        """
        import torch.distributed.checkpoint as dcp

        # One save in flight at a time: its files may be what this one replaces, and its staging
        # buffers are what this one copies into. A save that has finished is not waited for.
        self.wait()
        if isinstance(plan, ShardedSavePlan):
            plan.claim(folder_url, self.storage_options)  # before the broadcast that lets the ranks write
        folders: list[str] = strategy.broadcast(plan.folders if isinstance(plan, ShardedSavePlan) else [])
        for name in folders:
            url = f"{folder_url.rstrip('/')}/{name}"
            writer = dcp_writer(url, self.storage_options)
            if self.async_save:
                self.wait()  # a second folder of the same save reuses the staging buffers too
                self._stager = self._stager or ReusedStaging()
                self._pending[name] = dcp.async_save(
                    shards, storage_writer=writer, process_group=self._group, async_stager=self._stager
                )
            else:
                dcp.save(shards, storage_writer=writer)

    def wait_written(self, name: str) -> None:
        """Block until this rank's DCP save of folder ``name`` has finished (raises its error)."""
        future = self._pending.get(name)
        if future is not None:
            future.result()

    def wait(self) -> None:
        """Block until every asynchronous save of this rank has finished.

        The futures are dropped only here, on the training thread: rank 0's writer thread also waits
        for them, and a save must not start on one rank while the previous one runs on another.
        """
        for name in list(self._pending):
            self.wait_written(name)
            del self._pending[name]


def load_sharded(
    url: str, model: torch.nn.Module, optimizers: list[Any], storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Collective: restore ``model`` and ``optimizers`` from a sharded folder written by any number of
    ranks (DCP reshards on load) and return the rest of the checkpoint."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    from expconf.distributed.fsdp import optimizer_state_by_id, optimizer_state_by_name, param_names

    reader = dcp_reader(url, dict(storage_options or {}))
    stored = reader.read_metadata().state_dict_metadata
    state: dict[str, Any] = {"state_dict": get_model_state_dict(model)}
    by_index: list[bool] = []
    for i, opt in enumerate(optimizers):
        # A folder made from a single-file checkpoint (python -m expconf.ckpt shard) keys the
        # optimizer state by parameter index, as the file did.
        indexed = any(k.startswith(f"optimizer_{i}.state.") and k.split(".")[2].isdigit() for k in stored)
        target = get_optimizer_state_dict(model, opt)
        state[f"optimizer_{i}"] = optimizer_state_by_id(target, param_names(model, opt)) if indexed else target
        by_index.append(indexed)
    dcp.load(state, storage_reader=reader)
    set_model_state_dict(model, state["state_dict"])
    for i, opt in enumerate(optimizers):
        loaded = state[f"optimizer_{i}"]
        if by_index[i]:
            loaded = optimizer_state_by_name(loaded, param_names(model, opt))
        set_optimizer_state_dict(model, opt, optim_state_dict=loaded)
    folder = Storage(url, storage_options)
    with folder.open_read(META_FILE) as f:
        rest: dict[str, Any] = torch.load(f, map_location="cpu", weights_only=True)
    return rest
