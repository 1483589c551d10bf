"""The autoencoder's training objective: the fiducial weighted loss through the forward model.

A batch is what :func:`speculum.io.prepare_spectra` makes: ``y`` normalised flux ``(N, L)``,
``w`` inverse-variance weights ``(N, L)``, ``z`` redshifts ``(N,)`` and, for DESI,
``resolution`` ``(N, D, L)``. The model encodes ``y``, decodes a restframe spectrum,
redshifts, resamples and convolves it (:meth:`SpectrumAutoencoder.forward`); the loss is
``sum_l w (y - model)^2 / L`` per spectrum over the pixels the model covers (Melchior et
al. 2023, eq. 4), and the validation metric the reduced chi2.
"""

from __future__ import annotations

import torch

from speculum.train import LossMethod, fiducial_loss, reduced_chi2
from speculum.train.method import StepContext

__all__ = ["AutoencoderMethod", "loss", "metrics"]


def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-spectrum fiducial loss ``(N,)``."""
    out = model(batch["y"], batch["w"], batch["z"], resolution=batch.get("resolution"), check=False)
    return fiducial_loss(batch["y"], batch["w"] * out.valid, out.observed.float(), reduce=False)


def metrics(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-spectrum reduced chi2 ``{"chi2": (N,)}`` (the trainer reports its median)."""
    out = model(batch["y"], batch["w"], batch["z"], resolution=batch.get("resolution"), check=False)
    return {"chi2": reduced_chi2(batch["y"], batch["w"] * out.valid, out.observed.float())}


class AutoencoderMethod(LossMethod):
    """What the trainer drives for the autoencoder: one network, Adam + one-cycle, :func:`loss`.

    The trainer calls :meth:`modules` (what is checkpointed), :meth:`configure` (the
    optimisers and schedules, by name) and :meth:`step` on every batch; validation reports
    the mean loss and the median reduced chi2 (:func:`metrics`). A method with several
    networks or phases (a GAN's two players, AESTRA's two phases) writes these three itself
    on :class:`speculum.train.Method`, calling ``ctx.minimize(name, per_row_losses)`` once
    per optimiser in :meth:`step`; see ``tests/test_trainer.py`` for both.

    Args:
        model: The :class:`~speculum.models.SpectrumAutoencoder`.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model, loss, metrics)

    def step(self, ctx: StepContext, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One Adam update on the batch's fiducial loss (scaled by the trainer to the global batch)."""
        with ctx.autocast():
            per = loss(ctx.nets["model"], batch)
        ctx.minimize("main", per)
        return {"loss": per.detach()}
