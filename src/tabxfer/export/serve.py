"""Run a tabxfer ONNX artifact with onnxruntime and numpy only (this file is copied into every artifact).

    python serve.py model.onnx trips.csv predictions.csv [--provider cpu|cuda] [--batch 65536]

The input file has one column per graph input (see ``inputs.json`` or the model card); ``pickup_ts`` may
instead be given as ``pickup_datetime`` (``YYYY-MM-DD HH:MM:SS``, local time), and the Kaggle NYC column
names (``pickup_longitude``, ``vendor_id``, ...) are understood. Missing string fields can be set for the
whole file with ``--set city=nyc``. The output has ``duration_s`` and ``log_duration`` per row, in order.

Nothing here imports torch, polars or tabxfer.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

ALIASES = {  # the Kaggle "NYC Taxi Trip Duration" CSV's names -> graph inputs
    "pickup_latitude": "pickup_lat",
    "pickup_longitude": "pickup_lon",
    "dropoff_latitude": "dropoff_lat",
    "dropoff_longitude": "dropoff_lon",
    "vendor_id": "vendor",
}
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def session(path: str | os.PathLike[str], provider: str = "cpu", threads: int = 0) -> ort.InferenceSession:
    """An inference session on exactly the requested provider; refuses to pretend.

    onnxruntime-gpu lists the CUDA provider on machines without a GPU and silently runs on the CPU; this
    raises instead when the session did not get the provider asked for.
    """
    want = PROVIDERS.get(provider, provider)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    providers = [want] if want == "CPUExecutionProvider" else [want, "CPUExecutionProvider"]
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    if sess.get_providers()[0] != want:
        raise RuntimeError(
            f"asked for {want}, but onnxruntime runs this session on {sess.get_providers()} "
            f"(available here: {ort.get_available_providers()}); not claiming {want}"
        )
    return sess


def input_schema(sess: ort.InferenceSession) -> list[dict[str, Any]]:
    """The artifact's input descriptions (metadata ``tabxfer.inputs``)."""
    meta = sess.get_modelmeta().custom_metadata_map
    return list(json.loads(meta["tabxfer.inputs"]))


def feed(schema: Sequence[Mapping[str, Any]], columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Input arrays of the right dtype from columns (lists or arrays), with clear errors."""
    cols = {ALIASES.get(k, k): v for k, v in columns.items()}
    if "pickup_ts" not in cols and "pickup_datetime" in cols:
        stamps = np.asarray(cols["pickup_datetime"], dtype="datetime64[s]")
        cols["pickup_ts"] = stamps.astype(np.int64)
    out: dict[str, np.ndarray] = {}
    for spec in schema:
        name, dtype = spec["name"], spec["dtype"]
        if name not in cols:
            raise KeyError(f"input {name!r} missing: {spec['description']}")
        v = np.asarray(cols[name])
        if dtype == "string":
            out[name] = np.array(["" if x is None else str(x) for x in v.reshape(-1)], dtype=object).reshape(
                v.shape
            )
            continue
        try:
            if v.dtype == object or v.dtype.kind in "US":  # CSV text; "" = missing
                v = np.array([np.nan if x in ("", None) else float(x) for x in v.reshape(-1)]).reshape(
                    v.shape
                )
            if dtype == "int64" and v.dtype.kind == "f" and np.isnan(v).any():
                raise ValueError("it cannot be missing")
            out[name] = v.astype(dtype)
        except (TypeError, ValueError) as e:
            raise ValueError(f"input {name!r}: expected {dtype} ({spec['description']}): {e}") from None
    return out


def predict(
    sess: ort.InferenceSession, columns: Mapping[str, Any], batch: int = 65536
) -> dict[str, np.ndarray]:
    """``{"duration_s", "log_duration"}`` for every row of ``columns``."""
    data = feed(input_schema(sess), columns)
    n = len(next(iter(data.values())))
    parts: list[list[np.ndarray]] = []
    for s in range(0, n, batch):
        parts.append(sess.run(["duration_s", "log_duration"], {k: v[s : s + batch] for k, v in data.items()}))
    if not parts:
        return {"duration_s": np.zeros(0, np.float32), "log_duration": np.zeros(0, np.float32)}
    return {
        "duration_s": np.concatenate([p[0] for p in parts]),
        "log_duration": np.concatenate([p[1] for p in parts]),
    }


def read_csv(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file (expected a header row)")
    header, body = rows[0], rows[1:]
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(f"{path}: row {i + 2} has {len(r)} fields, the header {len(header)}")
    return {h: np.array([r[j] for r in body], dtype=object) for j, h in enumerate(header)}


def write_csv(path: str | os.PathLike[str], pred: Mapping[str, np.ndarray]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(pred))
        w.writerows(zip(*[np.char.mod("%.6g", v) for v in pred.values()], strict=True))
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("trips", help="CSV of raw trips")
    ap.add_argument("out", help="CSV of predictions")
    ap.add_argument("--provider", default="cpu", choices=sorted(PROVIDERS))
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a constant field")
    args = ap.parse_args(argv)
    sess = session(args.model, args.provider)
    cols: dict[str, Any] = dict(read_csv(args.trips))
    n = len(next(iter(cols.values()))) if cols else 0
    for kv in args.set:
        k, _, v = kv.partition("=")
        cols[k] = np.full(n, v, dtype=object)
    pred = predict(sess, cols, args.batch)
    write_csv(args.out, pred)
    print(f"{n:,} predictions -> {args.out} ({sess.get_providers()[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
