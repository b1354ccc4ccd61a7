"""Typed dataclass configs, one module per root key of the config tree.

Nothing here imports torch or Lightning: composing and printing a config stays instant.
"""

from expconf.config.callbacks import CallbacksConfig
from expconf.config.ckpt import CheckpointConfig
from expconf.config.data import DataConfig
from expconf.config.log import LogConfig, TensorBoardConfig, WandbConfig
from expconf.config.model import GPTModelConfig, ModelConfig
from expconf.config.optim import OptimConfig
from expconf.config.resume import ResumeConfig
from expconf.config.root import RootConfig
from expconf.config.trainer import TrainerConfig

__all__ = [
    "CallbacksConfig",
    "CheckpointConfig",
    "DataConfig",
    "GPTModelConfig",
    "LogConfig",
    "ModelConfig",
    "OptimConfig",
    "ResumeConfig",
    "RootConfig",
    "TensorBoardConfig",
    "TrainerConfig",
    "WandbConfig",
]
