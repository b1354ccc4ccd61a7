"""Checks every config Hydra composes before Hydra acts on it.

Hydra instantiates ``hydra.callbacks``, configures logging from ``hydra.hydra_logging`` /
``hydra.job_logging`` (``()`` factories, ``ext://`` objects) and loads its launcher and sweeper right
after composing, before the task function (and expconf's validation) runs. :func:`install` wraps the
one method every composition goes through (single runs, each job of a sweep, ``--cfg``, ``--info``),
so that a config naming anything off :mod:`expconf.targets`'s allow-list fails there in one line.

The same hook keeps secrets out of what Hydra itself writes and prints: a redacting filter is put
on every handler of Hydra's logging configs (its job lines echo the overrides), the sweeper's copy
of the config (``multirun.yaml``) is redacted, and a config Hydra only prints (``--cfg``, ``--info``,
``--help``) shows secrets as ``***REDACTED***`` unless ``$EXPCONF_SHOW_SECRETS=1``.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from typing import Any

from expconf import targets
from expconf.errors import ConfigError
from expconf.redact import REDACTED, collect_secrets, is_secret_key, redact

#: Set to 1 to print secrets in ``--cfg`` / ``--info`` output (they are redacted otherwise).
SHOW_SECRETS_ENV = "EXPCONF_SHOW_SECRETS"
_SHOW_FLAGS = {"--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help"}
_FILTER_NAME = "expconf_redact"
_RESOLVER = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")


def check_composed(cfg: Any) -> None:
    """Raise :class:`ConfigError` for anything in ``cfg`` (a composed config) that is not allow-listed."""
    from omegaconf import OmegaConf

    tree = OmegaConf.to_container(cfg, resolve=False)
    _check_hydra_callbacks(tree)
    _walk(tree, "")


def _kind(key: str) -> str:
    """What a ``_target_`` at ``key`` is used for (its allow-list)."""
    if key.startswith("hydra.callbacks."):
        return "hydra_callback"
    if key.startswith(("hydra.launcher.", "hydra.sweeper.")):
        return "hydra_plugin"
    return "target"


def _check_literal(value: Any, key: str, kind: str) -> None:
    if isinstance(value, str) and "${" in value:
        raise ConfigError(key, value, "a literal class path (no interpolation)")
    targets.check(value, key, kind)


def _check_hydra_callbacks(tree: Any) -> None:
    """Each ``hydra.callbacks.<name>`` is a literal mapping: an interpolated node hides what it builds."""
    callbacks = (tree.get("hydra") or {}).get("callbacks") if isinstance(tree, dict) else None
    for name, node in (callbacks or {}).items():
        if not isinstance(node, dict):
            raise ConfigError(f"hydra.callbacks.{name}", node, "a mapping with an allow-listed _target_")


def _walk(node: Any, key: str) -> None:
    """Every ``_target_``, logging factory, ``ext://`` object and resolver anywhere in the tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            child = f"{key}.{k}" if key else str(k)
            if k == "_target_":
                _check_literal(v, child, _kind(child))
            elif k in ("()", "class") and key.startswith(("hydra.job_logging.", "hydra.hydra_logging.")):
                _check_literal(v, child, "logging")
            else:
                _walk(v, child)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _walk(v, f"{key}[{i}]")
    elif isinstance(node, str):
        if node.startswith("ext://"):
            targets.check(node.removeprefix("ext://"), key, "ext")
        for name in _RESOLVER.findall(node):
            targets.check(name, key, "resolver")


def _add_redacting_filter(cfg: Any) -> None:
    """Put :class:`expconf.redact.RedactingFilter` on every handler of Hydra's two logging configs."""
    from omegaconf import open_dict

    for section in ("job_logging", "hydra_logging"):
        logging_cfg = cfg.hydra.get(section)
        if not logging_cfg or not logging_cfg.get("handlers"):
            continue
        with open_dict(logging_cfg):
            filters = logging_cfg.get("filters") or {}
            logging_cfg.filters = {**filters, _FILTER_NAME: {"()": "expconf.redact.RedactingFilter"}}
            for handler in logging_cfg.handlers.values():
                names = list(handler.get("filters") or [])
                if _FILTER_NAME not in names:
                    handler.filters = [*names, _FILTER_NAME]


def redact_in_place(node: Any) -> None:
    """Replace secret values inside an OmegaConf container (interpolations under secret keys too)."""
    from omegaconf import DictConfig, ListConfig, flag_override

    with flag_override(node, ["struct", "readonly"], [False, False]):
        keys = list(node.keys()) if isinstance(node, DictConfig) else list(range(len(node)))
        for key in keys:
            child = node._get_node(key)
            if isinstance(child, (DictConfig, ListConfig)):
                if not child._is_none() and not child._is_missing():
                    redact_in_place(child)
                continue
            raw = child._value() if child is not None else None
            if raw is None or raw == "" or raw == "???":
                continue
            if isinstance(node, DictConfig) and is_secret_key(str(key)):
                new: Any = REDACTED
            elif isinstance(raw, str):
                new = redact(raw)
            else:
                continue
            if new != raw:
                try:
                    node[key] = new
                except Exception:  # a typed non-string field: not a credential-shaped value
                    continue


def _showing(argv: list[str]) -> bool:
    return bool({a.split("=", 1)[0] for a in argv} & _SHOW_FLAGS) and os.environ.get(SHOW_SECRETS_ENV) != "1"


def _guarded(load: Any) -> Any:
    def load_configuration(self: Any, *args: Any, **kwargs: Any) -> Any:
        cfg = load(self, *args, **kwargs)
        check_composed(cfg)
        from omegaconf import OmegaConf

        collect_secrets(OmegaConf.to_container(cfg, resolve=False))  # every log line scrubs them
        if _showing(sys.argv[1:]):
            redact_in_place(cfg)
        else:
            _add_redacting_filter(cfg)
        return cfg

    load_configuration.__wrapped__ = load  # type: ignore[attr-defined]
    return load_configuration


def _redacted_sweeper_setup(setup: Any) -> Any:
    def sweeper_setup(self: Any, *args: Any, **kwargs: Any) -> None:
        setup(self, *args, **kwargs)
        # The sweeper keeps the config only to write multirun.yaml and read hydra.sweep/sweeper
        # settings; the launcher (set up above) keeps the real one and composes each job from it.
        self.config = copy.deepcopy(self.config)
        redact_in_place(self.config)

    sweeper_setup.__wrapped__ = setup  # type: ignore[attr-defined]
    return sweeper_setup


def _prechecked_launch(launch: Any) -> Any:
    def submitit_launch(self: Any, job_overrides: Any, initial_job_idx: int) -> Any:
        # A submitit job composes its config on the cluster node, where this guard is not
        # installed: compose (and so check) every job here, before anything is submitted.
        for overrides in job_overrides:
            self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        return launch(self, job_overrides, initial_job_idx)

    submitit_launch.__wrapped__ = launch  # type: ignore[attr-defined]
    return submitit_launch


def install() -> None:
    """Guard Hydra's config loader, its basic sweeper and the submitit launcher in this process (idempotent)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.plugins import Plugins

    Plugins.instance()  # its first call re-executes the plugin modules: patch the classes it keeps
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    if not hasattr(ConfigLoaderImpl.load_configuration, "__wrapped__"):
        ConfigLoaderImpl.load_configuration = _guarded(ConfigLoaderImpl.load_configuration)  # type: ignore[method-assign]
    if not hasattr(BasicSweeper.setup, "__wrapped__"):
        BasicSweeper.setup = _redacted_sweeper_setup(BasicSweeper.setup)  # type: ignore[method-assign]
    submitit = sys.modules.get("hydra_plugins.hydra_submitit_launcher.submitit_launcher")
    if submitit is not None and not hasattr(submitit.BaseSubmititLauncher.launch, "__wrapped__"):
        submitit.BaseSubmititLauncher.launch = _prechecked_launch(submitit.BaseSubmititLauncher.launch)
