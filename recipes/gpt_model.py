"""The GPT of the recipes in plain PyTorch (no Lightning): one decoder class for the GPT-2 and
Llama families, its optimizer and its learning-rate schedule. ``recipes/gpt.py`` wraps it in a LightningModule; the raw-loop
benchmark trains it directly.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from expconf.config.model import GPTModelConfig
from expconf.config.optim import OptimConfig


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned scale (Llama); no mean subtraction, no bias."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def make_norm(cfg: GPTModelConfig) -> nn.Module:
    """The norm layer ``cfg.norm`` names."""
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.n_embd, cfg.norm_eps)
    return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=cfg.bias)


def rope_tables(head_dim: int, length: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, shape (length, head_dim), halves repeated (rotate-half layout)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (b, heads, t, head_dim) by the first t rows of the tables."""
    t = x.shape[-2]
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x * cos[:t] + rotated * sin[:t]).type_as(x)


Rope = tuple[torch.Tensor, torch.Tensor] | None


class CausalSelfAttention(nn.Module):
    """Causal self-attention through ``scaled_dot_product_attention``; grouped-query when
    ``n_kv_head < n_head``, rotary positions when given the tables."""

    def __init__(self, cfg: GPTModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.n_kv_head = cfg.kv_heads
        self.head_dim = cfg.n_embd // cfg.n_head
        self.kv_dim = self.n_kv_head * self.head_dim
        self.qkv = nn.Linear(cfg.n_embd, cfg.n_embd + 2 * self.kv_dim, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: Rope = None) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split([c, self.kv_dim, self.kv_dim], dim=2)
        q = q.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        k, v = (z.view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2) for z in (k, v))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if self.n_kv_head != self.n_head:
            group = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).contiguous().view(b, t, c)))


class SwiGLU(nn.Module):
    """Gated MLP of Llama: ``proj(silu(gate(x)) * up(x))``, gate and up in one matmul."""

    def __init__(self, cfg: GPTModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.n_embd, 2 * cfg.ffn_size, bias=cfg.bias)
        self.proj = nn.Linear(cfg.ffn_size, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.drop(self.proj(F.silu(gate) * up))


def make_mlp(cfg: GPTModelConfig) -> nn.Module:
    """The MLP ``cfg.mlp`` names."""
    if cfg.mlp == "swiglu":
        return SwiGLU(cfg)
    return nn.Sequential(
        nn.Linear(cfg.n_embd, cfg.ffn_size, bias=cfg.bias),
        nn.GELU(),
        nn.Linear(cfg.ffn_size, cfg.n_embd, bias=cfg.bias),
        nn.Dropout(cfg.dropout),
    )


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: GPTModelConfig) -> None:
        super().__init__()
        self.ln1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = make_norm(cfg)
        self.mlp = make_mlp(cfg)

    def forward(self, x: torch.Tensor, rope: Rope = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), rope)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Decoder-only transformer: GPT-2 (learned positions, tied embeddings) or Llama layout, by config."""

    def __init__(self, cfg: GPTModelConfig, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(block_size, cfg.n_embd) if cfg.pos_embedding == "learned" else None
        if cfg.pos_embedding == "rope":
            cos, sin = rope_tables(cfg.n_embd // cfg.n_head, block_size, cfg.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def _init(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=self.cfg.init_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=self.cfg.init_std)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits, or the mean cross-entropy when ``targets`` are given."""
        x = self.wte(idx)
        rope: Rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        else:
            rope = (self.rope_cos, self.rope_sin)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))

    def num_params(self) -> int:
        """Parameters that take part in a matmul: all but the position table and, when the
        embeddings are not tied, the input embedding (lookups, no FLOPs). nanoGPT's count for GPT-2."""
        n = sum(p.numel() for p in self.parameters())
        if self.wpe is not None:
            n -= self.wpe.weight.numel()
        if not self.cfg.tie_embeddings:
            n -= self.wte.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """Training FLOPs per token, nanoGPT/PaLM formula: 6N + 12 L H Q T (N: ``num_params``)."""
        c = self.cfg
        return 6 * self.num_params() + 12 * c.n_layer * c.n_head * (c.n_embd // c.n_head) * self.block_size


def padded_vocab(vocab: int, multiple: int = 64) -> int:
    """Round the vocabulary up so matrix shapes stay friendly to the hardware."""
    return ((vocab + multiple - 1) // multiple) * multiple


def lr_lambda(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Multiplier of the peak lr: linear warmup, then cosine decay to min_lr."""
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    decay = max((optim.decay_steps or total_steps) - optim.warmup_steps, 1)
    progress = min((step - optim.warmup_steps) / decay, 1.0)
    floor = optim.min_lr / optim.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay only on matrices (not biases, norms or embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "wte" not in name and "wpe" not in name else no_decay).append(p)
    fused = optim.fused if optim.fused is not None else torch.cuda.is_available()
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=optim.lr,
        betas=(optim.betas[0], optim.betas[1]),
        eps=optim.eps,
        fused=fused or None,
    )
