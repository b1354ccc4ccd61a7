"""One interface over a local folder and an fsspec URL (``s3://bucket/key``, ``memory://``, ...).

Writes are atomic per object: locally a temporary file is fsynced and renamed into place;
on object stores a PUT is atomic already. Checkpoints build on this with a completion
marker written last (see ``expconf.checkpoint.meta``).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from expconf import deadline
from expconf.errors import ConfigError

#: botocore retry policy for s3:// when the user sets none (storage_options.config_kwargs.retries,
#: AWS_MAX_ATTEMPTS or AWS_RETRY_MODE): "standard" backs off exponentially with jitter.
S3_RETRIES = {"max_attempts": 3, "mode": "standard"}
#: s3fs's own retry loop around each call (its default is 5, on top of botocore's attempts).
S3FS_RETRIES = 3


def is_remote(url: str | os.PathLike[str]) -> bool:
    """True for URLs with a scheme other than ``file://``."""
    s = str(url)
    return "://" in s and not s.startswith("file://")


def s3_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus expconf's defaults for s3fs: no listing cache, bounded retries with backoff."""
    opts = dict(options)
    # Other processes (other ranks, the next run) write here too: never trust a cached listing.
    opts.setdefault("use_listings_cache", False)
    config = dict(opts.get("config_kwargs") or {})
    if "retries" not in config and not ({"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"} & set(os.environ)):
        config["retries"] = dict(S3_RETRIES)
    opts["config_kwargs"] = config
    return opts


def process_umask() -> int:
    """The process umask, read without changing it where Linux allows (other threads may be creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def describe(error: BaseException) -> str:
    """An exception as one short line."""
    reason = " ".join(str(error).split()) or type(error).__name__
    return reason[:300]


class Storage:
    """A folder that holds checkpoints: local path or fsspec URL."""

    def __init__(self, url: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> None:
        self.url = str(url).rstrip("/") if is_remote(url) else str(Path(str(url).removeprefix("file://")))
        self.remote = is_remote(self.url)
        self.storage_options = dict(storage_options or {})
        self._fs: Any = None

    def __repr__(self) -> str:
        return f"Storage({self.url!r})"

    @property
    def protocol(self) -> str:
        """``s3``, ``memory``, ... (``file`` for local folders)."""
        return self.url.split("://", 1)[0] if self.remote else "file"

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (remote storages only; created on first use)."""
        if self._fs is None:
            self._fs = self._make_fs(self.storage_options)
        return self._fs

    def _make_fs(self, options: dict[str, Any], retries: int | None = None) -> Any:
        import fsspec

        opts = dict(options)
        if self.protocol in ("s3", "s3a"):
            opts = s3_options(opts)
        fs = fsspec.filesystem(self.protocol, **opts)
        if self.protocol in ("s3", "s3a"):
            fs.retries = retries or S3FS_RETRIES
        return fs

    def path(self, name: str) -> str:
        """Full path or URL of ``name`` inside this folder."""
        return f"{self.url}/{name}" if self.remote else os.path.join(self.url, name)

    # -- checks -------------------------------------------------------------------------------
    def check_reachable(self, key: str = "log.ckpt.dirpath") -> None:
        """Fail fast, in one line, when the folder cannot be listed or written."""
        if not self.remote:
            return
        probe = f".expconf-probe-{uuid.uuid4().hex[:8]}"
        options = dict(self.storage_options)
        if self.protocol in ("s3", "s3a"):
            # At start a wrong endpoint should fail in seconds, not after a minute of retries.
            config = dict(options.get("config_kwargs") or {})
            config.setdefault("retries", {"max_attempts": 2, "mode": "standard"})
            config.setdefault("connect_timeout", 3)
            options["config_kwargs"] = config
        fs = self._make_fs(options, retries=1)

        def write_and_remove() -> None:
            fs.pipe(self.path(probe), b"ok")
            fs.rm(self.path(probe))

        try:
            deadline.call("probe", write_and_remove, timeout=min(deadline.timeout_s(), deadline.PROBE_TIMEOUT_S))
        except Exception as e:  # every backend raises its own types
            raise ConfigError(
                key, self.url, f"a reachable, writable location (endpoint {self.endpoint()}: {describe(e)})"
            ) from e

    def endpoint(self) -> str:
        """The S3 endpoint in use, for messages (never includes credentials)."""
        client = self.storage_options.get("client_kwargs") or {}
        return str(
            self.storage_options.get("endpoint_url")
            or client.get("endpoint_url")
            or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL")
            or "default"
        )

    # -- reads --------------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        """Whether ``name`` exists."""
        return (
            bool(self._call("exists", self.fs.exists, self.path(name)))
            if self.remote
            else os.path.exists(self.path(name))
        )

    def listdir(self) -> list[str]:
        """Names directly inside the folder (empty when it does not exist)."""
        if self.remote:
            try:
                entries = self._call("list", self.fs.ls, self.url, detail=False, refresh=True)
            except FileNotFoundError:
                return []
            return sorted(str(e).rstrip("/").rsplit("/", 1)[-1] for e in entries)
        try:
            return sorted(os.listdir(self.url))
        except FileNotFoundError:
            return []

    def read_bytes(self, name: str) -> bytes:
        """The content of ``name``."""
        if self.remote:
            return bytes(self._call("read", self.fs.cat_file, self.path(name)))
        with open(self.path(name), "rb") as f:
            return f.read()

    def open_read(self, name: str) -> IO[bytes]:
        """A binary file object for reading ``name``."""
        if self.remote:
            return io.BytesIO(self.read_bytes(name))
        return open(self.path(name), "rb")

    # -- writes -------------------------------------------------------------------------------
    def makedirs(self) -> None:
        """Create the folder (no-op on object stores)."""
        if not self.remote:
            os.makedirs(self.url, exist_ok=True)

    def write_atomic(self, name: str, write: Callable[[IO[bytes]], None]) -> int:
        """Write ``name`` with ``write(fileobj)`` so that it is complete or absent; returns bytes written."""
        if self.remote:
            buf = io.BytesIO()
            write(buf)
            data = buf.getvalue()
            self._call("write", self.fs.pipe, self.path(name), data)
            return len(data)
        self.makedirs()
        fd, tmp = tempfile.mkstemp(dir=self.url, prefix=f".{name}.tmp-")
        try:
            os.fchmod(fd, 0o666 & ~process_umask())  # mkstemp makes 0600; follow the umask as torch.save does
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
                size = f.tell()
            os.replace(tmp, self.path(name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._fsync_dir()
        return size

    def write_bytes_atomic(self, name: str, data: bytes) -> int:
        """Write ``data`` to ``name`` atomically."""

        def write(f: IO[bytes]) -> None:
            f.write(data)

        return self.write_atomic(name, write)

    def copy(self, src: str, dst: str) -> None:
        """Copy ``src`` to ``dst`` atomically (server-side on object stores; hard link locally when possible)."""
        if self.remote:
            self._call("copy", self.fs.copy, self.path(src), self.path(dst))
            return
        tmp = self.path(f".{dst}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            os.link(self.path(src), tmp)
        except OSError:
            import shutil

            shutil.copyfile(self.path(src), tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, self.path(dst))
        self._fsync_dir()

    def remove(self, name: str) -> None:
        """Delete ``name`` (file or folder); a missing name is not an error."""
        if self.remote:
            with contextlib.suppress(FileNotFoundError):
                self._call("remove", self.fs.rm, self.path(name), recursive=True)
            return
        p = self.path(name)
        if os.path.isdir(p):
            import shutil

            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A remote call under the storage deadline (``expconf.deadline``)."""
        return deadline.call(f"{what} {self.url}", fn, *args, **kwargs)

    def _fsync_dir(self) -> None:
        fd = os.open(self.url, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_remote(root: Any) -> None:
    """Probe every remote location of a validated RootConfig, once per run, before the run dir
    exists: ``log.ckpt.dirpath`` and ``resume.dirpath`` must be writable, ``resume.path`` and
    ``resume.import_path`` must exist. Raises a one-line ConfigError. Light: runs before torch
    is imported. Also sets this process's storage deadline from ``log.ckpt.storage_timeout``."""
    deadline.configure(root.log.ckpt.storage_timeout)
    deadline.timeout_s()  # a malformed EXPCONF_STORAGE_TIMEOUT fails here, in one line
    options = root.log.ckpt.storage_options
    for key, url in (("log.ckpt.dirpath", root.log.ckpt.dirpath), ("resume.dirpath", root.resume.dirpath)):
        if url and is_remote(url):
            Storage(url, options).check_reachable(key)
    for key, url in (("resume.path", root.resume.path), ("resume.import_path", root.resume.import_path)):
        if url and is_remote(url):
            parent, _, name = url.rstrip("/").rpartition("/")
            try:
                found = Storage(parent, options).exists(name)
            except Exception as e:  # every fsspec backend raises its own types
                raise ConfigError(key, url, f"a reachable checkpoint URL ({describe(e)[:200]})") from e
            if not found:
                raise ConfigError(key, url, "an existing checkpoint", "nothing found at that URL")
