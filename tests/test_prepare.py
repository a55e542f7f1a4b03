"""prepare_data.py through Hydra's compose API: every data config builds its sources and a tensor cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from tabxfer.features.cache import TensorCache
from tabxfer.prepare import run

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATA_CONFIGS = sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml"))


def cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="prepare", overrides=list(overrides))


def test_default_is_synthetic_and_needs_no_files(tmp_path, capsys):
    c = cfg(f"paths.cache_dir={tmp_path}", "data.sources.nyc.n=3000")
    cache = run(c)
    assert isinstance(cache, TensorCache) and cache.path.parent == tmp_path
    assert sum(len(cache.split(s)) for s in cache.splits) > 2900
    out = capsys.readouterr().out
    assert "source nyc: 3,000 in" in out and "store_and_fwd_flag" in out


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_data_config_instantiates_its_sources(name, tmp_path):
    c = cfg(f"data={name}", f"paths.data_dir={tmp_path}")
    for node in c.data.sources.values():
        src = instantiate(node)
        assert hasattr(src, "load") and hasattr(src, "describe")
    assert c.data.split.kind in ("random", "time", "column")


def test_split_and_feature_overrides_reach_the_cache(tmp_path):
    c = cfg(
        f"paths.cache_dir={tmp_path}",
        "data.sources.nyc.n=3000",
        "data/split=time",
        "data.features.cells=false",
    )
    cache = run(c)
    assert "pickup_cell" not in cache.spec.categorical_names
    tr, te = cache.split("train"), cache.split("test")
    assert tr.pickup_ts.max() < te.pickup_ts.min()


@pytest.mark.real_data
def test_nyc_kaggle_config_on_the_real_rows(shared_data, tmp_path):
    cache = run(cfg("data=nyc_kaggle", f"paths.data_dir={shared_data}", f"paths.cache_dir={tmp_path}"))
    assert cache.manifest["drop_reports"]["kaggle"]["n_in"] == 66_235
    assert cache.manifest["rows"]["loaded"] == 65_910
