"""Search spaces written in Hydra's sweep grammar, turned into Optuna distributions.

``configs/hparams_search/<name>.yaml`` lists ``hydra.sweeper.params`` as ``key: <sweep>``, the grammar of
Hydra's command line (and of hydra-optuna-sweeper, so lightning-hydra-template users know it):

=====================================  ==========================================================
``choice(a, b, c)``                    categorical (group options too: ``finetune: choice(full, gradual)``)
``range(8, 64, step=8)``               int with a step (floats anywhere: a float with a step)
``interval(0.0, 0.5)``                 float, uniform
``tag(log, interval(1e-4, 1e-2))``     float, log-uniform (int bounds: int log-uniform)
``int(interval(1, 6))``                int, uniform
anything else                          a fixed value, passed through as an override
=====================================  ==========================================================

>>> dists, fixed = parse_space({"model.n_d": "range(8, 33, step=8)", "optimizer.lr": "tag(log, interval(1e-4, 1e-2))",
...                             "finetune": "choice(full, gradual)", "trainer.max_epochs": "3"})
>>> dists["model.n_d"]
IntDistribution(high=32, log=False, low=8, step=8)
>>> dists["optimizer.lr"].log, fixed
(True, {'trainer.max_epochs': '3'})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


def distribution(override: Override) -> BaseDistribution | str:
    """The Optuna distribution of one parsed override, or its value as a string when it is fixed."""
    if not override.is_sweep_override():
        return override.get_value_element_as_str()
    value = override.value()
    key = override.get_key_element()
    if isinstance(value, ChoiceSweep) or (isinstance(value, RangeSweep) and value.shuffle):
        choices = list(override.sweep_iterator(transformer=Transformer.encode))
        bad = [c for c in choices if not isinstance(c, str | int | float | bool | type(None))]
        if bad:  # encode turns lists and dicts into grammar strings; anything else cannot be stored
            raise ValueError(f"sweep parameter {key!r}: choices {bad} are not str, int, float, bool or null")
        return CategoricalDistribution(choices)  # type: ignore[arg-type]
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if start is None or stop is None:
            raise ValueError(f"sweep parameter {key!r}: range() needs a start and a stop, got {value}")
        # hydra's range() excludes its stop; Optuna's high is inclusive: the last value on the grid
        n = math.ceil((float(stop) - float(start)) / float(step) - 1e-9)
        if n < 1:
            raise ValueError(f"sweep parameter {key!r}: {value} is empty")
        if any(isinstance(v, float) for v in (start, stop, step)):
            return FloatDistribution(float(start), float(start) + (n - 1) * float(step), step=float(step))
        return IntDistribution(int(start), int(start) + (n - 1) * int(step), step=int(step))
    if isinstance(value, IntervalSweep):
        if value.start is None or value.end is None:
            raise ValueError(f"sweep parameter {key!r}: interval() needs two bounds, got {value}")
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"sweep parameter {key!r}: {override.input_line!r} is not a choice, range or interval")


def parse_space(params: Mapping[str, Any]) -> tuple[dict[str, BaseDistribution], dict[str, str]]:
    """``{key: sweep expression}`` -> (distributions to search, fixed overrides)."""
    parser = OverridesParser.create()
    dists: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for key, expr in params.items():
        try:
            (ov,) = parser.parse_overrides([f"{key}={expr}"])
        except Exception as e:  # hydra's grammar errors name the character, not the parameter
            raise ValueError(f"hydra.sweeper.params.{key}: cannot parse {expr!r}: {e}") from e
        d = distribution(ov)
        if isinstance(d, BaseDistribution):
            dists[ov.get_key_element()] = d
        else:  # verbatim: interpolations (``${paths.log_dir}/...``) must reach the job unresolved
            fixed[ov.get_key_element()] = str(expr)
    return dists, fixed


def as_override(key: str, value: Any) -> str:
    """``key=value`` for a sampled value. Categorical values are already in Hydra's grammar (choices are
    kept encoded, e.g. ``'{1:[backbone]}'``), numbers print as Python writes them (``1e-05`` parses back)."""
    if isinstance(value, bool) or value is None:
        return f"{key}={ {True: 'true', False: 'false', None: 'null'}[value] }"
    return f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}"
