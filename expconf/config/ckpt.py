"""``log.ckpt``: the twin of :class:`expconf.ModelCheckpoint`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

from expconf.config.fields import doc, require
from expconf.errors import ConfigError


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
        check_checkpoint_arguments(
            f"{prefix}.",
            mode=self.mode,
            monitor=self.monitor,
            save_top_k=self.save_top_k,
            every_n_train_steps=self.every_n_train_steps,
            every_n_epochs=self.every_n_epochs,
            train_time_interval=self.train_time_interval,
            storage_timeout=self.storage_timeout,
            filename=self.filename,
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
            check_filename(f"{prefix}.", self.filename, self.auto_insert_metric_name)


def check_checkpoint_arguments(
    prefix: str,
    *,
    mode: str,
    monitor: str | None,
    save_top_k: int,
    every_n_train_steps: int | None,
    every_n_epochs: int | None,
    train_time_interval: timedelta | float | None,
    storage_timeout: float | None = None,
    filename: str | None = None,
    lightning_wording: bool = False,
) -> None:
    """The rules ``log.ckpt`` and :class:`expconf.ModelCheckpoint` share, with Lightning's ranges.

    Raises :class:`ConfigError` naming ``prefix + key`` (``log.ckpt.`` or ``ModelCheckpoint.``);
    with ``lightning_wording`` its text is Lightning's ``ModelCheckpoint`` message, which code
    written against Lightning matches.
    """

    def refuse(key: str, value: Any, expected: str, lightning: str, hint: str = "") -> None:
        message = f"ModelCheckpoint: {lightning}" if lightning_wording else None
        raise ConfigError(f"{prefix}{key}", value, expected, hint, message=message)

    if mode not in ("min", "max"):
        refuse("mode", mode, "one of 'min', 'max'", f"`mode` can be min, max but got {mode}")
    if save_top_k < -1:
        refuse(
            "save_top_k", save_top_k, "an integer >= -1", f"Invalid value for save_top_k={save_top_k}. Must be >= -1"
        )
    if monitor is None and save_top_k not in (-1, 0, 1):  # nothing ranks: all, none or the newest
        refuse(
            "save_top_k",
            save_top_k,
            "-1 (all), 0 (none) or 1 (the newest) when monitor is null",
            f"ModelCheckpoint(save_top_k={save_top_k}, monitor=None) is not a valid configuration. "
            "No quantity for top_k to track.",
        )
    for key, n in (("every_n_train_steps", every_n_train_steps), ("every_n_epochs", every_n_epochs)):
        if n is not None and n < 0:
            refuse(key, n, "null, 0 (off) or an integer >= 1", f"Invalid value for {key}={n}. Must be >= 0")
    t = train_time_interval
    if t is not None and (t.total_seconds() if isinstance(t, timedelta) else t) < 0:
        refuse(
            "train_time_interval",
            t,
            "null or a number of seconds >= 0",
            f"Invalid value for train_time_interval={t}. Must be >= 0 seconds",
        )
    if storage_timeout is not None and not 0 < storage_timeout < float("inf"):
        refuse(
            "storage_timeout",
            storage_timeout,
            "null or a number of seconds > 0",
            f"Invalid value for storage_timeout={storage_timeout}. Must be > 0 seconds",
        )
    given = {"every_n_train_steps": every_n_train_steps, "every_n_epochs": every_n_epochs, "train_time_interval": t}
    triggers = [k for k, v in given.items() if v]
    if len(triggers) > 1:
        refuse(
            triggers[-1],
            given[triggers[-1]],
            "null when " + " or ".join(f"{prefix}{k}" for k in triggers[:-1]) + " is set",
            f"Combination of parameters every_n_train_steps={every_n_train_steps}, every_n_epochs={every_n_epochs} "
            f"and train_time_interval={t} should be mutually exclusive.",
            "the save triggers are mutually exclusive",
        )
    if filename is not None:
        from expconf.checkpoint.meta import reserved_clash

        clash = reserved_clash(filename)
        if clash:
            expected = "a template that neither ends in '-last', '-end' or '.meta.json' nor contains '.tmp-'"
            refuse(
                "filename", filename, expected, f"filename={filename!r} collides with reserved names: {clash}", clash
            )


def _template_ok(template: str) -> bool:
    """Whether ``template`` parses as a ``str.format`` template (Lightning formats it at save time)."""
    import string

    try:
        list(string.Formatter().parse(template))
    except ValueError:
        return False
    return True


#: Sample values a ``filename`` template is formatted with at validation: ``step`` and ``epoch`` are
#: integers when checkpoints are saved, every logged metric a float; wide values, so the length
#: check holds for long runs.
SAMPLE_STEP = 99_999_999
SAMPLE_EPOCH = 9_999
SAMPLE_METRIC = -99_999.123456


def name_reserve() -> int:
    """Bytes expconf may add to a formatted ``filename``: the longest name it derives is the
    temporary file of a ``-last`` copy's marker, ``.<name>-last-v99.ckpt.meta.json.tmp-<8 chars>``."""
    from expconf.checkpoint.meta import CKPT_SUFFIX, MARKER_SUFFIX, TMP_TAG
    from expconf.checkpoint.naming import END_SUFFIX, LAST_SUFFIX

    return 1 + max(len(LAST_SUFFIX), len(END_SUFFIX)) + len("-v99") + len(CKPT_SUFFIX + MARKER_SUFFIX + TMP_TAG) + 8


def check_filename(prefix: str, filename: str, auto_insert_metric_name: bool = True) -> None:
    """Raise :class:`ConfigError` for ``prefix + 'filename'`` unless the template formats with sample
    values (as it will at the first save) and the names made from it fit the file system's 255 bytes.

    Shared by ``log.ckpt`` and :class:`expconf.ModelCheckpoint`.
    """
    import string

    from expconf.checkpoint.naming import format_checkpoint_name
    from expconf.config.limits import check_name_length

    key = f"{prefix}filename"
    ints = {"step": SAMPLE_STEP, "epoch": SAMPLE_EPOCH}
    try:
        fields = {f.strip() for _, f, _, _ in string.Formatter().parse(filename) if f}
        sample = {f: ints.get(f, SAMPLE_METRIC) for f in fields}
        name = format_checkpoint_name(filename, sample, auto_insert_metric_name)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise ConfigError(
            key,
            filename,
            "a template whose fields format as numbers ({step} and {epoch} integers, metrics floats), "
            "such as gpt--{val_loss:.2f}-{step}",
            f"formatting it with step={SAMPLE_STEP}, epoch={SAMPLE_EPOCH}, metrics={SAMPLE_METRIC} fails: {e}",
        ) from None
    check_name_length(key, filename, name, name_reserve())
