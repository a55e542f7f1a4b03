"""NaN/inf in training: the run stops with the step, batch, the bad inputs and a hint, or (by config)
skips those batches, counted; it never silently trains on garbage."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import tabxfer
from factories import tiny_run_config
from tabxfer.train import run
from tabxfer.training.module import NonFiniteError

POISON = "+callbacks.poison._target_=faults.PoisonBatches"


def test_nan_input_stops_the_run_naming_step_batch_and_feature(tmp_path: Path) -> None:
    cfg = tiny_run_config(tmp_path, "run", "model=mlp", POISON, "+callbacks.poison.batches=[3]")
    with pytest.raises(NonFiniteError) as e:
        run(cfg)
    msg = str(e.value)
    assert "non-finite loss nan at global step 3, epoch 0, batch 3 (256 rows)" in msg
    assert "loss terms non-finite: ['supervised']" in msg
    assert "non-finite inputs in this batch: {'" in msg and "': 256}" in msg
    assert "Hint: lower optimizer.lr" in msg and "nonfinite.action=skip" in msg
    assert not (tmp_path / "run" / "metrics.json").exists()  # no result from a poisoned run


def test_inf_input_is_caught_too(tmp_path: Path) -> None:
    cfg = tiny_run_config(
        tmp_path, "run", "model=mlp", POISON, "+callbacks.poison.batches=[0]", "+callbacks.poison.value=inf"
    )
    with pytest.raises(NonFiniteError, match=r"at global step 0, epoch 0, batch 0"):
        run(cfg)


def test_skip_drops_exactly_the_poisoned_batches_and_counts_them(tmp_path: Path) -> None:
    poisoned = [1, 4, 5]
    cfg = tiny_run_config(
        tmp_path,
        "run",
        "model=mlp",
        POISON,
        f"+callbacks.poison.batches={poisoned}",
        "nonfinite.action=skip",
        "trainer.max_epochs=2",
    )
    result = run(cfg)
    m = result["metrics"]
    assert m["train/skipped_batches"] == len(poisoned)
    assert all(math.isfinite(m[k]) for k in ("val/rmsle", "test/rmsle"))
    module = tabxfer.load(result["best_checkpoint"])
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())  # no NaN reached a weight


def test_skip_gives_up_after_max_skipped(tmp_path: Path) -> None:
    cfg = tiny_run_config(
        tmp_path,
        "run",
        "model=mlp",
        POISON,
        "+callbacks.poison.batches=[0,1,2]",
        "nonfinite.action=skip",
        "nonfinite.max_skipped=2",
    )
    with pytest.raises(
        NonFiniteError, match=r"3 batches skipped for non-finite values \(nonfinite.max_skipped=2\)"
    ):
        run(cfg)


def test_a_clean_run_skips_nothing(tmp_path: Path) -> None:
    """The control: without poison, skip mode changes nothing and logs no skipped batches."""
    result = run(tiny_run_config(tmp_path, "run", "model=mlp", "nonfinite.action=skip"))
    assert "train/skipped_batches" not in result["metrics"]
