"""``tabxfer export``: a checkpoint -> a self-describing, verified ONNX artifact folder.

::

    <out>/
        model.onnx                 fp32; raw trip fields in, duration_s and log_duration out
        model.<quantization>.onnx  dynamic-int8 / static-int8 / fp16, when asked for
        model_card.md              intended use, data, metrics overall and by slice, quantization effect
        report.json                every figure of the card (parity, RMSLE, sizes), machine-readable
        inputs.json                the input schema (also in each graph's metadata): names, dtypes,
                                   valid ranges, NaN = missing or not, vocabularies of string inputs
        example_input.csv          raw rows in the graph's input format; example_output.csv: fp32 outputs
        example_context.npy        their hourly context (N, T, 4), for a model that reads one
        serve.py                   numpy + onnxruntime only: run the artifact on a CSV
        reference_profile.json     the training rows' feature/prediction distributions and held-out RMSLE
                                   by slice: what ``tabxfer drift`` compares new data with

Verification runs on held-out rows of the checkpoint's own data (its test split, loaded again from the
sources named in the checkpoint): the torch model on features computed by the polars pipeline against the
graph on raw fields, at batch sizes 1, 7 and 4096. fp32 must agree within ``FP32_TOL`` on log-duration or
nothing is written. The folder is written under a temporary name and renamed into place.

The graph does not validate its inputs (ONNX cannot raise on a value); ``serve.predict`` and the CLIs
check every input against the schema's ranges before running it (see :mod:`tabxfer.export.serve`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import onnx
import polars as pl
import torch

import tabxfer
from tabxfer.data.geo import haversine_km
from tabxfer.data.quality import Validation
from tabxfer.evaluation.metrics import rmsle
from tabxfer.evaluation.slices import distance_band
from tabxfer.export import blocks, serve
from tabxfer.export import quantize as q
from tabxfer.export.graph import RawFeatures
from tabxfer.export.onnx_graph import RawInput, RawTripModel, export_raw_graph, loader_ranges, raw_inputs
from tabxfer.features import pipeline
from tabxfer.features.context import FLAT as CONTEXT_FLAT
from tabxfer.features.context import build_context
from tabxfer.features.spec import FeatureSpec
from tabxfer.features.splits import assign_split
from tabxfer.io import publish_dir

log = logging.getLogger(__name__)
FP32_TOL = 1e-4  # max abs difference on log-duration, graph vs torch
QUANT_GOAL = 0.002  # RMSLE change goal for int8 / fp16
PARITY_BATCHES = (1, 7, 4096)
NOISE_ROWS = 32  # rows over FP32_TOL that may be explained by torch's own float32 noise
# what loads each opset's artifacts, checked with pip-installed onnxruntime (CPU) versions
ONNXRUNTIME_NEEDED = {
    18: "onnxruntime >= 1.20 (checked: 1.20.1, 1.23.2, 1.31.1)",
    23: "onnxruntime >= 1.23, for static-int8 >= 1.28 (checked: 1.22.1 cannot load opset 23; 1.23.2 lacks "
    "QuantizeLinear-23; 1.28.0 and 1.31.1 run every variant)",
}
BLOCKED = ("none", "dynamic-int8", "static-int8")  # the CPU variants; fp16 (for GPUs) runs batches whole


def context_hours(module: Any) -> int:
    """Length of the context sequence the module's model reads (TFT built with ``n_ctx``), else 0."""
    model = module.model
    n_ctx = getattr(model, "n_ctx", 0) or getattr(getattr(model, "embed", None), "n_ctx", 0)
    if not (module.takes_context and n_ctx):
        return 0
    return int(getattr(model, "ctx_len", 0) or model.embed.ctx_len)


def raw_model(module: Any) -> tuple[RawTripModel, FeatureSpec]:
    """The exportable ``RawTripModel`` of a trained :class:`~tabxfer.training.module.TabularRegressor`.

    A model that reads the hourly context (TFT with ``data.features.context``, or any model with
    ``context_flat`` features) gets it as a raw input, standardized in the graph with the statistics the
    cache recorded in ``spec.context``."""
    spec = FeatureSpec.from_dict(module.hparams["spec"])
    features = RawFeatures(spec)
    takes_context = context_hours(module) > 0
    ctx_mean = ctx_std = None
    if takes_context or features.uses_context_flat:
        if not spec.context:
            raise ValueError(
                "this model reads the hourly context, but its feature spec lacks the context's statistics "
                "(spec.context: a checkpoint from before tabxfer 0.1 recorded them); train it again to export"
            )
        ctx_mean = torch.tensor(spec.context["mean"], dtype=torch.float64)
        ctx_std = torch.tensor(spec.context["std"], dtype=torch.float64)
    model = RawTripModel(
        features,
        module.model.eval(),
        y_mean=float(module.y_mean),
        y_std=float(module.y_std),
        target_transform=spec.target.transform,
        takes_context=takes_context,
        ctx_mean=ctx_mean,
        ctx_std=ctx_std,
    )
    return model.eval(), spec


def input_ranges(config: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """Valid ranges of pickup time and passenger count for a run (its resolved config): what its data
    loaders kept, the widest over its sources (:func:`~tabxfer.export.onnx_graph.loader_ranges`)."""
    sources = ((config or {}).get("data") or {}).get("sources") or {}
    each = [loader_ranges(Validation.of((node or {}).get("validation"))) for node in sources.values()]
    each = each or [loader_ranges(Validation())]
    return {k: (min(r[k][0] for r in each), max(r[k][1] for r in each)) for k in each[0]}


def held_out(
    config: Mapping[str, Any],
    rows: Mapping[str, int],
    *,
    seed: int = 0,
    spec: FeatureSpec | None = None,
) -> dict[str, pl.DataFrame]:
    """Up to ``rows[split]`` canonical rows of each named split of the data a run was trained on (its
    resolved config); the sources are loaded once.

    With a ``spec`` that has a context (``spec.context``), each row also carries its hourly context,
    rebuilt over every row of the data as the cache did: ``__ctx`` in model units (what the batcher
    feeds) and ``__ctx_raw`` in raw units (the exported graph's ``context`` input), both
    ``(T, 4)`` arrays."""
    data = config["data"]
    frames = []
    for i, (name, node) in enumerate(data["sources"].items()):
        df, _ = hydra.utils.instantiate(dict(node)).load()
        frames.append(df.with_columns(pl.lit(i, pl.Int16).alias("__source_id")))
        log.info("loaded %s: %s rows", name, f"{df.height:,}")
    df = assign_split(
        pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0], data.get("split")
    )
    if spec is not None and spec.context:
        df = with_context(df, spec)
    out = {}
    for k, (split, n) in enumerate(rows.items()):
        part = df.filter(pl.col("split") == split)
        if part.height == 0:
            raise ValueError(
                f"the {split!r} split of {data.get('name')} is empty: nothing to verify the export on"
            )
        out[split] = part.sample(n, seed=seed + k, shuffle=True) if part.height > n else part
    return out


def with_context(df: pl.DataFrame, spec: FeatureSpec) -> pl.DataFrame:
    """``df`` (every row the cache was built from, in its order) with ``__ctx`` and ``__ctx_raw``
    columns; refuses when the rebuilt context's statistics differ from the ones the model was trained
    with (the data changed since)."""
    ctx_info = dict(spec.context or {})
    ctx = build_context(
        df,
        spec.city_centers,
        hours=int(ctx_info["hours"]),
        region_km=float(ctx_info["region_km"]),
        min_region_trips=int(ctx_info["min_region_trips"]),
        keep_raw=True,
    )
    got, want = np.array([*ctx.mean, *ctx.std]), np.array([*ctx_info["mean"], *ctx_info["std"]])
    if not np.allclose(got, want, rtol=1e-6, atol=1e-9):
        raise ValueError(
            "the hourly context rebuilt from the run's sources differs from the one it was trained on "
            f"(mean, std per channel: {got.round(6).tolist()} vs {want.round(6).tolist()}): the data changed"
        )
    rows = np.arange(df.height)
    shape = (ctx.hours, 4)
    return df.with_columns(
        pl.Series("__ctx", ctx.sequences(rows), dtype=pl.Array(pl.Float32, shape)),
        pl.Series(
            "__ctx_raw", ctx.sequences(rows, raw=True).astype(np.float32), dtype=pl.Array(pl.Float32, shape)
        ),
    )


def context_array(df: pl.DataFrame, column: str = "__ctx") -> np.ndarray:
    """The ``(N, T, 4)`` float32 context of rows loaded by :func:`held_out` with a spec."""
    if column not in df.columns:
        raise ValueError(
            "these rows carry no hourly context, and the model reads it: load them with "
            "held_out(..., spec=spec)"
        )
    return np.array(df[column].to_numpy(), dtype=np.float32)  # a writable copy (torch.from_numpy)


def raw_columns(df: pl.DataFrame, inputs: Sequence[RawInput]) -> dict[str, np.ndarray]:
    """Canonical trips -> the graph's input arrays."""
    out: dict[str, np.ndarray] = {}
    for i in inputs:
        if i.name == "pickup_ts":
            out[i.name] = df["pickup_time"].dt.epoch("s").to_numpy().astype(np.int64)
        elif i.name == "context":
            out[i.name] = context_array(df, "__ctx_raw")
        elif i.dtype == "string":
            col = df[i.name].cast(pl.String) if i.name in df.columns else pl.Series([None] * df.height)
            out[i.name] = np.array(col.fill_null("").to_list(), dtype=object)
        else:
            col = df[i.name].cast(pl.Float64) if i.name in df.columns else pl.Series([None] * df.height)
            out[i.name] = col.fill_null(float("nan")).to_numpy().astype(np.float64)
    return out


def raw_tensors(f: RawFeatures, df: pl.DataFrame, context: bool = False) -> tuple[torch.Tensor, ...]:
    """Canonical trips -> the packed arguments of ``RawFeatures`` / ``RawTripModel`` (what the ONNX
    graph's per-field inputs and label encoders become inside it): the torch twin of :func:`raw_columns`.
    ``context``: append the raw hourly context (a model with ``needs_context``)."""
    spec = f.spec

    def floats(c: str) -> torch.Tensor:
        col = df[c].cast(pl.Float64) if c in df.columns else pl.Series([None] * df.height, dtype=pl.Float64)
        return torch.from_numpy(col.fill_null(float("nan")).to_numpy().copy())

    def codes(name: str) -> list[int]:
        feat = spec.categorical_feature(name)
        values = df[name].cast(pl.String).to_list() if name in df.columns else [None] * df.height
        return [feat.index(v) for v in values]

    args = [
        torch.from_numpy(df["pickup_time"].dt.epoch("s").to_numpy().astype(np.int64)),
        *[floats(c) for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")],
        torch.stack([floats(c) for c in f.numeric_inputs], 1)
        if f.numeric_inputs
        else torch.zeros(df.height, 0, dtype=torch.float64),
        torch.tensor(np.array([codes(n) for n in f.string_inputs], dtype=np.int64).T.reshape(df.height, -1)),
        torch.tensor([f.cities.index(c) if c in f.cities else -1 for c in df["city"].to_list()]),
    ]
    if context:
        args.append(torch.from_numpy(context_array(df, "__ctx_raw")))
    return tuple(args)


def torch_log_pred(module: Any, spec: FeatureSpec, df: pl.DataFrame, batch: int = 4096) -> np.ndarray:
    """The torch model's log-duration on features from the polars pipeline (the reference). A model
    that reads the context gets it from ``df``'s ``__ctx`` column (:func:`held_out` with the spec), as
    the training batcher feeds it (and, for ``context_flat`` features, as the cache builder derives them)."""
    return _torch_run(module, *_torch_inputs(module, spec, df), batch=batch)


def _torch_inputs(
    module: Any, spec: FeatureSpec, df: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(x_num, x_cat, context or None)``: what :func:`torch_log_pred` feeds the model."""
    reads_context = context_hours(module) > 0
    flat = [n for n in CONTEXT_FLAT if n in spec.numeric_names]
    ctx = context_array(df) if (reads_context or flat) else None
    if ctx is not None and flat:  # Context.flat() on the gathered sequence (last step = the hour before)
        values = {
            "ctx_city_trips_1h": ctx[:, -1, 0],
            "ctx_city_speed_1h": ctx[:, -1, 1],
            "ctx_city_speed_24h": ctx[:, -min(ctx.shape[1], 24) :, 1].mean(axis=1),
            "ctx_region_trips_1h": ctx[:, -1, 2],
            "ctx_region_speed_1h": ctx[:, -1, 3],
        }
        df = df.with_columns([pl.Series(n, values[n], dtype=pl.Float64) for n in flat])
    arr = pipeline.to_arrays(pipeline.transform(df.lazy(), spec).collect(), spec)
    return arr["x_num"], arr["x_cat"], ctx if reads_context else None


def _torch_run(
    module: Any, x_num: np.ndarray, x_cat: np.ndarray, ctx: np.ndarray | None, batch: int = 4096
) -> np.ndarray:
    out = []
    with torch.no_grad():
        for s in range(0, len(x_num), batch):
            args = [torch.from_numpy(x_num[s : s + batch]), torch.from_numpy(x_cat[s : s + batch]).long()]
            if ctx is not None:
                args.append(torch.from_numpy(ctx[s : s + batch]))
            out.append(module.eval()(*args).numpy().reshape(-1))
    return np.concatenate(out).astype(np.float64)


def slices(df: pl.DataFrame, log_pred: np.ndarray, log_true: np.ndarray) -> list[dict[str, Any]]:
    """RMSLE by city, mode, trip distance and pickup hour (what a card's reader asks first)."""
    sq = (np.asarray(log_pred, np.float64) - log_true) ** 2
    c = [pl.col(n) for n in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")]
    dist = df.select(haversine_km(*c).alias("d"))["d"]
    keys = {
        "city": df["city"].cast(pl.String).fill_null("?"),
        "mode": df["mode"].cast(pl.String).fill_null("?"),
        "distance_km": distance_band(dist).fill_null("?"),
        "hour": (df["pickup_time"].dt.hour() // 6 * 6).cast(pl.String).str.zfill(2) + "h+6",
    }
    rows = []
    for by, key in keys.items():
        t = pl.DataFrame({"k": key, "sq": sq}).group_by("k").agg(pl.len().alias("n"), pl.col("sq").mean())
        for r in t.sort("k").iter_rows(named=True):
            rows.append({"slice": by, "value": r["k"], "rows": r["n"], "rmsle": float(np.sqrt(r["sq"]))})
    return rows


def _torch_noise(
    module: Any, spec: FeatureSpec, df: pl.DataFrame, rows: np.ndarray, ref: np.ndarray, draws: int = 8
) -> np.ndarray:
    """Per row of ``rows``: how far float32 rounding alone moves torch's log-duration. The larger of
    |torch at batch 1 - torch batched| and, over ``draws`` jitters of every numeric input by up to one
    float32 ulp (relative 2**-23), the largest change of torch's output. A graph that computes the same
    function with other kernels (onnxruntime's) rounds elsewhere, so it cannot be held closer to torch
    than this: a TabNet row of the real NYC data, whose sparse masks sit near a switch, moved by 3.6e-4
    under such jitter, while torch at batch 1 moved it by 6e-5."""
    x_num, x_cat, ctx = _torch_inputs(module, spec, df[rows])
    one = [
        _torch_run(module, x_num[i : i + 1], x_cat[i : i + 1], None if ctx is None else ctx[i : i + 1])[0]
        for i in range(len(rows))
    ]
    noise = np.abs(np.array(one) - ref[rows])
    base = _torch_run(module, x_num, x_cat, ctx)
    rng = np.random.default_rng(0)
    for _ in range(draws):
        eps = rng.uniform(-1.0, 1.0, x_num.shape).astype(np.float32) * np.float32(2**-23)
        noise = np.maximum(noise, np.abs(_torch_run(module, x_num * (1 + eps), x_cat, ctx) - base))
    return noise


def _state_fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _run(
    path: Path, feeds: Mapping[str, np.ndarray], batch: int, provider: str = "cpu"
) -> tuple[np.ndarray, list[str]]:
    sess = serve.session(path, provider)
    n = len(next(iter(feeds.values())))
    parts = [
        sess.run(["log_duration"], {k: v[s : s + batch] for k, v in feeds.items()})[0]
        for s in range(0, n, batch)
    ]
    return np.concatenate(parts).astype(np.float64), sess.get_providers()


def _set_metadata(path: Path, props: Mapping[str, str], doc: str) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    model.doc_string = doc
    model.producer_name, model.producer_version = "tabxfer", tabxfer.__version__
    onnx.save(model, str(path))


def file_name(mode: str) -> str:
    return "model.onnx" if mode == "none" else f"model.{mode}.onnx"


def export_checkpoint(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    quantize: Sequence[str] = ("none",),
    rows: int = 20_000,
    calibration_rows: int = 4096,
    profile_rows: int = 20_000,
    seed: int = 0,
    provider: str = "cpu",
    block_rows: int | None = None,
) -> dict[str, Any]:
    """Export, quantize, verify and describe; returns the report (also ``report.json``).
    ``profile_rows``: training rows the drift reference profile is computed on. ``block_rows``: the CPU
    variants (fp32 and int8) run large batches in blocks of this many rows (:mod:`.blocks`); ``None``
    chooses from the graph's tensor sizes, 0 runs every batch whole."""
    from tabxfer.train import load  # Lightning is imported only here

    ckpt = Path(checkpoint)
    module = load(ckpt)
    modes = q.parse(quantize)
    meta = dict(module.hparams.get("meta") or {})
    model, spec = raw_model(module)
    hours = int(spec.context["hours"]) if model.needs_context and spec.context else None
    inputs = raw_inputs(model.features, hours, ranges=input_ranges(meta.get("config")))
    if "config" not in meta:
        raise ValueError(f"{ckpt}: no training config in the checkpoint's meta; cannot find held-out rows")
    t0 = time.perf_counter()
    parts = held_out(
        meta["config"],
        {"test": rows, "train": max(calibration_rows, profile_rows)},
        seed=seed,
        spec=spec if model.needs_context else None,
    )
    test, train = parts["test"], parts["train"]
    log_true = np.log1p(test["duration_s"].to_numpy().astype(np.float64))
    ref = torch_log_pred(module, spec, test)
    feeds = serve.feed([i.to_dict() for i in inputs], raw_columns(test, inputs))
    calib = serve.feed([i.to_dict() for i in inputs], raw_columns(train.head(calibration_rows), inputs))
    n_calib = min(calibration_rows, len(train))
    calib_feeds = [{k: v[s : s + 512] for k, v in calib.items()} for s in range(0, n_calib, 512)]
    from tabxfer.monitor.reference import model_info, profile_of_module  # drift's reference, same rows

    profile = profile_of_module(
        module, spec, train.head(profile_rows), test, test_log_pred=ref, info=model_info(module, ckpt)
    )

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        base = tmp / ".model.whole.onnx"  # what the quantizers read; the fp32 variant is it, perhaps blocked
        export_raw_graph(model, spec, base)
        whole = onnx.load(str(base))
        rows_per_block = blocks.block_rows(whole) if block_rows is None else block_rows
        report: dict[str, Any] = {
            "checkpoint": str(ckpt),
            "model": module.hparams["model_cfg"]["_target_"],
            "onnx_opset": next(o.version for o in whole.opset_import if o.domain in ("", "ai.onnx")),
            "rows_verified": len(test),
            "rmsle_torch": rmsle(ref, log_true),
            "variants": {},
        }
        for mode in modes:
            path = tmp / file_name(mode)
            notes = {} if mode == "none" else q.quantize(base, path, mode, calibration=calib_feeds)
            notes["block_rows"] = rows = rows_per_block if mode in BLOCKED else 0
            if rows:  # the fp32 graph is in memory already; a quantized one is read back
                graph = whole if mode == "none" else onnx.load(str(path))
                onnx.save(blocks.in_row_blocks(graph, rows), str(path))
            elif mode == "none":
                shutil.copyfile(base, path)
            pred, providers = _run(path, feeds, 4096, provider)
            diff = np.abs(pred - ref)
            small = {
                str(b): float(
                    np.abs(_run(path, {k: v[:b] for k, v in feeds.items()}, b, provider)[0] - ref[:b]).max()
                )
                for b in PARITY_BATCHES[:2]
            }
            v = {
                "file": path.name,
                "bytes": q.size_bytes(path),
                "max_abs_diff_log": float(diff.max()),
                "max_abs_diff_log_by_batch": {**small, "4096": float(diff.max())},
                "rmsle": rmsle(pred, log_true),
                "rmsle_delta": rmsle(pred, log_true) - report["rmsle_torch"],
                "checked_providers": providers[:1],
                **notes,
            }
            if mode == "none":
                v["slices"] = slices(test, pred, log_true)
                worst = max(v["max_abs_diff_log_by_batch"].values())
                v["within_fp32_tol"] = worst <= FP32_TOL
                v["rows_over_fp32_tol"] = int((diff > FP32_TOL).sum())
                if worst > FP32_TOL:
                    # Rows over the tolerance are held to twice torch's own float32 noise on each of them
                    # (a graph cannot be held closer to torch than torch is to itself); more such rows than
                    # NOISE_ROWS, or one beyond its allowance, is an export error.
                    top = np.argsort(-diff)[:NOISE_ROWS]
                    noise = _torch_noise(module, spec, test, top, ref)
                    allowed = np.maximum(FP32_TOL, 2 * noise)
                    v["torch_self_diff_log"] = float(noise.max())
                    bad = [
                        f"row {r}: {diff[r]:.2e} (noise {n:.2e})"
                        for r, n, a in zip(top, noise, allowed, strict=True)
                        if diff[r] > a
                    ]
                    if bad or v["rows_over_fp32_tol"] > NOISE_ROWS or max(small.values()) > allowed.max():
                        raise AssertionError(
                            f"fp32 graph disagrees with the torch model: max |diff| on log-duration {worst:.2e} "
                            f"> {FP32_TOL} (by batch size: {v['max_abs_diff_log_by_batch']}; "
                            f"{v['rows_over_fp32_tol']} rows over it, at most {NOISE_ROWS} may be float32 "
                            f"noise; beyond twice torch's own noise: {bad[:5]})"
                        )
                    log.warning(
                        "fp32: %d of %d rows differ by more than %g (max %.2e); torch's own float32 noise on "
                        "those rows is up to %.2e",
                        v["rows_over_fp32_tol"],
                        len(diff),
                        FP32_TOL,
                        worst,
                        float(noise.max()),
                    )
            else:
                v["goal_ok"] = abs(v["rmsle_delta"]) <= QUANT_GOAL
            report["variants"][mode] = v
            log.info("%s: %s", mode, {k: v[k] for k in ("bytes", "max_abs_diff_log", "rmsle", "rmsle_delta")})
        report["seconds"] = time.perf_counter() - t0
        props = metadata(module, spec, inputs, meta, report, ckpt)
        for mode in modes:
            path = tmp / file_name(mode)
            _set_metadata(
                path,
                {
                    **props,
                    "tabxfer.quantization": mode,
                    "tabxfer.block_rows": str(report["variants"][mode]["block_rows"]),
                    "tabxfer.checked_providers": json.dumps(report["variants"][mode]["checked_providers"]),
                },
                description(inputs, mode),
            )
        base.unlink()
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=str))
        (tmp / "inputs.json").write_text(json.dumps([i.to_dict() for i in inputs], indent=1))
        _write_examples(tmp, test, inputs, ref)
        shutil.copyfile(serve.__file__, tmp / "serve.py")
        (tmp / "reference_profile.json").write_text(profile.to_json())
        (tmp / "model_card.md").write_text(model_card(module, spec, inputs, meta, report))
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _write_examples(
    folder: Path, df: pl.DataFrame, inputs: Sequence[RawInput], ref: np.ndarray, n: int = 16
) -> None:
    cols = raw_columns(df.head(n), inputs)
    if "context" in cols:  # (n, T, 4): not a CSV column
        np.save(folder / "example_context.npy", cols.pop("context"))
    pl.DataFrame({k: list(v) for k, v in cols.items()}).write_csv(folder / "example_input.csv")
    pl.DataFrame({"log_duration_torch": ref[:n], "duration_s_torch": np.expm1(ref[:n])}).write_csv(
        folder / "example_output.csv"
    )


def metadata(
    module: Any,
    spec: FeatureSpec,
    inputs: Sequence[RawInput],
    meta: Mapping[str, Any],
    report: Mapping[str, Any],
    ckpt: Path,
) -> dict[str, str]:
    """ONNX ``metadata_props`` (strings; JSON where structured)."""
    trained = _training_metrics(ckpt)
    return {
        "tabxfer.version": tabxfer.__version__,
        "tabxfer.inputs": json.dumps([i.to_dict() for i in inputs]),
        "tabxfer.outputs": json.dumps(
            {"duration_s": "predicted trip duration, seconds", "log_duration": "log1p(duration_s)"}
        ),
        "tabxfer.units": json.dumps(
            {"pickup_ts": "s (local wall clock as UTC)", "coordinates": "degrees", "duration_s": "s"}
        ),
        "tabxfer.model": module.hparams["model_cfg"]["_target_"],
        "tabxfer.model_config": json.dumps(module.hparams["model_cfg"], default=str),
        "tabxfer.model_fingerprint": _state_fingerprint(module.model),
        "tabxfer.data_fingerprint": str(meta.get("data_fingerprint")),
        "tabxfer.corpus": json.dumps(meta.get("corpus"), default=str),
        "tabxfer.feature_spec": spec.to_json(),
        "tabxfer.training_metrics": json.dumps(trained),
        "tabxfer.verification": json.dumps(
            {k: {kk: vv for kk, vv in v.items() if kk != "slices"} for k, v in report["variants"].items()}
            | {"rmsle_torch": report["rmsle_torch"], "rows": report["rows_verified"]}
        ),
    }


def _training_metrics(ckpt: Path) -> dict[str, Any]:
    """The run's ``metrics.json`` (beside ``checkpoints/``), when it is there."""
    for p in (ckpt.parent.parent / "metrics.json", ckpt.parent / "metrics.json"):
        if p.is_file():
            m = json.loads(p.read_text())
            return {k: v for k, v in m.get("metrics", {}).items() if isinstance(v, (int, float))}
    return {}


def description(inputs: Sequence[RawInput], mode: str) -> str:
    lines = [
        f"tabxfer trip-duration model ({mode}). Inputs: one 1-D tensor per raw field, batch axis 'batch':",
        *[
            f"  {i.name} ({i.dtype}{'' if len(i.shape) == 1 else ' ' + str(list(i.shape))}): {i.description}"
            f" [valid: {i.valid_values()}]"
            for i in inputs
        ],
        "Outputs: duration_s (float32, seconds), log_duration (float32, log1p seconds).",
        "Everything from raw fields to the duration happens in the graph (features, vocabularies, scaling).",
        *(
            [
                "Except the hourly context: it depends on other trips (those completed before the pickup "
                "hour), so it is an input; serve.py's context_from_history computes it from a trip history."
            ]
            if any(i.name == "context" for i in inputs)
            else []
        ),
        "The graph does not validate: invalid values give numbers or inf, not errors. Check every input "
        "against metadata tabxfer.inputs first, as serve.py's predict does.",
    ]
    return "\n".join(lines)


def model_card(
    module: Any,
    spec: FeatureSpec,
    inputs: Sequence[RawInput],
    meta: Mapping[str, Any],
    report: Mapping[str, Any],
) -> str:
    corpus = meta.get("corpus") or {}
    cfg = module.hparams["model_cfg"]
    opset = report["onnx_opset"]
    runtimes = ONNXRUNTIME_NEEDED.get(opset, "not checked on other onnxruntime versions")
    fp32 = report["variants"]["none"]
    lines = [
        f"# Model card: {cfg['_target_'].rsplit('.', 1)[-1]} trip duration",
        "",
        "## Intended use",
        "Predict the duration in seconds of a trip from what is known at pickup: time, pickup and dropoff "
        "coordinates, passenger count, vendor and the other fields below. Trained for "
        f"`{corpus.get('name')}`; use on other cities or periods only after checking the slices below on "
        "your own data.",
        "",
        "## Inputs",
        "| name | type | meaning | valid |",
        "|---|---|---|---|",
        *[
            f"| `{i.name}` | {i.dtype} {list(i.shape)} | {i.description} | {i.valid_values()} |"
            for i in inputs
        ],
        "",
        "Outputs: `duration_s` (float32, seconds) and `log_duration` (log1p of it). Feature computation, "
        "vocabularies and scaling are inside the graph: send raw fields.",
        "",
        "The graph itself does not validate (a latitude of 200 or a year 3000 gives a number, or inf). "
        "`serve.py` (and `tabxfer predict`) check every input against the ranges above (`inputs.json`) "
        "first: an invalid row is an error naming the column, row and value, or, with `--on-invalid drop`, "
        "a NaN prediction counted by reason.",
        "",
        "## Training data",
        f"- data: `{corpus.get('name')}`, rows {json.dumps(corpus.get('rows'))}, fingerprint `{meta.get('data_fingerprint')}`",
        f"- sources: {', '.join((corpus.get('sources') or {}).keys())}",
        f"- initialized from: {(meta.get('init_from') or {}).get('path', 'scratch')}",
        f"- feature spec: {spec.n_numeric} numeric, {spec.n_categorical} categorical features; "
        f"fitted on {spec.n_train:,} training rows",
        "",
        "## Metrics (held-out test rows, this export's own check)",
        f"- rows: {report['rows_verified']:,}; RMSLE torch {report['rmsle_torch']:.4f}",
        "",
        "| variant | file | size KiB | max abs diff (log) vs torch | RMSLE | RMSLE change | checked on |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for mode, v in report["variants"].items():
        lines.append(
            f"| {mode} | `{v['file']}` | {v['bytes'] / 1024:.0f} | {v['max_abs_diff_log']:.2e} | {v['rmsle']:.4f} "
            f"| {v['rmsle_delta']:+.4f} | {', '.join(v['checked_providers'])} |"
        )
    lines += ["", "### By slice (fp32)", "| slice | value | rows | RMSLE |", "|---|---|---:|---:|"]
    lines += [f"| {s['slice']} | {s['value']} | {s['rows']:,} | {s['rmsle']:.4f} |" for s in fp32["slices"]]
    lines += [
        "",
        "## Limitations",
        "- Durations are learned from recorded trips: traffic incidents, weather and events after the "
        "training period are not seen.",
        "- Cities outside the training data use tabxfer's known city centers for the local frame, or none "
        "(features set to their means) when unknown; expect much larger errors there.",
        "- Holidays are US federal holidays for 1970-2099.",
        f"- ONNX opset {opset}: {runtimes}. CPU variants with "
        "a `tabxfer.block_rows` above 0 run large batches in blocks of that many rows (an ONNX `Loop`; "
        "the same outputs, faster in cache).",
        "- Quantized variants keep the feature computation, embedding lookups and the last layer in float; "
        "their accuracy change is measured above on this machine's CPU. fp16 is meant for onnxruntime's "
        "CUDA provider; the providers each file was checked on are listed (`tabxfer.checked_providers`).",
    ]
    if any(i.name == "context" for i in inputs):
        lines.append(
            "- The model reads the hourly context of each trip (the `context` input: trips completed in each "
            "of the hours before its pickup hour, citywide and in its region). It is not in the graph: compute "
            "it from a trip history with `serve.context_from_history` (numpy only; it reproduces the training "
            "context exactly), or pass NaN where unknown, which the model reads as an average hour."
        )
    return "\n".join(lines) + "\n"
