"""The check of a composed config (every place it names code) and the redaction of one Hydra prints."""

from __future__ import annotations

from typing import Any

import pytest
from omegaconf import OmegaConf

from expconf.cli.hydra_guard import check_composed, redact_in_place
from expconf.errors import ConfigError
from expconf.redact import REDACTED


def _cfg(**hydra: Any) -> Any:
    return OmegaConf.create({"model": {"_target_": "expconf.recipes.gpt.GPTModule"}, "hydra": hydra})


def test_the_default_hydra_and_expconf_nodes_pass() -> None:
    check_composed(
        _cfg(
            launcher={"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"},
            sweeper={"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"},
            callbacks={"log": {"_target_": "hydra.experimental.callbacks.LogJobReturnCallback"}},
            job_logging={
                "handlers": {
                    "console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
                    "file": {"class": "logging.FileHandler", "filename": "${hydra.runtime.output_dir}/x.log"},
                },
                "formatters": {"c": {"()": "colorlog.ColoredFormatter"}},
            },
            run={"dir": "outputs/${now:%Y-%m-%d}"},
        )
    )


@pytest.mark.parametrize(
    ("hydra", "key"),
    [
        ({"callbacks": {"y": {"_target_": "builtins.open"}}}, "hydra.callbacks.y._target_='builtins.open'"),
        ({"callbacks": {"y": {"_target_": "logging.FileHandler"}}}, "hydra.callbacks.y._target_"),
        (
            {
                "callbacks": {
                    "y": {
                        "_target_": "hydra.experimental.callbacks.LogJobReturnCallback",
                        "a": {"_target_": "os.system"},
                    }
                }
            },
            "hydra.callbacks.y.a._target_='os.system'",
        ),
        ({"launcher": {"_target_": "hydra_plugins.evil.Launcher"}}, "hydra.launcher._target_"),
        ({"job_logging": {"handlers": {"e": {"()": "torch.load"}}}}, "hydra.job_logging.handlers.e.()='torch.load'"),
        ({"hydra_logging": {"handlers": {"e": {"class": "logging.handlers.SocketHandler"}}}}, "SocketHandler"),
        ({"job_logging": {"handlers": {"e": {"stream": "ext://os.environ"}}}}, "ext://sys.stdout"),
        ({"job_logging": {"handlers": {"e": {"()": "${evil}"}}}}, "no interpolation"),
        ({"callbacks": {"y": "${oc.decode:'{_target_: builtins.open}'}"}}, "oc.decode"),
    ],
)
def test_anything_off_the_list_is_refused(hydra: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_composed(_cfg(**hydra))
    assert key in str(info.value)


def test_expconf_targets_anywhere_are_checked() -> None:
    cfg = OmegaConf.create({"callbacks": {"extra": [{"_target_": "subprocess.Popen"}]}, "hydra": {}})
    with pytest.raises(ConfigError, match=r"callbacks\.extra\[0\]\._target_='subprocess\.Popen'"):
        check_composed(cfg)


def test_redact_in_place_keeps_ordinary_values_and_types() -> None:
    cfg = OmegaConf.create(
        {
            "log": {"ckpt": {"storage_options": {"secret": "abcdefgh-123", "key": "${oc.env:K}", "region": "x"}}},
            "model": {"num_key_value_heads": 4, "token_dropout": 0.1},
            "hydra": {"overrides": {"task": ["++log.ckpt.storage_options.secret=abcdefgh-123", "seed=1"]}},
        }
    )
    redact_in_place(cfg)
    assert OmegaConf.to_container(cfg) == {
        "log": {"ckpt": {"storage_options": {"secret": REDACTED, "key": REDACTED, "region": "x"}}},
        "model": {"num_key_value_heads": 4, "token_dropout": 0.1},
        "hydra": {"overrides": {"task": [f"++log.ckpt.storage_options.secret={REDACTED}", "seed=1"]}},
    }
