from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from factories import make_trips
from tabxfer.data.schema import DataError
from tabxfer.features import pipeline as P
from tabxfer.features.calendar import us_federal_holidays
from tabxfer.features.spec import FeatureSpec

CFG = {"extra_categorical": ["store_and_fwd_flag"], "min_count": 5}


def test_spec_declares_what_transform_produces(trips):
    spec = P.fit(trips.lazy(), CFG)
    out = P.transform(trips.lazy(), spec).collect()
    assert out.columns == [*spec.numeric_names, *spec.categorical_names, "y", "pickup_ts"]
    arr = P.to_arrays(out, spec)
    assert arr["x_num"].shape == (len(trips), spec.n_numeric) and arr["x_num"].dtype == np.float32
    assert arr["x_cat"].shape == (len(trips), spec.n_categorical) and arr["x_cat"].dtype == np.int32
    # indices stay inside each feature's cardinality (0 = unknown)
    assert (arr["x_cat"] >= 0).all()
    assert (arr["x_cat"] < np.array(spec.cardinalities)).all()
    # standardized on the data it was fitted on
    assert np.allclose(arr["x_num"].mean(0), 0, atol=1e-4)
    assert np.allclose(arr["x_num"].std(0, ddof=1), 1, atol=1e-3)
    np.testing.assert_allclose(arr["y"], np.log1p(trips["duration_s"].to_numpy()), rtol=1e-6)


def test_distances_and_local_frame_values():
    # one trip 1 km due north of the center: distances, bearing and local coordinates are known
    trips = make_trips(50)
    lat0, lon0 = 40.75, -73.98
    one = trips.head(1).with_columns(
        pickup_lat=pl.lit(lat0),
        pickup_lon=pl.lit(lon0),
        dropoff_lat=pl.lit(lat0 + 1.0 / 111.19508),
        dropoff_lon=pl.lit(lon0),
    )
    raw = P.raw_features(one.lazy(), P.FeatureConfig(), {"nyc": (lat0, lon0)}).collect().row(0, named=True)
    assert raw["dist_km"] == pytest.approx(1.0, rel=1e-3)
    assert raw["manhattan_km"] == pytest.approx(1.0, rel=1e-3)
    assert raw["bearing_cos"] == pytest.approx(1.0, abs=1e-6)  # north
    assert (raw["pickup_x"], raw["pickup_y"]) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert (raw["dropoff_x"], raw["dropoff_y"]) == pytest.approx((0.0, 1.0), abs=1e-3)
    assert raw["pickup_cell"] == P.cell_code(0, 0, P.FeatureConfig())
    assert raw["dropoff_cell"] == P.cell_code(0, 1, P.FeatureConfig())


def test_local_frame_transfers_between_cities():
    """The same trip shape in two cities gives the same local features."""
    a = make_trips(500, seed=1, city="nyc", center=(40.75, -73.98))
    lat_a, lon_a = a["pickup_lat"].median(), a["pickup_lon"].median()
    # move every point 1.13 degrees north and to Chicago's longitude, keeping km offsets (a degree of
    # longitude is shorter further north)
    ratio = math.cos(math.radians(lat_a)) / math.cos(math.radians(lat_a + 1.13))

    def lon(c: str) -> pl.Expr:
        return -87.63 + (pl.col(c) - lon_a) * ratio

    b = a.with_columns(
        city=pl.lit("chicago"),
        pickup_lat=pl.col("pickup_lat") + 1.13,
        dropoff_lat=pl.col("dropoff_lat") + 1.13,
        pickup_lon=lon("pickup_lon"),
        dropoff_lon=lon("dropoff_lon"),
    )
    spec = P.fit(pl.concat([a, b]).lazy(), CFG)
    fa = P.transform(a.lazy(), spec).collect()
    fb = P.transform(b.lazy(), spec).collect()
    for col in ("pickup_x", "pickup_y", "delta_x", "delta_y", "manhattan_km"):
        np.testing.assert_allclose(fa[col], fb[col], atol=0.03)


def test_time_features_and_holidays():
    t = [dt.datetime(2016, 7, 4, 18, 30), dt.datetime(2016, 7, 5, 6, 0), dt.datetime(2016, 11, 24, 0, 0)]
    trips = make_trips(3).with_columns(pickup_time=pl.Series(t))
    raw = P.raw_features(trips.lazy(), P.FeatureConfig(), {"nyc": (40.75, -73.98)}).collect()
    assert raw["hour"].to_list() == [18, 6, 0]
    assert raw["weekday"].to_list() == [0, 1, 3]  # Monday, Tuesday, Thursday
    assert raw["holiday"].to_list() == [1, 0, 1]  # Independence Day, -, Thanksgiving
    assert raw["hour_sin"][0] == pytest.approx(math.sin(2 * math.pi * 18.5 / 24))


def test_calendar_tables_equal_the_datetime_accessors():
    """The calendar features come from integer arithmetic on the epoch and lookup tables; they equal, to
    the last bit, what polars' datetime accessors and sin/cos give: over 1900..2150 (the 400-year cycle,
    leap days, holidays at both ends of their 1970..2100 span), right before 1970 (floor division), with
    fractions of a second, and for a missing time."""
    rng = np.random.default_rng(0)
    start = dt.datetime(1900, 1, 1)
    times = [start + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 250 * 365 * 86400, 3000)]
    times += [dt.datetime(1969, 12, 31, 23, 59, 59, 999_000), dt.datetime(1970, 1, 1), None]
    times += [dt.datetime(2100, 12, 31, 12), dt.datetime(2101, 1, 1), dt.datetime(2000, 2, 29, 23, 59, 30)]
    trips = make_trips(len(times)).with_columns(pickup_time=pl.Series(times, dtype=pl.Datetime("us")))
    raw = P.raw_features(trips.lazy(), P.FeatureConfig(), {"nyc": (40.75, -73.98)}).collect()

    t = pl.col("pickup_time")
    hour_f = t.dt.hour() + t.dt.minute() / 60.0
    week_f = (t.dt.weekday() - 1) + hour_f / 24.0
    year_f = (t.dt.ordinal_day() - 1) / 365.25
    days = pl.Series(P.calendar.holidays_between(1970, 2099), dtype=pl.Date).implode()
    want = trips.select(
        t.dt.hour().cast(pl.Int32).alias("hour"),
        (t.dt.weekday() - 1).cast(pl.Int32).alias("weekday"),
        t.dt.month().cast(pl.Int32).alias("month"),
        t.dt.date().is_in(days).cast(pl.Int32).alias("holiday"),
        (hour_f * P.TWO_PI / 24).sin().alias("hour_sin"),
        (hour_f * P.TWO_PI / 24).cos().alias("hour_cos"),
        (week_f * P.TWO_PI / 7).sin().alias("week_sin"),
        (week_f * P.TWO_PI / 7).cos().alias("week_cos"),
        (year_f * P.TWO_PI).sin().alias("year_sin"),
        (year_f * P.TWO_PI).cos().alias("year_cos"),
    )
    assert want["holiday"].sum() > 0 and want["hour"].null_count() == 1
    for name in want.columns:
        assert raw[name].to_list() == want[name].to_list(), name


@pytest.mark.parametrize(
    ("year", "day"),
    [
        (2016, dt.date(2016, 1, 18)),
        (2016, dt.date(2016, 9, 5)),
        (2017, dt.date(2017, 1, 2)),
        (2022, dt.date(2022, 6, 20)),
    ],
)
def test_holiday_rules(year, day):
    # MLK day; Labor Day; New Year on Sunday -> Monday; Juneteenth 2022 on Sunday -> Monday
    assert day in us_federal_holidays(year)
    assert dt.date(2016, 6, 19) not in us_federal_holidays(2016)  # Juneteenth only from 2021


def test_statistics_come_from_the_training_rows_only(trips):
    train, other = trips.head(1000), trips.tail(1000).with_columns(duration_s=pl.col("duration_s") * 100)
    spec = P.fit(train.lazy(), CFG)
    assert spec.target.mean == pytest.approx(float(np.log1p(train["duration_s"].to_numpy()).mean()), rel=1e-6)
    spec_all = P.fit(pl.concat([train, other]).lazy(), CFG)
    assert spec_all.target.mean > spec.target.mean + 1  # the other rows would have moved it


def test_unknown_and_missing_categories_map_to_zero(trips):
    spec = P.fit(trips.lazy(), CFG)
    new = trips.head(3).with_columns(vendor=pl.Series(["9", None, "1"]))
    x = P.transform(new.lazy(), spec).collect()
    assert x["vendor"].to_list()[:2] == [0, 0] and x["vendor"][2] > 0


def test_rare_values_share_the_unknown_slot(trips):
    spec = P.fit(trips.lazy(), {**CFG, "min_count": 100})
    flag = spec.categorical_feature("store_and_fwd_flag")
    assert flag.values == ("N",)  # "Y" has ~20 rows < 100


def test_missing_extra_column_gives_nulls_not_errors(trips):
    spec = P.fit(trips.lazy(), {**CFG, "extra_numeric": ["fare_amount"]})
    out = P.transform(trips.lazy(), spec).collect()
    assert (out["fare_amount"] == 0).all()


def test_unseen_city_uses_known_center_or_fails_clearly(trips):
    spec = P.fit(trips.lazy(), CFG)
    chi = trips.head(5).with_columns(city=pl.lit("chicago"))
    assert P.transform(chi.lazy(), spec).collect().height == 5
    with pytest.raises(DataError, match="atlantis"):
        P.transform(trips.head(5).with_columns(city=pl.lit("atlantis")).lazy(), spec).collect()


def test_spec_json_round_trip(trips):
    spec = P.fit(trips.lazy(), CFG)
    again = FeatureSpec.from_json(spec.to_json())
    assert again == spec
    assert again.cardinalities == spec.cardinalities


def test_spec_diff_names_new_columns(trips):
    a = P.fit(trips.lazy(), {"min_count": 5})
    b = P.fit(trips.lazy(), CFG)
    assert a.diff(b)["categorical_added"] == ["store_and_fwd_flag"]
    assert b.diff(a)["categorical_missing"] == ["store_and_fwd_flag"]


def test_bad_config_is_rejected():
    with pytest.raises(ValueError, match="unknown feature option"):
        P.FeatureConfig.of({"cels": False})
    with pytest.raises(ValueError, match="cell_km"):
        P.FeatureConfig(cell_km=0)


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        (pl.String, ("b", "a", "", "zz")),
        (pl.String, ()),
        (pl.Int32, (1860, -1, 7, 3720)),  # cells: the lookup table
        (pl.Int32, tuple(range(24))),
        (pl.Int64, (5, -(10**12))),  # too wide a range for a table: replace_strict
        (pl.Int32, ()),
    ],
)
def test_vocabulary_index_matches_replace_strict(dtype, values):
    from tabxfer.features.pipeline import _vocab_index

    rng = np.random.default_rng(0)
    if dtype == pl.String:
        pool = [*values, "unseen", None, "a "]
    else:
        pool = [*values, 0, 4000, -5, None, 2**31 - 1 if dtype == pl.Int32 else 10**12]
    col = pl.Series("c", [pool[i] for i in rng.integers(0, len(pool), 5_000)], dtype=dtype)
    df = col.to_frame()
    got = df.select(_vocab_index("c", values, dtype).fill_null(0))["c"]
    want = df.select(
        pl.col("c")
        .replace_strict(list(values), list(range(1, len(values) + 1)), default=0, return_dtype=pl.Int32)
        .fill_null(0)
    )["c"]
    assert got.dtype == pl.Int32
    assert got.to_list() == want.to_list()
    assert (got > 0).any() == bool(values)


def test_bearing_without_the_angle_matches_atan2():
    from tabxfer.data.geo import bearing_deg, bearing_yx, sin_cos_of_atan2

    rng = np.random.default_rng(1)
    n = 10_000
    lat1, lat2 = 40.5 + rng.random(n) * 0.5, 40.5 + rng.random(n) * 0.5
    lon1, lon2 = -74.2 + rng.random(n) * 0.5, -74.2 + rng.random(n) * 0.5
    lat2[:10], lon2[:10] = lat1[:10], lon1[:10]  # zero-length trips: atan2(0, 0) = 0 -> (0, 1)
    lon2[10:20] = lon1[10:20]  # due north or south
    df = pl.DataFrame({"a": lat1, "b": lon1, "c": lat2, "d": lon2})
    cols = [pl.col(c) for c in "abcd"]
    y, x = bearing_yx(*cols)
    yx = df.select(y.alias("y"), x.alias("x")).with_columns(
        (pl.col("y") ** 2 + pl.col("x") ** 2).sqrt().alias("h")
    )
    s, c = sin_cos_of_atan2(pl.col("y"), pl.col("x"), pl.col("h"))
    got = yx.select(s.alias("s"), c.alias("c"))
    angle = df.select(bearing_deg(*cols).radians())[:, 0].to_numpy()
    np.testing.assert_allclose(got["s"].to_numpy(), np.sin(angle), atol=1e-12)
    np.testing.assert_allclose(got["c"].to_numpy(), np.cos(angle), atol=1e-12)
    assert got.row(0) == (0.0, 1.0)
