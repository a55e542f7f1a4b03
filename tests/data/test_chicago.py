"""ChicagoTaxiTrips: the snake_case (tfx/BigQuery) and the portal-export layouts, CSV and Parquet."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import polars as pl
import pytest

from factories import require_dataset, write_table
from tabxfer.data.schema import CORE_COLUMNS, DataError
from tabxfer.data.sources import ChicagoTaxiTrips

FORMATS = ("csv", "parquet")

TFX_HEADER = [
    "pickup_community_area", "fare", "trip_start_month", "trip_start_hour", "trip_start_day",
    "trip_start_timestamp", "pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude",
    "trip_miles", "pickup_census_tract", "dropoff_census_tract", "payment_type", "company", "trip_seconds",
    "dropoff_community_area", "tips",
]  # fmt: skip
PORTAL_HEADER = [
    "Trip ID", "Taxi ID", "Trip Start Timestamp", "Trip End Timestamp", "Trip Seconds", "Trip Miles",
    "Pickup Census Tract", "Dropoff Census Tract", "Pickup Community Area", "Dropoff Community Area",
    "Fare", "Tips", "Tolls", "Extras", "Trip Total", "Payment Type", "Company",
    "Pickup Centroid Latitude", "Pickup Centroid Longitude", "Pickup Centroid Location",
    "Dropoff Centroid Latitude", "Dropoff Centroid Longitude", "Dropoff Centroid  Location",
]  # fmt: skip

LOOP = ("41.880994", "-87.632746")  # community area 32 (the Loop)
NEAR_NORTH = ("41.900266", "-87.632109")  # community area 8
# 1400269500 = 2014-05-16 19:45 in Chicago's wall time (a Friday: trip_start_day 6)
T1, T1_WALL = "1400269500", dt.datetime(2014, 5, 16, 19, 45)
T2, T2_WALL = "1362683700", dt.datetime(2013, 3, 7, 19, 15)  # a Thursday


def tfx_row(
    ts: str,
    secs: str,
    *,
    parts: tuple[str, str, str] | None = None,
    pickup: tuple[str, str] = LOOP,
    dropoff: tuple[str, str] = NEAR_NORTH,
    fare: str = "7.25",
    payment: str = "Credit Card",
) -> list[str]:
    month, hour, day = parts or {T1: ("5", "19", "6"), T2: ("3", "19", "5")}.get(ts, ("", "", ""))
    return [
        "32", fare, month, hour, day, ts, *pickup, *dropoff,
        "1.5", "", "17031081000", payment, "Taxi Affiliation Services", secs, "8", "1.5",
    ]  # fmt: skip


def portal_row(
    trip_id: str, start: str, secs: str, *, fare: str = "$12.25", dropoff: tuple[str, str] = NEAR_NORTH
) -> list[str]:
    return [
        trip_id, "taxi-9", start, "", secs, "3.5", "", "", "32", "8",
        fare, "$2.00", "$0.00", "$1.00", "$15.25", "Mobile", "Flash Cab",
        *LOOP, "POINT (-87.632746 41.880994)", *dropoff, "POINT (...)",
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", FORMATS)
def test_tfx_layout(tmp_path: Path, fmt: str) -> None:
    rows = [tfx_row(T1, "480"), tfx_row(T2, "1,080", payment="Cash", fare="$1,012.50")]
    path = write_table(tmp_path, "tfx", TFX_HEADER, rows, fmt)
    df, report = ChicagoTaxiTrips(paths=path).load()
    assert (report.n_in, report.n_out, report.dropped) == (2, 2, {})
    assert df.columns[: len(CORE_COLUMNS)] == list(CORE_COLUMNS)
    assert df["pickup_time"].to_list() == [T1_WALL, T2_WALL]
    assert df["duration_s"].to_list() == [480.0, 1080.0]
    assert df["fare_amount"].to_list() == [7.25, 1012.5]
    assert df["trip_distance_km"].to_list() == pytest.approx([1.5 * 1.609344] * 2)
    assert df["payment_method"].to_list() == ["credit card", "cash"]
    assert df["payment_type"].to_list() == [1, 2]
    assert df["pickup_community_area"].to_list() == [32, 32]
    assert df["dropoff_community_area"].dtype == pl.Int16
    assert set(df["vendor"]) == {"Taxi Affiliation Services"}
    assert set(df["city"]) == {"chicago"} and set(df["mode"]) == {"taxi"}
    assert df["passenger_count"].null_count() == 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_portal_layout(tmp_path: Path, fmt: str) -> None:
    rows = [
        portal_row("a1", "05/16/2014 07:45:00 PM", "480"),
        portal_row("a2", "03/07/2013 12:15:00 AM", "1,080", fare="$1,012.50"),
    ]
    path = write_table(tmp_path, "Taxi_Trips", PORTAL_HEADER, rows, fmt)
    df, report = ChicagoTaxiTrips(paths=path).load()
    assert (report.n_in, report.n_out, report.dropped) == (2, 2, {})
    assert df["trip_id"].to_list() == ["a1", "a2"]
    assert df["taxi_id"].to_list() == ["taxi-9"] * 2
    assert df["pickup_time"].to_list() == [T1_WALL, dt.datetime(2013, 3, 7, 0, 15)]
    assert df["duration_s"].to_list() == [480.0, 1080.0]
    assert df["fare_amount"].to_list() == [12.25, 1012.5]
    assert df["tip_amount"].to_list() == [2.0, 2.0]
    assert df["payment_method"].to_list() == ["mobile"] * 2
    assert df["payment_type"].null_count() == 2  # no TLC code for "mobile"
    assert df["pickup_lat"].to_list() == [41.880994] * 2
    assert df["dropoff_lat"].to_list() == [41.900266] * 2
    assert set(df["vendor"]) == {"Flash Cab"}


def test_datetime_typed_start(tmp_path: Path) -> None:
    """A Parquet/BigQuery export with a (UTC-labelled) timestamp column keeps Chicago's wall time."""
    rows = [tfx_row(T1, "480")]
    path = write_table(tmp_path, "bq", TFX_HEADER, rows, "parquet")
    df = pl.read_parquet(path).with_columns(
        pl.lit(T1_WALL).dt.replace_time_zone("UTC").alias("trip_start_timestamp")
    )
    df.write_parquet(path)
    out, report = ChicagoTaxiTrips(paths=path).load()
    assert report.n_out == 1 and out["pickup_time"].to_list() == [T1_WALL]


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_rows_are_dropped_with_reasons(tmp_path: Path, fmt: str) -> None:
    rows = [
        tfx_row(T1, "480"),  # kept
        tfx_row(T2, "600"),  # kept
        tfx_row(T1, "480"),  # duplicate of row 0
        tfx_row(T1, "0"),
        tfx_row(T1, "-60"),
        tfx_row(T1, ""),
        tfx_row(T1, "480", dropoff=("", "")),
        tfx_row(T1, "480", pickup=("0", "0")),
        tfx_row("yesterday", "480", parts=("5", "19", "6")),
        tfx_row(T1, "480", parts=("5", "20", "6")),  # hour disagrees with the timestamp
        tfx_row(T1, "480", fare="twelve"),
        tfx_row(T1, "10"),  # 2.1 km in 10 s
    ]
    path = write_table(tmp_path, "tfx", TFX_HEADER, rows, fmt)
    df, report = ChicagoTaxiTrips(paths=path).load()
    assert report.n_out == 2 == df.height
    assert report.dropped == {
        "duplicate_row": 1,
        "nonpositive_duration": 2,
        "missing_duration": 1,
        "missing_coordinates": 1,
        "zero_coordinates": 1,
        "unparseable:pickup_time": 1,
        "start_time_mismatch": 1,
        "unparseable:fare_amount": 1,
        "implausible_speed": 1,
    }
    assert report.n_in == report.n_out + sum(report.dropped.values()) == len(rows)
    assert report.examples["unparseable:pickup_time"] == [(str(path), 8, "yesterday")]


def test_portal_bad_rows(tmp_path: Path) -> None:
    rows = [
        portal_row("a1", "05/16/2014 07:45:00 PM", "480"),
        portal_row("a1", "05/16/2014 08:45:00 PM", "480"),  # same trip id
        portal_row("a3", "05/16/2014 07:45:00 XM", "480"),
        portal_row("a4", "05/16/2014 07:45:00 PM", "480", dropoff=("", "")),
        portal_row("a5", "05/16/2014 07:45:00 PM", "4 min"),
    ]
    path = write_table(tmp_path, "Taxi_Trips", PORTAL_HEADER, rows, "csv")
    df, report = ChicagoTaxiTrips(paths=path).load()
    assert df["trip_id"].to_list() == ["a1"]
    assert report.dropped == {
        "duplicate_id": 1,
        "unparseable:pickup_time": 1,
        "missing_coordinates": 1,
        "unparseable:duration_s": 1,
    }


def test_timestamps_shifted_from_local_time_are_an_error(tmp_path: Path) -> None:
    utc = str(int(T1) + 5 * 3600)  # the same start, converted to true UTC
    path = write_table(tmp_path, "tfx", TFX_HEADER, [tfx_row(utc, "480", parts=("5", "19", "6"))] * 3, "csv")
    with pytest.raises(DataError, match="trip_start_hour") as err:
        ChicagoTaxiTrips(paths=path).load()
    assert str(path) in str(err.value) and "trip_start_timestamp" in str(err.value)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("header", "column"),
    [
        (TFX_HEADER, "dropoff_latitude"),
        (TFX_HEADER, "trip_start_timestamp"),
        (TFX_HEADER, "trip_seconds"),
        (PORTAL_HEADER, "Pickup Centroid Longitude"),
        (PORTAL_HEADER, "Trip Start Timestamp"),
    ],
)
def test_missing_required_column_names_file_and_column(
    tmp_path: Path, header: list[str], column: str, fmt: str
) -> None:
    rows = (
        [tfx_row(T1, "480")] if header is TFX_HEADER else [portal_row("a1", "05/16/2014 07:45:00 PM", "480")]
    )
    keep = [i for i, h in enumerate(header) if h != column]
    path = write_table(tmp_path, "x", [header[i] for i in keep], [[r[i] for i in keep] for r in rows], fmt)
    with pytest.raises(DataError) as err:
        ChicagoTaxiTrips(paths=path).load()
    msg = str(err.value).lower()
    assert str(path).lower() in msg
    assert column.lower().replace(" ", "_").replace("centroid_", "") in msg


def test_unlabeled_without_trip_seconds(tmp_path: Path) -> None:
    keep = [i for i, h in enumerate(TFX_HEADER) if h != "trip_seconds"]
    row = tfx_row(T1, "480")
    path = write_table(tmp_path, "x", [TFX_HEADER[i] for i in keep], [[row[i] for i in keep]], "csv")
    df, report = ChicagoTaxiTrips(paths=path, labeled=False).load()
    assert report.n_out == 1 and df["duration_s"].to_list() == [None]


@pytest.mark.real_data
def test_real_tfx_files(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = require_dataset(shared_data, "chicago_taxi_tfx")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df, report = ChicagoTaxiTrips(paths=folder).load()
    assert len(report.files) == 3
    assert report.n_in == 30_002
    assert report.n_in == report.n_out + sum(report.dropped.values())
    # the two tfx testdata files re-sample the pipeline file's pool: 7,418 rows repeat a row there
    assert 6_000 < report.dropped["duplicate_row"] <= 7_418
    distinct = report.n_in - report.dropped["duplicate_row"]
    assert report.n_out > 0.9 * distinct
    assert 0.017 * distinct < report.dropped["missing_coordinates"] < 0.05 * distinct
    assert report.dropped["nonpositive_duration"] > 0  # trip_seconds == 0, about 3 %
    assert "start_time_mismatch" not in report.dropped
    assert df["pickup_time"].dt.year().is_between(2013, 2016).all()
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(
    "start", ["1400269500", "2014-05-16 19:45:00 UTC", "2014-05-16T19:45:00", "05/16/2014 07:45:00 PM"]
)
def test_start_time_strings(tmp_path: Path, start: str) -> None:
    """Digits are unix seconds of wall time; BigQuery's "... UTC" strings are wall time too."""
    path = write_table(tmp_path, "x", TFX_HEADER, [tfx_row(start, "480", parts=("5", "19", "6"))], "csv")
    df, report = ChicagoTaxiTrips(paths=path).load()
    assert report.dropped == {} and df["pickup_time"].to_list() == [T1_WALL]
