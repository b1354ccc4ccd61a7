"""Checkpoint file names from Lightning-style templates such as ``gpt--{val_loss:.2f}-{step}``."""

from __future__ import annotations

import re
from collections.abc import Mapping

LAST_SUFFIX = "-last"
END_SUFFIX = "-end"
_GROUP = re.compile(r"\{([^{}:]+)(:[^{}]*)?\}")


def _stem(name: str) -> str:
    return name[: -len(".ckpt")] if name.endswith(".ckpt") else name


def is_last(name: str) -> bool:
    """Whether a checkpoint name (file or folder) ends in ``-last`` or is Lightning's ``last``."""
    stem = _stem(name)
    return stem.endswith(LAST_SUFFIX) or stem == "last"


def is_end(name: str) -> bool:
    """Whether a checkpoint name (file or folder) ends in ``-end``."""
    return _stem(name).endswith(END_SUFFIX)


def default_template(name: str, monitor: str | None) -> str:
    """``<name>--{<monitor>:.4f}-{epoch}-{step}`` (without the metric when nothing is monitored)."""
    if monitor:
        return f"{name}--{{{monitor}:.4f}}-{{epoch}}-{{step}}"
    return f"{name}--{{epoch}}-{{step}}"


def format_checkpoint_name(
    template: str, metrics: Mapping[str, float | int], auto_insert_metric_name: bool = True
) -> str:
    """Fill ``template`` like Lightning does: ``{step}`` becomes ``step=12``; missing metrics are 0."""

    def fill(m: re.Match[str]) -> str:
        key, spec = m.group(1).strip(), (m.group(2) or "")
        value = metrics.get(key, 0)
        if spec and isinstance(value, int) and any(c in spec for c in "feE%"):
            value = float(value)
        text = format(value, spec[1:]) if spec else str(value)
        return f"{key.replace('/', '_')}={text}" if auto_insert_metric_name else text

    return _GROUP.sub(fill, template).replace("/", "_")
