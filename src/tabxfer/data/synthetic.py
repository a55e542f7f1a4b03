"""The synthetic mobility corpus: trips simulated in made-up cities (and one NYC-like one).

Why it exists: a new user has no trip data and nothing can be downloaded, yet pretraining needs millions of
trips from *several* cities whose differences are structured (layout, water, congestion, weather), so that
"does what was learned in city A help in city B?" is a real question. A toy (uniform points, duration =
distance / constant) would make transfer trivial; every mechanism below exists because real trips have it.

How one trip is made (each step vectorized over a block of trips, numpy only; docs/synthetic.md has more):

1. *When*: a (day, hour) cell drawn with weight weekday x season x the day's weather x hour profile
   (weekday or weekend), then a uniform second. Weather is a Markov chain per city and calendar year
   (clear / rain / snow with monthly wet-day and snow shares), shared by all trips of a day.
2. *Where*: an origin-destination pair of zones (districts and hubs) from a gravity model
   ``P(d|o) ~ attract_d * (1 + dist / (tail * scale)) ** -tail``, with hourly swings: commuters leave home
   in the morning and return in the evening, night trips go farther (home), airports keep a timetable.
   Points are rotated Gaussians around zone centers (Manhattan is long and thin), clipped to the city box.
3. *Route*: a rotated-grid metric (``grid_share`` of the L1 distance on the street grid) times circuity.
   A trip whose straight line crosses water (a polyline) detours through the crossing (bridge, tunnel,
   head of a bay) that minimizes its route, and pays that crossing's delay.
4. *Time*: free-flow speed rising with route length (highways), slower near the core; travel time
   inflated by the hour x weekday congestion, its season, and weather; incidents (per km, likelier in
   congestion and bad weather) multiply the driving time; fixed overheads (loading, airport curbs). Then
   lognormal noise (relatively smaller on long trips), a heavier upper tail for a few trips, GPS-stuck and
   cancelled trips, and meter-left-running records of up to a day (the Kaggle data's >6 h outliers).
5. *Record*: vendor, then passenger count, store-and-forward flag and runaway-meter rate per vendor (in
   the Kaggle data vendor 2 has nearly all 5-6 passenger trips and nearly all the day-long records).

Determinism: rows come in fixed blocks of :data:`BLOCK` rows; block ``b`` draws from its own
``SeedSequence([seed, crc32(city)], spawn_key=(0, b))``. The output of ``(city, n, seed, start, end)`` is
identical whatever ``chunk_size`` (chunks re-cut the same rows); another ``n`` changes only the last block.
Times are naive local wall-clock times (DST is ignored).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import tempfile
import zlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from tabxfer.data.geo import KM_PER_DEG_LAT
from tabxfer.data.schema import CORE_SCHEMA

VERSION = 1  # bump when the output for the same arguments changes (it is part of data fingerprints)
BLOCK = 1 << 16  # rows per random stream: fixes the output whatever the chunk size
WEATHER = ("clear", "rain", "snow")
EXTRA_SCHEMA: dict[str, pl.DataType] = {
    "store_and_fwd_flag": pl.String(),
    "weather": pl.String(),
    "incident": pl.Boolean(),
}
SCHEMA: dict[str, pl.DataType] = {**CORE_SCHEMA, **EXTRA_SCHEMA}
Profile = tuple[float, ...]  # 24 hourly values
FLAT: Profile = (1.0,) * 24


def bumps(base: float, *peaks: tuple[float, float, float]) -> Profile:
    """A 24-hour profile: ``base`` plus Gaussian bumps ``(hour, height, width_h)`` wrapping at midnight."""
    h = np.arange(24.0)
    out = np.full(24, float(base))
    for center, height, width in peaks:
        d = np.abs(h - center)
        out += height * np.exp(-0.5 * (np.minimum(d, 24 - d) / width) ** 2)
    return tuple(round(float(v), 4) for v in out)


@dataclasses.dataclass(frozen=True)
class District:
    """A land-use zone: a rotated Gaussian blob of trip ends, ``x, y`` in km east/north of the center.
    ``commute`` > 0 marks homes (weekday trips leave them in the morning, return at night), < 0 jobs."""

    name: str
    x: float
    y: float
    weight: float  # relative pickup demand
    spread: tuple[float, float] = (1.0, 1.0)  # sd along / across ``angle``, km
    angle: float = 0.0  # degrees counter-clockwise from east
    attract: float | None = None  # relative dropoff demand (default: weight)
    commute: float = 0.0


@dataclasses.dataclass(frozen=True)
class Hub:
    """An airport or station: a tight cluster of trip ends with a fixed access delay (terminal loops,
    taxi queues), a long reach (people cross the city for a flight) and its own timetable."""

    name: str
    kind: str  # "airport" | "station"
    x: float
    y: float
    pickup: float
    dropoff: float
    access_s: float
    reach: float = 4.0  # multiplies the gravity model's length scale for trips to/from the hub
    spread: float = 0.25
    pickup_hours: Profile = FLAT  # hourly demand multipliers
    dropoff_hours: Profile = FLAT


@dataclasses.dataclass(frozen=True)
class Water:
    """A river or bay as a polyline (km). Trips whose straight line crosses it an odd number of times
    detour via one of ``crossings`` ``(x, y, delay_s)``; a bay's head is a crossing with no delay."""

    name: str
    line: tuple[tuple[float, float], ...]
    crossings: tuple[tuple[float, float, float], ...]


@dataclasses.dataclass(frozen=True)
class Weather:
    """Daily weather: wet/dry Markov chain with monthly wet-day shares; snow is a share of wet days."""

    wet_days: tuple[float, ...]  # 12 monthly P(wet day)
    snow_share: tuple[float, ...]  # 12 monthly P(snow | wet)
    persistence: float = 0.35  # P(wet | wet yesterday) = persistence + (1 - persistence) * wet_days
    speed: tuple[float, float, float] = (1.0, 0.92, 0.78)  # multipliers for clear / rain / snow
    demand: tuple[float, float, float] = (1.0, 1.06, 0.85)
    incidents: tuple[float, float, float] = (1.0, 1.5, 3.0)


@dataclasses.dataclass(frozen=True)
class Vendor:
    name: str
    share: float
    passengers: tuple[float, ...]  # P(passenger_count = 0, 1, 2, ...)
    store_fwd_rate: float = 0.0
    runaway_rate: float = 0.0  # share of records whose meter was left running for hours


@dataclasses.dataclass(frozen=True)
class CityPreset:
    """Everything that makes one simulated city. Distances in km in a local frame centered on
    ``(center_lat, center_lon)``; the city box is the square of half-side ``radius_km``."""

    name: str
    center_lat: float
    center_lon: float
    radius_km: float
    districts: tuple[District, ...]
    hour_demand: tuple[Profile, Profile]  # weekday, weekend
    congestion: tuple[Profile, Profile]  # weekday, weekend: extra travel time at the core (0.5 = +50 %)
    weather: Weather
    vendors: tuple[Vendor, ...]
    hubs: tuple[Hub, ...] = ()
    water: tuple[Water, ...] = ()
    mode: str = "taxi"
    description: str = ""
    # demand
    weekday_demand: tuple[float, ...] = (1.0,) * 7  # Monday .. Sunday
    season_amp: float = 0.0  # demand x (1 + amp * cos(2 pi (day of year - peak) / 365.25))
    season_peak_doy: int = 180
    season_congestion_amp: float = 0.0  # congestion follows the same seasonal cycle
    trip_scale_km: float = 3.0  # gravity model: (1 + dist / (tail * scale)) ** -tail
    gravity_tail: float = 4.0  # small: heavy tail of long trips; large: exp(-dist / scale)
    night_trip_scale: float = 1.0  # scale multiplier around 3 h: night trips head home, farther out
    commute: float = 0.5  # strength of the weekday morning/evening swing of districts' ``commute``
    min_trip_km: float = 0.7  # shorter trips are mostly walked: redrawn once with prob. 1 - km / this
    # roads
    grid_angle_deg: float = 0.0
    grid_share: float = 0.5  # 0: straight lines; 1: pure Manhattan distance on the grid
    circuity: float = 1.15
    speed_local_kmh: float = 25.0
    speed_highway_kmh: float = 60.0
    highway_scale_km: float = 8.0  # route length at which half the highway speed gain is reached
    core_radius_km: float = 3.0
    core_slowdown: float = 0.2  # free-flow speed lost at the core
    congestion_outer: float = 0.5  # share of the core's congestion felt far from it
    overhead_s: float = 60.0  # loading / unloading
    incident_per_km: float = 0.005
    incident_severity: float = 0.5  # mean extra share of the driving time
    # noise and recording errors
    noise_sigma: float = 0.3  # lognormal sd of a short trip's duration, shrinking on long ones as
    noise_km: float = 10.0  # sqrt(noise_km / (noise_km + route)): segment delays average out
    tail_share: float = 0.03
    tail_sigma: float = 0.8
    stationary_share: float = 0.003  # GPS stuck: dropoff recorded at the pickup point
    cancel_share: float = 0.003  # meter started and stopped at once: 1-150 s, (almost) no distance
    runaway_max_s: float = 86_400.0
    runaway_slack_s: float = 1_800.0

    @property
    def km_per_deg_lon(self) -> float:
        return KM_PER_DEG_LAT * math.cos(math.radians(self.center_lat))

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(lat_min, lat_max, lon_min, lon_max)``: every generated coordinate lies inside."""
        dlat, dlon = self.radius_km / KM_PER_DEG_LAT, self.radius_km / self.km_per_deg_lon
        return (
            self.center_lat - dlat,
            self.center_lat + dlat,
            self.center_lon - dlon,
            self.center_lon + dlon,
        )


# --- presets (tables of numbers: kept compact by hand) ---------------------------------------------------
_NYC_LAT, _NYC_LON = 40.7505, -73.9934  # Penn Station, the REAL_CITIES["nyc"] center


def _ll(lat: float, lon: float) -> tuple[float, float]:
    """NYC landmarks are written in lat/lon; the simulation works in km from the center."""
    kx = KM_PER_DEG_LAT * math.cos(math.radians(_NYC_LAT))
    return round((lon - _NYC_LON) * kx, 3), round((lat - _NYC_LAT) * KM_PER_DEG_LAT, 3)


def _two_vendors(a: str, b: str) -> tuple[Vendor, Vendor]:
    return (Vendor(a, 0.6, (0.0, 0.72, 0.17, 0.06, 0.03, 0.02), 0.004, 0.0008),
            Vendor(b, 0.4, (0.0, 0.66, 0.2, 0.07, 0.04, 0.03), 0.0, 0.0015))  # fmt: skip


# Airports: departures peak at dawn and stop at night; JFK's red-eyes land at dawn, LGA is shut 1-6 h.
_DEPARTURES = bumps(0.05, (5.0, 6.0, 0.9), (14.0, 2.2, 3.5))
_JFK_ARRIVALS = bumps(0.3, (5.5, 2.0, 0.8), (15.5, 1.0, 3.0), (23.0, 1.2, 1.5))
_LGA_ARRIVALS = bumps(0.0, (10.0, 1.2, 2.0), (16.0, 1.2, 2.5), (23.0, 1.5, 2.0))
_M = 61.0  # Manhattan's grid runs 29 deg east of north: 61 deg from east

# fmt: off
NYC = CityPreset(
    name="nyc", center_lat=_NYC_LAT, center_lon=_NYC_LON,
    description="NYC-like: Manhattan grid, outer boroughs, JFK/LGA, Hudson and East River; Kaggle-calibrated",
    radius_km=30.0,  # inside REAL_CITIES["nyc"]: the real validation box holds every trip
    districts=(  # name, center, pickups, (sd along, sd across), angle, dropoffs, commute
        District("lower_manhattan", *_ll(40.712, -74.007), 7.0, (0.9, 0.5), _M),
        District("village_soho", *_ll(40.728, -73.996), 11.0, (0.9, 0.7), _M),
        District("chelsea_gramercy", *_ll(40.741, -73.989), 14.0, (0.9, 0.7), _M),
        District("midtown", *_ll(40.757, -73.981), 24.0, (1.0, 0.8), _M, None, -1.0),
        District("upper_east", *_ll(40.773, -73.958), 13.0, (1.3, 0.5), _M, None, 1.0),
        District("upper_west", *_ll(40.787, -73.975), 8.0, (1.3, 0.5), _M, None, 1.0),
        District("harlem", *_ll(40.813, -73.948), 2.0, (2.0, 0.6), _M, 4.0, 1.0),
        District("brooklyn", *_ll(40.688, -73.972), 2.2, (3.0, 2.5), 30.0, 7.0, 1.0),
        District("queens", *_ll(40.748, -73.905), 0.9, (3.5, 2.5), 0.0, 6.0, 1.0),
        District("bronx", *_ll(40.840, -73.890), 0.3, (3.0, 2.0), 0.0, 0.8, 1.0),
        District("jersey_waterfront", *_ll(40.730, -74.045), 0.1, (1.5, 1.0), 80.0, 0.4),
    ),
    hubs=(  # name, kind, center, pickups, dropoffs, access delay s
        Hub("jfk", "airport", *_ll(40.6447, -73.7834), 2.0, 2.5, 240.0,
            pickup_hours=_JFK_ARRIVALS, dropoff_hours=_DEPARTURES),
        Hub("lga", "airport", *_ll(40.7740, -73.8720), 2.25, 1.0, 180.0,
            pickup_hours=_LGA_ARRIVALS, dropoff_hours=_DEPARTURES),
        Hub("ewr", "airport", *_ll(40.6895, -74.1745), 0.05, 0.2, 300.0),
        Hub("penn_station", "station", *_ll(40.7506, -73.9935), 2.2, 1.3, 30.0, reach=1.5, spread=0.12),
        Hub("grand_central", "station", *_ll(40.7527, -73.9772), 1.3, 1.3, 30.0, reach=1.5, spread=0.12),
    ),
    water=(  # crossings: Holland, Lincoln, GWB | Battery, Brooklyn, Manhattan, Williamsburg, Midtown,
        # Queensboro, RFK, Harlem River bridges
        Water("hudson", tuple(_ll(*p) for p in (
            (40.60, -74.06), (40.70, -74.027), (40.74, -74.018), (40.77, -74.002), (40.81, -73.972),
            (40.86, -73.948), (40.95, -73.905), (41.10, -73.88))),
            tuple((*_ll(a, b), s) for a, b, s in (
                (40.727, -74.021, 150.0), (40.762, -74.008, 150.0), (40.851, -73.952, 180.0)))),
        Water("east_river_harlem", tuple(_ll(*p) for p in (
            (40.60, -74.045), (40.690, -74.015), (40.703, -73.998), (40.710, -73.975), (40.728, -73.968),
            (40.745, -73.965), (40.760, -73.953), (40.778, -73.938), (40.795, -73.928), (40.810, -73.932),
            (40.835, -73.934), (40.865, -73.915), (40.884, -73.936))),
            tuple((*_ll(a, b), s) for a, b, s in (
                (40.695, -74.013, 150.0), (40.7061, -73.9969, 60.0), (40.7075, -73.9903, 60.0),
                (40.7134, -73.9723, 60.0), (40.744, -73.966, 120.0), (40.757, -73.9544, 90.0),
                (40.781, -73.928, 120.0), (40.819, -73.934, 30.0), (40.846, -73.928, 30.0)))),
    ),
    # Hourly shares of the Kaggle sample (Mon-Fri, Sat-Sun; mean 1): the 16 h dip is the taxi shift change.
    hour_demand=(
        (0.57, 0.35, 0.21, 0.14, 0.16, 0.25, 0.69, 1.14, 1.39, 1.24, 1.07, 1.15,
         1.19, 1.13, 1.18, 1.23, 1.01, 1.31, 1.55, 1.55, 1.52, 1.5, 1.36, 1.08),
        (1.39, 1.2, 0.96, 0.76, 0.5, 0.22, 0.25, 0.38, 0.54, 0.79, 1.07, 1.18,
         1.32, 1.31, 1.24, 1.23, 1.13, 1.28, 1.4, 1.27, 1.2, 1.15, 1.15, 1.08),
    ),
    weekday_demand=(0.89, 0.97, 1.03, 1.05, 1.07, 1.06, 0.93),
    season_amp=0.03, season_peak_doy=110, season_congestion_amp=0.08,
    congestion=(
        bumps(0.0, (0.5, 0.15, 2.0), (8.5, 0.9, 1.2), (13.0, 1.15, 3.0), (17.5, 0.5, 1.5), (21.0, 0.3, 2.0)),
        bumps(0.0, (1.0, 0.25, 2.0), (14.5, 0.8, 4.0), (21.5, 0.25, 2.5)),
    ),
    weather=Weather(wet_days=(0.2, 0.2, 0.2, 0.21, 0.22, 0.2, 0.2, 0.18, 0.18, 0.19, 0.2, 0.2),
                    snow_share=(0.45, 0.4, 0.25, 0.05, 0, 0, 0, 0, 0, 0, 0.05, 0.3)),
    vendors=(  # Kaggle: vendor 1 sends store-and-forward records, vendor 2 has the vans and runaway meters
        Vendor("1", 0.466, (0.0, 0.812, 0.1375, 0.0338, 0.0154, 0.0006, 0.0003), 0.011, 0.0001),
        Vendor("2", 0.534, (0.0001, 0.6161, 0.1505, 0.0473, 0.0194, 0.1045, 0.0621), 0.0, 0.0025),
    ),
    trip_scale_km=0.9, gravity_tail=3.0, night_trip_scale=3.0,
    grid_angle_deg=_M, grid_share=0.85, circuity=1.05,
    speed_local_kmh=29.0, speed_highway_kmh=64.0, highway_scale_km=10.0,
    core_radius_km=4.0, core_slowdown=0.1, congestion_outer=0.3, overhead_s=60.0, incident_per_km=0.004,
    noise_sigma=0.4, tail_share=0.015, tail_sigma=0.5, cancel_share=0.0042, stationary_share=0.005,
)

HARBORVIEW = CityPreset(
    name="harborview", center_lat=44.05, center_lon=-68.80, radius_km=28.0,
    description="coastal radial city around a big bay: one harbor bridge, otherwise round the bay head",
    districts=(
        District("old_port", 0.0, 0.0, 20.0, (1.2, 0.8), 20.0, None, -1.0),
        District("north_shore", -3.0, 5.0, 10.0, (2.5, 2.0), 60.0, None, 1.0),
        District("west_hills", -6.0, -1.0, 8.0, (2.5, 2.5), 0.0, None, 1.0),
        District("south_point", 4.0, -9.0, 8.0, (2.5, 1.5), -40.0, None, 1.0),
        District("eastern_beaches", 11.0, 2.0, 5.0, (3.0, 1.5), 10.0, 7.0),
        District("university", -2.0, 2.5, 6.0, (1.0, 1.0)),
    ),
    hubs=(
        Hub("harborview_intl", "airport", -15.0, 6.0, 1.5, 1.5, 360.0),
        Hub("ferry_terminal", "station", 1.0, -1.0, 2.0, 2.0, 60.0, reach=2.0),
        Hub("central_rail", "station", -1.5, 0.8, 2.0, 2.0, 45.0, reach=2.0),
    ),
    water=(Water("the_bay", ((0.8, -0.5), (3.0, -3.0), (7.0, -4.0), (12.0, -5.0), (30.0, -8.0)),
                 ((0.8, -0.5, 0.0), (6.5, -4.0, 150.0))),),  # the bay head (by land), the harbor bridge
    hour_demand=(bumps(0.15, (8.0, 1.0, 1.5), (13.0, 0.6, 2.5), (17.5, 1.1, 2.0), (21.0, 0.4, 2.0)),
                 bumps(0.25, (13.0, 1.0, 3.5), (22.0, 0.5, 2.0))),
    weekday_demand=(0.95, 0.97, 0.98, 1.0, 1.08, 1.1, 0.92),
    season_amp=0.25, season_peak_doy=200, season_congestion_amp=0.25,  # summer tourism
    congestion=(bumps(0.05, (8.0, 0.7, 1.2), (17.5, 0.8, 1.5)), bumps(0.05, (14.0, 0.35, 3.0))),
    weather=Weather(wet_days=(0.35, 0.33, 0.33, 0.32, 0.3, 0.27, 0.25, 0.25, 0.27, 0.3, 0.34, 0.36),
                    snow_share=(0.55, 0.5, 0.35, 0.1, 0, 0, 0, 0, 0, 0, 0.1, 0.4),
                    persistence=0.5, speed=(1.0, 0.9, 0.7), demand=(1.0, 1.12, 0.8)),
    vendors=_two_vendors("harbor_cab", "bay_taxi"),
    trip_scale_km=4.0, grid_share=0.15, circuity=1.25,
    speed_local_kmh=30.0, speed_highway_kmh=70.0, highway_scale_km=6.0,
    core_radius_km=2.0, core_slowdown=0.25, overhead_s=70.0, noise_sigma=0.27,
)

RIVERTON = CityPreset(
    name="riverton", center_lat=39.40, center_lon=-93.10, radius_km=24.0,
    description="a wide river splits the city; three bridges jam at rush hour",
    districts=(
        District("downtown", 0.0, 1.2, 22.0, (1.5, 0.8), 5.0, None, -1.0),
        District("north_heights", -2.0, 6.0, 10.0, (3.0, 2.0), 0.0, None, 1.0),
        District("southside", 1.0, -5.0, 16.0, (4.0, 2.5), 10.0, None, 1.0),
        District("mill_district", 7.0, -1.5, 6.0, (2.0, 1.2), 0.0, None, -0.7),
        District("west_end", -7.0, 0.5, 7.0, (2.0, 2.0), 0.0, None, 0.5),
    ),
    hubs=(Hub("union_station", "station", 0.3, 0.8, 3.0, 3.0, 40.0, reach=2.0),
          Hub("riverton_regional", "airport", 3.0, -13.0, 1.0, 1.0, 240.0)),
    water=(Water("great_river",
                 ((-30.0, 2.0), (-8.0, -1.0), (-3.0, 0.5), (0.0, 0.0), (3.0, -1.5), (8.0, 0.0), (30.0, -2.0)),
                 ((-3.2, 0.4, 180.0), (1.5, -0.7, 240.0), (9.0, 0.0, 150.0))),),
    hour_demand=(bumps(0.1, (7.5, 1.5, 1.2), (12.5, 0.5, 1.5), (17.0, 1.6, 1.5), (20.5, 0.3, 1.5)),
                 bumps(0.2, (12.0, 0.9, 3.5), (20.0, 0.5, 2.0))),
    weekday_demand=(1.05, 1.05, 1.05, 1.04, 1.0, 0.85, 0.8),
    season_amp=0.08, season_peak_doy=260,
    congestion=(bumps(0.05, (7.5, 1.1, 1.0), (17.0, 1.2, 1.2)), bumps(0.03, (13.0, 0.25, 3.0))),
    weather=Weather(wet_days=(0.17, 0.18, 0.22, 0.26, 0.3, 0.27, 0.22, 0.2, 0.2, 0.2, 0.18, 0.17),
                    snow_share=(0.6, 0.55, 0.3, 0.05, 0, 0, 0, 0, 0, 0.02, 0.2, 0.5),
                    speed=(1.0, 0.9, 0.65), demand=(1.0, 1.1, 0.75), incidents=(1.0, 1.8, 4.0)),
    vendors=_two_vendors("rivercab", "checker"),
    trip_scale_km=4.5, grid_angle_deg=10.0, grid_share=0.7, circuity=1.1,
    speed_local_kmh=32.0, speed_highway_kmh=75.0, highway_scale_km=7.0,
    core_radius_km=2.5, core_slowdown=0.2, congestion_outer=0.4, overhead_s=60.0, incident_per_km=0.006,
)

SPRAWLTON = CityPreset(
    name="sprawlton", center_lat=32.90, center_lon=-111.20, radius_km=45.0,
    description="car-centric desert sprawl: long trips on a north-south grid at high speed",
    districts=(
        District("civic_center", 0.0, 0.0, 8.0, (3.0, 3.0), 0.0, None, -1.0),
        District("tech_park", 14.0, 8.0, 7.0, (3.0, 2.0), 0.0, None, -1.0),
        District("mesa_estates", -16.0, 10.0, 10.0, (6.0, 5.0), 0.0, None, 1.0),
        District("sun_valley", 10.0, -15.0, 10.0, (7.0, 5.0), 0.0, None, 1.0),
        District("canyon_ridge", -12.0, -12.0, 8.0, (6.0, 6.0), 0.0, None, 1.0),
        District("outlet_mall", 22.0, -4.0, 4.0, (2.0, 2.0), 0.0, 6.0),
    ),
    hubs=(Hub("sprawlton_sky_harbor", "airport", 5.0, -25.0, 3.0, 3.0, 200.0, reach=6.0),),
    hour_demand=(bumps(0.08, (7.0, 1.6, 1.0), (12.0, 0.6, 1.2), (16.5, 1.5, 1.3)),
                 bumps(0.15, (11.5, 1.0, 3.0), (19.0, 0.6, 2.0))),
    weekday_demand=(1.05, 1.05, 1.05, 1.05, 1.05, 0.9, 0.85),
    season_amp=0.15, season_peak_doy=40, season_congestion_amp=0.2,  # snowbirds in winter, empty in the heat
    congestion=(bumps(0.02, (7.0, 0.5, 0.8), (16.5, 0.6, 1.0)), bumps(0.02, (13.0, 0.1, 3.0))),
    weather=Weather(wet_days=(0.08, 0.08, 0.06, 0.03, 0.02, 0.03, 0.15, 0.17, 0.08, 0.05, 0.05, 0.08),
                    snow_share=(0.0,) * 12, persistence=0.3,  # dry, a summer monsoon, never snows
                    speed=(1.0, 0.85, 0.7), demand=(1.0, 1.05, 1.0), incidents=(1.0, 2.5, 3.0)),
    vendors=(Vendor("desert_rides", 0.75, (0.0, 0.8, 0.14, 0.04, 0.02), 0.002, 0.0005),
             Vendor("cactus_cab", 0.25, (0.0, 0.7, 0.2, 0.06, 0.04), 0.0, 0.0005)),
    trip_scale_km=14.0, commute=0.8, grid_share=0.95, circuity=1.08,
    speed_local_kmh=45.0, speed_highway_kmh=100.0, highway_scale_km=6.0,
    core_radius_km=5.0, core_slowdown=0.1, congestion_outer=0.7, overhead_s=45.0,
    incident_per_km=0.003, incident_severity=0.8, noise_sigma=0.22,
)

OLDTOWN = CityPreset(
    name="oldtown", center_lat=47.90, center_lon=3.20, radius_km=15.0,
    description="dense old core inside rings: slow, winding streets, congested all day",
    districts=(
        District("altstadt", 0.0, 0.0, 25.0, (0.8, 0.8), 0.0, None, -1.0),
        District("inner_ring", 0.0, 0.0, 20.0, (2.2, 2.2), 0.0, None, 0.3),
        District("faubourg_nord", 1.0, 4.0, 8.0, (1.5, 1.2), 0.0, None, 1.0),
        District("faubourg_sud", -1.0, -4.0, 8.0, (1.5, 1.2), 0.0, None, 1.0),
        District("new_town_east", 5.5, 0.5, 6.0, (1.5, 2.0), 0.0, None, 1.0),
    ),
    hubs=(Hub("gare_centrale", "station", 0.6, -0.9, 5.0, 5.0, 90.0, reach=2.0, spread=0.1),
          Hub("oldtown_airport", "airport", 11.0, 5.0, 0.6, 0.6, 240.0)),
    water=(Water("the_river",
                 ((-20.0, -0.6), (-3.0, -0.3), (-1.0, 0.3), (0.5, 0.2), (2.0, -0.3), (20.0, 0.8)),
                 ((-2.5, -0.2, 45.0), (-1.0, 0.3, 60.0), (0.0, 0.25, 60.0), (1.0, 0.1, 60.0),
                  (2.5, -0.2, 45.0), (6.0, 0.1, 30.0))),),
    hour_demand=(bumps(0.2, (8.5, 0.9, 1.5), (12.5, 0.9, 1.2), (18.0, 1.0, 1.5), (21.5, 0.6, 1.5)),
                 bumps(0.35, (11.0, 0.6, 2.0), (15.5, 0.7, 2.0), (22.0, 0.9, 2.0))),
    weekday_demand=(0.95, 1.0, 1.0, 1.0, 1.08, 1.1, 0.75),
    season_amp=0.12, season_peak_doy=350, season_congestion_amp=0.15,  # Christmas markets
    congestion=(bumps(0.5, (8.5, 0.9, 1.5), (12.5, 0.5, 1.5), (17.5, 1.1, 2.0)), bumps(0.35, (15.0, 0.7, 3.0))),
    weather=Weather(wet_days=(0.3, 0.28, 0.28, 0.27, 0.3, 0.27, 0.24, 0.24, 0.24, 0.3, 0.32, 0.33),
                    snow_share=(0.3, 0.3, 0.15, 0.03, 0, 0, 0, 0, 0, 0, 0.1, 0.25)),
    vendors=_two_vendors("taxi_ville", "altcab"),
    trip_scale_km=2.0, grid_share=0.0, circuity=1.45,
    speed_local_kmh=20.0, speed_highway_kmh=45.0, highway_scale_km=5.0,
    core_radius_km=1.5, core_slowdown=0.4, congestion_outer=0.5, overhead_s=75.0,
    incident_per_km=0.01, incident_severity=0.4, noise_sigma=0.33,
)

PEDALBURG = CityPreset(
    name="pedalburg", center_lat=52.70, center_lon=6.60, radius_km=12.0, mode="bike",
    description="bike share in a city of canals: flat speeds, weather-driven demand, no congestion",
    districts=(
        District("centrum", 0.0, 0.0, 20.0, (1.0, 1.0), 0.0, None, -1.0),
        District("campus", 3.0, -2.0, 12.0, (0.8, 0.8), 0.0, None, -0.5),
        District("grachtengordel", 0.0, 0.0, 15.0, (2.0, 2.0), 0.0, None, 0.5),
        District("nieuw_west", -4.0, 1.0, 8.0, (1.5, 1.5), 0.0, None, 1.0),
    ),
    hubs=(Hub("centraal", "station", 0.5, 1.0, 6.0, 6.0, 20.0, reach=1.5, spread=0.1),),
    water=(Water("singelgracht", ((-20.0, 1.8), (-1.5, 1.6), (1.5, 1.8), (20.0, 2.2)),
                 tuple((x, 1.7 + 0.02 * x, 10.0) for x in (-3.0, -1.5, 0.0, 1.0, 2.0, 3.5))),),
    hour_demand=(bumps(0.1, (8.2, 1.8, 0.8), (12.5, 0.5, 1.5), (17.2, 1.6, 1.2)), bumps(0.1, (14.0, 1.0, 3.0))),
    weekday_demand=(1.05, 1.05, 1.05, 1.05, 1.0, 0.9, 0.9),
    season_amp=0.35, season_peak_doy=190,  # nobody cycles in January
    congestion=(bumps(0.02, (8.2, 0.15, 0.8), (17.2, 0.15, 1.0)), bumps(0.02)),
    weather=Weather(wet_days=(0.4, 0.36, 0.36, 0.3, 0.3, 0.32, 0.3, 0.32, 0.35, 0.38, 0.42, 0.42),
                    snow_share=(0.2, 0.2, 0.1, 0, 0, 0, 0, 0, 0, 0, 0.05, 0.15), persistence=0.45,
                    speed=(1.0, 0.95, 0.8), demand=(1.0, 0.65, 0.4), incidents=(1.0, 1.3, 2.0)),
    vendors=(Vendor("velo", 1.0, (0.0, 1.0), 0.0, 0.0015),),  # runaway: a bike not docked for hours
    trip_scale_km=2.0, min_trip_km=0.3, grid_share=0.2, circuity=1.2,
    speed_local_kmh=13.0, speed_highway_kmh=17.0, highway_scale_km=3.0,
    core_radius_km=1.0, core_slowdown=0.15, congestion_outer=0.2, overhead_s=40.0,
    incident_per_km=0.005, incident_severity=0.3,
    noise_sigma=0.25, tail_share=0.06, tail_sigma=1.0, stationary_share=0.01,  # returned to the same dock
)
# fmt: on

PRESETS: dict[str, CityPreset] = {
    p.name: p for p in (NYC, HARBORVIEW, RIVERTON, SPRAWLTON, OLDTOWN, PEDALBURG)
}


def get_preset(city: str | CityPreset) -> CityPreset:
    if isinstance(city, CityPreset):
        return city
    if city not in PRESETS:
        raise ValueError(f"unknown synthetic city {city!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[city]


# --- tables computed once per preset / per call -----------------------------------------------------------
def _flat_cdf(p: np.ndarray) -> np.ndarray:
    """Rows of probabilities -> one increasing array ``row + cdf(row)``, so that
    ``searchsorted(flat, row + u)`` samples every trip's own categorical in a single call."""
    c = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    c[:, -1] = 1.0
    return (c + np.arange(len(p))[:, None]).ravel()


@dataclasses.dataclass(frozen=True)
class _Tables:
    x: np.ndarray  # zone centers (districts, then hubs), km
    y: np.ndarray
    s1: np.ndarray  # sd along the zone's axis
    s2: np.ndarray
    cos: np.ndarray
    sin: np.ndarray
    access_s: np.ndarray
    od_cdf: np.ndarray  # flat over 48 groups (hour + 24 * weekend) x K origins x K destinations
    congestion: np.ndarray  # (7 weekdays, 24 hours)
    vendor_cdf: np.ndarray
    pax_cdf: np.ndarray  # flat over vendors x passenger counts
    store_fwd: np.ndarray  # per vendor
    runaway: np.ndarray


@functools.lru_cache(maxsize=32)
def _tables(p: CityPreset) -> _Tables:
    ds, hs = p.districts, p.hubs
    k = len(ds) + len(hs)
    x = np.array([d.x for d in ds] + [h.x for h in hs])
    y = np.array([d.y for d in ds] + [h.y for h in hs])
    sd = np.array([d.spread for d in ds] + [(h.spread, h.spread) for h in hs]).reshape(-1, 2)
    ang = np.radians([d.angle for d in ds] + [0.0] * len(hs))
    w_out = np.array([d.weight for d in ds] + [h.pickup for h in hs])
    w_in = np.array([d.weight if d.attract is None else d.attract for d in ds] + [h.dropoff for h in hs])
    home = np.array([d.commute for d in ds] + [0.0] * len(hs))
    reach = np.array([1.0] * len(ds) + [h.reach for h in hs])
    out_h = np.array([FLAT] * len(ds) + [h.pickup_hours for h in hs])  # (K, 24)
    in_h = np.array([FLAT] * len(ds) + [h.dropoff_hours for h in hs])
    dist = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :]) / np.maximum(
        reach[:, None], reach[None, :]
    )
    dist[np.arange(len(ds), k), np.arange(len(ds), k)] = np.inf  # no hub-to-same-hub trips
    # Hourly swings: weekday commute (homes -> jobs at 8 h, back at 17.5 h), heading home at night.
    commute = np.subtract(bumps(0, (8.0, 1.0, 1.5)), bumps(0, (17.5, 1.0, 2.0)))
    night_home = -0.7 * np.asarray(bumps(0, (1.5, 1.0, 2.5)))
    scale = p.trip_scale_km * (1 + (p.night_trip_scale - 1) * np.asarray(bumps(0, (3.0, 1.0, 3.5))))
    groups = []
    for weekend in (0, 1):
        for h in range(24):
            a = p.commute * (night_home[h] + (0.0 if weekend else commute[h]))
            po = w_out * out_h[:, h] * np.exp(home * a)
            pd = (1 + dist / (p.gravity_tail * scale[h])) ** -p.gravity_tail * (
                w_in * in_h[:, h] * np.exp(-home * a)
            )
            groups.append((po / po.sum())[:, None] * pd / pd.sum(axis=1, keepdims=True))
    pmax = max(len(v.passengers) for v in p.vendors)
    pax = np.array([[*v.passengers, *[0.0] * (pmax - len(v.passengers))] for v in p.vendors])
    return _Tables(
        x, y, sd[:, 0], sd[:, 1], np.cos(ang), np.sin(ang),
        access_s=np.array([0.0] * len(ds) + [h.access_s for h in hs]),
        od_cdf=_flat_cdf(np.stack(groups).reshape(48, k * k)),
        congestion=np.array([p.congestion[0]] * 5 + [p.congestion[1]] * 2),
        vendor_cdf=_flat_cdf(np.array([[v.share for v in p.vendors]])),
        pax_cdf=_flat_cdf(pax),
        store_fwd=np.array([v.store_fwd_rate for v in p.vendors]),
        runaway=np.array([v.runaway_rate for v in p.vendors]),
    )  # fmt: skip


def _rng(p: CityPreset, seed: int, key: tuple[int, ...]) -> np.random.Generator:
    ss = np.random.SeedSequence([seed, zlib.crc32(p.name.encode())], spawn_key=key)
    return np.random.Generator(np.random.PCG64(ss))


def _days(start: str | date, end: str | date) -> np.ndarray:
    d0, d1 = np.datetime64(start, "D"), np.datetime64(end, "D")
    if d1 <= d0:
        raise ValueError(f"need start < end, got {start=} {end=}")
    return np.arange(d0, d1)


def daily_weather(city: str | CityPreset, *, seed: int, start: str | date, end: str | date) -> np.ndarray:
    """Weather code (index into :data:`WEATHER`) of each day in ``[start, end)``. One Markov chain per
    calendar year: a day's weather depends on (city, seed, date) only, not on the window asked for."""
    p, days = get_preset(city), _days(start, end)
    w, years = p.weather, days.astype("datetime64[Y]")
    out = np.zeros(len(days), np.int8)
    for y in np.unique(years):
        ydays = np.arange(y, y + 1, dtype="datetime64[D]")
        month = ydays.astype("datetime64[M]").astype(np.int64) % 12
        wet_p, snow_p = np.asarray(w.wet_days)[month], np.asarray(w.snow_share)[month]
        u = _rng(p, seed, (1, int(y.astype(np.int64)) + 1970)).random((2, len(ydays)))
        state, wet = np.zeros(len(ydays), np.int8), False
        for i in range(len(ydays)):  # a loop over days, not trips: the chain is sequential
            wet = bool(u[0, i] < (w.persistence if wet else 0.0) + (1 - w.persistence) * wet_p[i])
            state[i] = (2 if u[1, i] < snow_p[i] else 1) if wet else 0
        sel = years == y
        out[sel] = state[(days[sel] - ydays[0]).astype(np.int64)]
    return out


@dataclasses.dataclass(frozen=True)
class _Calendar:
    day_us: np.ndarray  # start of each day, µs since the epoch (naive local)
    weekday: np.ndarray  # 0 = Monday
    weather: np.ndarray
    cong_season: np.ndarray  # congestion multiplier of the day
    cell_cdf: np.ndarray  # over days x 24 hours


def _calendar(p: CityPreset, seed: int, start: str | date, end: str | date) -> _Calendar:
    days = _days(start, end)
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday
    cyc = np.cos(
        2 * np.pi * ((days - days.astype("datetime64[Y]")).astype(np.int64) - p.season_peak_doy) / 365.25
    )
    weather = daily_weather(p, seed=seed, start=start, end=end)
    day_w = (
        np.asarray(p.weekday_demand)[weekday]
        * (1 + p.season_amp * cyc)
        * np.asarray(p.weather.demand)[weather]
    )
    cell = (day_w[:, None] * np.asarray(p.hour_demand)[(weekday >= 5).astype(np.int64)]).ravel()
    cdf = np.cumsum(cell / cell.sum())
    cdf[-1] = 1.0
    day_us = days.astype("datetime64[us]").astype(np.int64)
    return _Calendar(day_us, weekday, weather, 1 + p.season_congestion_amp * cyc, cdf)


# --- simulation -------------------------------------------------------------------------------------------
def _route_km(p: CityPreset, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Street distance of a straight offset: part Manhattan distance on the rotated grid, times circuity."""
    a = math.radians(p.grid_angle_deg)
    u, v = dx * math.cos(a) + dy * math.sin(a), dy * math.cos(a) - dx * math.sin(a)
    l2 = np.hypot(dx, dy)
    return p.circuity * (l2 + p.grid_share * (np.abs(u) + np.abs(v) - l2))


def _crosses(w: Water, ox: np.ndarray, oy: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """Whether each straight trip line crosses the polyline ``w`` an odd number of times (other bank)."""
    odd = np.zeros(len(ox), bool)
    ex, ey = tx - ox, ty - oy
    for (ax, ay), (bx, by) in zip(w.line[:-1], w.line[1:], strict=True):
        s1 = (bx - ax) * (oy - ay) - (by - ay) * (ox - ax)  # sides of the segment the ends lie on ...
        s2 = (bx - ax) * (ty - ay) - (by - ay) * (tx - ax)
        s3 = ex * (ay - oy) - ey * (ax - ox)  # ... and sides of the trip the segment's ends lie on
        s4 = ex * (by - oy) - ey * (bx - ox)
        odd ^= (s1 * s2 < 0) & (s3 * s4 < 0)
    return odd


def _water(
    p: CityPreset, w: Water, ox: np.ndarray, oy: np.ndarray, tx: np.ndarray, ty: np.ndarray, base: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(extra km, delay s) of each trip for ``w``: the detour through the best crossing, where it crosses."""
    extra, delay = np.zeros(len(ox)), np.zeros(len(ox))
    i = np.flatnonzero(_crosses(w, ox, oy, tx, ty))
    if len(i) and w.crossings:
        cx, cy, cd = (np.asarray(c)[None, :] for c in zip(*w.crossings, strict=True))
        via = _route_km(p, cx - ox[i, None], cy - oy[i, None]) + _route_km(
            p, tx[i, None] - cx, ty[i, None] - cy
        )
        best = via.argmin(axis=1)  # (crossing trips,) the crossing minimizing the route
        extra[i] = np.maximum(via[np.arange(len(i)), best] - base[i], 0.0)
        delay[i] = cd[0, best]
    return extra, delay


def water_crossings(city: str | CityPreset, trips: pl.DataFrame) -> np.ndarray:
    """How many of the city's water bodies each trip's straight line crosses (latent truth, for analysis)."""
    p = get_preset(city)
    x = [(trips[c].to_numpy() - p.center_lon) * p.km_per_deg_lon for c in ("pickup_lon", "dropoff_lon")]
    y = [(trips[c].to_numpy() - p.center_lat) * KM_PER_DEG_LAT for c in ("pickup_lat", "dropoff_lat")]
    return sum(
        (_crosses(w, x[0], y[0], x[1], y[1]).astype(np.int64) for w in p.water),
        np.zeros(trips.height, np.int64),
    )


def _points(t: _Tables, zone: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points of rotated Gaussian zones from standard normals ``a`` (along) and ``b`` (across)."""
    a, b = a * t.s1[zone], b * t.s2[zone]
    return t.x[zone] + a * t.cos[zone] - b * t.sin[zone], t.y[zone] + a * t.sin[zone] + b * t.cos[zone]


def _simulate(
    p: CityPreset, t: _Tables, cal: _Calendar, rng: np.random.Generator, m: int
) -> dict[str, np.ndarray]:
    u = rng.random((10, m))
    z = rng.standard_normal((6, m))
    # 1. when
    cell = np.searchsorted(cal.cell_cdf, u[0], side="right")
    day, hour = cell // 24, cell % 24
    t_us = cal.day_us[day] + (hour * 3600 + (u[1] * 3600).astype(np.int64)) * 1_000_000
    wd, wx = cal.weekday[day], cal.weather[day]
    # 2. where
    k = len(t.x)
    g = hour + 24 * (wd >= 5)
    od = np.searchsorted(t.od_cdf, g + u[2], side="right") - g * (k * k)
    o, d = od // k, od % k
    (ox, oy), (tx, ty) = _points(t, o, z[0], z[1]), _points(t, d, z[2], z[3])
    walk = np.flatnonzero(u[3] * p.min_trip_km > np.hypot(tx - ox, ty - oy))  # too short: redraw once
    tx[walk], ty[walk] = _points(t, d[walk], *rng.standard_normal((2, len(walk))))
    stuck, cancel = u[4] < p.stationary_share + p.cancel_share, u[4] < p.cancel_share
    jitter = np.where(cancel, 0.015, 0.004)  # km: a car that rolled a few meters vs a frozen GPS fix
    tx, ty = np.where(stuck, ox + jitter * z[2], tx), np.where(stuck, oy + jitter * z[3], ty)
    r = p.radius_km * (1 - 1e-9)
    ox, oy, tx, ty = (np.clip(c, -r, r) for c in (ox, oy, tx, ty))
    # 3. route
    route = _route_km(p, tx - ox, ty - oy)
    base, bridge = route.copy(), np.zeros(m)
    for w in p.water:
        extra, delay = _water(p, w, ox, oy, tx, ty, base)
        route += extra
        bridge += delay
    # 4. time
    mx, my = (ox + tx) / 2, (oy + ty) / 2
    core = np.exp(-0.5 * (mx * mx + my * my) / p.core_radius_km**2)
    hw = (route / p.highway_scale_km) ** 2
    kmh = p.speed_local_kmh + (p.speed_highway_kmh - p.speed_local_kmh) * hw / (1 + hw)
    kmh *= (1 - p.core_slowdown * core) * np.asarray(p.weather.speed)[wx]
    cong = t.congestion[wd, hour] * cal.cong_season[day]
    drive = route / kmh * 3600 * (1 + cong * (p.congestion_outer + (1 - p.congestion_outer) * core))
    incident = u[5] < -np.expm1(-p.incident_per_km * route * np.asarray(p.weather.incidents)[wx] * (1 + cong))
    drive *= np.where(incident, 1 - p.incident_severity * np.log1p(-u[6]), 1.0)  # 1 + exponential
    dur = p.overhead_s + t.access_s[o] + t.access_s[d] + bridge * (1 + cong) + drive
    dur *= np.exp(p.noise_sigma * np.sqrt(p.noise_km / (p.noise_km + route)) * np.clip(z[4], -2.5, 2.5))
    dur *= np.where(u[7] < p.tail_share, np.exp(np.abs(p.tail_sigma * z[5])), 1.0)
    dur = np.where(cancel, np.exp(u[8] * np.log(150.0)), dur)  # 1 s .. 150 s, log-uniform
    # 5. record
    vendor = np.minimum(np.searchsorted(t.vendor_cdf, u[9], side="right"), len(t.store_fwd) - 1)
    pmax = len(t.pax_cdf) // len(t.store_fwd)
    v2 = rng.random((4, m))
    pax = np.searchsorted(t.pax_cdf, vendor + v2[0], side="right") - vendor * pmax
    runaway = v2[1] < t.runaway[vendor]
    dur = np.where(runaway, np.maximum(p.runaway_max_s + p.runaway_slack_s * np.log1p(-v2[3]), 7200.0), dur)
    return {
        "t_us": t_us, "ox": ox, "oy": oy, "tx": tx, "ty": ty, "pax": pax, "vendor": vendor,
        "dur": np.maximum(np.round(dur), 1.0), "sf": v2[2] < t.store_fwd[vendor], "weather": wx,
        "incident": incident,
    }  # fmt: skip


def _frame(p: CityPreset, s: dict[str, np.ndarray], seed: int, first: int) -> pl.DataFrame:
    kx, m = p.km_per_deg_lon, len(s["dur"])
    df = pl.DataFrame(
        {
            "trip_id": np.arange(first, first + m, dtype=np.int64),
            "vendor": pl.Series([v.name for v in p.vendors], dtype=pl.String).gather(s["vendor"]),
            "pickup_time": pl.Series(s["t_us"]).cast(pl.Datetime("us")),
            "pickup_lat": p.center_lat + s["oy"] / KM_PER_DEG_LAT,
            "pickup_lon": p.center_lon + s["ox"] / kx,
            "dropoff_lat": p.center_lat + s["ty"] / KM_PER_DEG_LAT,
            "dropoff_lon": p.center_lon + s["tx"] / kx,
            "passenger_count": s["pax"].astype(np.int16),
            "duration_s": s["dur"],
            "store_and_fwd_flag": pl.Series(["N", "Y"]).gather(s["sf"].astype(np.uint32)),
            "weather": pl.Series(WEATHER).gather(s["weather"].astype(np.uint32)),
            "incident": s["incident"],
        }
    )
    return df.with_columns(
        (pl.lit(f"syn_{p.name}:{seed}:") + pl.col("trip_id").cast(pl.String)).alias("trip_id"),
        pl.lit("synthetic").alias("source"),
        pl.lit(p.name).alias("city"),
        pl.lit(p.mode).alias("mode"),
    ).select(list(SCHEMA))


def iter_trips(
    city: str | CityPreset = "nyc",
    n: int = 100_000,
    *,
    seed: int = 0,
    start: str | date = "2016-01-01",
    end: str | date = "2016-07-01",
    chunk_size: int = 1_000_000,
) -> Iterator[pl.DataFrame]:
    """The rows of :func:`generate` in frames of ``chunk_size`` rows (the last may be shorter), for
    corpora larger than memory. Rows do not depend on ``chunk_size``."""
    if n < 0 or seed < 0 or chunk_size < 1:
        raise ValueError(f"need n >= 0, seed >= 0 and chunk_size >= 1; got {n=}, {seed=}, {chunk_size=}")
    p = get_preset(city)
    t, cal = _tables(p), _calendar(p, seed, start, end)
    buf: list[pl.DataFrame] = []
    have = 0
    for b in range(-(-n // BLOCK)):
        m = min(BLOCK, n - b * BLOCK)
        buf.append(_frame(p, _simulate(p, t, cal, _rng(p, seed, (0, b)), m), seed, b * BLOCK))
        have += m
        while have >= chunk_size:
            df = pl.concat(buf)
            yield df.slice(0, chunk_size)
            rest = df.slice(chunk_size)
            buf, have = ([rest] if rest.height else []), rest.height
    if have:
        yield pl.concat(buf)


def generate(
    city: str | CityPreset = "nyc",
    n: int = 100_000,
    *,
    seed: int = 0,
    start: str | date = "2016-01-01",
    end: str | date = "2016-07-01",
    chunk_size: int = 1_000_000,
) -> pl.DataFrame:
    """``n`` synthetic trips of ``city`` with pickups in ``[start, end)``: the columns of
    :data:`~tabxfer.data.schema.CORE_SCHEMA`, then ``store_and_fwd_flag``, ``weather``, ``incident``.

    >>> df = generate("riverton", 1_000, seed=1)
    >>> df.height, df.columns[:3]
    (1000, ['trip_id', 'source', 'city'])
    """
    frames = list(iter_trips(city, n, seed=seed, start=start, end=end, chunk_size=chunk_size))
    return pl.concat(frames) if frames else pl.DataFrame(schema=SCHEMA)


def write_kaggle_csv(df: pl.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write trips as the Kaggle "NYC Taxi Trip Duration" train.csv (``id``, ``vendor_id``, ...,
    ``trip_duration`` in whole seconds), atomically: a temporary file in the same folder, then a rename."""
    fmt = "%Y-%m-%d %H:%M:%S"
    pickup = pl.col("pickup_time").dt.truncate("1s")
    dur = pl.col("duration_s").round(0).cast(pl.Int64)
    sf = pl.col("store_and_fwd_flag") if "store_and_fwd_flag" in df.columns else pl.lit("N")
    out = df.select(
        pl.format("id{}", pl.int_range(pl.len()).cast(pl.String).str.zfill(7)).alias("id"),
        pl.col("vendor").alias("vendor_id"),
        pickup.dt.strftime(fmt).alias("pickup_datetime"),
        (pickup + pl.duration(seconds=dur)).dt.strftime(fmt).alias("dropoff_datetime"),
        pl.col("passenger_count"),
        pl.col("pickup_lon").alias("pickup_longitude"),
        pl.col("pickup_lat").alias("pickup_latitude"),
        pl.col("dropoff_lon").alias("dropoff_longitude"),
        pl.col("dropoff_lat").alias("dropoff_latitude"),
        sf.fill_null("N").alias("store_and_fwd_flag"),
        dur.alias("trip_duration"),
    )
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        out.write_csv(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a data file should read like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
