"""``ModelCheckpoint``: NeMo 2.0's checkpoint callback with atomic, metadata-driven top-k.

Differences from Lightning's and NeMo's (docs/run-dir-checkpoints-resume.md): scores and steps come from each
checkpoint's marker, never from its file name; a resumed run rebuilds its top-k from those
markers; writes are atomic on local disks and object stores; ``async_save`` keeps the loop
waiting only while the state is staged; and the random-number states of every rank travel
in the checkpoint so that a resumed run draws the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from datetime import timedelta
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import Checkpoint

from expconf import deadline
from expconf.checkpoint import rng
from expconf.checkpoint.meta import CKPT_SUFFIX, CheckpointMeta, clean_incomplete, scan
from expconf.checkpoint.naming import END_SUFFIX, LAST_SUFFIX, default_template, format_checkpoint_name
from expconf.checkpoint.writer import CheckpointWriter, SavePlan, stage
from expconf.config.ckpt import check_checkpoint_arguments, check_filename
from expconf.errors import ConfigError
from expconf.lightning_internals import dump_checkpoint
from expconf.rundir import checkpoint_dir
from expconf.sharded_ckpt import ShardedCheckpoints, full_model_state, shard_state
from expconf.storage import Storage, is_remote

log = logging.getLogger(__name__)


class CheckpointArgumentError(ConfigError, MisconfigurationException):
    """A ModelCheckpoint argument out of range (a ValueError, and Lightning's exception type and wording)."""


class ModelCheckpoint(Checkpoint):
    """Saves top-k, ``-last`` and ``-end`` checkpoints; keyword names and defaults follow NeMo 2.0,
    and every keyword of Lightning 2.6's ``ModelCheckpoint`` has Lightning's meaning:

    ``verbose`` logs each save; ``save_on_exception`` writes a resumable ``-last`` checkpoint when
    training fails; ``train_time_interval`` saves when that much time passed since the last save
    (rank 0's clock decides for all ranks; a number means seconds); ``save_on_train_epoch_end`` saves at the end of each
    training epoch instead of after validation (None: when there is no validation, as Lightning);
    NeMo's ``save_optim_on_train_end=False`` leaves the optimizer state out of the ``-end``
    checkpoint (the default here is True, so a run resumed past its end continues exactly), and
    ``always_save_context`` / ``save_context_on_train_end`` write the model archive as
    ``always_save_nemo`` / ``save_nemo_on_train_end`` do. ``enable_version_counter`` adds ``-v1``, ``-v2``, ... to a name that is already taken instead
    of overwriting it; ``save_last="link"`` is accepted as ``True`` (a copy: object stores have
    no links).
    """

    def __init__(
        self,
        dirpath: str | None = None,
        monitor: str | None = "val_loss",
        save_top_k: int = 3,
        mode: str = "min",
        save_last: bool | Literal["link"] | None = True,
        every_n_train_steps: int | None = None,
        filename: str | None = None,
        always_save_nemo: bool = False,
        save_nemo_on_train_end: bool = False,
        async_save: bool = False,
        every_n_epochs: int | None = None,
        save_weights_only: bool = False,
        storage_options: dict[str, Any] | None = None,
        auto_insert_metric_name: bool = True,
        verbose: bool = True,
        save_on_exception: bool = False,
        train_time_interval: timedelta | float | None = None,
        save_on_train_epoch_end: bool | None = False,
        enable_version_counter: bool = True,
        save_optim_on_train_end: bool = True,
        always_save_context: bool = False,
        save_context_on_train_end: bool = False,
        storage_timeout: float | None = None,
    ) -> None:
        try:
            check_checkpoint_arguments(
                "ModelCheckpoint.",
                mode=mode,
                save_top_k=save_top_k,
                every_n_train_steps=every_n_train_steps,
                every_n_epochs=every_n_epochs,
                train_time_interval=train_time_interval,
                storage_timeout=storage_timeout,
                filename=filename,
                lightning_wording=True,
            )
        except ConfigError as e:
            raise CheckpointArgumentError(e.key, e.value, e.expected, e.hint, message=str(e)) from None
        if filename is not None:
            check_filename("ModelCheckpoint.", filename, auto_insert_metric_name)
        if dirpath is not None and not is_remote(str(dirpath)):
            dirpath = os.path.realpath(os.path.expanduser(str(dirpath)))  # as Lightning: ~ and relative paths
        self.dirpath = dirpath
        self.monitor = monitor
        self.save_top_k = save_top_k
        self.mode = mode
        self.save_last = bool(save_last)
        self.every_n_train_steps = every_n_train_steps
        self.every_n_epochs = every_n_epochs
        self.filename = filename
        # NeMo's "context" (what rebuilds the model) is here the model archive: config and weights.
        self.always_save_nemo = always_save_nemo or always_save_context
        self.save_nemo_on_train_end = save_nemo_on_train_end or save_context_on_train_end
        self.save_optim_on_train_end = save_optim_on_train_end
        self.async_save = async_save
        self.save_weights_only = save_weights_only
        self.storage_options = dict(storage_options or {})
        self.storage_timeout = storage_timeout  # see expconf.deadline
        self.auto_insert_metric_name = auto_insert_metric_name
        self.verbose = verbose
        self.save_on_exception = save_on_exception
        if isinstance(train_time_interval, (int, float)):
            train_time_interval = timedelta(seconds=train_time_interval)  # seconds, as the config gives it
        self.train_time_interval = train_time_interval
        self.save_on_train_epoch_end = save_on_train_epoch_end
        self.enable_version_counter = enable_version_counter
        self._last_time_checked: float | None = None
        self.name = "model"  # NeMoLogger sets its experiment name here
        self.writer = CheckpointWriter(async_save=async_save)
        self.storage: Storage | None = None
        self.best_k_models: dict[str, float] = {}
        self._steps: dict[str, int] = {}
        self.best_model_path = ""
        self.best_model_score: float | None = None
        self.last_model_path = ""
        self.protected: set[str] = set()  # the checkpoint this run resumed from
        self._taken: set[str] = set()  # names in the folder (rank 0): listed at setup, then this run's saves
        self._stale_lasts: set[str] = set()  # complete '-last' checkpoints listed at setup (rank 0)
        self._last_saved_step = -1
        self.interrupted = False  # set by PreemptionCallback: no '-end' checkpoint then
        self._pending_rng: dict[str, Any] | None = None
        # (step, checkpoint, rng states) captured at the end of the final training step.
        self._final: tuple[int, dict[str, Any], Any] | None = None
        # Set in setup() under a strategy that saves sharded (FSDP): every rank writes its shard.
        self.sharded: ShardedCheckpoints | None = None

    # -- setup --------------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        return f"expconf.ModelCheckpoint[{self.monitor}]"

    def resolved_dirpath(self, trainer: pl.Trainer | None = None) -> str:
        """The checkpoint folder: dirpath, else the trainer's default_root_dir/checkpoints."""
        return checkpoint_dir(trainer.default_root_dir if trainer is not None else ".", self.dirpath)

    def get_storage(self, trainer: pl.Trainer | None = None) -> Storage:
        """The Storage of the checkpoint folder."""
        if self.storage is None:
            self.storage = Storage(self.resolved_dirpath(trainer), self.storage_options)
        return self.storage

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Rank 0 removes incomplete checkpoints and rebuilds top-k from the markers."""
        if stage != "fit":
            return
        self._final = None
        self._last_time_checked = time.monotonic()
        if self.storage_timeout is not None:
            deadline.configure(self.storage_timeout)
        if getattr(trainer.strategy, "sharded_checkpoint", False) and self.sharded is None:
            self.sharded = ShardedCheckpoints(self.storage_options, self.async_save)
            self.sharded.setup()
        storage = self.get_storage(trainer)
        self.dirpath = storage.url  # resolved, as Lightning's is after setup
        if trainer.is_global_zero:
            storage.makedirs()
            listing = scan(storage)
            removed = clean_incomplete(storage, listing, keep=self.protected)
            # Names in use, kept up to date by this run's own saves: naming a new checkpoint then
            # needs no storage round trip in the training loop.
            self._taken = set(storage.listdir()) - set(removed)
            for name in removed:
                log.warning("removed incomplete checkpoint %s", storage.path(name))
            for name, meta in listing.complete.items():
                if meta.kind == "topk" and meta.score is not None and meta.monitor == self.monitor:
                    self.best_k_models[name] = meta.score
                    self._steps[name] = meta.global_step
            lasts = listing.by_kind("last")
            self._stale_lasts = {m.name for m in lasts}
            if lasts:
                self.last_model_path = storage.path(lasts[-1].name)
            self._update_best(storage)
        trainer.strategy.barrier("expconf_ckpt_setup")

    # -- when to save -------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Under gradient accumulation this runs per micro-batch; global_step moves only after the
        # optimizer step, and save() skips a step it already saved, so saves land on step boundaries.
        n = self.every_n_train_steps
        if n and trainer.global_step > 0 and trainer.global_step % n == 0:
            self.save(trainer)
        elif self.train_time_interval is not None and self._time_to_save(trainer):
            self.save(trainer)
        if self._final is None and self._is_final_step(trainer):
            # The '-end' checkpoint keeps the loop state of this moment, the point every other save
            # uses: Lightning's loops advance their counters once more before on_train_end, and a
            # run resumed past the end from such a state would replay or skip a step.
            checkpoint = dump_checkpoint(trainer, self.save_weights_only)
            states = rng.gather(trainer)
            # Only rank 0 writes; a CPU copy keeps the state of this moment until on_train_end.
            kept = stage(checkpoint) if trainer.is_global_zero or self.sharded else {}
            self._final = (int(trainer.global_step), kept, states)

    def _time_to_save(self, trainer: pl.Trainer) -> bool:
        """Whether ``train_time_interval`` has passed since the last save, by rank 0's clock."""
        assert self.train_time_interval is not None
        now = time.monotonic()
        last = self._last_time_checked if self._last_time_checked is not None else now
        due = bool(trainer.strategy.broadcast(now - last >= self.train_time_interval.total_seconds()))
        if due:
            self._last_time_checked = now
        return due

    def _saves_on_train_epoch_end(self, trainer: pl.Trainer) -> bool:
        if self.save_on_train_epoch_end is not None:
            return self.save_on_train_epoch_end
        batches = trainer.num_val_batches
        return trainer.check_val_every_n_epoch == 1 and not (sum(batches) if isinstance(batches, list) else batches)

    @staticmethod
    def _is_final_step(trainer: pl.Trainer) -> bool:
        if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
            return True
        max_epochs = trainer.max_epochs
        return bool(
            trainer.is_last_batch
            and max_epochs is not None
            and max_epochs > 0
            and trainer.current_epoch + 1 >= max_epochs
        )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self._periodic() or self._saves_on_train_epoch_end(trainer):
            return
        self.save(trainer)

    def _periodic(self) -> bool:
        return bool(self.every_n_train_steps or self.every_n_epochs or self.train_time_interval is not None)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        n = self.every_n_epochs
        if n and (trainer.current_epoch + 1) % n == 0:
            self.save(trainer)
        elif not self._periodic() and self._saves_on_train_epoch_end(trainer):
            self.save(trainer)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Restored here, after sanity checking, so the first resumed step draws what the
        # uninterrupted run drew.
        if self._pending_rng is not None:
            rng.restore(self._pending_rng, trainer.global_rank)
            self._pending_rng = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.interrupted and trainer.global_step > 0:
            self.save(trainer, end=True)
        self._final = None
        self.wait()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        try:
            if self._saves_on_exception(trainer):
                self._save_exception_checkpoint(trainer, exception)
            self.wait()
        except Exception as e:  # the original exception is the one to report
            log.error("%s", e)

    def _saves_on_exception(self, trainer: pl.Trainer) -> bool:
        return (
            self.save_on_exception
            and not self.interrupted  # a preemption already wrote its checkpoint
            and not trainer.sanity_checking
            and not getattr(trainer, "fast_dev_run", False)
            and trainer.global_step != self._last_saved_step
        )

    def _save_exception_checkpoint(self, trainer: pl.Trainer, exception: BaseException) -> None:
        """As Lightning: ``<filename>.ckpt`` and, with ``save_last``, the ``-last`` copy (resumable);
        rank 0 only and without collectives, as other ranks may be gone."""
        if not trainer.is_global_zero:
            return
        metrics = self.metrics(trainer)
        template = self.filename or default_template(self.name, self.monitor)
        base = format_checkpoint_name(template, metrics, self.auto_insert_metric_name)
        checkpoint = dump_checkpoint(trainer, self.save_weights_only)
        checkpoint["expconf_rng"] = {"per_rank": [rng.capture()]}
        checkpoint["expconf"] = {"kind": "exception", "global_step": metrics["step"]}
        storage = self.get_storage(trainer)
        name = base + CKPT_SUFFIX
        plan = SavePlan(label=name)
        plan.write(storage, name, checkpoint, self._meta(name, "exception", metrics))
        if self.save_last:
            last = base + LAST_SUFFIX + CKPT_SUFFIX
            plan.copy(storage, name, last, self._meta(last, "last", metrics))
            for old in self._replaced_lasts(last):
                plan.delete(storage, old)
            self.last_model_path = storage.path(last)
        self.writer.submit(plan)
        self._last_saved_step = int(trainer.global_step)
        log.warning("%s raised; saved checkpoint %s", type(exception).__name__, storage.path(name))

    def _meta(self, name: str, kind: str, metrics: dict[str, Any]) -> CheckpointMeta:
        consumed = metrics.get("consumed_samples")
        score = metrics.get(self.monitor) if self.monitor else None
        return CheckpointMeta(
            name=name,
            global_step=int(metrics["step"]),
            epoch=int(metrics["epoch"]),
            kind=kind,
            monitor=self.monitor,
            score=None if score is None or math.isnan(score) else score,
            metrics=dict(metrics),
            consumed_samples=int(consumed) if consumed is not None else None,
        )

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.writer.close()

    # -- saving -------------------------------------------------------------------------------
    def metrics(self, trainer: pl.Trainer) -> dict[str, float | int]:
        """Logged metrics as numbers, plus ``step`` and ``epoch``."""
        out: dict[str, float | int] = {}
        for k, v in trainer.callback_metrics.items():
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                out[k] = float(v.item())
            elif isinstance(v, (int, float)):
                out[k] = v
        out["step"] = int(trainer.global_step)
        out["epoch"] = int(trainer.current_epoch)
        return out

    def save(self, trainer: pl.Trainer, *, end: bool = False, force_last: bool = False) -> str | None:
        """Save now (collective: every rank calls it); returns the checkpoint's path on rank 0."""
        step = int(trainer.global_step)
        if not end and step == self._last_saved_step:
            return self.last_model_path or None
        metrics = self.metrics(trainer)
        template = self.filename or default_template(self.name, self.monitor)
        base = format_checkpoint_name(template, metrics, self.auto_insert_metric_name)
        if end and self._final is not None and self._final[0] == step:
            _, checkpoint, states = self._final
        else:
            checkpoint = dump_checkpoint(trainer, self.save_weights_only)
            states = rng.gather(trainer)
        shards = shard_state(checkpoint) if self.sharded else {}
        if self.sharded and (self.always_save_nemo or (end and self.save_nemo_on_train_end)):
            checkpoint["state_dict"] = full_model_state(trainer.lightning_module)  # the archive's weights
        written: str | None = None
        plan: SavePlan | None = None
        if trainer.is_global_zero:
            checkpoint["expconf_rng"] = states
            plan, written = self._plan(trainer, checkpoint, metrics, base, end=end, force_last=force_last)
        if self.sharded:
            self.sharded.write(trainer.strategy, plan, self.get_storage(trainer).url, shards)
        if plan is not None:
            self.writer.submit(plan)
        self._last_saved_step = step
        written = trainer.strategy.broadcast(written)
        trainer.strategy.barrier("expconf_ckpt_save")
        return written

    def _plan(
        self,
        trainer: pl.Trainer,
        checkpoint: dict[str, Any],
        metrics: dict[str, Any],
        base: str,
        *,
        end: bool,
        force_last: bool,
    ) -> tuple[SavePlan, str | None]:
        """Rank 0: the steps of this save and the path of the checkpoint it writes."""
        storage = self.get_storage(trainer)
        score = metrics.get(self.monitor) if self.monitor else None
        if score is not None and math.isnan(score):
            score = None
        payload = self.writer.stage(checkpoint) if self.async_save else checkpoint

        def meta(name: str, kind: str) -> CheckpointMeta:
            return self._meta(name, kind, metrics)

        plan = self.sharded.plan(base) if self.sharded else SavePlan(label=base)
        if end:
            name = base + END_SUFFIX + CKPT_SUFFIX
            if not self.save_optim_on_train_end:
                payload = {k: v for k, v in payload.items() if k not in ("optimizer_states", "lr_schedulers")}
            payload["expconf"] = {"kind": "end", "global_step": metrics["step"]}
            plan.write(storage, name, payload, meta(name, "end"))
            self._taken.add(name)
            written: str | None = name
        else:
            # A forced save (preemption) is not an evaluation: it only refreshes '-last'.
            written = None if force_last else self._plan_topk(storage, plan, payload, base, score, meta)
            if self.save_last or force_last:
                last = self._free_name(base + LAST_SUFFIX, CKPT_SUFFIX, mine=self.last_model_path)
                if written is not None:
                    plan.copy(storage, written, last, meta(last, "last"))
                else:
                    payload["expconf"] = {"kind": "last", "global_step": metrics["step"]}
                    plan.write(storage, last, payload, meta(last, "last"))
                self._taken.add(last)
                for old in self._replaced_lasts(last):
                    plan.delete(storage, old)
                    self._taken.discard(old)
                self.last_model_path = storage.path(last)
                written = written or last
        if self.always_save_nemo or (end and self.save_nemo_on_train_end):
            plan.call(self._archive_step(trainer, storage, payload))
        self._update_best(storage)
        if self.verbose and written:
            log.info("saved checkpoint %s (step %d)", storage.path(written), metrics["step"])
        return plan, storage.path(written) if written else None

    def _plan_topk(
        self,
        storage: Storage,
        plan: SavePlan,
        payload: dict[str, Any],
        base: str,
        score: float | None,
        meta: Any,
    ) -> str | None:
        k = self.save_top_k
        if k == 0 or (score is None and not (k == -1 and self.monitor is None)):
            return None
        name = self._free_name(base, CKPT_SUFFIX)
        if k != -1 and len(self.best_k_models) >= k and score is not None:
            worst = self._worst()
            if worst is not None and not self._better(score, self.best_k_models[worst]):
                return None
        payload["expconf"] = {"kind": "topk", "global_step": payload.get("global_step")}
        plan.write(storage, name, payload, meta(name, "topk"))
        self._taken.add(name)
        self.best_k_models[name] = score if score is not None else float("nan")
        while k != -1 and len(self.best_k_models) > k:
            worst = self._worst()
            if worst is None:
                break
            del self.best_k_models[worst]
            if worst not in self.protected and worst != name:
                plan.delete(storage, worst)
                self._taken.discard(worst)
        return name

    def _replaced_lasts(self, new: str) -> list[str]:
        """The '-last' checkpoints that a save of ``new`` replaces, deleted once ``new`` is complete:
        the previous one and every one listed at setup, the one resumed from included (it has been
        loaded by then), so that one '-last' remains however often a run is killed and resumed."""
        previous = {self.last_model_path.rsplit("/", 1)[-1]} if self.last_model_path else set()
        replaced = sorted((previous | self._stale_lasts) - {new})
        self._stale_lasts = set()
        return replaced

    def _free_name(self, base: str, suffix: str, mine: str = "") -> str:
        """``base + suffix``, or with ``enable_version_counter`` ``base-v1 + suffix``, ... while that
        name is taken by another checkpoint (``mine``, the one being replaced, does not count)."""
        name = base + suffix
        if not self.enable_version_counter:
            return name
        own = mine.rsplit("/", 1)[-1] if mine else ""
        version = 1
        while name != own and (name in self.best_k_models or name in self._taken):
            name = f"{base}-v{version}{suffix}"
            version += 1
        return name

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def _worst(self) -> str | None:
        if not self.best_k_models:
            return None
        pick = max if self.mode == "min" else min
        return pick(self.best_k_models, key=lambda n: self.best_k_models[n])

    def _update_best(self, storage: Storage) -> None:
        scored = {n: s for n, s in self.best_k_models.items() if not math.isnan(s)}
        if scored:
            pick = min if self.mode == "min" else max
            best = pick(scored, key=lambda n: scored[n])
            self.best_model_path = storage.path(best)
            self.best_model_score = scored[best]

    def _archive_step(self, trainer: pl.Trainer, storage: Storage, payload: dict[str, Any]) -> Any:
        from expconf.checkpoint.archive import write_archive

        module = trainer.lightning_module
        state = payload["state_dict"]
        name = f"{self.name}.nemo"
        return lambda: write_archive(storage, name, module, state)

    @property
    def kth_best_model_path(self) -> str:
        """Lightning's name: the path of the worst checkpoint still in the top-k ('' when none)."""
        worst = self._worst()
        return self.get_storage().path(worst) if worst is not None and self.storage is not None else ""

    @property
    def kth_value(self) -> float | None:
        """Lightning's name: the score of the worst checkpoint still in the top-k."""
        worst = self._worst()
        return self.best_k_models[worst] if worst is not None else None

    def to_yaml(self, filepath: str | None = None) -> None:
        """Write ``best_k_models`` (checkpoint name: score) as YAML, as Lightning's does
        (default: ``best_k_models.yaml`` in the checkpoint folder)."""
        import yaml

        storage = self.get_storage()
        text = yaml.dump(dict(self.best_k_models)).encode()
        if filepath is None:
            storage.write_bytes_atomic("best_k_models.yaml", text)
        else:
            with open(filepath, "wb") as f:
                f.write(text)

    def wait(self) -> None:
        """Block until pending (async) saves are durable."""
        if self.sharded:
            self.sharded.wait()
        self.writer.wait()

    # -- Lightning state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "dirpath": self.dirpath,
            "best_model_path": self.best_model_path,
            "best_model_score": self.best_model_score,
            "last_model_path": self.last_model_path,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Top-k is rebuilt from the markers in setup(); only the RNG states matter here.
        pass

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending_rng = checkpoint.get("expconf_rng")
        self._last_saved_step = int(checkpoint.get("global_step", -1))
        resumed_from = getattr(trainer, "ckpt_path", None)
        if resumed_from:
            # Top-k eviction never deletes the checkpoint being resumed from, also when
            # fit(ckpt_path=...) is called directly, without AutoResume.
            self.protected.add(str(resumed_from).rstrip("/").rsplit("/", 1)[-1])
