"""Keeps library chatter that says nothing about the user's run off the console.

Lightning's product tips (``💡 Tip: ... litlogger``, ``litmodels``), the ``LeafSpec is
deprecated`` warning that Lightning's own code triggers in torch, and Lightning's hint that
``srun`` is installed but not used are dropped; every other warning and message stays. The
``srun`` hint shows on every run on a machine with SLURM's clients (a login node) that is not a
SLURM job: expconf then starts its ranks itself, the hint would push the one-line error of a
bad start to the second line, and it quotes the start of the command line, secrets included.
"""

from __future__ import annotations

import logging
import warnings

#: Loggers through which Lightning's ``rank_zero_info`` speaks (one per package spelling).
RANK_ZERO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


class TipFilter(logging.Filter):
    """Drops Lightning's advertising lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip:")


_TIPS = TipFilter()


def quiet_library_noise() -> None:
    """Install the filters (idempotent; the warning filter is process-wide like any ``warnings`` filter)."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if _TIPS not in logger.filters:
            logger.addFilter(_TIPS)
    # torch deprecated LeafSpec; pytorch_lightning.utilities._pytree still uses it on every fit.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
