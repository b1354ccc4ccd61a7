"""Checkpoint metadata and the completion marker, and listing what a folder holds.

A checkpoint ``X.ckpt`` (a file, or a folder for other writers) is *complete* only when its
marker ``X.ckpt.meta.json`` exists. The marker is written after every byte of the checkpoint
is durable, so a crash at any instant leaves either a complete checkpoint or an incomplete
one that is never loaded. Scores and steps are read from the marker, never parsed back out of
file names.

A folder may be shared with other tools (a Lightning ``ModelCheckpoint``, a user's copies), so
only what is provably expconf's is ever removed: its temporary files, orphan markers, and
marker-less checkpoints that carry expconf's own record inside. A marker-less checkpoint without
that record is *foreign*: never deleted; a readable one named ``*-last`` / ``*-end`` is a resume
candidate, with its step read from inside it; an unreadable one is reported and never loaded.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from expconf.storage import Storage

log = logging.getLogger(__name__)

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
    #: The part of ``incomplete`` expconf wrote (and so may remove).
    removable: list[str] = field(default_factory=list)
    #: Readable checkpoints another tool wrote, described from their own content.
    foreign: dict[str, CheckpointMeta] = field(default_factory=dict)

    def by_kind(self, *kinds: str) -> list[CheckpointMeta]:
        """Complete checkpoints of the given kinds, oldest step first."""
        metas = [m for m in self.complete.values() if m.kind in kinds]
        return sorted(metas, key=lambda m: (m.global_step, m.created))


def is_checkpoint_name(name: str) -> bool:
    """Whether ``name`` looks like a checkpoint (file or folder) rather than a marker or temp file."""
    return not name.endswith(MARKER_SUFFIX) and TMP_TAG not in name and not name.startswith(".")


def scan(storage: Storage) -> Listing:
    """List complete, incomplete and foreign checkpoints in ``storage``.

    The folder may belong to a live run that deletes old checkpoints while this reads: a marker
    or checkpoint listed but gone when read was being deleted, and is left out of every list.
    """
    names = storage.listdir()
    present = set(names)
    complete: dict[str, CheckpointMeta] = {}
    incomplete: list[str] = []
    removable: list[str] = []
    foreign: dict[str, CheckpointMeta] = {}
    for name in names:
        if TMP_TAG in name:
            removable.append(name)
        elif name.endswith(MARKER_SUFFIX):
            target = name[: -len(MARKER_SUFFIX)]
            if target not in present:
                removable.append(name)  # orphan marker (its checkpoint was being deleted)
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
            content = peek(storage, name)
            if content is None and not storage.exists(name):
                continue  # deleted since the listing
            if content is not None and "expconf" in content:
                removable.append(name)  # expconf's, cut off before its marker was written
            elif content is not None and "global_step" in content:
                foreign[name] = foreign_meta(name, content)
            else:
                incomplete.append(name)
    removable = sorted(set(removable))
    return Listing(complete, sorted(set(incomplete) | set(removable)), removable, foreign)


def peek(storage: Storage, name: str) -> dict[str, Any] | None:
    """The top level of checkpoint ``name`` without its tensors' bytes, or None when it is not a
    readable torch checkpoint file (a folder, a cut-off file, pickled code)."""
    import os

    import torch

    if not storage.remote and os.path.isdir(storage.path(name)):
        return None
    try:
        if storage.remote:
            with storage.open_read(name) as f:
                loaded = torch.load(f, map_location="cpu", weights_only=True)
        else:
            loaded = torch.load(storage.path(name), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # any unreadable content is simply not a usable checkpoint
        return None
    return loaded if isinstance(loaded, dict) else None


def foreign_meta(name: str, content: dict[str, Any]) -> CheckpointMeta:
    """A checkpoint another tool wrote, described from its own content (kind from its name)."""
    stem = name[: -len(CKPT_SUFFIX)] if name.endswith(CKPT_SUFFIX) else name
    kind = "last" if stem.endswith("-last") else "end" if stem.endswith("-end") else "foreign"
    return CheckpointMeta(
        name=name, global_step=int(content.get("global_step", 0)), epoch=int(content.get("epoch", 0)), kind=kind
    )


def clean_incomplete(storage: Storage, listing: Listing, keep: set[str] | None = None) -> list[str]:
    """Remove expconf's own incomplete checkpoints and temporary files (rank 0, at start); returns
    what went. Foreign and unreadable files stay."""
    removed = []
    for name in listing.removable:
        if keep and name in keep:
            continue
        storage.remove(name)
        removed.append(name)
    return removed
