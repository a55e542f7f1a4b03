"""``tabxfer``: small utilities around the data (training and preparation are Hydra scripts at the
repository root: ``train.py``, ``prepare_data.py``).

    tabxfer data check-shared [--data-dir DIR] [--json OUT]   load every real dataset, print drop reports
    tabxfer data describe CACHE_DIR                           what a tensor cache holds
    tabxfer synth --city nyc -n 100000 --out trips.csv        write synthetic trips (Kaggle CSV or Parquet)
    tabxfer cities                                            the synthetic city presets
    tabxfer export CKPT [--quantize all|none,dynamic-int8,static-int8,fp16] [--out DIR]
                                                              a verified ONNX artifact (raw fields in)
    tabxfer predict ARTIFACT/model.onnx TRIPS.csv|.parquet OUT.csv|.parquet [--provider cpu|cuda]
                    [--on-invalid raise|drop]              inputs checked first; exit 2 on bad input
    tabxfer drift RUN|CKPT|ARTIFACT NEW_TRIPS [--out DIR] [--format auto|canonical|kaggle|tlc|...]
                                                              drift report; exit 0 ok, 1 drift, 2 bad input
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


def _export(args: argparse.Namespace) -> int:
    from tabxfer.export.artifact import export_checkpoint

    ckpt = Path(args.checkpoint)
    out = Path(args.out) if args.out else ckpt.parent.parent / "export"
    rep = export_checkpoint(
        ckpt,
        out,
        quantize=args.quantize,
        rows=args.rows,
        seed=args.seed,
        provider=args.provider,
        block_rows=args.block_rows,
    )
    print(
        f"{rep['model']}: verified on {rep['rows_verified']:,} held-out rows, RMSLE torch {rep['rmsle_torch']:.4f}"
    )
    print(f"{'variant':14} {'KiB':>8} {'max|dlog|':>10} {'RMSLE':>8} {'change':>8} {'blocks':>6}  checked on")
    for mode, v in rep["variants"].items():
        print(
            f"{mode:14} {v['bytes'] / 1024:>8.0f} {v['max_abs_diff_log']:>10.2e} {v['rmsle']:>8.4f} "
            f"{v['rmsle_delta']:>+8.4f} {v['block_rows'] or '-':>6}  {', '.join(v['checked_providers'])}"
        )
    print(f"artifact -> {out}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np
    import polars as pl

    from tabxfer.export import serve

    src, dst = Path(args.trips), Path(args.out)
    try:
        # a CSV's columns as text: serve converts and checks each value, naming the row of a bad one
        df = pl.read_parquet(src) if src.suffix == ".parquet" else pl.read_csv(src, infer_schema=False)
        try:
            sess = serve.session(args.model, args.provider)
        except Exception as e:  # onnxruntime's own error types: a missing or broken model file
            raise ValueError(f"{args.model}: cannot load the model ({e})") from None
        cols: dict[str, object] = {c: df[c].to_numpy() for c in df.columns}
        for kv in args.set:
            k, _, v = kv.partition("=")
            cols[k] = np.full(df.height, v, dtype=object)
        t0 = time.perf_counter()
        pred = serve.predict(sess, cols, args.batch, on_invalid=args.on_invalid)
    except (KeyError, ValueError, OSError, pl.exceptions.PolarsError) as e:
        csv_rows = getattr(e, "problems", None) and src.suffix != ".parquet"
        print(f"error: {e}" + ("\n(row r is line r + 2 of the CSV)" if csv_rows else ""), file=sys.stderr)
        return 2
    seconds = time.perf_counter() - t0
    out = pl.DataFrame(dict(pred))
    tmp = dst.with_name(f".{dst.name}.tmp")
    out.write_parquet(tmp) if dst.suffix == ".parquet" else out.write_csv(tmp)
    os.replace(tmp, dst)
    print(f"{df.height:,} predictions -> {dst} ({seconds:.2f} s on {sess.get_providers()[0]})")
    for line in serve.report_lines(pred.report):
        print(line)
    return 0


def _drift(args: argparse.Namespace) -> int:
    from tabxfer.data.schema import DataError
    from tabxfer.monitor.drift import EXIT_BAD_INPUT, DriftConfig, run_drift
    from tabxfer.monitor.reference import BadReference

    try:
        cfg = DriftConfig.load(
            args.config,
            rows=args.rows,
            psi_warn=args.psi_warn,
            psi_alert=args.psi_alert,
            prediction_psi_alert=args.prediction_psi_alert,
            target_psi_alert=args.target_psi_alert,
            rmsle_increase_alert=args.rmsle_increase_alert,
        )
        result, out = run_drift(
            args.reference,
            args.new_data,
            out=args.out,
            fmt=args.format,
            zone_table=args.zone_table,
            cfg=cfg,
            seed=args.seed,
        )
    except (DataError, BadReference) as e:  # input that cannot be used: say which and why, exit 2
        print(f"tabxfer drift: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    ref, new = result["reference"], result["new_data"]
    print(f"reference: {ref['kind']} {ref['path']} ({ref['rows']:,} training rows)")
    drops = new["drops"]
    print(
        f"new data:  {new['path']} ({new['format']}): {drops['n_in']:,} rows read, "
        f"{drops['n_in'] - drops['n_out']:,} dropped, {new['rows_compared']:,} compared"
    )
    print(f"{'feature':24} {'PSI':>8} {'KS':>7}  status")
    for f in result["features"][:8]:
        ks = f"{f['ks']:7.3f}" if f["ks"] is not None else f"{'-':>7}"
        print(f"{f['feature']:24} {f['psi']:8.3f} {ks}  {f['status']}")
    p = result["prediction"]
    print(f"{'predictions':24} {p['psi']:8.3f} {p['ks']:7.3f}  {p['status']}")
    if result["target"] is not None:
        t = result["target"]
        print(f"{'target duration_s':24} {t['psi']:8.3f} {t['ks']:7.3f}  {t['status']}")
    r = result["rmsle"]
    if r is not None and r["reference"] is not None:
        print(f"RMSLE: reference {r['reference']:.4f}, new {r['new']:.4f} ({r['change']:+.4f})")
    print(f"verdict: {result['verdict'].upper()} (exit {result['exit_code']})")
    for a in result["alerts"]:
        print(f"  alert: {a}")
    print(f"report -> {out / 'drift_report.md'}")
    return int(result["exit_code"])


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
    e = sub.add_parser("export", help="checkpoint -> verified ONNX artifact taking raw trip fields")
    e.add_argument("checkpoint")
    e.add_argument(
        "--quantize", default="none", help="none | dynamic-int8 | static-int8 | fp16 | all (comma list)"
    )
    e.add_argument("--out", help="artifact folder (default: <run>/export)")
    e.add_argument("--rows", type=int, default=20_000, help="held-out rows to verify on")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--provider", default="cpu", choices=["cpu", "cuda"], help="where to verify")
    e.add_argument(
        "--block-rows",
        type=int,
        help="CPU variants run large batches in blocks of this many rows (0: whole; default: chosen from "
        "the graph's tensor sizes)",
    )
    e.set_defaults(fn=_export)
    p = sub.add_parser("predict", help="run an artifact on a CSV or Parquet of raw trips")
    p.add_argument("model", help="an artifact's .onnx file")
    p.add_argument("trips")
    p.add_argument("out")
    p.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=65536)
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a constant field for every row"
    )
    p.add_argument(
        "--on-invalid",
        default="raise",
        choices=["raise", "drop"],
        help="a row with an invalid value: raise = exit 2 naming it (default); drop = NaN prediction, counted",
    )
    p.set_defaults(fn=_predict)
    r = sub.add_parser(
        "drift",
        help="compare new trips with a model's training data; exit 1 past thresholds",
        description="Per-feature PSI/KS, prediction shift and RMSLE by slice of NEW_DATA against the "
        "data a model was trained on; writes drift_report.md, drift.json and PNG figures. Exit code: "
        "0 within thresholds, 1 past an alert threshold, 2 bad input.",
    )
    r.add_argument("reference", help="a training run folder, a .ckpt, or a `tabxfer export` folder / .onnx")
    r.add_argument("new_data", help="trips: a CSV/Parquet file, folder or glob")
    r.add_argument("--out", help="report folder (default: drift/<time>/)")
    r.add_argument("--format", default="auto", help="auto | canonical | kaggle | tlc | chicago | citibike")
    r.add_argument(
        "--zone-table", help="TLC zone centroids (default: $TABXFER_DATA_DIR/nyc_tlc_taxi_zones/...)"
    )
    r.add_argument("--config", help="thresholds YAML (default: configs/drift.yaml)")
    r.add_argument("--rows", type=int, help="at most this many reference and new rows (default 50000)")
    r.add_argument("--seed", type=int, default=0, help="row sampling seed")
    for flag in ("psi-warn", "psi-alert", "prediction-psi-alert", "target-psi-alert", "rmsle-increase-alert"):
        r.add_argument(f"--{flag}", type=float, help="override the config's threshold")
    r.set_defaults(fn=_drift)
    args = ap.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    raise SystemExit(main())
