"""The one LightningModule for every model: loss, RMSLE metrics, optimizer and scheduler.

The model predicts the *standardized* transformed target ``z = (log1p(duration) - mean) / std`` (the
feature spec's training statistics), which keeps every model's output layer well scaled. Metrics are
reported in seconds space: ``RMSLE = sqrt(mean((log1p(pred_s) - log1p(true_s))^2))`` with
``pred_s = max(expm1(pred_log), 0)``, i.e. the RMSE of ``max(pred_log, 0)`` against ``log1p(true_s)``.

Metric names (the optimized one, ``val/rmsle``, is named once: :data:`MONITOR`): ``train/loss``,
``train/rmsle``, ``val/rmsle``, ``val/rmsle_best``, ``test/rmsle``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import hydra
import pytorch_lightning as L
import torch
from torch import Tensor, nn

MONITOR = "val/rmsle"
MONITOR_MODE = "min"


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on norms, biases, embeddings and feature tokenizers (modules with
    ``no_weight_decay = True``): decay there only shrinks what the data says, without regularizing
    capacity."""
    no_decay_types = (nn.LayerNorm, nn.BatchNorm1d, nn.GroupNorm, nn.Embedding)
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            tokenizer = getattr(module, "no_weight_decay", False)  # feature tokenizers (as rtdl)
            if isinstance(module, no_decay_types) or tokenizer or p.ndim < 2 or name.endswith("bias"):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


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
        model: nn.Module | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.model = model if model is not None else hydra.utils.instantiate(dict(model_cfg))
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

    # --- steps -------------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x_num, x_cat, y, *ctx = batch
        z = self._z(x_num, x_cat, *ctx)
        loss = nn.functional.mse_loss(z, (y - self.y_mean) / self.y_std)
        aux = getattr(self.model, "aux_loss", lambda: None)()
        total = loss + aux if aux is not None else loss
        self.log("train/loss", total, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(y))
        self.log(
            "train/rmsle", loss.detach().sqrt() * self.y_std, on_step=False, on_epoch=True, batch_size=len(y)
        )
        return total

    def _eval_step(self, stage: str, batch: tuple[Tensor, ...]) -> None:
        x_num, x_cat, y, *ctx = batch
        pred = self(x_num, x_cat, *ctx).clamp_min(0.0)  # log1p of a non-negative duration
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

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        rmsle = self._eval_end("val")
        if not self.trainer.sanity_checking:
            self.best = min(self.best, rmsle)
        if math.isfinite(self.best):
            self.log("val/rmsle_best", self.best)

    def test_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def predict_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x_num, x_cat, _, *ctx = batch
        return torch.expm1(self(x_num, x_cat, *ctx).clamp_min(0.0))  # seconds

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_rmsle_best"] = self.best  # so that a resumed run keeps its best

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best = float(checkpoint.get("val_rmsle_best", math.inf))

    # --- optimization ------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        c = self.optim_cfg
        opt = torch.optim.AdamW(
            param_groups(self.model, float(c["weight_decay"])), lr=float(c["lr"]), betas=tuple(c["betas"])
        )
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
