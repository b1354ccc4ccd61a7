"""Self-contained model archives (``.nemo``): safetensors weights plus the model config, no pickle.

An archive is an uncompressed tar with ``model_config.json`` and ``model_weights.safetensors``.
:func:`load_model` rebuilds the module from the config through the target allow-list and
loads the weights with safetensors, so loading never executes code from the file.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import fields, is_dataclass
from typing import Any

import torch

from expconf import targets
from expconf.storage import Storage

CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model_weights.safetensors"


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop tensors that share memory with an earlier one (tied weights); return the aliases."""
    seen: dict[tuple[Any, ...], str] = {}
    out: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for k, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen and t.numel() > 0:
            aliases[k] = seen[key]
            continue
        seen[key] = k
        out[k] = t.detach().contiguous().cpu()
    return out, aliases


def archive_bytes(module: Any, state_dict: dict[str, torch.Tensor]) -> bytes:
    """The archive of ``module`` with weights ``state_dict``, as bytes."""
    from safetensors.torch import save

    cls = type(module)
    config = module.model_config() if hasattr(module, "model_config") else {}
    config = {"target": f"{cls.__module__}.{cls.__qualname__}", **config}
    tensors, aliases = _dedupe(state_dict)
    weights = save(tensors, metadata={"aliases": json.dumps(aliases)})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in ((CONFIG_NAME, json.dumps(config, indent=1).encode()), (WEIGHTS_NAME, weights)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_archive(storage: Storage, name: str, module: Any, state_dict: dict[str, torch.Tensor]) -> None:
    """Write the archive atomically into ``storage``."""
    storage.write_bytes_atomic(name, archive_bytes(module, state_dict))


def read_archive(
    path: str, storage_options: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config and weights inside an archive (weights with tied aliases restored)."""
    from safetensors.torch import load

    folder, _, name = str(path).rpartition("/")
    data = Storage(folder or ".", storage_options).read_bytes(name)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        config_file = tar.extractfile(CONFIG_NAME)
        weights_file = tar.extractfile(WEIGHTS_NAME)
        if config_file is None or weights_file is None:
            raise ValueError(f"{path}: not an expconf model archive (needs {CONFIG_NAME} and {WEIGHTS_NAME})")
        config = json.loads(config_file.read())
        weights = weights_file.read()
    state = load(weights)
    # The alias map lives in the safetensors header's metadata.
    header_len = int.from_bytes(weights[:8], "little")
    meta = json.loads(weights[8 : 8 + header_len]).get("__metadata__", {})
    for alias, source in json.loads(meta.get("aliases", "{}")).items():
        state[alias] = state[source]
    return config, state


def load_model(path: str, storage_options: dict[str, Any] | None = None) -> Any:
    """Rebuild the LightningModule stored in an archive (local path or fsspec URL), without pickle."""
    config, state = read_archive(path, storage_options)
    module_cls = targets.resolve(config["target"], "archive.target")
    if "config_class" in config:
        cfg_cls = targets.resolve(config["config_class"], "archive.config_class")
        known = {f.name for f in fields(cfg_cls)} if is_dataclass(cfg_cls) else set(config["config"])
        cfg = cfg_cls(**{k: v for k, v in config["config"].items() if k in known})
        kwargs = {k: config[k] for k in ("vocab_size", "seq_length") if k in config}
        module = module_cls(cfg, **kwargs)
    else:
        module = module_cls()
    target = getattr(module, "_orig_mod", module)
    target.load_state_dict(state, strict=True)
    return module
