"""Records every file a process creates or writes under $EXPCONF_AUDIT_ROOT (test helper).

Put this folder on PYTHONPATH: Python imports ``sitecustomize`` at start-up, so every process
of a run (the launcher, DDP children, torchrun workers) records, through an audit hook, the
files it opens for writing, renames or creates, tagged with its rank at that moment, into
``$EXPCONF_AUDIT_DIR/<pid>.tsv``. Tests read the records to check which rank wrote what.
"""

from __future__ import annotations

import os
import sys

_root = os.environ.get("EXPCONF_AUDIT_ROOT")
_dir = os.environ.get("EXPCONF_AUDIT_DIR")

if _root and _dir:
    _fd = os.open(os.path.join(_dir, f"{os.getpid()}.tsv"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    _write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _record(path: object) -> None:
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if not isinstance(path, str):
            return
        full = os.path.abspath(path)
        if full.startswith(_root):
            rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "-"))
            os.write(_fd, f"{rank}\t{full}\n".encode())

    def _hook(event: str, args: tuple) -> None:  # type: ignore[type-arg]
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & _write_flags)
            if writes:
                _record(path)
        elif event in ("os.rename", "os.replace"):
            _record(args[1])
        elif event == "os.mkdir":
            _record(args[0])

    sys.addaudithook(_hook)
