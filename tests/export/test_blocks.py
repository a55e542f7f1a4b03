"""Row blocks (:mod:`tabxfer.export.blocks`): the Loop-wrapped graph computes what the whole graph does at
every batch size (string inputs included), unwraps back to it, and is chosen only for wide graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tabxfer.export import blocks

ort = pytest.importorskip("onnxruntime")


def small_model(width: int = 5) -> onnx.ModelProto:
    """x (batch, 3) float, s (batch,) string -> y (batch,) = sum(relu(x @ W)) + code(s), z (batch, 2)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("ReduceSum", ["r", "axis1"], ["sum"], keepdims=0),
        helper.make_node(
            "LabelEncoder",
            ["s"],
            ["code"],
            domain="ai.onnx.ml",
            keys_strings=["a", "b"],
            values_floats=[1.0, 2.0],
            default_float=-1.0,
        ),
        helper.make_node("Add", ["sum", "code"], ["y"]),
        helper.make_node("MatMul", ["x", "V"], ["z"]),
    ]
    batch = ["batch"]
    graph = helper.make_graph(
        nodes,
        "small",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [*batch, 3]),
            helper.make_tensor_value_info("s", TensorProto.STRING, batch),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, batch),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [*batch, 2]),
        ],
        [
            numpy_helper.from_array(rng.standard_normal((3, width)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.standard_normal((3, 2)).astype(np.float32), "V"),
            numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        ],
    )
    opsets = [helper.make_opsetid("", 23), helper.make_opsetid("ai.onnx.ml", 3)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=10)
    model.metadata_props.append(onnx.StringStringEntryProto(key="k", value="v"))
    return model


def run(model: onnx.ModelProto, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(n)
    feeds = {
        "x": rng.standard_normal((n, 3)).astype(np.float32),
        "s": np.array(["a", "b", "c"] * n, dtype=object)[:n],
    }
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


@pytest.mark.parametrize("n", [0, 1, 4, 7, 33])
def test_blocked_graph_computes_what_the_whole_graph_does(n):
    model = small_model()
    blocked = blocks.in_row_blocks(model, 4)
    onnx.checker.check_model(blocked, full_check=True)
    assert blocks.is_blocked(blocked) and not blocks.is_blocked(model)
    assert [n.op_type for n in blocked.graph.node][-1] == "Loop"
    assert {p.key: p.value for p in blocked.metadata_props} == {"k": "v"}
    for got, want in zip(run(blocked, n), run(model, n), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_whole_unwraps_a_blocked_graph():
    model = small_model()
    back = blocks.whole(blocks.in_row_blocks(model, 3))
    assert [(n.op_type, list(n.input), list(n.output)) for n in back.graph.node] == [
        (n.op_type, list(n.input), list(n.output)) for n in model.graph.node
    ]
    assert {t.name for t in back.graph.initializer} == {t.name for t in model.graph.initializer}
    for got, want in zip(run(back, 9), run(model, 9), strict=True):
        np.testing.assert_array_equal(got, want)
    assert blocks.whole(model) is model


def test_bad_arguments():
    with pytest.raises(ValueError, match="rows=0"):
        blocks.in_row_blocks(small_model(), 0)
    fixed = small_model()
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 8
    with pytest.raises(ValueError, match="'x' has no dynamic first"):
        blocks.in_row_blocks(fixed, 4)


def test_block_rows_only_for_wide_graphs():
    # x @ W and its relu: 2 tensors of 4096 floats (16 KB) per row: blocks of 4 MB / 16 KB = 256 rows
    assert sorted(blocks.row_sizes(small_model(4096)))[-2:] == [16384, 16384]
    assert blocks.block_rows(small_model(4096)) == 256
    assert blocks.block_rows(small_model(4096), budget=64 << 20) == blocks.MAX_BLOCK_ROWS
    assert blocks.block_rows(small_model(4096), budget=1 << 10) == blocks.MIN_BLOCK_ROWS
    assert blocks.block_rows(small_model(2048)) == 0  # 16 KB per row in wide tensors: below MIN_WIDE_BYTES
    assert blocks.block_rows(small_model(5)) == 0
