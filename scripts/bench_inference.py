"""Inference benchmark of the ONNX artifacts against torch eager, per model, on this machine's CPU.

For every model: train it briefly on the target data (or take ``--checkpoint``), export it with every
quantization (``tabxfer export``: raw fields in, verified on held-out rows), then time

* torch eager fp32: the trained network on features already computed (the polars pipeline's output), so
  torch is *not* charged for feature computation;
* torch eager fp32 from raw fields: the module the ONNX graph is exported from (features in torch, then
  the network), run eagerly on the same raw trips: the like-for-like twin of the ONNX graphs (only the
  string -> code lookups, done beforehand here, are the graph's alone);
* ONNX fp32 / dynamic-int8 / static-int8 (onnxruntime, CPU provider): the whole graph from raw fields,
  features included; where the export runs the batch in row blocks (``tabxfer.export.blocks``, the
  "blocks" column), also
* torch eager fp32 in the same blocks (``torch_eager_fp32_blocks``): what the blocking alone is worth to
  torch. The speed-ups stay against torch eager on the whole batch, the issue's baseline.

Allocator: torch eager frees its large intermediates after every call, glibc's malloc hands blocks above
its mmap threshold back to the kernel, and the next call faults them in again: at batch 4096 that halves
torch's throughput or worse (TFT with context, measured in a fresh process: 4.8 k rows/s with glibc's
defaults, 11.3 k without the page faults), and made its rounds here differ by 1.7x depending on what the
process had allocated before. The script therefore re-runs itself with ``GLIBC_TUNABLES`` raising the mmap
and trim thresholds (``ALLOCATOR`` below), so that torch is timed at its best, as a serving process would
configure it (or with jemalloc/tcmalloc); onnxruntime keeps its intermediates in its own arena either way.
``--default-allocator`` keeps glibc's defaults.

Latency: batch 1, ``--latency-runs`` calls after a warm-up, p50 and p99. Throughput: batch 4096, in
``--rounds`` rounds where the runtimes take turns (``--throughput-runs`` calls each, the median kept); the
fastest round's rows/s is reported, every round's is in the JSON. The speed-ups ("x torch") are medians
over the rounds of the ratio within a round, with the 25th-75th percentile range of those ratios ("IQR"):
this shared machine runs in spells (the same graph at ~140 ms or ~190 ms per call for seconds at a time,
torch too), and a ratio of two runtimes timed within a second of each other is steadier than one of their
fastest rounds; many short rounds (15 of 5 calls) put more of them into the median than a few long ones.
Threads: ``--threads`` for torch and onnxruntime alike.

GPU (``--device cuda``): per model, torch eager fp32 and bf16 (autocast) on ready features on the GPU, and
the fp16 artifact on onnxruntime's CUDA provider from raw fields (numpy inputs on the host, so its figure
includes the copies a serving process pays), at batch 4096 and 65536 (the held-out rows repeated), rows/s;
the fp16 graph's outputs on CUDA are compared with its CPU run on the held-out rows, and a session that
onnxruntime would quietly run on the CPU is refused (``serve.session``). Results go to
``bench_inference_gpu.json``; without a CUDA device the script says so and exits 2.

    python scripts/bench_inference.py                        # every model on nyc_kaggle (synthetic if absent)
    python scripts/bench_inference.py --models mlp,tabnet --train-rows 20000 --epochs 3
    python scripts/bench_inference.py --device cuda --checkpoint mlp=... --checkpoint ...   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from tabxfer.data.catalog import default_data_dir
from tabxfer.export import serve
from tabxfer.export.artifact import (
    context_array,
    context_hours,
    export_checkpoint,
    held_out,
    raw_columns,
    raw_model,
    raw_tensors,
)
from tabxfer.export.graph import RawFeatures
from tabxfer.export.onnx_graph import raw_inputs
from tabxfer.features import pipeline
from tabxfer.features.spec import FeatureSpec
from tabxfer.train import load, run

ROOT = Path(__file__).resolve().parents[1]
ALLOCATOR = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"
MODELS = ["mlp", "wide_deep", "tabnet", "tab_transformer", "ft_transformer", "tft", "tft_context"]
# "tft": static inputs only; "tft_context": the default TFT, reading the 24 h context (a graph input)
CONFIG = {"tft_context": "tft"}
EXTRA = {"tft": ["data.features.context=false"]}
ONNX_VARIANTS = ("none", "dynamic-int8", "static-int8")
SETTLE = 0.05  # seconds between runtimes: onnxruntime's worker threads spin a little after each call


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument(
        "--data", default=None, help="data config (default nyc_kaggle if its files exist, else synthetic)"
    )
    p.add_argument("--train-rows", type=int, default=20_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rows", type=int, default=20_000, help="held-out rows for the accuracy check")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--latency-runs", type=int, default=300)
    p.add_argument("--throughput-runs", type=int, default=5, help="calls per round (its median is kept)")
    p.add_argument("--rounds", type=int, default=15, help="throughput rounds, the runtimes taking turns")
    p.add_argument("--out", default=str(ROOT / "bench_results" / "inference"))
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH", help="skip training")
    p.add_argument(
        "--default-allocator", action="store_true", help="keep glibc malloc's defaults (see the docstring)"
    )
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cpu", help="cuda: the GPU figures (see the docstring)"
    )
    p.add_argument(
        "--block-rows",
        type=int,
        default=None,
        help="rows per block of the CPU graphs (0: whole; default: auto)",
    )
    return p.parse_args(argv)


def train(model: str, data: str, args: argparse.Namespace, out: Path) -> str:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                f"data={data}",
                f"model={CONFIG.get(model, model)}",
                f"paths.output_dir={out}",
                "logger=none",
                f"trainer.max_epochs={args.epochs}",
                f"datamodule.train_limit={args.train_rows}",
                *EXTRA.get(model, []),
            ],
        )
    return str(run(cfg)["best_checkpoint"])


def timings(fn: Any, runs: int, warmup: int = 20) -> np.ndarray:
    for _ in range(warmup):
        fn()
    t = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    return t


def timed_rows(module: Any, n: int = 4096) -> tuple[Any, list[torch.Tensor], dict[str, np.ndarray]]:
    """``n`` held-out rows of the checkpoint's data: the rows, the torch model's inputs (the polars
    pipeline's features, plus the hourly context if it reads one) and the graph's raw-field feeds."""
    spec = FeatureSpec.from_dict(module.hparams["spec"])
    reads = context_hours(module)
    rows = held_out(module.hparams["meta"]["config"], {"test": n}, seed=1, spec=spec if reads else None)[
        "test"
    ]
    arr = pipeline.to_arrays(pipeline.transform(rows.lazy(), spec).collect(), spec)
    xs = [torch.from_numpy(arr["x_num"]), torch.from_numpy(arr["x_cat"]).long()]
    if reads:
        xs.append(torch.from_numpy(context_array(rows)))
    schema = raw_inputs(RawFeatures(spec), reads or None)
    return rows, xs, serve.feed([i.to_dict() for i in schema], raw_columns(rows, schema))


def bench_model(model: str, ckpt: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    art = out / "artifacts" / model
    rep = export_checkpoint(
        ckpt, art, quantize="dynamic-int8,static-int8", rows=args.rows, block_rows=args.block_rows
    )
    block = int(rep["variants"]["none"]["block_rows"])
    module = load(ckpt).eval()
    rows, xs, feeds = timed_rows(module)
    n = rows.height

    res: dict[str, Any] = {
        "model": model,
        "checkpoint": ckpt,
        "rows_timed": n,
        "rmsle_torch": rep["rmsle_torch"],
    }
    rt, _ = raw_model(module)
    raw_args = raw_tensors(rt.features, rows, context=rt.needs_context)
    one = {k: a[:1] for k, a in feeds.items()}
    sessions = {
        mode: serve.session(art / rep["variants"][mode]["file"], "cpu", threads=args.threads)
        for mode in ONNX_VARIANTS
    }
    # (batch 1, batch 4096) calls per runtime
    calls: dict[str, tuple[Any, Any]] = {
        "torch_eager_fp32": (lambda: module(*[x[:1] for x in xs]), lambda: module(*xs)),
        "torch_eager_raw_fp32": (lambda: rt(*[a[:1] for a in raw_args]), lambda: rt(*raw_args)),
        **(
            {
                "torch_eager_fp32_blocks": (
                    lambda: module(*[x[:1] for x in xs]),
                    lambda: [module(*[x[s : s + block] for x in xs]) for s in range(0, n, block)],
                )
            }
            if block
            else {}
        ),
        **{
            f"onnx_{mode}": (
                lambda s=sess: s.run(["log_duration"], one),
                lambda s=sess: s.run(["log_duration"], feeds),
            )
            for mode, sess in sessions.items()
        },
    }
    lat: dict[str, np.ndarray] = {}
    thr: dict[str, list[float]] = {name: [] for name in calls}
    with torch.inference_mode():
        for name, (small, _) in calls.items():
            lat[name] = timings(small, args.latency_runs)
            time.sleep(SETTLE)
        # Throughput in --rounds rounds, the runtimes taking turns, each round's median kept: a slow spell
        # of this shared machine then hits every runtime alike, not only the one timed during it.
        for _ in range(args.rounds):
            for name, (_, big) in calls.items():
                thr[name].append(float(np.median(timings(big, args.throughput_runs, warmup=2))))
                time.sleep(SETTLE)
    for name in calls:
        extra: dict[str, Any] = {
            "bytes": None,
            "rmsle_delta": 0.0,
            "block_rows": block if "blocks" in name else 0,
        }
        if name.startswith("onnx_"):
            v = rep["variants"][name.removeprefix("onnx_")]
            extra = {
                "bytes": v["bytes"],
                "rmsle_delta": v["rmsle_delta"],
                "max_abs_diff_log": v["max_abs_diff_log"],
                "block_rows": v["block_rows"],
            }
        res[name] = summary(lat[name], thr[name], n) | extra
        for base in ("torch_eager_fp32", "torch_eager_raw_fp32"):
            res[name][f"x_{base}"] = speedup(thr[name], thr[base])
        res[name]["x_torch_eager_fp32_iqr"] = speedup_iqr(thr[name], thr["torch_eager_fp32"])
    return res


GPU_BATCHES = (4096, 65536)


def bench_model_gpu(
    model: str, ckpt: str, args: argparse.Namespace, out: Path, device: str = "cuda"
) -> dict[str, Any]:
    """GPU throughput of one model (see the docstring): ``{runtime: {batch: rows/s of the fastest round}}``
    plus every round's figure. ``device="cpu"`` runs the same code on the CPU (the tests do; the figures
    then mean nothing)."""
    provider = "cuda" if device.startswith("cuda") else "cpu"
    art = out / "artifacts_gpu" / model
    # verified on the CPU as every export is (fp32 within 1e-4 of torch; the fp16 RMSLE change measured)
    rep = export_checkpoint(ckpt, art, quantize="fp16", rows=args.rows)
    fp16 = rep["variants"]["fp16"]
    module = load(ckpt).eval().to(device)
    rows, xs, feeds = timed_rows(module)
    sess = serve.session(art / fp16["file"], provider)
    on_cpu = serve.session(art / fp16["file"], "cpu").run(["log_duration"], feeds)[0]
    kind = torch.device(device).type

    def synced(fn: Any) -> Any:
        def call() -> None:
            fn()
            if kind == "cuda":
                torch.cuda.synchronize()

        return call

    res: dict[str, Any] = {
        "model": model,
        "checkpoint": ckpt,
        "device": torch.cuda.get_device_name(device) if kind == "cuda" else "cpu",
        "fp16_rmsle_delta": fp16["rmsle_delta"],
        "onnx_fp16_session_providers": sess.get_providers(),
        # the same fp16 graph on this provider against the CPU provider, held-out rows, log-duration
        "onnx_fp16_max_abs_diff_log_vs_cpu": float(
            np.abs(sess.run(["log_duration"], feeds)[0] - on_cpu).max()
        ),
    }
    with torch.inference_mode():
        for b in GPU_BATCHES:
            idx = np.arange(b) % rows.height  # the held-out rows, repeated
            xb = [x[torch.from_numpy(idx)].to(device) for x in xs]
            fb = {k: v[idx] for k, v in feeds.items()}

            def bf16(xb: list[torch.Tensor] = xb) -> Any:
                with torch.autocast(device_type=kind, dtype=torch.bfloat16):
                    return module(*xb)

            calls = {
                "torch_eager_fp32": synced(lambda xb=xb: module(*xb)),
                "torch_eager_bf16": synced(bf16),
                "onnx_fp16": synced(lambda fb=fb: sess.run(["log_duration"], fb)),
            }
            rounds: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(args.rounds):
                for name, call in calls.items():
                    rounds[name].append(float(np.median(timings(call, args.throughput_runs, warmup=2))))
            for name, t in rounds.items():
                res.setdefault(name, {})[str(b)] = {
                    "rows_per_s": float(b / min(t)),
                    "rows_per_s_rounds": [float(b / x) for x in t],
                }
    return res


def main_gpu(args: argparse.Namespace, given: dict[str, str], data: str, out: Path) -> int:
    """``--device cuda``: :func:`bench_model_gpu` for every model, a table and ``bench_inference_gpu.json``."""
    if not torch.cuda.is_available():
        print("bench_inference --device cuda: torch sees no CUDA device here; nothing timed", file=sys.stderr)
        return 2
    results = []
    for model in [m for m in args.models.split(",") if m]:
        ckpt = given.get(model) or train(model, data, args, out / "runs" / model)
        try:
            results.append(bench_model_gpu(model, ckpt, args, out))
        except RuntimeError as e:  # serve.session: onnxruntime would not run the fp16 graph on CUDA
            print(f"bench_inference --device cuda: {model}: {e}", file=sys.stderr)
            return 2
        print(f"\n{'model':16} {'runtime':18} {'batch':>6} {'rows/s':>14}")
        for r in results:
            for name in ("torch_eager_fp32", "torch_eager_bf16", "onnx_fp16"):
                for b, v in r[name].items():
                    print(f"{r['model']:16} {name:18} {b:>6} {v['rows_per_s']:>14,.0f}")
        save(out / "bench_inference_gpu.json", data, args, results)
    print(f"wrote {out / 'bench_inference_gpu.json'}")
    return 0


def save(
    path: Path, data: str, args: argparse.Namespace, results: list[dict[str, Any]], **extra: Any
) -> None:
    """The results so far as JSON, written atomically (after every model: a stopped run keeps them)."""
    payload = {
        "data": data,
        **extra,
        "versions": {"torch": torch.__version__, "onnxruntime": serve.ort.__version__},
        "args": vars(args),
        "results": results,
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def speedup(seconds: list[float], base_seconds: list[float]) -> float:
    """Median over the rounds of ``base / seconds``: the speed-up within each round (see the docstring)."""
    return float(np.median([b / t for t, b in zip(seconds, base_seconds, strict=True)]))


def speedup_iqr(seconds: list[float], base_seconds: list[float]) -> list[float]:
    """25th and 75th percentiles over the rounds of the speed-up within a round: how much it varied."""
    ratios = [b / t for t, b in zip(seconds, base_seconds, strict=True)]
    return [float(np.percentile(ratios, 25)), float(np.percentile(ratios, 75))]


def summary(lat: np.ndarray, round_medians: list[float], n: int) -> dict[str, Any]:
    """Batch-1 latency percentiles; rows/s of the fastest round's median (and of every round)."""
    return {
        "p50_ms_b1": float(np.percentile(lat, 50) * 1e3),
        "p99_ms_b1": float(np.percentile(lat, 99) * 1e3),
        "rows_per_s_b4096": float(n / min(round_medians)),
        "rows_per_s_b4096_rounds": [float(n / t) for t in round_medians],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.default_allocator and os.environ.get("GLIBC_TUNABLES") != ALLOCATOR and argv is None:
        # glibc reads its tunables at process start: run again with them (see the docstring)
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": ALLOCATOR})
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    data = args.data or (
        "nyc_kaggle" if (default_data_dir() / "nyc_taxi_trip_duration_kaggle").is_dir() else "synthetic"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    given = dict(c.split("=", 1) for c in args.checkpoint)
    if args.device == "cuda":
        return main_gpu(args, given, data, out)
    results = []
    for model in [m for m in args.models.split(",") if m]:
        t0 = time.perf_counter()
        ckpt = given.get(model) or train(model, data, args, out / "runs" / model)
        results.append(bench_model(model, ckpt, args, out) | {"seconds": time.perf_counter() - t0})
        print_table(results)
        save(
            out / "bench_inference.json",
            data,
            args,
            results,
            machine={"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads},
            glibc_tunables=os.environ.get("GLIBC_TUNABLES"),
        )
    print(f"wrote {out / 'bench_inference.json'}")
    return 0


def print_table(results: list[dict[str, Any]]) -> None:
    cols = ["torch_eager_fp32", "torch_eager_fp32_blocks", "torch_eager_raw_fp32"]
    cols += [f"onnx_{m}" for m in ONNX_VARIANTS]
    print(
        f"\n{'model':16} {'runtime':23} {'KiB':>7} {'RMSLE chg':>9} {'blocks':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'rows/s@4096':>12} {'x torch':>7} {'(IQR)':>11} {'x raw torch':>11}"
    )
    for r in results:
        for c in [c for c in cols if c in r]:
            v = r[c]
            kib = f"{v['bytes'] / 1024:.0f}" if v["bytes"] else "-"
            lo, hi = v["x_torch_eager_fp32_iqr"]
            print(
                f"{r['model']:16} {c:23} {kib:>7} {v['rmsle_delta']:>+9.4f} {v.get('block_rows') or '-':>6} "
                f"{v['p50_ms_b1']:>7.3f} "
                f"{v['p99_ms_b1']:>7.3f} {v['rows_per_s_b4096']:>12,.0f} {v['x_torch_eager_fp32']:>7.2f} "
                f"{f'{lo:.2f}-{hi:.2f}':>11} {v['x_torch_eager_raw_fp32']:>11.2f}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
