"""TLCTrips on small files written here: every service (yellow, green, FHV, HVFHV) and era (lat/lon,
2009-2014 names, zone ids), CSV and Parquet, plus the zone-table and not-a-TLC-file errors."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tabxfer.data.schema import CORE_COLUMNS, DataError
from tabxfer.data.sources import TLCTrips

MILE_KM = 1.609344
# A few real zone centroids (from TLC's shapefile); zone 56 has two polygons, weighted by area.
ZONES = {
    4: (40.723752, -73.976968),
    7: (40.761493, -73.919694),
    132: (40.646985, -73.786533),
    161: (40.758028, -73.977698),
}
ZONE_56_PARTS = [(40.74, -73.86, 1.0), (40.76, -73.84, 3.0)]  # lat, lon, area
ZONE_56 = (
    sum(lat * a for lat, _, a in ZONE_56_PARTS) / 4.0,
    sum(lon * a for _, lon, a in ZONE_56_PARTS) / 4.0,
)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def zone_table(tmp_path) -> Path:
    rows = [[zid, f"zone {zid}", "Manhattan", lat, lon, 1.0] for zid, (lat, lon) in ZONES.items()]
    rows += [[56, "Corona", "Queens", lat, lon, area] for lat, lon, area in ZONE_56_PARTS]
    header = ["LocationID", "zone", "borough", "centroid_lat", "centroid_lon", "area"]
    return write_csv(tmp_path / "zones.csv", header, rows)


def data_error(fn, path: Path | str) -> DataError:
    with pytest.raises(DataError) as info:
        fn()
    assert info.value.file == str(path)
    assert str(path) in str(info.value)
    return info.value


def load(path, **kw):
    df, report = TLCTrips(path, **kw).load()
    assert report.n_in == report.n_out + sum(report.dropped.values())
    assert df.columns == [*CORE_COLUMNS, *TLCTrips.extra]
    return df, report


# --- lat/lon era ------------------------------------------------------------------------------------

YELLOW_2015 = [
    "VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count", "trip_distance",
    "pickup_longitude", "pickup_latitude", "RateCodeID", "store_and_fwd_flag", "dropoff_longitude",
    "dropoff_latitude", "payment_type", "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount",
    "improvement_surcharge", "total_amount",
]  # fmt: skip
YELLOW_2015_ROWS = [
    [2, "2015-01-15 19:05:39", "2015-01-15 19:23:42", 1, 1.59, -73.993896484375, 40.750110626220703, 1, "N",
     -73.974784851074219, 40.750617980957031, 1, 12, 1, 0.5, 3.25, 0, 0.3, 17.05],
    [1, "2015-01-10 20:33:38", "2015-01-10 20:53:28", 3, 3.30, -74.00164794921875, 40.7242431640625, 2, "Y",
     -73.994415283203125, 40.759109497070313, 2, 14.5, 0.5, 0.5, 2, 0, 0.3, 17.8],
]  # fmt: skip


def test_yellow_2015_lat_lon_csv(tmp_path):
    path = write_csv(tmp_path / "yellow_tripdata_2015-01.csv", YELLOW_2015, YELLOW_2015_ROWS)
    df, report = load(path)  # no zone table needed
    assert (report.n_in, report.n_out, report.dropped) == (2, 2, {})
    assert df.row(0, named=True) == {
        "trip_id": "tlc:yellow_tripdata_2015-01:0",
        "source": "tlc",
        "city": "nyc",
        "mode": "taxi",
        "vendor": "2",
        "pickup_time": dt.datetime(2015, 1, 15, 19, 5, 39),
        "pickup_lat": 40.750110626220703,
        "pickup_lon": -73.993896484375,
        "dropoff_lat": 40.750617980957031,
        "dropoff_lon": -73.974784851074219,
        "passenger_count": 1,
        "duration_s": 1083.0,
        "service": "yellow",
        "trip_distance_km": pytest.approx(1.59 * MILE_KM),
        "fare_amount": 12.0,
        "payment_type": 1,
        "rate_code": 1,
        "store_and_fwd_flag": "N",
        "pickup_zone_id": None,
        "dropoff_zone_id": None,
        "coords_from_zone": False,
    }
    second = df.row(1, named=True)
    assert (second["passenger_count"], second["payment_type"], second["rate_code"]) == (3, 2, 2)
    assert second["store_and_fwd_flag"] == "Y"
    assert second["duration_s"] == 1190.0


YELLOW_2009 = [
    "vendor_name", "Trip_Pickup_DateTime", "Trip_Dropoff_DateTime", "Passenger_Count", "Trip_Distance",
    "Start_Lon", "Start_Lat", "Rate_Code", "store_and_forward", "End_Lon", "End_Lat", "Payment_Type",
    "Fare_Amt", "surcharge", "mta_tax", "Tip_Amt", "Tolls_Amt", "Total_Amt",
]  # fmt: skip


def yellow_2009_row(i: int, payment: str) -> list:
    start = dt.datetime(2009, 1, 4, 2, 0) + dt.timedelta(minutes=7 * i)
    return ["VTS" if i % 2 else "CMT", f"{start:%Y-%m-%d %H:%M:%S}",
            f"{start + dt.timedelta(seconds=600 + i):%Y-%m-%d %H:%M:%S}", 1 + i % 4, 2.63,
            -73.991957, 40.721567 + i * 1e-3, "", "", -73.993803, 40.695922, payment, 8.9, 0.5, "", 0, 0, 9.4]  # fmt: skip


def test_yellow_2009_column_names_and_named_payment_types(tmp_path):
    payments = ["CASH", "Credit", "No Charge", "Dispute", "CSH", "CRD", "Cre", "NOC", "DIS", "UNK", "XYZ"]
    rows = [yellow_2009_row(i, pay) for i, pay in enumerate(payments)]
    path = write_csv(tmp_path / "yellow_tripdata_2009-01.csv", YELLOW_2009, rows)
    df, report = load(path)
    assert report.dropped == {"unparseable:payment_type": 1}
    assert report.examples["unparseable:payment_type"] == [(str(path), 10, "XYZ")]
    assert df["payment_type"].to_list() == [2, 1, 3, 4, 2, 1, 1, 3, 4, 5]
    assert df["vendor"].to_list()[:2] == ["CMT", "VTS"]
    assert df["duration_s"].to_list()[:3] == [600.0, 601.0, 602.0]
    assert df["pickup_lat"][1] == pytest.approx(40.722567)
    assert df["pickup_lon"][0] == -73.991957
    assert df["dropoff_lat"][0] == 40.695922
    assert df["passenger_count"].to_list()[:4] == [1, 2, 3, 4]
    assert df["trip_distance_km"][0] == pytest.approx(2.63 * MILE_KM)
    assert df["fare_amount"][0] == 8.9
    assert df["rate_code"].is_null().all()  # empty in 2009
    assert df["store_and_fwd_flag"].is_null().all()
    assert (df["service"] == "yellow").all()
    assert not df["coords_from_zone"].any()


YELLOW_2013 = [
    "vendor_id", "pickup_datetime", "dropoff_datetime", "passenger_count", "trip_distance",
    "pickup_longitude", "pickup_latitude", "rate_code", "store_and_fwd_flag", "dropoff_longitude",
    "dropoff_latitude", "payment_type", "fare_amount", "surcharge", "mta_tax", "tip_amount", "tolls_amount",
    "total_amount",
]  # fmt: skip


def test_yellow_2010_2014_column_names(tmp_path):
    rows = [
        ["CMT", "2013-05-01 00:04:00", "2013-05-01 00:09:30", 1, 1.1, -73.98, 40.75, 1, "N", -73.97, 40.76,
         "CRD", 6, 0.5, 0.5, 1.4, 0, 8.4],
        ["VTS", "2013-05-01 00:05:00", "2013-05-01 00:25:00", 5, 4.2, -73.99, 40.73, 2, "", -73.79, 40.64,
         "CSH", 52, 0, 0.5, 0, 5.33, 57.83],
    ]  # fmt: skip
    df, report = load(write_csv(tmp_path / "yellow_tripdata_2013-05.csv", YELLOW_2013, rows))
    assert report.dropped == {}
    assert df["vendor"].to_list() == ["CMT", "VTS"]
    assert df["duration_s"].to_list() == [330.0, 1200.0]
    assert df["payment_type"].to_list() == [1, 2]
    assert df["rate_code"].to_list() == [1, 2]
    assert df["store_and_fwd_flag"].to_list() == ["N", None]
    assert df["dropoff_lat"].to_list() == [40.76, 40.64]
    assert df["service"].to_list() == ["yellow", "yellow"]


def test_green_lat_lon_era(tmp_path):
    header = [
        "VendorID", "lpep_pickup_datetime", "Lpep_dropoff_datetime", "Store_and_fwd_flag", "RateCodeID",
        "Pickup_longitude", "Pickup_latitude", "Dropoff_longitude", "Dropoff_latitude", "Passenger_count",
        "Trip_distance", "Fare_amount", "Extra", "MTA_tax", "Tip_amount", "Tolls_amount", "Ehail_fee",
        "Total_amount", "Payment_type", "Trip_type ",
    ]  # fmt: skip
    rows = [
        [2, "2014-01-01 00:00:00", "2014-01-01 00:10:00", "N", 1, -73.95, 40.80, -73.94, 40.81, 1, 1.2, 7,
         0.5, 0.5, 0, 0, "", 8, 2, 1],
        [2, "2014-01-01 00:05:00", "2014-01-01 00:20:30", "N", 5, -73.91, 40.75, -73.88, 40.74, 2, 2.5, 11,
         0.5, 0.5, 0, 0, "", 12, 1, 2],
    ]  # fmt: skip
    df, report = load(write_csv(tmp_path / "green_tripdata_2014-01.csv", header, rows))
    assert report.dropped == {}
    assert df["service"].to_list() == ["green", "green"]
    assert df["mode"].to_list() == ["taxi", "taxi"]
    assert df["duration_s"].to_list() == [600.0, 930.0]
    assert df["pickup_lat"].to_list() == [40.80, 40.75]
    assert df["pickup_lon"].to_list() == [-73.95, -73.91]
    assert df["dropoff_lat"].to_list() == [40.81, 40.74]
    assert df["rate_code"].to_list() == [1, 5]
    assert df["passenger_count"].to_list() == [1, 2]


@pytest.mark.parametrize(
    ("pickup", "dropoff", "expected"),
    [
        ("01/15/2015 07:05:39 PM", "01/15/2015 07:23:42 PM", dt.datetime(2015, 1, 15, 19, 5, 39)),
        ("01/15/2015 19:05", "01/15/2015 19:23", dt.datetime(2015, 1, 15, 19, 5)),
        ("2015-01-15T19:05:39", "2015-01-15T19:23:42", dt.datetime(2015, 1, 15, 19, 5, 39)),
        ("2015-01-15 19:05:39.5", "2015-01-15 19:23:42", dt.datetime(2015, 1, 15, 19, 5, 39, 500000)),
    ],
)
def test_datetime_formats(tmp_path, pickup, dropoff, expected):
    row = list(YELLOW_2015_ROWS[0])
    row[1:3] = [pickup, dropoff]
    df, report = load(write_csv(tmp_path / "yellow.csv", YELLOW_2015, [row]))
    assert report.dropped == {}
    assert df["pickup_time"].to_list() == [expected]
    assert 0 < df["duration_s"][0] < 1200


def test_bad_rows_are_counted_with_reason_and_row(tmp_path):
    good = YELLOW_2015_ROWS[0]
    rows = [list(good) for _ in range(7)]
    for i, r in enumerate(rows):
        r[1] = f"2015-01-15 19:{i:02d}:00"
        r[2] = f"2015-01-15 19:{i + 10:02d}:00"
    rows[1][2] = "2015-01-15 18:00:00"  # dropoff before pickup
    rows[2][2] = "2015-01-16 03:00:00"  # ~8 h
    rows[3][5:7] = [0, 0]  # 0/0 pickup
    rows[4][1] = "1/15/15 7pm"  # no known format
    rows[5][3] = "two"
    path = write_csv(tmp_path / "yellow.csv", YELLOW_2015, rows)
    df, report = load(path)
    assert report.dropped == {
        "nonpositive_duration": 1,
        "duration_too_long": 1,
        "zero_coordinates": 1,
        "unparseable:pickup_time": 1,
        "unparseable:passenger_count": 1,
    }
    assert report.examples["unparseable:pickup_time"] == [(str(path), 4, "1/15/15 7pm")]
    assert report.examples["unparseable:passenger_count"] == [(str(path), 5, "two")]
    assert report.examples["nonpositive_duration"] == [(str(path), 1, None)]
    assert df["trip_id"].to_list() == ["tlc:yellow:0", "tlc:yellow:6"]


# --- zone-id era ------------------------------------------------------------------------------------

YELLOW_2019 = [
    "VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count", "trip_distance",
    "RatecodeID", "store_and_fwd_flag", "PULocationID", "DOLocationID", "payment_type", "fare_amount",
    "extra", "mta_tax", "tip_amount", "tolls_amount", "improvement_surcharge", "total_amount",
    "congestion_surcharge",
]  # fmt: skip
YELLOW_2019_ROWS = [
    [1, "2019-03-01 00:24:41", "2019-03-01 00:39:53", 1, 3.1, 1, "N", 4, 161, 1, 13, 3, 0.5, 3.35, 0, 0.3, 20.15, 2.5],
    [2, "2019-03-01 00:25:27", "2019-03-01 00:36:37", 2, 1.9, 1, "N", 161, 7, 2, 9, 0.5, 0.5, 0, 0, 0.3, 10.3, 0],
    [2, "2019-03-01 00:26:27", "2019-03-01 00:37:37", 1, 1.9, 1, "N", 264, 7, 2, 9, 0.5, 0.5, 0, 0, 0.3, 10.3, 0],
    [2, "2019-03-01 00:30:00", "2019-03-01 00:50:00", 1, 5.0, 1, "N", 56, 132, 1, 20, 0.5, 0.5, 0, 0, 0.3, 21, 0],
]  # fmt: skip


def assert_zone_era(df: pl.DataFrame, report, path: Path) -> None:
    """What YELLOW_2019_ROWS must load to (whatever the file format)."""
    assert report.dropped == {"unknown_zone": 1}
    [(file, row, value)] = report.examples["unknown_zone"]
    assert (file, row, value.removesuffix(".0")) == (str(path), 2, "264")
    assert df["pickup_zone_id"].to_list() == [4, 161, 56]
    assert df["dropoff_zone_id"].to_list() == [161, 7, 132]
    assert df["pickup_lat"].to_list()[:2] == [ZONES[4][0], ZONES[161][0]]
    assert df["pickup_lon"].to_list()[:2] == [ZONES[4][1], ZONES[161][1]]
    assert df["dropoff_lat"].to_list() == [ZONES[161][0], ZONES[7][0], ZONES[132][0]]
    assert df["dropoff_lon"].to_list() == [ZONES[161][1], ZONES[7][1], ZONES[132][1]]
    assert (df["pickup_lat"][2], df["pickup_lon"][2]) == pytest.approx(ZONE_56)
    assert df["coords_from_zone"].to_list() == [True, True, True]
    assert df["duration_s"].to_list() == [912.0, 670.0, 1200.0]
    assert df["passenger_count"].to_list() == [1, 2, 1]


def test_yellow_zone_era_csv(tmp_path, zone_table):
    path = write_csv(tmp_path / "yellow_tripdata_2019-03.csv", YELLOW_2019, YELLOW_2019_ROWS)
    df, report = load(path, zone_table=zone_table)
    assert_zone_era(df, report, path)
    assert df["service"].unique().to_list() == ["yellow"]


def yellow_2019_frame() -> pl.DataFrame:
    return pl.DataFrame(YELLOW_2019_ROWS, schema=YELLOW_2019, orient="row").with_columns(
        pl.col("tpep_pickup_datetime", "tpep_dropoff_datetime").str.strptime(pl.Datetime("us"))
    )


@pytest.mark.parametrize("id_dtype", [pl.Int64, pl.Int32, pl.String, pl.Float64])
def test_yellow_zone_era_parquet_with_ids_of_any_type(tmp_path, zone_table, id_dtype):
    path = tmp_path / "yellow_tripdata_2019-03.parquet"
    yellow_2019_frame().with_columns(pl.col("PULocationID", "DOLocationID").cast(id_dtype)).write_parquet(
        path
    )
    df, report = load(path, zone_table=zone_table)
    assert_zone_era(df, report, path)


def test_zone_ids_that_are_not_integers(tmp_path, zone_table):
    rows = [list(r) for r in YELLOW_2019_ROWS[:2]] + [list(YELLOW_2019_ROWS[1]), list(YELLOW_2019_ROWS[1])]
    rows[2][7], rows[3][7] = "161.5", ""
    path = write_csv(tmp_path / "yellow.csv", YELLOW_2019, rows)
    df, report = load(path, zone_table=zone_table)
    assert df["pickup_zone_id"].to_list() == [4, 161]
    assert report.dropped == {"unparseable:pickup_zone_id": 1, "unknown_zone": 1}
    assert report.examples["unparseable:pickup_zone_id"] == [(str(path), 2, "161.5")]
    assert report.examples["unknown_zone"] == [(str(path), 3, None)]


def test_green_zone_era_and_the_2022_five_column_file(tmp_path, zone_table):
    full = pl.DataFrame(
        {
            "VendorID": [2, 2],
            "lpep_pickup_datetime": [dt.datetime(2021, 1, 1, 0, 15, 56), dt.datetime(2021, 1, 1, 0, 25, 59)],
            "lpep_dropoff_datetime": [dt.datetime(2021, 1, 1, 0, 19, 52), dt.datetime(2021, 1, 1, 0, 59, 44)],
            "store_and_fwd_flag": ["N", None],
            "RatecodeID": [1.0, None],
            "PULocationID": ["7", "132"],  # strings, as in the MLOps-zoomcamp copies
            "DOLocationID": ["4", "161"],
            "passenger_count": [1.0, None],
            "trip_distance": [0.5, 14.0],
            "fare_amount": [5.0, 40.5],
            "payment_type": [2.0, None],
            "trip_type": [1.0, None],
        }
    )
    folder = tmp_path / "green"
    folder.mkdir()
    full.write_parquet(folder / "green_tripdata_2021-01.parquet")
    # 2022-01 as shared: five columns only, integer zone ids
    full.select(
        pl.col("lpep_pickup_datetime", "lpep_dropoff_datetime").dt.offset_by("1y"),
        "trip_distance",
        pl.col("PULocationID", "DOLocationID").cast(pl.Int64),
    ).write_parquet(folder / "green_tripdata_2022-01.parquet")

    df, report = load(folder, zone_table=zone_table)
    assert (report.n_in, report.n_out, report.dropped) == (4, 4, {})
    assert df["service"].to_list() == ["green"] * 4
    assert df["pickup_time"][2] == dt.datetime(2022, 1, 1, 0, 15, 56)
    assert df["duration_s"].to_list()[2:] == [236.0, 2025.0]
    assert df["dropoff_lat"].to_list()[2:] == [ZONES[4][0], ZONES[161][0]]
    assert df.select(pl.col("vendor", "passenger_count", "fare_amount").slice(2).is_null().all()).row(0) == (
        True,
        True,
        True,
    )
    assert df["pickup_zone_id"].to_list()[:2] == [7, 132]
    assert df["pickup_lat"].to_list()[:2] == [ZONES[7][0], ZONES[132][0]]
    assert df["duration_s"].to_list()[:2] == [236.0, 2025.0]
    assert df["passenger_count"].to_list()[:2] == [1, None]
    assert df["payment_type"].to_list()[:2] == [2, None]
    assert df["trip_distance_km"].to_list()[:2] == pytest.approx([0.5 * MILE_KM, 14.0 * MILE_KM])


def test_yellow_2022_parquet(tmp_path, zone_table):
    frame = pl.DataFrame(
        {
            "VendorID": [1, 2, 2],
            "tpep_pickup_datetime": [dt.datetime(2022, 1, 1, 0, 35, 40 + i) for i in range(3)],
            "tpep_dropoff_datetime": [dt.datetime(2022, 1, 1, 0, 53, 29 + i) for i in range(3)],
            "passenger_count": [2.0, None, 1.5],
            "trip_distance": [3.8, 2.1, 1.0],
            "RatecodeID": [1.0, None, 1.0],
            "store_and_fwd_flag": ["N", None, "N"],
            "PULocationID": [161, 4, 7],
            "DOLocationID": [4, 161, 7],
            "payment_type": [1, 0, 2],
            "fare_amount": [14.5, 12.0, 3.0],
            "congestion_surcharge": [2.5, None, 0.0],
            "airport_fee": [0.0, None, 0.0],
        }
    )
    path = tmp_path / "yellow_tripdata_2022-01.parquet"
    frame.write_parquet(path)
    df, report = load(path, zone_table=zone_table)
    assert report.dropped == {"unparseable:passenger_count": 1}
    assert report.examples["unparseable:passenger_count"] == [(str(path), 2, "1.5")]
    assert df["passenger_count"].to_list() == [2, None]
    assert df["rate_code"].to_list() == [1, None]
    assert df["payment_type"].to_list() == [1, 0]
    assert df["duration_s"].to_list() == [1069.0, 1069.0]
    assert df["pickup_lat"].to_list() == [ZONES[161][0], ZONES[4][0]]


# --- for-hire vehicles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dropoff", "pu", "do"),
    [
        ("dropOff_datetime", "PUlocationID", "DOlocationID"),  # 2019-2020
        ("dropoff_datetime", "PULocationID", "DOLocationID"),
        ("DropOff_datetime", "pulocationid", "DOLOCATIONID"),
    ],
)
def test_fhv(tmp_path, zone_table, dropoff, pu, do):
    header = ["dispatching_base_num", "pickup_datetime", dropoff, pu, do, "SR_Flag", "Affiliated_base_number"]
    rows = [
        ["B00001", "2019-03-01 00:30:00", "2019-03-01 00:50:00", 4, 161, "", "B00001"],
        ["B00014", "2019-03-01 00:45:00", "2019-03-01 01:15:00", "", "", "", "B00014"],
        ["B00021", "2019-03-01 00:10:00", "2019-03-01 00:25:00", 7, 132, 1, "B00021"],
    ]
    path = write_csv(tmp_path / "fhv_tripdata_2019-03.csv", header, rows)
    df, report = load(path, zone_table=zone_table)
    assert report.dropped == {"unknown_zone": 1}
    assert report.examples["unknown_zone"] == [(str(path), 1, None)]
    assert df["mode"].to_list() == ["for_hire", "for_hire"]
    assert df["service"].to_list() == ["fhv", "fhv"]
    assert df["vendor"].to_list() == ["B00001", "B00021"]
    assert df["duration_s"].to_list() == [1200.0, 900.0]
    assert df["pickup_lat"].to_list() == [ZONES[4][0], ZONES[7][0]]
    assert df["dropoff_lon"].to_list() == [ZONES[161][1], ZONES[132][1]]
    assert df["passenger_count"].is_null().all()


HVFHV = [
    "hvfhs_license_num", "dispatching_base_num", "originating_base_num", "request_datetime",
    "on_scene_datetime", "pickup_datetime", "dropoff_datetime", "PULocationID", "DOLocationID", "trip_miles",
    "trip_time", "base_passenger_fare", "tolls", "bcf", "sales_tax", "congestion_surcharge", "airport_fee",
    "tips", "driver_pay", "shared_request_flag", "shared_match_flag", "access_a_ride_flag", "wav_request_flag",
    "wav_match_flag",
]  # fmt: skip
HVFHV_ROWS = [
    ["HV0003", "B03404", "B03404", "2022-01-01 00:05:31", "2022-01-01 00:05:40", "2022-01-01 00:07:24",
     "2022-01-01 00:18:28", 161, 4, 1.18, 650, 24.9, 0, 0.75, 2.21, 2.75, 0, 0, 23.03, "N", "N", "", "N", "N"],
    ["HV0005", "B03406", "", "2022-01-01 00:10:00", "", "2022-01-01 00:12:00", "2022-01-01 00:40:00", 7, 132,
     9.5, 1700, 40, 0, 1.2, 3.5, 0, 1.25, 5, 30, "N", "N", "", "N", "N"],
]  # fmt: skip


def test_hvfhv_takes_trip_time_as_duration(tmp_path, zone_table):
    path = write_csv(tmp_path / "fhvhv_tripdata_2022-01.csv", HVFHV, HVFHV_ROWS)
    df, report = load(path, zone_table=zone_table)
    assert report.dropped == {}
    assert df["duration_s"].to_list() == [650.0, 1700.0]  # not dropoff - pickup (664, 1680)
    assert df["vendor"].to_list() == ["HV0003", "HV0005"]
    assert df["service"].to_list() == ["hvfhv", "hvfhv"]
    assert df["mode"].to_list() == ["for_hire", "for_hire"]
    assert df["pickup_time"].to_list() == [dt.datetime(2022, 1, 1, 0, 7, 24), dt.datetime(2022, 1, 1, 0, 12)]
    assert df["trip_distance_km"].to_list() == pytest.approx([1.18 * MILE_KM, 9.5 * MILE_KM])
    assert df["fare_amount"].to_list() == [24.9, 40.0]
    assert df["pickup_lat"].to_list() == [ZONES[161][0], ZONES[7][0]]


def test_hvfhv_without_trip_time_uses_dropoff(tmp_path, zone_table):
    keep = [i for i, c in enumerate(HVFHV) if c != "trip_time"]
    path = write_csv(
        tmp_path / "fhvhv.csv", [HVFHV[i] for i in keep], [[r[i] for i in keep] for r in HVFHV_ROWS]
    )
    df, _ = load(path, zone_table=zone_table)
    assert df["duration_s"].to_list() == [664.0, 1680.0]


# --- seaborn raw style, time zones, mixed folders ---------------------------------------------------


def test_color_column_sets_the_service_per_row(tmp_path, zone_table):
    header = [*YELLOW_2019, "color"]
    colors = ["yellow", " Green ", "green", "YELLOW"]  # the third trip has an unknown zone
    rows = [[*r, c] for r, c in zip(YELLOW_2019_ROWS, colors, strict=True)]
    df, report = load(write_csv(tmp_path / "taxis_raw.csv", header, rows), zone_table=zone_table)
    assert report.dropped == {"unknown_zone": 1}
    assert df["service"].to_list() == ["yellow", "green", "yellow"]
    assert df["mode"].to_list() == ["taxi"] * 3


@pytest.mark.parametrize("tz", ["America/New_York", "UTC", "Europe/Berlin"])
def test_tz_aware_parquet_gives_new_york_wall_time(tmp_path, tz):
    naive_path = write_csv(tmp_path / "yellow.csv", YELLOW_2015, YELLOW_2015_ROWS)
    expected, _ = load(naive_path)
    frame = pl.read_csv(naive_path).with_columns(
        pl.col("tpep_pickup_datetime", "tpep_dropoff_datetime")
        .str.strptime(pl.Datetime("us"))
        .dt.replace_time_zone("America/New_York")
        .dt.convert_time_zone(tz)
    )
    path = tmp_path / "yellow.parquet"
    frame.write_parquet(path)
    df, report = load(path)
    assert report.dropped == {}
    assert df["pickup_time"].dtype == pl.Datetime("us")
    assert df["pickup_time"].to_list() == expected["pickup_time"].to_list()
    assert df["duration_s"].to_list() == expected["duration_s"].to_list()


def test_lat_lon_and_zone_files_load_together(tmp_path, zone_table):
    folder = tmp_path / "tlc"
    folder.mkdir()
    a = write_csv(folder / "a_yellow_2015.csv", YELLOW_2015, YELLOW_2015_ROWS)
    b = folder / "b_yellow_2019.parquet"
    yellow_2019_frame().write_parquet(b)
    df, report = load(folder, zone_table=zone_table)
    assert report.files == [str(a), str(b)]
    assert (report.n_in, report.n_out, report.dropped) == (6, 5, {"unknown_zone": 1})
    assert df["coords_from_zone"].to_list() == [False, False, True, True, True]
    assert df["pickup_zone_id"].to_list() == [None, None, 4, 161, 56]
    assert df["trip_id"].n_unique() == 5
    assert_frame_equal(TLCTrips(folder, zone_table=zone_table).scan().collect(), df)


# --- errors -----------------------------------------------------------------------------------------


def test_zone_file_without_a_zone_table_is_an_error(tmp_path):
    path = write_csv(tmp_path / "yellow_tripdata_2019-03.csv", YELLOW_2019, YELLOW_2019_ROWS)
    err = data_error(lambda: TLCTrips(path).load(), path)
    assert "zone_table" in str(err)


def test_zone_table_that_does_not_exist_is_an_error(tmp_path):
    path = write_csv(tmp_path / "yellow_tripdata_2019-03.csv", YELLOW_2019, YELLOW_2019_ROWS)
    missing = tmp_path / "no_such_zones.parquet"
    err = data_error(lambda: TLCTrips(path, zone_table=missing).load(), missing)
    assert "not found" in str(err)


def test_zone_table_without_coordinates_is_an_error(tmp_path):
    path = write_csv(tmp_path / "yellow.csv", YELLOW_2019, YELLOW_2019_ROWS)
    lookup = write_csv(
        tmp_path.resolve() / "taxi_zone_lookup.csv", ["LocationID", "Borough", "Zone"], [[4, "M", "A"]]
    )
    err = data_error(lambda: TLCTrips(path, zone_table=lookup).load(), lookup)
    assert "centroid_lat" in str(err)


@pytest.mark.parametrize(
    ("header", "rows"),
    [
        (["pickup", "dropoff", "passengers", "distance", "fare", "color"],  # seaborn's clean taxis
         [["2019-03-23 20:21:09", "2019-03-23 20:27:24", 1, 1.6, 7.0, "yellow"]]),
        (["tripduration", "starttime", "stoptime", "start station id"],  # a bike file
         [[600, "2017-02-01 00:00:00", "2017-02-01 00:10:00", 3183]]),
        (["date", "maximum temperature", "precipitation"], [["1-1-2016", 42, 0.0]]),
    ],
    ids=["seaborn-clean", "citibike", "weather"],
)  # fmt: skip
def test_file_that_is_not_tlc_is_an_error(tmp_path, header, rows):
    path = write_csv(tmp_path / "other.csv", header, rows)
    err = data_error(lambda: TLCTrips(path).load(), path)
    assert "not a TLC trip file" in str(err)


def test_tlc_file_without_coordinates_or_zones_is_an_error(tmp_path):
    keep = [i for i, c in enumerate(YELLOW_2015) if "itude" not in c]
    path = write_csv(
        tmp_path / "yellow.csv",
        [YELLOW_2015[i] for i in keep],
        [[r[i] for i in keep] for r in YELLOW_2015_ROWS],
    )
    err = data_error(lambda: TLCTrips(path).load(), path)
    assert "no coordinates" in str(err)
