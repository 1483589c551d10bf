"""Stream a shard folder into PyTorch at bounded memory.

:class:`ShardStream` is an ``IterableDataset``: every (DDP rank, DataLoader worker) pair
reads its own shards (a seeded permutation of the shard list, dealt round-robin), row
group by row group, through a shuffle buffer. Memory is the shuffle buffer plus one row
group per worker, whatever the size of the catalogue, and every row of the selected split
is yielded exactly once per epoch.

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

from speculum.io.shards import SpectraSet

__all__ = ["ShardStream"]


class ShardStream(torch.utils.data.IterableDataset):
    """Rows of a shard folder as dicts of numpy arrays / scalars.

    Args:
        root: Folder written by ``speculum simulate`` or ``speculum ingest``.
        columns: Columns to yield.
        split: Only rows of this split (``train``, ``val``, ``test``), or all.
        shuffle_buffer: Rows held for shuffling (0: file order, no shuffling).
        seed: Seed of the shard order and the buffer; combined with :meth:`set_epoch`.
        batch_rows: Rows decoded at a time from a shard.
    """

    def __init__(
        self,
        root: str | Path,
        columns: Sequence[str] = ("object_id", "z", "flux", "ivar", "mask"),
        split: str | None = None,
        shuffle_buffer: int = 4096,
        seed: int = 0,
        batch_rows: int = 1024,
    ) -> None:
        super().__init__()
        self.data = SpectraSet.open(root)
        self.columns = list(columns)
        self.split = split
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.batch_rows = batch_rows
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
            rank, world = 0, 1
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        return shards[rank * workers + worker :: world * workers]

    def _rows(self, shard: Path) -> Iterator[dict]:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        want = list(dict.fromkeys(self.columns + (["split"] if self.split else [])))
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=self.batch_rows, columns=want):
            if self.split:
                batch = batch.filter(pc.equal(batch.column("split"), self.split))
            cols = {}
            for name in self.columns:
                col = batch.column(name)
                if pa.types.is_fixed_size_list(col.type):
                    cols[name] = col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
                elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                    cols[name] = col.to_pylist()
                else:
                    cols[name] = col.to_numpy(zero_copy_only=False)
            for i in range(batch.num_rows):
                # copy: a view would keep the whole decoded batch alive while the row waits in the buffer
                yield {k: (v[i].copy() if isinstance(v, np.ndarray) and v.ndim == 2 else v[i]) for k, v in cols.items()}

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        rng = np.random.default_rng([self.seed, self.epoch, rank, wid, 1])
        buffer: list[dict] = []
        nw = info.num_workers if info is not None else 1
        for shard in self.assigned(worker=wid, workers=nw):
            for row in self._rows(shard):
                if len(buffer) < self.shuffle_buffer:
                    buffer.append(row)
                    continue
                if not self.shuffle_buffer:
                    yield row
                    continue
                j = int(rng.integers(len(buffer)))
                yield buffer[j]
                buffer[j] = row
        rng.shuffle(buffer)
        yield from buffer
