"""Optuna pruning from a Lightning run's intermediate validation metric.

Reports ``monitor`` (``val/rmsle``) to the trial after every validation epoch; when the pruner says the
trial is hopeless, the run stops at the end of that epoch (``trainer.should_stop``) rather than raising
inside Lightning's loop, so loggers and checkpoints close normally. :func:`tabxfer.train.run` then writes
``metrics.json`` with ``status: pruned`` and raises :class:`optuna.TrialPruned` for the sweeper.
"""

from __future__ import annotations

import math

import optuna
import pytorch_lightning as L


class OptunaPruning(L.Callback):
    def __init__(self, trial: optuna.Trial, monitor: str = "val/rmsle"):
        self.trial = trial
        self.monitor = monitor
        self.pruned_at: int | None = None  # epoch at which the pruner stopped the run
        self.reported: dict[int, float] = {}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"pruning monitors {self.monitor!r}, which this run does not log "
                f"(logged: {sorted(trainer.callback_metrics)})"
            )
        v = float(value)
        epoch = trainer.current_epoch
        if not math.isfinite(v):  # a diverged run is the clearest case for pruning
            v = float("inf")
        self.trial.report(v, step=epoch)
        self.reported[epoch] = v
        if self.trial.should_prune():
            self.pruned_at = epoch
            trainer.should_stop = True
