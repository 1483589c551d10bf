"""Where the trainer's batches come from: rows held in memory, shard rows streamed, or fresh draws.

Every source is deterministic in ``(seed, epoch, batch)``, so that resuming in the middle
of an epoch replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from speculum._runtime import rank_world

__all__ = ["BatchSource", "DrawBatches", "InMemoryBatches", "holdout_split"]


class BatchSource:
    """Where the trainer's batches come from: the same number of batches on every rank.

    ``batches(epoch, start)`` yields ``(local_batch, global_rows)`` for batches
    ``start, start + 1, …`` of ``epoch``, deterministically (exact resume skips the first
    ``start``); ``n_batches(epoch)`` says how many there are. ``local_batch`` holds this
    rank's rows (a source may give a rank no rows in a step), ``global_rows`` the rows of
    that step summed over all ranks (the same on every rank, at least 1): the trainer
    scales each rank's summed loss by ``world / global_rows``. Rows need not be stored
    anywhere: :class:`DrawBatches` draws them from a simulator or a flow.
    """

    def n_batches(self, epoch: int) -> int:
        raise NotImplementedError

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        raise NotImplementedError

    def identity(self) -> dict[str, str | int | float | bool | None]:
        """What fixes the batches (kind, sizes, seeds): recorded in checkpoints, a resume must match it."""
        return {"source": type(self).__name__}


class InMemoryBatches(BatchSource):
    """Rows held in memory; epoch ``e`` visits ``randperm(N)`` seeded by ``(seed, e)``.

    Global batches are consecutive chunks of ``batch_size`` rows of the permutation; a
    final chunk with fewer than ``min_last`` rows is merged into the previous batch
    (deterministically, on every rank), so under DDP every rank gets a non-empty share of
    every global batch. Rank ``r`` takes rows ``r::world`` of each global batch.

    Args:
        data: Columns with the same first dimension ``N``, e.g. ``y`` (N, L).
        batch_size: Global batch size.
        seed: Seed of the row order.
        min_last: Smallest final batch kept on its own (default: the number of DDP ranks).
        rank: This process's rank (default: from ``torch.distributed``).
        world: Number of ranks (default: from ``torch.distributed``).

    Raises:
        ValueError: ``batch_size`` or ``N`` smaller than the number of ranks.
    """

    def __init__(
        self,
        data: dict[str, torch.Tensor],
        batch_size: int,
        seed: int,
        min_last: int | None = None,
        rank: int | None = None,
        world: int | None = None,
    ) -> None:
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.n = len(next(iter(data.values())))
        self.rank, self.world = rank_world() if rank is None or world is None else (rank, world)
        self.min_last = self.world if min_last is None else min_last
        if batch_size < self.world:
            raise ValueError(f"batch_size: {batch_size} is smaller than the {self.world} DDP ranks")
        if 0 < self.n < self.world:
            raise ValueError(f"train: {self.n} rows cannot be shared by {self.world} DDP ranks")

    def identity(self) -> dict[str, str | int | float | bool | None]:
        return {**super().identity(), "rows": self.n, "batch_size": self.batch_size, "seed": self.seed}

    def n_batches(self, epoch: int) -> int:
        n = math.ceil(self.n / self.batch_size)
        return n - 1 if n > 1 and 0 < self.n % self.batch_size < self.min_last else n

    def global_batches(self, epoch: int) -> list[torch.Tensor]:
        """Row indices of every global batch of ``epoch`` (all ranks together)."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        chunks = list(torch.randperm(self.n, generator=gen).split(self.batch_size))
        if len(chunks) > self.n_batches(epoch):
            chunks[-2:] = [torch.cat(chunks[-2:])]
        return chunks

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        for idx in self.global_batches(epoch)[start:]:
            local = idx[self.rank :: self.world]
            yield {k: v[local] for k, v in self.data.items()}, len(idx)


class DrawBatches(BatchSource):
    """Batches drawn afresh from a simulator or a flow: samples that are not rows of a table.

    Batch ``b`` of epoch ``e`` is ``draw_fn(generator, batch_size)`` with a CPU
    ``torch.Generator`` seeded from ``(seed, e, b)`` alone, so every batch can be drawn again
    on its own (exact resume skips nothing: it draws batch ``start`` directly). Under DDP
    every rank draws the same global batch and keeps rows ``r::world`` of it, so the
    averaged gradient is the single-process one.

    Args:
        draw_fn: ``draw_fn(generator, n) -> {name: (n, ...) tensor}``; must take all of its
            randomness from ``generator``.
        batch_size: Rows per global batch (at least the number of DDP ranks).
        batches_per_epoch: Batches in every epoch.
        seed: Seed of the draws.
        rank: This process's rank (default: from ``torch.distributed``).
        world: Number of ranks (default: from ``torch.distributed``).

    Raises:
        ValueError: ``batch_size`` smaller than the number of ranks, or fewer than one
            batch per epoch; ``draw_fn`` returning columns without ``batch_size`` rows.

    Example:
        >>> src = DrawBatches(lambda g, n: {"x": torch.randn(n, 2, generator=g)}, 8, 3, seed=1, rank=0, world=1)
        >>> [tuple(b["x"].shape) for b, _ in src.batches(0)]
        [(8, 2), (8, 2), (8, 2)]
        >>> torch.equal(next(src.batches(0, start=2))[0]["x"], list(src.batches(0))[2][0]["x"])
        True
    """

    def __init__(
        self,
        draw_fn: Callable[[torch.Generator, int], dict[str, torch.Tensor]],
        batch_size: int,
        batches_per_epoch: int,
        seed: int = 0,
        rank: int | None = None,
        world: int | None = None,
    ) -> None:
        self.draw_fn, self.batch_size, self.batches_per_epoch, self.seed = draw_fn, batch_size, batches_per_epoch, seed
        self.rank, self.world = rank_world() if rank is None or world is None else (rank, world)
        if batch_size < self.world:
            raise ValueError(f"batch_size: {batch_size} is smaller than the {self.world} DDP ranks")
        if batches_per_epoch < 1:
            raise ValueError(f"batches_per_epoch: expected >= 1, got {batches_per_epoch}")

    def n_batches(self, epoch: int) -> int:
        return self.batches_per_epoch

    def identity(self) -> dict[str, str | int | float | bool | None]:
        size = {"batch_size": self.batch_size, "batches": self.batches_per_epoch}
        return {**super().identity(), **size, "seed": self.seed}

    def generator(self, epoch: int, batch: int) -> torch.Generator:
        """The generator of batch ``batch`` of ``epoch``, seeded from ``(seed, epoch, batch)``."""
        state = np.random.SeedSequence([self.seed, epoch, batch]).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        for b in range(start, self.batches_per_epoch):
            cols = self.draw_fn(self.generator(epoch, b), self.batch_size)
            for name, col in cols.items():
                if len(col) != self.batch_size:
                    raise ValueError(f"draw_fn: column {name!r} has {len(col)} rows, expected {self.batch_size}")
            yield {k: v[self.rank :: self.world] for k, v in cols.items()}, self.batch_size


def holdout_split(
    rows: dict[str, torch.Tensor], val_fraction: float, seed: int, what: str = "rows"
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, str]:
    """Shuffle in-memory rows with ``seed`` and hold out the last ``val_fraction`` for validation.

    One helper for the trainers of flows and score priors (and any method fitting rows it holds).

    Args:
        rows: Equal-length tensors by name (the first dimension indexes rows).
        val_fraction: Held-out fraction (0: none).
        seed: Seed of the shuffle.
        what: How the rows are named in errors.

    Returns:
        ``(train, val, digest)``: the training rows, the held-out rows (``None`` when none) and a
        SHA-256 digest of the shuffled rows (a resume must see the same values, not only as many).

    Raises:
        ValueError: Fewer than 2 rows remain for training.
    """
    import hashlib

    n = len(next(iter(rows.values())))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * n))
    shuffled = {k: v[order] for k, v in rows.items()}
    if n - n_val < 2:
        raise ValueError(f"x: {n} {what} leave {n - n_val} for training; need at least 2")
    h = hashlib.sha256()
    for name in sorted(shuffled):
        h.update(name.encode())
        h.update(shuffled[name].contiguous().numpy().tobytes())
    train = {k: v[: n - n_val] for k, v in shuffled.items()}
    val = {k: v[n - n_val :] for k, v in shuffled.items()} if n_val else None
    return train, val, h.hexdigest()[:16]
