"""The temporal context is leak-free: a trip's context holds only trips completed before its pickup hour."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from factories import make_trips
from tabxfer.features.context import build_context, window
from tabxfer.features.pipeline import fit_centers


def context_of(df: pl.DataFrame, hours: int = 6) -> np.ndarray:
    c = build_context(df, fit_centers(df.lazy()), hours=hours, min_region_trips=5, standardize=False)
    city = c.city_table[c.city_idx[:, None] + window(hours)]  # (N, T, 2)
    region = c.region_table[c.region_idx[:, None] + window(hours)]
    return np.concatenate([city, region], axis=-1)  # (N, T, 4)


def trips_in_a_week(n: int = 3000) -> pl.DataFrame:
    df = make_trips(n, seed=4)
    start = dt.datetime(2016, 3, 7)
    rng = np.random.default_rng(5)
    t = [start + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 7 * 86400, n)]
    return df.with_columns(pickup_time=pl.Series(t, dtype=pl.Datetime("us")))


def test_counts_match_a_brute_force_count():
    df = trips_in_a_week()
    ctx = context_of(df)
    pick = df["pickup_time"].to_numpy().astype("datetime64[s]").astype(np.int64)
    done = pick + df["duration_s"].to_numpy()
    for i in range(0, len(df), 300):
        hour = pick[i] // 3600
        for k in range(1, 7):  # step T - k holds hour - k
            n = int(((done // 3600) == hour - k).sum())
            assert ctx[i, -k, 0] == np.float32(np.log1p(n)), (i, k)


def test_changing_later_trips_does_not_change_a_trips_context():
    df = trips_in_a_week()
    before = context_of(df)
    j = 1234
    cut = df["pickup_time"][j].replace(minute=0, second=0, microsecond=0)
    later = pl.col("pickup_time") >= cut  # includes trip j itself and everything still running
    changed = df.with_columns(
        duration_s=pl.when(later).then(pl.col("duration_s") * 0.1 + 5).otherwise(pl.col("duration_s"))
    )
    after = context_of(changed)
    np.testing.assert_array_equal(before[j], after[j])
    # ... while the context of trips after them does change (the test can fail)
    k = int(np.argmax(df["pickup_time"].to_numpy()))
    assert not np.array_equal(before[k], after[k])


def test_unlabeled_rows_have_context_but_do_not_feed_it():
    df = trips_in_a_week()
    unlabeled = df.with_columns(
        duration_s=pl.when(pl.int_range(pl.len()) % 2 == 0).then(None).otherwise(pl.col("duration_s"))
    )
    ctx = context_of(unlabeled)
    assert np.isfinite(ctx).all()
    assert ctx[..., 0].sum() < context_of(df)[..., 0].sum()
