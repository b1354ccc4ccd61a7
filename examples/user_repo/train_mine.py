"""The user's own ``@hydra.main``: compose with expconf's schema, validate, and run expconf's builder."""

from __future__ import annotations

from typing import Any

import hydra
import my_models  # noqa: F401  (registers model/wide_schema in the ConfigStore)
from omegaconf import OmegaConf

from expconf import targets
from expconf.config.store import register_all

register_all()
targets.allow("my_models.WideGPT", "my_models.WideGPTConfig")


@hydra.main(version_base="1.3", config_path="conf", config_name="mine")
def main(cfg: Any) -> None:
    """Validate the composed config into expconf's dataclasses and train."""
    from expconf.build import run
    from expconf.train import to_root

    root = to_root(cfg)
    result = run(root, task_config=OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    print(result.summary(), flush=True)


if __name__ == "__main__":
    main()
