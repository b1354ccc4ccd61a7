"""Checkpoint metadata and the completion marker, and listing what a folder holds.

A checkpoint ``X.ckpt`` (a file, or a folder for other writers) is *complete* only when its
marker ``X.ckpt.meta.json`` exists. The marker is written after every byte of the checkpoint
is durable, so a crash at any instant leaves either a complete checkpoint or an incomplete
one that is never loaded. Scores, steps and the kind (top-k, ``-last``, ``-end``) are read from the
marker, never parsed back out of file names. The marker also records the file's size (for a
folder, every file's size), which together with the CRC-32 that ``torch.save`` stores for every
record of a file lets resume recognise a checkpoint damaged after it was completed (truncated,
overwritten, a shard gone) before it loads it (:func:`verify`).

A folder may be shared with other tools (a Lightning ``ModelCheckpoint``, a user's copies), so
only what is provably expconf's is ever removed: its temporary files, orphan markers, and
marker-less checkpoints that carry expconf's own record inside. A marker-less checkpoint without
that record is *foreign*: never deleted; a readable one named ``*-last`` / ``*-end`` is a resume
candidate, with its step read from inside it; an unreadable one is reported and never loaded.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from expconf.checkpoint.naming import is_end, is_last
from expconf.storage import Storage

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".meta.json"
CKPT_SUFFIX = ".ckpt"
TMP_TAG = ".tmp-"
# Names that are checkpoints even without a marker (those are then incomplete).
CHECKPOINT_ENDINGS = (CKPT_SUFFIX, "-last", "-end")
FORMAT = "expconf-ckpt/1"
#: In a sharded checkpoint folder: everything that is not a shard (loop counters, callbacks, RNG states).
META_FILE = "expconf_meta.pt"
#: In a sharded checkpoint folder while expconf writes it: rank 0 creates it before any rank writes
#: a shard and removes it after the marker, so a marker-less folder holding it is provably
#: expconf's, cut off. A folder another tool (or ``python -m expconf.ckpt shard``) wrote has none.
UNFINISHED_FILE = ".expconf-unfinished"


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
    size_bytes: int = 0  # 0: not recorded (a folder, or a marker of an older expconf)
    files: dict[str, int] = field(default_factory=dict)  # a folder: each file's size ({}: a file, or not recorded)
    created: float = field(default_factory=time.time)
    format: str = FORMAT

    def to_json(self) -> bytes:
        """Serialised marker content."""
        return json.dumps(asdict(self), indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> CheckpointMeta:
        """Parse a marker; ValueError or TypeError when it is not one (a field of the wrong type too)."""
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("a marker is a JSON object")
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        for key, value in known.items():
            if key in _FIELD_TYPES and not _is_a(value, _FIELD_TYPES[key]):
                raise ValueError(f"marker field {key}={value!r} has the wrong type")
        return cls(**known)


def _is_a(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and not (isinstance(value, bool) and bool not in types)


#: JSON types of the marker's fields (an int is also a valid float).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "global_step": (int,),
    "epoch": (int,),
    "kind": (str,),
    "monitor": (str, type(None)),
    "score": (int, float, type(None)),
    "consumed_samples": (int, type(None)),
    "metrics": (dict,),
    "size_bytes": (int,),
    "files": (dict,),
    "created": (int, float),
    "format": (str,),
}


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


def reserved_clash(template: str) -> str | None:
    """What a checkpoint ``filename`` template shares with the names expconf reserves for its
    ``-last`` / ``-end`` copies, temporary files and markers (None: nothing)."""
    from expconf.checkpoint.naming import END_SUFFIX, LAST_SUFFIX

    stem = template[: -len(CKPT_SUFFIX)] if template.endswith(CKPT_SUFFIX) else template
    if TMP_TAG in template:
        return f"'{TMP_TAG}' marks temporary files"
    for suffix in (LAST_SUFFIX, END_SUFFIX, MARKER_SUFFIX):
        if stem.endswith(suffix):
            return f"the ending '{suffix}' is expconf's own"
    return None


def is_checkpoint_name(name: str) -> bool:
    """Whether ``name`` looks like a checkpoint (file or folder) rather than a marker or temp file."""
    return not name.endswith(MARKER_SUFFIX) and not is_temporary(name)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of expconf's temporary files (``.<name>.tmp-<random>``); a checkpoint
    whose own name contains ``.tmp-`` (an older run's template) is not one."""
    return name.startswith(".") and TMP_TAG in name


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
        if is_temporary(name):
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
            if _unfinished(storage, name):
                removable.append(name)  # expconf's sharded folder, cut off before its marker was written
                continue
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


def _unfinished(storage: Storage, name: str) -> bool:
    """Whether checkpoint ``name`` is a folder with expconf's :data:`UNFINISHED_FILE` in it."""
    path = f"{storage.path(name)}/{UNFINISHED_FILE}"
    return bool(storage.fs.exists(path)) if storage.remote else os.path.isfile(path)


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
    kind = "last" if is_last(name) else "end" if is_end(name) else "foreign"
    return CheckpointMeta(
        name=name, global_step=int(content.get("global_step", 0)), epoch=int(content.get("epoch", 0)), kind=kind
    )


def checkpoint_size(storage: Storage, name: str) -> int | None:
    """The size in bytes of checkpoint file ``name``; None for a folder (a sharded checkpoint)."""
    if storage.remote:
        info = storage.fs.info(storage.path(name))
        return None if info.get("type") == "directory" else int(info["size"])
    path = storage.path(name)
    return None if os.path.isdir(path) else os.path.getsize(path)


# bad_record's answers in this process, by file status: a start checks the folder before the run
# dir is touched and again when it resumes, and reads each checkpoint only once.
_CHECKED: dict[tuple[str, int, int, int, int], str | None] = {}


def bad_record(path: str) -> str | None:
    """The first record of local checkpoint file ``path`` (a ``torch.save`` zip archive) whose bytes
    no longer match the CRC-32 stored for it, or why the archive cannot be read; None when all match.
    Records stored without a CRC (``torch.serialization.set_crc32_options(False)``: 0) pass."""
    now = time.time_ns()
    st = os.stat(path)
    status = (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if status in _CHECKED:
        return _CHECKED[status]
    problem = _bad_record(path)
    # A file changed in the last seconds is not remembered: file times tick coarser than their
    # nanoseconds, so a rewrite within the same tick would leave its status unchanged.
    if now - max(st.st_mtime_ns, st.st_ctime_ns) > 2_000_000_000:
        _CHECKED[status] = problem
    return problem


def _bad_record(path: str) -> str | None:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0:
                    continue
                try:
                    with archive.open(info) as f:
                        while f.read(1 << 22):
                            pass
                except zipfile.BadZipFile:
                    return f"its record {info.filename} fails its CRC-32"
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f"it is not a readable torch.save archive ({e})"
    return None


def folder_files(storage: Storage, name: str) -> dict[str, int]:
    """The size in bytes of each file in checkpoint folder ``name`` (a sharded checkpoint), but
    :data:`UNFINISHED_FILE`."""
    if storage.remote:
        storage.fs.invalidate_cache(storage.path(name))  # other ranks wrote shards this process never listed
        entries = storage.fs.ls(storage.path(name), detail=True)
        sizes = {e["name"].rstrip("/").rsplit("/", 1)[-1]: int(e["size"]) for e in entries if e.get("type") == "file"}
    else:
        with os.scandir(storage.path(name)) as listing:
            sizes = {e.name: e.stat().st_size for e in listing if e.is_file()}
    sizes.pop(UNFINISHED_FILE, None)
    return sizes


def verify(storage: Storage, meta: CheckpointMeta) -> str | None:
    """Why expconf's checkpoint ``meta.name`` no longer matches what was written, or None.

    The size is compared with the marker's wherever the checkpoint lives (for a folder, the size
    of every file it recorded); on a local disk a file is also read once to check the CRC-32 of
    every record (on an object store that would mean downloading it twice). Checkpoints whose
    marker records no size (another tool's, or an older expconf's) are not verified.
    """
    if meta.files:
        return _verify_folder(storage, meta)
    if not meta.size_bytes:
        return None
    try:
        size = checkpoint_size(storage, meta.name)
    except FileNotFoundError:
        return "it is gone"
    if size is None:
        return None
    if size != meta.size_bytes:
        return f"it has {size} bytes, its marker records {meta.size_bytes}"
    return None if storage.remote else bad_record(storage.path(meta.name))


def _verify_folder(storage: Storage, meta: CheckpointMeta) -> str | None:
    try:
        found = folder_files(storage, meta.name)
    except (FileNotFoundError, NotADirectoryError):
        return "it is gone"
    for file, size in sorted(meta.files.items()):
        if file not in found:
            return f"its file {file} is gone"
        if found[file] != size:
            return f"its file {file} has {found[file]} bytes, its marker records {size}"
    return None


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
