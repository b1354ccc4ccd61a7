"""``ModelCheckpoint``: NeMo 2.0's checkpoint callback with atomic, metadata-driven top-k.

Differences from Lightning's and NeMo's (docs/run-dir-checkpoints-resume.md): scores and steps come from each
checkpoint's marker, never from its file name; a resumed run rebuilds its top-k from those
markers; writes are atomic on local disks and object stores; ``async_save`` keeps the loop
waiting only while the state is staged; and the random-number states of every rank travel
in the checkpoint so that a resumed run draws the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from datetime import timedelta
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import Checkpoint

from expconf import deadline
from expconf.checkpoint import rng
from expconf.checkpoint.meta import CKPT_SUFFIX, CheckpointMeta, Listing, clean_incomplete, scan
from expconf.checkpoint.naming import END_SUFFIX, format_checkpoint_name
from expconf.checkpoint.writer import CheckpointWriter, SavePlan, stage
from expconf.config.ckpt import check_checkpoint_arguments, check_filename
from expconf.errors import ConfigError
from expconf.lightning_internals import dump_checkpoint
from expconf.rundir import checkpoint_dir
from expconf.sharded_ckpt import ShardedCheckpoints, full_model_state, shard_state
from expconf.storage import Storage, is_remote

log = logging.getLogger(__name__)


def _name_of(path: str) -> str:
    """The checkpoint name (last path component) of a path or URL; '' for ''."""
    return str(path).rstrip("/").rsplit("/", 1)[-1] if path else ""


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
    of overwriting it; ``save_last="link"`` makes the last checkpoint a symbolic link to the
    checkpoint saved at the same step (local folders only; a copy when that step saved none).

    File names follow Lightning unless NeMoLogger attaches the callback: ``filename=None`` is
    ``{epoch}-{step}`` and the last checkpoint is ``CHECKPOINT_NAME_LAST`` (``last``); NeMoLogger
    sets NeMo's ``<name>--{<monitor>:.4f}-{epoch}-{step}`` and ``<filename>-last``. Without a
    monitor, ``save_top_k=1`` keeps only the newest checkpoint and ``-1`` keeps all.
    """

    CHECKPOINT_NAME_LAST = "last"
    STARTING_VERSION = 1

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
                monitor=monitor,
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
        self.save_last = save_last
        # As Lightning: no trigger given means "after every validation" (every_n_epochs=1).
        unset = every_n_train_steps is None and every_n_epochs is None and train_time_interval is None
        self._every_n_train_steps = every_n_train_steps or 0
        self._every_n_epochs = 1 if unset else every_n_epochs or 0
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
        self.name = "model"  # NeMoLogger sets its experiment name here (the model archive's name)
        self._writer: CheckpointWriter | None = None  # made at first use: the callback pickles without it
        self.storage: Storage | None = None
        # Scores are 0-d tensors, as Lightning's (user code calls .item() on them).
        self.best_k_models: dict[str, torch.Tensor] = {}
        self.best_model_path = ""
        self.best_model_score: torch.Tensor | None = None
        self.kth_best_model_path = ""
        self.kth_value: torch.Tensor | None = None
        self.current_score: torch.Tensor | None = None  # the monitored value at the last top-k check
        self.last_model_path = ""
        self.protected: set[str] = set()  # the checkpoint this run resumed from
        self._taken: set[str] = set()  # names in the folder (rank 0): listed at setup, then this run's saves
        self._ours: set[str] = set()  # the part of _taken expconf wrote (complete, with a marker)
        self._listing: Listing | None = None  # the folder at setup (rank 0): top-k is rebuilt from it on resume
        self._stale_lasts: set[str] = set()  # a resumed run's complete last checkpoints listed at setup (rank 0)
        self._last_saved_step = -1  # the step of the last top-k / '-last' save (not '-end')
        self._saved_this_fit = False
        self.interrupted = False  # set by PreemptionCallback: no '-end' checkpoint then
        self._pending_rng: dict[str, Any] | None = None
        # (step, checkpoint, rng states) captured at the end of the final training step.
        self._final: tuple[int, dict[str, Any], Any] | None = None
        # Set in setup() under a strategy that saves sharded (FSDP): every rank writes its shard.
        self.sharded: ShardedCheckpoints | None = None

    # -- setup --------------------------------------------------------------------------------
    @property
    def every_n_train_steps(self) -> int:
        return self._every_n_train_steps

    @every_n_train_steps.setter
    def every_n_train_steps(self, n: int | None) -> None:
        self._every_n_train_steps = n or 0

    @property
    def every_n_epochs(self) -> int:
        return self._every_n_epochs

    @every_n_epochs.setter
    def every_n_epochs(self, n: int | None) -> None:
        self._every_n_epochs = n or 0

    @property
    def state_key(self) -> str:
        # Lightning's ModelCheckpoint key: a checkpoint written with either class carries its
        # callback state where the other looks for it.
        ident = {
            "monitor": self.monitor,
            "mode": self.mode,
            "every_n_train_steps": self._every_n_train_steps,
            "every_n_epochs": self._every_n_epochs,
            "train_time_interval": self.train_time_interval,
        }
        return f"ModelCheckpoint{ident!r}"

    def resolved_dirpath(self, trainer: pl.Trainer | None = None) -> str:
        """The checkpoint folder: dirpath, else the trainer's default_root_dir/checkpoints."""
        return checkpoint_dir(trainer.default_root_dir if trainer is not None else ".", self.dirpath)

    def get_storage(self, trainer: pl.Trainer | None = None) -> Storage:
        """The Storage of the checkpoint folder."""
        if self.storage is None:
            self.storage = Storage(self.resolved_dirpath(trainer), self.storage_options)
        return self.storage

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Rank 0 removes expconf's incomplete checkpoints and lists the folder (a resumed run
        rebuilds its top-k from the markers listed here)."""
        if stage != "fit":
            return
        if self.save_last == "link" and is_remote(self.resolved_dirpath(trainer)):
            raise CheckpointArgumentError(
                f"ModelCheckpoint save_last='link' is only supported for local file paths, got dirpath "
                f"{self.resolved_dirpath(trainer)} (use save_last=True: object stores have no links)"
            )
        self._final = None
        self._saved_this_fit = False
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
            self._ours = set(listing.complete)
            self._listing = listing
            for name in removed:
                log.warning("removed incomplete checkpoint %s", storage.path(name))
        trainer.strategy.barrier("expconf_ckpt_setup")

    def _rebuild_from_markers(self) -> None:
        """Rank 0 of a resumed run: top-k and the last checkpoint from the markers listed at setup
        (scores and steps from metadata, never from names)."""
        listing, storage = self._listing, self.storage
        if listing is None or storage is None:
            return
        self.best_k_models = {
            storage.path(name): torch.tensor(meta.score)
            for name, meta in listing.complete.items()
            if meta.kind == "topk" and meta.score is not None and meta.monitor == self.monitor
        }
        lasts = listing.by_kind("last")
        self._stale_lasts = {m.name for m in lasts}
        if lasts:
            self.last_model_path = storage.path(lasts[-1].name)
        self._update_best()

    # -- when to save -------------------------------------------------------------------------
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Under gradient accumulation this runs per micro-batch; global_step moves only after the
        # optimizer step, and save() skips a step it already saved, so saves land on step boundaries.
        n = self._every_n_train_steps
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
        if trainer.check_val_every_n_epoch != 1:
            return False  # validation does not run every epoch: save after it
        batches = trainer.num_val_batches
        if not (sum(batches) if isinstance(batches, list) else batches):
            return True  # nothing validates
        return trainer.val_check_interval == 1.0  # validation once per epoch: its end is the epoch's

    def _epoch_due(self, trainer: pl.Trainer) -> bool:
        n = self._every_n_epochs
        return n >= 1 and (trainer.current_epoch + 1) % n == 0

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
        if trainer.sanity_checking or self._saves_on_train_epoch_end(trainer):
            return
        if self._epoch_due(trainer):
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._saves_on_train_epoch_end(trainer) and self._epoch_due(trainer):
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
        # As Lightning: not when a top-k or last checkpoint of this very step exists (the '-end'
        # checkpoint does not count: an exception after it, in on_fit_end say, still saves).
        return (
            self.save_on_exception
            and not self.interrupted  # a preemption already wrote its checkpoint
            and not trainer.sanity_checking
            and not getattr(trainer, "fast_dev_run", False)
            and trainer.global_step != self._last_saved_step
        )

    def _save_exception_checkpoint(self, trainer: pl.Trainer, exception: BaseException) -> None:
        """As Lightning: ``<filename>.ckpt`` and, with ``save_last``, the last checkpoint (resumable);
        rank 0 only and without collectives, as other ranks may be gone."""
        if not trainer.is_global_zero:
            return
        metrics = self.metrics(trainer)
        base = format_checkpoint_name(self._template(), metrics, self.auto_insert_metric_name)
        checkpoint = dump_checkpoint(trainer, self.save_weights_only)
        checkpoint["expconf_rng"] = {"per_rank": [rng.capture()]}
        checkpoint["expconf"] = {"kind": "exception", "global_step": metrics["step"]}
        storage = self.get_storage(trainer)
        name = self._free_name(base, CKPT_SUFFIX, mine=base + CKPT_SUFFIX)  # overwrites only its own
        plan = SavePlan(label=name)
        plan.write(storage, name, checkpoint, self._meta(name, "exception", metrics))
        self._claim(name)
        if self.save_last:
            self._plan_last(storage, plan, checkpoint, metrics, written=name)
        self.writer.submit(plan)
        self._last_saved_step = int(trainer.global_step)
        log.warning("%s raised; saved checkpoint %s", type(exception).__name__, storage.path(name))

    def _meta(self, name: str, kind: str, metrics: dict[str, Any], score: float | None = None) -> CheckpointMeta:
        consumed = metrics.get("consumed_samples")
        if score is None and self.monitor:
            score = metrics.get(self.monitor)
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

    # -- names --------------------------------------------------------------------------------
    def _template(self) -> str:
        return self.filename or "{epoch}-{step}"  # Lightning's default; NeMoLogger sets NeMo's

    def format_checkpoint_name(
        self, metrics: dict[str, Any], filename: str | None = None, ver: int | None = None
    ) -> str:
        """Lightning's method: the checkpoint path ``filename`` (default: this callback's) gives for
        ``metrics``, with ``-v<ver>`` when given."""
        name = format_checkpoint_name(filename or self._template(), metrics, self.auto_insert_metric_name)
        if ver is not None:
            name = f"{name}-v{ver}"
        return f"{str(self.dirpath).rstrip('/')}/{name}{CKPT_SUFFIX}" if self.dirpath else name + CKPT_SUFFIX

    def _free_name(self, base: str, suffix: str, mine: str = "") -> str:
        """``base + suffix``, or with ``enable_version_counter`` ``base-v1 + suffix``, ... while that
        name is taken by another checkpoint (``mine``, the one being replaced, does not count).
        Without the counter a name is reused when expconf wrote what it holds, and versioned only
        when another tool's file (or the checkpoint resumed from) has it."""
        own = _name_of(mine)

        def usable(name: str) -> bool:
            if name == own:
                return True
            if name in self.protected:
                return False
            return name not in self._taken or (not self.enable_version_counter and name in self._ours)

        name, version = base + suffix, self.STARTING_VERSION
        while not usable(name):
            name = f"{base}-v{version}{suffix}"
            version += 1
        if not self.enable_version_counter and name != base + suffix:
            log.warning("%s%s is not expconf's to overwrite: writing %s instead", base, suffix, name)
        return name

    def _claim(self, name: str) -> None:
        self._taken.add(name)
        self._ours.add(name)

    def _release(self, storage: Storage, plan: SavePlan, name: str, keep: str, resumed_from_too: bool = False) -> None:
        """Delete checkpoint ``name`` this callback replaced, unless it is ``keep`` (just rewritten),
        not expconf's, or the one resumed from (a top-k entry; a last one goes: ``resumed_from_too``)."""
        if not name or name == keep or name not in self._ours:
            return
        if name in self.protected and not resumed_from_too:
            return
        plan.delete(storage, name)
        self._taken.discard(name)
        self._ours.discard(name)

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
        if end and self._final is not None and self._final[0] == step:
            _, checkpoint, states = self._final
            # The loop counted one more epoch since: the name tells the epoch of the saved state.
            metrics["epoch"] = int(checkpoint.get("epoch", metrics["epoch"]))
        else:
            checkpoint = dump_checkpoint(trainer, self.save_weights_only)
            states = rng.gather(trainer)
        base = format_checkpoint_name(self._template(), metrics, self.auto_insert_metric_name)
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
        if not end:
            self._last_saved_step = step
        self._saved_this_fit = True
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
        payload = self.writer.stage(checkpoint) if self.async_save else checkpoint
        plan = self.sharded.plan(base) if self.sharded else SavePlan(label=base)
        written: str | None
        if end:
            name = base + END_SUFFIX + CKPT_SUFFIX
            if not self.save_optim_on_train_end:
                payload = {k: v for k, v in payload.items() if k not in ("optimizer_states", "lr_schedulers")}
            payload["expconf"] = {"kind": "end", "global_step": metrics["step"]}
            plan.write(storage, name, payload, self._meta(name, "end", metrics))
            self._claim(name)
            written = name
            if self.save_last and not self._saved_this_fit:  # as Lightning: a last checkpoint at the end
                self._plan_last(storage, plan, payload, metrics, written=name)
        else:
            # A forced save (preemption) is not an evaluation: it only refreshes the last checkpoint.
            written = None if force_last else self._plan_topk(storage, plan, payload, base, metrics)
            if self.save_last or force_last:
                last = self._plan_last(storage, plan, payload, metrics, written=written)
                written = written or last
        if self.always_save_nemo or (end and self.save_nemo_on_train_end):
            plan.call(self._archive_step(trainer, storage, payload))
        states = payload.get("callbacks")
        if isinstance(states, dict) and self.state_key in states:
            # As Lightning's: the state inside names this save (top-k, scores, last path), not the one before.
            states[self.state_key] = copy.deepcopy(self.state_dict())
        if self.verbose and written:
            log.info("saved checkpoint %s (step %d)", storage.path(written), metrics["step"])
        return plan, storage.path(written) if written else None

    def _plan_last(
        self, storage: Storage, plan: SavePlan, payload: dict[str, Any], metrics: dict[str, Any], written: str | None
    ) -> str:
        """The last checkpoint: a copy of (or, with ``save_last="link"``, a link to) ``written``, the
        checkpoint this step saved, else the state itself; the previous last checkpoint goes."""
        last_base = format_checkpoint_name(self.CHECKPOINT_NAME_LAST, metrics, self.auto_insert_metric_name)
        last = self._free_name(last_base, CKPT_SUFFIX, mine=self.last_model_path)
        meta = self._meta(last, "last", metrics)
        if written is not None and self.save_last == "link" and self.save_top_k != 0:
            plan.link(storage, written, last, meta)
        elif written is not None:
            plan.copy(storage, written, last, meta)
        else:
            payload["expconf"] = {"kind": "last", "global_step": metrics["step"]}
            plan.write(storage, last, payload, meta)
        # The previous one goes once this one is complete, and in a resumed run every last one listed
        # at setup too, the one resumed from included (loaded by then): one remains however often a
        # run is killed and resumed.
        self._release(storage, plan, _name_of(self.last_model_path), keep=last, resumed_from_too=True)
        for stale in sorted(self._stale_lasts):
            self._release(storage, plan, stale, keep=last, resumed_from_too=True)
        self._stale_lasts = set()
        self._claim(last)
        self.last_model_path = storage.path(last)
        return last

    def _plan_topk(
        self, storage: Storage, plan: SavePlan, payload: dict[str, Any], base: str, metrics: dict[str, Any]
    ) -> str | None:
        """Lightning's top-k: by ``monitor`` and ``mode`` (NaN ranks last), or without a monitor the
        newest (``save_top_k=1``) or all (``-1``)."""
        k = self.save_top_k
        if k == 0:
            return None
        if self.monitor is None:
            previous = _name_of(self.best_model_path) if k == 1 else ""
            name = self._free_name(base, CKPT_SUFFIX, mine=previous)
            payload["expconf"] = {"kind": "topk", "global_step": metrics["step"]}
            plan.write(storage, name, payload, self._meta(name, "topk", metrics))
            self._release(storage, plan, previous, keep=name)
            self._claim(name)
            self.best_model_path = storage.path(name)
            return name
        score = metrics.get(self.monitor)
        if score is None:
            log.warning("ModelCheckpoint(monitor=%r) found no such metric (logged: %s)", self.monitor, list(metrics))
            return None
        if math.isnan(score):
            score = math.inf if self.mode == "min" else -math.inf
        self.current_score = torch.tensor(score)
        worst = self._worst()
        if k != -1 and len(self.best_k_models) >= k and worst is not None:
            if not self._better(score, float(self.best_k_models[worst])):
                if self.verbose:
                    log.info("step %d: %r was not in top %d", metrics["step"], self.monitor, k)
                return None
        evicted: list[str] = []
        while k != -1 and len(self.best_k_models) >= k and (worst := self._worst()) is not None:
            del self.best_k_models[worst]
            evicted.append(_name_of(worst))
        reuse = next((n for n in evicted if n not in self.protected), "")
        name = self._free_name(base, CKPT_SUFFIX, mine=reuse)
        if name == reuse:
            plan.delete(storage, name)  # its marker goes before other bytes take its name
        payload["expconf"] = {"kind": "topk", "global_step": metrics["step"]}
        plan.write(storage, name, payload, self._meta(name, "topk", metrics, score=score))
        for old in evicted:
            self._release(storage, plan, old, keep=name)
        self._claim(name)
        self.best_k_models[storage.path(name)] = self.current_score
        self._update_best()
        return name

    def _better(self, a: float, b: float) -> bool:
        return a < b if self.mode == "min" else a > b

    def _worst(self) -> str | None:
        if not self.best_k_models:
            return None
        pick = max if self.mode == "min" else min
        return pick(self.best_k_models, key=lambda n: float(self.best_k_models[n]))

    def _update_best(self) -> None:
        if not self.best_k_models:
            return
        pick = min if self.mode == "min" else max
        self.best_model_path = pick(self.best_k_models, key=lambda n: float(self.best_k_models[n]))
        self.best_model_score = self.best_k_models[self.best_model_path]
        full = self.save_top_k == -1 or len(self.best_k_models) >= self.save_top_k
        worst = self._worst()
        if full and worst is not None:
            self.kth_best_model_path, self.kth_value = worst, self.best_k_models[worst]

    def _archive_step(self, trainer: pl.Trainer, storage: Storage, payload: dict[str, Any]) -> Any:
        from expconf.checkpoint.archive import write_archive

        module = trainer.lightning_module
        state = payload["state_dict"]
        name = f"{self.name}.nemo"
        return lambda: write_archive(storage, name, module, state)

    def to_yaml(self, filepath: str | None = None) -> None:
        """Write ``best_k_models`` (checkpoint path: score) as YAML, as Lightning's does
        (default: ``best_k_models.yaml`` in the checkpoint folder)."""
        import yaml

        storage = self.get_storage()
        text = yaml.dump({path: float(score) for path, score in self.best_k_models.items()}).encode()
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
            "monitor": self.monitor,
            "best_model_score": self.best_model_score,
            "best_model_path": self.best_model_path,
            "current_score": self.current_score,
            "dirpath": self.dirpath,
            "best_k_models": self.best_k_models,
            "kth_best_model_path": self.kth_best_model_path,
            "kth_value": self.kth_value,
            "last_model_path": self.last_model_path,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As Lightning's: the top-k state when the checkpoint was written to this dirpath (else only
        ``best_model_path``, with a warning). On rank 0 the markers then have the last word: they
        say what the folder holds now, also what was deleted after that checkpoint was written."""
        if self.dirpath == state_dict.get("dirpath", self.dirpath):
            self.best_model_score = _score(state_dict.get("best_model_score"))
            self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value = _score(state_dict.get("kth_value", self.kth_value))
            self.best_k_models = {p: torch.tensor(float(v)) for p, v in state_dict.get("best_k_models", {}).items()}
            self.last_model_path = state_dict.get("last_model_path", self.last_model_path)
        else:
            warnings.warn(
                f"The dirpath has changed from {state_dict.get('dirpath')!r} to {self.dirpath!r}: only "
                "best_model_path is restored from the checkpoint's ModelCheckpoint state",
                stacklevel=2,
            )
        self.best_model_path = state_dict.get("best_model_path", self.best_model_path)
        self._rebuild_from_markers()

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._pending_rng = checkpoint.get("expconf_rng")
        self._last_saved_step = int(checkpoint.get("global_step", -1))
        self._rebuild_from_markers()  # also for a checkpoint without this callback's state
        resumed_from = getattr(trainer, "ckpt_path", None)
        if resumed_from:
            # Top-k eviction never deletes the checkpoint being resumed from, also when
            # fit(ckpt_path=...) is called directly, without AutoResume.
            self.protected.add(_name_of(str(resumed_from)))

    # -- pickling: the writer's thread and the storage client stay behind -----------------------
    @property
    def writer(self) -> CheckpointWriter:
        """Runs this callback's save plans (inline, or in the background with ``async_save``)."""
        if self._writer is None:
            self._writer = CheckpointWriter(async_save=self.async_save)
        return self._writer

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_writer=None, storage=None, sharded=None, _final=None)
        return state


def _score(value: Any) -> torch.Tensor | None:
    """A score as a 0-d tensor, as Lightning keeps them (a float from an older state included)."""
    return None if value is None else torch.tensor(float(value))
