"""FSDP rows: sharded save time per rank vs a full-state save, async stall vs sync sharded save, and
peak memory per rank under FSDP vs DDP. Two gloo ranks on this machine, started with
``torch.multiprocessing``, train a GPT (:data:`SHAPES`) with AdamW for two steps.

The FSDP side is built as ``trainer.strategy=fsdp`` builds it: on the meta device, sharded per
block, then each rank initialises its own shards (``trainer.fsdp.meta_init``). Saves go through
expconf's :class:`~expconf.sharded_ckpt.ShardedCheckpoints`, as in a run.
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
SEQ, VOCAB = 64, 8192
#: (layers, width, micro-batch) by mode. The full shape is one where the weights, gradients and
#: AdamW state (16 bytes per parameter) dominate a DDP rank's memory, not activations or the runtime.
SHAPES = {"full": (16, 512, 2), "quick": (2, 128, 2)}


def _model(layers: int, width: int) -> torch.nn.Module:
    from expconf.config.model import GPTModelConfig
    from expconf.recipes.gpt_model import GPT

    holder = torch.nn.Module()
    holder.model = GPT(GPTModelConfig(n_layer=layers, n_head=8, n_embd=width, dropout=0.0), VOCAB, SEQ)
    return holder


def _step(module: torch.nn.Module, opt: torch.optim.Optimizer, batch: int) -> None:
    x = torch.randint(0, VOCAB, (batch, SEQ))
    module.model(x, x).backward()
    opt.step()
    # Right after the step, as the GPT recipe's optimizer_step does: between steps a rank holds
    # weights and optimizer state, during the backward pass also the gradients.
    opt.zero_grad()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class _Ranks:
    """What ShardedCheckpoints asks of a Lightning strategy: rank 0's object on every rank."""

    @staticmethod
    def broadcast(obj: Any) -> Any:
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _worker(rank: int, port: int, mode: str, shape: tuple[int, int, int], repeats: int, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    from expconf.config.fsdp import FSDPConfig
    from expconf.distributed.fsdp import DEFERRED_ATTR, build_on_meta, clean_name, shard_module
    from expconf.sharded_ckpt import ShardedCheckpoints, shard_state
    from expconf.storage import Storage

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    layers, width, batch = shape
    base = _rss_mb()
    torch.manual_seed(0)
    if mode == "ddp":
        module: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(_model(layers, width))
        inner = module.module
    else:
        from torch.distributed.device_mesh import init_device_mesh

        module = inner = build_on_meta(lambda: _model(layers, width))
        shard_module(module, init_device_mesh("cpu", (WORLD,)), FSDPConfig())
        module.__dict__.pop(DEFERRED_ATTR).materialize(module, torch.device("cpu"), clean_name)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    for _ in range(2):
        _step(inner, opt, batch)
    # The peak of the rank's life so far: building (or initialising its shards) and two steps.
    result: dict[str, Any] = {"peak_mb": _peak_mb() - base}
    if mode == "fsdp":
        folder = Path(out).parent / "ck"
        full = StateDictOptions(full_state_dict=True, cpu_offload=True)

        def shards() -> dict[str, Any]:
            # What a run's checkpoint holds of the model and optimizer (Lightning's dump_checkpoint).
            state = {
                "state_dict": get_model_state_dict(module),
                "optimizer_states": [get_optimizer_state_dict(module, opt)],
            }
            return shard_state(state)

        def sharded_save(saver: ShardedCheckpoints, name: str) -> None:
            plan = saver.plan(name) if rank == 0 else None
            if plan is not None:
                plan.folders.append(name)
            saver.write(_Ranks(), plan, str(folder), shards())

        def full_save(name: str) -> None:
            state = {
                "model": get_model_state_dict(module, options=full),
                "optim": get_optimizer_state_dict(module, opt, options=full),
            }
            if rank == 0:
                Storage(folder).write_atomic(name, lambda f: torch.save(state, f))

        sync, background = ShardedCheckpoints(), ShardedCheckpoints(async_save=True)
        background.setup()
        lists: dict[str, list[float]] = {"sharded": [], "full": [], "stall": [], "sync": []}
        for i in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            sharded_save(sync, f"s{i}.ckpt")
            lists["sharded"].append(time.perf_counter() - t0)
            dist.barrier()
            t0 = time.perf_counter()
            full_save(f"f{i}.ckpt")
            lists["full"].append(time.perf_counter() - t0)
            dist.barrier()
            t0 = time.perf_counter()
            sharded_save(background, f"a{i}.ckpt")
            lists["stall"].append(time.perf_counter() - t0)
            background.wait()
            dist.barrier()
            t0 = time.perf_counter()
            sharded_save(sync, f"y{i}.ckpt")
            lists["sync"].append(time.perf_counter() - t0)
        result.update(lists)
    Path(f"{out}.{rank}").write_text(json.dumps(result))
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(mode: str, shape: tuple[int, int, int], repeats: int, tmp: str) -> list[dict[str, Any]]:
    import torch.multiprocessing as tmp_mp

    # Freed tensors go back to the system at once (glibc otherwise raises its mmap threshold and
    # keeps them), so the resident-set peak measures what training holds.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = os.path.join(tmp, mode, "result")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp_mp.spawn(_worker, args=(_free_port(), mode, shape, repeats, out), nprocs=WORLD, join=True)
    return [json.loads(Path(f"{out}.{r}").read_text()) for r in range(WORLD)]


def _sizes(layers: int, width: int) -> str:
    """Parameter count and the bytes of weights + gradients + AdamW state (fp32) on a DDP and an FSDP rank."""
    n = sum(p.numel() for p in _model(layers, width).parameters())
    state = 16 * n / 2**20
    return (
        f"GPT {layers}x{width}, vocab {VOCAB}, {n / 1e6:.1f}M parameters: weights + grads + AdamW "
        f"{state:.0f} MB per DDP rank, {state / WORLD:.0f} MB per FSDP rank"
    )


def rows(quick: bool) -> list[Row]:
    """The FSDP rows."""
    repeats = 3 if quick else 5
    layers, width, batch = shape = SHAPES["quick" if quick else "full"]
    with tempfile.TemporaryDirectory(prefix="expconf-bench-fsdp-") as tmp:
        fsdp = _run("fsdp", shape, repeats, tmp)
        ddp = _run("ddp", shape, 1, tmp)
    # The slower rank decides when a save is over.
    slowest = {k: [max(r[k][i] for r in fsdp) for i in range(repeats)] for k in ("sharded", "full", "stall", "sync")}
    peak_fsdp = [max(r["peak_mb"] for r in fsdp)]
    peak_ddp = [max(r["peak_mb"] for r in ddp)]
    note = f"2 gloo ranks, {_sizes(layers, width)}; micro-batch {batch}x{SEQ}"
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
            note=note
            + "; both include taking the state dicts; stall = DCP staging a copy into buffers reused across saves",
        ),
        ratio_row(
            TOPIC,
            "peak memory per rank: FSDP / DDP (same model)",
            peak_fsdp,
            peak_ddp,
            0.6,
            unit="MB",
            note=note
            + "; peak RSS (building or initialising shards, then 2 steps; gradients freed after each step, as the"
            " GPT recipe does) above the RSS before building",
        ),
    ]
