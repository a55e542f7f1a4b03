"""NYC TLC trip records: yellow, green, FHV and high-volume FHV; CSV or Parquet; both eras.

The format is recognized per file from its columns:

* **service**: ``tpep_*`` (or 2009-2014 yellow names) -> yellow taxi; ``lpep_*`` -> green taxi;
  ``hvfhs_license_num`` -> high-volume for-hire (Uber, Lyft, ...); ``dispatching_base_num`` alone -> FHV.
  A ``color`` column (yellow/green, as in the seaborn-data extract) overrides per row.
* **era**: files up to mid-2016 carry ``pickup_longitude``/``pickup_latitude`` (2009: ``Start_Lon``...;
  green 2013-15: ``Pickup_longitude``); later files carry zone ids ``PULocationID``/``DOLocationID``,
  mapped to zone centroids through ``zone_table`` (see :mod:`tabxfer.data.zones`). Such trips get
  ``coords_from_zone = true``: their coordinates are zone centroids, a few hundred metres off.

Duration is dropoff - pickup (HVFHV: ``trip_time`` when present). Extra columns keep what a model may
use or a study may slice by (distance, fare, payment, rate code, zones, flags).
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import polars as pl

from tabxfer.data.schema import DataError
from tabxfer.data.sources.base import RowParser, TripSource
from tabxfer.data.zones import ZONE_TABLE_HELP, load_zone_table

MILE_KM = 1.609344
DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%m/%d/%Y %I:%M:%S %p",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S%.f",
    "%m/%d/%Y %H:%M",
    "%Y-%m-%dT%H:%M:%S%.f",
)
LOCAL_TZ = "America/New_York"  # time-zone-aware (e.g. UTC) Parquet datetimes are converted to it
# 2009-2014 yellow files name the payment type ("CASH", "Credit", "CRD", "No Charge", ...); later files
# use these codes (lower-cased, stripped names -> code).
PAYMENT_CODES = {
    **dict.fromkeys(("credit", "crd", "cre"), 1),
    **dict.fromkeys(("cash", "csh", "cas"), 2),
    **dict.fromkeys(("no charge", "noc", "no"), 3),
    **dict.fromkeys(("dispute", "dis"), 4),
    **dict.fromkeys(("unknown", "unk"), 5),
    "voided": 6,
}

# (pickup, dropoff) datetime column candidates, per service, in the order the eras used them.
TIME_COLUMNS = {
    "yellow": (
        ("tpep_pickup_datetime", "pickup_datetime", "Trip_Pickup_DateTime"),
        ("tpep_dropoff_datetime", "dropoff_datetime", "Trip_Dropoff_DateTime"),
    ),
    "green": (("lpep_pickup_datetime",), ("lpep_dropoff_datetime",)),
    "fhv": (("pickup_datetime",), ("dropoff_datetime", "dropOff_datetime")),
    "hvfhv": (("pickup_datetime",), ("dropoff_datetime",)),
}


def detect_service(p: RowParser) -> str:
    if p.find("hvfhs_license_num"):
        return "hvfhv"
    if p.find("lpep_pickup_datetime"):
        return "green"
    if p.find("tpep_pickup_datetime", "Trip_Pickup_DateTime", "vendor_id", "VendorID", "vendor_name"):
        return "yellow"
    if p.find("dispatching_base_num"):
        return "fhv"
    raise DataError(
        "not a TLC trip file: expected tpep_/lpep_ datetimes (taxi) or dispatching_base_num (FHV); "
        f"the file has {p.schema.names()}",
        file=str(p.path),
    )


def _payment_type(p: RowParser, col: str) -> pl.Expr:
    """Payment codes from numbers (2015+) or names (2009-2014); anything else is unparseable."""
    num = p.int(col, "payment_type", pl.Int16())
    if p.schema[col] != pl.String:
        return num
    p.rules.pop()  # a name is no failure: re-check below
    s = pl.col(col).str.strip_chars().str.to_lowercase()
    named = s.replace_strict(PAYMENT_CODES, default=None, return_dtype=pl.Int16)
    code = pl.coalesce(num, named)
    p.fail((s != "") & code.is_null(), "unparseable:payment_type", pl.col(col))
    return code.alias("payment_type")


@dataclasses.dataclass
class TLCTrips(TripSource):
    """TLC trip records of any service and era.

    Args:
        zone_table: zone id -> centroid table, needed by zone-id files only (error when missing then).
    """

    zone_table: str | os.PathLike[str] | None = None

    name: ClassVar[str] = "tlc"
    city: ClassVar[str] = "nyc"
    mode: ClassVar[str] = "taxi"
    extra: ClassVar[dict[str, pl.DataType]] = {
        "service": pl.String(),
        "trip_distance_km": pl.Float64(),
        "fare_amount": pl.Float64(),
        "payment_type": pl.Int16(),
        "rate_code": pl.Int16(),
        "store_and_fwd_flag": pl.String(),
        "pickup_zone_id": pl.Int32(),
        "dropoff_zone_id": pl.Int32(),
        "coords_from_zone": pl.Boolean(),
    }

    def parse(self, p: RowParser) -> list[pl.Expr]:
        service = detect_service(p)
        pu_names, do_names = TIME_COLUMNS[service]
        pickup = p.datetime(
            p.require(*pu_names, what="pickup datetime"), "pickup_time", DATETIME_FORMATS, LOCAL_TZ
        )
        exprs = [pickup]

        trip_time = p.find("trip_time") if service == "hvfhv" else None
        if trip_time is not None:
            exprs.append(p.float(trip_time, "duration_s"))
        else:
            dropoff = p.datetime(
                p.require(*do_names, what="dropoff datetime"), "dropoff_time", DATETIME_FORMATS, LOCAL_TZ
            )
            exprs.append(((dropoff - pickup).dt.total_microseconds() / 1e6).alias("duration_s"))

        color = p.find("color")
        service_expr = p.string(color, "service").str.to_lowercase() if color else pl.lit(service)
        exprs.append(service_expr.alias("service"))
        exprs.append(pl.lit("for_hire" if service in ("fhv", "hvfhv") else "taxi").alias("mode"))

        vendor = p.find("VendorID", "vendor_id", "vendor_name", "hvfhs_license_num", "dispatching_base_num")
        exprs.append(p.string(vendor, "vendor"))
        pc = p.find("passenger_count", "Passenger_Count")
        if pc is not None:
            exprs.append(p.int(pc, "passenger_count", pl.Int16()))

        exprs += self._coordinates(p)
        for names, out, kind in (
            (("trip_distance", "Trip_Distance", "trip_miles"), "trip_distance_km", "miles"),
            (("fare_amount", "Fare_Amt", "base_passenger_fare"), "fare_amount", "float"),
            (("payment_type", "Payment_Type"), "payment_type", "payment"),
            (("RatecodeID", "RateCodeID", "rate_code", "Rate_Code"), "rate_code", "int"),
            (("store_and_fwd_flag", "store_and_forward"), "store_and_fwd_flag", "str"),
        ):
            col = p.find(*names)
            if col is None:
                continue
            if kind == "miles":
                exprs.append((p.float(col, out) * MILE_KM).alias(out))
            elif kind == "float":
                exprs.append(p.float(col, out))
            elif kind == "int":
                exprs.append(p.int(col, out, pl.Int16()))
            elif kind == "payment":
                exprs.append(_payment_type(p, col))
            elif p.schema[col] == pl.String:  # TLC 2009 wrote flags as 0/1 or "Y"/"N"
                exprs.append(p.string(col, out))
            else:
                exprs.append(pl.col(col).cast(pl.String).alias(out))
        return exprs

    def _coordinates(self, p: RowParser) -> list[pl.Expr]:
        lat_lon = [
            p.find("pickup_latitude", "Start_Lat"),
            p.find("pickup_longitude", "Start_Lon"),
            p.find("dropoff_latitude", "End_Lat"),
            p.find("dropoff_longitude", "End_Lon"),
        ]
        if all(c is not None for c in lat_lon):
            names = ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")
            return [p.float(str(c), n) for c, n in zip(lat_lon, names, strict=True)] + [
                pl.lit(False).alias("coords_from_zone")
            ]
        pu, do = p.find("PULocationID", "PUlocationID"), p.find("DOLocationID", "DOlocationID")
        if pu is None or do is None:
            raise DataError(
                "no coordinates: expected pickup/dropoff latitude and longitude columns, or zone ids "
                f"PULocationID/DOLocationID; the file has {p.schema.names()}",
                file=str(p.path),
            )
        if self.zone_table is None:
            raise DataError(ZONE_TABLE_HELP, file=str(p.path))
        zones = load_zone_table(self.zone_table)
        ids = zones["zone_id"].to_list()
        out: list[pl.Expr] = [pl.lit(True).alias("coords_from_zone")]
        for raw, prefix in ((pu, "pickup"), (do, "dropoff")):
            zid = p.int(raw, f"{prefix}_zone_id", pl.Int32())
            # FHV files leave many zone ids empty: such a trip cannot be placed; counted, not parsed.
            p.fail(~zid.is_in(ids).fill_null(False), "unknown_zone", pl.col(raw).cast(pl.String))
            out.append(zid)
            for coord in ("lat", "lon"):
                mapped = zid.replace_strict(
                    ids, zones[coord].to_list(), default=None, return_dtype=pl.Float64
                )
                out.append(mapped.alias(f"{prefix}_{coord}"))
        return out
