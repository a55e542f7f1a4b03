"""Batches drawn by index from tensors that live on the training device: no per-row Dataset, no collate.

The tensor cache is copied to the device once (a few hundred MB for millions of rows); each epoch draws a
random permutation *on the device* and slices it into batches, so the GPU never waits on a Python loop
or a host-to-device copy. The same code runs on CPU. Under DDP each rank takes every ``world``-th index
of the shared permutation (trimmed so that every rank runs the same number of steps).

Two additions for pretraining corpora:

* **Source weights** (``data.weights``: source name -> weight): an epoch draws ``round(w * n_source)``
  rows of each source (without replacement up to its size, whole extra passes above), so a small real
  source can count as much as a large synthetic one.
* **Streaming** (``datamodule.chunk_rows``): a training split larger than that is never loaded whole.
  Each epoch shuffles blocks of ``block_rows`` contiguous rows of the memory-mapped cache, reads
  ``chunk_rows`` rows' worth of blocks at a time (sequential reads), moves them to the device and
  shuffles them there; memory stays at one chunk however large the corpus.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

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
            torch.from_numpy(np.array(arrays.ctx_city_idx, dtype=np.int64)).to(device),
            torch.from_numpy(np.array(arrays.ctx_region_idx, dtype=np.int64)).to(device),
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


class SourceSampler:
    """Per-epoch row indices that weight each source: ``round(w_s * n_s)`` rows of source ``s``.

    >>> s = SourceSampler(torch.tensor([0, 0, 0, 0, 1, 1]), [0.5, 2.0])
    >>> len(s), sorted(s.draw(torch.Generator().manual_seed(0)).tolist()).count(4)
    (6, 2)
    """

    def __init__(self, source_id: Tensor, weights: list[float]):
        if any(w < 0 for w in weights):
            raise ValueError(f"source weights must be >= 0; got {weights}")
        self.rows = [torch.nonzero(source_id == s).flatten() for s in range(len(weights))]
        self.counts = [round(w * len(r)) for w, r in zip(weights, self.rows, strict=True)]
        if sum(self.counts) == 0:
            raise ValueError(f"source weights {weights} select no rows")

    def __len__(self) -> int:
        return sum(self.counts)

    def draw(self, g: torch.Generator) -> Tensor:
        parts = []
        for rows, k in zip(self.rows, self.counts, strict=True):
            full, rest = divmod(k, max(len(rows), 1))
            for _ in range(full):
                parts.append(rows[torch.randperm(len(rows), generator=g).to(rows.device)])
            if rest:
                parts.append(rows[torch.randperm(len(rows), generator=g)[:rest].to(rows.device)])
        idx = torch.cat(parts)
        return idx[torch.randperm(len(idx), generator=g).to(idx.device)]


class EpochOrdered:
    """A batch iterable whose order depends on (seed, epoch) only."""

    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration draws. The module sets it every epoch, so that a run
        resumed from a checkpoint continues with the order it would have had."""
        self.epoch = epoch


class DeviceBatches(EpochOrdered):
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
        sampler: SourceSampler | None = None,
    ):
        if batch_size < 1:
            raise ValueError(f"{batch_size=} must be >= 1")
        self.tensors, self.batch_size, self.shuffle, self.drop_last = tensors, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0
        self.context, self.source_sampler = context, sampler
        n = len(sampler) if sampler is not None else len(tensors[0])  # (not `.sampler`: Lightning reads that)
        self.n_local = n // world if (shuffle or world > 1) else n  # equal shards: same step count per rank

    def __len__(self) -> int:
        full, rest = divmod(self.n_local, self.batch_size)
        return full + (0 if self.drop_last or rest == 0 else 1)

    def _indices(self) -> Tensor | None:
        device = self.tensors[0].device
        n = len(self.tensors[0])
        if self.shuffle:
            g = torch.Generator(device="cpu").manual_seed(self.seed * 100_003 + self.epoch)
            if self.source_sampler is not None:
                perm = self.source_sampler.draw(g).to(device)
            else:
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


class StreamedBatches(EpochOrdered):
    """Training batches from a memory-mapped split too large for the device: chunk by chunk.

    Every epoch shuffles the split's blocks (``block_rows`` contiguous rows), then for each group of
    blocks making up ``chunk_rows`` rows: reads them (sorted, so reads are sequential), moves them to the
    device, applies the source weights within the chunk and yields shuffled batches. Under DDP every rank
    reads the same chunks (same seed) and keeps every ``world``-th row of each.
    """

    def __init__(
        self,
        arrays: SplitArrays,
        *,
        device: torch.device,
        batch_size: int,
        chunk_rows: int,
        block_rows: int = 65_536,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        context: ContextGather | None = None,
        weights: list[float] | None = None,
    ):
        if chunk_rows < block_rows or block_rows < 1:
            raise ValueError(f"need 1 <= {block_rows=} <= {chunk_rows=}")
        self.arrays, self.device, self.batch_size = arrays, device, batch_size
        self.blocks_per_chunk = chunk_rows // block_rows
        self.block_rows, self.seed, self.rank, self.world = block_rows, seed, rank, world
        self.context, self.weights, self.epoch = context, weights, 0
        self.n = len(arrays)
        self.n_blocks = -(-self.n // block_rows)
        if weights is not None and arrays.source_id is not None:
            # expected rows per epoch under the weights (each chunk is a random sample of the split)
            counts = np.bincount(np.asarray(arrays.source_id), minlength=len(weights))
            self.n_epoch = int(sum(round(w * c) for w, c in zip(weights, counts, strict=True)))
        else:
            self.n_epoch = self.n

    def __len__(self) -> int:  # an estimate under weights (rounding per chunk)
        return -(-(self.n_epoch // self.world) // self.batch_size)

    def _chunk(self, blocks: np.ndarray) -> SplitArrays:
        starts = np.sort(blocks) * self.block_rows
        index = np.concatenate([np.arange(a, min(a + self.block_rows, self.n)) for a in starts])
        return self.arrays.subset(index)

    def __iter__(self) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, self.epoch])
        g = torch.Generator(device="cpu").manual_seed(self.seed * 100_003 + self.epoch)
        self.epoch += 1
        order = rng.permutation(self.n_blocks)
        use_context = self.context is not None
        for c in range(0, self.n_blocks, self.blocks_per_chunk):
            chunk = self._chunk(order[c : c + self.blocks_per_chunk])
            tensors = to_tensors(chunk, self.device, context=use_context)
            sampler = None
            if self.weights is not None and chunk.source_id is not None:
                sid = torch.as_tensor(np.asarray(chunk.source_id, dtype=np.int64), device=self.device)
                sampler = SourceSampler(sid, self.weights)
            inner = DeviceBatches(
                tensors,
                batch_size=self.batch_size,
                shuffle=True,
                seed=int(torch.randint(0, 2**31 - 1, (1,), generator=g)),
                rank=self.rank,
                world=self.world,
                context=self.context,
                sampler=sampler,
            )
            yield from inner


class CacheDataModule(L.LightningDataModule):
    """Serves a :class:`~tabxfer.features.cache.TensorCache`'s splits as device-resident batches.

    Args:
        cache: the tensor cache (or its path).
        batch_size / eval_batch_size: rows per training / evaluation batch.
        train_limit: use only the first ``train_limit`` training rows (data-efficiency studies); the
            cache's row order is already random for random splits.
        weights: source name -> sampling weight for the training split (missing names: 1.0).
        chunk_rows: stream a training split with more rows than this in chunks (see
            :class:`StreamedBatches`); ``None`` loads it whole.
    """

    def __init__(
        self,
        cache: TensorCache | str,
        *,
        batch_size: int = 1024,
        eval_batch_size: int = 8192,
        train_limit: int | None = None,
        seed: int = 0,
        weights: Mapping[str, float] | None = None,
        chunk_rows: int | None = None,
        block_rows: int = 65_536,
    ):
        super().__init__()
        self.cache = cache if isinstance(cache, TensorCache) else TensorCache.open(cache)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_limit, self.seed = train_limit, seed
        self.chunk_rows, self.block_rows = chunk_rows, block_rows
        self.weights = self._weight_list(weights)
        self._tensors: dict[str, Batch] = {}
        self._context: ContextGather | None = None
        self.context_hours = self.cache.context_hours

    def _weight_list(self, weights: Mapping[str, float] | None) -> list[float] | None:
        if not weights:
            return None
        names = list(self.cache.manifest.get("sources", []))
        unknown = set(weights) - set(names)
        if unknown:
            raise ValueError(
                f"data.weights names {sorted(unknown)}, which are not sources of this cache: {names}"
            )
        return [float(weights.get(n, 1.0)) for n in names]

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _split(self, name: str) -> Batch:
        if name not in self._tensors:
            arrays = self._train_arrays() if name == "train" else self.cache.split(name)
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

    def _train_arrays(self) -> SplitArrays:
        arrays = self.cache.split("train")
        if self.train_limit is not None:
            arrays = arrays.subset(slice(0, self.train_limit))  # type: ignore[arg-type]
        return arrays

    @property
    def streamed(self) -> bool:
        return self.chunk_rows is not None and len(self._train_arrays()) > self.chunk_rows

    def n_train(self) -> int:
        return len(self._train_arrays())

    def train_dataloader(self) -> DeviceBatches | StreamedBatches:
        rank, world = self._rank_world()
        if self.streamed:
            assert self.chunk_rows is not None
            return StreamedBatches(
                self._train_arrays(),
                device=self._device(),
                batch_size=self.batch_size,
                chunk_rows=self.chunk_rows,
                block_rows=min(self.block_rows, self.chunk_rows),
                seed=self.seed,
                rank=rank,
                world=world,
                context=self._gather(),
                weights=self.weights,
            )
        sampler = None
        if self.weights is not None:
            sid = self.cache.split("train").source_id
            if sid is None:
                raise ValueError(f"cache {self.cache.path} has no source ids; rebuild it to use data.weights")
            sid_t = torch.as_tensor(
                np.asarray(sid[: self.train_limit], dtype=np.int64), device=self._device()
            )
            sampler = SourceSampler(sid_t, self.weights)
        return DeviceBatches(
            self._split("train"),
            batch_size=self.batch_size,
            shuffle=True,
            seed=self.seed,
            rank=rank,
            world=world,
            context=self._gather(),
            sampler=sampler,
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
