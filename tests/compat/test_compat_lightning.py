"""Lightning's ``ModelCheckpoint`` behaviours that expconf's class shares (issue 12's yardstick,
written as expconf's own tests): names, top-k without a monitor, NaN scores, the version counter,
``save_last="link"``, exceptions after the end, state, pickling, and what resume and ``runs show``
make of Lightning-style names."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import yaml
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from toys import Toy

import expconf
from expconf import runs
from expconf.checkpoint.meta import MARKER_SUFFIX
from helpers import make_trainer


def checkpoints(folder: Path) -> set[str]:
    """The checkpoint files in ``folder`` (markers left out)."""
    return {p.name for p in folder.iterdir() if p.name.endswith(".ckpt")}


def step_of(path: Path) -> int:
    return int(json.loads(Path(str(path) + MARKER_SUFFIX).read_text())["global_step"])


class LogsScores(Toy):
    """Logs ``score`` (the next of ``scores``) at every validation."""

    def __init__(self, scores: list[float]) -> None:
        super().__init__()
        self.scores = scores
        self.seen = 0

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("score", self.scores[min(self.seen, len(self.scores) - 1)], batch_size=1)

    def on_validation_epoch_end(self) -> None:
        self.seen += 1


def test_names_are_lightnings_without_nemologger_and_nemos_with_it(tmp_path: Path) -> None:
    plain = expconf.ModelCheckpoint(dirpath=str(tmp_path / "plain"), monitor=None, save_top_k=1)
    make_trainer(tmp_path, 4, [plain]).fit(Toy())
    assert checkpoints(tmp_path / "plain") == {"epoch=0-step=4.ckpt", "last.ckpt", "epoch=0-step=4-end.ckpt"}

    # NeMoLogger names every checkpoint callback NeMo's way, also one already in the Trainer's list
    # and one with its own filename (whose last checkpoint is '<filename>-last').
    own = expconf.ModelCheckpoint(dirpath=str(tmp_path / "own"), monitor=None, save_top_k=1, filename="f-{step}")
    trainer = make_trainer(tmp_path, 2, [own])
    expconf.NeMoLogger(name="exp", log_dir=str(tmp_path / "logs"), ckpt=None).setup(trainer)
    trainer.fit(Toy())
    assert checkpoints(tmp_path / "own") == {"f-step=2.ckpt", "f-step=2-last.ckpt", "f-step=2-end.ckpt"}
    named = expconf.ModelCheckpoint(monitor=None, save_top_k=1)
    app = expconf.NeMoLogger(name="exp", log_dir=str(tmp_path / "logs2"), ckpt=named).setup(make_trainer(tmp_path, 2))
    assert named.filename == "exp--{epoch}-{step}" and named.CHECKPOINT_NAME_LAST == "exp--{epoch}-{step}-last"
    assert (
        named.format_checkpoint_name({"epoch": 0, "step": 2}) == f"{app.log_dir}/checkpoints/exp--epoch=0-step=2.ckpt"
    )


def test_without_a_monitor_top_k_keeps_the_newest_or_all(tmp_path: Path) -> None:
    for k in (2, 3, 5):
        with pytest.raises(MisconfigurationException, match="monitor=None"):
            expconf.ModelCheckpoint(monitor=None, save_top_k=k)
    with pytest.raises(ValueError, match="monitor=None"):
        expconf.ModelCheckpoint(monitor=None, save_top_k=2)
    newest = expconf.ModelCheckpoint(dirpath=str(tmp_path / "one"), monitor=None, save_top_k=1, save_last=False)
    make_trainer(tmp_path, 6, [newest]).fit(Toy())
    assert checkpoints(tmp_path / "one") == {"epoch=0-step=6.ckpt", "epoch=0-step=6-end.ckpt"}
    assert newest.best_model_path == str(tmp_path / "one" / "epoch=0-step=6.ckpt")
    assert newest.best_model_score is None and newest.best_k_models == {}
    every = expconf.ModelCheckpoint(dirpath=str(tmp_path / "all"), monitor=None, save_top_k=-1, save_last=False)
    make_trainer(tmp_path, 6, [every]).fit(Toy())
    assert {f"epoch=0-step={s}.ckpt" for s in (2, 4, 6)} <= checkpoints(tmp_path / "all")


def test_no_trigger_means_every_validation_and_every_n_epochs_counts_epochs(tmp_path: Path) -> None:
    ckpt = expconf.ModelCheckpoint(monitor="val_loss")
    assert (ckpt.every_n_epochs, ckpt.every_n_train_steps) == (1, 0)
    assert expconf.ModelCheckpoint(every_n_train_steps=3).every_n_epochs == 0
    # Two batches an epoch, validated once an epoch: epochs 2 and 4 (steps 4 and 8) are saved.
    two = expconf.ModelCheckpoint(
        dirpath=str(tmp_path / "c"), monitor=None, save_top_k=-1, save_last=False, every_n_epochs=2
    )
    make_trainer(tmp_path, 8, [two], limit_train_batches=2, val_check_interval=None).fit(Toy())
    assert checkpoints(tmp_path / "c") - {"epoch=3-step=8-end.ckpt"} == {"epoch=1-step=4.ckpt", "epoch=3-step=8.ckpt"}


@pytest.mark.parametrize(("mode", "worst"), [("min", math.inf), ("max", -math.inf)])
def test_a_nan_score_ranks_last_and_is_kept_as_an_infinity(tmp_path: Path, mode: str, worst: float) -> None:
    ckpt = expconf.ModelCheckpoint(dirpath=str(tmp_path / "c"), monitor="score", mode=mode, save_top_k=1)
    make_trainer(tmp_path, 2, [ckpt]).fit(LogsScores([math.nan]))
    assert float(ckpt.best_model_score) == worst and float(ckpt.current_score) == worst  # type: ignore[arg-type]
    ckpt = expconf.ModelCheckpoint(dirpath=str(tmp_path / "d"), monitor="score", mode=mode, save_top_k=1)
    make_trainer(tmp_path, 4, [ckpt]).fit(LogsScores([math.nan, 0.5]))
    assert ckpt.best_model_score.item() == 0.5  # type: ignore[union-attr]  # a tensor, as Lightning's
    assert checkpoints(tmp_path / "d") == {"epoch=0-step=4.ckpt", "last.ckpt", "epoch=0-step=4-end.ckpt"}


def test_a_new_run_in_the_same_folder_versions_its_names_and_keeps_the_old_files(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    for run in range(2):
        ckpt = expconf.ModelCheckpoint(dirpath=str(folder), monitor="val_loss", save_top_k=-1, filename="{step}")
        make_trainer(tmp_path, 4, [ckpt]).fit(Toy())
        suffix = "-v1" if run else ""
        # Not a resumed run: its top-k holds only its own checkpoints.
        assert {Path(p).name for p in ckpt.best_k_models} == {f"step=2{suffix}.ckpt", f"step=4{suffix}.ckpt"}
    assert {"step=2.ckpt", "step=4.ckpt", "step=2-v1.ckpt", "step=4-v1.ckpt", "last.ckpt", "last-v1.ckpt"} <= (
        checkpoints(folder)
    )
    # Without the counter expconf overwrites its own checkpoints, but never another tool's file.
    (folder / "foreign").mkdir()
    (folder / "foreign" / "step=2.ckpt").write_bytes(b"not expconf's")
    for _ in range(2):
        ckpt = expconf.ModelCheckpoint(
            dirpath=str(folder / "foreign"),
            monitor=None,
            save_top_k=-1,
            filename="{step}",
            enable_version_counter=False,
        )
        make_trainer(tmp_path, 4, [ckpt]).fit(Toy())
    assert (folder / "foreign" / "step=2.ckpt").read_bytes() == b"not expconf's"
    assert checkpoints(folder / "foreign") == {"step=2.ckpt", "step=2-v1.ckpt", "step=4.ckpt", "last.ckpt"} | {
        "step=4-end.ckpt"
    }


def test_save_last_link_points_at_the_checkpoint_of_the_same_step(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    ckpt = expconf.ModelCheckpoint(dirpath=str(folder), monitor="val_loss", save_top_k=-1, save_last="link")
    make_trainer(tmp_path, 4, [ckpt]).fit(Toy())
    last = folder / "last.ckpt"
    assert last.is_symlink() and os.readlink(last) == "epoch=0-step=4.ckpt"  # relative: the folder can move
    assert step_of(last) == 4 and torch.load(last, weights_only=True)["global_step"] == 4
    with pytest.raises(ValueError, match="only supported for local"):
        remote = expconf.ModelCheckpoint(dirpath="memory://bucket/c", save_last="link")
        remote.setup(make_trainer(tmp_path, 1), Toy(), stage="fit")


def test_an_exception_after_the_last_step_still_saves(tmp_path: Path) -> None:
    class FailsAtFitEnd(pl.Callback):
        def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            raise RuntimeError("trouble at the end")

    folder = tmp_path / "c"
    ckpt = expconf.ModelCheckpoint(dirpath=str(folder), filename="exception", save_on_exception=True, every_n_epochs=7)
    with pytest.raises(RuntimeError, match="trouble at the end"):
        make_trainer(tmp_path, 2, [ckpt, FailsAtFitEnd()]).fit(Toy())
    assert torch.load(folder / "exception.ckpt", weights_only=True)["state_dict"]


def test_save_last_writes_a_last_checkpoint_when_nothing_else_saved(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    ckpt = expconf.ModelCheckpoint(dirpath=str(folder), monitor=None, save_top_k=0, save_last=True)
    make_trainer(tmp_path, 3, [ckpt], limit_val_batches=0).fit(Toy())
    assert ckpt.last_model_path == str(folder / "last.ckpt") and step_of(folder / "last.ckpt") == 3


def test_state_dict_is_lightnings_and_pickling_keeps_the_callback(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    ckpt = expconf.ModelCheckpoint(dirpath=str(folder), monitor="val_loss", save_top_k=2)
    assert vars(pickle.loads(pickle.dumps(ckpt))) == vars(ckpt)
    make_trainer(tmp_path, 6, [ckpt]).fit(Toy())
    again = pickle.loads(pickle.dumps(ckpt))  # after training too (no writer thread in the copy)
    assert again.best_model_path == ckpt.best_model_path and again.best_k_models.keys() == ckpt.best_k_models.keys()

    # The key and the content are Lightning's: Lightning's own class restores expconf's state.
    last = torch.load(folder / "last.ckpt", weights_only=True)
    key = "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, 'train_time_interval': None}"
    assert ckpt.state_key == key
    state = last["callbacks"][key]
    lightning = LightningModelCheckpoint(dirpath=str(folder), monitor="val_loss", save_top_k=2)
    lightning.load_state_dict(state)
    assert lightning.best_model_path == state["best_model_path"] and lightning.best_k_models == state["best_k_models"]
    # Another folder: only best_model_path comes back, with a warning, as Lightning.
    elsewhere = expconf.ModelCheckpoint(dirpath=str(tmp_path / "other"))
    with pytest.warns(UserWarning, match="dirpath has changed"):
        elsewhere.load_state_dict(ckpt.state_dict())
    assert elsewhere.best_model_path == ckpt.best_model_path and elsewhere.best_k_models == {}
    ckpt.to_yaml(str(tmp_path / "best.yaml"))
    assert set(yaml.safe_load((tmp_path / "best.yaml").read_text())) == set(ckpt.best_k_models)


def test_resume_and_runs_show_take_lightning_style_and_foreign_last_checkpoints(tmp_path: Path) -> None:
    run_dir = tmp_path / "exp" / "v1"
    folder = run_dir / "checkpoints"
    # Another tool's checkpoint, no marker: a candidate described from its own content.
    lightning = LightningModelCheckpoint(dirpath=str(folder), save_last=True, every_n_train_steps=1)
    make_trainer(tmp_path, 3, [lightning]).fit(Toy())
    (run_dir / "cmd-args.log").write_text("train.py\n")
    out = io.StringIO()
    assert runs.show(run_dir, out) == 0
    text = out.getvalue()
    candidates = text.split("candidates")[1].split("incomplete")[0]
    assert "last.ckpt  step=3" in candidates and "another tool's" in candidates
    assert f"resume would pick: {folder}/last.ckpt" in text
    trainer = make_trainer(tmp_path, 5)
    expconf.AutoResume(resume_from_directory=str(folder), resume_if_exists=True).setup(trainer)
    assert Path(str(trainer.ckpt_path)) == folder / "last.ckpt"


def test_nemos_autoresume_names_in_a_config_name_the_key_to_use(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The objects take NeMo's current names; the config spells each setting once, and an error
    that meets a NeMo name says which key it is."""
    from expconf.config.resume import ResumeConfig
    from expconf.config.schema import unknown_key_error
    from expconf.train import main

    for nemo, key in (("resume_from_path", "resume.path"), ("resume_from_directory", "resume.dirpath")):
        assert f"is {key} here" in str(unknown_key_error(f"resume.{nemo}", "x", ResumeConfig))
    with pytest.raises(SystemExit) as exited:
        main(["+recipe=gpt", "+resume.restore_config.path=w.ckpt"])
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert exited.value.code == 2 and "resume.restore_config" in line and "is resume.import_path here" in line, line
    assert os.listdir(workdir) == []
