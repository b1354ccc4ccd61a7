"""``AutoResume``: decides, once for all ranks, which checkpoint a run resumes from."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

from expconf.checkpoint.meta import CheckpointMeta, Listing, scan, verify
from expconf.checkpoint.naming import is_end, is_last
from expconf.config.resume import check_one_source
from expconf.distributed import handoff
from expconf.errors import IncompleteCheckpointError, NotFoundError, TrainingCompletedError
from expconf.rundir import resume_dir
from expconf.storage import Storage

log = logging.getLogger("expconf")


__all__ = ["AutoResume", "IncompleteCheckpointError", "NotFoundError", "RestoreConfig", "TrainingCompletedError"]


@dataclass
class RestoreConfig:
    """NeMo 2.0's ``RestoreConfig``: initialise a new run from ``path`` without resuming it.

    ``load_model_state`` loads the model weights (safe loading, no pickle). Restoring optimizer
    state or adapters without the loop state is not supported (``ValueError``); expconf's
    archives carry no artifacts besides weights and config, so ``load_artifacts`` has nothing
    more to load.
    """

    path: str
    adapter_path: str | None = None
    load_model_state: bool = True
    load_optim_state: bool = False
    load_artifacts: bool = True

    def __post_init__(self) -> None:
        if self.adapter_path:
            raise ValueError(f"RestoreConfig adapter_path={self.adapter_path!r}: adapters are not supported by expconf")
        if self.load_optim_state:
            raise ValueError(
                "RestoreConfig load_optim_state=True: expconf restores optimizer state only together with "
                "the loop state; use AutoResume(resume_from_path=...) to resume a run"
            )


@dataclass
class ResumeDecision:
    """What resume picked and why (also printed by ``python -m expconf.runs show``)."""

    searched: str
    listing: Listing
    chosen: CheckpointMeta | None
    reason: str
    #: Complete checkpoints passed over because they no longer match their markers: "path (why)".
    rejected: list[str] = field(default_factory=list)


# At one global step: '-end' before '-last' before the rest (the same state under another name).
_KIND_RANK = {"end": 2, "last": 1}


def _newest_first(metas: list[CheckpointMeta]) -> list[CheckpointMeta]:
    return sorted(metas, key=lambda m: (m.global_step, _KIND_RANK.get(m.kind, 0), m.created), reverse=True)


def decide(storage: Storage, resume_past_end: bool) -> ResumeDecision:
    """Pick the checkpoint to resume from in one folder (the table of docs/run-dir-checkpoints-resume.md
    and the order of docs/fault-tolerance.md); raises for the error rows.

    1. A complete ``-end`` checkpoint and not ``resume_past_end``: training completed (error).
    2. The newest ``-last`` checkpoint (with ``resume_past_end`` also ``-end``) that verifies.
    3. Else the newest complete checkpoint of any kind that verifies (``save_last=false``, or
       every ``-last`` damaged).
    4. Else an error when some checkpoint exists but none can be resumed, or nothing.

    "Newest" is the highest global step from the markers, never the file name or time. Kinds
    come from the markers too (a marker-less checkpoint of another tool: from its name).
    "Verifies": the file's size and, on a local disk, its CRC-32 equal what its marker records.
    """
    listing = scan(storage)
    # Another tool's readable '-last' / '-end' checkpoints (a Lightning ModelCheckpoint's) count too.
    found = {**listing.foreign, **listing.complete}
    ends = [m for m in found.values() if m.kind == "end"]
    if ends and not resume_past_end:
        newest_end = _newest_first(ends)[0]
        raise TrainingCompletedError(
            f"training already completed: {storage.path(newest_end.name)} exists; set "
            "resume.resume_past_end=true to continue past it, or use a new log.name/version"
        )
    kinds = ("last", "end") if resume_past_end else ("last",)
    preferred = [m for m in found.values() if m.kind in kinds]
    others = [m for n, m in listing.complete.items() if m.kind not in kinds]
    rejected: list[str] = []
    for tier in (preferred, others):
        for meta in _newest_first(tier):
            problem = verify(storage, meta)
            if problem is None:
                why = _why(meta, preferred, ends, rejected) if tier is preferred else _why_fallback(meta, rejected)
                return ResumeDecision(storage.url, listing, meta, why, rejected)
            rejected.append(f"{storage.path(meta.name)} ({problem})")
    if rejected:
        raise IncompleteCheckpointError(
            f"no checkpoint in {storage.url} can be resumed: " + "; ".join(rejected) + ": they no longer match "
            "their completion markers (damaged after they were written); point resume.path at a good copy"
        )
    broken = [n for n in listing.incomplete if is_last(n) or is_end(n)]
    if broken:
        paths = " ".join(storage.path(n) for n in broken)
        raise IncompleteCheckpointError(
            f"only incomplete checkpoints in {storage.url}: {paths}; they were cut off mid-write and "
            f"cannot be resumed: delete them (rm -r {paths}) or point resume.path at a complete checkpoint"
        )
    return ResumeDecision(storage.url, listing, None, "no checkpoint")


def _why(
    chosen: CheckpointMeta, preferred: list[CheckpointMeta], ends: list[CheckpointMeta], rejected: list[str]
) -> str:
    """Why ``chosen``, a '-last' (or with resume_past_end an '-end') checkpoint, was picked."""
    if rejected:
        return f"the newest '-{chosen.kind}' checkpoint that verifies (step {chosen.global_step})"
    if ends:
        if chosen.kind == "end":
            return "an '-end' checkpoint and resume_past_end=true"
        # A run resumed past the end and then interrupted has a '-last' newer than the '-end'.
        return f"resume_past_end=true and a '-last' checkpoint past the '-end' (step {chosen.global_step})"
    if len(preferred) == 1:
        return "the only '-last' checkpoint"
    return f"highest global step ({chosen.global_step}) of {len(preferred)} '-last' checkpoints"


def _why_fallback(chosen: CheckpointMeta, rejected: list[str]) -> str:
    """Why ``chosen``, a checkpoint of another kind (top-k), was picked."""
    first = "no '-last' checkpoint verifies" if rejected else "no '-last' checkpoint (log.ckpt.save_last=false?)"
    return f"{first}: the newest complete checkpoint by global step ({chosen.global_step})"


class AutoResume:
    """NeMo 2.0's AutoResume with the same keyword arguments; its differences are in docs/migration.md.

    ``resume_from_path`` / ``resume_from_directory`` are NeMo's current names of ``path`` /
    ``dirpath``; ``import_path`` is the older spelling of ``restore_config=RestoreConfig(path)``.
    """

    def __init__(
        self,
        path: str | None = None,
        dirpath: str | None = None,
        import_path: str | None = None,
        resume_if_exists: bool = False,
        resume_past_end: bool = False,
        resume_ignore_no_checkpoint: bool = False,
        *,
        restore_config: RestoreConfig | None = None,
        resume_from_directory: str | None = None,
        resume_from_path: str | None = None,
    ) -> None:
        path = _alias("path", path, "resume_from_path", resume_from_path)
        dirpath = _alias("dirpath", dirpath, "resume_from_directory", resume_from_directory)
        if import_path and restore_config is not None:
            raise ValueError("AutoResume: import_path and restore_config are the same setting (give one)")
        if restore_config is None and import_path:
            restore_config = RestoreConfig(path=import_path)
        check_one_source("AutoResume.", path, restore_config.path if restore_config is not None else None)
        self.path = path
        self.dirpath = dirpath
        self.restore_config = restore_config
        self.resume_if_exists = resume_if_exists
        self.resume_past_end = resume_past_end
        self.resume_ignore_no_checkpoint = resume_ignore_no_checkpoint
        self.ckpt_path: str | None = None
        self.decision: ResumeDecision | None = None

    # NeMo's names, readable and writable like the keywords.
    resume_from_path = property(lambda self: self.path, lambda self, v: setattr(self, "path", v))
    resume_from_directory = property(lambda self: self.dirpath, lambda self, v: setattr(self, "dirpath", v))

    @property
    def import_path(self) -> str | None:
        """The checkpoint or archive whose weights initialise a run that does not resume."""
        return self.restore_config.path if self.restore_config is not None else None

    def search_dir(self, trainer: Any) -> tuple[str, dict[str, Any]]:
        """Where resume_if_exists looks: dirpath, else the checkpoint callback's dirpath, else run dir."""
        ckpt = getattr(trainer, "checkpoint_callback", None)
        options = dict(getattr(ckpt, "storage_options", {}) or {})
        return resume_dir(trainer.default_root_dir, getattr(ckpt, "dirpath", None), self.dirpath), options

    def setup(self, trainer: Any, model: Any = None) -> str | None:
        """Decide (once, shared by all ranks) what this run resumes from; set and return
        ``trainer.ckpt_path`` (None when it starts fresh).

        Nothing to resume and a ``restore_config`` (``import_path``): only the model weights are
        loaded into ``model`` (no pickle) and training starts from step 0.
        """
        if self.restore_config is not None and model is None:
            raise ValueError("AutoResume restore_config/import_path needs the model passed to setup()")
        chosen = handoff.agree(handoff.RESUME_ENV, lambda: self._decide(trainer) or handoff.NO_CHECKPOINT)
        handoff.scope_of(trainer, handoff.RESUME_ENV)
        self.ckpt_path = None if chosen == handoff.NO_CHECKPOINT else chosen
        if self.ckpt_path is None:
            if self.restore_config is not None and self.restore_config.load_model_state:
                load_weights(model, self.restore_config.path)
            return None
        trainer.ckpt_path = self.ckpt_path
        ckpt = getattr(trainer, "checkpoint_callback", None)
        if ckpt is not None and hasattr(ckpt, "protected"):
            ckpt.protected.add(self.ckpt_path.rstrip("/").rsplit("/", 1)[-1])
        return self.ckpt_path

    def check(self, where: str, storage_options: dict[str, Any] | None = None) -> str | None:
        """Raise now what ``resume_if_exists`` would raise for folder ``where`` (training already
        completed, only incomplete checkpoints, nothing found), before the run dir is touched;
        return the path of the checkpoint it would pick (None: none)."""
        if not self.resume_if_exists or self.path:
            return None
        storage = Storage(where, storage_options)
        chosen = self._decide_in(storage).chosen
        return storage.path(chosen.name) if chosen is not None else None

    def _decide_in(self, storage: Storage) -> ResumeDecision:
        decision = decide(storage, self.resume_past_end)
        if decision.chosen is None and not self.resume_ignore_no_checkpoint and self.restore_config is None:
            raise NotFoundError(
                f"AutoResume: no checkpoint found in {storage.url}; set resume.resume_ignore_no_checkpoint=true "
                "to start from scratch"
            )
        return decision

    def _decide(self, trainer: Any) -> str | None:
        if self.path:
            folder, _, name = self.path.rstrip("/").rpartition("/")
            storage = Storage(folder or ".", self.search_dir(trainer)[1])
            if not storage.exists(name):
                raise NotFoundError(f"resume.path={self.path}: no such checkpoint")
            return self.path
        if not self.resume_if_exists:
            return None
        where, options = self.search_dir(trainer)
        storage = Storage(where, options)
        self.decision = self._decide_in(storage)
        if self.decision.chosen is None:
            if self.restore_config is None:
                warnings.warn(f"AutoResume: no checkpoint found in {where}; training from scratch", stacklevel=2)
            return None
        path = storage.path(self.decision.chosen.name)
        for rejected in self.decision.rejected:
            log.warning("damaged checkpoint %s: resuming from %s instead", rejected, path)
        log.info("resuming from %s (%s)", path, self.decision.reason)
        return path


def _alias(name: str, value: str | None, nemo_name: str, nemo_value: str | None) -> str | None:
    if value and nemo_value and value != nemo_value:
        raise ValueError(f"AutoResume: {name}={value!r} and {nemo_name}={nemo_value!r} are one setting (give one)")
    return value or nemo_value


def load_weights(model: Any, path: str, storage_options: dict[str, Any] | None = None) -> None:
    """Initialise ``model``'s weights from a checkpoint or model archive without executing pickle code."""
    import torch

    from expconf.checkpoint.archive import read_archive
    from expconf.checkpoint.io import split

    if path.endswith(".nemo"):
        _, state = read_archive(path, storage_options)
    else:
        folder, name = split(path)
        storage = Storage(folder, storage_options)
        if not storage.exists(name):
            raise FileNotFoundError(f"resume.import_path={path}: no such file")
        with storage.open_read(name) as f:
            loaded = torch.load(f, map_location="cpu", weights_only=True)
        state = loaded.get("state_dict", loaded)
    target = getattr(model, "_orig_mod", model)
    missing, unexpected = target.load_state_dict(state, strict=False)
    if unexpected or missing:
        raise ValueError(
            f"resume.import_path={path}: weights do not fit the model "
            f"(missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})"
        )
