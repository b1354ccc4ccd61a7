"""Storage: local atomic writes, fsspec URLs, S3 defaults and the one-line reachability error."""

from __future__ import annotations

import os
import stat
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from expconf.checkpoint.archive import write_archive
from expconf.errors import ConfigError
from expconf.storage import S3_RETRIES, Storage, check_remote, is_remote, process_umask, s3_options


def test_is_remote() -> None:
    assert is_remote("s3://b/k") and is_remote("memory://x")
    assert not is_remote("/tmp/x") and not is_remote("file:///tmp/x") and not is_remote("rel/dir")


def test_local_write_failure_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    s = Storage(tmp_path / "ck")
    s.write_bytes_atomic("a.ckpt", b"old")

    def half(f: Any) -> None:
        f.write(b"partial")
        raise OSError("interrupted")

    with pytest.raises(OSError, match="interrupted"):
        s.write_atomic("a.ckpt", half)
    assert s.read_bytes("a.ckpt") == b"old"
    assert s.listdir() == ["a.ckpt"]


def test_memory_url_round_trip() -> None:
    s = Storage(f"memory://expconf-test-{uuid.uuid4().hex[:6]}/ck/")
    assert s.url.endswith("/ck") and s.remote and s.protocol == "memory"
    assert s.listdir() == []
    assert s.write_bytes_atomic("x.ckpt", b"12345") == 5
    s.copy("x.ckpt", "y.ckpt")
    assert s.listdir() == ["x.ckpt", "y.ckpt"]
    with s.open_read("y.ckpt") as f:
        assert f.read() == b"12345"
    s.remove("x.ckpt")
    s.remove("missing")
    assert s.listdir() == ["y.ckpt"] and s.exists("y.ckpt") and not s.exists("x.ckpt")
    s.check_reachable()


def test_s3_defaults_fill_gaps_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    opts = s3_options({"key": "k"})
    assert opts == {"key": "k", "use_listings_cache": False, "config_kwargs": {"retries": S3_RETRIES}}
    mine = {"use_listings_cache": True, "config_kwargs": {"retries": {"max_attempts": 9}, "read_timeout": 60}}
    assert s3_options(mine) == mine
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "7")
    assert "retries" not in s3_options({})["config_kwargs"]


def test_endpoint_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://env:1")
    assert Storage("s3://b/k").endpoint() == "http://env:1"
    assert Storage("s3://b/k", {"client_kwargs": {"endpoint_url": "http://ck:2"}}).endpoint() == "http://ck:2"
    assert Storage("s3://b/k", {"endpoint_url": "http://opt:3"}).endpoint() == "http://opt:3"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert Storage("s3://b/k").endpoint() == "default"


def test_unreachable_location_is_one_config_error_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    class Down:
        def pipe(self, path: str, data: bytes) -> None:
            raise PermissionError("The request signature we calculated\ndoes not match")

    made: list[dict[str, Any]] = []

    def make_fs(self: Storage, options: dict[str, Any], retries: int | None = None) -> Down:
        made.append(options)
        return Down()

    monkeypatch.setattr(Storage, "_make_fs", make_fs)
    s = Storage("s3://bucket/run", {"endpoint_url": "http://127.0.0.1:1", "key": "AK", "secret": "s3cr3t-value"})
    with pytest.raises(ConfigError) as err:
        s.check_reachable("log.ckpt.dirpath")
    msg = str(err.value)
    assert msg == (
        "log.ckpt.dirpath='s3://bucket/run': expected a reachable, writable location "
        "(endpoint http://127.0.0.1:1: The request signature we calculated does not match)"
    )
    assert "s3cr3t-value" not in msg
    # The probe gives up quickly: few attempts and a short connect timeout.
    assert made[0]["config_kwargs"]["retries"]["max_attempts"] <= 2
    assert made[0]["config_kwargs"]["connect_timeout"] <= 5


def test_local_check_reachable_is_a_no_op(tmp_path: Path) -> None:
    Storage(tmp_path / "does-not-exist-yet").check_reachable()


def test_remote_locations_are_probed_once_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m expconf.train`` probes each remote location exactly once: before the builder,
    not again inside ``build.run``. Building and training are replaced by stand-ins."""
    import expconf.build
    import expconf.hardware
    from expconf.train import main

    probes: list[tuple[str, str]] = []
    real_probe = Storage.check_reachable

    def counting_probe(self: Storage, key: str = "log.ckpt.dirpath") -> None:
        probes.append((key, self.url))
        real_probe(self, key)

    class Result:
        def summary(self) -> str:
            return "done"

    def fake_build(root: Any, handoff: Any = None) -> Any:
        assert len(probes) == 2, "the probe runs before the builder"
        return SimpleNamespace(model=None, data=None, trainer=SimpleNamespace(callbacks=[]), log=None, resume=None)

    monkeypatch.setattr(Storage, "check_reachable", counting_probe)
    monkeypatch.setattr(expconf.build, "build", fake_build)
    monkeypatch.setattr(expconf.build, "train", lambda *a, **k: Result())
    monkeypatch.setattr(expconf.hardware, "check_accelerator", lambda trainer: None)
    monkeypatch.setattr(sys, "argv", ["expconf.train"])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.chdir(tmp_path)
    bucket = f"memory://expconf-probe-{uuid.uuid4().hex[:6]}"
    main(["+recipe=gpt", f"log.ckpt.dirpath={bucket}/ck", f"resume.dirpath={bucket}/old", "trainer.max_steps=1"])
    assert probes == [("log.ckpt.dirpath", f"{bucket}/ck"), ("resume.dirpath", f"{bucket}/old")]


def test_check_remote_requires_remote_resume_paths_to_exist() -> None:
    from expconf.config.root import RootConfig

    bucket = f"memory://expconf-probe-{uuid.uuid4().hex[:6]}"
    Storage(f"{bucket}/ck").write_bytes_atomic("a-last.ckpt", b"x")
    root = RootConfig()
    root.resume.path = f"{bucket}/ck/a-last.ckpt"
    check_remote(root)
    root.resume.path = None
    root.resume.import_path = f"{bucket}/ck/missing.ckpt"
    with pytest.raises(ConfigError) as err:
        check_remote(root)
    assert str(err.value).startswith(f"resume.import_path='{bucket}/ck/missing.ckpt': expected an existing checkpoint")


@pytest.fixture(params=[0o022, 0o002])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_process_umask_reads_the_umask(umask: int) -> None:
    assert process_umask() == umask


def test_checkpoints_copies_and_archives_follow_the_umask(tmp_path: Path, umask: int) -> None:
    """Teammates sharing a folder read each other's checkpoints as they read torch.save's files."""
    storage = Storage(tmp_path / "ck")
    storage.write_atomic("a.ckpt", lambda f: torch.save({"w": torch.zeros(2)}, f))
    storage.write_bytes_atomic("a.ckpt.meta.json", b"{}")
    storage.copy("a.ckpt", "a-last.ckpt")
    write_archive(storage, "model.nemo", torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).state_dict())
    torch.save({}, tmp_path / "reference.pt")
    expected = 0o666 & ~umask
    assert mode(tmp_path / "reference.pt") == expected  # what torch.save does
    for name in ("a.ckpt", "a.ckpt.meta.json", "a-last.ckpt", "model.nemo"):
        assert mode(tmp_path / "ck" / name) == expected, name


def test_the_ddp_child_config_stays_private(umask: int) -> None:
    from expconf.distributed.handoff import ChildJob, JobHandoff

    with JobHandoff(ChildJob({"seed": 1}, "expconf.config.model.GPTModelConfig")) as handoff:
        path = Path(handoff.write_for(1))
        assert mode(path) == 0o600 and mode(path.parent) == 0o700
