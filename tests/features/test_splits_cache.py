from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from tabxfer.data.schema import DataError, DropReport
from tabxfer.features.build import build_cache
from tabxfer.features.cache import TensorCache
from tabxfer.features.splits import SplitConfig, assign_split, time_cutoffs


def counts(df: pl.DataFrame) -> dict[str, int]:
    return dict(df.group_by("split").len().cast({"split": pl.String}).iter_rows())


def test_random_split_is_seeded_and_sized(trips):
    a, b = assign_split(trips, {"seed": 1}), assign_split(trips, {"seed": 1})
    assert a["split"].to_list() == b["split"].to_list()
    assert a["split"].to_list() != assign_split(trips, {"seed": 2})["split"].to_list()
    c = counts(a)
    assert c["train"] == pytest.approx(1600, abs=80) and c["test"] == pytest.approx(200, abs=45)


def test_time_split_trains_on_earlier_weeks(trips):
    s = assign_split(trips, {"kind": "time", "val": 0.1, "test": 0.2})
    span = s.group_by("split").agg(
        pl.col("pickup_time").min().alias("lo"), pl.col("pickup_time").max().alias("hi")
    )
    r = {row["split"]: row for row in span.iter_rows(named=True)}
    assert r["train"]["hi"] < r["val"]["lo"] <= r["val"]["hi"] < r["test"]["lo"]
    val_start, test_start = time_cutoffs(trips, SplitConfig(kind="time", val=0.1, test=0.2))
    for cut in (val_start, test_start):  # cuts fall on Monday 00:00
        assert (cut.weekday(), cut.hour, cut.minute) == (0, 0, 0)
    assert r["val"]["lo"] >= val_start > r["train"]["hi"]
    assert counts(s)["test"] == pytest.approx(400, rel=0.25)


def test_time_split_needs_enough_weeks(trips):
    one_day = trips.with_columns(pickup_time=pl.col("pickup_time").dt.truncate("1d").min())
    with pytest.raises(DataError, match="too few weeks"):
        assign_split(one_day, {"kind": "time"})


def test_column_split_validates_values(trips):
    df = trips.with_columns(split=pl.Series(["train", "val", "test", "tset"] * 500))
    with pytest.raises(DataError, match="tset"):
        assign_split(df, {"kind": "column"})


class Frame:
    """A minimal source: what build_cache needs (load + describe)."""

    def __init__(self, df: pl.DataFrame, tag: str = "a"):
        self.df, self.tag, self.loads = df, tag, 0

    def load(self):
        self.loads += 1
        return self.df, DropReport(source="frame", n_in=self.df.height, n_out=self.df.height)

    def describe(self):
        return {"frame": self.tag, "n": self.df.height}


def test_cache_round_trip_and_reuse(tmp_path, trips):
    src = Frame(trips)
    kw = {"cache_dir": tmp_path, "name": "t", "features": {"min_count": 5}}
    cache = build_cache({"f": src}, **kw)
    assert src.loads == 1
    again = build_cache({"f": src}, **kw)  # same fingerprint: opened, not rebuilt
    assert src.loads == 1 and again.path == cache.path
    opened = TensorCache.open(cache.path)
    tr = opened.split("train")
    assert isinstance(tr.x_num, np.memmap)
    assert sum(len(opened.split(s)) for s in opened.splits) == trips.height
    assert tr.x_cat.shape[1] == opened.spec.n_categorical
    man = json.loads((cache.path / "manifest.json").read_text())
    assert man["drop_reports"]["f"]["n_in"] == trips.height
    # a different input or config is a different cache
    assert build_cache({"f": Frame(trips, "b")}, **kw).path != cache.path
    assert build_cache({"f": src}, **{**kw, "split": {"seed": 3}}).path != cache.path


def test_cache_is_written_atomically(tmp_path, trips, monkeypatch):
    import tabxfer.features.cache as C

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(C.np, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        build_cache({"f": Frame(trips)}, cache_dir=tmp_path, name="t")
    assert list(tmp_path.iterdir()) == []  # no half-written cache, no temp folder left


def test_cache_reader_needs_neither_polars_nor_raw_files(tmp_path, trips):
    cache = build_cache({"f": Frame(trips)}, cache_dir=tmp_path, name="t")
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from tabxfer.features.cache import TensorCache\n"
        f"c = TensorCache.open({str(cache.path)!r}); a = c.split('train'); float(a.x_num[:10].sum())\n"
        "assert 'polars' not in sys.modules, 'cache reader imported polars'\n"
        "print(len(a))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(cache.split("train"))


def test_anchored_cache_keeps_base_columns_and_appends_new_ones(tmp_path):
    from factories import make_trips

    base_df = make_trips(3000, seed=1).with_columns(pl.Series("speed_limit", np.full(3000, 50.0)))
    base = build_cache(
        {"corpus": Frame(base_df, "base")},
        cache_dir=tmp_path,
        name="base",
        features={"min_count": 5, "extra_numeric": ["speed_limit"]},
    )
    target_df = make_trips(2000, seed=2).with_columns(pl.lit("N").alias("store_and_fwd_flag"))
    target = build_cache(
        {"nyc": Frame(target_df, "target")},
        cache_dir=tmp_path,
        name="target",
        features={"min_count": 5, "extra_categorical": ["store_and_fwd_flag"]},
        base_spec=base.spec,
    )
    b, t = base.spec, target.spec
    # base columns first, with the base's statistics and vocabularies; the target's own appended
    assert t.numeric == b.numeric and t.categorical[: b.n_categorical] == b.categorical
    assert t.categorical_names[b.n_categorical :] == ["store_and_fwd_flag"]
    assert t.target == b.target
    # the corpus-only column is missing in the target: 0 after scaling, not an error
    col = t.numeric_names.index("speed_limit")
    assert (target.split("train").x_num[:, col] == 0).all()
    assert (target.split("train").source_id == 0).all()
    # a different base spec is a different cache
    other = build_cache(
        {"nyc": Frame(target_df, "target")},
        cache_dir=tmp_path,
        name="target",
        features={"min_count": 5, "extra_categorical": ["store_and_fwd_flag"]},
    )
    assert other.path != target.path and other.spec.numeric != t.numeric


@pytest.mark.parametrize("kind", ["random", "time"])
def test_each_split_keeps_the_input_order_and_matches_transform(trips, kind):
    """featurize groups rows by split (so splits are slices): every split must hold its rows in input
    order, and its arrays must equal transforming those rows alone with the fitted spec."""
    from tabxfer.features import pipeline
    from tabxfer.features.build import featurize

    cfg = SplitConfig(kind=kind)
    spec, out, _, n, _ = featurize({"f": Frame(trips)}, pipeline.FeatureConfig(min_count=5), cfg)
    assert n == trips.height
    labeled = assign_split(trips, cfg)
    for s, arrays in out.items():
        rows = labeled.filter(pl.col("split") == s).drop("split")
        want = pipeline.to_arrays(pipeline.transform(rows.lazy(), spec).collect(), spec)
        assert arrays["x_num"].flags.c_contiguous and len(arrays["y"]) == rows.height > 0
        for k in ("x_num", "x_cat", "y", "pickup_ts"):
            np.testing.assert_allclose(arrays[k], want[k], rtol=1e-6, atol=1e-6, err_msg=f"{s} {k}")
