"""The malformed-input cases of the data-layer fuzzing campaign, shared by ``test_fuzz_data.py`` and
``scripts/fuzz_data.py``.

Each :class:`Case` writes one malformed file into a scratch folder (built here from valid rows, or from
the head of a real file under ``$TABXFER_DATA_DIR``), loads it (or builds features from it), and states
the outcome the project's rule asks for:

* ``error``: a :class:`~tabxfer.data.schema.DataError` whose message names the file (or, for a split, the
  split) and matches ``match``, a regex naming the field or row and what was expected;
* ``drop``: the load succeeds and drops exactly ``dropped`` (reason -> rows), keeping ``kept`` rows;
* ``ok``: the load succeeds, keeps ``kept`` rows and drops none.

Every successful load must also account for every row the file holds (``n_in`` = rows written). Anything
else is ``UNCLEAR``: another exception (a crash, a polars panic), an error that names neither the file nor
the split, or the loaders' last-resort "cannot read: <reader message>" (the loader could not tell why).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import gzip
import io
import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from factories import KAGGLE_HEADER, KAGGLE_T0, kaggle_row
from tabxfer.data.cities import city_bounds
from tabxfer.data.geo import haversine_km
from tabxfer.data.quality import DEFAULT_MAX_SPEED_KMH, Validation
from tabxfer.data.schema import FILE, REASON, ROW, DataError, DropReport
from tabxfer.data.sources import CitiBikeTrips, KaggleNYCTaxi, TLCTrips
from tabxfer.data.sources.base import TripSource
from tabxfer.features.build import featurize
from tabxfer.features.pipeline import FeatureConfig
from tabxfer.features.splits import SplitConfig

OUTCOMES = ("error", "drop", "ok")
UNCLEAR = "UNCLEAR"
# the loaders' last-resort message (TripSource._explain): the reader failed and the loader could not say
# why or where; a fuzzed file that gets it has found a failure mode without a clear error
GENERIC_ERROR = re.compile(r": cannot read: ")


class MissingData(Exception):
    """The real dataset a case copies rows from is absent: the case is skipped."""


@dataclasses.dataclass(frozen=True)
class Trial:
    """One built case: ``run()`` loads and returns ``(kept rows or None, report)``; an error message must
    contain ``names`` (the file's path, or the split); ``n_rows``: data rows written (None: unknown)."""

    run: Callable[[], tuple[pl.DataFrame | None, DropReport]]
    names: str
    n_rows: int | None = None


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path, Path | None], Trial]  # (scratch folder, shared data folder or None) -> trial
    expect: str  # one of OUTCOMES
    match: str = ""  # error: regex (re.search) the message must match
    dropped: Mapping[str, int] = dataclasses.field(default_factory=dict)  # drop: exact counts
    kept: int | None = None  # drop / ok: rows kept
    real: str | None = None  # the shared dataset the case copies rows from (skipped without it)
    check: Callable[[pl.DataFrame], str | None] | None = None  # ok / drop: a further check of kept rows
    note: str = ""  # why this outcome

    def __post_init__(self) -> None:
        assert self.expect in OUTCOMES, self.expect
        assert (self.expect == "error") == bool(self.match), self.name
        assert (self.expect == "drop") == bool(self.dropped), self.name
        assert self.expect == "error" or self.kept is not None, self.name


@dataclasses.dataclass
class Outcome:
    kind: str  # error | drop | ok | UNCLEAR
    message: str = ""
    kept: int | None = None
    n_in: int | None = None
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    frame: pl.DataFrame | None = None


def run_case(case: Case, folder: Path, data: Path | None) -> tuple[Trial, Outcome]:
    """Build and run ``case`` (MissingData propagates: the caller skips)."""
    folder.mkdir(parents=True, exist_ok=True)
    trial = case.make(folder, data)
    return trial, outcome_of(trial)


def outcome_of(trial: Trial) -> Outcome:
    try:
        df, report = trial.run()
    except DataError as e:
        msg = str(e)
        clear = trial.names in msg and not GENERIC_ERROR.search(msg)
        return Outcome("error" if clear else UNCLEAR, msg)
    except BaseException as e:  # a crash, a polars panic (a BaseException), a raw reader error
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        return Outcome(UNCLEAR, f"{type(e).__name__}: {e}")
    kept = df.height if df is not None else report.n_out
    return Outcome(
        "drop" if report.n_dropped else "ok",
        report.summary(),
        kept=kept,
        n_in=report.n_in,
        dropped={k: v for k, v in report.dropped.items() if v},
        frame=df,
    )


def mismatches(case: Case, trial: Trial, out: Outcome) -> list[str]:
    """What differs from the case's expected outcome (empty: as expected)."""
    if out.kind != case.expect:
        return [f"expected {case.expect}, got {out.kind}: {out.message[:300]}"]
    problems = []
    if out.kind == "error":
        if not re.search(case.match, out.message):
            problems.append(f"message does not match {case.match!r}: {out.message[:300]}")
        return problems
    if out.kept != case.kept:
        problems.append(f"kept {out.kept} rows, expected {case.kept}")
    if out.dropped != dict(case.dropped):
        problems.append(f"dropped {out.dropped}, expected {dict(case.dropped)}")
    if trial.n_rows is not None and out.n_in != trial.n_rows:
        problems.append(f"LOST ROWS: the file holds {trial.n_rows} rows, the report counts {out.n_in}")
    if out.frame is not None:
        problems += kept_row_problems(out.frame)
        if case.check is not None and (extra := case.check(out.frame)):
            problems.append(extra)
    return problems


# --- what every kept row satisfies ------------------------------------------------------------------


def kept_row_problems(df: pl.DataFrame) -> list[str]:
    """The schema's row invariants that a kept (NYC, taxi) row must satisfy, as a list of violations."""
    if df.height == 0:
        return []
    v, b = Validation(), city_bounds(str(df["city"][0]))
    out = []
    if df["trip_id"].null_count() or df["trip_id"].n_unique() != df.height:
        out.append("trip_id null or repeated")
    t = df["pickup_time"]
    if t.null_count() or not t.dt.year().is_between(v.min_year, v.max_year).all():
        out.append("pickup_time missing or out of range")
    for c, lo, hi in (
        ("pickup_lat", b.lat_min, b.lat_max),
        ("dropoff_lat", b.lat_min, b.lat_max),
        ("pickup_lon", b.lon_min, b.lon_max),
        ("dropoff_lon", b.lon_min, b.lon_max),
    ):
        x = df[c]
        if x.null_count() or not (x.is_finite() & x.is_between(lo, hi)).all():
            out.append(f"{c} missing, not finite or outside {b.name}")
    pc = df["passenger_count"].drop_nulls()
    if not pc.is_between(0, v.max_passengers).all():
        out.append("passenger_count out of range")
    d = df["duration_s"]
    if d.null_count() or not (d.is_finite() & d.is_between(v.min_duration_s, v.max_duration_s)).all():
        out.append("duration_s missing, not finite or out of range")
    else:
        km = df.select(
            haversine_km(*(pl.col(c) for c in ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")))
        ).to_series()
        if not (km / (d / 3600.0) <= DEFAULT_MAX_SPEED_KMH[str(df["mode"][0])] + 1e-9).all():
            out.append("implausible speed kept")
    return out


# --- valid rows to break ------------------------------------------------------------------------------

KAGGLE = KAGGLE_HEADER
T0 = KAGGLE_T0


def kaggle_rows(n: int = 10, k: int = 0, **bad: str) -> list[list[str]]:
    """``n`` valid rows (as field lists in KAGGLE order); the first ``k`` carry the ``bad`` values."""
    return [list(kaggle_row(i, **(bad if i < k else {})).values()) for i in range(n)]


YELLOW = [
    "VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count", "trip_distance",
    "pickup_longitude", "pickup_latitude", "RateCodeID", "store_and_fwd_flag", "dropoff_longitude",
    "dropoff_latitude", "payment_type", "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount",
    "improvement_surcharge", "total_amount",
]  # fmt: skip


def yellow_row(i: int, **over: str) -> dict[str, str]:
    """A valid TLC yellow 2015 (lat/lon era) row, distinct for each ``i``."""
    pickup = dt.datetime(2015, 1, 15, 19, 5, 39) + dt.timedelta(minutes=7 * i)
    row = {
        "VendorID": str(1 + i % 2),
        "tpep_pickup_datetime": f"{pickup:%Y-%m-%d %H:%M:%S}",
        "tpep_dropoff_datetime": f"{pickup + dt.timedelta(seconds=900 + i):%Y-%m-%d %H:%M:%S}",
        "passenger_count": str(1 + i % 4),
        "trip_distance": "1.59",
        "pickup_longitude": f"{-73.993896 + i * 1e-4:.6f}",
        "pickup_latitude": "40.750110",
        "RateCodeID": "1",
        "store_and_fwd_flag": "N",
        "dropoff_longitude": "-73.974785",
        "dropoff_latitude": "40.750618",
        "payment_type": "1",
        "fare_amount": "12.0",
        "extra": "1.0",
        "mta_tax": "0.5",
        "tip_amount": "3.25",
        "tolls_amount": "0",
        "improvement_surcharge": "0.3",
        "total_amount": "17.05",
    }
    row.update(over)
    return row


def yellow_rows(n: int = 10, k: int = 0, **bad: str) -> list[list[str]]:
    return [list(yellow_row(i, **(bad if i < k else {})).values()) for i in range(n)]


# --- writing files -------------------------------------------------------------------------------------


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]], *, newline: str = "\n") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator=newline)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write(folder: Path, name: str, data: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def typed_kaggle(rows: Sequence[Sequence[str]]) -> pl.DataFrame:
    """Rows as a Parquet file types them (as the shared Kaggle files are typed)."""
    df = pl.DataFrame([list(r) for r in rows], schema=KAGGLE, orient="row")
    return df.with_columns(
        pl.col("vendor_id", "passenger_count", "trip_duration").cast(pl.Int64),
        pl.col("pickup_datetime", "dropoff_datetime").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S"),
        pl.col("^.*_(longitude|latitude)$").cast(pl.Float64),
    )


def typed_yellow(rows: Sequence[Sequence[str]]) -> pl.DataFrame:
    df = pl.DataFrame([list(r) for r in rows], schema=YELLOW, orient="row")
    ints = ["VendorID", "passenger_count", "RateCodeID", "payment_type"]
    floats = [c for c in YELLOW if c not in ints and "datetime" not in c and c != "store_and_fwd_flag"]
    return df.with_columns(
        pl.col(ints).cast(pl.Int64),
        pl.col(floats).cast(pl.Float64),
        pl.col("^tpep_.*$").str.strptime(pl.Datetime("us"), "%Y-%m-%d %H:%M:%S"),
    )


def parquet_bytes(df: pl.DataFrame, **kw: Any) -> bytes:
    buf = io.BytesIO()
    df.write_parquet(buf, **kw)
    return buf.getvalue()


def cut_in_field(text: str, line: int, field: int, keep: int) -> str:
    """``text`` cut inside data row ``line`` (0-based), ``keep`` characters into its field ``field``."""
    lines = text.split("\n")
    start = sum(len(x) + 1 for x in lines[: line + 1])  # + the header line
    fields = lines[line + 1].split(",")
    offset = sum(len(f) + 1 for f in fields[:field]) + keep
    return text[: start + offset]


def load(source: type[TripSource], path: Path, n_rows: int | None, **kw: Any) -> Trial:
    src = source(paths=path, **kw)
    return Trial(run=src.load, names=str(path), n_rows=n_rows)


# --- real files --------------------------------------------------------------------------------------

KAGGLE_REAL = ("nyc_taxi_trip_duration_kaggle", "split_sample_val_sh31.parquet")
YELLOW_REAL = ("nyc_tlc_yellow_2015_2016_head_samples", "yellow_tripdata_2016-01_first_rows.parquet")
GREEN_REAL = ("nyc_tlc_green_trips", "green_tripdata_2021-01.parquet")
ZONES_REAL = ("nyc_tlc_taxi_zones", "taxi_zone_centroids.parquet")
CITIBIKE_REAL = ("citibike_jersey_city_trips", "JC-201702-citibike-tripdata.parquet")


def real_file(data: Path | None, dataset: str, name: str) -> Path:
    path = (data / dataset / name) if data is not None else None
    if path is None or not path.is_file():
        raise MissingData(f"real file {dataset}/{name} not found under {data}")
    return path


def clean_head(
    data: Path | None, real: tuple[str, str], source: type[TripSource], n: int, folder: Path, **kw: Any
) -> pl.DataFrame:
    """The first ``n`` rows of a real file that ``source`` keeps (so a case's drops are all its own)."""
    path = real_file(data, *real)
    head = pl.read_parquet(path, n_rows=5 * n)
    tmp = write(folder, f"_head_{path.stem}.parquet", parquet_bytes(head))
    reasons = source(paths=tmp, **kw).scan_all().select(ROW, FILE, REASON).collect()
    tmp.unlink()
    keep = reasons.filter(pl.col(REASON).is_null())[ROW].head(n)
    if keep.len() < n:
        raise MissingData(f"{path} has fewer than {n} clean rows among its first {5 * n}")
    return head.with_row_index("__i").filter(pl.col("__i").is_in(keep.implode())).drop("__i")


def real_csv(df: pl.DataFrame) -> str:
    """A real frame as the published CSV files write it (``2016-01-01 00:00:00`` datetimes)."""
    return df.write_csv(datetime_format="%Y-%m-%d %H:%M:%S")


def set_rows(df: pl.DataFrame, column: str, k: int, value: Any) -> pl.DataFrame:
    """``column`` set to ``value`` in the first ``k`` rows (as a string column when ``value`` is one)."""
    col = pl.col(column).cast(pl.String) if isinstance(value, str) else pl.col(column)
    return df.with_columns(
        pl.when(pl.int_range(pl.len()) < k).then(pl.lit(value)).otherwise(col).alias(column)
    )


def zone_source_kw(data: Path | None) -> dict[str, Any]:
    return {"zone_table": real_file(data, *ZONES_REAL)}


# --- the feature side: splits ---------------------------------------------------------------------------


def featurize_trial(source: TripSource, split: Mapping[str, Any], names: str) -> Trial:
    def run() -> tuple[pl.DataFrame | None, DropReport]:
        _, _, reports, _, _ = featurize({"kaggle": source}, FeatureConfig(), SplitConfig.of(split))
        report = DropReport.from_dict(reports["kaggle"])
        return None, report

    return Trial(run=run, names=names)


def time_clusters(folder: Path, name: str, clusters: Sequence[tuple[dt.datetime, int]]) -> Path:
    """A Kaggle CSV whose pickups fall in the given clusters (start, rows); one minute apart."""
    rows, i = [], 0
    for start, n in clusters:
        for j in range(n):
            pickup = start + dt.timedelta(minutes=j)
            r = kaggle_row(i, pickup_datetime=f"{pickup:%Y-%m-%d %H:%M:%S}")
            r["dropoff_datetime"] = f"{pickup + dt.timedelta(seconds=400 + i):%Y-%m-%d %H:%M:%S}"
            rows.append(list(r.values()))
            i += 1
    return write(folder, name, csv_text(KAGGLE, rows))


MONDAY = dt.datetime(2016, 1, 4)  # weeks start on Monday 00:00


# --- the case table ---------------------------------------------------------------------------------------


def kaggle_csv(name: str, text: Callable[[], str | bytes], n_rows: int | None = 10, **kw: Any):
    """make(): write ``text()`` as ``<name>.csv`` and load it with KaggleNYCTaxi."""
    suffix = "" if name.endswith((".csv", ".gz")) else ".csv"
    return lambda folder, data: load(KaggleNYCTaxi, write(folder, name + suffix, text()), n_rows, **kw)


def yellow_file(name: str, data_fn: Callable[[], str | bytes], n_rows: int | None = 10, **kw: Any):
    return lambda folder, data: load(TLCTrips, write(folder, name, data_fn()), n_rows, **kw)


def extreme(column: str, value: str, reason: str, note: str = "", slug: str = "") -> Case:
    """Two of ten Kaggle rows carry ``value`` in ``column``: both dropped as ``reason``."""
    slug = slug or re.sub(r"[^0-9a-zA-Z]+", "_", value.replace("-", "minus")).strip("_")
    return Case(
        f"kaggle-csv-{column}-{slug}",
        kaggle_csv(
            f"extreme_{column}_{slug}", lambda: csv_text(KAGGLE, kaggle_rows(10, 2, **{column: value}))
        ),
        "drop",
        dropped={reason: 2},
        kept=8,
        note=note,
    )


def raw_in_row(text: str, row: int, old: str, new: str) -> str:
    """``text`` with ``old`` replaced by ``new`` verbatim (no CSV quoting) in data row ``row`` only."""
    lines = text.split("\n")
    lines[row + 1] = lines[row + 1].replace(old, new, 1)
    return "\n".join(lines)


def unicode_ids(df: pl.DataFrame) -> str | None:
    want = {unicode_id(i) for i in range(10)}
    return None if set(df["trip_id"]) == want else f"trip ids changed: {sorted(df['trip_id'])[:3]}"


UNICODE_IDS = [
    "🚕", "\u202eRTL\u202c", "עברית", "a\x00b", "ﷺ", "𝔘𝔫𝔦", "e\u0301", "\ufeffbom", "中文", "😀" * 40,
]  # fmt: skip


def unicode_id(i: int) -> str:
    return UNICODE_IDS[i] + str(i)


def long_strings(df: pl.DataFrame) -> str | None:
    ok = (
        df["trip_id"].str.len_chars().min() == 100_001
        and df["store_and_fwd_flag"].str.len_chars().max() == 50_000
    )
    return None if ok else "long strings were cut"


def nul_kept(df: pl.DataFrame) -> str | None:
    return None if (df["vendor"] == "1\x002").sum() == 5 else f"NUL vendor changed: {df['vendor'].unique()}"


def _gz_cut() -> bytes:
    data = gzip.compress(csv_text(KAGGLE, kaggle_rows(200)).encode())
    return data[: len(data) // 2]


def _corrupt_page_folder(folder: Path) -> Path:
    """A folder with a good Parquet file and one whose last row group (rows 2,500-2,999, after the
    loader's 1,000-row sample) has a corrupt pickup_longitude page header; the footer is intact.

    (Bytes flipped *inside* compressed page data may decode to wrong values without any error: the pages
    carry no checksum. Validation then drops what is implausible; nothing can find the rest.)"""
    import pyarrow.parquet as pq

    sub = folder / "pages"
    sub.mkdir(exist_ok=True)
    write(sub, "a_good.parquet", parquet_bytes(typed_kaggle(kaggle_rows(3050)[3000:])))
    data = bytearray(parquet_bytes(typed_kaggle(kaggle_rows(3000)), row_group_size=500, compression="zstd"))
    meta = pq.ParquetFile(io.BytesIO(bytes(data))).metadata
    chunk = meta.row_group(meta.num_row_groups - 1).column(KAGGLE.index("pickup_longitude"))
    for j in range(chunk.data_page_offset, chunk.data_page_offset + 16):  # the page header
        data[j] ^= 0x5A
    write(sub, "b_corrupt.parquet", bytes(data))
    return sub


def _parquet_with_repeated_name() -> bytes:
    """A Parquet file naming two columns ``pickup_latitude`` (pyarrow writes it; polars cannot)."""
    import pyarrow.parquet as pq

    table = typed_kaggle(kaggle_rows(10)).to_arrow()
    table = table.append_column("pickup_latitude", table.column("pickup_latitude"))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


CASES: list[Case] = [
    # --- truncated and empty files --------------------------------------------------------------------
    Case(
        "kaggle-csv-cut-mid-line",
        kaggle_csv("cut_mid_line", lambda: cut_in_field(csv_text(KAGGLE, kaggle_rows(10)), 9, 5, 4)),
        "drop",
        dropped={"missing_coordinates": 1},
        kept=9,
        note="a line cut short reads as a row whose missing fields are empty: dropped for the first "
        "required value it lacks (here pickup_latitude), with its file and row in the report",
    ),
    Case(
        "kaggle-csv-cut-in-last-field",
        kaggle_csv("cut_last_field", lambda: csv_text(KAGGLE, kaggle_rows(10)).rstrip("\n")[:-1]),
        "ok",
        kept=10,
        note="KNOWN LIMIT: a cut inside the last field of the last line leaves a well-formed row (duration "
        "409 -> 40): no reader can tell; the duration is still validated",
    ),
    Case(
        "kaggle-csv-cut-mid-quoted-field",
        kaggle_csv(
            "cut_mid_quote",
            lambda: (t := csv_text(KAGGLE, kaggle_rows(10, 10, store_and_fwd_flag="N, or Y")))[
                : t.index('"N, or', t.index("id0006")) + 3
            ],
        ),
        "error",
        match=r"row 6: malformed CSV at line 8: a quoted field opens here and is never closed",
    ),
    Case(
        "kaggle-csv-0-bytes",
        kaggle_csv("empty", lambda: b""),
        "error",
        match=r"file is empty \(expected a CSV header line\)",
    ),
    Case(
        "kaggle-csv-header-only", kaggle_csv("header_only", lambda: ",".join(KAGGLE) + "\n", 0), "ok", kept=0
    ),
    Case(
        "kaggle-csv-header-only-no-newline",
        kaggle_csv("header_only_no_nl", lambda: ",".join(KAGGLE), 0),
        "ok",
        kept=0,
    ),
    Case(
        "kaggle-csv-gzip-cut-in-half",
        kaggle_csv("cut.csv.gz", _gz_cut, None),
        "error",
        match=r"cannot read gzip CSV",
    ),
    Case(
        "kaggle-parquet-cut-in-half",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(folder, "half.parquet", (b := parquet_bytes(typed_kaggle(kaggle_rows(50))))[: len(b) // 2]),
            None,
        ),
        "error",
        match=r"not a readable Parquet file \(truncated or corrupt\?\)",
    ),
    Case(
        "kaggle-parquet-no-footer",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(folder, "no_footer.parquet", parquet_bytes(typed_kaggle(kaggle_rows(50)))[:-8]),
            None,
        ),
        "error",
        match=r"not a readable Parquet file \(truncated or corrupt\?\)",
    ),
    Case(
        "kaggle-parquet-0-bytes",
        lambda folder, data: load(KaggleNYCTaxi, write(folder, "empty.parquet", b""), None),
        "error",
        match=r"not a readable Parquet file \(truncated or corrupt\?\)",
    ),
    Case(
        "kaggle-parquet-0-rows",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(folder, "no_rows.parquet", parquet_bytes(typed_kaggle(kaggle_rows(1)).head(0))),
            0,
        ),
        "ok",
        kept=0,
    ),
    Case(
        "kaggle-parquet-corrupt-page-after-the-sample",
        lambda folder, data: Trial(
            run=KaggleNYCTaxi(paths=_corrupt_page_folder(folder)).load,
            names=str(folder / "pages" / "b_corrupt.parquet"),
        ),
        "error",
        match=r"b_corrupt\.parquet: cannot read \(corrupt Parquet data\?\)",
        note="the loader's first-rows sample passes; the full read fails and the error names the one "
        "corrupt file of the folder",
    ),
    # --- line ends, encodings, blank lines ------------------------------------------------------------
    Case(
        "kaggle-csv-blank-lines",
        kaggle_csv(
            "blank_lines", lambda: csv_text(KAGGLE, kaggle_rows(10)).replace("\n", "\n\n", 1) + "\n", 12
        ),
        "drop",
        dropped={"empty_row": 2},
        kept=10,
        note="polars reads a blank line as a row of nulls: counted as empty_row (file + row in the report)",
    ),
    Case(
        "kaggle-csv-crlf",
        kaggle_csv("crlf", lambda: csv_text(KAGGLE, kaggle_rows(10), newline="\r\n")),
        "ok",
        kept=10,
    ),
    Case(
        "kaggle-csv-bare-cr-line-ends",
        kaggle_csv("bare_cr", lambda: csv_text(KAGGLE, kaggle_rows(10), newline="\r")),
        "error",
        match=r"lines end in a bare carriage return",
        note="polars reads such a file as one header line and no rows: it used to load as an empty file",
    ),
    Case(
        "kaggle-csv-utf8-bom",
        kaggle_csv("bom", lambda: "\ufeff" + csv_text(KAGGLE, kaggle_rows(10))),
        "ok",
        kept=10,
    ),
    Case(
        "kaggle-csv-latin1",
        kaggle_csv(
            "latin1", lambda: csv_text(KAGGLE, kaggle_rows(10, 10, store_and_fwd_flag="é")).encode("latin-1")
        ),
        "error",
        match=r"not UTF-8 text: line 2 \(header = line 1\), byte \d+ is b'\\xe9'",
    ),
    Case(
        "kaggle-csv-utf16",
        kaggle_csv("utf16", lambda: csv_text(KAGGLE, kaggle_rows(10)).encode("utf-16")),
        "error",
        match=r"not UTF-8 text: line 1 \(header = line 1\), byte 1 is b'\\xff'",
        note="polars decodes the header lossily; the loader used to report a garbled 'missing column'",
    ),
    Case(
        "kaggle-csv-stray-quote",
        kaggle_csv(
            "stray_quote", lambda: raw_in_row(csv_text(KAGGLE, kaggle_rows(10)), 3, "40.767937", '40.7"67937')
        ),
        "error",
        match=r"row 3: malformed CSV at line 5: a quote \(\"\) inside an unquoted field",
        note="polars refuses it as 'CSV malformed: expected 0 rows, actual 8 rows, in chunk ...'",
    ),
    Case(
        "kaggle-csv-text-after-closing-quote",
        kaggle_csv("after_quote", lambda: raw_in_row(csv_text(KAGGLE, kaggle_rows(10)), 5, ",N,", ',"N"o,')),
        "error",
        match=r"row 5: malformed CSV at line 7: text after the closing quote of a quoted field",
        note="polars refuses it with 'could not parse ... as dtype str' and schema-inference advice",
    ),
    Case(
        "kaggle-csv-long-row",
        kaggle_csv("long_row", lambda: csv_text(KAGGLE, [*kaggle_rows(4), [*kaggle_rows(5)[4], "extra"]])),
        "error",
        match=r"row 4: malformed CSV: 12 fields where the header has 11",
    ),
    Case(
        "kaggle-csv-short-row",
        kaggle_csv("short_row", lambda: csv_text(KAGGLE, kaggle_rows(9)) + "a,b\n"),
        "drop",
        dropped={"missing_pickup_time": 1},
        kept=9,
        note="a short line reads as a row with its missing fields empty",
    ),
    # --- wrong types ----------------------------------------------------------------------------------
    Case(
        "kaggle-csv-text-in-latitude-few",
        kaggle_csv("text_few", lambda: csv_text(KAGGLE, kaggle_rows(10, 2, pickup_latitude="abc"))),
        "drop",
        dropped={"unparseable:pickup_lat": 2},
        kept=8,
    ),
    Case(
        "kaggle-csv-text-in-latitude-most",
        kaggle_csv("text_most", lambda: csv_text(KAGGLE, kaggle_rows(10, 6, pickup_latitude="abc"))),
        "error",
        match=r"column 'pickup_lat': 6 of 10 values do not parse as pickup_lat \(first at row 0: 'abc'\)",
        note="over MAX_BAD_FRACTION (half) of a file's values failing is a wrong column, not bad rows",
    ),
    Case(
        "kaggle-csv-text-in-duration-few",
        kaggle_csv("dur_text", lambda: csv_text(KAGGLE, kaggle_rows(10, 3, trip_duration="12 min"))),
        "drop",
        dropped={"unparseable:duration_s": 3},
        kept=7,
    ),
    Case(
        "kaggle-csv-text-in-pickup-time-most",
        kaggle_csv("time_text", lambda: csv_text(KAGGLE, kaggle_rows(10, 9, pickup_datetime="yesterday"))),
        "error",
        match=r"column 'pickup_time': 9 of 10 values do not parse as pickup_time "
        r"\(first at row 0: 'yesterday'\)",
    ),
    Case(
        "kaggle-csv-dates-in-passenger-count",
        kaggle_csv("pc_date", lambda: csv_text(KAGGLE, kaggle_rows(10, 2, passenger_count="2016-01-01"))),
        "drop",
        dropped={"unparseable:passenger_count": 2},
        kept=8,
    ),
    Case(
        "kaggle-parquet-boolean-latitude",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "bool_lat.parquet",
                parquet_bytes(
                    typed_kaggle(kaggle_rows(10)).with_columns(pl.lit(True).alias("pickup_latitude"))
                ),
            ),
            10,
        ),
        "error",
        match=r"column 'pickup_latitude': expected a number or a string column for pickup_lat, found Boolean",
        note="used to be read as 1.0/0.0 and every row dropped as coordinates_out_of_city",
    ),
    Case(
        "kaggle-parquet-list-latitude",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "list_lat.parquet",
                parquet_bytes(
                    typed_kaggle(kaggle_rows(10)).with_columns(
                        pl.concat_list("pickup_latitude", "pickup_latitude")
                    )
                ),
            ),
            10,
        ),
        "error",
        match=r"column 'pickup_latitude': expected a number or a string column for pickup_lat, found List",
        note="used to fail with polars' 'cannot cast List type' and its expression dump",
    ),
    Case(
        "kaggle-parquet-integer-pickup-time",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "int_time.parquet",
                parquet_bytes(
                    typed_kaggle(kaggle_rows(10)).with_columns(pl.col("pickup_datetime").dt.epoch("s"))
                ),
            ),
            10,
        ),
        "error",
        match=r"column 'pickup_datetime': expected a datetime or a string column, found Int64",
    ),
    Case(
        "kaggle-parquet-text-in-latitude-few",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "str_lat.parquet",
                parquet_bytes(set_rows(typed_kaggle(kaggle_rows(10)), "pickup_latitude", 3, "n/a")),
            ),
            10,
        ),
        "drop",
        dropped={"unparseable:pickup_lat": 3},
        kept=7,
    ),
    Case(
        "kaggle-parquet-all-null-latitude",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "null_lat.parquet",
                parquet_bytes(
                    typed_kaggle(kaggle_rows(10)).with_columns(pl.lit(None).alias("pickup_latitude"))
                ),
            ),
            10,
        ),
        "drop",
        dropped={"missing_coordinates": 10},
        kept=0,
        note="an empty column is missing values (row problems), not a wrong column: every row is counted",
    ),
    Case(
        "kaggle-parquet-utc-datetimes",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "utc.parquet",
                parquet_bytes(
                    typed_kaggle(kaggle_rows(10)).with_columns(
                        pl.col("pickup_datetime", "dropoff_datetime").dt.replace_time_zone("UTC")
                    )
                ),
            ),
            10,
        ),
        "ok",
        kept=10,
        check=lambda df: None if df["pickup_time"][0] == T0 - dt.timedelta(hours=4) else "not converted",
        note="time-zone-aware datetimes are converted to New York wall time (EDT on 2016-03-14)",
    ),
    # --- extreme values -------------------------------------------------------------------------------
    extreme("pickup_latitude", "1e308", "coordinates_out_of_city"),
    extreme("pickup_latitude", "-1e308", "coordinates_out_of_city"),
    extreme("pickup_latitude", "inf", "missing_coordinates"),
    extreme("pickup_latitude", "-inf", "missing_coordinates"),
    extreme("pickup_latitude", "nan", "missing_coordinates"),
    extreme("pickup_latitude", "NaN", "missing_coordinates"),
    extreme("pickup_latitude", "1e309", "missing_coordinates", "1e309 overflows to inf"),
    extreme("pickup_latitude", "95", "coordinates_out_of_city"),
    extreme("pickup_longitude", "-200", "coordinates_out_of_city"),
    Case(
        "kaggle-csv-pickup_latitude-no-break-space",
        kaggle_csv(
            "nbsp", lambda: csv_text(KAGGLE, kaggle_rows(10, 2, pickup_latitude="\u00a040.767937\u00a0"))
        ),
        "ok",
        kept=10,
        note="a no-break space around a number is whitespace: stripped, the number parses",
    ),
    extreme(
        "pickup_latitude", "40.767937\u200b", "unparseable:pickup_lat", "not whitespace", "zero_width_space"
    ),
    extreme(
        "pickup_latitude", "\u0664\u0660.\u0667\u0666", "unparseable:pickup_lat", slug="arabic_indic_digits"
    ),
    extreme(
        "pickup_latitude", "\uff14\uff10.\uff17\uff16", "unparseable:pickup_lat", slug="fullwidth_digits"
    ),
    extreme("trip_duration", "1e308", "duration_too_long"),
    extreme("trip_duration", "-1e308", "nonpositive_duration"),
    extreme("trip_duration", "inf", "duration_too_long"),
    extreme("trip_duration", "nan", "missing_duration"),
    extreme("trip_duration", "-5", "nonpositive_duration"),
    extreme("trip_duration", "0", "nonpositive_duration"),
    extreme("trip_duration", "1e-300", "duration_too_short"),
    extreme("trip_duration", str(3 * 365 * 86400), "duration_too_long", "three years"),
    extreme("pickup_datetime", "1900-01-01 00:00:00", "pickup_time_out_of_range"),
    extreme("pickup_datetime", "2200-01-01 00:00:00", "pickup_time_out_of_range"),
    extreme("pickup_datetime", "0001-01-01 00:00:00", "pickup_time_out_of_range"),
    extreme("pickup_datetime", "9999-12-31 23:59:59", "pickup_time_out_of_range"),
    extreme("pickup_datetime", "2016-02-30 10:00:00", "unparseable:pickup_time"),
    extreme("passenger_count", "1e308", "unparseable:passenger_count", "out of Int16's range"),
    extreme("passenger_count", "99999", "unparseable:passenger_count", "out of Int16's range"),
    extreme("passenger_count", "-1", "bad_passenger_count"),
    extreme("passenger_count", "nan", "unparseable:passenger_count"),
    Case(
        "kaggle-csv-dropoff-before-pickup-no-duration-column",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "dropoff_first.csv",
                csv_text(
                    KAGGLE[:-1],
                    [r[:-1] for r in kaggle_rows(10, 2, dropoff_datetime="2016-03-14 16:00:00")],
                ),
            ),
            10,
        ),
        "drop",
        dropped={"nonpositive_duration": 2},
        kept=8,
    ),
    # --- unicode, NUL bytes, long strings -------------------------------------------------------------
    Case(
        "kaggle-csv-unicode-ids",
        kaggle_csv(
            "unicode_ids",
            lambda: csv_text(KAGGLE, [[unicode_id(i), *r[1:]] for i, r in enumerate(kaggle_rows(10))]),
        ),
        "ok",
        kept=10,
        check=unicode_ids,
        note="emoji, RTL marks, combining characters, NUL and a BOM inside an id are kept verbatim",
    ),
    Case(
        "kaggle-csv-nul-in-vendor",
        kaggle_csv("nul", lambda: csv_text(KAGGLE, kaggle_rows(10, 5, vendor_id="1\x002"))),
        "ok",
        kept=10,
        check=nul_kept,
    ),
    Case(
        "kaggle-csv-very-long-strings",
        kaggle_csv(
            "long_strings",
            lambda: csv_text(
                KAGGLE,
                [
                    ["x" * 100_000 + str(i), *r[1:9], "Y" * 50_000, r[10]]
                    for i, r in enumerate(kaggle_rows(10))
                ],
            ),
        ),
        "ok",
        kept=10,
        check=long_strings,
    ),
    # --- header problems ------------------------------------------------------------------------------
    Case(
        "kaggle-csv-missing-required-column",
        kaggle_csv(
            "no_lat",
            lambda: csv_text(
                [c for c in KAGGLE if c != "pickup_latitude"],
                [r[:6] + r[7:] for r in kaggle_rows(10)],
            ),
        ),
        "error",
        match=r"missing required column 'pickup_latitude'",
    ),
    Case(
        "kaggle-csv-duplicated-header",
        kaggle_csv(
            "dup_header",
            lambda: csv_text([*KAGGLE, "pickup_latitude"], [[*r, "41.9"] for r in kaggle_rows(10)]),
        ),
        "error",
        match=r"column 'pickup_latitude': the header names this column 2 times",
        note="polars renames the repeat pickup_latitude_duplicated_0; the loader used to read the first "
        "silently (and, for a case variant such as Pickup_Latitude, the last)",
    ),
    Case(
        "kaggle-csv-duplicated-header-case-variant",
        kaggle_csv(
            "dup_header_case",
            lambda: csv_text([*KAGGLE, "Pickup_Latitude "], [[*r, "41.9"] for r in kaggle_rows(10)]),
        ),
        "error",
        match=r"column 'pickup_latitude': the header names this column 2 times",
    ),
    Case(
        "kaggle-parquet-duplicated-column",
        lambda folder, data: load(
            KaggleNYCTaxi, write(folder, "dup.parquet", _parquet_with_repeated_name()), 10
        ),
        "error",
        match=r"the file repeats a column name: column with name 'pickup_latitude' has more than one occurrence",
        note="used to read 'not a readable Parquet file (truncated or corrupt?)'",
    ),
    Case(
        "kaggle-csv-duplicated-unused-column",
        kaggle_csv(
            "dup_unused",
            lambda: csv_text([*KAGGLE, "note", "note"], [[*r, "a", "b"] for r in kaggle_rows(10)]),
        ),
        "ok",
        kept=10,
        note="a repeated column the loader does not read is harmless",
    ),
    Case(
        "kaggle-csv-extra-unknown-columns",
        kaggle_csv(
            "extra_cols", lambda: csv_text([*KAGGLE, "zzz", "🙂"], [[*r, "1", "x"] for r in kaggle_rows(10)])
        ),
        "ok",
        kept=10,
    ),
    Case(
        "kaggle-csv-header-case-and-spaces",
        kaggle_csv("header_case", lambda: csv_text([f" {c.upper()} " for c in KAGGLE], kaggle_rows(10))),
        "ok",
        kept=10,
    ),
    Case(
        "kaggle-csv-shuffled-columns",
        kaggle_csv(
            "shuffled",
            lambda: csv_text(KAGGLE[::-1], [r[::-1] for r in kaggle_rows(10)]),
        ),
        "ok",
        kept=10,
    ),
    # --- the second source: TLC yellow (lat/lon era) and green (zone ids) -----------------------------
    Case(
        "tlc-csv-cut-mid-line",
        yellow_file("yellow_cut.csv", lambda: cut_in_field(csv_text(YELLOW, yellow_rows(10)), 9, 3, 1)),
        "drop",
        dropped={"missing_coordinates": 1},
        kept=9,
    ),
    Case(
        "tlc-parquet-cut-in-half",
        yellow_file(
            "yellow_half.parquet",
            lambda: (b := parquet_bytes(typed_yellow(yellow_rows(50))))[: len(b) // 2],
            None,
        ),
        "error",
        match=r"not a readable Parquet file \(truncated or corrupt\?\)",
    ),
    Case(
        "tlc-parquet-no-footer",
        yellow_file(
            "yellow_no_footer.parquet", lambda: parquet_bytes(typed_yellow(yellow_rows(50)))[:-8], None
        ),
        "error",
        match=r"not a readable Parquet file \(truncated or corrupt\?\)",
    ),
    Case("tlc-csv-0-bytes", yellow_file("yellow_empty.csv", lambda: b""), "error", match=r"file is empty"),
    Case(
        "tlc-csv-header-only",
        yellow_file("yellow_header.csv", lambda: ",".join(YELLOW) + "\n", 0),
        "ok",
        kept=0,
    ),
    Case(
        "tlc-csv-text-in-fare-few",
        yellow_file("yellow_fare.csv", lambda: csv_text(YELLOW, yellow_rows(10, 2, fare_amount="twelve"))),
        "drop",
        dropped={"unparseable:fare_amount": 2},
        kept=8,
    ),
    Case(
        "tlc-csv-text-in-pickup-most",
        yellow_file(
            "yellow_time.csv", lambda: csv_text(YELLOW, yellow_rows(10, 8, tpep_pickup_datetime="n/a"))
        ),
        "error",
        match=r"column 'pickup_time': 8 of 10 values do not parse as pickup_time \(first at row 0: 'n/a'\)",
    ),
    Case(
        "tlc-csv-payment-name-unknown",
        yellow_file("yellow_pay.csv", lambda: csv_text(YELLOW, yellow_rows(10, 3, payment_type="bitcoin"))),
        "drop",
        dropped={"unparseable:payment_type": 3},
        kept=7,
    ),
    Case(
        "tlc-csv-extreme-coordinates",
        yellow_file(
            "yellow_coords.csv",
            lambda: csv_text(
                YELLOW,
                yellow_rows(2, 2, dropoff_latitude="-1e308")
                + [list(yellow_row(i, pickup_longitude="inf").values()) for i in range(2, 4)]
                + [
                    list(yellow_row(i, pickup_latitude="0", pickup_longitude="0").values())
                    for i in range(4, 5)
                ]
                + [list(yellow_row(i).values()) for i in range(5, 10)],
            ),
        ),
        "drop",
        dropped={"coordinates_out_of_city": 2, "missing_coordinates": 2, "zero_coordinates": 1},
        kept=5,
    ),
    Case(
        "tlc-csv-dates-out-of-range",
        yellow_file(
            "yellow_years.csv",
            lambda: csv_text(
                YELLOW,
                yellow_rows(
                    2,
                    2,
                    tpep_pickup_datetime="2200-01-01 00:00:00",
                    tpep_dropoff_datetime="2200-01-01 00:10:00",
                )
                + [
                    list(yellow_row(i, tpep_dropoff_datetime="2015-01-15 18:00:00").values())
                    for i in range(2, 4)
                ]
                + [
                    list(yellow_row(i, tpep_dropoff_datetime="2018-01-15 18:00:00").values())
                    for i in range(4, 5)
                ]
                + [list(yellow_row(i).values()) for i in range(5, 10)],
            ),
        ),
        "drop",
        dropped={"pickup_time_out_of_range": 2, "nonpositive_duration": 2, "duration_too_long": 1},
        kept=5,
        note="year 2200; dropoff before pickup; a dropoff three years later",
    ),
    Case(
        "tlc-csv-missing-dropoff-column",
        yellow_file(
            "yellow_no_dropoff.csv",
            lambda: csv_text(
                [c for c in YELLOW if c != "tpep_dropoff_datetime"], [r[:2] + r[3:] for r in yellow_rows(10)]
            ),
        ),
        "error",
        match=r"missing required column 'dropoff datetime'",
    ),
    Case(
        "tlc-csv-not-a-tlc-file",
        yellow_file("not_tlc.csv", lambda: csv_text(["a", "b"], [["1", "2"]]), 1),
        "error",
        match=r"not a TLC trip file: expected tpep_/lpep_ datetimes",
    ),
    Case(
        "tlc-csv-duplicated-header",
        yellow_file(
            "yellow_dup.csv", lambda: csv_text([*YELLOW, "VendorID"], [[*r, "7"] for r in yellow_rows(10)])
        ),
        "error",
        match=r"column 'VendorID': the header names this column 2 times",
    ),
    Case(
        "tlc-parquet-unicode-vendor-and-flag",
        yellow_file(
            "yellow_unicode.parquet",
            lambda: parquet_bytes(
                typed_yellow(yellow_rows(10)).with_columns(
                    pl.lit("\u202e🚕 Ünïcødé \x00").alias("store_and_fwd_flag"),
                )
            ),
        ),
        "ok",
        kept=10,
        check=lambda df: (
            None if (df["store_and_fwd_flag"] == "\u202e🚕 Ünïcødé \x00".strip()).all() else "changed"
        ),
    ),
    # --- splits with no rows (building features / the dataset cache) ----------------------------------
    Case(
        "split-random-val-empty",
        lambda folder, data: featurize_trial(
            KaggleNYCTaxi(paths=write(folder, "five.csv", csv_text(KAGGLE, kaggle_rows(5)))),
            {"kind": "random", "seed": 0},
            "split 'val'",
        ),
        "error",
        match=r"split 'val' is empty: 0 of 5 rows \(random split",
        note="the cache used to be written without a val split; training then failed on a KeyError",
    ),
    Case(
        "split-time-val-empty",
        lambda folder, data: featurize_trial(
            KaggleNYCTaxi(
                paths=time_clusters(
                    folder,
                    "weeks.csv",
                    [
                        (MONDAY, 100),
                        (MONDAY + dt.timedelta(days=6, hours=22), 100),
                        (MONDAY + dt.timedelta(weeks=2, hours=12), 100),
                    ],
                )
            ),
            {"kind": "time", "val": 0.1, "test": 0.3},
            "split 'val'",
        ),
        "error",
        match=r"split 'val' is empty: 0 of 300 rows \(time split",
        note="week cuts land on both sides of the empty second week",
    ),
    Case(
        "split-time-train-empty",
        lambda folder, data: featurize_trial(
            KaggleNYCTaxi(
                paths=time_clusters(
                    folder, "two_weeks.csv", [(MONDAY, 150), (MONDAY + dt.timedelta(weeks=1), 150)]
                )
            ),
            {"kind": "time", "val": 0.45, "test": 0.45},
            "split 'train'",
        ),
        "error",
        match=r"split 'train' is empty: 0 of 300 rows \(time split",
    ),
    Case(
        "split-time-one-week",
        lambda folder, data: featurize_trial(
            KaggleNYCTaxi(paths=time_clusters(folder, "one_week.csv", [(MONDAY, 100)])),
            {"kind": "time"},
            "val=0.1 and test=0.1",
        ),
        "error",
        match=r"time split: the data spans too few weeks for val=0.1 and test=0.1",
    ),
    Case(
        "split-all-rows-dropped",
        lambda folder, data: featurize_trial(
            KaggleNYCTaxi(
                paths=(
                    p := write(
                        folder, "all_out.csv", csv_text(KAGGLE, kaggle_rows(10, 10, pickup_latitude="50"))
                    )
                )
            ),
            {},
            str(p),
        ),
        "error",
        match=r"no rows to featurize: every source came out empty: kaggle \(.*all_out\.csv\): kaggle_nyc: "
        r"10 rows in, 0 kept, 10 dropped \(100\.00%\) \[coordinates_out_of_city=10\]",
    ),
    Case(
        "split-header-only-file",
        lambda folder, data: featurize_trial(
            KaggleNYCTaxi(paths=(p := write(folder, "hdr.csv", ",".join(KAGGLE) + "\n"))), {}, str(p)
        ),
        "error",
        match=r"no rows to featurize: .*kaggle_nyc: 0 rows in, 0 kept",
    ),
    # --- malformed copies of the heads of real files --------------------------------------------------
    Case(
        "real-kaggle-csv-text-in-latitude-few",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "real_kaggle_text.csv",
                real_csv(
                    set_rows(
                        clean_head(data, KAGGLE_REAL, KaggleNYCTaxi, 20, folder), "pickup_latitude", 3, "N/A"
                    )
                ),
            ),
            20,
        ),
        "drop",
        dropped={"unparseable:pickup_lat": 3},
        kept=17,
        real=KAGGLE_REAL[0],
    ),
    Case(
        "real-kaggle-csv-cut-mid-line",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "real_kaggle_cut.csv",
                cut_in_field(real_csv(clean_head(data, KAGGLE_REAL, KaggleNYCTaxi, 20, folder)), 19, 2, 7),
            ),
            20,
        ),
        "drop",
        dropped={"unparseable:pickup_time": 1},
        kept=19,
        real=KAGGLE_REAL[0],
        note="the last line cut inside its pickup_datetime ('2016-01' ...)",
    ),
    Case(
        "real-kaggle-csv-extreme-values",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "real_kaggle_extreme.csv",
                real_csv(
                    set_rows(
                        set_rows(
                            clean_head(data, KAGGLE_REAL, KaggleNYCTaxi, 20, folder), "trip_duration", 4, "-1"
                        ),
                        "dropoff_longitude",
                        2,
                        "1e308",
                    )
                ),
            ),
            20,
        ),
        "drop",
        dropped={"coordinates_out_of_city": 2, "nonpositive_duration": 2},
        kept=16,
        real=KAGGLE_REAL[0],
        note="rows 0-1 have both: the coordinate rule comes first",
    ),
    Case(
        "real-kaggle-parquet-cut-in-half",
        lambda folder, data: load(
            KaggleNYCTaxi,
            write(
                folder,
                "real_kaggle_half.parquet",
                (b := real_file(data, *KAGGLE_REAL).read_bytes())[: len(b) // 2],
            ),
            None,
        ),
        "error",
        match=r"not a readable Parquet file \(truncated or corrupt\?\)",
        real=KAGGLE_REAL[0],
    ),
    Case(
        "real-tlc-yellow-parquet-no-footer",
        lambda folder, data: load(
            TLCTrips,
            write(folder, "real_yellow_no_footer.parquet", real_file(data, *YELLOW_REAL).read_bytes()[:-8]),
            None,
        ),
        "error",
        match=r"not a readable Parquet file \(truncated or corrupt\?\)",
        real=YELLOW_REAL[0],
    ),
    Case(
        "real-tlc-yellow-parquet-text-in-fare",
        lambda folder, data: load(
            TLCTrips,
            write(
                folder,
                "real_yellow_fare.parquet",
                parquet_bytes(
                    set_rows(clean_head(data, YELLOW_REAL, TLCTrips, 30, folder), "fare_amount", 4, "$12")
                ),
            ),
            30,
        ),
        "drop",
        dropped={"unparseable:fare_amount": 4},
        kept=26,
        real=YELLOW_REAL[0],
    ),
    Case(
        "real-tlc-yellow-csv-duplicated-header",
        lambda folder, data: load(
            TLCTrips,
            write(
                folder,
                "real_yellow_dup.csv",
                real_csv(clean_head(data, YELLOW_REAL, TLCTrips, 10, folder)).replace(
                    "tpep_dropoff_datetime", "tpep_pickup_datetime", 1
                ),
            ),
            10,
        ),
        "error",
        match=r"column 'tpep_pickup_datetime': the header names this column 2 times",
        real=YELLOW_REAL[0],
    ),
    Case(
        "real-tlc-green-parquet-unknown-zones",
        lambda folder, data: load(
            TLCTrips,
            write(
                folder,
                "real_green_zones.parquet",
                parquet_bytes(
                    set_rows(
                        clean_head(data, GREEN_REAL, TLCTrips, 30, folder, **zone_source_kw(data)),
                        "PULocationID",
                        5,
                        "999",
                    )
                ),
            ),
            30,
            **zone_source_kw(data),
        ),
        "drop",
        dropped={"unknown_zone": 5},
        kept=25,
        real=GREEN_REAL[0],
    ),
    Case(
        "real-tlc-green-parquet-text-zones-most",
        lambda folder, data: load(
            TLCTrips,
            write(
                folder,
                "real_green_text_zones.parquet",
                parquet_bytes(
                    set_rows(
                        clean_head(data, GREEN_REAL, TLCTrips, 30, folder, **zone_source_kw(data)),
                        "DOLocationID",
                        20,
                        "Queens",
                    )
                ),
            ),
            30,
            **zone_source_kw(data),
        ),
        "error",
        match=r"column 'dropoff_zone_id': 20 of 30 values do not parse as dropoff_zone_id "
        r"\(first at row 0: 'Queens'\)",
        real=GREEN_REAL[0],
    ),
    Case(
        "real-citibike-parquet-text-in-duration",
        lambda folder, data: load(
            CitiBikeTrips,
            write(
                folder,
                "JC-real_citibike.parquet",
                parquet_bytes(
                    set_rows(
                        clean_head(data, CITIBIKE_REAL, CitiBikeTrips, 20, folder), "Trip Duration", 2, "∞"
                    )
                ),
            ),
            20,
        ),
        "drop",
        dropped={"unparseable:duration_s": 2},
        kept=18,
        real=CITIBIKE_REAL[0],
    ),
]


# --- random Kaggle files (for the script; the test file draws its own with hypothesis) ----------------------

EXTREME_FLOATS = [
    "1e308", "-1e308", "1e309", "inf", "-inf", "nan", "NaN", "Infinity", "-0", "0", "1e-320", "4e1",
    "9" * 40, "0x10", "1_000", "+7", ".5", "5.", "  12  ", "1,5",
]  # fmt: skip
WEIRD_TEXT = [
    "", " ", "abc", "N/A", "null", "NULL", "\\N", "🚕", "\u202e", "עברית", "a\x00b", "\ufeff", "e\u0301",
    '"', "'", ",", "a\nb", "x\r\ny", "\t", "\u0663", "\uff11", "x" * 5000,
]  # fmt: skip
WEIRD_TIMES = [
    "1900-01-01 00:00:00", "2200-01-01 00:00:00", "0001-01-01 00:00:00", "9999-12-31 23:59:59",
    "2016-02-30 10:00:00", "2016-13-01 00:00:00", "2016-01-01 24:00:00", "2016-03-14T17:00:00.123456",
    "2016-03-14", "17:00",
]  # fmt: skip


def random_kaggle_rows(rng: random.Random, n: int, bad_share: float) -> list[list[str]]:
    """``n`` Kaggle rows where each cell is replaced, with probability ``bad_share``, by an extreme
    number, odd text or an odd time."""
    rows = []
    for i in range(n):
        row = kaggle_row(i + rng.randrange(1000) * 100)
        for c in KAGGLE:
            if rng.random() < bad_share:
                pool = rng.choice([EXTREME_FLOATS, WEIRD_TEXT, WEIRD_TIMES])
                row[c] = rng.choice(pool)
        rows.append(list(row.values()))
    return rows


def random_file(rng: random.Random, folder: Path, index: int) -> tuple[Path, int | None]:
    """A random small Kaggle CSV: ``(path, data rows written, or None when the file was cut short)``."""
    n = rng.randint(0, 15)
    rows = random_kaggle_rows(rng, n, rng.choice([0.02, 0.1, 0.3, 0.7]))
    text = csv_text(KAGGLE, rows, newline=rng.choice(["\n", "\r\n"]))
    n_rows: int | None = n
    if rng.random() < 0.2 and len(text) > 1:
        text, n_rows = text[: rng.randrange(1, len(text))], None
    return write(folder, f"random_{index:04d}.csv", text), n_rows


CSV_TOKENS = [
    b'"', b",", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3", "é".encode(), "🚕".encode(), b"", b"nan",
    b"inf", b"1e308", b'""', b"\t", b";", b"\xef\xbb\xbf",
]  # fmt: skip
PARQUET_TOKENS = [b"\x00" * 8, b"\xff" * 4, b"PAR1", b"", b"\x15\x00"]
MUTATIONS = ("insert", "delete", "overwrite", "flip", "cut")


def mutate(data: bytes, edits: Sequence[tuple[str, int, bytes, int]]) -> bytes:
    """``data`` after ``edits``: ``(kind, position, token, n)`` with kind in MUTATIONS (insert ``token``,
    delete ``n`` bytes, overwrite with ``token``, flip bit ``n % 8``, cut the rest)."""
    b = bytearray(data)
    for kind, at, token, n in edits:
        at = min(at, len(b))
        if kind == "insert":
            b[at:at] = token
        elif kind == "delete":
            del b[at : at + n]
        elif kind == "overwrite":
            b[at : at + len(token)] = token
        elif kind == "flip" and at < len(b):
            b[at] ^= 1 << (n % 8)
        elif kind == "cut":
            b = b[:at]
    return bytes(b)


def random_edits(rng: random.Random, size: int, tokens: Sequence[bytes]) -> list[tuple[str, int, bytes, int]]:
    return [
        (rng.choice(MUTATIONS), rng.randrange(size + 1), rng.choice(tokens), rng.randint(1, 8))
        for _ in range(rng.randint(1, 6))
    ]


def good_csv() -> bytes:
    return csv_text(KAGGLE, kaggle_rows(10)).encode()


def good_parquet() -> bytes:
    return parquet_bytes(typed_kaggle(kaggle_rows(40)), row_group_size=10)


def check_random_file(path: Path, n_rows: int | None) -> tuple[Outcome, list[str]]:
    """Load a random file: an error must name it; a load must account for every row and keep only rows
    that pass the schema's validation."""
    out = outcome_of(Trial(run=KaggleNYCTaxi(paths=path).load, names=str(path), n_rows=n_rows))
    problems: list[str] = []
    if out.kind == UNCLEAR:
        problems.append(out.message[:300])
    elif out.kind != "error":
        if n_rows is not None and out.n_in != n_rows:
            problems.append(f"LOST ROWS: {n_rows} written, {out.n_in} counted")
        if out.frame is not None:
            problems += kept_row_problems(out.frame)
    return out, problems
