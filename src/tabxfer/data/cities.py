"""Where cities are: centers and plausible bounding boxes, for validation and the city-local frame.

Real cities are listed here; synthetic presets (:mod:`tabxfer.data.synthetic`) carry their own and are
looked up there.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class CityBounds:
    name: str
    center_lat: float
    center_lon: float
    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float


# Generous metro boxes: they only catch coordinates no trip of the city can have (0/0, swapped lat/lon,
# a stray GPS fix in another state). Tighter cleaning is the model's business, not the loader's.
REAL_CITIES: dict[str, CityBounds] = {
    "nyc": CityBounds("nyc", 40.7505, -73.9934, 40.40, 41.10, -74.40, -73.40),
    "jersey_city": CityBounds("jersey_city", 40.7178, -74.0431, 40.40, 41.10, -74.40, -73.40),
    "chicago": CityBounds("chicago", 41.8781, -87.6298, 41.55, 42.15, -88.10, -87.40),
}


def city_bounds(name: str) -> CityBounds:
    """Bounds of a real city or a synthetic preset; ``ValueError`` listing the known names otherwise."""
    if name in REAL_CITIES:
        return REAL_CITIES[name]
    from tabxfer.data import synthetic  # local import: the generator is only needed for its presets

    if name in synthetic.PRESETS:
        p = synthetic.PRESETS[name]
        lat_min, lat_max, lon_min, lon_max = p.bbox
        return CityBounds(name, p.center_lat, p.center_lon, lat_min, lat_max, lon_min, lon_max)
    known = sorted([*REAL_CITIES, *synthetic.PRESETS])
    raise ValueError(f"unknown city {name!r}; known cities: {', '.join(known)}")
