"""add_features: growing a trained model for columns appended to x_num / x_cat (the rule in base.py's
docstring). The grown state_dict matches a model built fresh with the grown schema (so a checkpoint of it
loads into one), trained weights stay, the zero-widened models (MLP, Wide&Deep) compute what they did, new
columns land where the embedding puts them, and the grown model trains."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor, nn

from model_helpers import make_inputs, one_thread  # noqa: F401 (autouse fixture)
from tabxfer.models.base import TabularModel
from tabxfer.models.ft_transformer import FTTransformer
from tabxfer.models.mlp import MLP
from tabxfer.models.tab_transformer import TabTransformer
from tabxfer.models.wide_deep import WideDeep


def wide_deep(*, n_num: int, cardinalities: Sequence[int], **kw) -> WideDeep:
    # Names for every column, crosses by name: a fresh model with the grown schema gets the new names and
    # the same crosses (see config), which resolve to the same (old) column indices.
    return WideDeep(
        **{
            "n_num": n_num,
            "cardinalities": cardinalities,
            "cat_names": [f"c{i}" for i in range(len(cardinalities))],
            "n_cross_buckets": 64,
            "d_embed": 3,
            "mlp_hidden": (16, 8),
            **kw,
        }
    )


# Small sizes: the suite checks behaviour, not capacity. Dropout off so train mode is deterministic too.
MODELS: dict[str, Callable[..., TabularModel]] = {
    "mlp": lambda **kw: MLP(**{"d_embed": 3, "d_block": 16, "n_blocks": 2, **kw}),
    "wide_deep": wide_deep,
    "tab_transformer": lambda **kw: TabTransformer(
        **{"d_token": 8, "d_shared": 2, "n_blocks": 1, "n_heads": 2, "mlp_hidden": (16,), **kw}
    ),
    "tab_transformer_no_mlp": lambda **kw: TabTransformer(
        **{"d_token": 8, "d_shared": 2, "n_blocks": 1, "n_heads": 2, "mlp_hidden": (), **kw}
    ),
    "ft_transformer": lambda **kw: FTTransformer(**{"d_token": 8, "n_blocks": 2, "n_heads": 2, **kw}),
}

N_NUM, CARDS = 3, [4, 5, 6]
# (n_num, cardinalities) before, (n_num, cardinalities) added
GROWTHS = {
    "num": ((N_NUM, CARDS), (2, [])),
    "cat": ((N_NUM, CARDS), (0, [7, 3])),
    "both": ((N_NUM, CARDS), (2, [7])),
    "from_no_num": ((0, CARDS), (2, [7])),
    "from_no_cat": ((N_NUM, []), (1, [7, 3, 2])),
}


def config(name: str, cards: Sequence[int]) -> dict:
    """The kwargs a model gets besides its schema, chosen for the schema before growing."""
    crosses = [["c0", "c1"], ["c1", "c0", "c2"]][: max(0, len(cards) - 1)]
    return {"crosses": crosses} if name == "wide_deep" else {}


def build(name: str, n_num: int, cards: Sequence[int], seed: int = 0, **kw) -> TabularModel:
    """A model for ``n_num, cards`` (its other kwargs chosen for ``kw.pop("old_cards", cards)``)."""
    torch.manual_seed(seed)
    kw = {**config(name, kw.pop("old_cards", cards)), **kw}
    model = MODELS[name](n_num=n_num, cardinalities=list(cards), **kw)
    with torch.no_grad():  # Wide starts at zero; make its weights visible to the comparisons
        for p in model.parameters():
            if not p.any():
                p.normal_()
    return model


Growth = tuple[tuple[int, list[int]], tuple[int, list[int]]]


def grow(
    name: str, growth: str | Growth, **kw
) -> tuple[TabularModel, TabularModel, int, list[int], int, list[int]]:
    """(old model, grown copy, n_num, cards, added n_num, added cards); ``growth`` a GROWTHS key or value."""
    (n_num, cards), (a_num, a_cards) = GROWTHS[growth] if isinstance(growth, str) else growth
    old = build(name, n_num, cards, **kw).eval()
    new = build(name, n_num, cards, **kw).eval()  # a twin: the same weights
    new.add_features(n_num=a_num, cardinalities=a_cards)
    return old, new, n_num, list(cards), a_num, list(a_cards)


def grown_inputs(
    x: tuple[Tensor, Tensor], a_num: int, a_cards: Sequence[int], seed: int
) -> tuple[Tensor, Tensor]:
    """``x`` with random values for the appended columns."""
    extra_num, extra_cat = make_inputs(x[0].shape[0], a_num, a_cards, seed=seed)
    return torch.cat([x[0], extra_num], 1), torch.cat([x[1], extra_cat], 1)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("growth", GROWTHS)
@pytest.mark.parametrize("name", MODELS)
def test_grown_state_dict_is_a_fresh_models(name: str, growth: str) -> None:
    """Same keys and shapes as the model built with the grown schema, which then loads the grown weights
    and computes what the grown model does (so the checkpoint rebuilds from the grown config)."""
    _, grown, n_num, cards, a_num, a_cards = grow(name, growth)
    fresh = build(name, n_num + a_num, cards + a_cards, seed=1, old_cards=cards).eval()
    assert shapes(grown) == shapes(fresh)
    assert grown.d_backbone == fresh.d_backbone
    fresh.load_state_dict(grown.state_dict())
    x = make_inputs(6, n_num + a_num, cards + a_cards, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(fresh(*x), grown(*x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_grown_features_without_head(name: str) -> None:
    _, grown, n_num, cards, a_num, a_cards = grow(name, "both", d_out=None)
    fresh = build(name, n_num + a_num, cards + a_cards, d_out=None, old_cards=cards)
    assert shapes(grown) == shapes(fresh) and grown.d_backbone == fresh.d_backbone
    assert grown(*make_inputs(4, n_num + a_num, cards + a_cards)).shape == (4, grown.d_backbone)


@pytest.mark.parametrize("growth", GROWTHS)
@pytest.mark.parametrize("name", ["mlp", "wide_deep"])
@pytest.mark.parametrize("d_out", [1, 3])
def test_zero_widened_models_compute_what_they_did(name: str, growth: str, d_out: int) -> None:
    """Whatever the new columns hold. Not bit-for-bit: BLAS may sum the (zero-weighted) wider rows in
    another order, so allow a few float32 ulps."""
    old, grown, n_num, cards, a_num, a_cards = grow(name, growth, d_out=d_out)
    x = make_inputs(32, n_num, cards, seed=1)
    with torch.no_grad():
        y = old(*x)
        for seed in range(3):
            torch.testing.assert_close(grown(*grown_inputs(x, a_num, a_cards, seed)), y, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("growth", "kw"),
    [
        (((0, CARDS), (2, [])), {}),
        ("cat", {"n_blocks": 0}),
        ("from_no_num", {"n_blocks": 0}),
        ("from_no_num", {"n_blocks": 0, "mlp_hidden": ()}),
    ],
    ids=["numerics_to_none", "tokens_no_blocks", "both_no_blocks", "both_no_mlp"],
)
def test_tab_transformer_computes_what_it_did_where_it_can(growth: str | Growth, kw: dict) -> None:
    """Where nothing mixes the new columns with the old ones, zero MLP weights keep the function: numerics
    added to a model that had none (their LayerNorm is new), tokens added with no Transformer blocks."""
    old, grown, n_num, cards, a_num, a_cards = grow("tab_transformer", growth, **kw)
    x = make_inputs(32, n_num, cards, seed=1)
    with torch.no_grad():
        y = old(*x)
        for seed in range(3):
            torch.testing.assert_close(grown(*grown_inputs(x, a_num, a_cards, seed)), y, rtol=0, atol=1e-6)


def test_tab_transformer_new_numerics_change_only_the_numeric_normalization() -> None:
    """With numerics already there, the LayerNorm's statistics run over the new ones too (so the function
    changes); the contextual tokens do not, and the MLP reads the old numerics' normalized values at their
    old weights (the new ones at zero weights)."""
    old, grown, n_num, cards, a_num, a_cards = grow("tab_transformer", "num")
    assert isinstance(old, TabTransformer) and isinstance(grown, TabTransformer) and old.head is not None
    x = make_inputs(16, n_num, cards, seed=1)
    seen: dict[str, Tensor] = {}
    old.backbone.mlp[0].register_forward_pre_hook(lambda _, args: seen.update(old=args[0]))
    grown.backbone.mlp[0].register_forward_pre_hook(lambda _, args: seen.update(grown=args[0]))
    d_tokens = len(cards) * 8
    with torch.no_grad():
        y_old = old(*x)
        y = grown(*grown_inputs(x, a_num, a_cards, seed=2))
        _, x_num = grown.embed(*grown_inputs(x, a_num, a_cards, seed=2))  # normalized over all numerics
        assert torch.equal(seen["grown"][:, :d_tokens], seen["old"][:, :d_tokens])  # the same tokens
        assert torch.equal(seen["grown"][:, d_tokens:], x_num)  # then the numerics, new ones last
        expected = old.head(old.backbone.mlp(torch.cat([seen["old"][:, :d_tokens], x_num[:, :n_num]], 1)))
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-6)  # the new numerics at zero weights
    assert not torch.allclose(y, y_old, rtol=0, atol=1e-4)  # but the old ones normalized differently


def column_map(z_old: Tensor, z_new: Tensor) -> list[int]:
    """For each column of ``z_old``, the one column of ``z_new`` holding the same values."""
    out = []
    for j in range(z_old.shape[1]):
        hits = [k for k in range(z_new.shape[1]) if torch.equal(z_new[:, k], z_old[:, j])]
        assert len(hits) == 1, (j, hits)
        out.append(hits[0])
    return out


@pytest.mark.parametrize("growth", GROWTHS)
@pytest.mark.parametrize("name", ["mlp", "wide_deep"])
def test_first_layer_columns_follow_the_embedding_layout(name: str, growth: str) -> None:
    """Where each old input of the first Linear lands in the grown embedding's output (found by value),
    the grown layer holds the old weights; the columns the new inputs land in are zero. Fails if the
    layer is widened at other positions than the embedding puts the new columns."""
    old, grown, n_num, cards, a_num, a_cards = grow(name, growth)
    x = make_inputs(16, n_num, cards, seed=1)
    with torch.no_grad():
        mapping = column_map(old.embed(*x), grown.embed(*grown_inputs(x, a_num, a_cards, seed=2)))
    assert mapping == sorted(mapping)  # old columns keep their order
    w_old, w_new = old.backbone[0].weight, grown.backbone[0].weight
    assert torch.equal(w_new[:, mapping], w_old)
    new_cols = [k for k in range(w_new.shape[1]) if k not in mapping]
    assert len(new_cols) == a_num + len(a_cards) * 3
    assert not w_new[:, new_cols].any()
    assert torch.equal(grown.backbone[0].bias, old.backbone[0].bias)
    # New numerics go right after the old ones, before the embeddings.
    assert new_cols[:a_num] == list(range(n_num, n_num + a_num))


def first_linear(model: nn.Module) -> nn.Linear:
    """What reads TabTransformer's ``[flattened tokens, x_num]``: the MLP's first Linear, or the head."""
    first = model.backbone.mlp[0] if len(model.backbone.mlp) else model.head
    assert isinstance(first, nn.Linear)
    return first


@pytest.mark.parametrize("growth", GROWTHS)
@pytest.mark.parametrize("name", ["tab_transformer", "tab_transformer_no_mlp"])
def test_tab_transformer_mlp_columns_follow_the_layout(name: str, growth: str) -> None:
    """``[flattened tokens, x_num]``: new tokens after the old tokens, new numerics at the end, zero."""
    old, grown, n_num, cards, a_num, a_cards = grow(name, growth)
    d, n_cat, a_cat = 8, len(cards), len(a_cards)
    w_old, w_new = first_linear(old).weight, first_linear(grown).weight
    assert torch.equal(first_linear(grown).bias, first_linear(old).bias)
    old_cols = [*range(n_cat * d), *range((n_cat + a_cat) * d, (n_cat + a_cat) * d + n_num)]
    assert torch.equal(w_new[:, old_cols], w_old)
    assert w_new.shape[1] == len(old_cols) + a_cat * d + a_num
    assert not w_new[:, n_cat * d : (n_cat + a_cat) * d].any()  # new tokens
    assert not w_new[:, (n_cat + a_cat) * d + n_num :].any()  # new numerics


def new_rows_follow_old(old: Tensor, new: Tensor, zero: bool = False) -> None:
    assert torch.equal(new[: old.shape[0]], old)
    if zero:
        assert not new[old.shape[0] :].any()


@pytest.mark.parametrize("growth", GROWTHS)
@pytest.mark.parametrize("name", MODELS)
def test_trained_weights_stay_at_their_positions(name: str, growth: str) -> None:
    """Every tensor that did not grow is unchanged; grown tables and per-column parameters keep their old
    rows first (the first-Linear columns are checked above)."""
    old, grown, _, _, _, _ = grow(name, growth)
    before, after = old.state_dict(), grown.state_dict()
    for k, v in before.items():
        if v.shape == after[k].shape:
            assert torch.equal(after[k], v), k
    grown_keys = {k for k, v in before.items() if v.shape != after[k].shape}
    for k in grown_keys:
        if "backbone.0" in k or "mlp.0" in k or (name == "tab_transformer_no_mlp" and k == "head.weight"):
            continue  # Linear input columns: test_*_columns_follow_the_layout
        # Tables, per-column tokens, LayerNorm and the wide numeric weights: old first, along dim 0
        # (the wide numeric Linear's weight is (d_out, n_num): its columns).
        v, w = (before[k].T, after[k].T) if k.endswith("wide.num.weight") else (before[k], after[k])
        new_rows_follow_old(v, w, zero=".wide." in k)


@pytest.mark.parametrize("name", MODELS)
def test_grown_model_trains(name: str) -> None:
    """Forward and backward on grown inputs reach every parameter, the zero-initialized new input weights
    included, and an optimizer built afterwards moves them."""
    _, grown, n_num, cards, a_num, a_cards = grow(name, "both")
    grown.train()
    x = make_inputs(16, n_num + a_num, cards + a_cards, seed=4)
    loss = grown(*x).square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in grown.parameters())
    if name in ("mlp", "wide_deep"):
        first = grown.backbone[0]
        assert first.weight.grad is not None and first.weight.grad[:, n_num : n_num + a_num].any()
        assert first.weight.grad[:, -3:].any()  # the new categorical's embedding columns
    opt = torch.optim.SGD(grown.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in grown.state_dict().items()}
    opt.step()
    assert any(not torch.equal(v, before[k]) for k, v in grown.state_dict().items())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("training", [False, True])
def test_new_modules_take_the_models_mode(name: str, training: bool) -> None:
    """New blocks (TabTransformer growing from no tokens) would otherwise run dropout in eval mode."""
    model = build(name, N_NUM, []).train(training)
    model.add_features(n_num=1, cardinalities=[4, 5])
    assert {m.training for m in model.modules()} == {training}


@pytest.mark.parametrize("name", MODELS)
def test_adding_nothing_changes_nothing(name: str) -> None:
    model = build(name, N_NUM, CARDS)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.add_features()
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kw", [{"n_num": -1}, {"cardinalities": [3, 1]}], ids=["negative", "cardinality"])
def test_bad_arguments(name: str, kw: dict) -> None:
    model = build(name, N_NUM, CARDS)
    before = shapes(model)
    with pytest.raises(ValueError, match="must be >= 0 and every cardinality >= 2"):
        model.add_features(**kw)
    assert shapes(model) == before


@pytest.mark.parametrize("name", MODELS)
def test_dtype_kept(name: str) -> None:
    model = build(name, N_NUM, CARDS).double()
    model.add_features(n_num=2, cardinalities=[7])
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    x_num, x_cat = make_inputs(4, N_NUM + 2, [*CARDS, 7])
    assert model(x_num.double(), x_cat).dtype == torch.float64


@pytest.mark.parametrize("name", ["mlp", "wide_deep", "tab_transformer", "ft_transformer"])
def test_float64_embeddings_copied_exactly(name: str) -> None:
    """Old rows are not rounded through a float32 table on the way."""
    old, grown = build(name, N_NUM, CARDS).double(), build(name, N_NUM, CARDS).double()
    with torch.no_grad():  # values that float32 cannot hold
        for p in [*old.parameters(), *grown.parameters()]:
            p.mul_(1 + 1e-10)
    grown.add_features(cardinalities=[7])
    before, after = old.state_dict(), grown.state_dict()
    for k in before:
        if k.endswith("table.weight"):
            assert torch.equal(after[k][: before[k].shape[0]], before[k]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", MODELS)
def test_device_kept(name: str) -> None:
    model = build(name, N_NUM, CARDS).cuda()
    model.add_features(n_num=2, cardinalities=[7])
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    x = make_inputs(4, N_NUM + 2, [*CARDS, 7])
    assert model(x[0].cuda(), x[1].cuda()).shape == (4, 1)
