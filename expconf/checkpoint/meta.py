"""Checkpoint metadata and the completion marker, and listing what a folder holds.

A checkpoint ``X.ckpt`` (a file, or a folder for other writers) is *complete* only when its
marker ``X.ckpt.meta.json`` exists. The marker is written after every byte of the checkpoint
is durable, so a crash at any instant leaves either a complete checkpoint or an incomplete
one that is never loaded and is removed at the next start. Scores and steps are read from
the marker, never parsed back out of file names.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from expconf.storage import Storage

MARKER_SUFFIX = ".meta.json"
CKPT_SUFFIX = ".ckpt"
TMP_TAG = ".tmp-"
# Names that are checkpoints even without a marker (those are then incomplete).
CHECKPOINT_ENDINGS = (CKPT_SUFFIX, "-last", "-end")
FORMAT = "expconf-ckpt/1"


@dataclass
class CheckpointMeta:
    """What a checkpoint is: its step, epoch, score and kind, stored beside it."""

    name: str
    global_step: int
    epoch: int
    kind: str  # "topk", "last" or "end"
    monitor: str | None = None
    score: float | None = None
    consumed_samples: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    size_bytes: int = 0
    created: float = field(default_factory=time.time)
    format: str = FORMAT

    def to_json(self) -> bytes:
        """Serialised marker content."""
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CheckpointMeta:
        """Parse a marker."""
        raw = json.loads(data)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


def marker_name(ckpt_name: str) -> str:
    """The marker that makes ``ckpt_name`` complete."""
    return ckpt_name + MARKER_SUFFIX


@dataclass
class Listing:
    """What a checkpoint folder holds."""

    complete: dict[str, CheckpointMeta]
    incomplete: list[str]  # checkpoints without a marker, temporary files, orphan markers

    def by_kind(self, *kinds: str) -> list[CheckpointMeta]:
        """Complete checkpoints of the given kinds, oldest step first."""
        metas = [m for m in self.complete.values() if m.kind in kinds]
        return sorted(metas, key=lambda m: (m.global_step, m.created))


def is_checkpoint_name(name: str) -> bool:
    """Whether ``name`` looks like a checkpoint (file or folder) rather than a marker or temp file."""
    return not name.endswith(MARKER_SUFFIX) and TMP_TAG not in name and not name.startswith(".")


def scan(storage: Storage) -> Listing:
    """List complete and incomplete checkpoints in ``storage``.

    The folder may belong to a live run that deletes old checkpoints while this reads: a marker
    listed but gone when read was being deleted with its checkpoint, and is left out of both lists.
    """
    names = storage.listdir()
    present = set(names)
    complete: dict[str, CheckpointMeta] = {}
    incomplete: list[str] = []
    for name in names:
        if TMP_TAG in name:
            incomplete.append(name)
        elif name.endswith(MARKER_SUFFIX):
            target = name[: -len(MARKER_SUFFIX)]
            if target not in present:
                incomplete.append(name)  # orphan marker (its checkpoint was being deleted)
                continue
            try:
                meta = CheckpointMeta.from_json(storage.read_bytes(name))
            except FileNotFoundError:
                present.discard(target)  # deleted since the listing: neither complete nor incomplete
                continue
            except (ValueError, TypeError, KeyError):
                incomplete.append(target)
                continue
            complete[target] = meta
    for name in names:
        if name in present and is_checkpoint_name(name) and name not in complete and name.endswith(CHECKPOINT_ENDINGS):
            incomplete.append(name)
    return Listing(complete, sorted(set(incomplete)))


def clean_incomplete(storage: Storage, listing: Listing, keep: set[str] | None = None) -> list[str]:
    """Remove incomplete checkpoints and temporary files (rank 0, at start); returns what went."""
    removed = []
    for name in listing.incomplete:
        if keep and name in keep:
            continue
        storage.remove(name)
        removed.append(name)
    return removed


def read_payload_meta(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The metadata copy stored inside a loaded checkpoint, if any."""
    meta = checkpoint.get("expconf", {})
    return meta if isinstance(meta, dict) else {}
