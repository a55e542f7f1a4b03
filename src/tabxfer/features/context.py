"""Leak-free temporal context: hourly aggregates of the corpus *before* each trip.

For every trip, step ``k = 1..T`` of its context is what had been observed in the ``k``-th hour before its
pickup hour: how many trips **completed** in that hour (dropoff inside it) and their mean log speed,
citywide and in the pickup's region (``region_km`` grid cells of the city-local frame). A trip completes
after its own pickup, so it never appears in its own context, and neither does any trip still running at
pickup time. Unlabeled rows (no duration) never complete and contribute nothing.

Storage keeps this cheap at any corpus size: instead of a ``(N, T, C)`` array, the cache holds two dense
hourly tables (``ctx_city (K_c, 2)``, ``ctx_region (K_r, 2)``, standardized, missing hours 0) and, per
trip, the table row of its pickup hour (``ctx_city_idx``, ``ctx_region_idx``). The batcher gathers rows
``idx - T .. idx - 1`` on the device. Each table starts with a zero block of ``T + 1`` rows; trips whose
region is unknown (too few trips there) point at it.

:meth:`Context.describe` is what an exported graph needs to take the context in raw units (trip counts and
mean log speeds, NaN = unknown) and standardize it itself: the tables' statistics, the region grid and the
regions that have a series (it goes into the feature spec as ``spec.context``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import polars as pl

from tabxfer.data.geo import KM_PER_DEG_LAT, haversine_km

CHANNELS = ("city_log_trips", "city_log_speed", "region_log_trips", "region_log_speed")
FLAT = (
    "ctx_city_trips_1h",
    "ctx_city_speed_1h",
    "ctx_city_speed_24h",
    "ctx_region_trips_1h",
    "ctx_region_speed_1h",
)


@dataclasses.dataclass
class Context:
    city_table: np.ndarray  # (K_c, 2) float32
    region_table: np.ndarray  # (K_r, 2) float32
    city_idx: np.ndarray  # (N,) int64, row of the trip's pickup hour
    region_idx: np.ndarray  # (N,) int64
    hours: int
    # the same tables in raw units, [trips completed, mean log1p(km/h)], NaN where unknown (float64)
    raw_city: np.ndarray | None = None
    raw_region: np.ndarray | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)  # per channel (CHANNELS): z = (log1p(n) or s - mean) / std
    std: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    region_km: float = 3.0
    min_region_trips: int = 50
    regions: dict[str, list[tuple[int, int]]] = dataclasses.field(default_factory=dict)  # with a series

    def describe(self) -> dict[str, object]:
        """What turns raw context into model units (``spec.context``; JSON)."""
        return {
            "hours": self.hours,
            "channels": list(CHANNELS),
            "mean": list(self.mean),
            "std": list(self.std),
            "region_km": self.region_km,
            "min_region_trips": self.min_region_trips,
            "regions": {c: [list(r) for r in rs] for c, rs in self.regions.items()},
        }

    def sequences(self, rows: np.ndarray, *, raw: bool = False) -> np.ndarray:
        """``(len(rows), T, 4)`` context of trips ``rows`` (oldest hour first), as the batcher gathers it
        (``raw=False``: model units, float32) or in raw units (``raw=True``: the exported graph's input,
        [city trips, city mean log speed, region trips, region mean log speed], NaN = unknown)."""
        city, region = (self.raw_city, self.raw_region) if raw else (self.city_table, self.region_table)
        if city is None or region is None:
            raise ValueError("this context was built without its raw tables (build_context(keep_raw=True))")
        w = window(self.hours)
        c = city[self.city_idx[rows][:, None] + w]
        r = region[self.region_idx[rows][:, None] + w]
        return np.concatenate([c, r], axis=-1)

    def flat(self) -> dict[str, np.ndarray]:
        """Context as flat per-trip numbers (for models without a temporal input)."""
        c, r, ci, ri = self.city_table, self.region_table, self.city_idx, self.region_idx
        window = ci[:, None] - np.arange(1, min(self.hours, 24) + 1)  # (N, 24)
        return {
            "ctx_city_trips_1h": c[ci - 1, 0],
            "ctx_city_speed_1h": c[ci - 1, 1],
            "ctx_city_speed_24h": c[window, 1].mean(axis=1),
            "ctx_region_trips_1h": r[ri - 1, 0],
            "ctx_region_speed_1h": r[ri - 1, 1],
        }


def _moments(table: np.ndarray, filled: np.ndarray) -> list[tuple[float, float]]:
    """``(mean, std)`` of each column over its filled rows (``(0, 1)`` for an empty or constant one)."""
    out = []
    for j in range(table.shape[1]):
        v = table[filled[:, j], j]
        out.append((float(v.mean()), float(v.std()) or 1.0) if v.size else (0.0, 1.0))
    return out


def _standardize(table: np.ndarray, filled: np.ndarray, moments: list[tuple[float, float]]) -> np.ndarray:
    out = np.zeros_like(table, dtype=np.float32)
    for j, (mu, sd) in enumerate(moments):
        out[:, j] = np.where(filled[:, j], (table[:, j] - mu) / sd, 0.0)
    return out


def build_context(
    df: pl.DataFrame,
    centers: Mapping[str, tuple[float, float]],
    *,
    hours: int = 24,
    region_km: float = 3.0,
    min_region_trips: int = 50,
    standardize: bool = True,
    keep_raw: bool = False,
) -> Context:
    """Hourly tables and per-trip indices for canonical trips ``df`` (every split: context is history).
    ``keep_raw``: also the raw-unit tables (:meth:`Context.sequences` with ``raw=True``)."""
    cities = list(centers)
    lat0 = pl.col("city").replace_strict(cities, [centers[c][0] for c in cities], default=None)
    lon0 = pl.col("city").replace_strict(cities, [centers[c][1] for c in cities], default=None)
    kx = KM_PER_DEG_LAT * lat0.radians().cos()
    t = df.select(
        pl.col("city"),
        (pl.col("pickup_time").dt.epoch("s") // 3600).alias("h"),  # pickup hour number
        ((pl.col("pickup_time").dt.epoch("s") + pl.col("duration_s")) // 3600).cast(pl.Int64).alias("h_done"),
        (
            (
                haversine_km(
                    pl.col("pickup_lat"), pl.col("pickup_lon"), pl.col("dropoff_lat"), pl.col("dropoff_lon")
                )
                / (pl.col("duration_s") / 3600.0)
            )
            .clip(lower_bound=0)
            .log1p()
        ).alias("log_speed"),
        ((pl.col("pickup_lon") - lon0) * kx / region_km).floor().cast(pl.Int32).alias("rx"),
        ((pl.col("pickup_lat") - lat0) * KM_PER_DEG_LAT / region_km).floor().cast(pl.Int32).alias("ry"),
    ).with_row_index("i")
    # regions with enough trips get their own series; the rest point at the zero block
    regions = (
        t.group_by("city", "rx", "ry")
        .len()
        .filter(pl.col("len") >= min_region_trips)
        .drop("len")
        .sort("city", "rx", "ry")
    )
    spans = t.group_by("city").agg(pl.col("h").min().alias("h0"), pl.col("h").max().alias("h1")).sort("city")
    spans = spans.with_columns(
        (pl.col("h1") - pl.col("h0") + 1 + hours).alias("n")
    )  # + T hours before the first
    spans = spans.with_columns((pl.col("n").cum_sum() - pl.col("n") + hours + 1).alias("city_off"))
    regions = regions.join(spans.select("city", "n"), on="city").with_columns(
        (pl.col("n").cum_sum() - pl.col("n") + hours + 1).alias("region_off")
    )
    k_city = int(spans["n"].sum()) + hours + 1
    k_region = int(regions["n"].sum()) + hours + 1 if regions.height else hours + 1

    # Series of a city (and of each of its regions) cover hours h0 - T .. h1; hour H is row off + H - h0 + T.
    t = t.join(spans.select("city", "h0", "h1", "city_off"), on="city").join(
        regions.select("city", "rx", "ry", "region_off"), on=["city", "rx", "ry"], how="left"
    )
    t = t.with_columns(
        (pl.col("city_off") + pl.col("h") - pl.col("h0") + hours).alias("city_idx"),
        pl.when(pl.col("region_off").is_not_null())
        .then(pl.col("region_off") + pl.col("h") - pl.col("h0") + hours)
        .otherwise(hours)  # the zero block: idx - k stays inside it
        .alias("region_idx"),
    ).sort("i")

    def table(off: str, size: int) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]]:
        # trips completing after the city's last pickup hour are nobody's context
        done = t.filter(
            pl.col("log_speed").is_finite() & pl.col(off).is_not_null() & (pl.col("h_done") <= pl.col("h1"))
        )
        agg = (
            done.with_columns((pl.col(off) + pl.col("h_done") - pl.col("h0") + hours).alias("row"))
            .group_by("row")
            .agg(pl.len().alias("n"), pl.col("log_speed").mean().alias("s"))
        )
        rows = agg["row"].to_numpy()
        tab = np.zeros((size, 2), dtype=np.float64)
        filled = np.zeros((size, 2), dtype=bool)
        tab[rows, 0] = np.log1p(agg["n"].to_numpy())
        tab[rows, 1] = agg["s"].to_numpy()
        filled[hours + 1 :, 0] = True  # an hour without trips is a count of 0
        filled[rows, 1] = True  # ... but has no speed: 0 after standardizing (the mean)
        filled[: hours + 1] = False  # the zero block: unknown
        moments = _moments(tab, filled) if standardize else [(0.0, 1.0), (0.0, 1.0)]
        out = _standardize(tab, filled, moments)
        raw = np.where(filled, tab, np.nan)
        raw[:, 0] = np.expm1(raw[:, 0])  # trips completed in the hour
        return out, raw, moments

    city_table, raw_city, m_city = table("city_off", k_city)
    region_table, raw_region, m_region = table("region_off", k_region)
    moments = [*m_city, *m_region]  # CHANNELS order
    known: dict[str, list[tuple[int, int]]] = {}
    for c, rx, ry in regions.select("city", "rx", "ry").iter_rows():
        known.setdefault(c, []).append((int(rx), int(ry)))
    return Context(
        city_table=city_table,
        region_table=region_table,
        city_idx=t["city_idx"].to_numpy().astype(np.int64),
        region_idx=t["region_idx"].to_numpy().astype(np.int64),
        hours=hours,
        raw_city=raw_city if keep_raw else None,
        raw_region=raw_region if keep_raw else None,
        mean=tuple(m for m, _ in moments),
        std=tuple(s for _, s in moments),
        region_km=region_km,
        min_region_trips=min_region_trips,
        regions=known,
    )


def window(n_steps: int) -> np.ndarray:
    """Offsets of a context window, oldest first: ``idx + window`` = rows ``idx - T .. idx - 1``."""
    return -np.arange(n_steps, 0, -1)
