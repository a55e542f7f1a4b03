"""Per-source sampling weights and streaming a training split chunk by chunk from the memory map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tabxfer.features.cache import SplitArrays
from tabxfer.training.data import DeviceBatches, SourceSampler, StreamedBatches


def arrays(n: int = 1000, sources: int = 2) -> SplitArrays:
    return SplitArrays(
        x_num=np.arange(n, dtype=np.float32)[:, None],
        x_cat=np.zeros((n, 1), dtype=np.int32),
        y=np.arange(n, dtype=np.float32),
        pickup_ts=np.zeros(n, dtype=np.int64),
        source_id=(np.arange(n) * sources // n).astype(np.int16),  # first half 0, second half 1
    )


def test_source_weights_set_rows_per_epoch():
    sid = torch.tensor([0] * 100 + [1] * 10)
    s = SourceSampler(sid, [0.5, 3.0])
    idx = s.draw(torch.Generator().manual_seed(0))
    assert len(s) == len(idx) == 50 + 30
    counts = torch.bincount(sid[idx], minlength=2).tolist()
    assert counts == [50, 30]
    assert len(set(idx[sid[idx] == 0].tolist())) == 50  # below its size: without replacement
    assert torch.bincount(idx[sid[idx] == 1]).max() == 3  # 3 full passes over the small source
    with pytest.raises(ValueError, match="select no rows"):
        SourceSampler(sid, [0.0, 0.0])


def test_weighted_device_batches_follow_the_sampler():
    a = arrays(200)
    tensors = (torch.from_numpy(a.x_num), torch.from_numpy(a.x_cat).long(), torch.from_numpy(a.y))
    sampler = SourceSampler(torch.from_numpy(a.source_id.astype(np.int64)), [0.0, 2.0])
    b = DeviceBatches(tensors, batch_size=32, shuffle=True, sampler=sampler)
    ys = torch.cat([y for _, _, y in b])
    assert len(ys) == 200 and len(b) == 7 and (ys >= 100).all()  # source 0 weighted out


def test_streaming_visits_every_row_once_per_epoch():
    s = StreamedBatches(
        arrays(1000), device=torch.device("cpu"), batch_size=64, chunk_rows=300, block_rows=100
    )
    for _ in range(2):  # two epochs: each a permutation of all rows
        ys = torch.cat([y for _, _, y in s])
        assert sorted(ys.long().tolist()) == list(range(1000))
    first = torch.cat([y for _, _, y in s])[:200]
    assert len(set((first // 100).long().tolist())) > 2  # a chunk mixes several shuffled blocks


def test_streaming_applies_weights_and_shards():
    a = arrays(1000)
    ranks = [
        StreamedBatches(
            a,
            device=torch.device("cpu"),
            batch_size=50,
            chunk_rows=400,
            block_rows=100,
            rank=r,
            world=2,
            weights=[1.0, 0.0],
        )
        for r in range(2)
    ]
    rows = [torch.cat([y for _, _, y in s]).long() for s in ranks]
    assert all((r < 500).all() for r in rows)  # source 1 weighted out
    assert not set(rows[0].tolist()) & set(rows[1].tolist())  # disjoint shards
    assert len(rows[0]) + len(rows[1]) >= 490  # each chunk's rows, split over two ranks
