"""TFT: shapes with and without context, gradients, selection weights, causality, batch independence,
a tiny overfit on a context-dependent target, ONNX round trip and argument checks."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

from model_helpers import TFT_TEMPORAL_PARAMS
from tabxfer.models.tft import GRN, TFT, GateAddNorm, elu_then

CARDS = [5, 3, 7]
N_NUM, N_CTX, T = 4, 3, 6


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are tiny: intra-op threads only add overhead (4x on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make(**kw) -> TFT:
    torch.manual_seed(0)
    args = dict(n_num=N_NUM, cardinalities=CARDS, n_ctx=N_CTX, ctx_len=T, d_model=16, n_heads=4)
    return TFT(**(args | kw))


def inputs(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x_cat = torch.stack([torch.randint(0, c, (b,), generator=g) for c in CARDS], dim=1)
    return torch.randn(b, N_NUM, generator=g), x_cat, torch.randn(b, T, N_CTX, generator=g)


def test_shapes_with_and_without_context():
    x_num, x_cat, x_ctx = inputs(7)
    m = make()
    assert m(x_num, x_cat, x_ctx).shape == (7, 1)
    assert m(x_num, x_cat).shape == (7, 1)  # static path only
    assert make(d_out=None)(x_num, x_cat, x_ctx).shape == (7, 16)
    assert make(d_out=None).head is None and set(make(d_out=None).parts()) == {"embed", "backbone"}
    assert make(n_ctx=0)(x_num, x_cat).shape == (7, 1)
    assert make(d_embed_cat=4, d_out=3)(x_num, x_cat, x_ctx).shape == (7, 3)
    assert make(n_num=0)(x_num[:, :0], x_cat, x_ctx).shape == (7, 1)
    assert make(cardinalities=[])(x_num, x_cat[:, :0], x_ctx).shape == (7, 1)


def test_gradients_reach_every_parameter_used():
    x_num, x_cat, x_ctx = inputs(32)
    m = make(d_embed_cat=8)
    m(x_num, x_cat, x_ctx).pow(2).mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # without context the temporal path (and c_s, which only conditions it) is skipped entirely
    m.zero_grad(set_to_none=True)
    m(x_num, x_cat).pow(2).mean().backward()
    temporal = TFT_TEMPORAL_PARAMS
    for name, p in m.named_parameters():
        assert (p.grad is None) == name.startswith(temporal), name


def test_selection_and_attention_weights_are_distributions():
    x_num, x_cat, x_ctx = inputs(9)
    m = make().eval()
    m(x_num, x_cat, x_ctx)
    w = m.last_interpretation
    assert w is not None and w.temporal_weights is not None
    assert w.static_weights.shape == (9, N_NUM + len(CARDS))
    assert w.temporal_weights.shape == (9, T, N_CTX)
    assert w.attention.shape == (9, T + 1)
    for p in (w.static_weights, w.temporal_weights, w.attention):
        assert (p >= 0).all()
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
    static_only = m.interpret(x_num, x_cat)
    assert static_only.temporal_weights is None and static_only.attention.shape == (9, 1)
    torch.testing.assert_close(static_only.attention, torch.ones(9, 1))


def test_steps_only_see_the_past():
    x_num, x_cat, x_ctx = inputs(4)
    m = make().eval()
    with torch.no_grad():
        seq, _ = m.backbone.encode(*m.embed(x_num, x_cat, x_ctx))  # (B, T + 1, d)
        assert seq.shape == (4, T + 1, 16)
        # the fast path (present query only) is the last step of the full causal pass
        torch.testing.assert_close(m(x_num, x_cat, x_ctx), m.head(seq[:, -1]))
        for t in range(T):
            changed = x_ctx.clone()
            changed[:, t:] += torch.randn_like(changed[:, t:])  # steps >= t change
            seq2, _ = m.backbone.encode(*m.embed(x_num, x_cat, changed))
            torch.testing.assert_close(seq2[:, :t], seq[:, :t], atol=1e-6, rtol=0)
            assert not torch.allclose(seq2[:, t:], seq[:, t:])  # later steps (and the present) do


def test_eval_is_deterministic_and_batch_independent():
    x_num, x_cat, x_ctx = inputs(300)
    m = make(d_model=32).eval()
    with torch.no_grad():
        big = m(x_num, x_cat, x_ctx)
        small = m(x_num[:5], x_cat[:5], x_ctx[:5])
        again = m(x_num[:5], x_cat[:5], x_ctx[:5])
    torch.testing.assert_close(small, again, atol=0, rtol=0)
    torch.testing.assert_close(small, big[:5], atol=1e-5, rtol=0)


def test_overfits_a_target_that_depends_on_the_context():
    x_num, x_cat, x_ctx = inputs(256, seed=1)
    y = x_ctx[:, -3:, 0].mean(1, keepdim=True) - x_ctx[:, :, 1].mean(1, keepdim=True)  # (B, 1)

    def fit(ctx: torch.Tensor | None) -> list[float]:
        m = make(dropout=0.0)
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        losses = []
        for _ in range(50):
            loss = torch.nn.functional.mse_loss(m(x_num, x_cat, ctx), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    with_ctx, static_only = fit(x_ctx), fit(None)
    assert with_ctx[-1] < 0.3 * with_ctx[0], with_ctx[::10]
    # the temporal path carries the signal: memorizing rows from static features alone does worse
    assert with_ctx[-1] < 0.5 * static_only[-1], (with_ctx[-1], static_only[-1])


@pytest.mark.parametrize("with_context", [True, False])
def test_onnx_export_matches_onnxruntime(with_context):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m = make(d_embed_cat=8).eval()
    x = inputs(8) if with_context else inputs(8)[:2]
    names = ["x_num", "x_cat", "x_ctx"][: len(x)]
    f = io.BytesIO()
    # as tabxfer exports: per-variable GRNs (TFT.exporting), token-major attention (is_in_onnx_export)
    with m.exporting(), warnings.catch_warnings():  # the TorchScript exporter's notices
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m,
            x,
            f,
            dynamo=False,
            opset_version=17,
            input_names=names,
            output_names=["y"],
            dynamic_axes={k: {0: "batch"} for k in [*names, "y"]},
        )
    session = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    x2 = inputs(37, seed=3)[: len(x)]  # another batch size
    (got,) = session.run(None, {k: v.numpy() for k, v in zip(names, x2, strict=True)})
    with torch.no_grad():
        want = m(*x2).numpy()
    assert got.shape == (37, 1)
    assert abs(got - want).max() < 1e-4


@pytest.mark.parametrize(
    "kw, folded",
    [({}, True), ({"d_embed_cat": 8}, True), ({"d_model": 1, "n_heads": 1}, False)],  # d 1: no skip to fold
)
def test_exporting_swaps_in_per_variable_grns_and_puts_the_grouped_ones_back(kw, folded):
    m = make(**kw).eval()
    x = inputs(9)
    keys = list(m.state_dict())
    selections = [m.backbone.static_selection, m.backbone.temporal_selection]
    grouped = [s.variables for s in selections]
    with torch.no_grad():
        want = m(*x)
        with m.exporting():
            assert all(isinstance(s.variables, nn.ModuleList) for s in selections)
            assert [len(s.variables) for s in selections] == [N_NUM + len(CARDS), N_CTX]
            assert (m._folds is not None) == folded
            got = m(*x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert [s.variables for s in selections] == grouped and list(m.state_dict()) == keys
    assert m._folds is None
    with pytest.raises(RuntimeError, match="boom"), m.exporting():
        raise RuntimeError("boom")
    assert [s.variables for s in selections] == grouped


def test_per_group_needs_a_grouped_grn():
    with pytest.raises(ValueError, match="n_groups"):
        GRN(d_in=3, d_hidden=4, d_out=3, dropout=0.0).per_group()


@pytest.mark.parametrize(
    "kw",
    [
        {"n_heads": 3},
        {"d_model": 0},
        {"n_ctx": -1},
        {"ctx_len": 0},
        {"dropout": 1.0},
        {"d_embed_cat": 0},
        {"d_out": 0},
        {"cardinalities": [1]},
        {"n_num": 0, "cardinalities": []},
    ],
)
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        make(**kw)


def test_bad_context_raises():
    x_num, x_cat, x_ctx = inputs(2)
    with pytest.raises(ValueError, match="n_ctx=0"):
        make(n_ctx=0)(x_num, x_cat, x_ctx)
    with pytest.raises(ValueError, match="x_ctx must be"):
        make()(x_num, x_cat, x_ctx[:, 1:])


def test_export_forms_of_elu_and_glu_compute_the_same(monkeypatch):
    """The forms taken under ONNX export (ELU's -1 moved into the next bias; the GLU as two matmuls) against
    the training forms, on values spanning both ELU branches."""
    torch.manual_seed(0)
    linear, gate = nn.Linear(6, 5), GateAddNorm(d_in=6, d_out=5, dropout=0.3).eval()
    x, skip = torch.randn(40, 6) * 3, torch.randn(40, 5)
    with torch.no_grad():
        want = linear(torch.nn.functional.elu(x)), gate(x, skip)
        monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
        got = elu_then(linear, x), gate(x, skip)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-6, rtol=0)
