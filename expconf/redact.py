"""Keeps secrets (keys, tokens, passwords) out of every file expconf writes."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

REDACTED = "***REDACTED***"
_SECRET_KEY = re.compile(
    r"(^|[_.-])(secret|token|password|passwd|api[_-]?key|access[_-]?key|credentials?|key|private[_-]?key)($|[_.-])",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """Whether a config or environment key names a secret."""
    return bool(_SECRET_KEY.search(key.rsplit(".", 1)[-1]))


#: Values shorter than this are not replaced in free text: "x" or "1" would mangle every line.
MIN_SECRET_LENGTH = 6

# key=value / key: value pairs inside free text (command lines, Hydra's {k:v} syntax, YAML, logs)
_PAIR = re.compile(r"([\w.-]+)(\s*[:=]\s*)('[^']*'|\"[^\"]*\"|[^\s,{}\[\]'\"]+)")


def secret_values() -> list[str]:
    """Values of secret-looking environment variables (long enough to be worth hiding)."""
    return sorted(
        {v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= MIN_SECRET_LENGTH}, key=len, reverse=True
    )


def redact_text(text: str, extra: list[str] | None = None) -> str:
    """Replace every known secret value, and every value written after a secret key, inside ``text``."""
    values = {v for v in (extra or []) if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
    for value in sorted(values | set(secret_values()), key=len, reverse=True):
        text = text.replace(value, REDACTED)

    def pair(m: re.Match[str]) -> str:
        if is_secret_key(m.group(1)) and m.group(3) not in (REDACTED, "null", "None", "''", '""'):
            return f"{m.group(1)}{m.group(2)}{REDACTED}"
        return m.group(0)

    return _PAIR.sub(pair, text)


def redact(obj: Any, extra: list[str] | None = None) -> Any:
    """A copy of a config container with secret keys and secret values replaced."""
    if isinstance(obj, dict):
        return {
            k: (
                REDACTED
                if is_secret_key(str(k)) and v not in (None, "", {}) and not isinstance(v, dict)
                else redact(v, extra)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact(v, extra) for v in obj]
    if isinstance(obj, str):
        text = redact_text(obj, extra)
        # key=value overrides on a command line
        m = re.match(r"^([+~]*[\w.]+)=(.*)$", text)
        if m and is_secret_key(m.group(1)) and m.group(2):
            return f"{m.group(1)}={REDACTED}"
        return text
    return obj


#: Secret values found in configs by :func:`collect_secrets`; the log filter scrubs them too.
_KNOWN: set[str] = set()


def known_secrets() -> list[str]:
    """Every secret value seen so far in this process (configs and the environment)."""
    return sorted(_KNOWN | set(secret_values()))


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from each record before a handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted text (never drops a record)."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        clean = redact_text(message, sorted(_KNOWN))
        if clean != message:
            record.msg, record.args = clean, None
        return True


def collect_secrets(obj: Any) -> list[str]:
    """Values stored under secret keys anywhere in ``obj`` (to scrub them from free text too).

    They are also remembered for :class:`RedactingFilter`, so log files never show them.
    """
    found = _collect(obj)
    _KNOWN.update(v for v in found if len(v) >= MIN_SECRET_LENGTH)
    return found


def _collect(obj: Any) -> list[str]:
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_key(str(k)) and isinstance(v, str) and v:
                found.append(v)
            else:
                found.extend(_collect(v))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(_collect(v))
    return found
