"""The real datasets of the shared data folder (``$TABXFER_DATA_DIR``, default ``../shared/data``), each
bound to the loader that reads it. ``tabxfer data check-shared`` loads every one and prints its drop report.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tabxfer.data.schema import DropReport

ZONES = "nyc_tlc_taxi_zones/taxi_zone_centroids.parquet"


def default_data_dir() -> Path:
    return Path(os.environ.get("TABXFER_DATA_DIR", Path.cwd().parent / "shared" / "data"))


def trip_datasets(root: str | os.PathLike[str]) -> dict[str, Any]:
    """name -> source object for every trip dataset of the shared folder (nothing is read yet)."""
    from tabxfer.data import sources as S

    r = Path(root)
    zones = r / ZONES
    return {
        "nyc_taxi_trip_duration_kaggle": S.KaggleNYCTaxi(paths=r / "nyc_taxi_trip_duration_kaggle"),
        "nyc_tlc_green_trips": S.TLCTrips(paths=r / "nyc_tlc_green_trips", zone_table=zones),
        "nyc_tlc_yellow_2015_2016_head_samples": S.TLCTrips(
            paths=r / "nyc_tlc_yellow_2015_2016_head_samples"
        ),
        "citibike_jersey_city_trips": S.CitiBikeTrips(paths=r / "citibike_jersey_city_trips"),
        "chicago_taxi_tfx": S.ChicagoTaxiTrips(paths=r / "chicago_taxi_tfx"),
        "statsmaths_nyc_taxi_duration": S.StatsmathsNYCTaxi(paths=r / "statsmaths_nyc_taxi_duration"),
        "seaborn_nyc_taxis_2019_03/taxis": S.SeabornTaxis(
            paths=r / "seaborn_nyc_taxis_2019_03/taxis.parquet", zone_table=zones
        ),
        "seaborn_nyc_taxis_2019_03/taxis_raw": S.TLCTrips(
            paths=r / "seaborn_nyc_taxis_2019_03/taxis_raw.parquet", zone_table=zones
        ),
    }


def table_datasets(root: str | os.PathLike[str]) -> dict[str, Callable[[], Any]]:
    """The shared folder's non-trip tables (zones, weather): name -> loader."""
    from tabxfer.data.weather import load_daily_weather
    from tabxfer.data.zones import load_zone_table

    r = Path(root)
    return {
        "nyc_tlc_taxi_zones": lambda: load_zone_table(r / ZONES),
        "nyc_weather_centralpark_2016": lambda: load_daily_weather(
            r / "nyc_weather_centralpark_2016/weather_data_nyc_centralpark_2016.parquet"
        ),
    }


def check_shared(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Load every shared dataset; one result row each (report, seconds; or the error)."""
    rows: list[dict[str, Any]] = []
    for name, src in trip_datasets(root).items():
        t0 = time.perf_counter()
        try:
            _, rep = src.load()
            rows.append({"dataset": name, "report": rep, "seconds": time.perf_counter() - t0})
        except Exception as e:  # reported per dataset; the command fails at the end
            rows.append(
                {"dataset": name, "error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t0}
            )
    for name, load in table_datasets(root).items():
        t0 = time.perf_counter()
        try:
            df = load()
            rep = DropReport(source=name, n_in=df.height, n_out=df.height)
            rows.append({"dataset": name, "report": rep, "seconds": time.perf_counter() - t0})
        except Exception as e:
            rows.append(
                {"dataset": name, "error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t0}
            )
    return rows
