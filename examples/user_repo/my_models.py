"""A user's own model: a GPT whose MLP width is configurable, with its config dataclass.

``WideGPTConfig`` extends expconf's ``GPTModelConfig`` (new field, own validation) and is
registered in Hydra's ConfigStore through expconf's ``store()``, which refuses to overwrite an
existing entry. Importing this module registers it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from expconf.config.fields import doc, require
from expconf.config.model import GPTModelConfig
from expconf.config.store import store


@dataclass
class WideGPTConfig(GPTModelConfig):
    """expconf's GPT with an MLP ``mlp_ratio`` times as wide as the embedding."""

    _target_: str = doc("my_models.WideGPT", "LightningModule class built from this config")
    mlp_ratio: int = doc(8, "hidden width of the MLP as a multiple of n_embd (expconf's GPT uses 4)")

    def validate(self) -> None:
        """expconf's GPT rules plus the ratio."""
        super().validate()
        require(1 <= self.mlp_ratio <= 64, "model.mlp_ratio", self.mlp_ratio, "an integer in [1, 64]")


def _make_wide_gpt() -> type:
    # torch and Lightning are imported only when the model is built, never during composition.
    from torch import nn

    from expconf.recipes.gpt import GPTModule

    class WideGPT(GPTModule):
        """GPTModule whose blocks use ``config.mlp_ratio`` for the MLP width."""

        def __init__(self, config: WideGPTConfig, **kwargs: Any) -> None:
            super().__init__(config, **kwargs)
            gpt = getattr(self.model, "_orig_mod", self.model)
            width = config.mlp_ratio * config.n_embd
            for block in gpt.blocks:
                block.mlp = nn.Sequential(
                    nn.Linear(config.n_embd, width, bias=config.bias),
                    nn.GELU(),
                    nn.Linear(width, config.n_embd, bias=config.bias),
                    nn.Dropout(config.dropout),
                )

    WideGPT.__module__ = __name__
    return WideGPT


def __getattr__(name: str) -> Any:
    if name == "WideGPT":
        cls = _make_wide_gpt()
        globals()["WideGPT"] = cls
        return cls
    raise AttributeError(name)


store(WideGPTConfig, group="model", name="wide_schema", package="model")
