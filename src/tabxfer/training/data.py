"""Batches drawn by index from tensors that live on the training device: no per-row Dataset, no collate.

The tensor cache is copied to the device once (a few hundred MB for millions of rows); each epoch draws a
random permutation *on the device* and slices it into batches, so the GPU never waits on a Python loop
or a host-to-device copy. The same code runs on CPU. Under DDP each rank takes every ``world``-th index
of the shared permutation (trimmed so that every rank runs the same number of steps).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytorch_lightning as L
import torch
from torch import Tensor

from tabxfer.features.cache import SplitArrays, TensorCache

# x_num (B, n_num) float32, x_cat (B, n_cat) int64, y (B,) float32 [, x_ctx (B, T, 4) float32]
Batch = tuple[Tensor, ...]


def to_tensors(arrays: SplitArrays, device: torch.device, context: bool = False) -> Batch:
    # np.array copies out of the read-only memory map (torch refuses to wrap read-only memory)
    out: Batch = (
        torch.from_numpy(np.array(arrays.x_num, dtype=np.float32)).to(device),
        torch.from_numpy(np.array(arrays.x_cat, dtype=np.int64)).to(device),
        torch.from_numpy(np.array(arrays.y, dtype=np.float32)).to(device),
    )
    if context:
        if arrays.ctx_city_idx is None or arrays.ctx_region_idx is None:
            raise ValueError("the cache has no context indices (build it with data.features.context=true)")
        out += (
            torch.as_tensor(arrays.ctx_city_idx).to(device),
            torch.as_tensor(arrays.ctx_region_idx).to(device),
        )
    return out


class ContextGather:
    """Turns per-trip table rows into the context sequence: ``(B,), (B,) -> (B, T, 4)``, oldest first."""

    def __init__(self, city: Tensor, region: Tensor, hours: int):
        self.city, self.region = city, region
        self.offsets = -torch.arange(hours, 0, -1, device=city.device)  # (T,) -T .. -1

    def __call__(self, city_idx: Tensor, region_idx: Tensor) -> Tensor:
        c = self.city[city_idx[:, None] + self.offsets]  # (B, T, 2)
        r = self.region[region_idx[:, None] + self.offsets]  # (B, T, 2)
        return torch.cat([c, r], dim=-1)  # (B, T, 4)


class DeviceBatches:
    """An iterable of batches over device tensors. ``len()`` is the number of batches per epoch."""

    def __init__(
        self,
        tensors: Batch,
        *,
        batch_size: int,
        shuffle: bool,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        context: ContextGather | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"{batch_size=} must be >= 1")
        self.tensors, self.batch_size, self.shuffle, self.drop_last = tensors, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0
        self.context = context
        n = len(tensors[0])
        self.n_local = n // world if (shuffle or world > 1) else n  # equal shards: same step count per rank

    def __len__(self) -> int:
        full, rest = divmod(self.n_local, self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)

    def _indices(self) -> Tensor | None:
        device = self.tensors[0].device
        n = len(self.tensors[0])
        if self.shuffle:
            g = torch.Generator(device="cpu").manual_seed(self.seed * 100_003 + self.epoch)
            perm = torch.randperm(n, generator=g).to(device)  # (n,) one small copy per epoch
        elif self.world > 1:
            perm = torch.arange(n, device=device)
        else:
            return None
        return perm[self.rank :: self.world][: self.n_local]

    def __iter__(self) -> Iterator[Batch]:
        idx = self._indices()
        self.epoch += 1
        for b in range(len(self)):
            lo, hi = b * self.batch_size, min((b + 1) * self.batch_size, self.n_local)
            if idx is None:
                batch = tuple(t[lo:hi] for t in self.tensors)
            else:
                sel = idx[lo:hi]
                batch = tuple(t[sel] for t in self.tensors)
            if self.context is not None:  # (x_num, x_cat, y, city_idx, region_idx) -> (..., x_ctx)
                batch = (*batch[:3], self.context(batch[3], batch[4]))
            yield batch


class CacheDataModule(L.LightningDataModule):
    """Serves a :class:`~tabxfer.features.cache.TensorCache`'s splits as device-resident batches.

    Args:
        cache: the tensor cache (or its path).
        batch_size / eval_batch_size: rows per training / evaluation batch.
        train_limit: use only the first ``train_limit`` training rows (data-efficiency studies); the
            cache's row order is already random for random splits.
    """

    def __init__(
        self,
        cache: TensorCache | str,
        *,
        batch_size: int = 1024,
        eval_batch_size: int = 8192,
        train_limit: int | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.cache = cache if isinstance(cache, TensorCache) else TensorCache.open(cache)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_limit, self.seed = train_limit, seed
        self._tensors: dict[str, Batch] = {}
        self._context: ContextGather | None = None
        self.context_hours = self.cache.context_hours

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _split(self, name: str) -> Batch:
        if name not in self._tensors:
            arrays = self.cache.split(name)
            if name == "train" and self.train_limit is not None:
                arrays = arrays.subset(slice(0, self.train_limit))  # type: ignore[arg-type]
            self._tensors[name] = to_tensors(arrays, self._device(), context=self.context_hours is not None)
        return self._tensors[name]

    def _gather(self) -> ContextGather | None:
        if self.context_hours is None:
            return None
        if self._context is None:
            dev = self._device()
            city = torch.from_numpy(self.cache.table("ctx_city").astype(np.float32)).to(dev)
            region = torch.from_numpy(self.cache.table("ctx_region").astype(np.float32)).to(dev)
            self._context = ContextGather(city, region, self.context_hours)
        return self._context

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DeviceBatches:
        rank, world = self._rank_world()
        return DeviceBatches(
            self._split("train"),
            batch_size=self.batch_size,
            shuffle=True,
            seed=self.seed,
            rank=rank,
            world=world,
            context=self._gather(),
        )

    def _eval(self, name: str) -> DeviceBatches:
        rank, world = self._rank_world()
        return DeviceBatches(
            self._split(name),
            batch_size=self.eval_batch_size,
            shuffle=False,
            rank=rank,
            world=world,
            context=self._gather(),
        )

    def val_dataloader(self) -> DeviceBatches:
        return self._eval("val")

    def test_dataloader(self) -> DeviceBatches:
        return self._eval("test")
