"""Run a tabxfer ONNX artifact with onnxruntime and numpy only (this file is copied into every artifact).

    python serve.py model.onnx trips.csv predictions.csv [--provider cpu|cuda] [--batch 65536]
                    [--on-invalid raise|drop] [--set NAME=VALUE]

The input file has one column per graph input (see ``inputs.json`` or the model card); ``pickup_ts`` may
instead be given as ``pickup_datetime`` (``YYYY-MM-DD HH:MM:SS``, local time), and the Kaggle NYC column
names (``pickup_longitude``, ``vendor_id``, ...) are understood. Missing string fields can be set for the
whole file with ``--set city=nyc``. The output has ``duration_s`` and ``log_duration`` per row, in order.

Inputs are checked before the graph runs (the graph cannot raise on a value: a latitude of 200 or the year
3000 would come out as a number, or inf): every input present; one 1-D column each, all of one length;
values of the input's type; finite; inside the valid range of the artifact's schema (``inputs.json``:
``min``/``max``; artifacts exported before ranges existed: finiteness only). NaN (an empty CSV cell) means
"missing" where the schema says ``nullable`` (passenger count: the model was trained with missing counts)
and is invalid elsewhere (coordinates, pickup time). A string the model never saw (a new city or vendor)
is valid: the graph reads it as "unknown", and predict counts such rows per input.

An invalid row is an error naming the input, the row (0-based; CSV line = row + 2) and the value, unless
``on_invalid="drop"`` (``--on-invalid drop``): then the row's predictions are NaN and the rows are counted by
reason (``Predictions.report``; printed by the command line). A row whose prediction comes out non-finite
(inputs far outside the training data) is treated the same way. Exit status: 0 done, 2 unusable input or
model (the message, no traceback).

A model that reads the hourly context (TFT; its schema has a ``context`` input of shape ``(batch, T, 4)``)
needs, per trip, what happened in the ``T`` hours before its pickup hour. That depends on other trips, so it
cannot live in the graph: :func:`context_from_history` computes it from a history of completed trips
(numpy only), and the command line takes it as a ``.npy`` file (``--context``).

Nothing here imports torch, polars or tabxfer.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

ALIASES = {  # the Kaggle "NYC Taxi Trip Duration" CSV's names -> graph inputs
    "pickup_latitude": "pickup_lat",
    "pickup_longitude": "pickup_lon",
    "dropoff_latitude": "dropoff_lat",
    "dropoff_longitude": "dropoff_lon",
    "vendor_id": "vendor",
}
DATETIME = "pickup_datetime"  # text or datetime64 alternative to pickup_ts (local wall-clock time)
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# onnxruntime's CPU kernel for its fused Add + LayerNormalization (SkipLayerNormalization) is slow here:
# 12.8 ms per fused node over (4096, 24, 64) in a TFT-with-context profile, 3.4 ms for a plain
# LayerNormalization over (4096, 25, 64). Without the fusion, int8 graphs at batch 4096 ran faster (TFT
# with context +11%, TabTransformer +7%, FT-Transformer +5%, static-only TFT unchanged).
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
OUTPUTS = ("duration_s", "log_duration")
ON_INVALID = ("raise", "drop")
INT_LIMIT = 2.0**62  # integer inputs beyond this are out of range whatever the schema says


class MissingInputs(KeyError):
    """Inputs the graph needs are absent; the message lists all of them (a ``KeyError`` that prints
    its message as it is)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidInput(ValueError):
    """Input that cannot be run: a malformed column, or rows with invalid values (:attr:`problems`)."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)


class Problem:
    """The rows of one input that fail one check: ``mask`` (bool, one per row), the first such row and
    its value as given, and what was expected."""

    def __init__(
        self, column: str, reason: str, mask: np.ndarray, raw: np.ndarray, expected: str, hint: str = ""
    ):
        self.column, self.reason, self.mask, self.expected, self.hint = column, reason, mask, expected, hint
        self.count = int(mask.sum())
        self.row = int(np.argmax(mask))
        self.value = raw[self.row] if raw.ndim == 1 else raw[self.row].tolist()

    @property
    def key(self) -> str:
        """How the reason is counted in a report, e.g. ``pickup_lat: out of range``."""
        return f"{self.column}: {self.reason}"

    def describe(self) -> str:
        return (
            f"input {self.column!r}, row {self.row}: {_show(self.value)} is {self.reason}{self.hint} "
            f"(expected {self.expected}; {_rows(self.count)})"
        )


class Predictions(dict[str, np.ndarray]):
    """``{"duration_s", "log_duration"}``: float32, one per input row (NaN where a row was dropped), and
    :attr:`report`: ``rows``, ``invalid_rows`` (predicted NaN), ``invalid`` (rows per ``"input: reason"``)
    and ``unseen`` (rows per string input whose non-empty value the model did not learn: read as unknown)."""

    report: dict[str, Any]


def session(path: str | os.PathLike[str], provider: str = "cpu", threads: int = 0) -> ort.InferenceSession:
    """An inference session on exactly the requested provider; refuses to pretend.

    onnxruntime-gpu lists the CUDA provider on machines without a GPU and silently runs on the CPU; this
    raises instead when the session did not get the provider asked for. On the CPU provider, the graph
    optimizations in ``CPU_DISABLED_OPTIMIZERS`` are off (measured slower there).
    """
    want = PROVIDERS.get(provider, provider)
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    cpu = want == "CPUExecutionProvider"
    providers = [want] if cpu else [want, "CPUExecutionProvider"]
    disabled = list(CPU_DISABLED_OPTIMIZERS) if cpu else []
    sess = ort.InferenceSession(
        str(path), sess_options=opts, providers=providers, disabled_optimizers=disabled
    )
    if sess.get_providers()[0] != want:
        raise RuntimeError(
            f"asked for {want}, but onnxruntime runs this session on {sess.get_providers()} "
            f"(available here: {ort.get_available_providers()}); not claiming {want}"
        )
    return sess


def input_schema(sess: ort.InferenceSession) -> list[dict[str, Any]]:
    """The artifact's input descriptions (metadata ``tabxfer.inputs``; see ``inputs.json``)."""
    meta = sess.get_modelmeta().custom_metadata_map
    if "tabxfer.inputs" not in meta:
        raise ValueError("not a tabxfer artifact: the model has no tabxfer.inputs metadata")
    return list(json.loads(meta["tabxfer.inputs"]))


def _show(v: Any) -> str:
    s = repr(v.item() if isinstance(v, np.generic) else v)
    return s if len(s) <= 60 else s[:57] + "..."


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def expected(spec: Mapping[str, Any]) -> str:
    """What an input accepts, in words (its type, range, whether NaN = missing, and its meaning)."""
    dtype, lo, hi = spec["dtype"], spec.get("min"), spec.get("max")
    if dtype == "string":
        return f"text: {spec['description']}"
    text = f"finite {dtype}"
    if lo is not None or hi is not None:
        text += f" in [{'-inf' if lo is None else _num(lo)}, {'inf' if hi is None else _num(hi)}]"
        if spec["name"] == "pickup_ts" and lo is not None and hi is not None:
            text += f" ({np.datetime64(int(lo), 's')} .. {np.datetime64(int(hi), 's')})"
    if _nullable(spec):
        text += ", NaN = missing"
    return f"{text}: {spec['description']}"


def _nullable(spec: Mapping[str, Any]) -> bool:
    """NaN accepted as missing? Artifacts exported before ``nullable`` existed: every float input."""
    flag = spec.get("nullable")
    return bool(flag) if flag is not None else spec["dtype"].startswith("float")


def _columns(schema: Sequence[Mapping[str, Any]], columns: Mapping[Any, Any]) -> dict[str, tuple[str, Any]]:
    """``{input name: (name as given, values)}`` after aliases; raises :class:`MissingInputs` naming
    every absent input, and on an input given under two names."""
    given: dict[str, tuple[str, Any]] = {}
    for key, v in columns.items():
        name = ALIASES.get(key, key)
        if name in given:
            raise InvalidInput(f"input {name!r} given twice: as {given[name][0]!r} and as {key!r}")
        given[name] = (str(key), v)
    if "pickup_ts" not in given and DATETIME in given:
        given["pickup_ts"] = given[DATETIME]
    missing = [s for s in schema if s["name"] not in given]
    if missing:
        other = {s["name"]: [a for a, n in ALIASES.items() if n == s["name"]] for s in missing}
        if "pickup_ts" in other:
            other["pickup_ts"].append(f"{DATETIME} (text YYYY-MM-DD HH:MM:SS, local time)")
        lines = [
            f"  {s['name']} ({s['dtype']}): {s['description']}"
            + (f"; also read from {', '.join(other[s['name']])}" if other[s["name"]] else "")
            + (f"; one value for every row: --set {s['name']}=VALUE" if s["dtype"] == "string" else "")
            for s in missing
        ]
        have = [str(k) for k in columns]
        shown = ", ".join(have[:20]) + (f", ... ({len(have)} in all)" if len(have) > 20 else "")
        raise MissingInputs(
            f"{len(missing)} input{'s' if len(missing) > 1 else ''} missing: "
            f"{', '.join(s['name'] for s in missing)}\n"
            + "\n".join(lines)
            + f"\ncolumns given: {shown or 'none'}"
        )
    return given


def _array(column: str, v: Any, spec: Mapping[str, Any]) -> np.ndarray:
    """``v`` as an array with the input's number of dimensions (1 for every raw field)."""
    try:
        a = np.asarray(v)
    except ValueError as e:  # ragged nested lists
        raise InvalidInput(f"input {column!r}: not a column of values ({e})") from None
    shape = spec.get("shape") or ["batch"]
    fixed = [d if isinstance(d, int) else None for d in shape[1:]]
    if a.ndim != len(shape) or any(
        f is not None and f != d for f, d in zip(fixed, a.shape[1:], strict=False)
    ):
        want = "1-D (one value per row)" if len(shape) == 1 else f"of shape {list(shape)}"
        raise InvalidInput(f"input {column!r}: expected a column {want}, got an array of shape {a.shape}")
    return a


def _parse_floats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(float64 values, not-a-number mask)`` of an object or text array; None and blank text = NaN."""
    try:  # all at once; row by row only when some value does not convert
        return a.astype(np.float64), np.zeros(a.shape, bool)
    except (TypeError, ValueError, OverflowError):
        pass
    out = np.empty(a.shape, np.float64)
    bad = np.zeros(a.shape, bool)
    flat, flat_bad = out.reshape(-1), bad.reshape(-1)
    for i, x in enumerate(a.flat):
        if x is None or (isinstance(x, (str, bytes)) and not x.strip()):
            flat[i] = np.nan
            continue
        try:
            flat[i] = float(x)
        except (TypeError, ValueError, OverflowError):
            flat[i], flat_bad[i] = np.nan, True
    return out, bad


def _parse_times(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(float64 epoch seconds, not-a-date-time mask)`` of local date-times (text, datetime64 or
    datetime objects); missing = NaN. A time zone is refused: the graph reads local wall-clock time."""

    def secs(t: np.ndarray) -> np.ndarray:
        s = t.astype("datetime64[s]")
        return np.where(np.isnat(s), np.nan, s.astype(np.int64).astype(np.float64))

    out = np.full(a.shape, np.nan)
    bad = np.zeros(a.shape, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (and converts to UTC) on a time zone
        try:  # all at once; row by row only to find the rows that do not parse
            return secs(a), bad
        except (TypeError, ValueError, OverflowError, UserWarning, DeprecationWarning):
            pass
        for i, x in enumerate(a.flat):
            if (
                x is None
                or (isinstance(x, (str, bytes)) and not x.strip())
                or (isinstance(x, float) and x != x)
            ):
                continue
            try:
                out.flat[i] = secs(np.asarray(np.datetime64(x.decode() if isinstance(x, bytes) else x, "s")))
            except (TypeError, ValueError, OverflowError, UserWarning, DeprecationWarning):
                bad.flat[i] = True
    return out, bad


def _numeric(column: str, a: np.ndarray, spec: Mapping[str, Any]) -> tuple[np.ndarray, list[Problem]]:
    """A numeric input converted to its dtype, and the rows that fail its checks (they hold 0)."""
    name, dtype = spec["name"], spec["dtype"]
    want = expected(spec)
    not_a, hint = "not a number", ""
    if name == "pickup_ts" and (column == DATETIME or a.dtype.kind == "M"):
        values, unparsed = _parse_times(a)
        not_a, hint = "not a local date-time", " (YYYY-MM-DD HH:MM:SS, no time zone)"
    elif a.dtype.kind in "iuf":
        values, unparsed = a.astype(np.float64), np.zeros(a.shape, bool)
    elif a.dtype.kind in "OUS":
        values, unparsed = _parse_floats(a)
        hint = f" (for text date-times use {DATETIME})" if name == "pickup_ts" else ""
    else:
        raise InvalidInput(
            f"input {column!r}: values of type {a.dtype} (row 0: {_show(a.flat[0])}); expected {want}"
        )
    if dtype.startswith("int"):
        values = np.floor(values)  # whole seconds: 2099-12-31 23:59:59.9 is still 2099
    nan = np.isnan(values) & ~unparsed
    checks = [
        (not_a, unparsed),
        ("missing", nan if not _nullable(spec) else np.zeros(a.shape, bool)),
        ("not finite", np.isinf(values)),
    ]
    lo, hi = spec.get("min"), spec.get("max")
    if dtype.startswith("int"):  # what an int64 holds, also where the schema gives no range (older artifacts)
        lo, hi = (
            max(lo, -INT_LIMIT) if lo is not None else -INT_LIMIT,
            min(hi, INT_LIMIT) if hi is not None else INT_LIMIT,
        )
    if lo is not None or hi is not None:
        with np.errstate(invalid="ignore"):
            out = ((values < lo) if lo is not None else False) | ((values > hi) if hi is not None else False)
        checks.append(("out of range", np.isfinite(values) & out))
    n = a.shape[0]
    problems = [
        Problem(column, why, m.reshape(n, -1).any(axis=1), a, want, hint if why == not_a else "")
        for why, m in checks
        if m.any()
    ]
    bad = np.zeros(a.shape, bool)
    for _, m in checks:
        bad |= m
    if dtype.startswith("int"):  # integers as given (exact); others rounded down (fractions of a second)
        ints = a if a.dtype.kind in "iu" else np.where(bad, 0, values)
        return np.where(bad, 0, ints).astype(dtype), problems
    return np.where(bad, 0, values).astype(dtype), problems


def _text(x: Any) -> str | None:
    """A string input's value as text ("" = missing; None: not encodable as UTF-8)."""
    if x is None or (isinstance(x, (float, np.floating)) and x != x):
        return ""
    if isinstance(x, bytes):
        try:
            return x.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return str(int(x))  # vendor 1 read as 1.0 (an integer column with missing values)
    s = str(x)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: onnxruntime cannot take them
        return None
    return s


def _strings(column: str, a: np.ndarray, spec: Mapping[str, Any]) -> tuple[np.ndarray, list[Problem]]:
    texts = [_text(x) for x in a.flat]
    bad = np.array([t is None for t in texts], dtype=bool).reshape(a.shape)
    out = np.array(["" if t is None else t for t in texts], dtype=object).reshape(a.shape)
    problems = [Problem(column, "not UTF-8 text", bad, a, expected(spec))] if bad.any() else []
    return out, problems


def check(
    schema: Sequence[Mapping[str, Any]], columns: Mapping[Any, Any]
) -> tuple[dict[str, np.ndarray], list[Problem]]:
    """Every input of ``schema`` from ``columns`` (arrays or lists, by input name or alias), converted to
    its dtype, and the row-level problems (invalid rows hold a placeholder in the arrays).

    Raises :class:`MissingInputs` (a ``KeyError``) when inputs are absent, :class:`InvalidInput` (a
    ``ValueError``) when a column is not a 1-D array of values or the columns differ in length."""
    given = _columns(schema, columns)
    arrays: dict[str, tuple[str, np.ndarray]] = {}
    for spec in schema:
        column, values = given[spec["name"]]
        arrays[spec["name"]] = column, _array(column, values, spec)
    lengths: dict[int, list[str]] = {}
    for column, a in arrays.values():
        lengths.setdefault(a.shape[0], []).append(column)
    if len(lengths) > 1:
        parts = "; ".join(f"{n:,} in {', '.join(c)}" for n, c in sorted(lengths.items()))
        raise InvalidInput(f"inputs differ in length (rows: {parts}); every input needs one value per row")
    out: dict[str, np.ndarray] = {}
    problems: list[Problem] = []
    for spec in schema:
        column, a = arrays[spec["name"]]
        conv = _strings if spec["dtype"] == "string" else _numeric
        out[spec["name"]], found = conv(column, a, spec)
        problems += found
    return out, problems


def invalid_rows_message(problems: Sequence[Problem], n: int) -> str:
    bad = np.zeros(n, bool)
    for p in problems:
        bad |= p.mask
    lines = [f"{int(bad.sum()):,} of {n:,} rows invalid (rows count from 0):"]
    lines += [f"  {p.describe()}" for p in problems]
    lines.append(
        'to predict NaN for invalid rows instead, pass on_invalid="drop" (command line: --on-invalid drop)'
    )
    return "\n".join(lines)


def feed(schema: Sequence[Mapping[str, Any]], columns: Mapping[Any, Any]) -> dict[str, np.ndarray]:
    """Input arrays of the right dtype from columns (lists or arrays); raises on any invalid value."""
    out, problems = check(schema, columns)
    if problems:
        n = len(next(iter(out.values())))
        raise InvalidInput(invalid_rows_message(problems, n), problems)
    return out


def predict(
    sess: ort.InferenceSession, columns: Mapping[Any, Any], batch: int = 65536, *, on_invalid: str = "raise"
) -> Predictions:
    """``{"duration_s", "log_duration"}`` for every row of ``columns``, checked first (module docstring).

    ``on_invalid="raise"``: an invalid row raises :class:`InvalidInput` naming input, row, value and what
    is valid. ``"drop"``: its predictions are NaN, counted by reason in the result's ``report``."""
    if on_invalid not in ON_INVALID:
        raise ValueError(f"on_invalid={on_invalid!r}; expected one of {ON_INVALID}")
    if batch < 1:
        raise ValueError(f"batch={batch}; expected a positive number of rows")
    schema = input_schema(sess)
    data, problems = check(schema, columns)
    n = len(next(iter(data.values()))) if data else 0
    if problems and on_invalid == "raise":
        raise InvalidInput(invalid_rows_message(problems, n), problems)
    bad = np.zeros(n, bool)
    for p in problems:
        bad |= p.mask
    rows = np.flatnonzero(~bad)
    pred = {k: np.full(n, np.nan, np.float32) for k in OUTPUTS}
    for s in range(0, len(rows), batch):
        part = rows[s : s + batch]
        whole = len(rows) == n  # no row dropped: slices, not copies
        got = sess.run(list(OUTPUTS), {k: v[s : s + batch] if whole else v[part] for k, v in data.items()})
        for k, v in zip(OUTPUTS, got, strict=True):
            pred[k][part] = v
    inf = ~bad & ~(np.isfinite(pred["duration_s"]) & np.isfinite(pred["log_duration"]))
    if inf.any():
        row = int(np.argmax(inf))
        shown = ", ".join(f"{k}={_show(v[row])}" for k, v in data.items())
        p = Problem("duration_s", "not finite", inf, pred["duration_s"], "a finite prediction")
        if on_invalid == "raise":
            raise InvalidInput(
                f"row {row}: the model's prediction is {_show(pred['duration_s'][row])} ({_rows(p.count)}): "
                f"inputs far outside the training data? ({shown})",
                [p],
            )
        problems.append(p)
        bad |= inf
        for v in pred.values():
            v[inf] = np.nan
    unseen: dict[str, int] = {}
    for spec in schema:
        if spec["dtype"] == "string" and spec.get("vocabulary") is not None:
            known = set(spec["vocabulary"])
            values = data[spec["name"]] if len(rows) == n else data[spec["name"]][rows]
            hits = sum(1 for x in values.tolist() if x and x not in known)
            if hits:
                unseen[spec["name"]] = hits
    out = Predictions(pred)
    out.report = {
        "rows": n,
        "invalid_rows": int(bad.sum()),
        "invalid": {p.key: p.count for p in problems},
        "unseen": unseen,
    }
    return out


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """A prediction report in words (what the command lines print)."""
    lines = []
    if report["invalid_rows"]:
        lines.append(f"{report['invalid_rows']:,} of {report['rows']:,} rows invalid, predicted NaN:")
        lines += [f"  {k}: {_rows(v)}" for k, v in report["invalid"].items()]
    if report["unseen"]:
        lines.append("values the model did not learn (read as unknown):")
        lines += [f"  {k}: {_rows(v)}" for k, v in report["unseen"].items()]
    return lines


EARTH_RADIUS_KM = 6371.0088  # as tabxfer.data.geo
KM_PER_DEG_LAT = np.pi * EARTH_RADIUS_KM / 180.0


def feature_spec(sess: ort.InferenceSession) -> dict[str, Any]:
    """The artifact's feature spec (metadata ``tabxfer.feature_spec``): city centers, context settings."""
    meta = sess.get_modelmeta().custom_metadata_map
    if "tabxfer.feature_spec" not in meta:
        raise ValueError("the model has no tabxfer.feature_spec metadata (not a tabxfer artifact?)")
    return dict(json.loads(meta["tabxfer.feature_spec"]))


def context_from_history(
    spec: Mapping[str, Any], trips: Mapping[str, Any], history: Mapping[str, Any]
) -> np.ndarray:
    """The ``context`` input ``(N, T, 4)`` of ``trips`` from a ``history`` of trips, as tabxfer built it
    for training: for each of the ``T`` hours before a trip's pickup hour (oldest first), the number of
    history trips of its city that **completed** in that hour and their mean ``log1p(km/h)``, then the same
    two for completed trips that started in the trip's region (a ``region_km`` grid cell of the city's
    local frame; NaN when the region had too few training trips to get a series). NaN = unknown (no
    completed trip: no speed).

    ``spec``: :func:`feature_spec`. ``trips``: ``pickup_ts`` (epoch seconds of local wall time),
    ``pickup_lat``, ``pickup_lon``, ``city``. ``history``: the same plus ``dropoff_lat``, ``dropoff_lon``
    and ``duration_s``; trips completing at or after a trip's pickup hour are not counted (no leakage).
    """
    info = spec.get("context")
    if not info:
        raise ValueError("the feature spec has no context: this model does not read one")
    hours, region_km = int(info["hours"]), float(info["region_km"])
    centers = {c: (float(v[0]), float(v[1])) for c, v in spec["city_centers"].items()}
    known = {(c, int(x), int(y)) for c, rs in info["regions"].items() for x, y in rs}
    cities = sorted(centers)
    code_of = {c: i for i, c in enumerate(cities)}

    def cells(d: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        city = [str(c) for c in np.asarray(d["city"], dtype=object)]
        unknown = sorted({c for c in city if c not in code_of})
        if unknown:
            raise ValueError(f"cities without a local frame in this model: {unknown}; it knows {cities}")
        code = np.array([code_of[c] for c in city], dtype=np.int64)
        lat0 = np.array([centers[c][0] for c in cities])[code]
        lon0 = np.array([centers[c][1] for c in cities])[code]
        lat = np.asarray(d["pickup_lat"], np.float64)
        lon = np.asarray(d["pickup_lon"], np.float64)
        kx = KM_PER_DEG_LAT * np.cos(np.radians(lat0))
        rx = np.floor((lon - lon0) * kx / region_km)
        ry = np.floor((lat - lat0) * KM_PER_DEG_LAT / region_km)
        return code, rx, ry

    # history: completed trips by (city, hour) and by (city, region, hour)
    hc, hrx, hry = cells(history)
    ts = np.asarray(history["pickup_ts"], np.float64)
    dur = np.asarray(history["duration_s"], np.float64)
    lat1, lon1 = np.radians(np.asarray(history["pickup_lat"], np.float64)), np.asarray(history["pickup_lon"])
    lat2, lon2 = (
        np.radians(np.asarray(history["dropoff_lat"], np.float64)),
        np.asarray(history["dropoff_lon"]),
    )
    a = (
        np.sin((lat2 - lat1) / 2) ** 2
        + np.cos(lat1) * np.cos(lat2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        speed = np.log1p(np.maximum(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(a)) / (dur / 3600.0), 0))
    ok = np.isfinite(speed)
    h_done = np.floor((ts + dur) / 3600.0)
    region = np.array([(c, x, y) in known for c, x, y in zip([cities[i] for i in hc], hrx, hry, strict=True)])

    def table(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        n = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
        return uniq, n, np.bincount(inverse, weights=values, minlength=len(uniq)) / n

    city_keys = np.stack([hc, h_done], axis=1)[ok]
    reg_keys = np.stack([hc, hrx, hry, h_done], axis=1)[ok & region]
    city_tab = table(city_keys, speed[ok])
    reg_tab = table(reg_keys, speed[ok & region])

    def lookup(tab: tuple[np.ndarray, np.ndarray, np.ndarray], keys: np.ndarray) -> np.ndarray:
        uniq, n, mean = tab
        out = np.zeros((len(keys), 2))
        out[:, 1] = np.nan
        if len(uniq):
            view = np.ascontiguousarray(uniq).view([("", uniq.dtype)] * uniq.shape[1]).reshape(-1)
            want = np.ascontiguousarray(keys).view([("", keys.dtype)] * keys.shape[1]).reshape(-1)
            pos = np.clip(np.searchsorted(view, want), 0, len(uniq) - 1)
            hit = view[pos] == want
            out[hit, 0], out[hit, 1] = n[pos[hit]], mean[pos[hit]]
        return out

    qc, qrx, qry = cells(trips)
    hour = np.floor(np.asarray(trips["pickup_ts"], np.float64) / 3600.0)
    steps = hour[:, None] - np.arange(hours, 0, -1)  # (N, T), oldest first
    n_rows = len(hour)
    qcity = np.repeat(qc, hours).astype(np.float64)
    c = lookup(city_tab, np.stack([qcity, steps.reshape(-1)], axis=1))
    r = lookup(
        reg_tab, np.stack([qcity, np.repeat(qrx, hours), np.repeat(qry, hours), steps.reshape(-1)], axis=1)
    )
    in_region = np.array([(cities[i], x, y) in known for i, x, y in zip(qc, qrx, qry, strict=True)])
    r[~np.repeat(in_region, hours)] = np.nan  # no series for this region
    return np.concatenate([c, r], axis=1).reshape(n_rows, hours, 4).astype(np.float32)


def read_csv(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """A CSV with a header row -> ``{column: object array of text}``; raises ``ValueError`` on an empty
    file, a repeated column name or a row with another number of fields than the header."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty file (expected a header row)")
    header, body = rows[0], rows[1:]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise ValueError(
            f"{path}: column{'s' if len(twice) > 1 else ''} {', '.join(map(repr, twice))} repeated"
        )
    for i, r in enumerate(body):
        if len(r) != len(header):
            raise ValueError(
                f"{path}: line {i + 2} has {len(r)} fields, the header {len(header)} (row {i} counting from 0)"
            )
    return {h: np.array([r[j] for r in body], dtype=object) for j, h in enumerate(header)}


def write_csv(path: str | os.PathLike[str], pred: Mapping[str, np.ndarray]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(pred))
        w.writerows(zip(*[np.char.mod("%.6g", v) for v in pred.values()], strict=True))
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("trips", help="CSV of raw trips")
    ap.add_argument("out", help="CSV of predictions")
    ap.add_argument("--provider", default="cpu", choices=sorted(PROVIDERS))
    ap.add_argument("--batch", type=int, default=65536)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a constant field")
    ap.add_argument(
        "--context",
        metavar="FILE.npy",
        help="the trips' hourly context, (rows, T, 4), for a model that reads one (context_from_history)",
    )
    ap.add_argument(
        "--on-invalid",
        default="raise",
        choices=ON_INVALID,
        help="an invalid row: raise = stop with an error naming it (default); drop = predict NaN, count it",
    )
    args = ap.parse_args(argv)
    try:
        try:
            sess = session(args.model, args.provider)
        except Exception as e:  # onnxruntime's own error types: a missing or broken model file
            raise ValueError(f"{args.model}: cannot load the model ({e})") from None
        cols: dict[str, Any] = dict(read_csv(args.trips))
        n = len(next(iter(cols.values()))) if cols else 0
        for kv in args.set:
            k, _, v = kv.partition("=")
            cols[k] = np.full(n, v, dtype=object)
        if args.context:
            cols["context"] = np.load(args.context, allow_pickle=False)
        pred = predict(sess, cols, args.batch, on_invalid=args.on_invalid)
        write_csv(args.out, pred)
    except (KeyError, ValueError, OSError, csv.Error) as e:
        where = "\n(row r is line r + 2 of the CSV)" if isinstance(e, InvalidInput) and e.problems else ""
        print(f"error: {e}{where}", file=sys.stderr)
        return 2
    print(f"{n:,} predictions -> {args.out} ({sess.get_providers()[0]})")
    for line in report_lines(pred.report):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
