"""NYC TLC taxi zones: zone id -> centroid lat/lon, from a table the user supplies.

Since mid-2016 TLC trip records give pickup/dropoff as zone ids (``PULocationID``/``DOLocationID``), not
coordinates. tabxfer maps each id to its zone's centroid. That needs a zone table; none is downloaded. It
is a CSV or Parquet file with a zone id column (``LocationID`` or ``zone_id``) and centroid coordinates
(``centroid_lat``/``centroid_lon`` or ``lat``/``lon`` or ``latitude``/``longitude``); ``zone`` and
``borough`` names are used when present. The shared data folder has one:
``nyc_tlc_taxi_zones/taxi_zone_centroids.parquet`` (derived from TLC's shapefile).

Ids with several polygons (56 and 103 in TLC's file) get the area-weighted mean of their centroids when
an area column is present (the plain mean otherwise). Ids missing from the table (TLC's 264 "Unknown"
and 265 "N/A" among them) make a trip unlocatable: it is dropped as ``unknown_zone``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import polars as pl

from tabxfer.data.schema import DataError

ZONE_TABLE_HELP = (
    "TLC zone-id trip records need a zone table (zone id -> centroid lat/lon) and none was given. "
    "Pass zone_table=<csv|parquet> to the source (config: data.zone_table), e.g. "
    "<TABXFER_DATA_DIR>/nyc_tlc_taxi_zones/taxi_zone_centroids.parquet. Columns: LocationID, "
    "centroid_lat, centroid_lon (or lat/lon), optionally zone and borough."
)


@functools.lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int) -> pl.DataFrame:
    from tabxfer.data.sources.base import RowParser, scan_table

    p = Path(path)
    raw = scan_table(p)
    rp = RowParser(p, raw.collect_schema())
    zid = rp.require("LocationID", "zone_id", "location_id", what="LocationID")
    lat = rp.require("centroid_lat", "lat", "latitude", what="centroid_lat")
    lon = rp.require("centroid_lon", "lon", "lng", "longitude", what="centroid_lon")
    area = rp.find("area_sqft_from_polygon", "Shape_Area", "area")
    name, borough = rp.find("zone", "Zone"), rp.find("borough", "Borough")
    exprs = [
        rp.int(zid, "zone_id", pl.Int32()),
        rp.float(lat, "lat"),
        rp.float(lon, "lon"),
        (rp.float(area, "w") if area else pl.lit(1.0).alias("w")),
        rp.string(name, "zone"),
        rp.string(borough, "borough"),
    ]
    df = rp.materialize(raw).select(exprs).collect()
    bad = df.filter(pl.any_horizontal(pl.col("zone_id", "lat", "lon").is_null()))
    if bad.height:
        raise DataError(
            f"{bad.height} zone rows lack an id or coordinates", file=path, column="zone_id/lat/lon"
        )
    return (
        df.group_by("zone_id")
        .agg(
            ((pl.col("lat") * pl.col("w")).sum() / pl.col("w").sum()).alias("lat"),
            ((pl.col("lon") * pl.col("w")).sum() / pl.col("w").sum()).alias("lon"),
            pl.col("zone").first(),
            pl.col("borough").first(),
        )
        .sort("zone_id")
    )


def load_zone_table(path: str | os.PathLike[str] | None) -> pl.DataFrame:
    """``zone_id (Int32), lat, lon, zone, borough``, one row per zone id. Cached per file version."""
    if path is None:
        raise DataError(ZONE_TABLE_HELP)
    p = Path(path)
    if not p.exists():
        raise DataError(f"zone table not found. {ZONE_TABLE_HELP}", file=str(p))
    return _load(str(p.resolve()), p.stat().st_mtime_ns)
