"""The drift report folder: ``drift_report.md`` (verdict first), ``drift.json`` and three PNG figures.

The folder is written under a temporary name next to its destination and renamed into place, so a
scheduler never reads half a report; an existing folder of the same name is replaced whole.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tabxfer.evaluation.slices import markdown_table
from tabxfer.io import publish_dir
from tabxfer.monitor.profile import CategoricalProfile, NumericProfile, ReferenceProfile

if TYPE_CHECKING:
    from tabxfer.monitor.drift import Comparison, DriftConfig

COLORS = {"ok": "#4c9a2a", "warn": "#e69f00", "alert": "#c0392b", "n/a": "#999999"}
REF_COLOR, NEW_COLOR = "#4a6fa5", "#e4572e"


def _f(v: Any, fmt: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, fmt)


def _status(s: str) -> str:
    return {"alert": "**ALERT**", "warn": "warn"}.get(s, s)


def most_drifted(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Features by PSI, the judged ones first (a month the model never saw is expected, and known)."""
    return sorted(result["features"], key=lambda f: "not judged" in f["status"])  # stable: PSI order kept


def markdown(result: dict[str, Any]) -> str:
    """The report text (the figures are referenced by file name)."""
    ref, new, cfg = result["reference"], result["new_data"], result["config"]
    verdict = {"ok": "OK", "warn": "OK with warnings", "alert": "DRIFT: past alert thresholds"}[
        result["verdict"]
    ]
    drops = new["drops"]
    dropped = drops["n_in"] - drops["n_out"]
    lines = [
        "# Drift report",
        "",
        f"**Verdict: {verdict}** (exit code {result['exit_code']})",
        "",
    ]
    if result["alerts"]:
        lines += ["Past an alert threshold:", "", *[f"- {a}" for a in result["alerts"]], ""]
    if result["warnings"]:
        lines += [
            "Warnings (reported, exit code unaffected):",
            "",
            *[f"- {w}" for w in result["warnings"]],
            "",
        ]
    r = result["rmsle"]
    p = result["prediction"]
    lines += [
        "| | reference | new data |",
        "|---|---|---|",
        f"| source | {ref['kind']} `{ref['path']}` ({ref.get('model')}; data `{ref.get('data')}`) | "
        f"`{new['path']}` ({new['format']}) |",
        f"| rows | {ref['rows']:,} training rows, {ref['eval_rows']:,} held-out rows for RMSLE | "
        f"{drops['n_in']:,} read, {dropped:,} dropped ({dropped / max(drops['n_in'], 1):.2%}), "
        f"{new['rows_compared']:,} compared |",
        f"| median predicted duration | {p['seconds_ref']['p50']:.0f} s | {p['seconds_new']['p50']:.0f} s |",
    ]
    if r is not None:
        lines.append(
            f"| RMSLE | {_f(r['reference'], '.4f')} | {_f(r['new'], '.4f')} (change {_f(r['change'], '+.4f')}) |"
        )
    else:
        lines.append("| RMSLE | - | no durations in the new data |")
    split = ref.get("split") or {}
    if r is not None and split.get("kind") == "random":
        lines += [
            "",
            "The reference RMSLE comes from a random split: its held-out rows share days (weather, events) "
            "with the training rows, which flatters it; a model trained with `data/split=time` gives a "
            "reference measured on a later period, as new data is.",
        ]
    lines += ["", f"Created {result['created']}. Thresholds at the end.", ""]

    lines += [
        "## Features (before scaling), by PSI",
        "",
        "![PSI by feature](psi.png)",
        "",
        "| feature | group | kind | PSI | KS | KS p | missing ref / new | unseen rows | status |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for f in result["features"]:
        unseen = f"{f['unseen_rows']:,} ({f['unseen_share']:.1%})" if f.get("unseen_rows") else "-"
        lines.append(
            f"| `{f['feature']}` | {f['group']} | {f['kind']} | {_f(f['psi'])} | {_f(f['ks'])} | "
            f"{_f(f['ks_p'], '.2g')} | {f['missing_ref']:.1%} / {f['missing_new']:.1%} | {unseen} | "
            f"{_status(f['status'])} |"
        )
    lines += ["", "![Most drifted features, reference vs new](features.png)", ""]
    for f in most_drifted(result)[:3]:
        b = f["bins"]
        ref_n, new_n = max(sum(b["ref"]), 1), max(sum(b["new"]), 1)
        lines += [
            f"`{f['feature']}` by bin (PSI {_f(f['psi'])}):",
            "",
            "| bin | reference | new |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {lab} | {rc / ref_n:.1%} | {nc / new_n:.1%} |"
            for lab, rc, nc in zip(b["labels"], b["ref"], b["new"], strict=True)
            if rc or nc
        ]
        if f.get("unseen_values"):
            lines.append(
                f"\nUnseen values (count): {', '.join(f'{k} ({v:,})' for k, v in f['unseen_values'].items())}"
            )
        lines.append("")

    lines += [
        "## Predictions",
        "",
        f"Predicted log-duration: PSI {_f(p['psi'])}, KS {_f(p['ks'])} (p {_f(p['ks_p'], '.2g')}), "
        f"status {_status(p['status'])}.",
        "",
        "![Predictions and durations, reference vs new](predictions.png)",
        "",
        "| quantile | reference, s | new, s | change |",
        "|---|---:|---:|---:|",
    ]
    for q, v0 in p["seconds_ref"].items():
        v1 = p["seconds_new"][q]
        lines.append(f"| {q} | {v0:,.0f} | {v1:,.0f} | {(v1 / v0 - 1) if v0 else float('nan'):+.1%} |")
    t = result["target"]
    if t is not None:
        lines += [
            "",
            "## Target (`duration_s`)",
            "",
            f"PSI {_f(t['psi'])}, KS {_f(t['ks'])} (p {_f(t['ks_p'], '.2g')}), status {_status(t['status'])}.",
            "",
            "| quantile | reference, s | new, s |",
            "|---|---:|---:|",
            *[f"| {q} | {v:,.0f} | {t['quantiles_new'][q]:,.0f} |" for q, v in t["quantiles_ref"].items()],
        ]
    if r is not None:
        lines += [
            "",
            "## RMSLE by slice",
            "",
            f"New data {_f(r['new'], '.4f')} on {r['rows']:,} labeled rows; reference {_f(r['reference'], '.4f')} "
            f"on {r['reference_rows']:,} held-out rows of the training data; status {_status(r.get('status', 'n/a'))}. "
            "`vs reference`: change of the slice's RMSLE (`new` = a slice the reference rows lack).",
            "",
            markdown_table(
                r["slices"],
                reference={
                    (s["slice"], s["value"]): s["reference"]
                    for s in r["slices"]
                    if s["reference"] is not None
                },
            ),
        ]
    lines += [
        "",
        "## Dropped rows",
        "",
        f"{drops['source']}: {drops['n_in']:,} rows read, {drops['n_out']:,} kept.",
    ]
    if drops["dropped"]:
        lines += ["", "| reason | rows | example (file, row, value) |", "|---|---:|---|"]
        for reason, n in sorted(drops["dropped"].items(), key=lambda kv: -kv[1]):
            ex = (drops["examples"].get(reason) or [None])[0]
            where = f"{Path(ex[0]).name}, {ex[1]}, {ex[2]!r}" if ex else ""
            lines.append(f"| {reason} | {n:,} | {where} |")
    lines += ["", "## Thresholds", "", "| setting | value |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in cfg.items()]
    return "\n".join(lines) + "\n"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a scheduler
    import matplotlib.pyplot as plt

    return plt


def plot_psi(result: dict[str, Any], path: Path, cfg: DriftConfig) -> None:
    plt = _plt()
    feats = [f for f in result["features"] if f["psi"] is not None and np.isfinite(f["psi"])][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(feats) + 1.5))
    colors = [COLORS.get(f["status"], COLORS["n/a"]) for f in feats]  # "... (not judged)": grey
    ax.barh([f["feature"] for f in feats], [f["psi"] for f in feats], color=colors)
    ax.axvline(cfg.psi_warn, color=COLORS["warn"], ls="--", lw=1, label=f"warn {cfg.psi_warn}")
    ax.axvline(cfg.psi_alert, color=COLORS["alert"], ls="--", lw=1, label=f"alert {cfg.psi_alert}")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("PSI (grey: not judged)")
    ax.set_title("Feature drift: PSI, new data vs training rows")
    ax.legend(loc="lower right", fontsize=8)
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.28, right=0.97, bottom=0.6 / height, top=1 - 0.4 / height)
    fig.savefig(path, dpi=110)
    plt.close(fig)


DURATION_TICKS = {
    30: "30 s",
    60: "1 min",
    180: "3 min",
    600: "10 min",
    1800: "30 min",
    3600: "1 h",
    10800: "3 h",
}
DURATION_TICKS_FINE = {
    **DURATION_TICKS,
    120: "2 min",
    300: "5 min",
    420: "7 min",
    900: "15 min",
    1200: "20 min",
    2700: "45 min",
    7200: "2 h",
}


def _hist(ax: Any, ref: np.ndarray, new: np.ndarray, seconds: bool = False) -> None:
    """Share of rows per bin over the central 99 % of both samples (tails left out, not piled up at the
    edges). ``seconds``: durations, binned and drawn on log10 with time labels. Step-filled outlines on a
    linear axis: a log axis and per-bar patches made a figure cost seconds."""
    ref, new = ref[np.isfinite(ref)], new[np.isfinite(new)]
    if seconds:
        ref, new = np.log10(np.maximum(ref, 1.0)), np.log10(np.maximum(new, 1.0))
    if ref.size == 0 or new.size == 0:
        ax.text(0.5, 0.5, "no values", ha="center", transform=ax.transAxes)
        return
    lo, hi = np.quantile(np.concatenate([ref, new]), [0.005, 0.995])
    edges = np.linspace(lo, hi if hi > lo else lo + 1, 41)
    for x, color, label in ((ref, REF_COLOR, "reference"), (new, NEW_COLOR, "new")):
        w = np.full(x.size, 1.0 / x.size)
        ax.hist(x, edges, weights=w, alpha=0.5, color=color, label=label, histtype="stepfilled")
    if seconds:
        marks = DURATION_TICKS if hi - lo > 1.2 else DURATION_TICKS_FINE  # decades shown
        ticks = {np.log10(k): v for k, v in sorted(marks.items()) if lo <= np.log10(k) <= hi}
        ax.set_xticks(list(ticks), list(ticks.values()))
    ax.set_ylabel("share of rows")


def plot_features(cmp: Comparison, profile: ReferenceProfile, path: Path, cfg: DriftConfig) -> None:
    plt = _plt()
    top = most_drifted(cmp.result)[: cfg.top_plots]
    cols = 3
    rows = max(1, math.ceil(len(top) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[len(top) :]:
        ax.axis("off")
    for ax, f in zip(axes.flat, top, strict=False):
        col = profile.features[f["feature"]]
        if isinstance(col, NumericProfile):
            _hist(ax, col.sample, cmp.new_features[f["feature"]].to_numpy())
        elif isinstance(col, CategoricalProfile):
            b = f["bins"]
            keep = [i for i in np.argsort([-(r + n) for r, n in zip(b["ref"], b["new"], strict=True)])[:12]]
            x = np.arange(len(keep))
            ref_n, new_n = max(sum(b["ref"]), 1), max(sum(b["new"]), 1)
            ax.bar(x - 0.2, [b["ref"][i] / ref_n for i in keep], 0.4, color=REF_COLOR, label="reference")
            ax.bar(x + 0.2, [b["new"][i] / new_n for i in keep], 0.4, color=NEW_COLOR, label="new")
            ax.set_xticks(x, [str(b["labels"][i])[:10] for i in keep], rotation=60, fontsize=7)
            ax.set_ylabel("share")
        missing = ""
        if max(f["missing_ref"], f["missing_new"]) > 0.005:  # not in the histogram: say it in the title
            missing = f"\nmissing {f['missing_ref']:.1%} -> {f['missing_new']:.1%}"
        ax.set_title(f"{f['feature']}  PSI {f['psi']:.3f}{missing}", fontsize=9)
        ax.legend(fontsize=7)
    height = fig.get_figheight()  # inches: margins for two-line titles and rotated labels
    fig.subplots_adjust(
        left=0.06, right=0.98, bottom=0.6 / height, top=1 - 0.5 / height, wspace=0.3, hspace=0.8
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_predictions(cmp: Comparison, profile: ReferenceProfile, path: Path) -> None:
    plt = _plt()
    target = cmp.new_duration is not None and profile.target is not None
    fig, axes = plt.subplots(1, 2 if target else 1, figsize=(11 if target else 5.5, 3.6), squeeze=False)
    ax = axes[0, 0]
    _hist(ax, np.expm1(profile.prediction.sample), np.expm1(cmp.new_log_pred), seconds=True)
    ax.set_title(f"predicted duration  PSI {cmp.result['prediction']['psi']:.3f}", fontsize=10)
    ax.legend(fontsize=8)
    if target and profile.target is not None and cmp.new_duration is not None:
        ax = axes[0, 1]
        _hist(ax, profile.target.sample, cmp.new_duration, seconds=True)
        ax.set_title(f"actual duration  PSI {cmp.result['target']['psi']:.3f}", fontsize=10)
        ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.9, wspace=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, cmp: Comparison, profile: ReferenceProfile, cfg: DriftConfig) -> Path:
    """Write the report folder ``out`` atomically (temporary folder + rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plot_psi(cmp.result, tmp / "psi.png", cfg)
        plot_features(cmp, profile, tmp / "features.png", cfg)
        plot_predictions(cmp, profile, tmp / "predictions.png")
        (tmp / "drift.json").write_text(json.dumps(_finite(cmp.result), indent=1, default=_json_default))
        (tmp / "drift_report.md").write_text(markdown(cmp.result))
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _finite(v: Any) -> Any:
    """NaN and infinities as null: JSON has no NaN (Python writes it, strict readers reject it)."""
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite(x) for x in v]
    if isinstance(v, float | np.floating) and not math.isfinite(v):
        return None
    return v


def _json_default(v: Any) -> Any:
    if isinstance(v, np.integer | np.floating):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
