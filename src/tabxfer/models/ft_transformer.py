"""FT-Transformer: a feature tokenizer, a [CLS] token and pre-norm Transformer blocks.

Gorishniy, Rubachev, Khrulkov, Babenko. "Revisiting Deep Learning Models for Tabular Data." NeurIPS 2021.
https://arxiv.org/abs/2106.11959 (reference code: https://github.com/yandex-research/rtdl).

Every feature becomes one ``d_token`` token (numeric: ``x * W_i + b_i``; categorical: ``E_i[x] + b_i``),
a learned [CLS] token is prepended, pre-norm blocks (multi-head self-attention, ReGLU FFN) mix the tokens,
and the prediction is read from the [CLS] token. The defaults are rtdl's ``make_default`` for 3 blocks:
``d_token=192, n_heads=8, attention_dropout=0.2, ffn_d_hidden_multiplier=4/3, ffn_dropout=0.1,
residual_dropout=0.0``.

Parts: ``embed`` = :class:`FeatureTokenizer` (feature tokens *and* the [CLS] token), ``backbone`` =
:class:`FTBackbone` (blocks, final LayerNorm + ReLU, [CLS] read-out), ``head`` = ``Linear(d_token, d_out)``.

New columns (fine-tuning on a wider schema)
-------------------------------------------
The tokens carry no positional information: each column owns its parameters (one row of ``weight``/
``bias`` for a numeric column; its vocabulary rows plus one bias row for a categorical column) and the
blocks are equivariant in the tokens, so the backbone runs unchanged on any number of tokens. A new column
is one more token: :meth:`FeatureTokenizer.add_features` (or :meth:`FTTransformer.add_features`) appends
fresh parameters for columns appended at the end of ``x_num`` / ``x_cat`` and keeps every trained one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tabxfer.models.base import (
    CategoricalEmbeddings,
    NumericTokens,
    TabularModel,
    check_added,
    check_inputs,
    grow_embeddings,
)


def check_dropout(**dropouts: float) -> None:
    for name, p in dropouts.items():
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{name}={p} must be in [0, 1)")


class FeatureTokenizer(nn.Module):
    """``(x_num (B, n_num), x_cat (B, n_cat)) -> (B, 1 + n_num + n_cat, d_token)``: [CLS], numeric, categorical.

    Token order is ``[CLS], x_num[:, 0], ..., x_cat[:, 0], ...``; the [CLS] token stays at index 0 when
    columns are added, which is where :class:`FTBackbone` reads it.
    """

    no_weight_decay = True  # tokenizer parameters are not decayed (rtdl); read by param_groups

    def __init__(self, *, n_num: int, cardinalities: Sequence[int], d_token: int):
        super().__init__()
        self.d_token = d_token
        self.n_num = n_num
        self.cardinalities = list(cardinalities)
        self.num = NumericTokens(n_num, d_token) if n_num else None
        self.cat = CategoricalEmbeddings(self.cardinalities, d_token) if self.cardinalities else None
        self.cat_bias = (
            nn.Parameter(torch.empty(len(self.cardinalities), d_token)) if self.cat is not None else None
        )
        self.cls = nn.Parameter(torch.empty(d_token))
        # rtdl initializes every tokenizer parameter with U(-1/sqrt(d), 1/sqrt(d)) (base: N(0, 1/d) tables).
        bound = d_token**-0.5
        for p in (self.cls, self.cat_bias, self.cat.table.weight if self.cat is not None else None):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    @property
    def n_tokens(self) -> int:
        return 1 + self.n_num + len(self.cardinalities)

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        # NOTE[DIFF]: [CLS] goes first (the paper and rtdl <= 0.0.13 append it last). Without positional
        # embeddings the two are the same model; first, it keeps index 0 when columns are appended.
        tokens = [self.cls.expand(x_num.shape[0], 1, self.d_token)]  # (B, 1, d)
        if self.num is not None:
            tokens.append(self.num(x_num))  # (B, n_num, d)
        if self.cat is not None and self.cat_bias is not None:
            tokens.append(self.cat(x_cat) + self.cat_bias)  # (B, n_cat, d)
        return torch.cat(tokens, dim=1)  # (B, 1 + n_num + n_cat, d)

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Append tokens for ``n_num`` numeric and ``len(cardinalities)`` categorical columns that the
        inputs gain *at the end* of ``x_num`` / ``x_cat``. Trained parameters are copied; new ones are
        initialized as at construction, on the device and dtype of the old ones. Build the optimizer
        afterwards: the grown tensors are new.
        """
        check_added(n_num, cardinalities)
        device, dtype, bound = self.cls.device, self.cls.dtype, self.d_token**-0.5
        if n_num:
            num = NumericTokens(self.n_num + n_num, self.d_token).to(device=device, dtype=dtype)
            if self.num is not None:
                num.weight[: self.n_num] = self.num.weight
                num.bias[: self.n_num] = self.num.bias
            self.num, self.n_num = num, self.n_num + n_num
        if cardinalities:
            n_old = sum(self.cardinalities)
            cat = grow_embeddings(self.cat, self.cardinalities, cardinalities, self.d_token)
            cat = cat.to(device=device, dtype=dtype)
            nn.init.uniform_(cat.table.weight[n_old:], -bound, bound)  # rtdl's init, as at construction
            n_cat = len(self.cardinalities) + len(cardinalities)
            bias = torch.empty(n_cat, self.d_token, device=device, dtype=dtype)
            nn.init.uniform_(bias, -bound, bound)
            if self.cat_bias is not None:
                bias[: len(self.cardinalities)] = self.cat_bias
            self.cat, self.cat_bias = cat, nn.Parameter(bias)
            self.cardinalities = [*self.cardinalities, *cardinalities]


class MultiheadAttention(nn.Module):
    """Multi-head attention over ``scaled_dot_product_attention``: ``(B, n_q, d), (B, n, d) -> (B, n_q, d)``.

    As rtdl: no output projection when ``n_heads == 1``, zero-initialized biases.
    """

    def __init__(self, *, d_token: int, n_heads: int, dropout: float):
        super().__init__()
        if d_token % n_heads:
            raise ValueError(f"{n_heads=} must divide {d_token=}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.onnx_node = False  # export as one ONNX Attention node (see attend)
        self.W_q = nn.Linear(d_token, d_token)
        self.W_kv = nn.Linear(d_token, 2 * d_token)  # K and V in one matmul; same init as two Linears
        self.W_out = nn.Linear(d_token, d_token) if n_heads > 1 else None
        for m in (self.W_q, self.W_kv, self.W_out):
            if m is not None:
                nn.init.zeros_(m.bias)

    def _heads(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.n_heads, -1).transpose(1, 2)  # (B, h, n, d / h)

    def forward(self, x_q: Tensor, x_kv: Tensor) -> Tensor:
        kv = self.W_kv(x_kv)  # (B, n, 2 * d)
        d = kv.shape[-1] // 2  # slices, not chunk (see ReGLU)
        return self.attend(self.W_q(x_q), kv[..., :d], kv[..., d:])

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """The attention from projected queries ``(B, n_q, d)``, keys and values ``(B, n, d)``, output
        projection included: ``(B, n_q, d)``.

        Under :func:`attention_nodes` it exports as one ONNX ``Attention`` node (opset 23): onnxruntime's
        kernel runs each (row, head) in cache, where MatMul/Softmax/MatMul nodes write and reread a
        ``(B, h, n_q, n)`` score tensor between them and their tiny per-head matmuls (11 x 4 x 11 in
        TabTransformer) cannot amortize a kernel call. Measured on the int8 TabTransformer graph at batch
        4096: 43-52 k rows/s with token-major MatMuls (onnxruntime folding every per-head view into
        ``FusedMatMul``), 57-58 k with ``Attention``; the exporter's own decomposition of
        ``scaled_dot_product_attention`` was slower than either.
        """
        h = self.n_heads
        if self.onnx_node and torch.onnx.is_in_onnx_export():
            x = torch.onnx.ops.attention(q, k, v, q_num_heads=h, kv_num_heads=h)[0]
        else:
            p = self.dropout if self.training else 0.0
            x = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v), dropout_p=p)
            x = x.transpose(1, 2).flatten(2)  # (B, n_q, d)
        return x if self.W_out is None else self.W_out(x)


ATTENTION_OPSET = 23  # the first with ONNX's Attention


@contextlib.contextmanager
def attention_nodes(model: nn.Module) -> Iterator[None]:
    """Inside: every :class:`MultiheadAttention` in ``model`` exports as one ONNX ``Attention`` node, which
    needs opset ``ATTENTION_OPSET`` (outside, exports at any opset, such as the TorchScript exporter's, get
    ``scaled_dot_product_attention`` decomposed). Put back on exit."""
    attentions = [m for m in model.modules() if isinstance(m, MultiheadAttention)]
    before = [m.onnx_node for m in attentions]
    try:
        for m in attentions:
            m.onnx_node = True
        yield
    finally:
        for m, b in zip(attentions, before, strict=True):
            m.onnx_node = b


class AttentionModel(TabularModel):
    """A :class:`TabularModel` built on :class:`MultiheadAttention`: its export (:meth:`exporting`) emits
    ONNX ``Attention`` nodes (:func:`attention_nodes`), so it needs opset ``ATTENTION_OPSET``."""

    onnx_opset = ATTENTION_OPSET

    @contextlib.contextmanager
    def exporting(self) -> Iterator[None]:
        with attention_nodes(self):
            yield


class ReGLU(nn.Module):
    """``a * relu(b)`` for ``a, b = x.chunk(2, -1)``: ``(..., 2 * d) -> (..., d)`` (Shazeer 2020)."""

    def forward(self, x: Tensor) -> Tensor:
        d = x.shape[-1] // 2  # slices, not chunk: chunk's Split does not down-convert to opset 17
        return x[..., :d] * F.relu(x[..., d:])


class Block(nn.Module):
    """A pre-norm Transformer block: ``x + Attn(LN(x))``, then ``x + FFN(LN(x))``: ``(B, n, d) -> (B, n_q, d)``.

    ``n_q = 1`` when ``cls_only`` (the last block: only the [CLS] token's output is used, so only its
    query and FFN are computed, as in rtdl), else ``n_q = n``.
    """

    def __init__(
        self,
        *,
        d_token: int,
        n_heads: int,
        attention_dropout: float,
        d_ffn: int,
        ffn_dropout: float,
        residual_dropout: float,
        attention_norm: bool,
        cls_only: bool,
    ):
        super().__init__()
        # rtdl's first block skips the attention LayerNorm (first_prenormalization=False): its input is
        # the tokenizer's output, which has no residual stream to normalize yet.
        self.attention_norm = nn.LayerNorm(d_token) if attention_norm else nn.Identity()
        self.attention = MultiheadAttention(d_token=d_token, n_heads=n_heads, dropout=attention_dropout)
        self.ffn_norm = nn.LayerNorm(d_token)
        self.ffn = nn.Sequential(
            nn.Linear(d_token, 2 * d_ffn), ReGLU(), nn.Dropout(ffn_dropout), nn.Linear(d_ffn, d_token)
        )
        self.residual_dropout = nn.Dropout(residual_dropout)
        self.cls_only = cls_only

    def forward(self, x: Tensor) -> Tensor:
        h = self.attention_norm(x)  # (B, n, d)
        if self.cls_only:  # queries: the [CLS] token (token 0) only
            x, q = x[:, :1], h[:, :1]  # (B, 1, d)
        else:
            q = h
        x = x + self.residual_dropout(self.attention(q, h))  # (B, n_q, d)
        return x + self.residual_dropout(self.ffn(self.ffn_norm(x)))  # (B, n_q, d)


class FTBackbone(nn.Module):
    """Blocks, then ``ReLU(LayerNorm(.))`` of the [CLS] token: ``(B, n_tokens, d) -> (B, d)``."""

    def __init__(self, blocks: Sequence[Block], d_token: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d_token)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)  # (B, n_tokens, d); (B, 1, d) after the last block
        return F.relu(self.norm(x[:, 0]))  # (B, d)


class FTTransformer(AttentionModel):
    """FT-Transformer with rtdl's default hyperparameters.

    Shape: ``x_num (B, n_num)``, ``x_cat (B, n_cat)`` -> ``(B, d_out)`` (``(B, d_token)`` if ``d_out=None``).

    Args:
        n_num, cardinalities: the inputs (filled in from the feature spec).
        d_out: output size; ``None`` returns the backbone's [CLS] features.
        d_token: token width (paper/rtdl default for 3 blocks: 192).
        n_blocks, n_heads: Transformer depth and heads (``n_heads`` must divide ``d_token``).
        attention_dropout: dropout on the attention probabilities.
        ffn_d_hidden_multiplier: ReGLU hidden width as a multiple of ``d_token`` (4/3).
        ffn_dropout: dropout after the ReGLU.
        residual_dropout: dropout on each branch before it is added to the residual stream.

    >>> m = FTTransformer(n_num=3, cardinalities=[4, 5], d_token=16, n_heads=4, d_out=1)
    >>> m(torch.randn(2, 3), torch.tensor([[0, 1], [3, 4]])).shape
    torch.Size([2, 1])
    >>> m.add_features(n_num=1, cardinalities=[6])
    >>> m(torch.randn(2, 4), torch.tensor([[0, 1, 5], [3, 4, 0]])).shape
    torch.Size([2, 1])
    """

    embed: FeatureTokenizer

    def __init__(
        self,
        *,
        n_num: int,
        cardinalities: Sequence[int],
        d_out: int | None = 1,
        d_token: int = 192,
        n_blocks: int = 3,
        n_heads: int = 8,
        attention_dropout: float = 0.2,
        ffn_d_hidden_multiplier: float = 4 / 3,
        ffn_dropout: float = 0.1,
        residual_dropout: float = 0.0,
    ):
        super().__init__()
        check_inputs(n_num, cardinalities)
        if n_blocks < 1:
            raise ValueError(f"{n_blocks=} must be >= 1")
        if d_token < 1 or n_heads < 1 or d_token % n_heads:
            raise ValueError(f"{n_heads=} must divide {d_token=} (both >= 1)")
        if ffn_d_hidden_multiplier <= 0:
            raise ValueError(f"{ffn_d_hidden_multiplier=} must be > 0")
        check_dropout(
            attention_dropout=attention_dropout, ffn_dropout=ffn_dropout, residual_dropout=residual_dropout
        )
        d_ffn = max(1, int(d_token * ffn_d_hidden_multiplier))  # rtdl: int(d_token * 4/3)

        self.embed = FeatureTokenizer(n_num=n_num, cardinalities=cardinalities, d_token=d_token)
        blocks = [
            Block(
                d_token=d_token,
                n_heads=n_heads,
                attention_dropout=attention_dropout,
                d_ffn=d_ffn,
                ffn_dropout=ffn_dropout,
                residual_dropout=residual_dropout,
                attention_norm=i > 0,
                cls_only=i == n_blocks - 1,
            )
            for i in range(n_blocks)
        ]
        self.backbone = FTBackbone(blocks, d_token)
        self.d_backbone = d_token
        # rtdl's head is LayerNorm -> ReLU -> Linear; the LayerNorm + ReLU live in the backbone here so that
        # the backbone's features are the ones rtdl's head reads, and a new head is one Linear.
        self.head = nn.Linear(d_token, d_out) if d_out is not None else None

    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Grow the tokenizer for columns appended to the inputs (see the module docstring); the blocks and
        the head are unchanged (they do not depend on the number of tokens)."""
        self.embed.add_features(n_num=n_num, cardinalities=cardinalities)
        self.train(self.training)  # new modules take the model's train/eval mode
