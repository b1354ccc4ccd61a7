"""``NeMoLogger``: decides and fills the run dir, and wires loggers and checkpointing into a Trainer."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import yaml
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from pytorch_lightning.core.saving import save_hparams_to_yaml
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from expconf.checkpoint.callback import ModelCheckpoint
from expconf.checkpoint.io import StorageCheckpointIO
from expconf.checkpoint.naming import LAST_SUFFIX, default_template
from expconf.config.log import check_name, check_rank_0_only
from expconf.distributed import handoff, ranks
from expconf.lightning_internals import (
    forget_wandb_experiment,
    point_logger_at,
    set_default_root_dir,
    set_wandb_id,
    set_wandb_name,
    set_wandb_save_dir,
    wandb_experiment,
    wandb_init_args,
)
from expconf.redact import RedactingFilter, collect_secrets, redact, redact_text
from expconf.rundir import DEFAULT_LOG_DIR, TB_LOGS, checkpoint_dir, experiment_dir
from expconf.storage import is_remote

log = logging.getLogger("expconf")

DATETIME_FORMAT = "%Y-%m-%d_%H-%M-%S"
WANDB_ID_FILE = ".wandb_run_id"
RANK_LOG = "nemo_log_globalrank-{g}_localrank-{l}.txt"
# Lightning's loggers stop propagating to the root logger when it had no handler at their import;
# the file handler then joins them directly (never both, or every line is written twice).
LOGGER_NAMES = ("", "pytorch_lightning", "lightning_fabric", "lightning.pytorch")


def _needs_own_handler(name: str) -> bool:
    return name == "" or not logging.getLogger(name).propagate


class RunDirTensorBoardLogger(TensorBoardLogger):
    """Lightning's TensorBoardLogger, for a run dir on local disk.

    Lightning's ``save()`` asks whether the log dir is on object storage by importing s3fs,
    adlfs and gcsfs when they are installed (about 0.3 s for s3fs and aiobotocore, which expconf
    installs for ``s3://`` checkpoints); a local dir cannot be, so ``os.path`` answers instead.
    """

    @rank_zero_only
    def save(self) -> None:
        """Flush the event file and write hparams.yaml once, as Lightning does."""
        if is_remote(self.log_dir):
            super().save()
            return
        super(TensorBoardLogger, self).save()  # the event-file flush of Lightning's base class
        hparams_file = os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)
        if os.path.isdir(self.log_dir) and not os.path.isfile(hparams_file):
            if self.hparams:
                save_hparams_to_yaml(hparams_file, self.hparams)  # probes the filesystem too
            else:
                Path(hparams_file).write_text("{}\n")


class AppState(os.PathLike):  # type: ignore[type-arg]
    """What ``NeMoLogger.setup`` decided, with the fields of NeMo's ``AppState``.

    ``log_dir`` is the run dir, ``exp_dir`` the root above the experiment folders, ``name`` and
    ``version`` the experiment name and version folder (None without one). It also stands for
    the run dir itself: ``str()``, ``os.fspath()``, ``/`` and Path methods act on ``log_dir``
    (``.name`` is the experiment's name, as in NeMo; the folder's is ``log_dir.name``).
    """

    def __init__(
        self,
        log_dir: Path,
        exp_dir: Path,
        name: str,
        version: str | None,
        files_to_copy: list[str],
        cmd_args: list[str],
    ) -> None:
        self.log_dir = log_dir
        self.exp_dir = exp_dir
        self.name = name
        self.version = version
        self.files_to_copy = files_to_copy
        self.cmd_args = cmd_args

    def __fspath__(self) -> str:
        return str(self.log_dir)

    def __str__(self) -> str:
        return str(self.log_dir)

    def __repr__(self) -> str:
        return f"AppState(log_dir={str(self.log_dir)!r}, name={self.name!r}, version={self.version!r})"

    def __truediv__(self, other: str | os.PathLike[str]) -> Path:
        return self.log_dir / other

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AppState):
            return self.log_dir == other.log_dir
        return self.log_dir == other if isinstance(other, Path) else NotImplemented

    def __hash__(self) -> int:
        return hash(self.log_dir)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self.log_dir, attr)


class NeMoLogger:
    """Experiment logging of NeMo 2.0 with the same keyword arguments.

    ``setup(trainer)`` decides the run dir once for all ranks, writes the run files, points the
    loggers at it and installs ``ckpt``. Defaults are NeMo's: no TensorBoard logger of its own
    (``tensorboard=True`` adds one under the run dir) and no checkpoint callback unless ``ckpt``
    is given; the Trainer's own loggers and checkpoint callbacks are kept.
    """

    def __init__(
        self,
        name: str = "default",
        log_dir: str | None = None,
        explicit_log_dir: str | None = None,
        version: str | None = None,
        use_datetime_version: bool = True,
        log_local_rank_0_only: bool = False,
        log_global_rank_0_only: bool = False,
        files_to_copy: list[str] | None = None,
        update_logger_directory: bool = True,
        wandb: WandbLogger | None = None,
        tensorboard: TensorBoardLogger | bool | None = None,
        extra_loggers: list[Logger] | None = None,
        ckpt: ModelCheckpoint | LightningModelCheckpoint | None = None,
    ) -> None:
        check_rank_0_only("NeMoLogger.", log_local_rank_0_only, log_global_rank_0_only)
        self.name = name or "default"
        check_name("name", self.name)  # each a single folder name: no '..', '/', control characters
        check_name("version", "v" if version is None else version)
        self.log_dir = log_dir
        self.explicit_log_dir = explicit_log_dir
        self.version = version
        self.use_datetime_version = use_datetime_version
        self.log_local_rank_0_only = log_local_rank_0_only
        self.log_global_rank_0_only = log_global_rank_0_only
        self.files_to_copy = files_to_copy or []
        self.update_logger_directory = update_logger_directory
        self.wandb = wandb
        self.tensorboard = tensorboard
        self.extra_loggers = list(extra_loggers or [])
        self.ckpt = ckpt
        self.run_dir: Path | None = None
        self._file_handler: logging.Handler | None = None

    # -- the run dir ----------------------------------------------------------------------------
    def planned_run_dir(self, resume_if_exists: bool = False) -> Path | None:
        """The run dir when it does not depend on the clock (None for a new datetime version);
        no side effects. A decision a launcher already made wins."""
        handed = handoff.inherited(handoff.RUN_DIR_ENV)
        if handed is not None:
            return Path(handed)
        if self.explicit_log_dir:
            return Path(self.explicit_log_dir)
        base = experiment_dir(self.log_dir, self.name)
        if self.version:
            return base / str(self.version)
        if resume_if_exists or not self.use_datetime_version:
            return base
        return None

    def decide_run_dir(self, resume_if_exists: bool = False) -> Path:
        """Pick (and, for new versions, exclusively create) the run dir; shared with every rank."""

        def decide() -> str:
            if self.explicit_log_dir:
                if self.version or self.name != "default":
                    warnings.warn("NeMoLogger: explicit_log_dir is set, so name and version are ignored", stacklevel=3)
                if Path(self.explicit_log_dir).exists():
                    warnings.warn(f"NeMoLogger: explicit_log_dir {self.explicit_log_dir} already exists", stacklevel=3)
            planned = self.planned_run_dir(resume_if_exists)
            if planned is not None:
                return reuse(planned)
            base = experiment_dir(self.log_dir, self.name)
            return str(create_exclusive(base, time.strftime(DATETIME_FORMAT)).resolve())

        def reuse(path: Path) -> str:
            # The previous run's files move away before any rank learns the dir (and opens its
            # log file there), so no rank's new file can be swept into run_<k>/.
            path.mkdir(parents=True, exist_ok=True)
            archive_previous_files(path, self.files_to_copy)
            return str(path.resolve())

        self.run_dir = Path(handoff.agree(handoff.RUN_DIR_ENV, decide))
        return self.run_dir

    # -- setup ----------------------------------------------------------------------------------
    def setup(
        self,
        trainer: pl.Trainer,
        resume_if_exists: bool = False,
        task_config: dict[str, Any] | None = None,
        overrides: list[str] | None = None,
    ) -> AppState:
        """Decide the run dir, write its files and wire loggers and checkpointing into ``trainer``;
        returns NeMo's ``AppState`` fields (also usable as the run dir's path)."""
        run_dir = self.decide_run_dir(resume_if_exists)
        handoff.scope_of(trainer, handoff.RUN_DIR_ENV)
        rank, local = ranks.global_rank(), ranks.local_rank()
        secrets = collect_secrets(task_config or {})
        # by key: not every option is secret (a plain Lightning ModelCheckpoint has none)
        secrets += collect_secrets(dict(getattr(self.ckpt, "storage_options", None) or {}))
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
        # The log file opens before the run files are written, so their warnings land in it.
        self._attach_file_log(run_dir, rank, local)
        if rank == 0:
            self._write_run_files(run_dir, task_config, overrides, secrets)
        set_default_root_dir(trainer, str(run_dir))
        self._attach_loggers(trainer, run_dir)
        self._attach_checkpointing(trainer, run_dir)
        return self.app_state(run_dir, resume_if_exists)

    def app_state(self, run_dir: Path, resume_if_exists: bool = False) -> AppState:
        """The ``AppState`` of ``run_dir`` as decided for this logger."""
        if self.explicit_log_dir:
            return AppState(run_dir, run_dir, "", "", self.files_to_copy, list(sys.argv))
        base = Path(self.log_dir or DEFAULT_LOG_DIR).resolve()
        version = None if run_dir == (base / self.name) else run_dir.name
        return AppState(run_dir, base, self.name, version, self.files_to_copy, list(sys.argv))

    def _write_run_files(
        self,
        run_dir: Path,
        task_config: dict[str, Any] | None,
        overrides: list[str] | None,
        secrets: list[str],
    ) -> None:
        argv = " ".join(shlex.quote(str(a)) for a in redact(list(sys.argv), secrets))
        (run_dir / "cmd-args.log").write_text(argv + "\n")
        (run_dir / "git-info.log").write_text(redact_text(git_info(), secrets))
        if task_config is not None:
            (run_dir / "config.yaml").write_text(yaml.safe_dump(redact(task_config, secrets), sort_keys=False))
        if overrides is not None:
            (run_dir / "overrides.yaml").write_text(yaml.safe_dump(redact(list(overrides), secrets)))
        for f in self.files_to_copy:
            src = Path(f)
            if src.is_file():
                shutil.copy2(src, run_dir / src.name)
            else:
                log.warning("files_to_copy: %s does not exist, skipped", f)

    def _attach_file_log(self, run_dir: Path, rank: int, local: int) -> None:
        if self.log_global_rank_0_only and rank != 0:
            return
        if self.log_local_rank_0_only and local != 0:
            return
        self.teardown()
        handler = logging.FileHandler(run_dir / RANK_LOG.format(g=rank, l=local))
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s"))
        handler.setLevel(logging.INFO)
        handler.addFilter(RedactingFilter())  # secrets never reach a log file
        for name in LOGGER_NAMES:
            if _needs_own_handler(name):
                logging.getLogger(name).addHandler(handler)
        logging.getLogger("expconf").setLevel(logging.INFO)
        logging.captureWarnings(True)
        self._file_handler = handler

    def _attach_loggers(self, trainer: pl.Trainer, run_dir: Path) -> None:
        """The Trainer's own loggers stay (pointed at the run dir when ``update_logger_directory``);
        a TensorBoard logger given here takes the place of the Trainer's own TensorBoard logger."""
        if self.tensorboard is True:
            self.tensorboard = RunDirTensorBoardLogger(
                save_dir=str(run_dir), name=TB_LOGS, version="", default_hp_metric=False
            )
        tensorboard = self.tensorboard if isinstance(self.tensorboard, TensorBoardLogger) else None
        own = [lg for lg in trainer.loggers if not (tensorboard is not None and isinstance(lg, TensorBoardLogger))]
        loggers: list[Logger] = [*own]
        if tensorboard is not None:
            loggers.append(tensorboard)
        if self.wandb is not None:
            self._prepare_wandb(self.wandb, run_dir)
            loggers.append(self.wandb)
        loggers.extend(lg for lg in self.extra_loggers if lg not in loggers)
        if self.update_logger_directory:
            for lg in loggers:
                if not isinstance(lg, WandbLogger):
                    point_logger_at(lg, str(run_dir))
        trainer.loggers = loggers

    def _prepare_wandb(self, wandb: WandbLogger, run_dir: Path) -> None:
        """Point W&B at the run dir and reuse the run id a previous run of this dir created."""
        init = wandb_init_args(wandb)
        if self.update_logger_directory:
            set_wandb_save_dir(wandb, str(run_dir))
        if init.get("name") is None:
            set_wandb_name(wandb, self.name)
        id_file = run_dir / WANDB_ID_FILE
        run_id = init.get("id")
        if run_id is None and id_file.is_file():
            run_id = id_file.read_text().strip()
        if run_id is None:
            # W&B run ids are short lowercase alphanumerics; wandb's own generator moved between releases.
            run_id = uuid.uuid4().hex[:8]
        set_wandb_id(wandb, run_id)
        init.setdefault("resume", "allow")
        if ranks.global_rank() == 0:
            id_file.write_text(str(run_id))

    def _attach_checkpointing(self, trainer: pl.Trainer, run_dir: Path) -> None:
        """Install ``ckpt`` (in place of the Trainer's own checkpoint callback, as NeMo does) and
        give every checkpoint callback without a dirpath or filename the run dir's."""
        callbacks = list(trainer.callbacks)  # type: ignore[attr-defined]
        if self.ckpt is not None:
            if isinstance(self.ckpt, ModelCheckpoint):
                self.ckpt.name = self.name
                self.ckpt.storage = None  # re-resolved from the final dirpath
            mine = [i for i, c in enumerate(callbacks) if _is_checkpoint_callback(c)]
            if mine and callbacks[mine[0]] is not self.ckpt:
                log.warning("the Trainer's own checkpoint callback is replaced by NeMoLogger's ckpt")
            if mine:
                callbacks[mine[0]] = self.ckpt
            else:
                callbacks.append(self.ckpt)
            trainer.callbacks = callbacks  # type: ignore[attr-defined]
        for c in callbacks:
            if not _is_checkpoint_callback(c):
                continue
            if not c.dirpath:
                c.dirpath = checkpoint_dir(run_dir)
            if isinstance(c, (LightningModelCheckpoint, ModelCheckpoint)):
                c.filename = c.filename or default_template(self.name, c.monitor)
                c.CHECKPOINT_NAME_LAST = c.filename + LAST_SUFFIX  # as NeMo: '<filename>-last'
        expconf_ckpt = next((c for c in callbacks if isinstance(c, ModelCheckpoint)), None)
        if expconf_ckpt is not None:
            expconf_ckpt.storage = None
            trainer.strategy.checkpoint_io = StorageCheckpointIO(expconf_ckpt.storage_options)

    def finish(self, exit_code: int = 0) -> None:
        """Finish the W&B run this logger started, so its files are complete when ``train`` returns
        and a later run in the same process starts (or resumes) its own run instead of reusing it."""
        experiment = wandb_experiment(self.wandb) if self.wandb is not None else None
        if experiment is not None and hasattr(experiment, "finish"):
            experiment.finish(exit_code=exit_code)
            forget_wandb_experiment(self.wandb)  # type: ignore[arg-type]  # a later use resumes the same id

    def teardown(self) -> None:
        """Detach the per-rank log file."""
        if self._file_handler is not None:
            for name in LOGGER_NAMES:
                logging.getLogger(name).removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None


def _is_checkpoint_callback(c: object) -> bool:
    return isinstance(c, (ModelCheckpoint, LightningModelCheckpoint))


def create_exclusive(base: Path, version: str) -> Path:
    """Create ``base/version`` atomically; on collision try ``version_1``, ``version_2``, ..."""
    base.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        path = base / (version if i == 0 else f"{version}_{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run dir under {base}")


#: The top-level files a run writes; only these (and copies of ``files_to_copy``) move to ``run_<k>/``.
RUN_FILES = ("cmd-args.log", "git-info.log", "config.yaml", "overrides.yaml")


def archive_previous_files(run_dir: Path, copied: list[str] | None = None) -> Path | None:
    """Move a previous run's top-level files into ``run_<k>/`` so a resumed run never overwrites them.

    Only files a run writes are moved (``RUN_FILES``, per-rank logs, copies of ``copied``), so
    an ``explicit_log_dir`` that also holds other files keeps them in place.
    """
    names = {*RUN_FILES, *(Path(f).name for f in copied or [])}
    files = [
        p
        for p in run_dir.iterdir()
        if p.is_file() and (p.name in names or (p.name.startswith("nemo_log_") and p.name.endswith(".txt")))
    ]
    if not files:
        return None
    k = 0
    while (run_dir / f"run_{k}").exists():
        k += 1
    dest = run_dir / f"run_{k}"
    dest.mkdir()
    for p in files:
        os.replace(p, dest / p.name)
    return dest


def git_info() -> str:
    """Commit and diff of the current working directory's repository, when it is one."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
        if commit.returncode != 0:
            return "not a git repository\n"
        diff = subprocess.run(["git", "diff", "HEAD"], capture_output=True, text=True, timeout=10, check=False)
        return f"commit: {commit.stdout.strip()}\n\n{diff.stdout}"
    except (OSError, subprocess.TimeoutExpired):
        return "git not available\n"
