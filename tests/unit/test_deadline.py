"""expconf.deadline: an overall deadline around one storage call."""

from __future__ import annotations

import threading

import pytest

from expconf import deadline
from expconf.errors import ConfigError


def test_call_returns_the_result_and_reraises_the_error() -> None:
    assert deadline.call("add", lambda a, b: a + b, 2, 3, timeout=60) == 5
    with pytest.raises(KeyError, match="missing"):
        deadline.call("fail", lambda: {}["missing"], timeout=60)


def test_a_call_that_does_not_return_raises_storage_timeout() -> None:
    never = threading.Event()
    try:
        with pytest.raises(deadline.StorageTimeoutError, match=r"hang: no answer within 0.01 s"):
            deadline.call("hang", never.wait, timeout=0.01)
    finally:
        never.set()  # lets the abandoned thread end


def test_timeout_comes_from_config_then_env_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(deadline.TIMEOUT_ENV, raising=False)
    monkeypatch.setattr(deadline, "_configured", None)
    assert deadline.timeout_s() == deadline.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(deadline.TIMEOUT_ENV, "7.5")
    assert deadline.timeout_s() == 7.5
    deadline.configure(3)
    assert deadline.timeout_s() == 3
    deadline.configure(None)
    monkeypatch.setenv(deadline.TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="EXPCONF_STORAGE_TIMEOUT='soon': expected a number of seconds > 0"):
        deadline.timeout_s()
