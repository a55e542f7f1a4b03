from __future__ import annotations

import json

import polars as pl
import pytest

from tabxfer.cli import main
from tabxfer.data.sources import KaggleNYCTaxi


def test_synth_writes_a_kaggle_csv_that_loads(tmp_path, capsys):
    out = tmp_path / "trips.csv"
    assert main(["synth", "--city", "nyc", "-n", "2000", "--out", str(out)]) == 0
    _, rep = KaggleNYCTaxi(paths=out).load()
    assert rep.n_in == 2000 and rep.n_out >= 1990
    assert "2,000 nyc trips" in capsys.readouterr().out


def test_synth_parquet_keeps_the_canonical_schema(tmp_path):
    out = tmp_path / "trips.parquet"
    assert main(["synth", "--city", "oldtown", "-n", "500", "--out", str(out)]) == 0
    df = pl.read_parquet(out)
    assert df.height == 500 and set(df["city"].unique()) == {"oldtown"}


def test_cities_lists_every_preset(capsys):
    from tabxfer.data.synthetic import PRESETS

    assert main(["cities"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in PRESETS)


def test_check_shared_without_data_fails_clearly(tmp_path, capsys):
    assert main(["data", "check-shared", "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "no shared data folder" in capsys.readouterr().err


@pytest.mark.real_data
def test_check_shared_loads_every_real_dataset(shared_data, tmp_path, capsys):
    out = tmp_path / "reports.json"
    assert main(["data", "check-shared", "--data-dir", str(shared_data), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["datasets"]
    assert not [r for r in rows if "error" in r]
    by_name = {r["dataset"]: r["report"] for r in rows}
    # every trip folder of the shared data is covered, and each keeps most of its rows
    for folder in shared_data.iterdir():
        if folder.is_dir():
            assert any(name.startswith(folder.name) for name in by_name), f"{folder.name} not loaded"
    for name, rep in by_name.items():
        assert rep["n_in"] == rep["n_out"] + sum(rep["dropped"].values())
        assert rep["n_out"] > 0.5 * rep["n_in"], name
