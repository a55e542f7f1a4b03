"""Hydra discovers sweepers in the ``hydra_plugins`` namespace: this registers tabxfer's Optuna sweeper as
``hydra/sweeper=tabxfer_optuna`` (the code lives in :mod:`tabxfer.sweep.sweeper`)."""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from tabxfer.sweep.sweeper import OptunaSweeper


class TabxferOptunaSweeper(OptunaSweeper):
    """Hydra only loads plugin classes defined under ``hydra_plugins``."""


@dataclass
class TabxferOptunaSweeperConf:
    _target_: str = "hydra_plugins.tabxfer_sweeper.TabxferOptunaSweeper"
    _recursive_: bool = False  # sampler/pruner are built per worker (seed + worker index)
    study_name: str = "${hydra.runtime.choices.model}"
    storage: Any = None  # null: sqlite:///<sweep dir>/optuna.db
    direction: str = "minimize"
    n_trials: int = 20  # finished (complete + pruned) trials the study should have
    n_workers: int = 1
    sampler: Any = field(
        default_factory=lambda: {
            "_target_": "optuna.samplers.TPESampler",
            "seed": "${seed}",
            "n_startup_trials": 5,
            "multivariate": True,
        }
    )
    pruner: Any = field(
        default_factory=lambda: {
            "_target_": "optuna.pruners.MedianPruner",
            "n_startup_trials": 4,
            "n_warmup_steps": 1,
        }
    )
    prune: bool = True
    max_failures: int = 3
    params: Any = field(default_factory=dict)
    export_best: Any = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="tabxfer_optuna", node=TabxferOptunaSweeperConf, provider="tabxfer"
)

__all__ = ["TabxferOptunaSweeper", "TabxferOptunaSweeperConf"]
