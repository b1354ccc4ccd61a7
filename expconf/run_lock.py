"""One run at a time on a run dir and its checkpoint folder.

Two starts with the same ``log.name``/``log.version`` would both save, prune and resume in one
folder. Rank 0 holds an exclusive ``flock`` on a lock file in each local folder the run writes
(the run dir and a ``log.ckpt.dirpath`` outside it) from before the run dir is touched until
``train`` returns. The kernel drops the lock when its process dies, ``kill -9`` included, so a
dead run's lock is taken over by the next start with no clean-up. The file records the holder
(host, pid, start time) for the refusal message.

A remote checkpoint folder (``s3://...``) gets a lease instead: an object naming its owner and
an expiry, renewed on a background thread while the run lives; an expired lease, or one whose
process is gone from this machine, is taken over. Object stores have no atomic create here, so two starts racing within the
settling time may both see their own lease: the lease guards against a run started while
another runs, not against two started in the same second.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from expconf.errors import ConfigError
from expconf.storage import Storage, describe, is_remote

LOCK_NAME = ".expconf.lock"
LEASE_NAME = ".expconf.lease"
#: A remote lease lasts this long (seconds) unless renewed; it is renewed every third of it.
LEASE_TTL_S = 60.0
#: After writing its lease a starter reads it back this much later: a racing starter's write wins.
LEASE_SETTLE_S = 1.0


class RunLockedError(ConfigError):
    """Another live run holds the folder; raised before anything is read or written there."""

    def __init__(self, folder: str, holder: dict[str, Any]) -> None:
        keys = ("host", "pid", "started", "expires")
        who = ", ".join(f"{k} {holder[k]}" for k in keys if k in holder) or "holder unknown"
        super().__init__(
            "log.version",
            folder,
            message=(
                f"{folder} is in use by another run ({who}); wait for it to end, or choose another "
                "log.version / log.ckpt.dirpath"
            ),
        )
        self.holder = holder


class RunLock:
    """An exclusive lock on a local folder, held by this process until :meth:`release`."""

    def __init__(self, folder: str) -> None:
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._fd: int | None = None
        self._created: list[str] = []  # folders this lock created, outermost first
        self._found: set[str] | None = None  # the folder's names when this lock created its file

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunLockedError` naming the holder."""
        self._created = _makedirs(self.folder)
        found = set(os.listdir(self.folder))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        self._found = found if LOCK_NAME not in found else None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLockedError(self.folder, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_owner()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock. When the run wrote nothing (a start refused after the lock: resume found
        nothing, say), the lock file and the folders this lock created are removed again."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if self._found is not None and set(os.listdir(self.folder)) - {LOCK_NAME} == self._found:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
                for folder in reversed(self._created):
                    os.rmdir(folder)
        os.close(fd)  # closing drops the flock


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


class RemoteLease:
    """A renewed lease object in a remote folder, held by this process until :meth:`release`."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, ttl: float = LEASE_TTL_S) -> None:
        self.storage = Storage(url, storage_options)
        self.folder = self.storage.url
        self.ttl = ttl
        self.owner = {**_owner(), "id": uuid.uuid4().hex}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.storage.read_bytes(LEASE_NAME))
        except FileNotFoundError:
            return None
        except ValueError:
            return {}  # unreadable: treated as expired
        return data if isinstance(data, dict) else {}

    def _write(self) -> None:
        expires = time.time() + self.ttl
        lease = {**self.owner, "expires": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(expires))}
        self.storage.write_bytes_atomic(LEASE_NAME, json.dumps({**lease, "expires_at": expires}).encode())

    def _refuse_unless_free(self) -> None:
        lease = self._read()
        if not lease or lease.get("id") == self.owner["id"] or float(lease.get("expires_at", 0)) <= time.time():
            return
        if lease.get("host") == self.owner["host"] and not _alive(int(lease.get("pid", 0))):
            return  # its run died on this machine: no need to wait for the expiry
        raise RunLockedError(self.folder, lease)

    def acquire(self) -> None:
        """Take the lease (a free or expired one) or raise :class:`RunLockedError` naming the holder."""
        self._refuse_unless_free()
        self._write()
        time.sleep(LEASE_SETTLE_S)
        self._refuse_unless_free()
        self._thread = threading.Thread(target=self._renew, name="expconf-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._write()
            except Exception as e:  # the run goes on; a lease that lapses can be taken over
                import logging

                logging.getLogger(__name__).warning("could not renew the lease on %s: %s", self.folder, describe(e))

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still this run's."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        with contextlib.suppress(Exception):  # an expired lease is as good as released
            lease = self._read()
            if lease is not None and lease.get("id") == self.owner["id"]:
                self.storage.remove(LEASE_NAME)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _makedirs(folder: str) -> list[str]:
    """Create ``folder`` and missing parents; the ones created, outermost first."""
    missing: list[str] = []
    path = folder
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    os.makedirs(folder, exist_ok=True)
    return list(reversed(missing))


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunLocks:
    """The locks of one run: its run dir and a local checkpoint folder outside it (rank 0 only)."""

    def __init__(self) -> None:
        self.held: list[RunLock | RemoteLease] = []

    def acquire(self, log: Any, resume_if_exists: bool) -> None:
        """Lock what ``log`` (a NeMoLogger) will write; a new, clock-named run dir needs no lock."""
        from expconf.distributed.ranks import global_rank

        if global_rank() != 0:
            return
        folders = []
        planned = log.planned_run_dir(resume_if_exists)
        if planned is not None:
            folders.append(os.path.abspath(planned))
        ckpt = getattr(log, "ckpt", None)
        ckpt_dir = getattr(ckpt, "dirpath", None)
        remote = str(ckpt_dir) if ckpt_dir and is_remote(str(ckpt_dir)) else None
        if ckpt_dir and not remote:
            local = os.path.abspath(str(ckpt_dir))
            if not any(local == f or local.startswith(f + os.sep) for f in folders):
                folders.append(local)
        try:
            for folder in folders:
                lock = RunLock(folder)
                lock.acquire()
                self.held.append(lock)
            if remote is not None:
                lease = RemoteLease(remote, getattr(ckpt, "storage_options", None))
                lease.acquire()
                self.held.append(lease)
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Release every lock held (at the end of ``train``: normal, error or preemption)."""
        while self.held:
            self.held.pop().release()
