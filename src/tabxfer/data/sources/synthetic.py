"""The synthetic corpus (:mod:`tabxfer.data.synthetic`) as a trip source: the default when no real data
is at hand.

Generated rows go through the same generic validation and de-duplication as real files, so the rows a
real source would lose (meter-left-running records over 6 h, a speed no taxi reaches) are dropped and
counted in the :class:`~tabxfer.data.schema.DropReport` the same way. The generator stands in for "the
file": :meth:`SyntheticTrips.files` names one pseudo-file ``synthetic:<city>:<seed>`` that
:meth:`SyntheticTrips._scan_file` generates instead of reading, and the base class does the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import polars as pl

from tabxfer.data import synthetic
from tabxfer.data.fingerprint import fingerprint
from tabxfer.data.quality import Validation
from tabxfer.data.schema import BAD_VALUE, FILE, REASON, ROW
from tabxfer.data.sources.base import PathLike, TripSource


@dataclasses.dataclass
class SyntheticTrips(TripSource):
    """``n`` trips of a synthetic city preset (see :data:`tabxfer.data.synthetic.PRESETS`).

    >>> df, report = SyntheticTrips(city="riverton", n=2_000, seed=3).load()
    >>> report.n_in == report.n_out + report.n_dropped == 2_000
    True
    """

    paths: PathLike | Sequence[PathLike] = ()  # unused: the rows are generated
    labeled: bool = True
    validation: Validation | Mapping[str, Any] | None = None
    city: str = "nyc"  # type: ignore[misc]  # a setting here, a class constant in file sources
    n: int = 100_000
    seed: int = 0
    start: str = "2016-01-01"
    end: str = "2016-07-01"

    name: ClassVar[str] = "synthetic"
    has_ids: ClassVar[bool] = True
    extra: ClassVar[Mapping[str, pl.DataType]] = synthetic.EXTRA_SCHEMA

    def __post_init__(self) -> None:
        synthetic.get_preset(self.city)  # fail early on an unknown city, listing the presets

    def city_of(self) -> str:
        return self.city

    def mode_of(self) -> str:
        return synthetic.get_preset(self.city).mode

    def files(self) -> list[Path]:
        return [Path(f"synthetic:{self.city}:{self.seed}")]

    def _scan_file(self, path: Path) -> pl.LazyFrame:
        df = synthetic.generate(self.city, self.n, seed=self.seed, start=self.start, end=self.end)
        return (
            df.lazy()
            .with_row_index(ROW)
            .select(
                pl.col(ROW).cast(pl.Int64),
                pl.lit(str(path)).alias(FILE),
                pl.all().exclude(ROW),
                pl.lit(None, dtype=pl.String).alias(REASON),
                pl.lit(None, dtype=pl.String).alias(BAD_VALUE),
            )
        )

    def describe(self) -> dict[str, Any]:
        """Settings plus the generator version and a hash of the preset (no files): what fixes the rows."""
        settings = {
            f.name: (dataclasses.asdict(v) if isinstance(v := getattr(self, f.name), Validation) else v)
            for f in dataclasses.fields(self)
            if f.name != "paths"
        }
        preset = synthetic.get_preset(self.city)
        return {
            "source": f"{type(self).__module__}.{type(self).__qualname__}",
            "settings": {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in settings.items()},
            "generator": {"version": synthetic.VERSION, "preset": fingerprint(dataclasses.asdict(preset))},
            "files": [],
        }
