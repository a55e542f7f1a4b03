"""The model side of drift monitoring: a run, a checkpoint or an ONNX artifact, resolved to a
:class:`Reference` (its feature spec, a predictor for canonical trips, its :class:`ReferenceProfile`).

* **run directory** (``logs/train/runs/<time>/``): its ``checkpoints/best.ckpt``, as below, plus the run's
  ``metrics.json`` for the record.
* **checkpoint** (``*.ckpt``): :func:`tabxfer.train.load` rebuilds the model; the reference rows are
  reloaded from the sources of the resolved config in its meta (:func:`~tabxfer.export.artifact.held_out`:
  the same loaders, validation and seeded split as training), up to ``rows`` training rows for the
  distributions and up to ``rows`` test rows for the reference RMSLE. Predictions: the torch model on the
  polars pipeline's features.
* **artifact** (a ``tabxfer export`` folder, or one of its ``.onnx`` files): the profile is the artifact's
  ``reference_profile.json`` (written at export), so no training data is needed; predictions come from
  the ONNX graph on raw fields, through onnxruntime. An artifact exported before profiles existed falls
  back to the checkpoint its ``report.json`` names, when that file is still there.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tabxfer.data.schema import DataError
from tabxfer.features.spec import FeatureSpec
from tabxfer.monitor import stats
from tabxfer.monitor.profile import ReferenceProfile, build_profile

log = logging.getLogger(__name__)
PROFILE_FILE = "reference_profile.json"


class BadReference(ValueError):
    """The reference (run, checkpoint, artifact) cannot be used; the message says which file and why."""


@dataclasses.dataclass
class Reference:
    """A resolved reference. The profile is built on first use (for a checkpoint that reloads the training
    rows), so that bad new data is reported before that cost is paid."""

    kind: str  # "run" | "checkpoint" | "artifact"
    path: Path
    spec: FeatureSpec
    make_profile: Callable[[], ReferenceProfile]
    predict: Callable[[pl.DataFrame], np.ndarray]  # canonical trips -> predicted log1p(duration_s)
    info: dict[str, Any]
    _profile: ReferenceProfile | None = None

    @property
    def profile(self) -> ReferenceProfile:
        if self._profile is None:
            self._profile = self.make_profile()
            self.info = {**self._profile.info, **self.info}
        return self._profile


def _check_supported(module: Any, spec: FeatureSpec, path: Path) -> None:
    """Models whose inputs the feature pipeline alone cannot rebuild for new rows."""
    if module.takes_context and getattr(module.model, "n_ctx", 0):
        raise BadReference(
            f"{path}: the model reads the hourly context sequence (TFT with data.features.context=true), "
            "which new rows do not carry; monitor a model trained with data.features.context=false"
        )
    if spec.config.get("context_flat"):
        raise BadReference(
            f"{path}: the model reads context_flat features, which new rows do not carry; "
            "monitor a model trained with data.features.context_flat=false"
        )


def profile_of_module(
    module: Any,
    spec: FeatureSpec,
    train: pl.DataFrame,
    test: pl.DataFrame | None,
    *,
    test_log_pred: np.ndarray | None = None,
    bins: int = stats.BINS,
    info: dict[str, Any] | None = None,
) -> ReferenceProfile:
    """:func:`build_profile` with the torch model's predictions (``test_log_pred`` when already known)."""
    from tabxfer.export.artifact import torch_log_pred

    train_pred = torch_log_pred(module, spec, train)
    if test is not None and test_log_pred is None:
        test_log_pred = torch_log_pred(module, spec, test)
    return build_profile(spec, train, train_pred, test, test_log_pred, bins=bins, info=info)


def model_info(module: Any, path: Path) -> dict[str, Any]:
    """What a report says about the model: class, data name, split, rows, fingerprint, drop reports."""
    meta = dict(module.hparams.get("meta") or {})
    corpus = meta.get("corpus") or {}
    return {
        "checkpoint": str(path),
        "model": module.hparams["model_cfg"]["_target_"],
        "data": corpus.get("name"),
        "split": ((meta.get("config") or {}).get("data") or {}).get("split"),
        "data_rows": corpus.get("rows"),
        "data_fingerprint": meta.get("data_fingerprint"),
        "drop_reports": meta.get("drop_reports"),
    }


def from_checkpoint(path: Path, *, rows: int, seed: int, bins: int, kind: str = "checkpoint") -> Reference:
    from tabxfer.export.artifact import held_out, torch_log_pred
    from tabxfer.train import load  # Lightning is imported only here

    try:
        module = load(path)
    except Exception as e:  # torch/Lightning raise many types for a file that is not a checkpoint
        raise BadReference(f"{path}: not a loadable tabxfer checkpoint ({type(e).__name__}: {e})") from e
    spec = FeatureSpec.from_dict(module.hparams["spec"])
    _check_supported(module, spec, path)
    meta = dict(module.hparams.get("meta") or {})
    if "config" not in meta:
        raise BadReference(f"{path}: no training config in the checkpoint's meta; cannot reload its rows")
    info = {"kind": kind, **model_info(module, path), "rows_seed": seed}

    def make_profile() -> ReferenceProfile:
        try:
            parts = held_out(meta["config"], {"train": rows, "test": rows}, seed=seed)
        except ValueError as e:  # DataError included: a moved data folder, a changed file
            raise BadReference(f"{path}: cannot reload the rows the model was trained on: {e}") from e
        return profile_of_module(module, spec, parts["train"], parts["test"], bins=bins, info=info)

    module.eval()
    return Reference(kind, path, spec, make_profile, lambda df: torch_log_pred(module, spec, df), info)


def from_artifact(path: Path, *, rows: int, seed: int, bins: int) -> Reference:
    from tabxfer.export import serve
    from tabxfer.export.artifact import raw_columns
    from tabxfer.export.onnx_graph import RawInput

    folder, onnx_file = (path, path / "model.onnx") if path.is_dir() else (path.parent, path)
    if not onnx_file.is_file():
        raise BadReference(f"{onnx_file}: no such ONNX file (expected a `tabxfer export` folder)")
    sess = serve.session(onnx_file, "cpu")
    meta = sess.get_modelmeta().custom_metadata_map
    if "tabxfer.feature_spec" not in meta or "tabxfer.inputs" not in meta:
        raise BadReference(f"{onnx_file}: not a tabxfer artifact (no tabxfer.feature_spec metadata)")
    spec = FeatureSpec.from_json(meta["tabxfer.feature_spec"])
    inputs = [RawInput.from_dict(d) for d in json.loads(meta["tabxfer.inputs"])]
    if any(i.name == "context" for i in inputs):
        raise BadReference(
            f"{onnx_file}: the model reads the hourly context sequence (its `context` input), which new trips "
            "do not carry; monitor a model exported without it (data.features.context=false)"
        )
    info: dict[str, Any] = {
        "kind": "artifact",
        "artifact": str(folder),
        "onnx": onnx_file.name,
        "model": meta.get("tabxfer.model"),
        "data_fingerprint": meta.get("tabxfer.data_fingerprint"),
        "quantization": meta.get("tabxfer.quantization"),
    }
    profile_file = folder / PROFILE_FILE
    if profile_file.is_file():
        info["profile"] = str(profile_file)

        def make_profile() -> ReferenceProfile:
            try:
                return ReferenceProfile.from_dict(json.loads(profile_file.read_text()))
            except (ValueError, KeyError, TypeError) as e:
                raise BadReference(f"{profile_file}: unreadable reference profile ({e})") from e

    else:
        ckpt = _exported_from(folder)
        if ckpt is None:
            raise BadReference(
                f"{folder}: the artifact has no {PROFILE_FILE} (exported by an older tabxfer) and the checkpoint "
                "its report.json names is not there; re-export it, or pass the checkpoint instead"
            )
        log.info("%s has no %s: profiling its checkpoint %s", folder, PROFILE_FILE, ckpt)
        info["profile"] = f"rebuilt from {ckpt}"
        make_profile = from_checkpoint(ckpt, rows=rows, seed=seed, bins=bins).make_profile

    def predict(df: pl.DataFrame) -> np.ndarray:
        try:
            return serve.predict(sess, raw_columns(df, inputs))["log_duration"].astype(np.float64)
        except serve.InvalidInput as e:  # rows the loaders kept but the artifact refuses: bad input, exit 2
            raise DataError(
                f"the artifact {onnx_file} refuses trips of the new data (row numbers count the compared "
                f"sample of {df.height:,} rows): {e}"
            ) from e

    return Reference("artifact", folder, spec, make_profile, predict, info)


def _exported_from(folder: Path) -> Path | None:
    report = folder / "report.json"
    if not report.is_file():
        return None
    ckpt = json.loads(report.read_text()).get("checkpoint")
    return Path(ckpt) if ckpt and Path(ckpt).is_file() else None


def resolve(
    path: str | os.PathLike[str], *, rows: int = 50_000, seed: int = 0, bins: int = stats.BINS
) -> Reference:
    """A run directory, a checkpoint or an artifact (see the module doc) -> :class:`Reference`."""
    p = Path(path)
    if not p.exists():
        raise BadReference(
            f"{p}: no such file or folder (expected a run folder, a .ckpt or an export folder)"
        )
    if p.is_dir() and (p / "checkpoints" / "best.ckpt").is_file():
        ref = from_checkpoint(p / "checkpoints" / "best.ckpt", rows=rows, seed=seed, bins=bins, kind="run")
        metrics = p / "metrics.json"
        if metrics.is_file():
            ref.info["run_metrics"] = {
                k: v for k, v in json.loads(metrics.read_text()).get("metrics", {}).items() if "rmsle" in k
            }
        ref.path = p
        return ref
    if p.suffix == ".onnx" or (p.is_dir() and (p / "model.onnx").is_file()):
        return from_artifact(p, rows=rows, seed=seed, bins=bins)
    if p.is_file():
        return from_checkpoint(p, rows=rows, seed=seed, bins=bins)
    tree = " (a tree baseline's run: drift needs a deep model)" if (p / "model.pkl").exists() else ""
    raise BadReference(
        f"{p}: neither a training run (checkpoints/best.ckpt), a checkpoint file nor an export folder "
        f"(model.onnx){tree}"
    )
