"""Builders of small test inputs, importable from any test (tests/ is on sys.path via its conftest)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tabxfer.data.schema import CORE_SCHEMA


def make_trips(n: int = 2000, seed: int = 0, city: str = "nyc", center=(40.75, -73.98)) -> pl.DataFrame:
    """Canonical-schema trips around ``center``: enough structure to fit features on."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2016, 1, 1)
    t = [start + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 150 * 86400, n)]
    plat, plon = center[0] + rng.normal(0, 0.03, n), center[1] + rng.normal(0, 0.03, n)
    dlat, dlon = plat + rng.normal(0, 0.02, n), plon + rng.normal(0, 0.02, n)
    df = pl.DataFrame(
        {
            "trip_id": [f"t{i}" for i in range(n)],
            "source": "test",
            "city": city,
            "mode": "taxi",
            "vendor": rng.choice(["1", "2"], n).tolist(),
            "pickup_time": t,
            "pickup_lat": plat,
            "pickup_lon": plon,
            "dropoff_lat": dlat,
            "dropoff_lon": dlon,
            "passenger_count": rng.integers(1, 5, n),
            "duration_s": rng.lognormal(6.4, 0.7, n),
            "store_and_fwd_flag": rng.choice(["N", "Y"], n, p=[0.99, 0.01]).tolist(),
        }
    )
    return df.cast(CORE_SCHEMA)  # type: ignore[arg-type]


def write_table(tmp_path: Path, name: str, header: list[str], rows: list[list[str]], fmt: str) -> Path:
    """The rows as a CSV (strings, as published files are) or a Parquet file with the dtypes a reader
    infers from that CSV."""
    csv_path = tmp_path / f"{name}.csv"
    pl.DataFrame(rows, schema=header, orient="row").write_csv(csv_path)
    if fmt == "csv":
        return csv_path
    pq_path = tmp_path / f"{name}.parquet"
    pl.read_csv(csv_path, infer_schema_length=None).write_parquet(pq_path)
    csv_path.unlink()
    return pq_path


def tiny_run_config(root: Path, name: str, *overrides: str, n_trips: int = 2000):
    """The composed ``configs/train.yaml`` of a 1-epoch run on ``n_trips`` synthetic trips, writing into
    ``root/name`` (cache in ``root/cache``, no logger); ``overrides`` pick the model and its size."""
    from hydra import compose, initialize_config_dir

    configs = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                f"paths.output_dir={root / name}",
                f"paths.cache_dir={root / 'cache'}",
                f"paths.log_dir={root / 'logs'}",
                "logger=none",
                "trainer.max_epochs=1",
                "+trainer.enable_progress_bar=false",
                "datamodule.batch_size=256",
                "data=synthetic",
                f"data.sources.nyc.n={n_trips}",
                *overrides,
            ],
        )


KAGGLE_HEADER = [
    "id", "vendor_id", "pickup_datetime", "dropoff_datetime", "passenger_count", "pickup_longitude",
    "pickup_latitude", "dropoff_longitude", "dropoff_latitude", "store_and_fwd_flag", "trip_duration",
]  # fmt: skip
KAGGLE_T0 = dt.datetime(2016, 3, 14, 17, 0, 0)


def kaggle_row(i: int, **over: str) -> dict[str, str]:
    """A valid Kaggle NYC train row, distinct for each ``i`` (own id, pickup ``i`` minutes after
    ``KAGGLE_T0``); ``over`` replaces fields."""
    pickup = KAGGLE_T0 + dt.timedelta(minutes=i)
    duration = 400 + i
    row = {
        "id": f"id{i:04d}",
        "vendor_id": str(1 + i % 2),
        "pickup_datetime": f"{pickup:%Y-%m-%d %H:%M:%S}",
        "dropoff_datetime": f"{pickup + dt.timedelta(seconds=duration):%Y-%m-%d %H:%M:%S}",
        "passenger_count": str(1 + i % 6),
        "pickup_longitude": f"{-73.982155 + i * 1e-4:.6f}",
        "pickup_latitude": "40.767937",
        "dropoff_longitude": "-73.964630",
        "dropoff_latitude": "40.765602",
        "store_and_fwd_flag": "N",
        "trip_duration": str(duration),
    }
    row.update(over)
    return row


def require_dataset(root: Path, name: str) -> Path:
    """``root/name`` or skip, naming what is missing."""
    path = root / name
    if not path.exists():
        pytest.skip(f"real dataset {name!r} not found under {root}")
    return path
