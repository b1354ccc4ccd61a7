"""Secrets never reach the run dir: config keys, command-line overrides and environment values."""

from __future__ import annotations

from pathlib import Path

import pytest

from expconf.redact import REDACTED, collect_secrets, is_secret_key, job_secrets, known_secrets, redact, redact_text
from helpers import TINY, run_cli, run_dirs


@pytest.fixture(autouse=True)
def _fresh_known_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no remembered secret (collect_secrets keeps them until the job ends)."""
    monkeypatch.setattr("expconf.redact._KNOWN", set())


SECRET_KEYS = [
    "secret", "key", "token", "password", "passwd", "api_key", "apiKey", "access_key", "secret_key",
    "aws_secret_access_key", "aws_access_key_id", "WANDB_API_KEY", "HF_TOKEN", "AWS_SESSION_TOKEN",
    "client_secret", "db-password", "log.ckpt.storage_options.secret", "private_key", "credentials",
]  # fmt: skip
ORDINARY_KEYS = [
    "num_key_value_heads", "token_dropout", "key_dim", "sort_key", "cache_key", "monitor", "keep_last",
    "tokenizer", "max_tokens_per_s", "name", "endpoint_url", "pad_token", "eos_token", "keys",
    "secretary", "tokens", "token_ids", "passkey_retrieval", "TOKENIZERS_PARALLELISM", "model.key_dim",
]  # fmt: skip


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ORDINARY_KEYS)
def test_ordinary_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_ordinary_settings_survive_a_config_round_trip() -> None:
    """A saved config must reproduce the run: no ordinary setting is rewritten."""
    cfg = {k.rsplit(".", 1)[-1]: f"value-of-{i}" for i, k in enumerate(ORDINARY_KEYS)}
    assert redact(cfg) == cfg
    secrets = {k.rsplit(".", 1)[-1]: f"value-of-{i}" for i, k in enumerate(SECRET_KEYS)}
    assert set(redact(secrets).values()) == {REDACTED}


@pytest.mark.parametrize(
    ("secret", "text", "expected"),
    [
        # a short common word is a whole value, never a part of a path
        ("research", "dirpath: /data/research", "dirpath: /data/research"),
        ("research", "/data/research/run_1 and research", f"/data/research/run_1 and {REDACTED}"),
        ("research", "researchers", "researchers"),
        # a long or non-word secret is scrubbed wherever it appears
        ("s3cr3t-Value-42", "url s3://b?k=s3cr3t-Value-42&x", f"url s3://b?k={REDACTED}&x"),
        ("correcthorsebatterystaple", "/tmp/correcthorsebatterystaple", f"/tmp/{REDACTED}"),
        # too short to search for: only a secret key's pair hides it
        ("abc", "abc abcd secret=abc", f"abc abcd secret={REDACTED}"),
    ],
)
def test_values_inside_text(secret: str, text: str, expected: str) -> None:
    assert redact_text(text, [secret]) == expected


def test_storage_option_words_do_not_rewrite_paths() -> None:
    """A storage option that is not a credential is no secret, so paths keep their words."""
    cfg = {"log": {"ckpt": {"dirpath": "/data/research", "storage_options": {"profile": "research"}}}}
    assert collect_secrets(cfg) == []
    assert redact(cfg, collect_secrets(cfg)) == cfg
    so = {"key": "AKIAEXAMPLEKEY1", "secret": "research"}
    found = collect_secrets({"storage_options": so})
    assert redact({"dirpath": "/data/research", **so}, found) == {
        "dirpath": "/data/research",
        "key": REDACTED,
        "secret": REDACTED,
    }


def test_redact_config_overrides_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "envtoken-123456")
    cfg = {
        "log": {"ckpt": {"storage_options": {"key": "AKIA1", "secret": "s3cr3t", "endpoint_url": "http://x"}}},
        "note": "uses envtoken-123456 inside",
        "list": ["token=abc123", "plain"],
    }
    out = redact(cfg)
    so = out["log"]["ckpt"]["storage_options"]
    assert so == {"key": REDACTED, "secret": REDACTED, "endpoint_url": "http://x"}
    assert out["note"] == f"uses {REDACTED} inside"
    assert out["list"] == [f"token={REDACTED}", "plain"]
    assert sorted(collect_secrets(cfg)) == ["AKIA1", "abc123", "s3cr3t"]  # override strings count too
    assert redact_text("a s3cr3t b", ["s3cr3t"]) == f"a {REDACTED} b"


@pytest.mark.slow
def test_real_run_dir_holds_no_secret(tmp_path: Path) -> None:
    env_secrets = {
        "AWS_SECRET_ACCESS_KEY": "envsecret-AAAA-1234",
        "MY_SERVICE_TOKEN": "envtoken-BBBB-5678",
        "WANDB_API_KEY": "wandbkey-CCCC-9012",
    }
    cfg_secrets = ["cfgkey-DDDD-3456", "cfgsecret-EEEE-7890", "cfgtoken-FFFF-1111"]
    proc = run_cli(
        [
            *TINY,
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            f"++log.ckpt.storage_options={{key:{cfg_secrets[0]},secret:{cfg_secrets[1]},region_name:x}}",
            f"+log.ckpt.storage_options.token={cfg_secrets[2]}",
            # an environment secret pasted into an ordinary value is caught by value
            f"log.wandb.group={env_secrets['MY_SERVICE_TOKEN']}",
        ],
        cwd=tmp_path,
        **env_secrets,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run_dir] = run_dirs(tmp_path / "nemo_experiments")
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"config.yaml", "overrides.yaml", "cmd-args.log"} <= names
    assert any(p.suffix == ".ckpt" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in [*env_secrets.values(), *cfg_secrets]:
            assert secret.encode() not in data, (path.name, secret)
    config = (run_dir / "config.yaml").read_text()
    assert f"secret: '{REDACTED}'" in config and "region_name: x" in config
    assert REDACTED in (run_dir / "cmd-args.log").read_text()


def test_free_text_pairs_and_short_values() -> None:
    text = "cmd ++log.ckpt.storage_options={key:abc,secret:'x y',region_name:x} token=tt max_steps=2"
    out = redact_text(text, ["x", "us-east-1"])
    assert out == (
        f"cmd ++log.ckpt.storage_options={{key:{REDACTED},secret:{REDACTED},region_name:x}} "
        f"token={REDACTED} max_steps=2"
    )
    assert (
        redact_text("monkey: 3\ntokenizer: byte\npassword: hunter22")
        == f"monkey: 3\ntokenizer: byte\npassword: {REDACTED}"
    )


def test_log_filter_scrubs_config_and_environment_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from expconf.redact import RedactingFilter

    monkeypatch.setenv("SOME_API_KEY", "envapikey-777777")
    collect_secrets({"storage_options": {"secret": "cfgsecret-888888"}})
    handler = logging.FileHandler(tmp_path / "log.txt")
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("expconf.test_redact")
    logger.addHandler(handler)
    try:
        logger.warning("connecting with %s and %s", "cfgsecret-888888", "envapikey-777777")
        logger.warning("override token=abc123 kept max_steps=5")
    finally:
        logger.removeHandler(handler)
        handler.close()
    text = (tmp_path / "log.txt").read_text()
    assert "888888" not in text and "777777" not in text and "abc123" not in text
    assert text.count(REDACTED) == 3 and "max_steps=5" in text


def test_a_second_job_does_not_redact_with_the_first_jobs_secrets() -> None:
    first, second = "first-job-secret-1111", "second-job-secret-2222"
    line = f"bucket folders {first} and {second}"
    with job_secrets({"storage_options": {"secret": first}}):
        assert redact_text(line) == f"bucket folders {REDACTED} and {second}"
    assert first not in known_secrets()
    with job_secrets({"storage_options": {"secret": second}}):
        collect_secrets({"token": "collected-during-the-job"})  # e.g. by the logger's setup
        assert redact_text(line) == f"bucket folders {first} and {REDACTED}"
        assert first not in known_secrets() and "collected-during-the-job" in known_secrets()
    assert known_secrets() == []


def test_a_nested_job_leaves_the_outer_jobs_secrets() -> None:
    with job_secrets({"secret": "outer-secret-3333"}):
        with job_secrets({"secret": "inner-secret-4444"}):
            assert known_secrets() == ["inner-secret-4444"]
        assert known_secrets() == ["outer-secret-3333"]
