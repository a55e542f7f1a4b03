"""The tensor cache: featurized splits on disk, what training reads. numpy + json only (no polars).

One cache is a folder::

    <cache_dir>/<name>-<fingerprint>/
        manifest.json     fingerprint, what went in (sources, drop reports, configs), split sizes
        spec.json         the FeatureSpec (names, kinds, cardinalities, vocabularies, scalers)
        train/x_num.npy   float32 (N, n_numeric)      val/..., test/... the same
        train/x_cat.npy   int32   (N, n_categorical)
        train/y.npy       float32 (N,)   transformed target (NaN where unlabeled)
        train/pickup_ts.npy int64 (N,)   Unix seconds of the local pickup time
        train/source_id.npy int16 (N,)   which source the row came from (manifest["sources"][i])

Arrays are memory-mapped on load (``np.load(mmap_mode="r")``), so opening a cache of any size takes
milliseconds and a GPU run copies each array to the device once. The folder is written under a temporary
name and renamed into place, so a cache either exists complete or not at all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tabxfer.features.spec import FeatureSpec
from tabxfer.io import write_error

ARRAYS = ("x_num", "x_cat", "y", "pickup_ts")
CACHE_VERSION = 1


OPTIONAL = ("ctx_city_idx", "ctx_region_idx", "source_id")  # context indices; the row's source


@dataclasses.dataclass(frozen=True)
class SplitArrays:
    x_num: np.ndarray  # (N, n_numeric) float32
    x_cat: np.ndarray  # (N, n_categorical) int32
    y: np.ndarray  # (N,) float32
    pickup_ts: np.ndarray  # (N,) int64
    ctx_city_idx: np.ndarray | None = None  # (N,) int64: row of the pickup hour in the ctx_city table
    ctx_region_idx: np.ndarray | None = None  # (N,) int64: same in ctx_region
    source_id: np.ndarray | None = None  # (N,) int16: index into the manifest's ``sources``

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: np.ndarray) -> SplitArrays:
        parts: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        taken: dict[str, Any] = {k: None if a is None else np.asarray(a[index]) for k, a in parts.items()}
        return SplitArrays(**taken)


@dataclasses.dataclass(frozen=True)
class TensorCache:
    path: Path
    spec: FeatureSpec
    manifest: Mapping[str, Any]

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def splits(self) -> list[str]:
        return list(self.manifest["splits"])

    def split(self, name: str, *, mmap: bool = True) -> SplitArrays:
        if name not in self.manifest["splits"]:
            raise KeyError(f"cache {self.path} has splits {self.splits}, not {name!r}")
        load = (lambda f: np.load(f, mmap_mode="r")) if mmap else np.load
        arrays = {a: load(self.path / name / f"{a}.npy") for a in ARRAYS}
        arrays |= {
            a: load(self.path / name / f"{a}.npy")
            for a in OPTIONAL
            if (self.path / name / f"{a}.npy").exists()
        }
        return SplitArrays(**arrays)

    @property
    def context_hours(self) -> int | None:
        """Context window length when the cache has a temporal context (``data.features.context``)."""
        ctx = self.manifest.get("context")
        return int(ctx["hours"]) if ctx else None

    def table(self, name: str) -> np.ndarray:
        """A cache-level table (``ctx_city``, ``ctx_region``)."""
        return np.load(self.path / f"{name}.npy")

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TensorCache:
        p = Path(path)
        try:
            manifest = json.loads((p / "manifest.json").read_text())
            spec = FeatureSpec.from_json((p / "spec.json").read_text())
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{p} is not a tabxfer tensor cache (missing {e.filename})") from e
        if manifest.get("cache_version") != CACHE_VERSION:
            raise ValueError(
                f"{p}: cache version {manifest.get('cache_version')!r}, expected {CACHE_VERSION}"
            )
        return cls(p, spec, manifest)


def write_cache(
    path: str | os.PathLike[str],
    spec: FeatureSpec,
    splits: Mapping[str, Mapping[str, np.ndarray]],
    manifest: Mapping[str, Any],
    tables: Mapping[str, np.ndarray] | None = None,
) -> TensorCache:
    """Write a cache folder atomically (temp folder + rename). An existing cache at ``path`` is replaced."""
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as e:
        raise write_error(e, final.parent, what="the tensor cache to") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a cache is as shared as its parent
    try:
        sizes = {}
        for name, arrays in splits.items():
            (tmp / name).mkdir()
            n = {a: len(arrays[a]) for a in ARRAYS}
            if len(set(n.values())) != 1:
                raise ValueError(f"split {name!r}: arrays of different lengths {n}")
            for a in [*ARRAYS, *(o for o in OPTIONAL if o in arrays)]:
                np.save(tmp / name / f"{a}.npy", np.ascontiguousarray(arrays[a]))
            sizes[name] = next(iter(n.values()))
        for tname, table in (tables or {}).items():
            np.save(tmp / f"{tname}.npy", np.ascontiguousarray(table))
        man = {**manifest, "cache_version": CACHE_VERSION, "splits": sizes}
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, default=str))
        (tmp / "spec.json").write_text(spec.to_json())
        if final.exists():  # replaced only after the new one is complete
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as e:  # disk full, read-only: nothing half-written stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(e, final, what="tensor cache") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TensorCache.open(final)
