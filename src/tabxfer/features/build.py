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

import polars as pl

import tabxfer
from tabxfer.data.fingerprint import fingerprint
from tabxfer.data.schema import DataError, DropReport
from tabxfer.features import pipeline
from tabxfer.features.cache import TensorCache, write_cache
from tabxfer.features.splits import SPLITS, SplitConfig, assign_split

log = logging.getLogger(__name__)
PIPELINE_VERSION = 1  # bump when raw_features/transform change meaning


class Source(Protocol):
    def load(self) -> tuple[pl.DataFrame, DropReport]: ...
    def describe(self) -> dict[str, Any]: ...


def cache_key(
    sources: Mapping[str, Source], features: pipeline.FeatureConfig, split: SplitConfig
) -> tuple[str, dict[str, Any]]:
    desc = {
        "sources": {name: src.describe() for name, src in sources.items()},
        "features": features.to_dict(),
        "split": dataclasses.asdict(split),
        "versions": {"tabxfer": tabxfer.__version__, "pipeline": PIPELINE_VERSION, "polars": pl.__version__},
    }
    return fingerprint(desc), desc


def build_cache(
    sources: Mapping[str, Source],
    *,
    cache_dir: str | os.PathLike[str],
    name: str = "dataset",
    features: pipeline.FeatureConfig | Mapping[str, Any] | None = None,
    split: SplitConfig | Mapping[str, Any] | None = None,
    force: bool = False,
) -> TensorCache:
    """The tensor cache of ``sources`` (a name -> source mapping), built unless it already exists."""
    if not sources:
        raise ValueError("no sources given: a dataset needs at least one")
    feats, spl = pipeline.FeatureConfig.of(features), SplitConfig.of(split)
    key, desc = cache_key(sources, feats, spl)
    path = Path(cache_dir) / f"{name}-{key}"
    if path.exists() and not force:
        log.info("tensor cache hit: %s", path)
        return TensorCache.open(path)

    t0 = time.perf_counter()
    frames, reports = [], {}
    for src_name, src in sources.items():
        df, rep = src.load()
        log.info("%s", rep.summary())
        frames.append(df)
        reports[src_name] = rep.to_dict()
    df = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    if df.height == 0:
        raise DataError(f"every row of every source was dropped: {reports}")
    t_load = time.perf_counter() - t0

    df = assign_split(df, spl)
    train = df.lazy().filter(pl.col("split") == "train")
    spec = pipeline.fit(train, feats)
    feat = pipeline.transform(df.lazy(), spec).collect()
    splits = {}
    for s in SPLITS:
        mask = (df["split"] == s).to_numpy()
        if mask.any():
            splits[s] = pipeline.to_arrays(feat.filter(mask), spec)
    t_feat = time.perf_counter() - t0 - t_load

    manifest = {
        "fingerprint": key,
        "name": name,
        "created_unix": time.time(),
        "inputs": desc,
        "drop_reports": reports,
        "rows": {"loaded": df.height, **{s: len(a["y"]) for s, a in splits.items()}},
        "seconds": {"load": round(t_load, 3), "featurize": round(t_feat, 3)},
    }
    cache = write_cache(path, spec, splits, manifest)
    log.info("tensor cache written: %s (%s rows, %.1f s)", path, f"{df.height:,}", time.perf_counter() - t0)
    return cache
