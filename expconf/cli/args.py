"""Argument rewriting for the Hydra entry points: options first, ``+group=`` spellings, override values."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from expconf.errors import NO_VALUE, ConfigError

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
}
#: Options whose value is optional: the next word is theirs only when it is one of these.
_OPTIONAL_VALUE = {
    "--info": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
    "-i": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
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
    "--shell-completion",
    "-sc",
}

#: Config groups in the defaults list of conf/expconf.yaml, in precedence order (later wins).
DEFAULTS_GROUPS = ("recipe", "trainer", "model", "experiment")


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
        if arg in _OPTIONAL_VALUE and i + 1 < len(argv) and argv[i + 1] in _OPTIONAL_VALUE[arg]:
            options += [arg, argv[i + 1]]
            i += 2
            continue
        if head in _OPTIONS_WITH_VALUE or head in _OPTIONAL_VALUE or arg in _FLAGS:
            options.append(arg)
        else:
            overrides.append(arg)
        i += 1
    return options + overrides


def select_groups(argv: list[str]) -> list[str]:
    """``+recipe=gpt`` -> ``recipe=gpt`` for the groups already in expconf's defaults list.

    Hydra refuses to append a group that its primary config lists, so the old spelling is
    rewritten; with a user's own primary config (``--config-name``) nothing is touched.
    """
    if any(a.split("=", 1)[0] in ("--config-name", "-cn") for a in argv):
        return list(argv)
    out = []
    for arg in argv:
        m = re.fullmatch(r"\+({})=(.*)".format("|".join(DEFAULTS_GROUPS)), arg, re.S)
        out.append(f"{m.group(1)}={m.group(2)}" if m else arg)
    return out


def override_value(key: str, argv: list[str] | None) -> Any:
    """The raw value given for ``key`` by an override in ``argv`` (NO_VALUE when none did)."""
    for arg in reversed(argv or []):
        head, eq, value = arg.partition("=")
        if eq and head.lstrip("+~") == key:
            return value
    return NO_VALUE


def config_dirs(argv: list[str] | None) -> list[str]:
    """The folders given with ``--config-dir`` / ``-cd`` in ``argv``."""
    out: list[str] = []
    args = argv or []
    for i, arg in enumerate(args):
        head, eq, value = arg.partition("=")
        if head in ("--config-dir", "-cd"):
            if eq:
                out.append(value)
            elif i + 1 < len(args):
                out.append(args[i + 1])
    return out


def group_options(group: str, argv: list[str] | None = None) -> list[str]:
    """Options of config group ``group``: ConfigStore entries, expconf's conf/ and every --config-dir."""
    from importlib import resources

    from hydra.core.config_store import ConfigStore

    names: set[str] = set()
    try:
        names.update(n.removesuffix(".yaml") for n in ConfigStore.instance().list(group))
    except OSError:
        pass
    folders: list[Any] = [Path(d) / group for d in config_dirs(argv)]
    try:
        folders.append(resources.files("expconf.conf").joinpath(group))
    except ModuleNotFoundError:
        pass
    for folder in folders:
        try:
            names.update(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))
        except (OSError, AttributeError):
            continue
    return sorted(names)


#: Comma-separated modules imported before composition, so a user repo can register its own
#: dataclasses (``expconf.config.store.store``) for ``python -m expconf.train --config-dir``.
CONFIG_MODULES_ENV = "EXPCONF_CONFIG_MODULES"


def import_config_modules() -> None:
    """Import the modules named in ``$EXPCONF_CONFIG_MODULES``; one that fails is a ConfigError."""
    import importlib

    for name in (n.strip() for n in os.environ.get(CONFIG_MODULES_ENV, "").split(",")):
        if not name:
            continue
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(
                CONFIG_MODULES_ENV, name, "an importable module (is its folder on PYTHONPATH?)", str(e)
            ) from e
