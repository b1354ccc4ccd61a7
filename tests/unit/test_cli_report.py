"""expconf.cli.report: every failure leaves through one exit path, as redacted text with its exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from expconf.checkpoint.writer import CheckpointWriteError
from expconf.cli.report import exit_on_error
from expconf.errors import ConfigError
from expconf.redact import REDACTED, job_secrets

SECRET = "s3cr3t-value-for-crash"
JOB = {"log": {"ckpt": {"storage_options": {"secret": SECRET}}}}


def _exit(e: BaseException, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Report ``e`` inside a job that knows SECRET: (exit code, stderr)."""
    capsys.readouterr()
    with job_secrets(JOB), pytest.raises(SystemExit) as info:
        exit_on_error(e, [f"+log.ckpt.storage_options.secret={SECRET}"])
    assert isinstance(info.value.code, int)
    return info.value.code, capsys.readouterr().err


def test_a_crashed_job_reports_its_traceback_without_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError(f"boom while talking to the store with {SECRET}")
    except RuntimeError as e:
        code, err = _exit(e, capsys)
    assert code == 1
    assert "RuntimeError: boom" in err and SECRET not in err and REDACTED in err


def test_a_storage_failure_is_one_line_without_the_secret_in_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    """The line that ``main`` once printed unredacted: a CheckpointWriteError behind the failure."""
    try:
        try:
            raise OSError(f"403 for s3://ckpts/run?X-Amz-Credential={SECRET}")
        except OSError as cause:
            raise CheckpointWriteError(f"could not write s3://ckpts/run: {cause}") from cause
    except CheckpointWriteError as e:
        try:
            raise RuntimeError("fit failed") from e
        except RuntimeError as outer:
            code, err = _exit(outer, capsys)
    assert code == 1
    assert err.splitlines() == [
        f"error: could not write s3://ckpts/run: 403 for s3://ckpts/run?X-Amz-Credential={REDACTED}"
    ]


def test_a_user_mistake_is_one_line_exit_2_without_the_secret_in_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exit(ConfigError("log.ckpt.dirpath", f"s3://ckpts/{SECRET}/run", "a bucket you can write"), capsys)
    assert code == 2
    assert err.splitlines() == [f"error: log.ckpt.dirpath='s3://ckpts/{REDACTED}/run': expected a bucket you can write"]


def test_debug_returns_so_the_caller_re_raises(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXPCONF_DEBUG", "1")
    exit_on_error(ConfigError("trainer.max_steps", -1, "an integer > 0"), [])
    assert capsys.readouterr().err == ""


def test_each_job_of_a_sweep_knows_only_its_own_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A two-job sweep in this process: the second job's redaction does not use the first job's secret."""
    import expconf.build
    import expconf.hardware
    from expconf.redact import known_secrets
    from expconf.train import main

    seen: list[list[str]] = []

    class Done:
        def summary(self) -> str:
            return "done"

    def fake_run(root: Any, **_: Any) -> Done:
        seen.append(known_secrets())
        return Done()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(expconf.build, "run", fake_run)
    monkeypatch.setattr(expconf.hardware, "check_accelerator", lambda trainer: None)
    monkeypatch.setattr("sys.argv", ["expconf.train"])
    first, second = "first-job-token-1111", "second-job-token-2222"
    main(["-m", "+recipe=gpt", f"++log.ckpt.storage_options.secret={first},{second}"])
    assert [first in s for s in seen] == [True, False]
    assert [second in s for s in seen] == [False, True]
