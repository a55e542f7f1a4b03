"""``python prepare_data.py data=<name>``: load, validate, featurize and cache a dataset.

Prints each source's drop report and the cache it wrote (or found). Training calls :func:`dataset_cache`
with the same ``data`` config, so running this first is optional: it is the way to inspect a dataset.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from tabxfer.features.build import build_cache
from tabxfer.features.cache import TensorCache
from tabxfer.features.spec import FeatureSpec

log = logging.getLogger(__name__)


def dataset_cache(
    data_cfg: DictConfig, cache_dir: str, *, force: bool = False, base_spec: FeatureSpec | None = None
) -> TensorCache:
    """The tensor cache for a ``data`` config group (sources are Hydra ``_target_`` nodes); anchored to
    ``base_spec`` when fine-tuning a pretrained model."""
    sources = {name: hydra.utils.instantiate(node) for name, node in data_cfg.sources.items()}
    features: Any = OmegaConf.to_container(data_cfg.features, resolve=True)
    split: Any = OmegaConf.to_container(data_cfg.split, resolve=True)
    return build_cache(
        sources,
        cache_dir=cache_dir,
        name=data_cfg.name,
        features=features,
        split=split,
        force=force,
        base_spec=base_spec,
    )


def describe(cache: TensorCache) -> str:
    spec, man = cache.spec, cache.manifest
    lines = [f"tensor cache: {cache.path}", f"fingerprint:  {cache.fingerprint}"]
    for name, rep in man["drop_reports"].items():
        dropped = ", ".join(f"{k}={v:,}" for k, v in sorted(rep["dropped"].items(), key=lambda kv: -kv[1]))
        lines.append(
            f"source {name}: {rep['n_in']:,} in, {rep['n_out']:,} kept" + (f" [{dropped}]" if dropped else "")
        )
    lines.append("rows: " + ", ".join(f"{k}={v:,}" for k, v in man["rows"].items()))
    lines.append(f"numeric ({spec.n_numeric}): {', '.join(spec.numeric_names)}")
    cats = ", ".join(f"{f.name}[{f.cardinality}]" for f in spec.categorical)
    lines.append(f"categorical ({spec.n_categorical}): {cats}")
    t = spec.target
    lines.append(f"target: {t.transform}({t.name}) mean={t.mean:.4f} std={t.std:.4f} (train)")
    return "\n".join(lines)


def run(cfg: DictConfig) -> TensorCache:
    cache = dataset_cache(cfg.data, cfg.paths.cache_dir, force=cfg.get("force", False))
    print(describe(cache))
    return cache
