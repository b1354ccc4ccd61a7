"""What ``python -m expconf.migrate`` builds: the migrated tree, its notes, and safe text.

Everything taken from the input file is untrusted: key names and unresolved values reach the
output only through :func:`show` (a quoted, escaped rendering) inside comments, and values
reach the config only when they are plain YAML scalars or lists of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_REF = re.compile(r"\$\{([^${}]*)\}")
_MAX_DEPTH = 16


class Unresolved(str):
    """A value that cannot be resolved from the input (interpolation, alias, ``???``)."""


def escape(text: str) -> str:
    """``text`` on one line: every non-printable character (line breaks included) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def show(key: Any) -> str:
    """A key or value from the input as it may appear in a note: plain names as they are,
    anything else quoted and escaped (so it can never start a line of code or YAML)."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return key
    return escape(repr(key))


def is_plain(value: Any) -> bool:
    """A scalar, or a list of scalars: the only shapes copied from the input into the config."""
    scalar = (str, int, float, bool, type(None))
    if isinstance(value, list):
        return all(isinstance(v, scalar) for v in value)
    return isinstance(value, scalar)


@dataclass
class Migration:
    """The result of migrating one NeMo 1.0 config (or its ``exp_manager`` block)."""

    source: str
    config: dict[str, Any] = field(default_factory=dict)
    #: dotted expconf key -> the original value that could not be resolved
    unresolved: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    #: Trainer arguments only the ``--python`` output passes (the CLI derives them itself)
    python_only: dict[str, Any] = field(default_factory=dict)

    def set(self, key: str, value: Any, structured: bool = False) -> None:
        """Set dotted ``key`` in the config, or record it as unresolved.

        Only plain values are accepted unless ``structured`` (a node expconf built itself).
        """
        if isinstance(value, Unresolved) or (isinstance(value, str) and "${" in value):
            self.unresolved[key] = str(value)
            self.notes.append(f"{key}: {show(str(value))} cannot be resolved from the input; set it yourself")
            return
        if not structured and not is_plain(value):
            self.notes.append(f"{key}: not migrated: {show(value)} is not a plain value")
            return
        node = self.config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    def drop(self, key: str) -> Any:
        """Remove dotted ``key`` from the config and return its value (None when absent)."""
        node: Any = self.config
        *parents, leaf = key.split(".")
        for p in parents:
            if not isinstance(node, dict) or p not in node:
                return None
            node = node[p]
        return node.pop(leaf, None) if isinstance(node, dict) else None

    def get(self, key: str, default: Any = None) -> Any:
        """The migrated value at dotted ``key``."""
        node: Any = self.config
        for p in key.split("."):
            if not isinstance(node, dict) or p not in node:
                return default
            node = node[p]
        return node

    def leaves(self) -> dict[str, Any]:
        """Every migrated value by dotted key."""
        out: dict[str, Any] = {}

        def walk(node: dict[str, Any], prefix: str) -> None:
            for k, v in node.items():
                if isinstance(v, dict) and v:
                    walk(v, f"{prefix}{k}.")
                else:
                    out[prefix + k] = v

        walk(self.config, "")
        return out

    def note(self, source: str, text: str) -> None:
        """A note about input key ``source`` (shown escaped)."""
        self.notes.append(f"{show(source)}: {text}")


# -- reading ------------------------------------------------------------------------------------
class Loader(yaml.SafeLoader):
    """SafeLoader that keeps an alias to an anchor outside the text (``*name``) as a marker."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            if event.anchor not in self.anchors:
                self.get_event()
                return yaml.ScalarNode("tag:expconf/unresolved", f"*{event.anchor}", event.start_mark, event.end_mark)
        return super().compose_node(parent, index)


Loader.add_constructor("tag:expconf/unresolved", lambda loader, node: Unresolved(node.value))


class _Missing(Exception):
    """An interpolation that points at nothing the input has."""


def _lookup(ref: str, doc: dict[str, Any], where: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    """The node ``${ref}`` names, seen from the mapping at path ``where``, and its parent path."""
    ref = ref.strip()
    if ":" in ref or not ref or "[" in ref:
        raise _Missing  # a resolver call (${multiply:...}, ${oc.env:...}) or an index
    dots = len(ref) - len(ref.lstrip("."))
    if dots:
        if dots - 1 > len(where):
            raise _Missing
        path = list(where[: len(where) - (dots - 1)])
        rest = ref[dots:]
    else:
        path, rest = [], ref
    node: Any = doc
    for part in path:
        node = node[part]
    parts = rest.split(".") if rest else []
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            raise _Missing
        node = node[part]
    parent = tuple(path + parts[:-1])
    return node, parent


def resolve(value: Any, doc: dict[str, Any], where: tuple[str, ...], depth: int = 0) -> Any:
    """``value`` with its ``${a.b}`` / ``${.x}`` interpolations resolved against ``doc``.

    A whole-value reference keeps the type of what it points at. Anything that cannot be
    resolved (resolver calls, missing keys, ``???``, cycles) comes back as :class:`Unresolved`.
    """
    if isinstance(value, Unresolved) or not isinstance(value, str):
        return value
    if value == "???":
        return Unresolved(value)
    if "${" not in value:
        return value
    if depth > _MAX_DEPTH:
        return Unresolved(value)
    try:
        whole = _REF.fullmatch(value)
        if whole:
            node, parent = _lookup(whole.group(1), doc, where)
            found = resolve(node, doc, parent, depth + 1)
            return Unresolved(value) if isinstance(found, Unresolved) else found

        def sub(match: re.Match[str]) -> str:
            node, parent = _lookup(match.group(1), doc, where)
            found = resolve(node, doc, parent, depth + 1)
            if isinstance(found, (dict, list, Unresolved)) or found is None:
                raise _Missing
            return str(found)

        text = _REF.sub(sub, value)
    except (_Missing, KeyError, TypeError):
        return Unresolved(value)
    return Unresolved(value) if "${" in text else text
