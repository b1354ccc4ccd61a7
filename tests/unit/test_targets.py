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
    monkeypatch.setattr(targets, "_ALLOWED", {k: set(v) for k, v in targets._ALLOWED.items()})
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


@pytest.mark.parametrize(
    "path",
    [
        "pytorch_lightning.callbacks.EarlyStopping",
        "lightning.pytorch.callbacks.EarlyStopping",
        "lightning.pytorch.callbacks.LearningRateMonitor",
        "pytorch_lightning.loggers.CSVLogger",
        "lightning.pytorch.loggers.TensorBoardLogger",
    ],
)
def test_lightning_callbacks_and_loggers_are_allowed_in_both_spellings(path: str) -> None:
    cls = targets.resolve(path, "callbacks.extra[0]._target_")
    assert cls.__module__.startswith("pytorch_lightning.")  # one Lightning: the Trainer's


def test_the_lightning_names_exist_in_the_installed_lightning() -> None:
    import pytorch_lightning.callbacks
    import pytorch_lightning.loggers

    names = set(pytorch_lightning.callbacks.__all__) | set(pytorch_lightning.loggers.__all__)
    listed = {p.rsplit(".", 1)[1] for p in targets._ALLOWED["target"] if p.startswith("pytorch_lightning.")}
    assert listed and listed <= names


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("pytorch_lightning.callbacks.model_checkpoint.os", "allow-listed"),  # deeper than one class name
        ("lightning.pytorch.callbacks.os.system", "allow-listed"),
        ("pytorch_lightning.utilities.rank_zero.rank_zero_warn", "allow-listed"),
    ],
)
def test_lightning_namespace_is_not_a_wildcard_for_everything(path: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        targets.resolve(path, "callbacks.extra[0]._target_")


def test_a_pattern_that_matches_a_function_builds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPCONF_ALLOWED_TARGETS", "os.*")
    with pytest.raises(ConfigError, match="a class"):
        targets.resolve("os.getcwd", "model._target_")


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("logging.FileHandler", "logging"),
        ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "hydra_plugin"),
        ("hydra.experimental.callbacks.LogJobReturnCallback", "hydra_callback"),
        ("sys.stdout", "ext"),
        ("oc.env", "resolver"),
    ],
)
def test_each_kind_has_its_own_list(path: str, kind: str) -> None:
    """What is safe in one place is not in another: a FileHandler is no callback (it truncates files)."""
    assert targets.allowed(path, kind)
    others = [k for k in targets.KINDS if k != kind]
    assert not any(targets.allowed(path, k) for k in others)
