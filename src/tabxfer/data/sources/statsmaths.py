"""statsmaths/ml_data ``nyc_taxi``: 10,000 NYC yellow-taxi trips with durations, dates reduced to fields.

Columns: ``obs_id, train_id (train/valid/test), duration (seconds; NA in the test rows), day, hour,
minute, weekday, pickup_longitude, pickup_latitude, dropoff_longitude, dropoff_latitude, trip_distance
(miles), pickup_NTACode, dropoff_NTACode``. Written by R: ``NA`` means missing in every column.

**Date reconstruction.** The file gives the day of the month, hour, minute and day of the week
(R's convention: 1 = Sunday ... 7 = Saturday) but no year or month. Every (day, weekday) pair in the file
fits one calendar: 31 days, day 1 a Sunday. May 2016 is such a month (and the Kaggle NYC trips it most
likely comes from span January-June 2016), so ``pickup_time`` is built as ``year-month-day hour:minute``
with ``year=2016, month=5`` by default. Other months fit the weekdays equally (e.g. March 2015,
January 2017, October 2017): the absolute date is a reconstruction, only the day of week, the time of
day and the position in the month are data. Each row's weekday is checked against the date built:

* a row whose weekday disagrees is dropped as ``weekday_mismatch``;
* a file where most rows disagree raises :class:`~tabxfer.data.schema.DataError`: ``year``/``month``
  do not fit the file (pick a month whose day 1 has the weekday the file gives day 1);
* day/hour/minute outside the month or the clock (day 31 of a 30-day month, hour 24) drop the row as
  ``unparseable:pickup_time``.

The test split has no durations: with ``labeled=True`` (default) its rows are dropped as
``missing_duration`` by the generic validation; load with ``labeled=False`` to keep them (null target).

Extra columns: ``split`` (train/valid/test), ``trip_distance_km``, ``pickup_nta``, ``dropoff_nta``.
"""

from __future__ import annotations

import calendar
import dataclasses
from pathlib import Path
from typing import ClassVar

import polars as pl

from tabxfer.data.schema import FILE, REASON, DataError, DropReport
from tabxfer.data.sources.base import MAX_BAD_FRACTION, RowParser, TripSource

MILE_KM = 1.609344
NA_STRINGS = ("", "NA", "NaN", "nan", "null", "NULL")
WEEKDAY_MISMATCH = "weekday_mismatch"
R_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _text(raw: str) -> pl.Expr:
    """A column as stripped strings, R's ``NA`` (and empty) as null."""
    s = pl.col(raw).cast(pl.String).str.strip_chars()
    return pl.when(s.is_in(NA_STRINGS)).then(None).otherwise(s)


def _number(p: RowParser, raw: str, name: str, *, integer: bool = False) -> pl.Expr:
    """A float (or whole number), ``NA`` as null; any other value that does not parse drops the row."""
    if p.schema[raw].is_numeric():  # Parquet: no text to read (and much faster)
        present, x = pl.col(raw).is_not_null(), pl.col(raw).cast(pl.Float64)
    else:
        s = _text(raw)
        present, x = s.is_not_null(), s.cast(pl.Float64, strict=False)
    ok = x.is_not_null() & x.is_finite()
    if integer:
        ok = ok & (x == x.round(0))
    p.fail(present & ~ok.fill_null(False), f"unparseable:{name}", pl.col(raw).cast(pl.String))
    return pl.when(ok).then(x).otherwise(None).alias(name)


def r_weekday(t: pl.Expr) -> pl.Expr:
    """Day of week in R's convention (``lubridate::wday``): 1 = Sunday ... 7 = Saturday."""
    return t.dt.weekday() % 7 + 1


@dataclasses.dataclass
class StatsmathsNYCTaxi(TripSource):
    """The statsmaths ``nyc_taxi`` course file.

    Args:
        year, month: the month the day/hour/minute fields are placed in (module docstring); the default,
            May 2016, fits the weekdays of the published file.
    """

    year: int = 2016
    month: int = 5

    name: ClassVar[str] = "statsmaths_nyc"
    city: ClassVar[str] = "nyc"
    mode: ClassVar[str] = "taxi"
    has_ids: ClassVar[bool] = True
    extra: ClassVar[dict[str, pl.DataType]] = {
        "split": pl.String(),
        "trip_distance_km": pl.Float64(),
        "pickup_nta": pl.String(),
        "dropoff_nta": pl.String(),
    }

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1 <= self.year <= 9999:
            raise ValueError(f"year={self.year}, month={self.month} is not a month")

    def parse(self, p: RowParser) -> list[pl.Expr]:
        exprs = [_text(p.require("obs_id")).alias("trip_id"), self._pickup_time(p)]
        for out, raw in (
            ("pickup_lat", "pickup_latitude"),
            ("pickup_lon", "pickup_longitude"),
            ("dropoff_lat", "dropoff_latitude"),
            ("dropoff_lon", "dropoff_longitude"),
        ):
            exprs.append(_number(p, p.require(raw), out))

        dur = p.find("duration", "trip_duration")
        if dur is not None:
            exprs.append(_number(p, dur, "duration_s"))
        elif self.labeled:
            raise DataError(
                "missing required column 'duration' (load files without it with labeled=False); "
                f"the file has {p.schema.names()}",
                file=str(p.path),
                column="duration",
            )
        split = p.find("train_id", "split")
        exprs.append((_text(split).str.to_lowercase() if split else pl.lit(None, pl.String)).alias("split"))
        dist = p.find("trip_distance")
        if dist is not None:
            exprs.append((_number(p, dist, "trip_distance_km") * MILE_KM).alias("trip_distance_km"))
        for out, raw_name in (("pickup_nta", "pickup_NTACode"), ("dropoff_nta", "dropoff_NTACode")):
            col = p.find(raw_name, out)
            exprs.append((_text(col) if col else pl.lit(None, pl.String)).alias(out))
        return exprs

    def _pickup_time(self, p: RowParser) -> pl.Expr:
        fields = {f: p.require(f) for f in ("day", "hour", "minute", "weekday")}
        day, hour, minute, weekday = (_number(p, raw, f, integer=True) for f, raw in fields.items())
        n_days = calendar.monthrange(self.year, self.month)[1]
        valid = day.is_between(1, n_days) & hour.is_between(0, 23) & minute.is_between(0, 59)
        shown = pl.concat_str(
            [pl.lit(f"{f}=") + pl.col(c).cast(pl.String) for f, c in fields.items()], separator=" "
        )
        p.fail(
            ~valid & day.is_not_null() & hour.is_not_null() & minute.is_not_null(),
            "unparseable:pickup_time",
            shown,
        )
        d, h, m = (pl.when(valid).then(x).cast(pl.Int64, strict=False) for x in (day, hour, minute))
        t = pl.datetime(self.year, self.month, 1, time_unit="us") + pl.duration(
            days=d - 1, hours=h, minutes=m
        )
        bad_weekday = weekday.is_not_null() & (r_weekday(t).cast(pl.Float64) != weekday)
        p.fail(bad_weekday, WEEKDAY_MISMATCH, shown)
        return t.alias("pickup_time")

    def _report(self, counts: pl.DataFrame, examples: pl.DataFrame, files: list[Path]) -> DropReport:
        report = super()._report(counts, examples, files)
        per_file = counts.group_by(FILE).agg(pl.col("n").sum().alias("total"))
        bad = counts.filter(pl.col(REASON) == WEEKDAY_MISMATCH).join(per_file, on=FILE)
        first = R_WEEKDAYS[(calendar.weekday(self.year, self.month, 1) + 1) % 7]
        for file, n, total in bad.select(FILE, "n", "total").iter_rows():
            if n > MAX_BAD_FRACTION * total:
                raise DataError(
                    f"{n:,} of {total:,} rows have a weekday that does not fit the month "
                    f"{self.year}-{self.month:02d} (day 1 is a {first}); pass the year/month the file "
                    "comes from (a month whose day 1 has the weekday the file gives day 1; "
                    "weekday 1 = Sunday)",
                    file=file,
                    column="weekday",
                )
        return report
