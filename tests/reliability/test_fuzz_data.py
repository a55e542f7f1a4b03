"""Fuzzing the data layer: malformed files through the loaders, broken splits and unseen values through the
feature pipeline.

The project's rule: bad input gets a :class:`~tabxfer.data.schema.DataError` naming the file (or split)
and the field or row and what was expected, or its rows are dropped and counted in a DropReport; nothing
is lost silently and nothing crashes. Every case of :mod:`malformed_cases` states its outcome ("error"
with a regex, "drop" with exact counts, or "ok"); the property tests below draw random files and check the
rule's invariant on each. ``scripts/fuzz_data.py`` runs the same table and prints it.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import math
from pathlib import Path

import malformed_cases as mc
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tabxfer.data.schema import DataError
from tabxfer.data.sources import KaggleNYCTaxi
from tabxfer.features import pipeline


def fuzz(n: int) -> settings:
    """Reproducible (derandomized) and small enough for CI: the whole file runs in about 20 s on 2 cores."""
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# --- the case table -----------------------------------------------------------------------------------


def _param(case: mc.Case):
    marks = [pytest.mark.real_data] if case.real else []
    return pytest.param(case, id=f"{case.name}->{case.expect}", marks=marks)


def test_case_names_are_unique():
    names = [c.name for c in mc.CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", [_param(c) for c in mc.CASES])
def test_malformed_input(case: mc.Case, tmp_path: Path, request: pytest.FixtureRequest):
    data = request.getfixturevalue("shared_data") if case.real else None  # skips when absent
    try:
        trial, out = mc.run_case(case, tmp_path, data)
    except mc.MissingData as e:
        pytest.skip(str(e))
    assert mc.mismatches(case, trial, out) == [], case.note
    # and, spelled out, what the table asked for
    if case.expect == "error":
        assert out.kind == "error" and trial.names in out.message
    else:
        assert (out.kind, out.kept, out.dropped) == (case.expect, case.kept, dict(case.dropped))


# --- unseen values at inference time ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    from factories import make_trips

    train = make_trips(600, seed=1)
    return train, pipeline.fit(train.lazy(), {"min_count": 5})


def _transformed(df: pl.DataFrame, spec) -> pl.DataFrame:
    return pipeline.transform(df.lazy(), spec).collect()


def test_unseen_categories_map_to_the_shared_unknown_index(fitted):
    """A vendor, mode or source never seen when fitting gets index 0, the slot shared with missing
    values; the row is kept and every other feature is unchanged. ``transform`` does not count them
    (the drift monitor's profile does: ``unseen_rows`` per feature)."""
    train, spec = fitted
    rows = train.head(4)
    before = _transformed(rows, spec)
    new = rows.with_columns(vendor=pl.lit("🚕 new vendor"), mode=pl.lit("bike"), source=pl.lit("other_feed"))
    after = _transformed(new, spec)
    assert after.height == 4
    for name in ("vendor", "mode", "source"):
        assert before[name].to_list() != [0] * 4  # they were known ...
        assert after[name].to_list() == [0] * 4  # ... and are now unknown
    assert after.drop("vendor", "mode", "source").equals(before.drop("vendor", "mode", "source"))
    missing = _transformed(rows.with_columns(vendor=pl.lit(None, pl.String)), spec)
    assert missing["vendor"].to_list() == after["vendor"].to_list()  # unknown == missing


def test_unseen_city_gets_its_known_center_or_a_data_error(fitted):
    train, spec = fitted
    rows = train.head(3)
    jc = _transformed(rows.with_columns(city=pl.lit("jersey_city")), spec)
    assert jc["city"].to_list() == [0, 0, 0]  # an unknown category ...
    assert jc["pickup_x"].to_list() != _transformed(rows, spec)["pickup_x"].to_list()  # ... in its own frame
    with pytest.raises(
        DataError, match=r"city 'atlantis' was not in the training data and has no known center"
    ):
        _transformed(rows.with_columns(city=pl.lit("atlantis")), spec)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1e308, None])
def test_non_finite_numbers_become_the_missing_value(fitted, value):
    """Loaders never keep such values, but ``transform`` also serves raw inputs: a value whose
    standardized form is not finite is missing (0), as in the exported ONNX graph; it used to pass inf
    through to the model."""
    train, spec = fitted
    rows = train.head(3).with_columns(
        pickup_lat=pl.lit(value, pl.Float64), passenger_count=pl.lit(None, pl.Int16)
    )
    arrays = pipeline.to_arrays(_transformed(rows, spec), spec)
    assert np.isfinite(arrays["x_num"]).all()
    for name in ("pickup_y", "passenger_count"):
        assert (arrays["x_num"][:, spec.numeric_names.index(name)] == 0).all(), name


# --- property tests: random Kaggle files --------------------------------------------------------------------

# cells: valid values, numbers at and beyond float limits, odd text (emoji, RTL, NUL, quotes, newlines),
# odd datetimes; one garbage rate per file
FLOAT_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda x: f"{x:.3e}"),
    st.sampled_from(mc.EXTREME_FLOATS),
)
TEXT = st.one_of(st.text(max_size=12), st.sampled_from(mc.WEIRD_TEXT))
TIMES = st.one_of(
    st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31)).map(lambda t: f"{t:%Y-%m-%d %H:%M:%S}"),
    st.sampled_from(mc.WEIRD_TIMES),
)
GARBAGE = st.one_of(FLOAT_TEXT, TEXT, TIMES)
VALID = {
    "id": st.one_of(st.sampled_from([f"id{i}" for i in range(6)]), st.text(min_size=1, max_size=8)),
    "vendor_id": st.sampled_from(["1", "2", "🚕"]),
    "passenger_count": st.sampled_from(["0", "1", "2", "6", "9", "1.0"]),
    "pickup_longitude": st.floats(-74.01, -73.95).map(repr),
    "dropoff_longitude": st.floats(-74.01, -73.95).map(repr),
    "pickup_latitude": st.floats(40.70, 40.78).map(repr),
    "dropoff_latitude": st.floats(40.70, 40.78).map(repr),
    "store_and_fwd_flag": st.sampled_from(["N", "Y", ""]),
}


@st.composite
def kaggle_file(draw) -> tuple[list[str], list[list[str]], str]:
    """``(header, rows, line end)``: shuffled columns (maybe an extra one), rows mixing valid cells with
    garbage at one rate per file."""
    odds = draw(st.sampled_from([0.0, 0.05, 0.2, 0.6]))
    columns = draw(st.permutations(mc.KAGGLE))
    extra = draw(st.booleans())
    rows = []
    for _ in range(draw(st.integers(0, 10))):
        pickup = draw(st.datetimes(dt.datetime(2016, 1, 1), dt.datetime(2016, 6, 30)))
        duration = draw(st.integers(600, 3600))
        valid = {
            **{c: draw(s) for c, s in VALID.items()},
            "pickup_datetime": f"{pickup:%Y-%m-%d %H:%M:%S}",
            "dropoff_datetime": f"{pickup + dt.timedelta(seconds=duration):%Y-%m-%d %H:%M:%S}",
            "trip_duration": str(duration),
        }
        row = [draw(GARBAGE) if odds and draw(st.floats(0, 1)) < odds else valid[c] for c in columns]
        rows.append([*row, draw(TEXT)] if extra else row)
    header = [*columns, "notes"] if extra else list(columns)
    return header, rows, draw(st.sampled_from(["\n", "\r\n"]))


_names = itertools.count()


def _written_float(text: str) -> float:
    return float(text.strip())


@fuzz(100)
@given(f=kaggle_file(), cut=st.one_of(st.none(), st.floats(0.05, 0.999)))
def test_random_kaggle_csv_is_refused_by_name_or_fully_accounted(tmp_path, f, cut):
    header, rows, newline = f
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline)
    w.writerow(header)
    ends = []  # where each row's text ends
    for r in rows:
        w.writerow(r)
        ends.append(len(buf.getvalue()))
    text = buf.getvalue()
    complete = len(rows)
    if cut is not None:
        at = max(1, int(cut * len(text)))
        text, complete = text[:at], sum(e <= at for e in ends)
    path = tmp_path / f"random_{next(_names)}.csv"
    path.write_bytes(text.encode("utf-8"))

    try:
        df, report = KaggleNYCTaxi(paths=path).load()
    except DataError as e:
        event("error")
        assert str(path) in str(e) and e.file == str(path), str(e)
        assert not mc.GENERIC_ERROR.search(str(e)), str(e)
        return
    event("dropped some" if report.n_dropped else "kept all")
    report.check()
    assert report.n_out == df.height
    if cut is None:
        assert report.n_in == len(rows)  # every written row is counted
    else:  # the complete rows, and maybe the one cut short
        assert complete <= report.n_in <= complete + 1, (complete, report.n_in)
    assert mc.kept_row_problems(df) == []
    # a kept row carries the values written for it (ids unique among the complete rows only)
    by_id: dict[str, list[list[str]]] = {}
    for r in rows[:complete]:
        by_id.setdefault(r[header.index("id")].strip(), []).append(r)
    for kept in df.iter_rows(named=True):
        written = by_id.get(kept["trip_id"], [])
        if len(written) != 1:
            continue
        r = written[0]
        assert kept["duration_s"] == pytest.approx(_written_float(r[header.index("trip_duration")]))
        assert kept["pickup_lat"] == pytest.approx(_written_float(r[header.index("pickup_latitude")]))
        assert kept["pickup_lon"] == pytest.approx(_written_float(r[header.index("pickup_longitude")]))


GOOD_CSV, GOOD_PARQUET = mc.good_csv(), mc.good_parquet()


def mutated(data: bytes, tokens: list[bytes]) -> st.SearchStrategy[bytes]:
    """``data`` with a few tokens inserted, bytes deleted, overwritten or flipped, maybe cut short."""
    edit = st.tuples(
        st.sampled_from(mc.MUTATIONS), st.integers(0, len(data)), st.sampled_from(tokens), st.integers(1, 8)
    )
    return st.lists(edit, min_size=1, max_size=6).map(lambda edits: mc.mutate(data, edits))


def _load_mutated(path: Path) -> None:
    try:
        df, report = KaggleNYCTaxi(paths=path).load()
    except DataError as e:
        event(f"error: {str(e).split(': ')[1][:25]}")
        assert e.file == str(path) and str(path) in str(e), str(e)
        assert not mc.GENERIC_ERROR.search(str(e)), str(e)  # the loader could not say what is wrong
        return
    event("loaded")
    report.check()
    assert report.n_out == df.height
    assert mc.kept_row_problems(df) == []


@fuzz(150)
@given(data=mutated(GOOD_CSV, mc.CSV_TOKENS))
def test_mutated_csv_bytes_are_refused_by_name_or_fully_accounted(tmp_path, data):
    path = tmp_path / "mutated.csv"
    path.write_bytes(data)
    _load_mutated(path)


@fuzz(150)
@given(data=mutated(GOOD_PARQUET, mc.PARQUET_TOKENS))
def test_mutated_parquet_bytes_are_refused_by_name_or_fully_accounted(tmp_path, data):
    """Corrupt Parquet made polars panic (a PanicException, not an Exception) with no file name."""
    path = tmp_path / "mutated.parquet"
    path.write_bytes(data)
    _load_mutated(path)
