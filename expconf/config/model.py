"""``model``: what to train. The default model is the GPT of ``recipes/gpt.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from expconf.config.fields import doc, require


@dataclass
class ModelConfig:
    """Base of every model config: ``_target_`` names the LightningModule class that takes it.

    Subclass it (or :class:`GPTModelConfig`) in your own repo and register the class in
    ``expconf.targets`` to train your own model with expconf's tree.
    """

    _target_: str = doc("expconf.recipes.gpt.GPTModule", "LightningModule class built from this config")

    def validate(self) -> None:
        """Check the target name; subclasses add their own rules."""
        require(
            bool(self._target_) and "." in self._target_,
            "model._target_",
            self._target_,
            "a dotted class path such as expconf.recipes.gpt.GPTModule",
        )
        from expconf import targets

        targets.check(self._target_, "model._target_")


@dataclass
class GPTModelConfig(ModelConfig):
    """A decoder-only GPT (nanoGPT-class): pre-norm blocks, SDPA attention, tied embeddings."""

    n_layer: int = doc(4, "transformer blocks")
    n_head: int = doc(4, "attention heads")
    n_embd: int = doc(128, "embedding width; must be divisible by n_head")
    dropout: float = doc(0.0, "dropout probability in attention and MLP")
    bias: bool = doc(False, "bias in Linear and LayerNorm layers")
    vocab_size: Optional[int] = doc(None, "null: taken from the tokenizer (padded to a multiple of 64)")
    init_std: float = doc(0.02, "standard deviation of the weight init")
    compile: bool = doc(False, "torch.compile the model (helps on GPUs)")

    def validate(self) -> None:
        """Check sizes; raises ConfigError."""
        super().validate()
        for key in ("n_layer", "n_head", "n_embd"):
            v = getattr(self, key)
            require(v >= 1, f"model.{key}", v, "an integer >= 1")
        require(
            self.n_embd % self.n_head == 0,
            "model.n_embd",
            self.n_embd,
            f"a multiple of model.n_head={self.n_head}",
        )
        require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "a number in [0, 1)")
        require(
            self.vocab_size is None or self.vocab_size >= 2,
            "model.vocab_size",
            self.vocab_size,
            "null or an integer >= 2",
        )
