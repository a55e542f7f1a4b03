"""The Kaggle and TLC loaders on the real files in the shared data folder (skipped when it is absent).

Row counts are those of each folder's PROVENANCE.md; the kept counts were measured (2026-11, polars 2.1)
and are checked with a small tolerance, while every drop count that can be recomputed from the raw files
independently of the loader (durations over 6 h, unknown zones, 0/0 coordinates) is checked exactly.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from factories import require_dataset
from tabxfer.data.cities import city_bounds
from tabxfer.data.sources import KaggleNYCTaxi, TLCTrips

pytestmark = pytest.mark.real_data

NYC = city_bounds("nyc")
SIX_HOURS = 6 * 3600


def assert_kept_rows_are_sane(df: pl.DataFrame) -> None:
    for c in ("pickup_lat", "dropoff_lat"):
        assert df[c].is_between(NYC.lat_min, NYC.lat_max).all(), c
    for c in ("pickup_lon", "dropoff_lon"):
        assert df[c].is_between(NYC.lon_min, NYC.lon_max).all(), c
    assert df["pickup_time"].null_count() == 0
    assert df["duration_s"].is_between(1, SIX_HOURS).all()
    assert df["trip_id"].n_unique() == df.height


def zone_table(root: Path) -> Path:
    return require_dataset(root, "nyc_tlc_taxi_zones") / "taxi_zone_centroids.parquet"


def unknown_zone_rows(raw: pl.DataFrame, zones: Path) -> int:
    ids = pl.read_parquet(zones)["LocationID"].unique().implode()
    pu, do = (pl.col(c).cast(pl.Int64) for c in ("PULocationID", "DOLocationID"))
    return raw.filter(~pu.is_in(ids) | ~do.is_in(ids)).height


def test_kaggle_folder(shared_data):
    folder = require_dataset(shared_data, "nyc_taxi_trip_duration_kaggle")
    raw = pl.scan_parquet(folder / "*.parquet").collect()
    df, report = KaggleNYCTaxi(folder).load()

    assert len(report.files) == 4
    assert report.n_in == raw.height == 66_235  # 61,574 + 4,200 + 253 + 208
    assert abs(report.n_out - 65_910) <= 30
    assert report.n_in == report.n_out + report.n_dropped
    assert report.dropped["duration_too_long"] == (raw["trip_duration"] > SIX_HOURS).sum()  # 94
    # 222 ids occur in two of the samples; each repeat is dropped (unless dropped for another reason)
    repeats = report.dropped.get("duplicate_id", 0) + report.dropped.get("duplicate_row", 0)
    assert raw.height - raw["id"].n_unique() - 5 <= repeats <= raw.height - raw["id"].n_unique()
    assert_kept_rows_are_sane(df)

    # the kept values are the raw values
    joined = df.join(raw, left_on="trip_id", right_on="id", how="left").unique("trip_id", keep="first")
    assert joined["pickup_datetime"].null_count() == 0
    assert (joined["pickup_time"] == joined["pickup_datetime"]).all()
    assert (joined["duration_s"] == joined["trip_duration"].cast(pl.Float64)).all()
    assert (joined["vendor"] == joined["vendor_id"].cast(pl.String)).all()


def test_tlc_green_folder(shared_data):
    folder = require_dataset(shared_data, "nyc_tlc_green_trips")
    zones = zone_table(shared_data)
    files = sorted(folder.glob("*.parquet"))
    raw = pl.concat(
        [pl.read_parquet(f, columns=["PULocationID", "DOLocationID"]) for f in files], how="vertical_relaxed"
    )
    df, report = TLCTrips(folder, zone_table=zones).load()

    assert len(report.files) == 9
    assert report.n_in == raw.height == 581_611
    assert abs(report.n_out - 573_551) <= 600
    assert report.dropped["unknown_zone"] == unknown_zone_rows(raw, zones)  # 5,998
    assert 1_000 < report.dropped["duration_too_long"] < 2_500  # ~180-260 a month
    assert_kept_rows_are_sane(df)
    assert df["service"].unique().to_list() == ["green"]
    assert df["coords_from_zone"].all()
    assert df["pickup_zone_id"].null_count() == 0


def test_tlc_yellow_head_samples(shared_data):
    folder = require_dataset(shared_data, "nyc_tlc_yellow_2015_2016_head_samples")
    raw = pl.concat([pl.read_parquet(f) for f in sorted(folder.glob("*.parquet"))], how="diagonal_relaxed")
    df, report = TLCTrips(folder).load()  # lat/lon era: no zone table needed

    assert report.n_in == raw.height == 8_010  # 3 x 1,999 + 2,013
    assert abs(report.n_out - 7_848) <= 20
    zero = ((pl.col("pickup_latitude") == 0) & (pl.col("pickup_longitude") == 0)) | (
        (pl.col("dropoff_latitude") == 0) & (pl.col("dropoff_longitude") == 0)
    )
    assert report.dropped["zero_coordinates"] == raw.filter(zero).height  # 142
    assert_kept_rows_are_sane(df)
    assert not df["coords_from_zone"].any()
    assert df["service"].unique().to_list() == ["yellow"]
    assert df["pickup_time"].dt.year().is_in([2015, 2016]).all()


def test_seaborn_taxis_raw(shared_data):
    path = require_dataset(shared_data, "seaborn_nyc_taxis_2019_03") / "taxis_raw.parquet"
    zones = zone_table(shared_data)
    raw = pl.read_parquet(path).with_row_index("row")
    df, report = TLCTrips(path, zone_table=zones).load()

    assert report.n_in == raw.height == 6_500
    assert abs(report.n_out - 6_421) <= 15
    assert report.dropped["unknown_zone"] == unknown_zone_rows(raw, zones)  # 56
    assert_kept_rows_are_sane(df)
    counts = dict(df["service"].value_counts().iter_rows())
    assert set(counts) == {"yellow", "green"}
    assert 5_400 <= counts["yellow"] <= 5_500
    assert 950 <= counts["green"] <= 1_000

    # each kept row is its raw row: times, service, zones, centroids
    joined = df.with_columns(row=pl.col("trip_id").str.split(":").list.last().cast(pl.UInt32)).join(
        raw, on="row"
    )
    assert joined.height == df.height
    assert (joined["pickup_time"] == joined["tpep_pickup_datetime"]).all()
    expected = (joined["tpep_dropoff_datetime"] - joined["tpep_pickup_datetime"]).dt.total_seconds()
    assert (joined["duration_s"] == expected.cast(pl.Float64)).all()
    assert (joined["service"] == joined["color"]).all()
    assert (joined["pickup_zone_id"] == joined["PULocationID"]).all()
    centroids = pl.read_parquet(zones).group_by("LocationID").agg(pl.col("centroid_lat").first(), pl.len())
    single = centroids.filter(pl.col("len") == 1)  # zones of one polygon: centroid as is
    check = joined.join(single, left_on="PULocationID", right_on="LocationID")
    assert check.height > 6_000
    assert (check["pickup_lat"] - check["centroid_lat"]).abs().max() < 1e-9
