"""Model archives (``always_save_nemo`` / ``save_nemo_on_train_end``) and ``expconf.load_model`` without pickle."""

from __future__ import annotations

import io
import json
import pickle
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import expconf
from expconf.checkpoint.archive import CONFIG_NAME, WEIGHTS_NAME
from expconf.checkpoint.callback import ModelCheckpoint
from expconf.config.model import GPTModelConfig
from expconf.errors import ConfigError
from expconf.recipes.gpt import GPTModule
from helpers import make_trainer


def tiny_gpt() -> GPTModule:
    torch.manual_seed(0)
    return GPTModule(GPTModelConfig(n_layer=1, n_head=2, n_embd=16), vocab_size=64, seq_length=8)


def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 64, (32, 9), generator=g)
    ds = TensorDataset(tokens[:, :-1], tokens[:, 1:])
    return DataLoader(ds, batch_size=4), DataLoader(ds, batch_size=16)


def train(folder: Path, steps: int, **ckpt_kwargs: Any) -> GPTModule:
    module = tiny_gpt()
    ckpt = ModelCheckpoint(dirpath=str(folder), **ckpt_kwargs)
    ckpt.name = "tiny"
    trainer = make_trainer(folder.parent, steps, [ckpt])
    train_dl, val_dl = loaders()
    trainer.fit(module, train_dl, val_dl)
    return module


def test_always_save_nemo_archive_loads_with_the_trained_weights(tmp_path: Path) -> None:
    module = train(tmp_path / "c", 4, always_save_nemo=True)
    archive = tmp_path / "c" / "tiny.nemo"
    assert archive.is_file()
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    loaded = expconf.load_model(str(archive))
    assert isinstance(loaded, GPTModule)
    assert loaded.config.n_embd == 16 and loaded.vocab_size == module.vocab_size
    want = module.state_dict()
    got = loaded.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    # Tied embeddings stay tied after loading.
    assert loaded.gpt.lm_head.weight.data_ptr() == loaded.gpt.wte.weight.data_ptr()


def test_save_nemo_on_train_end_only_at_the_end(tmp_path: Path) -> None:
    train(tmp_path / "a", 2, save_nemo_on_train_end=True)
    assert (tmp_path / "a" / "tiny.nemo").is_file()
    train(tmp_path / "b", 2)
    assert not list((tmp_path / "b").glob("*.nemo"))


class _Touch:
    """A pickle payload that creates a file when unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.target), "w"))


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_tampered_archive_with_pickle_payload_runs_no_code(tmp_path: Path) -> None:
    train(tmp_path / "c", 2, save_nemo_on_train_end=True)
    good = _members(tmp_path / "c" / "tiny.nemo")
    pwned = tmp_path / "pwned"
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Touch(live)))
    assert live.exists(), "the payload must really run code when unpickled"

    # Weights replaced by a pickle: safetensors refuses it, nothing is unpickled.
    bad = tmp_path / "bad_weights.nemo"
    _tar(bad, {CONFIG_NAME: good[CONFIG_NAME], WEIGHTS_NAME: pickle.dumps({"w": _Touch(pwned)})})
    with pytest.raises(Exception):  # noqa: B017  # any refusal is fine; executing the payload is not
        expconf.load_model(str(bad))
    assert not pwned.exists()

    # A torch.save'd file (pickle inside a zip) in the weights slot is refused too.
    buf = io.BytesIO()
    torch.save({"w": _Touch(pwned)}, buf)
    bad2 = tmp_path / "torch_weights.nemo"
    _tar(bad2, {CONFIG_NAME: good[CONFIG_NAME], WEIGHTS_NAME: buf.getvalue()})
    with pytest.raises(Exception):  # noqa: B017
        expconf.load_model(str(bad2))
    assert not pwned.exists()

    # Extra pickled members are never read.
    extra = tmp_path / "extra.nemo"
    _tar(extra, {**good, "model.pkl": pickle.dumps(_Touch(pwned))})
    assert isinstance(expconf.load_model(str(extra)), GPTModule)
    assert not pwned.exists()


def test_archive_target_must_be_allow_listed(tmp_path: Path) -> None:
    train(tmp_path / "c", 2, save_nemo_on_train_end=True)
    good = _members(tmp_path / "c" / "tiny.nemo")
    config = json.loads(good[CONFIG_NAME])
    config["target"] = "os.system"
    bad = tmp_path / "bad_target.nemo"
    _tar(bad, {CONFIG_NAME: json.dumps(config).encode(), WEIGHTS_NAME: good[WEIGHTS_NAME]})
    with pytest.raises(ConfigError, match=re.escape("os.system")):
        expconf.load_model(str(bad))
