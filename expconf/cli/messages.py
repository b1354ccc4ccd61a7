"""Hydra / OmegaConf / YAML exceptions translated into one :class:`~expconf.errors.ConfigError` line."""

from __future__ import annotations

import re
from typing import Any

from expconf.cli.args import group_options, override_value
from expconf.errors import NO_VALUE, ConfigError, did_you_mean


def _option_error(group: str, value: str, options: list[str], how: str = "") -> ConfigError:
    hint = did_you_mean(value, options)
    if options:
        expected = f"one of the {group} options: {', '.join(options)}"
    else:
        expected = f"an option of group '{group}', but none was found (put {group}/NAME.yaml under --config-dir DIR)"
    if how:
        hint = f"{hint}; {how}" if hint else how
    return ConfigError(group, value, expected, hint)


def _yaml_error(err: Any) -> ConfigError:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    cmark = getattr(err, "context_mark", None)
    if context and cmark is not None and mark is not None and cmark.line != mark.line:
        context += f" that starts at line {cmark.line + 1}"
    where = f"{mark.name}:{mark.line + 1}" if mark is not None else "a YAML file"
    text = f"{where}: malformed YAML: {problem}" + (f" ({context})" if context else "")
    return ConfigError(where, message=text)


def _omegaconf_error(err: Any, argv: list[str] | None, source: str) -> ConfigError:
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        InterpolationResolutionError,
        MissingMandatoryValue,
        ValidationError,
    )

    from expconf.config.schema import field_type_words, unknown_key_error

    key = str(err.full_key)
    value = override_value(key, argv)
    if value is NO_VALUE and getattr(err, "value", None) is not None:
        value = err.value
    first = str(err).splitlines()[0].strip()
    where = f"set in {source}" if source else ""
    parent, _, leaf = key.rpartition(".")
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        if "not in struct" in first or (isinstance(err.object_type, type) and issubclass(err.object_type, dict)):
            from expconf.redact import is_secret_key

            shown = "VALUE" if value is NO_VALUE or is_secret_key(key) else value
            return ConfigError(
                key,
                value,
                f"'++{key}={shown}': {parent} is a free-form mapping, so a new key needs ++",
                f"a plain override only changes keys that exist; ++{parent}={{a:1,b:2}} sets the whole mapping",
            )
        e = unknown_key_error(key, value, err.object_type)
        return ConfigError(e.key, e.value, e.expected, "; ".join(h for h in (e.hint, where) if h))
    if isinstance(err, InterpolationResolutionError):
        return ConfigError(
            key, value, "an interpolation ${...} that resolves", "; ".join(h for h in (first, where) if h)
        )
    if isinstance(err, MissingMandatoryValue):
        return ConfigError(key, value, "a value (this key is mandatory: ???)", where)
    if isinstance(err, ValidationError):
        words = field_type_words(err.object_type, leaf) or first
        return ConfigError(key, value, words, where)
    return ConfigError(key, value, first, where)


def one_line(exc: BaseException, argv: list[str] | None = None) -> ConfigError:
    """A Hydra / OmegaConf / YAML exception (or its cause) as one ConfigError line.

    ``argv`` (the command line) supplies the value the user typed and the ``--config-dir`` folders.
    """
    import yaml
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
        SearchPathException,
    )
    from omegaconf.errors import OmegaConfBaseException

    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 12:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for err in chain:
        if isinstance(err, ConfigError):
            return err
    for err in chain:
        if isinstance(err, yaml.YAMLError):
            return _yaml_error(err)
    msg = " ".join(str(exc).split())
    m = re.search(r"In '([^']+)': \w+ raised while composing", msg)
    source = f"config {m.group(1)}" if m else ""
    for err in chain:
        if isinstance(err, OmegaConfBaseException) and getattr(err, "full_key", None):
            return _omegaconf_error(err, argv, source)
    for err in chain:
        if isinstance(err, OverrideParseException):
            return _parse_error(err, argv)
        if isinstance(err, MissingConfigException):
            return _missing_config(err, argv)
        if isinstance(err, SearchPathException):
            m = re.search(r"directory '([^']+)' not found", str(err))
            folder = m.group(1) if m else str(err)
            return ConfigError("--config-dir", folder, "an existing folder of YAML configs")
    m = re.search(r"Multiple values for (\S+)\. To override a value use 'override \S+: ([^']*)'", msg)
    if m:  # an experiment's `- /model: NAME` while expconf's defaults list already has model
        group, value = m.group(1).lstrip("/"), m.group(2)
        return ConfigError(
            group,
            value,
            f"'- override /{group}: {value}' in the config's defaults list",
            f"{group} is a group of expconf's defaults list, so a config selects it with override",
        )
    m = re.search(r"Could not override '([^']+)'\. No match in the defaults list", msg)
    if m:
        group = m.group(1)
        value = override_value(group, argv)
        opt = "" if value is NO_VALUE else str(value)
        return _option_error(group, opt, group_options(group, argv), f"a group option is added with +{group}=NAME")
    m = re.search(r"Could not (?:override|delete|append to) '([^']+)'", msg)
    if m and isinstance(exc, ConfigCompositionException):
        key = m.group(1)
        return ConfigError(
            key, override_value(key, argv), "a key or group that exists in the composed config", msg[:200]
        )
    if type(exc).__module__ == "expconf.resume":  # the resume decision
        return ConfigError("resume", message=f"resume: {msg[:400]}")
    return ConfigError("config", message=f"config: {msg[:400] or type(exc).__name__}")


def _parse_error(err: BaseException, argv: list[str] | None) -> ConfigError:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    detail = str(err).splitlines()[0]
    for arg in argv or []:
        if arg.startswith("-"):
            continue
        try:
            parser.parse_override(arg)
        except Exception:
            key, _, value = arg.partition("=")
            return ConfigError(
                key.lstrip("+~") or arg,
                value,
                "a value in Hydra's override syntax (quote strings with special characters: key='a b')",
                detail,
            )
    return ConfigError("override", None, "Hydra's override syntax key=value", detail)


def _missing_config(err: BaseException, argv: list[str] | None) -> ConfigError:
    text = str(err)
    m = re.search(r"Could not find '([^']+)'", text)
    if not m:
        m2 = re.search(r"Cannot find primary config '([^']+)'", text)
        name = m2.group(1) if m2 else text.splitlines()[0]
        return ConfigError("--config-name", name, "a config that exists in the config path")
    group, _, name = m.group(1).rpartition("/")
    if not group:
        return ConfigError("config", name, "an existing config name", text.splitlines()[0])
    options = (
        re.findall(r"^\t(\S+)$", text.split("Available options", 1)[1].split("Config search path")[0], re.M)
        if "Available options" in text
        else []
    )
    return _option_error(group, name, options or group_options(group, argv))
