"""What every tabxfer model shares: the ``embed -> backbone -> head`` split and its calling convention.

Inputs are the tensor cache's columns: ``x_num`` float32 ``(B, n_num)`` (standardized), ``x_cat`` int64
``(B, n_cat)`` (vocabulary indices, 0 = unknown/missing; ``cardinalities[i]`` counts the 0 slot). The output
is ``(B, d_out)``, or the backbone's ``(B, d_backbone)`` features when ``d_out is None`` (for pretraining
heads, probes and fine-tuning with a new head).

Named parts make transfer generic: fine-tuning freezes ``embed``/``backbone``/``head`` by name, with no
model-specific code.

Schema changes at fine-tuning time (the rule every model follows): columns the target adds are appended
at the *end* of ``x_num`` / ``x_cat``; :meth:`TabularModel.add_features` grows the model for them, keeping
every trained weight, so that afterwards its ``state_dict`` has exactly the keys and shapes of a model built
fresh with the grown ``n_num`` / ``cardinalities``. Feature-token models (FT-Transformer, TabTransformer,
TFT) get new tokens; models with a first dense layer on concatenated inputs (MLP, Wide&Deep, TabNet) get
that layer widened with zero weights for the new columns, so the grown model computes what it did
before until fine-tuning moves those weights. Columns the target lacks stay in the spec and arrive as
"missing" (numeric 0 = the pretraining mean, categorical index 0).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

PARTS = ("embed", "backbone", "head")


class TabularModel(nn.Module):
    """Base class. Subclasses set ``self.embed``, ``self.backbone``, ``self.head`` (``None`` when
    ``d_out is None``) and ``self.d_backbone``, and may override :meth:`forward` and :meth:`aux_loss`."""

    embed: nn.Module
    backbone: nn.Module
    head: nn.Module | None
    d_backbone: int
    onnx_opset: int = 0  # the ONNX opset its export (exporting()) needs at least; 0: the exporter's default

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        h = self.backbone(self.embed(x_num, x_cat))
        return h if self.head is None else self.head(h)

    def features(self, x_num: Tensor, x_cat: Tensor, x_ctx: Tensor | None = None) -> Tensor:
        """The backbone's features ``(B, d_backbone)``, what self-supervised heads and probes read."""
        return self.backbone(self.embed(x_num, x_cat))

    def add_features(self, *, n_num: int = 0, cardinalities: Sequence[int] = ()) -> None:
        """Grow the model for ``n_num`` numeric and ``len(cardinalities)`` categorical columns appended to
        the inputs (see the module docstring for the rule). Build the optimizer afterwards."""
        raise NotImplementedError(f"{type(self).__name__} cannot take new input columns yet")

    def aux_loss(self) -> Tensor | None:
        """A regularization term of the last forward pass (TabNet's sparsity loss), or None."""
        return None

    @contextlib.contextmanager
    def exporting(self) -> Iterator[None]:
        """The model as it is exported to ONNX: a subclass may swap in modules that compute the same
        function in a form onnxruntime runs faster, and puts the trained ones back on exit."""
        yield

    def parts(self) -> dict[str, nn.Module]:
        out = {"embed": self.embed, "backbone": self.backbone}
        if self.head is not None:
            out["head"] = self.head
        return out


def check_inputs(n_num: int, cardinalities: Sequence[int]) -> None:
    if n_num < 0:
        raise ValueError(f"{n_num=} must be >= 0")
    if n_num == 0 and not cardinalities:
        raise ValueError("a model needs at least one input feature (n_num=0 and no cardinalities)")
    bad = [c for c in cardinalities if c < 2]
    if bad:
        raise ValueError(
            f"every cardinality counts the unknown slot, so must be >= 2; got {list(cardinalities)}"
        )


def mlp_layers(d_in: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    """``len(hidden)`` x (Linear, ReLU, Dropout): the MLP trunk that MLP, TabTransformer and Wide&Deep share.

    >>> mlp_layers(4, [8, 2], 0.0)(torch.zeros(3, 4)).shape
    torch.Size([3, 2])
    """
    layers: list[nn.Module] = []
    for d in hidden:
        layers += [nn.Linear(d_in, d), nn.ReLU(), nn.Dropout(dropout)]
        d_in = d
    return nn.Sequential(*layers)


class CategoricalEmbeddings(nn.Module):
    """One embedding table per categorical feature, stacked: ``(B, n_cat) -> (B, n_cat, d)``.

    All tables live in one ``nn.Embedding`` with per-feature offsets (one gather instead of n_cat).
    """

    offsets: Tensor

    def __init__(self, cardinalities: Sequence[int], d: int):
        super().__init__()
        self.n = len(cardinalities)
        offsets = (
            torch.tensor([0, *cardinalities[:-1]], dtype=torch.long).cumsum(0) if self.n else torch.zeros(0)
        )
        self.register_buffer("offsets", offsets.long(), persistent=False)
        self.table = nn.Embedding(max(sum(cardinalities), 1), d)
        nn.init.normal_(self.table.weight, std=d**-0.5)

    def forward(self, x_cat: Tensor) -> Tensor:
        return self.table(x_cat.long() + self.offsets)  # (B, n_cat, d)


class NumericTokens(nn.Module):
    """Per-feature linear tokens for numeric inputs (FT-Transformer style): ``(B, n) -> (B, n, d)``."""

    no_weight_decay = True  # read by the optimizer's parameter groups

    def __init__(self, n: int, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, d))
        self.bias = nn.Parameter(torch.empty(n, d))
        bound = d**-0.5
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x_num: Tensor) -> Tensor:
        return x_num[..., None] * self.weight + self.bias  # (B, n, d)


def check_added(n_num: int, cardinalities: Sequence[int]) -> None:
    if n_num < 0 or any(c < 2 for c in cardinalities):
        raise ValueError(f"{n_num=} must be >= 0 and every cardinality >= 2; got {list(cardinalities)}")


@torch.no_grad()
def widen_linear(linear: nn.Linear, at: int, n: int) -> nn.Linear:
    """A copy of ``linear`` with ``n`` input columns inserted before input column ``at``, their weights 0:
    on inputs whose old columns are unchanged it computes exactly what ``linear`` did.

    >>> lin = nn.Linear(3, 2)
    >>> wide = widen_linear(lin, 1, 2)
    >>> x = torch.randn(4, 3)
    >>> torch.equal(wide(torch.cat([x[:, :1], torch.randn(4, 2), x[:, 1:]], 1)), lin(x))
    True
    """
    if not 0 <= at <= linear.in_features or n < 0:
        raise ValueError(f"cannot insert {n} columns at {at} into {linear.in_features} inputs")
    w = linear.weight
    out = nn.Linear(linear.in_features + n, linear.out_features, bias=linear.bias is not None)
    out = out.to(device=w.device, dtype=w.dtype)
    out.weight.copy_(torch.cat([w[:, :at], w.new_zeros(w.shape[0], n), w[:, at:]], dim=1))
    if linear.bias is not None:
        out.bias.copy_(linear.bias)
    return out


@torch.no_grad()
def grow_embeddings(
    emb: CategoricalEmbeddings | None, old: Sequence[int], added: Sequence[int], d: int
) -> CategoricalEmbeddings:
    """``CategoricalEmbeddings(old + added, d)`` with the old tables' rows copied (new tables freshly
    initialized). Appended features keep every old offset, so the old rows stay where they were."""
    new = CategoricalEmbeddings([*old, *added], d)
    if emb is not None:
        n_old = sum(old)
        new = new.to(emb.table.weight)  # device and dtype
        new.table.weight[:n_old] = emb.table.weight[:n_old]
    return new
