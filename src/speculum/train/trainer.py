"""The one trainer: it owns the loop, checkpoints, exact resume, DDP, mixed precision, progress and history.

A method hands it a :class:`~speculum.train.method.Method` (its modules, optimisers and
schedules, optional phases, and a ``step``); the classic form ``Trainer(model, loss_fn,
config, run_dir)`` (one model, a per-row loss, Adam + one-cycle) is a thin
:class:`LossMethod` on the same loop. What the trainer guarantees:

* **Determinism**: batches come from a :class:`~speculum.train.sources.BatchSource`,
  deterministic in ``(seed, epoch, batch)``; in memory, the order of rows in epoch ``e``
  is ``randperm(N)`` seeded by ``(seed, e)``. A run is reproducible and independent of
  where it was interrupted.
* **Phases**: a method may declare phases (name, epochs, optimisers stepped); they run in
  order, parameters of no active optimiser are frozen, and early stopping ends a phase.
* **Checkpoints** every ``checkpoint_every`` optimizer steps and at the end of every
  epoch, written atomically as ``run_dir/checkpoint.safetensors`` (safetensors + JSON,
  see :mod:`speculum.train.checkpoint`; nothing is pickled): weights of every module,
  every optimizer's and scheduler's state, torch RNG states (CPU and CUDA), phase / epoch
  / batch / step counters, running sums, history, early-stopping state, the phases, the
  training config, the run identity (the caller's data settings plus the DDP world size),
  the caller's metadata (e.g. the model config) and the package version. :meth:`Trainer.fit`
  with ``resume=True`` continues from the last checkpoint, inside any phase, and reaches
  the same weights as an uninterrupted run; it refuses a checkpoint whose training config,
  phases or run identity differ from this run's, and an old pickled ``checkpoint.pt``.
* **DistributedDataParallel** when ``torch.distributed`` is initialised (``torchrun``):
  every global batch is split across ranks and each rank's summed loss is scaled by
  ``world / global_rows`` (:meth:`StepContext.minimize`), so the gradient DDP averages
  equals the single-process gradient of the mean loss over the same global batch.
* **Mixed precision**: ``precision="bf16"`` runs forward passes under
  ``torch.autocast(bfloat16)`` (:meth:`StepContext.autocast`); ``"auto"`` picks it on CUDA
  devices that support it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from speculum._files import remove_stale_temps
from speculum._runtime import rank_world
from speculum.train.checkpoint import (
    CHECKPOINT_NAME,
    CHECKPOINT_SCHEMA,
    LEGACY_CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from speculum.train.method import Method, Phase, StepContext
from speculum.train.sources import BatchSource, InMemoryBatches

__all__ = [
    "CHECKPOINT_SCHEMA",
    "BatchSource",
    "InMemoryBatches",
    "LossMethod",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "load_checkpoint",
]

log = logging.getLogger(__name__)

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
MetricFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (saved in every checkpoint).

    Attributes:
        epochs: Maximum number of epochs (of the default single phase; a method that
            declares phases gives each its own).
        batch_size: Global batch size (split across DDP ranks).
        lr: Peak learning rate of the one-cycle schedule (of :class:`LossMethod`).
        weight_decay: Adam weight decay (of :class:`LossMethod`).
        checkpoint_every: Checkpoint every this many optimizer steps (and every epoch).
        patience: Stop (a phase) after this many epochs without a validation improvement (0: never).
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
    """Counters and history that a checkpoint restores.

    ``epoch`` counts epochs over all phases (the next one to run); ``sums`` holds the
    running sums of the step's per-row values in the current epoch, ``rows`` their rows.
    """

    epoch: int = 0
    batch: int = 0
    step: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    rows: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict] | None = None


class LossMethod(Method):
    """One model, a per-row loss, Adam (or a given optimizer) + a one-cycle schedule.

    The method behind ``Trainer(model, loss_fn, config, run_dir)``: one phase ``train`` of
    ``config.epochs``, one optimizer ``main``; per batch ``loss_fn(net, batch)`` under
    autocast, one update on the global-batch mean, history key ``train_loss``; validation
    gives ``val_loss`` (mean) and ``val_<metric>`` (medians of ``metrics_fn``).

    Args:
        model: The network (unwrapped).
        loss_fn: ``loss_fn(model, batch) -> (n,)`` per-row losses.
        metrics_fn: Optional ``metrics_fn(model, batch) -> {name: (n,)}`` on validation rows.
        optimizer: ``optimizer(parameters) -> Optimizer`` (default: Adam with ``config.lr``
            and ``config.weight_decay``); the one-cycle schedule drives its learning rate.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: LossFn,
        metrics_fn: MetricFn | None = None,
        optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] | None = None,
    ) -> None:
        self.model, self.loss_fn, self.metrics_fn, self.make_optimizer = model, loss_fn, metrics_fn, optimizer

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def configure(self, config: TrainConfig, steps: dict[str, int]) -> tuple[dict, dict]:
        if self.make_optimizer is None:
            opt = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        else:
            opt = self.make_optimizer(self.model.parameters())
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps["train"])
        return {"main": opt}, {"main": sched}

    def step(self, ctx: StepContext, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with ctx.autocast():
            per = self.loss_fn(ctx.nets["model"], batch)
        ctx.minimize("main", per)
        return {"loss": per.detach()}

    @torch.no_grad()
    def validate(self, ctx: StepContext, val: dict[str, torch.Tensor], batch_size: int = 256) -> dict[str, float]:
        """Mean loss and median metrics over ``val`` (all ranks compute the same)."""
        if not len(next(iter(val.values()))):
            return {}
        self.model.eval()
        device = next(self.model.parameters()).device
        n = len(next(iter(val.values())))
        losses, metrics = [], {}
        for idx in torch.arange(n).split(batch_size):
            batch = {k: v[idx].to(device, non_blocking=True) for k, v in val.items()}
            with ctx.autocast():
                losses.append(self.loss_fn(self.model, batch).float().cpu())
                if self.metrics_fn is not None:
                    for k, v in self.metrics_fn(self.model, batch).items():
                        metrics.setdefault(k, []).append(v.float().cpu())
        self.model.train()
        out = {"val_loss": float(torch.cat(losses).mean())}
        out.update({f"val_{k}": float(torch.cat(v).nanmedian()) for k, v in metrics.items()})
        return out


class Trainer:
    """Train a :class:`Method` (or one model with a per-row loss) on a :class:`BatchSource` or in-memory rows.

    Two forms:

    * ``Trainer(method, config=cfg, run_dir=run)``: the general one (several optimisers,
      phases, samples drawn from a simulator, …).
    * ``Trainer(model, loss_fn, cfg, run_dir, metrics_fn=…, optimizer=…)``: one model, a
      per-row loss, Adam + one-cycle (a :class:`LossMethod`).

    Args:
        model: A :class:`Method`, or the network (unwrapped; DDP wrapping is done here).
        loss_fn: With a network: ``loss_fn(model, batch) -> (n,)`` per-row losses.
        config: :class:`TrainConfig`.
        run_dir: Folder for ``checkpoint.safetensors`` (created).
        metrics_fn: With a network: ``metrics_fn(model, batch) -> {name: (n,)}`` evaluated
            on validation rows; the trainer reports their medians per epoch.
        metadata: JSON-able dict saved in every checkpoint (e.g. the model config),
            returned by :func:`load_checkpoint`.
        on_best: Called with the unwrapped model (or the method) whenever ``val_loss``
            improves within a phase.
        progress: Show a progress bar per epoch (CLI use).
        identity: What else fixes the batches of this run (e.g. the data manifest hash,
            a row limit, the shuffle buffer), as JSON-like scalars; the trainer adds
            ``world_size``. Saved in the checkpoint; resuming with a different identity
            raises a ``ValueError`` that names the setting and both values.
        optimizer: With a network: ``optimizer(parameters) -> torch.optim.Optimizer``
            (default: Adam with ``config.lr`` and ``config.weight_decay``).

    Example:
        >>> import tempfile
        >>> from speculum.train.sources import DrawBatches
        >>> from speculum.train.method import Method
        >>> class Mean(Method):  # learn the mean of N(3, 1) from fresh draws
        ...     def __init__(self):
        ...         self.mu = torch.nn.Linear(1, 1, bias=False)
        ...         torch.nn.init.zeros_(self.mu.weight)
        ...     def modules(self):
        ...         return {"mu": self.mu}
        ...     def configure(self, config, steps):
        ...         return {"sgd": torch.optim.SGD(self.mu.parameters(), lr=0.1)}, {}
        ...     def step(self, ctx, batch):
        ...         per = (ctx.nets["mu"].weight[0, 0] - batch["x"]).pow(2)
        ...         ctx.minimize("sgd", per)
        ...         return {"loss": per.detach()}
        >>> src = DrawBatches(lambda g, n: {"x": 3 + torch.randn(n, generator=g)}, 64, 20, rank=0, world=1)
        >>> method = Mean()
        >>> _ = Trainer(method, config=TrainConfig(epochs=3, precision="fp32"), run_dir=tempfile.mkdtemp()).fit(src)
        >>> abs(method.mu.weight.item() - 3) < 0.1
        True
    """

    def __init__(
        self,
        model: torch.nn.Module | Method,
        loss_fn: LossFn | None = None,
        config: TrainConfig | None = None,
        run_dir: str | Path | None = None,
        metrics_fn: MetricFn | None = None,
        metadata: dict | None = None,
        on_best: Callable[[Any], None] | None = None,
        progress: bool = False,
        identity: dict[str, str | int | float | bool | None] | None = None,
        optimizer: Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer] | None = None,
    ) -> None:
        if config is None or run_dir is None:
            raise TypeError("Trainer: config and run_dir are required")
        if isinstance(model, Method):
            if loss_fn is not None or metrics_fn is not None or optimizer is not None:
                raise TypeError("Trainer: loss_fn, metrics_fn and optimizer belong to the method; pass only the method")
            self.method = model
        elif loss_fn is None:
            raise TypeError("Trainer: a network needs a loss_fn (or pass a Method)")
        else:
            self.method = LossMethod(model, loss_fn, metrics_fn, optimizer)
        self.model = model
        self.config = config
        self.run_dir = Path(run_dir)
        self.metadata = metadata or {}
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as err:
            raise TypeError(f"metadata: expected JSON values (it is saved as JSON), got {err}") from None
        self.on_best = on_best
        self.progress = progress
        self.rank, self.world = rank_world()
        identity = dict(identity or {})
        for key, value in identity.items():
            if not isinstance(key, str) or not (value is None or isinstance(value, str | int | float | bool)):
                got = type(value).__name__
                raise TypeError(f"identity[{key!r}]: expected a str, int, float, bool or None, got {got}")
        if "world_size" in identity:
            raise ValueError("identity: 'world_size' is added by the trainer; do not pass it")
        self.identity = {**identity, "world_size": self.world}
        params = [p for m in self.method.modules().values() for p in m.parameters()]
        self.device = params[0].device if params else torch.device("cpu")
        if config.precision == "bf16":
            self.autocast = True
        elif config.precision == "auto":
            self.autocast = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        else:
            self.autocast = False
        self.checkpoint_path = self.run_dir / CHECKPOINT_NAME

    # ------------------------------------------------------------------ checkpoints
    def _save(self, phases: list[Phase], opts: dict, scheds: dict, state: TrainState) -> None:
        if self.rank != 0:
            return
        ckpt = {
            "train_config": asdict(self.config),
            "identity": self.identity,
            "metadata": self.metadata,
            "phases": [p.to_dict() for p in phases],
            "modules": {k: m.state_dict() for k, m in self.method.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in opts.items()},
            "schedulers": {k: s.state_dict() for k, s in scheds.items() if s is not None},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "state": asdict(state),
        }
        save_checkpoint(self.checkpoint_path, ckpt)
        log.debug("checkpoint at epoch %d batch %d step %d", state.epoch, state.batch, state.step)

    def _restore(self, phases: list[Phase], opts: dict, scheds: dict) -> TrainState:
        ckpt = load_checkpoint(self.checkpoint_path)
        saved = TrainConfig.from_dict(ckpt["train_config"])
        if saved != self.config:
            diff = {k: (v, getattr(self.config, k)) for k, v in asdict(saved).items() if getattr(self.config, k) != v}
            raise ValueError(f"{self.checkpoint_path}: training config differs from the checkpoint's: {diff}")
        changed = []
        for key in sorted(set(ckpt["identity"]) | set(self.identity)):  # the caller's settings before the batches'
            old, new = ckpt["identity"].get(key, "<not recorded>"), self.identity.get(key, "<not given>")
            if old != new:
                changed.append((key.startswith("batches_"), f"{key} was {old!r} in the checkpoint but is {new!r}"))
        if changed:
            raise ValueError(
                f"{self.checkpoint_path}: cannot resume exactly: " + "; ".join(m for _, m in sorted(changed)) + " now"
            )
        now = [p.to_dict() for p in phases]
        if ckpt["phases"] != now:
            raise ValueError(f"{self.checkpoint_path}: phases were {ckpt['phases']} in the checkpoint but are {now}")
        modules = self.method.modules()
        for what, have, stored in (
            ("modules", modules, ckpt["modules"]),
            ("optimizers", opts, ckpt["optimizers"]),
            ("schedulers", {k: s for k, s in scheds.items() if s is not None}, ckpt["schedulers"]),
        ):
            if set(have) != set(stored):
                raise CheckpointError(
                    f"{self.checkpoint_path}: {what}: the checkpoint has {sorted(stored)}, this run {sorted(have)}"
                )
            for name, obj in have.items():
                obj.load_state_dict(stored[name])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if torch.cuda.is_available() and ckpt["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        at = ckpt["state"]
        log.info("resumed from %s at epoch %d, batch %d", self.checkpoint_path, at["epoch"], at["batch"])
        return TrainState(**ckpt["state"])

    # ------------------------------------------------------------------ training
    def _context(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast)

    def _to(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _ctx(self, nets, opts, phase: Phase, epoch: int, batch: int, global_rows: int, n_batches: int = 0):
        return StepContext(nets, opts, phase, self._context, epoch, batch, global_rows, self.world, n_batches)

    @torch.no_grad()
    def evaluate(self, data: dict[str, torch.Tensor]) -> dict[str, float]:
        """Validation metrics over ``data`` (:meth:`Method.validate`; all ranks compute the same)."""
        phase = Phase("evaluate", 1, ("none",))
        ctx = self._ctx(self.method.modules(), {}, phase, 0, 0, 1)
        if isinstance(self.method, LossMethod):
            return self.method.validate(ctx, data, self.config.val_batch_size)
        return self.method.validate(ctx, data)

    def _phases(self, source: BatchSource) -> tuple[list[Phase], dict, dict]:
        cfg = self.config
        declared = self.method.phases(cfg)
        plan = [(p.name, p.epochs) for p in declared] if declared else [("train", cfg.epochs)]
        if len({name for name, _ in plan}) != len(plan):
            raise ValueError(f"phases: names must be unique, got {[name for name, _ in plan]}")
        steps, start = {}, 0
        for name, epochs in plan:
            steps[name] = sum(source.n_batches(e) for e in range(start, start + epochs))
            if steps[name] == 0:
                raise ValueError("train: no training batches" + (f" in phase {name!r}" if declared else ""))
            start += epochs
        opts, scheds = self.method.configure(cfg, steps)
        phases = list(declared) if declared else [Phase("train", cfg.epochs, tuple(opts))]
        for p in phases:
            missing = set(p.optimizers) - set(opts)
            if missing:
                raise ValueError(f"phase {p.name!r}: optimizer(s) {sorted(missing)} not among {sorted(opts)}")
        unknown = set(scheds) - set(opts)
        if unknown:
            raise ValueError(f"schedulers {sorted(unknown)}: no optimizer of that name among {sorted(opts)}")
        return phases, opts, scheds

    def _enter_phase(self, phase: Phase, opts: dict, trainable: dict[int, bool]) -> dict[str, torch.nn.Module]:
        """Freeze what no active optimizer trains; wrap the trained modules in DDP."""
        active = {id(p) for name in phase.optimizers for g in opts[name].param_groups for p in g["params"]}
        nets = {}
        for name, module in self.method.modules().items():
            for p in module.parameters():
                p.requires_grad_(trainable[id(p)] and id(p) in active)
            if self.world > 1 and any(p.requires_grad for p in module.parameters()):
                ids = [self.device.index] if self.device.type == "cuda" else None
                module = torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
            nets[name] = module
        return nets

    def fit(self, train: dict[str, torch.Tensor] | BatchSource, val: Any = None, resume: bool = False) -> list[dict]:
        """Train; returns the per-epoch history (also kept in the checkpoint).

        Args:
            train: Training rows (every tensor with the same first dimension ``N``,
                batched by :class:`InMemoryBatches`), or a :class:`BatchSource` such as
                :class:`~speculum.train.StreamBatches` (shards larger than memory) or
                :class:`~speculum.train.DrawBatches` (draws from a simulator or a flow).
            val: Validation data handed to :meth:`Method.validate` every epoch (for the
                one-model form: rows, for early stopping and history), optional.
            resume: Continue from ``run_dir/checkpoint.safetensors`` if it exists.

        Raises:
            CheckpointError: ``resume`` with an old pickled ``checkpoint.pt`` in ``run_dir``.
            ValueError: Resuming with a different training config, phases or run identity.
        """
        cfg = self.config
        source = train if isinstance(train, BatchSource) else InMemoryBatches(train, cfg.batch_size, cfg.seed)
        self.identity.update({f"batches_{k}": v for k, v in source.identity().items()})  # a resume must match
        phases, opts, scheds = self._phases(source)
        state = TrainState(history=[])
        legacy = self.run_dir / LEGACY_CHECKPOINT_NAME
        if self.rank == 0:
            remove_stale_temps(self.run_dir)  # checkpoints of a killed run left half-written
        if resume and self.checkpoint_path.exists():
            state = self._restore(phases, opts, scheds)
        elif resume and legacy.exists():
            raise CheckpointError(
                f"{legacy}: the checkpoint format changed (now {CHECKPOINT_NAME}: safetensors + JSON); this old "
                "pickled checkpoint is not loaded (it could run code): start a new run in a new folder"
            )
        elif resume:
            log.info("no checkpoint in %s: starting a new run", self.run_dir)
        modules = self.method.modules()
        trainable = {id(p): p.requires_grad for m in modules.values() for p in m.parameters()}
        for m in modules.values():
            m.train()
        starts = [sum(p.epochs for p in phases[:i]) for i in range(len(phases) + 1)]
        try:
            entered = None
            while state.epoch < starts[-1]:
                k = max(i for i in range(len(phases)) if starts[i] <= state.epoch)
                phase = phases[k]
                if entered is not phase:
                    nets, entered = self._enter_phase(phase, opts, trainable), phase
                if state.epoch == starts[k] and state.batch == 0:  # a phase starts: fresh early-stopping state
                    state.best_val, state.bad_epochs, state.stopped_early = math.inf, 0, False
                self._epoch(source, val, phases, phase, starts[k + 1], nets, opts, scheds, state)
        finally:
            for m in modules.values():
                for p in m.parameters():
                    p.requires_grad_(trainable[id(p)])
                m.eval()
        return state.history

    def _epoch(self, source, val, phases, phase, phase_end, nets, opts, scheds, state: TrainState) -> None:
        cfg = self.config
        epoch = state.epoch
        n_batches = source.n_batches(epoch)
        t0 = time.perf_counter()
        bar = None
        total = sum(p.epochs for p in phases)
        if self.progress and self.rank == 0:
            from tqdm import tqdm

            desc = f"epoch {epoch + 1}/{total}" + (f" ({phase.name})" if len(phases) > 1 else "")
            bar = tqdm(total=n_batches, initial=state.batch, desc=desc, unit="batch")
        stepped = [scheds[name] for name in phase.optimizers if scheds.get(name) is not None]
        for b, (local_batch, global_rows) in enumerate(source.batches(epoch, state.batch), start=state.batch):
            if global_rows < 1:
                raise ValueError(f"train: batch {b} of epoch {epoch} has no rows on any rank")
            batch = self._to(local_batch)
            out = self.method.step(self._ctx(nets, opts, phase, epoch, b, global_rows, n_batches), batch)
            for sched in stepped:
                sched.step()
            lengths = {len(v) for v in out.values()}
            if len(lengths) > 1:
                raise ValueError(f"step: expected per-row values of one length (n,), got {lengths}")
            for k, v in out.items():
                state.sums[k] = state.sums.get(k, 0.0) + float(v.detach().float().sum())
            state.rows += lengths.pop() if lengths else 0
            state.batch, state.step = b + 1, state.step + 1
            if bar is not None and state.sums:
                name, total_sum = next(iter(state.sums.items()))
                bar.update(1)
                bar.set_postfix({name: f"{total_sum / max(state.rows, 1):.4g}"})
            elif bar is not None:
                bar.update(1)
            if state.step % cfg.checkpoint_every == 0 and state.batch < n_batches:
                self._save(phases, opts, scheds, state)
        record: dict[str, Any] = {"epoch": epoch + 1}
        if len(phases) > 1:
            record["phase"] = phase.name
        record["step"] = state.step
        record.update({f"train_{k}": v for k, v in self._reduce_means(state.sums, state.rows).items()})
        for name in phase.optimizers:
            sched = scheds.get(name)
            lr = sched.get_last_lr()[0] if sched is not None else opts[name].param_groups[0]["lr"]
            record["lr" if len(phase.optimizers) == 1 else f"lr_{name}"] = lr
        next_epoch = epoch + 1
        if val is not None:
            record.update(self.evaluate(val))
            if "val_loss" in record:
                if record["val_loss"] < state.best_val:
                    state.best_val, state.bad_epochs = record["val_loss"], 0
                    if self.on_best is not None and self.rank == 0:
                        self.on_best(self.model)
                else:
                    state.bad_epochs += 1
                    if cfg.patience and state.bad_epochs >= cfg.patience:
                        state.stopped_early, next_epoch = True, phase_end
                        log.info("early stop after epoch %d: no improvement for %d epochs", epoch + 1, cfg.patience)
        record["seconds"] = round(time.perf_counter() - t0, 2)
        state.history.append(record)
        if bar is not None:
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k in ("train_loss", "val_loss", "val_chi2")})
            bar.close()
        log.info("epoch %d: %s", epoch + 1, record)
        state.epoch, state.batch, state.sums, state.rows = next_epoch, 0, {}, 0
        self._save(phases, opts, scheds, state)

    def _reduce_means(self, sums: dict[str, float], rows: int) -> dict[str, float]:
        if self.world == 1:
            return {k: total / max(rows, 1) for k, total in sums.items()}
        # on the training device: NCCL reduces only CUDA tensors
        t = torch.tensor([*sums.values(), float(rows)], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return {k: float(t[i] / t[-1].clamp_min(1)) for i, k in enumerate(sums)}
