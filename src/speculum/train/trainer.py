"""The one trainer: Adam (or a given optimizer) + one-cycle, hash splits done upstream, checkpoints, exact resume, DDP.

Every method trains through :class:`Trainer` with a per-row loss callback. What it
guarantees:

* **Determinism**: the order of rows in epoch ``e`` is ``randperm(N)`` seeded by
  ``(seed, e)``, so a run is reproducible and independent of where it was interrupted.
  A final batch with fewer rows than DDP ranks is merged into the previous batch, so
  that every rank gets at least one row of every global batch.
* **Checkpoints** every ``checkpoint_every`` optimizer steps and at the end of every
  epoch, written atomically (temporary file + ``os.replace``): weights, optimizer and
  scheduler state, torch RNG states (CPU and CUDA), epoch / batch / step counters, running sums, history,
  early-stopping state, the training config, the run identity (the caller's data
  settings plus the DDP world size), the caller's metadata (e.g. the model config) and
  the package version. :meth:`Trainer.fit` with ``resume=True`` continues from the last
  checkpoint and reaches the same weights as an uninterrupted run; it refuses a
  checkpoint whose training config or run identity differs from this run's.
* **DistributedDataParallel** when ``torch.distributed`` is initialised (``torchrun``):
  every global batch is split across ranks (in memory, rank ``r`` takes rows
  ``r::world``; streamed, each rank reads its own shards) and each rank's summed loss is
  scaled by ``world / global_rows``, so the gradient DDP averages equals the
  single-process gradient of the mean loss over the same global batch.
* **Mixed precision**: ``precision="bf16"`` runs forward passes under
  ``torch.autocast(bfloat16)``; ``"auto"`` picks it on CUDA devices that support it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from speculum import __version__
from speculum.io.stream import rank_world as _rank_world

__all__ = [
    "CHECKPOINT_SCHEMA",
    "BatchSource",
    "InMemoryBatches",
    "TrainConfig",
    "Trainer",
    "TrainState",
    "load_checkpoint",
]

log = logging.getLogger(__name__)

CHECKPOINT_SCHEMA = 1
LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
MetricFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (saved in every checkpoint).

    Attributes:
        epochs: Maximum number of epochs.
        batch_size: Global batch size (split across DDP ranks).
        lr: Peak learning rate of the one-cycle schedule.
        weight_decay: Adam weight decay.
        checkpoint_every: Checkpoint every this many optimizer steps (and every epoch).
        patience: Stop after this many epochs without a validation improvement (0: never).
        seed: Seed of the row order and of the RNG states.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``.
        val_batch_size: Batch size of validation passes.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    checkpoint_every: int = 200
    patience: int = 5
    seed: int = 0
    precision: str = "auto"
    val_batch_size: int = 256

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every", "val_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr: expected > 0, got {self.lr}")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision: expected 'fp32', 'bf16' or 'auto', got {self.precision!r}")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"train config: unknown field(s) {sorted(unknown)}")
        return cls(**d)


@dataclass
class TrainState:
    """Counters and history that a checkpoint restores."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    rows: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict] | None = None


class BatchSource:
    """Where the trainer's batches come from: the same number of batches on every rank.

    ``batches(epoch, start)`` yields ``(local_batch, global_rows)`` for batches
    ``start, start + 1, …`` of ``epoch``, deterministically (exact resume skips the first
    ``start``); ``n_batches(epoch)`` says how many there are. ``local_batch`` holds this
    rank's rows (a source may give a rank no rows in a step), ``global_rows`` the rows of
    that step summed over all ranks (the same on every rank, at least 1): the trainer
    scales each rank's summed loss by ``world / global_rows``.
    """

    def n_batches(self, epoch: int) -> int:
        raise NotImplementedError

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[dict[str, torch.Tensor], int]]:
        raise NotImplementedError


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
        self.rank, self.world = _rank_world() if rank is None or world is None else (rank, world)
        self.min_last = self.world if min_last is None else min_last
        if batch_size < self.world:
            raise ValueError(f"batch_size: {batch_size} is smaller than the {self.world} DDP ranks")
        if 0 < self.n < self.world:
            raise ValueError(f"train: {self.n} rows cannot be shared by {self.world} DDP ranks")

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


def load_checkpoint(path: str | Path) -> dict:
    """Load a trainer checkpoint safely (``weights_only``), checking its schema.

    Raises:
        ValueError: naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise ValueError(f"{path}: not a readable trainer checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or ckpt.get("schema") != CHECKPOINT_SCHEMA:
        got = ckpt.get("schema") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: field 'schema' is {got!r}, expected {CHECKPOINT_SCHEMA}")
    return ckpt


class Trainer:
    """Train ``model`` with a per-row loss on in-memory rows or a :class:`BatchSource`.

    Args:
        model: The network (unwrapped; DDP wrapping is done here when needed).
        loss_fn: ``loss_fn(model, batch) -> (n,)`` per-row losses.
        config: :class:`TrainConfig`.
        run_dir: Folder for ``checkpoint.pt`` (created).
        metrics_fn: Optional ``metrics_fn(model, batch) -> {name: (n,)}`` evaluated on
            validation rows; the trainer reports their medians per epoch.
        metadata: Saved in every checkpoint (e.g. the model config), returned on load.
        on_best: Called with the unwrapped model whenever validation improves.
        progress: Show a progress bar per epoch (CLI use).
        identity: What else fixes the batches of this run (e.g. the data manifest hash,
            a row limit, the shuffle buffer), as JSON-like scalars; the trainer adds
            ``world_size``. Saved in the checkpoint; resuming with a different identity
            raises a ``ValueError`` that names the setting and both values.
        optimizer: ``optimizer(parameters) -> torch.optim.Optimizer`` (default: Adam with
            ``config.lr`` and ``config.weight_decay``); the one-cycle schedule drives its
            learning rate.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: LossFn,
        config: TrainConfig,
        run_dir: str | Path,
        metrics_fn: MetricFn | None = None,
        metadata: dict | None = None,
        on_best: Callable[[torch.nn.Module], None] | None = None,
        progress: bool = False,
        identity: dict[str, str | int | float | bool | None] | None = None,
        optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] | None = None,
    ) -> None:
        self.model = model
        self.loss_fn = loss_fn
        self.config = config
        self.run_dir = Path(run_dir)
        self.metrics_fn = metrics_fn
        self.metadata = metadata or {}
        self.on_best = on_best
        self.progress = progress
        self.rank, self.world = _rank_world()
        identity = dict(identity or {})
        for key, value in identity.items():
            if not isinstance(key, str) or not (value is None or isinstance(value, str | int | float | bool)):
                got = type(value).__name__
                raise TypeError(f"identity[{key!r}]: expected a str, int, float, bool or None, got {got}")
        if "world_size" in identity:
            raise ValueError("identity: 'world_size' is added by the trainer; do not pass it")
        self.identity = {**identity, "world_size": self.world}
        self.make_optimizer = optimizer
        self.device = next(model.parameters()).device
        if config.precision == "bf16":
            self.autocast = True
        elif config.precision == "auto":
            self.autocast = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        else:
            self.autocast = False
        self.checkpoint_path = self.run_dir / "checkpoint.pt"

    # ------------------------------------------------------------------ checkpoints
    def _save(self, opt, sched, state: TrainState) -> None:
        if self.rank != 0:
            return
        ckpt = {
            "schema": CHECKPOINT_SCHEMA,
            "speculum_version": __version__,
            "train_config": asdict(self.config),
            "identity": self.identity,
            "metadata": self.metadata,
            "model": self.model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "state": asdict(state),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_name(f".checkpoint.{os.getpid()}.tmp")
        torch.save(ckpt, tmp)
        os.replace(tmp, self.checkpoint_path)
        log.debug("checkpoint at epoch %d batch %d step %d", state.epoch, state.batch, state.step)

    def _restore(self, opt, sched) -> TrainState:
        ckpt = load_checkpoint(self.checkpoint_path)
        saved = TrainConfig.from_dict(ckpt["train_config"])
        if saved != self.config:
            diff = {k: (v, getattr(self.config, k)) for k, v in asdict(saved).items() if getattr(self.config, k) != v}
            raise ValueError(f"{self.checkpoint_path}: training config differs from the checkpoint's: {diff}")
        saved_id = ckpt.get("identity")
        if saved_id is None:
            raise ValueError(
                f"{self.checkpoint_path}: the checkpoint records no run identity (written by an older speculum), "
                "so an exact resume cannot be checked; start a new run"
            )
        for key in sorted(set(saved_id) | set(self.identity)):
            old, new = saved_id.get(key, "<not recorded>"), self.identity.get(key, "<not given>")
            if old != new:
                raise ValueError(
                    f"{self.checkpoint_path}: cannot resume exactly: {key} was {old!r} in the checkpoint "
                    f"but is {new!r} in this run"
                )
        self.model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        log.info(
            "resumed from %s at epoch %d, batch %d",
            self.checkpoint_path,
            ckpt["state"]["epoch"],
            ckpt["state"]["batch"],
        )
        return TrainState(**ckpt["state"])

    # ------------------------------------------------------------------ training
    def _context(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def _to(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Mean loss and median metrics over ``data`` (all ranks compute the same)."""
        self.model.eval()
        n = len(next(iter(data.values())))
        losses, metrics = [], {}
        for idx in torch.arange(n).split(self.config.val_batch_size):
            batch = self._to({k: v[idx] for k, v in data.items()})
            with self._context():
                losses.append(self.loss_fn(self.model, batch).float().cpu())
                if self.metrics_fn is not None:
                    for k, v in self.metrics_fn(self.model, batch).items():
                        metrics.setdefault(k, []).append(v.float().cpu())
        self.model.train()
        out = {"val_loss": float(torch.cat(losses).mean())}
        out.update({f"val_{k}": float(torch.cat(v).nanmedian()) for k, v in metrics.items()})
        return out

    def fit(
        self,
        train: dict[str, torch.Tensor] | BatchSource,
        val: dict[str, torch.Tensor] | None = None,
        resume: bool = False,
    ) -> list[dict]:
        """Train; returns the per-epoch history (also kept in the checkpoint).

        Args:
            train: Training rows (every tensor with the same first dimension ``N``,
                batched by :class:`InMemoryBatches`), or a :class:`BatchSource` such as
                :class:`~speculum.train.StreamBatches` for data that do not fit in memory.
            val: Validation rows (early stopping and history), optional.
            resume: Continue from ``run_dir/checkpoint.pt`` if it exists.
        """
        cfg = self.config
        source = train if isinstance(train, BatchSource) else InMemoryBatches(train, cfg.batch_size, cfg.seed)
        total_steps = sum(source.n_batches(e) for e in range(cfg.epochs))
        if total_steps == 0:
            raise ValueError("train: no training batches")
        if self.make_optimizer is None:
            opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            opt = self.make_optimizer(self.model.parameters())
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total_steps)
        state = TrainState(history=[])
        if resume and self.checkpoint_path.exists():
            state = self._restore(opt, sched)
        elif resume:
            log.info("no checkpoint in %s: starting a new run", self.run_dir)
        net = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.model.train()
        bar = None
        while state.epoch < cfg.epochs and not state.stopped_early:
            epoch = state.epoch
            n_batches = source.n_batches(epoch)
            t0 = time.perf_counter()
            if self.progress and self.rank == 0:
                from tqdm import tqdm

                bar = tqdm(total=n_batches, initial=state.batch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch")
            for b, (local_batch, global_rows) in enumerate(source.batches(epoch, state.batch), start=state.batch):
                if global_rows < 1:
                    raise ValueError(f"train: batch {b} of epoch {epoch} has no rows on any rank")
                batch = self._to(local_batch)
                with self._context():
                    per = self.loss_fn(net, batch)
                loss = per.float().sum() * (self.world / global_rows)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                state.loss_sum += float(per.detach().float().sum())
                state.rows += len(per)
                state.batch, state.step = b + 1, state.step + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{state.loss_sum / max(state.rows, 1):.4g}")
                if state.step % cfg.checkpoint_every == 0 and state.batch < n_batches:
                    self._save(opt, sched, state)
            train_loss = self._reduce_mean(state.loss_sum, state.rows)
            record = {"epoch": epoch + 1, "step": state.step, "train_loss": train_loss, "lr": sched.get_last_lr()[0]}
            if val is not None and len(next(iter(val.values()))):
                record.update(self.evaluate(val))
                if record["val_loss"] < state.best_val:
                    state.best_val, state.bad_epochs = record["val_loss"], 0
                    if self.on_best is not None and self.rank == 0:
                        self.on_best(self.model)
                else:
                    state.bad_epochs += 1
                    if cfg.patience and state.bad_epochs >= cfg.patience:
                        state.stopped_early = True
                        log.info("early stop after epoch %d: no improvement for %d epochs", epoch + 1, cfg.patience)
            record["seconds"] = round(time.perf_counter() - t0, 2)
            state.history.append(record)
            if bar is not None:
                bar.set_postfix(
                    {k: f"{v:.4g}" for k, v in record.items() if k in ("train_loss", "val_loss", "val_chi2")}
                )
                bar.close()
                bar = None
            log.info("epoch %d: %s", epoch + 1, record)
            state.epoch, state.batch, state.loss_sum, state.rows = epoch + 1, 0, 0.0, 0
            self._save(opt, sched, state)
        self.model.eval()
        return state.history

    def _reduce_mean(self, total: float, rows: int) -> float:
        if self.world == 1:
            return total / max(rows, 1)
        # on the training device: NCCL reduces only CUDA tensors
        t = torch.tensor([total, float(rows)], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t[0] / t[1].clamp_min(1))
