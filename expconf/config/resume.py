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
