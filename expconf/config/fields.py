"""Small helpers shared by the config dataclasses: fields that carry their help text."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from expconf.errors import ConfigError
from expconf.storage import is_remote


def doc(default: Any = dataclasses.MISSING, help: str = "", factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field whose help text feeds ``--help`` and the generated config reference."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def require(ok: bool, key: str, value: Any, expected: str, hint: str = "") -> None:
    """Raise :class:`ConfigError` for ``key`` unless ``ok``."""
    if not ok:
        raise ConfigError(key, value, expected, hint)


def check_choice(key: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    require(value in choices, key, value, "one of " + ", ".join(repr(c) for c in choices))


def check_local_path(key: str, path: str | None, expected: str, *, kind: str = "any") -> None:
    """Raise unless local ``path`` exists (``kind``: any, file or dir); None and remote URLs pass
    (those are probed for reachability by :func:`expconf.storage.check_remote`)."""
    import os

    if path is None or is_remote(path):
        return
    local = os.path.expanduser(path.removeprefix("file://"))
    # "any" is a regular file or a folder: reading a FIFO or a device would block or never end.
    ok = {"any": lambda p: os.path.isfile(p) or os.path.isdir(p), "file": os.path.isfile, "dir": os.path.isdir}[kind](
        local
    )
    if not os.path.exists(local):
        hint = "no such file or folder"
    else:
        hint = "" if os.path.isfile(local) or os.path.isdir(local) else "not a regular file or folder"
    require(ok, key, path, expected, hint)
