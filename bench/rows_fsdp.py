"""FSDP rows: sharded save time per rank vs a full-state save, async stall vs sync sharded save, and
peak memory per rank under FSDP vs DDP. Two gloo ranks on this machine, started with
``torch.multiprocessing``; the model is the GPT recipe's (6 layers, 384 wide, vocabulary 8192)
with its AdamW state after one step.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import Row, ratio_row

TOPIC = "FSDP and sharded checkpoints"
WORLD = 2
SEQ, BATCH, VOCAB = 64, 4, 8192


def _model() -> torch.nn.Module:
    from expconf.config.model import GPTModelConfig
    from expconf.recipes.gpt_model import GPT

    torch.manual_seed(0)
    holder = torch.nn.Module()
    holder.model = GPT(GPTModelConfig(n_layer=6, n_head=6, n_embd=384, dropout=0.0), VOCAB, SEQ)
    return holder


def _step(module: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    x = torch.randint(0, VOCAB, (BATCH, SEQ))
    module.model(x, x).backward()
    opt.step()
    opt.zero_grad(set_to_none=False)  # gradients stay allocated, as between steps of a real run


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _worker(rank: int, port: int, mode: str, repeats: int, out: str) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    from expconf.config.fsdp import FSDPConfig
    from expconf.distributed.fsdp import shard_module
    from expconf.storage import Storage

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    base = _rss_mb()
    module = _model()
    if mode == "ddp":
        module = torch.nn.parallel.DistributedDataParallel(module)
        inner = module.module
    else:
        from torch.distributed.device_mesh import init_device_mesh

        shard_module(module, init_device_mesh("cpu", (WORLD,)), FSDPConfig())
        inner = module
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    # The peak of training, not of building: every rank builds the whole model before sharding it.
    Path("/proc/self/clear_refs").write_text("5")
    for _ in range(2):
        _step(inner, opt)
    result: dict[str, Any] = {"peak_mb": _peak_mb() - base}
    if mode == "fsdp":
        folder = Path(out).parent / "ck"
        sharded = StateDictOptions(cpu_offload=True)
        full = StateDictOptions(full_state_dict=True, cpu_offload=True)

        def shards() -> dict[str, Any]:
            return {
                "model": get_model_state_dict(module, options=sharded),
                "optim": get_optimizer_state_dict(module, opt, options=sharded),
            }

        def full_save(name: str) -> None:
            state = {
                "model": get_model_state_dict(module, options=full),
                "optim": get_optimizer_state_dict(module, opt, options=full),
            }
            if rank == 0:
                Storage(folder).write_atomic(name, lambda f: torch.save(state, f))

        group = dist.new_group(backend="gloo")
        lists: dict[str, list[float]] = {"sharded": [], "full": [], "stall": [], "sync": []}
        for i in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            dcp.save(shards(), checkpoint_id=str(folder / f"s{i}"))
            lists["sharded"].append(time.perf_counter() - t0)
            dist.barrier()
            t0 = time.perf_counter()
            full_save(f"f{i}.ckpt")
            lists["full"].append(time.perf_counter() - t0)
            dist.barrier()
            t0 = time.perf_counter()
            future = dcp.async_save(shards(), checkpoint_id=str(folder / f"a{i}"), process_group=group)
            lists["stall"].append(time.perf_counter() - t0)
            future.result()
            dist.barrier()
            t0 = time.perf_counter()
            dcp.save(shards(), checkpoint_id=str(folder / f"y{i}"))
            lists["sync"].append(time.perf_counter() - t0)
        result.update(lists)
    Path(f"{out}.{rank}").write_text(json.dumps(result))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(mode: str, repeats: int, tmp: str) -> list[dict[str, Any]]:
    import torch.multiprocessing as tmp_mp

    # Freed tensors go back to the system at once (glibc otherwise raises its mmap threshold and
    # keeps them), so the resident-set peak measures what training holds.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = os.path.join(tmp, mode, "result")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp_mp.spawn(_worker, args=(_free_port(), mode, repeats, out), nprocs=WORLD, join=True)
    return [json.loads(Path(f"{out}.{r}").read_text()) for r in range(WORLD)]


def rows(quick: bool) -> list[Row]:
    """The FSDP rows."""
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="expconf-bench-fsdp-") as tmp:
        fsdp = _run("fsdp", repeats, tmp)
        ddp = _run("ddp", 1, tmp)
    # The slower rank decides when a save is over.
    slowest = {k: [max(r[k][i] for r in fsdp) for i in range(repeats)] for k in ("sharded", "full", "stall", "sync")}
    peak_fsdp = [max(r["peak_mb"] for r in fsdp)]
    peak_ddp = [max(r["peak_mb"] for r in ddp)]
    note = "2 gloo ranks, GPT 6x384, vocab 8192, AdamW state after 2 steps"
    return [
        ratio_row(
            TOPIC,
            "sharded save per rank (DCP) / full-state save (gather to rank 0 + torch.save)",
            slowest["sharded"],
            slowest["full"],
            0.6,
            note=note + "; slower rank; local disk with fsync",
        ),
        ratio_row(
            TOPIC,
            "async sharded save stall / sync sharded save",
            slowest["stall"],
            slowest["sync"],
            0.25,
            note=note + "; stall = DCP staging a CPU copy before the background write",
        ),
        ratio_row(
            TOPIC,
            "peak memory per rank: FSDP / DDP (same model)",
            peak_fsdp,
            peak_ddp,
            0.6,
            unit="MB",
            note=note + "; peak RSS over 2 training steps above the RSS before the model was built",
        ),
    ]
