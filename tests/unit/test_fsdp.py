"""expconf.distributed.fsdp: which modules are sharded, mixed precision and activation checkpointing, optimizer-state keys.

Sharding runs in this process on a one-rank gloo group (``fully_shard`` needs a process group).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from expconf.checkpoint.meta import CheckpointMeta, verify
from expconf.config.fsdp import FSDPConfig
from expconf.config.model import GPTModelConfig
from expconf.distributed.fsdp import (
    find_blocks,
    optimizer_state_by_id,
    optimizer_state_by_name,
    param_names,
    shard_module,
)
from expconf.errors import ConfigError
from expconf.recipes.gpt_model import GPT, Block


class Wrapper(nn.Module):
    """Holds the GPT as a child, like the recipe's LightningModule."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.model = GPT(GPTModelConfig(n_layer=2, n_head=2, n_embd=32, dropout=0.0), 64, 16)


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[object]:
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yield init_device_mesh("cpu", (1,), mesh_dim_names=("data_parallel",))
    finally:
        dist.destroy_process_group()


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 64, (4, 16), generator=g)
    return x, torch.roll(x, -1, dims=1)


def test_blocks_are_module_list_members_or_the_named_class() -> None:
    w = Wrapper()
    default = find_blocks(w, None)
    assert [type(b) for _, _, b in default] == [Block, Block]
    assert [name for _, name, _ in default] == ["0", "1"]
    assert [b for _, _, b in find_blocks(w, "Block")] == [b for _, _, b in default]
    assert find_blocks(w, "LayerNorm")[0][1] == "ln1"  # the first LayerNorm, inside block 0
    assert find_blocks(w, "NoSuchBlock") == []


def test_shard_bf16_with_activation_checkpointing(mesh: object) -> None:
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    plain = Wrapper()
    x, y = batch()
    want = plain.model(x, y)
    sharded = copy.deepcopy(plain)
    cfg = FSDPConfig(param_dtype="bf16", reduce_dtype="fp32", activation_checkpointing=True)
    assert shard_module(sharded, mesh, cfg) == 2
    blocks = sharded.model.blocks
    assert all(isinstance(b, CheckpointWrapper) and isinstance(b, FSDPModule) for b in blocks)
    assert isinstance(sharded.model, FSDPModule)
    assert all(isinstance(p, DTensor) and p.dtype == torch.float32 for p in sharded.parameters())
    got = sharded.model(x, y)
    # Computed in bf16: close to the fp32 loss, and not equal to it (the policy is in force).
    assert got.item() == pytest.approx(want.item(), rel=2e-2) and got.item() != want.item()
    got.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in sharded.parameters())
    names = {n for n, _ in sharded.named_parameters()}
    assert "model.blocks.0._checkpoint_wrapped_module.attn.qkv.weight" in names


def test_shard_fp32_matches_the_plain_model(mesh: object) -> None:
    plain = Wrapper()
    x, y = batch()
    sharded = copy.deepcopy(plain)
    shard_module(sharded, mesh, FSDPConfig())
    # One rank, fp32: the same ops on the same numbers, so the loss is the same to the last bit.
    assert torch.equal(sharded.model(x, y), plain.model(x, y))


def test_refuses_what_it_cannot_shard(mesh: object) -> None:
    w = Wrapper()
    with pytest.raises(ValueError, match=r"trainer.fsdp.block_class=Layer: no module of class 'Layer'"):
        shard_module(w, mesh, FSDPConfig(block_class="Layer"))
    w.scale = nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError, match=r"move the parameters \['scale'\] of Wrapper into a child module"):
        shard_module(w, mesh, FSDPConfig())


def test_optimizer_state_keys_round_trip() -> None:
    w = Wrapper()
    opt = torch.optim.AdamW([{"params": list(w.model.blocks.parameters())}, {"params": [w.model.wte.weight]}])
    w.model(*batch()).backward()
    opt.step()
    by_id = opt.state_dict()
    names = param_names(w, opt)
    assert names[0] == "model.blocks.0.ln1.weight" and names[-1] == "model.wte.weight"
    by_name = optimizer_state_by_name(by_id, names)
    assert by_name["param_groups"][1]["params"] == ["model.wte.weight"]
    assert torch.equal(by_name["state"]["model.wte.weight"]["exp_avg"], by_id["state"][len(names) - 1]["exp_avg"])
    assert optimizer_state_by_name(by_name, names) is by_name
    back = optimizer_state_by_id(by_name, names)
    assert back["param_groups"] == by_id["param_groups"] and back["state"].keys() == by_id["state"].keys()


def test_config_rejects_unknown_dtype() -> None:
    with pytest.raises(ConfigError, match=r"trainer\.fsdp\.param_dtype"):
        FSDPConfig(param_dtype="float8").validate()


class OneRank:
    """The one strategy method ShardedCheckpoints uses, for a single process."""

    @staticmethod
    def broadcast(obj: object) -> object:
        return obj


@pytest.mark.parametrize("async_save", [False, True], ids=["sync", "async"])
def test_sharded_folder_round_trip(mesh: object, tmp_path: Path, async_save: bool) -> None:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    from expconf.sharded_ckpt import META_FILE, ShardedCheckpoints, is_sharded, load_sharded, shard_state
    from expconf.storage import Storage

    def trained() -> tuple[Wrapper, torch.optim.Optimizer]:
        w = Wrapper()
        shard_module(w, mesh, FSDPConfig())
        return w, torch.optim.AdamW(w.parameters(), lr=1e-2)

    w, opt = trained()
    w.model(*batch()).backward()
    opt.step()
    checkpoint = {
        "state_dict": get_model_state_dict(w),
        "optimizer_states": [get_optimizer_state_dict(w, opt)],
        "global_step": 1,
    }
    shards = shard_state(checkpoint)
    assert checkpoint == {"global_step": 1} and set(shards) == {"state_dict", "optimizer_0"}
    saver = ShardedCheckpoints(async_save=async_save)
    saver.setup()
    plan = saver.plan("x")
    storage = Storage(tmp_path)
    meta = CheckpointMeta(name="x.ckpt", global_step=1, epoch=0, kind="last")
    plan.write(storage, "x.ckpt", checkpoint, meta)
    plan.copy(storage, "x.ckpt", "x-last.ckpt", meta)
    saver.write(OneRank(), plan, storage.url, shards)
    for step in plan.steps:  # what the writer runs on rank 0: wait, metadata, marker, copy
        step()
    saver.wait()
    assert is_sharded(storage, "x.ckpt") and is_sharded(storage, "x-last.ckpt")
    assert sorted(p.name for p in (tmp_path / "x-last.ckpt").iterdir()) == [".metadata", "__0_0.distcp", META_FILE]
    for name in ("x.ckpt", "x-last.ckpt"):  # each marker records the size of every file of its folder
        marker = CheckpointMeta.from_json((tmp_path / f"{name}.meta.json").read_bytes())
        assert marker.files == {p.name: p.stat().st_size for p in (tmp_path / name).iterdir()}
        assert verify(storage, marker) is None

    fresh, fresh_opt = trained()
    rest = load_sharded(str(tmp_path / "x-last.ckpt"), fresh, [fresh_opt])
    assert rest == {"global_step": 1}
    x, y = batch()
    assert torch.equal(fresh.model(x, y), w.model(x, y))  # the saved weights, exactly
    a, b = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg_sq"].full_tensor(), b[i]["exp_avg_sq"].full_tensor()) for i in a)


def test_a_folder_is_claimed_before_any_shard_is_written(
    mesh: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 0 marks each folder unfinished before the ranks write; a folder cut off after that (no
    marker) is expconf's and removed at the next start, while a DCP folder another tool wrote, or
    ``python -m expconf.ckpt shard`` (a folder with expconf's META_FILE but never unfinished), stays."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    from expconf.checkpoint.meta import META_FILE, UNFINISHED_FILE, scan
    from expconf.sharded_ckpt import ShardedCheckpoints
    from expconf.storage import Storage

    w = Wrapper()
    shard_module(w, mesh, FSDPConfig())
    seen: list[list[str]] = []
    real_save = dcp.save

    def save(state: dict[str, object], storage_writer: object) -> object:
        seen.append(sorted(p.name for p in (tmp_path / "x.ckpt").iterdir()))
        return real_save(state, storage_writer=storage_writer)

    monkeypatch.setattr(dcp, "save", save)
    saver = ShardedCheckpoints()
    plan = saver.plan("x")
    storage = Storage(tmp_path)
    plan.write(
        storage, "x.ckpt", {"global_step": 1}, CheckpointMeta(name="x.ckpt", global_step=1, epoch=0, kind="last")
    )
    saver.write(OneRank(), plan, storage.url, {"state_dict": get_model_state_dict(w)})  # the plan's steps never run
    assert seen == [[UNFINISHED_FILE]]
    for other, inside in (("lightning.ckpt", ".metadata"), ("converted-last.ckpt", META_FILE)):
        (tmp_path / other).mkdir()
        (tmp_path / other / inside).write_bytes(b"data")
    listing = scan(storage)
    assert listing.removable == ["x.ckpt"]
    assert {"lightning.ckpt", "converted-last.ckpt"} <= set(listing.incomplete)


def test_async_saves_reuse_their_staging_buffers(mesh: object, tmp_path: Path) -> None:
    """Two async saves with a step between: one set of staging buffers, and each folder holds its own step."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    from expconf.sharded_ckpt import ShardedCheckpoints, load_sharded, shard_state
    from expconf.storage import Storage

    w = Wrapper()
    shard_module(w, mesh, FSDPConfig())
    opt = torch.optim.AdamW(w.parameters(), lr=1e-2)
    saver = ShardedCheckpoints(async_save=True)
    saver.setup()
    storage = Storage(tmp_path)
    x, y = batch()
    losses, buffers = [], []
    for step in (1, 2):
        w.model(x, y).backward()
        opt.step()
        losses.append(w.model(x, y))
        checkpoint = {"state_dict": get_model_state_dict(w), "optimizer_states": [get_optimizer_state_dict(w, opt)]}
        plan = saver.plan("x")
        plan.write(
            storage,
            f"s{step}.ckpt",
            checkpoint,
            CheckpointMeta(name=f"s{step}.ckpt", global_step=step, epoch=0, kind="last"),
        )
        saver.write(OneRank(), plan, storage.url, shard_state(checkpoint))
        for run in plan.steps:
            run()
        assert saver._stager is not None
        buffers.append(saver._stager._buffers)
    saver.wait()
    assert buffers[0] is buffers[1]
    for step, loss in zip((1, 2), losses, strict=True):
        fresh = Wrapper()
        shard_module(fresh, mesh, FSDPConfig())
        load_sharded(str(tmp_path / f"s{step}.ckpt"), fresh, [torch.optim.AdamW(fresh.parameters(), lr=1e-2)])
        assert torch.equal(fresh.model(x, y), loss)  # same weights, same ops: the same loss to the bit


def test_consolidate_and_shard_round_trip(mesh: object, tmp_path: Path) -> None:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    from expconf.ckpt import main
    from expconf.sharded_ckpt import ShardedCheckpoints, load_sharded, shard_state
    from expconf.storage import Storage

    w = Wrapper()
    shard_module(w, mesh, FSDPConfig())
    opt = torch.optim.AdamW(w.parameters(), lr=1e-2)
    w.model(*batch()).backward()
    opt.step()
    checkpoint = {
        "state_dict": get_model_state_dict(w),
        "optimizer_states": [get_optimizer_state_dict(w, opt)],
        "global_step": 1,
    }
    shards = shard_state(checkpoint)
    saver = ShardedCheckpoints()
    plan = saver.plan("x")
    plan.write(
        Storage(tmp_path), "run.ckpt", checkpoint, CheckpointMeta(name="run.ckpt", global_step=1, epoch=0, kind="last")
    )
    saver.write(OneRank(), plan, str(tmp_path), shards)
    for step in plan.steps:
        step()

    assert main(["consolidate", str(tmp_path / "run.ckpt"), str(tmp_path / "one.ckpt")]) == 0
    one = torch.load(tmp_path / "one.ckpt", map_location="cpu", weights_only=True)
    plain = Wrapper().state_dict()
    assert one["global_step"] == 1 and one["state_dict"].keys() == plain.keys()
    full = {k: v.full_tensor() for k, v in w.state_dict().items()}
    assert all(torch.equal(one["state_dict"][k], full[k]) for k in plain)
    [optim] = one["optimizer_states"]
    assert sorted(optim["state"]) == list(range(len(list(w.parameters()))))  # keyed by index, like DDP's

    assert main(["shard", str(tmp_path / "one.ckpt"), str(tmp_path / "again.ckpt")]) == 0
    fresh = Wrapper()
    torch.manual_seed(5)
    for p in fresh.parameters():
        torch.nn.init.normal_(p)
    shard_module(fresh, mesh, FSDPConfig())
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    assert load_sharded(str(tmp_path / "again.ckpt"), fresh, [fresh_opt]) == {"global_step": 1}
    x, y = batch()
    assert torch.equal(fresh.model(x, y), w.model(x, y))
    a, b = opt.state_dict()["state"], fresh_opt.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg"].full_tensor(), b[i]["exp_avg"].full_tensor()) for i in a)


def test_ckpt_cli_refuses_bad_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from expconf.ckpt import main

    (tmp_path / "file.ckpt").write_bytes(b"x")
    (tmp_path / "folder.ckpt").mkdir()
    assert main(["consolidate", str(tmp_path / "nope"), str(tmp_path / "out.ckpt")]) == 2
    assert "src=" in capsys.readouterr().err
    assert main(["consolidate", str(tmp_path / "file.ckpt"), str(tmp_path / "out.ckpt")]) == 2
    assert "expected a sharded checkpoint folder" in capsys.readouterr().err
    assert main(["shard", str(tmp_path / "folder.ckpt"), str(tmp_path / "out.ckpt")]) == 2
    assert "expected a single-file checkpoint" in capsys.readouterr().err
    assert main(["shard", str(tmp_path / "file.ckpt"), str(tmp_path / "folder.ckpt")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "file.ckpt").read_bytes() == b"x" and list((tmp_path / "folder.ckpt").iterdir()) == []
