"""Explanations: shapes and normalizations of TabNet masks and TFT weights, permutation importance finding a
planted signal, and the split inputs (context included) formed as training forms them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tabxfer.evaluation import explain
from tabxfer.features.spec import CategoricalFeature, FeatureSpec, NumericFeature, Target
from tabxfer.training.module import TabularRegressor

N_NUM, CARDS = 4, [5, 3]
NAMES = ["n0", "n1", "n2", "n3", "c0", "c1"]
SIGNAL = 2  # the numeric column the planted target depends on


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One thread for tiny tensors (module scope: before the trained-model fixtures); a multi-threaded
    matmul next to other jobs on a 2-core machine was 10x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def spec_dict(mean: float = 6.0, std: float = 0.8) -> dict:
    spec = FeatureSpec(
        numeric=tuple(NumericFeature(f"n{i}", 0.0, 1.0) for i in range(N_NUM)),
        categorical=tuple(CategoricalFeature(f"c{j}", tuple(range(c - 1))) for j, c in enumerate(CARDS)),
        target=Target(mean=mean, std=std),
        city_centers={},
    )
    return spec.to_dict()


def make_module(target: str, **kw) -> TabularRegressor:
    cfg = {"_target_": target, "n_num": N_NUM, "cardinalities": CARDS, "d_out": 1, **kw}
    return TabularRegressor(model_cfg=cfg, spec=spec_dict())


def inputs(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random inputs and a target (log1p seconds) that depends on column ``SIGNAL`` only."""
    g = torch.Generator().manual_seed(seed)
    x_num = torch.randn(n, N_NUM, generator=g)
    x_cat = torch.stack([torch.randint(0, c, (n,), generator=g) for c in CARDS], dim=1)
    y = 6.0 + 0.8 * torch.tanh(1.5 * x_num[:, SIGNAL])
    return x_num, x_cat, y


def fit(module: TabularRegressor, steps: int = 250, n: int = 4096) -> TabularRegressor:
    """A few hundred Adam steps on the planted target (no Lightning: a plain loop is faster)."""
    torch.manual_seed(0)
    x_num, x_cat, y = inputs(n, seed=1)
    opt = torch.optim.Adam(module.model.parameters(), lr=1e-2)
    module.train()
    for step in range(steps):
        s = slice((step * 512) % n, (step * 512) % n + 512)
        z = module._z(x_num[s], x_cat[s])
        loss = torch.nn.functional.mse_loss(z, (y[s] - module.y_mean) / module.y_std)
        aux = module.model.aux_loss()
        opt.zero_grad()
        (loss if aux is None else loss + aux).backward()
        opt.step()
    return module.eval()


@pytest.fixture(scope="module")
def trained_mlp() -> TabularRegressor:
    return fit(make_module("tabxfer.models.mlp.MLP", d_block=32, n_blocks=1, d_embed=4, dropout=0.0))


@pytest.fixture(scope="module")
def trained_tabnet() -> TabularRegressor:
    return fit(
        make_module(
            "tabxfer.models.tabnet.TabNet", n_d=8, n_a=8, n_steps=3, virtual_batch_size=128, momentum=0.1
        ),
        steps=100,
    )


def test_feature_names_follow_the_model_order():
    assert explain.feature_names(make_module("tabxfer.models.mlp.MLP", d_block=8, n_blocks=1)) == NAMES


def test_tabnet_masks_are_per_step_and_feature_and_sum_to_one():
    module = make_module("tabxfer.models.tabnet.TabNet", n_d=8, n_a=8, n_steps=3)
    module.train()
    x_num, x_cat, _ = inputs(300)
    masks = explain.tabnet_masks(module, x_num, x_cat, batch_size=128)  # batches of 128, 128, 44
    assert masks.shape == (3, 300, len(NAMES)) and masks.dtype == np.float32
    np.testing.assert_allclose(masks.sum(-1), 1.0, atol=1e-5)
    assert (masks >= 0).all()
    assert module.training  # the module's mode is restored
    # batch-size independent (eval mode: running statistics), and the model's own explain() agrees
    np.testing.assert_allclose(explain.tabnet_masks(module, x_num, x_cat), masks, atol=1e-6)
    _, own = module.model.eval().explain(x_num, x_cat)
    np.testing.assert_allclose(masks[1], own[1].numpy(), atol=1e-6)


def test_tabnet_importance_sums_to_one_and_finds_the_signal(trained_tabnet):
    x_num, x_cat, _ = inputs(2000, seed=2)
    for per_row in (False, True):
        imp = explain.tabnet_importance(trained_tabnet, x_num, x_cat, per_row=per_row, batch_size=700)
        assert list(imp) == NAMES
        assert sum(imp.values()) == pytest.approx(1.0, abs=1e-9)
        assert max(imp, key=imp.__getitem__) == f"n{SIGNAL}", imp
    assert explain.feature_importance(trained_tabnet, x_num, x_cat) == pytest.approx(
        explain.tabnet_importance(trained_tabnet, x_num, x_cat)
    )
    assert explain.importance_method(trained_tabnet) == "tabnet_masks"


def test_permutation_importance_ranks_the_planted_feature_first(trained_mlp):
    x_num, x_cat, y = inputs(3000, seed=3)
    base = explain.rmsle(explain.predict_log(trained_mlp, x_num, x_cat), y.numpy())
    assert base < 0.1  # the model learned the target
    imp = explain.permutation_importance(trained_mlp, x_num, x_cat, y, n_repeats=2, seed=0, batch_size=1000)
    assert list(imp) == NAMES
    ranked = sorted(imp, key=imp.__getitem__, reverse=True)
    assert ranked[0] == f"n{SIGNAL}", imp
    # shuffling the signal destroys the fit: its RMSLE increase is most of the target's spread
    assert imp[f"n{SIGNAL}"] > 0.3 and all(abs(imp[k]) < 0.05 for k in ranked[1:]), imp
    # deterministic in the seed, and the generic dispatch uses it for an MLP
    assert imp == explain.permutation_importance(trained_mlp, x_num, x_cat, y, n_repeats=2, seed=0)
    assert explain.importance_method(trained_mlp) == "permutation"
    assert explain.feature_importance(trained_mlp, x_num, x_cat, y, n_repeats=2) == imp
    with pytest.raises(ValueError, match="permutation needs y"):
        explain.feature_importance(trained_mlp, x_num, x_cat)


def test_permutation_importance_skips_unlabeled_rows(trained_mlp):
    x_num, x_cat, y = inputs(500, seed=4)
    y_nan = y.clone()
    y_nan[::3] = float("nan")
    keep = ~torch.isnan(y_nan)
    got = explain.permutation_importance(trained_mlp, x_num, x_cat, y_nan)
    want = explain.permutation_importance(trained_mlp, x_num[keep], x_cat[keep], y[keep])
    assert got == pytest.approx(want)


def test_tft_weights_sum_to_one_with_and_without_context():
    module = make_module("tabxfer.models.tft.TFT", n_ctx=4, ctx_len=5, d_model=8, n_heads=2)
    x_num, x_cat, y = inputs(250)
    x_ctx = torch.randn(250, 5, 4)
    out = explain.tft_interpretation(module, x_num, x_cat, x_ctx, batch_size=100)
    assert list(out["static"]) == NAMES
    assert sum(out["static"].values()) == pytest.approx(1.0, abs=1e-6)
    assert out["temporal"] is not None and out["temporal"].shape == (5, 4)
    np.testing.assert_allclose(out["temporal"].sum(-1), 1.0, atol=1e-6)
    assert out["channels"] == ["city_log_trips", "city_log_speed", "region_log_trips", "region_log_speed"]
    assert out["attention"].shape == (6,) and out["attention"].sum() == pytest.approx(1.0, abs=1e-6)
    assert out["positions"] == ["-5h", "-4h", "-3h", "-2h", "-1h", "now"]
    # the mean over rows, batch by batch, is the mean of the model's own per-row weights
    own = module.model.eval().interpret(x_num, x_cat, x_ctx)
    np.testing.assert_allclose(list(out["static"].values()), own.static_weights.mean(0).numpy(), atol=1e-6)
    # without context: the static path alone, attention trivially on the present step
    with pytest.warns(UserWarning, match="static features alone"):
        alone = explain.tft_interpretation(module, x_num, x_cat)
    assert alone["temporal"] is None and alone["channels"] is None and alone["positions"] == ["now"]
    assert alone["attention"].tolist() == pytest.approx([1.0])
    # the dispatch returns the static weights; permutation also shuffles the context as one unit
    assert explain.feature_importance(module, x_num, x_cat, None, x_ctx) == out["static"]
    perm = explain.permutation_importance(module, x_num, x_cat, y, x_ctx)
    assert list(perm) == [*NAMES, explain.CONTEXT]


def test_wrong_model_and_bad_inputs_are_refused():
    mlp = make_module("tabxfer.models.mlp.MLP", d_block=8, n_blocks=1)
    x_num, x_cat, y = inputs(10)
    with pytest.raises(TypeError, match="TabNet"):
        explain.tabnet_masks(mlp, x_num, x_cat)
    with pytest.raises(TypeError, match="TFT"):
        explain.tft_interpretation(mlp, x_num, x_cat)
    with pytest.raises(ValueError, match="row counts"):
        explain.permutation_importance(mlp, x_num, x_cat[:5], y)
    with pytest.raises(ValueError, match="y has 9"):
        explain.permutation_importance(mlp, x_num, x_cat, y[:9])
    with pytest.raises(ValueError, match="n_repeats"):
        explain.permutation_importance(mlp, x_num, x_cat, y, n_repeats=0)


def test_split_inputs_form_batches_as_training_does(tmp_path):
    from tabxfer.data.sources import SyntheticTrips
    from tabxfer.features.build import build_cache
    from tabxfer.training.data import CacheDataModule

    cache = build_cache(
        {"nyc": SyntheticTrips(n=1500, seed=0)},
        cache_dir=tmp_path,
        name="t",
        features={"context": True, "context_hours": 6},
    )
    full = explain.split_inputs(cache, "val")
    assert len(full) == len(cache.split("val")) and full.index.tolist() == list(range(len(full)))
    assert full.x_ctx is not None and tuple(full.x_ctx.shape) == (len(full), 6, 4)
    # the training data module's first validation batch: the same tensors, context included
    batch = next(iter(CacheDataModule(cache, eval_batch_size=100_000).val_dataloader()))
    for a, b in zip(batch, (full.x_num, full.x_cat, full.y, full.x_ctx), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    some = explain.split_inputs(cache, "val", max_rows=50, seed=1)
    assert len(some) == 50 and np.all(np.diff(some.index) > 0)
    torch.testing.assert_close(some.x_num, full.x_num[torch.from_numpy(some.index)])
    assert some.x_ctx is not None
    torch.testing.assert_close(some.x_ctx, full.x_ctx[torch.from_numpy(some.index)])
