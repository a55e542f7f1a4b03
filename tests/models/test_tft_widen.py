"""TFT.add_features: the grown model is shaped like a fresh one, keeps every trained weight at its variable's
new index (new numerics after the old numerics, new categoricals at the end), trains and interprets."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor

from model_helpers import TFT_TEMPORAL_PARAMS, make_inputs, one_thread  # noqa: F401 (autouse fixture)
from tabxfer.models.tft import NEW_VARIABLE_LOGIT_GAP, TFT

N_NUM, CARDS = 3, [5, 3, 7]
N_CTX, T, D = 2, 4, 8
ADD_NUM, ADD_CARDS = 2, [4, 6]


def make(n_num: int = N_NUM, cards: Sequence[int] = CARDS, **kw) -> TFT:
    torch.manual_seed(0)
    args = dict(n_ctx=N_CTX, ctx_len=T, d_model=D, n_heads=2, dropout=0.0)
    return TFT(n_num=n_num, cardinalities=list(cards), **(args | kw))


def shapes(m: TFT) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in m.state_dict().items()]


def ctx(b: int, n_ctx: int = N_CTX) -> Tensor | None:
    return torch.randn(b, T, n_ctx, generator=torch.Generator().manual_seed(1)) if n_ctx else None


def old_to_new(n_num: int = N_NUM, n_cat: int = len(CARDS), add_num: int = ADD_NUM) -> list[int]:
    """The new static index of every old static variable: categoricals move up by the added numerics."""
    return [*range(n_num), *(n_num + add_num + j for j in range(n_cat))]


@pytest.mark.parametrize("n_ctx", [0, N_CTX])
@pytest.mark.parametrize(("add_num", "add_cards"), [(ADD_NUM, []), (0, ADD_CARDS), (ADD_NUM, ADD_CARDS)])
def test_grown_state_dict_is_a_fresh_models(n_ctx: int, add_num: int, add_cards: list[int]) -> None:
    m = make(n_ctx=n_ctx)
    m.add_features(n_num=add_num, cardinalities=add_cards)
    fresh = make(N_NUM + add_num, CARDS + add_cards, n_ctx=n_ctx)
    assert shapes(m) == shapes(fresh)  # same keys, shapes and order (optimizer state follows the order)
    fresh.load_state_dict(m.state_dict())  # a checkpoint of the grown model rebuilds from its config
    x_num, x_cat = make_inputs(6, N_NUM + add_num, CARDS + add_cards)
    m.eval(), fresh.eval()
    assert torch.equal(m(x_num, x_cat, ctx(6, n_ctx)), fresh(x_num, x_cat, ctx(6, n_ctx)))


@pytest.mark.parametrize(
    ("n_num", "cards", "kw"),
    [
        (0, CARDS, {}),  # no numeric tokens before
        (N_NUM, [], {}),  # no categorical tables before
        (N_NUM, [], {"d_embed_cat": 4}),  # ... and no per-variable projection of narrow tables
        (N_NUM, CARDS, {"d_embed_cat": 4}),
        (N_NUM, CARDS, {"d_model": 1, "n_heads": 1}),  # the selection GRN's skip is the identity
    ],
)
def test_grown_state_dict_edge_cases(n_num: int, cards: list[int], kw: dict) -> None:
    m = make(n_num, cards, **kw)
    m.add_features(n_num=ADD_NUM, cardinalities=ADD_CARDS)
    assert shapes(m) == shapes(make(n_num + ADD_NUM, cards + ADD_CARDS, **kw))
    x_num, x_cat = make_inputs(5, n_num + ADD_NUM, cards + ADD_CARDS)
    assert m(x_num, x_cat, ctx(5)).shape == (5, 1)


def test_old_weights_move_to_their_new_variable_index() -> None:
    m = make(d_embed_cat=4)
    m(*make_inputs(8, N_NUM, CARDS), ctx(8)).sum().backward()  # a step, so no weight is at its init
    with torch.no_grad():
        for p in m.parameters():
            if p.grad is not None:
                p.sub_(0.1 * p.grad)
    old = {k: v.clone() for k, v in m.state_dict().items()}
    logit = old["backbone.static_selection.weights.gate.norm.bias"].mean() - NEW_VARIABLE_LOGIT_GAP
    m.add_features(n_num=ADD_NUM, cardinalities=ADD_CARDS)
    new = m.state_dict()
    idx = old_to_new()
    added = sorted(set(range(N_NUM + ADD_NUM + len(CARDS + ADD_CARDS))) - set(idx))
    assert added == [3, 4, 8, 9]
    n_old, n_new = len(idx), len(idx) + len(added)
    checked = set()

    def same(key: str, new_part: Tensor, old_part: Tensor | None = None) -> None:
        checked.add(key)
        assert torch.equal(new_part, old[key] if old_part is None else old_part), key

    # embeddings: appended rows
    for key in ("embed.num.weight", "embed.num.bias", "embed.cat_proj.weight", "embed.cat_proj.bias"):
        same(key, new[key][: len(old[key])])
    same("embed.cat.table.weight", new["embed.cat.table.weight"][: sum(CARDS)])
    # every per-variable GRN of the static selection: old variable i is now variable idx[i]
    prefix = "backbone.static_selection.variables."
    for key in (k for k in old if k.startswith(prefix)):
        same(key, new[key][idx])
    # the selection-weight GRN: input blocks (d_model wide) and output rows follow the variables
    prefix = "backbone.static_selection.weights."
    cols = torch.tensor([i * D + c for i in idx for c in range(D)])
    new_cols = torch.tensor([i * D + c for i in added for c in range(D)])
    same(prefix + "fc2.weight", new[prefix + "fc2.weight"][:, cols])
    assert not new[prefix + "fc2.weight"][:, new_cols].any()
    for key in ("fc2.bias", "fc1.weight", "fc1.bias"):
        same(prefix + key, new[prefix + key])
    skip_w, skip_b = new[prefix + "skip.weight"], new[prefix + "skip.bias"]
    same(prefix + "skip.weight", skip_w[idx][:, cols])
    same(prefix + "skip.bias", skip_b[idx])
    assert not skip_w[added].any() and not skip_w[:, new_cols].any() and not skip_b[added].any()
    glu_rows = [*idx, *(n_new + i for i in idx)]  # the GLU's value half, then its gate half
    glu_new = [*added, *(n_new + i for i in added)]
    for key in ("gate.fc.weight", "gate.fc.bias"):
        same(prefix + key, new[prefix + key][glu_rows])
        assert not new[prefix + key][glu_new].any()
    same(prefix + "gate.norm.weight", new[prefix + "gate.norm.weight"][idx])
    same(prefix + "gate.norm.bias", new[prefix + "gate.norm.bias"][idx])
    assert not new[prefix + "gate.norm.weight"][added].any()
    torch.testing.assert_close(new[prefix + "gate.norm.bias"][added], logit.expand(len(added)))
    assert old[prefix + "gate.fc.weight"].shape[0] == 2 * n_old
    # everything else is untouched
    for key in old.keys() - checked:
        same(key, new[key])


@pytest.mark.parametrize("with_ctx", [False, True])
def test_grown_model_trains_and_interprets(with_ctx: bool) -> None:
    m = make(d_embed_cat=4)
    m.add_features(n_num=ADD_NUM, cardinalities=ADD_CARDS)
    x_num, x_cat = make_inputs(16, N_NUM + ADD_NUM, CARDS + ADD_CARDS)
    x_ctx = ctx(16) if with_ctx else None
    out = m(x_num, x_cat, x_ctx)
    assert out.shape == (16, 1)
    out.pow(2).mean().backward()
    temporal = TFT_TEMPORAL_PARAMS
    for name, p in m.named_parameters():
        assert (p.grad is None) == (not with_ctx and name.startswith(temporal)), name
        assert p.grad is None or p.grad.isfinite().all(), name
    for name in ("embed.num.weight", "embed.cat_proj.weight", "backbone.static_selection.weights.fc2.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    w = m.eval().interpret(x_num, x_cat, x_ctx)
    n_static = N_NUM + ADD_NUM + len(CARDS + ADD_CARDS)
    assert w.static_weights.shape == (16, n_static)
    torch.testing.assert_close(w.static_weights.sum(-1), torch.ones(16))
    assert (w.temporal_weights is not None) == with_ctx


def test_new_variables_sit_at_their_index() -> None:
    """The new variables' logits are a constant (gain 0) that ignores the new columns (zero input weights):
    they are equal, only at the new numerics' and categoricals' indices, and the new columns' values do not
    move any selection weight, while the old columns' values do. Any misplaced block would break this."""
    m = make()
    m.add_features(n_num=ADD_NUM, cardinalities=ADD_CARDS)
    m.eval()
    x_num, x_cat = make_inputs(32, N_NUM + ADD_NUM, CARDS + ADD_CARDS)
    w = m.interpret(x_num, x_cat, ctx(32)).static_weights
    added, idx = [3, 4, 8, 9], old_to_new()
    assert torch.equal(w[:, added], w[:, added[:1]].expand(-1, 4))  # one logit for all new variables
    for i in idx:  # no old variable has that constant logit
        assert not torch.allclose(w[:, i], w[:, added[0]])
    assert w[:, added].mean() < w[:, idx].mean()  # and they start small
    # the new columns' values reach the selection only through zero weights
    x_num2, x_cat2 = make_inputs(32, N_NUM + ADD_NUM, CARDS + ADD_CARDS, seed=1)
    new_num, new_cat = x_num.clone(), x_cat.clone()
    new_num[:, N_NUM:], new_cat[:, len(CARDS) :] = x_num2[:, N_NUM:], x_cat2[:, len(CARDS) :]
    assert torch.equal(m.interpret(new_num, new_cat, ctx(32)).static_weights, w)
    old_num = x_num.clone()
    old_num[:, :N_NUM] = x_num2[:, :N_NUM]
    assert not torch.allclose(m.interpret(old_num, x_cat, ctx(32)).static_weights, w)


def test_keeps_dtype_and_parameters_when_nothing_is_added() -> None:
    m = make(d_embed_cat=4).double()
    table = m.embed.cat.table.weight.clone()  # type: ignore[union-attr]
    before = list(m.parameters())
    m.add_features()
    assert all(a is b for a, b in zip(before, m.parameters(), strict=True))
    m.add_features(n_num=1, cardinalities=[3])
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert torch.equal(m.embed.cat.table.weight[: sum(CARDS)], table)  # type: ignore[union-attr]
    x_num, x_cat = make_inputs(4, N_NUM + 1, [*CARDS, 3])
    assert m(x_num.double(), x_cat, ctx(4).double()).dtype == torch.float64  # type: ignore[union-attr]


@pytest.mark.parametrize("kw", [{"n_num": -1}, {"cardinalities": [1]}])
def test_bad_additions_raise_and_change_nothing(kw: dict) -> None:
    m = make()
    before = shapes(m)
    with pytest.raises(ValueError):
        m.add_features(**kw)
    assert shapes(m) == before
