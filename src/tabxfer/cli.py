"""``tabxfer``: small utilities around the data (training and preparation are Hydra scripts at the
repository root: ``train.py``, ``prepare_data.py``).

    tabxfer data check-shared [--data-dir DIR] [--json OUT]   load every real dataset, print drop reports
    tabxfer data describe CACHE_DIR                           what a tensor cache holds
    tabxfer synth --city nyc -n 100000 --out trips.csv        write synthetic trips (Kaggle CSV or Parquet)
    tabxfer cities                                            the synthetic city presets
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _check_shared(args: argparse.Namespace) -> int:
    from tabxfer.data.catalog import check_shared, default_data_dir

    root = Path(args.data_dir) if args.data_dir else default_data_dir()
    if not root.is_dir():
        print(f"no shared data folder at {root} (set TABXFER_DATA_DIR or pass --data-dir)", file=sys.stderr)
        return 2
    rows = check_shared(root)
    print(f"{'dataset':40} {'rows in':>10} {'kept':>10} {'dropped':>8} {'seconds':>8}  drops by reason")
    failed = 0
    for r in rows:
        if "error" in r:
            failed += 1
            print(f"{r['dataset']:40} ERROR {r['error']}")
            continue
        rep = r["report"]
        reasons = ", ".join(f"{k}={v:,}" for k, v in sorted(rep.dropped.items(), key=lambda kv: -kv[1]))
        print(
            f"{r['dataset']:40} {rep.n_in:>10,} {rep.n_out:>10,} {rep.n_dropped:>8,} {r['seconds']:>8.2f}  {reasons}"
        )
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        payload = [{k: (v.to_dict() if k == "report" else v) for k, v in r.items()} for r in rows]
        tmp.write_text(
            json.dumps({"data_dir": str(root), "unix_time": time.time(), "datasets": payload}, indent=1)
        )
        os.replace(tmp, out)
        print(f"wrote {out}")
    return 1 if failed else 0


def _describe(args: argparse.Namespace) -> int:
    from tabxfer.features.cache import TensorCache
    from tabxfer.prepare import describe

    print(describe(TensorCache.open(args.cache)))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from tabxfer.data.synthetic import generate, write_kaggle_csv

    t0 = time.perf_counter()
    df = generate(args.city, args.n, seed=args.seed, start=args.start, end=args.end)
    out = Path(args.out)
    if out.suffix == ".parquet":
        tmp = out.with_name(f".{out.name}.tmp")
        df.write_parquet(tmp)
        os.replace(tmp, out)
    else:
        write_kaggle_csv(df, out)
    print(f"{df.height:,} {args.city} trips -> {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _cities(args: argparse.Namespace) -> int:
    from tabxfer.data.synthetic import PRESETS

    for name, p in PRESETS.items():
        doc = getattr(p, "description", "")
        print(f"{name:12} center=({p.center_lat:.4f}, {p.center_lon:.4f}) {doc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="tabxfer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    data = sub.add_parser("data", help="real datasets and tensor caches").add_subparsers(
        dest="data_cmd", required=True
    )
    c = data.add_parser("check-shared", help="load every dataset in the shared data folder")
    c.add_argument("--data-dir")
    c.add_argument("--json", help="also write the reports here (JSON)")
    c.set_defaults(fn=_check_shared)
    d = data.add_parser("describe", help="what a tensor cache holds")
    d.add_argument("cache")
    d.set_defaults(fn=_describe)
    s = sub.add_parser("synth", help="write synthetic trips")
    s.add_argument("--city", default="nyc")
    s.add_argument("-n", type=int, default=100_000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--start", default="2016-01-01")
    s.add_argument("--end", default="2016-07-01")
    s.add_argument("--out", required=True, help=".csv (Kaggle format) or .parquet (canonical schema)")
    s.set_defaults(fn=_synth)
    sub.add_parser("cities", help="list the synthetic city presets").set_defaults(fn=_cities)
    args = ap.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
