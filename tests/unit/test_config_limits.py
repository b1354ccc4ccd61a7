"""Values that used to fail late (a traceback minutes into a run) are refused at validation.

Each case composes and validates a config in-process and expects one :class:`ConfigError` line
naming the key, the value and what was expected. How such an error reaches the user (exit code
2, one stderr line, nothing written) is checked for every refusal by ``test_errors_corpus.py``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from expconf.config import limits
from expconf.config.ckpt import check_filename, name_reserve
from expconf.errors import ConfigError

R = "+recipe=gpt"


@dataclass
class Case:
    """Overrides, the key and value the line must name, and what it must say was expected."""

    id: str
    args: list[str]
    key: str
    value: str
    expected: list[str]
    files: dict[str, bytes] = field(default_factory=dict)


def _tensor_file() -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(torch.zeros(3), buf)
    return buf.getvalue()


CASES = [
    Case("devices-empty", [R, "trainer.devices=''"], "trainer.devices", "''", ["'auto'", "positive integer"]),
    Case("devices-zero", [R, "trainer.devices=0"], "trainer.devices", "=0", ["'auto'", "positive integer"]),
    Case("devices-zero-string", [R, "trainer.devices='0'"], "trainer.devices", "'0'", ["positive integer"]),
    Case("devices-empty-ids", [R, "trainer.devices=','"], "trainer.devices", "','", ["list of device ids"]),
    Case("signal-sigkill", [R, "callbacks.preemption_signal=SIGKILL"], "callbacks", "'SIGKILL'", ["can catch"]),
    Case("signal-sigstop", [R, "callbacks.preemption_signal=SIGSTOP"], "callbacks", "'SIGSTOP'", ["cannot be caught"]),
    Case("seed-too-big", [R, "seed=99999999999"], "seed", "99999999999", ["[0, 4294967295]"]),
    Case("init-std-nan", [R, "model.init_std=nan"], "model.init_std", "nan", ["a finite number"]),
    Case("init-std-zero", [R, "model.init_std=0"], "model.init_std", "0", ["> 0"]),
    Case("lr-inf", [R, "optim.lr=inf"], "optim.lr", "inf", ["a finite number"]),
    Case("min-lr-nan", [R, "optim.min_lr=nan"], "optim.min_lr", "nan", ["a finite number"]),
    Case("eps-zero", [R, "optim.eps=0"], "optim.eps", "0", ["> 0"]),
    Case("log-name-300", [R, "log.name=" + "n" * 300], "log.name", "n" * 300, ["at most 128 bytes"]),
    Case("log-dir-proc", [R, "log.log_dir=/proc/self"], "log.log_dir", "'/proc/self'", ["a folder on a disk", "/proc"]),
    Case(
        "log-dir-long-part",
        [R, "log.log_dir=runs/" + "p" * 256],
        "log.log_dir",
        "p" * 256,
        ["at most 255 bytes"],
    ),
    Case(
        "log-dir-under-a-file",
        [R, "log.log_dir=afile/runs"],
        "log.log_dir",
        "'afile/runs'",
        ["a folder path", "is a file"],
        files={"afile": b"x"},
    ),
    Case(
        "ckpt-dirpath-file",
        [R, "log.ckpt.dirpath=afile"],
        "log.ckpt.dirpath",
        "'afile'",
        ["a folder (this path is a file)"],
        files={"afile": b"x"},
    ),
    Case("cache-dir-proc", [R, "data.cache_dir=/proc/cache"], "data.cache_dir", "'/proc/cache'", ["on a disk"]),
    Case("num-workers", [R, "data.num_workers=100000"], "data.num_workers", "100000", ["at most", "CPUs"]),
    Case(
        "filename-format",
        [R, "log.ckpt.filename='gpt-{step:s}'"],
        "log.ckpt.filename",
        "'gpt-{step:s}'",
        ["fields format as numbers", "Unknown format code 's'"],
    ),
    Case(
        "filename-int-format-of-a-metric",
        [R, "log.ckpt.filename='gpt-{val_loss:d}'"],
        "log.ckpt.filename",
        "'gpt-{val_loss:d}'",
        ["metrics floats"],
    ),
    Case("filename-225", [R, "log.ckpt.filename=" + "f" * 225], "log.ckpt.filename", "f" * 225, ["suffixes"]),
    Case("resume-path-folder", [R, "resume.path=."], "resume.path", "'.'", ["not a sharded checkpoint"]),
    Case(
        "resume-path-text",
        [R, "resume.path=notes.txt"],
        "resume.path",
        "'notes.txt'",
        ["a checkpoint file", "not a torch.save file"],
        files={"notes.txt": b"hello\n"},
    ),
    Case("resume-path-dev-zero", [R, "resume.path=/dev/zero"], "resume.path", "/dev/zero", ["not a regular file"]),
    Case(
        "import-path-text",
        [R, "resume.import_path=notes.txt"],
        "resume.import_path",
        "notes.txt",
        ["or a .nemo model archive"],
        files={"notes.txt": b"hello\n"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_at_validation(case: Case, workdir: Path) -> None:
    from expconf.train import compose_root

    for rel, data in case.files.items():
        (workdir / rel).write_bytes(data)
    before = sorted(os.listdir(workdir))
    with pytest.raises(ConfigError) as info:
        compose_root(case.args)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith(case.key), line
    assert case.value in line, line
    for fragment in case.expected:
        assert fragment in line, (fragment, line)
    assert sorted(os.listdir(workdir)) == before


def test_a_saved_tensor_passes_validation_and_is_refused_once_the_model_is_known(workdir: Path) -> None:
    """A tensor file is a torch.save file: only loading it tells it is no checkpoint
    (tests/unit/test_checkpoint_fit.py); validation lets it through."""
    from expconf.train import compose_root

    (workdir / "t.pt").write_bytes(_tensor_file())
    assert compose_root([R, "resume.path=t.pt"]).resume.path == "t.pt"


@pytest.mark.parametrize("value", ["auto", 1, -1, "2", "-1", "0,1", [0, 1], " 1 "])
def test_valid_devices_still_pass(value: object) -> None:
    from expconf.config.trainer import devices_ok

    assert devices_ok(value)


def test_num_workers_limit_follows_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "usable_cpus", lambda: 3)
    limits.check_num_workers("data.num_workers", 12)
    with pytest.raises(ConfigError, match=r"data.num_workers=13: expected at most 12 \(4 x the 3 CPUs"):
        limits.check_num_workers("data.num_workers", 13)


def test_filename_length_counts_the_suffixes_expconf_adds() -> None:
    reserve = name_reserve()
    longest = f".{'x' * 10}-last-v99.ckpt.meta.json.tmp-12345678"
    assert reserve == len(longest) - 10
    fits = "f" * (limits.NAME_MAX - reserve)
    check_filename("log.ckpt.", fits, auto_insert_metric_name=True)
    with pytest.raises(ConfigError, match=re.escape("log.ckpt.filename")):
        check_filename("log.ckpt.", fits + "f", auto_insert_metric_name=True)


def test_filename_fields_are_formatted_with_wide_sample_values() -> None:
    check_filename("log.ckpt.", "gpt--{val_loss:.2f}-{step:08d}-{epoch:02d}-{consumed_samples}", True)
    # step=99999999 written as 'step=99999999' per field: the name grows with each field
    template = "-".join(["{step}"] * 16)  # 16 x 13 + 15 bytes, plus the suffixes: over 255
    with pytest.raises(ConfigError, match="bytes"):
        check_filename("ModelCheckpoint.", template, True)
    check_filename("ModelCheckpoint.", template, False)


def test_model_checkpoint_shares_the_filename_rule(tmp_path: Path) -> None:
    from expconf import ModelCheckpoint

    with pytest.raises(ValueError, match=re.escape("ModelCheckpoint.filename='gpt-{step:s}'")):
        ModelCheckpoint(dirpath=str(tmp_path), filename="gpt-{step:s}")
    assert ModelCheckpoint(dirpath=str(tmp_path), filename="gpt-{step:05d}").filename == "gpt-{step:05d}"


def test_preemption_callback_shares_the_signal_rule() -> None:
    import signal

    from expconf import PreemptionCallback

    with pytest.raises(ValueError, match=re.escape("PreemptionCallback.sig='SIGKILL'")):
        PreemptionCallback(signal.SIGKILL)
    assert PreemptionCallback("SIGUSR1").sig == signal.SIGUSR1


def test_a_folder_that_does_not_exist_yet_passes(tmp_path: Path) -> None:
    limits.check_local_folder("log.log_dir", str(tmp_path / "new" / "runs"))
    limits.check_local_folder("log.log_dir", "s3://bucket/anything")
    limits.check_local_folder("log.log_dir", None)
