"""``tabxfer drift``: the statistics against hand-computed values, and the command end to end on a tiny
model trained on the synthetic city (same distribution -> exit 0; shifted -> exit 1; bad input -> exit 2).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm

from tabxfer.cli import main
from tabxfer.data.synthetic import generate, write_kaggle_csv
from tabxfer.monitor import stats
from tabxfer.monitor.drift import DriftConfig, run_drift
from tabxfer.monitor.profile import CategoricalProfile, NumericProfile
from tabxfer.train import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_transfer import TINY, compose_train

REPO = Path(__file__).resolve().parents[2]
FAST = DriftConfig(top_plots=2)  # fewer histograms where the figures are not the point


# --- the statistics -----------------------------------------------------------------------------------
def test_psi_of_identical_samples_is_zero_and_of_known_shares_matches_the_formula():
    x = np.random.default_rng(0).normal(size=5000)
    edges = stats.quantile_edges(x)
    assert len(edges) == 9  # deciles
    counts = stats.bin_counts(x, edges)
    assert counts.sum() == 5000 and counts[-1] == 0 and abs(counts[:-1] - 500).max() <= 1
    assert stats.psi(counts, counts) == 0.0
    # two bins, 50/50 -> 80/20: (0.8 - 0.5) ln(0.8/0.5) + (0.2 - 0.5) ln(0.2/0.5)
    assert stats.psi([500, 500], [800, 200]) == pytest.approx(
        0.3 * np.log(1.6) + 0.3 * np.log(2.5), rel=1e-12
    )
    # an empty bin is floored at eps, not infinite
    assert stats.psi([1000, 0], [900, 100]) == pytest.approx(
        (0.9 - 1.0) * np.log(0.9) + (0.1 - stats.EPS) * np.log(0.1 / stats.EPS), rel=1e-12
    )


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0])
def test_psi_and_ks_of_a_shifted_normal_match_the_theory(shift):
    rng = np.random.default_rng(1)
    ref, new = rng.normal(size=100_000), rng.normal(shift, 1.0, size=100_000)
    prof = NumericProfile.of(ref)
    got = prof.compare(new)
    # theory on the same bins (the reference's sample deciles): N(0, 1) and N(shift, 1) masses of each
    z = np.concatenate([[-np.inf], prof.edges, [np.inf]])
    p, q = np.diff(norm.cdf(z)), np.diff(norm.cdf(z - shift))
    expected_psi = float(np.sum((q - p) * np.log(q / p)))
    assert got["psi"] == pytest.approx(expected_psi, rel=0.05, abs=0.001)  # sampling sd of the shares: ~1.5 %
    assert got["ks"] == pytest.approx(2 * norm.cdf(shift / 2) - 1, abs=0.008)  # sup |F - G| of two normals
    if shift == 0.0:
        assert got["psi"] < 0.001 and got["ks_p"] > 0.01
    else:
        assert got["ks_p"] < 1e-12
    if shift == 1.0:  # a 1-sigma shift is a major shift by the default thresholds
        assert got["psi"] > DriftConfig().psi_alert


def test_missing_values_are_a_bin_of_their_own():
    ref = np.arange(1000.0)
    new = np.where(np.arange(1000) % 2 == 0, np.nan, np.arange(1000.0))  # half the values gone
    got = NumericProfile.of(ref).compare(new)
    assert got["missing_ref"] == 0.0 and got["missing_new"] == 0.5
    assert got["bins"]["new"][-1] == 500 and got["bins"]["labels"][-1] == "missing"
    # the missing bin alone: 0.5 ln(0.5 / eps), the rest halves: 10 x (0.05 - 0.1) ln(0.5)
    assert got["psi"] == pytest.approx(0.5 * np.log(0.5 / stats.EPS) + 0.5 * np.log(2), rel=0.02)


def test_unseen_categories_are_pooled_and_counted():
    ref = pl.Series("vendor", ["a"] * 600 + ["b"] * 400)
    new = pl.Series("vendor", ["a"] * 500 + ["b"] * 300 + ["zz"] * 150 + ["yy"] * 50)
    got = CategoricalProfile.of(ref).compare(new)
    assert got["unseen_rows"] == 200 and got["unseen_share"] == pytest.approx(0.2)
    assert got["unseen_values"] == {"zz": 150, "yy": 50}
    assert got["bins"]["labels"] == ["a", "b", "<other>"]
    p, q = np.array([0.6, 0.4, stats.EPS]), np.array([0.5, 0.3, 0.2])  # the reference had no other value
    assert got["psi"] == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-9)
    assert got["psi"] > DriftConfig().psi_alert
    # a long-tailed feature (grid cells): other rare values in the same share are no drift, but are counted
    tail = pl.Series("cell", [f"c{i}" for i in range(100)] + ["hub"] * 900)
    again = pl.Series("cell", [f"d{i}" for i in range(100)] + ["hub"] * 900)
    got = CategoricalProfile.of(tail).compare(again)
    assert got["bins"]["labels"] == ["hub", "<other>"] and got["psi"] < 1e-12 and got["unseen_rows"] == 100


# --- end to end ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_run(tmp_path_factory) -> Path:
    """A tiny MLP on 3,000 trips of the synthetic NYC (first half of 2016); its run folder."""
    root = tmp_path_factory.mktemp("drift")
    res = run(
        compose_train(root, "mlp", "data=synthetic", "data.sources.nyc.n=3000", "model=mlp", *TINY["mlp"])
    )
    return Path(res["best_checkpoint"]).parents[1]


@pytest.fixture(scope="module")
def same_trips(tmp_path_factory) -> pl.DataFrame:
    """Other trips of the same simulated city and period (another seed): the same distribution."""
    return generate("nyc", 3000, seed=7, start="2016-01-01", end="2016-07-01")


def _write(df: pl.DataFrame, path: Path) -> Path:
    df.write_parquet(path)
    return path


def test_same_distribution_passes_and_writes_a_complete_report(model_run, same_trips, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")  # the folder is replaced whole
    code = main(
        ["drift", str(model_run), str(_write(same_trips, tmp_path / "new.parquet")), "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "verdict: OK" in printed or "verdict: WARN" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "drift.json",
        "drift_report.md",
        "features.png",
        "predictions.png",
        "psi.png",
    ]
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    res = json.loads((out / "drift.json").read_text())
    assert res["exit_code"] == 0 and res["alerts"] == []
    import tabxfer

    spec = tabxfer.load(str(model_run / "checkpoints" / "best.ckpt")).hparams["spec"]
    names = {f["name"] for f in spec["numeric"]} | {f["name"] for f in spec["categorical"]}
    assert {f["feature"] for f in res["features"]} == names  # every model input compared
    judged = [f for f in res["features"] if f["feature"] not in res["config"]["not_in_verdict"]]
    assert max(f["psi"] for f in judged) < 0.25 and res["prediction"]["psi"] < 0.1
    assert res["new_data"]["format"] == "canonical" and res["new_data"]["drops"]["n_in"] == 3000
    r = res["rmsle"]
    assert r["rows"] > 2900 and abs(r["change"]) < 0.05 and r["reference_rows"] > 250
    assert {s["slice"] for s in r["slices"]} >= {"hour", "weekday", "distance_km", "district", "airport"}
    report = (out / "drift_report.md").read_text()
    assert report.startswith("# Drift report\n\n**Verdict: OK")
    for section in (
        "## Features",
        "## Predictions",
        "## Target",
        "## RMSLE by slice",
        "## Dropped rows",
        "## Thresholds",
    ):
        assert section in report
    for png in ("psi.png", "features.png", "predictions.png"):
        assert f"]({png})" in report


def test_shifted_city_and_slower_trips_fail_naming_what_drifted(model_run, same_trips, tmp_path):
    # 3.3 km further north and twice as slow: space, target and error all move
    shifted = same_trips.with_columns(
        pl.col("pickup_lat") + 0.03, pl.col("dropoff_lat") + 0.03, pl.col("duration_s") * 2.0
    )
    res, out = run_drift(
        model_run, _write(shifted, tmp_path / "shifted.parquet"), out=tmp_path / "r", cfg=FAST
    )
    assert res["verdict"] == "alert" and res["exit_code"] == 1
    by_name = {f["feature"]: f for f in res["features"]}
    assert by_name["pickup_y"]["psi"] > 0.25 and by_name["pickup_y"]["status"] == "alert"
    assert by_name["pickup_y"]["ks"] > 0.2 and by_name["dist_km"]["psi"] < 0.1  # a shift, not a stretch
    assert res["target"]["psi"] > 0.25 and res["rmsle"]["change"] > 0.2
    alerts = "\n".join(res["alerts"])
    assert "`pickup_y`" in alerts and "target duration_s" in alerts and "RMSLE" in alerts
    assert "Past an alert threshold" in (out / "drift_report.md").read_text()


def test_kaggle_csv_is_recognised_and_its_unseen_source_counted(model_run, same_trips, tmp_path):
    csv = write_kaggle_csv(same_trips, tmp_path / "train.csv")
    res, _ = run_drift(model_run, csv, out=tmp_path / "r", cfg=FAST)
    assert res["new_data"]["format"] == "kaggle" and res["new_data"]["labeled"]
    source = next(f for f in res["features"] if f["feature"] == "source")
    # the model only saw the generator's rows ("synthetic"): every Kaggle row is an unseen source
    assert source["unseen_values"] == {"kaggle_nyc": res["new_data"]["rows_compared"]}
    assert source["status"] == "alert" and res["exit_code"] == 1


def test_thresholds_come_from_the_config_file_and_flags(model_run, same_trips, tmp_path, capsys):
    cfg = tmp_path / "drift.yaml"
    cfg.write_text("psi_warn: 0.0\npsi_alert: 0.0\nrows: 1000\n")  # everything alerts
    new = _write(same_trips, tmp_path / "new.parquet")
    assert main(["drift", str(model_run), str(new), "--config", str(cfg), "--out", str(tmp_path / "a")]) == 1
    assert json.loads((tmp_path / "a" / "drift.json").read_text())["new_data"]["rows_compared"] == 1000
    flags = ["--psi-alert", "100", "--prediction-psi-alert", "100", "--rmsle-increase-alert", "100"]
    assert (
        main(["drift", str(model_run), str(new), "--config", str(cfg), *flags, "--out", str(tmp_path / "b")])
        == 0
    )
    capsys.readouterr()


def test_repository_config_holds_the_defaults():
    from omegaconf import OmegaConf

    file = OmegaConf.to_container(OmegaConf.load(REPO / "configs" / "drift.yaml"))
    defaults = dataclasses.asdict(DriftConfig())
    assert {k: (tuple(v) if isinstance(v, list) else v) for k, v in file.items()} == defaults


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_column", ["missing required column 'pickup_lat'", "bad.parquet"]),
        ("garbage_column", ["do not parse as pickup_lat", "column 'pickup_lat'", "bad.csv"]),
        ("unknown_format", ["cannot tell the trip format", "bad.csv", "--format"]),
        ("too_few_rows", ["only 50 usable rows", "bad.parquet"]),
        ("unknown_city", ["unknown city 'atlantis'", "column 'city'", "bad.parquet"]),
        ("no_reference", ["no such file or folder", "nothing_here"]),
        ("bad_threshold", ["bad drift settings", "psi_warn=0.5", "psi_alert=0.25"]),
        ("bad_zone_table", ["zone table not found", "zones.parquet"]),
    ],
)
def test_bad_input_exits_2_naming_the_file_and_column(
    case, expected, model_run, same_trips, tmp_path, capsys
):
    ref, fmt = str(model_run), []
    if case == "missing_column":
        path, fmt = _write(same_trips.drop("pickup_lat"), tmp_path / "bad.parquet"), ["--format", "canonical"]
    elif case == "garbage_column":
        path = tmp_path / "bad.csv"
        same_trips.with_columns(pl.lit("north").alias("pickup_lat")).write_csv(path)
    elif case == "unknown_format":
        path = tmp_path / "bad.csv"
        pl.DataFrame({"when": ["2016-01-01"], "where": ["here"]}).write_csv(path)
    elif case == "too_few_rows":
        path = _write(same_trips.head(50), tmp_path / "bad.parquet")
    elif case == "unknown_city":
        path = _write(same_trips.with_columns(pl.lit("atlantis").alias("city")), tmp_path / "bad.parquet")
    elif case == "no_reference":
        path, ref = _write(same_trips, tmp_path / "ok.parquet"), str(tmp_path / "nothing_here")
    elif case == "bad_threshold":  # warn above alert
        path, fmt = _write(same_trips, tmp_path / "ok.parquet"), ["--psi-warn", "0.5"]
    else:  # a zone-id TLC file, with a zone table that is not there
        t = {
            "lpep_pickup_datetime": ["2023-01-01 00:00:00"],
            "lpep_dropoff_datetime": ["2023-01-01 00:10:00"],
        }
        path = _write(pl.DataFrame({**t, "PULocationID": [1], "DOLocationID": [2]}), tmp_path / "t.parquet")
        fmt = ["--zone-table", str(tmp_path / "zones.parquet")]
    code = main(["drift", ref, str(path), "--out", str(tmp_path / "r"), *fmt])
    err = capsys.readouterr().err
    assert code == 2
    for text in expected:
        assert text in err, err
    assert not (tmp_path / "r").exists()  # nothing half-written


# --- real data -----------------------------------------------------------------------------------------
@pytest.mark.real_data
def test_two_real_months_of_green_taxis(shared_data, tmp_path):
    from factories import require_dataset

    green = require_dataset(shared_data, "nyc_tlc_green_trips")
    require_dataset(shared_data, "nyc_tlc_taxi_zones")
    res = run(
        compose_train(
            tmp_path,
            "green",
            "data=nyc_green",
            "data.month=2023-01",
            f"paths.data_dir={shared_data}",
            "data.features.context=false",  # an MLP does not read it; building it costs seconds
            "datamodule.train_limit=10000",
            "model=mlp",
            *TINY["mlp"],
        )
    )
    ckpt = res["best_checkpoint"]
    cfg = DriftConfig(rows=10_000, top_plots=2)
    near, _ = run_drift(ckpt, green / "green_tripdata_2023-02.parquet", out=tmp_path / "near", cfg=cfg)
    far, out = run_drift(ckpt, green / "green_tripdata_2021-01.parquet", out=tmp_path / "far", cfg=cfg)
    assert near["new_data"]["format"] == "tlc" and near["new_data"]["drops"]["n_in"] == 64_809

    def judged(r):
        return {f["feature"]: f for f in r["features"] if f["feature"] not in r["config"]["not_in_verdict"]}

    # the next month: no input feature moves; January 2021 (street-hail app trips without passenger
    # counts, pandemic-era geography, durations cut to 1-60 min by the uploader) does
    assert max(f["psi"] for f in judged(near).values()) < 0.1
    pc = judged(far)["passenger_count"]
    assert pc["missing_new"] > 0.3 > pc["missing_ref"] and pc["status"] == "alert"
    assert far["exit_code"] == 1 and far["target"]["quantiles_new"]["p99"] <= 3600
    assert (out / "drift_report.md").read_text().count("passenger_count") >= 2
