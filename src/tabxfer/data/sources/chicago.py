"""City of Chicago taxi trips, CSV or Parquet, in the two layouts they circulate in.

* **snake_case** (BigQuery ``chicago_taxi_trips.taxi_trips`` and the tensorflow/tfx example files):
  ``trip_start_timestamp`` (unix seconds), ``trip_seconds, trip_miles, pickup_latitude,
  pickup_longitude, dropoff_latitude, dropoff_longitude, pickup/dropoff_community_area,
  pickup/dropoff_census_tract, fare, tips, payment_type, company``; the tfx files add
  ``trip_start_month/hour/day`` (day of week, 1 = Sunday).
* **data-portal CSV export** (Title Case): ``Trip ID, Taxi ID, Trip Start Timestamp, Trip End Timestamp,
  Trip Seconds, Trip Miles, ..., Fare, Tips, Tolls, Extras, Trip Total, Payment Type, Company,
  Pickup Centroid Latitude, Pickup Centroid Longitude, ...``; timestamps ``01/01/2016 12:00:00 AM``,
  money sometimes written ``$1,012.25``.

Chicago publishes start times in *local* wall time, rounded to 15 minutes. Unix seconds in these files
encode that wall time as if it were UTC (``1400269500`` is 2014-05-16 19:45 in Chicago), so they are read
without a time zone shift (:meth:`RowParser.epoch_seconds`). When ``trip_start_hour/day/month`` are
present they must agree with the timestamp: a row that disagrees is dropped as ``start_time_mismatch``,
and a file where most rows disagree is an error (its timestamps were shifted to true UTC somewhere).

``duration_s`` is ``trip_seconds`` (the end timestamp is rounded to 15 minutes and is not used).
Coordinates are census-tract or community-area centroids; Chicago leaves them empty for trips outside
the city or masked for privacy: those trips are dropped as ``missing_coordinates``.

Extra columns: ``trip_distance_km``, ``fare_amount``, ``tip_amount``; ``payment_method`` (the published
string, lower-cased: ``cash``, ``credit card``, ``mobile``, ...) and ``payment_type`` (the same in the
TLC's integer codes so that a union with TLC trips keeps one dtype: 1 credit card, 2 cash, 3 no charge,
4 dispute, 5 unknown; null for Chicago-only methods such as ``mobile`` or ``prcard``);
``pickup/dropoff_community_area`` (Int16, 1..77); ``taxi_id`` (portal export only).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import polars as pl

from tabxfer.data.schema import FILE, REASON, DataError, DropReport
from tabxfer.data.sources.base import MAX_BAD_FRACTION, RowParser, TripSource

MILE_KM = 1.609344
DATETIME_FORMATS = (
    "%m/%d/%Y %I:%M:%S %p",  # the portal export
    "%Y-%m-%d %H:%M:%S%.f",  # with or without fractional seconds
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S UTC",  # BigQuery CSV export (local wall time labelled UTC)
)
TLC_PAYMENT_CODES = {"credit card": 1, "cash": 2, "no charge": 3, "dispute": 4, "unknown": 5}
START_MISMATCH = "start_time_mismatch"


def names(*snake: str) -> tuple[str, ...]:
    """Candidates in both layouts: ``trip_seconds`` -> ``trip_seconds``, ``trip seconds`` (any case)."""
    out: list[str] = []
    for s in snake:
        out += [s, s.replace("_", " ")]
    return tuple(out)


def _number(p: RowParser, raw: str, name: str) -> pl.Expr:
    """A float; strings may carry ``$`` and thousands separators (``"$1,012.25"``)."""
    if p.schema[raw] != pl.String:
        return p.float(raw, name)
    s = pl.col(raw).str.strip_chars()
    parsed = s.str.replace_all(r"[$,]", "").cast(pl.Float64, strict=False)
    p.fail((s != "") & parsed.is_null(), f"unparseable:{name}", pl.col(raw))
    return parsed.alias(name)


def _start_time(p: RowParser, raw: str) -> pl.Expr:
    """Unix seconds (numbers, or digit strings in a CSV), datetimes, or formatted strings."""
    dtype = p.schema[raw]
    if dtype.is_numeric():
        return p.epoch_seconds(raw, "pickup_time")
    if dtype != pl.String:
        return p.datetime(raw, "pickup_time", DATETIME_FORMATS)
    s = pl.col(raw).str.strip_chars()
    secs = s.cast(pl.Float64, strict=False)
    epoch = (secs * 1e6).cast(pl.Int64, strict=False).cast(pl.Datetime("us"))
    text = pl.coalesce([s.str.strptime(pl.Datetime("us"), f, strict=False) for f in DATETIME_FORMATS])
    parsed = pl.when(s.str.contains(r"^-?\d+(\.\d*)?$")).then(epoch).otherwise(text)
    p.fail((s != "") & parsed.is_null(), "unparseable:pickup_time", pl.col(raw))
    return parsed.alias("pickup_time")


def _lenient_int(p: RowParser, raw: str) -> pl.Expr:
    src = pl.col(raw)
    x = src.str.strip_chars() if p.schema[raw] == pl.String else src
    return x.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)


@dataclasses.dataclass
class ChicagoTaxiTrips(TripSource):
    """Chicago taxi trips in either layout (recognized per file)."""

    name: ClassVar[str] = "chicago_taxi"
    city: ClassVar[str] = "chicago"
    mode: ClassVar[str] = "taxi"
    has_ids: ClassVar[bool] = True  # portal/BigQuery trip ids; tfx files get "<source>:<file>:<row>"
    extra: ClassVar[dict[str, pl.DataType]] = {
        "trip_distance_km": pl.Float64(),
        "fare_amount": pl.Float64(),
        "tip_amount": pl.Float64(),
        "payment_type": pl.Int16(),
        "payment_method": pl.String(),
        "pickup_community_area": pl.Int16(),
        "dropoff_community_area": pl.Int16(),
        "taxi_id": pl.String(),
    }

    def parse(self, p: RowParser) -> list[pl.Expr]:
        start = p.require(*names("trip_start_timestamp"), what="trip_start_timestamp")
        pickup = _start_time(p, start)
        self._start_time_check(p, start, pickup)
        exprs = [pickup]

        trip_id = p.find(*names("trip_id", "unique_key"))
        if trip_id is not None:
            exprs.append(p.string(trip_id, "trip_id"))
        exprs.append(p.string(p.find(*names("taxi_id")), "taxi_id"))
        exprs.append(p.string(p.find("company", "Company"), "vendor"))

        for out, cands in (
            ("pickup_lat", names("pickup_latitude", "pickup_centroid_latitude")),
            ("pickup_lon", names("pickup_longitude", "pickup_centroid_longitude")),
            ("dropoff_lat", names("dropoff_latitude", "dropoff_centroid_latitude")),
            ("dropoff_lon", names("dropoff_longitude", "dropoff_centroid_longitude")),
        ):
            exprs.append(p.float(p.require(*cands, what=cands[0]), out))

        secs = p.find(*names("trip_seconds"))
        if secs is not None:
            exprs.append(_number(p, secs, "duration_s"))
        elif self.labeled:
            raise DataError(
                "missing required column 'trip_seconds' (the duration); load files without it with "
                f"labeled=False; the file has {p.schema.names()}",
                file=str(p.path),
                column="trip_seconds",
            )

        miles = p.find(*names("trip_miles"))
        if miles is not None:
            exprs.append((_number(p, miles, "trip_distance_km") * MILE_KM).alias("trip_distance_km"))
        for out, cands in (("fare_amount", names("fare")), ("tip_amount", names("tips"))):
            col = p.find(*cands)
            if col is not None:
                exprs.append(_number(p, col, out))
        for out, cands in (
            ("pickup_community_area", names("pickup_community_area")),
            ("dropoff_community_area", names("dropoff_community_area")),
        ):
            col = p.find(*cands)
            if col is not None:
                exprs.append(p.int(col, out, pl.Int16()))

        method = p.string(p.find(*names("payment_type")), "payment_method").str.to_lowercase()
        exprs.append(method.alias("payment_method"))
        code = method.replace_strict(TLC_PAYMENT_CODES, default=None, return_dtype=pl.Int16)
        exprs.append(code.alias("payment_type"))
        return exprs

    def _start_time_check(self, p: RowParser, raw_start: str, pickup: pl.Expr) -> None:
        """Drop rows whose redundant trip_start_hour/day/month disagree with the timestamp."""
        parts = {
            "trip_start_hour": pickup.dt.hour(),
            "trip_start_day": pickup.dt.weekday() % 7 + 1,  # day of week, 1 = Sunday
            "trip_start_month": pickup.dt.month(),
        }
        found = {c: p.find(*names(c)) for c in parts}
        conds = [_lenient_int(p, col) != parts[c].cast(pl.Int64) for c, col in found.items() if col]
        if conds:
            shown = [raw_start, *(col for col in found.values() if col)]
            raw = pl.concat_str([pl.col(c).cast(pl.String) for c in shown], separator=" | ")
            p.fail(pl.any_horizontal(conds), START_MISMATCH, raw)

    def _report(self, counts: pl.DataFrame, examples: pl.DataFrame, files: list[Path]) -> DropReport:
        report = super()._report(counts, examples, files)
        per_file = counts.group_by(FILE).agg(pl.col("n").sum().alias("total"))
        bad = counts.filter(pl.col(REASON) == START_MISMATCH).join(per_file, on=FILE)
        for file, n, total in bad.select(FILE, "n", "total").iter_rows():
            if n > MAX_BAD_FRACTION * total:
                raise DataError(
                    f"{n:,} of {total:,} rows have trip_start_hour/day/month that disagree with "
                    "trip_start_timestamp; the timestamps look shifted from Chicago local time "
                    "(converted to UTC?)",
                    file=file,
                    column="trip_start_timestamp",
                )
        return report
