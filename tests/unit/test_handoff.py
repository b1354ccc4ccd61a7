"""expconf.distributed.handoff: decisions exported to children, the job file of DDP children."""

from __future__ import annotations

import os

import pytest

from expconf.distributed import handoff, ranks

pytestmark = pytest.mark.usefixtures("no_launcher")


def test_agree_decides_once_and_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def decide() -> str:
        calls.append(1)
        return "/runs/a"

    monkeypatch.delenv("EXPCONF_TEST_DECISION", raising=False)
    assert handoff.export_decision("EXPCONF_TEST_DECISION", decide) == "/runs/a"
    assert os.environ["EXPCONF_TEST_DECISION"] == "/runs/a"  # children inherit it
    assert handoff.export_decision("EXPCONF_TEST_DECISION", decide) == "/runs/a"
    assert calls == [1]


def test_clean_dist_env_forgets_the_previous_job(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", handoff.RUN_DIR_ENV, handoff.RESUME_ENV):
        monkeypatch.setenv(var, "1")
    handoff.clean_dist_env()
    assert not {"MASTER_PORT", "LOCAL_RANK", "WORLD_SIZE", handoff.RUN_DIR_ENV, handoff.RESUME_ENV} & set(os.environ)


def test_end_of_job_restores_what_the_launcher_gave(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")  # torchrun's, before the job
    monkeypatch.setenv("MASTER_PORT", "29500")
    before = handoff.snapshot_dist_env()
    monkeypatch.setenv("MASTER_PORT", "41000")  # what the job changed or added
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(handoff.RUN_DIR_ENV, "/runs/job1")
    handoff.clean_dist_env(before)
    assert os.environ["RANK"] == "1" and os.environ["MASTER_PORT"] == "29500"
    assert "WORLD_SIZE" not in os.environ and handoff.RUN_DIR_ENV not in os.environ


def test_a_job_handoff_writes_only_for_a_spawned_child_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    job = handoff.ChildJob({"secret": "s3cr3t", "seed": 1}, "expconf.config.model.GPTModelConfig", ["a.B"])
    with handoff.JobHandoff(job) as h:
        assert h._dir is None  # a run that spawns no child writes nothing
        first, second = h.write_for(1), h.write_for(2)
        assert os.stat(first).st_mode & 0o777 == 0o600
        assert os.stat(os.path.dirname(first)).st_mode & 0o777 == 0o700
        monkeypatch.setenv(handoff.CHILD_CONFIG_ENV, first)
        monkeypatch.setenv("LOCAL_RANK", "1")
        assert ranks.is_child()
        assert handoff.read_child_job() == job
        assert not os.path.exists(first) and handoff.CHILD_CONFIG_ENV not in os.environ  # read once
        assert os.path.exists(second)  # a child that never read its file
    assert not os.path.exists(os.path.dirname(second))  # removed when the job ends


def test_two_runs_in_one_process_have_their_own_files() -> None:
    a = handoff.JobHandoff(handoff.ChildJob({"seed": 1}, "m.A"))
    b = handoff.JobHandoff(handoff.ChildJob({"seed": 2}, "m.B"))
    path_a, path_b = a.write_for(1), b.write_for(1)
    assert os.path.dirname(path_a) != os.path.dirname(path_b)
    a.close()
    assert not os.path.exists(path_a) and os.path.exists(path_b)
    b.close()
