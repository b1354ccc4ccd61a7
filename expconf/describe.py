"""``python -m expconf.describe recipe=NAME [overrides]``: what a recipe trains, without training it.

The model is built on the meta device (no weights are allocated), so the 8B recipes describe in
a second on a laptop. Printed: the exact parameter count, the FLOPs per token that MFU uses, the
tokens per optimizer step and the gradient accumulation the batch sizes imply, and the memory a
training step needs per device for the chosen strategy and precision.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from expconf.batch import BatchSizes
from expconf.train import compose_root

#: Bytes per parameter of (weights, gradients, AdamW state) and per activation value, by precision.
#: Mixed precision keeps fp32 weights, gradients and optimizer state and computes in 16 bits;
#: "true" precisions keep everything, AdamW's two moments included, in that dtype.
PRECISION_BYTES = {
    "32-true": (4, 4, 8, 4),
    "16-mixed": (4, 4, 8, 2),
    "bf16-mixed": (4, 4, 8, 2),
    "16-true": (2, 2, 4, 2),
    "bf16-true": (2, 2, 4, 2),
    "64-true": (8, 8, 16, 8),
}

#: Recipes ``docs/recipes.md`` tabulates (a test keeps the table equal to this module's output),
#: with the Hugging Face checkpoint whose config.json gives the shape.
PUBLISHED_RECIPES = {
    "gpt2_124m": "openai-community/gpt2",
    "gpt2_350m": "openai-community/gpt2-medium",
    "gpt2_774m": "openai-community/gpt2-large",
    "gpt2_1558m": "openai-community/gpt2-xl",
    "llama2_7b": "meta-llama/Llama-2-7b-hf",
    "llama3_8b": "meta-llama/Meta-Llama-3-8B",
    "tinyllama_1b": "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T",
}


@dataclass
class Description:
    """The figures of one composed config."""

    parameters: int
    matmul_parameters: int
    flops_per_token: int
    vocab_size: int
    tokens_per_step: int
    world_size: int
    micro_batch_size: int
    grad_accumulation: int
    precision: str
    strategy: str
    weights_bytes: float
    grads_bytes: float
    optimizer_bytes: float
    activations_bytes: float

    @property
    def total_bytes(self) -> float:
        """Memory per device of one training step (the sum of the four parts)."""
        return self.weights_bytes + self.grads_bytes + self.optimizer_bytes + self.activations_bytes


def model_vocab(root: Any) -> int:
    """The vocabulary the model gets: model.vocab_size, else the tokenizer's padded to 64."""
    from expconf.recipes.gpt_model import padded_vocab

    if root.model.vocab_size:
        return int(root.model.vocab_size)
    if root.data.tokenizer == "byte":
        return padded_vocab(256)
    if root.data.tokenizer == "bpe":
        return padded_vocab(int(root.data.bpe_vocab_size))
    from expconf.tokens import Tokenizer

    return padded_vocab(Tokenizer(root.data.tokenizer).vocab_size)


def activation_bytes_per_token(cfg: Any, vocab: int, act_bytes: int) -> float:
    """Activations kept for the backward pass per token, no recomputation, fused (flash) attention:
    per layer the two norm inputs, the qkv input and q/k/v, the attention output, the MLP input and
    its hidden values (GELU: 2 x ffn; SwiGLU: 4 x ffn), in the compute dtype; then the final norm
    input and the logits (compute dtype plus the fp32 copy the loss takes)."""
    h, kv = cfg.n_embd, cfg.kv_heads * (cfg.n_embd // cfg.n_head)
    hidden = (4 if cfg.mlp == "swiglu" else 2) * cfg.ffn_size
    per_layer = 2 * h + h + (h + 2 * kv) + h + h + hidden
    return float(cfg.n_layer * per_layer * act_bytes + h * act_bytes + vocab * (act_bytes + 4))


def describe(root: Any) -> Description:
    """Figures of ``root`` (a validated RootConfig); the model is built on the meta device."""
    import torch

    from expconf.build import resolve_precision, world_size
    from expconf.recipes.gpt_model import GPT

    vocab = model_vocab(root)
    with torch.device("meta"):
        gpt = GPT(root.model, vocab, root.data.seq_length)
    params = sum(p.numel() for p in gpt.parameters())
    precision = resolve_precision(root.trainer)
    precision = {"32": "32-true", "64": "64-true"}.get(precision, precision)
    w_b, g_b, o_b, a_b = PRECISION_BYTES[precision]
    world = world_size(root.trainer)
    d = root.data
    accumulate = BatchSizes.of(d, world).accumulate
    shards = world if "fsdp" in root.trainer.strategy else 1
    tokens = d.micro_batch_size * d.seq_length
    return Description(
        parameters=params,
        matmul_parameters=gpt.num_params(),
        flops_per_token=gpt.flops_per_token(),
        vocab_size=vocab,
        tokens_per_step=d.global_batch_size * d.seq_length,
        world_size=world,
        micro_batch_size=d.micro_batch_size,
        grad_accumulation=accumulate,
        precision=precision,
        strategy=root.trainer.strategy,
        weights_bytes=params * w_b / shards,
        grads_bytes=params * g_b / shards,
        optimizer_bytes=params * o_b / shards,
        activations_bytes=tokens * activation_bytes_per_token(root.model, vocab, a_b),
    )


def _gib(n: float) -> str:
    return f"{n / 2**30:8.2f} GiB"


def report(root: Any, desc: Description) -> str:
    """The printed report."""
    m = root.model
    shape = (
        f"{m.n_layer} layers, {m.n_head} heads ({m.kv_heads} key/value), width {m.n_embd}, "
        f"ffn {m.ffn_size}, vocab {desc.vocab_size}, seq {root.data.seq_length}; "
        f"{m.norm}, {m.pos_embedding} positions, {m.mlp}, {'tied' if m.tie_embeddings else 'untied'} embeddings"
    )
    sharding = f"sharded over {desc.world_size}" if "fsdp" in desc.strategy else "replicated"
    lines = [
        f"model: {shape}",
        f"parameters: {desc.parameters:,}",
        f"matmul parameters (N): {desc.matmul_parameters:,}",
        f"flops per token: {desc.flops_per_token:,} (6N + 12 x layers x width x seq; the MFU formula)",
        f"tokens per step: {desc.tokens_per_step:,} (global batch {root.data.global_batch_size} x seq "
        f"{root.data.seq_length})",
        f"devices: {desc.world_size}; micro batch {desc.micro_batch_size}; gradient accumulation: "
        f"{desc.grad_accumulation}",
        f"memory per device ({desc.precision}, strategy {desc.strategy}, states {sharding}):",
        f"  weights          {_gib(desc.weights_bytes)}",
        f"  gradients        {_gib(desc.grads_bytes)}",
        f"  optimizer state  {_gib(desc.optimizer_bytes)}",
        f"  activations      {_gib(desc.activations_bytes)}  (estimate, micro batch {desc.micro_batch_size})",
        f"  total            {_gib(desc.total_bytes)}",
    ]
    return "\n".join(lines)


def table_rows() -> list[str]:
    """The markdown rows of docs/recipes.md's table of the published recipes."""
    rows = [
        "| recipe | parameters | shape from | tokens per step | FLOPs per token |",
        "|---|---:|---|---:|---:|",
    ]
    for name, source in PUBLISHED_RECIPES.items():
        desc = describe(compose_root([f"recipe={name}", "trainer.accelerator=cpu"]))
        rows.append(
            f"| `{name}` | {desc.parameters:,} | {source} | {desc.tokens_per_step:,} | {desc.flops_per_token:,} |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m expconf.describe recipe=NAME [key=value ...]`` or ``--table``."""
    args = list(sys.argv[1:] if argv is None else argv)
    from expconf.cli.report import exit_on_error

    try:
        if args == ["--table"]:
            print("\n".join(table_rows()))
            return
        root = compose_root(args)
        print(report(root, describe(root)))
    except Exception as e:
        exit_on_error(e, args)  # one error line (exit 2) for a user mistake, else the traceback (exit 1)
        raise


if __name__ == "__main__":
    main()
