"""Wide & Deep: a linear model on sparse (and crossed) features plus an MLP on embeddings, summed.

Cheng, Koc, Harmsen, et al. "Wide & Deep Learning for Recommender Systems." DLRS 2016.
https://arxiv.org/abs/1606.07792

* **Wide** (memorization): one weight per categorical value (a one-hot linear model, stored as an
  ``nn.Embedding`` of width ``d_out``), one weight per hashed bucket of each *cross* of categoricals
  (e.g. ``pickup_cell x dropoff_cell``), and a linear map of the numerics.
* **Deep** (generalization): categorical embeddings concatenated with the numerics, then an MLP.
* **Output**: ``deep_linear(MLP(...)) + wide(x_num, x_cat)`` (one shared bias, in the deep linear).

Parts: ``embed`` = the deep embeddings (:class:`~tabxfer.models.mlp.MLPEmbed`), ``backbone`` = the deep MLP,
``head`` = :class:`WideDeepHead`: the deep output ``Linear`` *and* the wide model (``model.head.wide``,
also ``model.wide``). The wide weights are per-value target weights, a linear model *of this task's
target*, so they belong with the head: fine-tuning with a new head (a model built with the new ``d_out``
loading ``embed``/``backbone`` state) starts the wide part afresh, and ``freeze: [embed, backbone]`` trains
the deep linear and the wide model together. With ``d_out=None`` there is no head (and no wide part): the
model returns the deep backbone's ``(B, mlp_hidden[-1])`` features.

Crosses are hashed with integer ops only (``*``, ``+``, ``%`` on int64) so the same buckets come out of
PyTorch on CPU or GPU and out of the exported ONNX graph. Changing :func:`hash_cross` invalidates every
trained wide table; a test pins its values.
"""

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
from tabxfer.models.mlp import MLPEmbed

# Hash constants. _M is the Mersenne prime 2**31 - 1: residues are < 2**31, so a product of two residues
# stays below 2**62 and never overflows int64.
_M = 2**31 - 1
# 0x5bd1e995 (MurmurHash2's constant): a * _P mod _M stays > 4e6 from 0 for 0 < a < 200, so the first stage
# maps every pair of values below a few hundred (cells, hours) to distinct residues.
_P = 1_540_483_477
_C = 12_345


def hash_cross(x_cat: Tensor, cross: Sequence[int], n_buckets: int) -> Tensor:
    """Bucket of each row's value combination in columns ``cross``: ``(B, n_cat) -> (B,)`` int64 in
    ``[0, n_buckets)``. Deterministic across devices, runs and the ONNX export.

    >>> hash_cross(torch.tensor([[1, 2, 3], [1, 2, 4]]), [0, 2], 2**18).tolist()
    [132403, 211947]
    """
    # NOTE[DIFF]: modular arithmetic, not multiply-xor: ONNX has no integer xor before opset 18 (the
    # legacy exporter maps `^` to the boolean Xor) and the artifact targets opset 17.
    h = torch.zeros_like(x_cat[:, 0], dtype=torch.long)  # (B,)
    for i in cross:
        h = (h * _P + x_cat[:, i].long() + 1) % _M  # (B,) in [0, _M), injective on small values
    # Scramble before taking buckets: y -> y**5 is a permutation of [0, _M) (gcd(5, _M - 1) = 1) and,
    # unlike an affine map, does not keep the (value_1, value_2) lattice that collides modulo 2**k.
    y = (h + _C) % _M
    y2 = y * y % _M
    y4 = y2 * y2 % _M
    return (y4 * y % _M) % n_buckets  # (B,)


def cross_indices(
    cat_names: Sequence[str] | None, crosses: Sequence[Sequence[str | int]], *, n_cat: int | None = None
) -> list[tuple[int, ...]]:
    """Resolve crosses given by categorical name (looked up in ``cat_names``) or by ``x_cat`` column index.

    >>> cross_indices(["hour", "pickup_cell", "dropoff_cell"], [["pickup_cell", "dropoff_cell", 0]])
    [(1, 2, 0)]
    """
    names = list(cat_names) if cat_names is not None else None
    if n_cat is None:
        n_cat = len(names) if names is not None else None
    out = []
    for cross in crosses:
        if isinstance(cross, str) or len(cross) < 2:
            raise ValueError(f"a cross needs two or more categorical features; got {cross!r}")
        idx = []
        for c in cross:
            if isinstance(c, str):
                if names is None:
                    raise ValueError(f"cross {list(cross)} names features but no cat_names were given")
                if c not in names:
                    raise ValueError(
                        f"unknown categorical feature {c!r} in cross {list(cross)}; have {names}"
                    )
                idx.append(names.index(c))
            elif n_cat is not None and not 0 <= int(c) < n_cat:
                raise ValueError(f"cross index {c} in {list(cross)} is out of range for {n_cat=}")
            else:
                idx.append(int(c))
        if len(set(idx)) != len(idx):
            raise ValueError(f"cross {list(cross)} repeats a feature")
        out.append(tuple(idx))
    return out


class Wide(nn.Module):
    """The linear model: ``(x_num (B, n_num), x_cat (B, n_cat)) -> (B, d_out)``, no bias.

    ``sum_i W_cat[i, x_cat[:, i]] + sum_k W_cross[k, hash_k(x_cat)] + x_num @ W_num``.
    """

    cross_offsets: Tensor

    def __init__(
        self,
        *,
        n_num: int,
        cardinalities: Sequence[int],
        crosses: Sequence[tuple[int, ...]],
        n_cross_buckets: int,
        d_out: int,
    ):
        super().__init__()
        self.n_num, self.cardinalities, self.d_out = n_num, list(cardinalities), d_out
        self.crosses = [tuple(c) for c in crosses]
        self.n_cross_buckets = n_cross_buckets
        self.cat = CategoricalEmbeddings(cardinalities, d_out) if cardinalities else None
        self.cross = nn.Embedding(len(self.crosses) * n_cross_buckets, d_out) if self.crosses else None
        offsets = torch.arange(len(self.crosses), dtype=torch.long) * n_cross_buckets  # one table slice each
        self.register_buffer("cross_offsets", offsets, persistent=False)
        self.num = nn.Linear(n_num, d_out, bias=False) if n_num else None
        # A linear model starts at zero (the paper does not say; the deep part carries the initial signal).
        for m in (self.cat.table if self.cat is not None else None, self.cross, self.num):
            if m is not None:
                nn.init.zeros_(m.weight)

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        terms = []
        if self.cat is not None:
            terms.append(self.cat(x_cat).sum(1))  # (B, n_cat, d_out) -> (B, d_out)
        if self.cross is not None:
            buckets = [hash_cross(x_cat, c, self.n_cross_buckets) for c in self.crosses]
            idx = torch.stack(buckets, dim=1) + self.cross_offsets  # (B, n_crosses)
            terms.append(self.cross(idx).sum(1))  # (B, d_out)
        if self.num is not None:
            terms.append(self.num(x_num))  # (B, d_out)
        out = terms[0]  # check_inputs guarantees at least one input
        for t in terms[1:]:
            out = out + t
        return out  # (B, d_out)

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Zero weights for ``n_num`` numeric and ``len(cardinalities)`` categorical columns appended to the
        inputs: every term of the sum is what it was, whatever the new columns hold. Crosses keep their
        (old) column indices."""
        check_added(n_num, cardinalities)
        like = next(self.parameters())  # new parameters take the device and dtype of the old ones
        if n_num:
            if self.num is None:
                self.num = nn.Linear(n_num, self.d_out, bias=False).to(device=like.device, dtype=like.dtype)
                nn.init.zeros_(self.num.weight)
            else:
                self.num = widen_linear(self.num, self.n_num, n_num)
            self.n_num += n_num
        if cardinalities:
            cat = grow_embeddings(self.cat, self.cardinalities, cardinalities, self.d_out)
            cat = cat.to(device=like.device, dtype=like.dtype)
            cat.table.weight[sum(self.cardinalities) :] = 0.0
            self.cat, self.cardinalities = cat, [*self.cardinalities, *cardinalities]


class WideDeepHead(nn.Module):
    """``(h (B, d_backbone), x_num, x_cat) -> deep(h) + wide(x_num, x_cat)``: ``(B, d_out)``."""

    def __init__(self, *, d_backbone: int, wide: Wide, d_out: int):
        super().__init__()
        self.deep = nn.Linear(d_backbone, d_out)
        self.wide = wide

    def forward(self, h: Tensor, x_num: Tensor, x_cat: Tensor) -> Tensor:
        return self.deep(h) + self.wide(x_num, x_cat)  # (B, d_out)


class WideDeep(TabularModel):
    """Wide & Deep with hashed categorical crosses in the wide part.

    Shape: ``x_num (B, n_num)``, ``x_cat (B, n_cat)`` -> ``(B, d_out)`` (``(B, mlp_hidden[-1])`` if
    ``d_out=None``).

    Args:
        n_num, cardinalities: the inputs (filled in from the feature spec).
        d_out: output size; ``None`` returns the deep backbone's features (no wide part).
        cat_names: names of the ``x_cat`` columns (the spec's categorical names), to resolve named crosses.
        crosses: feature combinations for the wide part, each a list of names (in ``cat_names``) or
            ``x_cat`` indices, e.g. ``[["pickup_cell", "dropoff_cell"], ["pickup_cell", "hour"]]``.
        n_cross_buckets: hash buckets per cross (its own weight slice each).
        d_embed: width of the deep part's categorical embeddings (paper: 32).
        mlp_hidden: deep MLP sizes (paper: 1024, 512, 256 with ReLU).
        dropout: dropout after each deep hidden layer.

    >>> m = WideDeep(n_num=2, cardinalities=[4, 5, 6], cat_names=["a", "b", "c"], crosses=[["a", "c"]],
    ...              n_cross_buckets=64, mlp_hidden=(8,))
    >>> m(torch.randn(2, 2), torch.tensor([[0, 1, 2], [3, 4, 5]])).shape
    torch.Size([2, 1])
    """

    cross_indices = staticmethod(cross_indices)
    embed: MLPEmbed
    backbone: nn.Sequential

    def __init__(
        self,
        *,
        n_num: int,
        cardinalities: Sequence[int],
        d_out: int | None = 1,
        cat_names: Sequence[str] | None = None,
        crosses: Sequence[Sequence[str | int]] = (),
        # NOTE[DIFF]: the paper crosses features exactly; hashing (as TF's crossed_column, which the
        # paper's implementation used) bounds the table size. 2**18 keeps the ~42k pickup x dropoff cell
        # pairs of the taxi spec at a few percent collisions.
        n_cross_buckets: int = 2**18,
        d_embed: int = 32,
        mlp_hidden: Sequence[int] = (1024, 512, 256),
        # NOTE[DIFF]: the paper uses no dropout (and trains the wide part with FTRL + L1, the deep part with
        # AdaGrad); here one optimizer trains both, so dropout is the deep part's regularizer.
        dropout: float = 0.1,
    ):
        super().__init__()
        check_inputs(n_num, cardinalities)
        if cat_names is not None and len(cat_names) != len(cardinalities):
            raise ValueError(f"{len(cat_names)=} must equal {len(cardinalities)=}")
        if not 1 <= n_cross_buckets <= _M:
            raise ValueError(f"{n_cross_buckets=} must be in [1, 2**31 - 1]")
        if d_embed < 1 or not mlp_hidden or any(d < 1 for d in mlp_hidden):
            raise ValueError(f"{d_embed=} and every MLP hidden size must be >= 1; got {list(mlp_hidden)=}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{dropout=} must be in [0, 1)")
        self.crosses = cross_indices(cat_names, crosses, n_cat=len(cardinalities))

        self.embed = MLPEmbed(n_num, cardinalities, d_embed)
        self.backbone = mlp_layers(self.embed.d_out, mlp_hidden, dropout)
        self.d_backbone = mlp_hidden[-1] if mlp_hidden else self.embed.d_out
        self.head: WideDeepHead | None = None
        if d_out is not None:
            wide = Wide(
                n_num=n_num,
                cardinalities=cardinalities,
                crosses=self.crosses,
                n_cross_buckets=n_cross_buckets,
                d_out=d_out,
            )
            self.head = WideDeepHead(d_backbone=self.d_backbone, wide=wide, d_out=d_out)

    @property
    def wide(self) -> Wide | None:
        return self.head.wide if self.head is not None else None

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        h = self.backbone(self.embed(x_num, x_cat))  # (B, d_backbone)
        return h if self.head is None else self.head(h, x_num, x_cat)  # (B, d_out)

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Grow the deep embeddings and widen the deep MLP's first ``Linear`` with zero weights for the new
        columns (:meth:`~tabxfer.models.mlp.MLPEmbed.add_features`), and give them zero wide weights
        (:meth:`Wide.add_features`): the grown model computes what it did before. Crosses stay as they were
        (old ``x_cat`` indices do not move); a model built fresh with the grown ``cat_names`` and the same
        ``crosses`` has the same parameters.
        """
        check_added(n_num, cardinalities)
        first = self.backbone[0]
        assert isinstance(first, nn.Linear)  # mlp_layers with a non-empty mlp_hidden
        self.backbone[0] = self.embed.add_features(first, n_num=n_num, cardinalities=cardinalities)
        if self.head is not None:
            self.head.wide.add_features(n_num=n_num, cardinalities=cardinalities)
        self.train(self.training)  # new modules take the model's train/eval mode
