"""``log.ckpt``: the twin of :class:`expconf.ModelCheckpoint`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from expconf.config.fields import check_choice, doc, require


@dataclass
class CheckpointConfig:
    """Where and when checkpoints are written; keyword names equal ``ModelCheckpoint``'s."""

    dirpath: Optional[str] = doc(None, "local path or fsspec URL (s3://bucket/key); null: <run dir>/checkpoints")
    monitor: Optional[str] = doc("val_loss", "metric that ranks the top-k checkpoints")
    save_top_k: int = doc(3, "how many best checkpoints to keep (-1: all, 0: none)")
    mode: str = doc("min", "min or max: whether a lower or higher monitor value is better")
    save_last: bool = doc(True, "also keep a '-last' checkpoint, the one auto-resume picks")
    every_n_train_steps: Optional[int] = doc(None, "save every N optimizer steps (null: after each validation)")
    every_n_epochs: Optional[int] = doc(None, "save at the end of every N epochs")
    filename: Optional[str] = doc(None, "Lightning template, e.g. gpt--{val_loss:.2f}-{step}-{consumed_samples}")
    always_save_nemo: bool = doc(False, "also write a model archive (safetensors + config) at each save")
    save_nemo_on_train_end: bool = doc(False, "write a model archive when training completes")
    async_save: bool = doc(False, "write checkpoints in the background; the loop only waits for staging")
    save_weights_only: bool = doc(False, "save model weights only (such checkpoints cannot resume training)")
    auto_insert_metric_name: bool = doc(True, "write {step} as step=12 in file names (Lightning's default)")
    verbose: bool = doc(True, "log a line for every checkpoint saved")
    save_on_exception: bool = doc(False, "write a resumable '-last' checkpoint when training fails")
    train_time_interval: Optional[float] = doc(None, "save every N seconds of training (rank 0's clock)")
    save_on_train_epoch_end: Optional[bool] = doc(
        False, "save at the end of each training epoch instead of after validation (null: when nothing validates)"
    )
    enable_version_counter: bool = doc(True, "add -v1, -v2, ... to a file name already taken instead of overwriting")
    storage_options: dict[str, Any] = doc(
        help="fsspec options for a remote dirpath (endpoint_url, key, secret, ...); never saved to the run dir",
        factory=dict,
    )
    storage_timeout: Optional[float] = doc(
        None, "seconds one remote storage call may take before it fails (null: $EXPCONF_STORAGE_TIMEOUT or 600)"
    )

    def validate(self, prefix: str = "log.ckpt") -> None:
        """Check choices and ranges; raises ConfigError."""
        check_choice(f"{prefix}.mode", self.mode, ("min", "max"))
        require(self.save_top_k >= -1, f"{prefix}.save_top_k", self.save_top_k, "an integer >= -1")
        for key in ("every_n_train_steps", "every_n_epochs"):
            v = getattr(self, key)
            require(v is None or v >= 1, f"{prefix}.{key}", v, "null or an integer >= 1")
        t = self.train_time_interval
        require(t is None or t > 0, f"{prefix}.train_time_interval", t, "null or a number of seconds > 0")
        s = self.storage_timeout
        require(s is None or 0 < s < float("inf"), f"{prefix}.storage_timeout", s, "null or a number of seconds > 0")
        triggers = [k for k in ("every_n_train_steps", "every_n_epochs", "train_time_interval") if getattr(self, k)]
        require(
            len(triggers) <= 1,
            f"{prefix}.{triggers[-1] if triggers else 'train_time_interval'}",
            getattr(self, triggers[-1]) if triggers else None,
            "null when " + " or ".join(f"{prefix}.{k}" for k in triggers[:-1]) + " is set",
            "the save triggers are mutually exclusive",
        )
        if self.filename is not None:
            require(
                "/" not in self.filename,
                f"{prefix}.filename",
                self.filename,
                "a file name template without '/' (put folders in dirpath)",
            )
            require(
                _template_ok(self.filename),
                f"{prefix}.filename",
                self.filename,
                "a template with balanced braces such as gpt--{val_loss:.2f}-{step}",
            )


def _template_ok(template: str) -> bool:
    """Whether ``template`` parses as a ``str.format`` template (Lightning formats it at save time)."""
    import string

    try:
        list(string.Formatter().parse(template))
    except ValueError:
        return False
    return True
