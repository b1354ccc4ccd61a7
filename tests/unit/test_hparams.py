"""The config reaches each logger redacted, and TensorBoard gets one hparams session per run dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import Logger, TensorBoardLogger

from expconf.hparams import flatten, log_hyperparameters, monitored_metrics
from expconf.redact import REDACTED

CONFIG: dict[str, Any] = {
    "model": {"n_layer": 2, "dropout": 0.1, "tied": True},
    "trainer": {"max_steps": 8, "precision": None, "devices": "auto"},
    "log": {"name": "x", "ckpt": {"monitor": "val_loss", "storage_options": {"secret": "s3cr3t-value"}}},
    "data": {"paths": ["a.bin", "b.bin"], "extra": {}},
}


class Recorder(Logger):
    """A logger that keeps what it was sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> str:
        return "0"

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.sent.append(params)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass


def sessions(log_dir: Path) -> int:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return sum(
        v.tag == "_hparams_/session_start_info"
        for events in log_dir.rglob("events.out.tfevents.*")
        for event in EventFileLoader(str(events)).Load()
        for v in event.summary.value
    )


def test_flatten_dots_keys_and_stringifies_the_rest() -> None:
    flat = flatten(CONFIG)
    assert flat["model.n_layer"] == 2 and flat["model.tied"] is True
    assert flat["trainer.precision"] == "None" and flat["data.paths"] == "['a.bin', 'b.bin']"
    assert flat["data.extra"] == "{}"
    assert monitored_metrics(CONFIG) == ["val_loss"] and monitored_metrics({}) == []


def test_every_logger_gets_the_nested_redacted_config() -> None:
    recorder = Recorder()
    log_hyperparameters([recorder], CONFIG)
    [sent] = recorder.sent
    assert sent["model"] == CONFIG["model"]
    assert sent["log"]["ckpt"]["storage_options"] == {"secret": REDACTED}
    assert CONFIG["log"]["ckpt"]["storage_options"]["secret"] == "s3cr3t-value"  # the caller's dict is untouched
    log_hyperparameters([recorder], None)
    assert len(recorder.sent) == 1


def test_tensorboard_gets_hparams_yaml_and_one_session_even_when_resumed(tmp_path: Path) -> None:
    def start() -> TensorBoardLogger:
        tb = TensorBoardLogger(save_dir=str(tmp_path), name="tb_logs", version="", default_hp_metric=False)
        log_hyperparameters([tb], CONFIG)
        tb.save()
        tb.finalize("success")
        return tb

    tb = start()
    text = (Path(tb.log_dir) / "hparams.yaml").read_text()
    assert "n_layer: 2" in text and "s3cr3t" not in text and REDACTED in text
    assert sessions(tmp_path) == 1
    start()  # the same run dir again: a resume
    assert sessions(tmp_path) == 1
    assert (Path(tb.log_dir) / "hparams.yaml").read_text() == text
