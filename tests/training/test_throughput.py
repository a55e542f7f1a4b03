"""scripts/bench_throughput.py compares like with like: tabxfer's TabNet and pytorch-tabnet's
``TabNetRegressor.fit`` train the same network on the same rows (timings are the benchmark's, not tested)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_both_sides_train_the_same_network_on_the_same_rows(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    cmd = [
        sys.executable,
        "scripts/bench_throughput.py",
        "--data",
        "synthetic",
        "--models",
        "tabnet",
        "mlp",
        "--train-rows",
        "1500",
        "--batch-size",
        "512",
        "--epochs",
        "2",
        "--accuracy-epochs",
        "2",
        "--out",
        str(out),
        "--extra",
        "data.sources.nyc.n=3000",
        f"paths.output_dir={tmp_path / 'run'}",
    ]
    env = {**os.environ, "TABXFER_CACHE_DIR": str(tmp_path / "cache"), "WANDB_MODE": "disabled"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {(r["model"], r["impl"]): r for r in result["results"]}
    assert set(rows) == {("tabnet", "tabxfer"), ("tabnet", "pytorch_tabnet"), ("mlp", "tabxfer")}
    ours, theirs = rows["tabnet", "tabxfer"], rows["tabnet", "pytorch_tabnet"]
    assert ours["train_rows"] == theirs["train_rows"] == 1500
    # the same network: the counts differ by the head's bias (ours) and an unused BatchNorm (theirs:
    # TabNetNoEmbeddings.initial_bn, 2 per embedded column; the encoder has its own)
    assert abs(ours["params"] - theirs["params"]) <= 0.01 * theirs["params"]
    for r in rows.values():
        assert len(r["epoch_seconds"]) == 2 and r["rows_per_s"] > 0
    assert "TabNet, tabxfer" in proc.stdout and "pytorch-tabnet" in proc.stdout
    accuracy = result["tabnet_accuracy"]
    assert set(accuracy) == {"tabxfer", "pytorch_tabnet"}
    for a in accuracy.values():  # both tested on the same split: an RMSLE of log1p durations, not of z-scores
        assert 0.1 < a["test_rmsle"] < 3.0 and 1 <= a["epochs"] <= 2
