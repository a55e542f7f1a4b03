"""TabTransformer and FT-Transformer: shapes, parts, gradients, determinism, a tiny overfit, edge cases,
argument checks and the ONNX round trip (opset 17, dynamic batch) against onnxruntime."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import model_helpers
from model_helpers import export_and_run, one_thread  # noqa: F401 (autouse fixture)
from tabxfer.models.base import TabularModel
from tabxfer.models.ft_transformer import FTTransformer, MultiheadAttention
from tabxfer.models.tab_transformer import TabTransformer

N_NUM = 5
CARDS = [25, 8, 13, 190, 3]

# Small sizes: the suite checks behaviour, not capacity.
MODELS: dict[str, Callable[..., TabularModel]] = {
    "tab_transformer": lambda **kw: TabTransformer(
        **{"d_token": 16, "d_shared": 2, "n_blocks": 2, "n_heads": 4, "mlp_hidden": (32, 16), **kw}
    ),
    "ft_transformer": lambda **kw: FTTransformer(**{"d_token": 16, "n_blocks": 2, "n_heads": 4, **kw}),
}
D_BACKBONE = {"tab_transformer": 16, "ft_transformer": 16}


def make_inputs(
    n: int, n_num: int = N_NUM, cards: Sequence[int] = CARDS, seed: int = 0
) -> tuple[Tensor, Tensor]:
    return model_helpers.make_inputs(n, n_num, cards, seed)


def build(name: str, seed: int = 0, **kw) -> TabularModel:
    torch.manual_seed(seed)
    return MODELS[name](**{"n_num": N_NUM, "cardinalities": CARDS, **kw})


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("d_out", [1, 3])
def test_output_shape(name: str, d_out: int) -> None:
    y = build(name, d_out=d_out)(*make_inputs(7))
    assert y.shape == (7, d_out) and y.dtype == torch.float32


@pytest.mark.parametrize("name", MODELS)
def test_backbone_features_without_head(name: str) -> None:
    model = build(name, d_out=None)
    assert model.head is None and set(model.parts()) == {"embed", "backbone"}
    assert model.d_backbone == D_BACKBONE[name]
    assert model(*make_inputs(7)).shape == (7, model.d_backbone)


@pytest.mark.parametrize("name", MODELS)
def test_parts_cover_every_parameter(name: str) -> None:
    model = build(name)
    assert set(model.parts()) == {"embed", "backbone", "head"}
    in_parts = {id(p) for part in model.parts().values() for p in part.parameters()}
    assert in_parts == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name: str) -> None:
    model = build(name).train()
    model(*make_inputs(16)).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.isfinite().all()]
    assert not missing
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]  # type: ignore[union-attr]
    assert not zero, f"parameters with an all-zero gradient: {zero}"


@pytest.mark.parametrize("name", MODELS)
def test_eval_is_deterministic_and_batch_independent(name: str) -> None:
    model = build(name).eval()
    x_num, x_cat = make_inputs(300)
    with torch.no_grad():
        full = model(x_num, x_cat)
        assert torch.equal(full, model(x_num, x_cat))
        for start in (0, 123, 295):
            part = model(x_num[start : start + 5], x_cat[start : start + 5])
            torch.testing.assert_close(part, full[start : start + 5], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", MODELS)
def test_tiny_overfit(name: str) -> None:
    torch.manual_seed(1)
    x_num, x_cat = make_inputs(256, seed=1)
    # A learnable target: linear in the numerics plus a per-value effect of two categoricals.
    y = (
        x_num @ torch.randn(N_NUM, 1)
        + torch.randn(CARDS[0], 1)[x_cat[:, 0]]
        + torch.randn(CARDS[2], 1)[x_cat[:, 2]]
    )
    model = build(name).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = nn.functional.mse_loss(model(x_num, x_cat), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("n_num", "cards"), [(N_NUM, []), (0, CARDS)], ids=["no_cat", "no_num"])
def test_only_one_kind_of_input(name: str, n_num: int, cards: list[int]) -> None:
    model = build(name, n_num=n_num, cardinalities=cards).train()
    x = make_inputs(9, n_num=n_num, cards=cards)
    y = model(*x)
    assert y.shape == (9, 1)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x[0][:3], x[1][:3]), model(*x)[:3], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("tab_transformer", {"n_heads": 3}, "n_heads=3 must divide d_token=16"),
        ("ft_transformer", {"n_heads": 5}, "n_heads=5 must divide d_token=16"),
        ("tab_transformer", {"d_shared": 16}, "d_shared=16"),
        ("tab_transformer", {"mlp_hidden": (32, 0)}, "MLP hidden size"),
        ("tab_transformer", {"attention_dropout": 1.0}, "attention_dropout=1.0"),
        ("ft_transformer", {"n_blocks": 0}, "n_blocks=0"),
        ("ft_transformer", {"ffn_dropout": -0.1}, "ffn_dropout=-0.1"),
        ("ft_transformer", {"n_num": 0, "cardinalities": []}, "at least one input"),
        ("ft_transformer", {"cardinalities": [4, 1]}, "cardinality"),
    ],
)
def test_bad_arguments(name: str, kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(name, **kw)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_matches_onnxruntime(name: str, tmp_path: Path) -> None:
    model = build(name).eval()
    x = make_inputs(33, seed=2)  # a different batch size from the export example
    y_onnx = export_and_run(model, make_inputs(4), x, tmp_path / f"{name}.onnx")
    with torch.no_grad():
        y = model(*x)
    assert y_onnx.shape == y.shape
    torch.testing.assert_close(y_onnx, y, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_as_tabxfer_exports_uses_attention_nodes(name: str) -> None:
    """Inside ``exporting()`` at the model's ``onnx_opset`` (23, as tabxfer exports), each block's attention
    is one ONNX ``Attention`` node with the model's outputs at another batch size; the switch is put back on
    exit, also when the export raises."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = build(name).eval()
    attentions = [m for m in model.modules() if isinstance(m, MultiheadAttention)]
    f = io.BytesIO()
    batch = torch.export.Dim("batch", min=1)
    with model.exporting(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert all(m.onnx_node for m in attentions)
        prog = torch.onnx.export(
            model,
            make_inputs(4),
            dynamo=True,
            opset_version=model.onnx_opset,
            input_names=["x_num", "x_cat"],
            output_names=["y"],
            dynamic_shapes=({0: batch}, {0: batch}),
        )
        assert prog is not None
        onnx.save(prog.model_proto, f)
    assert not any(m.onnx_node for m in attentions)
    ops = [n.op_type for n in onnx.load_from_string(f.getvalue()).graph.node]
    assert ops.count("Attention") == len(attentions) == 2 and "Softmax" not in ops
    x = make_inputs(33, seed=2)
    session = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x_num": x[0].numpy(), "x_cat": x[1].numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), model(*x), atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="boom"), model.exporting():
        raise RuntimeError("boom")
    assert not any(m.onnx_node for m in attentions)


# --- model-specific ------------------------------------------------------------------------------------


def test_ft_cls_only_last_block_matches_full_attention() -> None:
    model = build("ft_transformer").eval()
    x = make_inputs(11)
    with torch.no_grad():
        fast = model(*x)
        model.backbone.blocks[-1].cls_only = False  # every token's query: same [CLS] output, more work
        torch.testing.assert_close(model(*x), fast, atol=1e-5, rtol=0)


def test_ft_defaults_follow_rtdl() -> None:
    model = FTTransformer(n_num=3, cardinalities=[4])
    block = model.backbone.blocks[1]
    assert model.d_backbone == 192 and len(model.backbone.blocks) == 3
    assert block.attention.dropout == 0.2 and block.residual_dropout.p == 0.0
    assert block.ffn[0].out_features == 2 * 256 and block.ffn[2].p == 0.1  # ReGLU, d_ffn = 192 * 4/3
    assert isinstance(model.backbone.blocks[0].attention_norm, nn.Identity)  # no first pre-norm


def test_ft_add_features_keeps_trained_tokens() -> None:
    model = build("ft_transformer").eval()
    before = {k: v.clone() for k, v in model.embed.state_dict().items()}
    model.add_features(n_num=2, cardinalities=[6, 7])
    assert model.embed.n_tokens == 1 + N_NUM + 2 + len(CARDS) + 2
    num, cat, cat_bias = model.embed.num, model.embed.cat, model.embed.cat_bias
    assert num is not None and cat is not None and cat_bias is not None
    torch.testing.assert_close(num.weight[:N_NUM], before["num.weight"])
    torch.testing.assert_close(cat.table.weight[: sum(CARDS)], before["cat.table.weight"])
    torch.testing.assert_close(cat_bias[: len(CARDS)], before["cat_bias"])
    x_num, x_cat = make_inputs(6, n_num=N_NUM + 2, cards=[*CARDS, 6, 7])
    assert model(x_num, x_cat).shape == (6, 1)
    # Growing a tokenizer that had no categoricals (or no numerics) at all works too.
    only_num = build("ft_transformer", cardinalities=[])
    only_num.add_features(cardinalities=[3])
    assert only_num(*make_inputs(2, cards=[3])).shape == (2, 1)


def test_tab_transformer_shared_column_embedding() -> None:
    model = build("tab_transformer")
    tokens, x_num = model.embed(*make_inputs(4))
    assert tokens.shape == (4, len(CARDS), 16) and x_num.shape == (4, N_NUM)
    column = model.embed.column
    assert column is not None and column.shape == (len(CARDS), 2)
    torch.testing.assert_close(tokens[:, :, :2], column.expand(4, -1, -1))  # same for every row
    off = build("tab_transformer", d_shared=0)
    assert off.embed.column is None and off(*make_inputs(3)).shape == (3, 1)


@pytest.mark.slow
def test_onnx_export_with_dynamo_exporter(tmp_path: Path) -> None:
    """torch.export-based exporter, down-converted to opset 17 (``chunk`` broke this: Split's attribute).
    FT-Transformer's attention and ReGLU are the TabTransformer's too; one model keeps the suite fast."""
    name = "ft_transformer"
    model = build(name).eval()
    x = make_inputs(33, seed=2)
    y_onnx = export_and_run(model, make_inputs(4), x, tmp_path / f"{name}.onnx", dynamo=True)
    with torch.no_grad():
        torch.testing.assert_close(y_onnx, model(*x), atol=1e-4, rtol=0)
