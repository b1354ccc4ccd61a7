"""Writers for ``python -m expconf.migrate``: expconf YAML and NeMo 2.0-style Python.

Config keys come only from expconf's own names; input text (key names, unresolved values,
the file name) appears only inside comments, escaped onto one line by
:func:`expconf.migrate_core.escape`, and values are written as YAML or Python literals.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
from typing import Any

import yaml

from expconf.migrate_core import Migration, escape

HEADER = "NeMo 1.0 config -> expconf"


# -- YAML ----------------------------------------------------------------------------------------
def _scalar(v: Any) -> str:
    """``v`` as a one-line YAML flow value."""
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_scalar(str(k))}: {_scalar(x)}" for k, x in v.items()) + "}"
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    if isinstance(v, str) and (not v.isprintable() or "\n" in text):
        return json.dumps(v)  # a double-quoted YAML scalar with escapes, always one line
    return text


def _copy(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in node.items()}


def to_yaml(m: Migration) -> str:
    """The migrated config as YAML for ``conf/experiment/NAME.yaml`` (``# @package _global_`` first)."""
    lines = [
        "# @package _global_",
        f"# Migrated from {escape(repr(m.source))} by python -m expconf.migrate ({HEADER}).",
        "# Use it with: python -m expconf.train +recipe=gpt --config-dir conf +experiment=NAME",
    ]

    def comments(path: str, indent: int) -> None:
        for key, original in m.unresolved.items():
            parent, _, leaf = key.rpartition(".")
            if (f"{parent}." if parent else "") == path:
                lines.append(f"{'  ' * indent}# {leaf}: {escape(original)}   # unresolved: set it yourself")

    def emit(node: dict[str, Any], path: str, indent: int) -> None:
        pad = "  " * indent
        for key, v in node.items():
            if isinstance(v, dict) and v:
                lines.append(f"{pad}{key}:")
                emit(v, f"{path}{key}.", indent + 1)
            elif isinstance(v, dict):  # only unresolved values inside: keep it a mapping, not null
                lines.append(f"{pad}{key}: {{}}")
                comments(f"{path}{key}.", indent + 1)
            else:
                lines.append(f"{pad}{key}: {_scalar(v)}")
        comments(path, indent)

    tree = _copy(m.config)
    for key in m.unresolved:
        node = tree
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
    emit(tree, "", 0)
    if m.notes:
        lines.append("")
        lines += [f"# note: {escape(n)}" for n in m.notes]
    return "\n".join(lines) + "\n"


# -- Python --------------------------------------------------------------------------------------
def _py(v: Any) -> str:
    """``v`` as a Python literal (never code taken from the input)."""
    if v is None or isinstance(v, (bool, int)):
        return repr(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else f"float({str(v)!r})"
    if isinstance(v, list):
        return "[" + ", ".join(_py(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(x)}" for k, x in v.items()) + "}"
    return repr(str(v))


def _accepts(target: Any) -> set[str] | None:
    """The keyword arguments ``target`` takes (None: any)."""
    params = inspect.signature(target).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _kwargs(
    cls: type,
    values: dict[str, Any],
    unresolved: dict[str, str],
    prefix: str,
    every: bool,
    target: Any = None,
) -> list[str]:
    """``name=value,`` lines for the fields of dataclass ``cls`` (every field, or the migrated ones)
    that ``target`` (the object the code builds) accepts."""
    accepted = _accepts(target) if target is not None else None
    out = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in ("ckpt", "wandb", "tensorboard", "storage_options") or f.name.startswith("_"):
            continue
        if accepted is not None and f.name not in accepted:
            continue  # a CLI-only setting (the Python objects have no such argument)
        key = f"{prefix}{f.name}"
        if not every and f.name not in values and key not in unresolved:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        line = f"{f.name}={_py(values.get(f.name, default))},"
        if key in unresolved:
            line += f"  # was {escape(unresolved[key])}: unresolved, set it yourself"
        out.append(line)
    return out


def _trainer_kwargs(m: Migration) -> dict[str, Any]:
    kwargs = {k: v for k, v in m.get("trainer", {}).items() if v is not None}
    kwargs.update(m.python_only)
    return kwargs


def to_python(m: Migration) -> str:
    """NeMo 2.0-style code: Trainer arguments, optimizer, NeMoLogger, AutoResume and callbacks."""
    import expconf
    from expconf.config import CheckpointConfig, DataConfig, GPTModelConfig, LogConfig, OptimConfig, ResumeConfig

    wandb = m.get("log.wandb", {})
    ind = " " * 4
    lines = [
        f'"""Migrated by python -m expconf.migrate ({HEADER}): run(model, data) trains with these settings."""',
        f"# source: {escape(repr(m.source))}",
        "",
        "from typing import Any",
        "",
        "import pytorch_lightning as pl",
        "",
        "import expconf",
        "from expconf.config import DataConfig, GPTModelConfig, OptimConfig",
    ]
    if wandb.get("enabled"):
        lines.append("from pytorch_lightning.loggers import WandbLogger")
    lines += ["", "trainer_kwargs: dict[str, Any] = {"]
    lines += [f"{ind}{_py(k)}: {_py(v)}," for k, v in _trainer_kwargs(m).items()]
    lines += ["}", "", "optim = OptimConfig("]
    lines += [ind + s for s in _kwargs(OptimConfig, m.get("optim", {}), m.unresolved, "optim.", every=False)]
    lines += [")", "# the shape and batch sizes for expconf's GPT recipe (unused by run() with your own model)"]
    lines += ["model_config = GPTModelConfig("]
    lines += [ind + s for s in _kwargs(GPTModelConfig, m.get("model", {}), m.unresolved, "model.", every=False)]
    lines += [")", "data_config = DataConfig("]
    lines += [ind + s for s in _kwargs(DataConfig, m.get("data", {}), m.unresolved, "data.", every=False)]
    lines += [")", "", "log = expconf.NeMoLogger("]
    lines += [ind + s for s in _kwargs(LogConfig, m.get("log", {}), m.unresolved, "log.", True, expconf.NeMoLogger)]
    if wandb.get("enabled"):
        args = ", ".join(f"{k}={_py(v)}" for k, v in wandb.items() if k != "enabled")
        lines.append(f"{ind}wandb=WandbLogger({args}),")
    # exp_manager's TensorBoard logger was on unless turned off; NeMoLogger's is off unless asked for.
    lines.append(f"{ind}tensorboard={m.get('log.tensorboard.enabled') is not False},")
    lines.append(f"{ind}ckpt=expconf.ModelCheckpoint(")
    ckpt = m.get("log.ckpt", {})
    lines += [
        ind * 2 + s for s in _kwargs(CheckpointConfig, ckpt, m.unresolved, "log.ckpt.", True, expconf.ModelCheckpoint)
    ]
    lines += [f"{ind}),", ")", "", "resume = expconf.AutoResume("]
    lines += [
        ind + s for s in _kwargs(ResumeConfig, m.get("resume", {}), m.unresolved, "resume.", True, expconf.AutoResume)
    ]
    lines += [")", "", "callbacks: list[pl.Callback] = []"]
    if m.get("callbacks.timing", True):
        lines.append("callbacks.append(expconf.TimingCallback())")
    if m.get("callbacks.preemption", True):
        lines.append("callbacks.append(expconf.PreemptionCallback())")
    for node in m.get("callbacks.extra", []):
        args = ", ".join(f"{k}={_py(v)}" for k, v in node.items() if k != "_target_")
        lines.append(f"callbacks.append(pl.callbacks.EarlyStopping({args}))")
    lines += [
        "",
        "",
        "def run(model: pl.LightningModule, data: Any = None, **trainer_overrides: Any) -> expconf.TrainResult:",
        f'{ind}"""Train ``model`` with the migrated settings; keyword arguments override Trainer arguments."""',
        *([f"{ind}pl.seed_everything({_py(m.get('seed'))}, workers=True)"] if m.get("seed") is not None else []),
        f"{ind}trainer = pl.Trainer(**{{**trainer_kwargs, **trainer_overrides}}, callbacks=callbacks)",
        f"{ind}return expconf.train(model=model, data=data, trainer=trainer, log=log, resume=resume, optim=optim)",
    ]
    if m.notes:
        lines.append("")
        lines += [f"# note: {escape(n)}" for n in m.notes]
    return "\n".join(lines) + "\n"
