"""Raw trip fields -> duration: the exported graph, built from a trained model and its feature spec.

:class:`RawTripModel` chains :class:`~tabxfer.export.graph.RawFeatures`, the trained network and the
inverse target transform. :func:`export_raw_graph` exports it with torch's supported (dynamo) exporter,
then edits the ONNX graph so that its inputs are what a serving team has: one 1-D tensor per raw field
(dynamic batch axis), strings for string categoricals (ONNX-ML ``LabelEncoder`` nodes hold the
vocabularies; unknown -> index 0), and outputs ``duration_s`` and ``log_duration`` (float32, ``(B,)``).

The graph is not a validator: ONNX has no way to raise an error on a value, so a NaN coordinate, a year
3000 or a latitude of 200 degrees come out as a number (or ``inf``), not as an error. Every input's
description in the artifact (:class:`RawInput`: valid range, whether NaN means missing, the vocabulary)
is what :mod:`tabxfer.export.serve` checks before it runs the graph; a serving team that calls
onnxruntime directly must check the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from torch import Tensor, nn

from tabxfer.data.quality import Validation
from tabxfer.export.graph import RawFeatures
from tabxfer.features.calendar import HOLIDAY_YEARS
from tabxfer.features.spec import FeatureSpec
from tabxfer.models.base import TabularModel

OPSET = 18  # models needing more say so (TabularModel.onnx_opset); see artifact.ONNXRUNTIME_NEEDED
ML_OPSET = 3  # ai.onnx.ml: LabelEncoder with string keys
COORDS = ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")
OUTPUTS = ("duration_s", "log_duration")


def year_seconds(first: int, last: int) -> tuple[int, int]:
    """``pickup_ts`` of ``first``-01-01 00:00:00 and of ``last``-12-31 23:59:59."""
    day0 = dt.datetime(1970, 1, 1)
    return (
        int((dt.datetime(first, 1, 1) - day0).total_seconds()),
        int((dt.datetime(last + 1, 1, 1) - day0).total_seconds()) - 1,
    )


def loader_ranges(validation: Validation) -> dict[str, tuple[float, float]]:
    """What the data loaders keep (:class:`~tabxfer.data.quality.Validation`): passenger counts, and
    pickup years (where this version of the loaders has the rule) within the years the graph's calendar
    is right for (:data:`~tabxfer.features.calendar.HOLIDAY_YEARS`: its holiday table)."""
    first = max(getattr(validation, "min_year", HOLIDAY_YEARS[0]), HOLIDAY_YEARS[0])
    last = min(getattr(validation, "max_year", HOLIDAY_YEARS[1]), HOLIDAY_YEARS[1])
    return {"pickup_ts": year_seconds(first, last), "passenger_count": (0, validation.max_passengers)}


# Valid ranges (inclusive) of the raw inputs, written into every artifact's input schema: what a latitude
# and a longitude can be; for pickup time and passenger count, what the default loaders keep (an export
# takes its run's own: tabxfer.export.artifact.input_ranges). A numeric input named nowhere: no range.
RANGES: dict[str, tuple[float, float]] = {
    "pickup_lat": (-90.0, 90.0),
    "dropoff_lat": (-90.0, 90.0),
    "pickup_lon": (-180.0, 180.0),
    "dropoff_lon": (-180.0, 180.0),
    **loader_ranges(Validation()),
}


@dataclasses.dataclass(frozen=True)
class RawInput:
    """One input of the artifact: name, ONNX element type, shape, what it means, and what is valid.

    ``min``/``max``: the valid range of a numeric input (inclusive; ``None``: unbounded). ``nullable``:
    whether NaN is accepted as "missing" in a float input (``None`` in artifacts exported before the
    field existed, where it was). ``vocabulary``: the values of a string input the model learned; any
    other non-empty value reaches the model as "unknown". Artifacts exported before these fields existed
    have none of them (``tabxfer.export.serve`` then checks finiteness only).
    """

    name: str
    dtype: str  # "int64" | "float64" | "float32" | "string"
    shape: tuple[str | int, ...]
    description: str
    min: float | None = None
    max: float | None = None
    nullable: bool | None = None
    vocabulary: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {**dataclasses.asdict(self), "shape": list(self.shape)}
        if self.vocabulary is not None:
            d["vocabulary"] = list(self.vocabulary)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RawInput:
        """The inverse of :meth:`to_dict` (also reads the schema of older artifacts)."""
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        vocab = d.get("vocabulary")
        return cls(**{**d, "shape": tuple(d["shape"]), "vocabulary": None if vocab is None else tuple(vocab)})

    def valid_values(self) -> str:
        """What is accepted, in words (for descriptions and the model card)."""
        if self.dtype == "string":
            v = self.vocabulary
            known = "?" if v is None else ", ".join(v) if len(v) <= 8 else f"{len(v)} values"
            return f'any text; learned: {known}; anything else (and "") = unknown'
        lo = "-inf" if self.min is None else _num(self.min)
        hi = "inf" if self.max is None else _num(self.max)
        rng = "finite" if self.min is None and self.max is None else f"finite, in [{lo}, {hi}]"
        if self.name == "pickup_ts" and self.min is not None and self.max is not None:
            days = [dt.datetime(1970, 1, 1) + dt.timedelta(seconds=int(t)) for t in (self.min, self.max)]
            rng += f" ({days[0]:%Y-%m-%d} .. {days[1]:%Y-%m-%d %H:%M:%S})"
        return rng + ("; NaN = missing" if self.nullable else "; required")


class RawTripModel(nn.Module):
    """``RawFeatures`` -> model -> ``(duration_s, log_duration)``. ``context`` (TFT) is the standardized
    hourly context ``(B, T, n_ctx)``; see :func:`raw_inputs` for its raw form in the artifact."""

    ctx_mean: Tensor
    ctx_std: Tensor

    def __init__(
        self,
        features: RawFeatures,
        model: nn.Module,
        *,
        y_mean: float,
        y_std: float,
        target_transform: str = "log1p",
        takes_context: bool = False,
        ctx_mean: Tensor | None = None,
        ctx_std: Tensor | None = None,
    ):
        super().__init__()
        self.features, self.model = features, model
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.target_transform = target_transform
        self.takes_context = takes_context
        self.needs_context = takes_context or features.uses_context_flat
        if self.needs_context and (ctx_mean is None or ctx_std is None):
            raise ValueError("a model that reads the context needs the context's standardization statistics")
        self.register_buffer("ctx_mean", ctx_mean if ctx_mean is not None else torch.zeros(0))
        self.register_buffer("ctx_std", ctx_std if ctx_std is not None else torch.ones(0))

    def standardize_context(self, context: Tensor) -> Tensor:
        """Raw context ``(B, T, 4)`` [trips, mean log speed] x [city, region] -> model units (NaN -> 0).
        In float64 (as the raw-field features): an fp16 variant keeps it exact, and fp16 has no IsInf."""
        context = context.double()
        count = torch.log1p(context[..., 0::2].clamp(min=0))
        raw = torch.stack([count[..., 0], context[..., 1], count[..., 1], context[..., 3]], dim=-1)
        z = (raw - self.ctx_mean.double()) / self.ctx_std.double()
        return torch.where(torch.isfinite(z), z, torch.zeros_like(z)).float()

    def forward(
        self,
        pickup_ts: Tensor,
        pickup_lat: Tensor,
        pickup_lon: Tensor,
        dropoff_lat: Tensor,
        dropoff_lon: Tensor,
        numeric: Tensor,
        codes: Tensor,
        center: Tensor,
        context: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        ctx = self.standardize_context(context) if (self.needs_context and context is not None) else None
        x_num, x_cat = self.features(
            pickup_ts, pickup_lat, pickup_lon, dropoff_lat, dropoff_lon, numeric, codes, center, ctx
        )
        z = self.model(x_num, x_cat, ctx) if self.takes_context else self.model(x_num, x_cat)
        log_d = z.reshape(-1).float() * self.y_std + self.y_mean
        dur = torch.expm1(log_d) if self.target_transform == "log1p" else log_d
        return dur, log_d


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def raw_inputs(
    features: RawFeatures,
    context_hours: int | None = None,
    *,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> list[RawInput]:
    """The artifact's inputs, in order, with their valid ranges and vocabularies.

    ``ranges``: valid ``(min, max)`` by input name, over :data:`RANGES`."""
    b = "batch"
    valid = {**RANGES, **(ranges or {})}

    def number(name: str, dtype: str, description: str, nullable: bool) -> RawInput:
        lo, hi = valid.get(name, (None, None))
        return RawInput(name, dtype, (b,), description, min=lo, max=hi, nullable=nullable)

    out = [
        number(
            "pickup_ts",
            "int64",
            "pickup time, seconds since 1970-01-01T00:00 of the local wall-clock time (local time read as UTC)",
            False,
        ),
        number("pickup_lat", "float64", "pickup latitude, degrees", False),
        number("pickup_lon", "float64", "pickup longitude, degrees", False),
        number("dropoff_lat", "float64", "dropoff latitude, degrees", False),
        number("dropoff_lon", "float64", "dropoff longitude, degrees", False),
    ]
    out += [number(n, "float64", f"{n} (NaN = missing)", True) for n in features.numeric_inputs]
    spec = features.spec
    cats = list(dict.fromkeys([*features.string_inputs, "city"]))
    for n in cats:
        desc = f'{n} ("" or an unseen value = unknown)'
        if n == "city":
            desc = "city name (sets the local frame: " + ", ".join(features.cities) + "; others = unknown)"
        # what the model's LabelEncoder maps to a known index (a city that is only a local frame: its list)
        learned = n in features.string_inputs
        vocab = [str(v) for v in spec.categorical_feature(n).values] if learned else list(features.cities)
        out.append(RawInput(n, "string", (b,), desc, vocabulary=tuple(vocab)))
    if context_hours:
        out.append(
            RawInput(
                "context",
                "float32",
                (b, context_hours, 4),
                "hourly context, oldest hour first, ending with the hour before the pickup hour: "
                "[trips completed in the city, their mean log1p(speed km/h), the same two for the pickup's "
                "region]; NaN = unknown (see context.py)",
                nullable=True,
            )
        )
    return out


def _example_args(model: RawTripModel, n: int) -> tuple[Tensor, ...]:
    f = model.features
    g = torch.Generator().manual_seed(0)
    args: list[Tensor] = [
        torch.full((n,), 1_456_000_000, dtype=torch.long),
        *[torch.randn(n, generator=g, dtype=torch.float64) for _ in COORDS],
        torch.randn(n, len(f.numeric_inputs), generator=g, dtype=torch.float64),
        torch.ones(n, len(f.string_inputs), dtype=torch.long),
        torch.zeros(n, dtype=torch.long),
    ]
    if model.needs_context:
        args.append(torch.randn(n, f.cfg.context_hours, 4, generator=g))
    return tuple(args)


def export_raw_graph(model: RawTripModel, spec: FeatureSpec, path: str | Path) -> onnx.ModelProto:
    """Export ``model`` (eval mode) to an ONNX model taking raw fields (see the module docstring)."""
    model = model.eval()
    f = model.features
    args = _example_args(model, 5)
    names = ["pickup_ts", *COORDS, "__numeric", "__codes", "__center"]
    if model.needs_context:
        names.append("context")
    batch = torch.export.Dim("batch", min=1)
    shapes = tuple({0: batch} for _ in args)
    exporting = model.model.exporting() if isinstance(model.model, TabularModel) else contextlib.nullcontext()
    opset = max(OPSET, getattr(model.model, "onnx_opset", 0))
    with warnings.catch_warnings(), torch.no_grad(), exporting:
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(
            model,
            args,
            dynamo=True,
            input_names=names,
            output_names=list(OUTPUTS),
            dynamic_shapes=shapes,
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    assert prog is not None
    proto = prog.model_proto
    _raw_field_inputs(proto, f, spec, context_hours=f.cfg.context_hours if model.needs_context else None)
    fold_layout_constants(proto)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))
    return proto


# ops that only move or reshape values: folding them changes no number
LAYOUT_OPS = ("Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Identity")


def fold_layout_constants(proto: onnx.ModelProto) -> int:
    """Replace layout ops (:data:`LAYOUT_OPS`) whose inputs are all constants by initializers, in place;
    returns the number of nodes folded. The exporter's own folding leaves large tensors alone, so an LSTM's
    ``W``/``R`` arrive as ``Unsqueeze(Concat(Slice(weight)))`` (PyTorch's gate order ifgo to ONNX's iofc):
    onnxruntime folds them when a session starts, but its quantizer only quantizes weights that are
    initializers, and would leave the LSTM in float."""
    g = proto.graph
    const = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    folded: list[onnx.NodeProto] = []
    for node in g.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":  # (value_ints etc.: not folded)
            const[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type in LAYOUT_OPS and all(i in const for i in node.input if i):
            outs = ReferenceEvaluator(node).run(None, {i: const[i] for i in node.input if i})
            for name, value in zip(node.output, outs, strict=True):
                const[name] = value
                g.initializer.append(numpy_helper.from_array(value, name))
            folded.append(node)
    for node in folded:
        g.node.remove(node)
    used = _names_read(g)
    for node in [n for n in g.node if n.op_type == "Constant" and n.output[0] not in used]:
        g.node.remove(node)  # read only by what was folded
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    return len(folded)


def _names_read(g: onnx.GraphProto) -> set[str]:
    """Every tensor name that a node of ``g`` or of its subgraphs (``If``/``Loop`` bodies) reads."""
    out = {o.name for o in g.output}
    for n in g.node:
        out.update(n.input)
        for a in n.attribute:
            for sub in (a.g, *a.graphs):
                out |= _names_read(sub)
    return out


def _raw_field_inputs(
    proto: onnx.ModelProto, f: RawFeatures, spec: FeatureSpec, context_hours: int | None
) -> None:
    """Replace the packed inputs (``__numeric``, ``__codes``, ``__center``) by one input per raw field."""
    g = proto.graph
    b = "batch"
    # the exporter's value_info (initializers included) goes stale once tools rewrite weights (the
    # quantizer transposes Gemm weights); shapes are re-inferred on load
    g.ClearField("value_info")
    packed = {"__numeric", "__codes", "__center"}
    kept = [i for i in g.input if i.name not in packed]
    for i in kept:  # name the dynamic batch axis the same everywhere
        i.type.tensor_type.shape.dim[0].dim_param = b
    nodes: list[onnx.NodeProto] = []
    new_inputs: list[onnx.ValueInfoProto] = []
    axes = helper.make_tensor("__axes1", TensorProto.INT64, [1], [1])
    g.initializer.append(axes)

    def column(name: str, elem: int) -> str:
        new_inputs.append(helper.make_tensor_value_info(name, elem, [b]))
        nodes.append(helper.make_node("Unsqueeze", [name, "__axes1"], [f"{name}__col"]))
        return f"{name}__col"

    # numeric fields: (B,) float64 each -> (B, k)
    cols = [column(n, TensorProto.DOUBLE) for n in f.numeric_inputs]
    if cols:
        nodes.append(helper.make_node("Concat", cols, ["__numeric"], axis=1))
    else:
        nodes += _empty_columns("__numeric", TensorProto.DOUBLE, "pickup_lat")
    # string fields -> vocabulary index (LabelEncoder), (B, m) int64
    strings = list(dict.fromkeys([*f.string_inputs, "city"]))
    for n in strings:
        new_inputs.append(helper.make_tensor_value_info(n, TensorProto.STRING, [b]))
    idx_cols = []
    for n in f.string_inputs:
        feat = spec.categorical_feature(n)
        nodes.append(_label_encoder(n, f"{n}__idx", [str(v) for v in feat.values], 1, 0))
        nodes.append(helper.make_node("Unsqueeze", [f"{n}__idx", "__axes1"], [f"{n}__idxcol"]))
        idx_cols.append(f"{n}__idxcol")
    if idx_cols:
        nodes.append(helper.make_node("Concat", idx_cols, ["__codes"], axis=1))
    else:
        nodes += _empty_columns("__codes", TensorProto.INT64, "pickup_lat")
    nodes.append(_label_encoder("city", "__center", f.cities, 0, -1))

    by_name = {i.name: i for i in [*kept, *new_inputs]}
    wanted = ["pickup_ts", *COORDS, *f.numeric_inputs, *strings]
    if context_hours:
        wanted.append("context")
    g.ClearField("input")
    g.input.extend([by_name[n] for n in wanted])
    old = list(g.node)
    g.ClearField("node")
    g.node.extend([*nodes, *old])
    for o in g.output:
        o.type.tensor_type.shape.dim[0].dim_param = b
    if not any(op.domain == "ai.onnx.ml" for op in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))


def _label_encoder(src: str, dst: str, keys: list[str], first: int, default: int) -> onnx.NodeProto:
    """String -> int64: ``keys[i]`` -> ``first + i``; anything else -> ``default``."""
    return helper.make_node(
        "LabelEncoder",
        [src],
        [dst],
        domain="ai.onnx.ml",
        keys_strings=keys or ["\x00never"],
        values_int64s=list(range(first, first + len(keys))) or [default],
        default_int64=default,
    )


def _empty_columns(dst: str, elem: int, like: str) -> list[onnx.NodeProto]:
    """A ``(B, 0)`` tensor (no columns of this kind), ``B`` taken from input ``like``."""
    return [
        helper.make_node("Shape", [like], [f"{dst}__b"]),
        helper.make_node("Constant", [], [f"{dst}__zero"], value_ints=[0]),
        helper.make_node("Concat", [f"{dst}__b", f"{dst}__zero"], [f"{dst}__shape"], axis=0),
        helper.make_node(
            "ConstantOfShape", [f"{dst}__shape"], [dst], value=helper.make_tensor("v", elem, [1], [0])
        ),
    ]
