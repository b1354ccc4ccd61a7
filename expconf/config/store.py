"""Registers the config tree in Hydra's ConfigStore, refusing silent overwrites."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from expconf.config.root import RootConfig
from expconf.rundir import DEFAULT_LOG_DIR

#: Name of the root schema in the ConfigStore; conf/expconf.yaml puts it first in its defaults.
ROOT_SCHEMA = "expconf_schema"

_registered: set[tuple[str | None, str]] = set()


class StoreOverwriteError(KeyError):
    """Raised when a registration would replace an existing ConfigStore entry."""


def store(node: Any, *, name: str, group: str | None = None, package: str | None = None) -> None:
    """Register ``node`` as ``group/name``; an existing entry is an error, never overwritten."""
    cs = ConfigStore.instance()
    path = f"{group}/{name}" if group else name
    if (group, name) in _registered or _exists(cs, group, name):
        raise StoreOverwriteError(
            f"config '{path}' is already registered in the ConfigStore; pick another name "
            "(expconf never overwrites an entry silently)"
        )
    cs.store(name=name, node=node, group=group, package=package)
    _registered.add((group, name))


def _exists(cs: ConfigStore, group: str | None, name: str) -> bool:
    repo: Any = cs.repo
    if group:
        for part in group.split("/"):
            if not isinstance(repo, dict) or part not in repo:
                return False
            repo = repo[part]
    return isinstance(repo, dict) and f"{name}.yaml" in repo


#: (log dir, sweep dir) pairs Hydra resolved during the command in progress, absolute: a sweep
#: stopped by a config error removes what it made, from the sweep dir up to the log dir and never above.
_sweep_dirs: ContextVar[set[tuple[str, str]] | None] = ContextVar("expconf_sweep_dirs", default=None)


@contextmanager
def recording_sweep_dirs() -> Iterator[set[tuple[str, str]]]:
    """Collect the sweep dirs resolved inside the block (one command) into a new set, yielded."""
    found: set[tuple[str, str]] = set()
    token = _sweep_dirs.set(found)
    try:
        yield found
    finally:
        _sweep_dirs.reset(token)


def recorded_sweep_dirs() -> set[tuple[str, str]]:
    """The sweep dirs resolved so far by the command in progress (none outside :func:`recording_sweep_dirs`)."""
    return set(_sweep_dirs.get() or ())


def sweep_dir(*, _root_: Any) -> str:
    """Where Hydra's multirun writes multirun.yaml: the experiment folder, so no stray dirs appear.

    ``--cfg hydra`` shows the hydra node alone (no ``log``): the path is then named, not resolved.
    """
    if "log" not in _root_:
        return "<log.log_dir>/<log.name>"
    root = _root_.log.log_dir or DEFAULT_LOG_DIR
    path = os.path.join(root, _root_.log.name or "default")
    found = _sweep_dirs.get()
    if found is not None:
        found.add((os.path.abspath(root), os.path.abspath(path)))
    return path


def register_all() -> None:
    """Register the root schema and the resolvers (idempotent); group options are YAML in conf/."""
    if (None, ROOT_SCHEMA) in _registered:
        return
    store(RootConfig, name=ROOT_SCHEMA)
    if not OmegaConf.has_resolver("expconf_sweep_dir"):
        OmegaConf.register_new_resolver("expconf_sweep_dir", sweep_dir)
