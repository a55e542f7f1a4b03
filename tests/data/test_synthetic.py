"""The synthetic corpus: determinism, schema, geography, dynamics, and the round trips through loaders."""

from __future__ import annotations

import itertools
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tabxfer.data import synthetic
from tabxfer.data.cities import REAL_CITIES, city_bounds
from tabxfer.data.geo import haversine_km
from tabxfer.data.schema import CORE_COLUMNS, CORE_SCHEMA
from tabxfer.data.sources import KaggleNYCTaxi, SyntheticTrips

KM = haversine_km(*(pl.col(c) for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")))


def with_speed(df: pl.DataFrame) -> pl.DataFrame:
    """Ordinary trips (no stuck GPS, no runaway meter) with straight km, km/h and time parts."""
    return (
        df.with_columns(KM.alias("km"))
        .filter((pl.col("km") > 0.3) & (pl.col("duration_s") < 3 * 3600))
        .with_columns(
            (pl.col("km") / pl.col("duration_s") * 3600).alias("kmh"),
            pl.col("pickup_time").dt.hour().alias("hour"),
            (pl.col("pickup_time").dt.weekday() >= 6).alias("weekend"),
        )
    )


@pytest.fixture(scope="module")
def nyc() -> pl.DataFrame:
    return synthetic.generate("nyc", 60_000, seed=7)


def test_schema_is_canonical_then_extras(nyc: pl.DataFrame) -> None:
    assert nyc.columns == [*CORE_COLUMNS, "store_and_fwd_flag", "weather", "incident"]
    assert dict(nyc.schema) == synthetic.SCHEMA
    assert {k: nyc.schema[k] for k in CORE_SCHEMA} == CORE_SCHEMA
    assert nyc.null_count().sum_horizontal().item() == 0
    assert nyc["trip_id"][:2].to_list() == ["syn_nyc:7:0", "syn_nyc:7:1"]
    assert nyc["trip_id"].is_unique().all()
    assert (
        set(nyc["source"]) == {"synthetic"} and set(nyc["city"]) == {"nyc"} and set(nyc["mode"]) == {"taxi"}
    )
    assert set(nyc["vendor"]) == {"1", "2"} and set(nyc["store_and_fwd_flag"]) == {"N", "Y"}
    assert set(nyc["weather"]) <= set(synthetic.WEATHER)
    assert nyc["pickup_time"].is_between(datetime(2016, 1, 1), datetime(2016, 7, 1), closed="left").all()
    assert (nyc["duration_s"] >= 1).all() and (nyc["duration_s"] == nyc["duration_s"].round(0)).all()
    assert synthetic.generate("oldtown", 0).schema == nyc.schema


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a = synthetic.generate("riverton", 5_000, seed=3)
    assert a.equals(synthetic.generate("riverton", 5_000, seed=3))
    b = synthetic.generate("riverton", 5_000, seed=4)
    assert not a.drop("trip_id").equals(b.drop("trip_id"))
    assert a["duration_s"].mean() != b["duration_s"].mean()


def test_rows_do_not_depend_on_chunk_size() -> None:
    n = synthetic.BLOCK + 4_321  # crosses a block boundary
    ref = synthetic.generate("harborview", n, seed=1)
    for chunk in (10_000, synthetic.BLOCK, 3 * n):
        chunks = list(synthetic.iter_trips("harborview", n, seed=1, chunk_size=chunk))
        assert [c.height for c in chunks[:-1]] == [chunk] * (len(chunks) - 1)
        assert sum(c.height for c in chunks) == n
        assert pl.concat(chunks).equals(ref)
    assert synthetic.generate("harborview", n, seed=1, chunk_size=777).equals(ref)


def test_every_trip_inside_its_city_box_and_validation_keeps_nearly_all() -> None:
    for name, preset in synthetic.PRESETS.items():
        df, report = SyntheticTrips(city=name, n=20_000, seed=2).load()
        report.check()
        assert report.n_in == 20_000 and report.n_dropped < 0.01 * report.n_in, report.summary()
        assert "coordinates_out_of_city" not in report.dropped
        raw = synthetic.generate(name, 20_000, seed=2)
        for bbox in (preset.bbox, astuple(city_bounds(name))):
            lat0, lat1, lon0, lon1 = bbox
            for c in ("pickup_lat", "dropoff_lat"):
                assert raw[c].is_between(lat0, lat1).all(), (name, c)
            for c in ("pickup_lon", "dropoff_lon"):
                assert raw[c].is_between(lon0, lon1).all(), (name, c)
        assert set(df["mode"]) == {preset.mode}


def astuple(b: object) -> tuple[float, float, float, float]:
    return (b.lat_min, b.lat_max, b.lon_min, b.lon_max)


def test_fictional_cities_do_not_overlap_each_other_or_real_ones() -> None:
    boxes = {name: p.bbox for name, p in synthetic.PRESETS.items() if name != "nyc"}
    boxes |= {name: astuple(b) for name, b in REAL_CITIES.items()}
    fictional = [n for n in synthetic.PRESETS if n != "nyc"]
    for a, b in itertools.product(fictional, boxes):
        if a == b:
            continue
        (a0, a1, a2, a3), (b0, b1, b2, b3) = boxes[a], boxes[b]
        assert a1 < b0 or b1 < a0 or a3 < b2 or b3 < a2, f"{a} overlaps {b}"
    nyc = synthetic.PRESETS["nyc"]
    assert math.isclose(nyc.center_lat, REAL_CITIES["nyc"].center_lat, abs_tol=0.01)
    assert math.isclose(nyc.center_lon, REAL_CITIES["nyc"].center_lon, abs_tol=0.01)


def test_cities_differ_in_distance_and_speed() -> None:
    med = {}
    for name in synthetic.PRESETS:
        d = with_speed(synthetic.generate(name, 15_000, seed=5))
        med[name] = (d["km"].median(), d["kmh"].median())
    for a, b in itertools.combinations(med, 2):
        (ka, va), (kb, vb) = med[a], med[b]
        assert abs(math.log(ka / kb)) > 0.1 or abs(math.log(va / vb)) > 0.1, (a, b, med[a], med[b])
    assert med["sprawlton"][1] > 2 * med["nyc"][1]  # car-centric sprawl vs Manhattan
    assert med["oldtown"][1] < med["nyc"][1]  # the slow dense ring city
    assert med["pedalburg"][1] < 20  # bikes


def test_rush_hour_slower_than_night(nyc: pl.DataFrame) -> None:
    for df in (nyc, synthetic.generate("riverton", 40_000, seed=1)):
        d = with_speed(df).filter(~pl.col("weekend"))
        rush = d.filter(pl.col("hour").is_in([8, 17]))["kmh"].median()
        night = d.filter(pl.col("hour").is_between(1, 4))["kmh"].median()
        assert rush < 0.85 * night


def test_bad_weather_slows_traffic(nyc: pl.DataFrame) -> None:
    d = with_speed(nyc).filter(pl.col("hour").is_between(10, 16) & ~pl.col("weekend"))
    v = {w: d.filter(pl.col("weather") == w)["kmh"].median() for w in synthetic.WEATHER}
    assert v["snow"] < v["rain"] < v["clear"]
    per_day = nyc.group_by(pl.col("pickup_time").dt.date()).agg(pl.col("weather").n_unique())
    assert (per_day["weather"] == 1).all()  # one weather per day
    # a day's weather does not depend on the window asked for
    full = synthetic.daily_weather("nyc", seed=7, start="2016-01-01", end="2016-12-31")
    part = synthetic.daily_weather("nyc", seed=7, start="2016-03-01", end="2016-04-01")
    assert (full[60:91] == part).all()


def test_water_crossings_cost_time_per_km() -> None:
    d = with_speed(synthetic.generate("riverton", 60_000, seed=2)).filter(pl.col("km").is_between(2.0, 6.0))
    crossing = synthetic.water_crossings("riverton", d) > 0
    s_per_km = d["duration_s"].to_numpy() / d["km"].to_numpy()
    assert 0.05 < crossing.mean() < 0.95
    assert np.median(s_per_km[crossing]) > 1.15 * np.median(s_per_km[~crossing])
    assert (synthetic.water_crossings("sprawlton", d) == 0).all()  # no water there


def test_demand_follows_hour_and_weekday(nyc: pl.DataFrame) -> None:
    h = nyc.with_columns(
        pl.col("pickup_time").dt.hour().alias("hour"), (pl.col("pickup_time").dt.weekday() >= 6).alias("we")
    )
    wk = h.filter(~pl.col("we"))["hour"].value_counts().sort("hour")["count"].to_numpy()
    we = h.filter(pl.col("we"))["hour"].value_counts().sort("hour")["count"].to_numpy()
    assert wk[18:20].mean() > 5 * wk[3:5].mean()  # evening peak vs the dead of night
    assert we[1] / we.sum() > 2 * wk[1] / wk.sum()  # weekend nightlife
    r = synthetic.generate("riverton", 30_000, seed=0)
    rh = r.filter(pl.col("pickup_time").dt.weekday() <= 5)["pickup_time"].dt.hour().value_counts()
    counts = dict(zip(rh["pickup_time"], rh["count"], strict=True))
    assert counts[7] > 2 * counts[11] and counts[17] > 2 * counts[11]  # commuter peaks


def test_kaggle_csv_round_trip(tmp_path: Path, nyc: pl.DataFrame) -> None:
    df = nyc.head(5_000)
    path = synthetic.write_kaggle_csv(df, tmp_path / "train.csv")
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind
    header = path.read_text().splitlines()[0].split(",")
    assert header == [
        "id", "vendor_id", "pickup_datetime", "dropoff_datetime", "passenger_count", "pickup_longitude",
        "pickup_latitude", "dropoff_longitude", "dropoff_latitude", "store_and_fwd_flag", "trip_duration",
    ]  # fmt: skip
    back, report = KaggleNYCTaxi(paths=path).load()
    report.check()
    too_long = int((df["duration_s"] > 6 * 3600).sum())
    assert report.n_in == 5_000 and report.dropped.get("duration_too_long", 0) == too_long
    assert report.n_dropped - too_long <= 5, report.summary()  # e.g. a cancelled trip's speed
    kept = df.with_row_index("i").join(
        back.with_columns(pl.col("trip_id").str.slice(2).cast(pl.UInt32).alias("i")), on="i"
    )
    assert kept.height == back.height
    for c in ("pickup_time", "duration_s", "passenger_count", "vendor", "store_and_fwd_flag"):
        assert (kept[c] == kept[f"{c}_right"]).all(), c
    assert np.allclose(kept["pickup_lat"], kept["pickup_lat_right"], atol=1e-9)


def test_synthetic_source_counts_drops_like_real_data() -> None:
    src = SyntheticTrips(city="nyc", n=30_000, seed=11)
    df, report = src.load()
    report.check()
    raw = synthetic.generate("nyc", 30_000, seed=11)
    assert report.n_in == 30_000 == report.n_out + report.n_dropped and df.height == report.n_out
    assert report.dropped["duration_too_long"] == (raw["duration_s"] > 6 * 3600).sum() > 0
    assert report.files == ["synthetic:nyc:11"]
    assert df.columns == [*CORE_COLUMNS, "store_and_fwd_flag", "weather", "incident"]
    counts_only = src.drop_report()
    assert (counts_only.n_in, counts_only.n_out, counts_only.dropped) == (
        report.n_in,
        report.n_out,
        report.dropped,
    )
    assert src.scan().collect().equals(df)
    desc = src.describe()
    assert desc["files"] == [] and desc["settings"]["city"] == "nyc" and desc["settings"]["n"] == 30_000
    assert desc["generator"]["version"] == synthetic.VERSION
    assert SyntheticTrips(city="oldtown").describe()["generator"] != desc["generator"]
    bike = SyntheticTrips(city="pedalburg", n=1_000)
    assert bike.mode_of() == "bike" and bike.city_of() == "pedalburg"


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="riverton"):
        synthetic.generate("atlantis", 10)
    with pytest.raises(ValueError, match="presets"):
        SyntheticTrips(city="atlantis")
    with pytest.raises(ValueError, match="start < end"):
        synthetic.generate("nyc", 10, start="2016-02-01", end="2016-01-01")
    with pytest.raises(ValueError, match="n >= 0"):
        synthetic.generate("nyc", -1)
