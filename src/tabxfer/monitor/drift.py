"""``tabxfer drift REFERENCE NEW_DATA``: compare new trips with the data a model was trained on, and say
whether a scheduler should retrain.

::

    tabxfer drift logs/train/runs/<time>/ new_trips.parquet                 # a run (its best.ckpt)
    tabxfer drift outputs/<run>/export/ trips.csv --format kaggle          # an ONNX artifact
    tabxfer drift <run>/checkpoints/best.ckpt green_tripdata_2024-03.parquet --zone-table zones.parquet

What is compared (see :mod:`~tabxfer.monitor.stats` for the statistics):

* every model input feature **before scaling** (kilometres, hours, grid cells, vendor, ... as
  :func:`~tabxfer.features.pipeline.raw_features` derives them with the model's own feature spec): PSI on
  the reference's decile bins (categorical: over the most frequent categories, unseen values pooled and
  counted), two-sample KS for numeric ones;
* the model's **predictions** (log-duration): PSI, KS and quantiles side by side;
* where the new trips carry durations: the **target**'s PSI/KS, and **RMSLE** overall and by slice
  (hour, weekday, distance, district, airport, city, mode) against the reference's RMSLE on held-out rows.

The reference (:mod:`~tabxfer.monitor.reference`) is a training run, a checkpoint (its training rows are
reloaded from the config inside it, up to ``rows``) or an exported artifact. For artifacts ``tabxfer
export`` writes ``reference_profile.json`` (bins, category counts, a 1,000-value sample per column for KS,
prediction quantiles, slice RMSLE), so drift against an artifact needs no training data at hand;
resolving an artifact back to its checkpoint would have tied it to the machine that trained it (that is
only the fallback for artifacts exported before profiles existed).

Thresholds (:class:`DriftConfig`, defaults in ``configs/drift.yaml``, CLI flags override) decide the verdict
and the exit code: **0** within thresholds (warnings allowed), **1** past an alert threshold (the report
lists which), **2** bad input or usage (the message names the file and column). Calendar features that
move with the period by construction (``month``, the day-of-year encodings) are reported but, by default,
kept out of the verdict: otherwise every new month would alert.

Output folder (``--out``, default ``drift/<time>/``, written under a temporary name and renamed):
``drift_report.md`` (verdict first, then tables), ``drift.json`` (every number), ``psi.png``,
``predictions.png``, ``features.png``.

Real-data demonstration (reports in ``bench_results/drift/``; NYC TLC green taxis; an MLP trained on
January 2023 with a time split, so that its reference RMSLE is measured on later days, as new data is)::

    export TABXFER_DATA_DIR=/work/shared/data
    G=$TABXFER_DATA_DIR/nyc_tlc_green_trips
    .venv/bin/python train.py data=nyc_green data/split=time model=mlp trainer.max_epochs=6 logger=none \\
        hydra.run.dir=bench_results/drift/run_green_2023-01_time
    .venv/bin/tabxfer drift bench_results/drift/run_green_2023-01_time $G/green_tripdata_2023-02.parquet \\
        --out bench_results/drift/2023-02                                   # exit 0
    .venv/bin/tabxfer drift bench_results/drift/run_green_2023-01_time $G/green_tripdata_2021-01.parquet \\
        --out bench_results/drift/2021-01                                   # exit 1
    .venv/bin/tabxfer export bench_results/drift/run_green_2023-01_time/checkpoints/best.ckpt \\
        --out bench_results/drift/export_time
    .venv/bin/tabxfer drift bench_results/drift/export_time $G/green_tripdata_2023-02.parquet \\
        --out bench_results/drift/artifact_2023-02                          # the same, from the artifact
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tabxfer.config import check_options
from tabxfer.data.schema import DataError
from tabxfer.monitor import stats
from tabxfer.monitor.inputs import NewData, load_trips
from tabxfer.monitor.profile import NumericProfile, feature_frame, log_target, slice_rmsle
from tabxfer.monitor.reference import Reference, resolve

CONFIG_FILE = Path("configs") / "drift.yaml"
EXIT_OK, EXIT_DRIFT, EXIT_BAD_INPUT = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """Thresholds and statistics settings (``configs/drift.yaml``). ``None`` switches a check off.

    Args:
        psi_warn / psi_alert: per-feature PSI levels (warn: reported; alert: exit 1).
        prediction_psi_alert: PSI of the predicted log-duration.
        target_psi_alert: PSI of ``duration_s``, when the new trips carry it.
        rmsle_increase_alert: new RMSLE - reference RMSLE (absolute), overall.
        slice_rmsle_increase_alert: the same per slice with at least ``slice_min_rows`` new rows.
        ks_alert: KS statistic of a numeric feature (off by default: PSI is the decision statistic).
        not_in_verdict: features reported but not judged (they shift with the calendar by construction).
        min_rows: fewer new rows than this after loading is bad input (PSI on a handful of rows is noise).
        rows: at most this many reference rows (training split; test split for RMSLE) and new rows.
        bins / max_categories / epsilon: PSI's decile bins, categorical bins before pooling, share floor.
        top_plots: features shown in ``features.png``.
    """

    psi_warn: float = 0.1
    psi_alert: float = 0.25
    prediction_psi_alert: float | None = 0.25
    target_psi_alert: float | None = 0.25
    rmsle_increase_alert: float | None = 0.05
    slice_rmsle_increase_alert: float | None = None
    slice_min_rows: int = 500
    ks_alert: float | None = None
    not_in_verdict: tuple[str, ...] = ("month", "year_sin", "year_cos")
    min_rows: int = 200
    rows: int = 50_000
    bins: int = stats.BINS
    max_categories: int = stats.MAX_CATEGORIES
    epsilon: float = stats.EPS
    top_plots: int = 6

    def __post_init__(self) -> None:
        if not 0 <= self.psi_warn <= self.psi_alert:
            raise ValueError(f"need 0 <= {self.psi_warn=} <= {self.psi_alert=}")
        if self.bins < 2 or self.max_categories < 1 or self.rows < 1 or not 0 < self.epsilon < 1:
            raise ValueError(
                f"need {self.bins=} >= 2, {self.max_categories=} >= 1, {self.rows=} >= 1, 0 < {self.epsilon=} < 1"
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, **overrides: Any) -> DriftConfig:
        """Defaults, then the YAML file (``path``, else ``configs/drift.yaml`` when present), then the
        ``overrides`` that are not None."""
        from omegaconf import OmegaConf

        values: dict[str, Any] = {}
        file = Path(path) if path is not None else _default_config_file()
        if path is not None and not Path(path).is_file():
            raise DataError("no such drift config file", file=str(path))
        if file is not None:
            loaded = OmegaConf.to_container(OmegaConf.load(file), resolve=True)
            if not isinstance(loaded, dict):
                raise DataError("expected a mapping of settings", file=str(file))
            settings = {str(k): v for k, v in loaded.items()}
            try:
                check_options(cls, settings, "drift")
            except ValueError as e:
                raise DataError(str(e), file=str(file)) from None
            values.update(settings)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "not_in_verdict" in values:
            values["not_in_verdict"] = tuple(values["not_in_verdict"] or ())
        try:
            return cls(**values)
        except (TypeError, ValueError) as e:  # a setting of the wrong type or out of range: bad usage
            raise DataError(f"bad drift settings: {e}", file=str(file) if file else None) from None


def _default_config_file() -> Path | None:
    """``configs/drift.yaml`` of the working directory, else of the source checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (root / CONFIG_FILE).is_file():
            return root / CONFIG_FILE
    return None


@dataclasses.dataclass
class Comparison:
    """The numbers (``result``, JSON-ready) and the raw values the plots draw."""

    result: dict[str, Any]
    new_features: pl.DataFrame
    new_log_pred: np.ndarray
    new_duration: np.ndarray | None


def _seconds(q: Mapping[str, float]) -> dict[str, float]:
    return {k: float(np.expm1(v)) for k, v in q.items()}


def compare(ref: Reference, new: NewData, cfg: DriftConfig, *, seed: int = 0) -> Comparison:
    """Every statistic of the new trips against the reference (no verdict yet: see :func:`judge`)."""
    df = new.df.sample(cfg.rows, seed=seed, shuffle=True) if new.df.height > cfg.rows else new.df
    if df.height < cfg.min_rows:
        raise DataError(
            f"only {df.height:,} usable rows after loading (min_rows={cfg.min_rows}; {new.report.summary()})",
            file=new.path,
        )
    profile = ref.profile
    raw = feature_frame(ref.spec, df)
    features = []
    for name, col in profile.features.items():
        if isinstance(col, NumericProfile):
            r = col.compare(raw[name].to_numpy(), cfg.epsilon)
        else:
            r = col.compare(raw[name], cfg.epsilon, cfg.max_categories)
        features.append({"feature": name, "group": profile.groups.get(name, ""), **r})
    features.sort(key=lambda r: -(r["psi"] if np.isfinite(r["psi"]) else -1.0))

    log_pred = ref.predict(df)
    prediction = profile.prediction.compare(log_pred, cfg.epsilon)
    prediction["seconds_ref"] = _seconds(prediction["quantiles_ref"])
    prediction["seconds_new"] = _seconds(prediction["quantiles_new"])

    target, rmsle, duration = None, None, None
    if new.labeled:
        duration = df["duration_s"].cast(pl.Float64).fill_null(float("nan")).to_numpy()
        if profile.target is not None:
            target = profile.target.compare(duration, cfg.epsilon)
        labeled = np.isfinite(log_target(df))
        overall, slices = slice_rmsle(ref.spec, df.filter(pl.Series(labeled)), log_pred[labeled])
        by_ref = {(s["slice"], s["value"]): s for s in profile.slices}
        for s in slices:
            r0 = by_ref.get((s["slice"], s["value"]))
            s["reference"] = r0["rmsle"] if r0 else None
            s["reference_rows"] = r0["rows"] if r0 else 0
            s["change"] = s["rmsle"] - r0["rmsle"] if r0 else None
        rmsle = {
            "reference": profile.rmsle,
            "reference_rows": profile.eval_rows,
            "new": overall,
            "rows": int(labeled.sum()),
            "change": overall - profile.rmsle if profile.rmsle is not None else None,
            "slices": slices,
        }
    result = {
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        "reference": {
            "kind": ref.kind,
            "path": str(ref.path),
            "rows": profile.rows,
            "eval_rows": profile.eval_rows,
            **{k: v for k, v in ref.info.items() if k not in ("kind", "drop_reports")},
        },
        "new_data": {**new.describe(), "rows_kept": new.df.height, "rows_compared": df.height},
        "features": features,
        "prediction": prediction,
        "target": target,
        "rmsle": rmsle,
    }
    return Comparison(result, raw, log_pred, duration)


def _level(value: float | None, warn: float | None, alert: float | None) -> str:
    if value is None or not np.isfinite(value):
        return "n/a"
    if alert is not None and value >= alert:
        return "alert"
    if warn is not None and value >= warn:
        return "warn"
    return "ok"


def judge(result: dict[str, Any], cfg: DriftConfig) -> dict[str, Any]:
    """Add each check's status, the alerts and warnings, the verdict and the exit code to ``result``."""
    alerts: list[str] = []
    warnings: list[str] = []

    def note(level: str, text: str) -> None:
        (alerts if level == "alert" else warnings if level == "warn" else []).append(text)

    for f in result["features"]:
        level = _level(f["psi"], cfg.psi_warn, cfg.psi_alert)
        if cfg.ks_alert is not None and f["ks"] is not None and f["ks"] >= cfg.ks_alert:
            level = "alert"
        judged = f["feature"] not in cfg.not_in_verdict
        f["status"] = level if judged else f"{level} (not judged)"
        if judged:
            ks = f" (KS {f['ks']:.3f})" if f["ks"] is not None else ""
            unseen = f", {f['unseen_share']:.1%} unseen values" if f.get("unseen_rows") else ""
            note(level, f"feature `{f['feature']}`: PSI {f['psi']:.3f}{ks}{unseen}")
    p = result["prediction"]
    p["status"] = _level(p["psi"], cfg.psi_warn, cfg.prediction_psi_alert)
    note(p["status"], f"predictions: PSI {p['psi']:.3f} (KS {p['ks']:.3f})")
    if result["target"] is not None:
        t = result["target"]
        t["status"] = _level(t["psi"], cfg.psi_warn, cfg.target_psi_alert)
        note(t["status"], f"target duration_s: PSI {t['psi']:.3f} (KS {t['ks']:.3f})")
    r = result["rmsle"]
    if r is not None and r["change"] is not None:
        r["status"] = _level(r["change"], None, cfg.rmsle_increase_alert)
        note(r["status"], f"RMSLE {r['new']:.4f} vs reference {r['reference']:.4f} ({r['change']:+.4f})")
        for s in r["slices"]:
            if s["change"] is not None and s["rows"] >= cfg.slice_min_rows:
                s["status"] = _level(s["change"], None, cfg.slice_rmsle_increase_alert)
                note(
                    s["status"], f"RMSLE of {s['slice']}={s['value']}: {s['rmsle']:.4f} ({s['change']:+.4f})"
                )
    result["alerts"], result["warnings"] = alerts, warnings
    result["verdict"] = "alert" if alerts else "warn" if warnings else "ok"
    result["exit_code"] = EXIT_DRIFT if alerts else EXIT_OK
    return result


def run_drift(
    reference: str | os.PathLike[str],
    new_data: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    fmt: str = "auto",
    zone_table: str | os.PathLike[str] | None = None,
    cfg: DriftConfig | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], Path]:
    """Resolve, load, compare, judge and write the report; returns ``(result, report folder)``."""
    from tabxfer.monitor.report import write_report  # matplotlib is imported only here

    cfg = cfg or DriftConfig.load()
    ref = resolve(reference, rows=cfg.rows, seed=seed, bins=cfg.bins)
    new = load_trips(new_data, fmt=fmt, zone_table=zone_table, features=ref.spec.config)
    cmp = compare(ref, new, cfg, seed=seed)
    judge(cmp.result, cfg)
    folder = Path(out) if out is not None else Path("drift") / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    write_report(folder, cmp, ref.profile, cfg)
    return cmp.result, folder
