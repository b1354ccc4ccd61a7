"""Keeps secrets (keys, tokens, passwords) out of every file expconf writes."""

from __future__ import annotations

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


def secret_values() -> list[str]:
    """Values of secret-looking environment variables (long enough to be worth hiding)."""
    return sorted({v for k, v in os.environ.items() if is_secret_key(k) and len(v) >= 6}, key=len, reverse=True)


def redact_text(text: str, extra: list[str] | None = None) -> str:
    """Replace every known secret value inside ``text``."""
    for value in (extra or []) + secret_values():
        if value:
            text = text.replace(value, REDACTED)
    return text


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


def collect_secrets(obj: Any) -> list[str]:
    """Values stored under secret keys anywhere in ``obj`` (to scrub them from free text too)."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_key(str(k)) and isinstance(v, str) and v:
                found.append(v)
            else:
                found.extend(collect_secrets(v))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(collect_secrets(v))
    return found
