"""``trainer.strategy=fsdp``: FSDP2 (``fully_shard`` per transformer block) on CPU (gloo) or CUDA (NCCL).

Lightning's ``FSDPStrategy`` refuses a CPU accelerator and its ``ModelParallelStrategy`` asks the
LightningModule to shard itself in ``configure_model`` and starts ranks by re-running ``sys.argv``.
:class:`ExpconfFSDPStrategy` keeps ``ModelParallelStrategy``'s process group and state-dict plumbing
and changes three things: ranks start like expconf's DDP ranks (:class:`ChildConfigLauncher`), the
model is sharded from ``trainer.fsdp`` (each block, then each top-level child), and checkpoints are
read through expconf's storage, as full-state files or sharded DCP folders.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from pytorch_lightning.strategies import ModelParallelStrategy
from pytorch_lightning.trainer.states import TrainerFn
from torch import nn

from expconf.config.fsdp import FSDPConfig
from expconf.distributed.handoff import JobHandoff

M = TypeVar("M", bound=nn.Module)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Set on a module built by :func:`build_on_meta`: how the strategy initialises its shards.
DEFERRED_ATTR = "_expconf_deferred_init"
#: Name segments that wrappers add to parameter names and state-dict keys leave out.
_WRAPPER_SEGMENTS = ("_checkpoint_wrapped_module.", "_orig_mod.")


def find_blocks(module: nn.Module, block_class: str | None) -> list[tuple[nn.Module, str, nn.Module]]:
    """``(parent, name, block)`` of every block to shard on its own.

    A block is an instance of the class named ``block_class``, or, when that is None, every member of
    an ``nn.ModuleList`` (where transformer layers live); blocks nested in a block are not listed.
    """
    found: list[tuple[nn.Module, str, nn.Module]] = []

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            hit = type(child).__name__ == block_class if block_class else isinstance(parent, nn.ModuleList)
            if hit:
                found.append((parent, name, child))
            else:
                visit(child)

    visit(module)
    return found


def build_on_meta(build: Callable[[], M]) -> M:
    """``build()`` with its parameters on the meta device; :class:`ExpconfFSDPStrategy` initialises
    each rank's shards after sharding, to the values ``build()`` would have given them.

    Raises ConfigError (``trainer.fsdp.meta_init``) for a model whose initialisation cannot be replayed.
    """
    from expconf.distributed.meta_init import CannotDefer, build_deferred
    from expconf.errors import ConfigError

    try:
        module, deferred = build_deferred(build)
    except CannotDefer as e:
        raise ConfigError(
            "trainer.fsdp.meta_init", True, "a model initialised in place", f"{e}; set it to false"
        ) from e
    setattr(module, DEFERRED_ATTR, deferred)
    return module


def shard_module(module: nn.Module, mesh: Any, cfg: FSDPConfig) -> int:
    """Apply ``fully_shard`` to each block (after activation checkpointing) and to each top-level child.

    Returns the number of blocks. Parameters held directly by ``module`` would be neither sharded nor
    reduced, so they are refused.
    """
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    own = [n for n, _ in module.named_parameters(recurse=False)]
    if own:
        raise ValueError(
            f"trainer.strategy=fsdp: move the parameters {own} of {type(module).__name__} into a child module"
        )
    blocks = find_blocks(module, cfg.block_class)
    if not blocks:
        what = f"no module of class {cfg.block_class!r}" if cfg.block_class else "no nn.ModuleList"
        raise ValueError(f"trainer.fsdp.block_class={cfg.block_class}: {what} in {type(module).__name__}")
    param = _DTYPES.get(cfg.param_dtype) if cfg.param_dtype else None
    reduce = _DTYPES.get(cfg.reduce_dtype) if cfg.reduce_dtype else param
    kwargs = {
        "mesh": mesh,
        "mp_policy": MixedPrecisionPolicy(param_dtype=param, reduce_dtype=reduce),
        "reshard_after_forward": cfg.reshard_after_forward,
    }
    for parent, name, block in blocks:
        if cfg.activation_checkpointing:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

            block = checkpoint_wrapper(block)
            parent.register_module(name, block)
        fully_shard(block, **kwargs)
    for child in module.children():
        if any(True for _ in child.parameters()):
            fully_shard(child, **kwargs)
    return len(blocks)


def clean_name(name: str) -> str:
    """A parameter name without the segments wrappers (activation checkpointing, compile) insert."""
    for segment in _WRAPPER_SEGMENTS:
        name = name.replace(segment, "")
    return name


def param_names(module: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The state-dict name of each parameter of ``optimizer``, in the order ``optimizer.state_dict`` numbers them."""
    names = {id(p): clean_name(n) for n, p in module.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def optimizer_state_by_id(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A name-keyed full optimizer state (DCP's) keyed by parameter index, as ``Optimizer.state_dict`` keys it."""
    index = {n: i for i, n in enumerate(names)}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]
    return {"state": {index[n]: v for n, v in state["state"].items()}, "param_groups": groups}


def optimizer_state_by_name(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The inverse of :func:`optimizer_state_by_id`; a name-keyed state passes through."""
    if not state["state"] or not isinstance(next(iter(state["state"])), int):
        if all(isinstance(p, str) for g in state["param_groups"] for p in g["params"]):
            return state
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    return {"state": {names[i]: v for i, v in state["state"].items()}, "param_groups": groups}


class ExpconfFSDPStrategy(ModelParallelStrategy):
    """FSDP2 data parallelism over all ranks, configured by ``trainer.fsdp``."""

    strategy_name = "expconf_fsdp"

    def __init__(self, fsdp: FSDPConfig | None = None, handoff: JobHandoff | None = None) -> None:
        self.fsdp = fsdp or FSDPConfig()
        self.handoff = handoff
        super().__init__(save_distributed_checkpoint=self.fsdp.sharded_checkpoint)

    def _configure_launcher(self) -> None:
        from expconf.distributed.ddp import ChildConfigLauncher

        assert self.cluster_environment is not None
        if not self.cluster_environment.creates_processes_externally:
            self._launcher = ChildConfigLauncher(
                self.cluster_environment, self.num_processes, self.num_nodes, self.handoff
            )

    def setup_environment(self) -> None:
        from torch.distributed.device_mesh import init_device_mesh

        self._setup_distributed()
        self._device_mesh = init_device_mesh(
            self.root_device.type, (self.world_size,), mesh_dim_names=("data_parallel",)
        )
        assert self.lightning_module is not None
        self.lightning_module._device_mesh = self._device_mesh

    def setup(self, trainer: Any) -> None:
        from torch.distributed.fsdp import FSDPModule

        assert self.model is not None and self.accelerator is not None
        self.accelerator.setup(trainer)
        # A LightningModule that sharded itself in configure_model keeps its own plan.
        if not any(isinstance(m, FSDPModule) for m in self.model.modules()):
            shard_module(self.model, self.device_mesh, self.fsdp)
        deferred = self.lightning_module.__dict__.pop(DEFERRED_ATTR, None)
        if deferred is not None:  # built on the meta device: allocate and initialise this rank's shards
            deferred.materialize(self.model, self.root_device, clean_name)
        self.model = self.precision_plugin.convert_module(self.model)
        self.model_to_device()
        self.barrier()
        if trainer.state.fn == TrainerFn.FITTING:
            self.setup_optimizers(trainer)
        self.setup_precision_plugin()

    @property
    def sharded_checkpoint(self) -> bool:
        """Whether checkpoints are sharded DCP folders (read by expconf's ModelCheckpoint)."""
        return bool(self._save_distributed_checkpoint)

    # -- state dicts: full-state (rank 0 holds everything) or sharded (each rank its part) ----------
    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        """Full state: keyed by parameter index like a single-process optimizer (DDP can load it)."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        optimizer = getattr(optimizer, "_optimizer", optimizer)
        assert self.model is not None
        full = not self._save_distributed_checkpoint
        state = get_optimizer_state_dict(
            self.model, optimizer, options=StateDictOptions(full_state_dict=full, cpu_offload=True)
        )
        if full and self.global_rank == 0:
            return optimizer_state_by_id(state, param_names(self.model, optimizer))
        return state

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """Restore model and optimizer from a sharded folder or a full-state file (any world size, DDP's too)."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        from expconf.checkpoint.io import split
        from expconf.checkpoint.writer import wait_all
        from expconf.sharded_ckpt import is_sharded, load_sharded
        from expconf.storage import Storage

        assert self.model is not None and self.lightning_module is not None
        path = self.broadcast(str(checkpoint_path))
        storage_options = dict(getattr(self.checkpoint_io, "storage_options", {}) or {})
        wait_all()  # a save of this process may still be writing what is about to be read
        folder, name = split(path)
        if is_sharded(Storage(folder, storage_options), name):
            return load_sharded(path, self.model, list(self.optimizers), storage_options)
        checkpoint = self.checkpoint_io.load_checkpoint(path)
        strict = self.lightning_module.strict_loading
        options = StateDictOptions(full_state_dict=True, strict=strict)
        set_model_state_dict(self.model, checkpoint.pop("state_dict"), options=options)
        for optimizer, state in zip(self.optimizers, checkpoint.pop("optimizer_states", []), strict=False):
            by_name = optimizer_state_by_name(state, param_names(self.model, optimizer))
            set_optimizer_state_dict(self.model, optimizer, optim_state_dict=by_name, options=options)
        return checkpoint
