"""Build (or reuse) a tensor cache from sources: load -> split -> fit on train -> transform -> write.

The cache key is a fingerprint of everything that determines the arrays: each source's settings and
files (size + hash of both ends), the split and feature configs, and the versions of tabxfer and polars.
A second call with the same inputs opens the existing cache in milliseconds.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

import tabxfer
from tabxfer.data.fingerprint import fingerprint
from tabxfer.data.schema import DataError, DropReport
from tabxfer.features import pipeline
from tabxfer.features.cache import TensorCache, write_cache
from tabxfer.features.context import CHANNELS as CONTEXT_CHANNELS
from tabxfer.features.context import build_context
from tabxfer.features.spec import FeatureSpec
from tabxfer.features.splits import SPLITS, SplitConfig, assign_split

log = logging.getLogger(__name__)
# bump when raw_features/transform or the spec change (2: spec.context; 3: bearing without atan2;
# 4: calendar features from lookup tables; the fit aggregated in memory, its sums in another order)
PIPELINE_VERSION = 4


class Source(Protocol):
    def load(self) -> tuple[pl.DataFrame, DropReport]: ...
    def describe(self) -> dict[str, Any]: ...


def cache_key(
    sources: Mapping[str, Source],
    features: pipeline.FeatureConfig,
    split: SplitConfig,
    base_spec: FeatureSpec | None = None,
) -> tuple[str, dict[str, Any]]:
    desc: dict[str, Any] = {
        "sources": {name: src.describe() for name, src in sources.items()},
        "features": features.to_dict(),
        "split": dataclasses.asdict(split),
        "versions": {"tabxfer": tabxfer.__version__, "pipeline": PIPELINE_VERSION, "polars": pl.__version__},
    }
    if base_spec is not None:
        desc["base_spec"] = fingerprint(base_spec.to_dict())
    return fingerprint(desc), desc


def build_cache(
    sources: Mapping[str, Source],
    *,
    cache_dir: str | os.PathLike[str],
    name: str = "dataset",
    features: pipeline.FeatureConfig | Mapping[str, Any] | None = None,
    split: SplitConfig | Mapping[str, Any] | None = None,
    force: bool = False,
    base_spec: FeatureSpec | None = None,
) -> TensorCache:
    """The tensor cache of ``sources`` (a name -> source mapping), built unless it already exists.

    ``base_spec``: a pretrained model's spec to anchor the features to (fine-tuning; see
    :func:`~tabxfer.features.pipeline.anchor`): shared columns keep its scalers and vocabularies, the
    target's own columns are appended.
    """
    if not sources:
        raise ValueError("no sources given: a dataset needs at least one")
    feats, spl = pipeline.FeatureConfig.of(features), SplitConfig.of(split)
    if base_spec is not None:
        feats = pipeline.merge_config(pipeline.FeatureConfig.of(base_spec.config), feats)
    key, desc = cache_key(sources, feats, spl, base_spec)
    path = Path(cache_dir) / f"{name}-{key}"
    if path.exists() and not force:
        log.info("tensor cache hit: %s", path)
        return TensorCache.open(path)

    t0 = time.perf_counter()
    spec, splits, reports, n_loaded, tables = featurize(sources, feats, spl, base_spec)
    seconds = time.perf_counter() - t0
    manifest = {
        "fingerprint": key,
        "name": name,
        "created_unix": time.time(),
        "inputs": desc,
        "drop_reports": reports,
        "rows": {"loaded": n_loaded, **{s: len(a["y"]) for s, a in splits.items()}},
        "seconds_to_featurize": round(seconds, 3),
        "sources": list(sources),  # source_id i <-> sources[i]
    }
    if tables:
        manifest["context"] = {"hours": feats.context_hours, "channels": list(CONTEXT_CHANNELS)}
    cache = write_cache(path, spec, splits, manifest, tables=tables)
    log.info("tensor cache written: %s (%s rows, %.1f s)", path, f"{n_loaded:,}", time.perf_counter() - t0)
    return cache


def check_splits(df: pl.DataFrame, split: SplitConfig) -> None:
    """Raise if a split the config asks for came out empty (train always; val and test unless their
    fraction is 0): training selects on val and reports test, and fits every statistic on train."""
    sizes = dict.fromkeys(SPLITS, 0) | {
        str(s): n for s, n in df.group_by("split").len().iter_rows() if s is not None
    }
    wanted = {"train": True, "val": split.val > 0, "test": split.test > 0}
    for name in (s for s in SPLITS if wanted[s] and sizes[s] == 0):
        if split.kind == "column":
            how, fix = f"column {split.column!r} holds no {name!r} value", f"label some rows {name!r}"
        else:
            how = f"{split.kind} split with val={split.val}, test={split.test}"
            fix = "use more rows or smaller val/test fractions"
        if name != "train":
            fix += f", or set {name}=0 to build without a {name} split"
        raise DataError(
            f"split {name!r} is empty: 0 of {df.height:,} rows ({how}; rows per split: {sizes}); {fix}"
        )


def featurize(
    sources: Mapping[str, Source],
    features: pipeline.FeatureConfig,
    split: SplitConfig,
    base_spec: FeatureSpec | None = None,
) -> tuple[FeatureSpec, dict[str, dict[str, np.ndarray]], dict[str, Any], int, dict[str, np.ndarray]]:
    """Load every source, split, fit on train, transform: ``(spec, arrays per split, drop reports,
    rows loaded, cache-level tables)``. Nothing is written. Each row keeps the index of its source in
    ``sources`` as ``source_id`` (per-source sampling weights). With ``base_spec`` (and ``features``
    already merged with its config) the spec is anchored to it."""
    frames, reports = [], {}
    for i, (src_name, src) in enumerate(sources.items()):
        df, rep = src.load()
        log.info("%s", rep.summary())
        frames.append(df.with_columns(pl.lit(i, pl.Int16).alias("__source_id")))
        reports[src_name] = rep.to_dict()
    df = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    if df.height == 0:
        summaries = "; ".join(
            f"{name} ({', '.join(rep['files']) or 'no files'}): {DropReport.from_dict(rep).summary()}"
            for name, rep in reports.items()
        )
        raise DataError(f"no rows to featurize: every source came out empty: {summaries}")
    df = assign_split(df, split)
    check_splits(df, split)
    # Rows grouped by split (a stable sort: each split keeps the input order), so that the training rows
    # and every split's arrays are slices, not copies.
    df = df.sort(pl.col("split").to_physical(), maintain_order=True)
    codes = df["split"].to_physical().to_numpy()
    bounds = np.searchsorted(codes, np.arange(len(SPLITS) + 1))
    train = slice(int(bounds[0]), int(bounds[1]))
    # raw features once for every row; statistics from the training rows only
    centers = pipeline.fit_centers(df[train])
    if base_spec is not None:  # shared cities keep the pretrained local frame
        centers = {**centers, **base_spec.city_centers}
    raw = pipeline.raw_features(df.lazy(), features, centers).collect()
    tables: dict[str, np.ndarray] = {}
    per_row: dict[str, np.ndarray] = {}
    if features.context or features.context_flat:
        ctx = build_context(df, centers, hours=features.context_hours, region_km=features.context_region_km)
        if features.context_flat:
            raw = raw.with_columns([pl.Series(k, v, dtype=pl.Float64) for k, v in ctx.flat().items()])
        if features.context:
            tables = {"ctx_city": ctx.city_table, "ctx_region": ctx.region_table}
            per_row = {"ctx_city_idx": ctx.city_idx, "ctx_region_idx": ctx.region_idx}
    spec = pipeline.fit_raw(raw[train], features, centers)
    if base_spec is not None:
        spec = pipeline.anchor(base_spec, spec)
    if features.context or features.context_flat:  # what an exported graph needs to read raw context
        spec = dataclasses.replace(spec, context=ctx.describe())
    per_row["source_id"] = df["__source_id"].to_numpy()
    arrays = pipeline.to_arrays(pipeline.scale(raw.lazy(), spec).collect(), spec) | per_row
    out = {
        s: {k: v[bounds[i] : bounds[i + 1]] for k, v in arrays.items()}
        for i, s in enumerate(SPLITS)
        if bounds[i + 1] > bounds[i]
    }
    return spec, out, reports, df.height, tables
