"""The fast paths of loading: numbers read by polars' CSV parser (``TripSource.typed_columns``) and
duplicates found by hashing. Each must give exactly what the plain path gives."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from factories import kaggle_row
from tabxfer.data.quality import Validation
from tabxfer.data.sources import KaggleNYCTaxi
from tabxfer.data.sources import base as source_base


class TextOnlyKaggle(KaggleNYCTaxi):
    """The same loader reading every CSV column as text (the reference)."""

    typed_columns: ClassVar[tuple[str, ...]] = ()


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def numbers_read(monkeypatch) -> list[list[str]]:
    """The ``numbers`` each scan_table call was given (records whether the typed read was tried)."""
    calls: list[list[str]] = []
    real = source_base.scan_table

    def spy(path, numbers=(), **kwargs):
        calls.append(list(numbers))
        return real(path, numbers, **kwargs)

    monkeypatch.setattr(source_base, "scan_table", spy)
    return calls


# Values polars' number parser accepts, each also accepted (with the same value) by the text path.
ACCEPTED = ["+1.5", " 2", "1e1", "3.", ".5e1", "nan", "inf", "", "  ", "-0.0", "1E0"]
# Values it refuses: the whole typed read fails and the text path finds the row.
REFUSED = ["1.5 ", "abc", "1,5", "0x10", "1_000", "2.5.1", "--1"]


def load_both(path: Path) -> tuple:
    return KaggleNYCTaxi(paths=path).load(), TextOnlyKaggle(paths=path).load()


def as_number(value: str | None) -> float | str | None:
    try:
        return None if value is None else float(value.strip())
    except ValueError:
        return value  # not a number: both reads were text


def assert_same(a, b) -> None:
    """Same rows and counts; the same example rows, whose values the typed read shows as the number it
    read ("NaN" for "nan", "3.0" for "3."), so they are compared as numbers."""
    (df_a, rep_a), (df_b, rep_b) = a, b
    assert_frame_equal(df_a.drop("source"), df_b.drop("source"))
    a_, b_ = rep_a.to_dict(), rep_b.to_dict()
    ex_a, ex_b = a_.pop("examples"), b_.pop("examples")
    assert a_ | {"source": ""} == b_ | {"source": ""}
    assert ex_a.keys() == ex_b.keys()
    for reason in ex_a:
        got = [(f, r, as_number(v)) for f, r, v in ex_a[reason]]
        want = [(f, r, as_number(v)) for f, r, v in ex_b[reason]]
        assert str(got) == str(want), reason  # str: nan == nan


@pytest.mark.parametrize("column", ["passenger_count", "trip_duration", "pickup_latitude"])
def test_numbers_the_parser_accepts_load_as_the_text_path_loads_them(tmp_path, numbers_read, column):
    rows = [kaggle_row(i) for i in range(30)]
    for i, v in enumerate(ACCEPTED):
        rows[i][column] = v
    path = write(tmp_path / "t.csv", rows)
    typed, text = load_both(path)
    assert any(column in n for n in numbers_read), "the typed read was never tried"
    assert_same(typed, text)
    assert typed[1].n_in == 30 and typed[1].n_dropped > 0  # nan, inf, "" are rows the rules drop


@pytest.mark.parametrize("bad", REFUSED)
def test_a_number_the_parser_refuses_falls_back_to_text_and_names_the_row(tmp_path, numbers_read, bad):
    rows = [kaggle_row(i) for i in range(30)]
    rows[17]["passenger_count"] = bad
    path = write(tmp_path / "t.csv", rows)
    typed, text = load_both(path)
    assert [n for n in numbers_read if n], "the typed read was never tried"
    assert_same(typed, text)
    df, rep = typed
    assert rep.dropped == {"unparseable:passenger_count": 1}
    assert rep.examples["unparseable:passenger_count"] == [(str(path), 17, bad)]
    assert df.height == 29


def test_scan_reads_text_only(tmp_path, numbers_read):
    """The lazy scan() (streamed corpora) cannot re-read after a failure: it never takes the typed read."""
    path = write(tmp_path / "t.csv", [kaggle_row(i) for i in range(5)])
    KaggleNYCTaxi(paths=path).scan().collect()
    assert not any(numbers_read)


def test_hashed_duplicate_rule_matches_the_exact_one():
    """Many repeats, -0.0 vs 0.0, NaN and nulls: the two-hash rule flags exactly the rows the exact
    ``is_first_distinct`` on the row struct flags."""
    rng = np.random.default_rng(0)
    n = 20_000
    pool_f = np.array([0.0, -0.0, np.nan, 1.5, 2.5, np.inf])
    df = pl.DataFrame(
        {
            "a": rng.choice(pool_f, n),
            "b": pl.Series(rng.integers(0, 4, n)).cast(pl.String).replace("3", None),
            "c": rng.integers(0, 30, n),
            "d": rng.random(n) < 0.5,
        }
    )
    among = pl.col("d")
    rule = Validation().duplicate_reason(["a", "b", "c"], has_ids=False, among=among)
    assert rule is not None
    got = df.select(rule.is_not_null().alias("dup"))["dup"]
    exact = df.select(~pl.struct("a", "b", "c", among.alias("__among")).is_first_distinct())["a"].alias("dup")
    assert got.sum() > n // 2  # a test that would notice a rule that flags nothing
    assert (got == exact).all()


def test_hashed_duplicate_rule_tells_swapped_values_apart():
    """Rows holding the same values in other columns are not repeats (a hash that combined the column
    hashes symmetrically, by sum or xor, would take them for one)."""
    df = pl.DataFrame({"a": [1, 2, 1, 1], "b": [2, 1, 2, 2], "c": ["x", "x", "y", "x"]})
    rule = Validation().duplicate_reason(["a", "b", "c"], has_ids=False)
    assert rule is not None
    assert df.select(rule.is_not_null().alias("dup"))["dup"].to_list() == [False, False, False, True]
