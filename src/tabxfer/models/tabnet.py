"""TabNet (Arik & Pfister, 2021) on pytorch-tabnet's network blocks, fixed for GPU training and ONNX export.

``embed`` maps ``(x_num, x_cat)`` to the flat vector TabNet attends over (numeric columns as they are, one
embedding per categorical); ``backbone`` is pytorch-tabnet's ``TabNetEncoder`` (same parameters, same
initialization, same ``state_dict`` keys) with the forward pass below; ``head`` is a linear layer.

Attention is over *groups* (pytorch-tabnet >= 4.1 ``group_attention_matrix``): one group per original
feature, so the ``d_embed`` columns of a categorical are selected together, and masks and importances come
out per original feature (``n_num`` numeric columns first, then the ``n_cat`` categoricals, in input order).

Columns appended at fine-tuning time (:meth:`TabNet.add_features`) grow every layer indexed by the embedded
columns or by the groups, in place: new numeric columns after the old numerics, new embeddings at the end.

Changes to pytorch-tabnet 4.1 (each marked ``# NOTE[DIFF]`` in the code):

1. Ghost batch norm (``GBN``) splits the batch with ``torch.chunk`` + a Python loop of BatchNorm calls in
   train *and* eval, with the chunk count from ``np.ceil`` on the batch size. Here (:class:`GhostBatchNorm1d`)
   eval is one plain ``BatchNorm1d`` on running statistics: the same numbers (in eval rows are independent)
   with one kernel instead of ``B / virtual_batch_size``, and an exported graph that does not depend on the
   batch size it was traced with (pytorch-tabnet's, traced at 1000 rows with virtual batches of 128, has 153
   BatchNormalization nodes and ~190 Slices; this one has 25 and no chunking). Training computes the
   statistics of all virtual batches in one vectorized op (same chunking as ``torch.chunk``, same
   running-stat updates, in closed form) instead of a loop of kernel groups per layer.
2. ``GLU_Block`` builds its ``sqrt(0.5)`` scale with ``torch.FloatTensor([0.5]).to(x.device)`` and the
   encoder its prior with ``torch.ones(...).to(x.device)`` on every forward: a host-to-device copy (and a
   stream sync) each time, and a float32 tensor that upcasts bf16/fp16 activations. Here the scale is a
   Python float and the first prior (all ones) is skipped.
3. The encoder keeps its group matrix as a plain tensor attribute, which ``model.to(device)`` does not move
   (pytorch-tabnet moves it by hand). Here it is a (non-persistent) buffer.
4. Sparsemax/entmax are custom ``autograd.Function``s; sparsemax shifts its input in place (here, at step 0,
   that would be a batch norm's output). Here they are plain torch ops (sort, cumsum, gather, clamp) with the
   same values and gradients (tested against pytorch-tabnet's); one code path for training, eval and
   ``torch.compile``. (pytorch-tabnet's Functions also export with torch 2.13, whose exporters inline
   them: this change is for safety and simplicity, not required for export.) Under ``torch.export`` (the
   dynamo ONNX exporter) sparsemax finds its threshold without a sort, falling back to the sort in an ONNX
   ``If`` (:func:`_sparsemax_for_onnx`): onnxruntime's ``TopK`` was 46% of the graph's time.
5. The sparsity loss is computed only in training (and only if ``lambda_sparse > 0``), in float32, and
   reported as the positive mean mask entropy: :meth:`TabNet.aux_loss` is ``lambda_sparse * entropy``, to be
   *added* to the loss (pytorch-tabnet's ``M_loss`` is the negative entropy and is subtracted).
6. No ``EmbeddingGenerator``: it takes one float matrix (categoricals as floats) and loops over columns in
   Python; :class:`TabNetEmbed` embeds ``x_cat`` with one gather and builds the same group matrix.
7. ``explain`` stays on device (no ``.cpu().numpy()`` + scipy reducing matrix); with one group per original
   feature the group-level masks are already per original feature.
8. The head has a bias (regression targets) and PyTorch's default init; pytorch-tabnet's has no bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pytorch_tabnet.tab_network import GBN, FeatTransformer, GLU_Block, TabNetEncoder, initialize_non_glu
from torch import Tensor, nn

from tabxfer.models.base import (
    CategoricalEmbeddings,
    TabularModel,
    check_added,
    check_inputs,
    grow_embeddings,
    widen_linear,
)

MASK_TYPES = ("sparsemax", "entmax")
_SQRT_HALF = math.sqrt(0.5)
_EPS_LOG = 1e-15  # pytorch-tabnet's ``epsilon`` inside log(M + eps)


# --- attention masks ---------------------------------------------------------------------------------
def sparsemax(z: Tensor) -> Tensor:
    """Sparsemax over the last dim (Martins & Astudillo, 2016): a sparse softmax, rows sum to 1."""
    if torch.compiler.is_exporting():  # torch.export, under the dynamo ONNX exporter (TorchScript's
        return _sparsemax_for_onnx(z)  # exporter cannot trace the torch.cond: it keeps the sort)
    return _sparsemax_sorted(z)


def _sparsemax_sorted(z: Tensor) -> Tensor:
    # NOTE[DIFF] pure torch ops instead of pytorch-tabnet's autograd.Function (exportable, no in-place op)
    z = z - z.amax(dim=-1, keepdim=True).detach()  # shift-invariant; detach keeps the gradient exact
    z_srt = torch.sort(z, dim=-1, descending=True).values  # (B, G)
    csum = z_srt.cumsum(-1) - 1  # (B, G)
    rho = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)  # (G,)
    k = (rho * z_srt > csum).sum(-1, keepdim=True)  # (B, 1) support size, >= 1
    tau = csum.gather(-1, k - 1) / k.to(z.dtype)  # (B, 1)
    return torch.clamp(z - tau, min=0)


MICHELOT_STEPS = 6  # TabNet on the real NYC rows: every row of 6,705 x 4 steps converged within 5


def _michelot_start(z: Tensor) -> Tensor:
    """A lower bound of the threshold of ``z`` shifted to max 0: the larger of max - 1 and (sum - 1) / G."""
    return torch.maximum((z.sum(-1, keepdim=True) - 1) / z.shape[-1], torch.full_like(z[..., :1], -1.0))


def _michelot_step(z: Tensor, tau: Tensor) -> Tensor:
    w = (z > tau).to(z.dtype)  # the support, as 0/1 weights (one Cast for both sums)
    return ((z * w).sum(-1, keepdim=True) - 1) / w.sum(-1, keepdim=True)


def _sparsemax_for_onnx(z: Tensor) -> Tensor:
    """Sparsemax without a sort, as exported graphs compute it. onnxruntime's ``TopK`` (the sort) took
    46% of an int8 TabNet graph's time at batch 4096. Michelot's algorithm finds the threshold instead:
    from a lower bound of it, ``tau <- (sum of z over {z > tau} - 1) / |{z > tau}|`` rises to the exact
    threshold and stays there, in at most G steps and in practice a few. After ``MICHELOT_STEPS`` steps,
    if any row's threshold still moves, the batch takes the sort (an ONNX ``If``), so the result is
    exact either way; it differs from the sorted sum only in rounding."""
    z = z - z.amax(dim=-1, keepdim=True)
    tau = _michelot_start(z)
    for _ in range(MICHELOT_STEPS):
        tau = _michelot_step(z, tau)
    converged = (_michelot_step(z, tau) == tau).all()
    return torch.cond(
        converged,
        lambda z, tau: torch.clamp(z - tau, min=0),
        lambda z, tau: _sparsemax_sorted(z),
        (z, tau),
    )


def entmax15(z: Tensor) -> Tensor:
    """Exact 1.5-entmax over the last dim (Peters et al., 2019): between softmax and sparsemax."""
    # NOTE[DIFF] pure torch ops instead of pytorch-tabnet's autograd.Function
    z = (z - z.amax(dim=-1, keepdim=True).detach()) / 2
    z_srt = torch.sort(z, dim=-1, descending=True).values  # (B, G)
    rho = torch.arange(1, z.shape[-1] + 1, device=z.device, dtype=z.dtype)  # (G,)
    mean = z_srt.cumsum(-1) / rho  # (B, G)
    mean_sq = (z_srt**2).cumsum(-1) / rho
    delta = (1 - rho * (mean_sq - mean**2)) / rho
    tau = mean - torch.sqrt(torch.clamp(delta, min=0))
    k = (tau <= z_srt).sum(-1, keepdim=True)  # (B, 1) support size (no gradient: a comparison)
    # gather *before* the sqrt: sqrt'(0) = inf at unselected clamped entries would turn the backward into NaN
    m_k, sq_k = mean.gather(-1, k - 1), mean_sq.gather(-1, k - 1)  # (B, 1)
    kf = k.to(z.dtype)
    tau_star = m_k - torch.sqrt(torch.clamp((1 - kf * (sq_k - m_k**2)) / kf, min=0))
    return torch.clamp(z - tau_star, min=0) ** 2


class Sparsemax(nn.Module):
    """:func:`sparsemax` as a module. Shape: ``(B, G) -> (B, G)``, rows on the simplex.

    >>> Sparsemax()(torch.tensor([[2.0, 1.0, -1.0]]))
    tensor([[1., 0., 0.]])
    """

    def forward(self, z: Tensor) -> Tensor:
        return sparsemax(z)


class Entmax15(nn.Module):
    """:func:`entmax15` as a module. Shape: ``(B, G) -> (B, G)``, rows on the simplex.

    >>> Entmax15()(torch.tensor([[0.0, 0.0]]))
    tensor([[0.5000, 0.5000]])
    """

    def forward(self, z: Tensor) -> Tensor:
        return entmax15(z)


# --- ghost batch norm --------------------------------------------------------------------------------
class GhostBatchNorm1d(nn.Module):
    """Ghost batch norm (Hoffer et al., 2017) over ``bn``: per-virtual-batch statistics in training.

    Training splits the batch as ``torch.chunk(x, ceil(B / virtual_batch_size))`` does (pytorch-tabnet's
    ``GBN``) and updates the running statistics as one BatchNorm call per chunk, in order, would. Eval is
    ``bn`` on running statistics. Keeps pytorch-tabnet's ``GBN`` ``state_dict`` keys (``bn.*``).

    Shape: ``(B, C) -> (B, C)``.

    >>> gbn = GhostBatchNorm1d(nn.BatchNorm1d(3), virtual_batch_size=4)
    >>> gbn(torch.randn(10, 3)).shape
    torch.Size([10, 3])
    """

    def __init__(self, bn: nn.BatchNorm1d, *, virtual_batch_size: int):
        super().__init__()
        if virtual_batch_size < 2:
            raise ValueError(f"{virtual_batch_size=} must be >= 2 (batch norm needs 2 rows)")
        if bn.momentum is None:
            raise ValueError("bn.momentum must be a float (cumulative averaging is not supported)")
        self.bn = bn
        self.virtual_batch_size = virtual_batch_size

    def forward(self, x: Tensor) -> Tensor:
        B = x.shape[0]
        n_chunks = -(-B // self.virtual_batch_size)
        if not self.training or n_chunks <= 1:
            # NOTE[DIFF] eval: one BatchNorm call, no chunking (static graph, batch-size independent)
            return self.bn(x)
        # NOTE[DIFF] training: all virtual batches in one BatchNorm call instead of a Python loop over
        # torch.chunk: the chunks side by side as channels, (n_full, size, C) -> (size, n_full * C)
        size = -(-B // n_chunks)  # torch.chunk's chunk length; the last chunk may be shorter
        n_full = B // size
        n_head = n_full * size
        bn = self.bn
        C = x.shape[1]
        xf = x[:n_head].reshape(n_full, size, C).transpose(0, 1).reshape(size, n_full * C).float()
        # momentum 1 leaves each chunk's own mean and unbiased variance in these per-call buffers
        mean = xf.new_zeros(n_full * C)
        var = xf.new_ones(n_full * C)
        weight = bn.weight.float().repeat(n_full) if bn.affine else None
        bias = bn.bias.float().repeat(n_full) if bn.affine else None
        y = F.batch_norm(xf, mean, var, weight, bias, training=True, momentum=1.0, eps=bn.eps)
        y = y.reshape(size, n_full, C).transpose(0, 1).reshape(n_head, C).to(x.dtype)
        if bn.track_running_stats:
            self._update_running_stats(mean.view(n_full, C), var.view(n_full, C))
        if n_head < B:  # the short last chunk, after the full ones (running stats are order-dependent)
            y = torch.cat([y, bn(x[n_head:])], dim=0)
        return y

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, unbiased: Tensor) -> None:
        """As ``k`` sequential updates ``r <- (1 - m) r + m s_i``: ``r_k = (1-m)^k r_0 + sum_i m (1-m)^(k-1-i) s_i``."""
        bn = self.bn
        m = float(bn.momentum)  # type: ignore[arg-type]  # checked in __init__
        k = mean.shape[0]
        w = m * (1 - m) ** torch.arange(k - 1, -1, -1, device=mean.device, dtype=mean.dtype)  # (k,)
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.mul_((1 - m) ** k).add_((w @ mean).to(bn.running_mean.dtype))
        bn.running_var.mul_((1 - m) ** k).add_((w @ unbiased).to(bn.running_var.dtype))
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(k)


# --- embed -------------------------------------------------------------------------------------------
class TabNetEmbed(nn.Module):
    """Numeric columns as they are, then one embedding per categorical, flattened.

    ``group_matrix`` ``(n_num + n_cat, d_out)`` maps the attention over original features to columns: 1 for
    a numeric column, ``1/d`` for each of a categorical's ``d`` columns (pytorch-tabnet's
    ``embedding_group_matrix`` for one group per feature).

    Shape: ``x_num (B, n_num)``, ``x_cat (B, n_cat)`` -> ``(B, n_num + sum(d_embed))``.

    >>> e = TabNetEmbed(n_num=2, cardinalities=[3, 5], d_embed=[2, 4])
    >>> e(torch.randn(4, 2), torch.zeros(4, 2, dtype=torch.long)).shape, e.group_matrix.shape
    (torch.Size([4, 8]), torch.Size([4, 8]))
    """

    group_matrix: Tensor

    def __init__(self, *, n_num: int, cardinalities: Sequence[int], d_embed: Sequence[int]):
        super().__init__()
        if len(d_embed) != len(cardinalities):
            raise ValueError(f"{len(d_embed)=} must equal {len(cardinalities)=}")
        if any(d < 1 for d in d_embed):
            raise ValueError(f"every d_embed must be >= 1; got {list(d_embed)}")
        self.n_num = n_num
        # one table (one gather) when all dims agree, else one table per feature; spans index x_cat columns
        if len(set(d_embed)) == 1:
            self.spans = [(0, len(cardinalities))]
            self.tables = nn.ModuleList([CategoricalEmbeddings(cardinalities, d_embed[0])])
        else:
            self.spans = [(i, i + 1) for i in range(len(cardinalities))]
            self.tables = nn.ModuleList(
                CategoricalEmbeddings([c], d) for c, d in zip(cardinalities, d_embed, strict=True)
            )
        self.cardinalities = list(cardinalities)
        self.d_embed = list(d_embed)
        self.d_out = n_num + sum(d_embed)
        self.register_buffer("group_matrix", _group_matrix(n_num, self.d_embed), persistent=False)

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        parts = [x_num] if self.n_num else []
        for (a, b), table in zip(self.spans, self.tables, strict=True):
            parts.append(table(x_cat[:, a:b]).flatten(1))  # (B, (b - a) * d)
        return torch.cat(parts, dim=1)  # (B, d_out)

    @torch.no_grad()
    def add_features(
        self, *, n_num: int = 0, cardinalities: Sequence[int] = (), d_embed: int | None = None
    ) -> None:
        """Grow for ``n_num`` numeric columns appended to ``x_num`` and ``len(cardinalities)`` categoricals
        appended to ``x_cat``, each embedded in ``d_embed`` dimensions.

        The output gains the new numeric columns after the old ones (``[n_num_old, n_num_old + n_num)``) and
        the new embeddings at the end; old embedding rows are kept (:func:`grow_embeddings`), new tables are
        freshly initialized. Afterwards tables, ``group_matrix`` and ``d_out`` are those of a
        ``TabNetEmbed`` built with the grown inputs. Growing one shared table with a different ``d_embed``
        (which would split it into per-feature tables) is refused.
        """
        check_added(n_num, cardinalities)
        cards = list(cardinalities)
        if cards:
            if d_embed is None or d_embed < 1:
                raise ValueError(f"new categoricals need a {d_embed=} >= 1")
            old = self.tables[0] if self.tables else None  # None: no categoricals yet
            assert old is None or isinstance(old, CategoricalEmbeddings)
            ref = self.group_matrix if old is None else old.table.weight  # device and dtype of new tables
            if len(set(self.d_embed)) <= 1:  # one table for all (or none yet): grow it
                if self.d_embed and self.d_embed[0] != d_embed:
                    raise ValueError(
                        f"{d_embed=} differs from the shared table's d={self.d_embed[0]}: the grown layout "
                        "would be one table per feature (not supported)"
                    )
                grown = grow_embeddings(old, self.cardinalities, cards, d_embed)
                grown = grown.to(device=ref.device, dtype=ref.dtype).train(self.training)
                self.tables = nn.ModuleList([grown]).train(self.training)
                self.spans = [(0, len(self.cardinalities) + len(cards))]
            else:  # already one table per feature: append one per new feature
                for j, c in enumerate(cards, start=len(self.cardinalities)):
                    self.tables.append(
                        CategoricalEmbeddings([c], d_embed)
                        .to(device=ref.device, dtype=ref.dtype)
                        .train(self.training)
                    )
                    self.spans.append((j, j + 1))
            self.cardinalities += cards
            self.d_embed += [d_embed] * len(cards)
        self.n_num += n_num
        self.d_out = self.n_num + sum(self.d_embed)
        gm = self.group_matrix
        self.group_matrix = _group_matrix(self.n_num, self.d_embed).to(device=gm.device, dtype=gm.dtype)


def _group_matrix(n_num: int, d_embed: Sequence[int]) -> Tensor:
    """``(n_num + n_cat, n_num + sum(d_embed))``: 1 for a numeric column, ``1/d`` for a categorical's."""
    n_cat = len(d_embed)
    gm = torch.zeros(n_num + n_cat, n_num + sum(d_embed))
    gm[:n_num, :n_num] = torch.eye(n_num)
    col = n_num
    for j, d in enumerate(d_embed):
        gm[n_num + j, col : col + d] = 1.0 / d
        col += d
    return gm


# --- backbone ----------------------------------------------------------------------------------------
def _glu_block(block: GLU_Block, x: Tensor) -> Tensor:
    """pytorch-tabnet's ``GLU_Block.forward`` with a Python-float scale."""
    layers = list(block.glu_layers)
    if block.first:  # the first layer of a first block has no residual
        x = layers.pop(0)(x)
    for layer in layers:
        x = (x + layer(x)) * _SQRT_HALF  # NOTE[DIFF] was torch.FloatTensor([0.5]).to(x.device).sqrt()
    return x


def _feat_transformer(ft: FeatTransformer, x: Tensor) -> Tensor:
    """pytorch-tabnet's ``FeatTransformer.forward``: shared GLU block, then step-specific GLU block."""
    for block in (ft.shared, ft.specifics):
        if isinstance(block, GLU_Block):  # else nn.Identity (n_shared=0 or n_independent=0)
            x = _glu_block(block, x)
    return x


class TabNetBackbone(TabNetEncoder):
    """pytorch-tabnet's ``TabNetEncoder`` (its parameters, init and ``state_dict``) with a fixed forward.

    Each step: attentive transformer -> mask ``M`` over groups (sparsemax/entmax, times the prior
    ``prod(gamma - M_prev)``) -> feature transformer on ``(M @ group_matrix) * x`` -> ``relu`` of the first
    ``n_d`` outputs (the rest drives the next attention). The output is the sum over steps.

    After a training forward ``sparsity_loss`` holds the mean (over steps and rows) entropy of the masks
    when ``compute_sparsity`` is set, else None.

    Shape: ``(B, d_in) -> (B, n_d)``.

    >>> bb = TabNetBackbone(d_in=5, group_matrix=torch.eye(5), n_d=8, n_a=8, n_steps=3).eval()
    >>> bb(torch.randn(4, 5)).shape
    torch.Size([4, 8])
    """

    group_attention_matrix: Tensor
    initial_bn: nn.BatchNorm1d
    input_dim: int
    attention_dim: int

    def __init__(
        self,
        *,
        d_in: int,
        group_matrix: Tensor,
        n_d: int = 16,
        n_a: int = 16,
        n_steps: int = 4,
        gamma: float = 1.5,
        n_independent: int = 2,
        n_shared: int = 2,
        virtual_batch_size: int = 512,
        momentum: float = 0.02,
        mask_type: str = "sparsemax",
        compute_sparsity: bool = True,
    ):
        if mask_type not in MASK_TYPES:
            raise ValueError(f"{mask_type=} must be one of {MASK_TYPES}")
        if group_matrix.shape[1] != d_in:
            raise ValueError(f"{tuple(group_matrix.shape)=} must be (n_groups, {d_in=})")
        super().__init__(
            input_dim=d_in,
            output_dim=n_d,  # unused by the encoder
            n_d=n_d,
            n_a=n_a,
            n_steps=n_steps,
            gamma=gamma,
            n_independent=n_independent,
            n_shared=n_shared,
            epsilon=_EPS_LOG,
            virtual_batch_size=virtual_batch_size,
            momentum=momentum,
            mask_type=mask_type,
            group_attention_matrix=group_matrix,
        )
        # NOTE[DIFF] a buffer, so that .to(device) moves it (non-persistent: state_dict stays pytorch-tabnet's)
        del self.group_attention_matrix
        self.register_buffer("group_attention_matrix", group_matrix.clone().float(), persistent=False)
        # NOTE[DIFF] vectorized ghost batch norm; plain batch norm in eval
        for module in list(self.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, GBN):
                    setattr(module, name, GhostBatchNorm1d(child.bn, virtual_batch_size=virtual_batch_size))
        # NOTE[DIFF] exportable mask functions
        for att in self.att_transformers:
            att.selector = Sparsemax() if mask_type == "sparsemax" else Entmax15()
        self.compute_sparsity = compute_sparsity
        self.sparsity_loss: Tensor | None = None

    def _steps(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Step outputs ``[(B, n_d)] * n_steps`` and group masks ``[(B, n_groups)] * n_steps``."""
        x = self.initial_bn(x)  # (B, d_in)
        att = _feat_transformer(self.initial_splitter, x)[:, self.n_d :]  # (B, n_a)
        prior: Tensor | None = None  # NOTE[DIFF] all ones at step 0: skipped, not built on the host
        outs, masks = [], []
        for feat, attn in zip(self.feat_transformers, self.att_transformers, strict=True):
            a = attn.bn(attn.fc(att))  # (B, n_groups)
            if prior is not None:
                a = a * prior
            mask = attn.selector(a)  # (B, n_groups), rows sum to 1
            prior = self.gamma - mask if prior is None else (self.gamma - mask) * prior
            h = _feat_transformer(feat, (mask @ self.group_attention_matrix) * x)  # (B, n_d + n_a)
            outs.append(F.relu(h[:, : self.n_d]))  # (B, n_d)
            att = h[:, self.n_d :]  # (B, n_a)
            masks.append(mask)
        return outs, masks

    def forward(self, x: Tensor) -> Tensor:  # the features only (pytorch-tabnet: (steps, M_loss))
        outs, masks = self._steps(x)
        if self.training and self.compute_sparsity:
            # NOTE[DIFF] float32, training only, sign flipped: mean entropy >= 0 (pytorch-tabnet: -entropy)
            ent = [-(m.float() * torch.log(m.float() + self.epsilon)).sum(1).mean() for m in masks]
            self.sparsity_loss = torch.stack(ent).mean()
        else:
            self.sparsity_loss = None
        return torch.stack(outs).sum(0)  # (B, n_d)

    def forward_masks(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """Importances ``sum_step M * sum(step output)`` ``(B, n_groups)`` and masks ``{step: (B, n_groups)}``.

        pytorch-tabnet's ``forward_masks`` at group level (its ``(B, d_in)`` output times its reducing
        matrix, since each group's columns of ``group_matrix`` sum to 1).
        """
        outs, masks = self._steps(x)
        importance = torch.stack([m * o.sum(1, keepdim=True) for m, o in zip(masks, outs, strict=True)]).sum(
            0
        )
        return importance, dict(enumerate(masks))

    @torch.no_grad()
    def add_inputs(
        self,
        *,
        group_matrix: Tensor,
        columns: Sequence[tuple[int, int]],
        groups: Sequence[tuple[int, int]],
    ) -> None:
        """Grow for new input columns and attention groups, keeping every trained weight.

        ``columns`` / ``groups`` are ``(at, n)`` insertions in the *old* indexing (``n`` new entries before
        old entry ``at``; ascending, ties inserted in the given order); ``group_matrix`` is the grown
        ``(n_groups, d_in)`` matrix. Grown: ``initial_bn`` and the first GLU layer of every feature
        transformer (the shared one, still shared, or each step's own when ``n_shared == 0``) over columns;
        each attentive transformer's ``fc`` output and batch norm over groups. New input columns get zero
        weights (:func:`widen_linear`), new batch-norm channels BatchNorm's defaults (running mean 0, var
        1, weight 1, bias 0), new rows of the attentive ``fc`` pytorch-tabnet's initialization (the same
        distribution a fresh model's rows have). Everything else is untouched.
        """
        d_in, col_at = _positions(self.input_dim, columns)
        n_groups, grp_at = _positions(self.attention_dim, groups)
        if tuple(group_matrix.shape) != (n_groups, d_in):
            raise ValueError(f"{tuple(group_matrix.shape)=} must be ({n_groups}, {d_in})")
        self.initial_bn = _grow_batchnorm(self.initial_bn, d_in, col_at)
        grown: dict[int, nn.Linear] = {}  # the shared first layer is one module in every feature transformer
        for ft in [self.initial_splitter, *self.feat_transformers]:
            block = ft.shared if isinstance(ft.shared, GLU_Block) else ft.specifics  # the one reading x
            fc = block.glu_layers[0].fc
            if id(fc) not in grown:
                wide = fc
                for at, n in reversed(columns):  # right to left: earlier positions stay valid
                    wide = widen_linear(wide, at, n) if n else wide
                grown[id(fc)] = wide.train(fc.training)
            block.glu_layers[0].fc = grown[id(fc)]
            if block.shared_layers is not None:
                block.shared_layers[0] = grown[id(fc)]
        for att in self.att_transformers:
            old = att.fc.weight  # (n_groups_old, n_a)
            fc = nn.Linear(old.shape[1], n_groups, bias=False)
            initialize_non_glu(fc, old.shape[1], n_groups)  # row std n_a**-0.25, whatever n_groups is
            fc = fc.to(device=old.device, dtype=old.dtype)
            fc.weight[grp_at.to(old.device)] = old
            att.fc = fc.train(att.fc.training)
            att.bn.bn = _grow_batchnorm(att.bn.bn, n_groups, grp_at)
        self.input_dim, self.attention_dim = d_in, n_groups
        gm = self.group_attention_matrix
        self.group_attention_matrix = group_matrix.clone().to(device=gm.device, dtype=gm.dtype)


def _positions(n_old: int, inserts: Sequence[tuple[int, int]]) -> tuple[int, Tensor]:
    """The grown size and the new index of each old entry after the ``(at, n)`` insertions.

    >>> _positions(4, [(1, 2), (4, 1)])
    (7, tensor([0, 3, 4, 5]))
    """
    ats = [at for at, _ in inserts]
    if ats != sorted(ats) or any(not 0 <= at <= n_old or n < 0 for at, n in inserts):
        raise ValueError(f"cannot insert {list(inserts)} (ascending (at, n), 0 <= at <= {n_old}, n >= 0)")
    shift = torch.zeros(n_old, dtype=torch.long)
    for at, n in inserts:
        shift[at:] += n
    return n_old + sum(n for _, n in inserts), torch.arange(n_old) + shift


@torch.no_grad()
def _grow_batchnorm(bn: nn.BatchNorm1d, n: int, old_at: Tensor) -> nn.BatchNorm1d:
    """A ``BatchNorm1d(n)`` with ``bn``'s settings whose channels ``old_at`` are ``bn``'s (parameters and
    running statistics); the others have BatchNorm's defaults (weight 1, bias 0, running mean 0, var 1)."""
    new = nn.BatchNorm1d(
        n, eps=bn.eps, momentum=bn.momentum, affine=bn.affine, track_running_stats=bn.track_running_stats
    )
    ref = bn.weight if bn.weight is not None else bn.running_mean
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype)
    for name in ("weight", "bias", "running_mean", "running_var"):
        old_t, new_t = getattr(bn, name), getattr(new, name)
        if old_t is not None:
            new_t[old_at.to(new_t.device)] = old_t
    if bn.num_batches_tracked is not None and new.num_batches_tracked is not None:
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)  # a fresh module trains; keep the mode the old one was in


# --- model -------------------------------------------------------------------------------------------
class TabNet(TabularModel):
    """TabNet: embeddings -> sequential attentive feature selection (``n_steps``) -> linear head.

    ``aux_loss()`` is ``lambda_sparse * mean mask entropy`` of the last *training* forward (add it to the
    loss); it is None after an eval forward, before any forward, or when ``lambda_sparse == 0``.
    ``explain`` gives per-row importances and per-step masks per original feature.

    Shape: ``x_num (B, n_num)``, ``x_cat (B, n_cat)`` -> ``(B, d_out)`` (``(B, n_d)`` if ``d_out=None``).

    >>> m = TabNet(n_num=3, cardinalities=[4, 5], d_out=1).eval()
    >>> m(torch.randn(2, 3), torch.tensor([[0, 1], [3, 4]])).shape
    torch.Size([2, 1])
    """

    embed: TabNetEmbed
    backbone: TabNetBackbone

    def __init__(
        self,
        *,
        n_num: int,
        cardinalities: Sequence[int],
        d_out: int | None = 1,
        d_embed: int | Sequence[int] = 4,
        n_d: int = 16,
        n_a: int = 16,
        n_steps: int = 4,
        gamma: float = 1.5,
        n_independent: int = 2,
        n_shared: int = 2,
        virtual_batch_size: int = 512,
        momentum: float = 0.02,
        mask_type: str = "sparsemax",
        lambda_sparse: float = 1e-4,
    ):
        super().__init__()
        check_inputs(n_num, cardinalities)
        d_embeds = [d_embed] * len(cardinalities) if isinstance(d_embed, int) else list(d_embed)
        for name, value in {"n_d": n_d, "n_a": n_a, "n_steps": n_steps}.items():
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1")
        if d_out is not None and d_out < 1:
            raise ValueError(f"{d_out=} must be >= 1 or None")
        if n_independent < 0 or n_shared < 0 or n_independent + n_shared == 0:
            raise ValueError(f"{n_independent=} and {n_shared=} must be >= 0 and not both 0")
        if gamma < 1.0:
            raise ValueError(f"{gamma=} must be >= 1 (the prior gamma - M must stay >= 0)")
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"{momentum=} must be in (0, 1]")
        if virtual_batch_size < 2:
            raise ValueError(f"{virtual_batch_size=} must be >= 2")
        if mask_type not in MASK_TYPES:
            raise ValueError(f"{mask_type=} must be one of {MASK_TYPES}")
        if lambda_sparse < 0:
            raise ValueError(f"{lambda_sparse=} must be >= 0")

        self.n_features = n_num + len(cardinalities)
        self.d_embed = d_embed if isinstance(d_embed, int) else None  # for categoricals added later
        self.lambda_sparse = lambda_sparse
        self.embed = TabNetEmbed(n_num=n_num, cardinalities=cardinalities, d_embed=d_embeds)
        self.backbone = TabNetBackbone(
            d_in=self.embed.d_out,
            group_matrix=self.embed.group_matrix,
            n_d=n_d,
            n_a=n_a,
            n_steps=n_steps,
            gamma=gamma,
            n_independent=n_independent,
            n_shared=n_shared,
            virtual_batch_size=virtual_batch_size,
            momentum=momentum,
            mask_type=mask_type,
            compute_sparsity=lambda_sparse > 0,
        )
        self.d_backbone = n_d
        # NOTE[DIFF] bias and default init (pytorch-tabnet: bias=False, its own xavier gain)
        self.head = nn.Linear(n_d, d_out) if d_out is not None else None

    @torch.no_grad()
    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Grow for ``n_num`` numeric and ``len(cardinalities)`` categorical columns appended to ``x_num`` /
        ``x_cat`` (the rule in :mod:`tabxfer.models.base`); build the optimizer afterwards.

        Afterwards the ``state_dict`` (and the group matrices) are those of a ``TabNet`` built with the grown
        ``n_num`` / ``cardinalities`` and the same other arguments. In the embedded vector
        ``[numerics, embeddings]`` the new numeric columns go after the old numerics and the new
        embeddings at the end; in the attention groups ``[numerics, categoricals]`` likewise. Every trained
        weight is copied to its new position (:meth:`TabNetEmbed.add_features`,
        :meth:`TabNetBackbone.add_inputs`): the first GLU layers read the new columns with zero weights,
        new batch-norm channels start at running mean 0 / var 1 / weight 1 / bias 0, new categoricals get
        fresh embedding tables, and each step's attentive ``fc`` gets freshly initialized rows for the new
        groups, so that they compete for attention from the start.

        The outputs are *not* exactly preserved, in training or eval: the old groups' attention logits are
        unchanged, but sparsemax/entmax normalize over all groups, so the new groups' logits move the
        threshold and change the old groups' masks (and the priors of later steps). Keeping the outputs
        exactly would need the new logits far below the threshold, where the mask function has zero
        gradient and the new columns could never be selected.

        New categoricals are embedded in ``d_embed`` dimensions when the model was built with an int
        ``d_embed``; a model built with a per-feature list can only take numeric columns (ValueError).
        """
        check_added(n_num, cardinalities)
        cards = list(cardinalities)
        if cards and self.d_embed is None:
            raise ValueError(
                "this TabNet was built with a per-feature d_embed list, so the embedding size of new "
                "categoricals is unknown; build it with an int d_embed to add categoricals"
            )
        if not n_num and not cards:
            return
        embed = self.embed
        old_num, old_cat, old_d = embed.n_num, len(embed.cardinalities), embed.d_out
        embed.add_features(n_num=n_num, cardinalities=cards, d_embed=self.d_embed)
        self.backbone.add_inputs(
            group_matrix=embed.group_matrix,
            columns=[(old_num, n_num), (old_d, embed.d_out - old_d - n_num)],
            groups=[(old_num, n_num), (old_num + old_cat, len(cards))],
        )
        self.n_features += n_num + len(cards)

    def aux_loss(self) -> Tensor | None:
        s = self.backbone.sparsity_loss
        return None if s is None else self.lambda_sparse * s

    @torch.no_grad()
    def explain(
        self, x_num: Tensor, x_cat: Tensor, *, normalize: bool = False
    ) -> tuple[Tensor, dict[int, Tensor]]:
        """Per-row feature importances ``(B, n_features)`` and masks ``{step: (B, n_features)}``.

        Features are ``n_num`` numeric then ``n_cat`` categorical, in input order. Mask rows sum to 1 per
        step. Runs in eval mode (restoring the mode after), so it neither depends on nor updates batch
        statistics. ``normalize`` scales each row of importances to sum to 1.
        """
        was_training = self.training
        self.eval()
        try:
            importance, masks = self.backbone.forward_masks(self.embed(x_num, x_cat))
        finally:
            self.train(was_training)
        if normalize:
            importance = importance / importance.sum(1, keepdim=True).clamp_min(1e-12)
        return importance, masks
