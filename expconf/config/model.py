"""``model``: what to train. The default model is the GPT of ``recipes/gpt.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from expconf.config.fields import check_choice, doc, require
from expconf.config.limits import check_finite


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
    """A decoder-only transformer: the GPT-2 family by default, the Llama family by its fields.

    GPT-2: learned positions, LayerNorm, GELU MLP, tied embeddings. Llama: ``pos_embedding=rope``,
    ``norm=rmsnorm``, ``mlp=swiglu``, ``tie_embeddings=false``, ``n_kv_head`` < ``n_head`` for
    grouped-query attention and an explicit ``ffn_hidden_size``.
    """

    n_layer: int = doc(4, "transformer blocks")
    n_head: int = doc(4, "attention (query) heads")
    n_embd: int = doc(128, "embedding width; must be divisible by n_head")
    n_kv_head: Optional[int] = doc(None, "key/value heads (grouped-query attention); null: n_head")
    ffn_hidden_size: Optional[int] = doc(None, "hidden width of the MLP; null: 4 x n_embd")
    norm: str = doc("layernorm", "'layernorm' (GPT-2) or 'rmsnorm' (Llama)")
    norm_eps: float = doc(1e-5, "epsilon of the norm layers")
    pos_embedding: str = doc("learned", "'learned' absolute positions (GPT-2) or 'rope' rotary (Llama)")
    rope_theta: float = doc(10000.0, "RoPE base frequency (pos_embedding=rope only)")
    mlp: str = doc("gelu", "'gelu' (Linear-GELU-Linear, GPT-2) or 'swiglu' (gated SiLU, Llama)")
    tie_embeddings: bool = doc(True, "share the input embedding and the output projection")
    dropout: float = doc(0.0, "dropout probability in attention and MLP")
    bias: bool = doc(False, "bias in Linear and LayerNorm layers")
    vocab_size: Optional[int] = doc(
        None, "null: taken from the tokenizer (padded to a multiple of 64); a number: exactly this many"
    )
    init_std: float = doc(0.02, "standard deviation of the weight init")
    compile: bool = doc(False, "torch.compile the model (helps on GPUs)")

    @property
    def kv_heads(self) -> int:
        """Key/value heads in effect."""
        return self.n_kv_head or self.n_head

    @property
    def ffn_size(self) -> int:
        """MLP hidden width in effect."""
        return self.ffn_hidden_size or 4 * self.n_embd

    def validate(self) -> None:
        """Check sizes and choices; raises ConfigError."""
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
        require(
            self.n_kv_head is None or (self.n_kv_head >= 1 and self.n_head % self.n_kv_head == 0),
            "model.n_kv_head",
            self.n_kv_head,
            f"null or a divisor of model.n_head={self.n_head}",
        )
        require(
            self.ffn_hidden_size is None or self.ffn_hidden_size >= 1,
            "model.ffn_hidden_size",
            self.ffn_hidden_size,
            "null or an integer >= 1",
        )
        check_choice("model.norm", self.norm, ("layernorm", "rmsnorm"))
        check_choice("model.pos_embedding", self.pos_embedding, ("learned", "rope"))
        check_choice("model.mlp", self.mlp, ("gelu", "swiglu"))
        for key in ("norm_eps", "rope_theta", "init_std"):
            check_finite(f"model.{key}", getattr(self, key), "a finite number > 0")
        require(self.norm_eps > 0, "model.norm_eps", self.norm_eps, "a number > 0")
        require(self.init_std > 0, "model.init_std", self.init_std, "a number > 0")
        require(self.rope_theta > 0, "model.rope_theta", self.rope_theta, "a number > 0")
        if self.pos_embedding == "rope":
            require(
                (self.n_embd // self.n_head) % 2 == 0,
                "model.n_embd",
                self.n_embd,
                f"n_embd / n_head even for rotary positions (n_head={self.n_head})",
            )
        require(0.0 <= self.dropout < 1.0, "model.dropout", self.dropout, "a number in [0, 1)")
        require(
            self.vocab_size is None or self.vocab_size >= 2,
            "model.vocab_size",
            self.vocab_size,
            "null or an integer >= 2",
        )
