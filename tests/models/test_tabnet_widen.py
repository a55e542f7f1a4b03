"""TabNet.add_features: growing a trained TabNet for input columns appended at fine-tuning time."""

from __future__ import annotations

import copy

import pytest
import torch
from pytorch_tabnet.tab_network import GLU_Block
from torch import Tensor

from model_helpers import make_inputs, one_thread  # noqa: F401  (autouse fixture)
from tabxfer.models.tabnet import TabNet

N_NUM, CARDS = 3, [4, 5]
BASE = {"n_d": 8, "n_a": 8, "n_steps": 3, "virtual_batch_size": 64}

# (old n_num, old cardinalities, added n_num, added cardinalities, other kwargs)
CASES = {
    "numeric": (N_NUM, CARDS, 2, [], {}),
    "categorical": (N_NUM, CARDS, 0, [3, 6], {}),
    "both": (N_NUM, CARDS, 2, [3, 6], {}),
    "no-categorical-before": (N_NUM, [], 1, [3, 2], {}),
    "no-numeric-before": (0, CARDS, 2, [3], {}),
    "no-shared": (N_NUM, CARDS, 2, [3], {"n_shared": 0}),
    "no-independent": (N_NUM, CARDS, 2, [3], {"n_independent": 0}),
    "entmax": (N_NUM, CARDS, 1, [3], {"mask_type": "entmax"}),
    "per-feature-d_embed-numeric": (N_NUM, CARDS, 2, [], {"d_embed": [2, 3]}),
}


def build(n_num: int, cards: list[int], **kw) -> TabNet:
    torch.manual_seed(0)
    return TabNet(n_num=n_num, cardinalities=cards, **{**BASE, **kw})


def trained(n_num: int, cards: list[int], **kw) -> TabNet:
    """A model whose weights and running statistics are not the initial ones."""
    model = build(n_num, cards, **kw).train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        for _ in range(2):
            model(*make_inputs(128, n_num, cards, seed=1))
    return model.eval()


def grown(case: str) -> tuple[TabNet, TabNet, tuple]:
    n0, c0, a, cs, kw = CASES[case]
    old = trained(n0, c0, **kw)
    new = copy.deepcopy(old)
    new.add_features(n_num=a, cardinalities=cs)
    return old, new, CASES[case]


def grown_inputs(
    n: int, n0: int, c0: list[int], a: int, cs: list[int], seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Grown inputs whose old columns are ``make_inputs(n, n0, c0, seed)``'s (new columns appended)."""
    x_num, x_cat = make_inputs(n, n0, c0, seed=seed)
    new_num, new_cat = make_inputs(n, a, cs, seed=seed + 100)
    return torch.cat([x_num, new_num], 1), torch.cat([x_cat, new_cat], 1)


def column_map(n0: int, a: int, d_emb_old: int) -> Tensor:
    """New index of each old post-embedding column: numerics stay, embeddings move right by ``a``."""
    return torch.cat([torch.arange(n0), n0 + a + torch.arange(d_emb_old)])


def first_glu_fcs(model: TabNet) -> list[torch.nn.Linear]:
    """The first GLU layer (the one reading the embedded input) of every feature transformer."""
    bb = model.backbone
    out = []
    for ft in [bb.initial_splitter, *bb.feat_transformers]:
        block = ft.shared if isinstance(ft.shared, GLU_Block) else ft.specifics
        out.append(block.glu_layers[0].fc)
    return out


# --- 1. same state_dict as a fresh model of the grown inputs ------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_grown_state_dict_matches_a_fresh_model(case):
    _, new, (n0, c0, a, cs, kw) = grown(case)
    fresh = build(n0 + a, [*c0, *cs], **kw)
    got, want = new.state_dict(), fresh.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype, k
    torch.testing.assert_close(new.embed.group_matrix, fresh.embed.group_matrix, atol=0, rtol=0)
    gm_new, gm_fresh = new.backbone.group_attention_matrix, fresh.backbone.group_attention_matrix
    torch.testing.assert_close(gm_new, gm_fresh, atol=0, rtol=0)
    assert new.n_features == fresh.n_features == n0 + a + len(c0) + len(cs)
    assert new.embed.d_out == fresh.embed.d_out and new.embed.spans == fresh.embed.spans
    assert new.backbone.input_dim == fresh.backbone.input_dim
    assert new.backbone.attention_dim == fresh.backbone.attention_dim
    # a checkpoint of the grown model loads into the fresh one, which then computes the same
    fresh.load_state_dict(got)
    x = grown_inputs(50, n0, c0, a, cs)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(*x), new.eval()(*x), atol=1e-6, rtol=1e-6)


def test_shared_first_layer_stays_shared():
    _, new, _ = grown("both")
    fcs = first_glu_fcs(new)
    assert all(fc is fcs[0] for fc in fcs)
    for ft in [new.backbone.initial_splitter, *new.backbone.feat_transformers]:
        assert ft.shared.shared_layers[0] is fcs[0]
    # without shared layers every step has its own first layer, each grown
    _, new, _ = grown("no-shared")
    fcs = first_glu_fcs(new)
    assert len({id(fc) for fc in fcs}) == len(fcs)
    assert all(fc.in_features == new.embed.d_out for fc in fcs)


# --- 2. every old weight, unchanged, at its new position ----------------------------------------------
@pytest.mark.parametrize("case", ["both", "no-shared", "no-numeric-before", "no-categorical-before"])
def test_old_weights_are_kept_at_their_new_positions(case):
    old, new, (n0, c0, a, _, _) = grown(case)
    d_emb_old = old.embed.d_out - n0
    cols = column_map(n0, a, d_emb_old)
    new_cols = torch.ones(new.embed.d_out, dtype=torch.bool)
    new_cols[cols] = False
    groups = torch.cat([torch.arange(n0), n0 + a + torch.arange(len(c0))])
    new_groups = torch.ones(new.n_features, dtype=torch.bool)
    new_groups[groups] = False

    # embedding rows of the old categoricals
    if c0:
        w_old, w_new = old.embed.tables[0].table.weight, new.embed.tables[0].table.weight
        assert torch.equal(w_new[: sum(c0)], w_old)
    # initial batch norm: old channels copied, new ones at the defaults
    bn_old, bn_new = old.backbone.initial_bn, new.backbone.initial_bn
    for name, default in [("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)]:
        assert torch.equal(getattr(bn_new, name)[cols], getattr(bn_old, name)), name
        assert (getattr(bn_new, name)[new_cols] == default).all(), name
    assert bn_new.num_batches_tracked == bn_old.num_batches_tracked
    assert (bn_new.momentum, bn_new.eps) == (bn_old.momentum, bn_old.eps)
    # first GLU layers: old columns copied, new columns zero
    for fc_old, fc_new in zip(first_glu_fcs(old), first_glu_fcs(new), strict=True):
        assert torch.equal(fc_new.weight[:, cols], fc_old.weight)
        assert (fc_new.weight[:, new_cols] == 0).all()
    # attentive transformers: old groups' fc rows and batch-norm channels copied
    for att_old, att_new in zip(old.backbone.att_transformers, new.backbone.att_transformers, strict=True):
        assert torch.equal(att_new.fc.weight[groups], att_old.fc.weight)
        assert att_new.fc.weight[new_groups].abs().sum() > 0  # freshly initialized, not zero
        b_old, b_new = att_old.bn.bn, att_new.bn.bn
        for name, default in [("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)]:
            assert torch.equal(getattr(b_new, name)[groups], getattr(b_old, name)), name
            assert (getattr(b_new, name)[new_groups] == default).all(), name
        assert b_new.num_batches_tracked == b_old.num_batches_tracked
    # everything else (later GLU layers, the head) is untouched
    old_sd, new_sd = old.state_dict(), new.state_dict()
    same_shape = [k for k in old_sd if old_sd[k].shape == new_sd[k].shape]
    assert any(k.startswith("head.") for k in same_shape)
    for k in same_shape:
        assert torch.equal(new_sd[k], old_sd[k]), k


def test_keeps_each_module_in_its_mode():
    """New modules take the mode of the ones they replace (a fresh module would be in training mode)."""
    _, new, _ = grown("both")  # grown in eval mode
    assert not any(m.training for m in new.modules())
    model = trained(N_NUM, []).train()
    model.backbone.eval()  # e.g. a frozen backbone while the rest trains
    model.add_features(n_num=1, cardinalities=[3])
    assert model.embed.training and all(m.training for m in model.embed.modules())
    assert not any(m.training for m in model.backbone.modules())


def test_keeps_device_and_dtype():
    old = trained(N_NUM, CARDS).to(torch.float64)
    old.add_features(n_num=2, cardinalities=[3])
    for name, t in [*old.named_parameters(), *old.named_buffers()]:
        if t.is_floating_point():
            assert t.dtype == torch.float64, name
    no_cat = build(N_NUM, []).to(torch.float64)
    no_cat.add_features(cardinalities=[3])
    assert no_cat.embed.tables[0].table.weight.dtype == torch.float64


# --- 3. training and eval on the grown inputs -----------------------------------------------------------
@pytest.mark.parametrize("case", ["both", "no-shared", "entmax", "no-categorical-before"])
def test_forward_backward_and_aux_loss_after_growing(case):
    _, new, (n0, c0, a, cs, _) = grown(case)
    x = grown_inputs(200, n0, c0, a, cs)
    out = new.train()(*x)
    aux = new.aux_loss()
    assert out.shape == (200, 1) and aux is not None and aux.item() > 0
    (out.square().mean() + aux).backward()
    for name, p in new.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # the new columns are learnable: their (zero) weights in the first GLU layers get gradients
    d_old = n0 + sum(new.embed.d_embed[: len(c0)])
    new_cols = [*range(n0, n0 + a), *range(d_old + a, new.embed.d_out)]
    assert first_glu_fcs(new)[0].weight.grad[:, new_cols].abs().sum() > 0
    with torch.no_grad():
        assert new.eval()(*x).shape == (200, 1)
    assert new.aux_loss() is None
    imp, masks = new.explain(*x)
    assert imp.shape == (200, new.n_features) and masks[0].shape == (200, new.n_features)


# --- 4. positions: with the new groups silenced, the grown model is the old one ------------------------
def silence_new_groups(model: TabNet, new_groups: Tensor) -> None:
    """Push the new groups' attention logits far below the sparsemax/entmax threshold: masks of 0."""
    with torch.no_grad():
        for att in model.backbone.att_transformers:
            att.fc.weight[new_groups] = 0
            att.bn.bn.bias[new_groups] = -1e4


@pytest.mark.parametrize("case", ["both", "no-shared", "no-independent", "entmax", "no-categorical-before"])
def test_silenced_new_groups_reproduce_the_old_model(case):
    """Fails if any old weight or group-matrix entry sits at the wrong position (e.g. an old numeric
    column's weights in the embedding block, or a new numeric group after the categoricals)."""
    old, new, (n0, c0, a, cs, _) = grown(case)
    new_groups = torch.ones(new.n_features, dtype=torch.bool)
    new_groups[torch.cat([torch.arange(n0), n0 + a + torch.arange(len(c0))])] = False
    silence_new_groups(new, new_groups)
    x_old = make_inputs(100, n0, c0, seed=3)
    x_new = grown_inputs(100, n0, c0, a, cs, seed=3)  # same old columns, random new ones
    with torch.no_grad():
        torch.testing.assert_close(new.eval()(*x_new), old.eval()(*x_old), atol=1e-5, rtol=1e-5)
        _, masks_old = old.explain(*x_old)
        _, masks_new = new.explain(*x_new)
        for step, m in masks_new.items():
            assert (m[:, new_groups] == 0).all()
            torch.testing.assert_close(m[:, ~new_groups], masks_old[step], atol=1e-6, rtol=1e-6)
        # training forward too (batch statistics are per channel), with the same sparsity term
        out_old, out_new = old.train()(*x_old), new.train()(*x_new)
    torch.testing.assert_close(out_new, out_old, atol=1e-5, rtol=1e-5)
    aux_old, aux_new = old.aux_loss(), new.aux_loss()
    assert aux_old is not None and aux_new is not None
    torch.testing.assert_close(aux_new, aux_old, atol=1e-7, rtol=1e-5)


def test_not_silenced_the_masks_change_but_old_logits_do_not():
    """What the docstring says: old groups' attention logits are kept, the masks renormalize."""
    old, new, (n0, c0, a, cs, _) = grown("both")
    x_old = make_inputs(100, n0, c0, seed=4)
    x_new = grown_inputs(100, n0, c0, a, cs, seed=4)
    groups = torch.cat([torch.arange(n0), n0 + a + torch.arange(len(c0))])
    with torch.no_grad():
        logits = []
        for model, x in [(old, x_old), (new, x_new)]:
            bb = model.backbone
            h = bb.initial_bn(model.embed(*x))
            att = bb.initial_splitter(h)[:, bb.n_d :]
            logits.append(bb.att_transformers[0].bn(bb.att_transformers[0].fc(att)))
        torch.testing.assert_close(logits[1][:, groups], logits[0], atol=1e-6, rtol=1e-6)
        assert not torch.allclose(new(*x_new), old(*x_old))


# --- arguments -----------------------------------------------------------------------------------------
def test_rejects_bad_arguments_and_unknown_embedding_size():
    model = build(N_NUM, CARDS)
    with pytest.raises(ValueError, match="must be >= 0"):
        model.add_features(n_num=-1)
    with pytest.raises(ValueError, match="cardinality"):
        model.add_features(cardinalities=[1])
    listed = build(N_NUM, CARDS, d_embed=[2, 3])
    with pytest.raises(ValueError, match="per-feature d_embed"):
        listed.add_features(cardinalities=[3])
    assert listed.embed.d_out == N_NUM + 5  # unchanged by the refused call


def test_adding_nothing_changes_nothing():
    model = build(N_NUM, CARDS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.add_features()
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
