"""A TCP endpoint that accepts connections and never answers: the storage hang the deadlines cover.

``SilentServer()`` is silent from the start. ``SilentServer(upstream=(host, port), silence_file=p)``
forwards every byte to ``upstream`` (a real S3 server) until ``p`` exists, and from then on
accepts and reads but never answers, on new and already-open connections alike: a run can
start, save, and then meet a server gone silent at a point the test chooses.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from types import TracebackType


class SilentServer:
    """Listens on 127.0.0.1 (a free port); stopped by :meth:`close` or the ``with`` block."""

    def __init__(self, upstream: tuple[str, int] | None = None, silence_file: Path | None = None) -> None:
        self.upstream = upstream
        self.silence_file = silence_file
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def silent(self) -> bool:
        return self.upstream is None or (self.silence_file is not None and self.silence_file.exists())

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._open.append(conn)
            if self.silent() or self.upstream is None:
                threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()
                continue
            up = socket.create_connection(self.upstream)
            self._open.append(up)
            threading.Thread(target=self._pump, args=(conn, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, conn), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        """Read and drop whatever the client sends; never answer."""
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.silent():
                    continue  # dropped: the peer waits for an answer that never comes
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._closed.set()
        for s in [self._listener, *self._open]:
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def touch(path: str | os.PathLike[str]) -> None:
    """Create ``path`` (empty): what silences a forwarding server."""
    Path(path).touch()
