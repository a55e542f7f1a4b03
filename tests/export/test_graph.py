"""The in-graph feature pipeline (:class:`RawFeatures`) against the polars pipeline it reproduces."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
import torch

from tabxfer.data.synthetic import generate
from tabxfer.export.artifact import raw_tensors
from tabxfer.export.graph import RawFeatures, civil_from_days
from tabxfer.export.onnx_graph import RawTripModel, export_raw_graph, raw_inputs
from tabxfer.features import pipeline
from tabxfer.models.mlp import MLP


@pytest.fixture(scope="module")
def data():
    """A spec fitted on 30 years of trips, applied to trips from 1970 to 2100 in a fitted city, an unseen
    known city and with missing fields."""
    train = pl.concat(
        [
            generate("nyc", 8000, seed=1, start="1999-12-01", end="2031-03-01"),
            generate("riverton", 2000, seed=2),
        ],
        how="diagonal_relaxed",
    )
    spec = pipeline.fit(
        train.lazy(), pipeline.FeatureConfig(extra_categorical=("store_and_fwd_flag",), min_count=5)
    )
    test = pl.concat(
        [
            generate("nyc", 3000, seed=3, start="1970-01-01", end="2100-12-31"),
            generate("sprawlton", 300, seed=4),
        ],
        how="diagonal_relaxed",
    )

    # missing passenger counts, vendors and coordinates, an unseen vendor
    def blank_every(k: int, column: str) -> pl.Expr:
        return pl.when(pl.int_range(pl.len()) % k == 0).then(None).otherwise(pl.col(column)).alias(column)

    test = test.with_columns(
        blank_every(17, "dropoff_lat"),
        blank_every(19, "pickup_lon"),
        blank_every(7, "passenger_count"),
        pl.when(pl.int_range(pl.len()) % 11 == 0)
        .then(None)
        .when(pl.int_range(pl.len()) % 13 == 0)
        .then(pl.lit("new-vendor"))
        .otherwise(pl.col("vendor"))
        .alias("vendor"),
    )
    arr = pipeline.to_arrays(pipeline.transform(test.lazy(), spec).collect(), spec)
    return spec, test, arr


def torch_inputs(rf: RawFeatures, test: pl.DataFrame):
    return raw_tensors(rf, test)


def test_features_match_the_polars_pipeline(data):
    spec, test, arr = data
    rf = RawFeatures(spec)
    x_num, x_cat = rf(*torch_inputs(rf, test))
    np.testing.assert_allclose(x_num.numpy(), arr["x_num"], rtol=0, atol=1e-6)
    assert (x_cat.numpy() == arr["x_cat"]).all(), {
        n: int(k) for n, k in zip(spec.categorical_names, (x_cat.numpy() != arr["x_cat"]).sum(0), strict=True)
    }
    assert (x_cat[:, spec.categorical_names.index("holiday")] == 2).any()  # some holidays in 130 years


def test_calendar_arithmetic():
    """Every day from 0001-01-01 to 9999-12-31 against numpy's calendar (float64 arithmetic, exact)."""
    first, last = -719_162, 2_932_896
    y, m, o = civil_from_days(torch.arange(first, last + 1))
    d = np.arange(first, last + 1).astype("datetime64[D]")
    year_start = d.astype("datetime64[Y]")
    np.testing.assert_array_equal(y.numpy(), year_start.astype(np.int64) + 1970)
    np.testing.assert_array_equal(m.numpy(), d.astype("datetime64[M]").astype(np.int64) % 12 + 1)
    np.testing.assert_array_equal(o.numpy(), (d - year_start).astype(np.int64) + 1)
    assert dt.date(1970, 1, 1) + dt.timedelta(days=16_860) == dt.date(2016, 2, 29)
    assert [v[16_860 - first].item() for v in (y, m, o)] == [2016, 2, 60]


def test_onnx_graph_on_raw_fields(data, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    spec, test, arr = data
    torch.manual_seed(0)
    mlp = MLP(n_num=spec.n_numeric, cardinalities=spec.cardinalities, d_block=32, n_blocks=1).eval()
    rt = RawTripModel(RawFeatures(spec), mlp, y_mean=spec.target.mean, y_std=spec.target.std)
    export_raw_graph(rt, spec, tmp_path / "m.onnx")
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    inputs = raw_inputs(rt.features)
    assert [i.name for i in sess.get_inputs()] == [i.name for i in inputs]
    assert all(i.shape[0] == "batch" for i in sess.get_inputs())
    from tabxfer.export.artifact import raw_columns
    from tabxfer.export.serve import feed

    # without the schema's pickup-time range (the graph's calendar is checked from 1970 to 2100 here) and
    # with missing coordinates let through (serve refuses them; the graph gives them the pipeline's values)
    relaxed = {"pickup_ts": {"min": None, "max": None}} | {
        c: {"nullable": True} for c in ("pickup_lon", "dropoff_lat")
    }
    schema = [i.to_dict() | relaxed.get(i.name, {}) for i in inputs]
    feeds = feed(schema, raw_columns(test, inputs))
    with torch.no_grad():
        ref = mlp(torch.from_numpy(arr["x_num"]), torch.from_numpy(arr["x_cat"]).long()).squeeze(-1).numpy()
    ref = ref * spec.target.std + spec.target.mean
    for n in (1, 7, len(test)):
        dur, log_d = sess.run(None, {k: v[:n] for k, v in feeds.items()})
        assert np.abs(log_d - ref[:n]).max() <= 1e-4
        np.testing.assert_allclose(dur, np.expm1(log_d), rtol=1e-5)


def test_serve_refuses_a_provider_it_did_not_get(tmp_path, data):
    ort = pytest.importorskip("onnxruntime")
    from tabxfer.export import serve

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider at all")
    spec, _, _ = data
    mlp = MLP(n_num=spec.n_numeric, cardinalities=spec.cardinalities, d_block=8, n_blocks=1).eval()
    export_raw_graph(RawTripModel(RawFeatures(spec), mlp, y_mean=0, y_std=1), spec, tmp_path / "m.onnx")
    if torch.cuda.is_available():
        assert serve.session(tmp_path / "m.onnx", "cuda").get_providers()[0] == "CUDAExecutionProvider"
    else:  # onnxruntime-gpu lists CUDA here but would run on the CPU: no claim
        with pytest.raises(RuntimeError, match="not claiming"):
            serve.session(tmp_path / "m.onnx", "cuda")


def test_fold_layout_constants_turns_reordered_weights_into_initializers():
    """A weight reorder like the LSTM's (Slices + Concat + Transpose of a parameter, one bound a Constant
    node) becomes one initializer with the same values; the parameter and the Constant go, an initializer
    read only inside an ``If`` stays."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from tabxfer.export.onnx_graph import fold_layout_constants

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([2], np.int64), "s2"),
        numpy_helper.from_array(np.float32(2.0).reshape(()), "two"),
        numpy_helper.from_array(np.float32(0.5).reshape(()), "half"),  # read only inside the If
    ]
    branch = helper.make_graph(
        [helper.make_node("Mul", ["y", "half"], ["z"])],
        "b",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["b", 4])],
    )
    nodes = [
        helper.make_node("Constant", [], ["s4"], value=numpy_helper.from_array(np.array([4], np.int64))),
        helper.make_node("Slice", ["w", "s0", "s2"], ["lo"]),
        helper.make_node("Slice", ["w", "s2", "s4"], ["hi"]),
        helper.make_node("Concat", ["hi", "lo"], ["swapped"], axis=0),  # (4, 3), halves swapped
        helper.make_node("Transpose", ["swapped"], ["wt"], perm=[1, 0]),  # (3, 4)
        helper.make_node("MatMul", ["x", "wt"], ["y"]),
        helper.make_node("ReduceSum", ["y"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "two"], ["big"]),
        helper.make_node("If", ["big"], ["out"], then_branch=branch, else_branch=branch),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["b", 4])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    x = rng.normal(size=(5, 3)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]

    before = run(proto)
    assert fold_layout_constants(proto) == 4  # both Slices, the Concat, the Transpose
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node] == ["MatMul", "ReduceSum", "Greater", "If"]
    names = {i.name for i in proto.graph.initializer}
    assert names == {"wt", "two", "half"}  # w and the slice bounds are no longer read
    wt = next(i for i in proto.graph.initializer if i.name == "wt")
    np.testing.assert_array_equal(numpy_helper.to_array(wt), np.concatenate([w[2:], w[:2]]).T)
    np.testing.assert_array_equal(run(proto), before)
