"""Time the synthetic corpus generator: 10 M "nyc" trips end to end, and rows/s of every preset at 1 M.

    python scripts/bench_synthetic.py [--n-big 10000000] [--n-city 1000000] [--repeat 1]

Writes ``bench_results/bench_synthetic.json`` atomically (machine, versions, timings, peak memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tabxfer.data import synthetic

REPO = Path(__file__).resolve().parents[1]


def timed(city: str, n: int, seed: int, repeat: int) -> dict[str, Any]:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        df = synthetic.generate(city, n, seed=seed)
        best = min(best, time.perf_counter() - t0)
        rows, mib = df.height, df.estimated_size() / 2**20
        del df
    return {"city": city, "n": rows, "seconds": best, "rows_per_s": rows / best, "frame_mib": mib}


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-big", type=int, default=10_000_000)
    ap.add_argument("--n-city", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "bench_results" / "bench_synthetic.json"))
    args = ap.parse_args()

    synthetic.generate("nyc", 1_000)  # warm-up: imports, preset tables
    rows = [timed(city, args.n_city, args.seed, args.repeat) for city in synthetic.PRESETS]
    big = timed("nyc", args.n_big, args.seed, args.repeat)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB

    print(f"{'city':<12} {'rows':>12} {'seconds':>9} {'rows/s':>12} {'MiB':>8}")
    for r in [*rows, big]:
        print(
            f"{r['city']:<12} {r['n']:>12,} {r['seconds']:>9.2f} {r['rows_per_s']:>12,.0f} {r['frame_mib']:>8.0f}"
        )
    print(f"\n{args.n_big:,} nyc trips in {big['seconds']:.1f} s; peak RSS {peak_mib:,.0f} MiB")
    write_json(
        Path(args.out),
        {
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
                "numpy": np.__version__,
                "polars": pl.__version__,
                "polars_threads": pl.thread_pool_size(),
            },
            "settings": vars(args),
            "generator_version": synthetic.VERSION,
            "per_city": rows,
            "big": big,
            "peak_rss_mib": peak_mib,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
