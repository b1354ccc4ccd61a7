"""Command-line helpers for the Hydra entry points: option reordering and one-line errors."""

from __future__ import annotations

import re
from typing import Any

from expconf.errors import ConfigError, did_you_mean

# Hydra options and whether they take a value. Hydra's argparse rejects an option that comes
# after an override, so options (with their values) are moved in front of the overrides.
_OPTIONS_WITH_VALUE = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--experimental-rerun",
    "--shell-completion",
    "-sc",
}
_FLAGS = {
    "--multirun",
    "-m",
    "--help",
    "-h",
    "--hydra-help",
    "--resolve",
    "--run",
    "-r",
    "--version",
    "--info",
    "-i",
}


def reorder_options(argv: list[str]) -> list[str]:
    """Options first (in their order), then overrides (in theirs)."""
    options: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        head = arg.split("=", 1)[0]
        if head in _OPTIONS_WITH_VALUE and "=" not in arg and i + 1 < len(argv):
            options += [arg, argv[i + 1]]
            i += 2
            continue
        if head in _OPTIONS_WITH_VALUE or arg in _FLAGS:
            options.append(arg)
        else:
            overrides.append(arg)
        i += 1
    return options + overrides


def _schema_keys(parent: str) -> list[str]:
    """Field names under ``parent`` (dotted) of the root schema."""
    import dataclasses

    from expconf.config.root import RootConfig

    cls: Any = RootConfig
    for part in [p for p in parent.split(".") if p]:
        hints = {f.name: f for f in dataclasses.fields(cls)}
        if part not in hints:
            return []
        factory: Any = hints[part].default_factory
        if factory is dataclasses.MISSING:
            return []
        default = factory()
        if not dataclasses.is_dataclass(default):
            return []
        cls = type(default)
    return [f.name for f in dataclasses.fields(cls)]


def one_line(exc: BaseException) -> ConfigError:
    """A Hydra / OmegaConf exception (or its cause) as one ConfigError line."""
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for err in chain:
        if isinstance(err, ConfigError):
            return err
    for err in chain:
        if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
            key = str(err.full_key)
            value = getattr(err, "value", None)
            if isinstance(err, ConfigKeyError):
                parent, _, leaf = key.rpartition(".")
                hint = did_you_mean(leaf, _schema_keys(parent))
                if hint and parent:
                    hint = hint.replace(f"'{hint.split(chr(39))[1]}'", f"'{parent}.{hint.split(chr(39))[1]}'")
                return ConfigError(
                    key,
                    value,
                    "a known key" + (f" under {parent}" if parent else ""),
                    hint or "see python -m expconf.train --cfg job for the tree",
                )
            if isinstance(err, ValidationError):
                msg = str(err).splitlines()[0]
                return ConfigError(key, value, msg)
    msg = " ".join(str(exc).split())
    m = re.search(r"Could not find '([^']+)'", msg)
    if m:
        return ConfigError(
            m.group(1).split("/")[0],
            m.group(1).split("/")[-1],
            "an existing config option",
            msg[:300],
            message=f"{m.group(1)}: no such config option ({msg[:240]})",
        )
    return ConfigError("config", None, message=msg[:400] or type(exc).__name__)
