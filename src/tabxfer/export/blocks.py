"""Run a graph over a large batch in row blocks that stay in the CPU's cache: an ONNX ``Loop``.

A model whose intermediates are wide per row (TFT with its hourly context: ``(24, 64)`` floats per row and
per tensor; the Transformers' token tensors) streams every elementwise op through main memory at batch 4096:
each ``(4096, 24, 64)`` float tensor is 25 MB, and the graph makes dozens of passes over such tensors. The
same graph applied to 256-512 rows at a time keeps them in cache. :func:`in_row_blocks` wraps a finished
graph (fp32 or quantized) in a ``Loop`` that slices every input into blocks of ``rows``, runs the original
nodes on each block and concatenates the outputs; rows never interact in an exported tabxfer model (eval
mode), so the outputs are the same as the unblocked graph's (dynamic int8 quantizes each block's
activations with their own range, which a batch of that size would get anyway).

Measured on the int8 TFT-with-context graph, batch 4096, 2 threads (onnxruntime 1.31): 20.5 k rows/s as one
block, 25-28 k in blocks of 256-1024 rows; torch eager gains 3 % from the same blocking (12.2 k -> 12.5 k).
Narrow graphs (MLP, TabNet, static TFT) run slower in small blocks and are left whole: :func:`block_rows`
decides from the per-row tensor sizes that shape inference finds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BLOCK_BYTES = 4 << 20  # widest intermediate per block: a few MB, well inside a 32 MB L3 shared by the threads
WIDE_ROW_BYTES = 2048  # a tensor at least this wide per row is >= 8 MB at batch 4096
MIN_WIDE_BYTES = 32 << 10  # blocked only when the wide tensors add up to this per row (see block_rows)
MAX_BLOCK_ROWS = 1024
MIN_BLOCK_ROWS = 64
_PREFIX = "__blocks_"  # of every name the wrapping adds (no exporter emits it)


def row_sizes(model: onnx.ModelProto) -> list[int]:
    """Per-row size in bytes of every tensor in ``model`` with exactly one symbolic (batch) axis, from ONNX
    shape inference (tensors whose shape it cannot infer are not counted)."""
    g = onnx.shape_inference.infer_shapes(model).graph
    sizes = []
    for v in [*g.value_info, *g.input, *g.output]:
        t = v.type.tensor_type
        if not t.HasField("shape") or t.elem_type == TensorProto.STRING:
            continue
        dims = t.shape.dim
        if sum(not d.HasField("dim_value") for d in dims) != 1:
            continue
        size = int(np.prod([d.dim_value for d in dims if d.HasField("dim_value")], dtype=np.int64))
        sizes.append(size * helper.tensor_dtype_to_np_dtype(t.elem_type).itemsize)
    return sizes


def block_rows(model: onnx.ModelProto, budget: int = BLOCK_BYTES) -> int:
    """Rows per block for ``model`` (a power of two, the widest tensor of a block within ``budget``), or 0
    where the graph should run whole: where its tensors of at least ``WIDE_ROW_BYTES`` per row add up to
    less than ``MIN_WIDE_BYTES`` per row. Measured (int8, batch 4096, blocks applied from outside the
    graph): the MLP (1 KB per row at most), TabNet and static TFT (a few wide gathers, then hundreds of
    small nodes whose per-call cost grows with the number of blocks) ran 10-30 % slower in 1024-row
    blocks; TabTransformer (90 KB per row in wide tensors) +18 % in 512-1024-row blocks, FT-Transformer
    (43 KB) +25 % in 256, TFT with context (730 KB) +36 % in 512."""
    sizes = row_sizes(model)
    if sum(s for s in sizes if s >= WIDE_ROW_BYTES) < MIN_WIDE_BYTES:
        return 0
    rows = 1 << int(np.log2(max(1, budget // max(sizes))))
    return min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, rows))


def in_row_blocks(model: onnx.ModelProto, rows: int) -> onnx.ModelProto:
    """``model`` (every input and output batch-first) as a ``Loop`` over blocks of ``rows`` rows; the
    original nodes and initializers move into the loop's body, the model's metadata is kept."""
    if rows < 1:
        raise ValueError(f"in_row_blocks: rows={rows} must be >= 1")
    g = model.graph
    for v in [*g.input, *g.output]:
        dims = v.type.tensor_type.shape.dim
        if not dims or dims[0].HasField("dim_value"):
            raise ValueError(f"in_row_blocks: {v.name!r} has no dynamic first (batch) axis")
    p = _PREFIX

    def const(name: str, value: np.ndarray) -> TensorProto:
        return numpy_helper.from_array(value, p + name)

    sliced = {i.name: f"{p}{i.name}" for i in g.input}
    nodes = [
        helper.make_node("Identity", [p + "cond"], [p + "cond_out"]),
        helper.make_node("Mul", [p + "i", p + "rows"], [p + "start0"]),
        helper.make_node("Unsqueeze", [p + "start0", p + "axis0"], [p + "start"]),
        helper.make_node("Add", [p + "start", p + "rows1"], [p + "end"]),
    ]
    nodes += [
        helper.make_node("Slice", [name, p + "start", p + "end", p + "axis0"], [block])
        for name, block in sliced.items()
    ]
    nodes += _renamed(g.node, sliced)
    body_in = [
        helper.make_tensor_value_info(p + "i", TensorProto.INT64, []),
        helper.make_tensor_value_info(p + "cond", TensorProto.BOOL, []),
    ]
    body_out = [helper.make_tensor_value_info(p + "cond_out", TensorProto.BOOL, [])]
    initial = []
    for o in g.output:  # each output is concatenated block by block onto a loop-carried value
        nodes.append(
            helper.make_node("Concat", [p + o.name + "_acc", o.name], [p + o.name + "_next"], axis=0)
        )
        body_in.append(helper.make_value_info(p + o.name + "_acc", o.type))
        body_out.append(helper.make_value_info(p + o.name + "_next", o.type))
        t = o.type.tensor_type
        empty = np.zeros(
            [0, *(d.dim_value for d in t.shape.dim[1:])], helper.tensor_dtype_to_np_dtype(t.elem_type)
        )
        initial.append(const(o.name + "_empty", empty))
    rows1, axis0 = np.array([rows], np.int64), np.array([0], np.int64)
    body = helper.make_graph(
        nodes,
        "row_block",
        body_in,
        body_out,
        [
            *g.initializer,
            const("rows", np.array(rows, np.int64)),
            const("rows1", rows1),
            const("axis0", axis0),
        ],
    )
    outer = [
        helper.make_node("Shape", [g.input[0].name], [p + "n"], start=0, end=1),
        helper.make_node("Add", [p + "n", p + "rows_m1"], [p + "n_up"]),
        helper.make_node("Div", [p + "n_up", p + "rows1"], [p + "blocks1"]),  # ceil(n / rows)
        helper.make_node("Squeeze", [p + "blocks1", p + "axis0"], [p + "blocks"]),
        helper.make_node(
            "Loop",
            [p + "blocks", p + "true", *(i.name for i in initial)],
            [o.name for o in g.output],
            body=body,
        ),
    ]
    consts = [const("rows_m1", rows1 - 1), const("rows1", rows1), const("axis0", axis0)]
    consts.append(const("true", np.array(True)))
    return _like(model, helper.make_graph(outer, g.name, list(g.input), list(g.output), [*consts, *initial]))


def is_blocked(model: onnx.ModelProto) -> bool:
    """Whether ``model`` is a graph :func:`in_row_blocks` wrapped."""
    nodes = model.graph.node
    return len(nodes) > 0 and nodes[-1].op_type == "Loop" and nodes[-1].input[0].startswith(_PREFIX)


def whole(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph :func:`in_row_blocks` wrapped, unwrapped again (``model`` itself when it is not blocked):
    for tools that read a graph's nodes."""
    if not is_blocked(model):
        return model
    body = next(a.g for a in model.graph.node[-1].attribute if a.name == "body")
    original = {f"{_PREFIX}{i.name}": i.name for i in model.graph.input}
    # without the block plumbing (slices, indices, concatenation: every output of it is prefixed)
    nodes = _renamed([n for n in body.node if not any(o.startswith(_PREFIX) for o in n.output)], original)
    inits = [t for t in body.initializer if not t.name.startswith(_PREFIX)]
    g = model.graph
    return _like(model, helper.make_graph(nodes, g.name, list(g.input), list(g.output), inits))


def _renamed(nodes: Iterable[onnx.NodeProto], names: Mapping[str, str]) -> list[onnx.NodeProto]:
    """Copies of ``nodes`` reading input ``names[x]`` in place of each ``x`` in ``names``."""
    out = []
    for n in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(n)
        for k, x in enumerate(copy.input):
            copy.input[k] = names.get(x, x)
        out.append(copy)
    return out


def _like(model: onnx.ModelProto, graph: onnx.GraphProto) -> onnx.ModelProto:
    """``graph`` in a model with ``model``'s opsets, IR version, metadata and producer."""
    out = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    out.metadata_props.extend(model.metadata_props)
    out.doc_string = model.doc_string
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    return out
