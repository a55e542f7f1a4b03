"""StatsmathsNYCTaxi (date reconstruction, weekday check) and SeabornTaxis (zone names -> centroids)."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import polars as pl
import pytest

from factories import require_dataset, write_table
from tabxfer.data.schema import CORE_COLUMNS, DataError
from tabxfer.data.sources import SeabornTaxis, StatsmathsNYCTaxi

FORMATS = ("csv", "parquet")


# --- statsmaths ----------------------------------------------------------------------------------------

SM_HEADER = [
    "obs_id", "train_id", "duration", "day", "hour", "minute", "weekday",
    "pickup_longitude", "pickup_latitude", "dropoff_longitude", "dropoff_latitude",
    "trip_distance", "pickup_NTACode", "dropoff_NTACode",
]  # fmt: skip
MIDTOWN = ("-73.965759", "40.758831")
UES = ("-73.946472", "40.781197")


def sm_row(
    obs: str,
    split: str,
    dur: str,
    day: str,
    hour: str,
    minute: str,
    weekday: str,
    pickup: tuple[str, str] = MIDTOWN,
) -> list[str]:
    return [obs, split, dur, day, hour, minute, weekday, *pickup, *UES, "2.1", "MN19", "MN32"]


SM_ROWS = [
    sm_row("id_000001", "train", "1183", "5", "10", "48", "5"),  # Thu 2016-05-05
    sm_row("id_000002", "valid", "629", "12", "14", "22", "5"),  # Thu 2016-05-12
    sm_row("id_000003", "test", "NA", "14", "2", "7", "7"),  # Sat 2016-05-14
    sm_row("id_000004", "train", "700", "1", "0", "0", "1"),  # Sun 2016-05-01
    sm_row("id_000005", "train", "701", "31", "23", "59", "3"),  # Tue 2016-05-31
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_statsmaths_dates_and_columns(tmp_path: Path, fmt: str) -> None:
    path = write_table(tmp_path, "nyc_taxi", SM_HEADER, SM_ROWS, fmt)
    df, report = StatsmathsNYCTaxi(paths=path).load()
    assert (report.n_in, report.n_out, report.dropped) == (5, 4, {"missing_duration": 1})
    assert df.columns[: len(CORE_COLUMNS)] == list(CORE_COLUMNS)
    assert df["trip_id"].to_list() == ["id_000001", "id_000002", "id_000004", "id_000005"]
    assert df["pickup_time"].to_list() == [
        dt.datetime(2016, 5, 5, 10, 48),
        dt.datetime(2016, 5, 12, 14, 22),
        dt.datetime(2016, 5, 1, 0, 0),
        dt.datetime(2016, 5, 31, 23, 59),
    ]
    assert df["duration_s"].to_list() == [1183.0, 629.0, 700.0, 701.0]
    assert df["split"].to_list() == ["train", "valid", "train", "train"]
    assert df["trip_distance_km"].to_list() == pytest.approx([2.1 * 1.609344] * 4)
    assert set(df["pickup_nta"]) == {"MN19"} and set(df["dropoff_nta"]) == {"MN32"}
    assert df["pickup_lon"][0] == -73.965759 and df["dropoff_lat"][0] == 40.781197

    unlabeled, rep = StatsmathsNYCTaxi(paths=path, labeled=False).load()
    assert rep.n_out == 5 and rep.dropped == {}
    assert unlabeled.filter(pl.col("split") == "test")["duration_s"].to_list() == [None]


def test_statsmaths_other_fitting_month(tmp_path: Path) -> None:
    path = write_table(tmp_path, "nyc_taxi", SM_HEADER, SM_ROWS, "csv")
    df, report = StatsmathsNYCTaxi(paths=path, year=2017, month=1).load()  # 2017-01-01 was a Sunday too
    assert report.n_out == 4
    assert df["pickup_time"][0] == dt.datetime(2017, 1, 5, 10, 48)


@pytest.mark.parametrize("fmt", FORMATS)
def test_statsmaths_bad_rows(tmp_path: Path, fmt: str) -> None:
    rows = [
        *SM_ROWS[:2],  # kept
        sm_row("id_000001", "train", "900", "6", "10", "48", "6"),  # repeated obs_id
        sm_row("id_000010", "train", "1183", "5", "10", "48", "5"),  # same trip as id_000001
        sm_row("id_000011", "train", "500", "5", "10", "48", "2"),  # 2016-05-05 is no Monday
        sm_row("id_000012", "train", "500", "32", "10", "48", "2"),  # May has 31 days
        sm_row("id_000013", "train", "500", "5", "ten", "48", "5"),
        sm_row("id_000014", "train", "abc", "5", "10", "48", "5"),
        sm_row("id_000015", "train", "-5", "5", "10", "48", "5"),
        sm_row("id_000016", "train", "500", "5", "10", "48", "5", pickup=("0", "0")),
    ]
    path = write_table(tmp_path, "nyc_taxi", SM_HEADER, rows, fmt)
    df, report = StatsmathsNYCTaxi(paths=path).load()
    assert df["trip_id"].to_list() == ["id_000001", "id_000002"]
    assert report.dropped == {
        "duplicate_id": 1,
        "duplicate_row": 1,
        "weekday_mismatch": 1,
        "unparseable:pickup_time": 1,
        "unparseable:hour": 1,
        "unparseable:duration_s": 1,
        "nonpositive_duration": 1,
        "zero_coordinates": 1,
    }
    assert report.n_in == report.n_out + sum(report.dropped.values()) == len(rows)
    assert report.examples["weekday_mismatch"][0][1:] == (4, "day=5 hour=10 minute=48 weekday=2")


def test_statsmaths_wrong_month_is_an_error(tmp_path: Path) -> None:
    path = write_table(tmp_path, "nyc_taxi", SM_HEADER, SM_ROWS, "csv")
    with pytest.raises(DataError, match="weekday") as err:
        StatsmathsNYCTaxi(paths=path, year=2016, month=3).load()  # 2016-03-01 was a Tuesday
    msg = str(err.value)
    assert str(path) in msg and "2016-03" in msg and "Tuesday" in msg


def test_statsmaths_settings_and_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="month"):
        StatsmathsNYCTaxi(paths="x.csv", month=13)
    for column in ("weekday", "pickup_latitude", "obs_id", "duration"):
        keep = [i for i, h in enumerate(SM_HEADER) if h != column]
        rows = [[r[i] for i in keep] for r in SM_ROWS]
        path = write_table(tmp_path, f"no_{column}", [SM_HEADER[i] for i in keep], rows, "parquet")
        with pytest.raises(DataError) as err:
            StatsmathsNYCTaxi(paths=path).load()
        assert str(path) in str(err.value) and column in str(err.value)
    df, _ = StatsmathsNYCTaxi(paths=path, labeled=False).load()  # no duration column: fine unlabeled
    assert df["duration_s"].null_count() == df.height == 5


@pytest.mark.real_data
def test_real_statsmaths(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = require_dataset(shared_data, "statsmaths_nyc_taxi_duration")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df, report = StatsmathsNYCTaxi(paths=folder).load()
        _, unlabeled = StatsmathsNYCTaxi(paths=folder, labeled=False).load()
    assert report.n_in == 10_000
    assert report.dropped.get("missing_duration") == 2_000  # the test split
    assert report.n_out > 0.9 * 8_000  # every labeled row fits May 2016
    assert "weekday_mismatch" not in report.dropped
    assert report.n_in == report.n_out + sum(report.dropped.values())
    assert set(df["split"]) == {"train", "valid"}
    assert df["pickup_time"].dt.month().unique().to_list() == [5]
    assert unlabeled.n_out > 0.9 * 10_000
    assert capsys.readouterr() == ("", "")


# --- seaborn taxis -------------------------------------------------------------------------------------

SB_HEADER = [
    "pickup", "dropoff", "passengers", "distance", "fare", "tip", "tolls", "total", "color", "payment",
    "pickup_zone", "dropoff_zone", "pickup_borough", "dropoff_borough",
]  # fmt: skip
ZONES = pl.DataFrame(
    {
        "LocationID": [1, 56, 57, 141, 233, 264],
        "zone": ["Newark Airport", "Corona", "Corona", "Lenox Hill West", "UN/Turtle Bay South", "NV"],
        "borough": ["EWR", "Queens", "Queens", "Manhattan", "Manhattan", "Unknown"],
        "centroid_lat": [40.6918, 40.7420, 40.7530, 40.7669, 40.7486, None],
        "centroid_lon": [-74.1740, -73.8617, -73.8560, -73.9594, -73.9712, None],
    }
).filter(pl.col("centroid_lat").is_not_null())


def sb_row(
    pickup: str,
    dropoff: str,
    pz: str = "Lenox Hill West",
    dz: str = "UN/Turtle Bay South",
    pb: str = "Manhattan",
    db: str = "Manhattan",
    *,
    passengers: str = "1",
    color: str = "yellow",
    payment: str = "credit card",
) -> list[str]:
    return [pickup, dropoff, passengers, "1.6", "7.0", "2.15", "0.0", "12.95", color, payment, pz, dz, pb, db]


@pytest.fixture
def zone_table(tmp_path: Path) -> Path:
    path = tmp_path / "zones.parquet"
    ZONES.write_parquet(path)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_seaborn_places_zone_names(tmp_path: Path, zone_table: Path, fmt: str) -> None:
    rows = [
        sb_row("2019-03-23 20:21:09", "2019-03-23 20:27:24"),
        sb_row("2019-03-04 16:11:55", "2019-03-04 16:59:00", "corona", " Newark  Airport", "QUEENS", "EWR",
               passengers="3", color="Green", payment="cash"),
    ]  # fmt: skip
    path = write_table(tmp_path, "taxis", SB_HEADER, rows, fmt)
    df, report = SeabornTaxis(paths=path, zone_table=zone_table).load()
    assert (report.n_in, report.n_out, report.dropped) == (2, 2, {})
    assert df.columns[: len(CORE_COLUMNS)] == list(CORE_COLUMNS)
    assert df["pickup_time"].to_list() == [
        dt.datetime(2019, 3, 23, 20, 21, 9),
        dt.datetime(2019, 3, 4, 16, 11, 55),
    ]
    assert df["duration_s"].to_list() == [375.0, 2825.0]
    assert df["pickup_lat"].to_list() == pytest.approx([40.7669, (40.7420 + 40.7530) / 2])
    assert df["pickup_lon"].to_list() == pytest.approx([-73.9594, (-73.8617 - 73.8560) / 2])
    assert df["dropoff_lat"].to_list() == pytest.approx([40.7486, 40.6918])
    assert df["pickup_zone_id"].to_list() == [141, 56]
    assert df["dropoff_zone_id"].to_list() == [233, 1]
    assert df["coords_from_zone"].all()
    assert df["service"].to_list() == ["yellow", "green"]
    assert df["vendor"].null_count() == 2
    assert df["passenger_count"].to_list() == [1, 3]
    assert df["payment_type"].to_list() == [1, 2]
    assert df["payment_method"].to_list() == ["credit card", "cash"]
    assert df["trip_distance_km"].to_list() == pytest.approx([1.6 * 1.609344] * 2)
    assert df["tip_amount"].to_list() == [2.15, 2.15] and df["total_amount"].to_list() == [12.95, 12.95]
    assert set(df["source"]) == {"seaborn_taxis"} and set(df["city"]) == {"nyc"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_seaborn_bad_rows(tmp_path: Path, zone_table: Path, fmt: str) -> None:
    rows = [
        sb_row("2019-03-23 20:21:09", "2019-03-23 20:27:24"),  # kept
        sb_row("2019-03-23 20:21:09", "2019-03-23 20:27:24"),  # duplicate
        sb_row("2019-03-23 21:00:00", "2019-03-23 21:10:00", dz="Atlantis"),
        sb_row("2019-03-23 21:00:00", "2019-03-23 21:10:00", pz="", pb=""),
        sb_row("2019-03-23 21:00:00", "2019-03-23 21:10:00", pz="NV", pb="Unknown"),  # no centroid
        sb_row("2019-03-23 21:00:00", "2019-03-23 21:10:00", pb="Brooklyn"),  # wrong borough
        sb_row("2019-03-23 21:00:00", "2019-03-23 21:00:00"),
        sb_row("2019-03-23 21:00:00", "2019-03-23 20:00:00"),
        sb_row("23rd of March", "2019-03-23 21:10:00"),
        sb_row("2019-03-23 22:00:00", "2019-03-23 22:10:00", passengers="12"),
    ]
    path = write_table(tmp_path, "taxis", SB_HEADER, rows, fmt)
    df, report = SeabornTaxis(paths=path, zone_table=zone_table).load()
    assert df.height == report.n_out == 1
    assert report.dropped == {
        "duplicate_row": 1,
        "unknown_zone": 4,
        "nonpositive_duration": 2,
        "unparseable:pickup_time": 1,
        "bad_passenger_count": 1,
    }
    assert report.n_in == report.n_out + sum(report.dropped.values()) == len(rows)
    assert report.examples["unknown_zone"][0][1:] == (2, "Atlantis / Manhattan")


def test_seaborn_without_borough_columns(tmp_path: Path, zone_table: Path) -> None:
    header = SB_HEADER[:-2]
    rows = [sb_row("2019-03-23 20:21:09", "2019-03-23 21:27:24", "Corona", "Newark Airport")[:-2]]
    df, report = SeabornTaxis(
        paths=write_table(tmp_path, "t", header, rows, "csv"), zone_table=zone_table
    ).load()
    assert report.n_out == 1 and df["dropoff_zone_id"].to_list() == [1]


def test_seaborn_zone_table_errors(tmp_path: Path, zone_table: Path) -> None:
    path = write_table(
        tmp_path, "taxis", SB_HEADER, [sb_row("2019-03-23 20:21:09", "2019-03-23 20:27:24")], "csv"
    )
    with pytest.raises(DataError, match="zone_table=") as err:
        SeabornTaxis(paths=path).load()
    assert str(path) in str(err.value)
    nameless = tmp_path / "ids_only.csv"
    ZONES.drop("zone", "borough").write_csv(nameless)
    with pytest.raises(DataError, match="names") as err:
        SeabornTaxis(paths=path, zone_table=nameless).load()
    assert str(nameless) in str(err.value)
    with pytest.raises(DataError, match="not found"):
        SeabornTaxis(paths=path, zone_table=tmp_path / "nope.parquet").load()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("column", ["pickup", "dropoff", "pickup_zone", "dropoff_zone"])
def test_seaborn_missing_required_column(tmp_path: Path, zone_table: Path, column: str, fmt: str) -> None:
    keep = [i for i, h in enumerate(SB_HEADER) if h != column]
    row = sb_row("2019-03-23 20:21:09", "2019-03-23 20:27:24")
    path = write_table(tmp_path, "taxis", [SB_HEADER[i] for i in keep], [[row[i] for i in keep]], fmt)
    with pytest.raises(DataError) as err:
        SeabornTaxis(paths=path, zone_table=zone_table).load()
    assert str(path) in str(err.value) and f"'{column}'" in str(err.value)


@pytest.mark.real_data
def test_real_seaborn_taxis(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = require_dataset(shared_data, "seaborn_nyc_taxis_2019_03") / "taxis.parquet"
    zones = require_dataset(shared_data, "nyc_tlc_taxi_zones") / "taxi_zone_centroids.parquet"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df, report = SeabornTaxis(paths=path, zone_table=zones).load()
    assert report.n_in == 6_433
    assert report.n_out > 0.98 * report.n_in
    assert report.n_in == report.n_out + sum(report.dropped.values())
    # every dropped zone is an empty one (26 pickups, 45 dropoffs, partly the same trips): names all match
    assert report.dropped["unknown_zone"] <= 26 + 45
    assert all(value is None for _, _, value in report.examples["unknown_zone"])
    assert set(df["service"]) == {"yellow", "green"}
    assert df["pickup_time"].dt.year().unique().to_list() == [2019]
    assert capsys.readouterr() == ("", "")
