"""expconf.callbacks.job_record: the digest every rank logs of its job config."""

from __future__ import annotations

from expconf.callbacks import job_record


def test_config_digest_ignores_key_order() -> None:
    a = {"optim": {"lr": 1e-3, "betas": [0.9, 0.95]}, "seed": 1}
    b = {"seed": 1, "optim": {"betas": [0.9, 0.95], "lr": 0.001}}
    assert job_record.config_digest(a) == job_record.config_digest(b)
    assert job_record.config_digest(a) != job_record.config_digest({**a, "seed": 2})
