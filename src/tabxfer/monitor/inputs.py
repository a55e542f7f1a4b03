"""New trips for drift monitoring: any supported file, recognised by its columns, through the loaders.

Every format goes through a :class:`~tabxfer.data.sources.TripSource`, so new data is parsed, validated
and de-duplicated exactly as training data was, and every dropped row is counted in a
:class:`~tabxfer.data.schema.DropReport` (which the drift report shows). Formats (``--format`` overrides
the detection):

==============  ==========================================================================================
``canonical``   tabxfer's own trip schema (:mod:`tabxfer.data.schema`; ``tabxfer synth --out x.parquet``)
``kaggle``      Kaggle "NYC Taxi Trip Duration" train/test files
``tlc``         NYC TLC yellow/green/FHV files, lat/lon era or zone-id era (needs a zone table)
``chicago``     City of Chicago taxi trips
``citibike``    Citi Bike trip histories
==============  ==========================================================================================
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from tabxfer.data.catalog import ZONES, default_data_dir
from tabxfer.data.quality import Validation
from tabxfer.data.schema import REASON, DataError, DropReport, conform
from tabxfer.data.sources import (
    ChicagoTaxiTrips,
    CitiBikeTrips,
    KaggleNYCTaxi,
    RowParser,
    TLCTrips,
    TripSource,
    resolve_paths,
    scan_table,
)

FORMATS = ("auto", "canonical", "kaggle", "tlc", "chicago", "citibike")
DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S",
)
CANONICAL_REQUIRED = ("pickup_time", "pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon", "city")


def _norm(name: str) -> str:
    return name.strip().lower().replace(" ", "_")


def detect_format(columns: Sequence[str]) -> str | None:
    """The format a file's column names say (None when they match none).

    >>> detect_format(["VendorID", "lpep_pickup_datetime", "PULocationID"])
    'tlc'
    >>> detect_format(["id", "vendor_id", "pickup_datetime", "pickup_longitude"])
    'kaggle'
    """
    c = {_norm(x) for x in columns}
    if {"pickup_time", "pickup_lat", "pickup_lon"} <= c:
        return "canonical"
    tlc = {"lpep_pickup_datetime", "tpep_pickup_datetime", "trip_pickup_datetime", "hvfhs_license_num"}
    if c & tlc or c & {"dispatching_base_num", "vendorid", "vendor_name", "pulocationid"}:
        return "tlc"
    if {"id", "pickup_datetime", "pickup_longitude"} <= c:
        return "kaggle"
    if "vendor_id" in c and "pickup_datetime" in c:  # TLC yellow 2009-2014 names (no Kaggle ``id``)
        return "tlc"
    if "trip_start_timestamp" in c:
        return "chicago"
    if c & {"starttime", "start_time", "started_at"}:
        return "citibike"
    return None


@dataclasses.dataclass
class CanonicalTrips(TripSource):
    """Trips already in the canonical schema (CSV or Parquet), possibly of several cities.

    Each row is validated with its own city's bounds and its own mode's speed limit (the file-format
    loaders know their one city). ``extra_numeric`` / ``extra_categorical``: source columns a model reads
    (its feature config's), parsed and kept; other extra columns are ignored.
    """

    extra_numeric: Sequence[str] = ()
    extra_categorical: Sequence[str] = ()

    name: ClassVar[str] = "canonical"

    def parse(self, p: RowParser) -> list[pl.Expr]:
        exprs = [p.datetime(p.require("pickup_time"), "pickup_time", DATETIME_FORMATS)]
        exprs += [
            p.float(p.require(c), c) for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")
        ]
        exprs.append(p.string(p.require("city"), "city"))
        for c in ("trip_id", "source", "mode", "vendor"):
            exprs.append(p.string(p.find(c), c))
        pc = p.find("passenger_count")
        if pc is not None:
            exprs.append(p.int(pc, "passenger_count", pl.Int16()))
        dur = p.find("duration_s")
        if dur is not None and self.labeled:
            exprs.append(p.float(dur, "duration_s"))
        for c in self.extra_numeric:
            if (col := p.find(c)) is not None:
                exprs.append(p.float(col, c))
        for c in self.extra_categorical:
            if (col := p.find(c)) is not None:
                exprs.append(p.string(col, c))
        return exprs

    def scan_all(self) -> pl.LazyFrame:
        """As :meth:`TripSource.scan_all`, with the generic rules chosen per (city, mode) of each row."""
        files = self.files()
        frames = [self._scan_file(f) for f in files]
        lf = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        extra = {c: pl.Float64() for c in self.extra_numeric} | {
            c: pl.String() for c in self.extra_categorical
        }
        lf = conform(lf, extra)
        v = Validation.of(self.validation)
        pairs = lf.select("city", pl.col("mode").fill_null("other")).unique().collect().sort("city", "mode")
        generic: Any = pl
        for city, mode in pairs.iter_rows():
            if city is None:
                continue
            try:
                rule = v.reason(city=city, mode=mode, labeled=self.labeled)
            except ValueError as e:
                raise DataError(str(e), file=", ".join(map(str, files)), column="city", value=city) from None
            generic = generic.when((pl.col("city") == city) & (pl.col("mode").fill_null("other") == mode))
            generic = generic.then(rule)
        missing_city = pl.when(pl.col("city").is_null()).then(pl.lit("missing_city"))
        reason = missing_city if generic is pl else generic.otherwise(missing_city)
        lf = lf.with_columns(pl.coalesce(pl.col(REASON), reason).alias(REASON))
        dup = v.duplicate_reason(lf.collect_schema().names(), has_ids=False, among=pl.col(REASON).is_null())
        if dup is not None:
            lf = lf.with_columns(pl.coalesce(pl.col(REASON), dup).alias(REASON))
        return lf


@dataclasses.dataclass
class NewData:
    """Loaded new trips: the kept rows (canonical schema), what loading dropped, how it was read."""

    df: pl.DataFrame
    report: DropReport
    path: str
    format: str
    labeled: bool

    def describe(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "labeled": self.labeled,
            "drops": self.report.to_dict(),
        }


def default_zone_table() -> Path | None:
    """``$TABXFER_DATA_DIR/nyc_tlc_taxi_zones/taxi_zone_centroids.parquet`` when it exists."""
    p = default_data_dir() / ZONES
    return p if p.is_file() else None


def _columns(path: Path) -> list[str]:
    return scan_table(path).collect_schema().names()


def _has_values(files: Sequence[Path], column: str) -> bool:
    for f in files:
        lf = scan_table(f)
        names = {_norm(n): n for n in lf.collect_schema().names()}
        if column in names and lf.select(pl.col(names[column]).is_not_null().any()).collect().item():
            return True
    return False


def make_source(
    fmt: str,
    paths: str | os.PathLike[str],
    *,
    zone_table: str | os.PathLike[str] | None = None,
    extra_numeric: Sequence[str] = (),
    extra_categorical: Sequence[str] = (),
) -> TripSource:
    """The loader for ``fmt`` (one of :data:`FORMATS` but ``auto``) over ``paths``."""
    files = resolve_paths(paths)
    if fmt == "canonical":
        return CanonicalTrips(
            paths=files,
            labeled=_has_values(files, "duration_s"),
            extra_numeric=tuple(extra_numeric),
            extra_categorical=tuple(extra_categorical),
        )
    if fmt == "kaggle":
        labeled = any({"trip_duration", "dropoff_datetime"} & {_norm(c) for c in _columns(f)} for f in files)
        return KaggleNYCTaxi(paths=files, labeled=labeled)
    if fmt == "tlc":
        return TLCTrips(paths=files, zone_table=zone_table or default_zone_table())
    if fmt == "chicago":
        return ChicagoTaxiTrips(paths=files)
    if fmt == "citibike":
        return CitiBikeTrips(paths=files)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


def load_trips(
    path: str | os.PathLike[str],
    *,
    fmt: str = "auto",
    zone_table: str | os.PathLike[str] | None = None,
    features: Mapping[str, Any] | None = None,
) -> NewData:
    """Load new trips; ``features`` is the model's feature config (its source columns are kept).

    Raises :class:`~tabxfer.data.schema.DataError` naming the file (and column) when the input cannot be
    used: unknown format, a missing column, a column that does not parse, no row left.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown --format {fmt!r}; expected one of {', '.join(FORMATS)}", file=str(path))
    files = resolve_paths(path)
    if fmt == "auto":
        cols = _columns(files[0])
        found = detect_format(cols)
        if found is None:
            raise DataError(
                "cannot tell the trip format from the columns: expected the canonical schema "
                f"({', '.join(CANONICAL_REQUIRED)}), Kaggle NYC (id, pickup_datetime, pickup_longitude, ...), "
                "NYC TLC (tpep_/lpep_pickup_datetime, ...), Chicago (trip_start_timestamp) or Citi Bike "
                f"(starttime/started_at); the file has {cols}. Pass --format to choose",
                file=str(files[0]),
            )
        fmt = found
    f = features or {}
    src = make_source(
        fmt,
        path,
        zone_table=zone_table,
        extra_numeric=f.get("extra_numeric", ()),
        extra_categorical=f.get("extra_categorical", ()),
    )
    df, report = src.load()
    if df.height == 0:
        raise DataError(f"every row was dropped while loading ({report.summary()})", file=str(path))
    labeled = bool(src.labeled and df["duration_s"].is_not_null().any())
    return NewData(df=df, report=report, path=str(path), format=fmt, labeled=labeled)
