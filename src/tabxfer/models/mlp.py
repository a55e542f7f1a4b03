"""A plain MLP on concatenated numeric inputs and categorical embeddings: the simplest strong baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tabxfer.models.base import CategoricalEmbeddings, TabularModel, check_inputs, mlp_layers


class MLPEmbed(nn.Module):
    """``(x_num (B, n_num), x_cat (B, n_cat)) -> (B, n_num + n_cat * d_embed)``."""

    def __init__(self, n_num: int, cardinalities: Sequence[int], d_embed: int):
        super().__init__()
        self.n_num = n_num
        self.cat = CategoricalEmbeddings(cardinalities, d_embed) if cardinalities else None
        self.d_out = n_num + len(cardinalities) * d_embed

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        parts = [x_num] if self.n_num else []
        if self.cat is not None:
            parts.append(self.cat(x_cat).flatten(1))  # (B, n_cat * d_embed)
        return torch.cat(parts, dim=1)


class MLP(TabularModel):
    """Embeddings -> ``n_blocks`` x (Linear, ReLU, Dropout) -> Linear head.

    Shape: ``x_num (B, n_num)``, ``x_cat (B, n_cat)`` -> ``(B, d_out)`` (``(B, d_block)`` if ``d_out=None``).

    >>> m = MLP(n_num=3, cardinalities=[4, 5], d_out=1)
    >>> m(torch.randn(2, 3), torch.tensor([[0, 1], [3, 4]])).shape
    torch.Size([2, 1])
    """

    def __init__(
        self,
        *,
        n_num: int,
        cardinalities: Sequence[int],
        d_out: int | None = 1,
        d_embed: int = 8,
        d_block: int = 256,
        n_blocks: int = 3,
        dropout: float = 0.1,
    ):
        super().__init__()
        check_inputs(n_num, cardinalities)
        if n_blocks < 1:
            raise ValueError(f"{n_blocks=} must be >= 1")
        self.embed = MLPEmbed(n_num, cardinalities, d_embed)
        self.backbone = mlp_layers(self.embed.d_out, [d_block] * n_blocks, dropout)
        self.d_backbone = d_block
        self.head = nn.Linear(d_block, d_out) if d_out is not None else None
