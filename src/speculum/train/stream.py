"""Batches streamed from a shard folder, for catalogues that do not fit in memory.

:class:`StreamBatches` wraps :class:`~speculum.io.ShardStream`: every DDP rank reads its
own shards (each rank *reads only its part of the data*), interleaving several open
shards and passing the rows through a shuffle buffer; local batches are built and
transformed (e.g. normalised) on the fly.

Every row of the split is used exactly once per epoch. The epoch has
``ceil(total / batch_size)`` steps on every rank (DDP needs the same number), where
``total`` is the split's row count in the manifest. Ranks may stream different numbers
of rows ``R_r`` (shards differ in size and need not divide among the ranks), so rank
``r`` contributes ``floor(R_r (b + 1) / n) - floor(R_r b / n)`` rows to step ``b`` of
``n``: local batches are proportional to the rank's share (and may be empty), global
batches hold ``batch_size`` rows give or take the number of ranks, and the trainer is
told the true global row count of every step, computed from the manifest counts alone
(no communication), so that the averaged gradient stays the single-process gradient of
that global batch. The stream is deterministic in ``(seed, epoch, rank)``, so resuming
mid-epoch replays and skips the finished batches and reaches the same weights as an
uninterrupted run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from speculum._runtime import rank_world
from speculum.io import ShardStream
from speculum.train.sources import BatchSource

__all__ = ["StreamBatches"]

log = logging.getLogger(__name__)


class StreamBatches(BatchSource):
    """Global batches of about ``batch_size`` rows streamed from ``root``, each rank its share.

    Args:
        root: Shard folder.
        batch_size: Global batch size (at least the number of DDP ranks).
        transform: ``transform(columns) -> {name: tensor}`` applied to every local batch
            of numpy columns, e.g. ``flux`` (n, L) (must keep the number of rows ``n``,
            which may be 0).
        split: Split to stream (``train`` by default).
        columns: Columns to read.
        seed: Seed of shard order, interleaving and shuffle buffer.
        shuffle_buffer: Rows in the shuffle buffer (per rank).
        open_shards: Shards each rank reads at once, interleaved row by row.
        rank: This process's rank (default: from ``torch.distributed``).
        world: Number of ranks (default: from ``torch.distributed``).

    Raises:
        ValueError: ``batch_size`` smaller than the number of ranks, or an empty split.
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
        open_shards: int = 4,
        rank: int | None = None,
        world: int | None = None,
    ) -> None:
        self.rank, self.world = rank_world() if rank is None or world is None else (rank, world)
        if batch_size < self.world:
            raise ValueError(f"batch_size: {batch_size} is smaller than the {self.world} DDP ranks")
        self.batch_size = batch_size
        self.transform = transform
        self.stream = ShardStream(
            root, columns=columns, split=split, shuffle_buffer=shuffle_buffer, seed=seed, open_shards=open_shards
        )
        self.split = split
        self._plans: dict[int, np.ndarray] = {}

    def identity(self) -> dict[str, str | int | float | bool | None]:
        s = self.stream
        return {
            "source": "StreamBatches",
            "batch_size": self.batch_size,
            "split": self.split,
            "seed": s.seed,
            "shuffle_buffer": s.shuffle_buffer,
            "open_shards": s.open_shards,
        }

    def rows_per_rank(self, epoch: int) -> list[int]:
        """Rows of the split each rank streams in ``epoch`` (from the manifest)."""
        self.stream.set_epoch(epoch)
        return [self.stream.n_rows(self.stream.assigned(rank=r, world=self.world)) for r in range(self.world)]

    def plan(self, epoch: int) -> np.ndarray:
        """Rows each rank contributes to each step of ``epoch``: (n_batches, world) ints."""
        if epoch not in self._plans:
            rows = np.array(self.rows_per_rank(epoch), dtype=np.int64)
            total = int(rows.sum())
            if total == 0:
                raise ValueError(f"{self.stream.data.root}: the manifest lists no {self.split} rows")
            empty = np.flatnonzero(rows == 0)
            if len(empty):
                log.warning(
                    "epoch %d: DDP rank(s) %s get no %s rows (%d shard(s) for %d ranks) and train on empty batches",
                    epoch,
                    empty.tolist(),
                    self.split,
                    len(self.stream.data.manifest["shards"]),
                    self.world,
                )
            n = math.ceil(total / self.batch_size)
            edges = rows[None, :] * np.arange(n + 1)[:, None] // n
            self._plans[epoch] = np.diff(edges, axis=0)
        return self._plans[epoch]

    def n_batches(self, epoch: int) -> int:
        return len(self.plan(epoch))

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        plan = self.plan(epoch)
        self.stream.set_epoch(epoch)
        rows = self.stream.iter_rows(self.rank, self.world)
        for b, counts in enumerate(plan):
            want = int(counts[self.rank])
            local = list(islice(rows, want))
            if len(local) < want:
                raise ValueError(
                    f"{self.stream.data.root}: rank {self.rank} streamed fewer {self.split} rows in epoch {epoch} "
                    "than the manifest lists for its shards; the manifest does not match the shards"
                )
            if b < start:
                continue
            if local:
                cols = {k: np.stack([np.asarray(r[k]) for r in local]) for k in local[0]}
            else:
                cols = self.stream.empty_columns()
            yield self.transform(cols), int(counts.sum())
        if next(rows, None) is not None:
            raise ValueError(
                f"{self.stream.data.root}: rank {self.rank} streamed more {self.split} rows in epoch {epoch} "
                "than the manifest lists for its shards; the manifest does not match the shards"
            )
