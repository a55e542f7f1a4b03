"""Config helpers: checking a config node against its dataclass, and the OmegaConf resolvers that
tabxfer's configs use (registered on import of :mod:`tabxfer.train`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf


def check_options(cls: Any, cfg: Mapping[str, Any], section: str) -> None:
    """Fail fast, naming the keys, when a config node has keys that dataclass ``cls`` does not.

    >>> @dataclasses.dataclass
    ... class C:
    ...     a: int = 0
    >>> check_options(C, {"b": 1}, "demo")
    Traceback (most recent call last):
    ValueError: unknown demo option(s) ['b']; expected ['a']
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(f"unknown {section} option(s) {sorted(unknown)}; expected {sorted(known)}")


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
