"""From a pretrained checkpoint to a model ready for fine-tuning on a (possibly wider) target schema.

``python train.py init_from=<pretrained.ckpt> finetune=<strategy> data=<target>``:

1. :func:`load_pretrained` reads the checkpoint with :func:`tabxfer.training.checkpoint.read` (complete
   archive, ``weights_only``: no pickled code):
   model config, weights, feature spec and the pretraining run's description (its corpus).
2. The target's tensor cache is built *anchored* to that spec (:func:`tabxfer.features.pipeline.anchor`):
   shared columns keep the pretraining scalers and vocabularies, the target's own columns are appended,
   columns the target lacks arrive as missing.
3. :func:`adapt` rebuilds the pretrained model, loads its weights and grows it for the appended columns
   (:meth:`~tabxfer.models.base.TabularModel.add_features`), giving the model config that rebuilds the
   grown model (what the fine-tuned checkpoint stores).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import torch

from tabxfer.features.spec import FeatureSpec
from tabxfer.models.base import TabularModel
from tabxfer.training import checkpoint


@dataclasses.dataclass(frozen=True)
class Pretrained:
    path: Path
    model_cfg: dict[str, Any]
    state: dict[str, torch.Tensor]  # the model's weights (``model.`` prefix removed)
    spec: FeatureSpec
    meta: Mapping[str, Any]  # config, data fingerprint, corpus description of the pretraining run
    objective: Mapping[str, Any]


def load_pretrained(path: str | os.PathLike[str]) -> Pretrained:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"init_from={p}: no such checkpoint file")
    try:
        ckpt = checkpoint.read(p)  # complete archive, weights_only: truncated or unsafe files are refused
        hp = checkpoint.hyper_parameters(ckpt, p)
    except checkpoint.CheckpointError as e:
        raise checkpoint.CheckpointError(f"init_from={e}") from None
    state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return Pretrained(
        path=p,
        model_cfg=dict(hp["model_cfg"]),
        state=state,
        spec=FeatureSpec.from_dict(hp["spec"]),
        meta=hp.get("meta") or {},
        objective=hp.get("objective") or {},
    )


def added_columns(old: FeatureSpec, new: FeatureSpec) -> tuple[int, list[int]]:
    """``(n_num_added, cardinalities_added)`` of ``new`` over ``old``; ``new`` must extend ``old``."""
    for kind, a, b in (
        ("numeric", old.numeric_names, new.numeric_names),
        ("categorical", old.categorical_names, new.categorical_names),
    ):
        if b[: len(a)] != a:
            raise ValueError(
                f"the target's {kind} features do not start with the pretrained ones: build the target "
                f"cache anchored to the pretrained spec. pretrained={a} target={b}"
            )
    changed = [
        f.name
        for f, g in zip(old.categorical, new.categorical, strict=False)
        if f.cardinality != g.cardinality
    ]
    if changed:
        raise ValueError(f"categorical vocabularies differ from the pretrained spec: {changed}")
    return new.n_numeric - old.n_numeric, new.cardinalities[old.n_categorical :]


def adapt(
    pre: Pretrained, spec: FeatureSpec, *, new_head: bool = False
) -> tuple[TabularModel, dict[str, Any]]:
    """The pretrained model with its weights, grown for ``spec``'s appended columns; and its config."""
    model: TabularModel = hydra.utils.instantiate(pre.model_cfg)
    model.load_state_dict(pre.state)
    n_num, cards = added_columns(pre.spec, spec)
    if n_num or cards:
        model.add_features(n_num=n_num, cardinalities=cards)
    cfg = dict(pre.model_cfg)
    sizes = {
        "n_num": spec.n_numeric,
        "cardinalities": spec.cardinalities,
        "cat_names": spec.categorical_names,
        "num_names": spec.numeric_names,
    }
    cfg.update({k: v for k, v in sizes.items() if k in cfg})
    if new_head and model.head is not None:  # the head as a fresh model of this config initializes it
        fresh: TabularModel = hydra.utils.instantiate(cfg)
        assert fresh.head is not None
        model.head.load_state_dict(fresh.head.state_dict())
    return model, cfg
