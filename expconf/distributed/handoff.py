"""How a run's decisions reach its other ranks and the children it launches.

Two kinds of state cross process boundaries, and this module is the only one that moves them:

- **Decisions** (the run dir, the checkpoint to resume): made once, by the launching process or
  global rank 0 (:func:`agree`), and exported as ``$EXPCONF_RUN_DIR`` / ``$EXPCONF_RESUME_CKPT`` so
  that every rank and relaunched child of *this* run reads the same value. The process remembers
  which values it exported itself: a later run in the same process (a sweep's next job, a second
  ``expconf.run``) decides again, and the run's trainer drops the variables when it is torn down
  (:class:`DecisionScope`); :func:`clean_dist_env` restores the environment after a job.
- **The job** (the resolved config, secrets included): a :class:`JobHandoff` created per run and
  given to the DDP/FSDP strategy. Only when that strategy actually spawns children does it write
  the config to a private file (mode 0600 in a 0700 folder), one per child, whose path alone goes
  into that child's environment as ``$EXPCONF_CHILD_CONFIG``. The child removes its file once read
  (:func:`read_child_job`); :meth:`JobHandoff.close` removes what is left when the job ends. A run
  that spawns nothing writes nothing and sets no variable.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytorch_lightning.callbacks import Callback

from expconf.distributed.ranks import CHILD_CONFIG_ENV, global_rank, launched_externally, world_size_from_env

RUN_DIR_ENV = "EXPCONF_RUN_DIR"
RESUME_ENV = "EXPCONF_RESUME_CKPT"
NO_CHECKPOINT = "<none>"

#: Variables a DDP job leaves behind that would make the next job of a sweep hang.
DIST_ENV_VARS = (
    "LOCAL_RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "RANK",
    "GROUP_RANK",
    RUN_DIR_ENV,
    RESUME_ENV,
    "PL_GLOBAL_SEED",
)

# -- decisions ---------------------------------------------------------------------------------

#: Values this process decided and exported, by variable: what tells a value a launcher handed in
#: from this process's own decision for an earlier run (which must not be reused).
_own: dict[str, str] = {}


def inherited(var: str) -> str | None:
    """The decision a launcher (or the launching process) handed to this one, if any."""
    value = os.environ.get(var)
    if value is None:
        return None
    if _own.get(var) == value and (global_rank() == 0 or launched_externally()):
        return None  # this process's own decision for an earlier run
    return value


def agree(var: str, decide: Callable[[], str]) -> str:
    """The one value of a decision for this run, shared with every rank.

    A value the launching process handed in is used as is. Otherwise this process decides (under
    torchrun or srun: global rank 0 decides, see :mod:`expconf.distributed.agreement`) and exports
    the value, so the children it launches inherit it.
    """
    value = inherited(var)
    if value is not None:
        return value
    os.environ.pop(var, None)
    value = export_decision(var, decide)
    _own[var] = value
    return value


def export_decision(var: str, decide: Callable[[], str]) -> str:
    """The value in ``$var`` if set; otherwise decided here (by rank 0 under torchrun or srun) and exported."""
    if var in os.environ:
        return os.environ[var]
    if launched_externally() and world_size_from_env() > 1:
        from expconf.distributed.agreement import agree_with_rank0

        value = agree_with_rank0(var, decide)
    else:
        value = decide()
    os.environ[var] = value
    return value


def release(var: str) -> None:
    """Forget this process's decision for ``var`` (a value a launcher handed in stays)."""
    value = _own.pop(var, None)
    if value is not None and os.environ.get(var) == value:
        del os.environ[var]


class DecisionScope(Callback):
    """Removes the decisions a run exported once its trainer is torn down (or fails)."""

    def __init__(self) -> None:
        self.vars: set[str] = set()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.release()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.release()

    def release(self) -> None:
        """Forget the decisions of this scope."""
        for var in self.vars:
            release(var)
        self.vars.clear()


def scope_of(trainer: Any, var: str) -> None:
    """Record on ``trainer`` that its run owns the decision in ``var``."""
    callbacks = trainer.callbacks
    scope = next((c for c in callbacks if isinstance(c, DecisionScope)), None)
    if scope is None:
        scope = DecisionScope()
        callbacks.append(scope)
    scope.vars.add(var)


def snapshot_dist_env() -> dict[str, str]:
    """The distributed variables as a job starts (those torchrun or srun gave this process)."""
    return {var: os.environ[var] for var in DIST_ENV_VARS if var in os.environ}


def clean_dist_env(before: dict[str, str] | None = None) -> None:
    """Forget what the previous job of a sweep set: back to ``before`` (its snapshot at start).

    Variables the job's launcher set (MASTER_PORT, WORLD_SIZE, LOCAL_RANK of expconf's own DDP
    launch, the run-dir and resume decisions) are removed; those the process was started with
    (torchrun's RANK, MASTER_ADDR, ...) keep their values, so the next job runs on the same ranks.
    """
    before = before or {}
    for var in DIST_ENV_VARS:
        if var in before:
            os.environ[var] = before[var]
        else:
            os.environ.pop(var, None)


# -- the job, for the children a run spawns ------------------------------------------------------


@dataclass
class ChildJob:
    """What a DDP child needs to rebuild its parent's job."""

    #: The resolved config (secrets included), as composed and resolved by the parent.
    config: dict[str, Any]
    #: ``module.QualName`` of the model config dataclass (a user's own subclass included).
    model_class: str
    #: Targets the parent allowed in code (``expconf.targets.allow``) that this job names.
    trusted: list[str] = field(default_factory=list)


class JobHandoff:
    """One run's resolved config for the DDP children that run spawns; create one per run.

    Nothing is written until :meth:`write_for` is called (by the launcher, when it spawns a child);
    :meth:`close` removes every file written and not yet read. Usable as a context manager.
    """

    def __init__(self, job: ChildJob) -> None:
        self.job = job
        self._dir: str | None = None

    def write_for(self, local_rank: int) -> str:
        """A new private file holding the job for child ``local_rank``; returns its path."""
        import yaml

        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="expconf-child-")  # mode 0700
        path = os.path.join(self._dir, f"rank{local_rank}.yaml")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(
                {"config": self.job.config, "model_class": self.job.model_class, "trusted": self.job.trusted}, f
            )
        return path

    def close(self) -> None:
        """Remove the files of this run's children (those a dead child left unread included)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> JobHandoff:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_child_job() -> ChildJob:
    """In a DDP child: the job its parent wrote; the file is removed once read."""
    import yaml

    path = os.environ.pop(CHILD_CONFIG_ENV)
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    finally:
        os.unlink(path)
    assert isinstance(data, dict)
    return ChildJob(data["config"], data["model_class"], list(data.get("trusted") or []))
