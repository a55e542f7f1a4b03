"""ONNX artifacts: every model x every quantization, exported from a trained checkpoint and verified on
held-out rows (raw fields in, duration out), and the artifact run by a process with onnxruntime and numpy
only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from tabxfer.export.artifact import FP32_TOL, export_checkpoint
from tabxfer.export.quantize import QUANTIZATIONS
from tabxfer.train import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_transfer import DEEP, TINY, compose_train

EXPORT_TINY = {**TINY, "tft": [*TINY["tft"], "data.features.context=false"]}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """One trained tiny model per architecture, exported with every quantization (module-scoped: the
    dynamo exporter takes seconds per model)."""
    root = tmp_path_factory.mktemp("export")
    out = {}
    for model in DEEP:
        res = run(
            compose_train(
                root,
                model,
                "data=synthetic",
                "data.sources.nyc.n=3000",
                f"model={model}",
                *EXPORT_TINY[model],
            )
        )
        art = root / model / "export"
        rep = export_checkpoint(res["best_checkpoint"], art, quantize="all", rows=600, calibration_rows=512)
        out[model] = (art, rep)
    return out


@pytest.mark.parametrize("model", DEEP)
def test_every_quantization_round_trips(model, artifacts):
    art, rep = artifacts[model]
    assert list(rep["variants"]) == list(QUANTIZATIONS)
    fp32 = rep["variants"]["none"]
    # fp32: the graph on raw fields agrees with the torch model on polars features, at every batch size
    for b, d in fp32["max_abs_diff_log_by_batch"].items():
        assert d <= FP32_TOL, (model, b, d)
    for mode, v in rep["variants"].items():
        assert (art / v["file"]).is_file()
        assert np.isfinite(v["rmsle"]) and v["checked_providers"] == ["CPUExecutionProvider"]
        proto = onnx.load(str(art / v["file"]))
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["tabxfer.quantization"] == mode
        assert json.loads(meta["tabxfer.inputs"])[0]["name"] == "pickup_ts"
        assert meta["tabxfer.data_fingerprint"] and meta["tabxfer.model_fingerprint"]
        ops = {n.op_type for n in proto.graph.node}
        elem = {i.data_type for i in proto.graph.initializer}
        if mode == "dynamic-int8":  # int8 weights really in the graph
            assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, ops
        if mode == "static-int8":
            assert {"QuantizeLinear", "DequantizeLinear"} <= ops and onnx.TensorProto.INT8 in elem
        if mode == "fp16":
            assert onnx.TensorProto.FLOAT16 in elem
        if mode != "none":  # its accuracy change is measured (tiny, barely trained models: a loose bound)
            assert abs(v["rmsle_delta"]) < 0.05, (model, mode, v["rmsle_delta"])
    card = (art / "model_card.md").read_text()
    assert "## Limitations" in card and "| city |" in card


FRESH = r"""
import builtins, sys
real = builtins.__import__
def guard(name, *a, **k):
    if name.split(".")[0] in ("torch", "polars", "tabxfer", "pandas", "lightning", "pytorch_lightning"):
        raise ImportError("the artifact must not need " + name)
    return real(name, *a, **k)
builtins.__import__ = guard
art = sys.argv[1]
sys.path.insert(0, art)
import numpy as np, serve
sess = serve.session(art + "/model.onnx", "cpu")
cols = serve.read_csv(art + "/example_input.csv")
for n in (1, 7, len(cols["pickup_ts"])):
    pred = serve.predict(sess, {k: v[:n] for k, v in cols.items()})
want = serve.read_csv(art + "/example_output.csv")["log_duration_torch"].astype(float)
print(float(np.abs(pred["log_duration"] - want).max()))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "polars", "tabxfer")))
"""


@pytest.mark.parametrize("model", ["mlp", "tabnet"])
def test_artifact_runs_with_onnxruntime_and_numpy_only(model, artifacts, tmp_path):
    art, _ = artifacts[model]
    out = subprocess.run(
        [sys.executable, "-I", "-c", FRESH, str(art)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    diff, mods = out.stdout.strip().splitlines()
    assert float(diff) <= FP32_TOL and mods == "[]"


def test_predict_cli_and_serve_script(artifacts, tmp_path):
    from tabxfer.cli import main

    art, _ = artifacts["wide_deep"]
    dst = tmp_path / "pred.parquet"
    assert (
        main(["predict", str(art / "model.dynamic-int8.onnx"), str(art / "example_input.csv"), str(dst)]) == 0
    )
    import polars as pl

    got = pl.read_parquet(dst)
    assert got.columns == ["duration_s", "log_duration"] and got.height == 16
    np.testing.assert_allclose(
        np.expm1(got["log_duration"].to_numpy()), got["duration_s"].to_numpy(), rtol=1e-4
    )
    out = subprocess.run(
        [
            sys.executable,
            str(art / "serve.py"),
            str(art / "model.onnx"),
            str(art / "example_input.csv"),
            str(tmp_path / "p.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p.csv").read_text().startswith("duration_s,log_duration")


def test_drift_against_an_artifact_reads_its_profile_not_the_training_data(artifacts, tmp_path, monkeypatch):
    """``reference_profile.json`` makes the artifact enough for ``tabxfer drift``; its predictions come from
    the ONNX graph and agree with the checkpoint's."""
    import shutil

    from tabxfer.data.synthetic import generate
    from tabxfer.monitor.drift import DriftConfig, run_drift
    from tabxfer.monitor.profile import ReferenceProfile

    art, rep = artifacts["mlp"]
    profile = ReferenceProfile.from_dict(json.loads((art / "reference_profile.json").read_text()))
    assert profile.rmsle == pytest.approx(rep["rmsle_torch"], abs=1e-9)  # the same held-out rows
    assert profile.eval_rows == rep["rows_verified"] and profile.rows > 2000
    assert {s["slice"] for s in profile.slices} >= {"hour", "distance_km", "district"}
    new = tmp_path / "new.parquet"
    generate("nyc", 2000, seed=9).write_parquet(new)
    cfg = DriftConfig(top_plots=1)
    ckpt_res, _ = run_drift(rep["checkpoint"], new, out=tmp_path / "ckpt", cfg=cfg)

    def no_training_data(*a, **k):
        raise AssertionError("drift against an artifact reloaded the training data")

    with monkeypatch.context() as m:
        m.setattr("tabxfer.export.artifact.held_out", no_training_data)
        res, out = run_drift(art, new, out=tmp_path / "art", cfg=cfg)
        with pytest.raises(AssertionError, match="reloaded the training data"):  # the guard is live
            old = tmp_path / "old_artifact"
            shutil.copytree(art, old)
            (old / "reference_profile.json").unlink()
            run_drift(old, new, out=tmp_path / "old", cfg=cfg)
    assert res["reference"]["kind"] == "artifact" and res["exit_code"] == 0, res["alerts"]
    assert (out / "drift_report.md").read_text().startswith("# Drift report")
    for q, v in ckpt_res["prediction"]["quantiles_new"].items():  # graph vs torch on the same new rows
        assert res["prediction"]["quantiles_new"][q] == pytest.approx(v, abs=FP32_TOL)
    assert res["rmsle"]["new"] == pytest.approx(ckpt_res["rmsle"]["new"], abs=FP32_TOL)
    # an artifact exported before profiles existed: its checkpoint's rows, found through report.json
    fallback, _ = run_drift(old, new, out=tmp_path / "old", cfg=cfg)
    assert fallback["reference"]["profile"].startswith("rebuilt from")
    assert fallback["prediction"]["quantiles_new"] == res["prediction"]["quantiles_new"]
