"""The one error type for user mistakes, printed once at the entry point as one line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

#: Exit code for a configuration or input mistake (argparse uses 2 as well).
USER_ERROR_EXIT_CODE = 2


class ConfigError(ValueError):
    """A user mistake: names the key, the value given and what was expected.

    ``str(err)`` is a single line, fit to print without a traceback.
    """

    def __init__(
        self,
        key: str,
        value: Any = None,
        expected: str = "",
        hint: str = "",
        *,
        message: str | None = None,
    ) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        self.hint = hint
        if message is None:
            message = f"{key}={value!r}: expected {expected}" if expected else f"{key}={value!r}"
            if hint:
                message += f" ({hint})"
        super().__init__(" ".join(message.split()))


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``"did you mean 'x'?"`` for the closest candidate, or an empty string."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{matches[0]}'?" if matches else ""
