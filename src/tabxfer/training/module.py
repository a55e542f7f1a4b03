"""The one LightningModule for every model: loss, RMSLE metrics, optimizer and scheduler.

The model predicts the *standardized* transformed target ``z = (log1p(duration) - mean) / std`` (the
feature spec's training statistics), which keeps every model's output layer well scaled. Metrics are
reported in seconds space: ``RMSLE = sqrt(mean((log1p(pred_s) - log1p(true_s))^2))`` with
``pred_s = max(expm1(pred_log), 0)``, i.e. the RMSE of ``max(pred_log, 0)`` against ``log1p(true_s)``.

Metric names (the optimized one, ``val/rmsle``, is named once: :data:`MONITOR`): ``train/loss``,
``train/rmsle``, ``val/rmsle``, ``val/rmsle_best``, ``test/rmsle``, and ``val/loss`` (the whole objective
on the validation rows, what self-supervised pretraining monitors). Pretraining objectives
(:mod:`tabxfer.training.objectives`) and fine-tuning strategies (:class:`Finetune`: frozen parts,
per-part learning-rate multipliers, gradual unfreezing) are options of the same module.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import random
from collections.abc import Mapping
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as L
import torch
from torch import Tensor, nn

from tabxfer.config import check_options
from tabxfer.models.base import PARTS, TabularModel
from tabxfer.training.objectives import Objective, PretrainHeads, corrupt_from_marginals, info_nce, mask_cells

MONITOR = "val/rmsle"
MONITOR_MODE = "min"
log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """A non-finite loss or gradient in training (see :class:`NonFinite`)."""


@dataclasses.dataclass(frozen=True)
class NonFinite:
    """What a non-finite (NaN/inf) loss or gradient does. Hydra: ``nonfinite.*`` (configs/train.yaml).

    Args:
        action: ``raise``: stop the run with the step, epoch, batch, which loss terms and which inputs were
            non-finite, and a hint; ``skip``: drop that batch's update (counted, logged as
            ``train/skipped_batches``) and go on.
        max_skipped: with ``skip``, stop anyway (``raise``) after this many skipped batches in a run: a run
            that keeps diverging is not a few bad batches.

    The check costs one device synchronization per step (nothing on CPU). Under fp16 mixed precision the
    gradient scaler owns overflowing gradients (it skips those steps itself), so only the loss is checked.
    """

    action: str = "raise"
    max_skipped: int = 100

    def __post_init__(self) -> None:
        if self.action not in ("raise", "skip"):
            raise ValueError(f"nonfinite.action={self.action!r}: expected 'raise' or 'skip'")
        if self.max_skipped < 0:
            raise ValueError(f"nonfinite.max_skipped={self.max_skipped} must be >= 0")

    @classmethod
    def of(cls, cfg: NonFinite | Mapping[str, Any] | None) -> NonFinite:
        if cfg is None or isinstance(cfg, NonFinite):
            return cfg or cls()
        check_options(cls, cfg, "nonfinite")
        return cls(**cfg)


def rng_states() -> dict[str, Any]:
    """Every random generator a training step may draw from, as tensors and plain types (so that the
    checkpoint loads with ``weights_only``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (the global one)
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    torch.set_rng_state(states["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    restored = (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
    np.random.set_state(restored)  # noqa: NPY002 (the global generator is what is restored)
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in states["python"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in states["cuda"]])


@dataclasses.dataclass(frozen=True)
class Finetune:
    """How the parts of a pretrained model train. Hydra: ``finetune=<strategy>`` (configs/finetune/).

    Args:
        strategy: a name for logs and the study (``full``, ``linear_probe``, ...).
        freeze: parts (``embed``, ``backbone``, ``head``) frozen from the start (kept in eval mode, so
            batch-norm statistics stay the pretrained ones too).
        lr_mult: learning-rate multiplier per part (discriminative learning rates); missing parts: 1.
        unfreeze: ``{epoch: [parts]}``: parts thawed at the start of that epoch (gradual unfreezing).
        new_head: replace the pretrained head with a freshly initialized one.
    """

    strategy: str = "full"
    freeze: tuple[str, ...] = ()
    lr_mult: Mapping[str, float] = dataclasses.field(default_factory=dict)
    unfreeze: Mapping[int, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    new_head: bool = False

    def __post_init__(self) -> None:
        named = {*self.freeze, *self.lr_mult, *(p for ps in self.unfreeze.values() for p in ps)}
        if named - set(PARTS):
            raise ValueError(
                f"finetune names unknown part(s) {sorted(named - set(PARTS))}; parts are {PARTS}"
            )
        if any(m < 0 for m in self.lr_mult.values()):
            raise ValueError(f"finetune.lr_mult {dict(self.lr_mult)} must be >= 0")
        thawed = {p for ps in self.unfreeze.values() for p in ps}
        if thawed - set(self.freeze):
            raise ValueError(
                f"finetune.unfreeze thaws {sorted(thawed - set(self.freeze))}, which are not frozen"
            )

    @classmethod
    def of(cls, cfg: Finetune | Mapping[str, Any] | None) -> Finetune:
        if cfg is None or isinstance(cfg, Finetune):
            return cfg or cls()
        check_options(cls, cfg, "finetune")
        d = dict(cfg)
        d["freeze"] = tuple(d.get("freeze") or ())
        d["unfreeze"] = {int(k): tuple(v) for k, v in (d.get("unfreeze") or {}).items()}
        d["lr_mult"] = dict(d.get("lr_mult") or {})
        return cls(**d)

    def frozen_at(self, epoch: int) -> set[str]:
        thawed = {p for e, ps in self.unfreeze.items() if e <= epoch for p in ps}
        return set(self.freeze) - thawed


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on norms, biases, embeddings and feature tokenizers (modules with
    ``no_weight_decay = True``): decay there only shrinks what the data says, without regularizing
    capacity. Frozen parameters are included (a parameter without a gradient is skipped by the step), so
    that gradual unfreezing needs no new optimizer. ``lr`` sets the groups' learning rate."""
    no_decay_types = (nn.LayerNorm, nn.BatchNorm1d, nn.GroupNorm, nn.Embedding)
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            tokenizer = getattr(module, "no_weight_decay", False)  # feature tokenizers (as rtdl)
            if isinstance(module, no_decay_types) or tokenizer or p.ndim < 2 or name.endswith("bias"):
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if lr is not None:
        for g in groups:
            g["lr"] = lr
    return [g for g in groups if g["params"]]


class TabularRegressor(L.LightningModule):
    """Regression on the transformed target for any :class:`~tabxfer.models.base.TabularModel`.

    Args:
        model_cfg: the model's Hydra node (``_target_`` + kwargs, sizes filled in): saved in checkpoints so
            that :func:`tabxfer.load` rebuilds the model with nothing else at hand.
        spec: the feature spec as a dict (:meth:`FeatureSpec.to_dict`): target statistics, inputs.
        optimizer: ``{lr, weight_decay, betas}`` for AdamW.
        scheduler: ``{name: cosine|constant, warmup_frac}``.
        meta: anything else worth keeping with the weights (resolved config, data fingerprint, ...).
        model: an already built model (else built from ``model_cfg``).
        objective: loss weights (:class:`~tabxfer.training.objectives.Objective`); default supervised.
        finetune: how the model's parts train (:class:`Finetune`); default all parts, one learning rate.
        nonfinite: what a NaN/inf loss or gradient does (:class:`NonFinite`); default: stop with a report.

    Checkpoints carry the random generators' states, and every epoch's batch order depends on the seed
    and the epoch only: a run resumed from ``last.ckpt`` continues exactly as if it had never stopped.
    """

    y_mean: Tensor
    y_std: Tensor

    def __init__(
        self,
        *,
        model_cfg: Mapping[str, Any],
        spec: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        model: TabularModel | None = None,
        objective: Mapping[str, Any] | None = None,
        finetune: Mapping[str, Any] | None = None,
        nonfinite: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model: TabularModel = model if model is not None else hydra.utils.instantiate(dict(model_cfg))
        self.objective = Objective.of(objective)
        self.finetune = Finetune.of(finetune)
        self.nonfinite = NonFinite.of(nonfinite)
        self.skipped = 0  # batches whose update was skipped (nonfinite.action=skip)
        # the last training step: batch_idx, batch, loss terms, total loss (for the non-finite guard)
        self._last: tuple[int, tuple[Tensor, ...], dict[str, Tensor], Tensor] | None = None
        self._resume_rng: Mapping[str, Any] | None = None
        self.resumed_metrics: dict[str, float] = {}  # logged metrics from the checkpoint resumed from
        self._frozen: set[str] = set(self.finetune.freeze)  # set per epoch (gradual unfreezing)
        self.pretrain_heads = (
            PretrainHeads(
                self.model.d_backbone,
                len(spec["numeric"]),
                [int(c["cardinality"]) for c in spec["categorical"]],
                self.objective,
            )
            if self.objective.self_supervised
            else None
        )
        target = spec["target"]
        self.register_buffer("y_mean", torch.tensor(float(target["mean"])), persistent=False)
        self.register_buffer("y_std", torch.tensor(float(target["std"])), persistent=False)
        self.optim_cfg = {"lr": 1e-3, "weight_decay": 1e-5, "betas": (0.9, 0.999), **(optimizer or {})}
        self.sched_cfg = {"name": "cosine", "warmup_frac": 0.03, **(scheduler or {})}
        self._sums: dict[str, Tensor] = {}
        self.best = math.inf
        # models with a temporal input (TFT) take the context sequence when the data has one
        self.takes_context = "x_ctx" in inspect.signature(self.model.forward).parameters

    # --- prediction --------------------------------------------------------------------------------
    def _z(self, x_num: Tensor, x_cat: Tensor, x_ctx: Tensor | None = None) -> Tensor:
        if self.takes_context:
            return self.model(x_num, x_cat, x_ctx).squeeze(-1).float()  # (B,)
        return self.model(x_num, x_cat).squeeze(-1).float()  # (B,)

    def forward(self, x_num: Tensor, x_cat: Tensor, x_ctx: Tensor | None = None) -> Tensor:
        """Predicted log1p(duration) (B,)."""
        return self._z(x_num, x_cat, x_ctx) * self.y_std + self.y_mean

    def _features(self, x_num: Tensor, x_cat: Tensor, ctx: list[Tensor]) -> Tensor:
        return self.model.features(x_num, x_cat, *ctx).float()

    def objective_terms(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """Each weighted objective's loss on a batch (unweighted), plus the model's ``aux`` term."""
        x_num, x_cat, y, *ctx = batch
        o, terms = self.objective, {}
        if o.supervised:
            z = self._z(x_num, x_cat, *ctx)
            terms["supervised"] = nn.functional.mse_loss(z, (y - self.y_mean) / self.y_std)
        heads = self.pretrain_heads
        if heads is not None and o.masked:
            xn, xc, m_num, m_cat = mask_cells(x_num, x_cat, o.mask_rate)
            h = self._features(xn, xc, ctx)
            terms["masked"] = heads.reconstruction_loss(h, x_num, x_cat, m_num, m_cat)
        if heads is not None and heads.project is not None and o.contrastive:
            xn, xc = corrupt_from_marginals(x_num, x_cat, o.corruption_rate)
            z1 = heads.project(self._features(x_num, x_cat, ctx))
            z2 = heads.project(self._features(xn, xc, ctx))
            terms["contrastive"] = info_nce(z1, z2, o.temperature)
        aux = getattr(self.model, "aux_loss", lambda: None)()
        if aux is not None:
            terms["aux"] = aux
        return terms

    def total_loss(self, terms: Mapping[str, Tensor]) -> Tensor:
        weights = {**dataclasses.asdict(self.objective), "aux": 1.0}
        return sum(
            (float(weights[k]) * v for k, v in terms.items()), start=torch.zeros((), device=self.device)
        )

    # --- steps -------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        if self._resume_rng is not None:  # resumed: draw the same dropout masks as the run that stopped
            set_rng_states(self._resume_rng)
            self._resume_rng = None
        loader = self.trainer.train_dataloader  # batch order from (seed, epoch), also after a resume
        if loader is not None and hasattr(loader, "set_epoch"):
            loader.set_epoch(self.current_epoch)
        frozen = self.finetune.frozen_at(self.current_epoch)
        for name, part in self.model.parts().items():
            part.requires_grad_(name not in frozen)
        self._frozen = frozen

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        for name in self._frozen:  # frozen parts keep their (batch-norm) statistics
            self.model.parts()[name].eval()
        terms = self.objective_terms(batch)
        total = self.total_loss(terms)
        self._last = (batch_idx, batch, {k: v.detach() for k, v in terms.items()}, total.detach())
        n = len(batch[2])
        self.log("train/loss", total, prog_bar=True, on_step=True, on_epoch=True, batch_size=n)
        if "supervised" in terms:
            rmsle = terms["supervised"].detach().sqrt() * self.y_std
            self.log("train/rmsle", rmsle, on_step=False, on_epoch=True, batch_size=n)
        for k, v in terms.items():
            if k != "supervised" and self.objective.self_supervised:
                self.log(f"train/{k}", v.detach(), on_step=False, on_epoch=True, batch_size=n)
        return total

    def _eval_step(self, stage: str, batch: tuple[Tensor, ...]) -> None:
        """RMSLE sums, and the loss from the same forward pass unless a self-supervised objective needs
        its own (:meth:`_ssl_loss`)."""
        x_num, x_cat, y, *ctx = batch
        z = self._z(x_num, x_cat, *ctx)
        if not self.objective.self_supervised:
            loss = nn.functional.mse_loss(z, (y - self.y_mean) / self.y_std)
            self.log(f"{stage}/loss", loss, batch_size=len(y), on_epoch=True, sync_dist=True)
        pred = (z * self.y_std + self.y_mean).clamp_min(0.0)  # log1p of a non-negative duration
        err = (pred - y).double().pow(2).sum()
        s = self._sums.setdefault(stage, torch.zeros(2, dtype=torch.float64, device=pred.device))
        s += torch.stack([err, torch.tensor(float(len(y)), dtype=torch.float64, device=pred.device)])

    def _eval_end(self, stage: str) -> float:
        s = self._sums.pop(stage, None)
        if s is None:
            return math.nan
        s = self.trainer.strategy.reduce(s, reduce_op="sum")  # exact over ranks: sums, not means
        rmsle = float((s[0] / s[1]).sqrt())
        self.log(f"{stage}/rmsle", rmsle, prog_bar=stage == "val", sync_dist=False)
        return rmsle

    def _ssl_loss(self, stage: str, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        """The whole objective; masks and corruptions drawn from a fixed seed per batch."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(batch_idx)
            loss = self.total_loss(self.objective_terms(batch))
        self.log(f"{stage}/loss", loss, batch_size=len(batch[2]), on_epoch=True, sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        if self.objective.self_supervised:
            self._ssl_loss("val", batch, batch_idx)
        if self.objective.supervised:  # an untrained head's RMSLE would mean nothing
            self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        if not self.objective.supervised:
            return
        rmsle = self._eval_end("val")
        if not self.trainer.sanity_checking:
            self.best = min(self.best, rmsle)
        if math.isfinite(self.best):
            self.log("val/rmsle_best", self.best)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        if self.objective.self_supervised:
            self._ssl_loss("test", batch, batch_idx)
        if self.objective.supervised:
            self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        if self.objective.supervised:
            self._eval_end("test")

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x_num, x_cat, _, *ctx = batch
        return torch.expm1(self(x_num, x_cat, *ctx).clamp_min(0.0))  # seconds

    def on_train_epoch_end(self) -> None:
        if self.skipped:
            self.log("train/skipped_batches", float(self.skipped))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_rmsle_best"] = self.best  # so that a resumed run keeps its best
        checkpoint["rng_states"] = rng_states()
        checkpoint["nonfinite_skipped"] = self.skipped
        # the metrics logged so far: what a run resumed after its last epoch reports (it has none to run)
        checkpoint["metrics"] = {
            k: float(v) for k, v in self.trainer.callback_metrics.items() if torch.as_tensor(v).numel() == 1
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best = float(checkpoint.get("val_rmsle_best", math.inf))
        self._resume_rng = checkpoint.get("rng_states")
        self.skipped = int(checkpoint.get("nonfinite_skipped", 0))
        self.resumed_metrics = dict(checkpoint.get("metrics") or {})

    # --- non-finite guard --------------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Stop (or skip the update) on a non-finite loss or gradient, before it reaches the weights."""
        if self._last is None:
            return
        loss = self._last[3]
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # fp16: overflow is the scaler's
        grads = [] if scaler is not None else [p.grad for p in self.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=loss.device)
        if bool(torch.isfinite(loss) & torch.isfinite(norm)):  # the one synchronization per step
            return
        msg = self._nonfinite_report(float(loss), float(norm), optimizer)
        if self.nonfinite.action == "raise":
            raise NonFiniteError(msg)
        self.skipped += 1
        for p in self.parameters():
            p.grad = None  # AdamW leaves parameters without a gradient untouched: the batch is skipped
        if self.skipped > self.nonfinite.max_skipped:
            raise NonFiniteError(
                f"{self.skipped} batches skipped for non-finite values (nonfinite.max_skipped="
                f"{self.nonfinite.max_skipped}); the last: {msg}"
            )
        if self.skipped <= 10 or self.skipped % 100 == 0:
            log.warning("skipped batch (%d so far): %s", self.skipped, msg)

    def _nonfinite_report(self, loss: float, norm: float, optimizer: torch.optim.Optimizer) -> str:
        assert self._last is not None
        batch_idx, batch, terms, _ = self._last
        x_num, _, y, *_ = batch
        spec = self.hparams["spec"]
        names = [n["name"] for n in spec["numeric"]]
        bad_cols = (~torch.isfinite(x_num)).sum(0).tolist() if x_num.numel() else []
        inputs = {names[i] if i < len(names) else f"num_{i}": int(c) for i, c in enumerate(bad_cols) if c}
        bad_y = int((~torch.isfinite(y)).sum())
        bad_terms = [k for k, v in terms.items() if not bool(torch.isfinite(v).all())]
        lrs = sorted({float(g["lr"]) for g in optimizer.param_groups})
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm} (loss {loss:.4g})"
        found = (
            f"non-finite inputs in this batch: {inputs}" if inputs else "the batch's inputs are all finite"
        ) + (f", {bad_y} non-finite targets" if bad_y else "")
        return (
            f"non-finite {what} at global step {self.global_step}, epoch {self.current_epoch}, batch "
            f"{batch_idx} ({len(y)} rows); loss terms non-finite: {bad_terms or 'none'}; {found}. "
            f"Hint: lower optimizer.lr (now {lrs[-1]:.3g}), keep trainer.gradient_clip_val set "
            f"(now {self.trainer.gradient_clip_val}), check the data of any feature named above; or "
            "nonfinite.action=skip to skip such batches"
        )

    # --- optimization ------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        c = self.optim_cfg
        lr, wd = float(c["lr"]), float(c["weight_decay"])
        groups = []
        for name, part in self.model.parts().items():  # discriminative learning rates per part
            groups += param_groups(part, wd, lr * float(self.finetune.lr_mult.get(name, 1.0)))
        if self.pretrain_heads is not None:
            groups += param_groups(self.pretrain_heads, wd, lr)
        named = {id(p) for g in groups for p in g["params"]}
        rest = [p for p in self.model.parameters() if id(p) not in named]  # outside the named parts
        if rest:
            groups.append({"params": rest, "weight_decay": 0.0, "lr": lr})
        opt = torch.optim.AdamW(groups, lr=lr, betas=tuple(c["betas"]))
        name = self.sched_cfg["name"]
        if name == "constant":
            return opt
        if name != "cosine":
            raise ValueError(f"scheduler name {name!r}: expected 'cosine' or 'constant'")
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(float(self.sched_cfg["warmup_frac"]) * total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            t = (step - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
