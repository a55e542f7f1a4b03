"""Temporal Fusion Transformer, adapted from multi-horizon forecasting to one regression target per trip.

Lim, Arık, Loeff, Pfister. "Temporal Fusion Transformers for interpretable multi-horizon time series
forecasting." International Journal of Forecasting 37(4), 2021. https://arxiv.org/abs/1912.09363
(reference code: google-research/google-research/tft).

Inputs: the trip's features are the *static* covariates (each numeric column a linear token, each
categorical column an embedding, all ``d_model`` wide), and the optional leak-free context ``x_ctx
(B, T, n_ctx)`` (e.g. the 24 hourly demand/speed aggregates before pickup) holds the *past* inputs, one
temporal variable per channel. The paper's pipeline then runs unchanged: variable selection networks
(static; temporal with context ``c_s``), four static context vectors, an LSTM over the past initialized with
``(c_h, c_c)``, gated skip + LayerNorm, static enrichment with ``c_e``, interpretable multi-head attention
with a causal mask, gated skip, a position-wise GRN and the output gate skipping back to the LSTM layer.

One target per trip: there are no known future inputs and one horizon, so the sequence is the ``T`` past
steps plus one "present" decoder step whose input is the selected static representation (see NOTE[DIFF]
in :meth:`TFTBackbone.encode`). The prediction is read from that step, whose query sees all ``T + 1``
positions. Without context (``n_ctx=0``, or ``x_ctx=None`` at call time) the temporal path is skipped: the
sequence is the decoder step alone, run by the decoder LSTM from ``(c_h, c_c)``, and attention is trivially 1.

Parts: ``embed`` = :class:`TFTEmbed` (static and temporal variable embeddings), ``backbone`` =
:class:`TFTBackbone` (everything from variable selection to the output gate), ``head`` =
``Linear(d_model, d_out)`` (the paper's quantile outputs become one regression output).
After each forward, :attr:`TFT.last_interpretation` holds the variable-selection and attention weights.

New columns (fine-tuning on a wider schema)
-------------------------------------------
The static variables are ordered ``[numerics..., categoricals...]``, so columns appended at the end of
``x_num`` / ``x_cat`` (the rule of :mod:`tabxfer.models.base`) become static variables inserted after the
old numerics and after the old categoricals. :meth:`TFT.add_features` grows, in place and keeping every
trained weight at its variable's new index: the numeric tokens and categorical tables (and the per-variable
projection of narrow tables), every per-variable GRN of the static selection network (new slices
initialized as at construction), and the selection-weight GRN, whose input is the flattened
``n_static * d_model`` embeddings and whose output is one logit per variable: zero input weights for the
new variables' blocks (its hidden layer is unchanged) and zero output rows (skip and GLU), with the
LayerNorm over the logits giving each new variable gain 0 and bias ``mean(old biases) -``
:data:`NEW_VARIABLE_LOGIT_GAP`. A new variable's logit thus starts as that constant, about ``e^-2`` of an
average old variable's weight: little disturbance of the trained selection, but not so little that the
softmax starves its gradient. The old logits still move a little, as the LayerNorm's statistics now count
the new variables. The temporal inputs and everything after the static selection are unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

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
    widen_linear,
)
from tabxfer.models.ft_transformer import check_dropout

NEW_VARIABLE_LOGIT_GAP = 2.0
"""How far below the mean of the old variables' logit biases a new static variable's selection logit starts
(see the module docstring): it starts with about ``e^-2`` of an average old variable's weight."""


@dataclass
class TFTInterpretation:
    """Weights of one forward pass. Static variables are ordered numeric columns, then categorical ones.

    ``static_weights (B, n_num + n_cat)`` and ``temporal_weights (B, T, n_ctx)`` (``None`` without context)
    are the variable-selection softmaxes; ``attention (B, T + 1)`` is the final query's attention over the
    past steps and the present step, averaged over heads (the paper's interpretable attention).
    """

    static_weights: Tensor
    temporal_weights: Tensor | None
    attention: Tensor

    def detach(self) -> TFTInterpretation:
        t = self.temporal_weights
        return TFTInterpretation(
            self.static_weights.detach(), None if t is None else t.detach(), self.attention.detach()
        )


class GroupedLinear(nn.Module):
    """One ``Linear(d_in, d_out)`` per variable, batched: ``(..., n, d_in) -> (..., n, d_out)``."""

    def __init__(self, n: int, d_in: int, d_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(n, d_out))
        bound = d_in**-0.5  # nn.Linear's default range
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        n, d_in, d_out = self.weight.shape
        z = x.reshape(-1, n, d_in).transpose(0, 1)  # (n, M, d_in), M = prod(...)
        y = torch.bmm(z, self.weight).transpose(0, 1)  # (M, n, d_out): one matmul per variable
        return y.reshape((*x.shape[:-1], d_out)) + self.bias  # (..., n, d_out)

    @torch.no_grad()
    def insert(self, at: int, n: int) -> None:
        """Insert ``n`` variables before variable ``at``, initialized as at construction.

        >>> g = GroupedLinear(2, 3, 4)
        >>> old = g.weight.clone()
        >>> g.insert(1, 2)
        >>> g.weight.shape, torch.equal(g.weight[0], old[0]), torch.equal(g.weight[3], old[1])
        (torch.Size([4, 3, 4]), True, True)
        """
        w = self.weight
        new = GroupedLinear(n, w.shape[1], w.shape[2]).to(w)
        self.weight = nn.Parameter(_insert(w, at, new.weight))
        self.bias = nn.Parameter(_insert(self.bias, at, new.bias))


class GroupedLayerNorm(nn.Module):
    """LayerNorm over the last dim with per-variable affine parameters: ``(..., n, d) -> (..., n, d)``."""

    def __init__(self, n: int, d: int):
        super().__init__()
        self.d = d
        self.weight = nn.Parameter(torch.ones(n, d))
        self.bias = nn.Parameter(torch.zeros(n, d))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, (self.d,)) * self.weight + self.bias

    @torch.no_grad()
    def insert(self, at: int, n: int) -> None:
        """Insert ``n`` variables before variable ``at``, initialized as at construction (identity)."""
        w, b = self.weight, self.bias
        self.weight = nn.Parameter(_insert(w, at, w.new_ones(n, self.d)))
        self.bias = nn.Parameter(_insert(b, at, b.new_zeros(n, self.d)))


def _insert(t: Tensor, at: int, new: Tensor) -> Tensor:
    """``t`` with ``new`` inserted before index ``at`` of dim 0."""
    if not 0 <= at <= t.shape[0]:
        raise ValueError(f"cannot insert at {at} into {t.shape[0]} variables")
    return torch.cat([t[:at], new, t[at:]])


def elu_then(linear: nn.Module, x: Tensor) -> Tensor:
    """``linear(elu(x))``. Exported to ONNX as ``linear(relu(x) + exp(min(x, 0))) - linear.weight @ 1``, the
    ``-1`` of ``elu = relu(x) + exp(min(x, 0)) - 1`` moved into the bias: onnxruntime's ``Elu`` kernel is
    scalar (4.4 ms on a ``(4096 * 24, 64)`` tensor where ``Relu``, ``Clip``, ``Exp`` and ``Add`` take
    2.1 ms together; the int8 TFT-with-context graph at batch 4096: 19.9 k -> 21.1 k rows/s)."""
    if torch.onnx.is_in_onnx_export() and isinstance(linear, nn.Linear) and linear.bias is not None:
        bias = linear.bias - linear.weight.sum(1)
        return F.linear(F.relu(x) + torch.exp(x.clamp(max=0.0)), linear.weight, bias)
    return linear(F.elu(x))


class GateAddNorm(nn.Module):
    """``LayerNorm(skip + GLU(Dropout(x)))``: ``(..., d_in), (..., d_out) -> (..., d_out)``.

    The GLU is eq. 5; the gated skips around the LSTM, the attention and the block are eqs. 17, 20 and 22.

    ``n_groups > 0``: inputs are ``(..., n_groups, d)`` and every variable has its own weights.
    """

    def __init__(self, *, d_in: int, d_out: int, dropout: float, n_groups: int = 0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)  # as the reference code: dropout on the gate's input
        self.fc = GroupedLinear(n_groups, d_in, 2 * d_out) if n_groups else nn.Linear(d_in, 2 * d_out)
        self.norm = GroupedLayerNorm(n_groups, d_out) if n_groups else nn.LayerNorm(d_out)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export() and not self.training and isinstance(self.fc, nn.Linear):
            return self.norm(skip + self._glu_two_matmuls(x))
        return self.norm(skip + F.glu(self.fc(self.dropout(x)), dim=-1))  # GLU: (W4 x) * sigmoid(W5 x)

    def _glu_two_matmuls(self, x: Tensor) -> Tensor:
        """The eval-mode GLU as two matmuls, for ONNX: one matmul to ``2 * d_out`` is split in two by a
        ``Split`` that copies both halves (8.8 % of the int8 TFT-with-context graph's time at batch 4096;
        19.0 k -> 20.6 k rows/s this way)."""
        assert isinstance(self.fc, nn.Linear) and self.fc.bias is not None
        d, w, b = self.fc.out_features // 2, self.fc.weight, self.fc.bias
        return F.linear(x, w[:d], b[:d]) * torch.sigmoid(F.linear(x, w[d:], b[d:]))


class GRN(nn.Module):
    """Gated residual network (eqs. 2-4): ``LayerNorm(skip(a) + GLU(W1 ELU(W2 a + W3 c + b2) + b1))``.

    Shape: ``a (..., d_in)``, optional context ``c`` broadcastable to ``(..., d_context)`` -> ``(..., d_out)``.
    ``skip`` is the identity, or a linear map when ``d_in != d_out``. ``n_groups > 0``: ``a`` is
    ``(..., n_groups, d_in)`` and every variable has its own GRN (no context).

    >>> GRN(d_in=8, d_hidden=4, d_out=2, dropout=0.0, d_context=3)(torch.randn(5, 8), torch.randn(5, 3)).shape
    torch.Size([5, 2])
    """

    def __init__(
        self, *, d_in: int, d_hidden: int, d_out: int, dropout: float, d_context: int = 0, n_groups: int = 0
    ):
        super().__init__()
        self.n_groups = n_groups

        def linear(i: int, o: int) -> nn.Module:
            return GroupedLinear(n_groups, i, o) if n_groups else nn.Linear(i, o)

        self.fc2 = linear(d_in, d_hidden)
        self.context = nn.Linear(d_context, d_hidden, bias=False) if d_context else None
        self.fc1 = linear(d_hidden, d_hidden)
        self.skip = linear(d_in, d_out) if d_in != d_out else None
        self.gate = GateAddNorm(d_in=d_hidden, d_out=d_out, dropout=dropout, n_groups=n_groups)

    def forward(self, a: Tensor, c: Tensor | None = None) -> Tensor:
        eta = self.fc2(a)  # (..., d_hidden)
        if self.context is not None and c is not None:
            eta = eta + self.context(c)
        eta = elu_then(self.fc1, eta)  # (..., d_hidden)
        return self.gate(eta, a if self.skip is None else self.skip(a))  # (..., d_out)

    @torch.no_grad()
    def per_group(self) -> nn.ModuleList:
        """A grouped GRN (``n_groups > 0``) as one plain GRN per variable, holding copies of its weights:
        variable ``j``'s GRN maps ``a[..., j, :]`` to this GRN's ``[..., j, :]``.

        >>> g = GRN(d_in=3, d_hidden=4, d_out=2, dropout=0.0, n_groups=5).eval()
        >>> a = torch.randn(7, 5, 3)
        >>> torch.allclose(g.per_group()[4](a[:, 4]), g(a)[:, 4], atol=1e-6)
        True
        """
        if not self.n_groups:
            raise ValueError("per_group() needs a grouped GRN (n_groups > 0)")
        fc2, fc1, gate = self.fc2, self.fc1, self.gate
        assert isinstance(fc2, GroupedLinear) and isinstance(fc1, GroupedLinear)
        assert isinstance(gate.fc, GroupedLinear) and isinstance(gate.norm, GroupedLayerNorm)
        d_in, d_hidden = fc2.weight.shape[1:]
        d_out = gate.norm.d
        out = nn.ModuleList()
        for j in range(self.n_groups):
            grn = GRN(d_in=d_in, d_hidden=d_hidden, d_out=d_out, dropout=0.0).to(fc2.weight)
            pairs = [(grn.fc2, fc2), (grn.fc1, fc1), (grn.gate.fc, gate.fc)]
            if self.skip is not None:
                assert isinstance(self.skip, GroupedLinear) and isinstance(grn.skip, nn.Linear)
                pairs.append((grn.skip, self.skip))
            for plain, grouped in pairs:
                assert isinstance(plain, nn.Linear) and plain.bias is not None
                plain.weight.copy_(grouped.weight[j].T)
                plain.bias.copy_(grouped.bias[j])
            assert isinstance(grn.gate.norm, nn.LayerNorm)
            grn.gate.norm.weight.copy_(gate.norm.weight[j])
            grn.gate.norm.bias.copy_(gate.norm.bias[j])
            out.append(grn.train(self.training))
        return out


class VariableSelection(nn.Module):
    """Variable selection network (eqs. 6-8): ``(..., n, d)`` [+ context] -> ``((..., d), weights (..., n))``.

    The weights are a softmax over variables of a GRN on the flattened inputs; each variable is transformed
    by its own GRN and the outputs are summed with those weights.
    """

    def __init__(self, *, n_vars: int, d_model: int, dropout: float, d_context: int = 0):
        super().__init__()
        self.n_vars, self.d_model = n_vars, d_model
        self.weights = GRN(
            d_in=n_vars * d_model, d_hidden=d_model, d_out=n_vars, dropout=dropout, d_context=d_context
        )
        self.variables: GRN | nn.ModuleList = GRN(
            d_in=d_model, d_hidden=d_model, d_out=d_model, dropout=dropout, n_groups=n_vars
        )

    def forward(self, xi: Tensor, c: Tensor | None = None) -> tuple[Tensor, Tensor]:
        v = torch.softmax(self.weights(xi.flatten(-2), c), dim=-1)  # (..., n)
        if isinstance(self.variables, nn.ModuleList):  # one GRN per variable: see TFT.exporting
            return weighted_sum(v, [grn(xi[..., j, :]) for j, grn in enumerate(self.variables)]), v
        h = self.variables(xi)  # (..., n, d)
        return (v.unsqueeze(-1) * h).sum(-2), v  # (..., d), (..., n)

    def new_variable_logit(self) -> float:
        """The constant selection logit :meth:`insert` gives new variables by default (module docstring)."""
        return self.weights.gate.norm.bias.mean().item() - NEW_VARIABLE_LOGIT_GAP

    @torch.no_grad()
    def insert(self, at: int, n: int, *, logit: float | None = None) -> None:
        """Insert ``n`` variables before variable ``at``; every old variable keeps its weights.

        Each new variable gets its own GRN, initialized as at construction; the selection-weight GRN gets
        zero input weights for the new variables' blocks, zero output rows, and LayerNorm gain 0 and bias
        ``logit`` (default :meth:`new_variable_logit`) for the new logits, which thus start at ``logit``.
        """
        if not 0 <= at <= self.n_vars or n < 0:
            raise ValueError(f"cannot insert {n} variables at {at} into {self.n_vars}")
        if not n:
            return
        logit = self.new_variable_logit() if logit is None else logit
        n_old, d, grn, gate = self.n_vars, self.d_model, self.weights, self.weights.gate
        assert isinstance(grn.fc2, nn.Linear) and isinstance(gate.fc, nn.Linear)
        assert isinstance(gate.norm, nn.LayerNorm) and gate.norm.bias is not None
        grn.fc2 = widen_linear(grn.fc2, at * d, n * d)  # input: the flattened (n_vars * d) embeddings
        if grn.skip is not None:  # None when d_model == 1 (then it is the identity, before and after)
            assert isinstance(grn.skip, nn.Linear)
            grn.skip = _insert_outputs(widen_linear(grn.skip, at * d, n * d), [at], n)
        gate.fc = _insert_outputs(gate.fc, [at, n_old + at], n)  # the GLU's value and gate halves
        w, b = gate.norm.weight, gate.norm.bias
        gate.norm = nn.LayerNorm(n_old + n, eps=gate.norm.eps).to(w)
        gate.norm.weight.copy_(_insert(w, at, w.new_zeros(n)))
        gate.norm.bias.copy_(_insert(b, at, b.new_full((n,), logit)))
        for m in self.variables.modules():
            if isinstance(m, GroupedLinear | GroupedLayerNorm):
                m.insert(at, n)
        self.n_vars += n


def weighted_sum(v: Tensor, parts: Sequence[Tensor]) -> Tensor:
    """``sum_j v[..., j, None] * parts[j]``: ``(..., n)``, n x ``(..., d)`` -> ``(..., d)``."""
    out = v[..., 0, None] * parts[0]
    for j in range(1, len(parts)):
        out = out + v[..., j, None] * parts[j]
    return out


@torch.no_grad()
def _insert_outputs(linear: nn.Linear, ats: Sequence[int], n: int) -> nn.Linear:
    """A copy of ``linear`` with ``n`` zero output rows (weight and bias) inserted before each output row in
    ``ats`` (old indices, ascending)."""
    weight: Tensor = linear.weight
    bias: Tensor | None = linear.bias
    for at in reversed(ats):  # from the end, so the earlier indices still hold
        weight = _insert(weight, at, weight.new_zeros(n, weight.shape[1]))
        bias = None if bias is None else _insert(bias, at, bias.new_zeros(n))
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).to(weight)
    out.weight.copy_(weight)
    if bias is not None:
        out.bias.copy_(bias)
    return out


def _tokens_first_scores(q: Tensor, k: Tensor, n_heads: int) -> Tensor:
    """Scaled attention scores ``(B, h, n_q, n)`` from token-major projections ``q (n_q, B, d)``,
    ``k (n, B, d)``: the form the TFT attention takes when exported to ONNX (it needs the head-averaged
    probabilities, which ONNX's ``Attention`` node does not return).

    Every per-head view the matmul reads, ``(n, B, h, d / h)`` permuted to ``(B, h, n, d / h)`` (or
    ``(B, h, d / h, n)`` for K^T), is a permutation onnxruntime folds into the MatMul (``FusedMatMul``'s
    ``transBatch``/``trans`` flags) instead of copying; the ``(B, n, d)`` -> ``(n, B, d)`` transposes of the
    inputs before the projections move whole tokens. In the batch-major layout K^T is a ``(0, 2, 3, 1)``
    transpose that onnxruntime copies element by element, and Q is a copy too (5 % of the context TFT graph;
    on the int8 TabTransformer graph, before it used ``Attention``: 33.9 k rows/s batch-major, 43.7 k
    token-major).
    """
    q, k = (t.reshape(t.shape[0], t.shape[1], n_heads, -1) for t in (q, k))  # (n, B, h, d / h)
    return (q.permute(1, 2, 0, 3) @ k.permute(1, 2, 3, 0)) * (q.shape[-1] ** -0.5)


class InterpretableMultiHeadAttention(nn.Module):
    """Interpretable multi-head attention (eqs. 13-16): per-head queries and keys, one value projection
    shared by all heads, head attention matrices averaged: ``(B, n_q, d), (B, L, d) -> (B, n_q, d)``.

    Also returns the head-averaged attention ``(B, n_q, L)``. Bias-free projections, as the reference code.
    """

    def __init__(self, *, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"{n_heads=} must divide {d_model=}")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.W_q = nn.Linear(d_model, d_model, bias=False)  # all heads' queries in one matmul
        self.W_k = nn.Linear(d_model, d_model, bias=False)
        self.W_v = nn.Linear(d_model, self.d_head, bias=False)  # shared across heads
        self.W_h = nn.Linear(self.d_head, d_model, bias=False)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], self.n_heads, self.d_head).transpose(1, 2)  # (B, h, n, d_head)

    def forward(self, x_q: Tensor, x_kv: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if torch.onnx.is_in_onnx_export():
            q, k = self.W_q(x_q.transpose(0, 1)), self.W_k(x_kv.transpose(0, 1))  # (n_q, B, d), (L, B, d)
            scores = _tokens_first_scores(q, k, self.n_heads)  # (B, h, n_q, L)
        else:
            q, k = self._heads(self.W_q(x_q)), self._heads(self.W_k(x_kv))  # (B, h, n_q, dh), (B, h, L, dh)
            scores = q @ k.transpose(-2, -1) * self.d_head**-0.5  # (B, h, n_q, L)
        if mask is not None:  # True = hidden
            scores = scores.masked_fill(mask, float("-inf"))
        # mean_h(A_h) V W_V = mean_h(A_h V W_V): averaging the matrices first is the same and cheaper
        attention = scores.softmax(-1).mean(1)  # (B, n_q, L)
        # NOTE[DIFF]: dropout on the averaged matrix, not per head (the same at eval)
        return self.W_h(self.dropout(attention) @ self.W_v(x_kv)), attention  # (B, n_q, d), (B, n_q, L)


class TFTEmbed(nn.Module):
    """``(x_num (B, n_num), x_cat (B, n_cat), x_ctx (B, T, n_ctx) | None)`` ->
    ``(static (B, n_num + n_cat, d_model), temporal (B, T, n_ctx, d_model) | None)``.

    Numeric and context channels: per-variable ``x * W_j + b_j``; categoricals: embeddings of width
    ``d_embed_cat``, mapped to ``d_model`` by a per-variable linear map when narrower (a low-rank table).
    """

    # registered (as None when absent) in this order, so that grown models list parameters as fresh ones do
    num: NumericTokens | None
    cat: CategoricalEmbeddings | None
    cat_proj: GroupedLinear | None
    ctx: NumericTokens | None

    def __init__(
        self,
        *,
        n_num: int,
        cardinalities: Sequence[int],
        n_ctx: int,
        ctx_len: int,
        d_model: int,
        d_embed_cat: int,
    ):
        super().__init__()
        n_cat = len(cardinalities)
        self.n_num, self.cardinalities = n_num, list(cardinalities)
        self.n_ctx, self.ctx_len = n_ctx, ctx_len
        self.d_model, self.d_embed_cat = d_model, d_embed_cat
        self.register_module("num", NumericTokens(n_num, d_model) if n_num else None)
        self.register_module("cat", CategoricalEmbeddings(cardinalities, d_embed_cat) if n_cat else None)
        self.register_module(
            "cat_proj",
            GroupedLinear(n_cat, d_embed_cat, d_model) if n_cat and d_embed_cat != d_model else None,
        )
        self.register_module("ctx", NumericTokens(n_ctx, d_model) if n_ctx else None)

    def forward(
        self, x_num: Tensor, x_cat: Tensor, x_ctx: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        static = []
        if self.num is not None:
            static.append(self.num(x_num))  # (B, n_num, d)
        if self.cat is not None:
            e = self.cat(x_cat)  # (B, n_cat, d_embed_cat)
            static.append(e if self.cat_proj is None else self.cat_proj(e))  # (B, n_cat, d)
        if x_ctx is None or self.ctx is None:
            if x_ctx is not None:
                raise ValueError("x_ctx was given but the model was built with n_ctx=0")
            return torch.cat(static, dim=1), None
        # a shape check (no tensor values); skipped while tracing, where the sizes are traced tensors
        if not torch.jit.is_tracing() and tuple(x_ctx.shape[1:]) != (self.ctx_len, self.n_ctx):
            raise ValueError(f"x_ctx must be (B, {self.ctx_len}, {self.n_ctx}); got {tuple(x_ctx.shape)}")
        return torch.cat(static, dim=1), self.ctx(x_ctx)  # (B, n_static, d), (B, T, n_ctx, d)

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Static variables for columns appended to ``x_num`` / ``x_cat``, initialized as at construction;
        the old ones keep their parameters (on their device and dtype)."""
        check_added(n_num, cardinalities)
        ref = next(self.parameters())
        if n_num:
            num = NumericTokens(self.n_num + n_num, self.d_model).to(ref)
            if self.num is not None:
                num.weight[: self.n_num] = self.num.weight
                num.bias[: self.n_num] = self.num.bias
            self.num, self.n_num = num, self.n_num + n_num
        if cardinalities:
            n_cat, d = len(self.cardinalities), self.d_embed_cat
            cat = grow_embeddings(self.cat, self.cardinalities, cardinalities, d).to(ref)
            if self.cat_proj is not None:
                self.cat_proj.insert(n_cat, len(cardinalities))
            elif d != self.d_model:
                self.cat_proj = GroupedLinear(len(cardinalities), d, self.d_model).to(ref)
            self.cat, self.cardinalities = cat, [*self.cardinalities, *cardinalities]


class TFTBackbone(nn.Module):
    """``(static (B, n_static, d), temporal (B, T, n_ctx, d) | None) -> (B, d)``: the present step's output.

    :meth:`encode` returns every step's output ``(B, T + 1, d)`` (causal: step ``t`` sees steps ``<= t``).
    """

    causal_mask: Tensor

    def __init__(
        self, *, n_static: int, n_ctx: int, ctx_len: int, d_model: int, n_heads: int, dropout: float
    ):
        super().__init__()
        d = d_model
        self.static_selection = VariableSelection(n_vars=n_static, d_model=d, dropout=dropout)
        # the static covariate encoders: c_s (temporal selection), c_e (enrichment), c_h, c_c (LSTM state)
        self.static_contexts = nn.ModuleList(
            [GRN(d_in=d, d_hidden=d, d_out=d, dropout=dropout) for _ in range(4)]
        )
        self.temporal_selection = (
            VariableSelection(n_vars=n_ctx, d_model=d, dropout=dropout, d_context=d) if n_ctx else None
        )
        self.encoder = nn.LSTM(d, d, batch_first=True) if n_ctx else None  # over the past steps
        self.decoder = nn.LSTM(d, d, batch_first=True)  # the present step, from the encoder's final state
        self.lstm_gate = GateAddNorm(d_in=d, d_out=d, dropout=dropout)  # eq. 17
        self.enrichment = GRN(d_in=d, d_hidden=d, d_out=d, dropout=dropout, d_context=d)  # eq. 18
        # eq. 19
        self.attention = InterpretableMultiHeadAttention(d_model=d, n_heads=n_heads, dropout=dropout)
        self.attention_gate = GateAddNorm(d_in=d, d_out=d, dropout=dropout)  # eq. 20
        self.positionwise = GRN(d_in=d, d_hidden=d, d_out=d, dropout=dropout)  # eq. 21
        self.output_gate = GateAddNorm(d_in=d, d_out=d, dropout=dropout)  # eq. 22
        mask = torch.ones(ctx_len + 1, ctx_len + 1, dtype=torch.bool).triu(1)  # True above the diagonal
        self.register_buffer("causal_mask", mask, persistent=False)
        self.last_interpretation: TFTInterpretation | None = None

    def encode(
        self,
        static: Tensor | None,
        temporal: Tensor | None = None,
        *,
        all_steps: bool = True,
        selected: tuple[Tensor, Tensor] | None = None,
        select_temporal: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> tuple[Tensor, TFTInterpretation]:
        """Outputs ``(B, L, d)`` of every step (``all_steps``) or of the present step only (``L = 1``).

        ``selected``: the static selection's outputs computed beforehand, in place of ``static``;
        ``select_temporal``: the temporal selection as a function of its context ``c_s[:, None]``, in place
        of ``temporal`` (both from :meth:`TFT.exporting`'s folds)."""
        if selected is None:
            if static is None:
                raise ValueError("encode needs the static tokens or the static selection's outputs")
            selected = self.static_selection(static)
        xi_s, w_s = selected  # (B, d), (B, n_static)
        c_s, c_e, c_h, c_c = (grn(xi_s) for grn in self.static_contexts)  # (B, d) each
        state = (c_h.unsqueeze(0), c_c.unsqueeze(0))  # (1, B, d) each
        # NOTE[DIFF]: the paper's decoder steps read known future inputs through their own selection
        # network; a trip has one target and no known future, so one "present" step reads xi_s instead.
        present = xi_s.unsqueeze(1)  # (B, 1, d)
        w_t = None
        if select_temporal is not None or (temporal is not None and self.temporal_selection is not None):
            assert self.encoder is not None and self.temporal_selection is not None
            if select_temporal is not None:
                xi_t, w_t = select_temporal(c_s[:, None])
            else:
                assert temporal is not None
                xi_t, w_t = self.temporal_selection(temporal, c_s[:, None])  # (B, T, d), (B, T, n_ctx)
            past, state = self.encoder(xi_t, state)  # (B, T, d)
            xi = torch.cat([xi_t, present], dim=1)  # (B, T + 1, d)
            mask = self.causal_mask
        else:  # NOTE[DIFF]: no context: the sequence is the present step alone, started from (c_h, c_c)
            past, xi, mask = None, present, self.causal_mask[:1, :1]
        now, _ = self.decoder(present, state)  # (B, 1, d)
        phi = self.lstm_gate(now if past is None else torch.cat([past, now], dim=1), xi)  # (B, L, d)
        theta = self.enrichment(phi, c_e[:, None])  # (B, L, d)
        if all_steps:
            a, attention = self.attention(theta, theta, mask)  # (B, L, d), (B, L, L)
        else:  # only the present step's query (it sees every step: no mask); the rest is position-wise
            a, attention = self.attention(theta[:, -1:], theta)  # (B, 1, d), (B, 1, L)
            phi, theta = phi[:, -1:], theta[:, -1:]  # (B, 1, d)
        delta = self.attention_gate(a, theta)  # (B, L, d)
        out = self.output_gate(self.positionwise(delta), phi)  # (B, L, d): skips back over the block to phi
        return out, TFTInterpretation(w_s, w_t, attention[:, -1])

    def forward(
        self,
        static: Tensor | None,
        temporal: Tensor | None = None,
        selected: tuple[Tensor, Tensor] | None = None,
        select_temporal: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        out, interpretation = self.encode(
            static, temporal, all_steps=False, selected=selected, select_temporal=select_temporal
        )
        self.last_interpretation = interpretation.detach()
        return out[:, -1]  # (B, d)

    @torch.no_grad()
    def add_static(self, *, n_num_old: int, n_num: int, n_cat: int) -> None:
        """Static variables for ``n_num`` numeric columns (inserted after the ``n_num_old`` old numerics) and
        ``n_cat`` categorical ones (appended), in the static selection network (module docstring)."""
        selection = self.static_selection
        if not 0 <= n_num_old <= selection.n_vars or n_num < 0 or n_cat < 0:
            raise ValueError(f"{n_num_old=} must be in [0, {selection.n_vars}]; {n_num=}, {n_cat=} >= 0")
        logit = selection.new_variable_logit()  # from the old variables only: one value for all new ones
        selection.insert(selection.n_vars, n_cat, logit=logit)  # the end first: n_num_old still holds
        selection.insert(n_num_old, n_num, logit=logit)


@dataclass
class FoldedSelection:
    """A variable selection network folded into its raw inputs, for a TFT's tokens (exact up to float
    rounding; :meth:`TFT.exporting`). Its weights GRN's first layer and skip are linear in the flattened
    tokens, a numeric token is affine in its value (``x_j * W_j + b_j``) and a categorical token is a table
    row, so

    * ``[fc2 | skip](flat tokens) = bias + x_num @ numeric + sum_j categorical[code_j]``;
    * categorical ``j``'s variable GRN output is ``outputs[code_j]`` (the GRN applied to every table row);
    * numeric ``j``'s variable GRN reads ``x_j * W_j + b_j``, computed alone.

    The graph then has no ``(..., n, d)`` token tensor and no ``(..., n * d)``-wide matmul. Numeric
    variables come first, then categoricals; tables are indexed as
    :class:`~tabxfer.models.base.CategoricalEmbeddings` is (``x_cat + offsets``).
    """

    d_hidden: int
    bias: Tensor  # (d_hidden + n,)
    numeric: Tensor  # (n_num, d_hidden + n)
    categorical: Tensor | None  # (sum of cardinalities, d_hidden + n)
    outputs: Tensor | None  # (sum of cardinalities, d)

    @classmethod
    @torch.no_grad()
    def of(
        cls, selection: VariableSelection, num: NumericTokens | None, cat_rows: Sequence[Tensor] = ()
    ) -> FoldedSelection | None:
        """The fold of ``selection`` (with per-variable GRNs) for numeric tokens ``num`` and categoricals with
        token rows ``cat_rows`` (each ``(cardinality, d)``), or None where the weights GRN has no skip
        layer (``d == 1``: the skip is the identity on the flat tokens)."""
        grn, d = selection.weights, selection.d_model
        if not isinstance(grn.fc2, nn.Linear) or not isinstance(grn.skip, nn.Linear):
            return None
        assert isinstance(selection.variables, nn.ModuleList)
        weight = torch.cat([grn.fc2.weight, grn.skip.weight])  # (d_hidden + n, n * d)
        bias = torch.cat([grn.fc2.bias, grn.skip.bias])

        def block(j: int) -> Tensor:  # what variable j's token contributes: (d, d_hidden + n)
            return weight[:, j * d : (j + 1) * d].T

        n_num = 0 if num is None else num.weight.shape[0]
        numeric = weight.new_zeros(n_num, weight.shape[0])
        if num is not None:
            for j in range(n_num):
                numeric[j] = num.weight[j] @ block(j)
                bias = bias + num.bias[j] @ block(j)
        categorical = outputs = None
        if cat_rows:
            categorical = torch.cat([e @ block(n_num + j) for j, e in enumerate(cat_rows)])
            outputs = torch.cat([selection.variables[n_num + j](e) for j, e in enumerate(cat_rows)])
        return cls(grn.fc2.out_features, bias, numeric, categorical, outputs)

    def __call__(
        self,
        selection: VariableSelection,
        num: NumericTokens | None,
        x_num: Tensor,
        codes: Tensor | None = None,
        c: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``selection(tokens, c)`` from raw inputs: ``x_num (..., n_num)``, ``codes (..., n_cat)`` (with the
        offsets added) -> ``((..., d), weights (..., n))``."""
        grn = selection.weights
        assert isinstance(selection.variables, nn.ModuleList)
        h = self.bias
        if num is not None:
            h = h + x_num @ self.numeric
        if codes is not None and self.categorical is not None:
            h = h + F.embedding(codes, self.categorical).sum(-2)
        pre, skip = h[..., : self.d_hidden], h[..., self.d_hidden :]  # (..., d_hidden), (..., n)
        if grn.context is not None and c is not None:
            pre = pre + grn.context(c)
        v = torch.softmax(grn.gate(elu_then(grn.fc1, pre), skip), dim=-1)  # (..., n)
        parts = []
        if num is not None:
            w, b, grns = num.weight, num.bias, selection.variables
            parts += [grns[j](x_num[..., j, None] * w[j] + b[j]) for j in range(w.shape[0])]
        if codes is not None and self.outputs is not None:
            parts += list(F.embedding(codes, self.outputs).unbind(-2))
        return weighted_sum(v, parts), v


class TFT(TabularModel):
    """Temporal Fusion Transformer for one target per row: static trip features + an optional past context.

    Shape: ``x_num (B, n_num)``, ``x_cat (B, n_cat)``, ``x_ctx (B, ctx_len, n_ctx)`` or ``None`` ->
    ``(B, d_out)`` (``(B, d_model)`` if ``d_out=None``).

    Args:
        n_num, cardinalities: the static inputs (filled in from the feature spec).
        d_out: output size; ``None`` returns the backbone's features.
        n_ctx: context channels, one temporal variable each; 0 = no temporal inputs.
        ctx_len: context steps ``T`` (checked against ``x_ctx``).
        d_model: width of every variable embedding, GRN, LSTM and attention (the paper's ``d_model``).
        n_heads: attention heads (must divide ``d_model``).
        dropout: dropout before every GLU gate and on the attention weights.
        d_embed_cat: categorical embedding width (``None``: ``d_model``); narrower tables are mapped to
            ``d_model`` by a per-variable linear map.

    >>> m = TFT(n_num=2, cardinalities=[4], n_ctx=3, ctx_len=5, d_model=8, n_heads=2)
    >>> x_num, x_cat = torch.randn(6, 2), torch.randint(0, 4, (6, 1))
    >>> m(x_num, x_cat, torch.randn(6, 5, 3)).shape, m(x_num, x_cat).shape
    (torch.Size([6, 1]), torch.Size([6, 1]))
    >>> m.interpret(x_num, x_cat, torch.randn(6, 5, 3)).attention.shape
    torch.Size([6, 6])
    """

    embed: TFTEmbed
    backbone: TFTBackbone
    _folds: tuple[FoldedSelection, FoldedSelection | None] | None = None  # static, temporal: see exporting

    def __init__(
        self,
        *,
        n_num: int,
        cardinalities: Sequence[int],
        d_out: int | None = 1,
        n_ctx: int = 0,
        ctx_len: int = 24,
        d_model: int = 64,
        n_heads: int = 4,
        dropout: float = 0.1,
        d_embed_cat: int | None = None,
    ):
        super().__init__()
        check_inputs(n_num, cardinalities)
        if n_ctx < 0 or ctx_len < 1:
            raise ValueError(f"{n_ctx=} must be >= 0 and {ctx_len=} >= 1")
        if d_model < 1 or n_heads < 1 or d_model % n_heads:
            raise ValueError(f"{n_heads=} must divide {d_model=} (both >= 1)")
        if d_embed_cat is not None and d_embed_cat < 1:
            raise ValueError(f"{d_embed_cat=} must be >= 1 (or None for d_model)")
        if d_out is not None and d_out < 1:
            raise ValueError(f"{d_out=} must be >= 1 (or None for backbone features)")
        check_dropout(dropout=dropout)
        self.embed = TFTEmbed(
            n_num=n_num,
            cardinalities=cardinalities,
            n_ctx=n_ctx,
            ctx_len=ctx_len,
            d_model=d_model,
            d_embed_cat=d_model if d_embed_cat is None else d_embed_cat,
        )
        self.backbone = TFTBackbone(
            n_static=n_num + len(cardinalities),
            n_ctx=n_ctx,
            ctx_len=ctx_len,
            d_model=d_model,
            n_heads=n_heads,
            dropout=dropout,
        )
        self.d_backbone = d_model
        self.head = nn.Linear(d_model, d_out) if d_out is not None else None

    def forward(self, x_num: Tensor, x_cat: Tensor, x_ctx: Tensor | None = None) -> Tensor:
        h = self.features(x_num, x_cat, x_ctx)  # (B, d_model)
        return h if self.head is None else self.head(h)

    def features(self, x_num: Tensor, x_cat: Tensor, x_ctx: Tensor | None = None) -> Tensor:
        if self._folds is not None:  # exporting: the selection networks from raw inputs (see exporting)
            (static, temporal), embed, backbone = self._folds, self.embed, self.backbone
            codes = None if embed.cat is None else x_cat.long() + embed.cat.offsets
            selected = static(backbone.static_selection, embed.num, x_num, codes)
            select_temporal = None
            if x_ctx is not None and temporal is not None and backbone.temporal_selection is not None:
                selection = backbone.temporal_selection

                def select_temporal(c: Tensor) -> tuple[Tensor, Tensor]:
                    return temporal(selection, embed.ctx, x_ctx, c=c)

            return backbone(None, None, selected, select_temporal)
        return self.backbone(*self.embed(x_num, x_cat, x_ctx))  # (B, d_model)

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Grow the model for ``n_num`` numeric and ``len(cardinalities)`` categorical columns appended to
        ``x_num`` / ``x_cat`` (module docstring): afterwards its ``state_dict`` has the keys and shapes (and
        its parameters the order) of ``TFT(n_num=old + n_num, cardinalities=old + cardinalities, ...)``.
        The context inputs are unchanged. Build the optimizer afterwards: the grown tensors are new.

        >>> m = TFT(n_num=2, cardinalities=[4], d_model=8, n_heads=2)
        >>> m.add_features(n_num=1, cardinalities=[6])
        >>> m(torch.randn(5, 3), torch.randint(0, 4, (5, 2))).shape
        torch.Size([5, 1])
        """
        check_added(n_num, cardinalities)
        n_num_old = self.embed.n_num
        self.embed.add_features(n_num=n_num, cardinalities=cardinalities)
        self.backbone.add_static(n_num_old=n_num_old, n_num=n_num, n_cat=len(cardinalities))

    @contextlib.contextmanager
    def exporting(self) -> Iterator[None]:
        """The same function in the form exported to ONNX (eval mode), the trained modules put back on exit.

        * Each variable selection network's grouped GRN (one batched matmul per layer for all variables,
          with a 3-D weight) becomes one plain GRN per variable: onnxruntime's quantizers leave matmuls with
          3-D weights in float and copy the variable-major operands they need, while per-variable 2-D
          matmuls quantize to int8 and their ``(B, d)`` intermediates stay in cache (int8 graphs at batch
          4096: static-only TFT 75 k -> 118 k rows/s, with the context 12.6 k -> 14.7 k).
        * Both selection networks are folded into their raw inputs (:class:`FoldedSelection`): no token
          tensors, no matmul over all variables' tokens, and no GRN per categorical and row (a lookup);
          static-only TFT 115 k -> 163 k rows/s.
        """
        selections = [m for m in self.modules() if isinstance(m, VariableSelection)]
        grouped = [m.variables for m in selections]
        try:
            for m, g in zip(selections, grouped, strict=True):
                assert isinstance(g, GRN)
                m.variables = g.per_group()
            backbone, embed = self.backbone, self.embed
            static = FoldedSelection.of(backbone.static_selection, embed.num, self._categorical_tokens())
            temporal = None
            if backbone.temporal_selection is not None:
                temporal = FoldedSelection.of(backbone.temporal_selection, embed.ctx)
            if static is not None and (temporal is not None or backbone.temporal_selection is None):
                self._folds = (static, temporal)
            yield
        finally:
            self._folds = None
            for m, g in zip(selections, grouped, strict=True):
                m.variables = g

    @torch.no_grad()
    def _categorical_tokens(self) -> list[Tensor]:
        """Every categorical's tokens, one ``(cardinality, d_model)`` table each (``cat_proj`` applied)."""
        embed, out = self.embed, []
        if embed.cat is not None:
            table = embed.cat.table.weight
            for j, card in enumerate(embed.cardinalities):
                off = int(embed.cat.offsets[j])
                e = table[off : off + card]  # (card, d_embed_cat)
                if embed.cat_proj is not None:
                    e = e @ embed.cat_proj.weight[j] + embed.cat_proj.bias[j]  # (card, d_model)
                out.append(e)
        return out

    @property
    def last_interpretation(self) -> TFTInterpretation | None:
        """The weights of the last forward pass (detached), or ``None`` before the first one."""
        return self.backbone.last_interpretation

    @torch.no_grad()
    def interpret(self, x_num: Tensor, x_cat: Tensor, x_ctx: Tensor | None = None) -> TFTInterpretation:
        """Run a forward pass and return its weights (call ``eval()`` first for deterministic ones)."""
        self(x_num, x_cat, x_ctx)
        out = self.last_interpretation
        assert out is not None
        return out
