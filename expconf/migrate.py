"""``python -m expconf.migrate OLD.yaml``: a NeMo 1.0 ``exp_manager:`` block -> expconf config.

Prints expconf YAML (``-o FILE`` writes it; the file starts with ``# @package _global_`` so it
drops into a ``conf/experiment/`` folder) or, with ``--python``, the equivalent NeMoLogger /
AutoResume / ModelCheckpoint code. Every key is mapped, dropped with a note, or reported as
unknown; values that cannot be resolved outside the old file (``${model.x}`` interpolations,
YAML aliases whose anchor lies outside the block) stay visible as comments and are never fatal.
Notes go to stderr, so the YAML on stdout stays clean.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from expconf.errors import USER_ERROR_EXIT_CODE, ConfigError

# exp_manager key -> expconf key (same meaning, value copied).
TOP_LEVEL = {
    "name": "log.name",
    "exp_dir": "log.log_dir",
    "explicit_log_dir": "log.explicit_log_dir",
    "version": "log.version",
    "use_datetime_version": "log.use_datetime_version",
    "log_local_rank_0_only": "log.log_local_rank_0_only",
    "log_global_rank_0_only": "log.log_global_rank_0_only",
    "files_to_copy": "log.files_to_copy",
    "resume_if_exists": "resume.resume_if_exists",
    "resume_past_end": "resume.resume_past_end",
    "resume_ignore_no_checkpoint": "resume.resume_ignore_no_checkpoint",
    "resume_from_checkpoint": "resume.path",
    "create_tensorboard_logger": "log.tensorboard.enabled",
    "create_preemption_callback": "callbacks.preemption",
    "log_step_timing": "callbacks.timing",
}

# checkpoint_callback_params keys that keep their name under log.ckpt.
CKPT_KEYS = {
    "dirpath",
    "filename",
    "monitor",
    "save_last",
    "save_top_k",
    "save_weights_only",
    "mode",
    "every_n_epochs",
    "every_n_train_steps",
    "always_save_nemo",
    "save_nemo_on_train_end",
    "async_save",
}
CKPT_DROPPED = {
    "model_parallel_size": "expconf needs no model_parallel_size: the parallel layout comes from the trainer",
    "verbose": "expconf logs every checkpoint it writes",
    "auto_insert_metric_name": "write the metric names into log.ckpt.filename yourself",
    "save_best_model": "the best checkpoint is always among the top-k; no separate copy is made",
    "save_on_train_epoch_end": "checkpoints follow validation or log.ckpt.every_n_train_steps",
    "train_time_interval": "use log.ckpt.every_n_train_steps",
    "save_last_n_optim_states": "every expconf checkpoint keeps its optimizer state so that it can resume",
    "filepath": "old Lightning argument: put the folder in log.ckpt.dirpath and the name in log.ckpt.filename",
    "prefix": "put it in log.ckpt.filename",
    "postfix": "put it in log.ckpt.filename",
    "n_resume": "not needed",
}
WANDB_KEYS = {"project", "name", "entity", "group", "tags", "offline", "log_model"}
WANDB_DROPPED = {
    "save_dir": "W&B files go under the run dir (log.update_logger_directory)",
    "resume": "a resumed expconf run continues the same W&B run id by itself",
    "id": "expconf keeps the W&B run id in the run dir and reuses it on resume",
}
EARLY_STOPPING_KEYS = {
    "monitor",
    "min_delta",
    "patience",
    "verbose",
    "mode",
    "strict",
    "check_finite",
    "stopping_threshold",
    "divergence_threshold",
    "check_on_train_epoch_end",
    "log_rank_zero_only",
}
# NeMo 1.0 keys with no expconf equivalent: dropped with the reason.
TOP_DROPPED = {
    "model_parallel_size": "expconf needs no model_parallel_size",
    "ema": "EMA of weights is not part of expconf; add an allow-listed callback under callbacks.extra",
    "max_time_per_run": "use your scheduler's time limit; PreemptionCallback checkpoints on its signal",
    "seconds_to_sleep": "not needed: ranks agree on the run dir through the launcher",
    "step_timing_kwargs": "TimingCallback has no options",
    "disable_validation_on_resume": "not supported; validation runs as configured in trainer",
    "log_tflops_per_sec_per_gpu": "TimingCallback logs tokens per second instead",
    "log_delta_step_timing": "TimingCallback logs per-step timings",
}
OTHER_LOGGERS = ("neptune", "mlflow", "dllogger", "clearml")


class _Unresolved(str):
    """A value that points outside the exp_manager block (interpolation or YAML alias)."""


@dataclass
class Migration:
    """The result of migrating one ``exp_manager`` block."""

    source: str
    config: dict[str, Any] = field(default_factory=dict)
    #: dotted expconf key -> the original value that could not be resolved
    unresolved: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def set(self, key: str, value: Any) -> None:
        """Set dotted ``key`` in the config, or record it as unresolved."""
        if isinstance(value, _Unresolved) or (isinstance(value, str) and "${" in value):
            self.unresolved[key] = str(value)
            self.notes.append(
                f"{key}: {value!s} refers to something outside exp_manager and cannot be resolved; "
                "kept as a comment, set it yourself"
            )
            return
        node = self.config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    def get(self, key: str, default: Any = None) -> Any:
        """The migrated value at dotted ``key``."""
        node: Any = self.config
        for p in key.split("."):
            if not isinstance(node, dict) or p not in node:
                return default
            node = node[p]
        return node


# -- reading ------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps an alias to an anchor outside the block (``*name``) as a marker."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            if event.anchor not in self.anchors:
                self.get_event()
                return yaml.ScalarNode("tag:expconf/unresolved", f"*{event.anchor}", event.start_mark, event.end_mark)
        return super().compose_node(parent, index)


_Loader.add_constructor("tag:expconf/unresolved", lambda loader, node: _Unresolved(node.value))


def load_exp_manager(path: str | Path) -> dict[str, Any]:
    """The ``exp_manager`` block of ``path`` (or the whole file when it is the block itself)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError("OLD.yaml", str(path), "a readable YAML file", e.strerror or str(e)) from e
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(f"{path}:{line}", message=f"{path}:{line}: malformed YAML: {e.problem}") from e
    if isinstance(data, dict) and isinstance(data.get("exp_manager"), dict):
        return dict(data["exp_manager"])
    if isinstance(data, dict) and "exp_manager" not in data and data:
        return dict(data)
    raise ConfigError(
        str(path),
        "exp_manager" if isinstance(data, dict) else type(data).__name__,
        "a YAML file with an exp_manager: mapping",
    )


def _resolve_local(value: Any, block: dict[str, Any]) -> Any:
    """Resolve ``${exp_manager.a.b}`` references against the block itself; leave the rest."""
    if not isinstance(value, str) or "${" not in value or isinstance(value, _Unresolved):
        return value

    def lookup(m: re.Match[str]) -> str:
        node: Any = block
        for part in m.group(1).split("."):
            if not isinstance(node, dict) or part not in node:
                return m.group(0)
            node = node[part]
        if isinstance(node, str) and ("${" in node or isinstance(node, _Unresolved)):
            return m.group(0)
        return m.group(0) if isinstance(node, (dict, list)) else str(node)

    return re.sub(r"\$\{exp_manager\.([\w.]+)\}", lookup, value)


# -- mapping ------------------------------------------------------------------------------------
def migrate(block: dict[str, Any], source: str = "exp_manager") -> Migration:
    """Map one ``exp_manager`` block onto the expconf config tree (SPEC section 7)."""
    m = Migration(source=source)
    done: set[str] = set()

    def value(v: Any) -> Any:
        return _resolve_local(v, block)

    for key, target in TOP_LEVEL.items():
        if key in block:
            done.add(key)
            m.set(target, value(block[key]))

    _migrate_ckpt(m, block, done, value)
    _migrate_wandb(m, block, done, value)
    _migrate_early_stopping(m, block, done, value)

    for key, why in TOP_DROPPED.items():
        if key in block:
            done.add(key)
            m.notes.append(f"{key}: dropped ({why})")
    for logger in OTHER_LOGGERS:
        flag, kwargs = f"create_{logger}_logger", f"{logger}_logger_kwargs"
        if flag in block or kwargs in block:
            done.update((flag, kwargs))
            state = "was on" if block.get(flag) else "was off"
            m.notes.append(f"{flag}: dropped ({state}; expconf builds TensorBoard and W&B loggers only)")
    for key in block:
        if key not in done:
            m.unknown.append(key)
            m.notes.append(f"{key}: unknown exp_manager key, not migrated")
    return m


def _migrate_ckpt(m: Migration, block: dict[str, Any], done: set[str], value: Any) -> None:
    if block.get("create_checkpoint_callback", True) is False:
        m.set("log.ckpt.save_top_k", 0)
        m.set("log.ckpt.save_last", False)
        m.notes.append(
            "create_checkpoint_callback=false: log.ckpt.save_top_k=0 and log.ckpt.save_last=false "
            "(expconf always installs ModelCheckpoint; these stop top-k and -last saves)"
        )
    done.add("create_checkpoint_callback")
    params = block.get("checkpoint_callback_params")
    if "checkpoint_callback_params" in block:
        done.add("checkpoint_callback_params")
    if not isinstance(params, dict):
        return
    _map_params(m, params, "checkpoint_callback_params", "log.ckpt", CKPT_KEYS, CKPT_DROPPED, value)


def _migrate_wandb(m: Migration, block: dict[str, Any], done: set[str], value: Any) -> None:
    kwargs = block.get("wandb_logger_kwargs") or {}
    done.update(("create_wandb_logger", "wandb_logger_kwargs"))
    if not block.get("create_wandb_logger"):
        if isinstance(kwargs, dict) and any(v is not None for v in kwargs.values()):
            m.notes.append("create_wandb_logger is false: W&B stays off and wandb_logger_kwargs are not migrated")
        return
    m.set("log.wandb.enabled", True)
    if not isinstance(kwargs, dict):
        return
    _map_params(m, kwargs, "wandb_logger_kwargs", "log.wandb", WANDB_KEYS, WANDB_DROPPED, value)


def _map_params(
    m: Migration,
    params: dict[str, Any],
    section: str,
    prefix: str,
    keys: set[str] | dict[str, Any],
    dropped: dict[str, str],
    value: Any,
) -> None:
    """Copy ``section``'s known keys under ``prefix``; note dropped and unknown ones."""
    for key, v in params.items():
        if key in keys:
            m.set(f"{prefix}.{key}", value(v))
        elif key in dropped:
            m.notes.append(f"{section}.{key}: dropped ({dropped[key]})")
        else:
            m.unknown.append(f"{section}.{key}")
            m.notes.append(f"{section}.{key}: unknown key, not migrated")


def _migrate_early_stopping(m: Migration, block: dict[str, Any], done: set[str], value: Any) -> None:
    flag, params_key = "create_early_stopping_callback", "early_stopping_callback_params"
    if flag not in block and params_key not in block:
        return
    done.update((flag, params_key))
    if not block.get(flag):
        m.notes.append(f"{flag} is false: no EarlyStopping callback")
        return
    node: dict[str, Any] = {"_target_": "pytorch_lightning.callbacks.EarlyStopping"}
    for key, v in (block.get(params_key) or {}).items():
        v = value(v)
        if key not in EARLY_STOPPING_KEYS:
            m.unknown.append(f"{params_key}.{key}")
            m.notes.append(f"{params_key}.{key}: unknown EarlyStopping argument, not migrated")
        elif isinstance(v, _Unresolved) or (isinstance(v, str) and "${" in v):
            m.notes.append(
                f"{params_key}.{key}: {v!s} cannot be resolved outside exp_manager; EarlyStopping keeps its default"
            )
        else:
            node[key] = v
    m.set("callbacks.extra", [node])
    m.notes.append("create_early_stopping_callback: mapped to callbacks.extra (EarlyStopping is allow-listed)")


# -- writing ------------------------------------------------------------------------------------
def _scalar(v: Any) -> str:
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def _copy(node: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in node.items()}


def to_yaml(m: Migration) -> str:
    """The migrated config as YAML for ``conf/experiment/NAME.yaml`` (``# @package _global_`` first)."""
    lines = [
        "# @package _global_",
        f"# Migrated from {m.source} by python -m expconf.migrate (NeMo 1.0 exp_manager -> expconf).",
        "# Use it with: python -m expconf.train +recipe=gpt --config-dir conf +experiment=NAME",
    ]

    def comments(path: str, indent: int) -> None:
        for key, original in m.unresolved.items():
            parent, _, leaf = key.rpartition(".")
            if (f"{parent}." if parent else "") == path:
                lines.append(f"{'  ' * indent}# {leaf}: {original}   # unresolved outside exp_manager: set it yourself")

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
        lines += [f"# note: {n}" for n in m.notes]
    return "\n".join(lines) + "\n"


def _kwargs(cls: type, values: dict[str, Any], unresolved: dict[str, str], prefix: str) -> list[str]:
    """``name=value,`` lines for every field of dataclass ``cls`` (migrated value or default)."""
    out = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in ("ckpt", "wandb", "tensorboard", "storage_options"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        v = values.get(f.name, default)
        line = f"{f.name}={v!r},"
        if f"{prefix}{f.name}" in unresolved:
            line += f"  # was {unresolved[prefix + f.name]}: unresolved outside exp_manager, set it yourself"
        out.append(line)
    return out


def to_python(m: Migration) -> str:
    """The equivalent Python: NeMoLogger, AutoResume, ModelCheckpoint and callbacks that run."""
    from expconf.config.ckpt import CheckpointConfig
    from expconf.config.log import LogConfig
    from expconf.config.resume import ResumeConfig

    log, wandb = m.get("log", {}), m.get("log.wandb", {})
    ind = " " * 4
    lines = [
        f'"""Migrated from {m.source} by python -m expconf.migrate (NeMo 1.0 exp_manager -> expconf)."""',
        "",
        "import pytorch_lightning as pl",
        "",
        "import expconf",
    ]
    if wandb.get("enabled"):
        lines.append("from pytorch_lightning.loggers import WandbLogger")
    lines += ["", "log = expconf.NeMoLogger("]
    lines += [ind + s for s in _kwargs(LogConfig, log, m.unresolved, "log.")]
    if wandb.get("enabled"):
        args = ", ".join(f"{k}={v!r}" for k, v in wandb.items() if k != "enabled")
        lines.append(f"{ind}wandb=WandbLogger({args}),")
    # exp_manager's TensorBoard logger was on unless turned off; NeMoLogger's is off unless asked for.
    lines.append(f"{ind}tensorboard={m.get('log.tensorboard.enabled') is not False},")
    lines.append(f"{ind}ckpt=expconf.ModelCheckpoint(")
    lines += [ind * 2 + s for s in _kwargs(CheckpointConfig, m.get("log.ckpt", {}), m.unresolved, "log.ckpt.")]
    lines += [f"{ind}),", ")", "", "resume = expconf.AutoResume("]
    lines += [ind + s for s in _kwargs(ResumeConfig, m.get("resume", {}), m.unresolved, "resume.")]
    lines += [")", "", "callbacks: list[pl.Callback] = []"]
    if m.get("callbacks.timing", True):
        lines.append("callbacks.append(expconf.TimingCallback())")
    if m.get("callbacks.preemption", True):
        lines.append("callbacks.append(expconf.PreemptionCallback())")
    for node in m.get("callbacks.extra", []):
        args = ", ".join(f"{k}={v!r}" for k, v in node.items() if k != "_target_")
        lines.append(f"callbacks.append(pl.callbacks.EarlyStopping({args}))")
    lines += [
        "",
        "# trainer = pl.Trainer(..., callbacks=callbacks)",
        "# expconf.train(model=..., data=..., trainer=trainer, log=log, resume=resume)",
    ]
    if m.notes:
        lines.append("")
        lines += [f"# note: {n}" for n in m.notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m expconf.migrate`` and ``expconf-migrate``."""
    parser = argparse.ArgumentParser(
        prog="python -m expconf.migrate",
        description="Convert a NeMo 1.0 exp_manager YAML block into expconf config YAML or Python.",
    )
    parser.add_argument("old", help="YAML file with an exp_manager: block (or the block itself)")
    parser.add_argument("-o", "--output", help="write here instead of stdout (e.g. conf/experiment/NAME.yaml)")
    parser.add_argument("--python", action="store_true", help="emit the equivalent Python instead of YAML")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the notes to stderr")
    args = parser.parse_args(argv)
    try:
        m = migrate(load_exp_manager(args.old), source=Path(args.old).name)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return USER_ERROR_EXIT_CODE
    text = to_python(m) if args.python else to_yaml(m)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    else:
        sys.stdout.write(text)
    if not args.quiet:
        for note in m.notes:
            print(f"note: {note}", file=sys.stderr)
        if m.unknown:
            print(f"unknown exp_manager keys (not migrated): {', '.join(m.unknown)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
