"""``python -m bench.bare_hydra``: load conf/config.yaml with plain Hydra and print it as YAML."""

import hydra
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """Print the composed config, as ``--cfg job`` does."""
    print(OmegaConf.to_yaml(cfg))


if __name__ == "__main__":
    main()
