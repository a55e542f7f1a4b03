from __future__ import annotations

import torch
from torch import nn

from tabxfer.models.mlp import MLP
from tabxfer.training.data import DeviceBatches
from tabxfer.training.module import param_groups


def tensors(n: int = 103):
    return (
        torch.arange(n, dtype=torch.float32)[:, None],
        torch.zeros(n, 2, dtype=torch.long),
        torch.arange(n).float(),
    )


def test_an_epoch_visits_every_row_once():
    b = DeviceBatches(tensors(), batch_size=10, shuffle=True, seed=1)
    assert len(b) == 11
    ys = torch.cat([y for _, _, y in b])
    assert sorted(ys.tolist()) == list(range(103))


def test_epochs_reshuffle_deterministically():
    a, b = (
        DeviceBatches(tensors(), batch_size=10, shuffle=True, seed=1),
        DeviceBatches(tensors(), batch_size=10, shuffle=True, seed=1),
    )
    e1a, e1b = [y for _, _, y in a], [y for _, _, y in b]
    assert all(torch.equal(x, z) for x, z in zip(e1a, e1b, strict=True))
    e2a = [y for _, _, y in a]
    assert not torch.equal(torch.cat(e1a), torch.cat(e2a))


def test_ranks_take_disjoint_equal_shards():
    shards = [DeviceBatches(tensors(), batch_size=8, shuffle=True, seed=3, rank=r, world=3) for r in range(3)]
    rows = [torch.cat([y for _, _, y in s]) for s in shards]
    assert len({len(r) for r in rows}) == 1 and len(rows[0]) == 103 // 3
    assert len(set(torch.cat(rows).tolist())) == 3 * (103 // 3)


def test_eval_batches_keep_order():
    b = DeviceBatches(tensors(), batch_size=50, shuffle=False)
    assert torch.equal(torch.cat([y for _, _, y in b]), torch.arange(103).float())


def test_no_weight_decay_on_norms_biases_embeddings():
    m = nn.Sequential(MLP(n_num=3, cardinalities=[4]), nn.LayerNorm(1))
    decay, _ = param_groups(m, 0.1)
    decayed = {id(p) for p in decay["params"]}
    for name, p in m.named_parameters():
        if name.endswith("bias") or "table" in name or name.startswith("1."):
            assert id(p) not in decayed, name
        else:
            assert id(p) in decayed, name


def test_no_weight_decay_on_feature_tokenizers():
    from tabxfer.models.ft_transformer import FTTransformer

    m = FTTransformer(n_num=3, cardinalities=[4], d_token=8, n_blocks=1, n_heads=2)
    decay, _ = param_groups(m, 0.1)
    decayed = {id(p) for p in decay["params"]}
    for name, p in m.named_parameters():
        if name.startswith("embed."):
            assert id(p) not in decayed, name
    assert decayed  # the blocks' weight matrices are still decayed
