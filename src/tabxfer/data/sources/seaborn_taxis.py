"""seaborn-data ``taxis``: NYC yellow and green trips (March 2019) with zone *names* instead of ids.

Columns: ``pickup, dropoff, passengers, distance (miles), fare, tip, tolls, total, color (yellow/green),
payment (credit card/cash), pickup_zone, dropoff_zone, pickup_borough, dropoff_borough``. (The raw file
of the same repository, ``raw/taxis.csv`` with TLC columns, is a :class:`~tabxfer.data.sources.tlc.TLCTrips`
file.)

Zones are placed at their centroids through a TLC zone table (:func:`tabxfer.data.zones.load_zone_table`;
it needs centroid coordinates, so ``nyc_tlc_taxi_zones/taxi_zone_centroids.parquet``, not TLC's
``taxi_zone_lookup`` which has names only). Names are matched on (zone, borough), ignoring case and
repeated spaces; without borough columns on the zone name alone. A name that a table gives several zone
ids (TLC's lookup has two "Corona" ids, 56 and 57; its shapefile labels both polygons 56) is placed at the
mean of their centroids and gets the smallest id. All 213 (zone, borough) pairs of the shared file match
``taxi_zone_centroids.parquet``. A trip whose zone is empty or not in the table cannot
be placed: it is dropped as ``unknown_zone``. Placed trips get ``coords_from_zone = true``.

Duration is dropoff - pickup. Extra columns, named as :class:`~tabxfer.data.sources.tlc.TLCTrips` names
them so the two union cleanly: ``service`` (the color), ``trip_distance_km``, ``fare_amount``,
``tip_amount``, ``tolls_amount``, ``total_amount``, ``payment_type`` (TLC codes: 1 credit card, 2 cash,
3 no charge, 4 dispute, 5 unknown), ``payment_method`` (the name as written), ``pickup_zone_id``,
``dropoff_zone_id``, ``coords_from_zone``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import polars as pl

from tabxfer.data.schema import DataError
from tabxfer.data.sources.base import RowParser, TripSource
from tabxfer.data.zones import load_zone_table

MILE_KM = 1.609344
DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M")
TLC_PAYMENT_CODES = {"credit card": 1, "cash": 2, "no charge": 3, "dispute": 4, "unknown": 5}
ZONE_NAMES_HELP = (
    "seaborn 'taxis' trips name their zones and need a zone table to place them, and none was given. "
    "Pass zone_table=<csv|parquet> with zone centroids and names, e.g. "
    "<TABXFER_DATA_DIR>/nyc_tlc_taxi_zones/taxi_zone_centroids.parquet (columns LocationID, zone, "
    "borough, centroid_lat, centroid_lon)."
)


def zone_key(zone: pl.Expr, borough: pl.Expr | None) -> pl.Expr:
    """``"zone|borough"`` lower-cased with runs of spaces collapsed (null when a part is missing)."""

    def norm(e: pl.Expr) -> pl.Expr:
        s = e.cast(pl.String).str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", " ")
        return pl.when(s == "").then(None).otherwise(s)

    return norm(zone) if borough is None else pl.concat_str([norm(zone), norm(borough)], separator="|")


def zone_lookup(zone_table: str | os.PathLike[str], *, with_borough: bool) -> pl.DataFrame:
    """``key, zone_id, lat, lon``: one row per zone name (or name and borough)."""
    zones = load_zone_table(zone_table)
    if zones["zone"].null_count() == zones.height or (
        with_borough and zones["borough"].null_count() == zones.height
    ):
        raise DataError(
            "the zone table has no zone (and borough) names to match trips' zone names against; "
            "use one with 'zone' and 'borough' columns (taxi_zone_centroids.parquet)",
            file=str(zone_table),
            column="zone" if zones["zone"].null_count() == zones.height else "borough",
        )
    key = zone_key(pl.col("zone"), pl.col("borough") if with_borough else None)
    return (
        zones.with_columns(key.alias("key"))
        .filter(pl.col("key").is_not_null())
        .group_by("key")
        .agg(pl.col("zone_id").min(), pl.col("lat").mean(), pl.col("lon").mean())
        .sort("key")
    )


@dataclasses.dataclass
class SeabornTaxis(TripSource):
    """The processed seaborn-data ``taxis`` file (``taxis.csv``; ``taxis.parquet`` in the shared data).

    Args:
        zone_table: zone centroid table with zone and borough names (required; see the module docstring).
    """

    zone_table: str | os.PathLike[str] | None = None

    name: ClassVar[str] = "seaborn_taxis"
    city: ClassVar[str] = "nyc"
    mode: ClassVar[str] = "taxi"
    extra: ClassVar[dict[str, pl.DataType]] = {
        "service": pl.String(),
        "trip_distance_km": pl.Float64(),
        "fare_amount": pl.Float64(),
        "tip_amount": pl.Float64(),
        "tolls_amount": pl.Float64(),
        "total_amount": pl.Float64(),
        "payment_type": pl.Int16(),
        "payment_method": pl.String(),
        "pickup_zone_id": pl.Int32(),
        "dropoff_zone_id": pl.Int32(),
        "coords_from_zone": pl.Boolean(),
    }

    def parse(self, p: RowParser) -> list[pl.Expr]:
        pickup = p.datetime(p.require("pickup", "pickup_datetime"), "pickup_time", DATETIME_FORMATS)
        exprs = [pickup, pl.lit(None, dtype=pl.String).alias("vendor")]
        drop_col = p.find("dropoff", "dropoff_datetime")
        if drop_col is not None:
            dropoff = p.datetime(drop_col, "dropoff_time", DATETIME_FORMATS)
            exprs.append(((dropoff - pickup).dt.total_microseconds() / 1e6).alias("duration_s"))
        elif self.labeled:
            raise DataError(
                "missing required column 'dropoff' (the dropoff time gives the duration; load files "
                f"without it with labeled=False); the file has {p.schema.names()}",
                file=str(p.path),
                column="dropoff",
            )
        pc = p.find("passengers", "passenger_count")
        if pc is not None:
            exprs.append(p.int(pc, "passenger_count", pl.Int16()))
        exprs.append(p.string(p.find("color", "service"), "service").str.to_lowercase().alias("service"))

        for out, cands, scale in (
            ("trip_distance_km", ("distance", "trip_distance"), MILE_KM),
            ("fare_amount", ("fare", "fare_amount"), 1.0),
            ("tip_amount", ("tip", "tip_amount"), 1.0),
            ("tolls_amount", ("tolls", "tolls_amount"), 1.0),
            ("total_amount", ("total", "total_amount"), 1.0),
        ):
            col = p.find(*cands)
            if col is not None:
                exprs.append((p.float(col, out) * scale).alias(out))
        method = p.string(p.find("payment"), "payment_method").str.to_lowercase().alias("payment_method")
        code = method.replace_strict(TLC_PAYMENT_CODES, default=None, return_dtype=pl.Int16)
        exprs += [method, code.alias("payment_type")]
        return exprs + self._zones(p)

    def _zones(self, p: RowParser) -> list[pl.Expr]:
        cols = {
            prefix: (
                p.require(f"{prefix}_zone", what=f"{prefix}_zone"),
                p.find(f"{prefix}_borough"),
            )
            for prefix in ("pickup", "dropoff")
        }
        if self.zone_table is None:
            raise DataError(ZONE_NAMES_HELP, file=str(p.path))
        with_borough = all(b is not None for _, b in cols.values())
        table = zone_lookup(self.zone_table, with_borough=with_borough)
        keys = table["key"].to_list()
        out: list[pl.Expr] = [pl.lit(True).alias("coords_from_zone")]
        for prefix, (zone, borough) in cols.items():
            key = zone_key(pl.col(zone), pl.col(borough) if with_borough and borough else None)
            parts = [pl.col(c).cast(pl.String) for c in (zone, borough) if c]
            shown = pl.concat_str(parts, separator=" / ", ignore_nulls=True)
            shown = pl.when(shown != "").then(shown)
            p.fail(~key.is_in(keys).fill_null(False), "unknown_zone", shown)
            for col, name, dtype in (
                ("zone_id", f"{prefix}_zone_id", pl.Int32()),
                ("lat", f"{prefix}_lat", pl.Float64()),
                ("lon", f"{prefix}_lon", pl.Float64()),
            ):
                mapped = key.replace_strict(keys, table[col].to_list(), default=None, return_dtype=dtype)
                out.append(mapped.alias(name))
        return out
