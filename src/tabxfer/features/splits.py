"""Train/validation/test splits with fixed seeds: random, or by time (earlier weeks train, later test).

A split is a column ``split`` (``"train"``, ``"val"``, ``"test"``) added to a trips frame. Random splits
draw one uniform number per row from ``numpy.random.default_rng(seed)`` in the frame's row order (which
the loaders make deterministic: sorted files, file order kept), so the same data and seed always give
the same split. Time splits cut at week boundaries (Monday 00:00 local) so that no week is shared.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from tabxfer.config import check_options
from tabxfer.data.schema import DataError

SPLITS = ("train", "val", "test")
SPLIT_DTYPE = pl.Enum(SPLITS)


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """``kind``: ``random`` | ``time`` | ``column`` (an existing column holding train/val/test, e.g. the
    sh31 Kaggle files' own split); ``val``/``test``: fractions of rows (time: of the time span's rows);
    ``seed``: the random split's seed; ``column``: the column for ``kind=column``."""

    kind: str = "random"
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    column: str = "split"

    def __post_init__(self) -> None:
        if self.kind not in ("random", "time", "column"):
            raise ValueError(f"{self.kind=} must be 'random', 'time' or 'column'")
        if not (0 <= self.val < 1 and 0 <= self.test < 1 and self.val + self.test < 1):
            raise ValueError(f"need 0 <= {self.val=}, {self.test=} and val + test < 1")

    @classmethod
    def of(cls, cfg: SplitConfig | Mapping[str, Any] | None) -> SplitConfig:
        if cfg is None:
            return cls()
        if isinstance(cfg, SplitConfig):
            return cfg
        check_options(cls, cfg, "split")
        return cls(**dict(cfg))


def assign_split(df: pl.DataFrame, cfg: SplitConfig | Mapping[str, Any] | None = None) -> pl.DataFrame:
    """``df`` with a ``split`` column (``Enum(["train", "val", "test"])``)."""
    cfg = SplitConfig.of(cfg)
    if cfg.kind == "column":
        if cfg.column not in df.columns:
            raise DataError(f"split kind 'column' needs a column {cfg.column!r}; have {df.columns}")
        bad = df.filter(~pl.col(cfg.column).is_in(SPLITS))
        if bad.height:
            raise DataError(
                f"{bad.height} rows have a split value outside {SPLITS}: {bad[cfg.column].unique().to_list()[:5]}",
                column=cfg.column,
            )
        return df.with_columns(pl.col(cfg.column).cast(pl.String).cast(SPLIT_DTYPE).alias("split"))
    if cfg.kind == "random":
        u = np.random.default_rng(cfg.seed).random(df.height)
        lab = np.where(u < cfg.test, 2, np.where(u < cfg.test + cfg.val, 1, 0)).astype(np.uint8)
        split = pl.Series("split", lab).replace_strict([0, 1, 2], list(SPLITS), return_dtype=SPLIT_DTYPE)
        return df.with_columns(split)
    return df.with_columns(_time_split(df, cfg))


def time_cutoffs(df: pl.DataFrame, cfg: SplitConfig) -> tuple[Any, Any]:
    """``(val_start, test_start)``: the week starts nearest to the wanted row fractions."""
    t = df["pickup_time"].drop_nulls().sort()
    if t.len() == 0:
        raise DataError("time split needs pickup times; every row's pickup_time is null")

    def week_cut(q: float) -> Any:
        if q >= 1.0:
            return None  # no rows after the end
        at = t[min(int(q * t.len()), t.len() - 1)]
        start = pl.Series([at]).dt.truncate("1w")[0]  # weeks start on Monday
        nxt = start + dt.timedelta(weeks=1)  # pick the closer of the two week boundaries
        return start if (at - start) <= (nxt - at) else nxt

    test_start = week_cut(1.0 - cfg.test) if cfg.test > 0 else None
    val_start = week_cut(1.0 - cfg.test - cfg.val) if cfg.val > 0 else test_start
    if val_start is not None and test_start is not None and val_start >= test_start and cfg.val > 0:
        raise DataError(
            f"time split: the data spans too few weeks for val={cfg.val} and test={cfg.test} "
            f"({t[0]} .. {t[-1]}); use kind=random or smaller fractions"
        )
    return val_start, test_start


def _time_split(df: pl.DataFrame, cfg: SplitConfig) -> pl.Expr:
    val_start, test_start = time_cutoffs(df, cfg)
    t = pl.col("pickup_time")
    expr: Any = pl
    if test_start is not None:
        expr = expr.when(t >= test_start).then(pl.lit("test"))
    if val_start is not None:
        expr = expr.when(t >= val_start).then(pl.lit("val"))
    if expr is pl:
        return pl.lit("train").cast(SPLIT_DTYPE).alias("split")
    return expr.otherwise(pl.lit("train")).cast(SPLIT_DTYPE).alias("split")
