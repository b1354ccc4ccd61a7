"""NeMoLogger: the run dir rules of docs/run-dir-checkpoints-resume.md, the files it writes, per-rank logs, loggers."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import yaml
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from expconf import logger
from expconf.distributed import handoff
from expconf.logger import NeMoLogger
from helpers import quiet_trainer

STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}$")


def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the previous decision, as a new job would."""
    monkeypatch.delenv(handoff.RUN_DIR_ENV, raising=False)


def decide(monkeypatch: pytest.MonkeyPatch, resume_if_exists: bool = False, **kwargs: object) -> Path:
    fresh(monkeypatch)
    return NeMoLogger(**kwargs).decide_run_dir(resume_if_exists)  # type: ignore[arg-type]


def trainer(root: Path) -> pl.Trainer:
    return quiet_trainer(root)


# -- where the run dir is ---------------------------------------------------------------------------------


def test_default_is_nemo_experiments_default_datetime(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = decide(monkeypatch)
    assert run_dir.parent == (workdir / "nemo_experiments" / "default").resolve()
    assert STAMP.match(run_dir.name), run_dir.name
    assert run_dir.is_dir()


def test_log_dir_name_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert decide(monkeypatch, name="gpt", log_dir=str(tmp_path), version="v7") == (tmp_path / "gpt" / "v7").resolve()


def test_resume_if_exists_drops_the_version_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert decide(monkeypatch, True, name="gpt", log_dir=str(tmp_path)) == (tmp_path / "gpt").resolve()
    # An explicit version still wins.
    assert decide(monkeypatch, True, name="gpt", log_dir=str(tmp_path), version="v2") == (tmp_path / "gpt" / "v2")


def test_no_datetime_version_means_no_version_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    got = decide(monkeypatch, name="gpt", log_dir=str(tmp_path), use_datetime_version=False)
    assert got == (tmp_path / "gpt").resolve()


def test_explicit_log_dir_wins_and_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "exactly" / "here"
    with pytest.warns(UserWarning, match="name and version are ignored"):
        got = decide(monkeypatch, name="gpt", version="v3", log_dir=str(tmp_path / "x"), explicit_log_dir=str(target))
    assert got == target.resolve() and target.is_dir()
    assert not (tmp_path / "x").exists()
    with pytest.warns(UserWarning, match="already exists"):
        decide(monkeypatch, explicit_log_dir=str(target))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decide(monkeypatch, explicit_log_dir=str(tmp_path / "brand_new"))


def test_two_runs_in_the_same_second_get_two_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logger.time, "strftime", lambda fmt: "2026-01-01_00-00-00")
    first = decide(monkeypatch, name="gpt", log_dir=str(tmp_path))
    second = decide(monkeypatch, name="gpt", log_dir=str(tmp_path))
    third = decide(monkeypatch, name="gpt", log_dir=str(tmp_path))
    assert first.name == "2026-01-01_00-00-00"
    assert len({first, second, third}) == 3
    assert all(p.is_dir() and p.parent == first.parent for p in (first, second, third))


def test_launcher_decision_is_shared_with_every_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = decide(monkeypatch, name="gpt", log_dir=str(tmp_path))
    assert os.environ[handoff.RUN_DIR_ENV] == str(run_dir)
    # A rank (or relaunched child) seconds later inherits the decision instead of stamping its own.
    monkeypatch.setattr(logger.time, "strftime", lambda fmt: "2099-01-01_00-00-00")
    monkeypatch.setenv("RANK", "1")
    assert NeMoLogger(name="gpt", log_dir=str(tmp_path)).decide_run_dir() == run_dir
    assert [p.name for p in (tmp_path / "gpt").iterdir()] == [run_dir.name]


# -- files in the run dir ---------------------------------------------------------------------------------


def test_run_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "notes.md"
    extra.write_text("hello")
    monkeypatch.setattr(sys, "argv", ["train.py", "trainer.max_steps=5", "log.name=a b"])
    log = NeMoLogger(name="gpt", log_dir=str(tmp_path / "logs"), version="v1", files_to_copy=[str(extra), "nope.txt"])
    fresh(monkeypatch)
    try:
        run_dir = log.setup(
            trainer(tmp_path), task_config={"trainer": {"max_steps": 5}}, overrides=["trainer.max_steps=5"]
        )
    finally:
        log.teardown()
    assert (run_dir / "cmd-args.log").read_text() == "train.py trainer.max_steps=5 'log.name=a b'\n"
    assert (run_dir / "git-info.log").is_file()
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == {"trainer": {"max_steps": 5}}
    assert yaml.safe_load((run_dir / "overrides.yaml").read_text()) == ["trainer.max_steps=5"]
    assert (run_dir / "notes.md").read_text() == "hello"
    assert "files_to_copy: nope.txt does not exist" in (run_dir / "nemo_log_globalrank-0_localrank-0.txt").read_text()


def test_git_info_records_commit_and_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.txt").write_text("one\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    (repo / "a.txt").write_text("two\n")
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)
    info = logger.git_info()
    assert commit in info and "+two" in info
    monkeypatch.chdir(tmp_path)
    assert "not a git repository" in logger.git_info()


def test_resume_moves_previous_files_into_run_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notes = tmp_path / "notes.md"

    def run(argv: str) -> Path:
        monkeypatch.setattr(sys, "argv", [argv])
        notes.write_text({"first": "v1", "second": "v2"}.get(argv, "v3"))
        fresh(monkeypatch)
        log = NeMoLogger(name="gpt", log_dir=str(tmp_path), files_to_copy=[str(notes)])
        try:
            return log.setup(trainer(tmp_path), resume_if_exists=True)
        finally:
            log.teardown()

    run_dir = run("first")
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    (run_dir / "user_notes.txt").write_text("not written by expconf")
    assert run("second") == run_dir
    assert (run_dir / "run_0" / "cmd-args.log").read_text() == "first\n"
    assert (run_dir / "cmd-args.log").read_text() == "second\n"
    run("third")
    assert (run_dir / "run_1" / "cmd-args.log").read_text() == "second\n"
    assert (run_dir / "run_0" / "cmd-args.log").read_text() == "first\n"
    assert (run_dir / "run_1" / "nemo_log_globalrank-0_localrank-0.txt").is_file()
    assert (run_dir / "checkpoints").is_dir() and not (run_dir / "run_1" / "checkpoints").exists()
    assert (run_dir / "user_notes.txt").is_file(), "only the files a run writes move"
    assert (run_dir / "run_0" / "notes.md").read_text() == "v1", "copies of files_to_copy move too"
    assert (run_dir / "run_1" / "notes.md").read_text() == "v2"
    assert (run_dir / "notes.md").read_text() == "v3"


# -- per-rank log files -----------------------------------------------------------------------------------


def test_rank_0_only_flags_both_true_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="log_local_rank_0_only and log_global_rank_0_only"):
        NeMoLogger(log_local_rank_0_only=True, log_global_rank_0_only=True)


@pytest.mark.parametrize(
    ("rank", "local", "flags", "writes"),
    [
        (0, 0, {}, True),
        (3, 1, {}, True),
        (3, 1, {"log_global_rank_0_only": True}, False),
        (2, 0, {"log_global_rank_0_only": True}, False),
        (2, 0, {"log_local_rank_0_only": True}, True),
        (3, 1, {"log_local_rank_0_only": True}, False),
        (0, 0, {"log_global_rank_0_only": True}, True),
    ],
)
def test_per_rank_log_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rank: int, local: int, flags: dict[str, bool], writes: bool
) -> None:
    t = trainer(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setenv(handoff.RUN_DIR_ENV, str(run_dir))  # decided by the launcher
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(local))
    log = NeMoLogger(name="gpt", **flags)  # type: ignore[arg-type]
    try:
        log.setup(t)
        logging.getLogger("expconf").info("hello from rank %d", rank)
    finally:
        log.teardown()
    own = run_dir / f"nemo_log_globalrank-{rank}_localrank-{local}.txt"
    assert own.is_file() == writes
    if writes:
        assert f"hello from rank {rank}" in own.read_text()
    assert (run_dir / "cmd-args.log").is_file() == (rank == 0), "only global rank 0 writes the run files"


# -- loggers ----------------------------------------------------------------------------------------------


def test_tensorboard_true_adds_one_under_the_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The object adds no TensorBoard logger by default, as NeMo's (the CLI config turns it on)."""
    t = trainer(tmp_path)
    fresh(monkeypatch)
    log = NeMoLogger(name="gpt", log_dir=str(tmp_path), version="v1", tensorboard=True)
    try:
        run_dir = log.setup(t)
    finally:
        log.teardown()
    [tb] = [lg for lg in t.loggers if isinstance(lg, TensorBoardLogger)]
    assert Path(tb.log_dir) == run_dir / "tb_logs"
    plain = trainer(tmp_path)
    fresh(monkeypatch)
    NeMoLogger(name="gpt", log_dir=str(tmp_path), version="v2").setup(plain)
    assert plain.loggers == []


@pytest.mark.parametrize("update", [True, False])
def test_update_logger_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, update: bool) -> None:
    elsewhere = tmp_path / "elsewhere"
    tb = TensorBoardLogger(save_dir=str(elsewhere), name="tb")
    wandb = WandbLogger(project=None, name=None, save_dir=str(elsewhere), offline=True)
    t = trainer(tmp_path)
    fresh(monkeypatch)
    log = NeMoLogger(
        name="gpt", log_dir=str(tmp_path), version="v1", tensorboard=tb, wandb=wandb, update_logger_directory=update
    )
    try:
        run_dir = log.setup(t)
    finally:
        log.teardown()
    assert t.loggers == [tb, wandb]
    if update:
        assert Path(tb.log_dir) == run_dir / "tb"
        assert wandb.save_dir == str(run_dir) and wandb._wandb_init["dir"] == str(run_dir)
    else:
        assert Path(tb.log_dir).parent.parent == elsewhere
        assert wandb.save_dir == str(elsewhere)


def test_wandb_run_id_is_kept_for_the_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def setup() -> WandbLogger:
        wandb = WandbLogger(project=None, name=None, offline=True)
        fresh(monkeypatch)
        log = NeMoLogger(name="gpt", log_dir=str(tmp_path), wandb=wandb)
        try:
            log.setup(trainer(tmp_path), resume_if_exists=True)
        finally:
            log.teardown()
        return wandb

    first, second = setup(), setup()
    run_id = first._wandb_init["id"]
    assert run_id and second._wandb_init["id"] == run_id and second.version == run_id
    assert second._wandb_init["resume"] == "allow"
    assert first._wandb_init["name"] == "gpt"  # W&B run named after the experiment when unnamed


def test_a_rank_joining_a_decided_dir_moves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = decide(monkeypatch, True, name="gpt", log_dir=str(tmp_path))
    (run_dir / "nemo_log_globalrank-0_localrank-0.txt").write_text("this run's rank 0 log")
    monkeypatch.setenv("RANK", "1")
    assert NeMoLogger(name="gpt", log_dir=str(tmp_path)).decide_run_dir(True) == run_dir
    assert not list(run_dir.glob("run_*"))


def test_wandb_from_the_config_tree_lands_in_the_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from expconf.build import build_logger
    from expconf.config.log import LogConfig, WandbConfig

    cfg = LogConfig(name="gpt", log_dir=str(tmp_path), version="v1", wandb=WandbConfig(project="proj", offline=True))
    log = build_logger(cfg)
    t = trainer(tmp_path)
    fresh(monkeypatch)
    try:
        run_dir = log.setup(t)
    finally:
        log.teardown()
    [wandb] = [lg for lg in t.loggers if isinstance(lg, WandbLogger)]
    assert wandb.save_dir == str(run_dir) and wandb._wandb_init["project"] == "proj"
    assert (run_dir / ".wandb_run_id").read_text() == wandb.version
    assert any(isinstance(lg, TensorBoardLogger) for lg in t.loggers)
    off = build_logger(LogConfig(name="gpt"))
    assert off.wandb is None
