"""load_daily_weather: header spellings, date formats, trace amounts, units, bad values, the real file."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import polars as pl
import pytest

from factories import require_dataset
from tabxfer.data.schema import DataError
from tabxfer.data.weather import TRACE_INCHES, load_daily_weather

ORIGINAL_HEADER = [  # the Kaggle file, typo included
    "date", "maximum temerature", "minimum temperature", "average temperature",
    "precipitation", "snow fall", "snow depth",
]  # fmt: skip
RESAVED_HEADER = [  # another spelling a re-save may use
    "Date", "Maximum_Temperature", "Minimum Temperature", "Average Temperature",
    "Precipitation", "Snowfall", "Snow_Depth",
]  # fmt: skip
ROWS = [
    ["1/1/2016", "42", "34", "38.0", "0", "0", "0"],
    ["23/1/2016", "27", "22", "24.5", "1.96", "27.3", "6"],
    ["24/1/2016", "35", "20", "27.5", "T", "T", "22"],
    ["2/2/2016", "32", "32", "32", "M", "", "T"],
]
OUT_COLUMNS = ["date", "tmax_c", "tmin_c", "tavg_c", "precip_mm", "snowfall_mm", "snow_depth_mm"]
DATES = [dt.date(2016, 1, 1), dt.date(2016, 1, 23), dt.date(2016, 1, 24), dt.date(2016, 2, 2)]


def write_csv(tmp_path: Path, header: list[str], rows: list[list[str]], name: str = "weather.csv") -> Path:
    path = tmp_path / name
    pl.DataFrame(rows, schema=header, orient="row").write_csv(path)
    return path


def check_values(df: pl.DataFrame) -> None:
    assert df.columns == OUT_COLUMNS
    assert df.schema["date"] == pl.Date and all(df.schema[c] == pl.Float64 for c in OUT_COLUMNS[1:])
    assert df["date"].to_list() == DATES
    assert df["tmax_c"].to_list() == pytest.approx([(42 - 32) / 1.8, (27 - 32) / 1.8, (35 - 32) / 1.8, 0.0])
    assert df["tavg_c"][1] == pytest.approx((24.5 - 32) / 1.8)
    trace = TRACE_INCHES
    assert df["precip_mm"].to_list() == pytest.approx([0.0, 1.96 * 25.4, trace["precip_mm"] * 25.4, None])
    assert df["snowfall_mm"].to_list() == pytest.approx([0.0, 27.3 * 25.4, trace["snowfall_mm"] * 25.4, None])
    assert df["snow_depth_mm"].to_list() == pytest.approx(
        [0.0, 6 * 25.4, 22 * 25.4, trace["snow_depth_mm"] * 25.4]
    )


@pytest.mark.parametrize("header", [ORIGINAL_HEADER, RESAVED_HEADER])
def test_csv_day_first_dates(tmp_path: Path, header: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "M" and "" are missing values, not parse failures
        check_values(load_daily_weather(write_csv(tmp_path, header, ROWS)))


@pytest.mark.parametrize("style", ["iso", "day_dash", "month_first"])
def test_csv_other_date_styles(tmp_path: Path, style: str) -> None:
    def fmt(d: dt.date) -> str:
        if style == "iso":
            return d.isoformat()
        if style == "day_dash":
            return f"{d.day}-{d.month}-{d.year}"
        return f"{d.month}/{d.day}/{d.year}"

    rows = [[fmt(d), *r[1:]] for d, r in zip(DATES, ROWS, strict=True)][::-1]  # unsorted in the file
    check_values(load_daily_weather(write_csv(tmp_path, ORIGINAL_HEADER, rows)))


def test_parquet_with_date_and_numeric_columns(tmp_path: Path) -> None:
    """The shared file's layout: a Date column, integer/float temperatures, string amounts."""
    df = pl.DataFrame(
        {
            "date": DATES,
            "maximum temperature": [42, 27, 35, 32],
            "minimum temperature": [34, 22, 20, 32],
            "average temperature": [38.0, 24.5, 27.5, 32.0],
            "precipitation": ["0", "1.96", "T", None],
            "snow fall": ["0", "27.3", "T", None],
            "snow depth": ["0", "6", "22", "T"],
        }
    )
    path = tmp_path / "weather.parquet"
    df.write_parquet(path)
    check_values(load_daily_weather(path))
    df.with_columns(pl.col("date").cast(pl.Datetime("us"))).write_parquet(path)
    check_values(load_daily_weather(path))


def test_a_few_bad_values_become_null_with_a_warning(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[1][4] = "1,96"
    rows[3][0] = "the 2nd"
    path = write_csv(tmp_path, ORIGINAL_HEADER, rows)
    with pytest.warns(UserWarning) as record:
        df = load_daily_weather(path)
    messages = [str(w.message) for w in record]
    assert any("'precipitation'" in m and "row 1" in m and "'1,96'" in m for m in messages)
    assert any("'date'" in m and "row 3" in m for m in messages)
    assert all(str(path) in m for m in messages)
    assert df.height == 3 and df["precip_mm"].to_list()[1] is None


def test_mostly_bad_column_is_an_error(tmp_path: Path) -> None:
    rows = [[*r[:3], "warm", *r[4:]] for r in ROWS]
    path = write_csv(tmp_path, ORIGINAL_HEADER, rows)
    with pytest.raises(DataError, match="do not parse") as err:
        load_daily_weather(path)
    assert str(path) in str(err.value) and "average temperature" in str(err.value)


def test_mostly_bad_dates_is_an_error(tmp_path: Path) -> None:
    rows = [["Jan 1", *r[1:]] for r in ROWS]
    path = write_csv(tmp_path, ORIGINAL_HEADER, rows)
    with pytest.raises(DataError, match="row 0") as err:
        load_daily_weather(path)
    assert str(path) in str(err.value) and "'date'" in str(err.value)


def test_missing_column_and_duplicate_dates(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [h for h in ORIGINAL_HEADER if h != "snow depth"], [r[:-1] for r in ROWS])
    with pytest.raises(DataError, match="snow depth") as err:
        load_daily_weather(path)
    assert str(path) in str(err.value)
    path = write_csv(tmp_path, ORIGINAL_HEADER, [*ROWS, ROWS[0]], name="dup.csv")
    with pytest.raises(DataError, match="share a date") as err:
        load_daily_weather(path)
    assert str(path) in str(err.value)
    with pytest.raises(DataError, match="no such file"):
        load_daily_weather(tmp_path / "absent.csv")


@pytest.mark.real_data
def test_real_central_park_2016(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = require_dataset(shared_data, "nyc_weather_centralpark_2016")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = load_daily_weather(folder / "weather_data_nyc_centralpark_2016.parquet")
    assert (
        df.height == 366
        and df["date"].min() == dt.date(2016, 1, 1)
        and df["date"].max() == dt.date(2016, 12, 31)
    )
    assert df.null_count().sum_horizontal().item() == 0
    first = df.row(0, named=True)  # 42/34/38 °F on 1 Jan (matches the Kaggle original)
    assert (first["tmax_c"], first["tmin_c"], first["tavg_c"]) == pytest.approx(
        (5.556, 1.111, 3.333), abs=1e-3
    )
    assert df["snowfall_mm"].max() == pytest.approx(27.3 * 25.4)  # the January 2016 blizzard
    assert (df["tmin_c"] <= df["tmax_c"]).all()
    assert capsys.readouterr() == ("", "")
