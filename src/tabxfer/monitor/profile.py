"""The reference side of drift monitoring, as numbers: what the training rows looked like to the model.

A :class:`ReferenceProfile` holds, for every model input feature *before scaling* (what
:func:`tabxfer.features.pipeline.raw_features` derives: kilometres, hours, grid cells, vendor strings),
its reference bins (numeric: decile edges + counts + a missing bin; categorical: counts per value), and
the same for the model's predicted log-duration and for the target ``duration_s``; plus the model's RMSLE
overall and by slice (:mod:`tabxfer.evaluation.slices`) on held-out rows.

It is built from the training split (distributions) and the test split (RMSLE: training rows would flatter
the model) of the data a checkpoint was trained on, and written into every exported artifact as
``reference_profile.json``, so that drift against an artifact needs no training data. KS needs reference
*values*, not bins: a profile built from a checkpoint keeps every sampled value in memory; the JSON keeps a
random subsample of :data:`JSON_SAMPLE` values per feature (KS against an artifact has less power, and
says so through the sample size in the report).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from tabxfer.evaluation.metrics import rmsle
from tabxfer.evaluation.slices import rmsle_by_slice, slice_keys
from tabxfer.features import pipeline
from tabxfer.features.spec import FeatureSpec
from tabxfer.monitor import stats

PROFILE_VERSION = 1
JSON_SAMPLE = 1000  # reference values kept per numeric column in the JSON (for KS and plots)
MAX_STORED_CATEGORIES = 10_000  # values kept per categorical column; the rest is one <other> count


@dataclasses.dataclass
class NumericProfile:
    """Decile bins of one numeric column (``counts`` has a last bin for missing values)."""

    edges: np.ndarray
    counts: np.ndarray
    sample: np.ndarray  # reference values (finite or not) for KS and histograms
    quantiles: dict[str, float]
    n: int

    @classmethod
    def of(cls, x: np.ndarray, bins: int = stats.BINS) -> NumericProfile:
        x = np.asarray(x, np.float64)
        edges = stats.quantile_edges(x, bins)
        return cls(edges, stats.bin_counts(x, edges), x, stats.quantiles(x), len(x))

    def compare(self, x: np.ndarray, eps: float = stats.EPS) -> dict[str, Any]:
        """PSI, KS and quantiles of new values ``x`` against this reference."""
        x = np.asarray(x, np.float64)
        new = stats.bin_counts(x, self.edges)
        d, p = stats.ks(self.sample, x)
        return {
            "kind": "numeric",
            "psi": stats.psi(self.counts, new, eps),
            "ks": d,
            "ks_p": p,
            "ks_ref_rows": int(np.isfinite(self.sample).sum()),
            "missing_ref": float(self.counts[-1] / max(self.n, 1)),
            "missing_new": float(new[-1] / max(len(x), 1)),
            "bins": {
                "labels": stats.bin_labels(self.edges.tolist()),
                "ref": self.counts.tolist(),
                "new": new.tolist(),
            },
            "quantiles_ref": self.quantiles,
            "quantiles_new": stats.quantiles(x),
        }

    def to_dict(self, sample: int | None = JSON_SAMPLE, seed: int = 0) -> dict[str, Any]:
        s = self.sample
        if sample is not None and len(s) > sample:
            s = np.random.default_rng(seed).choice(s, sample, replace=False)
        return {
            "kind": "numeric",
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            # NaN is not JSON: missing values are in counts[-1]; the sample keeps the finite ones
            "sample": [float(f"{v:.6g}") for v in s[np.isfinite(s)]],
            "quantiles": self.quantiles,
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericProfile:
        return cls(
            np.asarray(d["edges"], np.float64),
            np.asarray(d["counts"], np.int64),
            np.asarray(d["sample"], np.float64),
            {k: float(v) for k, v in d["quantiles"].items()},
            int(d["n"]),
        )


@dataclasses.dataclass
class CategoricalProfile:
    """Counts per value of one categorical column (values as strings, missing as ``<missing>``)."""

    counts: dict[str, int]
    n: int
    complete: bool = True  # False: only the most frequent values are listed (see MAX_STORED_CATEGORIES)

    @classmethod
    def of(cls, values: pl.Series) -> CategoricalProfile:
        vc = values.value_counts(sort=True, name="n")
        counts = {str(v): int(c) for v, c in zip(vc[values.name], vc["n"], strict=True)}
        complete = len(counts) <= MAX_STORED_CATEGORIES
        if not complete:
            counts = dict(list(counts.items())[:MAX_STORED_CATEGORIES])
        return cls(counts, values.len(), complete)

    def compare(
        self, values: pl.Series, eps: float = stats.EPS, max_categories: int = stats.MAX_CATEGORIES
    ) -> dict[str, Any]:
        b = stats.categorical_bins(
            self.counts,
            values.to_numpy(),
            max_categories=max_categories,
            complete=self.complete,
            ref_other=self.n - sum(self.counts.values()),
        )
        n_new = max(values.len(), 1)
        return {
            "kind": "categorical",
            "psi": stats.psi(b["ref"], b["new"], eps),
            "ks": None,
            "ks_p": None,
            "missing_ref": self.counts.get(stats.MISSING, 0) / max(self.n, 1),
            "missing_new": float((values == stats.MISSING).sum() / n_new),
            "unseen_rows": int(sum(b["unseen"].values())),
            "unseen_share": sum(b["unseen"].values()) / n_new,
            "unseen_values": dict(list(b["unseen"].items())[:10]),
            "bins": {"labels": b["labels"], "ref": b["ref"], "new": b["new"]},
        }

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "categorical", "counts": self.counts, "n": self.n, "complete": self.complete}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalProfile:
        return cls({str(k): int(v) for k, v in d["counts"].items()}, int(d["n"]), bool(d["complete"]))


Column = NumericProfile | CategoricalProfile


def feature_frame(spec: FeatureSpec, df: pl.DataFrame) -> pl.DataFrame:
    """The model's input features before scaling, for canonical trips ``df``: numeric columns as Float64,
    categorical ones as strings (``<missing>`` for null), in the spec's order."""
    cities = [c for c in df["city"].unique().to_list() if c is not None]
    # the spec's own centers, plus known centers for new cities (DataError naming an unknown city)
    centers = pipeline._known_centers(spec, cities)
    raw = pipeline.raw_features(df.lazy(), pipeline.FeatureConfig.of(spec.config), centers).collect()
    return raw.select(
        *[pl.col(n).cast(pl.Float64) for n in spec.numeric_names],
        *[pl.col(n).cast(pl.String).fill_null(stats.MISSING) for n in spec.categorical_names],
    )


def log_target(df: pl.DataFrame) -> np.ndarray:
    """``log1p(duration_s)`` (NaN where unknown)."""
    return np.log1p(df["duration_s"].cast(pl.Float64).fill_null(float("nan")).to_numpy())


def slice_rmsle(
    spec: FeatureSpec, df: pl.DataFrame, log_pred: np.ndarray
) -> tuple[float, list[dict[str, Any]]]:
    """Overall RMSLE and RMSLE by slice of labeled rows; districts on the spec's city grid, so that the
    reference's and the new data's districts are the same squares."""
    keys = slice_keys(df, centers=spec.city_centers)
    y = log_target(df)
    return rmsle(log_pred, y), rmsle_by_slice(keys, np.maximum(log_pred, 0.0), y)


@dataclasses.dataclass
class ReferenceProfile:
    """Everything drift compares new data with (see the module doc). ``info`` says where it came from."""

    features: dict[str, Column]
    groups: dict[str, str]
    prediction: NumericProfile  # predicted log1p(duration) on the training rows
    target: NumericProfile | None  # duration_s of the training rows
    rmsle: float | None  # on held-out rows
    slices: list[dict[str, Any]]
    eval_rows: int
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def rows(self) -> int:
        return self.prediction.n

    def to_dict(self, sample: int | None = JSON_SAMPLE) -> dict[str, Any]:
        return {
            "kind": "tabxfer.reference_profile",
            "version": PROFILE_VERSION,
            "rows": self.rows,
            "info": self.info,
            "groups": self.groups,
            "features": {
                k: (v.to_dict(sample, seed=i) if isinstance(v, NumericProfile) else v.to_dict())
                for i, (k, v) in enumerate(self.features.items())
            },
            "prediction": self.prediction.to_dict(sample),
            "target": self.target.to_dict(sample) if self.target is not None else None,
            "rmsle": {"overall": self.rmsle, "rows": self.eval_rows, "slices": self.slices},
        }

    def to_json(self, sample: int | None = JSON_SAMPLE) -> str:
        return json.dumps(self.to_dict(sample), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceProfile:
        if d.get("kind") != "tabxfer.reference_profile" or d.get("version") != PROFILE_VERSION:
            raise ValueError(
                f"not a tabxfer reference profile of version {PROFILE_VERSION} "
                f"(kind={d.get('kind')!r}, version={d.get('version')!r})"
            )

        def column(c: Mapping[str, Any]) -> Column:
            return NumericProfile.from_dict(c) if c["kind"] == "numeric" else CategoricalProfile.from_dict(c)

        r = d["rmsle"]
        return cls(
            features={k: column(v) for k, v in d["features"].items()},
            groups=dict(d["groups"]),
            prediction=NumericProfile.from_dict(d["prediction"]),
            target=NumericProfile.from_dict(d["target"]) if d.get("target") else None,
            rmsle=r["overall"],
            slices=list(r["slices"]),
            eval_rows=int(r["rows"]),
            info=dict(d.get("info") or {}),
        )


def build_profile(
    spec: FeatureSpec,
    train: pl.DataFrame,
    train_log_pred: np.ndarray,
    test: pl.DataFrame | None,
    test_log_pred: np.ndarray | None,
    *,
    bins: int = stats.BINS,
    info: Mapping[str, Any] | None = None,
) -> ReferenceProfile:
    """The profile of a model: distributions from ``train`` rows (canonical trips) and the model's
    predictions on them, RMSLE from labeled ``test`` rows and their predictions."""
    raw = feature_frame(spec, train)
    features: dict[str, Column] = {}
    for n in spec.numeric_names:
        features[n] = NumericProfile.of(raw[n].to_numpy(), bins)
    for n in spec.categorical_names:
        features[n] = CategoricalProfile.of(raw[n])
    groups = {f.name: f.group for f in spec.numeric} | {f.name: f.group for f in spec.categorical}
    y = train["duration_s"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
    target = NumericProfile.of(y, bins) if np.isfinite(y).any() else None
    overall: float | None = None
    slices: list[dict[str, Any]] = []
    eval_rows = 0
    if test is not None and test_log_pred is not None and test.height:
        labeled = test["duration_s"].is_not_null().to_numpy()
        if labeled.any():
            overall, slices = slice_rmsle(spec, test.filter(labeled), np.asarray(test_log_pred)[labeled])
            eval_rows = int(labeled.sum())
    return ReferenceProfile(
        features=features,
        groups=groups,
        prediction=NumericProfile.of(np.asarray(train_log_pred, np.float64), bins),
        target=target,
        rmsle=overall,
        slices=slices,
        eval_rows=eval_rows,
        info=dict(info or {}),
    )
