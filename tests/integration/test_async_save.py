"""async_save through the real ModelCheckpoint and Trainer, on a local folder and on the S3 server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from s3server import ACCESS_KEY, SECRET_KEY, SeaweedS3

from expconf.checkpoint.callback import ModelCheckpoint
from expconf.checkpoint.meta import scan
from expconf.checkpoint.writer import SavePlan
from helpers import quiet_trainer

pytestmark = pytest.mark.slow


class Tiny(pl.LightningModule):
    """Four-by-four linear model trained on random data."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.lin(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.1)

    def train_dataloader(self) -> Any:
        data = torch.utils.data.TensorDataset(torch.randn(16, 4))
        return torch.utils.data.DataLoader(data, batch_size=4)


def location(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    if kind == "local":
        return str(tmp_path / "ck"), {}
    server: SeaweedS3 = request.getfixturevalue("s3_server")
    bucket = server.make_bucket()
    return f"s3://{bucket}/ck", {"key": ACCESS_KEY, "secret": SECRET_KEY, "endpoint_url": server.endpoint}


@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_saved_state_is_the_state_when_save_returned(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    dirpath, options = location(kind, tmp_path, request)
    ckpt = ModelCheckpoint(
        dirpath=dirpath, monitor=None, save_top_k=0, every_n_train_steps=2, async_save=True, storage_options=options
    )
    model = Tiny()
    trainer = quiet_trainer(tmp_path, [ckpt], max_steps=3)
    trainer.fit(model)
    storage = ckpt.get_storage(trainer)
    assert {m.kind for m in scan(storage).complete.values()} == {"last", "end"}  # finished before fit returned

    # Hold the background writer so that the write below cannot start before the parameters change.
    gate = threading.Event()
    hold = SavePlan(label="hold")
    hold.call(lambda: gate.wait(60))
    ckpt.writer.submit(hold)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_moment = trainer.optimizers[0].state_dict()["state"][0]["exp_avg"].clone()
    path = ckpt.save(trainer, end=True)
    assert path is not None and ckpt.writer.pending() == 2  # save() returned while the write waits
    with torch.no_grad():
        for p in model.parameters():
            p.add_(100.0)
        trainer.optimizers[0].state_dict()["state"][0]["exp_avg"].mul_(-3.0)
    gate.set()
    ckpt.wait()

    name = path.rsplit("/", 1)[-1]
    assert name in scan(storage).complete
    with storage.open_read(name) as f:
        saved = torch.load(f, weights_only=True)
    for k, v in expected.items():
        assert torch.equal(saved["state_dict"][k], v), k
        assert not torch.equal(saved["state_dict"][k], model.state_dict()[k])
    assert torch.equal(saved["optimizer_states"][0]["state"][0]["exp_avg"], expected_moment)
    ckpt.writer.close()
