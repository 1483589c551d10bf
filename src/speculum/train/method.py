"""What a method gives the trainer: its modules, optimisers and schedules, phases and a ``step``.

The trainer (:class:`~speculum.train.Trainer`) owns the loop, checkpoints, exact resume,
DDP, mixed precision, progress, early stopping and history. A method supplies:

* :meth:`Method.modules`: the networks whose weights are trained and checkpointed, by name;
* :meth:`Method.configure`: its optimisers and (optional) schedulers, by name, given the
  number of optimiser steps of every phase (e.g. for a one-cycle schedule);
* :meth:`Method.phases` (optional): phases run one after the other, each with its number
  of epochs and the optimisers it steps (AESTRA trains its parts in two phases; a GAN has
  one phase stepping two optimisers). Parameters of no active optimiser are frozen during
  a phase (``requires_grad=False``), so DDP and autograd skip them;
* :meth:`Method.step`: one batch -> per-row losses/metrics, doing its own updates through
  the :class:`StepContext` (which applies autocast, DDP loss scaling and optimiser steps);
* :meth:`Method.validate` (optional): per-epoch validation metrics; ``val_loss`` drives
  early stopping and ``on_best``.

Example (one linear fit, one optimiser):
    >>> import torch
    >>> class Fit(Method):
    ...     def __init__(self):
    ...         self.lin = torch.nn.Linear(1, 1)
    ...     def modules(self):
    ...         return {"lin": self.lin}
    ...     def configure(self, config, steps):
    ...         return {"sgd": torch.optim.SGD(self.lin.parameters(), lr=0.1)}, {}
    ...     def step(self, ctx, batch):
    ...         with ctx.autocast():
    ...             per = (ctx.nets["lin"](batch["x"]) - batch["y"]).pow(2).sum(1)
    ...         ctx.minimize("sgd", per)
    ...         return {"loss": per.detach()}
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["Method", "Phase", "StepContext"]

Optimizers = dict[str, torch.optim.Optimizer]
Schedulers = dict[str, Any]


@dataclass(frozen=True)
class Phase:
    """One stage of training, run for ``epochs`` epochs with the named optimisers.

    Attributes:
        name: Shown in the history (``phase``) and in checkpoints.
        epochs: Epochs of this phase (at least 1).
        optimizers: Names (keys of :meth:`Method.configure`'s optimisers) that this phase
            steps; their schedulers step once per batch. Parameters in none of them are
            frozen during the phase.
    """

    name: str
    epochs: int
    optimizers: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"phase {self.name!r}: epochs: expected >= 1, got {self.epochs}")
        if not self.optimizers:
            raise ValueError(f"phase {self.name!r}: optimizers: expected at least one name")

    def to_dict(self) -> dict:
        return {"name": self.name, "epochs": self.epochs, "optimizers": list(self.optimizers)}


class StepContext:
    """What :meth:`Method.step` gets from the trainer for one batch.

    Attributes:
        nets: The method's modules by name, wrapped in ``DistributedDataParallel`` under
            DDP; call these (not the unwrapped ones) in the training step.
        phase: The running :class:`Phase`.
        epoch: Epoch index (0-based, counted over all phases).
        batch: Batch index within the epoch.
        global_rows: Rows of this step summed over all DDP ranks.
        world: Number of DDP ranks.
        n_batches: Batches in this epoch (0 when unknown, e.g. during validation).
    """

    def __init__(
        self,
        nets: dict[str, torch.nn.Module],
        optimizers: Optimizers,
        phase: Phase,
        autocast: Callable[[], AbstractContextManager],
        epoch: int,
        batch: int,
        global_rows: int,
        world: int,
        n_batches: int = 0,
    ) -> None:
        self.nets, self.phase, self.epoch, self.batch = nets, phase, epoch, batch
        self.global_rows, self.world, self.n_batches = global_rows, world, n_batches
        self._optimizers, self._autocast = optimizers, autocast

    @property
    def progress(self) -> float:
        """The fractional epoch ``epoch + batch / n_batches`` (``epoch`` when ``n_batches`` is unknown)."""
        return self.epoch + (self.batch / self.n_batches if self.n_batches else 0.0)

    def autocast(self) -> AbstractContextManager:
        """Mixed-precision context for forward passes (``bf16`` when the run uses it)."""
        return self._autocast()

    def scaled(self, losses: torch.Tensor) -> torch.Tensor:
        """``sum(losses) * world / global_rows``: DDP's average of it is the mean over the global batch.

        Args:
            losses: Per-row losses of this rank's rows, shape ``(n,)``.
        """
        return losses.float().sum() * (self.world / self.global_rows)

    def minimize(self, optimizer: str, losses: torch.Tensor, retain_graph: bool = False) -> torch.Tensor:
        """One update of ``optimizer`` on the global-batch mean of ``losses``.

        Zeroes the optimiser's gradients, back-propagates :meth:`scaled` ``(losses)`` and
        steps the optimiser (its scheduler is stepped by the trainer after the batch).

        Args:
            optimizer: Name of an optimiser of the running phase.
            losses: Per-row losses of this rank's rows, shape ``(n,)``.
            retain_graph: Keep the graph for a further backward pass.

        Returns:
            The scaled scalar loss (detached).

        Raises:
            KeyError: ``optimizer`` is not stepped in this phase.
        """
        if optimizer not in self.phase.optimizers:
            raise KeyError(f"optimizer: {optimizer!r} is not stepped in phase {self.phase.name!r} "
                           f"(it steps {list(self.phase.optimizers)})")  # fmt: skip
        opt = self._optimizers[optimizer]
        loss = self.scaled(losses)
        opt.zero_grad(set_to_none=True)
        loss.backward(retain_graph=retain_graph)
        opt.step()
        return loss.detach()


class Method:
    """Base class of what a method hands the trainer (see the module docstring)."""

    def modules(self) -> dict[str, torch.nn.Module]:
        """The trained (and checkpointed) networks by name."""
        raise NotImplementedError

    def configure(self, config: Any, steps: dict[str, int]) -> tuple[Optimizers, Schedulers]:
        """Optimisers and schedulers by name (a scheduler's name is its optimiser's).

        Args:
            config: The trainer's :class:`~speculum.train.TrainConfig`.
            steps: Optimiser steps (batches) of every phase, by phase name.
        """
        raise NotImplementedError

    def phases(self, config: Any) -> list[Phase] | None:
        """The phases in order; ``None`` (default): one phase ``train`` of ``config.epochs`` with every optimiser."""
        return None

    def step(self, ctx: StepContext, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Train on one batch; returns per-row values ``{name: (n,)}`` (history: ``train_<name>`` means)."""
        raise NotImplementedError

    def validate(self, ctx: StepContext, val: Any) -> dict[str, float]:
        """Validation metrics of the epoch (keys ``val_*``); ``{}`` (default) when there is none."""
        return {}
