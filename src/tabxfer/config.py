"""Config helpers: checking a config node against its dataclass, checking a whole composed run config
before anything runs (:func:`validate`), and the OmegaConf resolvers that tabxfer's configs use
(registered on import of :mod:`tabxfer.train`)."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import pathlib
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


def check_options(cls: Any, cfg: Mapping[str, Any], section: str) -> None:
    """Fail fast, naming the keys, when a config node has keys that dataclass ``cls`` does not.

    >>> @dataclasses.dataclass
    ... class C:
    ...     a: int = 0
    >>> check_options(C, {"b": 1}, "demo")
    Traceback (most recent call last):
    ValueError: unknown demo option(s) ['b']; expected ['a']
    >>> check_options(C, {"aa": 1}, "demo")
    Traceback (most recent call last):
    ValueError: unknown demo option(s) ['aa']; expected ['a'] (did you mean 'a' for 'aa'?)
    """
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(cfg) - known
    if unknown:
        close = [(difflib.get_close_matches(k, known, n=1, cutoff=0.6), k) for k in sorted(unknown)]
        hints = ", ".join(f"{c[0]!r} for {k!r}" for c, k in close if c)
        tail = f" (did you mean {hints}?)" if hints else ""
        raise ValueError(f"unknown {section} option(s) {sorted(unknown)}; expected {sorted(known)}{tail}")


def monitor_for(supervised_weight: float) -> str:
    """The metric that checkpoints and early stopping follow: ``val/rmsle`` when the run learns the
    duration, else (self-supervised pretraining) the validation objective ``val/loss``.

    >>> monitor_for(1.0), monitor_for(0.0)
    ('val/rmsle', 'val/loss')
    """
    return "val/rmsle" if float(supervised_weight) > 0 else "val/loss"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("tabxfer.monitor"):
        OmegaConf.register_new_resolver("tabxfer.monitor", monitor_for)


# --- validate: the whole run config, before any data is prepared or any model built -----------------


class ConfigError(ValueError):
    """A run config with mistakes; ``problems`` holds one line per mistake, each naming its dotted key."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in the run config:\n{lines}")


class Spec:
    """A node spec or a value annotation of tabxfer's own; ``a | b`` is either."""

    def __or__(self, other: Any) -> AnyOf:
        return AnyOf((self, other))

    def __ror__(self, other: Any) -> AnyOf:
        return AnyOf((other, self))


@dataclasses.dataclass(frozen=True)
class AnyOf(Spec):
    """A union that may hold tabxfer's specs (``typing.Union`` takes types only)."""

    members: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class OneOf(Spec):
    """A value annotation: one of ``choices`` (a ``Literal`` whose choices are known at run time)."""

    choices: tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Bounded(Spec):
    """A value annotation: a ``kind`` (int or float) in ``[lo, hi]``; ``lo_open``/``hi_open``: ends excluded."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, v: float) -> bool:
        lo_ok = self.lo is None or (v > self.lo if self.lo_open else v >= self.lo)
        return lo_ok and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi))

    def describe(self) -> str:
        ends = [f"{'>' if self.lo_open else '>='} {self.lo:g}"] if self.lo is not None else []
        ends += [f"{'<' if self.hi_open else '<='} {self.hi:g}"] if self.hi is not None else []
        return f"{_describe(self.kind)} {' and '.join(ends)}"


@dataclasses.dataclass(frozen=True)
class Schema(Spec):
    """A node of the project's own (no ``_target_``): its keys' specs; ``required`` keys; ``extra``: the
    spec of any other key (``None``: other keys are unknown); ``check``: a check of the whole node."""

    keys: Mapping[str, Any]
    required: frozenset[str] = frozenset()
    extra: Any = None
    check: Callable[[DictConfig, list[str]], None] | None = None


@dataclasses.dataclass(frozen=True)
class Target(Spec):
    """A Hydra ``_target_`` node, checked against the target's constructor; ``filled``: required arguments
    that the training code fills in."""

    filled: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Options(Spec):
    """A node read by an options dataclass with an ``of`` classmethod (``Objective``, ``SplitConfig``, ...):
    keys and types by its fields (``override``: sharper annotations), then the dataclass's own checks."""

    cls: Any
    override: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class MapOf(Spec):
    """A mapping of free names to nodes of one spec (``callbacks``, ``logger``, ``data.sources``)."""

    spec: Any


SKIP = Schema({}, extra=Any)  # a node not looked into (Hydra's own ``hydra`` node)
# Arguments that tabxfer.train.model_config fills in from the feature spec and the tensor cache.
MODEL_FILLED = frozenset({"n_num", "cardinalities", "d_out", "cat_names", "num_names", "n_ctx", "ctx_len"})
NODES = (Schema, Target, Options, MapOf)
PATHS = (pathlib.PurePath, os.PathLike)
SEQUENCES = (list, tuple, set, frozenset, Sequence, MutableSequence, Iterable, Collection)
MAPPINGS = (dict, Mapping, MutableMapping)
SPLIT_KINDS = ("random", "time", "column")  # tabxfer.features.splits.SplitConfig.kind
_UNSET = object()  # a value that is ??? or does not resolve (already reported)


def run_schema() -> Schema:
    """The schema of a composed ``configs/train.yaml`` (a new top-level key needs a line here)."""
    from tabxfer.features.pipeline import FeatureConfig
    from tabxfer.features.splits import SplitConfig
    from tabxfer.models.base import PARTS
    from tabxfer.training import module
    from tabxfer.training.data import CacheDataModule
    from tabxfer.training.objectives import Objective

    parts, count, fraction = OneOf(tuple(PARTS)), Bounded(int, lo=1), Bounded(float, 0, 1, hi_open=True)
    datamodule = {
        k: v for k, v in _params(CacheDataModule)[0].items() if k not in ("cache", "seed", "weights")
    }
    datamodule |= {"batch_size": count, "eval_batch_size": count, "block_rows": count}
    datamodule |= {"train_limit": count | None, "chunk_rows": count | None}
    nonfinite = getattr(module, "NonFinite", None)
    keys: dict[str, Any] = {
        "task_name": str,
        "seed": int | None,
        "ckpt_path": str | None,
        "init_from": str | None,
        "monitor": str,
        "tags": Sequence[str],
        "pretrain_data": str,  # configs/experiment/transfer/*_finetune: parts of init_from
        "pretrain_objective": str,
        "datamodule": Schema(datamodule),
        "report": Schema(
            {"enabled": bool, "max_rows": count, "importance_rows": count, "export_onnx": str | None},
            check=_check_export,
        )
        | None,
        "optimizer": Schema(
            {
                "lr": Bounded(float, lo=0, lo_open=True),
                "weight_decay": Bounded(float, lo=0),
                "betas": tuple[fraction, fraction],  # type: ignore[valid-type]
            }
        ),
        "scheduler": Schema({"name": OneOf(("cosine", "constant")), "warmup_frac": fraction}),
        "data": Schema(
            {
                "name": str,
                "month": str,  # configs/data/nyc_green.yaml: part of name and paths
                "sources": MapOf(Target()),
                "weights": Mapping[str, Bounded(float, lo=0)] | None,  # type: ignore[misc]
                "features": Options(FeatureConfig) | None,
                "split": Options(SplitConfig, {"kind": OneOf(SPLIT_KINDS), "val": fraction, "test": fraction})
                | None,
            },
            required=frozenset({"name", "sources"}),
            check=_check_weights,
        ),
        "model": Target(MODEL_FILLED),
        "trainer": Target(),
        "callbacks": MapOf(Target()) | None,
        "logger": MapOf(Target()) | None,
        "objective": Options(Objective) | None,
        "finetune": Options(
            module.Finetune,
            {
                "freeze": Sequence[parts],  # type: ignore[valid-type]
                "lr_mult": Mapping[parts, Bounded(float, lo=0)],  # type: ignore[valid-type,misc]
                "unfreeze": Mapping[Any, Sequence[parts]],  # type: ignore[valid-type]
            },
        )
        | None,
        "nonfinite": (Options(nonfinite) if nonfinite is not None else SKIP) | None,
        "paths": Schema({}, extra=str | None),  # free names: interpolation helpers
        "hydra": SKIP,
    }
    required = frozenset({"model", "trainer", "data", "paths", "datamodule", "optimizer", "scheduler"})
    return Schema(keys, required=required)


def validate(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Check a composed run config (``configs/train.yaml``) before any data is prepared or any model is
    built; raise one :class:`ConfigError` listing every problem, each with its dotted key, the value, what
    was expected and, for a misspelled key or choice, the closest valid one.

    Checked: ``_target_`` nodes (model, trainer, callbacks, loggers, data sources) against the target's
    constructor (unknown keys unless it takes ``**kwargs``, missing required arguments, values against
    simple annotations); the project's own nodes against :func:`run_schema`; ``???`` anywhere; and
    interpolations that do not resolve. Keys starting with ``_`` (Hydra's, ``model._lr``) are skipped.

    >>> try:
    ...     validate({"model": {"_target_": "tabxfer.models.mlp.MLP", "d_blok": 8, "dropout": "high"}})
    ... except ConfigError as e:
    ...     print("\\n".join(p for p in e.problems if p.startswith("model")))
    model.d_blok: unknown key for tabxfer.models.mlp.MLP (set to 8); did you mean model.d_block?
    model.dropout: expected a float, got 'high' (str)
    """
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    problems: list[str] = []
    _check_node(cfg, "", run_schema(), problems)
    if problems:
        raise ConfigError(problems)


def _check_weights(data: DictConfig, problems: list[str]) -> None:
    """``data.weights`` names sources only (CacheDataModule checks it too, but after the data is prepared)."""
    weights, sources = data.get("weights"), data.get("sources")
    if isinstance(weights, DictConfig) and isinstance(sources, DictConfig):
        for k in sorted(set(_keys(weights)) - set(_keys(sources))):
            msg = _unknown("data.weights", k, _raw(weights, k), _keys(sources))
            problems.append(msg.replace("unknown key", "not a source of data.sources"))


def _check_export(report: DictConfig, problems: list[str]) -> None:
    value = report.get("export_onnx")
    if isinstance(value, str) and value:
        from tabxfer.export.quantize import parse

        try:
            parse(value)
        except ValueError as e:
            problems.append(f"report.export_onnx: {e} (got {value!r})")


# --- walking the config ---------------------------------------------------------------------------------


def _join(path: str, key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _keys(node: DictConfig) -> list[str]:
    return [str(k) for k in node if not str(k).startswith("_")]


def _raw(node: DictConfig | ListConfig, key: Any) -> Any:
    """The child as written (an interpolation unresolved)."""
    child = node._get_node(key)
    return child._value() if child is not None else None  # type: ignore[union-attr]


def _child(node: DictConfig | ListConfig, key: Any, path: str, problems: list[str]) -> Any:
    """The child's resolved value; ``_UNSET`` (and a problem) when it is ``???`` or does not resolve."""
    if OmegaConf.is_missing(node, key):
        problems.append(f"{path}: missing value (???); set it: {path}=<value>")
        return _UNSET
    try:
        return node[key]
    except Exception as e:  # an interpolation that does not resolve
        if "HydraConfig was not set" in str(e):  # composed without Hydra's runtime (tests): not judged
            return _UNSET
        first = str(e).splitlines()[0] if str(e) else ""
        problems.append(f"{path}: {_raw(node, key)} does not resolve: {type(e).__name__}: {first}")
        return _UNSET


def _unknown(path: str, key: str, value: Any, valid: Iterable[str], owner: str = "") -> str:
    valid = sorted(valid)
    msg = f"{_join(path, key)}: unknown key{f' for {owner}' if owner else ''} (set to {_show(value, kind=False)})"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return f"{msg}; did you mean {_join(path, close[0])}?"
    return f"{msg}; valid keys: {', '.join(valid) or '(none)'}"


def _show(v: Any, kind: bool = True) -> str:
    """``v`` as written, with its type when ``kind`` and it is a scalar."""
    if isinstance(v, DictConfig | ListConfig):
        v = OmegaConf.to_container(v, resolve=False)
    if v is None:
        return "null"
    return f"{v!r} ({type(v).__name__})" if kind and isinstance(v, str | int | float) else repr(v)


def _members(spec: Any) -> tuple[Any, ...] | None:
    """A union's members (``typing.Union``, ``X | Y``, :class:`AnyOf`), else ``None``."""
    if isinstance(spec, AnyOf):
        return spec.members
    if typing.get_origin(spec) in (typing.Union, types.UnionType):
        return typing.get_args(spec)
    return None


def _check_node(node: Any, path: str, spec: Any, problems: list[str]) -> None:
    """Check ``node`` (a resolved value) at dotted ``path`` against ``spec``."""
    if node is _UNSET:
        return
    members = _members(spec)
    if members is not None and any(isinstance(m, NODES) for m in members):
        if node is None and (type(None) in members or None in members):
            return
        spec = next(m for m in members if isinstance(m, NODES))
    if not isinstance(spec, NODES):
        _check_value(node, path, spec, problems)
    elif not isinstance(node, DictConfig):
        problems.append(f"{path}: expected a config node (a mapping), got {_show(node)}")
    elif isinstance(spec, Schema):
        _check_schema(node, path, spec, problems)
    elif isinstance(spec, Target):
        _check_target(node, path, spec, problems)
    elif isinstance(spec, Options):
        _check_options(node, path, spec, problems)
    else:
        for k in _keys(node):
            _check_node(_child(node, k, _join(path, k), problems), _join(path, k), spec.spec, problems)


def _check_schema(node: DictConfig, path: str, spec: Schema, problems: list[str]) -> None:
    if spec.extra is Any:
        return
    keys = _keys(node)
    problems += [f"{_join(path, k)}: required, not set" for k in sorted(spec.required - set(keys))]
    for k in keys:
        if k not in spec.keys and spec.extra is None:
            problems.append(_unknown(path, k, _raw(node, k), spec.keys))
        else:
            value = _child(node, k, _join(path, k), problems)
            _check_node(value, _join(path, k), spec.keys.get(k, spec.extra), problems)
    if spec.check is not None:
        spec.check(node, problems)


def _check_target(node: DictConfig, path: str, spec: Target, problems: list[str]) -> None:
    name = node.get("_target_")
    if not isinstance(name, str):
        problems.append(f"{_join(path, '_target_')}: required: the class to build (got {_show(name)})")
        return
    try:
        params, required, var_kw = _params(_import(name))
    except (ImportError, AttributeError) as e:
        problems.append(f"{_join(path, '_target_')}: cannot import {name!r}: {e}{_suggest_target(name)}")
        return
    except (TypeError, ValueError):  # no signature to judge against
        return
    keys = _keys(node)
    if not node.get("_partial_", False):
        missing = sorted(required - set(keys) - spec.filled)
        problems += [f"{_join(path, k)}: required by {name}, not set" for k in missing]
    for k in keys:
        if k not in params:
            if not var_kw:
                problems.append(_unknown(path, k, _raw(node, k), params, name))
            continue
        value = _child(node, k, _join(path, k), problems)
        if isinstance(value, DictConfig) and "_target_" in value:
            _check_target(value, _join(path, k), Target(), problems)
        elif value is not _UNSET:
            _check_value(value, _join(path, k), params[k], problems)


def _check_options(node: DictConfig, path: str, spec: Options, problems: list[str]) -> None:
    hints = typing.get_type_hints(spec.cls)
    fields = {f.name: spec.override.get(f.name, hints.get(f.name, Any)) for f in dataclasses.fields(spec.cls)}
    before = len(problems)
    _check_schema(node, path, Schema(fields), problems)
    if len(problems) == before and hasattr(spec.cls, "of"):  # then the dataclass's own checks (ranges, ...)
        try:
            spec.cls.of(OmegaConf.to_container(node, resolve=True))
        except (ValueError, TypeError) as e:
            problems.append(f"{path}: {e}")


# --- values against annotations --------------------------------------------------------------------------


def _check_value(v: Any, path: str, ann: Any, problems: list[str]) -> None:
    """Append a problem when ``v`` does not fit ``ann``; annotations that cannot be judged pass."""
    if v is _UNSET or not _judgeable(ann):
        return
    members = _members(ann)
    if members is not None:
        fits = [m for m in members if _fits(v, m)]
        if fits:
            _check_value(v, path, fits[0], problems)
        else:
            _mismatch(v, path, ann, [c for m in members for c in _choices(m)], problems)
        return
    if not _fits(v, ann):
        _mismatch(v, path, ann, _choices(ann), problems)
        return
    if isinstance(ann, Bounded) and not ann.holds(v):
        problems.append(f"{path}: expected {ann.describe()}, got {_show(v)}")
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(v) != len(args):
            problems.append(f"{path}: expected {_describe(ann)}, got {len(v)} item(s): {_show(v)}")
        else:
            for i, a in enumerate(args):
                _check_value(_item(v, i, path, problems), _join(path, i), a, problems)
    elif origin in SEQUENCES:
        for i in range(len(v)):
            _check_value(_item(v, i, path, problems), _join(path, i), args[0] if args else Any, problems)
    elif origin in MAPPINGS and len(args) == 2:
        for k in list(v.keys()):
            _check_value(k, f"{_join(path, k)} (the key)", args[0], problems)
            _check_value(_item(v, k, path, problems), _join(path, k), args[1], problems)


def _item(v: Any, key: Any, path: str, problems: list[str]) -> Any:
    return _child(v, key, _join(path, key), problems) if isinstance(v, DictConfig | ListConfig) else v[key]


def _mismatch(v: Any, path: str, ann: Any, choices: list[Any], problems: list[str]) -> None:
    msg = f"{path}: expected {_describe(ann)}, got {_show(v)}"
    names = [c for c in choices if isinstance(c, str)]
    close = difflib.get_close_matches(v, names, n=1, cutoff=0.5) if isinstance(v, str) else []
    problems.append(f"{msg}; did you mean {close[0]!r}?" if close else msg)


def _choices(ann: Any) -> list[Any]:
    if isinstance(ann, OneOf):
        return list(ann.choices)
    return list(typing.get_args(ann)) if typing.get_origin(ann) is typing.Literal else []


def _is_path(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, PATHS)


def _fits(v: Any, ann: Any) -> bool:
    """Whether ``v`` is of ``ann``'s kind (containers shallowly: their items are checked one by one)."""
    if not _judgeable(ann):
        return True
    if ann is type(None) or ann is None:
        return v is None
    if isinstance(ann, Bounded):
        return _fits(v, ann.kind)
    if _choices(ann):
        return any(type(v) is type(c) and v == c for c in _choices(ann))  # True is not 1, 1.0 is not 1
    if ann is bool:
        return isinstance(v, bool)
    if ann is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if ann is float:
        return isinstance(v, int | float) and not isinstance(v, bool)
    if ann is str or _is_path(ann):
        return isinstance(v, str)
    members = _members(ann)
    if members is not None:
        return any(_fits(v, m) for m in members)
    origin = typing.get_origin(ann) or ann
    if origin in SEQUENCES:
        return isinstance(v, ListConfig | list | tuple)
    return isinstance(v, DictConfig | dict)  # a mapping (the only kind left that _judgeable admits)


def _judgeable(ann: Any) -> bool:
    """Annotations a config value can be checked against: plain types, paths, unions of judgeable types,
    ``Literal``, sequences and mappings; not ``Any`` or classes such as ``Accelerator`` or ``timedelta``."""
    if ann in (int, float, bool, str, type(None), None) or isinstance(ann, OneOf | Bounded) or _is_path(ann):
        return True
    members = _members(ann)
    if members is not None:
        return all(_judgeable(m) for m in members)
    origin = typing.get_origin(ann) or ann
    return origin is typing.Literal or origin in SEQUENCES or origin in MAPPINGS


def _describe(ann: Any) -> str:
    simple = {
        int: "an int",
        float: "a float",
        bool: "a bool (true/false)",
        str: "a string",
        type(None): "null",
    }
    if isinstance(ann, Bounded):
        return ann.describe()
    if _choices(ann):
        return "one of " + ", ".join(repr(c) for c in _choices(ann))
    if ann in simple or ann is None:
        return simple[ann or type(None)]
    if _is_path(ann):
        return "a path (a string)"
    members = _members(ann)
    if members is not None:
        choices = [c for m in members for c in _choices(m)]
        rest = [_describe(m) for m in members if not _choices(m)]
        head = ["one of " + ", ".join(repr(c) for c in choices)] if choices else []
        return " or ".join(dict.fromkeys(head + rest))
    origin, args = typing.get_origin(ann) or ann, typing.get_args(ann)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    if origin in MAPPINGS:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}" if args else "a mapping"
    if origin in SEQUENCES:
        return f"a list of {_describe(args[0])}" if args else "a list"
    return "anything" if ann is Any else getattr(ann, "__name__", str(ann))


# --- constructors ----------------------------------------------------------------------------------------


def _import(name: str) -> Any:
    module, _, attr = name.rpartition(".")
    if not module:
        raise ImportError(f"{name!r} is not a dotted path (package.module.Class)")
    return getattr(importlib.import_module(module), attr)


def _suggest_target(name: str) -> str:
    """``; did you mean <a class of the same module>?`` when the module imports and has a close name."""
    module, _, attr = name.rpartition(".")
    try:
        names = [k for k, v in vars(importlib.import_module(module)).items() if isinstance(v, type)]
    except Exception:
        return ""
    close = difflib.get_close_matches(attr, names, n=1, cutoff=0.6)
    return f"; did you mean {module}.{close[0]}?" if close else ""


def _params(cls: Any) -> tuple[dict[str, Any], frozenset[str], bool]:
    """``cls``'s keyword arguments with their evaluated annotations (unevaluable ones stay strings, which
    are not judged), the required ones, and whether it takes ``**kwargs``."""
    hints = _hints(cls)
    params, required, var_kw = {}, set(), False
    for p in inspect.signature(cls).parameters.values():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind not in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY):
            params[p.name] = hints.get(p.name, p.annotation)
            if p.default is p.empty:
                required.add(p.name)
    return params, frozenset(required), var_kw


def _hints(cls: Any) -> dict[str, Any]:
    """The constructor's annotations, evaluated as far as they evaluate."""
    init = inspect.unwrap(typing.cast(Any, cls).__init__) if isinstance(cls, type) else cls
    for owner in ([cls] if dataclasses.is_dataclass(cls) else []) + [init]:
        try:  # a dataclass's fields each evaluate in the module that declares them
            return typing.get_type_hints(owner)
        except Exception:
            pass
    scope = getattr(init, "__globals__", {})
    out = {}
    for name, ann in getattr(init, "__annotations__", {}).items():
        try:
            out[name] = eval(ann, scope) if isinstance(ann, str) else ann
        except Exception:
            out[name] = ann
    return out
