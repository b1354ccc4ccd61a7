"""The user's own ``@hydra.main``: compose with expconf's schema and hand the config to ``expconf.run``."""

from __future__ import annotations

from typing import Any

import hydra
import my_models  # noqa: F401  (registers model/wide_schema in the ConfigStore)

import expconf
from expconf import targets
from expconf.config.store import register_all

register_all()
targets.allow("my_models.WideGPT", "my_models.WideGPTConfig")


@hydra.main(version_base="1.3", config_path="conf", config_name="mine")
def main(cfg: Any) -> None:
    """Validate, build and train the composed config: the CLI's path, DDP included."""
    result = expconf.run(cfg)
    print(result.summary(), flush=True)


if __name__ == "__main__":
    main()
