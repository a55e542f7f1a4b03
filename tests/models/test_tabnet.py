from __future__ import annotations

import copy
import warnings

import pytest
import torch
from pytorch_tabnet import sparsemax as ptn_sparsemax
from pytorch_tabnet import tab_network as ptn

from tabxfer.models.tabnet import GhostBatchNorm1d, TabNet, entmax15, sparsemax

CARDS = [4, 6, 3]
N_NUM = 5


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add sync overhead (10x slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_batch(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x_num = torch.randn(b, N_NUM, generator=g)
    x_cat = torch.stack([torch.randint(0, c, (b,), generator=g) for c in CARDS], dim=1)
    return x_num, x_cat


def make_model(**kw) -> TabNet:
    torch.manual_seed(0)
    args = {
        "n_num": N_NUM,
        "cardinalities": CARDS,
        "n_d": 8,
        "n_a": 8,
        "n_steps": 3,
        "virtual_batch_size": 64,
    }
    return TabNet(**{**args, **kw})


def warm_up(model: TabNet, steps: int = 3) -> TabNet:
    """A few training forwards so that running statistics are not the BatchNorm defaults."""
    model.train()
    x_num, x_cat = make_batch(256, seed=1)
    with torch.no_grad():
        for _ in range(steps):
            model(x_num, x_cat)
    return model.eval()


# --- shapes, gradients, aux loss -----------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [{}, {"d_embed": [2, 3, 1]}, {"mask_type": "entmax"}, {"n_shared": 0}, {"n_independent": 0}],
    ids=["default", "per-feature-d_embed", "entmax", "no-shared", "no-independent"],
)
def test_forward_shapes(kw):
    model = make_model(**kw)
    x_num, x_cat = make_batch(100)
    assert model.train()(x_num, x_cat).shape == (100, 1)
    assert model.eval()(x_num, x_cat).shape == (100, 1)
    assert model.d_backbone == 8 and set(model.parts()) == {"embed", "backbone", "head"}


@pytest.mark.parametrize("n_num,cards", [(0, [4, 6]), (3, [])], ids=["only-categorical", "only-numeric"])
def test_forward_one_kind_of_input(n_num, cards):
    model = TabNet(n_num=n_num, cardinalities=cards, d_out=2, n_d=8, n_a=8, n_steps=2).eval()
    x_num = torch.randn(10, n_num)
    x_cat = torch.zeros(10, len(cards), dtype=torch.long)
    assert model(x_num, x_cat).shape == (10, 2)
    imp, masks = model.explain(x_num, x_cat)
    assert imp.shape == (10, n_num + len(cards)) and masks[1].shape == (10, n_num + len(cards))


def test_d_out_none_gives_backbone_features():
    model = make_model(d_out=None)
    assert model.head is None and "head" not in model.parts()
    assert model(*make_batch(100)).shape == (100, 8)


def test_backward_reaches_every_parameter():
    model = make_model(mask_type="entmax").train()
    out = model(*make_batch(200))
    aux = model.aux_loss()
    assert aux is not None
    (out.square().mean() + aux).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_aux_loss_is_positive_in_training_and_none_otherwise():
    model = make_model()
    assert model.aux_loss() is None  # before any forward
    model.train()(*make_batch(100))
    aux = model.aux_loss()
    assert aux is not None and aux.ndim == 0 and aux.item() > 0 and aux.requires_grad
    # lambda_sparse * mean mask entropy; the entropy of a distribution over n_features is <= log(n_features)
    assert aux.item() <= model.lambda_sparse * torch.log(torch.tensor(float(model.n_features))) + 1e-9
    model.eval()(*make_batch(100))
    assert model.aux_loss() is None  # eval forward: no stale value from the last training step
    off = make_model(lambda_sparse=0.0).train()
    off(*make_batch(100))
    assert off.aux_loss() is None


# --- eval: determinism, batch-size independence ------------------------------------------------------
@pytest.mark.parametrize("mask_type", ["sparsemax", "entmax"])
def test_eval_is_deterministic_and_batch_size_independent(mask_type):
    model = warm_up(make_model(mask_type=mask_type))
    x_num, x_cat = make_batch(1000, seed=2)
    with torch.no_grad():
        full = model(x_num, x_cat)
        assert torch.equal(full, model(x_num, x_cat))
        small = model(x_num[100:107], x_cat[100:107])
        one = model(x_num[500:501], x_cat[500:501])
    # same numbers up to float rounding (BLAS picks different kernels for 7 and 1000 rows)
    torch.testing.assert_close(small, full[100:107], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one, full[500:501], atol=1e-5, rtol=1e-5)


def test_group_matrix_is_a_buffer_that_follows_the_model():
    model = make_model().to(torch.float64)
    buffers = dict(model.backbone.named_buffers())
    assert buffers["group_attention_matrix"].dtype == torch.float64
    assert "group_attention_matrix" not in model.backbone.state_dict()  # derived from the constructor


# --- explain -------------------------------------------------------------------------------------
def test_explain_shapes_and_masks_on_the_simplex():
    model = warm_up(make_model(d_embed=[2, 3, 1]))
    model.train()
    imp, masks = model.explain(*make_batch(50))
    assert model.training  # mode restored
    n_features = N_NUM + len(CARDS)
    assert imp.shape == (50, n_features) and (imp >= 0).all()
    assert sorted(masks) == [0, 1, 2]
    for m in masks.values():
        assert m.shape == (50, n_features) and (m >= 0).all()
        torch.testing.assert_close(m.sum(1), torch.ones(50), atol=1e-5, rtol=0)
    norm, _ = model.explain(*make_batch(50), normalize=True)
    torch.testing.assert_close(norm.sum(1), torch.ones(50), atol=1e-5, rtol=0)


# --- same numbers as pytorch-tabnet ----------------------------------------------------------------
@pytest.mark.parametrize("mask_type", ["sparsemax", "entmax"])
def test_backbone_matches_pytorch_tabnet_encoder(mask_type):
    model = warm_up(make_model(mask_type=mask_type, d_embed=[2, 3, 1]))
    bb = model.backbone
    ref = ptn.TabNetEncoder(
        model.embed.d_out, 8, n_d=8, n_a=8, n_steps=3, gamma=1.5, virtual_batch_size=64,
        mask_type=mask_type, group_attention_matrix=model.embed.group_matrix,
    )  # fmt: skip
    ref.load_state_dict(bb.state_dict())  # same keys and shapes
    ref.eval()
    x = model.embed(*make_batch(300)).detach()
    with torch.no_grad():
        steps, _ = ref(x)
        torch.testing.assert_close(bb(x), torch.stack(steps).sum(0), atol=1e-5, rtol=1e-5)
        # explain: pytorch-tabnet's column-level output summed per original feature
        imp_ref, masks_ref = ref.forward_masks(x)
        imp, masks = bb.forward_masks(x)
    reduce = (model.embed.group_matrix > 0).float().T  # (d_in, n_features)
    torch.testing.assert_close(imp, imp_ref @ reduce, atol=1e-4, rtol=1e-5)
    for step, m in masks.items():
        torch.testing.assert_close(m, masks_ref[step] @ reduce, atol=1e-5, rtol=1e-5)
    # sparsity term: pytorch-tabnet's M_loss is minus our (positive) entropy
    ref.train(), bb.train()
    _, m_loss = ref(x)
    bb(x)
    assert bb.sparsity_loss is not None
    torch.testing.assert_close(bb.sparsity_loss, -m_loss, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("b,vbs", [(1000, 128), (1000, 300), (1001, 128), (300, 512)])
def test_ghost_batch_norm_matches_pytorch_tabnet_gbn(b, vbs):
    torch.manual_seed(0)
    ref = ptn.GBN(6, virtual_batch_size=vbs, momentum=0.02)
    torch.nn.init.normal_(ref.bn.weight)
    torch.nn.init.normal_(ref.bn.bias)
    gbn = GhostBatchNorm1d(copy.deepcopy(ref.bn), virtual_batch_size=vbs)
    x = torch.randn(b, 6) * 3 + 1
    grad_out = torch.randn(b, 6)
    for _ in range(3):  # training: per-virtual-batch statistics and running-stat updates
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = gbn(x1), ref(x2)
        torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
        (y1 * grad_out).sum().backward()
        (y2 * grad_out).sum().backward()
        torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)
    for p1, p2 in ((gbn.bn.weight, ref.bn.weight), (gbn.bn.bias, ref.bn.bias)):
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(gbn.bn.running_mean, ref.bn.running_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gbn.bn.running_var, ref.bn.running_var, atol=1e-6, rtol=1e-5)
    assert gbn.bn.num_batches_tracked == ref.bn.num_batches_tracked
    gbn.eval(), ref.eval()
    torch.testing.assert_close(gbn(x), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "ours,theirs", [(sparsemax, ptn_sparsemax.sparsemax), (entmax15, ptn_sparsemax.entmax15)]
)
def test_mask_functions_match_pytorch_tabnet_values_and_gradients(ours, theirs):
    torch.manual_seed(0)
    z = torch.randn(500, 9) * 2
    grad_out = torch.randn(500, 9)
    z1, z2 = z.clone().requires_grad_(), z.clone().requires_grad_()
    p1, p2 = ours(z1), theirs(z2 * 1, -1)  # * 1: theirs works in place
    (p1 * grad_out).sum().backward()
    (p2 * grad_out).sum().backward()
    torch.testing.assert_close(p1, p2)
    torch.testing.assert_close(p1.sum(1), torch.ones(500))
    torch.testing.assert_close(z1.grad, z2.grad, atol=1e-5, rtol=1e-5)


# --- export --------------------------------------------------------------------------------------
def _export_and_compare(model: TabNet, path, dynamo: bool) -> float:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    x_num, x_cat = make_batch(1000, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, tracer notes
        if dynamo:
            kw = {"dynamic_shapes": ({0: "batch"}, {0: "batch"})}
        else:
            kw = {"opset_version": 17, "dynamic_axes": {"x_num": {0: "batch"}, "x_cat": {0: "batch"}}}
        torch.onnx.export(
            model, (x_num[:32], x_cat[:32]), str(path), input_names=["x_num", "x_cat"], dynamo=dynamo, **kw
        )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for b in (1, 7, 1000):  # batch sizes other than the traced 32
            (got,) = sess.run(None, {"x_num": x_num[:b].numpy(), "x_cat": x_cat[:b].numpy()})
            want = model(x_num[:b], x_cat[:b])
            torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)
            worst = max(worst, (torch.from_numpy(got) - want).abs().max().item())
    return worst


@pytest.mark.parametrize("mask_type", ["sparsemax", "entmax"])
def test_onnx_export_torchscript_matches_onnxruntime(mask_type, tmp_path):
    model = warm_up(make_model(mask_type=mask_type, d_embed=[2, 3, 1]))
    _export_and_compare(model, tmp_path / "tabnet.onnx", dynamo=False)


@pytest.mark.slow
def test_onnx_export_dynamo_matches_onnxruntime(tmp_path):
    pytest.importorskip("onnxscript")
    model = warm_up(make_model())
    _export_and_compare(model, tmp_path / "tabnet.onnx", dynamo=True)


# --- learning ------------------------------------------------------------------------------------
def test_overfits_a_small_batch():
    model = make_model().train()
    x_num, x_cat = make_batch(256, seed=4)
    y = torch.randn(256, 1, generator=torch.Generator().manual_seed(5))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = torch.nn.functional.mse_loss(model(x_num, x_cat), y)
        aux = model.aux_loss()
        opt.zero_grad()
        (loss + aux if aux is not None else loss).backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# --- arguments -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw",
    [
        {"n_num": -1},
        {"n_num": 0, "cardinalities": []},
        {"cardinalities": [1]},
        {"d_out": 0},
        {"d_embed": 0},
        {"d_embed": [2, 2]},  # one per categorical
        {"n_d": 0},
        {"n_a": 0},
        {"n_steps": 0},
        {"gamma": 0.9},
        {"n_independent": 0, "n_shared": 0},
        {"n_shared": -1},
        {"virtual_batch_size": 1},
        {"momentum": 0.0},
        {"momentum": 1.5},
        {"mask_type": "softmax"},
        {"lambda_sparse": -1e-3},
    ],
    ids=str,
)
def test_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        make_model(**kw)


@pytest.mark.parametrize("steps", [1, None])
def test_sparsemax_without_a_sort_is_sparsemax(tmp_path, monkeypatch, steps):
    """Exported graphs find sparsemax's threshold by Michelot's iteration instead of a sort (onnxruntime's
    TopK is slow). With the default steps every row converges and the masks equal the sorted version's up
    to rounding; with 1 step rows do not converge and the batch takes the sort (bit-identical), in torch
    and in the exported graph's ``If``."""
    from tabxfer.models import tabnet as tn

    ort = pytest.importorskip("onnxruntime")
    if steps is not None:
        monkeypatch.setattr(tn, "MICHELOT_STEPS", steps)
    torch.manual_seed(0)
    z = torch.cat([torch.randn(300, 12) * s for s in (0.05, 1.0, 10.0)])
    want = tn._sparsemax_sorted(z)
    got = tn._sparsemax_for_onnx(z)
    if steps == 1:  # one step leaves rows far from converged: the result can only come from the sort
        zs = z - z.amax(-1, keepdim=True)
        tau = tn._michelot_step(zs, tn._michelot_start(zs))
        assert (torch.clamp(zs - tau, min=0) - want).abs().max() > 1e-2
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)

    path = tmp_path / "sparsemax.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            tn.Sparsemax(), (z,), str(path), dynamo=True, dynamic_shapes=({0: torch.export.Dim("B")},)
        )
    import onnx

    top = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "If" in top and "TopK" not in top  # the sort only inside the fallback branch
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: z.numpy()})[0]
    assert abs(out - want.numpy()).max() <= 1e-6  # onnxruntime's sort and sums round their own way
