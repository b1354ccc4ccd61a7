"""The rest of a NeMo 1.0 training config: ``trainer:``, ``model.optim`` and the GPT shape.

Every source key is carried to an expconf key, turned into the values that mean the same, or
noted with the reason it has no counterpart. :data:`ROWS` lists the rules for the key table of
docs/migration.md; targets named in :data:`GPT_SHAPE` that the schema lacks are looked up when
a file is migrated, so they start being carried the moment the schema gains them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

from expconf.batch import BatchSizes
from expconf.migrate_core import Migration, Unresolved, show

Resolve = Callable[[Any, tuple[str, ...]], Any]

# -- trainer ------------------------------------------------------------------------------------
PRECISION = {
    "16": "16-mixed",
    "bf16": "bf16-mixed",
    "32": "32-true",
    "64": "64-true",
    "16-mixed": "16-mixed",
    "bf16-mixed": "bf16-mixed",
    "bf16-true": "bf16-true",
    "32-true": "32-true",
    "64-true": "64-true",
}
DDP_TARGETS = ("lightning.pytorch.strategies.DDPStrategy", "pytorch_lightning.strategies.DDPStrategy")
TRAINER_SPECIAL = {
    "precision": "Lightning 2 names: 16 -> 16-mixed, bf16 -> bf16-mixed, 32 -> 32-true",
    "devices": "-1 (all devices of the node) is kept: Lightning 2 reads it the same way",
    "strategy": "auto, ddp, ddp_find_unused_parameters_true; a DDPStrategy node -> ddp (its other arguments noted)",
    "max_epochs": "-1 (no limit) -> null, which expconf reads as no limit when max_steps is set",
    "gradient_clip_val": "0 (no clipping) -> null",
    "limit_val_batches": "0.0 -> 0 (no validation)",
    "accumulate_grad_batches": "expconf derives accumulation: data.global_batch_size = micro x devices x nodes x this",
}
TRAINER_DROPPED = {
    "logger": "expconf builds the loggers from log.* (NeMo 1.0 set false so exp_manager could)",
    "enable_checkpointing": "expconf installs ModelCheckpoint from log.ckpt.* (NeMo 1.0 set false so exp_manager could)",
    "use_distributed_sampler": "expconf's data module shards by rank itself",
    "replace_sampler_ddp": "expconf's data module shards by rank itself",
    "limit_test_batches": "expconf has no test stage",
    "val_check_interval_test": "expconf has no test stage",
    "amp_backend": "removed in Lightning 2: precision selects native AMP",
    "amp_level": "removed in Lightning 2 (Apex AMP levels)",
    "flush_logs_every_n_steps": "removed in Lightning 2",
    "resume_from_checkpoint": "removed in Lightning 2: use resume.path",
    "gpus": "removed in Lightning 2: use trainer.devices",
    "progress_bar_refresh_rate": "removed in Lightning 2",
    "plugins": "expconf builds the Trainer's plugins itself",
    "callbacks": "list callbacks under callbacks.extra (allow-listed)",
    "reload_dataloaders_every_n_epochs": "expconf's data module does not reload",
    "default_root_dir": "the run dir comes from log.log_dir / log.explicit_log_dir",
}

# -- model.optim --------------------------------------------------------------------------------
#: NeMo optimizer names that are AdamW (decoupled weight decay) or Adam
ADAM_FAMILY = {
    "adamw": "",
    "fused_adam": "Apex FusedAdam runs in AdamW mode: same update",
    "distributed_fused_adam": "sharded AdamW: same update, optimizer state not sharded in expconf",
    "adam": "Adam's weight decay is an L2 term; expconf's AdamW decouples it (same when weight_decay is 0)",
    "torch.optim.AdamW": "",
    "torch.optim.Adam": "Adam's weight decay is an L2 term; expconf's AdamW decouples it (same when weight_decay is 0)",
}
OPTIM_COPY = ("lr", "weight_decay", "betas", "eps")
OPTIM_DROPPED = {
    "momentum": "SGD momentum: expconf uses AdamW",
    "overlap_grad_sync": "Megatron distributed optimizer option",
    "overlap_param_sync": "Megatron distributed optimizer option",
    "contiguous_grad_buffer": "Megatron distributed optimizer option",
    "bucket_cap_mb": "Megatron distributed optimizer option",
    "grad_sync_dtype": "Megatron distributed optimizer option",
    "args": "extra optimizer arguments",
}
SCHED_DROPPED = {
    "last_epoch": "expconf resumes the schedule from the checkpoint",
    "hold_ratio": "hold phase: expconf has warmup then cosine decay",
    "hold_steps": "hold phase: expconf has warmup then cosine decay",
    "power": "polynomial decay: expconf decays with a cosine",
    "gamma": "exponential/step decay: expconf decays with a cosine",
    "step_size": "step decay: expconf decays with a cosine",
    "decay_rate": "expconf decays with a cosine",
    "lr_decay": "expconf decays with a cosine",
    "reduce_on_plateau": "expconf decays with a cosine",
    "monitor": "expconf's schedule does not follow a metric",
    "iters_per_batch": "expconf steps the schedule once per optimizer step",
    "args": "extra scheduler arguments",
}

# -- GPT shape and batch sizes --------------------------------------------------------------------
#: model.<NeMo key> -> expconf key candidates (the first the schema has wins) and value map
GPT_SHAPE: dict[str, tuple[tuple[str, ...], dict[Any, Any] | None]] = {
    "num_layers": (("model.n_layer",), None),
    "hidden_size": (("model.n_embd",), None),
    "num_attention_heads": (("model.n_head",), None),
    "ffn_hidden_size": (("model.ffn_hidden_size", "model.n_inner"), None),
    "num_query_groups": (("model.n_kv_head", "model.n_query_groups"), None),
    "encoder_seq_length": (("data.seq_length",), None),
    "micro_batch_size": (("data.micro_batch_size",), None),
    "global_batch_size": (("data.global_batch_size",), None),
    "init_method_std": (("model.init_std",), None),
    "bias": (("model.bias",), None),
    "normalization": (("model.norm",), {"layernorm": "layernorm", "rmsnorm": "rmsnorm"}),
    "layernorm_epsilon": (("model.norm_eps",), None),
    "position_embedding_type": (("model.pos_embedding",), {"learned_absolute": "learned", "rope": "rope"}),
    "rotary_base": (("model.rope_theta",), None),
    "activation": (("model.mlp",), {"gelu": "gelu", "swiglu": "swiglu", "fast-swiglu": "swiglu"}),
    "share_embeddings_and_output_weights": (("model.tie_embeddings",), None),
}
#: NeMo model keys whose absence of a counterpart has one reason, by substring
MODEL_REASONS = (
    ("parallel", "model parallelism: expconf trains data-parallel (DDP) only"),
    ("fusion", "Megatron kernel fusion: expconf uses PyTorch's kernels"),
    ("fused", "Megatron kernel fusion: expconf uses PyTorch's kernels"),
    ("activations_checkpoint", "activation checkpointing is not part of expconf"),
    ("recompute", "activation checkpointing is not part of expconf"),
    ("amp", "mixed precision follows trainer.precision"),
    ("fp16", "mixed precision follows trainer.precision"),
    ("fp32", "mixed precision follows trainer.precision"),
    ("fp8", "FP8 training is not part of expconf"),
    ("tokenizer", "data.tokenizer takes a tokenizer.json or 'byte'"),
    ("dropout", "expconf has one model.dropout"),
    ("_ds", "NeMo dataset block: expconf's data is data.path"),
)
TASK_REASON = "task block of NeMo's ASR/TTS/NLP/vision models: expconf's recipes have no counterpart"
GPT_REASON = "Megatron GPT option with no counterpart in expconf's transformer"


def schema_keys() -> set[str]:
    """Every dotted key of expconf's config tree, read from the dataclasses now."""
    from expconf.config.root import RootConfig

    keys: set[str] = set()

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            keys.add(prefix + f.name)
            sub = hints.get(f.name)
            if dataclasses.is_dataclass(sub):
                walk(typing.cast(type, sub), f"{prefix}{f.name}.")

    walk(RootConfig, "")
    return keys


def trainer_fields() -> list[str]:
    """The ``trainer.*`` keys expconf has (same names as Lightning's)."""
    from expconf.config.trainer import TrainerConfig

    return [f.name for f in dataclasses.fields(TrainerConfig)]


# -- mapping --------------------------------------------------------------------------------------
def migrate_trainer(m: Migration, trainer: dict[str, Any], value: Resolve) -> None:
    """``trainer:`` -> ``trainer.*`` (accumulate_grad_batches is left to :func:`migrate_batches`)."""
    copy = set(trainer_fields())
    for key, raw in trainer.items():
        src = f"trainer.{key}" if isinstance(key, str) else f"trainer.{key!r}"
        v = value(raw, ("trainer",))
        if key == "accumulate_grad_batches":
            continue
        if key == "precision":
            _precision(m, v)
        elif key == "strategy":
            _strategy(m, v)
        elif key == "max_epochs" and v == -1:
            m.set("trainer.max_epochs", None)
            m.note(src, "-1 (no limit) -> null (expconf: no epoch limit when trainer.max_steps is set, else 1000)")
        elif key == "gradient_clip_val" and v in (0, 0.0) and not isinstance(v, bool):
            m.set("trainer.gradient_clip_val", None)
            m.note(src, "0 (no clipping) -> null")
        elif key == "limit_val_batches" and isinstance(v, float) and v == 0.0:
            m.set("trainer.limit_val_batches", 0)
        elif key == "devices" and v == -1:
            m.set("trainer.devices", -1)
            m.note(src, "-1: all devices of each node (Lightning 2 reads it the same way)")
        elif key in copy:
            m.set(f"trainer.{key}", v)
        elif key in TRAINER_DROPPED:
            m.note(src, f"dropped ({TRAINER_DROPPED[key]})")
        else:
            m.unknown.append(show(src))
            m.note(src, "unknown trainer key, not migrated")


def _precision(m: Migration, v: Any) -> None:
    from expconf.config.trainer import PRECISIONS

    if v is None or isinstance(v, Unresolved):
        m.set("trainer.precision", v)
        return
    name = PRECISION.get(str(v))
    if name is None or name not in PRECISIONS:
        m.note("trainer.precision", f"{show(v)} has no expconf counterpart; expconf picks bf16-mixed on CUDA")
        return
    m.set("trainer.precision", name)
    if name != str(v):
        m.note("trainer.precision", f"{show(v)} -> {name} (Lightning 2 name)")


def _strategy(m: Migration, v: Any) -> None:
    from expconf.config.trainer import STRATEGIES

    if isinstance(v, str) and v in STRATEGIES:
        m.set("trainer.strategy", v)
        return
    if isinstance(v, dict) and v.get("_target_") in DDP_TARGETS:
        name = "ddp_find_unused_parameters_true" if v.get("find_unused_parameters") is True else "ddp"
        m.set("trainer.strategy", name)
        rest = sorted(show(k) for k in v if k not in ("_target_", "find_unused_parameters"))
        extra = f"; not carried: {', '.join(rest)}" if rest else ""
        m.note("trainer.strategy", f"DDPStrategy -> {name}{extra}")
        return
    m.note("trainer.strategy", f"{show(v)} not migrated (expconf runs auto or ddp)")


def migrate_optim(m: Migration, optim: dict[str, Any], max_steps: Any, value: Resolve) -> None:
    """``model.optim`` -> ``optim.*`` when the optimizer is Adam-family; notes otherwise."""
    where = ("model", "optim")
    name = value(optim.get("name", optim.get("_target_")), where)
    if name not in ADAM_FAMILY:
        m.note(
            "model.optim.name",
            f"{show(name)}: expconf trains with AdamW only; model.optim (lr, schedule) is not carried",
        )
        return
    if ADAM_FAMILY[name]:
        m.note("model.optim.name", f"{show(name)} -> AdamW ({ADAM_FAMILY[name]})")
    for key, raw in optim.items():
        v = value(raw, where)
        src = f"model.optim.{key}" if isinstance(key, str) else f"model.optim.{key!r}"
        if key in ("name", "_target_"):
            continue
        if key in OPTIM_COPY:
            m.set(f"optim.{key}", _number(v))
        elif key == "sched":
            if isinstance(v, dict):
                _sched(m, v, max_steps, value)
            elif v is not None:
                m.note(src, f"{show(v)} is not a schedule block; not migrated")
        elif key in OPTIM_DROPPED:
            m.note(src, f"dropped ({OPTIM_DROPPED[key]})")
        else:
            m.unknown.append(show(src))
            m.note(src, "unknown optimizer key, not migrated")
    if not isinstance(optim.get("sched"), dict):
        _constant_lr(m)


def _constant_lr(m: Migration) -> None:
    """No ``sched``: NeMo kept the learning rate constant; so does a cosine from lr to lr."""
    if m.get("optim.lr") is not None:
        m.set("optim.min_lr", m.get("optim.lr"))
        m.set("optim.warmup_steps", 0)
        m.note("model.optim.sched", "absent (constant lr) -> optim.min_lr = optim.lr, optim.warmup_steps = 0")


def _sched(m: Migration, sched: dict[str, Any], max_steps: Any, value: Resolve) -> None:
    where = ("model", "optim", "sched")
    name = value(sched.get("name"), where)
    if name != "CosineAnnealing":
        m.note("model.optim.sched.name", f"{show(name)}: expconf decays with a cosine after the warmup")
    steps = max_steps if isinstance(max_steps, int) and max_steps > 0 else None
    sched_max = _number(value(sched.get("max_steps"), where))
    if isinstance(sched_max, int) and sched_max > 0:
        steps = sched_max
    min_lr_set = False
    for key, raw in sched.items():
        v = _number(value(raw, where))
        src = f"model.optim.sched.{key}" if isinstance(key, str) else f"model.optim.sched.{key!r}"
        if key in ("name", "max_steps"):
            continue
        if key == "warmup_steps":
            if v is not None:
                m.set("optim.warmup_steps", v)
        elif key == "warmup_ratio":
            if v is None or sched.get("warmup_steps") is not None:
                continue
            if steps is None or not isinstance(v, (int, float)):
                m.note(src, f"{show(v)}: needs trainer.max_steps to become optim.warmup_steps; set it yourself")
            else:
                m.set("optim.warmup_steps", round(v * steps))
                m.note(src, f"{v} x {steps} steps -> optim.warmup_steps={round(v * steps)}")
        elif key == "min_lr":
            m.set("optim.min_lr", v)
            min_lr_set = True
        elif key == "constant_steps":
            if v and steps is not None and isinstance(v, int):
                m.set("optim.decay_steps", steps - v)
                m.note(src, f"{v}: the decay ends {v} steps before step {steps} -> optim.decay_steps={steps - v}")
            elif v:
                m.note(src, f"{show(v)}: set optim.decay_steps to max_steps - {show(v)} yourself")
        elif key == "d_model" and name == "NoamAnnealing":
            continue  # sets the peak learning rate (_noam_peak)
        elif key in SCHED_DROPPED:
            m.note(src, f"dropped ({SCHED_DROPPED[key]})")
        else:
            m.unknown.append(show(src))
            m.note(src, "unknown schedule key, not migrated")
    if name == "NoamAnnealing":
        _noam_peak(m, _number(value(sched.get("d_model"), where)))
    if isinstance(sched_max, int) and sched_max > 0 and m.get("optim.decay_steps") is None:
        m.set("optim.decay_steps", sched_max)
    if not min_lr_set and m.get("optim.lr") is not None:
        m.set("optim.min_lr", 0.0)
        m.note("model.optim.sched.min_lr", "absent: NeMo's default 0.0 -> optim.min_lr=0.0")


def _noam_peak(m: Migration, d_model: Any) -> None:
    """NoamAnnealing's ``lr`` is a scale: its peak is lr / sqrt(d_model x warmup_steps)."""
    lr, warmup = m.get("optim.lr"), m.get("optim.warmup_steps")
    if lr is None:
        return
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in (lr, d_model, warmup)):
        peak = lr / (d_model * warmup) ** 0.5
        m.set("optim.lr", peak)
        m.note(
            "model.optim.lr", f"{lr} is NoamAnnealing's scale: peak lr = {lr} / sqrt({d_model} x {warmup}) = {peak:.6g}"
        )
    else:
        m.drop("optim.lr")
        m.note(
            "model.optim.lr", f"{lr} is NoamAnnealing's scale, not a learning rate: set optim.lr to the peak yourself"
        )


def _number(v: Any) -> Any:
    """YAML 1.1 reads ``2e-4`` as a string; NeMo's optimizers took it as a number."""
    if isinstance(v, str) and not isinstance(v, Unresolved):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f
    if isinstance(v, list):
        return [_number(x) for x in v]
    return v


def is_gpt_style(model: dict[str, Any]) -> bool:
    """A decoder-only Megatron config (megatron_gpt_config.yaml and kin): shape keys, no BERT head."""
    shape = all(k in model for k in ("num_layers", "hidden_size", "num_attention_heads"))
    return shape and "encoder_seq_length" in model and "bert_binary_head" not in model


def is_megatron_batch(model: dict[str, Any]) -> bool:
    """``model.micro_batch_size`` and ``model.global_batch_size``: Megatron's batch sizes, expconf's too."""
    return "micro_batch_size" in model and "global_batch_size" in model


def migrate_model(m: Migration, model: dict[str, Any], gpt: bool, value: Resolve) -> set[str]:
    """GPT shape and batch sizes from ``model:``; returns the model keys it carried."""
    done: set[str] = set()
    if "seed" in model:
        done.add("seed")
        m.set("seed", value(model["seed"], ("model",)))
    if not gpt:
        if is_megatron_batch(model):  # BERT, T5, BART, ...: the same batch-size semantics as expconf
            for key in ("micro_batch_size", "global_batch_size"):
                done.add(key)
                m.set(f"data.{key}", value(model[key], ("model",)))
        return done
    schema = schema_keys()
    for key, (targets, values) in GPT_SHAPE.items():
        if key not in model:
            continue
        done.add(key)
        v = _number(value(model[key], ("model",)))
        target = next((t for t in targets if t in schema), None)
        if target is None:
            m.note(f"model.{key}", f"{show(v)} not migrated: expconf's model has no {' / '.join(targets)} key yet")
        elif values is not None and not isinstance(v, Unresolved):
            if v in values:
                m.set(target, values[v])
            else:
                m.note(f"model.{key}", f"{show(v)} has no counterpart in {target} ({', '.join(sorted(values))})")
        else:
            m.set(target, v)
    _dropout(m, model, value, done)
    return done


def _dropout(m: Migration, model: dict[str, Any], value: Resolve, done: set[str]) -> None:
    found = {k: value(model[k], ("model",)) for k in ("hidden_dropout", "attention_dropout") if k in model}
    if not found:
        return
    done.update(found)
    if len(set(map(str, found.values()))) == 1:
        m.set("model.dropout", next(iter(found.values())))
    else:
        m.note("model.hidden_dropout", f"{found}: expconf has one model.dropout; set it yourself")


def migrate_batches(m: Migration, trainer: dict[str, Any], model: dict[str, Any], gpt: bool, value: Resolve) -> None:
    """``accumulate_grad_batches`` and the devices -> the batch sizes that give the same accumulation."""
    src = "trainer.accumulate_grad_batches"
    given = "accumulate_grad_batches" in trainer
    accumulate = value(trainer.get("accumulate_grad_batches", 1), ("trainer",))
    if not isinstance(accumulate, int) or isinstance(accumulate, bool) or accumulate < 1:
        m.note(src, f"{show(accumulate)} not migrated: set data.global_batch_size yourself")
        return
    if given:
        m.python_only["accumulate_grad_batches"] = accumulate
    devices, nodes = m.get("trainer.devices", "auto"), m.get("trainer.num_nodes", 1)
    count = _device_count(devices)
    nodes = nodes if isinstance(nodes, int) else 1
    if gpt or is_megatron_batch(model):
        if given:
            m.note(
                src,
                "derived by expconf from data.global_batch_size / (data.micro_batch_size x devices x nodes), "
                "as NeMo's Megatron models did",
            )
        mbs, gbs = m.get("data.micro_batch_size"), m.get("data.global_batch_size")
        if given and isinstance(count, int) and all(isinstance(x, int) for x in (mbs, gbs)):
            batches = BatchSizes(gbs, mbs, count * nodes)
            if batches.even:
                m.python_only["accumulate_grad_batches"] = batches.accumulate
        return
    batch = _train_batch_size(model, value)
    per_node = count or 1
    if batch is None:
        if given:
            m.note(src, f"{accumulate}: expconf derives it from the batch sizes (see data.global_batch_size)")
        if given or per_node * nodes > 1:
            m.note(
                "data.global_batch_size",
                "no per-device batch size in the file: set data.global_batch_size = "
                f"data.micro_batch_size x {per_node} devices x {nodes} nodes x {accumulate}",
            )
        return
    gbs = batch * per_node * nodes * accumulate
    m.set("data.micro_batch_size", batch)
    m.set("data.global_batch_size", gbs)
    how = f"{batch} x {per_node} devices x {nodes} nodes x {accumulate} accumulated = {gbs}"
    if count is None:
        how += f" (devices={show(devices)} was counted as 1: multiply by the devices per node you run on)"
    m.note(src if given else "model.train_ds", f"batch_size -> data.micro_batch_size; data.global_batch_size = {how}")


def _train_batch_size(model: dict[str, Any], value: Resolve) -> int | None:
    """``model.train_ds.batch_size`` (or ``.dataloader_params.batch_size``, the TTS layout)."""
    ds = model.get("train_ds")
    if not isinstance(ds, dict):
        return None
    where: tuple[str, ...] = ("model", "train_ds")
    node = ds
    if "batch_size" not in ds and isinstance(ds.get("dataloader_params"), dict):
        node, where = ds["dataloader_params"], (*where, "dataloader_params")
    batch = value(node.get("batch_size"), where)
    return batch if isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1 else None


def _device_count(devices: Any) -> int | None:
    if isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1:
        return devices
    if isinstance(devices, list):
        return len(devices)
    if isinstance(devices, str) and "," in devices:
        return len([p for p in devices.split(",") if p.strip()])
    if isinstance(devices, str) and devices.strip().isdigit():
        return int(devices)
    return None


def _reason(key: Any, gpt: bool) -> str:
    """Why ``model.<key>`` has no counterpart: by a word of its name (``_ds``: a suffix)."""
    words = key.split("_") if isinstance(key, str) else []
    for part, why in MODEL_REASONS:
        if part.startswith("_") and isinstance(key, str) and key.endswith(part):
            return why
        if ("_" in part and isinstance(key, str) and part in key) or part in words:
            return why
    return GPT_REASON if gpt else TASK_REASON


def note_rest(m: Migration, model: dict[str, Any], done: set[str], gpt: bool) -> None:
    """One note per ``model:`` key nothing carried (never a silent drop)."""
    for key in model:
        if key in done or key == "optim":
            continue
        reason = _reason(key, gpt)
        m.note(f"model.{key}" if isinstance(key, str) else f"model.{key!r}", f"dropped ({reason})")


# -- the table in docs/migration.md ------------------------------------------------------------
def rows() -> list[tuple[str, str, str]]:
    """(NeMo 1.0 key, expconf key, note) for every rule outside ``exp_manager``."""
    out: list[tuple[str, str, str]] = []
    for key in trainer_fields():
        out.append((f"trainer.{key}", f"trainer.{key}", TRAINER_SPECIAL.get(key, "same meaning")))
    for key, why in TRAINER_SPECIAL.items():
        if key not in trainer_fields():
            out.append((f"trainer.{key}", "data.global_batch_size", why))
    out += [(f"trainer.{k}", "", why) for k, why in TRAINER_DROPPED.items()]
    out.append(("model.optim.name", "", "AdamW family (adamw, fused_adam, distributed_fused_adam, adam) is carried"))
    out += [(f"model.optim.{k}", f"optim.{k}", "AdamW family only") for k in OPTIM_COPY]
    out += [
        ("model.optim.sched.warmup_steps", "optim.warmup_steps", ""),
        ("model.optim.sched.warmup_ratio", "optim.warmup_steps", "ratio x trainer.max_steps"),
        ("model.optim.sched.min_lr", "optim.min_lr", "absent: 0.0, NeMo's default"),
        ("model.optim.sched.constant_steps", "optim.decay_steps", "max_steps - constant_steps"),
        ("model.optim.sched.max_steps", "optim.decay_steps", ""),
        ("model.optim.sched.name", "", "expconf: linear warmup then cosine decay; other shapes are noted"),
        ("model.optim.sched.d_model", "optim.lr", "NoamAnnealing: peak lr = lr / sqrt(d_model x warmup_steps)"),
    ]
    out += [(f"model.optim.{k}", "", why) for k, why in OPTIM_DROPPED.items()]
    out += [(f"model.optim.sched.{k}", "", why) for k, why in SCHED_DROPPED.items()]
    for key, (targets, values) in GPT_SHAPE.items():
        note = "GPT-style configs; " + (", ".join(f"{a} -> {b}" for a, b in values.items()) if values else "same value")
        if len(targets) > 1:
            note += f"; the first of {', '.join(targets)} the schema has"
        out.append((f"model.{key}", targets[0], note))
    out.append(("model.seed", "seed", "any config"))
    out.append(("model.hidden_dropout, model.attention_dropout", "model.dropout", "when both are equal"))
    out.append(("model.micro_batch_size, model.global_batch_size", "data.*", "any Megatron config (BERT, T5, ...)"))
    out.append(
        ("model.train_ds.batch_size", "data.micro_batch_size", "non-Megatron configs, with accumulate_grad_batches")
    )
    out += [(f"model.*{part}*", "", why) for part, why in MODEL_REASONS]
    out.append(("model.* (other, GPT-style)", "", GPT_REASON))
    out.append(("model.* (other)", "", TASK_REASON))
    return out


# -- the result must fit the schema ---------------------------------------------------------------
def check_schema(m: Migration) -> None:
    """Drop (with a note) every migrated value expconf's schema or validation refuses.

    Keys outside the schema are never emitted; a value of the wrong type or out of range is
    reported instead of producing a config that fails to start.
    """
    from omegaconf import OmegaConf

    from expconf.config.root import RootConfig
    from expconf.errors import ConfigError

    schema = schema_keys()
    base = OmegaConf.structured(RootConfig)
    for key, v in m.leaves().items():
        if key not in schema:
            m.drop(key)
            m.unknown.append(key)
            m.note(key, "not an expconf key; not emitted")
            continue
        node: dict[str, Any] = {}
        cursor = node
        *parents, leaf = key.split(".")
        for p in parents:
            cursor = cursor.setdefault(p, {})
        cursor[leaf] = v
        try:
            OmegaConf.merge(base, node)
        except Exception as e:  # omegaconf's ValidationError family
            m.drop(key)
            m.note(key, f"{show(v)} does not fit expconf's type for it ({type(e).__name__}); not emitted")
    for section in ("trainer", "log", "resume", "optim", "data", "model", "callbacks"):
        while True:
            root = OmegaConf.to_object(OmegaConf.merge(base, m.config))
            try:
                getattr(root, section).validate()
                break
            except ConfigError as e:
                if e.key not in m.leaves():
                    break  # refused because of a default the recipe sets, not a migrated value
                v = m.drop(e.key)
                m.note(e.key, f"{show(v)} not emitted: expconf expects {e.expected or 'another value'}")
