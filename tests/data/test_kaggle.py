"""KaggleNYCTaxi on small files written here: every format variant, every drop reason, every file error."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from factories import KAGGLE_T0, kaggle_row
from tabxfer.data.cities import city_bounds
from tabxfer.data.schema import CORE_COLUMNS, CORE_SCHEMA, DataError
from tabxfer.data.sources import KaggleNYCTaxi

HEADER = [
    "id",
    "vendor_id",
    "pickup_datetime",
    "dropoff_datetime",
    "passenger_count",
    "pickup_longitude",
    "pickup_latitude",
    "dropoff_longitude",
    "dropoff_latitude",
    "store_and_fwd_flag",
    "trip_duration",
]
TEST_HEADER = [c for c in HEADER if c not in ("dropoff_datetime", "trip_duration")]
T0 = KAGGLE_T0


trip = kaggle_row


def write_csv(path: Path, rows: list, header: list[str] = HEADER) -> Path:
    """Rows are dicts (written in ``header`` order) or raw lists of fields (written as they are)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([r[c] for c in header] if isinstance(r, dict) else r)
    return path


def data_error(fn, path: Path | str) -> DataError:
    """Run ``fn``; it must raise a DataError whose file (attribute and message) is ``path``."""
    with pytest.raises(DataError) as info:
        fn()
    assert info.value.file == str(path)
    assert str(path) in str(info.value)
    return info.value


def assert_report_adds_up(report, n_rows: int) -> None:
    assert report.n_in == n_rows
    assert report.n_in == report.n_out + sum(report.dropped.values())


# --- well-formed files ------------------------------------------------------------------------------


def test_train_csv_maps_every_column(tmp_path):
    path = write_csv(tmp_path / "train.csv", [trip(0), trip(1, passenger_count="0", store_and_fwd_flag="Y")])
    df, report = KaggleNYCTaxi(path).load()

    assert df.columns == [*CORE_COLUMNS, "store_and_fwd_flag"]
    assert {c: df.schema[c] for c in CORE_COLUMNS} == CORE_SCHEMA
    first = df.row(0, named=True)
    assert first == {
        "trip_id": "id0000",
        "source": "kaggle_nyc",
        "city": "nyc",
        "mode": "taxi",
        "vendor": "1",
        "pickup_time": T0,
        "pickup_lat": 40.767937,
        "pickup_lon": -73.982155,
        "dropoff_lat": 40.765602,
        "dropoff_lon": -73.96463,
        "passenger_count": 1,
        "duration_s": 400.0,
        "store_and_fwd_flag": "N",
    }
    # zero passengers occur in the real data and are kept
    assert df.row(1, named=True)["passenger_count"] == 0
    assert df.row(1, named=True)["store_and_fwd_flag"] == "Y"
    assert (report.n_in, report.n_out, report.dropped, report.files) == (2, 2, {}, [str(path)])


def test_train_parquet_loads_like_the_csv(tmp_path):
    rows = [trip(i) for i in range(4)]
    csv_path = write_csv(tmp_path / "train.csv", rows)
    typed = pl.read_csv(csv_path, infer_schema=False).with_columns(
        pl.col("vendor_id", "passenger_count", "trip_duration").cast(pl.Int64),
        pl.col("pickup_datetime", "dropoff_datetime").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S"),
        pl.col("^.*_(longitude|latitude)$").cast(pl.Float64),
    )
    pq_path = tmp_path / "train.parquet"
    typed.write_parquet(pq_path)

    from_csv, _ = KaggleNYCTaxi(csv_path).load()
    from_pq, report = KaggleNYCTaxi(pq_path).load()
    assert_frame_equal(from_pq, from_csv)
    assert (report.n_in, report.n_out) == (4, 4)


def test_unlabeled_test_file_needs_labeled_false(tmp_path):
    path = write_csv(tmp_path / "test.csv", [trip(0), trip(1)], header=TEST_HEADER)

    df, report = KaggleNYCTaxi(path, labeled=False).load()
    assert df["trip_id"].to_list() == ["id0000", "id0001"]
    assert df["duration_s"].is_null().all()
    assert df["pickup_time"].to_list() == [T0, T0 + dt.timedelta(minutes=1)]
    assert (report.n_in, report.n_out, report.dropped) == (2, 2, {})

    err = data_error(lambda: KaggleNYCTaxi(path).load(), path)
    assert "labeled=False" in str(err)


def test_unlabeled_rows_are_still_validated(tmp_path):
    rows = [trip(0), trip(1, pickup_latitude="0", pickup_longitude="0"), trip(2, passenger_count="x")]
    path = write_csv(tmp_path / "test.csv", rows, header=TEST_HEADER)
    df, report = KaggleNYCTaxi(path, labeled=False).load()
    assert df["trip_id"].to_list() == ["id0000"]
    assert report.dropped == {"zero_coordinates": 1, "unparseable:passenger_count": 1}


def test_duration_is_dropoff_minus_pickup_without_trip_duration(tmp_path):
    header = [c for c in HEADER if c != "trip_duration"]
    rows = [
        trip(0, dropoff_datetime="2016-03-14 17:06:40.5"),
        trip(1, dropoff_datetime="2016-03-14 17:00:59"),  # before the pickup (17:01:00)
        trip(2, dropoff_datetime="soon"),
        trip(3, dropoff_datetime="2016-03-14T17:13:00"),
    ]
    path = write_csv(tmp_path / "train_no_duration.csv", rows, header=header)
    df, report = KaggleNYCTaxi(path).load()

    assert df["trip_id"].to_list() == ["id0000", "id0003"]
    assert df["duration_s"].to_list() == [400.5, 600.0]
    assert report.dropped == {"nonpositive_duration": 1, "unparseable:dropoff_time": 1}
    assert report.examples["unparseable:dropoff_time"] == [(str(path), 2, "soon")]
    assert report.examples["nonpositive_duration"] == [(str(path), 1, None)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-03-14 17:24:55", dt.datetime(2016, 3, 14, 17, 24, 55)),
        ("2016-03-14T17:24:55", dt.datetime(2016, 3, 14, 17, 24, 55)),
        ("2016-03-14 17:24:55.250", dt.datetime(2016, 3, 14, 17, 24, 55, 250000)),
        ("2016-03-14T17:24:55.5", dt.datetime(2016, 3, 14, 17, 24, 55, 500000)),
        ("  2016-03-14 17:24:55 ", dt.datetime(2016, 3, 14, 17, 24, 55)),
    ],
)
def test_datetime_variants(tmp_path, text, expected):
    path = write_csv(tmp_path / "train.csv", [trip(0, pickup_datetime=text)])
    df, report = KaggleNYCTaxi(path).load()
    assert report.dropped == {}
    assert df["pickup_time"].to_list() == [expected]


def test_datetime_formats_may_mix_within_a_file(tmp_path):
    texts = ["2016-03-14 17:00:00", "2016-03-14T17:01:00", "2016-03-14 17:02:00.75", "2016-03-14T17:03:00.25"]
    path = write_csv(tmp_path / "train.csv", [trip(i, pickup_datetime=t) for i, t in enumerate(texts)])
    df, report = KaggleNYCTaxi(path).load()
    assert report.dropped == {}
    assert df["pickup_time"].to_list() == [
        dt.datetime(2016, 3, 14, 17, 0),
        dt.datetime(2016, 3, 14, 17, 1),
        dt.datetime(2016, 3, 14, 17, 2, 0, 750000),
        dt.datetime(2016, 3, 14, 17, 3, 0, 250000),
    ]


def test_headers_are_matched_ignoring_case_and_padding(tmp_path):
    rows = [trip(0), trip(1)]
    plain, _ = KaggleNYCTaxi(write_csv(tmp_path / "plain.csv", rows)).load()
    odd_header = [f"  {c.upper()} " if i % 2 else c.title() for i, c in enumerate(HEADER)]
    odd_rows = [[r[c] for c in HEADER] for r in rows]
    odd, report = KaggleNYCTaxi(write_csv(tmp_path / "odd.csv", odd_rows, header=odd_header)).load()
    assert_frame_equal(odd, plain)
    assert report.dropped == {}


def test_tz_aware_parquet_is_converted_to_new_york_wall_time(tmp_path):
    rows = [trip(0), trip(1)]
    naive = pl.read_csv(write_csv(tmp_path / "train.csv", rows), infer_schema=False)
    expected, _ = KaggleNYCTaxi(tmp_path / "train.csv").load()
    for tz in ("America/New_York", "UTC", "Asia/Tokyo"):
        aware = naive.with_columns(
            pl.col("pickup_datetime", "dropoff_datetime")
            .str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S")
            .dt.replace_time_zone("America/New_York")
            .dt.convert_time_zone(tz)
        )
        path = tmp_path / f"aware_{tz.replace('/', '_')}.parquet"
        aware.write_parquet(path)
        df, _ = KaggleNYCTaxi(path).load()
        assert df["pickup_time"].dtype == pl.Datetime("us")  # naive
        assert df["pickup_time"].to_list() == expected["pickup_time"].to_list(), tz


# --- bad rows: counted drops, findable by file and row -----------------------------------------------


def test_every_bad_row_is_counted_with_its_reason_and_row(tmp_path):
    rows = [
        trip(0),
        trip(1, pickup_datetime="not a date"),
        trip(2, trip_duration="0"),
        trip(3, trip_duration="-30"),
        trip(4, trip_duration="21601"),  # > 6 h
        trip(5, pickup_longitude="0", pickup_latitude="0"),
        trip(6, dropoff_longitude="0.0", dropoff_latitude="0.0"),
        trip(7, pickup_latitude="25.761681", pickup_longitude="-80.191788"),  # Miami
        trip(8, passenger_count="abc"),
        trip(9, passenger_count="3.5"),
        trip(10, id="id0000"),  # an id seen before, other data
        trip(0),  # a repeated row
        trip(12, passenger_count="10"),
        trip(13, trip_duration="0.5"),
        trip(14, dropoff_latitude=""),
        trip(15, dropoff_longitude="-73.786533", dropoff_latitude="40.646985", trip_duration="60"),  # JFK
        trip(16),
        trip(17, passenger_count="2.0"),  # an integer written as a float: fine
    ]
    path = write_csv(tmp_path / "train.csv", rows)
    df, report = KaggleNYCTaxi(path).load()

    assert df["trip_id"].to_list() == ["id0000", "id0016", "id0017"]
    assert df["passenger_count"].to_list() == [1, 5, 2]
    assert report.dropped == {
        "unparseable:pickup_time": 1,
        "nonpositive_duration": 2,
        "duration_too_long": 1,
        "zero_coordinates": 2,
        "coordinates_out_of_city": 1,
        "unparseable:passenger_count": 2,
        "duplicate_id": 1,
        "duplicate_row": 1,
        "bad_passenger_count": 1,
        "duration_too_short": 1,
        "missing_coordinates": 1,
        "implausible_speed": 1,
    }
    assert_report_adds_up(report, len(rows))
    f = str(path)
    assert report.examples["unparseable:pickup_time"] == [(f, 1, "not a date")]
    assert report.examples["nonpositive_duration"] == [(f, 2, None), (f, 3, None)]
    assert report.examples["duration_too_long"] == [(f, 4, None)]
    assert report.examples["zero_coordinates"] == [(f, 5, None), (f, 6, None)]
    assert report.examples["coordinates_out_of_city"] == [(f, 7, None)]
    assert report.examples["unparseable:passenger_count"] == [(f, 8, "abc"), (f, 9, "3.5")]
    assert report.examples["duplicate_id"] == [(f, 10, None)]
    assert report.examples["duplicate_row"] == [(f, 11, None)]
    assert report.examples["bad_passenger_count"] == [(f, 12, None)]
    assert report.examples["duration_too_short"] == [(f, 13, None)]
    assert report.examples["missing_coordinates"] == [(f, 14, None)]
    assert report.examples["implausible_speed"] == [(f, 15, None)]
    # the same counts without keeping rows
    quick = KaggleNYCTaxi(path).drop_report()
    assert (quick.n_in, quick.n_out, quick.dropped) == (report.n_in, report.n_out, report.dropped)


def test_a_copy_dropped_for_another_reason_does_not_make_the_good_copy_a_duplicate(tmp_path):
    rows = [
        trip(0, trip_duration="0"),  # dropped: nonpositive duration
        trip(0, vendor_id="2"),  # same id, good: kept
        trip(2, passenger_count="many"),  # dropped: unparseable
        trip(2, passenger_count=""),  # same data once parsed (null count), good: kept
    ]
    df, report = KaggleNYCTaxi(write_csv(tmp_path / "train.csv", rows)).load()
    assert df["trip_id"].to_list() == ["id0000", "id0002"]
    assert report.dropped == {"nonpositive_duration": 1, "unparseable:passenger_count": 1}


def test_rows_without_an_id_get_a_unique_row_id(tmp_path):
    rows = [trip(0, id=""), trip(1, id="  "), trip(2)]
    path = write_csv(tmp_path / "train.csv", rows)
    df, report = KaggleNYCTaxi(path).load()
    assert report.dropped == {}
    ids = df["trip_id"].to_list()
    assert None not in ids
    assert len(set(ids)) == 3
    assert ids[2] == "id0002"


def test_kept_rows_satisfy_the_schema_invariants(tmp_path):
    rows = [trip(i) for i in range(10)] + [trip(20, trip_duration="86399"), trip(21, pickup_latitude="41.2")]
    df, _ = KaggleNYCTaxi(write_csv(tmp_path / "train.csv", rows)).load()
    b = city_bounds("nyc")
    assert df.height == 10
    assert df["pickup_time"].null_count() == 0
    assert df["duration_s"].is_between(1, 6 * 3600).all()
    for c in ("pickup_lat", "dropoff_lat"):
        assert df[c].is_between(b.lat_min, b.lat_max).all()
    for c in ("pickup_lon", "dropoff_lon"):
        assert df[c].is_between(b.lon_min, b.lon_max).all()


# --- whole-file problems: DataError naming file, column, row -----------------------------------------


@pytest.mark.parametrize("method", ["load", "drop_report"])
@pytest.mark.parametrize("header", [HEADER, TEST_HEADER], ids=["train", "test"])
def test_ragged_line_with_extra_fields_is_an_error_naming_the_row(tmp_path, method, header):
    lines = [[trip(i)[c] for c in header] for i in range(3)]
    lines[1].append("surprise")
    path = write_csv(tmp_path / "ragged.csv", lines, header=header)
    src = KaggleNYCTaxi(path, labeled=header is HEADER)
    err = data_error(lambda: getattr(src, method)(), path)
    assert err.row == 1
    assert f"{len(header) + 1} fields where the header has {len(header)}" in str(err)


@pytest.mark.parametrize("method", ["load", "drop_report", "scan"])
def test_ragged_line_far_down_a_file_is_found(tmp_path, method):
    lines = [[trip(i)[c] for c in HEADER] for i in range(1500)]
    lines[1234].insert(5, "-73.9")  # an unquoted comma inside a value
    path = write_csv(tmp_path / "ragged.csv", lines)
    src = KaggleNYCTaxi(path)
    if method == "scan":  # an error (when scanning or collecting), never a silently cut line
        with pytest.raises((DataError, pl.exceptions.ComputeError)):
            src.scan().collect()
        return
    err = data_error(lambda: getattr(src, method)(), path)
    assert err.row == 1234


def test_short_line_is_never_kept(tmp_path):
    """polars reads a line with too few fields as one with empty trailing fields (the two cannot be told
    apart there), so the loader cannot refuse it; its moved values must still not pass as a trip."""
    lines = [[trip(i)[c] for c in HEADER] for i in range(3)]
    del lines[1][3]  # no dropoff_datetime: every later value moves one column left
    path = write_csv(tmp_path / "short.csv", lines)
    try:
        df, report = KaggleNYCTaxi(path).load()
    except DataError as err:  # the stricter behaviour is fine too
        assert (err.file, err.row) == (str(path), 1)
        return
    assert df["trip_id"].to_list() == ["id0000", "id0002"]
    assert report.n_in == 3
    assert [ex[:2] for exs in report.examples.values() for ex in exs] == [(str(path), 1)]


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    err = data_error(lambda: KaggleNYCTaxi(path).load(), path)
    assert "empty" in str(err)


def test_header_only_file_loads_no_rows(tmp_path):
    df, report = KaggleNYCTaxi(write_csv(tmp_path / "header.csv", [])).load()
    assert df.height == 0
    assert df.columns == [*CORE_COLUMNS, "store_and_fwd_flag"]
    assert (report.n_in, report.n_out, report.dropped) == (0, 0, {})


@pytest.mark.parametrize("column", [c for c in TEST_HEADER if c != "store_and_fwd_flag"])
def test_missing_required_column_is_an_error_naming_it(tmp_path, column):
    header = [c for c in HEADER if c != column]
    path = write_csv(tmp_path / "train.csv", [trip(0), trip(1)], header=header)
    err = data_error(lambda: KaggleNYCTaxi(path).load(), path)
    assert f"missing required column {column!r}" in str(err)


def test_optional_flag_column_may_be_missing(tmp_path):
    header = [c for c in HEADER if c != "store_and_fwd_flag"]
    df, report = KaggleNYCTaxi(write_csv(tmp_path / "train.csv", [trip(0)], header=header)).load()
    assert report.n_out == 1
    assert df["store_and_fwd_flag"].to_list() == [None]


def test_column_mostly_unparseable_is_an_error_naming_column_and_first_bad_row(tmp_path):
    rows = [trip(0), trip(1, trip_duration="7 min"), trip(2, trip_duration="8 min"), trip(3)]
    rows.append(trip(4, trip_duration="9 min"))
    path = write_csv(tmp_path / "train.csv", rows)
    err = data_error(lambda: KaggleNYCTaxi(path).load(), path)
    assert err.column == "duration_s"
    assert "column 'duration_s'" in str(err)
    assert "first at row 1: '7 min'" in str(err)
    assert "3 of 5" in str(err)


def test_half_unparseable_column_is_only_drops(tmp_path):
    rows = [trip(0), trip(1, trip_duration="7 min"), trip(2, trip_duration="8 min"), trip(3)]
    df, report = KaggleNYCTaxi(write_csv(tmp_path / "train.csv", rows)).load()
    assert report.dropped == {"unparseable:duration_s": 2}
    assert df.height == 2


def test_datetime_column_in_an_unknown_format_is_an_error(tmp_path):
    rows = [trip(i, pickup_datetime=f"14/03/2016 17:{i:02d}") for i in range(3)]
    path = write_csv(tmp_path / "train.csv", rows)
    err = data_error(lambda: KaggleNYCTaxi(path).load(), path)
    assert err.column == "pickup_time"
    assert "first at row 0: '14/03/2016 17:00'" in str(err)


# --- several files ----------------------------------------------------------------------------------


def test_list_glob_and_folder_load_the_same_rows(tmp_path):
    folder = tmp_path / "kaggle"
    folder.mkdir()
    a = write_csv(folder / "a.csv", [trip(0), trip(1, passenger_count="abc"), trip(2)])
    b = write_csv(folder / "b.csv", [trip(3), trip(4, id="id0000")])  # an id already seen in a.csv
    (folder / "README.md").write_text("not a table")

    results = [
        KaggleNYCTaxi([a, b]).load(),
        KaggleNYCTaxi(str(folder / "*.csv")).load(),
        KaggleNYCTaxi(folder).load(),
    ]
    for df, report in results:
        assert df["trip_id"].to_list() == ["id0000", "id0002", "id0003"]
        assert report.files == [str(a), str(b)]
        assert report.dropped == {"unparseable:passenger_count": 1, "duplicate_id": 1}
        assert report.examples["unparseable:passenger_count"] == [(str(a), 1, "abc")]
        assert report.examples["duplicate_id"] == [(str(b), 1, None)]
        assert_report_adds_up(report, 5)
    assert_frame_equal(results[1][0], results[0][0])
    assert_frame_equal(results[2][0], results[0][0])


def test_csv_and_parquet_files_mix(tmp_path):
    a = write_csv(tmp_path / "a.csv", [trip(0), trip(1)])
    pl.read_csv(write_csv(tmp_path / "b.csv", [trip(2)]), infer_schema=False).with_columns(
        pl.col("trip_duration").cast(pl.Int64)
    ).write_parquet(tmp_path / "b.parquet")
    df, report = KaggleNYCTaxi([a, tmp_path / "b.parquet"]).load()
    assert report.files == [str(a), str(tmp_path / "b.parquet")]
    assert (report.n_in, report.n_out) == (3, 3)
    assert df["trip_id"].to_list() == ["id0000", "id0001", "id0002"]
    assert df["duration_s"].to_list() == [400.0, 401.0, 402.0]


@pytest.mark.parametrize("paths", ["nowhere.csv", "nothing-*.csv", "emptydir"])
def test_paths_that_name_no_file_are_errors(tmp_path, paths):
    (tmp_path / "emptydir").mkdir()
    target = tmp_path / paths
    data_error(lambda: KaggleNYCTaxi(str(target)).load(), target)


# --- laziness and identity --------------------------------------------------------------------------


def test_scan_is_lazy_and_yields_the_loaded_rows(tmp_path):
    rows = [trip(0), trip(1, trip_duration="-1"), trip(2), trip(0)]
    path = write_csv(tmp_path / "train.csv", rows)
    src = KaggleNYCTaxi(path)
    lf = src.scan()
    assert isinstance(lf, pl.LazyFrame)
    df, _ = src.load()
    assert_frame_equal(lf.collect(), df)

    # nothing was read yet when scan() returned: new rows written afterwards are what it yields
    lf = src.scan()
    write_csv(path, [trip(5), trip(6)])
    assert lf.collect()["trip_id"].to_list() == ["id0005", "id0006"]


def test_describe_changes_when_a_file_changes(tmp_path):
    path = write_csv(tmp_path / "train.csv", [trip(0), trip(1)])
    src = KaggleNYCTaxi(path)
    before = src.describe()
    json.dumps(before)  # a fingerprint input: must serialize
    assert src.describe() == before
    assert KaggleNYCTaxi(path, labeled=False).describe() != before

    text = path.read_text()
    path.write_text(text.replace(",401\n", ",402\n"))  # same size, other content
    after = src.describe()
    assert after["files"][0]["size"] == before["files"][0]["size"]
    assert after != before

    path.write_text(text)
    assert src.describe() == before
