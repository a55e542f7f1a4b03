"""Build the tensor cache of a dataset: ``python prepare_data.py data=nyc_kaggle`` (see configs/prepare.yaml)."""

import hydra
from omegaconf import DictConfig

from tabxfer.prepare import run


@hydra.main(version_base="1.3", config_path="configs", config_name="prepare")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
