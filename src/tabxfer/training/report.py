"""What a run's dashboard shows, written next to the run and logged to W&B (offline runs carry it all).

After testing, :func:`run_report` evaluates the best checkpoint's model on the test split and writes
``<run>/report/``:

- ``pred_vs_actual.png`` (hexbin, log scale), ``residuals.png`` (histogram and residual vs predicted);
- ``slices.json`` / ``slices.md``: RMSLE and bias by hour, weekday, distance bucket, pickup district,
  airport trips, city and mode (:mod:`tabxfer.evaluation.slices`, keys rebuilt from the cache alone);
- ``importance.json`` / ``importance.png``: feature importances (TabNet: its attention masks, plus
  ``tabnet_masks.png`` per step; TFT: its variable-selection weights, plus ``tft_attention.png``; other
  models: permutation importance);

and, with a W&B logger, logs the figures as images, the slices and importances as tables, and the best
checkpoint (and the ONNX artifact, when the run exported one) as artifacts with aliases ``latest`` and
``best``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tabxfer.evaluation import explain
from tabxfer.evaluation.slices import markdown_table, rmsle_by_slice, slice_keys, trips_from_cache
from tabxfer.features.cache import TensorCache
from tabxfer.io import write_text_atomic

log = logging.getLogger(__name__)
SLICE_BY = ("hour", "weekday", "distance_km", "district", "airport", "city", "mode")


def _figures(
    out: Path, log_pred: np.ndarray, log_true: np.ndarray, importance: dict[str, float], extra: dict[str, Any]
) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs: dict[str, Path] = {}
    pred = np.maximum(log_pred, 0.0)
    fig, ax = plt.subplots(figsize=(5, 5))
    hb = ax.hexbin(log_true, pred, gridsize=60, bins="log", cmap="viridis", mincnt=1)
    lo, hi = float(min(log_true.min(), pred.min())), float(max(log_true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "r--", lw=1)
    ax.set(xlabel="log1p(actual duration s)", ylabel="log1p(predicted)", title="predicted vs actual (test)")
    fig.colorbar(hb, ax=ax, label="trips")
    figs["pred_vs_actual"] = out / "pred_vs_actual.png"
    fig.savefig(figs["pred_vs_actual"], dpi=110, bbox_inches="tight")
    plt.close(fig)

    res = pred - log_true
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.hist(res, bins=100, color="tab:blue")
    a1.set(xlabel="log residual (pred - actual)", ylabel="trips", title=f"residuals: mean {res.mean():+.3f}")
    a2.hexbin(pred, res, gridsize=60, bins="log", cmap="magma", mincnt=1)
    a2.axhline(0, color="w", lw=1)
    a2.set(xlabel="log1p(predicted)", ylabel="residual", title="residual vs predicted")
    figs["residuals"] = out / "residuals.png"
    fig.savefig(figs["residuals"], dpi=110, bbox_inches="tight")
    plt.close(fig)

    top = sorted(importance.items(), key=lambda kv: kv[1])[-25:]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(top) + 1))
    ax.barh([k for k, _ in top], [v for _, v in top], color="tab:green")
    ax.set(title=f"feature importance ({extra['method']})")
    figs["importance"] = out / "importance.png"
    fig.savefig(figs["importance"], dpi=110, bbox_inches="tight")
    plt.close(fig)

    if "tabnet_masks" in extra:  # (n_steps, n_features) mean mask per step
        masks, names = np.asarray(extra["tabnet_masks"]), extra["feature_names"]
        fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(names)), 0.5 * len(masks) + 1.5))
        im = ax.imshow(masks, aspect="auto", cmap="Blues")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(masks)), [f"step {i + 1}" for i in range(len(masks))])
        ax.set_title("TabNet attention masks (mean over test rows)")
        fig.colorbar(im, ax=ax)
        figs["tabnet_masks"] = out / "tabnet_masks.png"
        fig.savefig(figs["tabnet_masks"], dpi=110, bbox_inches="tight")
        plt.close(fig)
    if extra.get("tft_attention") is not None:
        att = np.asarray(extra["tft_attention"])
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar(range(len(att)), att, color="tab:purple")
        ax.set(
            xlabel="position (oldest hour first; last = the trip)", ylabel="attention", title="TFT attention"
        )
        figs["tft_attention"] = out / "tft_attention.png"
        fig.savefig(figs["tft_attention"], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return figs


def run_report(
    module: Any,
    cache: TensorCache,
    out_dir: str | os.PathLike[str],
    loggers: Sequence[Any] = (),
    *,
    split: str = "test",
    max_rows: int = 50_000,
    importance_rows: int = 5_000,
    checkpoint: str | None = None,
    onnx_dir: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate, explain and log (see the module doc); returns what was written."""
    out = Path(out_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    inputs = explain.split_inputs(cache, split, max_rows=max_rows)
    log_pred = explain.predict_log(module, inputs.x_num, inputs.x_cat, inputs.x_ctx)
    log_true = inputs.y.numpy().astype(np.float64)
    trips = trips_from_cache(cache.split(split).subset(inputs.index), cache.spec)
    slices = rmsle_by_slice(slice_keys(trips), np.maximum(log_pred, 0.0), log_true, by=SLICE_BY)

    k = min(importance_rows, len(inputs))  # importance on a subsample: permutation costs a pass per feature
    sub = np.sort(np.random.default_rng(0).choice(len(inputs), size=k, replace=False))
    xn, xc, y = inputs.x_num[sub], inputs.x_cat[sub], inputs.y[sub]
    xx = None if inputs.x_ctx is None else inputs.x_ctx[sub]
    method = explain.importance_method(module)
    importance = explain.feature_importance(module, xn, xc, y, xx)
    extra: dict[str, Any] = {"method": method, "feature_names": explain.feature_names(module)}
    if method == "tabnet_masks":
        extra["tabnet_masks"] = (
            explain.tabnet_masks(module, xn, xc).mean(axis=1).tolist()
        )  # (steps, features)
    elif method == "tft_static_weights":
        interp = explain.tft_interpretation(module, xn, xc, xx)
        att = interp.get("attention")
        extra["tft_attention"] = None if att is None else np.asarray(att).tolist()
        temporal = interp.get("temporal")
        extra["tft_temporal"] = None if temporal is None else np.asarray(temporal).tolist()  # (T, n_ctx)
        extra["tft_positions"], extra["tft_channels"] = interp.get("positions"), interp.get("channels")

    figs = _figures(out, log_pred, log_true, importance, extra)
    write_text_atomic(out / "slices.json", json.dumps(slices, indent=1))
    write_text_atomic(out / "slices.md", markdown_table(slices) + "\n")
    write_text_atomic(
        out / "importance.json",
        json.dumps(
            {"method": method, "importance": importance, **{k: v for k, v in extra.items() if k != "method"}},
            indent=1,
            default=str,
        ),
    )
    for lg in loggers:
        if type(lg).__name__ == "WandbLogger":
            _log_wandb(
                lg.experiment, split, figs, slices, importance, method, checkpoint, onnx_dir, metrics or {}
            )
    return {
        "dir": str(out),
        "figures": {k: str(v) for k, v in figs.items()},
        "slices": len(slices),
        "importance": method,
    }


def _log_wandb(
    run: Any,
    split: str,
    figs: dict[str, Path],
    slices: list[dict[str, Any]],
    importance: dict[str, float],
    method: str,
    checkpoint: str | None,
    onnx_dir: str | None,
    metrics: dict[str, Any],
) -> None:
    import wandb

    cols: list[str | int] = ["slice", "value", "rows", "rmsle", "bias"]
    imp = wandb.Table(
        columns=["feature", "importance"],
        data=[[k, v] for k, v in sorted(importance.items(), key=lambda kv: -kv[1])],
    )
    run.log(
        {
            **{f"{split}/{name}": wandb.Image(str(path)) for name, path in figs.items()},
            f"{split}/slices": wandb.Table(columns=cols, data=[[r[str(c)] for c in cols] for r in slices]),
            f"explain/importance_{method}": imp,
            "explain/importance_bar": wandb.plot.bar(
                imp, "feature", "importance", title=f"importance ({method})"
            ),
        }
    )
    if checkpoint and Path(checkpoint).exists():
        art = wandb.Artifact(
            f"model-{run.id}",
            type="model",
            metadata={k: v for k, v in metrics.items() if isinstance(v, int | float)},
        )
        art.add_file(checkpoint, name=Path(checkpoint).name)
        run.log_artifact(art, aliases=["latest", "best"])
    if onnx_dir and Path(onnx_dir).is_dir():
        art = wandb.Artifact(
            f"onnx-{run.id}", type="onnx", description="tabxfer ONNX artifact (raw trip fields in)"
        )
        art.add_dir(onnx_dir)
        run.log_artifact(art, aliases=["latest", "best"])
