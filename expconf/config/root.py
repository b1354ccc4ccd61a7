"""The root of the config tree and the rules that span several keys."""

from __future__ import annotations

from dataclasses import dataclass

from expconf.batch import BatchSizes
from expconf.config.callbacks import CallbacksConfig
from expconf.config.data import DataConfig
from expconf.config.fields import check_local_path, doc, require
from expconf.config.limits import check_local_folder, check_seed
from expconf.config.log import LogConfig
from expconf.config.model import GPTModelConfig
from expconf.config.optim import OptimConfig
from expconf.config.resume import ResumeConfig, check_checkpoint_path
from expconf.config.trainer import TrainerConfig
from expconf.storage import is_remote


@dataclass
class RootConfig:
    """Everything one training run needs: one root key per section, plus the seed."""

    trainer: TrainerConfig = doc(help="pytorch_lightning.Trainer arguments", factory=TrainerConfig)
    log: LogConfig = doc(help="NeMoLogger: run dir, loggers, checkpoints", factory=LogConfig)
    resume: ResumeConfig = doc(help="AutoResume", factory=ResumeConfig)
    model: GPTModelConfig = doc(help="the model", factory=GPTModelConfig)
    data: DataConfig = doc(help="the data", factory=DataConfig)
    optim: OptimConfig = doc(help="optimizer and schedule", factory=OptimConfig)
    callbacks: CallbacksConfig = doc(help="expconf callbacks", factory=CallbacksConfig)
    seed: int = doc(1234, "seeds Python, NumPy and torch on every rank")

    def validate(self, world_size: int | None = None) -> None:
        """Validate every section and the cross-field rules; raises ConfigError."""
        self.trainer.validate()
        self.log.validate()
        self.resume.validate()
        self.model.validate()
        self.data.validate()
        self.optim.validate()
        self.callbacks.validate()
        require(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        check_seed("seed", self.seed)
        if world_size is None:
            world_size = self.trainer.world_size(0)  # the builder checks again with the real CUDA count
        BatchSizes.of(self.data, world_size).check()

    def validate_paths(self) -> None:
        """Local paths that must exist before anything is written; raises ConfigError."""
        check_local_path(
            "data.path", self.data.path, "an existing text file, folder of text files or pre-tokenized .bin file"
        )
        if self.data.tokenizer not in ("byte", "bpe"):
            check_local_path(
                "data.tokenizer", self.data.tokenizer, "'byte', 'bpe' or an existing tokenizer.json", kind="file"
            )
        check_checkpoint_path("resume.path", self.resume.path)
        check_checkpoint_path("resume.import_path", self.resume.import_path, archive_ok=True)
        for i, name in enumerate(self.log.files_to_copy or []):
            check_local_path(f"log.files_to_copy[{i}]", name, "an existing file to copy into the run dir")
        for key in ("log_dir", "explicit_log_dir"):
            value = getattr(self.log, key)
            if value and not is_remote(value):
                import os

                require(not os.path.isfile(value), f"log.{key}", value, "a folder (this path is a file)")
            check_local_folder(f"log.{key}", value)
        check_local_folder("log.ckpt.dirpath", self.log.ckpt.dirpath)
        check_local_folder("data.cache_dir", self.data.cache_dir)
