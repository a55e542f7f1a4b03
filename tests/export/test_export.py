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
import polars as pl
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from tabxfer.export import blocks
from tabxfer.export.artifact import FP32_TOL, export_checkpoint
from tabxfer.export.quantize import QUANTIZATIONS, weight_matmuls
from tabxfer.train import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from test_transfer import DEEP, TINY, compose_train


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
                *TINY[model],  # TFT reads the hourly context (the default data config)
            )
        )
        art = root / model / "export"
        # TFT (with the context) in row blocks: its round trip, fresh-process run and context tests then
        # run the Loop-wrapped graphs (tiny models are too narrow for blocks to be chosen)
        rows = 64 if model == "tft" else None
        rep = export_checkpoint(
            res["best_checkpoint"], art, quantize="all", rows=600, calibration_rows=512, block_rows=rows
        )
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
        rows = 64 if model == "tft" and mode != "fp16" else 0  # fp16 (for GPUs) runs batches whole
        assert v["block_rows"] == rows and meta["tabxfer.block_rows"] == str(rows)
        assert blocks.is_blocked(proto) == bool(rows)
        proto = blocks.whole(proto)
        assert json.loads(meta["tabxfer.inputs"])[0]["name"] == "pickup_ts"
        assert meta["tabxfer.data_fingerprint"] and meta["tabxfer.model_fingerprint"]
        ops = {n.op_type for n in proto.graph.node}
        assert "Cos" not in ops  # float64 Cos has no kernel before onnxruntime 1.29 (graph.cos64)
        elem = {i.data_type for i in proto.graph.initializer}
        if mode == "dynamic-int8":  # int8 weights really in the graph, but not in the last layer
            assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops, ops
            last = weight_matmuls(blocks.whole(onnx.load(str(art / "model.onnx"))))[-1]
            assert not [
                n.name for n in proto.graph.node if n.name.startswith(last) and "quant" in n.name.lower()
            ]
            if model == "tft":  # its LSTM weights are initializers (fold_layout_constants): int8 too
                assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops, ops
        if mode == "static-int8":
            assert {"QuantizeLinear", "DequantizeLinear"} <= ops and onnx.TensorProto.INT8 in elem
        if mode == "fp16":
            assert onnx.TensorProto.FLOAT16 in elem
        if mode != "none":  # its accuracy change is measured (tiny, barely trained models: a loose bound)
            assert abs(v["rmsle_delta"]) < 0.05, (model, mode, v["rmsle_delta"])
    card = (art / "model_card.md").read_text()
    assert "## Limitations" in card and "| city |" in card
    opset = 23 if model in ("ft_transformer", "tab_transformer") else 18  # the ONNX Attention node
    assert rep["onnx_opset"] == opset and f"ONNX opset {opset}: onnxruntime >= " in card


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
import os, numpy as np, serve
sess = serve.session(art + "/model.onnx", "cpu")
cols = serve.read_csv(art + "/example_input.csv")
if os.path.exists(art + "/example_context.npy"):  # a model that reads the hourly context (TFT)
    cols["context"] = np.load(art + "/example_context.npy")
for n in (1, 7, len(cols["pickup_ts"])):
    pred = serve.predict(sess, {k: v[:n] for k, v in cols.items()})
want = serve.read_csv(art + "/example_output.csv")["log_duration_torch"].astype(float)
print(float(np.abs(pred["log_duration"] - want).max()))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "polars", "tabxfer")))
"""


@pytest.mark.parametrize("model", ["mlp", "tabnet", "tft"])
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


def test_tft_context_is_an_input_that_matters_and_history_rebuilds_it(artifacts, tmp_path):
    """The TFT graph takes the raw hourly context; the numpy-only ``context_from_history`` shipped in
    serve.py rebuilds, from the training trips, exactly the context the cache trained the model on."""
    import polars as pl

    from tabxfer.export import serve
    from tabxfer.export.artifact import held_out
    from tabxfer.features.spec import FeatureSpec
    from tabxfer.train import load

    art, rep = artifacts["tft"]
    sess = serve.session(art / "model.onnx", "cpu")
    schema = {s["name"]: s for s in serve.input_schema(sess)}
    assert schema["context"]["shape"] == ["batch", 24, 4]
    spec = serve.feature_spec(sess)
    assert spec["context"]["hours"] == 24 and len(spec["context"]["mean"]) == 4

    # every row of the training data, each with the context the cache built for it (raw units)
    config = load(rep["checkpoint"]).hparams["meta"]["config"]
    everything = held_out(
        config, dict.fromkeys(("train", "val", "test"), 10**9), spec=FeatureSpec.from_dict(spec)
    )
    history = pl.concat(list(everything.values()))
    trips = everything["test"]

    def cols(df: pl.DataFrame) -> dict[str, np.ndarray]:
        c = {
            k: df[k].to_numpy()
            for k in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon", "duration_s")
        }
        return c | {"pickup_ts": df["pickup_time"].dt.epoch("s").to_numpy(), "city": df["city"].to_numpy()}

    rebuilt = serve.context_from_history(spec, cols(trips), cols(history))
    want = np.stack(trips["__ctx_raw"].to_numpy())
    assert rebuilt.shape == want.shape == (trips.height, 24, 4)
    np.testing.assert_allclose(rebuilt, want, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert np.isfinite(want[..., 1]).mean() > 0.2 and np.isnan(want).any()  # real speeds, and unknowns

    # the context changes the prediction: the graph really reads it
    feeds = serve.read_csv(art / "example_input.csv")
    ctx = np.load(art / "example_context.npy")
    base = serve.predict(sess, {**feeds, "context": ctx})["log_duration"]
    want_out = serve.read_csv(art / "example_output.csv")["log_duration_torch"].astype(float)
    assert np.abs(base - want_out).max() <= FP32_TOL
    busier = ctx.copy()
    busier[..., 0::2] *= 10  # ten times the completed trips in every hour
    assert np.abs(serve.predict(sess, {**feeds, "context": busier})["log_duration"] - base).max() > 1e-3
    with pytest.raises(KeyError, match="context"):
        serve.predict(sess, feeds)  # a trip without its context is refused by name

    # the command line takes the context as a .npy file
    script = [sys.executable, str(art / "serve.py"), str(art / "model.onnx"), str(art / "example_input.csv")]
    out = subprocess.run([*script, str(tmp_path / "p.csv"), "--context", str(art / "example_context.npy")],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    got = serve.read_csv(tmp_path / "p.csv")["log_duration"].astype(float)
    np.testing.assert_allclose(got, base, rtol=1e-5)
    out = subprocess.run([*script, str(tmp_path / "q.csv")], capture_output=True, text=True)
    assert out.returncode == 2 and "context" in out.stderr

    from tabxfer.monitor.reference import BadReference, from_artifact

    with pytest.raises(BadReference, match="hourly context"):  # drift: new trips carry no context
        from_artifact(art, rows=100, seed=0, bins=10)


def test_context_flat_features_export(tmp_path):
    """An MLP with ``context_flat`` features: the graph derives them from the raw context input, as the
    cache builder did (fp32 parity), and they matter."""
    from tabxfer.export import serve

    res = run(compose_train(tmp_path, "mlp", "data=synthetic", "data.sources.nyc.n=3000", "model=mlp",
                            *TINY["mlp"], "data.features.context_flat=true"))  # fmt: skip
    art = tmp_path / "export"
    rep = export_checkpoint(res["best_checkpoint"], art, quantize="none", rows=600)
    assert max(rep["variants"]["none"]["max_abs_diff_log_by_batch"].values()) <= FP32_TOL
    sess = serve.session(art / "model.onnx", "cpu")
    assert "ctx_city_speed_24h" in [f["name"] for f in serve.feature_spec(sess)["numeric"]]
    feeds, ctx = serve.read_csv(art / "example_input.csv"), np.load(art / "example_context.npy")
    base = serve.predict(sess, {**feeds, "context": ctx})["log_duration"]
    slower = ctx.copy()
    slower[..., 1::2] -= 1.0  # every hour's mean log speed lower
    assert np.abs(serve.predict(sess, {**feeds, "context": slower})["log_duration"] - base).max() > 1e-4


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


def test_drift_names_the_trips_an_artifact_refuses(artifacts):
    """Rows that reach an artifact's input check and fail it are bad input (``DataError``, exit 2) with the
    input and row named, not a traceback."""
    from tabxfer.data.schema import DataError
    from tabxfer.data.synthetic import generate
    from tabxfer.monitor.reference import resolve

    ref = resolve(artifacts["mlp"][0])
    trips = generate("nyc", 50, seed=3)
    assert np.isfinite(ref.predict(trips)).all()
    row7 = pl.int_range(pl.len()) == 7
    bad = trips.with_columns(
        pl.when(row7).then(99).otherwise(pl.col("passenger_count")).alias("passenger_count")
    )
    with pytest.raises(DataError, match=r"refuses trips(.|\n)*passenger_count(.|\n)*row 7"):
        ref.predict(bad)


def test_a_wrong_graph_is_refused_and_noise_is_not_an_excuse(tmp_path, monkeypatch):
    """A graph 1 % off on one feature's scale fails the fp32 check and nothing is written; the float32
    noise that excuses a sensitive row (``_torch_noise``) is tiny for a smooth model, so it cannot
    excuse that error."""
    from tabxfer.export import artifact
    from tabxfer.train import load

    res = run(compose_train(tmp_path, "mlp", "data=synthetic", "data.sources.nyc.n=3000", "model=mlp",
                            *TINY["mlp"]))  # fmt: skip
    module = load(res["best_checkpoint"])
    _, spec = artifact.raw_model(module)
    test = artifact.held_out(module.hparams["meta"]["config"], {"test": 200}, seed=0)["test"]
    ref = artifact.torch_log_pred(module, spec, test)
    noise = artifact._torch_noise(module, spec, test, np.arange(32), ref)
    assert noise.shape == (32,) and noise.max() < FP32_TOL / 10

    real = artifact.export_raw_graph

    def off_by_one_percent(model, spec, path, *args, **kwargs):  # type: ignore[no-untyped-def]
        model.features.num_std[0] *= 1.01
        return real(model, spec, path, *args, **kwargs)

    monkeypatch.setattr(artifact, "export_raw_graph", off_by_one_percent)
    with pytest.raises(AssertionError, match="fp32 graph disagrees"):
        export_checkpoint(res["best_checkpoint"], tmp_path / "export", quantize="none", rows=600)
    assert not (tmp_path / "export").exists()
