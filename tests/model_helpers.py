"""Shared by the model tests: ONNX export + onnxruntime run (tests/ is on sys.path via its conftest)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn


def export_and_run(
    model: nn.Module,
    example: tuple[Tensor, Tensor],
    x: tuple[Tensor, Tensor],
    path: Path,
    dynamo: bool = False,
):
    """Export at opset 17 with a dynamic batch (the legacy TorchScript exporter unless ``dynamo``); run the
    graph with onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    kw = dict(
        opset_version=17,
        input_names=["x_num", "x_cat"],
        output_names=["y"],
        dynamic_axes={"x_num": {0: "batch"}, "x_cat": {0: "batch"}},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning and tracer notes
        try:
            torch.onnx.export(model.eval(), example, str(path), dynamo=dynamo, **kw)
        except Exception as legacy_error:  # a torch without the legacy exporter: try torch.export's
            try:
                torch.onnx.export(model.eval(), example, str(path), dynamo=True, **kw)
            except Exception:
                raise legacy_error from None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x_num": x[0].numpy(), "x_cat": x[1].numpy()})
    return torch.from_numpy(y)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread, which also keeps them fast when other jobs share the CPU
    (a multi-threaded matmul under oversubscription was 30x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_inputs(n: int, n_num: int, cards: Sequence[int], seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random model inputs: standard-normal numerics, categorical indices below each cardinality."""
    g = torch.Generator().manual_seed(seed)
    x_num = torch.randn(n, n_num, generator=g)
    cols = [torch.randint(0, c, (n,), generator=g) for c in cards]
    x_cat = torch.stack(cols, dim=1) if cols else torch.zeros(n, 0, dtype=torch.long)
    return x_num, x_cat


# TFT parameters that only the temporal (context) path uses: no gradient when x_ctx is None
TFT_TEMPORAL_PARAMS = (
    "embed.ctx.",
    "backbone.temporal_selection.",
    "backbone.encoder.",
    "backbone.static_contexts.0.",
)
