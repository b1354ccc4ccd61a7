"""Limits of the machine and the file system that config values must fit, checked before a run starts.

Each check raises :class:`expconf.errors.ConfigError` naming the key, the value and the limit, so
a value that would only fail minutes into a run (a folder that cannot be created, a number that
turns the loss into NaN, more loader workers than the machine can hold) fails before the run dir
is touched. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import signal
from typing import Any

from expconf.config.fields import require
from expconf.storage import is_remote

#: Longest name of one file or folder (one path component), in bytes, on Linux file systems.
NAME_MAX = 255

#: Seeds NumPy accepts (``pl.seed_everything`` seeds NumPy too).
SEED_MAX = 2**32 - 1

#: ``data.num_workers`` may be at most this many times the CPUs this process may use.
WORKERS_PER_CPU = 4

#: Kernel file systems a run dir or checkpoint folder can never be created on.
_KERNEL_ROOTS = ("/proc", "/sys", "/dev")

#: Signals a process cannot catch: no handler can checkpoint on them.
UNCATCHABLE_SIGNALS = ("SIGKILL", "SIGSTOP")


def check_finite(key: str, value: Any, expected: str) -> None:
    """Raise unless ``value`` is a finite number (not NaN, not +-inf)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    require(ok, key, value, expected, "" if ok else "it is not a finite number")


def check_seed(key: str, value: int) -> None:
    """Raise unless ``value`` is a seed Python, NumPy and torch all accept."""
    require(0 <= value <= SEED_MAX, key, value, f"an integer in [0, {SEED_MAX}] (NumPy's seed range)")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_num_workers(key: str, value: int) -> None:
    """Raise unless ``0 <= value <= WORKERS_PER_CPU x usable CPUs`` (each worker is a process
    holding a copy of the dataset's state: thousands of them exhaust memory)."""
    require(value >= 0, key, value, "an integer >= 0")
    cpus = usable_cpus()
    limit = WORKERS_PER_CPU * cpus
    require(value <= limit, key, value, f"at most {limit} ({WORKERS_PER_CPU} x the {cpus} CPUs this process may use)")


def check_catchable_signal(key: str, name: str) -> None:
    """Raise unless ``name`` is a signal a handler can catch (SIGKILL and SIGSTOP cannot be)."""
    require(
        name in {s.name for s in signal.Signals} and name not in UNCATCHABLE_SIGNALS,
        key,
        name,
        "a signal name a process can catch, such as SIGTERM or SIGUSR1",
        f"{name} cannot be caught, so no checkpoint could be written on it" if name in UNCATCHABLE_SIGNALS else "",
    )


def check_name_length(key: str, value: Any, name: str, reserve: int = 0) -> None:
    """Raise when file name ``name`` (derived from ``value``), plus ``reserve`` bytes of suffixes
    expconf adds, is longer than one file name may be."""
    size = len(name.encode()) + reserve
    require(
        size <= NAME_MAX,
        key,
        value,
        f"a name of at most {NAME_MAX - reserve} bytes"
        + (f" ({reserve} more are taken by the suffixes expconf adds)" if reserve else ""),
        f"it makes names of {size} bytes; file systems allow {NAME_MAX} per name",
    )


def check_local_folder(key: str, path: str | None) -> None:
    """Raise unless local folder ``path`` exists or can be created: no part of it is a file,
    each part fits :data:`NAME_MAX`, it is not on a kernel file system (/proc, /sys, /dev), and
    the nearest existing folder above it is writable. None and remote URLs pass."""
    if not path or is_remote(path):
        return
    local = os.path.abspath(os.path.expanduser(path.removeprefix("file://")))
    for part in local.split(os.sep):
        check_name_length(key, path, part)
    real = os.path.realpath(local)
    kernel = next((r for r in _KERNEL_ROOTS if real == r or real.startswith(r + os.sep)), None)
    require(kernel is None, key, path, "a folder on a disk", f"{real} is on the kernel's {kernel} file system")
    existing = real
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if existing == real:
        require(os.path.isdir(real), key, path, "a folder (this path is a file)")
    else:
        require(os.path.isdir(existing), key, path, "a folder path", f"{existing} is a file, not a folder")
    require(
        os.access(existing, os.W_OK | os.X_OK),
        key,
        path,
        "a folder this user can write to",
        f"{existing} is not writable",
    )
