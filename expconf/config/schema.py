"""Questions about the schema that error messages need: field types in words, known keys.

Hydra applies ``+key=value`` even where the dataclass has no such field, and
``OmegaConf.to_object`` then silently sets the stray key as an attribute. :func:`check_known_keys`
closes that hole after composition: every key under a dataclass node must be one of its fields.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from expconf.errors import ConfigError, did_you_mean


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type hints of the fields of dataclass ``cls`` (empty for anything else)."""
    if not dataclasses.is_dataclass(cls):
        return {}
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an unresolvable annotation in a user's dataclass: fall back to raw strings
        return {f.name: f.type for f in dataclasses.fields(cls)}


def describe_type(tp: Any) -> str:
    """A type annotation in words: ``Optional[int]`` -> ``an integer or null``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        words = " or ".join(describe_type(a) for a in args)
        return f"{words} or null" if len(args) < len(typing.get_args(tp)) else words
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin in (list, tuple) or tp in (list, tuple):
        return "a list such as [a,b]"
    if origin is dict or tp is dict:
        return "a mapping such as {a:1}"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"a group of settings ({tp.__name__}); set its fields one by one"
    if tp is Any:
        return "a value"
    return str(tp)


def field_type_words(cls: Any, name: str) -> str:
    """What field ``name`` of dataclass ``cls`` accepts, in words ('' when unknown)."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return ""
    tp = field_types(cls).get(name)
    return describe_type(tp) if tp is not None else ""


def field_names(cls: Any) -> list[str]:
    """Field names of dataclass ``cls`` (empty when it is not one)."""
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        return [f.name for f in dataclasses.fields(cls)]
    return []


def unknown_key_error(key: str, value: Any, parent_cls: Any) -> ConfigError:
    """The one-line error for ``key`` that ``parent_cls`` (a dataclass) has no field for."""
    parent, _, leaf = key.rpartition(".")
    names = field_names(parent_cls)
    hint = did_you_mean(leaf, names, prefix=f"{parent}." if parent else "")
    renamed = getattr(parent_cls, "NEMO_NAMES", {}).get(leaf)
    if renamed:
        hint = f"NeMo's {leaf} is {parent}.{renamed} here"
    if not parent and leaf in ("experiment", "recipe"):
        hint = f"the {leaf} file must start with the line '# @package _global_' to set root keys"
    if not hint and names:
        hint = "known keys: " + ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    where = f"under {parent}" if parent else "at the root (trainer, log, resume, model, data, optim, callbacks, seed)"
    return ConfigError(key, value, f"a known key {where}", hint)


def check_known_keys(cfg: Any, path: str = "") -> None:
    """Raise :class:`ConfigError` for the first key of ``cfg`` that its dataclass does not define."""
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(cfg, DictConfig):
        return
    obj_type = OmegaConf.get_type(cfg)
    names = field_names(obj_type)
    if not names:
        return  # a free-form mapping: anything goes
    for key in cfg.keys():
        full = f"{path}{key!s}"
        if key not in names:
            child = cfg._get_node(key)
            value = child._value() if child is not None and not isinstance(child, DictConfig) else "{...}"
            raise unknown_key_error(full, value, obj_type)
        child = cfg._get_node(key)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            check_known_keys(child, f"{full}.")
