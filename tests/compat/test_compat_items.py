"""NeMo 2.0 and Lightning code that uses expconf's objects from Python."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from toys import Toy

import expconf
from expconf.checkpoint.meta import MARKER_SUFFIX
from expconf.distributed import handoff
from helpers import REPO, make_trainer


def test_item01_decisions_belong_to_the_run_that_made_them(tmp_path: Path) -> None:
    first = expconf.NeMoLogger(name="exp_a", version="v1", log_dir=str(tmp_path / "logs"))
    t1 = make_trainer(tmp_path, 2)
    assert first.setup(t1).log_dir == (tmp_path / "logs" / "exp_a" / "v1").resolve()
    second = expconf.NeMoLogger(name="exp_b", explicit_log_dir=str(tmp_path / "elsewhere"))
    assert second.setup(make_trainer(tmp_path, 2)).log_dir == (tmp_path / "elsewhere").resolve()

    t = make_trainer(tmp_path, 2)
    ignore = expconf.AutoResume(
        dirpath=str(tmp_path / "empty1"), resume_if_exists=True, resume_ignore_no_checkpoint=True
    )
    with pytest.warns(UserWarning, match="no checkpoint found"):
        assert ignore.setup(t) is None
    with pytest.raises(expconf.NotFoundError, match="empty2"):
        expconf.AutoResume(dirpath=str(tmp_path / "empty2"), resume_if_exists=True).setup(t)

    # Once the run's trainer is torn down, its decision is gone from the process environment.
    t1.fit(Toy())
    assert handoff.RUN_DIR_ENV not in os.environ


def test_item02_setup_sets_trainer_ckpt_path_and_fit_resumes(tmp_path: Path) -> None:
    ckpt_dir = tmp_path / "ckpts"
    first = make_trainer(tmp_path, 3, [expconf.ModelCheckpoint(dirpath=str(ckpt_dir), monitor=None, save_top_k=0)])
    first.fit(Toy())

    trainer = make_trainer(tmp_path, 5, [expconf.ModelCheckpoint(dirpath=str(ckpt_dir), monitor=None, save_top_k=0)])
    resume = expconf.AutoResume(resume_if_exists=True, resume_past_end=True)
    resume.setup(trainer)
    assert trainer.ckpt_path is not None and str(trainer.ckpt_path).endswith("-end.ckpt")
    model = Toy()
    trainer.fit(model)  # NeMo style: no ckpt_path argument
    assert model.start_step == 3 and trainer.global_step == 5


def test_item03_plain_lightning_checkpoint_in_nemo_logger(tmp_path: Path) -> None:
    ckpt = LightningModelCheckpoint(monitor="val_loss", save_last=True)
    trainer = make_trainer(tmp_path, 4)
    app = expconf.NeMoLogger(name="exp", log_dir=str(tmp_path), version="v1", ckpt=ckpt).setup(trainer)
    assert ckpt in trainer.callbacks
    assert Path(ckpt.dirpath) == app.log_dir / "checkpoints"
    assert ckpt.filename == "exp--{val_loss:.4f}-{epoch}-{step}"
    trainer.fit(Toy())
    names = sorted(p.name for p in (app.log_dir / "checkpoints").iterdir())
    assert any(n.startswith("exp--val_loss=") and n.endswith("-last.ckpt") for n in names), names


def test_item04_the_trainers_own_loggers_are_kept(tmp_path: Path) -> None:
    csv = CSVLogger(save_dir=str(tmp_path / "csv"), name="metrics")
    trainer = make_trainer(tmp_path, 2, logger=csv)
    app = expconf.NeMoLogger(name="exp", log_dir=str(tmp_path), version="v1").setup(trainer)
    assert trainer.loggers == [csv]
    assert Path(csv.log_dir).parent == app.log_dir  # moved under the run dir (update_logger_directory)
    trainer.fit(Toy())
    assert (app.log_dir / "metrics" / "metrics.csv").is_file()


def test_item05_a_users_lightning_checkpoint_is_kept_without_ckpt(tmp_path: Path) -> None:
    mine = LightningModelCheckpoint(dirpath=str(tmp_path / "mine"), save_top_k=-1)
    trainer = make_trainer(tmp_path, 2, [mine])
    expconf.NeMoLogger(name="exp", log_dir=str(tmp_path), version="v1").setup(trainer)
    assert trainer.checkpoint_callback is mine and Path(mine.dirpath) == tmp_path / "mine"
    trainer.fit(Toy())
    assert list((tmp_path / "mine").glob("*.ckpt"))


def test_item06_resume_refusals_are_value_errors(tmp_path: Path) -> None:
    done = tmp_path / "done"
    make_trainer(tmp_path, 2, [expconf.ModelCheckpoint(dirpath=str(done))]).fit(Toy())
    with pytest.raises(ValueError, match="training already completed"):
        expconf.AutoResume(dirpath=str(done), resume_if_exists=True).setup(make_trainer(tmp_path, 4))

    cut = tmp_path / "cut"
    cut.mkdir()
    # expconf's own checkpoint whose marker was never written (a crash right after the data).
    torch.save({"state_dict": {}, "global_step": 7, "expconf": {"kind": "last"}}, cut / "m--step=7-last.ckpt")
    with pytest.raises(ValueError, match="incomplete"):
        expconf.AutoResume(dirpath=str(cut), resume_if_exists=True).setup(make_trainer(tmp_path, 4))
    assert issubclass(expconf.TrainingCompletedError, ValueError)
    assert issubclass(expconf.IncompleteCheckpointError, ValueError)


def test_item07_checkpoints_expconf_did_not_write_are_never_deleted(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    lightning = LightningModelCheckpoint(dirpath=str(shared), save_top_k=-1, every_n_train_steps=1)
    make_trainer(tmp_path, 2, [lightning]).fit(Toy())
    theirs = {p.name: p.read_bytes() for p in shared.iterdir()}
    assert set(theirs) == {"epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt"}

    make_trainer(tmp_path, 4, [expconf.ModelCheckpoint(dirpath=str(shared), save_top_k=1)]).fit(Toy())
    after = {p.name: p.read_bytes() for p in shared.iterdir() if p.name in theirs}
    assert after == theirs, "a foreign checkpoint was removed or rewritten"


def test_item07_a_readable_foreign_last_checkpoint_is_a_resume_candidate(tmp_path: Path) -> None:
    ckpt = LightningModelCheckpoint(monitor="val_loss", save_last=True)
    trainer = make_trainer(tmp_path, 4)
    app = expconf.NeMoLogger(name="exp", log_dir=str(tmp_path), ckpt=ckpt).setup(trainer, resume_if_exists=True)
    trainer.fit(Toy())

    again = make_trainer(tmp_path, 6)
    expconf.NeMoLogger(name="exp", log_dir=str(tmp_path), ckpt=LightningModelCheckpoint(save_last=True)).setup(
        again, resume_if_exists=True
    )
    expconf.AutoResume(resume_if_exists=True).setup(again)
    [last] = (app.log_dir / "checkpoints").glob("*-last.ckpt")
    assert again.ckpt_path == str(last)
    model = Toy()
    again.fit(model)
    assert model.start_step == 4


def test_item08_every_lightning_and_nemo_keyword_is_accepted() -> None:
    import inspect

    ours = inspect.signature(expconf.ModelCheckpoint).parameters
    missing = [p for p in inspect.signature(LightningModelCheckpoint).parameters if p not in ours]
    assert missing == []
    timing = expconf.TimingCallback(timer_kwargs={"sync_cuda": False}, log_tokens_per_sec=True)
    assert timing.log_tokens_per_sec and not timing.sync_cuda
    assert expconf.TimingCallback().log_tokens_per_sec is False  # NeMo's default
    pre = expconf.PreemptionCallback(sig=None)
    assert pre.sig == signal.SIGTERM and pre.interrupted is False
    restore = expconf.RestoreConfig(path="base.ckpt")
    resume = expconf.AutoResume(resume_from_directory="d", resume_if_exists=True, restore_config=restore)
    assert resume.dirpath == "d" and resume.import_path == "base.ckpt"
    assert expconf.AutoResume(resume_from_path="x.ckpt").path == "x.ckpt"
    assert expconf.AutoResume(import_path="w.ckpt").restore_config == expconf.RestoreConfig(path="w.ckpt")
    with pytest.raises(ValueError, match="load_optim_state"):
        expconf.RestoreConfig(path="base.ckpt", load_optim_state=True)
    with pytest.raises(ValueError, match="one setting"):
        expconf.AutoResume(path="a.ckpt", resume_from_path="b.ckpt")


@pytest.mark.parametrize(
    ("arguments", "lightnings_pattern"),
    [
        ({"save_top_k": -2}, r".*Must be >= -1"),
        ({"every_n_epochs": -1}, r".*Must be >= 0"),
        ({"every_n_train_steps": -1}, r".*Must be >= 0"),
        ({"mode": "unknown_option"}, r"`mode` can be .* but got unknown_option"),
        ({"every_n_train_steps": 1, "every_n_epochs": 2}, r".*Combination of parameters every_n_train_steps"),
        (
            {"train_time_interval": timedelta(minutes=1), "every_n_epochs": 2},
            r".*Combination of parameters every_n_train_steps",
        ),
    ],
)
def test_item08_argument_errors_keep_lightnings_type_and_wording(
    arguments: dict[str, object], lightnings_pattern: str
) -> None:
    """The patterns Lightning's own ModelCheckpoint tests match (test_invalid_top_k, ...)."""
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    with pytest.raises(MisconfigurationException, match=lightnings_pattern) as info:
        expconf.ModelCheckpoint(**arguments)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


def test_item08_save_on_exception_writes_a_resumable_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "c"
    ckpt = expconf.ModelCheckpoint(dirpath=str(folder), monitor=None, save_top_k=0, save_on_exception=True)
    with caplog.at_level(logging.INFO, logger="expconf"), pytest.raises(RuntimeError, match="on purpose"):
        make_trainer(tmp_path, 10, [ckpt]).fit(Toy(fail_at=3))
    assert "saved checkpoint" in caplog.text  # verbose (NeMo's default) logs every save
    assert (folder / "epoch=0-step=3.ckpt").is_file()  # Lightning's <filename>.ckpt
    last = folder / "last.ckpt"
    assert json.loads((folder / (last.name + MARKER_SUFFIX)).read_text())["global_step"] == 3
    resume = expconf.AutoResume(dirpath=str(folder), resume_if_exists=True)
    again = make_trainer(tmp_path, 5, [expconf.ModelCheckpoint(dirpath=str(folder), monitor=None, save_top_k=1)])
    resume.setup(again)
    model = Toy()
    again.fit(model)
    assert model.start_step == 3


def test_item08_version_counter_time_interval_and_epoch_end_saves(tmp_path: Path) -> None:
    # A file name without the step is taken at the second save: -v1 instead of overwriting.
    counted = expconf.ModelCheckpoint(
        dirpath=str(tmp_path / "v"), filename="fixed", monitor=None, save_top_k=-1, save_last=False
    )
    make_trainer(tmp_path, 4, [counted]).fit(Toy())
    names = sorted(p.name for p in (tmp_path / "v").glob("*.ckpt"))
    assert names[:3] == ["fixed-end.ckpt", "fixed-v1.ckpt", "fixed.ckpt"], names
    overwrite = expconf.ModelCheckpoint(
        dirpath=str(tmp_path / "o"), filename="fixed", monitor=None, save_top_k=-1, enable_version_counter=False
    )
    make_trainer(tmp_path, 4, [overwrite]).fit(Toy())
    assert not list((tmp_path / "o").glob("*-v1*"))

    def saves(ckpt: expconf.ModelCheckpoint, **trainer_kwargs: object) -> list[tuple[int, bool]]:
        """(step, end) of every save ``ckpt`` makes in a short run."""
        seen: list[tuple[int, bool]] = []
        original = ckpt.save

        def record(trainer: pl.Trainer, **kwargs: bool) -> str | None:
            seen.append((trainer.global_step, bool(kwargs.get("end", False))))
            return original(trainer, **kwargs)

        ckpt.save = record  # type: ignore[method-assign]
        make_trainer(tmp_path, 4, [ckpt], **trainer_kwargs).fit(Toy())  # type: ignore[arg-type]
        return seen

    # A zero interval is always due: one save per optimizer step.
    timed = expconf.ModelCheckpoint(
        dirpath=str(tmp_path / "t"), monitor=None, save_top_k=1, train_time_interval=timedelta(0)
    )
    assert saves(timed, limit_val_batches=0) == [(1, False), (2, False), (3, False), (4, False), (4, True)]
    # save_on_train_epoch_end: at the end of each 2-batch epoch, not after each (per-batch) validation.
    epochs = expconf.ModelCheckpoint(
        dirpath=str(tmp_path / "e"), monitor=None, save_top_k=1, save_on_train_epoch_end=True
    )
    assert saves(epochs, limit_train_batches=2, val_check_interval=1) == [(2, False), (4, False), (4, True)]
    after_validation = expconf.ModelCheckpoint(dirpath=str(tmp_path / "a"), monitor=None, save_top_k=1)
    every_batch = [(1, False), (2, False), (3, False), (4, False), (4, True)]
    assert saves(after_validation, limit_train_batches=2, val_check_interval=1) == every_batch
    no_validation = expconf.ModelCheckpoint(
        dirpath=str(tmp_path / "n"), monitor=None, save_top_k=1, save_on_train_epoch_end=None
    )
    assert saves(no_validation, limit_train_batches=2, limit_val_batches=0) == [(2, False), (4, False), (4, True)]
    never = expconf.ModelCheckpoint(dirpath=str(tmp_path / "x"), monitor=None, save_top_k=1)
    assert saves(never, limit_val_batches=0) == [(4, True)]

    with pytest.raises(ValueError, match="mutually exclusive"):
        expconf.ModelCheckpoint(every_n_train_steps=2, train_time_interval=timedelta(seconds=5))

    # NeMo's save_optim_on_train_end=False: the '-end' checkpoint without optimizer state.
    for keep in (True, False):
        folder = tmp_path / f"optim-{keep}"
        ckpt = expconf.ModelCheckpoint(dirpath=str(folder), monitor=None, save_top_k=1, save_optim_on_train_end=keep)
        make_trainer(tmp_path, 2, [ckpt]).fit(Toy())
        [end] = folder.glob("*-end.ckpt")
        assert ("optimizer_states" in torch.load(end, weights_only=True)) == keep


def test_item09_setup_returns_an_app_state(tmp_path: Path) -> None:
    app = expconf.NeMoLogger(name="exp", log_dir=str(tmp_path), version="v3").setup(make_trainer(tmp_path, 2))
    assert app.log_dir == (tmp_path / "exp" / "v3").resolve()
    assert (app.name, app.version, app.exp_dir) == ("exp", "v3", tmp_path.resolve())
    # It also stands for the run dir, as the Path it used to be.
    assert app == app.log_dir and os.fspath(app) == str(app.log_dir) and (app / "cmd-args.log").is_file()
    assert app.is_dir()


PREEMPTED_SCRIPT = """
import os, signal, sys
import pytorch_lightning as pl
sys.path.insert(0, {tests!r})
from helpers import make_trainer
from toys import Toy
import expconf

class SigtermAt(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

ckpt = expconf.ModelCheckpoint(dirpath="ckpts", monitor=None, save_top_k=1)
trainer = make_trainer(".", 50, [SigtermAt(), expconf.PreemptionCallback(), ckpt])
trainer.fit(Toy())
print("fit returned: the process should have ended")
"""


def test_item10_preemption_in_a_plain_trainer_exits_with_the_requeue_code(tmp_path: Path) -> None:
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent(PREEMPTED_SCRIPT.format(tests=str(Path(__file__).parents[1]))))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 75, done.stderr[-3000:]
    assert "fit returned" not in done.stdout
    marker = tmp_path / "ckpts" / ("last.ckpt" + MARKER_SUFFIX)
    assert json.loads(marker.read_text())["global_step"] == 2
