"""``python -m expconf.migrate OLD.yaml``: a NeMo 1.0 training config -> expconf config.

Reads a whole file (``trainer``, ``exp_manager``, ``model.optim``, the GPT shape and batch
sizes; see :mod:`expconf.migrate_file`) or only its ``exp_manager:`` block. Prints expconf YAML
(``-o FILE`` writes it; the file starts with ``# @package _global_`` so it drops into a
``conf/experiment/`` folder) or, with ``--python``, NeMo 2.0-style code. Every key is mapped,
dropped with a note, or reported as unknown; values that cannot be resolved (``${x:...}``
resolver calls, references to keys the input lacks, aliases to anchors outside it) stay visible
as comments and are never fatal. Notes go to stderr, so the YAML on stdout stays clean.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from expconf import migrate_file as mf
from expconf.errors import USER_ERROR_EXIT_CODE, ConfigError
from expconf.migrate_core import Loader, Migration, Unresolved, escape, is_plain, resolve, show
from expconf.migrate_write import to_python, to_yaml

__all__ = ["Migration", "load", "load_exp_manager", "main", "migrate", "migrate_config", "to_python", "to_yaml"]

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


# -- reading ------------------------------------------------------------------------------------
def load(path: str | Path) -> dict[str, Any]:
    """The whole NeMo 1.0 config in ``path``; a file that is only the block becomes ``{exp_manager: block}``."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError("OLD.yaml", str(path), "a readable YAML file", e.strerror or str(e)) from e
    try:
        data = yaml.load(text, Loader=Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(f"{path}:{line}", message=f"{path}:{line}: malformed YAML: {escape(str(e.problem))}") from e
    if isinstance(data, dict) and any(isinstance(data.get(k), dict) for k in ("exp_manager", "trainer")):
        return dict(data)
    if isinstance(data, dict) and "exp_manager" not in data and data:
        return {"exp_manager": dict(data)}
    raise ConfigError(
        str(path),
        "exp_manager" if isinstance(data, dict) else type(data).__name__,
        "a NeMo 1.0 config with an exp_manager: or trainer: mapping",
    )


def load_exp_manager(path: str | Path) -> dict[str, Any]:
    """The ``exp_manager`` block of ``path`` (or the whole file when it is the block itself)."""
    block = load(path).get("exp_manager")
    if not isinstance(block, dict):
        raise ConfigError(str(path), "exp_manager", "a YAML file with an exp_manager: mapping")
    return dict(block)


# -- mapping ------------------------------------------------------------------------------------
Value = Any  # Callable[[Any, tuple[str, ...]], Any]: resolves one input value seen from a path


def _resolver(doc: dict[str, Any]) -> Value:
    def value(v: Any, where: tuple[str, ...] = ("exp_manager",)) -> Any:
        return resolve(v, doc, where)

    return value


def migrate(block: dict[str, Any], source: str = "exp_manager", doc: dict[str, Any] | None = None) -> Migration:
    """Map one ``exp_manager`` block onto the expconf config tree (docs/migration.md).

    ``doc`` is the whole file the block came from; interpolations into it are resolved.
    """
    m = Migration(source=source)
    _migrate_exp_manager(m, block, _resolver(doc if doc is not None else {"exp_manager": block}))
    return m


def migrate_config(doc: dict[str, Any], source: str = "config") -> Migration:
    """Map a whole NeMo 1.0 training config: ``exp_manager``, ``trainer``, ``model.optim``, GPT shape."""
    m = Migration(source=source)
    value = _resolver(doc)
    block = doc.get("exp_manager")
    if isinstance(block, dict):
        _migrate_exp_manager(m, block, value)
    trainer = doc.get("trainer") if isinstance(doc.get("trainer"), dict) else {}
    model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
    assert isinstance(trainer, dict) and isinstance(model, dict)
    gpt = mf.is_gpt_style(model)
    mf.migrate_trainer(m, trainer, value)
    done = mf.migrate_model(m, model, gpt, value)
    mf.migrate_batches(m, trainer, model, gpt, value)
    if isinstance(model.get("optim"), dict):
        mf.migrate_optim(m, model["optim"], m.get("trainer.max_steps"), value)
    elif "optim" in model:
        m.note("model.optim", "not a mapping; not migrated")
    if gpt:
        m.notes.append("model: a GPT-style config; its shape is carried to expconf's decoder-only transformer")
    mf.note_rest(m, model, done, gpt)
    for key in doc:
        if key not in ("exp_manager", "trainer", "model"):
            why = "Hydra settings of the old script" if key in ("hydra", "defaults") else "not an expconf key"
            m.note(str(key) if isinstance(key, str) else repr(key), f"top-level key dropped ({why})")
    mf.check_schema(m)
    return m


def _migrate_exp_manager(m: Migration, block: dict[str, Any], value: Value) -> None:
    done: set[str] = set()
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
            m.unknown.append(show(key))
            m.note(key, "unknown exp_manager key, not migrated")


def _migrate_ckpt(m: Migration, block: dict[str, Any], done: set[str], value: Value) -> None:
    if value(block.get("create_checkpoint_callback", True)) is False:
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


def _migrate_wandb(m: Migration, block: dict[str, Any], done: set[str], value: Value) -> None:
    kwargs = block.get("wandb_logger_kwargs") or {}
    done.update(("create_wandb_logger", "wandb_logger_kwargs"))
    if not value(block.get("create_wandb_logger")):
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
    value: Value,
) -> None:
    """Copy ``section``'s known keys under ``prefix``; note dropped and unknown ones."""
    for key, v in params.items():
        if key in keys:
            m.set(f"{prefix}.{key}", value(v, ("exp_manager", section)))
        elif key in dropped:
            m.notes.append(f"{section}.{key}: dropped ({dropped[key]})")
        else:
            m.unknown.append(f"{section}.{show(key)}")
            m.notes.append(f"{section}.{show(key)}: unknown key, not migrated")


def _migrate_early_stopping(m: Migration, block: dict[str, Any], done: set[str], value: Value) -> None:
    flag, params_key = "create_early_stopping_callback", "early_stopping_callback_params"
    if flag not in block and params_key not in block:
        return
    done.update((flag, params_key))
    if not value(block.get(flag)):
        m.notes.append(f"{flag} is false: no EarlyStopping callback")
        return
    node: dict[str, Any] = {"_target_": "pytorch_lightning.callbacks.EarlyStopping"}
    params = block.get(params_key) or {}
    for key, v in params.items() if isinstance(params, dict) else []:
        v = value(v, ("exp_manager", params_key))
        if key not in EARLY_STOPPING_KEYS:
            m.unknown.append(f"{params_key}.{show(key)}")
            m.notes.append(f"{params_key}.{show(key)}: unknown EarlyStopping argument, not migrated")
        elif isinstance(v, Unresolved) or (isinstance(v, str) and "${" in v):
            m.notes.append(
                f"{params_key}.{key}: {show(str(v))} cannot be resolved from the input; EarlyStopping keeps its default"
            )
        elif isinstance(v, list) or not is_plain(v):
            m.notes.append(f"{params_key}.{key}: {show(v)} is not a scalar; EarlyStopping keeps its default")
        else:
            node[key] = v
    m.set("callbacks.extra", [node], structured=True)
    m.notes.append("create_early_stopping_callback: mapped to callbacks.extra (EarlyStopping is allow-listed)")


# -- the key table of docs/migration.md ----------------------------------------------------------
def table_rows() -> list[tuple[str, str, str]]:
    """(NeMo 1.0 key, expconf key, note) for every rule the migration applies."""
    out = [(f"exp_manager.{k}", v, "same meaning") for k, v in TOP_LEVEL.items()]
    out += [
        ("exp_manager.create_checkpoint_callback", "log.ckpt.save_top_k, log.ckpt.save_last", "false -> 0 and false"),
        ("exp_manager.create_wandb_logger", "log.wandb.enabled", "false: wandb_logger_kwargs are not copied"),
        ("exp_manager.create_early_stopping_callback", "callbacks.extra", "an allow-listed EarlyStopping node"),
        ("exp_manager.early_stopping_callback_params.*", "callbacks.extra[0].*", "EarlyStopping's arguments"),
    ]
    out += [(f"exp_manager.checkpoint_callback_params.{k}", f"log.ckpt.{k}", "same meaning") for k in sorted(CKPT_KEYS)]
    out += [(f"exp_manager.checkpoint_callback_params.{k}", "", why) for k, why in CKPT_DROPPED.items()]
    out += [(f"exp_manager.wandb_logger_kwargs.{k}", f"log.wandb.{k}", "same meaning") for k in sorted(WANDB_KEYS)]
    out += [(f"exp_manager.wandb_logger_kwargs.{k}", "", why) for k, why in WANDB_DROPPED.items()]
    out += [(f"exp_manager.{k}", "", why) for k, why in TOP_DROPPED.items()]
    out += [
        (f"exp_manager.create_{k}_logger", "", "expconf builds TensorBoard and W&B loggers only") for k in OTHER_LOGGERS
    ]
    return out + mf.rows()


def markdown_table() -> str:
    """The key table of docs/migration.md, generated from the rules above."""
    lines = ["| NeMo 1.0 key | expconf key | note |", "|---|---|---|"]
    for src, dst, note in table_rows():
        lines.append(f"| `{src}` | {f'`{dst}`' if dst else 'dropped, with a note'} | {note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m expconf.migrate`` and ``expconf-migrate``."""
    parser = argparse.ArgumentParser(
        prog="python -m expconf.migrate",
        description="Convert a NeMo 1.0 training config (trainer, model.optim, exp_manager, GPT shape) "
        "into expconf config YAML or NeMo 2.0-style Python.",
    )
    parser.add_argument("old", nargs="?", help="NeMo 1.0 YAML config (a whole file, or an exp_manager block)")
    parser.add_argument("-o", "--output", help="write here instead of stdout (e.g. conf/experiment/NAME.yaml)")
    parser.add_argument("--python", action="store_true", help="emit the equivalent Python instead of YAML")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print the notes to stderr")
    parser.add_argument("--table", action="store_true", help="print the key table of docs/migration.md and exit")
    args = parser.parse_args(argv)
    if args.table:
        sys.stdout.write(markdown_table())
        return 0
    if not args.old:
        parser.error("the following arguments are required: old")
    try:
        m = migrate_config(load(args.old), source=Path(args.old).name)
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
            print(f"note: {escape(note)}", file=sys.stderr)
        if m.unknown:
            print(f"unknown keys (not migrated): {', '.join(escape(u) for u in m.unknown)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
