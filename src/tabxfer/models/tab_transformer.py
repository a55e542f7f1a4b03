"""TabTransformer: contextual embeddings of the categorical features, then an MLP with the numeric ones.

Huang, Khetan, Cvitkovic, Karnin. "TabTransformer: Tabular Data Modeling Using Contextual Embeddings."
arXiv:2012.06678, 2020.

Each categorical value gets an embedding (index 0, "unknown/missing", has its own per column, as in the
paper); with the paper's *shared column embedding* its first ``d_shared`` dimensions are a per-column
vector common to all the column's values, so the Transformer can tell columns apart without positions.
Post-norm Transformer blocks (as in the paper's Vaswani et al. encoder) mix the ``n_cat`` tokens; they are
flattened, concatenated with the LayerNorm'ed numeric features and fed to an MLP.

Parts: ``embed`` = :class:`TabTransformerEmbed` (categorical tokens + numeric LayerNorm), ``backbone`` =
:class:`TabTransformerBackbone` (Transformer + MLP trunk), ``head`` = the final ``Linear``.

Without categorical features (``n_cat == 0``) there is nothing to attend over and the model is an MLP on
the normalized numerics; without numerics (``n_num == 0``) the MLP reads the contextual embeddings only.

New columns (:meth:`TabTransformer.add_features`): a new categorical column is one more token (its value
embeddings and shared column embedding freshly initialized); a new numeric column widens the numeric
LayerNorm. The MLP's first ``Linear`` (the head when ``mlp_hidden`` is empty) gets zero weights for both.
The grown model does *not* compute exactly what it did before: a new token takes part in the attention
over the old ones, and the LayerNorm's mean and variance run over the new numerics too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from tabxfer.models.base import (
    CategoricalEmbeddings,
    check_added,
    check_inputs,
    grow_embeddings,
    mlp_layers,
    widen_linear,
)
from tabxfer.models.ft_transformer import AttentionModel, MultiheadAttention, check_dropout


class TabTransformerEmbed(nn.Module):
    """``(x_num (B, n_num), x_cat (B, n_cat)) -> (tokens (B, n_cat, d_token), x_num (B, n_num))``.

    ``tokens[:, i] = concat(column_i, value_embedding_i[x_cat[:, i]])`` with ``column_i`` of width
    ``d_shared`` (none when ``d_shared == 0``); ``x_num`` is LayerNorm'ed across its features.
    """

    def __init__(self, *, n_num: int, cardinalities: Sequence[int], d_token: int, d_shared: int):
        super().__init__()
        n_cat = len(cardinalities)
        self.d_token, self.d_shared = d_token, d_shared
        self.n_num, self.cardinalities = n_num, list(cardinalities)
        self.values = CategoricalEmbeddings(cardinalities, d_token - d_shared) if n_cat else None
        self.column = nn.Parameter(torch.empty(n_cat, d_shared)) if n_cat and d_shared else None
        if self.column is not None:
            nn.init.normal_(self.column, std=d_token**-0.5)
        self.num_norm = nn.LayerNorm(n_num) if n_num else None

    def forward(self, x_num: Tensor, x_cat: Tensor) -> tuple[Tensor, Tensor]:
        if self.values is None:
            tokens = x_num.new_zeros((x_num.shape[0], 0, self.d_token))  # (B, 0, d): no categoricals
        else:
            tokens = self.values(x_cat)  # (B, n_cat, d - d_shared)
            if self.column is not None:
                column = self.column.expand(x_cat.shape[0], -1, -1)  # (B, n_cat, d_shared)
                tokens = torch.cat([column, tokens], dim=2)  # (B, n_cat, d)
        if self.num_norm is not None:
            x_num = self.num_norm(x_num)  # (B, n_num)
        return tokens, x_num

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Tokens for ``len(cardinalities)`` categorical columns appended to ``x_cat`` (initialized as at
        construction) and ``n_num`` more LayerNorm'ed numerics (new affine entries: weight 1, bias 0);
        trained parameters are copied."""
        check_added(n_num, cardinalities)
        like = next(self.parameters())  # check_inputs: there is a table or a LayerNorm
        device, dtype = like.device, like.dtype
        if cardinalities:
            d_values = self.d_token - self.d_shared
            values = grow_embeddings(self.values, self.cardinalities, cardinalities, d_values)
            self.values = values.to(device=device, dtype=dtype)
            if self.d_shared:
                column = torch.empty(len(cardinalities), self.d_shared, device=device, dtype=dtype)
                nn.init.normal_(column, std=self.d_token**-0.5)
                if self.column is not None:
                    column = torch.cat([self.column, column])  # old columns first
                self.column = nn.Parameter(column)
            self.cardinalities = [*self.cardinalities, *cardinalities]
        if n_num:
            norm = nn.LayerNorm(self.n_num + n_num).to(device=device, dtype=dtype)
            if self.num_norm is not None:
                norm.weight[: self.n_num] = self.num_norm.weight
                norm.bias[: self.n_num] = self.num_norm.bias
            self.num_norm, self.n_num = norm, self.n_num + n_num


class PostNormBlock(nn.Module):
    """``x = LN(x + Attn(x))``, ``x = LN(x + FFN(x))``, the original Transformer layer: ``(B, n, d) -> (B, n, d)``."""

    def __init__(
        self, *, d_token: int, n_heads: int, attention_dropout: float, d_ffn: int, ffn_dropout: float
    ):
        super().__init__()
        self.attention = MultiheadAttention(d_token=d_token, n_heads=n_heads, dropout=attention_dropout)
        self.attention_norm = nn.LayerNorm(d_token)
        self.ffn = nn.Sequential(
            nn.Linear(d_token, d_ffn), nn.ReLU(), nn.Dropout(ffn_dropout), nn.Linear(d_ffn, d_token)
        )
        self.ffn_norm = nn.LayerNorm(d_token)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attention_norm(x + self.attention(x, x))  # (B, n, d)
        return self.ffn_norm(x + self.ffn(x))  # (B, n, d)


class TabTransformerBackbone(nn.Module):
    """``(tokens (B, n_cat, d), x_num (B, n_num)) -> (B, d_out)``: blocks, flatten, concat, MLP trunk.

    ``d_out = mlp_hidden[-1]``, or ``n_cat * d + n_num`` when ``mlp_hidden`` is empty.
    """

    def __init__(
        self,
        *,
        n_num: int,
        n_cat: int,
        d_token: int,
        n_blocks: int,
        n_heads: int,
        attention_dropout: float,
        d_ffn: int,
        ffn_dropout: float,
        mlp_hidden: Sequence[int],
        mlp_dropout: float,
    ):
        super().__init__()
        self.n_num, self.n_cat, self.d_token, self.n_blocks = n_num, n_cat, d_token, n_blocks
        self.block_kwargs: dict[str, Any] = {
            "d_token": d_token,
            "n_heads": n_heads,
            "attention_dropout": attention_dropout,
            "d_ffn": d_ffn,
            "ffn_dropout": ffn_dropout,
        }
        # No tokens, no blocks (and no unused parameters).
        self.blocks = nn.ModuleList(
            PostNormBlock(**self.block_kwargs) for _ in range(n_blocks if n_cat else 0)
        )
        d_in = n_cat * d_token + n_num
        self.mlp = mlp_layers(d_in, mlp_hidden, mlp_dropout)
        self.d_out = mlp_hidden[-1] if mlp_hidden else d_in

    def forward(self, z: tuple[Tensor, Tensor]) -> Tensor:
        tokens, x_num = z
        parts = []
        if self.n_cat:
            for block in self.blocks:
                tokens = block(tokens)  # (B, n_cat, d)
            parts.append(tokens.flatten(1))  # (B, n_cat * d)
        if self.n_num:
            parts.append(x_num)  # (B, n_num)
        return self.mlp(torch.cat(parts, dim=1))  # (B, d_out)

    def widen_input(self, linear: nn.Linear, *, n_num: int = 0, n_cat: int = 0) -> nn.Linear:
        """``linear`` (reading ``[flattened tokens, x_num]``) with zero-weight inputs for ``n_cat`` tokens
        (after the old tokens) and ``n_num`` numerics (at the end)."""
        linear = widen_linear(linear, self.n_cat * self.d_token, n_cat * self.d_token)
        return widen_linear(linear, (self.n_cat + n_cat) * self.d_token + self.n_num, n_num)

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, n_cat: int = 0, like: Tensor | None = None) -> None:
        """Take ``n_cat`` more tokens and ``n_num`` more numerics: the MLP's first ``Linear`` gets zero
        weights for them (:meth:`widen_input`); the blocks (shared by all tokens) are built fresh, on
        ``like``'s device and dtype, if there were no tokens before. With an empty MLP, ``d_out`` grows:
        the caller widens what reads it."""
        if n_cat < 0 or n_num < 0:
            raise ValueError(f"{n_num=} and {n_cat=} must be >= 0")
        if self.mlp:
            first = self.mlp[0]
            assert isinstance(first, nn.Linear)
            self.mlp[0] = self.widen_input(first, n_num=n_num, n_cat=n_cat)
        if n_cat and not self.n_cat and self.n_blocks:
            like = next(self.parameters(), None) if like is None else like
            blocks = [PostNormBlock(**self.block_kwargs) for _ in range(self.n_blocks)]
            self.blocks = nn.ModuleList(blocks)
            if like is not None:
                self.blocks.to(device=like.device, dtype=like.dtype)
            self.blocks.train(self.training)
        self.n_num, self.n_cat = self.n_num + n_num, self.n_cat + n_cat
        if not self.mlp:
            self.d_out = self.n_cat * self.d_token + self.n_num


class TabTransformer(AttentionModel):
    """TabTransformer (supervised; pretraining objectives live in the training module).

    Shape: ``x_num (B, n_num)``, ``x_cat (B, n_cat)`` -> ``(B, d_out)`` (``(B, mlp_hidden[-1])`` if
    ``d_out=None``).

    Args:
        n_num, cardinalities: the inputs (filled in from the feature spec).
        d_out: output size; ``None`` returns the MLP trunk's features.
        d_token: embedding width of a categorical token (paper: 32).
        d_shared: width of the shared column embedding inside ``d_token`` (paper: ``d_token / 8``);
            0 turns it off.
        n_blocks, n_heads: Transformer depth and heads (``n_heads`` must divide ``d_token``).
        attention_dropout: dropout on the attention probabilities.
        ffn_d_hidden_multiplier: FFN hidden width as a multiple of ``d_token`` (original Transformer: 4).
        ffn_dropout: dropout after the FFN's activation.
        mlp_hidden: hidden sizes of the MLP on ``[flattened tokens, numerics]``.
        mlp_dropout: dropout after each MLP hidden layer.

    >>> m = TabTransformer(n_num=3, cardinalities=[4, 5], d_token=8, n_heads=2, mlp_hidden=(16,), d_out=1)
    >>> m(torch.randn(2, 3), torch.tensor([[0, 1], [3, 4]])).shape
    torch.Size([2, 1])
    """

    embed: TabTransformerEmbed
    backbone: TabTransformerBackbone

    def __init__(
        self,
        *,
        n_num: int,
        cardinalities: Sequence[int],
        d_out: int | None = 1,
        d_token: int = 32,
        d_shared: int = 4,
        # NOTE[DIFF]: the paper fixes 6 blocks; 4 is cheaper and is a sweepable value here.
        n_blocks: int = 4,
        n_heads: int = 8,
        attention_dropout: float = 0.1,
        ffn_d_hidden_multiplier: float = 4.0,
        ffn_dropout: float = 0.1,
        # NOTE[DIFF]: the paper sizes the MLP {4 l, 2 l} from its input size l (= n_cat * d_token + n_num,
        # 369 for the taxi spec -> 1476, 738); fixed sizes keep the trunk small and independent of the schema.
        mlp_hidden: Sequence[int] = (128, 64),
        mlp_dropout: float = 0.1,
    ):
        super().__init__()
        check_inputs(n_num, cardinalities)
        if n_blocks < 0:
            raise ValueError(f"{n_blocks=} must be >= 0")
        if d_token < 1 or n_heads < 1 or d_token % n_heads:
            raise ValueError(f"{n_heads=} must divide {d_token=} (both >= 1)")
        if not 0 <= d_shared < d_token:
            raise ValueError(f"{d_shared=} must be in [0, {d_token=})")
        if ffn_d_hidden_multiplier <= 0:
            raise ValueError(f"{ffn_d_hidden_multiplier=} must be > 0")
        if any(d < 1 for d in mlp_hidden):
            raise ValueError(f"every MLP hidden size must be >= 1; got {list(mlp_hidden)}")
        check_dropout(attention_dropout=attention_dropout, ffn_dropout=ffn_dropout, mlp_dropout=mlp_dropout)

        self.embed = TabTransformerEmbed(
            n_num=n_num, cardinalities=cardinalities, d_token=d_token, d_shared=d_shared
        )
        self.backbone = TabTransformerBackbone(
            n_num=n_num,
            n_cat=len(cardinalities),
            d_token=d_token,
            n_blocks=n_blocks,
            n_heads=n_heads,
            attention_dropout=attention_dropout,
            d_ffn=max(1, int(d_token * ffn_d_hidden_multiplier)),
            ffn_dropout=ffn_dropout,
            mlp_hidden=list(mlp_hidden),
            mlp_dropout=mlp_dropout,
        )
        self.d_backbone = self.backbone.d_out
        self.head = nn.Linear(self.d_backbone, d_out) if d_out is not None else None

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """New tokens for the new categorical columns, a wider numeric LayerNorm, zero MLP weights for both
        (see the module docstring: unlike the MLP's, the function is not kept exactly).

        >>> m = TabTransformer(n_num=2, cardinalities=[4], d_token=8, n_heads=2, mlp_hidden=(16,))
        >>> m.add_features(n_num=1, cardinalities=[5, 6])
        >>> m(torch.randn(3, 3), torch.tensor([[0, 1, 2], [3, 4, 5], [1, 1, 1]])).shape
        torch.Size([3, 1])
        """
        check_added(n_num, cardinalities)
        if isinstance(self.head, nn.Linear) and not self.backbone.mlp:  # it reads [tokens, x_num] directly
            self.head = self.backbone.widen_input(self.head, n_num=n_num, n_cat=len(cardinalities))
        like = next(self.parameters())
        self.embed.add_features(n_num=n_num, cardinalities=cardinalities)
        self.backbone.add_features(n_num=n_num, n_cat=len(cardinalities), like=like)
        self.d_backbone = self.backbone.d_out
        self.train(self.training)  # new modules (the blocks, when there were no tokens) take the mode
