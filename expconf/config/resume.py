"""``resume``: the twin of :class:`expconf.AutoResume`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from expconf.config.fields import doc, require


@dataclass
class ResumeConfig:
    """What to resume from; keyword names equal ``AutoResume``'s."""

    #: NeMo 2.0's current AutoResume keywords and the key that spells each here (an error that
    #: meets one of them names the key to use).
    NEMO_NAMES: ClassVar[dict[str, str]] = {
        "resume_from_path": "path",
        "resume_from_directory": "dirpath",
        "restore_config": "import_path",
    }

    path: Optional[str] = doc(None, "resume everything from this checkpoint (NeMo 1.0 resume_from_checkpoint)")
    dirpath: Optional[str] = doc(
        None, "where resume_if_exists looks (null: log.ckpt.dirpath, then <run dir>/checkpoints)"
    )
    import_path: Optional[str] = doc(None, "initialise model weights only from this checkpoint or archive")
    resume_if_exists: bool = doc(False, "resume from the newest '-last' checkpoint when one exists")
    resume_past_end: bool = doc(False, "allow resuming from an '-end' checkpoint (training already completed)")
    resume_ignore_no_checkpoint: bool = doc(False, "start from scratch instead of failing when nothing is found")

    def validate(self) -> None:
        """Check the mutually exclusive paths; raises ConfigError."""
        check_one_source("resume.", self.path, self.import_path)


def check_one_source(prefix: str, path: str | None, import_path: str | None) -> None:
    """Raise :class:`ConfigError` when both ``path`` and ``import_path`` are given (``resume.`` or
    ``AutoResume.`` keys): a run either resumes or starts from imported weights."""
    require(
        not (path and import_path),
        f"{prefix}import_path",
        import_path,
        f"null when {prefix}path is set",
        "path and import_path are mutually exclusive",
    )


#: How files ``torch.save`` writes begin: a zip archive (the default) or a pickle (the old format).
_TORCH_FILE_STARTS = (b"PK\x03\x04", b"\x80")
#: What a sharded checkpoint folder (``trainer.strategy=fsdp``) holds beside its shards.
_SHARDED_MARKS = ("expconf_meta.pt", ".metadata")


def check_checkpoint_path(key: str, path: str | None, *, archive_ok: bool = False) -> None:
    """Raise unless local ``path`` exists and is shaped like a checkpoint: a regular file that
    ``torch.save`` wrote, or a sharded checkpoint folder (with ``archive_ok``, also a ``.nemo``
    model archive). None and remote URLs pass (those are probed by
    :func:`expconf.storage.check_remote`); whether the checkpoint fits the model is checked
    once the model is built (:func:`expconf.checkpoint.fit.check_fits`)."""
    import os
    import tarfile

    from expconf.config.fields import check_local_path
    from expconf.storage import is_remote

    expected = "a checkpoint file written by Lightning or expconf" + (" or a .nemo model archive" if archive_ok else "")
    check_local_path(key, path, expected)
    if path is None or is_remote(path):
        return
    local = os.path.expanduser(path.removeprefix("file://"))
    if os.path.isdir(local):
        is_sharded = any(os.path.exists(os.path.join(local, m)) for m in _SHARDED_MARKS)
        require(is_sharded, key, path, expected, "it is a folder, and not a sharded checkpoint")
        return
    require(os.path.isfile(local), key, path, expected, "it is not a regular file")
    if archive_ok and local.endswith(".nemo"):
        require(tarfile.is_tarfile(local), key, path, expected, "it is not a tar archive")
        return
    with open(local, "rb") as f:
        start = f.read(4)
    require(start.startswith(_TORCH_FILE_STARTS), key, path, expected, "its bytes are not a torch.save file")
