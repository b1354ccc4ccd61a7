"""Ranks from launcher variables and the launcher Lightning picks (SLURM, torchrun, expconf's children)."""

from __future__ import annotations

import pytest

from expconf.distributed import ranks

pytestmark = pytest.mark.usefixtures("no_launcher")


def test_ranks_from_torchrun_and_slurm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (ranks.global_rank(), ranks.local_rank(), ranks.world_size_from_env()) == (0, 0, 1)
    assert not ranks.launched_externally()
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.setenv("SLURM_PROCID", "5")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert (ranks.global_rank(), ranks.local_rank(), ranks.world_size_from_env()) == (5, 1, 8)
    assert ranks.launched_externally()
    monkeypatch.setenv("SLURM_NTASKS", "1")  # one task that starts its own ranks
    assert not ranks.launched_externally()
    for var in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "r")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert (ranks.global_rank(), ranks.local_rank(), ranks.world_size_from_env()) == (3, 1, 4)
    assert ranks.launched_externally()


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

    from expconf.distributed.ddp import ExpconfDDPStrategy

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


@pytest.mark.parametrize(
    ("env", "refused"),
    [
        ({"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "train"}, True),  # srun --ntasks=4: Lightning refuses it
        ({"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NAME": "train"}, False),
        ({"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "train"}, False),  # one task starts its own ranks
        ({"SLURM_NTASKS": "4", "SLURM_JOB_NAME": "bash"}, False),  # an interactive allocation
        ({}, False),
    ],
)
def test_a_slurm_job_with_ntasks_alone_is_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], refused: bool
) -> None:
    from expconf.errors import ConfigError

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    if not refused:
        ranks.check_slurm_tasks()
        return
    with pytest.raises(ConfigError) as info:
        ranks.check_slurm_tasks()
    assert str(info.value) == (
        "SLURM_NTASKS=4: expected tasks asked for per node: sbatch/srun --ntasks-per-node=4 (with --nodes)"
        " (Lightning refuses --ntasks alone)"
    )
