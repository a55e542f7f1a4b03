"""The canonical mobility-trip schema every loader maps onto, and the errors and reports of loading.

One trip is one row. Core columns (always present, in this order):

========================  ===============  =========================================================
column                    dtype            meaning
========================  ===============  =========================================================
``trip_id``               String           the source's id, or ``"<source>:<file row>"`` when it has none
``source``                String           loader/source name, e.g. ``kaggle_nyc``, ``tlc_green``
``city``                  String           ``nyc``, ``chicago``, ``jersey_city`` or a synthetic city
``mode``                  String           one of :data:`MODES`
``vendor``                String           vendor/operator/company as a string (nullable)
``pickup_time``           Datetime(us)     naive *local* wall-clock time of the pickup
``pickup_lat/lon``        Float64          WGS84 degrees
``dropoff_lat/lon``       Float64          WGS84 degrees
``passenger_count``       Int16            nullable (bikes: 1)
``duration_s``            Float64          trip duration in seconds: the target (null in unlabeled files)
========================  ===============  =========================================================

Everything else a source carries is kept alongside under a snake_case name (``store_and_fwd_flag``,
``trip_distance_km``, ``pickup_zone_id``, ``user_type``, ...): see each loader's ``extra`` columns.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import polars as pl

MODES = ("taxi", "for_hire", "bike", "other")

CORE_SCHEMA: dict[str, pl.DataType] = {
    "trip_id": pl.String(),
    "source": pl.String(),
    "city": pl.String(),
    "mode": pl.String(),
    "vendor": pl.String(),
    "pickup_time": pl.Datetime("us"),
    "pickup_lat": pl.Float64(),
    "pickup_lon": pl.Float64(),
    "dropoff_lat": pl.Float64(),
    "dropoff_lon": pl.Float64(),
    "passenger_count": pl.Int16(),
    "duration_s": pl.Float64(),
}
CORE_COLUMNS = tuple(CORE_SCHEMA)

# Internal bookkeeping columns carried through loading and removed before the data leaves the loader.
ROW = "_row"  # 0-based data row in the file (CSV line = row + 2 with a header)
FILE = "_file"
REASON = "_drop_reason"  # null = keep; otherwise the first reason the row fails
BAD_VALUE = "_bad_value"  # the raw value behind a parse failure, for error messages


class DataError(ValueError):
    """Input that cannot be used at all. The message names the file, the column and the row.

    Raised (never returned) for problems of a whole file or column: a missing required column, a column
    whose every value fails to parse, an unknown format. Problems of single rows are drops, counted in a
    :class:`DropReport` instead.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
        value: Any = None,
    ):
        self.file, self.column, self.row, self.value = file, column, row, value
        where = []
        if file is not None:
            where.append(str(file))
        if column is not None:
            where.append(f"column {column!r}")
        if row is not None:
            where.append(f"row {row}")
        if value is not None:
            where.append(f"value {value!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


@dataclasses.dataclass
class DropReport:
    """What loading one source did to its rows: ``n_in == n_out + sum(dropped.values())`` always.

    ``examples`` keeps, per reason, up to a few ``(file, row, raw value)`` triples so a user can find the
    offending input.
    """

    source: str
    n_in: int = 0
    n_out: int = 0
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: dict[str, list[tuple[str, int, str | None]]] = dataclasses.field(default_factory=dict)
    files: list[str] = dataclasses.field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def check(self) -> None:
        """Raise if any row went unaccounted for (a bug, never a data problem)."""
        if self.n_in != self.n_out + self.n_dropped:
            raise AssertionError(
                f"{self.source}: {self.n_in} rows in, {self.n_out} kept + {self.n_dropped} dropped"
            )

    def merge(self, other: DropReport) -> DropReport:
        out = DropReport(
            source=self.source if self.source == other.source else f"{self.source}+{other.source}",
            n_in=self.n_in + other.n_in,
            n_out=self.n_out + other.n_out,
            dropped=dict(self.dropped),
            examples={k: list(v) for k, v in self.examples.items()},
            files=[*self.files, *other.files],
        )
        for reason, n in other.dropped.items():
            out.dropped[reason] = out.dropped.get(reason, 0) + n
        for reason, ex in other.examples.items():
            out.examples[reason] = (out.examples.get(reason, []) + ex)[:5]
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DropReport:
        d = dict(d)
        d["examples"] = {k: [tuple(e) for e in v] for k, v in d.get("examples", {}).items()}
        return cls(**d)

    def summary(self) -> str:
        pct = 100.0 * self.n_dropped / self.n_in if self.n_in else 0.0
        head = f"{self.source}: {self.n_in:,} rows in, {self.n_out:,} kept, {self.n_dropped:,} dropped ({pct:.2f}%)"
        parts = [f"{r}={n:,}" for r, n in sorted(self.dropped.items(), key=lambda kv: -kv[1]) if n]
        return head + (f" [{', '.join(parts)}]" if parts else "")

    def __str__(self) -> str:
        return self.summary()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def conform(lf: pl.LazyFrame, extra: Mapping[str, pl.DataType] | None = None) -> pl.LazyFrame:
    """Cast a loader's output to the canonical core dtypes (missing core columns become null) and order
    the columns: core first, then the source's extra columns, then any bookkeeping columns."""
    have = lf.collect_schema()
    exprs = []
    for name, dtype in CORE_SCHEMA.items():
        exprs.append(pl.col(name).cast(dtype) if name in have else pl.lit(None, dtype=dtype).alias(name))
    for name, dtype in (extra or {}).items():
        exprs.append(pl.col(name).cast(dtype) if name in have else pl.lit(None, dtype=dtype).alias(name))
    book = [c for c in (ROW, FILE, REASON, BAD_VALUE) if c in have]
    return lf.select(*exprs, *book)
