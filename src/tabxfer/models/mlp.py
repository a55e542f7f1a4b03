"""A plain MLP on concatenated numeric inputs and categorical embeddings: the simplest strong baseline."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tabxfer.models.base import (
    CategoricalEmbeddings,
    TabularModel,
    check_added,
    check_inputs,
    grow_embeddings,
    mlp_layers,
    widen_linear,
)


class MLPEmbed(nn.Module):
    """``(x_num (B, n_num), x_cat (B, n_cat)) -> (B, n_num + n_cat * d_embed)``: ``[x_num, embeddings]``."""

    def __init__(self, n_num: int, cardinalities: Sequence[int], d_embed: int):
        super().__init__()
        self.n_num = n_num
        self.cardinalities = list(cardinalities)
        self.d_embed = d_embed
        self.cat = CategoricalEmbeddings(cardinalities, d_embed) if cardinalities else None
        self.d_out = n_num + len(cardinalities) * d_embed

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        parts = [x_num] if self.n_num else []
        if self.cat is not None:
            parts.append(self.cat(x_cat).flatten(1))  # (B, n_cat * d_embed)
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def add_features(
        self, first: nn.Linear, *, n_num: int = 0, cardinalities: Sequence[int] = ()
    ) -> nn.Linear:
        """Grow for ``n_num`` numeric and ``len(cardinalities)`` categorical columns appended to the inputs;
        return ``first``, the ``Linear`` reading this module's output, widened to match with zero weights:
        new numerics land after the old ones (before the embeddings), new embeddings at the end, so the
        returned layer computes what ``first`` did whatever the new columns hold. New embedding tables are
        initialized as at construction, on ``first``'s device and dtype."""
        check_added(n_num, cardinalities)
        w = first.weight
        n_old, d_old = self.n_num, self.d_out
        if n_num:
            first = widen_linear(first, n_old, n_num)  # (x_num, new numerics, embeddings)
            self.n_num += n_num
        if cardinalities:
            cat = grow_embeddings(self.cat, self.cardinalities, cardinalities, self.d_embed)
            self.cat = cat.to(device=w.device, dtype=w.dtype)
            self.cardinalities = [*self.cardinalities, *cardinalities]
            first = widen_linear(first, d_old + n_num, len(cardinalities) * self.d_embed)  # at the end
        self.d_out = self.n_num + len(self.cardinalities) * self.d_embed
        return first


class MLP(TabularModel):
    """Embeddings -> ``n_blocks`` x (Linear, ReLU, Dropout) -> Linear head.

    Shape: ``x_num (B, n_num)``, ``x_cat (B, n_cat)`` -> ``(B, d_out)`` (``(B, d_block)`` if ``d_out=None``).

    >>> m = MLP(n_num=3, cardinalities=[4, 5], d_out=1)
    >>> m(torch.randn(2, 3), torch.tensor([[0, 1], [3, 4]])).shape
    torch.Size([2, 1])
    """

    embed: MLPEmbed
    backbone: nn.Sequential

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

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Grow the embeddings and widen the first block's ``Linear`` with zero weights for the new columns
        (:meth:`MLPEmbed.add_features`): the grown model computes what it did before.

        >>> m = MLP(n_num=2, cardinalities=[4], d_block=8, n_blocks=1).eval()
        >>> x_num, x_cat = torch.randn(3, 2), torch.tensor([[1], [2], [3]])
        >>> y = m(x_num, x_cat)
        >>> m.add_features(n_num=1, cardinalities=[5])
        >>> y_grown = m(torch.cat([x_num, torch.randn(3, 1)], 1), torch.cat([x_cat, x_cat], 1))
        >>> torch.allclose(y_grown, y, rtol=0, atol=1e-6)  # the same sums, up to BLAS summation order
        True
        """
        check_added(n_num, cardinalities)
        first = self.backbone[0]
        assert isinstance(first, nn.Linear)  # mlp_layers with n_blocks >= 1
        self.backbone[0] = self.embed.add_features(first, n_num=n_num, cardinalities=cardinalities)
        self.train(self.training)  # new modules take the model's train/eval mode
