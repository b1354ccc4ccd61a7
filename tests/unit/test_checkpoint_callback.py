"""ModelCheckpoint driven by a tiny in-process Trainer: naming, top-k from markers, atomicity, protection."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from expconf.checkpoint.callback import ModelCheckpoint
from expconf.checkpoint.meta import MARKER_SUFFIX, CheckpointMeta
from expconf.checkpoint.writer import CheckpointWriteError
from expconf.logger import NeMoLogger
from helpers import make_trainer


class Scored(pl.LightningModule):
    """Trains a linear layer; each validation logs the next value of ``scores`` as ``val_loss``."""

    def __init__(self, scores: Sequence[float] = (1.0,)) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 1)
        self.scores = list(scores)
        self.validations = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("consumed_samples", float((self.trainer.global_step + 1) * 4), batch_size=1)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_loss", float(self.scores[min(self.validations, len(self.scores) - 1)]), batch_size=1)

    def on_validation_epoch_end(self) -> None:
        self.validations += 1

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> DataLoader[Any]:
        g = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(torch.randn(64, 4, generator=g), torch.randn(64, 1, generator=g)), batch_size=4)

    def val_dataloader(self) -> DataLoader[Any]:
        return DataLoader(TensorDataset(torch.zeros(1, 4), torch.zeros(1, 1)), batch_size=1)


def fit(
    root: Path,
    scores: Sequence[float],
    max_steps: int,
    ckpt: ModelCheckpoint,
    ckpt_path: str | None = None,
) -> pl.Trainer:
    trainer = make_trainer(root, max_steps, [ckpt])
    trainer.fit(Scored(scores), ckpt_path=ckpt_path)
    return trainer


def markers(folder: Path) -> dict[str, CheckpointMeta]:
    """Checkpoint name -> its marker, for every complete checkpoint in ``folder``."""
    out = {}
    for m in folder.glob(f"*{MARKER_SUFFIX}"):
        out[m.name[: -len(MARKER_SUFFIX)]] = CheckpointMeta.from_json(m.read_bytes())
    return out


def topk_scores(folder: Path) -> dict[str, float]:
    return {n: m.score for n, m in markers(folder).items() if m.kind == "topk" and m.score is not None}


# -- dirpath and names ------------------------------------------------------------------------------


def test_default_dirpath_is_under_the_run_dir(tmp_path: Path) -> None:
    ckpt = ModelCheckpoint()
    trainer = make_trainer(tmp_path, 2, [])
    run_dir = NeMoLogger(name="exp", log_dir=str(tmp_path / "logs"), version="v1", ckpt=ckpt).setup(trainer)
    assert ckpt.dirpath == str(run_dir / "checkpoints")
    assert trainer.checkpoint_callback is ckpt
    trainer.fit(Scored([0.5]))
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert names and all(n.startswith("exp--val_loss=0.5000-epoch=") and "-step=2" in n for n in names), names


def test_plain_trainer_without_nemologger_uses_default_root_dir(tmp_path: Path) -> None:
    fit(tmp_path, [0.5], 2, ModelCheckpoint())
    assert list((tmp_path / "checkpoints").glob("*-end.ckpt"))


def test_nemo_template_with_last_and_end_suffixes(tmp_path: Path) -> None:
    ckpt = ModelCheckpoint(
        dirpath=str(tmp_path / "c"), save_top_k=10, filename="megatron_gpt--{val_loss:.2f}-{step}-{consumed_samples}"
    )
    ckpt.CHECKPOINT_NAME_LAST = ckpt.filename + "-last"  # NeMo's last name, which NeMoLogger sets
    fit(tmp_path, [0.51234, 0.25], 4, ckpt)
    names = sorted(p.name for p in (tmp_path / "c").glob("*.ckpt"))
    assert names == [
        "megatron_gpt--val_loss=0.25-step=4-consumed_samples=16.0-end.ckpt",
        "megatron_gpt--val_loss=0.25-step=4-consumed_samples=16.0-last.ckpt",
        "megatron_gpt--val_loss=0.25-step=4-consumed_samples=16.0.ckpt",
        "megatron_gpt--val_loss=0.51-step=2-consumed_samples=8.0.ckpt",
    ]
    meta = markers(tmp_path / "c")
    assert meta["megatron_gpt--val_loss=0.51-step=2-consumed_samples=8.0.ckpt"].score == pytest.approx(0.51234)
    assert meta["megatron_gpt--val_loss=0.25-step=4-consumed_samples=16.0-end.ckpt"].kind == "end"
    assert meta["megatron_gpt--val_loss=0.25-step=4-consumed_samples=16.0-last.ckpt"].global_step == 4
    # Only one '-last' survives: the previous one is replaced.
    assert not list((tmp_path / "c").glob("*step=2*-last.ckpt*"))


def test_auto_insert_metric_name_false(tmp_path: Path) -> None:
    ckpt = ModelCheckpoint(
        dirpath=str(tmp_path / "c"), filename="run-{step:03d}-{val_loss:.1f}", auto_insert_metric_name=False
    )
    fit(tmp_path, [0.5], 2, ckpt)
    assert (tmp_path / "c" / "run-002-0.5.ckpt").is_file()


# -- top-k --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "kept"), [("min", [0.1, 0.2]), ("max", [0.9, 0.7])])
def test_top_k_by_monitor_and_mode(tmp_path: Path, mode: str, kept: list[float]) -> None:
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "c"), save_top_k=2, mode=mode)
    fit(tmp_path, [0.7, 0.1, 0.9, 0.2, 0.5], 10, ckpt)
    assert sorted(topk_scores(tmp_path / "c").values()) == pytest.approx(sorted(kept))
    on_disk = {p.name for p in (tmp_path / "c").glob("*.ckpt") if not p.name.endswith(("last.ckpt", "-end.ckpt"))}
    assert on_disk == set(topk_scores(tmp_path / "c"))
    assert ckpt.best_model_score == pytest.approx(kept[0])


def test_save_top_k_minus_one_keeps_all(tmp_path: Path) -> None:
    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "c"), save_top_k=-1)
    fit(tmp_path, [0.7, 0.1, 0.9, 0.2], 8, ckpt)
    assert len(topk_scores(tmp_path / "c")) == 4


def _rename(folder: Path, old: str, new: str) -> None:
    os.replace(folder / old, folder / new)
    os.replace(folder / (old + MARKER_SUFFIX), folder / (new + MARKER_SUFFIX))


def test_top_k_rebuilt_on_resume_from_metadata_not_names(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    fit(tmp_path, [0.3, 0.2, 0.1], 6, ModelCheckpoint(dirpath=str(folder), save_top_k=3))
    scores = topk_scores(folder)
    assert len(scores) == 3
    worst = max(scores, key=lambda n: scores[n])
    # The worst checkpoint's name now claims the best score; its marker still says 0.3.
    liar = "model--val_loss=0.0001-epoch=0-step=99.ckpt"
    _rename(folder, worst, liar)
    [end] = [n for n, m in markers(folder).items() if m.kind == "end"]

    ckpt = ModelCheckpoint(dirpath=str(folder), save_top_k=3)
    trainer = fit(tmp_path, [0.05], 8, ckpt, ckpt_path=str(folder / end))
    assert trainer.global_step == 8
    after = topk_scores(folder)
    assert liar not in after and not (folder / liar).exists(), "the metadata-worst checkpoint must be evicted"
    assert sorted(after.values()) == pytest.approx([0.05, 0.1, 0.2])
    assert ckpt.best_model_score == pytest.approx(0.05)


def test_resumed_from_checkpoint_survives_top_k_eviction(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    fit(tmp_path, [0.1, 0.2, 0.9], 6, ModelCheckpoint(dirpath=str(folder), save_top_k=3))
    scores = topk_scores(folder)
    worst = max(scores, key=lambda n: scores[n])
    ckpt = ModelCheckpoint(dirpath=str(folder), save_top_k=3)
    fit(tmp_path, [0.01, 0.02], 10, ckpt, ckpt_path=str(folder / worst))
    assert (folder / worst).is_file() and (folder / (worst + MARKER_SUFFIX)).is_file()
    assert worst not in ckpt.best_k_models  # out of the top-k, but kept on disk


def test_preemption_style_forced_save_writes_only_last(tmp_path: Path) -> None:
    class ForceAt3(pl.Callback):
        def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
            if trainer.global_step == 3:
                ckpt = trainer.checkpoint_callback
                assert isinstance(ckpt, ModelCheckpoint)
                ckpt.save(trainer, force_last=True)

    ckpt = ModelCheckpoint(dirpath=str(tmp_path / "c"), save_top_k=5)
    make_trainer(tmp_path, 3, [ckpt, ForceAt3()]).fit(Scored([0.4]))
    kinds = {n: m.kind for n, m in markers(tmp_path / "c").items() if m.global_step == 3}
    assert sorted(kinds.values()) == ["end", "last"], kinds


# -- atomicity -----------------------------------------------------------------------------------------


def test_incomplete_and_temporary_files_removed_by_rank0_at_start(tmp_path: Path) -> None:
    """Only what is provably expconf's goes: its temporary files, orphan markers and marker-less
    checkpoints that carry expconf's record; files it cannot prove it wrote stay (expconf never deletes a file it did not create)."""
    folder = tmp_path / "c"
    folder.mkdir()
    junk = [
        "model--val_loss=0.1000-epoch=0-step=50-last.ckpt",  # expconf's, no marker: cut off before it
        ".model--step=60-last.ckpt.tmp-abc123",  # leftover temporary file
        "gone.ckpt" + MARKER_SUFFIX,  # orphan marker
    ]
    torch.save({"state_dict": {}, "global_step": 50, "expconf": {"kind": "last", "global_step": 50}}, folder / junk[0])
    for name in junk[1:]:
        (folder / name).write_bytes(b"partial")
    foreign = ["sharded-last", "garbage-last.ckpt"]  # a folder and an unreadable file of unknown origin
    (folder / foreign[0]).mkdir()
    (folder / foreign[0] / "shard0").write_bytes(b"x")
    (folder / foreign[1]).write_bytes(b"partial")
    keep = folder / "notes.txt"
    keep.write_text("not a checkpoint")
    ckpt = ModelCheckpoint(dirpath=str(folder))
    fit(tmp_path, [0.5], 2, ckpt)
    left = {p.name for p in folder.iterdir()}
    assert not left & set(junk), left & set(junk)
    assert keep.exists() and set(foreign) <= left
    assert not [n for n in left if ".tmp-" in n]
    for name in left - set(foreign):
        if name.endswith(".ckpt"):
            assert name + MARKER_SUFFIX in left, f"{name} has no completion marker"


def test_a_failed_write_leaves_no_visible_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    real_save = torch.save

    def half_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(obj, dict) and "state_dict" in obj:
            f.write(b"half a checkpoint")
            raise OSError("disk full")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(CheckpointWriteError, match="disk full"):
        fit(tmp_path, [0.5], 2, ModelCheckpoint(dirpath=str(folder)))
    assert [p.name for p in folder.iterdir()] == []


def test_marker_is_written_after_the_checkpoint_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "c"
    seen: list[tuple[str, bool]] = []
    from expconf.storage import Storage

    real = Storage.write_atomic

    def spy(self: Storage, name: str, write: Any) -> int:
        if name.endswith(MARKER_SUFFIX):
            ckpt_name = name[: -len(MARKER_SUFFIX)]
            seen.append((ckpt_name, os.path.getsize(self.path(ckpt_name)) > 0))
        return real(self, name, write)

    monkeypatch.setattr(Storage, "write_atomic", spy)
    fit(tmp_path, [0.5], 2, ModelCheckpoint(dirpath=str(folder)))
    assert seen and all(ok for _, ok in seen), seen
    marker = json.loads((folder / (seen[0][0] + MARKER_SUFFIX)).read_text())
    assert marker["size_bytes"] == (folder / seen[0][0]).stat().st_size


def test_naming_a_checkpoint_asks_the_storage_nothing_during_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version counter knows the folder from the listing at setup and from this run's own saves:
    a file already there gets '-v1', and no save in the loop makes an existence round trip (on S3 a
    request that fails, in a traceback, once the server is gone)."""
    from expconf.storage import Storage

    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "fixed.ckpt").write_bytes(b"someone else's file")

    exists = Storage.exists
    training = {"on": False}

    class Training(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            training["on"] = True  # after the checkpoint callback's setup (which lists the folder)

    def no_round_trip(self: Storage, name: str) -> bool:
        assert not training["on"], f"exists({name!r}) called during training"
        return exists(self, name)

    monkeypatch.setattr(Storage, "exists", no_round_trip)
    ckpt = ModelCheckpoint(dirpath=str(folder), filename="fixed", monitor=None, save_top_k=-1, save_last=False)
    make_trainer(tmp_path, 4, [ckpt, Training()]).fit(Scored([1.0, 0.9, 0.8, 0.7]))
    names = sorted(p.name for p in folder.glob("*.ckpt"))
    assert names == ["fixed-end.ckpt", "fixed-v1.ckpt", "fixed-v2.ckpt", "fixed.ckpt"], names
    assert (folder / "fixed.ckpt").read_bytes() == b"someone else's file"
