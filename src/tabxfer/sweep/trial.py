"""The Optuna trial a training run belongs to, when a sweep launched it in this process.

tabxfer's sweeper runs each trial as a normal ``train.py`` job in the worker's process (Hydra's basic
launcher), so the run reaches its trial through :func:`active` instead of through the config: the trial
object (and the storage URL, which may hold a password) never enters a saved config.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import optuna


@dataclass(frozen=True)
class ActiveTrial:
    trial: optuna.Trial
    study_name: str
    prune: bool  # report val metrics and stop the run when the pruner says so

    @property
    def number(self) -> int:
        return self.trial.number


_ACTIVE: ActiveTrial | None = None


def active() -> ActiveTrial | None:
    """The trial of the run in progress (``None`` outside a sweep)."""
    return _ACTIVE


@contextmanager
def activate(trial: optuna.Trial, study_name: str, *, prune: bool = True) -> Iterator[ActiveTrial]:
    global _ACTIVE
    if _ACTIVE is not None:
        raise RuntimeError(f"trial {_ACTIVE.number} of {_ACTIVE.study_name!r} is already running here")
    _ACTIVE = ActiveTrial(trial, study_name, prune)
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = None
