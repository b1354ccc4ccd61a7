"""The run dir's layout: where a run's folder, checkpoints and TensorBoard files live.

Every place that needs "where do the checkpoints of this run live" asks this module, so the
writer (``NeMoLogger`` / ``ModelCheckpoint``), the resume search (``AutoResume``, the check before
a run dir is touched) and ``python -m expconf.runs`` always agree. Light: no torch, no Lightning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import overload

#: Root of all runs when ``log.log_dir`` is not set.
DEFAULT_LOG_DIR = "nemo_experiments"
#: The checkpoint folder inside a run dir (unless ``log.ckpt.dirpath`` names another).
CHECKPOINTS = "checkpoints"
#: The TensorBoard folder inside a run dir (``log.tensorboard.name``'s default).
TB_LOGS = "tb_logs"


def experiment_dir(log_dir: str | None, name: str) -> Path:
    """``<log_dir>/<name>``: the folder of one experiment's runs (``log_dir`` null: ./nemo_experiments)."""
    return Path(log_dir or DEFAULT_LOG_DIR) / name


def checkpoint_dir(run_dir: str | os.PathLike[str], dirpath: str | os.PathLike[str] | None = None) -> str:
    """Where checkpoints are written: ``dirpath`` when set, else ``<run dir>/checkpoints``."""
    if dirpath:
        return str(dirpath)
    return f"{run_dir}/{CHECKPOINTS}"


@overload
def resume_dir(
    run_dir: str | os.PathLike[str],
    ckpt_dirpath: str | os.PathLike[str] | None = None,
    resume_dirpath: str | None = None,
) -> str: ...


@overload
def resume_dir(
    run_dir: None,
    ckpt_dirpath: str | os.PathLike[str] | None = None,
    resume_dirpath: str | None = None,
) -> str | None: ...


def resume_dir(
    run_dir: str | os.PathLike[str] | None,
    ckpt_dirpath: str | os.PathLike[str] | None = None,
    resume_dirpath: str | None = None,
) -> str | None:
    """Where ``resume_if_exists`` looks: ``resume.dirpath``, else the checkpoint folder.

    None when neither dirpath is set and the run dir is not known yet (a new datetime version).
    """
    if resume_dirpath:
        return str(resume_dirpath)
    if ckpt_dirpath:
        return str(ckpt_dirpath)
    return None if run_dir is None else checkpoint_dir(run_dir)
