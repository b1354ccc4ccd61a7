"""``trainer``: the ``pytorch_lightning.Trainer`` arguments people set."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from expconf.config.fields import check_choice, doc, require
from expconf.config.fsdp import FSDPConfig

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
#: Strategies expconf runs end to end; anything else is refused before a run dir exists.
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")
#: Known Lightning strategies expconf does not run yet, with what to use instead.
_NOT_YET = {
    "deepspeed": "DeepSpeed is not supported; use ddp",
    "ddp_spawn": "expconf launches DDP ranks itself; use ddp",
    "ddp_notebook": "expconf launches DDP ranks itself; use ddp",
}
PRECISIONS = (None, "32", "32-true", "16-mixed", "bf16-mixed", "bf16-true", "64", "64-true")


@dataclass
class TrainerConfig:
    """Arguments of ``pytorch_lightning.Trainer``; names and meanings are Lightning's."""

    accelerator: str = doc("auto", "cpu, gpu (cuda), mps or auto")
    devices: Any = doc("auto", "number of devices per node, a list of ids, or 'auto'")
    num_nodes: int = doc(1, "number of nodes (machines)")
    strategy: str = doc(
        "auto",
        "auto, ddp (expconf launches the ranks), ddp_find_unused_parameters_true or fsdp (FSDP2, see trainer.fsdp)",
    )
    precision: Optional[str] = doc(None, "null picks bf16-mixed on CUDA and 32-true elsewhere")
    max_steps: int = doc(-1, "stop after this many optimizer steps (-1: no limit)")
    max_epochs: Optional[int] = doc(None, "stop after this many epochs (null: 1000 when max_steps is -1)")
    val_check_interval: Any = doc(None, "run validation every N training batches (int) or fraction of an epoch")
    check_val_every_n_epoch: Optional[int] = doc(1, "validate every N epochs (null with an int val_check_interval)")
    limit_val_batches: Any = doc(None, "validation batches per validation run (int) or fraction")
    limit_train_batches: Any = doc(None, "training batches per epoch (int) or fraction")
    num_sanity_val_steps: int = doc(2, "validation batches run before training as a smoke test")
    log_every_n_steps: int = doc(10, "how often metrics are written to the loggers")
    gradient_clip_val: Optional[float] = doc(1.0, "clip the global gradient norm to this value (null: off)")
    enable_progress_bar: bool = doc(True, "show the progress bar")
    enable_model_summary: bool = doc(True, "print the model summary at start")
    deterministic: Optional[bool] = doc(None, "torch.use_deterministic_algorithms (needed for bitwise GPU resume)")
    benchmark: Optional[bool] = doc(None, "cudnn.benchmark")
    sync_batchnorm: bool = doc(False, "synchronise BatchNorm statistics across ranks")
    fsdp: FSDPConfig = doc(help="sharding options of trainer.strategy=fsdp", factory=FSDPConfig)

    def validate(self) -> None:
        """Check choices and ranges; raises ConfigError."""
        check_choice("trainer.accelerator", self.accelerator, ACCELERATORS)
        check_choice("trainer.precision", self.precision, PRECISIONS)
        require(self.num_nodes >= 1, "trainer.num_nodes", self.num_nodes, "an integer >= 1")
        require(
            self.max_steps >= -1 and self.max_steps != 0,
            "trainer.max_steps",
            self.max_steps,
            "-1 (no limit) or a positive integer",
        )
        require(
            self.max_epochs is None or self.max_epochs >= 1,
            "trainer.max_epochs",
            self.max_epochs,
            "null or an integer >= 1",
        )
        require(
            self.log_every_n_steps >= 1,
            "trainer.log_every_n_steps",
            self.log_every_n_steps,
            "an integer >= 1",
        )
        require(
            self.gradient_clip_val is None or self.gradient_clip_val > 0,
            "trainer.gradient_clip_val",
            self.gradient_clip_val,
            "null or a positive number",
        )
        require(
            devices_ok(self.devices),
            "trainer.devices",
            self.devices,
            "'auto', a positive integer, -1 or a list of device ids",
        )
        require(
            self.strategy in STRATEGIES,
            "trainer.strategy",
            self.strategy,
            "one of " + ", ".join(STRATEGIES),
            next((why for name, why in _NOT_YET.items() if str(self.strategy).startswith(name)), ""),
        )
        self.fsdp.validate()
        _check_interval("trainer.val_check_interval", self.val_check_interval, min_int=1)
        _check_interval("trainer.limit_val_batches", self.limit_val_batches, min_int=0)
        _check_interval("trainer.limit_train_batches", self.limit_train_batches, min_int=1)
        require(
            self.num_sanity_val_steps >= -1,
            "trainer.num_sanity_val_steps",
            self.num_sanity_val_steps,
            "an integer >= -1 (-1: the whole validation set)",
        )

    def devices_per_node(self, cuda_count: int) -> int:
        """How many processes one node runs for these settings."""
        d = self.devices
        if isinstance(d, (list, tuple)):
            return len(d)
        if isinstance(d, str) and "," in d:
            return len([p for p in d.split(",") if p.strip()])
        if d == "auto" or d in (-1, "-1"):
            return max(cuda_count, 1) if self.accelerator in ("auto", "gpu", "cuda") else 1
        return int(d)

    def world_size(self, cuda_count: int) -> int:
        """Processes over all nodes (``cuda_count``: the CUDA devices one node has, for ``auto``)."""
        return self.devices_per_node(cuda_count) * self.num_nodes


def devices_ok(d: Any) -> bool:
    """Whether ``d`` is a device setting Lightning accepts and that names at least one device."""
    if isinstance(d, bool):
        return False
    if isinstance(d, int):
        return d >= 1 or d == -1
    if isinstance(d, (list, tuple)):
        return len(d) > 0 and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in d)
    if not isinstance(d, str):
        return False
    text = d.strip()
    if text == "auto":
        return True
    if "," in text:  # "0,1": device ids
        ids = [p.strip() for p in text.split(",") if p.strip()]
        return len(ids) > 0 and all(p.isdigit() for p in ids)
    return re.fullmatch(r"-?\d+", text) is not None and (int(text) >= 1 or int(text) == -1)


def _check_interval(key: str, value: Any, min_int: int) -> None:
    """null, an integer >= ``min_int`` (batches) or a fraction in (0, 1] (of an epoch)."""
    ok = (
        value is None
        or (isinstance(value, int) and not isinstance(value, bool) and value >= min_int)
        or (isinstance(value, float) and 0.0 < value <= 1.0)
    )
    require(ok, key, value, f"null, an integer >= {min_int} (batches) or a fraction in (0, 1]")
