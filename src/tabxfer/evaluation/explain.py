"""Explanations of a trained model: which input features its predictions rest on.

Every function takes a trained :class:`~tabxfer.training.module.TabularRegressor` (``tabxfer.load(ckpt)``)
and the model inputs of some rows, as the tensor cache holds them (:func:`split_inputs` forms them the way
training batches are formed, the TFT context sequence included):

- :func:`permutation_importance`: any model. The RMSLE increase when one feature column is shuffled across
  rows (Breiman 2001): the generic, model-agnostic explanation, measured on held-out labels.
- :func:`tabnet_masks`, :func:`tabnet_importance`: TabNet's own attention masks and the paper's aggregate
  importance (Arik & Pfister 2021, section 3: masks weighted by each step's decision magnitude).
- :func:`tft_interpretation`: the Temporal Fusion Transformer's variable-selection weights (static and
  temporal) and its attention over the past hours (Lim et al. 2021, section 7).
- :func:`feature_importance`: one importance per feature whatever the model (TabNet: masks, TFT: static
  selection weights, others: permutation); :func:`importance_method` names the one it uses.

Features are named and ordered as the models read them (:func:`feature_names`): the spec's numeric columns,
then its categorical columns. Everything runs under ``torch.no_grad()``, in eval mode (the module's mode is
restored afterwards), in batches of ``batch_size`` rows on the module's device; results are numpy / Python
floats on the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Iterator
from typing import Any, Literal, TypedDict

import numpy as np
import torch
from torch import Tensor

from tabxfer.evaluation.metrics import rmsle
from tabxfer.features.cache import TensorCache
from tabxfer.features.context import CHANNELS as CONTEXT_CHANNELS
from tabxfer.features.spec import FeatureSpec
from tabxfer.models.tabnet import TabNet
from tabxfer.models.tft import TFT

BATCH_SIZE = 8192
CONTEXT = "context"
"""The name :func:`permutation_importance` gives the whole context sequence (shuffled across rows as one)."""
Method = Literal["tabnet_masks", "tft_static_weights", "permutation"]


# --- inputs --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SplitInputs:
    """Model inputs of some rows of a cache split (CPU tensors), as training batches hold them.

    ``x_num (N, n_num)`` float32, ``x_cat (N, n_cat)`` int64, ``y (N,)`` float32 (the transformed target:
    log1p seconds), ``x_ctx (N, T, n_ctx)`` float32 or None (the cache has no context), and ``index (N,)``:
    the rows' positions in the split (ascending).
    """

    x_num: Tensor
    x_cat: Tensor
    y: Tensor
    x_ctx: Tensor | None
    index: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


def split_inputs(
    cache: TensorCache, split: str = "test", *, max_rows: int | None = None, seed: int = 0
) -> SplitInputs:
    """The inputs of a cache split, or of ``max_rows`` of its rows drawn at random (``seed``), in split order.

    The context sequence is gathered from the cache's hourly tables as
    :class:`~tabxfer.training.data.ContextGather` gathers it for training.
    """
    from tabxfer.training.data import ContextGather, to_tensors  # Lightning: imported only when needed

    arrays = cache.split(split)
    n = len(arrays)
    if max_rows is not None and max_rows < n:
        index = np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))
        arrays = arrays.subset(index)
    else:
        index = np.arange(n)
    hours = cache.context_hours
    tensors = to_tensors(arrays, torch.device("cpu"), context=hours is not None)
    x_ctx = None
    if hours is not None:
        city = torch.from_numpy(cache.table("ctx_city").astype(np.float32))
        region = torch.from_numpy(cache.table("ctx_region").astype(np.float32))
        x_ctx = ContextGather(city, region, hours)(tensors[3], tensors[4])  # (N, T, 4)
    return SplitInputs(tensors[0], tensors[1], tensors[2], x_ctx, index)


# --- helpers -------------------------------------------------------------------------------------------
def feature_spec(module: Any) -> FeatureSpec:
    """The feature spec a trained module was built on (saved in its hyper-parameters)."""
    return FeatureSpec.from_dict(module.hparams["spec"])


def feature_names(module: Any) -> list[str]:
    """Input feature names in model order: the numeric columns, then the categorical ones."""
    spec = feature_spec(module)
    return [*spec.numeric_names, *spec.categorical_names]


def uses_context(module: Any) -> bool:
    """Whether the model reads the context sequence (a TFT trained on a cache with context)."""
    embed = getattr(module.model, "embed", None)
    return bool(getattr(module, "takes_context", False)) and int(getattr(embed, "n_ctx", 0) or 0) > 0


def _device(module: Any) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def _evaluating(module: Any) -> Iterator[None]:
    """Eval mode and no gradients inside; the module's previous mode restored after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def _chunks(n: int, batch_size: int) -> Iterator[slice]:
    if batch_size < 1:
        raise ValueError(f"{batch_size=} must be >= 1")
    for s in range(0, n, batch_size):
        yield slice(s, min(s + batch_size, n))


def _check_rows(x_num: Tensor, x_cat: Tensor, *more: Tensor | None) -> int:
    n = int(x_num.shape[0])
    sizes = [int(t.shape[0]) for t in (x_cat, *more) if t is not None]
    if any(s != n for s in sizes):
        raise ValueError(f"inputs have different row counts: {[n, *sizes]}")
    if n == 0:
        raise ValueError("no rows to explain")
    return n


def _ctx(module: Any, x_ctx: Tensor | None) -> Tensor | None:
    """The context to pass: ``x_ctx`` for a model that reads it, else None (other models ignore it)."""
    if not uses_context(module):
        return None
    if x_ctx is None:
        warnings.warn(
            "the model reads a context sequence but none was given: it runs on the static features alone, "
            "which is not how it was trained (pass x_ctx, e.g. from split_inputs)",
            stacklevel=3,
        )
    return x_ctx


def _numpy(a: Tensor | np.ndarray) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)


def _model_of(module: Any, cls: type, what: str) -> Any:
    if not isinstance(module.model, cls):
        raise TypeError(
            f"{what} needs a {cls.__name__} model; this module holds {type(module.model).__name__}"
        )
    return module.model


# --- predictions ---------------------------------------------------------------------------------------
def predict_log(
    module: Any,
    x_num: Tensor,
    x_cat: Tensor,
    x_ctx: Tensor | None = None,
    *,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Predicted log1p(duration) ``(N,)`` float64 (not clipped; :func:`rmsle` clips at 0 as the metric does)."""
    n = _check_rows(x_num, x_cat, x_ctx)
    dev, ctx = _device(module), _ctx(module, x_ctx)
    out = []
    with _evaluating(module):
        for s in _chunks(n, batch_size):
            args = [x_num[s].to(dev), x_cat[s].to(dev).long()]
            if ctx is not None:
                args.append(ctx[s].to(dev))
            out.append(module(*args).float().cpu().numpy())  # (b,)
    return np.concatenate(out).astype(np.float64)


# --- TabNet --------------------------------------------------------------------------------------------
def tabnet_masks(module: Any, x_num: Tensor, x_cat: Tensor, *, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """TabNet's attention masks ``(n_steps, N, n_features)`` float32, one column per original feature in
    :func:`feature_names` order; every row of every step sums to 1 (sparsemax / entmax over features)."""
    model: TabNet = _model_of(module, TabNet, "tabnet_masks")
    n = _check_rows(x_num, x_cat)
    dev = _device(module)
    steps: list[list[np.ndarray]] = []
    with _evaluating(module):
        for s in _chunks(n, batch_size):
            _, masks = model.explain(x_num[s].to(dev), x_cat[s].to(dev).long())  # {step: (b, F)}
            if not steps:
                steps = [[] for _ in masks]
            for k, m in masks.items():
                steps[k].append(m.float().cpu().numpy())
    return np.stack([np.concatenate(parts) for parts in steps])  # (n_steps, N, F)


def tabnet_importance(
    module: Any,
    x_num: Tensor,
    x_cat: Tensor,
    *,
    per_row: bool = False,
    batch_size: int = BATCH_SIZE,
) -> dict[str, float]:
    """TabNet's aggregate feature importance over the rows, normalized to sum to 1.

    Per row, each step's mask is weighted by that step's decision magnitude ``eta = sum(ReLU(d_step))``
    and the steps are summed (the paper's ``M_agg`` before its normalization). Then, as pytorch-tabnet's
    ``feature_importances_``, these are summed over rows and normalized; ``per_row=True`` instead
    normalizes each row (the paper's ``M_agg``) and averages, so every row counts the same.
    """
    model: TabNet = _model_of(module, TabNet, "tabnet_importance")
    n = _check_rows(x_num, x_cat)
    dev = _device(module)
    total = torch.zeros(model.n_features, dtype=torch.float64)
    with _evaluating(module):
        for s in _chunks(n, batch_size):
            imp, _ = model.explain(x_num[s].to(dev), x_cat[s].to(dev).long(), normalize=per_row)  # (b, F)
            total += imp.double().sum(0).cpu()
    z = float(total.sum())
    values = (total / z if z > 0 else torch.full_like(total, 1.0 / len(total))).tolist()
    return dict(zip(feature_names(module), values, strict=True))


# --- TFT -----------------------------------------------------------------------------------------------
class TFTWeights(TypedDict):
    """Mean TFT interpretation weights over rows (see :func:`tft_interpretation`)."""

    static: dict[str, float]  # feature -> mean static selection weight; sums to 1
    temporal: np.ndarray | None  # (T, n_ctx) mean temporal selection weights (each step sums to 1)
    channels: list[str] | None  # the n_ctx context channel names
    attention: np.ndarray  # (T + 1,) mean attention of the prediction over the positions; sums to 1
    positions: list[str]  # "-24h" ... "-1h", "now" (just "now" without context)


def tft_interpretation(
    module: Any,
    x_num: Tensor,
    x_cat: Tensor,
    x_ctx: Tensor | None = None,
    *,
    batch_size: int = BATCH_SIZE,
) -> TFTWeights:
    """Mean variable-selection and attention weights of a TFT over the rows.

    ``static``: the static variable-selection softmax per feature; ``temporal`` (with a context the model
    reads): the temporal selection softmax per context hour and channel, oldest hour first; ``attention``:
    the prediction step's attention over the past hours and itself (averaged over heads, as the paper's
    interpretable attention).
    """
    model: TFT = _model_of(module, TFT, "tft_interpretation")
    ctx = _ctx(module, x_ctx)
    n = _check_rows(x_num, x_cat, ctx)
    dev = _device(module)
    sums: dict[str, Tensor] = {}
    with _evaluating(module):
        for s in _chunks(n, batch_size):
            out = model.interpret(
                x_num[s].to(dev), x_cat[s].to(dev).long(), None if ctx is None else ctx[s].to(dev)
            )
            parts = {"static": out.static_weights, "attention": out.attention}  # (b, F), (b, L)
            if out.temporal_weights is not None:
                parts["temporal"] = out.temporal_weights  # (b, T, n_ctx)
            for k, v in parts.items():
                total = v.double().sum(0).cpu()
                sums[k] = sums[k] + total if k in sums else total
    static = (sums["static"] / n).tolist()
    temporal = (sums["temporal"] / n).numpy() if "temporal" in sums else None
    attention = (sums["attention"] / n).numpy()  # (L,)
    channels = None
    if temporal is not None:
        n_ctx = temporal.shape[1]
        channels = (
            list(CONTEXT_CHANNELS) if n_ctx == len(CONTEXT_CHANNELS) else [f"ctx{i}" for i in range(n_ctx)]
        )
    past = len(attention) - 1
    return TFTWeights(
        static=dict(zip(feature_names(module), static, strict=True)),
        temporal=temporal,
        channels=channels,
        attention=attention,
        positions=[f"{k - past}h" for k in range(past)] + ["now"],
    )


# --- any model -----------------------------------------------------------------------------------------
def permutation_importance(
    module: Any,
    x_num: Tensor,
    x_cat: Tensor,
    y: Tensor | np.ndarray,
    x_ctx: Tensor | None = None,
    *,
    n_repeats: int = 1,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> dict[str, float]:
    """RMSLE increase when one feature column is shuffled across the rows, mean over ``n_repeats`` shuffles.

    ``y`` is the transformed target (log1p seconds, as the cache holds it); unlabeled rows are dropped
    first. With a context the model reads, the whole sequence is also shuffled as one unit, reported as
    :data:`CONTEXT`. Values are in RMSLE units (0: the model ignores the feature; they can be slightly
    negative by chance) and are not normalized. Each (feature, repeat) uses its own permutation, drawn
    from ``(seed, feature index, repeat)``, so results do not depend on the order features are tried in.
    """
    if n_repeats < 1:
        raise ValueError(f"{n_repeats=} must be >= 1")
    ctx = _ctx(module, x_ctx)
    y_np = _numpy(y).astype(np.float64)
    if _check_rows(x_num, x_cat, ctx) != len(y_np):
        raise ValueError(f"inputs have {len(x_num)} rows but y has {len(y_np)}")
    keep = np.flatnonzero(np.isfinite(y_np))
    if keep.size == 0:
        raise ValueError("no labeled rows: permutation importance needs the targets")
    idx = torch.from_numpy(keep)
    xn, xc = x_num[idx].clone(), x_cat[idx].long().clone()
    xx = None if ctx is None else ctx[idx]
    y_np = y_np[keep]
    n = len(keep)
    base = rmsle(predict_log(module, xn, xc, xx, batch_size=batch_size), y_np)
    names = feature_names(module)
    n_num = xn.shape[1]
    columns: list[tuple[str, str, int]] = [("num", name, j) for j, name in enumerate(names[:n_num])]
    columns += [("cat", name, j) for j, name in enumerate(names[n_num:])]
    if xx is not None:
        columns.append(("ctx", CONTEXT, 0))
    out: dict[str, float] = {}
    for f, (kind, name, j) in enumerate(columns):
        deltas = []
        for r in range(n_repeats):
            perm = torch.from_numpy(np.random.default_rng([seed, f, r]).permutation(n))
            if kind == "num":
                col = xn[:, j].clone()
                xn[:, j] = col[perm]
                pred = predict_log(module, xn, xc, xx, batch_size=batch_size)
                xn[:, j] = col
            elif kind == "cat":
                col = xc[:, j].clone()
                xc[:, j] = col[perm]
                pred = predict_log(module, xn, xc, xx, batch_size=batch_size)
                xc[:, j] = col
            else:
                assert xx is not None
                pred = predict_log(module, xn, xc, xx[perm], batch_size=batch_size)
            deltas.append(rmsle(pred, y_np) - base)
        out[name] = float(np.mean(deltas))
    return out


def importance_method(module: Any) -> Method:
    """What :func:`feature_importance` uses for this module's model."""
    if isinstance(module.model, TabNet):
        return "tabnet_masks"
    if isinstance(module.model, TFT):
        return "tft_static_weights"
    return "permutation"


def feature_importance(
    module: Any,
    x_num: Tensor,
    x_cat: Tensor,
    y: Tensor | np.ndarray | None = None,
    x_ctx: Tensor | None = None,
    *,
    n_repeats: int = 1,
    seed: int = 0,
    batch_size: int = BATCH_SIZE,
) -> dict[str, float]:
    """One importance per feature, by the model's own mechanism where it has one (:func:`importance_method`):
    TabNet -> :func:`tabnet_importance`, TFT -> the static weights of :func:`tft_interpretation` (both
    sum to 1), any other model -> :func:`permutation_importance` (RMSLE increases; needs ``y``)."""
    method = importance_method(module)
    if method == "tabnet_masks":
        return tabnet_importance(module, x_num, x_cat, batch_size=batch_size)
    if method == "tft_static_weights":
        return tft_interpretation(module, x_num, x_cat, x_ctx, batch_size=batch_size)["static"]
    if y is None:
        raise ValueError(f"{type(module.model).__name__} has no built-in importance: permutation needs y")
    return permutation_importance(
        module, x_num, x_cat, y, x_ctx, n_repeats=n_repeats, seed=seed, batch_size=batch_size
    )
