"""The feature pipeline as a torch module, so that an exported graph takes raw trip fields.

:class:`RawFeatures` recomputes, from raw inputs, exactly what :func:`tabxfer.features.pipeline.transform`
computes with polars for a fitted :class:`~tabxfer.features.spec.FeatureSpec`: the city-local frame,
distances and bearing, the calendar (hour, weekday, month, day of year and US federal holidays, all from
epoch seconds with integer arithmetic), grid cells, vocabulary lookups of integer-valued categoricals, and
the scalers. Geometry and scaling run in float64, as polars does, and are cast to float32 at the end, so
the model sees the same numbers to the last bit in almost every row (tested against the polars pipeline).

String-valued categoricals (``vendor``, ``city``, ...) cannot enter a torch graph: :class:`RawFeatures`
takes their vocabulary indices (``codes``), and :mod:`tabxfer.export.onnx_graph` puts ONNX-ML
``LabelEncoder`` nodes (string -> index, unknown -> 0) in front of it, so the artifact takes strings.

Conventions of the raw inputs (also written into every artifact's description):

* ``pickup_ts``: int64 seconds since 1970-01-01 00:00 of the *local wall-clock* pickup time (the trip's
  local time read as if it were UTC, what ``datetime.timestamp()`` gives for a naive datetime in a UTC
  process and what polars ``dt.epoch("s")`` gives for a naive datetime).
* coordinates: float64 degrees. Numeric fields: float64, NaN = missing. Strings: ``""`` = missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tabxfer.data.geo import EARTH_RADIUS_KM, KM_PER_DEG_LAT
from tabxfer.features.calendar import day_tables
from tabxfer.features.context import FLAT as CONTEXT_FLAT
from tabxfer.features.pipeline import FeatureConfig
from tabxfer.features.spec import FeatureSpec

COMPUTED_CATEGORICALS = ("hour", "weekday", "month", "holiday", "pickup_cell", "dropoff_cell")
COMPUTED_NUMERIC = (
    "dist_km",
    "manhattan_km",
    "bearing_sin",
    "bearing_cos",
    "pickup_x",
    "pickup_y",
    "dropoff_x",
    "dropoff_y",
    "delta_x",
    "delta_y",
    "hour_sin",
    "hour_cos",
    "week_sin",
    "week_cos",
    "year_sin",
    "year_cos",
)


def civil_from_days(days: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(year, month, ordinal day)`` of days since 1970-01-01 (proleptic Gregorian; H. Hinnant's
    ``civil_from_days``, valid from year 0 on), as integer-valued float64 tensors.

    Integer arithmetic done in float64, exactly: every value is an integer below 2**53 and every division a
    floor of a quotient whose fraction, when nonzero, is at least 1/146097, far above float64's rounding.
    Not int64: torch's ONNX exporter lowers integer ``floor_divide`` through *float32* (wrong by up to ~100
    for epoch seconds), so every division would need casts to float64 and back.

    >>> y, m, o = civil_from_days(torch.tensor([0, 16861, 11016]))
    >>> y.long().tolist(), m.long().tolist(), o.long().tolist()
    ([1970, 2016, 2000], [1, 3, 2], [1, 61, 60])
    """

    def floor_div(a: Tensor, b: int) -> Tensor:
        return torch.floor(a / b)

    z = days.double() + 719468
    era = floor_div(z, 146097)
    doe = z - era * 146097  # day of era [0, 146096]
    yoe = floor_div(doe - floor_div(doe, 1460) + floor_div(doe, 36524) - floor_div(doe, 146096), 365)
    doy = doe - (365 * yoe + floor_div(yoe, 4) - floor_div(yoe, 100))  # day of the March-based year [0, 365]
    mp = floor_div(5 * doy + 2, 153)
    early = mp >= 10  # January, February: the next civil year
    month = torch.where(early, mp - 9, mp + 3)
    year = yoe + era * 400 + early.double()
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    ordinal = torch.where(early, doy - 305, doy + 60 + leap.double())
    return year, month, ordinal


def cos64(x: Tensor) -> Tensor:
    """float64 ``cos`` as ``sin(x + pi / 2)``: onnxruntime before 1.29 has no float64 ``Cos`` kernel (an
    artifact with one failed to load in 1.20.1 and 1.28.0), while float64 ``Sin`` runs in 1.20 (checked).
    The shift costs one rounding of ``x + pi / 2``: ~1e-16 relative.

    >>> x = torch.linspace(-10, 10, 101, dtype=torch.float64)
    >>> bool((cos64(x) - torch.cos(x)).abs().max() < 1e-14)
    True
    """
    return torch.sin(x + math.pi / 2)


def asin64(s: Tensor) -> Tensor:
    """float64 ``asin`` from ops onnxruntime runs in float64: float32 ``asin``, then one Newton step on
    ``sin(t) = s`` in float64 (error ~1e-7 -> ~1e-14 away from |s| = 1).

    >>> x = torch.tensor([0.0, 1e-6, 0.3, 0.9], dtype=torch.float64)
    >>> bool((asin64(x) - torch.asin(x)).abs().max() < 1e-13)
    True
    """
    t = torch.asin(s.float()).double()
    return t - (torch.sin(t) - s) / cos64(t)


def take(table: Tensor, index: Tensor) -> Tensor:
    """``table[index]`` along the first dimension as ``index_select``, which exports as an ONNX ``Gather``;
    ``table[index]`` exports as ``GatherND``, which onnxruntime runs several times slower."""
    return table.index_select(0, index.reshape(-1)).reshape(*index.shape, *table.shape[1:])


def known_city_centers() -> dict[str, tuple[float, float]]:
    """``(lat, lon)`` of every city tabxfer knows (real and synthetic presets): the polars pipeline's
    local-frame origin for a city that the training data did not have."""
    from tabxfer.data.cities import REAL_CITIES, city_bounds
    from tabxfer.data.synthetic import PRESETS

    return {c: (city_bounds(c).center_lat, city_bounds(c).center_lon) for c in [*REAL_CITIES, *PRESETS]}


NO_CELL = -2  # the graph's cell code for a missing coordinate: a slot of the lookup table that maps to 0


def _lookup(values: Sequence[int], domain: tuple[int, int]) -> tuple[int, Tensor]:
    """``(lo, table)`` with ``table[v - lo]`` = vocabulary index of integer value ``v`` (0 = unknown), for
    every ``v`` in ``domain`` (inclusive bounds): the values the graph computes, so that a lookup needs no
    bounds check."""
    vals = [int(v) for v in values]
    lo, hi = min([domain[0], *vals]), max([domain[1], *vals])
    table = torch.zeros(hi - lo + 1, dtype=torch.long)
    for i, v in enumerate(vals):
        table[v - lo] = i + 1
    return lo, table


class RawFeatures(nn.Module):
    """Raw trip fields -> ``(x_num float32 (B, n_num), x_cat int64 (B, n_cat))`` for a fitted spec.

    Args of :meth:`forward` (``B`` rows each):
        pickup_ts: int64 local epoch seconds (see the module docstring).
        pickup_lat, pickup_lon, dropoff_lat, dropoff_lon: float64 degrees.
        numeric: float64 ``(B, len(numeric_inputs))``: the spec's raw numeric columns, NaN = missing.
        codes: int64 ``(B, len(string_inputs))``: vocabulary index of each string categorical (0 = unknown).
        center: int64 ``(B,)``: row of the pickup's city in :attr:`centers` (-1 = unknown city).
        context: float32 ``(B, T, 4)`` standardized hourly context, only when ``context_flat`` features
            are in the spec (their values are read off the context like the builder does).
    """

    holiday: Tensor
    centers_table: Tensor
    num_mean: Tensor
    num_std: Tensor

    def __init__(self, spec: FeatureSpec, *, extra_centers: dict[str, tuple[float, float]] | None = None):
        """``extra_centers``: centers of cities the spec lacks (default: :func:`known_city_centers`)."""
        super().__init__()
        cfg = FeatureConfig.of(spec.config)
        self.spec, self.cfg = spec, cfg
        computed_cat = {"hour", "weekday", "month", "holiday", "pickup_cell", "dropoff_cell"}
        computed_num = set(COMPUTED_NUMERIC) | set(CONTEXT_FLAT)
        # raw inputs, in the order of the graph's inputs
        self.numeric_inputs = [f.name for f in spec.numeric if f.name not in computed_num]
        self.string_inputs = [f.name for f in spec.categorical if f.name not in computed_cat]
        self.uses_context_flat = any(f.name in CONTEXT_FLAT for f in spec.numeric)
        # the city-local frame: fitted centers first, then every other city tabxfer knows (what the polars
        # pipeline falls back to for a city unseen at fit time)
        extra = known_city_centers() if extra_centers is None else extra_centers
        centers = {**extra, **spec.city_centers}
        self.cities = list(spec.city_centers) + [c for c in centers if c not in spec.city_centers]
        self.register_buffer(
            "centers_table",
            torch.tensor([centers[c] for c in self.cities], dtype=torch.float64).reshape(-1, 2),
        )
        # the pipeline's day table (1970-01-01 .. 2100-12-31), one byte a day
        self.register_buffer("holiday", torch.from_numpy(day_tables()["holiday"].astype("uint8")))
        self.radius = math.ceil(cfg.cell_radius_km / cfg.cell_km)
        self.lookup_lo: dict[str, int] = {}  # int-valued categoricals: value - lo -> index (buffer)
        n_cells = (2 * self.radius + 1) ** 2
        domains = {"hour": (0, 23), "weekday": (0, 6), "month": (1, 12), "holiday": (0, 1)}
        # cell codes: -1 far, NO_CELL for a missing coordinate (never in a vocabulary: index 0)
        domains |= {c: (NO_CELL, n_cells - 1) for c in ("pickup_cell", "dropoff_cell")}
        for f in spec.categorical:
            if f.name in computed_cat:
                lo, table = _lookup([int(v) for v in f.values], domains[f.name])
                self.register_buffer(f"lookup_{f.name}", table)
                self.lookup_lo[f.name] = lo
        self.register_buffer("num_mean", torch.tensor([f.mean for f in spec.numeric], dtype=torch.float64))
        self.register_buffer("num_std", torch.tensor([f.std for f in spec.numeric], dtype=torch.float64))

    def _index(self, name: str, v: Tensor) -> Tensor:
        """Vocabulary index of the computed value ``v`` (integer-valued), which lies in the table's domain."""
        return take(getattr(self, f"lookup_{name}"), (v - self.lookup_lo[name]).long())

    def _cell(self, x: Tensor, y: Tensor) -> Tensor:
        """Grid-cell code of local coordinates ``x, y`` (km), as the pipeline's: ``-1`` beyond the cell
        radius, :data:`NO_CELL` where a coordinate is missing (float64, integer-valued). Comparisons are
        false for NaN, so ``near`` and ``ok`` need no NaN test of their own."""
        cfg, r = self.cfg, self.radius
        ax, ay = x.abs(), y.abs()
        ok = (ax < math.inf) & (ay < math.inf)
        near = (ax <= cfg.cell_radius_km) & (ay <= cfg.cell_radius_km)
        i = torch.floor(torch.where(near, x, 0.0) / cfg.cell_km)  # in [-r, r] where near
        j = torch.floor(torch.where(near, y, 0.0) / cfg.cell_km)
        code = torch.where(near, (i + r) * (2 * r + 1) + (j + r), -1.0)
        return torch.where(ok, code, float(NO_CELL))

    def forward(
        self,
        pickup_ts: Tensor,
        pickup_lat: Tensor,
        pickup_lon: Tensor,
        dropoff_lat: Tensor,
        dropoff_lon: Tensor,
        numeric: Tensor,
        codes: Tensor,
        center: Tensor,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        cfg = self.cfg
        known = center >= 0
        c = take(self.centers_table, center.clamp(min=0))
        nan = torch.full_like(pickup_lat, math.nan)
        lat0 = torch.where(known, c[:, 0], nan)
        lon0 = torch.where(known, c[:, 1], nan)
        kx = KM_PER_DEG_LAT * cos64(torch.deg2rad(lat0))
        px, py = (pickup_lon - lon0) * kx, (pickup_lat - lat0) * KM_PER_DEG_LAT
        dx, dy = (dropoff_lon - lon0) * kx, (dropoff_lat - lat0) * KM_PER_DEG_LAT

        # integer arithmetic in float64, exact as in civil_from_days (|seconds| < 2**53)
        secs = pickup_ts.double()
        days = torch.floor(secs / 86400)
        sod = secs - days * 86400  # second of the day
        hour = torch.floor(sod / 3600)
        minute = torch.floor((sod - hour * 3600) / 60)
        weekday = days + 3 - 7 * torch.floor((days + 3) / 7)  # 1970-01-01 was a Thursday; 0 = Monday
        _, month, ordinal = civil_from_days(days)

        cols: dict[str, Tensor] = {}
        if cfg.distances:
            phi1, phi2 = torch.deg2rad(pickup_lat), torch.deg2rad(dropoff_lat)
            dlmb = torch.deg2rad(dropoff_lon - pickup_lon)
            a = torch.sin((phi2 - phi1) / 2) ** 2 + cos64(phi1) * cos64(phi2) * torch.sin(dlmb / 2) ** 2
            cols["dist_km"] = 2 * EARTH_RADIUS_KM * asin64(torch.sqrt(a))
            cols["manhattan_km"] = (dx - px).abs() + (dy - py).abs()
            by = torch.sin(dlmb) * cos64(phi2)
            bx = cos64(phi1) * torch.sin(phi2) - torch.sin(phi1) * cos64(phi2) * cos64(dlmb)
            # sin and cos of atan2(by, bx) without the angle (onnxruntime has no float64 atan); atan2(0, 0)
            # is 0 in polars, so a zero-length trip has bearing (0, 1)
            h = torch.sqrt(by * by + bx * bx)
            zero = h == 0
            h = torch.where(zero, torch.ones_like(h), h)
            cols["bearing_sin"] = torch.where(zero, torch.zeros_like(h), by / h)
            cols["bearing_cos"] = torch.where(zero, torch.ones_like(h), bx / h)
        if cfg.local_frame:
            cols |= {"pickup_x": px, "pickup_y": py, "dropoff_x": dx, "dropoff_y": dy}
            cols |= {"delta_x": dx - px, "delta_y": dy - py}
        if cfg.time:
            two_pi = 2 * math.pi
            hour_f = hour + minute / 60.0
            week_f = weekday + hour_f / 24.0
            year_f = (ordinal - 1) / 365.25
            cols["hour_sin"], cols["hour_cos"] = (
                torch.sin(hour_f * two_pi / 24),
                cos64(hour_f * two_pi / 24),
            )
            cols["week_sin"], cols["week_cos"] = (
                torch.sin(week_f * two_pi / 7),
                cos64(week_f * two_pi / 7),
            )
            cols["year_sin"], cols["year_cos"] = torch.sin(year_f * two_pi), cos64(year_f * two_pi)
        for k, name in enumerate(self.numeric_inputs):
            cols[name] = numeric[:, k]
        if self.uses_context_flat:
            if context is None:
                raise ValueError("this spec has context_flat features: pass the context sequence")
            ctx = context.double()
            cols["ctx_city_trips_1h"] = ctx[:, -1, 0]
            cols["ctx_city_speed_1h"] = ctx[:, -1, 1]
            cols["ctx_city_speed_24h"] = ctx[:, -min(cfg.context_hours, 24) :, 1].mean(dim=1)
            cols["ctx_region_trips_1h"] = ctx[:, -1, 2]
            cols["ctx_region_speed_1h"] = ctx[:, -1, 3]

        for f in self.spec.numeric:  # per column, before the stack: an index_copy exports as 3 Transposes
            if f.transform == "log1p":  # and a ScatterND (a tenth of an MLP graph's time)
                cols[f.name] = torch.log1p(cols[f.name].clamp(min=0))
        raw = torch.stack([cols[f.name] for f in self.spec.numeric], dim=1) if self.spec.numeric else None
        if raw is not None:
            z = (raw - self.num_mean) / self.num_std
            x_num = torch.where(z.abs() < math.inf, z, 0.0).float()  # NaN and +-inf -> 0 (the mean)
        else:
            x_num = torch.zeros(pickup_ts.shape[0], 0)

        cats: dict[str, Tensor] = {}
        if cfg.time:
            cats["hour"] = self._index("hour", hour)
            cats["weekday"] = self._index("weekday", weekday)
            cats["month"] = self._index("month", month)
        if cfg.holidays:
            n = self.holiday.shape[0]
            day = days.long()
            inside = (day >= 0) & (day < n)
            is_hol = torch.where(
                inside, take(self.holiday, day.clamp(0, n - 1)).long(), torch.zeros_like(day)
            )
            cats["holiday"] = self._index("holiday", is_hol)
        if cfg.cells:
            for name, (x, y) in (("pickup_cell", (px, py)), ("dropoff_cell", (dx, dy))):
                cats[name] = self._index(name, self._cell(x, y))
        for k, name in enumerate(self.string_inputs):
            cats[name] = codes[:, k]
        names = self.spec.categorical_names
        x_cat = torch.stack([cats[n] for n in names], dim=1) if names else torch.zeros(pickup_ts.shape[0], 0)
        return x_num, x_cat.long()
