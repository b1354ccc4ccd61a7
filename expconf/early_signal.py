"""The preemption signal, recorded from the moment the config is valid until training is set up.

Building a run (imports, the model, the data) takes seconds before ``PreemptionCallback``
exists; a scheduler's signal then would kill the process (exit 143) although a requeue is
what it asks for. :func:`record` installs a handler that only notes the signal's arrival;
the callback takes it over (:func:`take`) and honours it at the end of the first step.
Light on purpose: imported before torch.
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType
from typing import Any

#: Copies of one signal closer together than this are one request (a scheduler signalling the
#: process group while a launcher forwards it); a later copy is a second request.
DUPLICATE_WINDOW_S = 1.0

_previous: dict[int, Any] = {}
_received_at: dict[int, float] = {}


def _handler(signum: int, frame: FrameType | None) -> None:
    now = time.monotonic()
    first = _received_at.get(signum)
    if first is None:
        _received_at[signum] = now
    elif now - first > DUPLICATE_WINDOW_S:
        # A second request before training: the default action, as the callback does.
        release(signum)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def record(sig: int | str) -> None:
    """Note ``sig``'s arrival from now on instead of letting it terminate the process."""
    num = int(signal.Signals[sig] if isinstance(sig, str) else signal.Signals(sig))
    if num not in _previous:
        _previous[num] = signal.signal(num, _handler)


def take(sig: int) -> tuple[Any, float | None] | None:
    """Stop recording ``sig`` (the caller installs its own handler): the handler found by
    :func:`record` and the monotonic time the signal arrived (None when it did not); None when
    ``sig`` is not being recorded."""
    num = int(sig)
    if num not in _previous:
        return None
    return _previous.pop(num), _received_at.pop(num, None)


def release(sig: int | None = None) -> None:
    """Put back the handlers found by :func:`record` (all when ``sig`` is None)."""
    for num in [int(sig)] if sig is not None else list(_previous):
        if num in _previous:
            previous = _previous.pop(num)
            _received_at.pop(num, None)
            signal.signal(num, previous if previous is not None else signal.SIG_DFL)
