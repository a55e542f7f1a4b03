"""A finished run reopened for analysis: model, config, metrics, its tensor cache (spec checked) and the
canonical trips of a split, aligned row by row with the cache."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from factories import tiny_run_config
from tabxfer.evaluation import explain
from tabxfer.evaluation.runs import aligned_rows, load_run, run_cache, saved_config, split_rows
from tabxfer.train import run as train_run


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory) -> Path:
    """One tiny MLP run on 2,000 synthetic trips; its Hydra config saved as ``train.py`` saves it."""
    root = tmp_path_factory.mktemp("runs")
    cfg = tiny_run_config(root, "mlp", "model=mlp", "model.d_block=16", "model.n_blocks=1")
    train_run(cfg)
    (root / "mlp" / ".hydra").mkdir()
    OmegaConf.save(cfg, root / "mlp" / ".hydra" / "config.yaml")
    return root / "mlp"


def test_load_run_and_its_cache(mlp_run):
    run = load_run(mlp_run)
    assert run.model_name == "MLP" and not run.module.training
    assert run.checkpoint == mlp_run / "checkpoints" / "best.ckpt"
    assert run.config["data"]["sources"]["nyc"]["n"] == 2000
    cache = run_cache(run)  # found by its fingerprint in the run's cache folder
    assert cache.path.parent == mlp_run.parent / "cache"
    # the whole test split through the cache reproduces the recorded test RMSLE of the best checkpoint
    x = explain.split_inputs(cache, "test")
    score = explain.rmsle(explain.predict_log(run.module, x.x_num, x.x_cat), x.y.numpy())
    assert score == pytest.approx(run.metrics["metrics"]["test/rmsle"], abs=1e-5)
    # the saved Hydra config (what a checkpoint without meta falls back to) names the same data
    saved = saved_config(mlp_run)
    assert saved["data"] == run.config["data"]
    assert saved["paths"]["cache_dir"] == run.config["paths"]["cache_dir"]


@pytest.mark.parametrize("split", ["train", "test"])
def test_canonical_rows_line_up_with_the_cache(mlp_run, split):
    run = load_run(mlp_run)
    cache = run_cache(run)
    rows = aligned_rows(run.config, cache, split)
    arrays = cache.split(split)
    assert rows.height == len(arrays) and set(rows["split"].cast(str).to_list()) == {split}
    # not only the pickup times: each row's label is the cache row's target
    want = np.log1p(rows["duration_s"].to_numpy()).astype(np.float32)
    np.testing.assert_allclose(want, np.asarray(arrays.y), rtol=1e-6)


def test_misaligned_rows_and_changed_features_are_refused(mlp_run):
    run = load_run(mlp_run)
    cache = run_cache(run)
    other = copy.deepcopy(run.config)
    other["data"]["split"]["seed"] = 1  # another random split: other rows in the test split
    with pytest.raises(ValueError, match=r"differ|rows but"):
        aligned_rows(other, cache, "test")
    assert split_rows(other, "test").height > 0
    changed = copy.deepcopy(run.config)
    changed["data"]["features"]["cell_km"] = 2.0  # other grid cells: other vocabularies
    with pytest.raises(ValueError, match="another feature spec"):
        run_cache(dataclasses.replace(run, config=changed))
