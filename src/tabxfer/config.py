"""OmegaConf resolvers that tabxfer's configs use; registered on import of :mod:`tabxfer.train`."""

from __future__ import annotations

from omegaconf import OmegaConf


def monitor_for(supervised_weight: float) -> str:
    """The metric that checkpoints and early stopping follow: ``val/rmsle`` when the run learns the
    duration, else (self-supervised pretraining) the validation objective ``val/loss``.

    >>> monitor_for(1.0), monitor_for(0.0)
    ('val/rmsle', 'val/loss')
    """
    return "val/rmsle" if float(supervised_weight) > 0 else "val/loss"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("tabxfer.monitor"):
        OmegaConf.register_new_resolver("tabxfer.monitor", monitor_for)
