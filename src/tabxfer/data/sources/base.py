"""What every trip source shares: finding files, reading them lazily, parsing with counted failures.

A source is a small dataclass (so Hydra can build it from ``_target_``) that knows one file format. It
implements :meth:`TripSource.parse`, which turns the raw columns of one file into canonical columns with
the help of a :class:`RowParser`; the parser remembers, per row, the first value that failed to parse.
The base class adds the generic validation (:mod:`tabxfer.data.quality`), de-duplication and the
bookkeeping that makes every dropped row countable and findable (file + row).

Loading is lazy end to end (``scan``); ``load`` collects the kept rows and the drop report in one pass.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import gzip
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import polars as pl

from tabxfer.data.quality import Validation, first_reason
from tabxfer.data.schema import BAD_VALUE, FILE, REASON, ROW, DataError, DropReport, conform

PathLike = str | os.PathLike[str]
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)
TABLE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")

# A column whose values fail to parse in more than this share of a file's rows is a wrong column (a
# mislabeled header, a different unit or format), not a few bad rows: loading stops with an error.
MAX_BAD_FRACTION = 0.5
# What a read of a malformed file raises; a corrupt Parquet page can make polars panic (PanicException,
# a BaseException): each is turned into a DataError naming the file (TripSource._explain).
READ_ERRORS: tuple[type[BaseException], ...] = (
    pl.exceptions.ComputeError,
    pl.exceptions.InvalidOperationError,
    pl.exceptions.PanicException,
)
_DUPLICATED = re.compile(r"(.+)_duplicated_\d+")  # polars' name for a repeated CSV header name
EMPTY_ROW = "empty_row"  # a row without any value (a blank CSV line): dropped before any other rule


def resolve_paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """Files named by a path, a directory (its table files), a glob, or a list of those; sorted."""
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    out: list[Path] = []
    for item in items:
        s = os.fspath(item)
        if any(ch in s for ch in "*?["):
            matches = sorted(glob.glob(s))
            if not matches:
                raise DataError("no file matches this pattern", file=s)
            out += [Path(h) for h in matches]
        elif os.path.isdir(s):
            files = sorted(p for p in Path(s).iterdir() if p.name.lower().endswith(TABLE_SUFFIXES))
            if not files:
                raise DataError(f"folder holds no {'/'.join(TABLE_SUFFIXES)} file", file=s)
            out += files
        elif os.path.exists(s):
            out.append(Path(s))
        else:
            raise DataError("no such file or folder", file=s)
    return out


def scan_table(path: Path, numbers: Iterable[str] = (), *, check_fields: bool = True) -> pl.LazyFrame:
    """A lazy scan of one CSV or Parquet file. CSV columns are all read as strings, so that the loader
    (not the CSV reader) decides what a malformed value means and can say which row it was; except the
    columns named in ``numbers`` (plain ``.csv`` only), read as Float64 by polars' number parser, which
    makes the whole query fail on a value it cannot parse (see :meth:`TripSource.typed_columns`).
    ``check_fields``: make a query that reads a subset of the columns still fail on a line with too many
    fields (see :func:`check_field_counts`); a query that reads every column fails on it anyway."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            pl.read_parquet_schema(path)
        except pl.exceptions.DuplicateError as e:
            raise DataError(f"the file repeats a column name: {e}", file=str(path)) from e
        except Exception as e:  # polars raises several types for a corrupt footer
            raise DataError(
                f"not a readable Parquet file (truncated or corrupt?): {e}", file=str(path)
            ) from e
        return pl.scan_parquet(path)
    if name.endswith((".csv", ".csv.gz")):
        if path.stat().st_size == 0:
            raise DataError("file is empty (expected a CSV header line)", file=str(path))
        _check_line_ends(path)
        if name.endswith(".gz"):  # polars cannot scan compressed CSV lazily: read it (stated in the docs)
            try:
                lf = pl.read_csv(path, infer_schema=False).lazy()
            except (pl.exceptions.ComputeError, OSError, EOFError) as e:
                raise (not_utf8(path) or DataError(f"cannot read gzip CSV: {e}", file=str(path))) from e
        else:
            try:
                lf = pl.scan_csv(
                    path, infer_schema=False, schema_overrides=dict.fromkeys(numbers, pl.Float64)
                )
                lf.collect_schema()
            except pl.exceptions.NoDataError as e:
                raise DataError("file is empty (expected a CSV header line)", file=str(path)) from e
            if check_fields:
                lf = check_field_counts(lf)
        if any("\ufffd" in c for c in lf.collect_schema().names()):  # polars decodes the header lossily
            err = not_utf8(path)
            if err is not None:
                raise err
        return lf
    raise DataError(f"unknown file type; expected one of {', '.join(TABLE_SUFFIXES)}", file=str(path))


def check_field_counts(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Polars checks a CSV line's field count only when a query reads every column: a loader reads a
    subset, and a line with extra fields would be cut silently. This always-true filter reads every
    column, so such a line fails the query and :meth:`TripSource._explain` names it. (It also keeps a
    ``head`` from stopping the read early: take samples from an unchecked scan.)"""
    return lf.filter(pl.all_horizontal(pl.all().is_null() | pl.all().is_not_null()))


def _open_binary(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _check_line_ends(path: Path) -> None:
    """Refuse a CSV whose lines end in a bare carriage return (classic Mac OS): polars reads such a file
    as one header line and no rows, which would load as an empty file."""
    try:
        with _open_binary(path) as f:
            head = f.read(1 << 16)
    except (OSError, EOFError):
        return  # the reader reports it, with its own words
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if b"\r" in first:
        raise DataError(
            "lines end in a bare carriage return (\\r, classic Mac OS line ends), so the file reads as a "
            "single header line; convert the line ends to \\n or \\r\\n",
            file=str(path),
        )


def not_utf8(path: Path) -> DataError | None:
    """The error naming a CSV's first line that is not UTF-8 text (None when every line is)."""
    try:
        with _open_binary(path) as f:
            for i, line in enumerate(f, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as e:
                    return DataError(
                        f"not UTF-8 text: line {i} (header = line 1), byte {e.start + 1} is "
                        f"{line[e.start : e.end]!r}; re-save the file as UTF-8",
                        file=str(path),
                    )
    except (OSError, EOFError):  # a truncated gzip stream: the reader's own error says so
        return None
    return None


def find_ragged_csv_row(path: Path) -> tuple[int, int, int] | None:
    """First data row whose field count differs from the header's: ``(row, n_fields, n_header)``."""
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return None
        for i, rec in enumerate(reader):
            if rec and len(rec) != len(header):
                return i, len(rec), len(header)
    return None


def find_bad_quote(path: Path) -> tuple[str, int, int] | None:
    """The first quote polars refuses, as ``(kind, data row, line)`` (row 0 is the line after the header;
    line 1 is the header): ``stray``, a quote inside an unquoted field (``12" pizza``); ``after``, text
    after a quoted field's closing quote (``"12"pizza``); ``unclosed``, a quoted field still open at the
    end of the file (a file cut short)."""
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    row, line_no, in_quotes, opened = -1, 0, False, (0, 0)
    with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as f:
        for line in f:
            line_no += 1
            if not in_quotes:
                row += 1
                if '"' not in line:
                    continue
            field_start, i = not in_quotes, 0
            while i < len(line):
                c = line[i]
                if in_quotes:
                    if c == '"' and line[i + 1 : i + 2] == '"':
                        i += 1  # an escaped quote
                    elif c == '"':
                        in_quotes = False
                        if line[i + 1 : i + 2] not in ("", ",", "\r", "\n"):
                            return "after", row - 1, line_no
                elif c == '"':
                    if not field_start:
                        return "stray", row - 1, line_no
                    in_quotes, field_start, opened = True, False, (row - 1, line_no)
                else:
                    field_start = c in ",\r\n"
                i += 1
    return ("unclosed", *opened) if in_quotes else None


class RowParser:
    """Parses raw columns of one file into typed expressions, recording a drop reason per failed value.

    ``float("pickup_longitude", "pickup_lon")`` returns the typed expression; a row whose raw value is
    present but does not parse is dropped as ``unparseable:pickup_lon`` (its raw value kept for errors).

    Parsing runs in two stages. The typed methods register their parse under a temporary column
    (``__p:<name>``) and return a *reference* to it; :meth:`materialize` computes all of them once
    (``with_columns``), then the loader's expressions and the drop rules read the parsed columns. polars
    does not share a parse between the output and the rule that checks it, so a one-stage plan parsed every
    timestamp three times (measured: 3.6 s vs 0.9 s for 1.5 M Kaggle rows).
    """

    def __init__(self, path: Path, schema: pl.Schema, sample: pl.DataFrame | None = None):
        self.path = path
        self.schema = schema
        self.sample = sample  # the file's first rows: lets datetime() skip formats the file does not use
        # header names, case- and space-insensitively; a name given more than once is ambiguous (polars
        # reads a CSV header's repeats as "<name>_duplicated_<i>")
        self._lower: dict[str, str] = {}
        self._repeated: dict[str, list[str]] = {}
        for c in schema.names():
            m = _DUPLICATED.fullmatch(c)
            key = c.lower().strip()
            if m and m.group(1).lower().strip() in self._lower:
                key = m.group(1).lower().strip()
            if key in self._lower:
                self._repeated.setdefault(key, [self._lower[key]]).append(c)
            else:
                self._lower[key] = c
        self.rules: list[tuple[pl.Expr, str, pl.Expr]] = []
        self.parsed: dict[str, pl.Expr] = {}  # temporary column -> parse expression (stage 1)
        self.pruned: set[str] = set()  # raw datetime columns parsed with the sample's formats only

    def materialize(self, raw: pl.LazyFrame) -> pl.LazyFrame:
        """Stage 1: the raw columns plus every registered parse, each computed once."""
        return raw.with_columns(**self.parsed) if self.parsed else raw

    def drop_temporary(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.drop([c for c in self.parsed if c in lf.collect_schema().names()])

    def find(self, *candidates: str) -> str | None:
        """The file's name for the first candidate column present (case- and space-insensitive)."""
        for cand in candidates:
            key = cand.lower().strip()
            if key in self._repeated:
                raise DataError(
                    f"the header names this column {len(self._repeated[key])} times "
                    f"(read as {self._repeated[key]}); which one holds the data is ambiguous: "
                    "rename or remove the repeats",
                    file=str(self.path),
                    column=cand,
                )
            hit = self._lower.get(key)
            if hit is not None:
                return hit
        return None

    def require(self, *candidates: str, what: str | None = None) -> str:
        hit = self.find(*candidates)
        if hit is None:
            raise DataError(
                f"missing required column {what or candidates[0]!r} (looked for {list(candidates)}); "
                f"the file has {self.schema.names()}",
                file=str(self.path),
            )
        return hit

    def _check(self, raw: str, parsed: pl.Expr, name: str) -> pl.Expr:
        tmp = f"__p:{name}"
        self.parsed[tmp] = parsed
        src = pl.col(raw)
        present = src.is_not_null()
        if self.schema[raw] == pl.String:
            present = present & (src.str.strip_chars() != "")
        self.rules.append((present & pl.col(tmp).is_null(), f"unparseable:{name}", src.cast(pl.String)))
        return pl.col(tmp).alias(name)

    def float(self, raw: str, name: str) -> pl.Expr:
        src, dtype = pl.col(raw), self.schema[raw]
        if dtype == pl.String:
            return self._check(raw, src.str.strip_chars().cast(pl.Float64, strict=False), name)
        if not (dtype.is_numeric() or dtype == pl.Null):  # a Boolean, date or list is a wrong column
            raise DataError(
                f"expected a number or a string column for {name}, found {dtype}",
                file=str(self.path),
                column=raw,
            )
        return self._check(raw, src.cast(pl.Float64, strict=False), name)

    def int(self, raw: str, name: str, dtype: pl.DataType | None = None) -> pl.Expr:
        """Integers; ``"3.0"`` and ``3.0`` are accepted (TLC writes counts as floats), ``"3.5"`` is not."""
        x = self.float(raw, name)
        self.rules.pop()  # re-check below: a fraction is a failure too
        src = pl.col(raw)
        present = src.is_not_null()
        if self.schema[raw] == pl.String:
            present = present & (src.str.strip_chars() != "")
        target: Any = dtype or pl.Int64()  # an integer dtype (has .min()/.max())
        ok = x.is_not_null() & x.is_finite() & (x == x.round(0))
        ok = ok & x.is_between(target.min(), target.max())  # out of range: a failure, not a crash
        self.rules.append((present & ~ok.fill_null(False), f"unparseable:{name}", src.cast(pl.String)))
        return pl.when(ok).then(x).otherwise(None).cast(target, strict=False).alias(name)

    def string(self, raw: str | None, name: str) -> pl.Expr:
        if raw is None:
            return pl.lit(None, dtype=pl.String).alias(name)
        # blank -> null by replace: a when/then over strings builds a second string column (2x the cost)
        return pl.col(raw).cast(pl.String).str.strip_chars().replace("", None).alias(name)

    def datetime(self, raw: str, name: str, formats: Sequence[str], tz: str | None = None) -> pl.Expr:
        """Naive local datetimes from a Datetime/Date column or strings in one of ``formats`` (tried in
        order; the first format that parses a value wins). ``tz``: the source's local time zone; a
        time-zone-aware column is converted to it before the zone is dropped (None: keep its wall time)."""
        dtype = self.schema[raw]
        src = pl.col(raw)
        if isinstance(dtype, pl.Datetime):
            local = src.dt.convert_time_zone(tz) if dtype.time_zone and tz else src
            parsed = local.dt.replace_time_zone(None) if dtype.time_zone else src
            return self._check(raw, parsed.cast(pl.Datetime("us")), name)
        if dtype == pl.Date:
            return self._check(raw, src.cast(pl.Datetime("us")), name)
        if dtype != pl.String:
            raise DataError(
                f"expected a datetime or a string column, found {dtype}", file=str(self.path), column=raw
            )
        s = src.str.strip_chars()
        formats = self._formats_in_use(raw, formats)
        # cache=False: most timestamps are unique, and the cache halves the speed
        tries = [s.str.strptime(pl.Datetime("us"), f, strict=False, cache=False) for f in formats]
        parsed = tries[0] if len(tries) == 1 else pl.coalesce(tries)
        return self._check(raw, parsed, name)

    def _formats_in_use(self, raw: str, formats: Sequence[str]) -> Sequence[str]:
        """The formats that parse some of the sample's values, in order (all of them when none does, so
        the failures are reported). Each extra format costs a full parse of the column."""
        if self.sample is None or len(formats) == 1 or raw not in self.sample.columns:
            return formats
        values = self.sample.get_column(raw).cast(pl.String).str.strip_chars().drop_nulls()
        covered = pl.Series([False] * values.len(), dtype=pl.Boolean)  # Boolean even when empty
        used = []
        for f in formats:  # a format is kept only if it parses values the earlier ones did not
            ok = values.str.strptime(pl.Datetime("us"), f, strict=False).is_not_null()
            if (ok & ~covered).any():
                used.append(f)
                covered = covered | ok
        if used and len(used) < len(formats):
            self.pruned.add(raw)
        return used or formats

    def epoch_seconds(self, raw: str, name: str) -> pl.Expr:
        """Unix seconds that encode *local* wall time (as Chicago's published timestamps do)."""
        x = self.float(raw, f"{name}__s")
        self.rules[-1] = (self.rules[-1][0], f"unparseable:{name}", self.rules[-1][2])
        return (x * 1e6).cast(pl.Int64).cast(pl.Datetime("us")).alias(name)

    def fail(self, condition: pl.Expr, reason: str, raw: pl.Expr | None = None) -> None:
        """Drop rows where ``condition`` holds (a source-specific rule, e.g. an unknown zone id)."""
        self.rules.append((condition, reason, raw if raw is not None else pl.lit(None, dtype=pl.String)))

    def reason_columns(self) -> list[pl.Expr]:
        reason = first_reason([(c, r) for c, r, _ in self.rules])
        bad: Any = pl
        for cond, _, raw in self.rules:
            bad = bad.when(cond.fill_null(False)).then(raw.cast(pl.String))
        bad_value = bad.otherwise(None) if self.rules else pl.lit(None, dtype=pl.String)
        return [reason.alias(REASON), bad_value.alias(BAD_VALUE)]


def _counts_and_examples(rows: Frame) -> tuple[Frame, Frame]:
    """Rows per (file, drop reason), and up to three (row, raw value) examples per dropped reason."""
    dropped = rows.filter(pl.col(REASON).is_not_null())
    drops = dropped.group_by(FILE, REASON).agg(pl.len().alias("n"))
    # kept rows per file = rows - drops: a group_by over every row's (file, reason) strings costs twice this
    kept = (
        rows.group_by(FILE)
        .agg(pl.len().alias("total"))
        .join(drops.group_by(FILE).agg(pl.col("n").sum().alias("drops")), on=FILE, how="left")
        .select(
            FILE,
            pl.lit(None, dtype=pl.String).alias(REASON),
            (pl.col("total") - pl.col("drops").fill_null(0)).cast(pl.UInt32).alias("n"),
        )
        .filter(pl.col("n") > 0)
    )
    counts = pl.concat([kept, drops.with_columns(pl.col("n").cast(pl.UInt32))])
    examples = dropped.group_by(FILE, REASON).agg(pl.col(ROW).head(3), pl.col(BAD_VALUE).head(3))
    return counts, examples


@dataclasses.dataclass
class TripSource:
    """Base of all sources. Subclasses set the class variables and implement :meth:`parse`.

    Args:
        paths: a file, folder, glob or list of them.
        labeled: the files carry the target (durations); unlabeled files (Kaggle test) keep null targets.
        validation: the generic drop rules (:class:`~tabxfer.data.quality.Validation` or a dict of them).
    """

    paths: PathLike | Sequence[PathLike]
    labeled: bool = True
    validation: Validation | Mapping[str, Any] | None = None
    # Datetime formats are chosen from each file's first rows; files where that was done, and whether
    # an earlier load found a later row needing another format (then every scan tries them all).
    _pruned_files: set[str] = dataclasses.field(default_factory=set, init=False, repr=False, compare=False)
    _all_formats: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)
    # load() is reading typed_columns as numbers (see there)
    _typed: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)

    name: ClassVar[str] = "source"
    city: ClassVar[str] = "nyc"
    mode: ClassVar[str] = "taxi"
    has_ids: ClassVar[bool] = False  # the format carries a trip id (checked for duplicates)
    extra: ClassVar[Mapping[str, pl.DataType]] = {}  # the source's own columns kept alongside
    # Raw CSV columns that parse() reads only through RowParser.float/int: load() first reads them with
    # polars' number parser (no text column to allocate and cast: 0.3 s of the 1.3 s a 1.5 M-row Kaggle
    # CSV takes). That parser fails the whole read on a value it refuses (text, "1,5", "0x10"), and then
    # the files are read again as text, where each such value is found, counted and its row dropped as
    # unparseable; the parser accepts exactly what the text path does (tests/data/test_typed_read.py).
    # A drop example of such a column shows the number as read ("NaN" for "nan"), not the text.
    typed_columns: ClassVar[tuple[str, ...]] = ()

    # --- for subclasses ---------------------------------------------------------------------------
    def parse(self, p: RowParser) -> list[pl.Expr]:
        """Expressions producing the canonical (and extra) columns from one file's raw columns."""
        raise NotImplementedError

    def city_of(self) -> str:
        return self.city

    def mode_of(self) -> str:
        return self.mode

    # --- shared machinery -------------------------------------------------------------------------
    def files(self) -> list[Path]:
        return resolve_paths(self.paths)

    def _scan_file(self, path: Path) -> pl.LazyFrame:
        raw = scan_table(path, check_fields=False)
        try:  # the sample reads every column, so it checks its lines' field counts itself
            sample = raw.head(1000).collect()
        except READ_ERRORS as e:
            raise self._explain(e, [path]) from e  # e.g. a ragged CSV line among the first rows
        # Datetime formats are chosen from the first rows (each extra format costs a full parse). If a
        # later row needs another one, load()/drop_report() see unparseable values and re-read the
        # sources with every format (self._all_formats), so no row is lost to the shortcut.
        schema = raw.collect_schema()
        numbers: list[str] = []
        if self._typed and path.name.lower().endswith(".csv"):
            wanted = {c.lower() for c in self.typed_columns}
            numbers = [c for c in schema.names() if c.lower().strip() in wanted]
        if numbers:
            raw = scan_table(path, numbers)
            schema = raw.collect_schema()
        elif path.name.lower().endswith(".csv"):
            raw = check_field_counts(raw)
        p = RowParser(path, schema, sample=None if self._all_formats else sample)
        if schema.names():
            p.fail(pl.all_horizontal([pl.col(c).is_null() for c in schema.names()]), EMPTY_ROW)
        exprs = self.parse(p)
        if p.pruned:
            self._pruned_files.add(str(path))
        names = {e.meta.output_name() for e in exprs}
        defaults = [
            pl.lit(self.name).alias("source"),
            pl.lit(self.city_of()).alias("city"),
            pl.lit(self.mode_of()).alias("mode"),
        ]
        exprs += [e for e in defaults if e.meta.output_name() not in names]
        lf = p.materialize(raw.with_row_index(ROW)).select(
            pl.col(ROW).cast(pl.Int64), pl.lit(str(path)).alias(FILE), *exprs, *p.reason_columns()
        )
        row_id = pl.lit(f"{self.name}:{path.stem}:") + pl.col(ROW).cast(pl.String)
        if "trip_id" in names:  # a row with an empty id gets the row id, as a source without ids does
            # (when/then, not coalesce: it builds the row ids of the rows without one only; 0.04 s saved
            # on 1.5 M rows that all have one)
            row_id = pl.when(pl.col("trip_id").is_null()).then(row_id).otherwise(pl.col("trip_id"))
        return lf.with_columns(row_id.alias("trip_id"))

    def scan_all(self) -> pl.LazyFrame:
        """Every row with canonical columns and its drop reason (null = kept). Lazy."""
        frames = [self._scan_file(f) for f in self.files()]
        lf = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
        lf = conform(lf, self.extra)
        v = Validation.of(self.validation)
        generic = v.reason(city=self.city_of(), mode=self.mode_of(), labeled=self.labeled)
        lf = lf.with_columns(pl.coalesce(pl.col(REASON), generic).alias(REASON))
        dup = v.duplicate_reason(
            lf.collect_schema().names(), has_ids=self.has_ids, among=pl.col(REASON).is_null()
        )
        if dup is not None:  # only rows that pass every other rule compete for "first occurrence"
            lf = lf.with_columns(pl.coalesce(pl.col(REASON), dup).alias(REASON))
        return lf

    def scan(self) -> pl.LazyFrame:
        """The kept rows, canonical + extra columns only. Lazy: streams files larger than memory."""
        return self.scan_all().filter(pl.col(REASON).is_null()).drop(ROW, FILE, REASON, BAD_VALUE)

    def load(self) -> tuple[pl.DataFrame, DropReport]:
        """Collect the kept rows and the drop report (one pass over the files)."""
        files = self.files()
        all_rows = self._collect_all(files)  # one pass over the files; the three results are views of it
        # bookkeeping dropped before the filter: filtering the file-name column too costs 4x (1.5 M rows)
        df = all_rows.drop(ROW, FILE, BAD_VALUE).filter(pl.col(REASON).is_null()).drop(REASON)
        counts_df, ex_df = _counts_and_examples(all_rows)
        if self._retry_with_all_formats(counts_df):
            return self.load()
        report = self._report(counts_df, ex_df, files)
        report.n_out = df.height
        report.check()
        return df, report

    def _retry_with_all_formats(self, counts: pl.DataFrame) -> bool:
        """True (and switch to every datetime format) when a file whose formats were chosen from its
        first rows has unparseable values: a later row may use a format the first rows did not."""
        if not self._pruned_files or self._all_formats:
            return False
        pruned = list(self._pruned_files)
        hit = counts.filter(pl.col(FILE).is_in(pruned) & pl.col(REASON).str.starts_with("unparseable:"))
        if hit.height == 0:
            return False
        self._all_formats = True
        return True

    def _collect_all(self, files: list[Path]) -> pl.DataFrame:
        """``scan_all()`` collected; ``typed_columns`` read as numbers first, as text if that fails."""
        if self.typed_columns:
            self._typed = True
            try:
                return self.scan_all().collect()
            except READ_ERRORS:
                pass  # a value polars' number parser refuses (or a malformed file): the text read names it
            finally:
                self._typed = False
        try:
            return self.scan_all().collect()
        except READ_ERRORS as e:
            raise self._explain(e, files) from e

    def drop_report(self) -> DropReport:
        """Counts only (no rows kept in memory): for corpora streamed elsewhere."""
        counts, examples = _counts_and_examples(self.scan_all())
        files = self.files()
        try:
            counts_df, ex_df = pl.collect_all([counts, examples], engine="streaming")
        except READ_ERRORS as e:
            raise self._explain(e, files) from e
        if self._retry_with_all_formats(counts_df):
            return self.drop_report()
        report = self._report(counts_df, ex_df, files)
        report.n_out = report.n_in - report.n_dropped
        return report

    def _report(self, counts: pl.DataFrame, examples: pl.DataFrame, files: list[Path]) -> DropReport:
        rep = DropReport(source=self.name, files=[str(f) for f in files])
        rep.n_in = int(counts["n"].sum()) if counts.height else 0
        per_file = {r[FILE]: 0 for r in counts.iter_rows(named=True)}
        for r in counts.iter_rows(named=True):
            per_file[r[FILE]] += r["n"]
        for r in counts.iter_rows(named=True):
            reason, n = r[REASON], r["n"]
            if reason is None:
                continue
            rep.dropped[reason] = rep.dropped.get(reason, 0) + n
            if reason.startswith("unparseable:") and n > MAX_BAD_FRACTION * per_file[r[FILE]]:
                ex = examples.filter((pl.col(REASON) == reason) & (pl.col(FILE) == r[FILE])).row(
                    0, named=True
                )
                row, value = ex[ROW][0], ex[BAD_VALUE][0]
                raise DataError(
                    f"{n:,} of {per_file[r[FILE]]:,} values do not parse as {reason.split(':', 1)[1]} "
                    f"(first at row {row}: {value!r}); wrong column or format?",
                    file=r[FILE],
                    column=reason.split(":", 1)[1],
                )
        for r in examples.sort(FILE).iter_rows(named=True):
            found = [(r[FILE], row, value) for row, value in zip(r[ROW], r[BAD_VALUE], strict=True)]
            rep.examples[r[REASON]] = (rep.examples.get(r[REASON], []) + found)[:5]
        return rep

    def _explain(self, err: BaseException, files: Iterable[Path]) -> DataError:
        """Turn a reader error into one that names the file and row (or, for Parquet, the file)."""
        files = list(files)
        for f in files:
            if f.name.lower().endswith((".csv", ".csv.gz")):
                bad = not_utf8(f)
                if bad is not None:
                    return bad
                quote = find_bad_quote(f)
                if quote is not None:
                    kind, row, line = quote
                    why = {
                        "stray": 'a quote (") inside an unquoted field',
                        "after": "text after the closing quote of a quoted field",
                        "unclosed": "a quoted field opens here and is never closed (the file is cut short, "
                        "or a closing quote is missing)",
                    }[kind]
                    if kind != "unclosed":
                        why += (
                            '; a field holding a quote must be quoted whole, the quote doubled: "12"" pizza"'
                        )
                    return DataError(f"malformed CSV at line {line}: {why}", file=str(f), row=row)
                ragged = find_ragged_csv_row(f)
                if ragged is not None:
                    row, n, m = ragged
                    return DataError(
                        f"malformed CSV: {n} fields where the header has {m}", file=str(f), row=row
                    )
            elif f.name.lower().endswith((".parquet", ".pq")):
                try:  # decode every page: a corrupt one fails here, naming its file
                    pl.scan_parquet(f).select(pl.all().is_null().sum()).collect()
                except (Exception, pl.exceptions.PanicException) as e:  # several types, panics too
                    return DataError(f"cannot read (corrupt Parquet data?): {e}", file=str(f))
        if isinstance(err, pl.exceptions.PanicException):
            return DataError(f"the reader crashed (corrupt file?): {err}", file=", ".join(map(str, files)))
        return DataError(f"cannot read: {err}", file=", ".join(str(f) for f in files))

    def describe(self) -> dict[str, Any]:
        """What identifies this source's data, for fingerprints: class, settings, and each file's
        size, modification time and a hash of its first and last MiB."""
        from tabxfer.data.fingerprint import file_signature

        cfg = {
            f.name: (dataclasses.asdict(v) if isinstance(v := getattr(self, f.name), Validation) else v)
            for f in dataclasses.fields(self)
            if f.name != "paths" and not f.name.startswith("_")
        }
        return {
            "source": f"{type(self).__module__}.{type(self).__qualname__}",
            "settings": {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in cfg.items()},
            "files": [file_signature(p) for p in self.files()],
        }
