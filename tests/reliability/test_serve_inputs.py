"""Malformed and fuzzed input to an exported ONNX artifact: ``serve.py`` (the copy in the artifact folder,
run with numpy + onnxruntime only) checks every input before the graph runs, names the input, row and
value of a bad one, and with ``on_invalid="drop"`` predicts NaN for exactly the bad rows, counted by
reason. The graph itself validates nothing (a latitude of 200 comes out as ``inf``), which the test of an
artifact without ranges (as exported before they existed) shows."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

N = 16  # rows of the artifact's example_input.csv


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    """A tiny MLP trained on two batches of synthetic NYC trips and exported (the export takes most of
    the half minute this needs)."""
    from factories import tiny_run_config
    from tabxfer.export.artifact import export_checkpoint
    from tabxfer.train import run

    root = tmp_path_factory.mktemp("serve_inputs")
    short = ["+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1"]
    cfg = tiny_run_config(
        root, "mlp", "model=mlp", "model.d_block=16", "model.n_blocks=1", *short, n_trips=1000
    )
    art = root / "export"
    export_checkpoint(run(cfg)["best_checkpoint"], art, rows=200, calibration_rows=64, profile_rows=500)
    return art


@pytest.fixture(scope="module")
def serve(artifact) -> ModuleType:
    """The ``serve.py`` copied into the artifact (not the package's module)."""
    spec = importlib.util.spec_from_file_location("artifact_serve", artifact / "serve.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sess(serve, artifact):
    return serve.session(artifact / "model.onnx", "cpu")


@pytest.fixture(scope="module")
def schema(serve, sess) -> list[dict[str, Any]]:
    return serve.input_schema(sess)


@pytest.fixture(scope="module")
def rows(serve, artifact) -> dict[str, np.ndarray]:
    """The example rows as the CSV gives them (text), 16 of them."""
    cols = serve.read_csv(artifact / "example_input.csv")
    assert len(cols["pickup_ts"]) == N
    return cols


@pytest.fixture(scope="module")
def base(serve, sess, rows) -> np.ndarray:
    """Predictions for the untouched example rows."""
    pred = serve.predict(sess, rows)
    assert pred.report == {"rows": N, "invalid_rows": 0, "invalid": {}, "unseen": {}}
    assert np.isfinite(pred["duration_s"]).all()
    return pred["duration_s"]


# ---------------------------------------------------------------------------------------------- the schema


def test_schema_has_ranges_nullability_and_vocabularies(artifact, schema):
    """What the checks below rely on is in the artifact: graph metadata and inputs.json agree."""
    from tabxfer.data.quality import Validation

    assert json.loads((artifact / "inputs.json").read_text()) == schema
    by = {s["name"]: s for s in schema}
    assert (by["pickup_lat"]["min"], by["pickup_lat"]["max"]) == (-90, 90)
    assert (by["dropoff_lon"]["min"], by["dropoff_lon"]["max"]) == (-180, 180)
    assert (by["passenger_count"]["min"], by["passenger_count"]["max"]) == (0, 9)  # what the loaders keep
    lo, hi = (dt.datetime(1970, 1, 1) + dt.timedelta(seconds=by["pickup_ts"][k]) for k in ("min", "max"))
    first = max(getattr(Validation(), "min_year", 1970), 1970)  # the loaders' years, where they have the rule
    assert (lo, hi) == (dt.datetime(first, 1, 1), dt.datetime(2099, 12, 31, 23, 59, 59))
    assert by["passenger_count"]["nullable"] is True
    assert not any(by[c]["nullable"] for c in ("pickup_ts", "pickup_lat", "pickup_lon", "dropoff_lat"))
    assert sorted(by["vendor"]["vocabulary"]) == ["1", "2"] and by["city"]["vocabulary"] == ["nyc"]
    card = (artifact / "model_card.md").read_text()
    assert "does not validate" in card and "| finite, in [-90, 90]; required |" in card


# ------------------------------------------------------------------------------------ bad input, by case


def _set(col: str, row: int, value: Any) -> Callable[[dict], None]:
    def edit(c: dict) -> None:
        c[col] = np.array(c[col], dtype=object)
        c[col][row] = value

    return edit


def _replace(col: str, value: Callable[[np.ndarray], Any]) -> Callable[[dict], None]:
    def edit(c: dict) -> None:
        c[col] = value(c[col])

    return edit


def _drop(*cols: str) -> Callable[[dict], None]:
    def edit(c: dict) -> None:
        for k in cols:
            del c[k]

    return edit


def _rename(old: str, new: str, convert: Callable[[np.ndarray], Any] = lambda v: v) -> Callable[[dict], None]:
    def edit(c: dict) -> None:
        c[new] = convert(c.pop(old))

    return edit


def _both(*edits: Callable[[dict], None]) -> Callable[[dict], None]:
    def edit(c: dict) -> None:
        for e in edits:
            e(c)

    return edit


# pickup_ts as pickup_datetime text ("2016-04-20T09:00:31")
AS_DATETIME = _rename(
    "pickup_ts",
    "pickup_datetime",
    lambda v: v.astype(np.int64).astype("datetime64[s]").astype(str).astype(object),
)

# Rows with invalid values: (id, edit, error regex (on_invalid="raise"), counts by reason ("drop"), bad rows)
ROW_CASES = [
    ("lat_above_90", _set("pickup_lat", 3, "90.5"), r"'pickup_lat', row 3: '90\.5' is out of range .*\[-90, 90\]", {"pickup_lat: out of range": 1}, [3]),
    ("lon_below_-180", _set("dropoff_lon", 0, -181.0), r"'dropoff_lon', row 0: -181\.0 is out of range .*\[-180, 180\]", {"dropoff_lon: out of range": 1}, [0]),
    ("lat_nan", _set("pickup_lat", 2, math.nan), r"'pickup_lat', row 2: nan is missing", {"pickup_lat: missing": 1}, [2]),
    ("lat_empty_text", _set("dropoff_lat", 5, ""), r"'dropoff_lat', row 5: '' is missing", {"dropoff_lat: missing": 1}, [5]),
    ("lat_inf", _set("pickup_lat", 1, math.inf), r"'pickup_lat', row 1: inf is not finite", {"pickup_lat: not finite": 1}, [1]),
    ("lon_-inf_text", _set("pickup_lon", 4, "-inf"), r"'pickup_lon', row 4: '-inf' is not finite", {"pickup_lon: not finite": 1}, [4]),
    ("lat_not_a_number", _set("pickup_lat", 7, "40,7"), r"'pickup_lat', row 7: '40,7' is not a number", {"pickup_lat: not a number": 1}, [7]),
    ("passengers_negative", _set("passenger_count", 6, "-1"), r"'passenger_count', row 6: '-1' is out of range .*\[0, 9\]", {"passenger_count: out of range": 1}, [6]),
    ("passengers_absurd", _set("passenger_count", 0, 10**9), r"'passenger_count', row 0: 1000000000 is out of range", {"passenger_count: out of range": 1}, [0]),
    ("passengers_inf", _set("passenger_count", 9, -math.inf), r"'passenger_count', row 9: -inf is not finite", {"passenger_count: not finite": 1}, [9]),
    ("passengers_text", _set("passenger_count", 5, "two"), r"'passenger_count', row 5: 'two' is not a number", {"passenger_count: not a number": 1}, [5]),
    ("ts_negative", _set("pickup_ts", 2, -1), r"'pickup_ts', row 2: -1 is out of range .*\(\d{4}-01-01T00:00:00 \.\. 2099-12-31T23:59:59\)", {"pickup_ts: out of range": 1}, [2]),
    ("ts_year_2100", _set("pickup_ts", 3, 4_102_444_800), r"'pickup_ts', row 3: 4102444800 is out of range", {"pickup_ts: out of range": 1}, [3]),
    ("ts_absurd", _replace("pickup_ts", lambda v: np.where(np.arange(N) % 5 == 0, 10**15, v.astype(np.int64))), r"'pickup_ts', row 0: 1000000000000000 is out of range .*4 rows", {"pickup_ts: out of range": 4}, [0, 5, 10, 15]),
    ("ts_beyond_int64", _replace("pickup_ts", lambda v: np.where(np.arange(N) == 8, 2**64 - 1, v.astype(np.uint64))), r"'pickup_ts', row 8: 18446744073709551615 is out of range", {"pickup_ts: out of range": 1}, [8]),
    ("ts_missing", _set("pickup_ts", 11, ""), r"'pickup_ts', row 11: '' is missing", {"pickup_ts: missing": 1}, [11]),
    ("ts_as_datetime_text", _set("pickup_ts", 4, "2016-03-14 17:24:55"), r"'pickup_ts', row 4: '2016-03-14 17:24:55' is not a number \(for text date-times use pickup_datetime\)", {"pickup_ts: not a number": 1}, [4]),
    ("datetime_year_1900", _both(AS_DATETIME, _set("pickup_datetime", 1, "1900-01-01 08:00:00")), r"'pickup_datetime', row 1: '1900-01-01 08:00:00' is out of range", {"pickup_datetime: out of range": 1}, [1]),
    ("datetime_year_9999", _both(AS_DATETIME, _set("pickup_datetime", 2, "9999-12-31 23:00:00")), r"'pickup_datetime', row 2: '9999-12-31 23:00:00' is out of range", {"pickup_datetime: out of range": 1}, [2]),
    ("datetime_garbage", _both(AS_DATETIME, _set("pickup_datetime", 3, "2016-13-45 25:00")), r"'pickup_datetime', row 3: '2016-13-45 25:00' is not a local date-time", {"pickup_datetime: not a local date-time": 1}, [3]),
    ("datetime_with_zone", _both(AS_DATETIME, _set("pickup_datetime", 0, "2016-01-01T10:00:00+05:00")), r"'pickup_datetime', row 0: .* is not a local date-time", {"pickup_datetime: not a local date-time": 1}, [0]),
    ("text_not_utf8", _set("vendor", 12, "\ud800"), r"'vendor', row 12: '\\ud800' is not UTF-8 text", {"vendor: not UTF-8 text": 1}, [12]),
    ("bytes_not_utf8", _set("city", 13, b"\xff\xfe"), r"'city', row 13: b'\\xff\\xfe' is not UTF-8 text", {"city: not UTF-8 text": 1}, [13]),
    ("several_at_once", _both(_set("pickup_lat", 1, 200.0), _set("pickup_lon", 1, math.nan), _set("passenger_count", 14, "x")), r"2 of 16 rows invalid(.|\n)*'pickup_lat', row 1: 200\.0 is out of range(.|\n)*'pickup_lon', row 1: nan is missing(.|\n)*'passenger_count', row 14: 'x'", {"pickup_lat: out of range": 1, "pickup_lon: missing": 1, "passenger_count: not a number": 1}, [1, 14]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "error", "counts", "bad"), [c[1:] for c in ROW_CASES], ids=[c[0] for c in ROW_CASES]
)
def test_invalid_rows_raise_or_drop(serve, sess, rows, base, edit, error, counts, bad):
    cols = {k: v.copy() for k, v in rows.items()}
    edit(cols)
    with pytest.raises(serve.InvalidInput, match=error) as err:
        serve.predict(sess, cols)
    assert "--on-invalid drop" in str(err.value)
    pred = serve.predict(sess, cols, on_invalid="drop")
    assert pred.report["invalid"] == counts and pred.report["invalid_rows"] == len(bad)
    assert np.flatnonzero(np.isnan(pred["duration_s"])).tolist() == bad
    assert np.isnan(pred["log_duration"][bad]).all()
    good = np.setdiff1d(np.arange(N), bad)
    np.testing.assert_allclose(pred["duration_s"][good], base[good], rtol=1e-5)  # the others untouched


# Malformed columns: an error in both modes (nothing to drop), naming the input
COLUMN_CASES = [
    ("one_missing", _drop("pickup_lat"), KeyError, r"1 input missing: pickup_lat\n  pickup_lat \(float64\): pickup latitude, degrees; also read from pickup_latitude"),
    ("several_missing", _drop("pickup_ts", "vendor", "city"), KeyError, r"3 inputs missing: pickup_ts, vendor, city(.|\n)*also read from pickup_datetime(.|\n)*also read from vendor_id; one value for every row: --set vendor=VALUE(.|\n)*--set city=VALUE"),
    ("everything_missing", lambda c: c.clear(), KeyError, r"11 inputs missing(.|\n)*columns given: none"),
    ("alias_and_name", lambda c: c.update(pickup_latitude=c["pickup_lat"]), ValueError, r"input 'pickup_lat' given twice: as 'pickup_lat' and as 'pickup_latitude'"),
    ("two_dimensional", _replace("pickup_lat", lambda v: v.reshape(-1, 1)), ValueError, r"input 'pickup_lat': expected a column 1-D .*shape \(16, 1\)"),
    ("scalar", _replace("city", lambda v: "nyc"), ValueError, r"input 'city': expected a column 1-D .*shape \(\)"),
    ("nested_ragged", _replace("pickup_lon", lambda v: [[1.0], [2.0, 3.0]] * 8), ValueError, r"input 'pickup_lon': not a column of values"),
    ("ragged_lengths", _replace("pickup_lon", lambda v: v[:15]), ValueError, r"inputs differ in length \(rows: 15 in pickup_lon; 16 in pickup_ts, pickup_lat"),
    ("bool_dtype", _replace("passenger_count", lambda v: np.ones(N, bool)), ValueError, r"input 'passenger_count': values of type bool"),
    ("complex_dtype", _replace("dropoff_lat", lambda v: np.ones(N, complex)), ValueError, r"input 'dropoff_lat': values of type complex128"),
    ("datetime_as_latitude", _replace("pickup_lat", lambda v: np.zeros(N, "datetime64[s]")), ValueError, r"input 'pickup_lat': values of type datetime64"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "exc", "error"), [c[1:] for c in COLUMN_CASES], ids=[c[0] for c in COLUMN_CASES]
)
@pytest.mark.parametrize("on_invalid", ["raise", "drop"])
def test_malformed_columns_are_errors_in_either_mode(serve, sess, rows, edit, exc, error, on_invalid):
    cols = {k: v.copy() for k, v in rows.items()}
    edit(cols)
    with pytest.raises(exc, match=error):
        serve.predict(sess, cols, on_invalid=on_invalid)


def test_missing_inputs_error_prints_as_written(serve, sess, rows):
    """A ``KeyError`` would print its message quoted, newlines escaped; this one reads as written."""
    with pytest.raises(KeyError) as err:
        serve.predict(sess, {k: v for k, v in rows.items() if k != "mode"})
    assert str(err.value).startswith("1 input missing: mode\n  mode (string)")


# --------------------------------------------------------------------------- valid input that looks odd


def test_what_is_valid_at_the_edges(serve, schema, rows):
    """Ranges are inclusive; NaN passenger count is missing, not invalid."""

    def problems(**edits: Any) -> list[str]:
        cols = {k: v.copy() for k, v in rows.items()}
        for k, v in edits.items():
            cols[k] = np.full(N, v, dtype=object)
        return [p.key for p in serve.check(schema, cols)[1]]

    assert problems(pickup_lat=90.0, dropoff_lat=-90.0, pickup_lon=-180.0, dropoff_lon=180.0) == []
    assert problems(pickup_lat=90.000001) == ["pickup_lat: out of range"]
    assert problems(passenger_count=0) == problems(passenger_count=9) == problems(passenger_count="") == []
    assert problems(passenger_count=9.5) == ["passenger_count: out of range"]
    first, last = (next(s[k] for s in schema if s["name"] == "pickup_ts") for k in ("min", "max"))
    assert problems(pickup_ts=first) == problems(pickup_ts=last) == []
    assert problems(pickup_ts=last + 0.9) == []  # fractions of a second are dropped (rounded down)
    assert problems(pickup_ts=first - 1) == problems(pickup_ts=last + 1) == ["pickup_ts: out of range"]


def test_nan_passenger_count_predicts_as_the_training_mean(serve, sess, rows, artifact):
    """The graph standardizes, then sets a non-finite feature to 0, i.e. the training mean."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(artifact / "model.onnx")).metadata_props}
    spec = json.loads(meta["tabxfer.feature_spec"])
    mean = next(f["mean"] for f in spec["numeric"] if f["name"] == "passenger_count")
    nan = serve.predict(sess, {**rows, "passenger_count": np.full(N, np.nan)})
    at_mean = serve.predict(sess, {**rows, "passenger_count": np.full(N, mean)})
    other = serve.predict(sess, {**rows, "passenger_count": np.full(N, 6.0)})
    np.testing.assert_allclose(nan["duration_s"], at_mean["duration_s"], rtol=1e-5)
    assert not np.allclose(nan["duration_s"], other["duration_s"], rtol=1e-5)  # the input matters at all
    assert nan.report["invalid_rows"] == 0


def test_unseen_categories_predict_as_unknown_and_are_counted(serve, sess, rows, base):
    """A city, vendor or mode never seen in training (any text: unicode, NUL, emoji) is valid: the graph's
    lookup maps it to the "unknown" index, like ""; predict counts the rows per input."""
    odd = np.array(
        ["atlantis", "東京", "🚕", "e\u0301", "a\x00b", "x" * 10_000, " nyc", "NYC"] * 2, dtype=object
    )
    pred = serve.predict(
        sess, {**rows, "city": odd, "vendor": np.array(["99"] * 4 + ["1"] * 12, dtype=object)}
    )
    assert np.isfinite(pred["duration_s"]).all()
    assert pred.report["unseen"] == {"city": 16, "vendor": 4} and pred.report["invalid_rows"] == 0
    blank = serve.predict(
        sess, {**rows, "city": np.full(N, "", dtype=object), "vendor": np.full(N, "", dtype=object)}
    )
    unknown = serve.predict(sess, {**rows, "city": odd, "vendor": np.full(N, "99", dtype=object)})
    np.testing.assert_array_equal(unknown["duration_s"], blank["duration_s"])  # unseen = "" = index 0
    assert blank.report["unseen"] == {}  # "" is missing, not an unseen value


def test_aliases_dtypes_and_datetime_text_give_the_same_predictions(serve, sess, rows, base):
    """The Kaggle names, typed arrays (vendor as int, float with NaN) and pickup_datetime text."""
    cols = {k: v for k, v in rows.items() if k not in ("pickup_lat", "pickup_ts", "vendor")}
    cols["pickup_latitude"] = rows["pickup_lat"].astype(np.float64)
    cols["vendor_id"] = rows["vendor"].astype(np.int64)
    cols["pickup_datetime"] = rows["pickup_ts"].astype(np.int64).astype("datetime64[s]").astype(str)
    pred = serve.predict(sess, cols)
    np.testing.assert_allclose(pred["duration_s"], base, rtol=1e-6)
    assert pred.report["unseen"] == {}  # vendor 1 read as "1", the learned value
    with_nan = serve.predict(
        sess, {**rows, "vendor": np.where(np.arange(N) == 0, np.nan, rows["vendor"].astype(float))}
    )
    assert with_nan.report["unseen"] == {}  # 2.0 -> "2"; NaN -> "" (missing)
    np.testing.assert_allclose(with_nan["duration_s"][1:], base[1:], rtol=1e-6)


def test_zero_rows(serve, sess, rows):
    pred = serve.predict(sess, {k: v[:0] for k, v in rows.items()})
    assert {k: v.shape for k, v in pred.items()} == {"duration_s": (0,), "log_duration": (0,)}
    assert pred.report == {"rows": 0, "invalid_rows": 0, "invalid": {}, "unseen": {}}


def test_bad_arguments(serve, sess, rows):
    with pytest.raises(ValueError, match="on_invalid='skip'"):
        serve.predict(sess, rows, on_invalid="skip")
    with pytest.raises(ValueError, match="batch=0"):
        serve.predict(sess, rows, 0)


# ----------------------------------------------------------- an artifact exported before ranges existed


@pytest.fixture(scope="module")
def old_sess(serve, artifact, tmp_path_factory):
    """The same graph with the input schema older exports wrote: no ranges, nullability or vocabulary."""
    import onnx

    model = onnx.load(str(artifact / "model.onnx"))
    for p in model.metadata_props:
        if p.key == "tabxfer.inputs":
            keep = ("name", "dtype", "shape", "description")
            p.value = json.dumps([{k: d[k] for k in keep} for d in json.loads(p.value)])
    path = tmp_path_factory.mktemp("old") / "model.onnx"
    onnx.save(model, str(path))
    return serve.session(path, "cpu")


def test_without_ranges_the_graph_validates_nothing_and_only_finiteness_is_checked(serve, old_sess, rows):
    """A latitude of 1e300 reaches the graph (no range to check) and the graph runs without complaint to a
    non-finite duration: it is not a validator. predict refuses the non-finite prediction, naming the row
    and its inputs."""
    cols = {**rows, "pickup_lat": np.where(np.arange(N) == 3, 1e300, rows["pickup_lat"].astype(float))}
    raw = old_sess.run(["duration_s"], serve.feed(serve.input_schema(old_sess), cols))[0]
    assert not np.isfinite(raw[3]) and np.isfinite(np.delete(raw, 3)).all()
    with pytest.raises(
        serve.InvalidInput, match=r"row 3: the model's prediction is (inf|nan) .*pickup_lat=1e\+300"
    ):
        serve.predict(old_sess, cols)
    pred = serve.predict(old_sess, cols, on_invalid="drop")
    assert pred.report["invalid"] == {"duration_s: not finite": 1} and np.isnan(pred["duration_s"][3])
    # finiteness only: a NaN coordinate is "missing" there (as before), inf is refused
    nan_lat = serve.predict(old_sess, {**rows, "pickup_lat": np.full(N, np.nan)})
    assert np.isfinite(nan_lat["duration_s"]).all()
    with pytest.raises(serve.InvalidInput, match=r"'pickup_lat', row 0: inf is not finite"):
        serve.predict(old_sess, {**rows, "pickup_lat": np.full(N, np.inf)})


# ----------------------------------------------------------------------------------------- command lines

# serve.py in the artifact folder, run as a script by a Python that cannot import tabxfer, torch or polars
RUN_SERVE = r"""
import builtins, runpy, sys
real = builtins.__import__
def guard(name, *a, **k):
    if name.split(".")[0] in ("torch", "polars", "tabxfer", "pandas"):
        raise ImportError("the artifact must not need " + name)
    return real(name, *a, **k)
builtins.__import__ = guard
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _example(artifact: Path) -> list[str]:
    return (artifact / "example_input.csv").read_text().splitlines()


def _edit_line(lines: list[str], line: int, column: int, value: str) -> str:
    row = lines[line].split(",")
    row[column] = value
    return "\n".join([*lines[:line], ",".join(row), *lines[line + 1 :]]) + "\n"


# (id, CSV text from the example's lines, extra args, exit status, stderr/stdout regex, isolated): isolated
# cases run serve.py in a fresh `python -I` that cannot import tabxfer, torch or polars; the others call
# the same file's main() here
CLI_CASES = [
    ("valid", lambda ls: "\n".join(ls) + "\n", [], 0, r"16 predictions", True),
    ("bad_row", lambda ls: _edit_line(ls, 3, 1, "400"), [], 2, r"'pickup_lat', row 2: '400' is out of range(.|\n)*line r \+ 2", True),
    ("bad_row_dropped", lambda ls: _edit_line(ls, 3, 1, "400"), ["--on-invalid", "drop"], 0, r"1 of 16 rows invalid, predicted NaN:\n  pickup_lat: out of range: 1 row", True),
    ("empty_file", lambda ls: "", [], 2, r"empty file", True),
    ("header_only", lambda ls: ls[0] + "\n", [], 0, r"^0 predictions", False),
    ("ragged_row", lambda ls: "\n".join([*ls[:4], ls[4] + ",extra", *ls[5:]]) + "\n", [], 2, r"line 5 has 12 fields, the header 11", False),
    ("repeated_column", lambda ls: ls[0] + ",city\n" + "\n".join(r + ",nyc" for r in ls[1:]) + "\n", [], 2, r"column 'city' repeated", False),
    ("missing_columns", lambda ls: "\n".join(",".join(r.split(",")[3:]) for r in ls) + "\n", [], 2, r"3 inputs missing: pickup_ts, pickup_lat, pickup_lon", False),
    ("byte_order_mark", lambda ls: "\ufeff" + "\n".join(ls) + "\n", [], 0, r"16 predictions", False),
    ("unseen_city", lambda ls: "\n".join(ls) + "\n", ["--set", "city=Zürich"], 0, r"did not learn(.|\n)*city: 16 rows", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "args", "code", "says", "isolated"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_serve_script_exit_status_and_message(
    serve, artifact, tmp_path, capsys, text, args, code, says, isolated
):
    src = _csv(tmp_path / "trips.csv", text(_example(artifact)))
    out = tmp_path / "pred.csv"
    argv = [str(artifact / "model.onnx"), str(src), str(out), *args]
    if isolated:
        cmd = [sys.executable, "-I", "-c", RUN_SERVE, str(artifact / "serve.py"), *argv]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        status, said = res.returncode, res.stdout + res.stderr
    else:
        status = serve.main(argv)
        said = "".join(capsys.readouterr())
    assert status == code, said
    assert re.search(says, said), said
    assert "Traceback" not in said and "must not need" not in said
    if code == 0:
        got = out.read_text().splitlines()
        assert got[0] == "duration_s,log_duration" and len(got) == len(text(_example(artifact)).splitlines())
        if "drop" in args:  # data row 2 (line 4 of the CSV) dropped
            assert got[3] == "nan,nan" and "nan" not in got[2] + got[4]
    else:
        assert not out.exists()


def test_tabxfer_predict_cli(artifact, tmp_path, capsys):
    import polars as pl

    from tabxfer.cli import main

    lines = _example(artifact)
    bad = _csv(tmp_path / "bad.csv", _edit_line(lines, 2, 5, "-3"))
    dst = tmp_path / "pred.parquet"
    assert main(["predict", str(artifact / "model.onnx"), str(bad), str(dst)]) == 2
    assert re.search(r"'passenger_count', row 1: '-3' is out of range", capsys.readouterr().err)
    assert not dst.exists()
    assert main(["predict", str(artifact / "model.onnx"), str(bad), str(dst), "--on-invalid", "drop"]) == 0
    assert "passenger_count: out of range: 1 row" in capsys.readouterr().out
    got = pl.read_parquet(dst)["duration_s"].to_numpy()
    assert np.isnan(got[1]) and np.isfinite(np.delete(got, 1)).all()
    ragged = _csv(tmp_path / "ragged.csv", "\n".join([*lines[:3], lines[3] + ",1,2"]) + "\n")
    empty = _csv(tmp_path / "empty.csv", "")
    for f in (ragged, empty, tmp_path / "absent.csv"):
        assert main(["predict", str(artifact / "model.onnx"), str(f), str(dst)]) == 2
        assert capsys.readouterr().err.startswith("error: ")


# --------------------------------------------------------------------------------------------- fuzzing

LAT, LON, TS = (40.60, 40.90), (-74.05, -73.85), (1_451_606_400, 1_467_331_200)  # where the model was trained


def _value(kind: str) -> st.SearchStrategy[tuple[Any, bool]]:
    """``(value, valid)`` for one cell of an input of ``kind``: valid values the model was trained near, and
    invalid ones: NaN where it is not missing, inf, out of range, text that is not a number."""
    not_number = st.sampled_from(["abc", "1.2.3", "--", "٫", "🚕", "0x10"]).map(lambda s: (s, False))
    infinite = st.sampled_from([math.inf, -math.inf, "inf", "-Infinity"]).map(lambda v: (v, False))
    if kind in ("lat", "lon"):
        lo, hi = LAT if kind == "lat" else LON
        limit = 90.0 if kind == "lat" else 180.0
        valid = st.floats(lo, hi).map(lambda v: (v, True))
        outside = st.floats(limit, 1e300, exclude_min=True) | st.floats(-1e300, -limit, exclude_max=True)
        missing = st.sampled_from([math.nan, "", None, "nan"]).map(lambda v: (v, False))
        return st.one_of(
            valid,
            valid.map(lambda t: (repr(t[0]), True)),
            outside.map(lambda v: (v, False)),
            missing,
            infinite,
            not_number,
        )
    if kind == "passengers":
        valid = st.integers(0, 9).map(lambda v: (v, True)) | st.sampled_from([math.nan, "", None, "7"]).map(
            lambda v: (v, True)
        )
        outside = st.integers(10, 10**30) | st.integers(-(10**30), -1) | st.floats(9, 1e300, exclude_min=True)
        return st.one_of(valid, outside.map(lambda v: (v, False)), infinite, not_number)
    if kind == "ts":
        valid = st.integers(*TS).map(lambda v: (v, True)) | st.integers(*TS).map(lambda v: (str(v), True))
        outside = st.integers(4_102_444_800, 2**70) | st.integers(-(2**70), -1)
        missing = st.sampled_from([math.nan, "", None]).map(lambda v: (v, False))
        return st.one_of(valid, outside.map(lambda v: (v, False)), missing, infinite, not_number)
    known = st.sampled_from(["nyc", "1", "2", "taxi", "N", ""])
    text = st.one_of(known, st.text(max_size=12), st.integers(-5, 5), st.none(), st.just(math.nan))
    return st.one_of(text.map(lambda v: (v, True)), st.just(("bad\ud800", False)))


KIND = {
    "pickup_ts": "ts",
    "pickup_lat": "lat",
    "dropoff_lat": "lat",
    "pickup_lon": "lon",
    "dropoff_lon": "lon",
}
KIND["passenger_count"] = "passengers"


def _objects(values: Any) -> np.ndarray:
    """A 1-D object array of ``values`` (numpy would make text or 2-D arrays of some)."""
    return np.array([*values, None], dtype=object)[:-1]


@st.composite
def column_dicts(
    draw, names: list[str]
) -> tuple[dict[str, Any], list[str], dict[str, np.ndarray], tuple | None]:
    """Random columns: each input present or not, as a numpy array, an object array or a list; now and
    then one made 2-D or one row longer. Returns ``(columns, missing inputs, invalid rows per input,
    (malformed input, how) or None)``."""
    n = draw(st.integers(0, 6))
    cols: dict[str, Any] = {}
    missing: list[str] = []
    invalid: dict[str, np.ndarray] = {}
    for name in names:
        if draw(st.integers(0, 19)) == 0:
            missing.append(name)
            continue
        cells = draw(st.lists(_value(KIND.get(name, "text")), min_size=n, max_size=n))
        values = [v for v, _ in cells]
        invalid[name] = np.array([not ok for _, ok in cells], dtype=bool)
        form = draw(st.sampled_from(["object", "list", "array"]))
        if form == "array" and all(isinstance(v, (int, float)) and abs(v) < 2**63 for v in values):
            cols[name] = np.array(
                values, dtype=np.float64 if any(isinstance(v, float) for v in values) else np.int64
            )
        elif form == "list":
            cols[name] = values
        else:
            cols[name] = _objects(values)
    malformed = None
    if cols and draw(st.integers(0, 9)) == 0:
        name, how = draw(st.sampled_from(list(cols))), draw(st.sampled_from(["2-D", "longer"]))
        a = _objects(cols[name])
        cols[name] = a.reshape(-1, 1) if how == "2-D" else _objects([*a, None])
        malformed = (name, how)
    return cols, missing, invalid, malformed


@pytest.fixture(scope="module")
def names(schema) -> list[str]:
    return [s["name"] for s in schema]


def test_fuzzed_columns(serve, sess, names):
    @settings(max_examples=50, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(column_dicts(names))
    def check(case):
        cols, missing, invalid, malformed = case
        for on_invalid in ("raise", "drop"):
            try:
                pred = serve.predict(sess, cols, on_invalid=on_invalid)
            except KeyError as e:  # inputs missing: every one of them named
                assert missing, e
                head = str(e).splitlines()[0]
                assert all(m in head for m in missing), (head, missing)
                continue
            except ValueError as e:
                assert not missing, e
                if malformed is not None:
                    name, how = malformed
                    n = len(next(iter(invalid.values())))
                    said = (
                        f"input {name!r}: expected a column 1-D"
                        if how == "2-D"
                        else rf"{n + 1} in [^;]*\b{name}\b"
                    )
                    assert re.search(said, str(e)), (str(e), malformed)
                    continue
                bad = [k for k, m in invalid.items() if m.any()]
                assert on_invalid == "raise" and bad, e
                for k in bad:  # every input with a bad value named, with its first bad row
                    assert f"{k!r}, row {int(np.argmax(invalid[k]))}:" in str(e), (str(e), k)
                continue
            assert not missing and malformed is None
            n = len(next(iter(invalid.values())))
            expect = np.zeros(n, bool)
            for m in invalid.values():
                expect |= m
            assert on_invalid == "drop" or not expect.any()
            for v in pred.values():
                assert v.shape == (n,)
                np.testing.assert_array_equal(np.isnan(v), expect)
                assert np.isfinite(v[~expect]).all()
            assert pred.report["invalid_rows"] == int(expect.sum())

    check()
