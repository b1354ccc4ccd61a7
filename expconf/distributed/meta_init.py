"""``trainer.fsdp.meta_init``: build a model for FSDP without building it whole on every rank.

:func:`build_deferred` runs a model's constructor with every ``torch.empty`` tensor on the meta
device (the allocation ``nn.Linear``, ``nn.Embedding``, norms and convolutions make for their
parameters) and records each in-place initialisation of such a tensor (``nn.init.*``,
``Tensor.normal_``, ``fill_``, ...) together with the state of the random generator it draws from.
Each recorded op also runs once on a scratch CPU tensor of the same layout, so the generator
advances exactly as in a normal build and whatever is drawn afterwards (data order, dropout) is
unchanged.

Once the model is sharded, :meth:`DeferredInit.materialize` allocates the local shards only and
replays the recorded ops of each tensor on one full CPU tensor, from the recorded generator
states, keeping the local part: the values are those of a normal build with the same seed, bit
for bit, and at most one full tensor exists at a time.

A constructor that computes a parameter from another tensor (``copy_``, arithmetic with a tensor,
a tensor made out of place) cannot be replayed that way: :func:`build_deferred` names the
parameter, and ``trainer.fsdp.meta_init=false`` builds the whole model as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

T = TypeVar("T", bound=nn.Module)

#: In-place methods that leave a tensor's values alone.
_NOT_WRITES = frozenset({"requires_grad_", "share_memory_"})
#: In-place operators (``p += 1``, ``p[0] = 1``).
_INPLACE_DUNDERS = frozenset(
    f"__i{op}__"
    for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor", "lshift", "rshift")
) | {"__setitem__"}
#: ``torch.nn.init`` functions that do nothing to a meta tensor (``if tensor.is_meta: return``)
#: instead of being dispatched to the recorder as one op.
_META_SKIPPING = ("_no_grad_trunc_normal_", "dirac_", "orthogonal_", "sparse_")
#: Stands for the written tensor in a recorded op's arguments.
_TARGET = object()

View = tuple[tuple[int, ...], tuple[int, ...], int]  # size, stride, storage offset


class CannotDefer(ValueError):
    """The model cannot be built on the meta device and initialised later (the message says why)."""


@dataclass
class _Op:
    """One recorded in-place op: replayed with the generator set to ``rng``."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    view: View
    generator: torch.Generator
    rng: torch.Tensor


@dataclass
class _Storage:
    """The history of one meta storage (a parameter and its views)."""

    dtype: torch.dtype
    numel: int
    ops: list[_Op] = field(default_factory=list)
    broken: str = ""  # why it cannot be replayed

    def replay(self) -> torch.Tensor:
        """The storage's final values, as a flat CPU tensor."""
        flat = torch.empty(self.numel, dtype=self.dtype)
        for op in self.ops:
            _run(op, flat)
        return flat


def _run(op: _Op, flat: torch.Tensor) -> None:
    target = flat.as_strided(*op.view)
    args, kwargs = tree_map(lambda a: target if a is _TARGET else a, (op.args, op.kwargs))
    op.generator.set_state(op.rng)
    with torch.no_grad():
        op.func(*args, **kwargs)


def _key(t: torch.Tensor) -> int:
    return int(t.untyped_storage()._cdata)


def _writes(name: str, kwargs: dict[str, Any]) -> bool:
    if "out" in kwargs:
        return True
    return name in _INPLACE_DUNDERS or (name.endswith("_") and not name.endswith("__") and name not in _NOT_WRITES)


def _dispatching(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` seen by torch function modes as one op (as most of ``torch.nn.init`` already is)."""

    @functools.wraps(fn)
    def op(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if torch.overrides.has_torch_function_variadic(tensor):
            return torch.overrides.handle_torch_function(op, (tensor,), tensor, *args, **kwargs)
        return fn(tensor, *args, **kwargs)

    return op


@contextmanager
def _init_functions_as_ops() -> Iterator[None]:
    """``torch.nn.init`` functions that return early on a meta tensor, made visible to the recorder."""
    from torch.nn import init

    saved = {name: getattr(init, name) for name in _META_SKIPPING if hasattr(init, name)}
    try:
        for name, fn in saved.items():
            setattr(init, name, _dispatching(fn))
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


class _Recorder(TorchFunctionMode):
    """Puts ``torch.empty`` on the meta device and records what writes to meta tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.storages: dict[int, _Storage] = {}
        self._alive: list[torch.Tensor] = []  # recorded storages stay allocated, so their keys stay unique

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func is torch.empty:
            return func(*args, **{**kwargs, "device": "meta"})
        if getattr(func, "__self__", None) is torch.Tensor.is_meta and args[0].is_meta:
            # Code that asks may skip the tensor, and what it skips cannot be recorded.
            self._storage(args[0]).broken = "its initialisation asks Tensor.is_meta"
        leaves = tree_flatten((args, kwargs))[0]
        tensors = [a for a in leaves if isinstance(a, torch.Tensor)]
        if any(t.is_meta for t in tensors) and _writes(getattr(func, "__name__", ""), kwargs):
            self._record(func, args, kwargs, tensors, leaves)
        return func(*args, **kwargs)

    def _storage(self, t: torch.Tensor) -> _Storage:
        key = _key(t)
        if key not in self.storages:
            self.storages[key] = _Storage(t.dtype, t.untyped_storage().nbytes() // max(t.element_size(), 1))
            self._alive.append(t)
        return self.storages[key]

    def _record(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        tensors: list[torch.Tensor],
        leaves: list[Any],
    ) -> None:
        out = kwargs.get("out")
        target = out if isinstance(out, torch.Tensor) else tensors[0]
        if not target.is_meta:
            return  # a real tensor computed from a meta one: never a parameter's value
        storage = self._storage(target)
        name = getattr(func, "__name__", repr(func))
        generators = [g for g in leaves if isinstance(g, torch.Generator)]
        generator = generators[0] if generators else torch.default_generator
        if out is not None or any(t is not target for t in tensors):
            storage.broken = storage.broken or f"{name} writes it from another tensor"
        elif target.dtype != storage.dtype:
            storage.broken = storage.broken or f"{name} writes it through a view of another dtype"
        elif generator.device.type != "cpu":
            storage.broken = storage.broken or f"{name} draws from a {generator.device.type} generator"
        if storage.broken:
            return
        op_args, op_kwargs = tree_map(lambda a: _TARGET if a is target else a, (args, kwargs))
        view = (tuple(target.size()), tuple(target.stride()), int(target.storage_offset()))
        op = _Op(func, op_args, op_kwargs, view, generator, generator.get_state())
        _run(op, torch.empty(storage.numel, dtype=storage.dtype))  # the generator moves on as in a normal build
        storage.ops.append(op)


def _tensors(module: nn.Module, remove_duplicate: bool) -> Iterator[tuple[str, torch.Tensor]]:
    yield from module.named_parameters(remove_duplicate=remove_duplicate)
    yield from module.named_buffers(remove_duplicate=remove_duplicate)


def _shared_parameters(module: nn.Module) -> list[list[tuple[nn.Module, str]]]:
    """``(module, attribute)`` of each parameter held by more than one module (tied weights), first holder first."""
    holders: dict[int, list[tuple[nn.Module, str]]] = {}
    for _, sub in module.named_modules(remove_duplicate=False):
        for attr, p in sub._parameters.items():
            if p is not None:
                holders.setdefault(id(p), []).append((sub, attr))
    return [h for h in holders.values() if len(h) > 1]


class DeferredInit:
    """How to initialise each meta parameter and buffer of a module built by :func:`build_deferred`."""

    def __init__(self, module: nn.Module, recorder: _Recorder) -> None:
        self._plan: dict[str, tuple[_Storage, View]] = {}
        problems = []
        for name, t in _tensors(module, remove_duplicate=False):
            if not t.is_meta:
                continue
            storage = recorder.storages.get(_key(t))
            if storage is None or storage.broken:
                problems.append(f"{name} ({storage.broken if storage else 'not initialised in place'})")
                continue
            self._plan[name] = (storage, (tuple(t.size()), tuple(t.stride()), int(t.storage_offset())))
        if problems:
            raise CannotDefer(f"cannot build {type(module).__name__} on the meta device: {', '.join(problems[:3])}")

    def materialize(self, module: nn.Module, device: torch.device, clean: Callable[[str], str] = str) -> None:
        """Allocate ``module``'s (sharded) tensors on ``device`` and give them their recorded values.

        ``clean`` maps a name of the sharded module to the name it had when built (wrappers such as
        activation checkpointing add segments). Tensors built for real keep their values; the random
        generators end in the state they were in.
        """
        from torch.distributed.tensor import DTensor, distribute_tensor

        def local(t: torch.Tensor) -> torch.Tensor:
            return t.to_local() if isinstance(t, DTensor) else t

        # Aliases of the old storage: to_empty may swap new storage into the same tensor objects.
        built = {name: local(t).detach() for name, t in _tensors(module, remove_duplicate=True) if not t.is_meta}
        generators = {id(op.generator): op.generator for s, _ in self._plan.values() for op in s.ops}
        states = {k: g.get_state() for k, g in generators.items()}
        ties = _shared_parameters(module)
        module.to_empty(device=device)
        for (owner, attr), *others in ties:  # to_empty gives each module a parameter of its own
            for other, other_attr in others:
                setattr(other, other_attr, getattr(owner, attr))
        with torch.no_grad():
            for name, t in _tensors(module, remove_duplicate=True):
                if name in built:
                    local(t).copy_(built[name])
                    continue
                storage, view = self._plan[clean(name)]
                full = storage.replay().as_strided(*view)
                if isinstance(t, DTensor):  # this rank's part, cut locally (no collective)
                    full = distribute_tensor(full, t.device_mesh, t.placements, src_data_rank=None).to_local()
                local(t).copy_(full)
        for k, g in generators.items():
            g.set_state(states[k])


def build_deferred(build: Callable[[], T]) -> tuple[T, DeferredInit]:
    """``build()`` with its ``torch.empty`` tensors on the meta device, and how to initialise them later.

    Raises :class:`CannotDefer` naming a parameter whose initialisation cannot be replayed, or when
    the constructor needs the values of a meta tensor (``.item()``, copying one out).
    """
    recorder = _Recorder()
    try:
        with _init_functions_as_ops(), recorder:
            module = build()
    except (RuntimeError, NotImplementedError) as e:
        if "meta" not in str(e):
            raise
        raise CannotDefer(f"building the model on the meta device failed: {e}") from e
    return module, DeferredInit(module, recorder)
