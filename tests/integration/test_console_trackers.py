"""What a default CLI run prints, and what it sends to W&B (offline) and TensorBoard, first and on resume."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from helpers import TINY, run_cli

pytestmark = pytest.mark.slow

SECRET = "hunter2-not-a-real-key"
#: TINY without the switches that hide the progress bar and model summary: this test reads them.
DEFAULTS = [a for a in TINY if not a.startswith(("trainer.enable_progress_bar", "trainer.enable_model_summary"))]
ARGS = [
    *DEFAULTS,
    "trainer.log_every_n_steps=2",
    "trainer.val_check_interval=2",
    "log.name=console",
    "log.wandb.project=p",
    "resume.resume_if_exists=true",
    "resume.resume_ignore_no_checkpoint=true",
    f"+log.ckpt.storage_options={{secret: {SECRET}}}",
]
NOISE = ["💡", "litlogger", "litmodels", "Total FLOPs", "Total Flops", "LeafSpec", "Epoch 0/", "anonymous setting"]


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a ``.wandb`` file (W&B's LevelDB-style log: 7-byte file header,
    32 KiB blocks, each chunk with a 7-byte header of checksum, length and type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    records, pending, pos, block = [], b"", 7, 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:  # zero padding up to the next block
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST chunk
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_config(path: Path) -> dict[str, Any]:
    """The run config as W&B stores it: the run record's config plus later config updates."""
    config: dict[str, Any] = {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        items = record.run.config.update if kind == "run" else record.config.update if kind == "config" else []
        for item in items:
            config[item.key] = json.loads(item.value_json)
    return config


def hparams_sessions(tb_dir: Path) -> list[dict[str, Any]]:
    """The hparams of each session (a run in TensorBoard's HPARAMS tab) in the event files under
    ``tb_dir``, decoded by TensorBoard's own hparams plugin."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    found = []
    for events in tb_dir.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(events)).Load():
            for v in event.summary.value:
                if v.tag == metadata.SESSION_START_INFO_TAG:
                    start = metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
                    found.append({k: getattr(h, h.WhichOneof("kind")) for k, h in start.hparams.items()})
    return found


def steps_printed(out: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"^step (\d+)/(\d+) ", out, re.M)]


def test_default_run_prints_steps_and_fills_the_trackers_once(tmp_path: Path) -> None:
    first = run_cli([*ARGS, "trainer.max_steps=4"], cwd=tmp_path)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-3000:]
    run_dir = (tmp_path / "nemo_experiments" / "console").resolve()
    for noise in NOISE:
        assert noise not in out, noise
    assert steps_printed(out) == [(2, 4), (4, 4)]
    assert re.search(
        r"^step 4/4 \[#{20}\] .*reduced_train_loss [\d.]+ .*\| [\d,]+ tokens/s \| 0:00:\d\d left$", out, re.M
    )
    assert "Trainable params" in out  # the model summary stays, without its FLOPs
    assert re.search(r"^wall time: +\d+:\d\d:\d\d", out, re.M)
    assert re.search(r"^throughput: +[\d,]+ tokens/s", out, re.M)
    assert f"tensorboard --logdir {run_dir}" in out

    tb = run_dir / "tb_logs"
    hparams_yaml = (tb / "hparams.yaml").read_text()
    assert "n_layer: 1" in hparams_yaml and "max_steps: 4" in hparams_yaml
    [session] = hparams_sessions(tb)
    assert session["model.n_layer"] == 1 and session["log.ckpt.storage_options.secret"] == "***REDACTED***"
    [wandb_file] = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    config = wandb_config(wandb_file)
    assert config["model"]["n_layer"] == 1 and config["trainer"]["max_steps"] == 4
    assert config["log"]["ckpt"]["storage_options"] == {"secret": "***REDACTED***"}

    resumed = run_cli([*ARGS, "trainer.max_steps=8", "resume.resume_past_end=true"], cwd=tmp_path)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-3000:]
    assert steps_printed(out) == [(6, 8), (8, 8)]  # optimizer steps of max_steps, counted from the checkpoint
    for noise in NOISE:
        assert noise not in out, noise
    assert len(hparams_sessions(tb)) == 1  # the resumed run adds no second session to the same dir
    assert (tb / "hparams.yaml").read_text() == hparams_yaml
    configs = [wandb_config(p) for p in run_dir.glob("wandb/offline-run-*/run-*.wandb")]
    assert len(configs) == 2 and {c["trainer"]["max_steps"] for c in configs} == {4, 8}
    assert all(p.read_bytes().find(SECRET.encode()) < 0 for p in run_dir.rglob("*") if p.is_file())
