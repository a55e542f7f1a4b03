"""Train a model: ``python train.py model=tabnet`` (any Hydra override; see configs/train.yaml)."""

import hydra
from omegaconf import DictConfig

from tabxfer.train import run


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)["monitor_value"]  # val/rmsle (val/loss when pretraining without labels), for sweepers


if __name__ == "__main__":
    main()
