"""A training run's report: figures, RMSLE by slice consistent with test/rmsle, importances, W&B offline
images/tables/artifacts; and the slice keys rebuilt from the cache equal those of the canonical trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

import wandb_log
from tabxfer.data.synthetic import generate
from tabxfer.evaluation.slices import distance_band, slice_keys, trips_from_cache
from tabxfer.features import pipeline
from tabxfer.features.cache import SplitArrays

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_slice_keys_from_the_cache_equal_those_of_the_trips():
    df = generate("nyc", 4000, seed=3)
    spec = pipeline.fit(df.lazy())
    arr = pipeline.to_arrays(pipeline.transform(df.lazy(), spec).collect(), spec)
    ts = df["pickup_time"].dt.epoch("s").to_numpy()
    split = SplitArrays(x_num=arr["x_num"], x_cat=arr["x_cat"], y=arr["y"], pickup_ts=ts)
    rebuilt = slice_keys(trips_from_cache(split, spec))
    direct = slice_keys(df)
    for col in ("hour", "weekday", "distance_km", "district", "airport", "city", "mode"):
        agree = float((rebuilt[col] == direct[col]).mean())
        # float32 features round coordinates by < 1 m: a handful of trips on a bucket edge may move
        assert agree > (0.995 if col in ("distance_km", "airport", "district") else 0.99999), (col, agree)


@pytest.mark.slow
def test_distance_bands_are_closed_on_the_left_as_their_labels_read():
    km = pl.Series("distance_km", [0.0, 0.99, 1.0, 2.99, 3.0, 9.99, 10.0, 250.0, float("nan"), None])
    bands = distance_band(km).to_list()
    assert bands == ["<1", "<1", "1-3", "1-3", "3-10", "3-10", ">=10", ">=10", None, None]


def test_run_writes_and_logs_its_report(tmp_path, monkeypatch):
    import wandb

    from tabxfer.train import run

    wandb.teardown()  # wandb keeps process-wide settings (its dir) from earlier tests' runs
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("TABXFER_CACHE_DIR", str(tmp_path / "cache"))
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "model=mlp",
                "data.sources.nyc.n=4000",
                "trainer.max_epochs=2",
                f"paths.log_dir={tmp_path}",
                f"hydra.run.dir={tmp_path}/run",
                "hydra.job.num=0",
            ],
            return_hydra_config=True,
        )
    cfg.hydra.runtime.output_dir = str(tmp_path / "run")
    HydraConfig.instance().set_config(cfg)
    result = run(cfg)
    rep = tmp_path / "run" / "report"
    for name in ("pred_vs_actual.png", "residuals.png", "importance.png", "slices.md"):
        assert (rep / name).stat().st_size > 1000 or name == "slices.md"
    slices = json.loads((rep / "slices.json").read_text())
    assert {s["slice"] for s in slices} == {
        "hour",
        "weekday",
        "distance_km",
        "district",
        "airport",
        "city",
        "mode",
    }
    test_rmsle = result["metrics"]["test/rmsle"]
    for dim in ("hour", "airport"):  # each slicing partitions the test rows: the pooled RMSLE is the metric
        rows = [s for s in slices if s["slice"] == dim]
        n = sum(s["rows"] for s in rows)
        pooled = np.sqrt(sum(s["rows"] * s["rmsle"] ** 2 for s in rows) / n)
        assert pooled == pytest.approx(test_rmsle, rel=1e-4)
    imp = json.loads((rep / "importance.json").read_text())
    assert imp["method"] == "permutation" and len(imp["importance"]) == len(imp["feature_names"])
    (wb,) = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    keys = wandb_log.logged_keys(wb)
    assert {"test/slices/_type", "test/pred_vs_actual/_type", "test/residuals/_type", "test/rmsle"} <= keys
    aliases = {a.name: set(a.aliases) for a in wandb_log.artifacts(wb)}
    run_id = wb.stem.removeprefix("run-")
    assert {"latest", "best"} <= aliases[f"model-{run_id}"]  # the checkpoint artifact with its aliases
