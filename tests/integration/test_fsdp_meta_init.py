"""``trainer.fsdp.meta_init`` on two gloo ranks: each rank initialises only its shards, and the shards put
together are, bit for bit, the weights of a normal build with the same seed.

Bitwise is valid: every value is computed by the same CPU kernel from the same generator state on a
tensor of the same shape and dtype in both builds, and cutting a rank's shard out of it is a copy.
The GPT-2 shape has tied embeddings; the Llama shape has norms built for real (``torch.ones``),
rotary tables as buffers and a vocabulary that does not split evenly over two ranks.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

SHAPES = {
    "gpt2": {},
    "llama": {"norm": "rmsnorm", "mlp": "swiglu", "pos_embedding": "rope", "tie_embeddings": False, "bias": False},
}


def _rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    from expconf.config.fsdp import FSDPConfig
    from expconf.config.model import GPTModelConfig
    from expconf.distributed.fsdp import DEFERRED_ATTR, build_on_meta, clean_name, shard_module
    from expconf.recipes.gpt_model import GPT

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    mesh = init_device_mesh("cpu", (2,))
    report: dict[str, object] = {}
    for shape, extra in SHAPES.items():
        cfg = GPTModelConfig(n_layer=2, n_head=2, n_embd=16, dropout=0.0, **extra)

        def build(cfg: GPTModelConfig = cfg) -> torch.nn.Module:
            holder = torch.nn.Module()
            holder.model = GPT(cfg, 67, 8)
            return holder

        torch.manual_seed(3)
        plain = build()
        after_plain = torch.rand(2)
        torch.manual_seed(3)
        module = build_on_meta(build)
        after_meta = torch.rand(2)
        shard_module(module, mesh, FSDPConfig(activation_checkpointing=True))
        module.__dict__.pop(DEFERRED_ATTR).materialize(module, torch.device("cpu"), clean_name)
        full = {clean_name(k): v.full_tensor() for k, v in module.state_dict().items()}
        want = plain.state_dict()
        x = torch.randint(0, 67, (2, 8), generator=torch.Generator().manual_seed(0))
        report[shape] = {
            "same_keys": sorted(full) == sorted(want),
            "differ": [k for k in want if not torch.equal(full[k], want[k])],
            "rng": torch.equal(after_plain, after_meta),
            "loss": torch.equal(module.model(x, x), plain.model(x, x)),
            "tied": module.model.lm_head.weight is module.model.wte.weight,
        }
    Path(f"{out}.{rank}").write_text(json.dumps(report))
    dist.destroy_process_group()


def test_meta_init_shards_are_those_of_a_normal_build(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "report")
    mp.spawn(_rank, args=(port, out), nprocs=2, join=True)
    for rank in (0, 1):
        report = json.loads(Path(f"{out}.{rank}").read_text())
        for shape in SHAPES:
            got = report[shape]
            assert got["same_keys"] and got["differ"] == [] and got["rng"] and got["loss"], (rank, shape, got)
        assert report["gpt2"]["tied"] and not report["llama"]["tied"]
