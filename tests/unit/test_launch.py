"""Ranks from launcher variables, shared decisions (env, torchrun's store, files) and SLURM detection."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from expconf import launch
from expconf.distributed import agree_with_rank0, agreement_key

DIST_VARS = (
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "PL_GLOBAL_SEED",
)


@pytest.fixture(autouse=True)
def _no_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith(("SLURM_", "TORCHELASTIC_", "PMI_", "OMPI_")) or var in DIST_VARS:
            monkeypatch.delenv(var)


def test_ranks_from_torchrun_and_slurm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (launch.global_rank(), launch.local_rank(), launch.world_size_from_env()) == (0, 0, 1)
    assert not launch.launched_externally()
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert (launch.global_rank(), launch.local_rank(), launch.world_size_from_env()) == (5, 1, 8)
    assert launch.launched_externally()
    monkeypatch.setenv("SLURM_NTASKS", "1")  # one task that starts its own ranks
    assert not launch.launched_externally()
    for var in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "r")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (launch.global_rank(), launch.local_rank(), launch.world_size_from_env()) == (3, 1, 4)
    assert launch.launched_externally()


def test_agree_decides_once_and_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def decide() -> str:
        calls.append(1)
        return "/runs/a"

    monkeypatch.delenv("EXPCONF_TEST_DECISION", raising=False)
    assert launch.agree("EXPCONF_TEST_DECISION", decide) == "/runs/a"
    assert os.environ["EXPCONF_TEST_DECISION"] == "/runs/a"  # children inherit it
    assert launch.agree("EXPCONF_TEST_DECISION", decide) == "/runs/a"
    assert calls == [1]


def test_clean_dist_env_forgets_the_previous_job(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", launch.RUN_DIR_ENV, launch.RESUME_ENV):
        monkeypatch.setenv(var, "1")
    launch.clean_dist_env()
    assert not {"MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", launch.RUN_DIR_ENV, launch.RESUME_ENV} & set(os.environ)


def test_end_of_job_restores_what_the_launcher_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")  # torchrun's, before the job
    monkeypatch.setenv("MASTER_PORT", "29500")
    before = launch.snapshot_dist_env()
    monkeypatch.setenv("MASTER_PORT", "41000")  # what the job changed or added
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(launch.RUN_DIR_ENV, "/runs/job1")
    launch.clean_dist_env(before)
    assert os.environ["RANK"] == "1" and os.environ["MASTER_PORT"] == "29500"
    assert "WORLD_SIZE" not in os.environ and launch.RUN_DIR_ENV not in os.environ


def _other_rank(fn: object, out: list[str]) -> threading.Thread:
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)  # type: ignore[operator]
    t.start()
    return t


def test_torchrun_ranks_agree_through_the_agent_store(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.distributed import TCPStore

    agent = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # what torchrun's agent serves
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(agent.port))
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job")

    def never() -> str:
        raise AssertionError("only rank 0 decides")

    got: list[str] = []
    waiting = _other_rank(lambda: agree_with_rank0("RUN", never, timeout_s=60, rank=1, round_=0), got)
    assert agree_with_rank0("RUN", lambda: "dir-A", rank=0, round_=0) == "dir-A"
    waiting.join(60)
    assert got == ["dir-A"]
    # An elastic restart is a new attempt: a new key, so a new decision rather than the old value.
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    assert agreement_key("RUN") == "expconf/job/1/RUN/0"
    waiting = _other_rank(lambda: agree_with_rank0("RUN", never, timeout_s=60, rank=1, round_=0), got)
    assert agree_with_rank0("RUN", lambda: "dir-B", rank=0, round_=0) == "dir-B"
    waiting.join(60)
    assert got == ["dir-A", "dir-B"]


def test_the_next_sweep_job_waits_for_its_own_decision(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPCONF_AGREE_DIR", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert agree_with_rank0("RUN", lambda: "job-1", rank=0, round_=0) == "job-1"
    got: list[str] = []
    waiting = _other_rank(lambda: agree_with_rank0("RUN", lambda: "wrong", timeout_s=60, rank=1, round_=1), got)
    waiting.join(0.5)
    assert waiting.is_alive() and not got  # job 1's value is not job 2's
    assert agree_with_rank0("RUN", lambda: "job-2", rank=0, round_=1) == "job-2"
    waiting.join(60)
    assert got == ["job-2"]
    # Without an explicit round, each call of a process is the next round.
    assert agree_with_rank0("OTHER", lambda: "a", rank=0) == "a"
    assert agree_with_rank0("OTHER", lambda: "b", rank=0) == "b"
    assert sorted(p.read_text() for p in (tmp_path / "agree").glob("*OTHER*")) == ["a", "b"]


def test_srun_ranks_agree_through_a_shared_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPCONF_AGREE_DIR", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    got: list[str] = []
    waiting = _other_rank(lambda: agree_with_rank0("RUN", lambda: "wrong", timeout_s=60, rank=1, round_=0), got)
    assert agree_with_rank0("RUN", lambda: "dir-S", rank=0, round_=0) == "dir-S"
    waiting.join(60)
    assert got == ["dir-S"]
    # A file a previous launch with the same job id left behind is not this launch's decision.
    stale = next((tmp_path / "agree").iterdir())
    os.utime(stale, (1e9, 1e9))
    with pytest.raises(TimeoutError):
        agree_with_rank0("RUN", lambda: "wrong", timeout_s=0.3, rank=1, round_=0)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # a requeued job decides again
    with pytest.raises(TimeoutError, match="EXPCONF_AGREE_DIR"):
        agree_with_rank0("RUN", lambda: "wrong", timeout_s=0.3, rank=1, round_=0)


def test_agree_under_srun_goes_through_rank0(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EXPCONF_AGREE_DIR", str(tmp_path))
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.delenv("EXPCONF_TEST_DECISION", raising=False)
    assert launch.agree("EXPCONF_TEST_DECISION", lambda: "dir-0") == "dir-0"
    [published] = (tmp_path / "agree").iterdir()
    assert published.read_text() == "dir-0" and "9" in published.name


def test_config_digest_ignores_key_order() -> None:
    a = {"optim": {"lr": 1e-3, "betas": [0.9, 0.95]}, "seed": 1}
    b = {"seed": 1, "optim": {"betas": [0.9, 0.95], "lr": 0.001}}
    assert launch.config_digest(a) == launch.config_digest(b)
    assert launch.config_digest(a) != launch.config_digest({**a, "seed": 2})


SLURM_ONE_TASK = {
    "SLURM_JOB_ID": "123",
    "SLURM_JOB_NAME": "expconf",
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "localhost",
}


def _trainer(**overrides: object) -> object:
    from expconf.build import build_trainer
    from expconf.config.root import RootConfig

    root = RootConfig()
    root.trainer.accelerator = "cpu"
    root.trainer.enable_progress_bar = False
    for k, v in overrides.items():
        setattr(root.trainer, k, v)
    return build_trainer(root, [])


def test_slurm_environment_detected_for_a_one_task_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    trainer: object = _trainer()
    assert isinstance(trainer._accelerator_connector.cluster_environment, LightningEnvironment)  # type: ignore[attr-defined]
    for k, v in SLURM_ONE_TASK.items():
        monkeypatch.setenv(k, v)
    trainer = _trainer()
    env = trainer._accelerator_connector.cluster_environment  # type: ignore[attr-defined]
    assert isinstance(env, SLURMEnvironment)
    assert (env.global_rank(), env.world_size(), env.main_address) == (0, 1, "localhost")


def test_srun_ranks_are_slurm_tasks_not_expconf_children(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_fabric.plugins.environments import SLURMEnvironment

    from expconf.launch_ddp import ExpconfDDPStrategy

    for k, v in {
        **SLURM_ONE_TASK,
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "2",
        "SLURM_PROCID": "1",
        "SLURM_LOCALID": "1",
    }.items():
        monkeypatch.setenv(k, v)
    trainer: object = _trainer(devices=2, strategy="ddp")
    strategy = trainer.strategy  # type: ignore[attr-defined]
    assert not isinstance(strategy, ExpconfDDPStrategy)  # srun started every rank
    assert isinstance(strategy.cluster_environment, SLURMEnvironment)
    assert strategy.cluster_environment.creates_processes_externally
    assert (trainer.global_rank, trainer.local_rank, trainer.world_size) == (1, 1, 2)  # type: ignore[attr-defined]
    for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(k)
    assert isinstance(_trainer(devices=2, strategy="ddp").strategy, ExpconfDDPStrategy)  # type: ignore[attr-defined]
