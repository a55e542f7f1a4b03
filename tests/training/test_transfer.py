"""Pretrain -> fine-tune end to end for every deep model, and the pieces: objectives, strategies, schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import tabxfer
from tabxfer.features.spec import FeatureSpec
from tabxfer.train import run
from tabxfer.training.module import Finetune, TabularRegressor
from tabxfer.training.objectives import Objective, PretrainHeads, corrupt_from_marginals, info_nce, mask_cells
from tabxfer.training.transfer import added_columns, load_pretrained

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DEEP = ["ft_transformer", "mlp", "tab_transformer", "tabnet", "tft", "wide_deep"]
TINY = {  # small widths: the point is the wiring, not the accuracy
    "ft_transformer": ["model.d_token=16", "model.n_heads=2", "model.n_blocks=1"],
    "mlp": ["model.d_block=32", "model.n_blocks=1"],
    "tab_transformer": ["model.d_token=16", "model.n_heads=2", "model.n_blocks=1", "model.mlp_hidden=[16]"],
    "tabnet": ["model.n_d=8", "model.n_a=8", "model.n_steps=2"],
    "tft": ["model.d_model=16", "model.n_heads=2"],
    "wide_deep": ["model.mlp_hidden=[32]", "model.n_cross_buckets=1024"],
}
CORPUS = [
    f"data.sources.{c}.n={n}" for c, n in [("harborview", 1500), ("riverton", 1500), ("sprawlton", 1000)]
]
CORPUS += [
    "~data.sources.oldtown",
    "~data.sources.pedalburg",
    "~data.weights.oldtown",
    "~data.weights.pedalburg",
]
CORPUS += ["data.weights.riverton=2.0"]


def compose_train(tmp_path: Path, name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[
                f"paths.output_dir={tmp_path / name}",
                f"paths.cache_dir={tmp_path / 'cache'}",
                f"paths.log_dir={tmp_path / 'logs'}",
                "logger=none",
                "trainer.max_epochs=1",
                "datamodule.batch_size=256",
                *overrides,
            ],
        )


def pretrain(tmp_path: Path, model: str, objective: str = "masked_contrastive", *more: str) -> dict:
    return run(
        compose_train(
            tmp_path,
            f"pre-{model}-{objective}",
            "data=mobility",
            f"model={model}",
            f"objective={objective}",
            *TINY[model],
            *CORPUS,
            *more,
        )
    )


def finetune(tmp_path: Path, model: str, ckpt: str, *more: str) -> dict:
    return run(
        compose_train(
            tmp_path,
            f"ft-{model}",
            "data=synthetic",
            "data.sources.nyc.n=2000",
            f"model={model}",
            f"init_from={ckpt}",
            *more,
        )
    )


@pytest.mark.parametrize("model", DEEP)
def test_pretrain_then_finetune_every_model(model, tmp_path):
    pre = pretrain(tmp_path, model)
    assert pre["monitor"] == "val/loss" and torch.isfinite(torch.tensor(pre["monitor_value"]))
    assert "val/rmsle" not in pre["metrics"]  # no labels: an untrained head's RMSLE is not reported
    ckpt = pre["best_checkpoint"]
    p = load_pretrained(ckpt)
    assert p.meta["corpus"]["weights"] == {"harborview": 1.0, "riverton": 2.0, "sprawlton": 1.0}
    assert set(p.meta["corpus"]["sources"]) == {"harborview", "riverton", "sprawlton"}

    ft = finetune(tmp_path, model, ckpt)
    assert torch.isfinite(torch.tensor(ft["metrics"]["test/rmsle"]))
    module = tabxfer.load(ft["best_checkpoint"])  # the grown model rebuilds from its checkpoint alone
    spec = FeatureSpec.from_dict(module.hparams.spec)
    # the target (synthetic NYC) has store_and_fwd_flag, which the corpus lacks: appended, model grown
    assert spec.diff(p.spec)["categorical_missing"] == ["store_and_fwd_flag"]
    assert added_columns(p.spec, spec) == (0, [spec.categorical_feature("store_and_fwd_flag").cardinality])
    assert module.hparams.meta["init_from"]["path"] == ckpt
    # shared columns read as in pretraining: the same scalers and vocabularies
    assert spec.numeric == p.spec.numeric and spec.categorical[: p.spec.n_categorical] == p.spec.categorical


def test_finetuning_starts_from_the_pretrained_weights(tmp_path):
    pre = pretrain(tmp_path, "mlp", "supervised")
    p = load_pretrained(pre["best_checkpoint"])
    # linear probe: embed and backbone frozen -> their weights are the pretrained ones after training
    ft = finetune(tmp_path, "mlp", pre["best_checkpoint"], "finetune=linear_probe")
    state = tabxfer.load(ft["best_checkpoint"]).model.state_dict()
    first = "backbone.0.weight"
    n_old = p.state[first].shape[1]
    torch.testing.assert_close(state[first][:, :n_old], p.state[first], rtol=0, atol=0)
    assert torch.count_nonzero(state[first][:, n_old:]) == 0  # the new column's weights: still 0
    assert not torch.equal(state["head.weight"], p.state["head.weight"])  # the head trained


def test_init_from_refuses_another_architecture_and_bad_files(tmp_path):
    pre = pretrain(tmp_path, "mlp", "supervised")
    with pytest.raises(ValueError, match=r"holds a tabxfer\.models\.mlp\.MLP"):
        finetune(tmp_path, "tabnet", pre["best_checkpoint"])
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(Path(pre["best_checkpoint"]).read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match=r"init_from=.*bad.ckpt: truncated or not a checkpoint"):
        load_pretrained(bad)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_pretrained(tmp_path / "missing.ckpt")


# --- objectives ----------------------------------------------------------------------------------------
def test_masking_and_corruption():
    torch.manual_seed(0)
    x_num, x_cat = torch.randn(4000, 3) + 5, torch.randint(1, 7, (4000, 2))
    xn, xc, m_num, m_cat = mask_cells(x_num, x_cat, 0.3)
    assert 0.27 < m_num.float().mean() < 0.33 and 0.27 < m_cat.float().mean() < 0.33
    assert (xn[m_num] == 0).all() and (xc[m_cat] == 0).all() and torch.equal(xn[~m_num], x_num[~m_num])
    cn, cc = corrupt_from_marginals(x_num, x_cat, 0.6)
    changed = (cc != x_cat).float().mean()
    assert 0.45 < changed < 0.6  # 0.6 * P(another row has another value) = 0.6 * 5/6
    for j in range(2):  # corrupted values come from the same column (its marginal)
        assert set(cc[:, j].tolist()) <= set(x_cat[:, j].tolist())
        assert torch.isin(cn[:, j], x_num[:, j]).all()


def test_info_nce_prefers_matching_rows():
    z = torch.randn(64, 8)
    assert info_nce(z, z + 0.01 * torch.randn(64, 8), 0.1) < info_nce(z, torch.randn(64, 8), 0.1)


def test_reconstruction_counts_only_masked_cells():
    o = Objective(supervised=0.0, masked=1.0)
    heads = PretrainHeads(4, 2, [3, 5], o)
    h, x_num, x_cat = torch.randn(10, 4), torch.randn(10, 2), torch.randint(0, 3, (10, 2))
    none = torch.zeros(10, 2, dtype=torch.bool)
    m = none.clone()
    m[0, 0] = True
    base = heads.reconstruction_loss(h, x_num, x_cat, m, none)
    x_other = x_num.clone()
    x_other[1:] += 100  # unmasked cells: no effect
    assert heads.reconstruction_loss(h, x_other, x_cat, m, none) == base
    x_other[0, 0] += 1  # the masked cell: an effect
    assert heads.reconstruction_loss(h, x_other, x_cat, m, none) != base


def test_objective_validation():
    with pytest.raises(ValueError, match="at least one > 0"):
        Objective(supervised=0.0)
    with pytest.raises(ValueError, match="mask_rate"):
        Objective(masked=1.0, mask_rate=1.5)
    with pytest.raises(ValueError, match="unknown objective option"):
        Objective.of({"supervized": 1.0})


# --- strategies ----------------------------------------------------------------------------------------
def module_for(finetune: dict) -> TabularRegressor:
    spec = {"target": {"mean": 6.0, "std": 0.7}, "numeric": [{}] * 3, "categorical": [{"cardinality": 4}]}
    cfg = {
        "_target_": "tabxfer.models.mlp.MLP",
        "n_num": 3,
        "cardinalities": [4],
        "d_block": 8,
        "n_blocks": 1,
    }
    return TabularRegressor(model_cfg=cfg, spec=spec, optimizer={"lr": 0.1}, finetune=finetune)


def test_discriminative_learning_rates_per_part():
    module = module_for({"lr_mult": {"embed": 0.1, "backbone": 0.5}})
    module.trainer = type("T", (), {"estimated_stepping_batches": 10})()  # type: ignore[assignment]
    opt = module.configure_optimizers()["optimizer"]
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    parts = module.model.parts()
    n = {k: len(list(v.parameters())) for k, v in parts.items()}
    assert [lr_of[id(p)] for p in parts["embed"].parameters()] == pytest.approx([0.01] * n["embed"])
    assert [lr_of[id(p)] for p in parts["backbone"].parameters()] == pytest.approx([0.05] * n["backbone"])
    assert [lr_of[id(p)] for p in parts["head"].parameters()] == pytest.approx([0.1] * n["head"])
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(module.model.parameters()))


def test_gradual_unfreezing_schedule():
    f = Finetune.of({"freeze": ["embed", "backbone"], "unfreeze": {1: ["backbone"], 3: ["embed"]}})
    assert [sorted(f.frozen_at(e)) for e in range(4)] == [["backbone", "embed"], ["embed"], ["embed"], []]
    with pytest.raises(ValueError, match="not frozen"):
        Finetune.of({"unfreeze": {1: ["head"]}})
    with pytest.raises(ValueError, match="unknown part"):
        Finetune.of({"freeze": ["encoder"]})
