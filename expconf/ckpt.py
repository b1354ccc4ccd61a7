"""``python -m expconf.ckpt consolidate|shard``: sharded checkpoint folders <-> single-file checkpoints.

``consolidate FOLDER FILE`` assembles the shards of every rank into one ``torch.save`` file in the
format of a DDP or single-process checkpoint (plain tensors, optimizer state keyed by parameter
index): it resumes under any strategy, ``resume.import_path`` reads its weights, and
``expconf.checkpoint.archive`` can turn it into a model archive for ``expconf.load_model``.
``shard FILE FOLDER`` does the reverse; an FSDP run on any number of ranks resumes from the folder.
Both run in one process, without a process group, and write their output only if it does not exist.
Paths may be local or fsspec URLs (``s3://...``; credentials from the environment).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from expconf.checkpoint.io import split
from expconf.checkpoint.writer import torch_save_to
from expconf.distributed.fsdp import optimizer_state_by_id
from expconf.sharded_ckpt import META_FILE, dcp_reader, dcp_writer, shard_state
from expconf.storage import Storage


def read_sharded(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A sharded folder as one Lightning checkpoint dict with full tensors."""
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    options = dict(storage_options or {})
    state: dict[str, Any] = {}
    # What torch.distributed.checkpoint.format_utils.dcp_to_torch_save does, for any fsspec URL.
    _load_state_dict(state, storage_reader=dcp_reader(url, options), planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    with Storage(url, options).open_read(META_FILE) as f:
        checkpoint: dict[str, Any] = torch.load(f, map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = state.pop("state_dict")
    optimizers = []
    for i in range(len([k for k in state if k.startswith("optimizer_")])):
        opt = state.pop(f"optimizer_{i}")
        names = [n for g in opt["param_groups"] for n in g["params"]]
        by_name = all(isinstance(n, str) for n in names)
        if by_name:
            opt = optimizer_state_by_id(opt, names)
        else:  # saved by index: DCP gives the keys back as strings
            opt["state"] = {int(k): v for k, v in opt["state"].items()}
        optimizers.append(opt)
    checkpoint["optimizer_states"] = optimizers
    return checkpoint


def consolidate(src: str, dst: str, storage_options: dict[str, Any] | None = None) -> None:
    """Sharded folder ``src`` -> single file ``dst``."""
    checkpoint = read_sharded(src, storage_options)
    folder, name = split(dst)
    Storage(folder, storage_options).write_atomic(name, torch_save_to(checkpoint))


def shard(src: str, dst: str, storage_options: dict[str, Any] | None = None) -> None:
    """Single file ``src`` -> sharded folder ``dst`` (one shard: any world size reshards it on load)."""
    import torch.distributed.checkpoint as dcp

    folder, name = split(src)
    with Storage(folder, storage_options).open_read(name) as f:
        checkpoint: dict[str, Any] = torch.load(f, map_location="cpu", weights_only=True)
    shards = shard_state(checkpoint)
    dcp.save(shards, storage_writer=dcp_writer(dst, dict(storage_options or {})), no_dist=True)
    Storage(dst, storage_options).write_atomic(META_FILE, torch_save_to(checkpoint))


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m expconf.ckpt", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd, what in (("consolidate", "sharded folder -> single file"), ("shard", "single file -> sharded folder")):
        p = sub.add_parser(cmd, help=what)
        p.add_argument("src")
        p.add_argument("dst")
    args = parser.parse_args(argv)
    src_folder, src_name = split(args.src)
    dst_folder, dst_name = split(args.dst)
    source, target = Storage(src_folder), Storage(dst_folder)
    if not source.exists(src_name):
        print(f"error: {args.command}: src={args.src}: no such checkpoint", file=sys.stderr)
        return 2
    if target.exists(dst_name):
        print(f"error: {args.command}: dst={args.dst}: already exists (expconf does not overwrite it)", file=sys.stderr)
        return 2
    from expconf.sharded_ckpt import is_sharded

    sharded = is_sharded(source, src_name)
    if sharded != (args.command == "consolidate"):
        expected = "a sharded checkpoint folder" if args.command == "consolidate" else "a single-file checkpoint"
        print(f"error: {args.command}: src={args.src}: expected {expected}", file=sys.stderr)
        return 2
    (consolidate if sharded else shard)(args.src, args.dst)
    print(f"wrote {args.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
