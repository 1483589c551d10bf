"""Stream a shard folder into PyTorch at bounded memory.

:class:`ShardStream` is an ``IterableDataset``: every (DDP rank, DataLoader worker) pair
reads its own shards (a seeded permutation of the shard list, dealt round-robin). It
keeps ``open_shards`` of them open at once and takes each next row from one of them
chosen at random (seeded), so that consecutive rows mix shards (ingested shards are one
plate each, written in sorted order), and passes the rows through a shuffle buffer.
Memory is the shuffle buffer plus one decoded row group per open shard and worker,
whatever the size of the catalogue, and every row of the selected split is yielded
exactly once per epoch.

Example::

    from torch.utils.data import DataLoader

    stream = ShardStream("sim/", split="train", shuffle_buffer=2048)
    for epoch in range(10):
        stream.set_epoch(epoch)
        for batch in DataLoader(stream, batch_size=64, num_workers=2):
            batch["flux"].shape  # (64, 3921)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from speculum._runtime import rank_world
from speculum.io.shards import SpectraSet, decode_table

__all__ = ["ShardStream", "rank_world"]


class ShardStream(torch.utils.data.IterableDataset):
    """Rows of a shard folder as dicts of numpy arrays / scalars.

    Args:
        root: Folder written by ``speculum simulate`` or ``speculum ingest``.
        columns: Columns to yield.
        split: Only rows of this split (``train``, ``val``, ``test``), or all.
        shuffle_buffer: Rows held for shuffling (0: file order, one shard after the
            other, no shuffling).
        seed: Seed of the shard order, the interleaving and the buffer; combined with
            :meth:`set_epoch`.
        batch_rows: Rows decoded at a time from a shard.
        open_shards: Shards read at once and interleaved row by row (when shuffling).
    """

    def __init__(
        self,
        root: str | Path,
        columns: Sequence[str] = ("object_id", "z", "flux", "ivar", "mask"),
        split: str | None = None,
        shuffle_buffer: int = 4096,
        seed: int = 0,
        batch_rows: int = 1024,
        open_shards: int = 4,
    ) -> None:
        super().__init__()
        if open_shards < 1:
            raise ValueError(f"open_shards: expected >= 1, got {open_shards}")
        if shuffle_buffer < 0:
            raise ValueError(f"shuffle_buffer: expected >= 0, got {shuffle_buffer}")
        self.data = SpectraSet.open(root)
        self.columns = list(columns)
        self.split = split
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.batch_rows = batch_rows
        self.open_shards = open_shards
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffling for a new epoch (call on every rank)."""
        self.epoch = epoch

    def assigned(
        self, rank: int | None = None, world: int | None = None, worker: int = 0, workers: int = 1
    ) -> list[Path]:
        """Shards read by one (rank, worker) in the current epoch; defaults: this process."""
        shards = [self.data.root / s["path"] for s in self.data.manifest["shards"]]
        if self.shuffle_buffer:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(shards))
            shards = [shards[i] for i in order]
        if rank is None or world is None:
            rank, world = rank_world()
        return shards[rank * workers + worker :: world * workers]

    def n_rows(self, shards: Sequence[Path]) -> int:
        """Rows of the selected split in ``shards``, from the manifest."""
        counts = {
            s["path"]: (s["splits"][self.split] if self.split else s["n_rows"]) for s in self.data.manifest["shards"]
        }
        return sum(counts[Path(p).name] for p in shards)

    def empty_columns(self) -> dict[str, np.ndarray]:
        """Zero-row columns with the dtypes and row shapes of the data, e.g. flux (0, L)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pq.read_schema(self.data.root / self.data.manifest["shards"][0]["path"])
        fields = [schema.field(name) for name in self.columns]
        empty = pa.record_batch([pa.array([], type=f.type) for f in fields], names=self.columns)
        strings = {f.name for f in fields if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
        return {k: v.astype(np.str_) if k in strings else v for k, v in decode_table(empty, self.columns).items()}

    def _rows(self, shard: Path) -> Iterator[dict]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        want = list(dict.fromkeys(self.columns + (["split"] if self.split else [])))
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=self.batch_rows, columns=want):
            if self.split:
                batch = batch.filter(pc.equal(batch.column("split"), self.split))
            cols = decode_table(batch, self.columns)
            for i in range(batch.num_rows):
                # copy: a view would keep the whole decoded batch alive while the row waits in the buffer
                yield {k: (v[i].copy() if isinstance(v, np.ndarray) and v.ndim == 2 else v[i]) for k, v in cols.items()}

    def _interleaved(self, shards: list[Path], rng: np.random.Generator) -> Iterator[dict]:
        """Rows of ``shards``, ``open_shards`` at a time, each next row from a random open one."""
        queue = iter(shards)
        active = [self._rows(s) for s in (next(queue, None) for _ in range(self.open_shards)) if s is not None]
        while active:
            j = int(rng.integers(len(active))) if len(active) > 1 else 0
            row = next(active[j], None)
            if row is not None:
                yield row
                continue
            nxt = next(queue, None)
            if nxt is None:
                del active[j]
            else:
                active[j] = self._rows(nxt)

    def iter_rows(self, rank: int, world: int, worker: int = 0, workers: int = 1) -> Iterator[dict]:
        """Rows of one (rank, worker) in the current epoch, deterministic in ``(seed, epoch, rank, worker)``."""
        shards = self.assigned(rank=rank, world=world, worker=worker, workers=workers)
        if not self.shuffle_buffer:
            for shard in shards:
                yield from self._rows(shard)
            return
        rng = np.random.default_rng([self.seed, self.epoch, rank, worker, 1])
        pick = np.random.default_rng([self.seed, self.epoch, rank, worker, 2])
        buffer: list[dict] = []
        for row in self._interleaved(shards, pick):
            if len(buffer) < self.shuffle_buffer:
                buffer.append(row)
                continue
            j = int(rng.integers(len(buffer)))
            yield buffer[j]
            buffer[j] = row
        rng.shuffle(buffer)
        yield from buffer

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        rank, world = rank_world()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.iter_rows(rank, world, wid, nw)
