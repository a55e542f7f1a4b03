"""Quantized variants of an exported fp32 graph (onnxruntime's tools), with the float islands that keep
accuracy.

* ``dynamic-int8``: weights of every ``MatMul``/``Gemm`` with a constant weight, and of TFT's LSTMs
  (``DynamicQuantizeLSTM``), in int8, activations quantized on the fly (CPU).
* ``static-int8``: QDQ, uint8 activations calibrated on training rows (min/max), int8 per-channel
  weights (CPU).
* ``fp16``: every float32 tensor in float16 except inputs/outputs, normalizations, softmax and the
  post-processing after the last layer (GPU, CUDA provider).

In every variant the raw-feature computation (float64 / integer ops), the embedding lookups (``Gather``)
and the last layer stay as they were: int8 embeddings and an int8 output layer cost the most accuracy for
the least size and time.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx

QUANTIZATIONS = ("none", "dynamic-int8", "static-int8", "fp16")
FP16_KEEP_FLOAT = ["LayerNormalization", "BatchNormalization", "Softmax", "ReduceMean", "Pow", "Sqrt", "Exp"]


def parse(value: str | Iterable[str]) -> list[str]:
    """``"all"`` / ``"none,fp16"`` / a list -> validated quantization names (``none`` always first)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    items = [i.strip() for i in items if i.strip()]
    if items == ["all"]:
        return list(QUANTIZATIONS)
    bad = [i for i in items if i not in QUANTIZATIONS]
    if bad:
        raise ValueError(f"unknown quantization {bad}; choose from {', '.join(QUANTIZATIONS)} or 'all'")
    return ["none", *[i for i in dict.fromkeys(items) if i != "none"]]


def weight_matmuls(model: onnx.ModelProto, rank: int | None = None) -> list[str]:
    """Names of the ``MatMul``/``Gemm`` nodes whose second input is a weight (initializer), in graph
    order (topological, as exported); with ``rank``, only those whose weight has that rank."""
    inits = {i.name: len(i.dims) for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits and rank in (None, inits[n.input[1]])
    ]


# Module paths whose weight MatMuls stay float in dynamic int8: TabNet's attentive transformers and its mask
# grouping feed sparsemax, whose masks multiply the features (TabNet on the real NYC rows, RMSLE change:
# +0.0074 -> +0.0037). Static int8 keeps them quantized: there the error is the activations' per-tensor
# scales, and keeping these float did not help (+0.0119 -> +0.0141).
FLOAT_SCOPES = ("att_transformers", "group_attention_matrix")


def scoped_matmuls(model: onnx.ModelProto, scopes: Iterable[str] = FLOAT_SCOPES) -> list[str]:
    """Weight ``MatMul``/``Gemm`` nodes of a module whose path (the dynamo exporter's
    ``pkg.torch.onnx.*`` node metadata) names one of ``scopes``."""
    scopes = tuple(scopes)
    names = set(weight_matmuls(model))
    out = []
    for n in model.graph.node:
        meta = " ".join(p.value for p in n.metadata_props if p.key.startswith("pkg.torch.onnx."))
        if n.name in names and any(s in meta for s in scopes):
            out.append(n.name)
    return out


def _downstream(model: onnx.ModelProto, node_name: str) -> list[str]:
    """Nodes that consume (transitively) the outputs of ``node_name``: the post-processing tail."""
    produced = set()
    out = []
    for n in model.graph.node:
        if n.name == node_name:
            produced |= set(n.output)
            continue
        if produced and any(i in produced for i in n.input):
            produced |= set(n.output)
            out.append(n.name)
    return out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" advice on every call
    try:
        yield
    finally:
        root.setLevel(level)


class _Calibration:
    """onnxruntime's ``CalibrationDataReader`` over a list of input feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - called by some onnxruntime versions
        pass


def quantize(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    mode: str,
    *,
    calibration: list[dict[str, np.ndarray]] | None = None,
) -> dict[str, object]:
    """Write the ``mode`` variant of fp32 graph ``src`` to ``dst``; returns what was kept in float."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    model = onnx.load(str(src))
    mms = weight_matmuls(model)
    last = mms[-1:]
    # batched weights (per-feature token maps, B x n x d @ n x d x k) have no int8 kernel with per-channel
    # zero points in onnxruntime; they are small and stay float
    batched = [n for n in mms if n not in weight_matmuls(model, rank=2)]
    exclude = [*last, *batched]
    if mode == "dynamic-int8":
        exclude += [n for n in scoped_matmuls(model) if n not in exclude]
    notes: dict[str, object] = {"float_nodes": ["feature ops", "Gather (embeddings)", *exclude]}
    if mode == "dynamic-int8":
        with _quiet():
            quantize_dynamic(
                str(src),
                str(dst),
                op_types_to_quantize=["MatMul", "Gemm", "LSTM"],
                weight_type=QuantType.QInt8,
                per_channel=False,
                # the dynamic quantizer first splits each Gemm into "<name>_MatMul" + Add and matches the
                # exclusions against the new names: without them a Gemm (the last layer) is quantized
                nodes_to_exclude=[*exclude, *(f"{n}_MatMul" for n in exclude)],
                extra_options={"MatMulConstBOnly": True},
            )
    elif mode == "static-int8":
        if not calibration:
            raise ValueError("static-int8 needs calibration rows (training rows as input feeds)")
        with _quiet():
            quantize_static(
                str(src),
                str(dst),
                _Calibration(calibration),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul", "Gemm"],
                # uint8 activations x int8 weights with 7-bit weights: the x86 AVX2 fast path without
                # its saturation; int8 x int8 lost 0.004 RMSLE on an MLP where this lost 0.0002
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
                nodes_to_exclude=exclude,
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"MatMulConstBOnly": True, "ActivationSymmetric": False},
            )
        notes["calibration_batches"] = len(calibration)
        notes["calibration_rows"] = int(sum(len(next(iter(f.values()))) for f in calibration))
    elif mode == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        tail = _downstream(model, last[0]) if last else []
        half = convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=FP16_KEEP_FLOAT,
            node_block_list=[*last, *tail],
            disable_shape_infer=False,
        )
        onnx.save(half, str(dst))
        notes["float_nodes"] = ["feature ops", *FP16_KEEP_FLOAT, "last layer and post-processing"]
    else:
        raise ValueError(f"quantize: mode {mode!r} is not one of {QUANTIZATIONS[1:]}")
    return notes


def size_bytes(path: str | os.PathLike[str]) -> int:
    return Path(path).stat().st_size
