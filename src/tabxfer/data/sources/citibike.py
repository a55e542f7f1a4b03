"""Citi Bike trip histories (New York City and Jersey City), CSV or Parquet, every era's columns.

The format is recognized per file from its columns (names match case- and space-insensitively):

* **legacy** (2013-2020): ``tripduration, starttime, stoptime, start station id, start station name,
  start station latitude, start station longitude, end station id/name/latitude/longitude, bikeid,
  usertype, birth year, gender``; Jersey City 2017 files spell them in Title Case (``Trip Duration``,
  ``Start Time``, ``Bike ID``, ``User Type``, ...).
* **split date/time** (re-saved 2018 files): ``startdate, starttime, stopdate, stoptime`` with
  ``starttime`` holding the clock time only (``"12/1/2018"``, ``"0:03"``).
* **2021+**: ``ride_id, rideable_type, started_at, ended_at, start_station_name, start_station_id,
  end_station_name, end_station_id, start_lat, start_lng, end_lat, end_lng, member_casual``.

Timestamps may be ISO (``2017-02-01 00:00:12``, with or without fractional seconds) or ``M/D/YYYY H:MM``
(``M/D/YYYY H:MM:SS``), as spreadsheet re-saves left them. ``duration_s`` is ``tripduration`` when the
file has it (exact seconds from the system: re-saved timestamps lost their seconds), else
``ended_at - started_at``. Station coordinates are the trips' coordinates (station positions, so a
round trip has distance 0).

**City**: ``city_name`` when given; otherwise from the file names, Citi Bike's own convention: a name
starting ``JC-`` (``JC-201702-citibike-tripdata.csv``) is Jersey City, any other name is New York City.
One source loads one city: files of both cities without ``city_name`` are an error (load them as two
sources).

Extra columns: station ids and the bike id as strings; ``user_type`` normalized to ``member``
(Subscriber/member) or ``casual`` (Customer/casual), other values lower-cased; ``birth_year`` (Int16) and
``gender`` (Int8, 0 unknown, 1 male, 2 female) are optional self-reported fields: a value that does not
parse (``"NULL"``, ``"\\N"``) becomes null and never drops the trip; ``rideable_type`` (2021+ only).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import polars as pl

from tabxfer.data.schema import DataError
from tabxfer.data.sources.base import RowParser, TripSource

DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",  # also parses values without a fraction
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
)

USER_TYPES = {"subscriber": "member", "member": "member", "customer": "casual", "casual": "casual"}

# (canonical name, candidate columns in the eras' spellings)
COORDINATES = (
    ("pickup_lat", ("start station latitude", "start_lat")),
    ("pickup_lon", ("start station longitude", "start_lng", "start_lon")),
    ("dropoff_lat", ("end station latitude", "end_lat")),
    ("dropoff_lon", ("end station longitude", "end_lng", "end_lon")),
)


def city_from_file_name(path: str | Path) -> str:
    """``jersey_city`` for Citi Bike's ``JC-...`` files, ``nyc`` for every other file name."""
    return "jersey_city" if Path(path).name.upper().startswith("JC-") else "nyc"


def _lenient_int(p: RowParser, raw: str | None, name: str, dtype: pl.DataType) -> pl.Expr:
    """An optional integer field: values that do not parse as a whole number become null (no drop)."""
    if raw is None:
        return pl.lit(None, dtype=dtype).alias(name)
    src = pl.col(raw)
    x = (
        src.str.strip_chars().cast(pl.Float64, strict=False)
        if p.schema[raw] == pl.String
        else src.cast(pl.Float64, strict=False)
    )
    ok = x.is_finite() & (x == x.round(0))
    return pl.when(ok).then(x).otherwise(None).cast(dtype, strict=False).alias(name)  # out of range: null


def _pickup_or_dropoff(p: RowParser, date_col: str | None, time_col: str, name: str) -> pl.Expr:
    """A timestamp from one column, or from a date column plus a clock-time column (split variant)."""
    if date_col is None:
        return p.datetime(time_col, name, DATETIME_FORMATS)
    d = pl.col(date_col).cast(pl.String).str.strip_chars()
    t = pl.col(time_col).cast(pl.String).str.strip_chars()
    d, t = (pl.when(e == "").then(None).otherwise(e) for e in (d, t))
    joined = pl.concat_str([d, t], separator=" ")
    tries = [joined.str.strptime(pl.Datetime("us"), f, strict=False) for f in DATETIME_FORMATS]
    parsed = pl.coalesce(tries)
    raw = pl.concat_str([d.fill_null(""), t.fill_null("")], separator=" ")
    p.fail((d.is_not_null() | t.is_not_null()) & parsed.is_null(), f"unparseable:{name}", raw)
    return parsed.alias(name)


@dataclasses.dataclass
class CitiBikeTrips(TripSource):
    """Citi Bike trips of any era (mode ``bike``, one rider per trip, vendor ``citibike``).

    Args:
        city_name: ``"jersey_city"`` or ``"nyc"`` for every file; ``None`` (default) infers it from the
            file names (``JC-`` prefix: Jersey City, else NYC; see the module docstring).
    """

    city_name: str | None = None

    name: ClassVar[str] = "citibike"
    city: ClassVar[str] = "jersey_city"  # the shared data's city; see city_of()
    mode: ClassVar[str] = "bike"
    has_ids: ClassVar[bool] = True  # ride_id (2021+); older files get "<source>:<file>:<row>"
    extra: ClassVar[dict[str, pl.DataType]] = {
        "start_station_id": pl.String(),
        "end_station_id": pl.String(),
        "bike_id": pl.String(),
        "user_type": pl.String(),
        "birth_year": pl.Int16(),
        "gender": pl.Int8(),
        "rideable_type": pl.String(),
    }

    def city_of(self) -> str:
        if self.city_name is not None:
            return self.city_name
        files = self.files()
        by_city: dict[str, list[str]] = {}
        for f in files:
            by_city.setdefault(city_from_file_name(f), []).append(f.name)
        if len(by_city) > 1:
            raise DataError(
                "Citi Bike files of different cities in one source (Jersey City 'JC-' files: "
                f"{by_city['jersey_city'][:3]}, NYC files: {by_city['nyc'][:3]}); load each city as its "
                "own source, or pass city_name= to treat them all as one city",
                file=", ".join(str(f) for f in files[:5]),
            )
        return next(iter(by_city))

    def parse(self, p: RowParser) -> list[pl.Expr]:
        split_date = p.find("startdate", "start date")
        start = p.require("starttime", "start time", "started_at", what="starttime")
        pickup = _pickup_or_dropoff(p, split_date, start, "pickup_time")
        exprs: list[pl.Expr] = [
            pickup,
            pl.lit("citibike").alias("vendor"),
            pl.lit(1).alias("passenger_count"),
        ]

        ride_id = p.find("ride_id")
        if ride_id is not None:
            exprs.append(p.string(ride_id, "trip_id"))

        for out, names in COORDINATES:
            exprs.append(p.float(p.require(*names, what=names[0]), out))

        dur = p.find("tripduration", "trip duration", "trip_duration")
        stop = p.find("stoptime", "stop time", "ended_at")
        if dur is not None:
            exprs.append(p.float(dur, "duration_s"))
        elif stop is not None:
            dropoff = _pickup_or_dropoff(p, p.find("stopdate", "stop date"), stop, "dropoff_time")
            exprs.append(((dropoff - pickup).dt.total_microseconds() / 1e6).alias("duration_s"))
        elif self.labeled:
            raise DataError(
                "no tripduration and no stoptime/ended_at column: the duration cannot be known "
                f"(load unlabeled files with labeled=False); the file has {p.schema.names()}",
                file=str(p.path),
                column="tripduration",
            )

        for out, names in (
            ("start_station_id", ("start station id", "start_station_id")),
            ("end_station_id", ("end station id", "end_station_id")),
            ("bike_id", ("bikeid", "bike id", "bike_id")),
            ("rideable_type", ("rideable_type", "rideable type")),
        ):
            exprs.append(p.string(p.find(*names), out))

        user = p.string(p.find("usertype", "user type", "user_type", "member_casual"), "user_type")
        user = user.str.to_lowercase()
        exprs.append(user.replace_strict(USER_TYPES, default=user, return_dtype=pl.String).alias("user_type"))
        exprs.append(
            _lenient_int(p, p.find("birth year", "birth_year", "birthyear"), "birth_year", pl.Int16())
        )
        exprs.append(_lenient_int(p, p.find("gender"), "gender", pl.Int8()))
        return exprs
