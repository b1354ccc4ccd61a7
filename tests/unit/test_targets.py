"""``_target_`` is only imported from the allow-list: expconf's, allow(), and $EXPCONF_ALLOWED_TARGETS."""

from __future__ import annotations

import pytest

from expconf import targets
from expconf.config.model import GPTModelConfig
from expconf.errors import ConfigError


def test_expconf_targets_resolve() -> None:
    assert targets.resolve("pytorch_lightning.callbacks.EarlyStopping", "k").__name__ == "EarlyStopping"
    cb = targets.instantiate({"_target_": "pytorch_lightning.callbacks.EarlyStopping", "monitor": "val_loss"}, "cb")
    assert type(cb).__name__ == "EarlyStopping"


@pytest.mark.parametrize("path", ["os.system", "subprocess.Popen", "builtins.eval", "expconf.recipes.gpt.GPTModuleX"])
def test_everything_else_is_refused_before_import(path: str) -> None:
    with pytest.raises(ConfigError, match="allow-listed") as info:
        targets.resolve(path, "model._target_")
    assert str(info.value).startswith(f"model._target_='{path}'")


def test_environment_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not targets.allowed("collections.OrderedDict")
    monkeypatch.setenv("EXPCONF_ALLOWED_TARGETS", "json.*, collections.OrderedDict")
    assert targets.allowed("collections.OrderedDict") and targets.allowed("json.JSONDecoder")
    assert targets.resolve("collections.OrderedDict", "k").__name__ == "OrderedDict"
    assert not targets.allowed("collections.Counter")


def test_allow_registers_a_user_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "_ALLOWED", set(targets._ALLOWED))
    assert not targets.allowed("fractions.Fraction")
    targets.allow("fractions.Fraction")
    assert targets.instantiate({"_target_": "fractions.Fraction", "numerator": 1, "denominator": 2}, "x") == 0.5


def test_import_errors_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPCONF_ALLOWED_TARGETS", "no_such_pkg_xyz.*")
    with pytest.raises(ConfigError, match="importable"):
        targets.resolve("no_such_pkg_xyz.Model", "model._target_")


def test_validation_checks_the_model_target() -> None:
    cfg = GPTModelConfig(_target_="os.system")
    with pytest.raises(ConfigError, match=r"model\._target_='os\.system'"):
        cfg.validate()
