"""An overall deadline for remote storage calls.

Client timeouts do not cover every wait: botocore sends ``Expect: 100-continue`` on a PUT and
the wait for the server's "100 Continue" is outside aiohttp's read timeout, so a server that
accepts connections and never answers would block a save forever. Each remote call therefore
runs on a helper thread that the caller waits for with a timeout; the caller's thread (the
main thread for inline saves) stays free to run signal handlers while it waits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Overrides the built-in default deadline (seconds) for one storage call.
TIMEOUT_ENV = "EXPCONF_STORAGE_TIMEOUT"
#: Default deadline (seconds) for one storage call: a checkpoint of several GB over a slow link fits.
DEFAULT_TIMEOUT_S = 600.0
#: The start-up probe answers in seconds or fails: it never waits longer than this.
PROBE_TIMEOUT_S = 15.0

_configured: float | None = None


class StorageTimeoutError(TimeoutError):
    """A storage call got no answer within its deadline."""


def configure(seconds: float | None) -> None:
    """Set this process's deadline (``log.ckpt.storage_timeout``); None: the env or built-in default."""
    global _configured
    _configured = seconds


def timeout_s() -> float:
    """The deadline in force: the configured value, else ``EXPCONF_STORAGE_TIMEOUT``, else the default."""
    if _configured is not None:
        return _configured
    env = os.environ.get(TIMEOUT_ENV)
    if env:
        from expconf.errors import ConfigError

        try:
            value = float(env)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise ConfigError(TIMEOUT_ENV, env, "a number of seconds > 0")
        return value
    return DEFAULT_TIMEOUT_S


def call(what: str, fn: Callable[..., T], *args: Any, timeout: float | None = None, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, or StorageTimeoutError when it has not returned within the deadline.

    A call that times out is abandoned on its (daemon) thread; it cannot complete a write the
    caller will later treat as done, because a checkpoint counts only once its marker, written
    by a later call, exists.
    """
    limit = timeout_s() if timeout is None else timeout
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    worker = threading.Thread(target=target, name=f"expconf-storage-{what}", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise StorageTimeoutError(f"{what}: no answer within {limit:g} s (log.ckpt.storage_timeout)")
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
