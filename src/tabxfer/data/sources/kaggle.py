"""Kaggle "New York City Taxi Trip Duration" train/test files (CSV or Parquet).

Columns: ``id, vendor_id, pickup_datetime, dropoff_datetime, passenger_count, pickup_longitude,
pickup_latitude, dropoff_longitude, dropoff_latitude, store_and_fwd_flag, trip_duration``; the test file
lacks ``dropoff_datetime`` and ``trip_duration`` (load it with ``labeled=False``).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import polars as pl

from tabxfer.data.schema import DataError
from tabxfer.data.sources.base import RowParser, TripSource

DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
)
LOCAL_TZ = "America/New_York"  # time-zone-aware (e.g. UTC) Parquet datetimes are converted to it


@dataclasses.dataclass
class KaggleNYCTaxi(TripSource):
    """The fine-tuning target. ``trip_duration`` is the label; when absent it is dropoff - pickup.

    >>> src = KaggleNYCTaxi(paths="train.csv")  # doctest: +SKIP
    >>> df, report = src.load()  # doctest: +SKIP
    """

    name: ClassVar[str] = "kaggle_nyc"
    city: ClassVar[str] = "nyc"
    mode: ClassVar[str] = "taxi"
    has_ids: ClassVar[bool] = True
    extra: ClassVar[dict[str, pl.DataType]] = {"store_and_fwd_flag": pl.String()}
    typed_columns: ClassVar[tuple[str, ...]] = (
        "pickup_latitude",
        "pickup_longitude",
        "dropoff_latitude",
        "dropoff_longitude",
        "passenger_count",
        "trip_duration",
    )

    def parse(self, p: RowParser) -> list[pl.Expr]:
        pickup = p.datetime(p.require("pickup_datetime"), "pickup_time", DATETIME_FORMATS, LOCAL_TZ)
        exprs = [
            p.string(p.require("id"), "trip_id"),
            p.string(p.require("vendor_id"), "vendor"),
            pickup,
            p.float(p.require("pickup_latitude"), "pickup_lat"),
            p.float(p.require("pickup_longitude"), "pickup_lon"),
            p.float(p.require("dropoff_latitude"), "dropoff_lat"),
            p.float(p.require("dropoff_longitude"), "dropoff_lon"),
            p.int(p.require("passenger_count"), "passenger_count", pl.Int16()),
            p.string(p.find("store_and_fwd_flag"), "store_and_fwd_flag"),
        ]
        dur_col, drop_col = p.find("trip_duration"), p.find("dropoff_datetime")
        if dur_col is not None:
            exprs.append(p.float(dur_col, "duration_s"))
        elif drop_col is not None:
            dropoff = p.datetime(drop_col, "dropoff_time", DATETIME_FORMATS, LOCAL_TZ)
            exprs.append(((dropoff - pickup).dt.total_microseconds() / 1e6).alias("duration_s"))
        elif self.labeled:
            raise DataError(
                "no trip_duration or dropoff_datetime column (a Kaggle test file?); "
                "load unlabeled files with labeled=False",
                file=str(p.path),
            )
        return exprs
