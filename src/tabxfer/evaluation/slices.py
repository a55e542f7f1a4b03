"""Slices of canonical trips, and RMSLE by slice: the table every report shows (run dashboards, model
cards, drift reports).

A slice key is computed from the canonical columns alone (``pickup_time``, pickup/dropoff lat/lon,
``city``, ``mode``), so it means the same thing for a training run, an exported artifact and new data:

- ``hour``: pickup hour of day ``00``..``23``; ``hour6``: 6-hour blocks (``00-05`` ...)
- ``weekday``: ``1-Mon`` .. ``7-Sun``
- ``distance_km``: great-circle pickup -> dropoff, ``<1``, ``1-3``, ``3-10``, ``>=10``
- ``district``: the pickup's borough (nearest taxi-zone centroid, NYC, when a zone table is given);
  otherwise a 5 km square of the city-local grid around the city's centroid (``x+1 y-2``); pass
  ``centers`` (e.g. a feature spec's ``city_centers``) when two frames are compared, so that a square
  means the same place in both (each frame's own centroid moves with its data)
- ``airport``: ``pickup``, ``dropoff``, ``both`` or ``none`` (within :data:`AIRPORT_RADIUS_KM` of an
  airport in :data:`AIRPORTS`)
- ``city``, ``mode``
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from tabxfer.data.geo import KM_PER_DEG_LAT, haversine_km

# (lat, lon) of the terminal areas' centers; trips starting or ending within the radius are airport trips
AIRPORTS: dict[str, tuple[float, float]] = {
    "JFK": (40.6413, -73.7781),
    "LGA": (40.7769, -73.8740),
    "EWR": (40.6895, -74.1745),
    "ORD": (41.9786, -87.9048),
    "MDW": (41.7868, -87.7522),
}
AIRPORT_RADIUS_KM = 2.0
DISTRICT_KM = 5.0
DISTANCE_EDGES = [1.0, 3.0, 10.0]
DISTANCE_LABELS = ["<1", "1-3", "3-10", ">=10"]
SLICES = ("hour", "weekday", "distance_km", "district", "airport", "city", "mode")
_WEEKDAYS = ("1-Mon", "2-Tue", "3-Wed", "4-Thu", "5-Fri", "6-Sat", "7-Sun")


def distance_band(km: pl.Series) -> pl.Series:
    """Trip distance as one of ``DISTANCE_LABELS``: bins closed on the left, as the labels read
    (1.0 km is "1-3"); a missing or NaN distance is null."""
    band = (
        km.fill_nan(None)
        .to_frame("d")
        .select(pl.col("d").bin_intervals(DISTANCE_EDGES, labels=DISTANCE_LABELS).cast(pl.String))
    )
    return band.to_series().alias(km.name)


def _near(lat: pl.Expr, lon: pl.Expr) -> pl.Expr:
    hits = [
        haversine_km(lat, lon, pl.lit(a_lat), pl.lit(a_lon)) < AIRPORT_RADIUS_KM
        for a_lat, a_lon in AIRPORTS.values()
    ]
    return pl.any_horizontal(hits).fill_null(False)


def _grid_district(df: pl.DataFrame, centers: Mapping[str, tuple[float, float]] | None = None) -> pl.Series:
    """A 5 km square of each city's local grid, centered on ``centers[city]`` or else the city's mean
    pickup."""
    center = df.group_by("city").agg(
        pl.col("pickup_lat").mean().alias("_lat0"), pl.col("pickup_lon").mean().alias("_lon0")
    )
    if centers:
        fixed = pl.DataFrame(
            {
                "city": list(centers),
                "_flat": [float(v[0]) for v in centers.values()],
                "_flon": [float(v[1]) for v in centers.values()],
            },
            schema_overrides={"city": df.schema["city"]},
        )
        center = center.join(fixed, on="city", how="left").select(
            "city",
            pl.coalesce("_flat", "_lat0").alias("_lat0"),
            pl.coalesce("_flon", "_lon0").alias("_lon0"),
        )
    d = df.select("city", "pickup_lat", "pickup_lon").join(
        center, on="city", how="left", maintain_order="left"
    )
    kx = KM_PER_DEG_LAT * (pl.col("_lat0").radians().cos())
    x = ((pl.col("pickup_lon") - pl.col("_lon0")) * kx / DISTRICT_KM).round().cast(pl.Int32)
    y = ((pl.col("pickup_lat") - pl.col("_lat0")) * KM_PER_DEG_LAT / DISTRICT_KM).round().cast(pl.Int32)

    def signed(e: pl.Expr) -> pl.Expr:
        return pl.when(e >= 0).then(pl.lit("+") + e.cast(pl.String)).otherwise(e.cast(pl.String))

    return d.select(
        pl.concat_str([pl.lit("x"), signed(x), pl.lit(" y"), signed(y)]).fill_null("?").alias("district")
    )["district"]


def _borough(
    df: pl.DataFrame, zones: pl.DataFrame, centers: Mapping[str, tuple[float, float]] | None = None
) -> pl.Series:
    """Borough of the nearest zone centroid (NYC rows); other cities fall back to the grid district."""
    z_lat = zones["lat"].to_numpy()
    z_lon = zones["lon"].to_numpy()
    names = np.array(zones["borough"].fill_null("?").to_list(), dtype=object)
    lat = df["pickup_lat"].to_numpy()
    lon = df["pickup_lon"].to_numpy()
    kx = math.cos(math.radians(40.7))
    out = np.empty(len(lat), dtype=object)
    for s in range(0, len(lat), 8192):  # (rows x zones) distances in blocks: 8192 x 263 floats
        dy = lat[s : s + 8192, None] - z_lat[None, :]
        dx = (lon[s : s + 8192, None] - z_lon[None, :]) * kx
        out[s : s + 8192] = names[np.argmin(dx * dx + dy * dy, axis=1)]
    grid = _grid_district(df, centers).to_numpy()
    nyc = (df["city"].cast(pl.String) == "nyc").fill_null(False).to_numpy()
    return pl.Series("district", np.where(nyc, out, grid).tolist(), dtype=pl.String)


def slice_keys(
    df: pl.DataFrame,
    *,
    zones: pl.DataFrame | None = None,
    centers: Mapping[str, tuple[float, float]] | None = None,
) -> pl.DataFrame:
    """One column per slice (see the module doc) for canonical trips ``df``; same row order. ``centers``:
    fixed origins of the district grid per city (default: each city's mean pickup in ``df``)."""
    c = [pl.col(n) for n in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")]
    dist = df.select(haversine_km(*c).alias("d"))["d"]
    t = df["pickup_time"]
    pick = df.select(_near(pl.col("pickup_lat"), pl.col("pickup_lon")))[:, 0]
    drop = df.select(_near(pl.col("dropoff_lat"), pl.col("dropoff_lon")))[:, 0]
    airport = (
        pl.DataFrame({"p": pick, "d": drop})
        .select(
            pl.when(pl.col("p") & pl.col("d"))
            .then(pl.lit("both"))
            .when(pl.col("p"))
            .then(pl.lit("pickup"))
            .when(pl.col("d"))
            .then(pl.lit("dropoff"))
            .otherwise(pl.lit("none"))
        )
        .to_series()
    )
    text = {
        n: (
            df[n].cast(pl.String).fill_null("?") if n in df.columns else pl.repeat("?", df.height, eager=True)
        )
        for n in ("city", "mode")
    }
    hour = t.dt.hour()
    return pl.DataFrame(
        {
            "hour": hour.cast(pl.String).str.zfill(2),
            "hour6": (hour // 6 * 6).cast(pl.String).str.zfill(2)
            + "-"
            + (hour // 6 * 6 + 5).cast(pl.String).str.zfill(2),
            "weekday": t.dt.weekday().replace_strict(dict(enumerate(_WEEKDAYS, 1)), return_dtype=pl.String),
            "distance_km": distance_band(dist).fill_null("?"),
            "district": _borough(df, zones, centers) if zones is not None else _grid_district(df, centers),
            "airport": airport,
            **text,
        }
    )


def rmsle_by_slice(
    keys: pl.DataFrame,
    log_pred: np.ndarray,
    log_true: np.ndarray,
    *,
    by: Sequence[str] = SLICES,
) -> list[dict[str, Any]]:
    """``[{slice, value, rows, rmsle, bias}]`` for each slice column in ``by`` (bias = mean of
    log_pred - log_true: positive means durations are over-predicted)."""
    err = np.asarray(log_pred, np.float64) - np.asarray(log_true, np.float64)
    frame = keys.with_columns(pl.Series("_e", err))
    rows: list[dict[str, Any]] = []
    for name in by:
        agg = (
            frame.group_by(name)
            .agg(pl.len().alias("n"), (pl.col("_e") ** 2).mean().alias("sq"), pl.col("_e").mean().alias("b"))
            .sort(name)
        )
        for r in agg.iter_rows(named=True):
            rows.append(
                {
                    "slice": name,
                    "value": r[name],
                    "rows": int(r["n"]),
                    "rmsle": float(np.sqrt(r["sq"])),
                    "bias": float(r["b"]),
                }
            )
    return rows


def markdown_table(
    rows: Sequence[Mapping[str, Any]], *, reference: Mapping[tuple[str, str], float] | None = None
) -> str:
    """The slice rows as a Markdown table; with ``reference`` ({(slice, value): rmsle}), a change column."""
    head = "| slice | value | rows | RMSLE | bias |" + (" vs reference |" if reference is not None else "")
    sep = "|---|---|---:|---:|---:|" + ("---:|" if reference is not None else "")
    lines = [head, sep]
    for r in rows:
        line = f"| {r['slice']} | {r['value']} | {r['rows']:,} | {r['rmsle']:.4f} | {r['bias']:+.4f} |"
        if reference is not None:
            ref = reference.get((r["slice"], r["value"]))
            line += f" {r['rmsle'] - ref:+.4f} |" if ref is not None else " new |"
        lines.append(line)
    return "\n".join(lines)


def trips_from_cache(arrays: Any, spec: Any) -> pl.DataFrame:
    """The canonical columns :func:`slice_keys` needs, rebuilt from a tensor-cache split alone: pickup time
    from ``pickup_ts``, coordinates from the unscaled city-local frame (``pickup_x/y``, ``dropoff_x/y``
    around the spec's city center), ``city`` and ``mode`` from their vocabularies. No source is reloaded,
    so a training run can slice its own test split for free."""
    num = {f.name: (i, f) for i, f in enumerate(spec.numeric)}
    cat = {f.name: (i, f) for i, f in enumerate(spec.categorical)}
    x_num = np.asarray(arrays.x_num, np.float64)
    x_cat = np.asarray(arrays.x_cat)

    def raw(name: str) -> np.ndarray:
        i, f = num[name]
        v = x_num[:, i] * f.std + f.mean
        return np.expm1(v) if f.transform == "log1p" else v

    def decode(name: str) -> list[str]:
        if name not in cat:
            return ["?"] * len(x_cat)
        i, f = cat[name]
        vocab = np.array(["?", *map(str, f.values)], dtype=object)
        return vocab[x_cat[:, i]].tolist()

    city = decode("city")
    centers = dict(spec.city_centers)
    fallback = next(iter(centers.values())) if centers else (0.0, 0.0)
    lat0 = np.array([centers.get(c, fallback)[0] for c in city])
    lon0 = np.array([centers.get(c, fallback)[1] for c in city])
    kx = KM_PER_DEG_LAT * np.cos(np.radians(lat0))
    cols: dict[str, Any] = {
        "pickup_time": pl.from_epoch(pl.Series(np.asarray(arrays.pickup_ts, np.int64)), time_unit="s"),
        "city": city,
        "mode": decode("mode"),
    }
    for end in ("pickup", "dropoff"):
        cols[f"{end}_lat"] = lat0 + raw(f"{end}_y") / KM_PER_DEG_LAT
        cols[f"{end}_lon"] = lon0 + raw(f"{end}_x") / kx
    return pl.DataFrame(cols)
