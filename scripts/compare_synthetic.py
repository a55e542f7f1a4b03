"""Compare the synthetic "nyc" preset with the real Kaggle NYC taxi sample, marginal by marginal.

    python scripts/compare_synthetic.py [--data-dir DIR] [--n 200000] [--seed 0]

Both sides are loaded with the same lenient validation (durations up to 30 days kept, so the share of
meter-left-running records can be compared) and de-duplication; the default-validation drop reports of
both are printed too. The synthetic window defaults to the real sample's (2016-01-01 .. 2016-05-31: the
June rows of the sample are withheld). Writes ``bench_results/compare_synthetic.json`` atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tabxfer.data import synthetic
from tabxfer.data.geo import haversine_km
from tabxfer.data.sources import KaggleNYCTaxi, SyntheticTrips

REPO = Path(__file__).resolve().parents[1]
LENIENT = {"max_duration_s": 30 * 86_400.0}
QS = (0.05, 0.25, 0.5, 0.75, 0.95)
KM_BINS = ((0.1, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 15.0), (15.0, 50.0))
HUBS = {"jfk": (40.6447, -73.7834, 2.5), "lga": (40.7740, -73.8720, 1.2)}  # center, radius km


def tvd(a: np.ndarray, b: np.ndarray) -> float:
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum())


def profile(df: pl.DataFrame, expr: pl.Expr, k: int) -> np.ndarray:
    counts = df.select(expr.alias("k")).group_by("k").len()
    out = np.zeros(k)
    out[counts["k"].to_numpy()] = counts["len"].to_numpy()
    return out


def stats(df: pl.DataFrame) -> dict[str, Any]:
    """Marginal statistics of one trip table (canonical columns)."""
    km = haversine_km(*(pl.col(c) for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")))
    df = df.with_columns(km.alias("km"), pl.col("duration_s").log1p().alias("ld"))
    out: dict[str, Any] = {"rows": df.height}
    for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon", "km"):
        qs = df[c].quantile
        out |= {f"{c}_q{int(q * 100):02d}": qs(q) for q in QS}
    ld = df["ld"]
    out |= {"log1p_dur_mean": ld.mean(), "log1p_dur_std": ld.std()}
    out |= {f"log1p_dur_q{int(q * 100):02d}": ld.quantile(q) for q in QS}
    dur = df["duration_s"]
    out |= {
        "duration_median_s": dur.median(),
        "share_over_1h": (dur > 3600).mean(),
        "share_over_6h": (dur > 6 * 3600).mean(),
        "share_under_60s": (dur < 60).mean(),
        "share_km_under_10m": (df["km"] < 0.01).mean(),
    }
    for hub, (lat, lon, r) in HUBS.items():
        for end in ("pickup", "dropoff"):
            d = haversine_km(pl.col(f"{end}_lat"), pl.col(f"{end}_lon"), pl.lit(lat), pl.lit(lon))
            out[f"{hub}_{end}_share"] = df.select((d < r).mean()).item()
    out["vendor_shares"] = {
        str(r[0]): r[1] / df.height for r in df.group_by("vendor").len().sort("vendor").iter_rows()
    }
    out["store_and_fwd_rate"] = (df["store_and_fwd_flag"] == "Y").mean()
    out["passenger_counts"] = profile(df, pl.col("passenger_count").cast(pl.Int64), 10).tolist()
    out["hour_profile"] = profile(df, pl.col("pickup_time").dt.hour().cast(pl.Int64), 24).tolist()
    out["weekday_profile"] = profile(df, pl.col("pickup_time").dt.weekday().cast(pl.Int64) - 1, 7).tolist()
    ok = df.filter((pl.col("km") > 0.1) & (pl.col("duration_s") < 6 * 3600))
    speed = ok.group_by(pl.col("pickup_time").dt.hour().alias("h")).agg(
        (pl.col("km") / (pl.col("duration_s") / 3600)).median().alias("v")
    )
    out["median_speed_kmh_by_hour"] = speed.sort("h")["v"].to_list()
    out["median_speed_kmh"] = ok.select((pl.col("km") / (pl.col("duration_s") / 3600)).median()).item()
    for lo, hi in KM_BINS:
        sel = ok.filter(pl.col("km").is_between(lo, hi, closed="left"))
        out[f"share_km_{lo:g}_{hi:g}"] = sel.height / df.height
        out[f"median_speed_kmh_km_{lo:g}_{hi:g}"] = sel.select(
            (pl.col("km") / (pl.col("duration_s") / 3600)).median()
        ).item()
    return out


def preset_summary(n: int, seed: int, start: str, end: str) -> list[dict[str, Any]]:
    """How the presets differ: a few marginals per city (same n, seed and window for all)."""
    out = []
    for name, preset in synthetic.PRESETS.items():
        df = synthetic.generate(name, n, seed=seed, start=start, end=end)
        km = haversine_km(*(pl.col(c) for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")))
        d = df.with_columns(km.alias("km"), pl.col("pickup_time").dt.hour().alias("h")).filter(
            (pl.col("km") > 0.1) & (pl.col("duration_s") < 6 * 3600)
        )
        d = d.with_columns((pl.col("km") / pl.col("duration_s") * 3600).alias("kmh"))
        weekday = d.filter(pl.col("pickup_time").dt.weekday() <= 5)
        _, rep = SyntheticTrips(city=name, n=n, seed=seed, start=start, end=end).load()
        mid = d.filter(pl.col("km").is_between(2.0, 6.0))  # same straight distance, other bank or not
        cross = synthetic.water_crossings(name, mid) > 0
        s_per_km = (mid["duration_s"] / mid["km"]).to_numpy()
        ratio = float(np.median(s_per_km[cross]) / np.median(s_per_km[~cross])) if cross.any() else None
        out.append(
            {
                "city": name,
                "mode": preset.mode,
                "km_median": d["km"].median(),
                "km_q95": d["km"].quantile(0.95),
                "duration_median_s": df["duration_s"].median(),
                "kmh_median": d["kmh"].median(),
                "kmh_weekday_8h_17h": weekday.filter(pl.col("h").is_in([8, 17]))["kmh"].median(),
                "kmh_night_1h_4h": d.filter(pl.col("h").is_between(1, 4))["kmh"].median(),
                "wet_day_trip_share": (df["weather"] != "clear").mean(),
                "incident_share": df["incident"].mean(),
                "crossing_share_2_6km": float(cross.mean()),
                "s_per_km_crossing_ratio_2_6km": ratio,
                "dropped_share": rep.n_dropped / rep.n_in,
            }
        )
    return out


def table(
    real: dict[str, Any], syn: dict[str, Any]
) -> tuple[list[tuple[str, str, str, str]], dict[str, float]]:
    rows: list[tuple[str, str, str, str]] = []
    for k, a in real.items():
        b = syn[k]
        if isinstance(a, int) and not isinstance(a, bool):
            rows.append((k, f"{a:,}", f"{b:,}", ""))
        elif isinstance(a, float):
            f = ".6g" if abs(a) > 30 else ".4g"  # coordinates need the digits
            rows.append((k, f"{a:{f}}", f"{b:{f}}", f"{b - a:+.3g}"))
    summary = {
        "hour_profile_tvd": tvd(np.array(real["hour_profile"]), np.array(syn["hour_profile"])),
        "weekday_profile_tvd": tvd(np.array(real["weekday_profile"]), np.array(syn["weekday_profile"])),
        "passenger_count_tvd": tvd(np.array(real["passenger_counts"]), np.array(syn["passenger_counts"])),
    }
    for k, v in summary.items():
        rows.append((k, "", f"{v:.4f}", ""))
    for name, d in (("vendor_share", "vendor_shares"),):
        for key in sorted(set(real[d]) | set(syn[d])):
            a, b = real[d].get(key, 0.0), syn[d].get(key, 0.0)
            rows.append((f"{name}_{key}", f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}"))
    for h in range(24):
        a, b = real["median_speed_kmh_by_hour"][h], syn["median_speed_kmh_by_hour"][h]
        rows.append((f"median_speed_kmh_h{h:02d}", f"{a:.1f}", f"{b:.1f}", f"{b - a:+.1f}"))
    return rows, summary


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=float)
    os.replace(tmp, path)


def main() -> None:
    default_dir = os.environ.get("TABXFER_DATA_DIR", str(REPO.parent / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=default_dir)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", default="2016-01-01")
    ap.add_argument("--end", default="2016-06-01")
    ap.add_argument("--out", default=str(REPO / "bench_results" / "compare_synthetic.json"))
    args = ap.parse_args()

    kaggle_dir = Path(args.data_dir) / "nyc_taxi_trip_duration_kaggle"
    if not kaggle_dir.exists():
        raise SystemExit(f"no Kaggle sample at {kaggle_dir} (set --data-dir or TABXFER_DATA_DIR)")
    real_df, _ = KaggleNYCTaxi(paths=kaggle_dir, validation=LENIENT).load()
    syn_src = SyntheticTrips(city="nyc", n=args.n, seed=args.seed, start=args.start, end=args.end)
    syn_df, _ = dataclasses.replace(syn_src, validation=LENIENT).load()
    real_rep = KaggleNYCTaxi(paths=kaggle_dir).drop_report()
    syn_rep = syn_src.drop_report()

    real, syn = stats(real_df), stats(syn_df)
    rows, summary = table(real, syn)
    w = max(len(r[0]) for r in rows)
    print(f"{'statistic':<{w}}  {'kaggle':>10}  {'synthetic':>10}  {'diff':>9}")
    for r in rows:
        print(f"{r[0]:<{w}}  {r[1]:>10}  {r[2]:>10}  {r[3]:>9}")
    print(f"\ndefault validation:\n  {real_rep.summary()}\n  {syn_rep.summary()}")
    presets = preset_summary(args.n, args.seed, args.start, args.end)
    print(f"\nall presets ({args.n:,} trips each):")
    with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True,
                   tbl_cols=-1, tbl_width_chars=400):  # fmt: skip
        print(pl.DataFrame(presets).with_columns(pl.selectors.float().round(4)))
    write_json(
        Path(args.out),
        {
            "settings": {**vars(args), "validation_for_stats": LENIENT},
            "kaggle": real,
            "synthetic": syn,
            "summary": summary,
            "table": [dict(zip(("statistic", "kaggle", "synthetic", "diff"), r, strict=True)) for r in rows],
            "drop_reports": {"kaggle": real_rep.to_dict(), "synthetic": syn_rep.to_dict()},
            "presets": presets,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
