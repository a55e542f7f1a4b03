"""Daily weather for New York (NOAA Central Park station), as an optional feature table joined on the date.

The Kaggle companion file ``weather_data_nyc_centralpark_2016.csv`` and its re-saves: columns ``date,
maximum temperature, minimum temperature, average temperature`` (°F) and ``precipitation, snow fall,
snow depth`` (inches, written as strings because NOAA marks a trace amount ``T``). Headers match case-,
space- and underscore-insensitively, and the original file's typo ``temerature`` is accepted. Dates may
be ISO (``2016-01-31``), day first with slashes (``31/1/2016``, the re-saved copy) or day first with
dashes (``31-1-2016``), or a Date column (Parquet).

:func:`load_daily_weather` returns one row per date, sorted::

    date (Date), tmax_c, tmin_c, tavg_c (°C), precip_mm, snowfall_mm, snow_depth_mm (mm), all Float64

**Trace** (``T``): more than nothing but less than the smallest amount NOAA reports, so half of it:
0.005 in of precipitation, 0.05 in of snow fall, 0.5 in of snow depth (see :data:`TRACE_INCHES`).
**Missing** (empty, ``M``, ``NA``) is null. A value that does not parse (``"1,2"``, ``"?"``) is null too,
with a :class:`UserWarning` naming the file, column and first row; when more than half of a column's
values do not parse it is the wrong column or unit and :class:`~tabxfer.data.schema.DataError` is raised.
Rows whose date does not parse follow the same rule (dropped with a warning; an error past half), and a
date given twice is an error (a join on the date would duplicate trips).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import polars as pl

from tabxfer.data.schema import DataError
from tabxfer.data.sources.base import MAX_BAD_FRACTION, scan_table

MM_PER_INCH = 25.4
TRACE = "T"
MISSING = ("", "M", "NA", "NaN", "nan", "null", "NULL")
# Half the smallest reported amount, in inches (NOAA reports precipitation to 0.01 in, snow fall to
# 0.1 in, snow depth in whole inches).
TRACE_INCHES = {"precip_mm": 0.005, "snowfall_mm": 0.05, "snow_depth_mm": 0.5}
DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y")

# output column -> (header as normalized by _norm, unit)
COLUMNS = {
    "tmax_c": ("maximum temperature", "degF"),
    "tmin_c": ("minimum temperature", "degF"),
    "tavg_c": ("average temperature", "degF"),
    "precip_mm": ("precipitation", "inch"),
    "snowfall_mm": ("snow fall", "inch"),
    "snow_depth_mm": ("snow depth", "inch"),
}


def _norm(header: str) -> str:
    h = re.sub(r"[\s_]+", " ", header.strip().lower()).replace("temerature", "temperature")
    return {"snowfall": "snow fall", "snowdepth": "snow depth"}.get(h, h)


def load_daily_weather(path: str | os.PathLike[str]) -> pl.DataFrame:
    """The daily weather table of one CSV or Parquet file (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise DataError("no such file", file=str(p))
    raw = scan_table(p).collect()
    by_norm = {_norm(c): c for c in raw.columns}
    missing = [h for h in ("date", *(h for h, _ in COLUMNS.values())) if h not in by_norm]
    if missing:
        raise DataError(
            f"missing required column(s) {missing}; the file has {raw.columns}",
            file=str(p),
            column=missing[0],
        )

    date_col = by_norm["date"]
    parsed = raw.select(
        _date(raw[date_col]).alias("date"),
        *(_amount(by_norm[header], unit, name).alias(name) for name, (header, unit) in COLUMNS.items()),
    )
    bad_date = parsed["date"].is_null()
    _check_share(p, date_col, raw[date_col], bad_date)
    for name, (header, _) in COLUMNS.items():
        col = by_norm[header]
        text = raw[col].cast(pl.String).str.strip_chars()
        present = ~(text.is_null() | text.is_in(MISSING))
        _check_share(p, col, raw[col], (present & parsed[name].is_null() & ~bad_date).fill_null(False))

    df = parsed.filter(~bad_date)
    dup = df.filter(pl.col("date").is_duplicated())
    if dup.height:
        raise DataError(
            f"{dup.height} rows share a date (first: {dup['date'][0]}); one row per day expected",
            file=str(p),
            column=date_col,
        )
    return df.sort("date")


def _date(src: pl.Series) -> pl.Expr:
    """Dates from a Date/Datetime column or strings; ``a/b/yyyy`` is read day first unless month first
    parses more of the file's values (a US-style re-save)."""
    if src.dtype == pl.Date:
        return pl.lit(src)
    if isinstance(src.dtype, pl.Datetime):
        return pl.lit(src).dt.date()
    s = pl.lit(src.cast(pl.String)).str.strip_chars()
    formats = list(DATE_FORMATS)
    day_first, month_first = (
        pl.select(s.str.strptime(pl.Date, f, strict=False).is_not_null().sum()).item()
        for f in ("%d/%m/%Y", "%m/%d/%Y")
    )
    if month_first > day_first:
        formats[formats.index("%d/%m/%Y")] = "%m/%d/%Y"
    return pl.coalesce([s.str.strptime(pl.Date, f, strict=False) for f in formats])


def _amount(col: str, unit: str, name: str) -> pl.Expr:
    """Values in the output unit: °F -> °C, inches -> mm (trace ``T`` -> :data:`TRACE_INCHES`)."""
    s = pl.col(col).cast(pl.String).str.strip_chars()
    x = s.cast(pl.Float64, strict=False)
    if unit == "degF":
        return (x - 32.0) * 5.0 / 9.0
    inches = pl.when(s.str.to_uppercase() == TRACE).then(pl.lit(TRACE_INCHES[name])).otherwise(x)
    return inches * MM_PER_INCH


def _check_share(path: Path, column: str, raw: pl.Series, bad: pl.Series) -> None:
    """Warn about values that do not parse; raise when they are more than half the column."""
    n_bad, n = int(bad.sum()), len(bad)
    if not n_bad:
        return
    row = int(bad.arg_true()[0])
    msg = f"{n_bad:,} of {n:,} values do not parse (first at row {row}: {raw[row]!r})"
    if n_bad > MAX_BAD_FRACTION * n:
        raise DataError(f"{msg}; wrong column or format?", file=str(path), column=column)
    warnings.warn(f"{path}: column {column!r}: {msg}; read as missing", UserWarning, stacklevel=3)
