"""Every config group composes, and what can be instantiated on a CPU machine is instantiated."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_configs(trainer, tmp_path):
    c = cfg(f"trainer={trainer}", f"paths.output_dir={tmp_path}")
    assert c.trainer._target_ == "pytorch_lightning.Trainer"
    if c.trainer.accelerator == "cpu":
        hydra.utils.instantiate(c.trainer)  # GPU configs are checked on a GPU machine


@pytest.mark.parametrize("logger", options("logger"))
def test_logger_configs(logger, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    c = cfg(f"logger={logger}", f"paths.output_dir={tmp_path}")
    HydraConfig.instance().set_config(c)  # the W&B run name reads ${hydra:runtime.choices.model}
    for node in (c.logger or {}).values():
        if node.get("offline") is False:
            continue  # wandb_online needs an account and a network
        lg = hydra.utils.instantiate(node)
        assert lg is not None


@pytest.mark.parametrize("group", ["callbacks", "debug", "experiment"])
def test_other_groups_compose(group, tmp_path):
    for name in options(group):
        c = cfg(f"{group}={name}", f"paths.output_dir={tmp_path}")
        for node in (c.get("callbacks") or {}).values():
            hydra.utils.instantiate(node)


@pytest.mark.parametrize("model", options("model"))
def test_model_configs_name_real_classes(model):
    c = cfg(f"model={model}")
    hydra.utils.get_class(c.model._target_)
