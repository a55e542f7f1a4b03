"""A finished training run, reopened for analysis: its model, config, metrics, tensor cache and trips.

A run directory (``logs/train/runs/<time>/``) holds ``checkpoints/best.ckpt``, ``metrics.json`` and the
Hydra config (``.hydra/config.yaml``). The checkpoint alone is enough: it carries the resolved training
config (``meta.config``), from which :func:`run_cache` reopens (or rebuilds, from the same sources) the
tensor cache it was trained on, and :func:`split_rows` reloads the canonical trips of a split *in the
cache's row order*: the cache builder concatenates the sources in config order, assigns the split and keeps
each split's rows in that order, and so does :func:`split_rows`. :func:`aligned_rows` checks the
alignment on the pickup times, so that slice keys computed from the trips line up with predictions
computed from the cache.

Relative paths in a config (``paths.cache_dir``, source paths) are relative to the directory training
ran in, usually the repository root: call these functions from there.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import polars as pl
from omegaconf import DictConfig, OmegaConf

from tabxfer.features.cache import TensorCache
from tabxfer.features.spec import FeatureSpec
from tabxfer.features.splits import assign_split


@dataclasses.dataclass(frozen=True)
class Run:
    """A loaded run: ``module`` (the trained :class:`~tabxfer.training.module.TabularRegressor`, eval mode),
    ``config`` (the resolved training config as plain containers), ``metrics`` (``metrics.json``, or ``{}``)."""

    path: Path
    checkpoint: Path
    module: Any
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def model_name(self) -> str:
        """The model class name (``TabNet``, ``TFT``, ``MLP``, ...)."""
        return str(self.module.hparams["model_cfg"]["_target_"]).rsplit(".", 1)[-1]


def saved_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``data``, ``paths`` (without the Hydra-runtime ``output_dir``), ``model`` and ``seed`` of the run's
    ``.hydra/config.yaml``, resolved (``oc.env`` defaults included): the config of a checkpoint that
    carries none."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no saved Hydra config ({path})")
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    paths = {k: cfg.paths[k] for k in cfg.paths if k != "output_dir"}
    out: dict[str, Any] = {
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "paths": paths,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "seed": cfg.get("seed"),
    }
    return out


def load_run(run_dir: str | os.PathLike[str], *, checkpoint: str = "best.ckpt") -> Run:
    """Load ``<run_dir>/checkpoints/<checkpoint>`` (CPU), its config and ``metrics.json``."""
    from tabxfer.train import load  # Lightning is imported only here

    path = Path(run_dir)
    ckpt = path / "checkpoints" / checkpoint
    if not ckpt.is_file():
        raise FileNotFoundError(f"{path} is not a training run with a checkpoint: no {ckpt}")
    module = load(ckpt).eval()
    meta = dict(module.hparams.get("meta") or {})
    config = dict(meta["config"]) if meta.get("config") else saved_config(path)
    metrics_file = path / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return Run(path=path, checkpoint=ckpt, module=module, config=config, metrics=metrics)


def run_cache(run: Run, *, cache_dir: str | os.PathLike[str] | None = None) -> TensorCache:
    """The tensor cache the run was trained on: found by its fingerprint, or rebuilt from the sources.

    A fine-tuned run's cache is anchored to its pretrained spec, read from the ``init_from`` checkpoint.
    Raises ``ValueError`` when the cache's feature spec is not the model's (the data or the feature code
    changed since training: the model would read different inputs).
    """
    from tabxfer.prepare import dataset_cache
    from tabxfer.training.transfer import load_pretrained

    cfg = run.config
    base = None
    init = (run.module.hparams.get("meta") or {}).get("init_from") or cfg.get("init_from")
    if init:
        base = load_pretrained(init["path"] if isinstance(init, Mapping) else init).spec
    cache_dir = cache_dir if cache_dir is not None else cfg["paths"]["cache_dir"]
    cache = dataset_cache(OmegaConf.create(cfg["data"]), str(cache_dir), base_spec=base)
    want = FeatureSpec.from_dict(run.module.hparams["spec"])
    if cache.spec != want:
        d = want.diff(cache.spec)
        raise ValueError(
            f"the cache {cache.path} has another feature spec than the model (columns {d}; or other "
            "vocabularies / scalers): the data or the feature code changed since the run"
        )
    return cache


def split_rows(config: Mapping[str, Any], split: str) -> pl.DataFrame:
    """The canonical trips of one split of a run's data, in the tensor cache's row order (module doc),
    with ``__source_id`` (the source's index in the config) and ``split``."""
    data = config["data"]
    frames = []
    for i, node in enumerate(data["sources"].values()):
        df, _ = hydra.utils.instantiate(dict(node)).load()
        frames.append(df.with_columns(pl.lit(i, pl.Int16).alias("__source_id")))
    df = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    return assign_split(df, data.get("split")).filter(pl.col("split") == split)


def aligned_rows(config: Mapping[str, Any], cache: TensorCache, split: str) -> pl.DataFrame:
    """:func:`split_rows` of a run's ``config``, checked to line up with ``cache.split(split)`` row by row
    (same count, same pickup time on every row); ``ValueError`` otherwise."""
    rows = split_rows(config, split)
    ts = np.asarray(cache.split(split).pickup_ts)
    if rows.height != len(ts):
        raise ValueError(f"{split}: {rows.height} canonical rows but {len(ts)} cache rows")
    have = rows["pickup_time"].dt.epoch("s").to_numpy()
    if not np.array_equal(have, ts):
        bad = int(np.flatnonzero(have != ts)[0])
        raise ValueError(f"{split}: canonical rows and cache rows differ first at row {bad} (pickup time)")
    return rows
