"""``check_fits``: a checkpoint that cannot resume the model is refused in one line, before loading."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from expconf.checkpoint.fit import check_fits
from expconf.errors import ConfigError


class Net(pl.LightningModule):
    def __init__(self, width: int = 4, depth: int = 1) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(*[torch.nn.Linear(width, width) for _ in range(depth)])


def save(path: Path, content: Any) -> str:
    torch.save(content, path)
    return str(path)


def checkpoint(model: pl.LightningModule, **extra: Any) -> dict[str, Any]:
    return {"state_dict": model.state_dict(), "optimizer_states": [{}], "global_step": 3, **extra}


def test_a_checkpoint_of_the_same_model_fits(tmp_path: Path) -> None:
    check_fits("resume.path", save(tmp_path / "a.ckpt", checkpoint(Net())), Net())


def test_other_shapes_are_named(tmp_path: Path) -> None:
    path = save(tmp_path / "a.ckpt", checkpoint(Net(width=4)))
    with pytest.raises(ConfigError) as info:
        check_fits("resume.path", path, Net(width=8))
    line = str(info.value)
    assert line.startswith(f"resume.path='{path}': expected a checkpoint of this model")
    assert "layers.0.weight is [4, 4] there, [8, 8] here" in line


def test_other_layers_are_named(tmp_path: Path) -> None:
    path = save(tmp_path / "a.ckpt", checkpoint(Net(depth=1)))
    with pytest.raises(
        ConfigError, match=r"2 parameters of the model are not in it \(layers.1.bias, layers.1.weight\)"
    ):
        check_fits("resume.path", path, Net(depth=2))
    with pytest.raises(ConfigError, match="it has 2 the model lacks"):
        check_fits("resume.path", save(tmp_path / "b.ckpt", checkpoint(Net(depth=2))), Net(depth=1))


def test_a_saved_tensor_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = save(tmp_path / "t.pt", torch.zeros(3))
    with pytest.raises(
        ConfigError, match=r"a Lightning checkpoint \(a mapping with a state_dict\) \(the file holds a Tensor\)"
    ):
        check_fits("resume.path", path, Net())


def test_a_truncated_file_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "a.ckpt"
    data = Path(save(path, checkpoint(Net()))).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="it cannot be read"):
        check_fits("resume.path", str(path), Net())


def test_weights_only_cannot_resume_but_can_initialise(tmp_path: Path) -> None:
    path = save(tmp_path / "w.ckpt", {"state_dict": Net().state_dict()})
    with pytest.raises(ConfigError, match=re.escape("use resume.import_path")):
        check_fits("resume.path", path, Net())
    check_fits("resume.import_path", path, Net(), training_state=False)


def test_the_automatic_choice_is_named_as_such(tmp_path: Path) -> None:
    path = save(tmp_path / "x-last.ckpt", checkpoint(Net(width=4)))
    head = "resume.resume_if_exists=true picked "
    with pytest.raises(ConfigError) as info:
        check_fits("resume.resume_if_exists", path, Net(width=8), message_head=head)
    assert str(info.value).startswith(f"{head}{path}: expected a checkpoint of this model")


def test_what_is_left_to_the_loader(tmp_path: Path) -> None:
    """Remote and missing checkpoints, archives and sharded folders are not opened here."""
    import tarfile

    check_fits("resume.path", "s3://bucket/x-last.ckpt", Net())
    check_fits("resume.path", str(tmp_path / "missing.ckpt"), Net())
    with tarfile.open(tmp_path / "m.nemo", "w"):
        pass
    check_fits("resume.import_path", str(tmp_path / "m.nemo"), Net(), training_state=False)
    (tmp_path / "sharded.ckpt").mkdir()
    (tmp_path / "sharded.ckpt" / ".metadata").write_bytes(b"")
    check_fits("resume.path", str(tmp_path / "sharded.ckpt"), Net())


def test_python_callers_get_the_validation_rules_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="it is a folder, and not a sharded checkpoint"):
        check_fits("resume.path", str(tmp_path), Net())
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match=re.escape("not a torch.save file")):
        check_fits("resume.path", str(tmp_path / "notes.txt"), Net())


class Settings:
    """A class safe loading refuses to unpickle."""


def test_a_checkpoint_safe_loading_refuses_is_left_to_the_loader(tmp_path: Path) -> None:
    path = save(tmp_path / "a.ckpt", checkpoint(Net(width=4), hyper_parameters={"settings": Settings()}))
    check_fits("resume.path", path, Net(width=8))


def test_names_match_with_or_without_torch_compile(tmp_path: Path) -> None:
    compiled = {k.replace("layers.", "layers._orig_mod."): v for k, v in Net().state_dict().items()}
    path = save(tmp_path / "c.ckpt", {"state_dict": compiled, "optimizer_states": [{}]})
    check_fits("resume.path", path, Net())
    with pytest.raises(ConfigError, match=re.escape("layers.0.weight is [4, 4] there, [8, 8] here")):
        check_fits("resume.path", path, Net(width=8))
