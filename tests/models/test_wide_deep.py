"""WideDeep: shapes, parts, gradients, determinism, a tiny overfit, edge cases, cross resolution, the pinned
cross hash and the ONNX round trip (opset 17, dynamic batch) against onnxruntime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import model_helpers
from model_helpers import export_and_run, one_thread  # noqa: F401 (autouse fixture)
from tabxfer.models.wide_deep import WideDeep, cross_indices, hash_cross

N_NUM = 5
NAMES = ["hour", "weekday", "pickup_cell", "dropoff_cell", "vendor"]
CARDS = [25, 8, 190, 220, 3]
CROSSES = [["pickup_cell", "dropoff_cell"], ["pickup_cell", "hour"], ["dropoff_cell", "hour"]]


def make_inputs(
    n: int, n_num: int = N_NUM, cards: Sequence[int] = CARDS, seed: int = 0
) -> tuple[Tensor, Tensor]:
    return model_helpers.make_inputs(n, n_num, cards, seed)


def build(seed: int = 0, randomize_wide: bool = False, **kw) -> WideDeep:
    torch.manual_seed(seed)
    kw = {
        "n_num": N_NUM,
        "cardinalities": CARDS,
        "cat_names": NAMES,
        "crosses": CROSSES,
        "n_cross_buckets": 4096,
        "d_embed": 4,
        "mlp_hidden": (32, 16),
        **kw,
    }
    model = WideDeep(**kw)
    if randomize_wide and model.wide is not None:  # the wide part starts at zero: make it visible
        with torch.no_grad():
            for p in model.wide.parameters():
                p.normal_()
    return model


@pytest.mark.parametrize("d_out", [1, 3])
def test_output_shape(d_out: int) -> None:
    y = build(d_out=d_out)(*make_inputs(7))
    assert y.shape == (7, d_out) and y.dtype == torch.float32


def test_backbone_features_without_head() -> None:
    model = build(d_out=None)
    assert model.head is None and model.wide is None and set(model.parts()) == {"embed", "backbone"}
    assert model.d_backbone == 16 and model(*make_inputs(7)).shape == (7, 16)


def test_parts_cover_every_parameter_and_head_holds_wide() -> None:
    model = build()
    assert set(model.parts()) == {"embed", "backbone", "head"}
    in_parts = {id(p) for part in model.parts().values() for p in part.parameters()}
    assert in_parts == {id(p) for p in model.parameters()}
    assert model.wide is not None and model.wide is model.parts()["head"].wide


def test_new_head_from_pretrained_parts() -> None:
    """Fine-tuning with a new head: a model with the new d_out loads the deep parts, the wide part is fresh."""
    old = build(d_out=1).eval()
    new = build(seed=1, d_out=2).eval()
    for part in ("embed", "backbone"):
        new.parts()[part].load_state_dict(old.parts()[part].state_dict())
    x = make_inputs(4)
    torch.testing.assert_close(new.backbone(new.embed(*x)), old.backbone(old.embed(*x)))
    assert new(*x).shape == (4, 2)


def test_backward_reaches_every_parameter() -> None:
    model = build().train()
    model(*make_inputs(16)).pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.isfinite().all()]
    assert not missing
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]  # type: ignore[union-attr]
    assert not zero, f"parameters with an all-zero gradient: {zero}"


def test_eval_is_deterministic_and_batch_independent() -> None:
    model = build(randomize_wide=True).eval()
    x_num, x_cat = make_inputs(300)
    with torch.no_grad():
        full = model(x_num, x_cat)
        assert torch.equal(full, model(x_num, x_cat))
        for start in (0, 123, 295):
            part = model(x_num[start : start + 5], x_cat[start : start + 5])
            torch.testing.assert_close(part, full[start : start + 5], atol=1e-5, rtol=0)


def test_tiny_overfit() -> None:
    torch.manual_seed(1)
    x_num, x_cat = make_inputs(256, seed=1)
    # Learnable: linear in the numerics plus a per-(pickup, dropoff) effect, which the wide cross memorizes.
    pair = torch.randn(CARDS[2], CARDS[3])
    y = (x_num @ torch.randn(N_NUM, 1)).squeeze(1) + pair[x_cat[:, 2], x_cat[:, 3]]
    model = build().train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss = nn.functional.mse_loss(model(x_num, x_cat).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


@pytest.mark.parametrize(("n_num", "cards"), [(N_NUM, []), (0, CARDS)], ids=["no_cat", "no_num"])
def test_only_one_kind_of_input(n_num: int, cards: list[int]) -> None:
    crosses = CROSSES if cards else []
    model = build(n_num=n_num, cardinalities=cards, cat_names=NAMES[: len(cards)], crosses=crosses).train()
    x = make_inputs(9, n_num=n_num, cards=cards)
    y = model(*x)
    assert y.shape == (9, 1)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_crosses_by_index_match_crosses_by_name() -> None:
    by_name, by_index = build(), build(crosses=[[2, 3], [2, 0], [3, 0]], cat_names=None)
    mixed = build(crosses=[["pickup_cell", 3], [2, "hour"], ["dropoff_cell", 0]])
    assert by_name.crosses == by_index.crosses == mixed.crosses == [(2, 3), (2, 0), (3, 0)]
    assert WideDeep.cross_indices(NAMES, [["vendor", "hour", "weekday"]]) == [(4, 0, 1)]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"crosses": [["pickup_cell", "dropof_cell"]]}, "unknown categorical feature 'dropof_cell'"),
        ({"crosses": [["pickup_cell", "hour"]], "cat_names": None}, "no cat_names"),
        ({"crosses": [[2, 5]]}, "out of range"),
        ({"crosses": [["hour", "hour"]]}, "repeats"),
        ({"crosses": [["hour"]]}, "two or more"),
        ({"crosses": ["hour"]}, "two or more"),
        ({"cat_names": NAMES[:3]}, "must equal"),
        ({"n_cross_buckets": 0}, "n_cross_buckets=0"),
        ({"mlp_hidden": ()}, "MLP hidden size"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"n_num": 0, "cardinalities": [], "cat_names": [], "crosses": []}, "at least one input"),
    ],
)
def test_bad_arguments(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(**kw)


def test_cross_indices_without_names_checks_range_only_when_known() -> None:
    assert cross_indices(None, [[0, 7]]) == [(0, 7)]
    with pytest.raises(ValueError, match="out of range"):
        cross_indices(None, [[0, 7]], n_cat=5)


def test_cross_hash_is_pinned() -> None:
    """Trained wide tables index by these buckets: a changed hash silently scrambles every checkpoint."""
    x = torch.tensor([[0, 0, 0], [1, 2, 3], [1, 2, 4], [24, 189, 219]])
    assert hash_cross(x, [0, 2], 2**18).tolist() == [164755, 132403, 211947, 197723]
    assert hash_cross(x, [1, 2, 0], 1000).tolist() == [89, 880, 638, 881]


def test_cross_hash_spreads_like_random() -> None:
    x = torch.cartesian_prod(torch.arange(190), torch.arange(220))  # every (pickup, dropoff) cell pair
    n, buckets = len(x), 2**18
    used = hash_cross(x, [0, 1], buckets).unique().numel()
    expected = buckets * (1 - (1 - 1 / buckets) ** n)  # distinct buckets under a uniformly random hash
    assert used > 0.98 * expected
    assert hash_cross(x, [0, 1], buckets).min() >= 0 and hash_cross(x, [0, 1], buckets).max() < buckets


def test_wide_cross_weight_is_read_at_the_hashed_bucket() -> None:
    model = build(crosses=[["pickup_cell", "dropoff_cell"]], n_num=0, cardinalities=CARDS)
    wide = model.wide
    assert wide is not None and wide.cross is not None
    with torch.no_grad():
        wide.cross.weight.normal_()
    x_num, x_cat = make_inputs(6, n_num=0)
    bucket = hash_cross(x_cat, [2, 3], wide.n_cross_buckets)
    torch.testing.assert_close(wide(x_num, x_cat), wide.cross.weight[bucket])  # cat weights start at 0


def test_onnx_export_matches_onnxruntime(tmp_path: Path) -> None:
    model = build(randomize_wide=True, n_cross_buckets=2**18).eval()
    x = make_inputs(33, seed=2)  # a different batch size from the export example
    y_onnx = export_and_run(model, make_inputs(4), x, tmp_path / "wide_deep.onnx")
    with torch.no_grad():
        y = model(*x)
    assert y_onnx.shape == y.shape
    torch.testing.assert_close(y_onnx, y, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_onnx_export_with_dynamo_exporter(tmp_path: Path) -> None:
    model = build(randomize_wide=True).eval()
    x = make_inputs(33, seed=2)
    y_onnx = export_and_run(model, make_inputs(4), x, tmp_path / "wide_deep.onnx", dynamo=True)
    with torch.no_grad():
        torch.testing.assert_close(y_onnx, model(*x), atol=1e-4, rtol=0)
