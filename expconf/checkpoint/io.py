"""A Lightning ``CheckpointIO`` over :class:`expconf.storage.Storage`: fsspec URLs, atomic writes, safe loads."""

from __future__ import annotations

import logging
from typing import Any

import torch
from lightning_fabric.plugins.io.checkpoint_io import CheckpointIO

from expconf.checkpoint.meta import marker_name
from expconf.checkpoint.writer import wait_all
from expconf.storage import Storage

log = logging.getLogger(__name__)


def split(path: str) -> tuple[str, str]:
    """Folder and name of a checkpoint path or URL."""
    folder, _, name = str(path).rstrip("/").rpartition("/")
    return folder or ".", name


class StorageCheckpointIO(CheckpointIO):
    """Saves with an atomic write (used by ``trainer.save_checkpoint``) and loads local or remote
    checkpoints with ``torch.load(weights_only=True)``: loading never runs code from the file."""

    def __init__(self, storage_options: dict[str, Any] | None = None) -> None:
        self.storage_options = dict(storage_options or {})

    def _storage(self, path: str) -> tuple[Storage, str]:
        folder, name = split(path)
        return Storage(folder, self.storage_options), name

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        storage, name = self._storage(str(path))
        storage.write_atomic(name, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        # A save of this process may still be writing what is about to be read (async_save).
        wait_all()
        storage, name = self._storage(str(path))
        if not storage.exists(name):
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        if not storage.exists(marker_name(name)):
            log.warning("%s has no completion marker: expconf cannot verify that it is complete", path)
        with storage.open_read(name) as f:
            loaded: dict[str, Any] = torch.load(f, map_location=map_location or "cpu", weights_only=True)
        return loaded

    def remove_checkpoint(self, path: Any) -> None:
        storage, name = self._storage(str(path))
        storage.remove(marker_name(name))
        storage.remove(name)
