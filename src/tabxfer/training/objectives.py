"""Pretraining objectives that work for every model, because they only touch inputs and backbone features.

* **supervised**: the regression loss on the transformed target (what fine-tuning optimizes too).
* **masked**: masked feature reconstruction, as TabNet's pretrainer (Arik & Pfister 2021, sec. 5): each
  input cell is masked with probability ``mask_rate`` (numeric -> 0, i.e. the mean; categorical -> 0, the
  unknown slot); from the backbone's features of the masked row, a linear decoder predicts the masked
  numerics (squared error on the standardized value) and categoricals (cross-entropy over the
  feature's vocabulary). Only masked cells count.
* **contrastive**: SCARF (Bahri et al. 2022): a positive view replaces each cell with probability
  ``corruption_rate`` by the same feature's value in another row of the batch (a draw from the empirical
  marginal); a two-layer projection head and InfoNCE (symmetric, temperature ``temperature``) pull a row and
  its corrupted view together and push other rows apart.

The weighted sum is the training loss. Heads live beside the model (not in it), so a fine-tuned model
carries no pretraining weights. Temporal context (TFT) is passed through uncorrupted.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tabxfer.config import check_options

OBJECTIVES = ("supervised", "masked", "contrastive")


@dataclasses.dataclass(frozen=True)
class Objective:
    """Loss weights and their settings. Hydra: ``objective.*``."""

    supervised: float = 1.0
    masked: float = 0.0
    contrastive: float = 0.0
    mask_rate: float = 0.3
    corruption_rate: float = 0.6
    temperature: float = 1.0
    d_proj: int = 128

    def __post_init__(self) -> None:
        weights = {k: getattr(self, k) for k in OBJECTIVES}
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError(f"objective weights {weights} must be >= 0 with at least one > 0")
        for k in ("mask_rate", "corruption_rate"):
            if not 0.0 < getattr(self, k) < 1.0:
                raise ValueError(f"objective.{k}={getattr(self, k)} must be in (0, 1)")
        if self.temperature <= 0 or self.d_proj < 1:
            raise ValueError(f"objective.temperature={self.temperature} and d_proj={self.d_proj} must be > 0")

    @classmethod
    def of(cls, cfg: Objective | Mapping[str, Any] | None) -> Objective:
        if cfg is None or isinstance(cfg, Objective):
            return cfg or cls()
        check_options(cls, cfg, "objective")
        return cls(**cfg)

    @property
    def self_supervised(self) -> bool:
        return self.masked > 0 or self.contrastive > 0


def mask_cells(x_num: Tensor, x_cat: Tensor, rate: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(x_num', x_cat', mask_num, mask_cat)``: masked cells set to 0 (mean / unknown)."""
    m_num = torch.rand(x_num.shape, device=x_num.device) < rate
    m_cat = torch.rand(x_cat.shape, device=x_cat.device) < rate
    return x_num.masked_fill(m_num, 0.0), x_cat.masked_fill(m_cat, 0), m_num, m_cat


def corrupt_from_marginals(x_num: Tensor, x_cat: Tensor, rate: float) -> tuple[Tensor, Tensor]:
    """SCARF's corruption: each cell, with probability ``rate``, takes its feature's value from a random
    row of the batch."""
    b = x_num.shape[0] if x_num.shape[1] else x_cat.shape[0]

    def corrupt(x: Tensor) -> Tensor:
        if x.shape[1] == 0:
            return x
        donor = torch.randint(0, b, x.shape, device=x.device)  # (B, F) donor row per cell
        other = torch.gather(x, 0, donor)
        return torch.where(torch.rand(x.shape, device=x.device) < rate, other, x)

    return corrupt(x_num), corrupt(x_cat)


def info_nce(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE of matching rows ``z1[i] <-> z2[i]`` (cosine similarity / temperature)."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    logits = z1 @ z2.T / temperature  # (B, B)
    labels = torch.arange(len(z1), device=z1.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class PretrainHeads(nn.Module):
    """The decoders and projection head of the self-supervised objectives, on backbone features."""

    def __init__(self, d_backbone: int, n_num: int, cardinalities: Sequence[int], objective: Objective):
        super().__init__()
        self.n_num, self.cardinalities = n_num, list(cardinalities)
        self.decode_num = nn.Linear(d_backbone, n_num) if objective.masked and n_num else None
        self.decode_cat = (
            nn.Linear(d_backbone, sum(cardinalities)) if objective.masked and cardinalities else None
        )
        self.bounds = [0, *itertools.accumulate(cardinalities)]  # python ints: slicing needs no device sync
        self.project = (
            nn.Sequential(
                nn.Linear(d_backbone, objective.d_proj),
                nn.ReLU(),
                nn.Linear(objective.d_proj, objective.d_proj),
            )
            if objective.contrastive
            else None
        )

    def reconstruction_loss(
        self, h: Tensor, x_num: Tensor, x_cat: Tensor, m_num: Tensor, m_cat: Tensor
    ) -> Tensor:
        """Mean over masked cells of squared error (numeric) and cross-entropy (categorical)."""
        total = h.new_zeros(())
        if self.decode_num is not None:
            err = (self.decode_num(h).float() - x_num).pow(2)
            total = total + (err * m_num).sum()
        if self.decode_cat is not None:
            logits = self.decode_cat(h).float()  # (B, sum(cards))
            for j, (lo, hi) in enumerate(itertools.pairwise(self.bounds)):
                ce = F.cross_entropy(logits[:, lo:hi], x_cat[:, j].long(), reduction="none")  # (B,)
                total = total + (ce * m_cat[:, j]).sum()
        return total / (m_num.sum() + m_cat.sum()).clamp_min(1)
