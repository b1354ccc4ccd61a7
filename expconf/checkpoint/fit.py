"""Whether a checkpoint can be loaded into a model, asked before the run dir is touched.

Lightning finds out only inside ``fit``, after the run dir was set up (its ``config.yaml``
rewritten, the previous run's files moved to ``run_<k>/``), and reports it as a long traceback.
:func:`check_fits` reads the checkpoint's top level without loading tensor bytes (a memory map)
and compares parameter names and shapes with the model's, so a mismatch is one line and the run
dir stays as it was.
"""

from __future__ import annotations

import os
from typing import Any

from expconf.errors import ConfigError

#: How many mismatching parameters an error line names.
_SHOWN = 3


def check_fits(key: str, path: str, model: Any, *, training_state: bool = True, message_head: str = "") -> None:
    """Raise :class:`ConfigError` for ``key`` unless local checkpoint file ``path`` is a Lightning
    checkpoint whose weights fit ``model`` (same parameter names and shapes) and, with
    ``training_state``, that holds the optimizer state resuming needs.

    Not checked here (the loader reports them when it reads the checkpoint): checkpoints on an
    object store (checking would download them twice), missing ones, the contents of sharded
    checkpoint folders and model archives, and files whose pickle needs classes that safe loading
    refuses.
    """
    from expconf.config.resume import check_checkpoint_path
    from expconf.storage import is_remote

    local = os.path.expanduser(path.removeprefix("file://"))
    if is_remote(path) or not os.path.exists(local):
        return  # a missing checkpoint is AutoResume's NotFoundError
    check_checkpoint_path(key, path, archive_ok=not training_state)  # what validation checks, for Python callers
    if path.endswith(".nemo") or os.path.isdir(local):
        return
    content = _peek(key, path, local, message_head)
    if content is None:
        return
    if not isinstance(content, dict) or not isinstance(content.get("state_dict"), dict):
        what = type(content).__name__
        _refuse(
            key, path, "a Lightning checkpoint (a mapping with a state_dict)", f"the file holds a {what}", message_head
        )
    if training_state and "optimizer_states" not in content:
        _refuse(
            key,
            path,
            "a checkpoint with the training state",
            "it holds model weights only (save_weights_only); use resume.import_path to start from its weights",
            message_head,
        )
    problem = mismatch(content["state_dict"], model)
    if problem:
        _refuse(key, path, "a checkpoint of this model (saved with the same model.* settings)", problem, message_head)


def mismatch(saved: dict[str, Any], model: Any) -> str:
    """Why the tensors of ``saved`` do not fit ``model``'s state dict, or '' when they do.

    Missing and unexpected names count only for a model that builds every layer in its
    constructor (one that builds them in ``configure_model`` has none yet) and loads strictly.
    """
    import pytorch_lightning as pl

    own = {_plain(k): v for k, v in model.state_dict().items() if hasattr(v, "shape")}
    saved = {_plain(k): v for k, v in saved.items() if hasattr(v, "shape")}
    shapes = [
        f"{k} is {list(v.shape)} there, {list(own[k].shape)} here"
        for k, v in saved.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if shapes:
        return (
            "shapes differ: "
            + "; ".join(shapes[:_SHOWN])
            + (f"; {len(shapes) - _SHOWN} more" if len(shapes) > _SHOWN else "")
        )
    builds_later = type(model).configure_model is not pl.LightningModule.configure_model
    if builds_later or not getattr(model, "strict_loading", True) or not own:
        return ""
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    parts = []
    if missing:
        parts.append(f"{len(missing)} parameters of the model are not in it ({', '.join(missing[:_SHOWN])})")
    if unexpected:
        parts.append(f"it has {len(unexpected)} the model lacks ({', '.join(unexpected[:_SHOWN])})")
    return "; ".join(parts)


def _plain(name: str) -> str:
    """A parameter name without the segment ``torch.compile`` inserts (compiled and not, one model)."""
    return name.replace("_orig_mod.", "")


def _peek(key: str, path: str, local: str, message_head: str) -> Any:
    """The checkpoint's content with tensors memory-mapped; None when safe loading refuses a class
    in it (then the loader decides)."""
    import torch

    try:
        return torch.load(local, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # any unreadable content: not a checkpoint this run can load
        if "Weights only load failed" in str(e) and "Unsupported global" in str(e):
            return None
        why = " ".join(str(e).split())[:200]
        _refuse(
            key, path, "a checkpoint file written by Lightning or expconf", f"it cannot be read: {why}", message_head
        )


def _refuse(key: str, path: str, expected: str, hint: str, message_head: str) -> None:
    message = f"{message_head}{path}: expected {expected} ({hint})" if message_head else None
    raise ConfigError(key, path, expected, hint, message=message)
