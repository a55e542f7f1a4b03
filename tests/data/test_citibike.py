"""CitiBikeTrips: every column variant as CSV and Parquet, drops with reasons, errors, the real JC files."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import polars as pl
import pytest

from factories import require_dataset, write_table
from tabxfer.data.schema import CORE_COLUMNS, DataError
from tabxfer.data.sources import CitiBikeTrips
from tabxfer.data.sources.citibike import city_from_file_name

FORMATS = ("csv", "parquet")

# Two Jersey City trips: Grove St PATH -> Hamilton Park (252 s), Hamilton Park -> Van Vorst Park (452 s).
A = ("3186", "Grove St PATH", "40.719586", "-74.043117", "3203", "Hamilton Park", "40.727596", "-74.044247")
B = ("3203", "Hamilton Park", "40.727596", "-74.044247", "3213", "Van Vorst Park", "40.718489", "-74.047727")

LEGACY_HEADER = [
    "tripduration", "starttime", "stoptime",
    "start station id", "start station name", "start station latitude", "start station longitude",
    "end station id", "end station name", "end station latitude", "end station longitude",
    "bikeid", "usertype", "birth year", "gender",
]  # fmt: skip
TITLE_HEADER = [
    "Trip Duration", "Start Time", "Stop Time",
    "Start Station ID", "Start Station Name", "Start Station Latitude", "Start Station Longitude",
    "End Station ID", "End Station Name", "End Station Latitude", "End Station Longitude",
    "Bike ID", "User Type", "Birth Year", "Gender",
]  # fmt: skip
SPLIT_HEADER = [
    "tripduration", "startdate", "starttime", "stopdate", "stoptime",
    *LEGACY_HEADER[3:],
]  # fmt: skip
MODERN_HEADER = [
    "ride_id", "rideable_type", "started_at", "ended_at",
    "start_station_name", "start_station_id", "end_station_name", "end_station_id",
    "start_lat", "start_lng", "end_lat", "end_lng", "member_casual",
]  # fmt: skip


def legacy_row(dur: str, start: str, stop: str, st: tuple[str, ...], user: str, birth: str) -> list[str]:
    return [dur, start, stop, *st, "26238", user, birth, "1"]


def split_row(
    dur: str, d: str, t: str, d2: str, t2: str, st: tuple[str, ...], user: str, birth: str
) -> list[str]:
    return [dur, d, t, d2, t2, *st, "26238", user, birth, "2"]


def modern_row(rid: str, start: str, end: str, st: tuple[str, ...], who: str) -> list[str]:
    s_id, s_name, s_lat, s_lon, e_id, e_name, e_lat, e_lon = st
    return [rid, "classic_bike", start, end, s_name, s_id, e_name, e_id, s_lat, s_lon, e_lat, e_lon, who]


VARIANTS = {
    "legacy_iso": (
        LEGACY_HEADER,
        [
            legacy_row("252", "2017-04-01 00:14:36", "2017-04-01 00:18:48", A, "Subscriber", "NULL"),
            legacy_row("452", "2017-04-01 00:15:47.1610", "2017-04-01 00:23:20.0000", B, "Customer", "1962"),
        ],
        [dt.datetime(2017, 4, 1, 0, 14, 36), dt.datetime(2017, 4, 1, 0, 15, 47, 161000)],
    ),
    "title_case": (
        TITLE_HEADER,
        [
            legacy_row("252", "2017-02-01 00:14:36", "2017-02-01 00:18:48", A, "Subscriber", "1988"),
            legacy_row("452", "2017-02-01 00:15:47", "2017-02-01 00:23:20", B, "Customer", ""),
        ],
        [dt.datetime(2017, 2, 1, 0, 14, 36), dt.datetime(2017, 2, 1, 0, 15, 47)],
    ),
    "month_day_year": (
        LEGACY_HEADER,
        [
            legacy_row("252", "12/1/2017 0:14", "12/1/2017 0:18", A, "Subscriber", "1988"),
            legacy_row("452", "12/11/2017 13:05:07", "12/11/2017 13:12:39", B, "Customer", "1962"),
        ],
        [dt.datetime(2017, 12, 1, 0, 14), dt.datetime(2017, 12, 11, 13, 5, 7)],
    ),
    "split_date_time": (
        SPLIT_HEADER,
        [
            split_row("252", "12/1/2018", "0:03", "12/1/2018", "0:07", A, "Subscriber", "1988"),
            split_row("452", "12/31/2018", "23:55", "1/1/2019", "0:02", B, "Customer", "1962"),
        ],
        [dt.datetime(2018, 12, 1, 0, 3), dt.datetime(2018, 12, 31, 23, 55)],
    ),
    "2021_plus": (
        MODERN_HEADER,
        [
            modern_row("R1", "2021-02-01 00:14:36", "2021-02-01 00:18:48", A, "member"),
            modern_row("R2", "2021-02-01 00:15:47.5", "2021-02-01 00:23:19.5", B, "casual"),
        ],
        [dt.datetime(2021, 2, 1, 0, 14, 36), dt.datetime(2021, 2, 1, 0, 15, 47, 500000)],
    ),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_loads(tmp_path: Path, variant: str, fmt: str) -> None:
    header, rows, pickups = VARIANTS[variant]
    path = write_table(tmp_path, f"JC-2017-{variant}", header, rows, fmt)
    df, report = CitiBikeTrips(paths=path).load()

    assert (report.n_in, report.n_out, report.dropped) == (2, 2, {})
    assert df.columns[: len(CORE_COLUMNS)] == list(CORE_COLUMNS)
    assert df["pickup_time"].to_list() == pickups
    assert df["duration_s"].to_list() == [252.0, 452.0]
    assert df["pickup_lat"].to_list() == [40.719586, 40.727596]
    assert df["dropoff_lon"].to_list() == [-74.044247, -74.047727]
    assert set(df["city"]) == {"jersey_city"}
    assert set(df["mode"]) == {"bike"}
    assert set(df["vendor"]) == {"citibike"}
    assert df["passenger_count"].to_list() == [1, 1]
    assert df["user_type"].to_list() == ["member", "casual"]
    assert df["start_station_id"].to_list() == ["3186", "3203"]
    assert df["end_station_id"].to_list() == ["3203", "3213"]
    assert df.schema["birth_year"] == pl.Int16 and df.schema["gender"] == pl.Int8
    if variant == "2021_plus":
        assert df["trip_id"].to_list() == ["R1", "R2"]
        assert df["rideable_type"].to_list() == ["classic_bike"] * 2
        assert df["bike_id"].null_count() == 2
    else:
        assert df["bike_id"].to_list() == ["26238", "26238"]
        assert df["trip_id"].n_unique() == 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_optional_fields_never_drop(tmp_path: Path, fmt: str) -> None:
    rows = [
        legacy_row("252", "2017-04-01 00:14:36", "x", A, "Subscriber", "NULL"),
        legacy_row("452", "2017-04-01 00:15:47", "", B, "Dependent", "19x2"),
        legacy_row("300", "2017-04-01 00:16:00", "", A, "", "1971.0"),
    ]
    rows[1][-1] = "?"  # gender
    path = write_table(tmp_path, "JC-201704", LEGACY_HEADER, rows, fmt)
    df, report = CitiBikeTrips(paths=path).load()
    assert report.n_out == 3 and report.dropped == {}
    assert df["birth_year"].to_list() == [None, None, 1971]
    assert df["gender"].to_list() == [1, None, 1]
    assert df["user_type"].to_list() == ["member", "dependent", None]


@pytest.mark.parametrize("fmt", FORMATS)
def test_bad_rows_are_dropped_with_reasons(tmp_path: Path, fmt: str) -> None:
    zero = ("3186", "Grove St PATH", "0", "0", *A[4:])
    rows = [
        legacy_row("252", "2017-04-01 00:14:36", "", A, "Subscriber", "1988"),  # kept
        legacy_row("452", "2017-04-01 00:15:47", "", B, "Subscriber", "1962"),  # kept
        legacy_row("300", "2017-04-01 00:16:00", "", A, "Subscriber", "1970"),  # kept
        legacy_row("252", "2017-04-01 00:14:36", "", A, "Subscriber", "1988"),  # duplicate of row 0
        legacy_row("252", "not a time", "", A, "Subscriber", "1988"),
        legacy_row("-60", "2017-04-01 00:20:00", "", A, "Subscriber", "1988"),
        legacy_row("252", "2017-04-01 00:21:00", "", zero, "Subscriber", "1988"),
        legacy_row(
            "252", "2017-04-01 00:22:00", "", ("1", "far", "41.9", "-87.6", *A[4:]), "Customer", "1988"
        ),
        legacy_row("20", "2017-04-01 00:23:00", "", B, "Subscriber", "1988"),  # 1.05 km in 20 s
        legacy_row("abc", "2017-04-01 00:24:00", "", B, "Subscriber", "1988"),
    ]
    path = write_table(tmp_path, "JC-201704", LEGACY_HEADER, rows, fmt)
    df, report = CitiBikeTrips(paths=path).load()
    assert report.n_out == 3 == df.height
    assert report.dropped == {
        "duplicate_row": 1,
        "unparseable:pickup_time": 1,
        "nonpositive_duration": 1,
        "zero_coordinates": 1,
        "coordinates_out_of_city": 1,
        "implausible_speed": 1,
        "unparseable:duration_s": 1,
    }
    assert report.n_in == report.n_out + sum(report.dropped.values()) == len(rows)
    assert report.examples["unparseable:pickup_time"] == [(str(path), 4, "not a time")]


def test_split_date_time_failures_name_the_joined_value(tmp_path: Path) -> None:
    rows = [
        split_row("252", "12/1/2018", "0:03", "", "", A, "Subscriber", "1988"),
        split_row("452", "12/1/2018", "25:03", "", "", B, "Subscriber", "1988"),
        split_row("452", "", "", "", "", B, "Subscriber", "1988"),
    ]
    path = write_table(tmp_path, "JC-201812", SPLIT_HEADER, rows, "csv")
    _, report = CitiBikeTrips(paths=path).load()
    assert report.n_out == 1
    assert report.dropped == {"unparseable:pickup_time": 1, "missing_pickup_time": 1}
    assert report.examples["unparseable:pickup_time"][0][1:] == (1, "12/1/2018 25:03")


@pytest.mark.parametrize("fmt", FORMATS)
def test_2021_duration_from_timestamps_and_duplicate_ids(tmp_path: Path, fmt: str) -> None:
    rows = [
        modern_row("R1", "2021-02-01 00:14:36", "2021-02-01 00:18:48", A, "member"),
        modern_row("R1", "2021-02-01 00:30:00", "2021-02-01 00:40:00", B, "member"),  # same ride id
        modern_row("R3", "2021-02-01 00:30:00", "2021-02-01 00:20:00", B, "member"),  # ends before start
        modern_row("R4", "2021-02-01 00:30:00", "2021-02-01 00:40:00", (*B[:6], "", ""), "casual"),
        modern_row("R5", "2021-02-01 00:30:00", "not a time", B, "casual"),
    ]
    path = write_table(tmp_path, "202102-citibike-tripdata", MODERN_HEADER, rows, fmt)
    df, report = CitiBikeTrips(paths=path).load()
    assert df["trip_id"].to_list() == ["R1"]
    assert report.dropped == {
        "duplicate_id": 1,
        "nonpositive_duration": 1,
        "missing_coordinates": 1,
        "unparseable:dropoff_time": 1,
    }
    assert set(df["city"]) == {"nyc"}


def test_duplicate_of_a_dropped_row_is_kept(tmp_path: Path) -> None:
    """The first copy fails another rule: the second copy is the first good one, not a duplicate."""
    rows = [
        modern_row("R1", "2021-02-01 00:14:36", "2021-02-01 00:18:48", (*A[:6], "0", "0"), "member"),
        modern_row("R1", "2021-02-01 00:14:36", "2021-02-01 00:18:48", A, "member"),
        modern_row("R2", "2021-02-01 00:14:36", "2021-02-01 00:18:48", A, "member"),
    ]
    path = write_table(tmp_path, "202102", MODERN_HEADER, rows, "csv")
    df, report = CitiBikeTrips(paths=path).load()
    assert df["trip_id"].to_list() == ["R1"]
    assert report.dropped == {"zero_coordinates": 1, "duplicate_row": 1}


def test_city_from_file_names(tmp_path: Path) -> None:
    header, rows, _ = VARIANTS["legacy_iso"]
    jc = write_table(tmp_path, "JC-201704-citibike-tripdata", header, rows, "csv")
    ny = write_table(tmp_path, "201704-citibike-tripdata", header, rows, "parquet")
    assert city_from_file_name(jc) == "jersey_city" and city_from_file_name("jc-2017.csv") == "jersey_city"
    assert city_from_file_name(ny) == "nyc"
    assert set(CitiBikeTrips(paths=ny).load()[0]["city"]) == {"nyc"}
    with pytest.raises(DataError, match="different cities"):
        CitiBikeTrips(paths=[jc, ny]).load()
    df, report = CitiBikeTrips(paths=[jc, ny], city_name="nyc").load()
    assert set(df["city"]) == {"nyc"}
    assert report.dropped == {"duplicate_row": 2}  # the same trips in both files


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("variant", "column"),
    [
        ("legacy_iso", "start station latitude"),
        ("title_case", "End Station Longitude"),
        ("2021_plus", "start_lat"),
        ("legacy_iso", "starttime"),
    ],
)
def test_missing_required_column_names_file_and_column(
    tmp_path: Path, variant: str, column: str, fmt: str
) -> None:
    header, rows, _ = VARIANTS[variant]
    keep = [i for i, h in enumerate(header) if h != column]
    path = write_table(tmp_path, "JC-x", [header[i] for i in keep], [[r[i] for i in keep] for r in rows], fmt)
    with pytest.raises(DataError) as err:
        CitiBikeTrips(paths=path).load()
    assert str(path) in str(err.value)
    assert column.lower() in str(err.value).lower()


def test_no_duration_column(tmp_path: Path) -> None:
    header, rows, _ = VARIANTS["legacy_iso"]
    keep = [i for i, h in enumerate(header) if h not in ("tripduration", "stoptime")]
    path = write_table(
        tmp_path, "JC-x", [header[i] for i in keep], [[r[i] for i in keep] for r in rows], "csv"
    )
    with pytest.raises(DataError, match="tripduration") as err:
        CitiBikeTrips(paths=path).load()
    assert str(path) in str(err.value)
    df, report = CitiBikeTrips(paths=path, labeled=False).load()
    assert report.n_out == 2 and df["duration_s"].null_count() == 2


def test_mostly_unparseable_timestamps_is_an_error(tmp_path: Path) -> None:
    rows = [legacy_row("252", "2017-13-45 99:00", "", A, "Subscriber", "1988") for _ in range(3)]
    path = write_table(tmp_path, "JC-x", LEGACY_HEADER, rows, "csv")
    with pytest.raises(DataError, match="pickup_time") as err:
        CitiBikeTrips(paths=path).load()
    assert str(path) in str(err.value)


@pytest.mark.real_data
def test_real_jersey_city_files(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = require_dataset(shared_data, "citibike_jersey_city_trips")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df, report = CitiBikeTrips(paths=folder).load()
    assert len(report.files) == 8
    assert report.n_in == 145_741
    assert report.n_out > 0.99 * report.n_in
    assert report.n_in == report.n_out + sum(report.dropped.values())
    assert set(report.dropped) <= {"duration_too_long", "zero_coordinates", "implausible_speed"}
    assert set(df["city"]) == {"jersey_city"}
    assert df["pickup_time"].dt.year().is_between(2017, 2018).all()
    assert df["user_type"].drop_nulls().is_in(["member", "casual"]).all()
    assert df["birth_year"].null_count() > 0  # "NULL" strings: nulls, not drops
    assert capsys.readouterr() == ("", "")


def test_parquet_with_typed_timestamps(tmp_path: Path) -> None:
    """2021+ Parquet files carry Datetime columns and numeric station ids."""
    header, rows, pickups = VARIANTS["2021_plus"]
    path = write_table(tmp_path, "202102-citibike-tripdata", header, rows, "parquet")
    typed = pl.read_parquet(path).with_columns(
        pl.col("started_at", "ended_at").str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="ns")
    )
    assert typed.schema["start_station_id"] == pl.Int64
    typed.write_parquet(path)
    df, report = CitiBikeTrips(paths=path).load()
    assert report.n_out == 2
    assert df["pickup_time"].to_list() == pickups
    assert df["duration_s"].to_list() == [252.0, 452.0]
    assert df["start_station_id"].to_list() == ["3186", "3203"]
