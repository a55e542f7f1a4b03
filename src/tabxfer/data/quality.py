"""Row validation shared by every source: the generic drop rules, applied after a loader has parsed.

Each rule names a reason; a row gets the *first* reason it fails (parse failures come first, from the
loader), so the counts in a :class:`~tabxfer.data.schema.DropReport` add up to the rows dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import polars as pl

from tabxfer.data.cities import city_bounds
from tabxfer.data.geo import haversine_km

# Beyond these a trip of the mode is a recording error, not a fast trip (taxi on a highway at night peaks
# near 100 km/h; zone-centroid sources inflate short trips' distance, hence the slack).
DEFAULT_MAX_SPEED_KMH = {"taxi": 130.0, "for_hire": 130.0, "bike": 60.0, "other": 200.0}


@dataclasses.dataclass(frozen=True)
class Validation:
    """The generic drop rules. Every source accepts these as ``validation: {...}`` in its config.

    Args:
        min_duration_s: shortest trip kept (``duration_s <= 0`` is always ``nonpositive_duration``).
        max_duration_s: longest trip kept. The default (6 h) drops the meter-left-running records of the
            taxi data (about 0.13 % of the Kaggle rows, most near 86,400 s).
        max_speed_kmh: straight-line km / duration above which a trip is implausible; ``None`` takes the
            mode's default from :data:`DEFAULT_MAX_SPEED_KMH`.
        max_passengers: largest passenger count kept (0 is kept: the real data has it).
        check_bounds: drop trips whose coordinates fall outside the city's metro box.
        dedupe: drop repeated rows (every column equal) and repeated source ids.
        min_year / max_year: pickups outside these calendar years are recording errors
            (``pickup_time_out_of_range``): no trip record predates 2009, 1899/1900/1970 are the zero dates
            of spreadsheets and Unix time, the calendar features are defined up to 2099, and the hourly
            context tables span every hour from a city's first pickup to its last.
    """

    min_duration_s: float = 1.0
    max_duration_s: float = 6 * 3600.0
    max_speed_kmh: float | None = None
    max_passengers: int = 9
    check_bounds: bool = True
    dedupe: bool = True
    min_year: int = 2000
    max_year: int = 2099

    def __post_init__(self) -> None:
        if not 0 <= self.min_duration_s < self.max_duration_s:
            raise ValueError(f"need 0 <= {self.min_duration_s=} < {self.max_duration_s=}")
        if not 1 <= self.min_year <= self.max_year <= 9999:
            raise ValueError(f"need 1 <= {self.min_year=} <= {self.max_year=} <= 9999")
        if self.max_speed_kmh is not None and self.max_speed_kmh <= 0:
            raise ValueError(f"{self.max_speed_kmh=} must be positive")

    @classmethod
    def of(cls, v: Validation | Mapping[str, Any] | None) -> Validation:
        if v is None:
            return cls()
        if isinstance(v, Validation):
            return v
        unknown = set(v) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(
                f"unknown validation key(s) {sorted(unknown)}; expected {[f.name for f in dataclasses.fields(cls)]}"
            )
        return cls(**dict(v))

    def reason(self, *, city: str, mode: str, labeled: bool) -> pl.Expr:
        """The first generic rule a row fails, as a String expression (null when the row is fine)."""
        lat_cols = ("pickup_lat", "dropoff_lat")
        lon_cols = ("pickup_lon", "dropoff_lon")
        coords = [pl.col(c) for c in (*lat_cols, *lon_cols)]
        missing_coords = pl.any_horizontal([c.is_null() | c.is_nan() | c.is_infinite() for c in coords])
        null_island = (pl.col("pickup_lat").abs() < 1e-6) & (pl.col("pickup_lon").abs() < 1e-6) | (
            pl.col("dropoff_lat").abs() < 1e-6
        ) & (pl.col("dropoff_lon").abs() < 1e-6)
        dur = pl.col("duration_s")
        km = haversine_km(*(pl.col(c) for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")))
        max_kmh = self.max_speed_kmh or DEFAULT_MAX_SPEED_KMH.get(mode, 200.0)

        rules: list[tuple[pl.Expr, str]] = [
            (pl.col("pickup_time").is_null(), "missing_pickup_time"),
            (
                ~pl.col("pickup_time").dt.year().is_between(self.min_year, self.max_year),
                "pickup_time_out_of_range",
            ),
            (missing_coords, "missing_coordinates"),
            (null_island, "zero_coordinates"),
        ]
        if self.check_bounds:
            b = city_bounds(city)
            out = pl.any_horizontal(
                [~pl.col(c).is_between(b.lat_min, b.lat_max) for c in lat_cols]
                + [~pl.col(c).is_between(b.lon_min, b.lon_max) for c in lon_cols]
            )
            rules.append((out, "coordinates_out_of_city"))
        if labeled:
            rules += [
                (dur.is_null() | dur.is_nan(), "missing_duration"),
                (dur <= 0, "nonpositive_duration"),
                (dur < self.min_duration_s, "duration_too_short"),
                (dur > self.max_duration_s, "duration_too_long"),
                (km / (dur / 3600.0) > max_kmh, "implausible_speed"),
            ]
        pc = pl.col("passenger_count")
        rules.append((pc.is_not_null() & ~pc.is_between(0, self.max_passengers), "bad_passenger_count"))
        return first_reason(rules)

    def duplicate_reason(
        self, columns: list[str], *, has_ids: bool, among: pl.Expr | None = None
    ) -> pl.Expr | None:
        """Reason for repeated rows (all data columns equal) and repeated source ids; first one kept.

        ``among``: only rows where it holds compete for "first occurrence" (a copy dropped for another
        reason must not make a good copy a duplicate); its value on the other rows is meaningless.
        """
        if not self.dedupe:
            return None
        data_cols = [c for c in columns if c != "trip_id" and not c.startswith("_")]
        flag = [among.fill_null(False).alias("__among")] if among is not None else []
        # Two independent 64-bit hashes of the row; a row repeats an earlier one when both hashes equal
        # that row's (a distinct row is taken for a repeat with probability about n**2 / 2**129: 1e-27 for
        # 1.5 M rows, 1e-21 for a billion). Each row hash folds per-column hashes (each column its own
        # seed) in column order, so swapped values hash apart. 0.075 s on 1.5 M Kaggle rows, against
        # 0.23 s for two struct hashes checked apart and 0.43 s for is_first_distinct on the row struct,
        # which row-encodes every column. Column hashes treat -0.0 as 0.0 and NaN as NaN, as that does.
        cols = [pl.col(c) for c in data_cols] + flag
        repeated = ~pl.struct(
            _row_hash(cols, seed=0).alias("h0"), _row_hash(cols, seed=1).alias("h1")
        ).is_first_distinct()
        rules = [(repeated, "duplicate_row")]
        if has_ids:
            rules.append((~pl.struct("trip_id", *flag).is_first_distinct(), "duplicate_id"))
        return first_reason(rules)


_MIX = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd: multiplying by it is a bijection on UInt64


def _row_hash(cols: list[pl.Expr], seed: int) -> pl.Expr:
    """A UInt64 hash of the row: ``h = h * K + hash_i(col_i)`` (wrapping), each column hashed with its own
    seed; polars' column hashes are vectorized, so this costs a fraction of a struct's row hash."""
    h = pl.lit(0, pl.UInt64)
    for i, c in enumerate(cols):
        h = h * pl.lit(_MIX, pl.UInt64) + c.hash(seed * 1_000_003 + i)
    return h


def first_reason(rules: list[tuple[pl.Expr, str]]) -> pl.Expr:
    """``when(c1) -> r1, when(c2) -> r2, ... otherwise null`` (nulls in a condition count as False)."""
    if not rules:
        return pl.lit(None, dtype=pl.String)
    # The first rule's number, then its name: a when/then chain of strings allocates a string column per
    # rule (0.12 s for 13 rules on 1.5 M rows; numbers then names: 0.04 s).
    code = pl.coalesce(
        [pl.when(cond.fill_null(False)).then(pl.lit(k, pl.UInt16)) for k, (cond, _) in enumerate(rules)]
    )
    names = [name for _, name in rules]
    return code.replace_strict(list(range(len(names))), names, return_dtype=pl.String)
