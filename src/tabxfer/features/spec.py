"""The declared feature spec: what models, checkpoints and exports read about the data.

Plain dataclasses + JSON, no polars: a checkpoint or an ONNX artifact carries its spec and a serving
process rebuilds inputs from it without tabxfer's data layer.

Layout of one featurized row (what the tensor cache stores and every model takes):

* ``x_num``: float32 ``(n_numeric,)``, each column transformed (``log1p`` or not) and standardized with
  the training split's mean and std; a missing value becomes 0 (the mean) after scaling.
* ``x_cat``: int32 ``(n_categorical,)``, index into the feature's vocabulary; **0 is reserved for
  unknown or missing**, so ``cardinality == len(values) + 1``.
* ``y``: float32, the target after its transform (``log1p(duration_s)`` by default), *not* standardized;
  ``target.mean``/``target.std`` are there for models that want to standardize.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

SPEC_VERSION = 1


@dataclasses.dataclass(frozen=True)
class NumericFeature:
    name: str
    mean: float
    std: float
    transform: str = "none"  # "none" | "log1p" (applied before standardizing)
    group: str = "trip"  # which part of the data it describes: trip | time | space | extra | context


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
    name: str
    values: tuple[str | int, ...]  # index i + 1 <-> values[i]; 0 = unknown/missing
    group: str = "trip"

    @property
    def cardinality(self) -> int:
        return len(self.values) + 1

    def index(self, value: Any) -> int:
        try:
            return self.values.index(value) + 1
        except ValueError:
            return 0


@dataclasses.dataclass(frozen=True)
class Target:
    name: str = "duration_s"
    transform: str = "log1p"
    mean: float = 0.0  # of the transformed target on the training split
    std: float = 1.0


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Names, kinds and fitted statistics of every feature, in array column order."""

    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]
    target: Target
    city_centers: Mapping[str, tuple[float, float]]  # city -> (lat, lon) origin of its local frame
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the FeatureConfig used
    n_train: int = 0
    version: int = SPEC_VERSION
    # the hourly context's statistics, region grid and known regions (Context.describe()); None without one
    context: Mapping[str, Any] | None = None

    @property
    def numeric_names(self) -> list[str]:
        return [f.name for f in self.numeric]

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.categorical]

    @property
    def cardinalities(self) -> list[int]:
        return [f.cardinality for f in self.categorical]

    @property
    def n_numeric(self) -> int:
        return len(self.numeric)

    @property
    def n_categorical(self) -> int:
        return len(self.categorical)

    def categorical_feature(self, name: str) -> CategoricalFeature:
        for f in self.categorical:
            if f.name == name:
                return f
        raise KeyError(f"no categorical feature {name!r}; have {self.categorical_names}")

    def diff(self, other: FeatureSpec) -> dict[str, list[str]]:
        """Columns ``other`` adds or lacks relative to ``self`` (fine-tuning on a changed schema)."""

        def names(s: FeatureSpec) -> tuple[list[str], list[str]]:
            return s.numeric_names, s.categorical_names

        (n0, c0), (n1, c1) = names(self), names(other)
        return {
            "numeric_added": [n for n in n1 if n not in n0],
            "numeric_missing": [n for n in n0 if n not in n1],
            "categorical_added": [c for c in c1 if c not in c0],
            "categorical_missing": [c for c in c0 if c not in c1],
        }

    # --- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["city_centers"] = {k: list(v) for k, v in self.city_centers.items()}
        d["categorical"] = [
            {**dataclasses.asdict(f), "values": list(f.values), "cardinality": f.cardinality}
            for f in self.categorical
        ]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        if d.get("version") != SPEC_VERSION:
            raise ValueError(f"feature spec version {d.get('version')!r}; this tabxfer reads {SPEC_VERSION}")
        cats = []
        for c in d["categorical"]:
            c = {k: v for k, v in c.items() if k != "cardinality"}
            cats.append(CategoricalFeature(**{**c, "values": tuple(c["values"])}))
        return cls(
            numeric=tuple(NumericFeature(**n) for n in d["numeric"]),
            categorical=tuple(cats),
            target=Target(**d["target"]),
            city_centers={k: (float(v[0]), float(v[1])) for k, v in d["city_centers"].items()},
            config=d.get("config", {}),
            n_train=int(d.get("n_train", 0)),
            version=int(d["version"]),
            context=d.get("context"),
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        return cls.from_dict(json.loads(text))


def check_names(names: Sequence[str]) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"feature {n!r} is declared twice")
        seen.add(n)
