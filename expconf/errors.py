"""The error types of user mistakes, printed once at the entry point as one line.

Every refusal is a ``ValueError`` (as NeMo's are), except ``NotFoundError``, a ``FileNotFoundError``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

#: Exit code for a configuration or input mistake (argparse uses 2 as well).
USER_ERROR_EXIT_CODE = 2

#: Set this environment variable to 1 to see the full traceback of a user error.
DEBUG_ENV = "EXPCONF_DEBUG"


class _NoValue:
    """Marks an error whose value is not known (a key set inside a config file)."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Any = _NoValue()


class ConfigError(ValueError):
    """A user mistake: names the key, the value given and what was expected.

    ``str(err)`` is a single line, fit to print without a traceback. A value stored under a
    secret-looking key (``storage_options.secret``, ``token``, ...) is never shown.
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
        from expconf.redact import REDACTED, is_secret_key

        self.key = key
        self.value = value
        self.expected = expected
        self.hint = hint
        if message is None:
            shown = REDACTED if is_secret_key(key) and value not in (None, "") else _show(value)
            head = key if value is NO_VALUE else f"{key}={shown}"
            message = f"{head}: expected {expected}" if expected else head
            if hint:
                message += f" ({hint})"
        super().__init__(" ".join(str(message).split()))


class NotFoundError(FileNotFoundError):
    """``resume_if_exists`` found no checkpoint to resume from (NeMo's ``NotFoundError``)."""


class IncompleteCheckpointError(ValueError):
    """Only incomplete checkpoints were found; they must be removed by hand or by a new run."""


class TrainingCompletedError(ValueError):
    """An ``-end`` checkpoint exists and ``resume_past_end`` is false ("training already completed")."""


def _show(value: Any) -> str:
    """A value as the user would type it: strings quoted, None as null, bools lower case."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value)


def did_you_mean(word: str, candidates: Iterable[str], prefix: str = "") -> str:
    """Return ``"did you mean 'x'?"`` for the closest candidate (``prefix`` put before it), or ''."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{prefix}{matches[0]}'?" if matches else ""
