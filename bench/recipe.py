"""The GPT recipe's composed config, for the raw loop to train exactly what the CLI trains."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any


def compose_root(overrides: list[str]) -> Any:
    """``python -m expconf.train OVERRIDES`` composed and validated in-process: a RootConfig."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from expconf.cli_args import select_groups
    from expconf.config.store import register_all
    from expconf.train import to_root

    register_all()
    GlobalHydra.instance().clear()
    with initialize_config_module("expconf.conf", version_base="1.3"):
        cfg = compose("expconf", overrides=select_groups(overrides))
    return to_root(cfg)


def raw_job(root: Any, steps: int) -> dict[str, Any]:
    """The JSON job of ``python -m bench.raw_loop`` for the same model, data, optimizer and seed."""
    return {
        "model": asdict(root.model),
        "data": asdict(root.data),
        "optim": asdict(root.optim),
        "steps": steps,
        "seed": root.seed,
        "grad_clip": root.trainer.gradient_clip_val,
    }
