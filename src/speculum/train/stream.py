"""Batches streamed from a shard folder, for catalogues that do not fit in memory.

:class:`StreamBatches` wraps :class:`~speculum.io.ShardStream`: every DDP rank reads its
own shards (each rank *reads only its part of the data*), rows pass a shuffle buffer, and
fixed-size local batches are built and transformed (e.g. normalised) on the fly. The
number of batches per epoch is computed from the manifest's per-shard split counts for
every rank and the minimum is used, so all ranks step together (DDP needs that); the
few rows beyond it are left for the next epoch's shuffle. The stream is deterministic in
``(seed, epoch, rank)``, so resuming mid-epoch replays and skips the finished batches and
reaches the same weights as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from speculum.io import ShardStream, SpectraSet
from speculum.train.trainer import BatchSource, _rank_world

__all__ = ["StreamBatches"]


class StreamBatches(BatchSource):
    """Local batches of ``batch_size // world`` rows streamed from ``root``.

    Args:
        root: Shard folder.
        batch_size: Global batch size (divisible by the number of DDP ranks).
        transform: ``transform(columns) -> {name: tensor}`` applied to every local batch
            of numpy columns (must keep the number of rows).
        split: Split to stream (``train`` by default).
        columns: Columns to read.
        seed: Seed of shard order and shuffle buffer.
        shuffle_buffer: Rows in the shuffle buffer.
    """

    def __init__(
        self,
        root: str | Path,
        batch_size: int,
        transform: Callable[[dict[str, np.ndarray]], dict[str, torch.Tensor]],
        split: str = "train",
        columns: Sequence[str] = ("z", "flux", "ivar", "mask"),
        seed: int = 0,
        shuffle_buffer: int = 4096,
    ) -> None:
        self.rank, self.world = _rank_world()
        if batch_size % self.world:
            raise ValueError(f"batch_size: {batch_size} is not divisible by the {self.world} DDP ranks")
        self.local = batch_size // self.world
        self.transform = transform
        self.stream = ShardStream(root, columns=columns, split=split, shuffle_buffer=shuffle_buffer, seed=seed)
        self.split = split
        self._counts: dict[int, int] = {}

    def rows_per_rank(self, epoch: int) -> list[int]:
        """Rows of the split each rank streams in ``epoch`` (from the manifest)."""
        data: SpectraSet = self.stream.data
        rows = {s["path"]: s["splits"][self.split] for s in data.manifest["shards"]}
        self.stream.set_epoch(epoch)
        out = []
        for r in range(self.world):
            shards = self.stream.assigned(rank=r, world=self.world)
            out.append(sum(rows[p.name] for p in shards))
        return out

    def n_batches(self, epoch: int) -> int:
        if epoch not in self._counts:
            rows = self.rows_per_rank(epoch)
            if min(rows) < self.local:
                n_shards = len(self.stream.data.manifest["shards"])
                raise ValueError(
                    f"{self.stream.data.root}: in epoch {epoch} a DDP rank streams only {min(rows)} {self.split} rows, "
                    f"fewer than its batch of {self.local}; the data have {n_shards} shard(s) for {self.world} "
                    "rank(s): write more, smaller shards"
                )
            self._counts[epoch] = min(rows) // self.local
        return self._counts[epoch]

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        n = self.n_batches(epoch)
        self.stream.set_epoch(epoch)
        rows: list[dict] = []
        done = 0
        for row in self.stream:
            rows.append(row)
            if len(rows) < self.local:
                continue
            if done >= start:
                cols = {k: np.stack([np.asarray(r[k]) for r in rows]) for k in rows[0]}
                yield self.transform(cols), self.local * self.world
            rows, done = [], done + 1
            if done == n:
                return
