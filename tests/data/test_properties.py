"""Property tests: rows mixing valid values with garbage never break the loaders' accounting or invariants.

Every generated file is either refused with a DataError that names it (only for a column that mostly
fails to parse), or loaded with every written row accounted for (``n_in == rows written == n_out +
dropped``), and every kept row satisfies the schema's invariants and carries the values written for it.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tabxfer.data.cities import city_bounds
from tabxfer.data.geo import haversine_km
from tabxfer.data.quality import DEFAULT_MAX_SPEED_KMH
from tabxfer.data.schema import DataError
from tabxfer.data.sources import KaggleNYCTaxi, TLCTrips

NYC = city_bounds("nyc")
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_names = itertools.count()

GARBAGE = st.one_of(
    st.sampled_from(
        [
            "", " ", "abc", "NaN", "nan", "inf", "-inf", "Infinity", "1e309", "-1e309", "9" * 40, "-5", "0",
            "-0", "3.5", "1,2", '"', "'", "N/A", "null", "NULL", "\n", "a\nb", "x\r\ny", "\u0663", "\uff11",
            "2016-02-30 10:00:00", "2016-13-01 00:00:00", "2016-01-01 24:00:00", "24:00", "0x10", "1_000",
            "+7", ".5", "5.", "  12  ", "-73.98", "40.75", "99999999999", "-1e9", "1e-300", "0.5", "21600",
            "21601", "30000", "86399", "41.2", "-74.5",
        ]
    ),
    st.text(st.sampled_from("0123456789.-+eE :/,\"'\nTZNaé\u0663\u00a0"), max_size=8),
)  # fmt: skip
DT_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S.%f")
PICKUPS = st.datetimes(dt.datetime(2016, 1, 1), dt.datetime(2016, 6, 30))
# Valid coordinates lie in a 9 x 5 km box and valid trips last 10+ minutes: never implausibly fast.
LATS = st.floats(40.70, 40.78)
LONS = st.floats(-74.01, -73.95)


# Strategies are built once: building them per field made generation cost more than loading.
ODDS = (30, 8, 2)  # garbage in about 1 of 31, 1 of 9 or 1 of 3 fields (one rate per file)
IS_GARBAGE = {odds: st.sampled_from([False] * odds + [True]) for odds in ODDS}  # shrinks to valid
LAT_TEXT, LON_TEXT = LATS.map(repr), LONS.map(repr)
DURATIONS = st.integers(600, 3600)
FARES = st.floats(2.5, 200).map(lambda x: f"{x:.2f}")


def field_drawer(draw, odds: int | None):
    """``field(valid)``: ``valid`` (a value or a strategy), or garbage now and then (never for None)."""

    def field(valid):
        if odds is not None and draw(IS_GARBAGE[odds]):
            return draw(GARBAGE)
        return draw(valid) if isinstance(valid, st.SearchStrategy) else valid

    return field


def rows_of(row, max_size: int = 12):
    """Lists of rows whose garbage is rare, common or dominant (one rate per file), some repeated."""
    return st.sampled_from(ODDS).flatmap(lambda odds: st.lists(row(odds), min_size=1, max_size=max_size))


@st.composite
def with_repeats(draw, rows: list[list[str]]) -> list[list[str]]:
    """Insert exact copies of some rows at random places (repeated rows and repeated ids)."""
    rows = list(rows)
    for _ in range(draw(st.integers(0, 3))):
        copy = list(rows[draw(st.integers(0, len(rows) - 1))])
        rows.insert(draw(st.integers(0, len(rows))), copy)
    return rows


def write_csv(folder: Path, header: list[str], rows: list[list[str]]) -> Path:
    path = folder / f"trips_{next(_names)}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def load_or_refuse(src, path: Path, n_rows: int) -> tuple[pl.DataFrame, object] | None:
    """Load; a DataError must name the file and be about a column that mostly fails to parse."""
    try:
        df, report = src.load()
    except DataError as err:
        assert err.file == str(path), str(err)
        assert str(path) in str(err)
        assert "do not parse" in str(err), str(err)
        event("refused: a column mostly fails to parse")
        return None
    event(f"loaded, {'some' if df.height else 'no'} rows kept")
    assert report.n_in == n_rows
    assert report.n_in == report.n_out + sum(report.dropped.values())
    assert report.n_out == df.height
    assert all(n > 0 for n in report.dropped.values())
    for reason, examples in report.examples.items():
        assert reason in report.dropped
        assert all(f == str(path) and 0 <= row < n_rows for f, row, _ in examples)
    return df, report


def assert_invariants(df: pl.DataFrame, *, mode: str = "taxi") -> None:
    assert df["pickup_time"].null_count() == 0
    assert df["trip_id"].null_count() == 0
    assert df["trip_id"].n_unique() == df.height
    dur = df["duration_s"]
    assert dur.null_count() == 0
    assert ((dur >= 1) & (dur <= 6 * 3600)).all()
    for c, lo, hi in (
        ("pickup_lat", NYC.lat_min, NYC.lat_max),
        ("dropoff_lat", NYC.lat_min, NYC.lat_max),
        ("pickup_lon", NYC.lon_min, NYC.lon_max),
        ("dropoff_lon", NYC.lon_min, NYC.lon_max),
    ):
        assert df[c].null_count() == 0
        assert df[c].is_between(lo, hi).all(), c
    pc = df["passenger_count"].drop_nulls()
    assert pc.is_between(0, 9).all()
    km = df.select(
        haversine_km(*(pl.col(c) for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")))
    )
    speed = km.to_series() / (dur / 3600.0)
    assert (speed <= DEFAULT_MAX_SPEED_KMH[mode] + 1e-9).all()
    data_cols = [c for c in df.columns if c != "trip_id"]
    assert df.select(data_cols).is_duplicated().sum() == 0


# --- parsing the written text the way a reader of the file would --------------------------------------


def as_float(text: str) -> float | None:
    try:
        x = float(text.strip())
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def as_time(text: str) -> dt.datetime | None:
    for fmt in DT_FORMATS:
        try:
            return dt.datetime.strptime(text.strip(), fmt)
        except ValueError:
            pass
    return None


def as_text(text: str) -> str | None:
    return text.strip() or None


# --- Kaggle ---------------------------------------------------------------------------------------------

KAGGLE = [
    "id", "vendor_id", "pickup_datetime", "dropoff_datetime", "passenger_count", "pickup_longitude",
    "pickup_latitude", "dropoff_longitude", "dropoff_latitude", "store_and_fwd_flag", "trip_duration",
]  # fmt: skip


KAGGLE_IDS = st.sampled_from([f"id{i}" for i in range(8)])
VENDORS = st.sampled_from(["1", "2"])
KAGGLE_FORMATS = st.sampled_from(DT_FORMATS)
KAGGLE_PASSENGERS = st.sampled_from(["0", "1", "2", "3", "6", "9", "1.0"])
FLAGS = st.sampled_from(["N", "Y", ""])


@st.composite
def kaggle_row(draw, odds: int | None) -> list[str]:
    """A Kaggle train row; ``odds=None``: no garbage at all."""
    field = field_drawer(draw, odds)
    pickup = draw(PICKUPS)
    duration = draw(DURATIONS)
    fmt = draw(KAGGLE_FORMATS)
    return [
        field(KAGGLE_IDS),
        field(VENDORS),
        field(pickup.strftime(fmt)),
        field((pickup + dt.timedelta(seconds=duration)).strftime(fmt)),
        field(KAGGLE_PASSENGERS),
        field(LON_TEXT),
        field(LAT_TEXT),
        field(LON_TEXT),
        field(LAT_TEXT),
        field(FLAGS),
        field(str(duration)),
    ]


def kaggle_expected(row: list[str]) -> dict:
    """The canonical values a kept row written as ``row`` must have."""
    r = dict(zip(KAGGLE, row, strict=True))
    pc = as_float(r["passenger_count"])
    return {
        "vendor": as_text(r["vendor_id"]),
        "pickup_time": as_time(r["pickup_datetime"]),
        "pickup_lat": as_float(r["pickup_latitude"]),
        "pickup_lon": as_float(r["pickup_longitude"]),
        "dropoff_lat": as_float(r["dropoff_latitude"]),
        "dropoff_lon": as_float(r["dropoff_longitude"]),
        "passenger_count": None if pc is None else int(pc),
        "duration_s": as_float(r["trip_duration"]),
        "store_and_fwd_flag": as_text(r["store_and_fwd_flag"]),
    }


TEST_FILE = [c for c in KAGGLE if c not in ("dropoff_datetime", "trip_duration")]


@SETTINGS
@given(rows=rows_of(kaggle_row).flatmap(with_repeats), labeled=st.booleans())
def test_kaggle_csv_with_garbage(tmp_path, rows, labeled):
    """Train files (``labeled``) and test files (no dropoff, no duration; ``labeled=False``)."""
    if labeled:
        path = write_csv(tmp_path, KAGGLE, rows)
    else:
        keep = [KAGGLE.index(c) for c in TEST_FILE]
        path = write_csv(tmp_path, TEST_FILE, [[r[i] for i in keep] for r in rows])
    loaded = load_or_refuse(KaggleNYCTaxi(path, labeled=labeled), path, len(rows))
    if loaded is None:
        return
    df, _ = loaded
    if labeled:
        assert_invariants(df)
    else:
        assert df["duration_s"].is_null().all()
        assert_invariants(df.with_columns(duration_s=pl.lit(600.0)))  # all but the duration rules
    # every kept row is one of the written rows with its id (or, without an id, at its row)
    fields = [f for f in kaggle_expected(rows[0]) if labeled or f != "duration_s"]
    prefix = f"kaggle_nyc:{path.stem}:"
    for kept in df.iter_rows(named=True):
        if kept["trip_id"].startswith(prefix):
            written = [rows[int(kept["trip_id"].removeprefix(prefix))]]
            assert as_text(written[0][0]) is None
        else:
            written = [r for r in rows if as_text(r[0]) == kept["trip_id"]]
        expected = [{f: kaggle_expected(r)[f] for f in fields} for r in written]
        assert {f: kept[f] for f in fields} in expected


@SETTINGS
@given(rows=st.lists(kaggle_row(None), min_size=1, max_size=12).flatmap(with_repeats))
def test_kaggle_valid_rows_keep_exactly_the_first_of_each_id_and_row(tmp_path, rows):
    """Without garbage the outcome is known exactly: a row is kept unless an earlier row had its id
    (duplicate_id) or all its values (duplicate_row)."""
    path = write_csv(tmp_path, KAGGLE, rows)
    df, report = KaggleNYCTaxi(path).load()

    seen_ids, seen_data, kept, dropped = set(), set(), [], {}
    for row in rows:
        data = tuple(kaggle_expected(row).values())
        reason = "duplicate_row" if data in seen_data else "duplicate_id" if row[0] in seen_ids else None
        if reason is None:
            kept.append(row[0])
        else:
            dropped[reason] = dropped.get(reason, 0) + 1
        seen_ids.add(row[0])
        seen_data.add(data)
    assert df["trip_id"].to_list() == kept
    assert report.dropped == dropped
    assert report.n_in == len(rows)


# --- TLC ------------------------------------------------------------------------------------------------

YELLOW_2015 = [
    "VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count", "trip_distance",
    "pickup_longitude", "pickup_latitude", "RateCodeID", "store_and_fwd_flag", "dropoff_longitude",
    "dropoff_latitude", "payment_type", "fare_amount",
]  # fmt: skip
TLC_FORMATS = ("%Y-%m-%d %H:%M:%S", "%m/%d/%Y %I:%M:%S %p")


TLC_DT_FORMATS = st.sampled_from(TLC_FORMATS)
TLC_PASSENGERS = st.sampled_from(["0", "1", "5", "9"])
MILES = st.floats(0, 30).map(lambda x: f"{x:.2f}")
RATE_CODES = st.sampled_from(["1", "2", "5", "99"])
PAYMENTS = st.sampled_from(["1", "2", "3", "4", "CSH", "Credit"])


@st.composite
def yellow_row(draw, odds: int) -> list[str]:
    field = field_drawer(draw, odds)
    pickup = draw(PICKUPS).replace(microsecond=0)
    duration = draw(DURATIONS)
    fmt = draw(TLC_DT_FORMATS)
    return [
        field(VENDORS),
        field(pickup.strftime(fmt)),
        field((pickup + dt.timedelta(seconds=duration)).strftime(fmt)),
        field(TLC_PASSENGERS),
        field(MILES),
        field(LON_TEXT),
        field(LAT_TEXT),
        field(RATE_CODES),
        field(FLAGS),
        field(LON_TEXT),
        field(LAT_TEXT),
        field(PAYMENTS),
        field(FARES),
    ]


@SETTINGS
@given(rows=rows_of(yellow_row, max_size=10).flatmap(with_repeats))
def test_tlc_lat_lon_csv_with_garbage(tmp_path, rows):
    path = write_csv(tmp_path, YELLOW_2015, rows)
    loaded = load_or_refuse(TLCTrips(path), path, len(rows))
    if loaded is None:
        return
    df, _ = loaded
    assert_invariants(df)
    assert not df["coords_from_zone"].any()
    for kept in df.iter_rows(named=True):
        row = dict(zip(YELLOW_2015, rows[int(kept["trip_id"].rsplit(":", 1)[1])], strict=True))
        assert kept["pickup_lat"] == as_float(row["pickup_latitude"])
        assert kept["dropoff_lon"] == as_float(row["dropoff_longitude"])
        assert kept["vendor"] == as_text(row["VendorID"])
        pickup = next(
            (t for f in TLC_FORMATS if (t := _strptime(row["tpep_pickup_datetime"], f)) is not None), None
        )
        assert kept["pickup_time"] == pickup


def _strptime(text: str, fmt: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(text.strip(), fmt)
    except ValueError:
        return None


ZONES = {4: (40.723752, -73.976968), 7: (40.761493, -73.919694), 161: (40.758028, -73.977698)}
YELLOW_2019 = [
    "VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count", "PULocationID",
    "DOLocationID", "fare_amount",
]  # fmt: skip


ZONE_IDS = st.sampled_from(["4", "7", "161", "4", "7", "161", "264", "1"])  # 264, 1: not in the table


@st.composite
def zone_row(draw, odds: int) -> list[str]:
    field = field_drawer(draw, odds)
    pickup = draw(PICKUPS).replace(microsecond=0)
    duration = draw(DURATIONS)
    return [
        field(VENDORS),
        field(f"{pickup:%Y-%m-%d %H:%M:%S}"),
        field(f"{pickup + dt.timedelta(seconds=duration):%Y-%m-%d %H:%M:%S}"),
        field(VENDORS),  # passenger counts 1 and 2
        field(ZONE_IDS),
        field(ZONE_IDS),
        field(FARES),
    ]


@SETTINGS
@given(rows=rows_of(zone_row, max_size=10).flatmap(with_repeats))
def test_tlc_zone_csv_with_garbage(tmp_path, rows):
    zones = tmp_path / "zones.csv"
    if not zones.exists():
        zones.write_text(
            "LocationID,lat,lon\n" + "".join(f"{z},{lat},{lon}\n" for z, (lat, lon) in ZONES.items())
        )
    path = write_csv(tmp_path, YELLOW_2019, rows)
    loaded = load_or_refuse(TLCTrips(path, zone_table=zones), path, len(rows))
    if loaded is None:
        return
    df, _ = loaded
    assert_invariants(df)
    assert df["coords_from_zone"].all()
    for kept in df.iter_rows(named=True):
        row = rows[int(kept["trip_id"].rsplit(":", 1)[1])]
        assert (kept["pickup_zone_id"], kept["dropoff_zone_id"]) == (as_float(row[4]), as_float(row[5]))
        assert (kept["pickup_lat"], kept["pickup_lon"]) == ZONES[kept["pickup_zone_id"]]
        assert (kept["dropoff_lat"], kept["dropoff_lon"]) == ZONES[kept["dropoff_zone_id"]]
