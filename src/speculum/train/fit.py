"""A minimal autoencoder fit (Adam + one-cycle) used by the demo.

The full trainer (checkpoints, resume, DDP) comes with the training issue; this is the
smallest honest loop: shuffled mini-batches of the fiducial loss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from speculum.models import SpectrumAutoencoder
from speculum.train.losses import fiducial_loss

__all__ = ["fit_autoencoder"]

log = logging.getLogger(__name__)


def fit_autoencoder(
    model: SpectrumAutoencoder,
    y: torch.Tensor,
    w: torch.Tensor,
    z: torch.Tensor,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` on spectra ``y (N, L)``, weights ``w (N, L)``, redshifts ``z (N,)``.

    Returns:
        Mean training loss per epoch.
    """
    model.check_inputs(y, w, z)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    history = []
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        total = 0.0
        for idx in perm.split(batch_size):
            out = model(y[idx], w[idx], z[idx], check=False)
            loss = fiducial_loss(y[idx], w[idx] * out.valid, out.observed)
            opt.zero_grad(set_to_none=True)
            (loss / len(idx)).backward()
            opt.step()
            sched.step()
            total += loss.item()
        history.append(total / len(y))
        log.info("epoch %d: loss %.4f", epoch, history[-1])
        if callback is not None:
            callback(epoch, history[-1])
    model.eval()
    return history
