"""The feature pipeline every model shares: canonical trips -> raw features -> fitted spec -> arrays.

Three steps, all polars expressions (lazy, multi-threaded, no Python per row):

1. :func:`raw_features` derives feature columns from the canonical schema: distances (haversine,
   Manhattan in the city-local frame, bearing), coordinates in a city-local frame (km east/north of the
   city's center, so "2 km north-east of the center" means the same in every city), time (hour, weekday,
   month, US holidays, cyclic encodings), grid cells, and the categorical columns named in the config.
2. :func:`fit` computes, on the **training split only**, the city centers, the numeric scalers and the
   categorical vocabularies, and returns the :class:`~tabxfer.features.spec.FeatureSpec`.
3. :func:`transform` applies a spec: standardized float32 numerics and int32 vocabulary indices.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from tabxfer.config import check_options
from tabxfer.data.cities import city_bounds
from tabxfer.data.geo import KM_PER_DEG_LAT, bearing_yx, haversine_km, sin_cos_of_atan2
from tabxfer.data.schema import DataError
from tabxfer.features import calendar
from tabxfer.features.calendar import DAYS_PER_400_YEARS
from tabxfer.features.context import FLAT as CONTEXT_FLAT
from tabxfer.features.spec import CategoricalFeature, FeatureSpec, NumericFeature, Target, check_names

TWO_PI = 2 * math.pi
US_PER_DAY = 86_400_000_000
# Categoricals with a fixed domain: their vocabulary does not depend on the training data, so a small
# training split that lacks, say, 4 a.m. still gives 4 a.m. its own slot.
FIXED_VOCAB: dict[str, tuple[int, ...]] = {
    "hour": tuple(range(24)),
    "weekday": tuple(range(7)),  # 0 = Monday
    "month": tuple(range(1, 13)),
    "holiday": (0, 1),
}
LOG1P_NUMERIC = {"dist_km", "manhattan_km"}  # heavy-tailed, positive: log1p before standardizing


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Which features to derive. Hydra: ``data.features.*``.

    Args:
        distances: haversine and local-frame Manhattan distance (km) and bearing (sin, cos).
        local_frame: pickup/dropoff/delta coordinates in km in the city-local frame.
        time: hour/weekday/month categoricals and their cyclic encodings, day-of-year encoding.
        holidays: a US federal holiday flag (computed from the rules).
        cells: pickup and dropoff grid cells of ``cell_km`` (categorical; Wide&Deep crosses them).
        cell_km / cell_radius_km: cell size, and the radius beyond which every cell is "far" (one slot).
        categorical: canonical columns used as categoricals (``vendor``, ``city``, ``mode``, ``source``).
        numeric: canonical numeric columns used as they are (``passenger_count``).
        extra_categorical / extra_numeric: source-specific columns (``store_and_fwd_flag``,
            ``trip_distance_km``, ...); a source that lacks one gets nulls (index 0 / the mean).
        min_count: a categorical value needs this many training rows to get its own slot.
        max_vocab: at most this many values per categorical (most frequent first).
        context: build the leak-free hourly context (:mod:`tabxfer.features.context`): the last
            ``context_hours`` hours of completed trips citywide and in ``context_region_km`` regions,
            served to models with a temporal input (TFT) as ``x_ctx``.
        context_flat: the same context as flat numeric features for every model (fair comparisons).
    """

    distances: bool = True
    local_frame: bool = True
    time: bool = True
    holidays: bool = True
    cells: bool = True
    cell_km: float = 1.0
    cell_radius_km: float = 30.0
    categorical: Sequence[str] = ("vendor", "city", "mode", "source")
    numeric: Sequence[str] = ("passenger_count",)
    extra_categorical: Sequence[str] = ()
    extra_numeric: Sequence[str] = ()
    min_count: int = 20
    max_vocab: int = 10_000
    context: bool = False
    context_hours: int = 24
    context_region_km: float = 3.0
    context_flat: bool = False
    target: str = "duration_s"
    target_transform: str = "log1p"

    def __post_init__(self) -> None:
        if self.cell_km <= 0 or self.cell_radius_km <= self.cell_km:
            raise ValueError(f"need 0 < {self.cell_km=} < {self.cell_radius_km=}")
        if self.target_transform not in ("log1p", "none"):
            raise ValueError(f"{self.target_transform=} must be 'log1p' or 'none'")
        if self.min_count < 1 or self.max_vocab < 1:
            raise ValueError(f"{self.min_count=} and {self.max_vocab=} must be >= 1")

    @classmethod
    def of(cls, cfg: FeatureConfig | Mapping[str, Any] | None) -> FeatureConfig:
        if cfg is None:
            return cls()
        if isinstance(cfg, FeatureConfig):
            return cfg
        check_options(cls, cfg, "feature")
        d: dict[str, Any] = {
            k: (tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v) for k, v in cfg.items()
        }
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    # The declared feature names, in array order (must match raw_features' output).
    def numeric_features(self) -> list[tuple[str, str]]:
        """``(name, group)`` of each numeric feature."""
        out: list[tuple[str, str]] = []
        if self.distances:
            out += [(n, "space") for n in ("dist_km", "manhattan_km", "bearing_sin", "bearing_cos")]
        if self.local_frame:
            names = ("pickup_x", "pickup_y", "dropoff_x", "dropoff_y", "delta_x", "delta_y")
            out += [(n, "space") for n in names]
        if self.time:
            names = ("hour_sin", "hour_cos", "week_sin", "week_cos", "year_sin", "year_cos")
            out += [(n, "time") for n in names]
        out += [(n, "trip") for n in self.numeric]
        out += [(n, "extra") for n in self.extra_numeric]
        if self.context_flat:
            out += [(n, "context") for n in CONTEXT_FLAT]
        check_names([n for n, _ in out])
        return out

    def categorical_features(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.time:
            out += [("hour", "time"), ("weekday", "time"), ("month", "time")]
        if self.holidays:
            out.append(("holiday", "time"))
        if self.cells:
            out += [("pickup_cell", "space"), ("dropoff_cell", "space")]
        out += [(n, "trip") for n in self.categorical]
        out += [(n, "extra") for n in self.extra_categorical]
        check_names([n for n, _ in out])
        return out


def _centers_expr(centers: Mapping[str, tuple[float, float]], i: int) -> pl.Expr:
    cities = list(centers)
    return pl.col("city").replace_strict(
        cities, [centers[c][i] for c in cities], default=None, return_dtype=pl.Float64
    )


def raw_features(
    lf: pl.LazyFrame, cfg: FeatureConfig, centers: Mapping[str, tuple[float, float]]
) -> pl.LazyFrame:
    """Feature columns before scaling/vocabularies (numeric Float64; categoricals as Int32 codes or
    Strings), plus ``y`` (the transformed target, Float32) and ``pickup_ts`` (Unix seconds, local time).

    Built in stages (``with_columns``) so that shared terms (the local frame, the hour) are computed once.
    """
    have = set(lf.collect_schema().names())
    lat0, lon0 = _centers_expr(centers, 0), _centers_expr(centers, 1)
    t = pl.col("pickup_time")
    # Calendar parts from integer arithmetic on the epoch (floor division, so right before 1970 too) and
    # lookup tables: a third of the time of polars' datetime accessors, which convert to a calendar each.
    us = t.dt.epoch("us")
    lf = lf.with_columns(
        lat0.alias("_lat0"), lon0.alias("_lon0"), us.floordiv(US_PER_DAY).alias("_day")
    ).with_columns(
        (KM_PER_DEG_LAT * pl.col("_lat0").radians().cos()).alias("_kx"),
        (us - pl.col("_day") * US_PER_DAY).floordiv(60_000_000).alias("_minute_of_day"),  # 0..1439
        ((pl.col("_day") + 3) % 7).alias("_weekday"),  # 1970-01-01 was a Thursday; 0 = Monday
        (pl.col("_day") % DAYS_PER_400_YEARS).alias("_day400"),
    )
    plat, plon, dlat, dlon = (pl.col(c) for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon"))
    by, bx = bearing_yx(plat, plon, dlat, dlon)
    lf = lf.with_columns(
        ((pl.col("pickup_lon") - pl.col("_lon0")) * pl.col("_kx")).alias("_px"),
        ((pl.col("pickup_lat") - pl.col("_lat0")) * KM_PER_DEG_LAT).alias("_py"),
        ((pl.col("dropoff_lon") - pl.col("_lon0")) * pl.col("_kx")).alias("_dx"),
        ((pl.col("dropoff_lat") - pl.col("_lat0")) * KM_PER_DEG_LAT).alias("_dy"),
        *([by.alias("_by"), bx.alias("_bx")] if cfg.distances else []),
    )
    if cfg.distances:
        lf = lf.with_columns((pl.col("_by") ** 2 + pl.col("_bx") ** 2).sqrt().alias("_bh"))
    px, py, dx, dy = (pl.col(c) for c in ("_px", "_py", "_dx", "_dy"))
    minute, weekday = pl.col("_minute_of_day"), pl.col("_weekday")

    num: list[pl.Expr] = []
    if cfg.distances:
        b_sin, b_cos = sin_cos_of_atan2(pl.col("_by"), pl.col("_bx"), pl.col("_bh"))
        num += [
            haversine_km(plat, plon, dlat, dlon).alias("dist_km"),
            ((dx - px).abs() + (dy - py).abs()).alias("manhattan_km"),
            b_sin.alias("bearing_sin"),
            b_cos.alias("bearing_cos"),
        ]
    if cfg.local_frame:
        num += [
            px.alias("pickup_x"),
            py.alias("pickup_y"),
            dx.alias("dropoff_x"),
            dy.alias("dropoff_y"),
            (dx - px).alias("delta_x"),
            (dy - py).alias("delta_y"),
        ]
    if cfg.time:  # cyclic encodings: each a function of the minute of the day/week or the day of the year
        tab = _cyclic_tables()
        minute_of_week = weekday * 1440 + minute
        ordinal = _lookup(calendar.day_tables()["ordinal"], pl.col("_day400"))
        num += [
            _lookup(tab["hour_sin"], minute).alias("hour_sin"),
            _lookup(tab["hour_cos"], minute).alias("hour_cos"),
            _lookup(tab["week_sin"], minute_of_week).alias("week_sin"),
            _lookup(tab["week_cos"], minute_of_week).alias("week_cos"),
            _lookup(tab["year_sin"], ordinal - 1).alias("year_sin"),
            _lookup(tab["year_cos"], ordinal - 1).alias("year_cos"),
        ]
    flat = list(CONTEXT_FLAT) if cfg.context_flat else []  # filled in by the builder (needs the corpus)
    for name in [*cfg.numeric, *cfg.extra_numeric, *flat]:
        col = pl.col(name) if name in have else pl.lit(None)
        num.append(col.cast(pl.Float64).alias(name))

    cat: list[pl.Expr] = []
    if cfg.time:
        cat += [
            minute.floordiv(60).cast(pl.Int32).alias("hour"),
            weekday.cast(pl.Int32).alias("weekday"),
            _lookup(calendar.day_tables()["month"], pl.col("_day400")).alias("month"),
        ]
    if cfg.holidays:
        cat.append(_holiday_expr(pl.col("_day")))
    if cfg.cells:
        cat += [_cell_expr(px, py, cfg).alias("pickup_cell"), _cell_expr(dx, dy, cfg).alias("dropoff_cell")]
    for name in [*cfg.categorical, *cfg.extra_categorical]:
        col = pl.col(name) if name in have else pl.lit(None)
        cat.append(col.cast(pl.String).alias(name))

    target = pl.col(cfg.target) if cfg.target in have else pl.lit(None)
    y = target.cast(pl.Float64).log1p() if cfg.target_transform == "log1p" else target.cast(pl.Float64)
    ts = t.dt.epoch("s").alias("pickup_ts")
    return lf.select(*num, *cat, y.cast(pl.Float32).alias("y"), ts)


def _holiday_expr(day: pl.Expr) -> pl.Expr:
    """1 on a US federal holiday (as observed) of 1970..2100, else 0; ``day``: days since 1970-01-01."""
    table = calendar.day_tables()["holiday"]
    inside = day.is_between(0, len(table) - 1)
    hit = _lookup(table, day.clip(0, len(table) - 1))
    return pl.when(inside).then(hit).when(day.is_not_null()).then(pl.lit(0, pl.Int32)).alias("holiday")


def _lookup(table: np.ndarray, index: pl.Expr) -> pl.Expr:
    """``table[index]`` (``index`` within bounds; a null index gives null)."""
    return pl.lit(pl.Series(table)).gather(index)


@functools.cache
def _cyclic_tables() -> dict[str, np.ndarray]:
    """sin/cos of the hour of the day (by minute of the day), of the week (by minute of the week,
    0 = Monday 00:00) and of the year (by day of the year - 1): ``hour_f = hour + minute / 60``,
    ``week_f = weekday + hour_f / 24``, ``year_f = (ordinal_day - 1) / 365.25``. Computed by polars, as
    the features were before these tables, and not by numpy, whose vectorized sin/cos differ in the
    last bit: the exported graphs compute them with the C library's, and a TabNet's sparse masks can
    turn last-bit differences into 3.6e-4 on its output (measured: one-ulp jitter of its inputs)."""
    m = pl.Series(np.arange(7 * 1440))
    hour_f = (m % 1440) // 60 + (m % 60) / 60.0
    week_f = m // 1440 + hour_f / 24.0
    year_f = pl.Series(np.arange(366)) / 365.25
    h = hour_f[:1440] * TWO_PI / 24
    w = week_f * TWO_PI / 7
    y = year_f * TWO_PI
    return {
        "hour_sin": h.sin().to_numpy(),
        "hour_cos": h.cos().to_numpy(),
        "week_sin": w.sin().to_numpy(),
        "week_cos": w.cos().to_numpy(),
        "year_sin": y.sin().to_numpy(),
        "year_cos": y.cos().to_numpy(),
    }


def cell_code(i: int, j: int, cfg: FeatureConfig) -> int:
    """The integer code of grid cell ``(i, j)`` (``i = floor(x / cell_km)``, same for ``j``); -1 = far.

    >>> cell_code(0, 0, FeatureConfig(cell_km=1.0, cell_radius_km=30.0))
    1860
    """
    r = math.ceil(cfg.cell_radius_km / cfg.cell_km)
    return (i + r) * (2 * r + 1) + (j + r)


def _cell_expr(x: pl.Expr, y: pl.Expr, cfg: FeatureConfig) -> pl.Expr:
    """Grid cell code of a local-frame point (see :func:`cell_code`); beyond the radius: -1 ("far")."""
    r = math.ceil(cfg.cell_radius_km / cfg.cell_km)
    i = (x / cfg.cell_km).floor().cast(pl.Int32)
    j = (y / cfg.cell_km).floor().cast(pl.Int32)
    far = (x.abs() > cfg.cell_radius_km) | (y.abs() > cfg.cell_radius_km)
    return pl.when(far).then(pl.lit(-1, pl.Int32)).otherwise((i + r) * (2 * r + 1) + (j + r)).cast(pl.Int32)


def _engine(frame: pl.DataFrame | pl.LazyFrame) -> Any:
    """The engine for an aggregation over ``frame``: rows already in memory are aggregated in memory
    (the streaming engine's grouped median took 12x as long on 1.2 M rows, the fit's statistics 2x); a
    LazyFrame (a scan of a corpus that may not fit) streams."""
    return "in-memory" if isinstance(frame, pl.DataFrame) else "auto"


def fit_centers(train: pl.DataFrame | pl.LazyFrame) -> dict[str, tuple[float, float]]:
    """Each city's local-frame origin: the median training pickup (robust to a few far trips)."""
    df = (
        train.lazy()
        .group_by("city")
        .agg(pl.col("pickup_lat").median(), pl.col("pickup_lon").median())
        .sort("city")
        .collect(engine=_engine(train))
    )
    return {r["city"]: (float(r["pickup_lat"]), float(r["pickup_lon"])) for r in df.iter_rows(named=True)}


def fit(train: pl.LazyFrame, cfg: FeatureConfig | Mapping[str, Any] | None = None) -> FeatureSpec:
    """Fit centers, scalers and vocabularies on the training rows (canonical schema) only."""
    cfg = FeatureConfig.of(cfg)
    centers = fit_centers(train)
    return fit_raw(raw_features(train, cfg, centers), cfg, centers)


def fit_raw(
    raw: pl.DataFrame | pl.LazyFrame, cfg: FeatureConfig, centers: Mapping[str, tuple[float, float]]
) -> FeatureSpec:
    """:func:`fit` on training rows already passed through :func:`raw_features` with ``centers``
    (a LazyFrame is aggregated as it streams, never materialized)."""
    if not centers:
        raise DataError("cannot fit features: the training split is empty")
    num_feats, cat_feats = cfg.numeric_features(), cfg.categorical_features()

    def tf(name: str) -> pl.Expr:
        c = pl.col(name)
        return c.clip(lower_bound=0).log1p() if name in LOG1P_NUMERIC else c

    learned = [n for n, _ in cat_feats if n not in FIXED_VOCAB]
    # one query: every statistic and every vocabulary's counts in a single parallel pass
    stats = (
        raw.lazy()
        .select(
            *[tf(n).mean().alias(f"{n}__mean") for n, _ in num_feats],
            *[tf(n).std().alias(f"{n}__std") for n, _ in num_feats],
            pl.col("y").cast(pl.Float64).mean().alias("y__mean"),
            pl.col("y").cast(pl.Float64).std().alias("y__std"),
            pl.len().alias("n"),
            *[
                pl.col(n).alias("value").value_counts(name="count").implode().alias(f"{n}__counts")
                for n in learned
            ],
        )
        .collect(engine=_engine(raw))
    )
    s = stats.drop([f"{n}__counts" for n in learned]).row(0, named=True)
    if s["n"] == 0:
        raise DataError("cannot fit features: the training split is empty")
    vocab_of = {
        n: stats[f"{n}__counts"]
        .explode()
        .struct.unnest()
        .drop_nulls("value")
        .filter(pl.col("count") >= cfg.min_count)
        .sort(["count", "value"], descending=[True, False])
        .head(cfg.max_vocab)["value"]
        .to_list()
        for n in learned
    }

    def finite(v: Any, default: float) -> float:
        return float(v) if v is not None and math.isfinite(v) else default

    numeric = tuple(
        NumericFeature(
            name=n,
            mean=finite(s[f"{n}__mean"], 0.0),
            # a constant (or all-null) column scales by 1, not by 0
            std=finite(s[f"{n}__std"], 1.0) if finite(s[f"{n}__std"], 0.0) > 1e-12 else 1.0,
            transform="log1p" if n in LOG1P_NUMERIC else "none",
            group=g,
        )
        for n, g in num_feats
    )
    categorical = tuple(
        CategoricalFeature(name=n, values=FIXED_VOCAB.get(n) or tuple(vocab_of[n]), group=g)
        for n, g in cat_feats
    )
    target = Target(
        name=cfg.target,
        transform=cfg.target_transform,
        mean=finite(s["y__mean"], 0.0),
        std=finite(s["y__std"], 1.0),
    )
    return FeatureSpec(
        numeric=numeric,
        categorical=categorical,
        target=target,
        city_centers=dict(centers),
        config=cfg.to_dict(),
        n_train=int(s["n"]),
    )


def merge_config(base: FeatureConfig, target: FeatureConfig) -> FeatureConfig:
    """The pretraining (``base``) feature config grown by what the fine-tuning ``target`` config adds.

    Every setting that changes what an existing feature means (cell size, context window, target) comes
    from ``base``; switches are OR-ed and column lists united, so the merged config derives every base
    feature plus the target's own. Fitting settings for the new columns (``min_count``, ``max_vocab``)
    come from ``target``.
    """

    def union(a: Sequence[str], b: Sequence[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*a, *b]))

    switches = ("distances", "local_frame", "time", "holidays", "cells", "context", "context_flat")
    lists = ("categorical", "numeric", "extra_categorical", "extra_numeric")
    return dataclasses.replace(
        base,
        **{k: getattr(base, k) or getattr(target, k) for k in switches},
        **{k: union(getattr(base, k), getattr(target, k)) for k in lists},  # type: ignore[arg-type]
        min_count=target.min_count,
        max_vocab=target.max_vocab,
    )


def anchor(base: FeatureSpec, fitted: FeatureSpec) -> FeatureSpec:
    """The fine-tuning spec: ``base``'s features first, in its order and with its statistics and
    vocabularies (so a pretrained model reads every shared column as it learned it), then the features
    only ``fitted`` (the target's training rows) has, appended. Base features the target lacks stay: the
    target's rows carry them as missing. The target statistics are the base's when the target is the
    same quantity (the pretrained head keeps its scale), else the fitted ones.

    >>> a = FeatureSpec((NumericFeature("x", 1.0, 2.0),), (), Target(), {"nyc": (40.7, -74.0)})
    >>> b = FeatureSpec((NumericFeature("x", 0.0, 1.0), NumericFeature("z", 0.0, 1.0)), (), Target(), {})
    >>> [(f.name, f.mean) for f in anchor(a, b).numeric]
    [('x', 1.0), ('z', 0.0)]
    """
    base_num, base_cat = set(base.numeric_names), set(base.categorical_names)
    same_target = (base.target.name, base.target.transform) == (fitted.target.name, fitted.target.transform)
    return dataclasses.replace(
        fitted,
        numeric=(*base.numeric, *(f for f in fitted.numeric if f.name not in base_num)),
        categorical=(*base.categorical, *(f for f in fitted.categorical if f.name not in base_cat)),
        target=base.target if same_target else fitted.target,
        city_centers={**fitted.city_centers, **base.city_centers},
    )


def _known_centers(spec: FeatureSpec, cities: Sequence[str]) -> dict[str, tuple[float, float]]:
    """The spec's centers, plus known real/synthetic city centers for cities unseen at fit time."""
    centers = dict(spec.city_centers)
    for c in cities:
        if c is None or c in centers:
            continue
        try:
            b = city_bounds(c)
        except ValueError as e:
            raise DataError(
                f"city {c!r} was not in the training data and has no known center; "
                f"fit the features on data that includes it ({e})"
            ) from e
        centers[c] = (b.center_lat, b.center_lon)
    return centers


def transform(lf: pl.LazyFrame, spec: FeatureSpec) -> pl.LazyFrame:
    """Apply a fitted spec to trips (canonical schema): numeric columns standardized (Float32, missing
    or non-finite -> 0), categorical columns as vocabulary indices (Int32, unknown/missing -> 0: a value
    not seen when fitting, e.g. a new vendor, is not counted here; :mod:`tabxfer.monitor` counts them),
    ``y``, ``pickup_ts``. A city not seen when fitting gets its known center, or a DataError."""
    cfg = FeatureConfig.of(spec.config)
    cities = lf.select(pl.col("city").unique()).collect()["city"].to_list()
    return scale(raw_features(lf, cfg, _known_centers(spec, cities)), spec)


def scale(raw: pl.LazyFrame, spec: FeatureSpec) -> pl.LazyFrame:
    """The second half of :func:`transform`: raw feature columns -> model inputs."""
    num = []
    for f in spec.numeric:
        c = pl.col(f.name)
        c = c.clip(lower_bound=0).log1p() if f.transform == "log1p" else c
        z = (c - f.mean) / f.std
        z = pl.when(z.is_finite()).then(z).otherwise(0.0)  # NaN, +-inf, null: missing (as the ONNX graph)
        num.append(z.cast(pl.Float32).alias(f.name))
    schema = raw.collect_schema()
    cat = [
        _vocab_index(f.name, f.values, schema[f.name]).fill_null(0).alias(f.name) for f in spec.categorical
    ]
    return raw.select(*num, *cat, "y", "pickup_ts")


def _vocab_index(name: str, values: Sequence[Any], dtype: pl.DataType) -> pl.Expr:
    """1-based index of each value in ``values`` (0: unknown or missing), Int32. Strings through an Enum
    cast, integers through a lookup table when their range is small (cells, hours): 5x faster than a
    hash-map ``replace_strict``, which stays the general case."""
    c = pl.col(name)
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if dtype == pl.String and all(isinstance(v, str) for v in values):
        index = c.cast(pl.Enum(list(values)), strict=False).to_physical().cast(pl.Int32) + 1
    elif dtype.is_integer() and values and len(ints) == len(values) and max(ints) - min(ints) < 1 << 20:
        lo, hi = min(ints), max(ints)
        lut = np.zeros(hi - lo + 1, dtype=np.int32)
        lut[np.asarray(ints) - lo] = np.arange(1, len(ints) + 1, dtype=np.int32)
        hit = _lookup(lut, (c.cast(pl.Int64) - lo).clip(0, hi - lo))
        index = pl.when(c.is_between(lo, hi)).then(hit).otherwise(0).cast(pl.Int32)
    else:
        index = c.replace_strict(
            list(values), list(range(1, len(values) + 1)), default=0, return_dtype=pl.Int32
        )
    return index.alias(name)


def to_arrays(df: pl.DataFrame, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """Model-ready arrays from a transformed frame: ``x_num (N, F) float32``, ``x_cat (N, C) int32``,
    ``y (N,) float32`` (NaN where unlabeled) and ``pickup_ts (N,) int64``."""
    n = df.height

    def block(names: list[str], dtype: type) -> np.ndarray:
        if not names:
            return np.zeros((n, 0), dtype=dtype)
        # polars writes row-major itself (order="c"): ~10x faster than numpy transposing its default
        return np.require(df.select(names).to_numpy(order="c"), dtype, ["C_CONTIGUOUS", "WRITEABLE"])

    return {
        "x_num": block(spec.numeric_names, np.float32),
        "x_cat": block(spec.categorical_names, np.int32),
        "y": df["y"].fill_null(float("nan")).to_numpy().astype(np.float32, copy=False),
        "pickup_ts": df["pickup_ts"].to_numpy().astype(np.int64, copy=False),
    }
