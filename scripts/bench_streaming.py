"""Memory of a training epoch over a pretraining corpus: whole split on the device vs streamed in chunks.

    python scripts/bench_streaming.py data=mobility_real            # any data config (Hydra overrides)

Each mode runs in a fresh process (peak RSS is per process): it opens the tensor cache, builds the
training batches as ``train.py`` would and draws ``--batches`` batches (all: one epoch). Prints a table
and writes ``bench_results/bench_streaming.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_anon_mib() -> float:
    """Anonymous resident memory (what the process allocated; memory-mapped cache pages excluded: they
    are file-backed page cache the kernel can drop, though ``ru_maxrss`` counts them)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(cache_path: str, chunk_rows: int | None, batches: int) -> dict[str, float]:
    from tabxfer.features.cache import TensorCache
    from tabxfer.training.data import CacheDataModule

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    dm = CacheDataModule(TensorCache.open(cache_path), batch_size=1024, chunk_rows=chunk_rows)
    t0 = time.perf_counter()
    rows, anon = 0, rss_anon_mib()
    for i, (_, _, y, *_) in enumerate(dm.train_dataloader()):
        rows += len(y)
        if i % 10 == 0:
            anon = max(anon, rss_anon_mib())
        if batches and i + 1 >= batches:
            break
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_anon_mib": anon,
        "peak_rss_mib": peak,
        "rss_at_start_mib": before,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument(
        "overrides", nargs="*", help="Hydra overrides of configs/prepare.yaml, e.g. data=mobility_real"
    )
    p.add_argument("--chunk-rows", type=int, default=200_000)
    p.add_argument("--batches", type=int, default=0, help="0: one whole epoch")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        chunk = None if a.child[1] == "none" else int(a.child[1])
        print(json.dumps(child(a.child[0], chunk, a.batches)))
        return

    from hydra import compose, initialize_config_dir

    from tabxfer.prepare import dataset_cache

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="prepare", overrides=a.overrides)
    cache = dataset_cache(cfg.data, cfg.paths.cache_dir)
    results = []
    for chunk in ("none", str(a.chunk_rows)):
        cmd = [sys.executable, __file__, "--child", str(cache.path), chunk, "--batches", str(a.batches)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append({"mode": "whole split" if chunk == "none" else f"streamed, chunk_rows={chunk}", **r})
    print(f"cache: {cache.path} ({cache.manifest['splits']['train']:,} training rows)")
    print(
        "| mode | rows drawn | seconds | peak anonymous MiB | peak RSS MiB (incl. mapped cache) | RSS after imports MiB |"
    )
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['rows']:,} | {r['seconds']:.1f} | {r['peak_anon_mib']:.0f} | {r['peak_rss_mib']:.0f} | "
            f"{r['rss_at_start_mib']:.0f} |"
        )
    out_dir = ROOT / "bench_results"
    out_dir.mkdir(exist_ok=True)
    tmp = out_dir / ".bench_streaming.json.tmp"
    tmp.write_text(json.dumps({"cache": str(cache.path), "results": results}, indent=1))
    os.replace(tmp, out_dir / "bench_streaming.json")


if __name__ == "__main__":
    main()
