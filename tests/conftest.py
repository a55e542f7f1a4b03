"""Shared fixtures. Real-data tests use ``shared_data``: the folder in ``$TABXFER_DATA_DIR`` or, by default,
``<repo>/../shared/data``; they skip with the reason when it is absent (a fresh clone has no data; CI does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tabxfer.config import register_resolvers

REPO = Path(__file__).resolve().parents[1]
register_resolvers()  # tests compose configs/train.yaml without importing tabxfer.train (which registers them)


def shared_data_dir() -> Path:
    return Path(os.environ.get("TABXFER_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(
            f"real trip data not found at {root} (set TABXFER_DATA_DIR to the folder holding "
            "nyc_taxi_trip_duration_kaggle/, nyc_tlc_green_trips/, ...)"
        )
    return root


@pytest.fixture
def trips():
    """2,000 canonical-schema NYC-like trips (polars DataFrame)."""
    from factories import make_trips

    return make_trips()
