"""The published recipes are the models they name: exact parameter counts against published
figures, the shared shrink keys, the GPT-2 / Llama layers, and the docs table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from expconf.config.model import GPTModelConfig
from expconf.describe import PUBLISHED_RECIPES, describe, table_rows
from expconf.errors import ConfigError
from expconf.recipes.gpt_model import GPT, apply_rope, rope_tables
from expconf.train import compose_root

REPO = Path(__file__).resolve().parents[2]

#: Published exact parameter counts and where each number comes from: Hugging Face
#: ``model.num_parameters()`` of the checkpoint named (the figure model cards and litgpt quote).
#: GPT-2 counts include the learned position table (1024 x width) and the tied embedding once.
PUBLISHED = {
    "gpt2_124m": (124_439_808, "openai-community/gpt2 num_parameters() (nanoGPT: 124.44M with positions)"),
    "gpt2_350m": (354_823_168, "openai-community/gpt2-medium num_parameters()"),
    "gpt2_774m": (774_030_080, "openai-community/gpt2-large num_parameters()"),
    "gpt2_1558m": (1_557_611_200, "openai-community/gpt2-xl num_parameters()"),
    "llama2_7b": (6_738_415_616, "meta-llama/Llama-2-7b-hf num_parameters() (paper: 7B, arXiv:2307.09288)"),
    "llama3_8b": (8_030_261_248, "meta-llama/Meta-Llama-3-8B num_parameters() (model card: 8B)"),
    "tinyllama_1b": (1_100_048_384, "TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T num_parameters()"),
}

#: The config.json shapes of the same checkpoints: (layers, width, heads, kv heads, ffn, vocab, positions).
#: GPT-2 rows have positions (learned), LayerNorm with bias, biased Linear layers and a tied head.
SHAPES = {
    "gpt2_124m": (12, 768, 12, 12, 3072, 50257, 1024),
    "gpt2_350m": (24, 1024, 16, 16, 4096, 50257, 1024),
    "gpt2_774m": (36, 1280, 20, 20, 5120, 50257, 1024),
    "gpt2_1558m": (48, 1600, 25, 25, 6400, 50257, 1024),
    "llama2_7b": (32, 4096, 32, 32, 11008, 32000, 0),
    "llama3_8b": (32, 4096, 32, 8, 14336, 128256, 0),
    "tinyllama_1b": (22, 2048, 32, 4, 5632, 32000, 0),
}


def count_from_shape(layers: int, h: int, heads: int, kv: int, ffn: int, vocab: int, positions: int) -> int:
    """Closed-form parameter count of a GPT-2 (positions > 0) or Llama (positions == 0) checkpoint,
    written out independently of the model code."""
    kv_dim = kv * (h // heads)
    if positions:  # GPT-2: ln1, c_attn, c_proj, ln2, c_fc, c_proj (all with bias), ln_f; tied head
        per_layer = 2 * h + (h * 3 * h + 3 * h) + (h * h + h) + 2 * h + (h * ffn + ffn) + (ffn * h + h)
        return vocab * h + positions * h + layers * per_layer + 2 * h
    per_layer = h + h * (h + 2 * kv_dim) + h * h + h + 3 * h * ffn  # norms, q/k/v, o, gate/up/down
    return 2 * vocab * h + layers * per_layer + h


def test_published_counts_agree_with_the_checkpoint_shapes() -> None:
    for name, shape in SHAPES.items():
        assert count_from_shape(*shape) == PUBLISHED[name][0], name


def _describe(*overrides: str):  # type: ignore[no-untyped-def]
    root = compose_root(list(overrides))
    return root, describe(root)


def test_every_published_recipe_is_in_the_table() -> None:
    assert set(PUBLISHED) == set(PUBLISHED_RECIPES)
    recipes = {p.stem for p in (REPO / "conf" / "recipe").glob("*.yaml")}
    assert set(PUBLISHED) <= recipes


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_equals_the_published_one(name: str) -> None:
    """Built on the meta device (nothing allocated): the exact count, not an approximation."""
    expected, source = PUBLISHED[name]
    _, desc = _describe(f"+recipe={name}")
    assert desc.parameters == expected, f"{name}: {desc.parameters:,} != {expected:,} ({source})"


def test_gpt_cpu_recipe_keeps_its_model() -> None:
    """The 4-layer CPU GPT: 256-byte vocabulary padded to 256, 128 positions, as before the families."""
    _, desc = _describe("+recipe=gpt")
    assert desc.vocab_size == 256
    emb, pos = 256 * 128, 128 * 128
    per_layer = 2 * 128 + 128 * 384 + 128 * 128 + 2 * 128 * 512  # two LayerNorms (no bias), qkv, proj, MLP
    assert desc.parameters == emb + pos + 4 * per_layer + 128
    assert desc.matmul_parameters == desc.parameters - pos  # nanoGPT's count: no position table
    assert desc.flops_per_token == 6 * desc.matmul_parameters + 12 * 4 * 128 * 128


def test_gpt_124m_is_an_alias_of_gpt2_124m() -> None:
    a, _ = _describe("+recipe=gpt_124m")
    b, _ = _describe("+recipe=gpt2_124m")
    assert a == b


#: The shrink overrides of a CPU smoke run (the Llama recipes also need key/value heads dividing 2).
SHRINK = ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.ffn_hidden_size=64"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_every_recipe_shrinks_with_the_shared_keys(name: str) -> None:
    kv = ["model.n_kv_head=1"] if "llama" in name else []
    root, desc = _describe(f"+recipe={name}", *SHRINK, *kv)
    assert (root.model.n_layer, root.model.n_head, root.model.n_embd) == (1, 2, 32)
    assert desc.vocab_size == PUBLISHED_VOCAB[name]
    assert desc.parameters < 10_000_000


PUBLISHED_VOCAB = {
    "gpt2_124m": 50257,
    "gpt2_350m": 50257,
    "gpt2_774m": 50257,
    "gpt2_1558m": 50257,
    "llama2_7b": 32000,
    "llama3_8b": 128256,
    "tinyllama_1b": 32000,
}


def test_flops_per_token_is_the_mfu_formula() -> None:
    """6N + 12 L H Q T with N the matmul parameters: untied input embeddings are a lookup."""
    _, d = _describe("+recipe=llama2_7b")
    assert d.matmul_parameters == 6_738_415_616 - 32000 * 4096
    assert d.flops_per_token == 6 * d.matmul_parameters + 12 * 32 * 4096 * 4096
    _, g = _describe("+recipe=gpt2_124m")
    assert g.matmul_parameters == 124_439_808 - 1024 * 768
    assert g.tokens_per_step == 512 * 1024


def test_gradient_accumulation_and_sharded_memory() -> None:
    _, one = _describe("+recipe=llama3_8b", "trainer.devices=1")
    _, eight = _describe("+recipe=llama3_8b", "trainer.devices=8")
    assert (one.grad_accumulation, eight.grad_accumulation) == (512, 64)
    assert one.precision == "bf16-mixed" and one.strategy == "fsdp"
    assert one.weights_bytes == 8_030_261_248 * 4 and eight.weights_bytes == one.weights_bytes / 8
    assert eight.optimizer_bytes == 2 * eight.grads_bytes
    _, ddp = _describe("+recipe=gpt2_124m", "trainer.devices=8", "trainer.strategy=ddp")
    assert ddp.weights_bytes == 124_439_808 * 4  # replicated
    assert ddp.grad_accumulation == 512 // (16 * 8)
    _, true16 = _describe("+recipe=gpt2_124m", "trainer.precision=bf16-true")
    assert true16.weights_bytes == 124_439_808 * 2 and true16.optimizer_bytes == 124_439_808 * 4


def test_docs_table_is_generated() -> None:
    """docs/recipes.md holds exactly the rows `python -m expconf.describe --table` prints."""
    text = (REPO / "docs" / "recipes.md").read_text()
    for row in table_rows():
        assert row in text, f"docs/recipes.md is stale; regenerate with python -m expconf.describe --table: {row}"


def test_grouped_query_attention_shapes() -> None:
    cfg = GPTModelConfig(
        n_layer=1, n_head=4, n_kv_head=2, n_embd=32, pos_embedding="rope", norm="rmsnorm", mlp="swiglu"
    )
    gpt = GPT(cfg, 64, 16)
    assert gpt.blocks[0].attn.qkv.weight.shape == (32 + 2 * 16, 32)
    assert gpt.wpe is None and gpt.lm_head.weight is gpt.wte.weight  # tie_embeddings defaults to true
    loss = gpt(torch.randint(0, 64, (2, 16)), torch.randint(0, 64, (2, 16)))
    loss.backward()
    assert torch.isfinite(loss)


def test_rope_scores_depend_only_on_the_distance() -> None:
    """q.k after rotation at positions (i, j) equals the same vectors at (i + s, j + s)."""
    torch.manual_seed(0)
    cos, sin = rope_tables(8, 32, 10000.0)
    q, k = torch.randn(8), torch.randn(8)

    def score(i: int, j: int) -> float:
        qs = torch.zeros(1, 1, 32, 8)
        ks = torch.zeros(1, 1, 32, 8)
        qs[0, 0, i], ks[0, 0, j] = q, k
        return float((apply_rope(qs, cos, sin)[0, 0, i] * apply_rope(ks, cos, sin)[0, 0, j]).sum())

    assert score(3, 1) == pytest.approx(score(20, 18), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["model.n_kv_head=3"], "model.n_kv_head"),
        (["model.norm=batchnorm"], "model.norm"),
        (["model.mlp=relu"], "model.mlp"),
        (["model.pos_embedding=alibi"], "model.pos_embedding"),
        (["model.vocab_size=100"], None),
    ],
)
def test_bad_model_fields_name_the_key(overrides: list[str], key: str | None) -> None:
    if key is None:  # a vocabulary smaller than the tokenizer's is refused when the model is built
        from expconf.recipes.gpt import GPTModule

        root = compose_root(["+recipe=gpt", *overrides])
        with pytest.raises(ConfigError, match=re.escape("model.vocab_size")):
            GPTModule(root.model, vocab_size=256)
        return
    with pytest.raises(ConfigError, match=re.escape(key)):
        compose_root(["+recipe=llama3_8b", *overrides])


GROUPS = ("recipe", "trainer", "model", "experiment")


@pytest.mark.parametrize("group", ["trainer", "model"])
def test_every_preset_composes_against_its_dataclass(group: str) -> None:
    names = sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))
    assert names, f"conf/{group}/ has no preset"
    for name in names:
        compose_root(["+recipe=gpt", f"{group}={name}"])


def test_a_misspelt_preset_key_is_refused(tmp_path: Path) -> None:
    """Presets are merged into TrainerConfig/GPTModelConfig: a key the dataclass lacks is an error."""
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "typo.yaml").write_text("accelerator: cpu\nmax_stepz: 3\n")
    with pytest.raises(ConfigCompositionException, match="Key 'max_stepz' not in 'TrainerConfig'"):
        compose_root([f"hydra.searchpath=[file://{tmp_path}]", "+recipe=gpt", "trainer=typo"])


@pytest.mark.parametrize("name", [*sorted(PUBLISHED), "gpt_124m"])
def test_gpu_recipes_select_the_gpu_trainer_preset_and_leave_the_precision(name: str) -> None:
    recipe = (REPO / "conf" / "recipe" / f"{name}.yaml").read_text()
    root = compose_root([f"+recipe={name}"])
    assert (root.trainer.accelerator, root.trainer.devices, root.trainer.precision) == ("gpu", "auto", None)
    if name != "gpt_124m":
        assert "- /trainer/gpu@trainer" in recipe and "accelerator:" not in recipe
    cpu = compose_root([f"+recipe={name}", "trainer=cpu"])
    assert (cpu.trainer.accelerator, cpu.trainer.devices, cpu.trainer.precision) == ("cpu", 1, None)
    assert cpu.trainer.max_steps == root.trainer.max_steps
    gpu = compose_root([f"+recipe={name}", "trainer.accelerator=cpu", "trainer=gpu"])
    assert (gpu.trainer.accelerator, gpu.trainer.precision) == ("cpu", "bf16-mixed")


def test_conf_has_a_folder_per_group_and_the_docs_list_their_options() -> None:
    text = (REPO / "docs" / "recipes.md").read_text()
    for group in GROUPS:
        options = {p.stem for p in (REPO / "conf" / group).glob("*.yaml")}
        row = next(line for line in text.splitlines() if line.startswith(f"| `{group}` | `conf/{group}/` |"))
        listed = set(re.findall(r"`([a-z0-9_]+)`", row.split("|")[3]))
        assert options == listed, f"docs/recipes.md's {group} row: {sorted(listed)} != conf/{group}/ {sorted(options)}"
