"""expconf.distributed.meta_init: a model built on the meta device gets, once materialised, the values of a normal build.

The comparisons are bitwise: both builds run the same initialisation ops, in this process, from the
same generator states, on tensors of the same shape, dtype and layout, so every value is computed
by the same kernel from the same random numbers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from expconf.config.model import GPTModelConfig
from expconf.distributed.fsdp import DEFERRED_ATTR, build_on_meta
from expconf.distributed.meta_init import CannotDefer, build_deferred
from expconf.errors import ConfigError
from expconf.recipes.gpt_model import GPT


class Mixed(nn.Module):
    """Parameters initialised through views, a generator of its own, in-place operators and a real tensor."""

    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6, padding_idx=3)  # normal_, then row 3 zeroed through a view
        self.lin = nn.Linear(6, 5)
        nn.init.trunc_normal_(self.lin.weight, std=0.5, generator=generator)  # skips meta tensors unless recorded
        self.rot = nn.Linear(4, 4, bias=False)
        nn.init.orthogonal_(self.rot.weight)  # the same
        with torch.no_grad():
            self.lin.weight[:, 2].uniform_(-1, 1)
            self.lin.bias *= 3
        self.scale = nn.Parameter(torch.ones(5))  # built for real
        self.register_buffer("table", torch.empty(4, 2).fill_(0.5))


def test_gpt_gets_the_values_of_a_normal_build_and_the_generator_moves_on_the_same() -> None:
    cfg = GPTModelConfig(n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    torch.manual_seed(0)
    plain = GPT(cfg, 50, 8)
    drawn_after_plain = torch.rand(4)
    torch.manual_seed(0)
    module, deferred = build_deferred(lambda: GPT(cfg, 50, 8))
    assert all(p.is_meta for p in module.parameters())
    state = torch.get_rng_state()
    assert torch.equal(torch.rand(4), drawn_after_plain)  # data order and dropout draw the same numbers
    torch.set_rng_state(state)
    deferred.materialize(module, torch.device("cpu"))
    assert torch.equal(torch.get_rng_state(), state)  # materialising draws nothing
    assert module.lm_head.weight is module.wte.weight  # still tied
    want, got = plain.state_dict(), module.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_views_generators_operators_and_real_tensors() -> None:
    g_plain, g_meta = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    torch.manual_seed(1)
    plain = Mixed(g_plain)
    torch.manual_seed(1)
    module, deferred = build_deferred(lambda: Mixed(g_meta))
    assert torch.equal(g_meta.get_state(), g_plain.get_state())
    assert module.emb.weight.is_meta and not module.scale.is_meta
    deferred.materialize(module, torch.device("cpu"))
    want, got = plain.state_dict(), module.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert torch.equal(module.emb.weight[3], torch.zeros(6)) and torch.equal(module.table, torch.full((4, 2), 0.5))


class CopiedIn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(3))


class OutOfPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(3, 2).normal_() * 2)


class AsksMeta(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        if not self.lin.weight.is_meta:
            self.lin.weight.data.fill_(1.0)


class ReadsValues(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.scale = float(self.lin.weight.detach().abs().max())


class RefusesItsConfig(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        raise ConfigError("model.width", -1, "a positive number")


@pytest.mark.parametrize(
    ("cls", "why"),
    [
        (CopiedIn, r"cannot build CopiedIn on the meta device: lin\.weight \(copy_ writes it from another tensor\)"),
        (OutOfPlace, r"cannot build OutOfPlace on the meta device: w \(not initialised in place\)"),
        (
            AsksMeta,
            r"cannot build AsksMeta on the meta device: lin\.weight \(its initialisation asks Tensor\.is_meta\)",
        ),
        (ReadsValues, r"building the model on the meta device failed: .*meta tensors"),
    ],
)
def test_what_cannot_be_replayed_is_named(cls: type[nn.Module], why: str) -> None:
    with pytest.raises(CannotDefer, match=why):
        build_deferred(cls)
    with pytest.raises(ConfigError, match=r"^trainer\.fsdp\.meta_init=true: expected a model initialised in place"):
        build_on_meta(cls)


def test_the_model_s_own_config_errors_pass_through() -> None:
    with pytest.raises(ConfigError, match=r"^model\.width=-1: expected a positive number"):
        build_on_meta(RefusesItsConfig)


def test_build_on_meta_leaves_the_plan_for_the_strategy() -> None:
    module = build_on_meta(lambda: nn.Linear(4, 2))
    assert module.weight.is_meta and getattr(module, DEFERRED_ATTR) is not None
