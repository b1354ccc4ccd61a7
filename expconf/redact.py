"""The one set of redaction rules for every output: files, trackers, console, errors and sweeps.

What counts as a secret:

* the value of a *credential-shaped* key: ``key``, ``secret``, ``password``, ``token``, ``api_key``,
  ``access_key``, ``secret_key``, ... as the whole key, or a name ending in one of them after ``_``
  (``aws_secret_access_key``, ``HF_TOKEN``). Ordinary settings that merely contain such a word
  (``num_key_value_heads``, ``token_dropout``, ``key_dim``, ``sort_key``, ``pad_token``) are not.
* the value of a credential-shaped environment variable (``WANDB_API_KEY``, ``AWS_SECRET_ACCESS_KEY``).

A secret *value* is replaced wherever it appears whole (a config value, ``key=value`` on a command
line). Inside longer text (a path, a log line) it is replaced only when it is long and distinctive
enough (:func:`scrubbable`): a storage option ``profile: research`` must not turn ``/data/research``
into ``/data/***REDACTED***``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

REDACTED = "***REDACTED***"

#: Key names that are credentials on their own.
_WORDS = frozenset(
    {
        "key",
        "secret",
        "password",
        "passwd",
        "passphrase",
        "token",
        "credential",
        "credentials",
        "apikey",
        "api_key",
        "access_key",
        "access_key_id",
        "secret_key",
        "private_key",
        "account_key",
    }
)
#: Endings that make a key a credential (``_key`` alone is not one: ``sort_key``, ``cache_key``).
_SUFFIXES = tuple("_" + w for w in sorted(_WORDS - {"key"}))
#: Settings that end like a credential but are ordinary (tokenizer special tokens, counts).
_ORDINARY = re.compile(r"^(pad|eos|bos|unk|sep|cls|mask|start|end|special|max|min|num|n|first|last)_token$")


def _normalize(name: str) -> str:
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)  # camelCase -> snake_case
    return name.lower().replace("-", "_").strip("_+~")


def is_secret_key(key: str) -> bool:
    """Whether a config key (dotted paths: the last part) or an environment variable names a secret."""
    name = _normalize(str(key).rsplit(".", 1)[-1])
    if _ORDINARY.match(name):
        return False
    return name in _WORDS or name.endswith(_SUFFIXES)


#: Secrets shorter than this are never searched for inside other text ("x" would mangle every line).
MIN_SECRET_LENGTH = 8
#: Secrets shorter than this are only redacted by key (``secret=x``), never by value.
MIN_WHOLE_LENGTH = 4
#: A secret made only of letters (a dictionary word: "research") must be at least this long to be
#: searched for inside other text; shorter ones are redacted only where they stand whole.
MIN_WORD_SECRET_LENGTH = 12


def scrubbable(value: str) -> bool:
    """Whether ``value`` is distinctive enough to replace inside longer text."""
    if len(value) < MIN_SECRET_LENGTH:
        return False
    return not value.isalpha() or len(value) >= MIN_WORD_SECRET_LENGTH


def secret_values() -> list[str]:
    """Values of credential-shaped environment variables (any length, longest first)."""
    return sorted({v for k, v in os.environ.items() if v and is_secret_key(k)}, key=len, reverse=True)


# key=value / key: value pairs inside free text (command lines, Hydra's {k:v} syntax, YAML, logs)
_PAIR = re.compile(r"([\w.-]+)(\s*[:=]\s*)('[^']*'|\"[^\"]*\"|[^\s,{}\[\]'\"]+)")
_EMPTY = (REDACTED, "null", "None", "''", '""', "???")


def redact_text(text: str, extra: list[str] | None = None) -> str:
    """``text`` with known secret values and every value written after a secret key replaced."""
    values = {v for v in (extra or []) if isinstance(v, str) and v} | set(secret_values()) | _KNOWN
    for value in sorted(values, key=len, reverse=True):
        if scrubbable(value):
            text = text.replace(value, REDACTED)
        elif (
            len(value) >= MIN_WHOLE_LENGTH and value in text
        ):  # only where it stands whole: between delimiters, never inside a word or path
            text = re.sub(rf"(?<![\w/.-]){re.escape(value)}(?![\w/.-])", REDACTED, text)

    def pair(m: re.Match[str]) -> str:
        if is_secret_key(m.group(1)) and m.group(3) not in _EMPTY:
            return f"{m.group(1)}{m.group(2)}{REDACTED}"
        return m.group(0)

    return _PAIR.sub(pair, text)


def redact(obj: Any, extra: list[str] | None = None) -> Any:
    """A copy of a container (config, argv list) with secret keys and secret values replaced."""
    if isinstance(obj, dict):
        return {
            k: (
                REDACTED
                if is_secret_key(str(k)) and v not in (None, "", {}) and not isinstance(v, (dict, list))
                else redact(v, extra)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v, extra) for v in obj]
    if isinstance(obj, str):
        whole = {v for v in (extra or []) if isinstance(v, str) and v} | set(secret_values()) | _KNOWN
        if obj in whole and len(obj) >= MIN_WHOLE_LENGTH:
            return REDACTED
        text = redact_text(obj, extra)
        # key=value overrides on a command line
        m = re.match(r"^([+~]*[\w.-]+)=(.*)$", text, re.DOTALL)
        if m and is_secret_key(m.group(1)) and m.group(2) not in ("", *_EMPTY):
            return f"{m.group(1)}={REDACTED}"
        return text
    return obj


def scrub_argv() -> None:
    """Redact this process's ``sys.argv`` in place once Hydra has parsed it.

    Trackers record it (W&B's run metadata), so a secret typed on the command line would travel
    with every run. The kernel's copy (``/proc/<pid>/cmdline``) cannot be changed: see docs/security.md.
    """
    import sys

    sys.argv[1:] = redact(sys.argv[1:], known_secrets())


#: Secret values found in configs by :func:`collect_secrets`, for the job in progress
#: (:func:`job_secrets`); every redaction scrubs them too.
_KNOWN: set[str] = set()


@contextmanager
def job_secrets(config: Any = None) -> Iterator[None]:
    """Scope the remembered secrets to one job: inside the block only ``config``'s are known
    (plus those collected during it); afterwards what was known before comes back.

    So the next job of a sweep, or a second run in the same process, never redacts with this
    job's secrets, and a job nested in another one leaves the outer job's intact.
    """
    outer = set(_KNOWN)
    _KNOWN.clear()
    collect_secrets(config or {})
    try:
        yield
    finally:
        _KNOWN.clear()
        _KNOWN.update(outer)


def known_secrets() -> list[str]:
    """Every secret value known to the job in progress (its configs and the environment)."""
    return sorted(_KNOWN | set(secret_values()))


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs secrets from each record before a handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message by its redacted text (never drops a record)."""
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def collect_secrets(obj: Any) -> list[str]:
    """Values stored under secret keys anywhere in ``obj`` (to scrub them from free text too).

    They are also remembered, until the job ends, for :class:`RedactingFilter` and every later
    :func:`redact_text`.
    Unresolved interpolations (``${oc.env:AWS_SECRET}``) are references, not secrets.
    """
    found = [v for v in _collect(obj) if not v.startswith("${")]
    _KNOWN.update(found)
    return found


def _collect(obj: Any) -> list[str]:
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_key(str(k)) and isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
                found.append(str(v))
            else:
                found.extend(_collect(v))
    elif isinstance(obj, list):
        for v in obj:
            found.extend(_collect(v))
    elif isinstance(obj, str):
        m = re.match(r"^[+~]*([\w.-]+)=(.+)$", obj, re.DOTALL)  # an override key=value
        if m and is_secret_key(m.group(1)) and m.group(2) not in _EMPTY:
            found.append(m.group(2).strip("'\""))
    return found
