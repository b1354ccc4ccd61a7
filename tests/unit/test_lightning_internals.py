"""Lightning's private API is reached only through ``expconf/lightning_internals.py``, and each
private name it uses still exists in the installed Lightning."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

import expconf
from expconf import lightning_internals as internals

PACKAGE = Path(expconf.__file__).parent
INTERNALS = PACKAGE / "lightning_internals.py"
LIGHTNING = ("pytorch_lightning", "lightning_fabric", "lightning")


def private_lightning_imports(tree: ast.AST) -> list[str]:
    """``module`` or ``module:name`` of every import of an underscored Lightning module or name."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            names = [a.name for a in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] not in LIGHTNING:
                continue
            if any(p.startswith("_") for p in parts):
                found.append(module)
            found += [f"{module}:{n}" for n in names if n.startswith("_")]
    return found


def private_attributes(tree: ast.AST) -> set[str]:
    """Underscored (not dunder) attribute names read or set on something other than ``self``/``cls``,
    also through ``getattr``/``hasattr`` with a constant name."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = node.value
            name = node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr", "setattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            owner, name = node.args[0], node.args[1].value
        else:
            continue
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            continue
        if name.startswith("_") and not name.startswith("__"):
            names.add(name)
    return names


def parsed(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def test_only_the_internals_module_imports_private_lightning_names() -> None:
    offenders = {
        str(path.relative_to(PACKAGE.parent)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != INTERNALS and (found := private_lightning_imports(parsed(path)))
    }
    assert offenders == {}, "import these through expconf.lightning_internals"


def test_only_the_internals_module_touches_the_private_attributes_it_wraps() -> None:
    wrapped = private_attributes(parsed(INTERNALS))
    assert {"_checkpoint_connector", "_signal_connector", "_wandb_init"} <= wrapped
    offenders = {
        str(path.relative_to(PACKAGE.parent)): sorted(used)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != INTERNALS and (used := private_attributes(parsed(path)) & wrapped)
    }
    assert offenders == {}, "use the functions of expconf.lightning_internals"


def test_the_scan_sees_a_private_import_and_attribute() -> None:
    tree = ast.parse(
        "from pytorch_lightning.utilities._pytree import x\n"
        "from lightning_fabric.utilities import _private\n"
        "import pytorch_lightning.trainer.connectors._x\n"
        "from pytorch_lightning.callbacks import Callback\n"
        "trainer._checkpoint_connector.dump_checkpoint(False)\n"
        "getattr(trainer, '_signal_connector', None)\n"
        "self._own = 1\n"
    )
    assert private_lightning_imports(tree) == [
        "pytorch_lightning.utilities._pytree",
        "lightning_fabric.utilities:_private",
        "pytorch_lightning.trainer.connectors._x",
    ]
    assert private_attributes(tree) == {"_checkpoint_connector", "_signal_connector"}


# -- the private names exist in the installed Lightning -------------------------------------------------


@pytest.fixture
def trainer(tmp_path: Path) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )


def test_trainer_internals(trainer: pl.Trainer, tmp_path: Path) -> None:
    assert callable(trainer._checkpoint_connector.dump_checkpoint)
    internals.set_default_root_dir(trainer, str(tmp_path / "run"))
    assert trainer.default_root_dir == str(tmp_path / "run")
    assert internals.take_over_sigterm(trainer) is False
    trainer._signal_connector.received_sigterm = True
    assert internals.take_over_sigterm(trainer) is True
    assert trainer._signal_connector.received_sigterm is False
    if tuple(int(n) for n in pl.__version__.split(".")[:2]) >= (2, 5):  # new in 2.5, see skip_next_validation
        assert hasattr(trainer.fit_loop.epoch_loop, "_skip_next_val")
    internals.skip_next_validation(trainer)
    assert trainer.fit_loop.epoch_loop._skip_next_val is True
    assert hasattr(trainer._logger_connector, "should_update_logs")
    assert isinstance(internals.logs_this_step(trainer), bool)


def test_logger_internals(tmp_path: Path) -> None:
    tb = TensorBoardLogger(save_dir=str(tmp_path / "elsewhere"), name="tb", version=3, default_hp_metric=False)
    internals.point_logger_at(tb, str(tmp_path / "run"))
    assert Path(tb.log_dir) == tmp_path / "run" / "tb"  # the logger's name stays, the version folder goes
    assert internals.default_hp_metric(tb) is False
    assert internals.default_hp_metric(TensorBoardLogger(save_dir=str(tmp_path))) is True


def test_wandb_internals(tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    from pytorch_lightning.loggers import WandbLogger

    wandb = WandbLogger(offline=True, save_dir=str(tmp_path / "w"))
    internals.set_wandb_save_dir(wandb, str(tmp_path / "run"))
    internals.set_wandb_name(wandb, "exp")
    internals.set_wandb_id(wandb, "abc123")
    init = internals.wandb_init_args(wandb)
    assert (init["dir"], init["name"], init["id"]) == (str(tmp_path / "run"), "exp", "abc123")
    assert (wandb.save_dir, wandb._name, wandb.version) == (str(tmp_path / "run"), "exp", "abc123")
    assert internals.wandb_experiment(wandb) is None  # no run started: nothing written
    internals.forget_wandb_experiment(wandb)
    assert internals.wandb_experiment(wandb) is None


def test_private_classes_and_functions_exist() -> None:
    assert callable(internals.format_summary_table)
    assert hasattr(internals.SubprocessScriptLauncher, "_call_children_scripts")
