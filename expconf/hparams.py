"""Sends the run's resolved, redacted config to every logger: W&B's config panel, TensorBoard's HPARAMS tab.

Each logger gets the nested config and flattens it its own way (W&B keeps it nested in its
``config.yaml``; TensorBoard writes it nested to ``hparams.yaml``). TensorBoard shows the
HPARAMS tab only for runs whose event files hold an hparams session, which Lightning writes only
next to a metric value; expconf writes that session itself, with dotted keys and the monitored
metric's name, so no placeholder metric appears. A resumed run (same TensorBoard dir, whose
``hparams.yaml`` is already filled) writes no second session; W&B merges into the run's config.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pytorch_lightning.loggers import Logger, TensorBoardLogger

from expconf.distributed import ranks
from expconf.lightning_internals import default_hp_metric
from expconf.redact import known_secrets, redact


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"n_layer": 2}}`` -> ``{"model.n_layer": 2}``; values that are not a number,
    bool or string become strings (TensorBoard's hparams take nothing else)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def monitored_metrics(config: dict[str, Any]) -> list[str]:
    """The metric the checkpoint callback ranks by (``log.ckpt.monitor``), if any."""
    monitor = config.get("log", {}).get("ckpt", {}).get("monitor")
    return [monitor] if isinstance(monitor, str) and monitor else []


def log_hyperparameters(loggers: list[Logger], config: dict[str, Any] | None) -> None:
    """Send ``config`` (redacted here) to each logger once; call after the loggers point at the run dir."""
    if config is None or ranks.global_rank() != 0:
        return
    secrets = known_secrets()
    params = redact(config, secrets)
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            _tensorboard(logger, params)
        else:
            with _redacted_argv(secrets):  # W&B records the command line when its run starts here
                logger.log_hyperparams(params)


@contextmanager
def _redacted_argv(secrets: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = redact(list(saved), secrets)
    try:
        yield
    finally:
        sys.argv = saved


def _tensorboard(logger: TensorBoardLogger, params: dict[str, Any]) -> None:
    hparams_file = os.path.join(logger.log_dir, logger.NAME_HPARAMS_FILE)
    if os.path.isfile(hparams_file) and open(hparams_file).read().strip() not in ("", "{}"):
        return  # a resumed run: this dir already has the config and its hparams session
    if default_hp_metric(logger):
        logger.log_hyperparams(params)  # Lightning writes the session itself, with hp_metric
        return
    logger.log_hyperparams(params)  # kept for hparams.yaml; no session is written without metrics
    from torch.utils.tensorboard.summary import hparams

    # The metric values are not written here: only the names tell the tab which scalars to show.
    experiment, start, end = hparams(flatten(params), dict.fromkeys(monitored_metrics(params), 0.0))
    writer = logger.experiment._get_file_writer()
    for summary in (experiment, start, end):
        writer.add_summary(summary)
