"""Each model family trains through the CLI when shrunk, on its published vocabulary and trained BPE;
the run dir records the tokenizer; the logged model TFLOP/s use the describe formula; describe's CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from expconf.describe import describe
from expconf.train import compose_root
from helpers import TINY, run_cli, run_dirs, scalars

pytestmark = pytest.mark.slow

#: TINY without its recipe, plus what a GPU recipe needs to run on the CPU.
CPU = [
    *TINY[1:],
    "model.ffn_hidden_size=64",
    "model.compile=false",
    "trainer.accelerator=cpu",
    "trainer.strategy=auto",
    "trainer.max_steps=3",
    "trainer.val_check_interval=3",
]

FAMILIES = {
    "gpt2_124m": ([], 50257),
    "llama3_8b": (["model.n_kv_head=1"], 128256),  # grouped-query (2 query heads, 1 key/value head)
}


@pytest.mark.parametrize("recipe", sorted(FAMILIES))
def test_family_trains_shrunk_on_the_cpu(tmp_path: Path, recipe: str) -> None:
    extra, vocab = FAMILIES[recipe]
    args = [f"+recipe={recipe}", *CPU, *extra, f"log.log_dir={tmp_path / 'runs'}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = run_dirs(tmp_path / "runs")

    info = json.loads((run / "tokenizer_info.json").read_text())
    assert info["requested"] == "bpe" and 257 <= info["vocab_size"] <= vocab
    assert (run / "tokenizer.json").is_file()

    losses = [v for _, v in scalars(run, "reduced_train_loss")]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert losses[0] == pytest.approx(math.log(vocab), abs=0.5)  # the published vocabulary's logits

    # model TFLOP/s = FLOPs per token (describe's number) x tokens/s, step by step
    desc = describe(compose_root(args[:-1]))
    tokens = dict(scalars(run, "tokens_per_sec"))
    tflops = dict(scalars(run, "model_tflops_per_sec"))
    assert tokens and tokens.keys() == tflops.keys()
    for step, tps in tokens.items():
        assert tflops[step] == pytest.approx(desc.flops_per_token * tps / 1e12, rel=1e-5)
    assert not scalars(run, "mfu")  # no CUDA card, no peak: no MFU rather than a wrong one


def test_describe_cli(tmp_path: Path) -> None:
    proc = run_cli(["+recipe=tinyllama_1b", "trainer.devices=8"], cwd=tmp_path, module="expconf.describe")
    assert proc.returncode == 0, proc.stderr
    assert "parameters: 1,100,048,384" in proc.stdout
    assert "gradient accumulation: 16" in proc.stdout  # 1024 / (8 micro x 8 devices)
    bad = run_cli(["+recipe=tinyllama_1b", "model.n_kv_head=5"], cwd=tmp_path, module="expconf.describe")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: model.n_kv_head=5: expected null or a divisor of model.n_head=32"
    ]
    assert not list(tmp_path.iterdir())  # describe writes nothing


def test_blend_resumes_where_the_uninterrupted_run_is(tmp_path: Path) -> None:
    """Two weighted text sources: 4 steps, then resumed to 8, log the same losses as 8 straight."""
    (tmp_path / "prose.txt").write_text("".join(f"Line {i} of a plain story about rivers.\n" for i in range(600)))
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "m.py").write_text("".join(f"def f{i}(x):\n    return x ** {i % 7}\n" for i in range(600)))
    blend = f"data.blend=[0.8, {tmp_path / 'prose.txt'}, 0.2, {tmp_path / 'code'}]"
    common = [*TINY, blend, "optim.decay_steps=8", "trainer.val_check_interval=4", "log.log_dir=runs"]

    def run(where: str, *extra: str) -> None:
        (tmp_path / where).mkdir(exist_ok=True)
        proc = run_cli([*common, *extra], cwd=tmp_path / where)
        assert proc.returncode == 0, proc.stderr[-3000:]

    run("straight", "trainer.max_steps=8")
    resume = ["resume.resume_if_exists=true", "resume.resume_ignore_no_checkpoint=true", "log.version=v"]
    run("resumed", *resume, "trainer.max_steps=4")
    run("resumed", *resume, "resume.resume_past_end=true", "trainer.max_steps=8")
    (a,) = run_dirs(tmp_path / "straight" / "runs")
    b = tmp_path / "resumed" / "runs" / "gpt" / "v"
    a_loss, b_loss = dict(scalars(a, "reduced_train_loss")), dict(scalars(b, "reduced_train_loss"))
    assert len(a_loss) == 8 and set(b_loss) == set(a_loss)
    for step in a_loss:  # same samples in the same order; the float sums agree to rounding
        assert b_loss[step] == pytest.approx(a_loss[step], rel=1e-5), step
