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

from speculum.train import fiducial_loss, reduced_chi2

__all__ = ["loss", "metrics"]


def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-spectrum fiducial loss ``(N,)``."""
    out = model(batch["y"], batch["w"], batch["z"], resolution=batch.get("resolution"), check=False)
    return fiducial_loss(batch["y"], batch["w"] * out.valid, out.observed.float(), reduce=False)


def metrics(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-spectrum reduced chi2 ``{"chi2": (N,)}`` (the trainer reports its median)."""
    out = model(batch["y"], batch["w"], batch["z"], resolution=batch.get("resolution"), check=False)
    return {"chi2": reduced_chi2(batch["y"], batch["w"] * out.valid, out.observed.float())}
