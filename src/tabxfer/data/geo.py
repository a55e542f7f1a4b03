"""Geometry on lat/lon as polars expressions (vectorized, lazy-friendly) and numpy twins for tests."""

from __future__ import annotations

import math

import polars as pl

EARTH_RADIUS_KM = 6371.0088
KM_PER_DEG_LAT = math.pi * EARTH_RADIUS_KM / 180.0  # ~111.2 km


def haversine_km(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    """Great-circle distance in km."""
    phi1, phi2 = lat1.radians(), lat2.radians()
    dphi = phi2 - phi1
    dlmb = (lon2 - lon1).radians()
    a = (dphi / 2).sin().pow(2) + phi1.cos() * phi2.cos() * (dlmb / 2).sin().pow(2)
    return 2 * EARTH_RADIUS_KM * a.sqrt().arcsin()


def bearing_deg(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    """Initial compass bearing from point 1 to point 2, degrees in [-180, 180] (0 = north, 90 = east)."""
    y, x = bearing_yx(lat1, lon1, lat2, lon2)
    return pl.arctan2(y, x).degrees()


def bearing_yx(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """The two arguments of :func:`bearing_deg`'s ``atan2(y, x)``."""
    phi1, phi2 = lat1.radians(), lat2.radians()
    dlmb = (lon2 - lon1).radians()
    y = dlmb.sin() * phi2.cos()
    x = phi1.cos() * phi2.sin() - phi1.sin() * phi2.cos() * dlmb.cos()
    return y, x


def sin_cos_of_atan2(y: pl.Expr, x: pl.Expr, hypot: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``sin`` and ``cos`` of ``atan2(y, x)`` without the angle, given ``hypot = sqrt(y**2 + x**2)``
    (pass columns: each is read twice): ``(y, x) / hypot``, and ``(0, 1)`` where both are 0
    (``atan2(0, 0) = 0``). A third of the time of atan2 + sin + cos, and the formula the ONNX graph
    uses (:mod:`tabxfer.export.graph`)."""
    zero = hypot == 0
    return pl.when(zero).then(0.0).otherwise(y / hypot), pl.when(zero).then(1.0).otherwise(x / hypot)


def local_xy_km(lat: pl.Expr, lon: pl.Expr, lat0: float, lon0: float) -> tuple[pl.Expr, pl.Expr]:
    """Equirectangular projection to a city-local frame: km east (x) and north (y) of (lat0, lon0).

    Within a city (tens of km) the error against a proper projection is well under 1 %, and the frame
    makes "2 km north-east of the center" mean the same thing in every city, which is what transfers.
    """
    kx = KM_PER_DEG_LAT * math.cos(math.radians(lat0))
    return (lon - lon0) * kx, (lat - lat0) * KM_PER_DEG_LAT
