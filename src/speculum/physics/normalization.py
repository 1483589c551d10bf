"""Median flux normalisation over a restframe window."""

from __future__ import annotations

import torch

from speculum._checks import check_grid, check_shape

__all__ = ["NORMALIZATION_RANGE", "median_normalization"]

NORMALIZATION_RANGE = (5300.0, 5850.0)
"""Restframe window (Angstrom) whose median flux normalises spectra, as in SPENDER."""


def median_normalization(
    wave_obs: torch.Tensor,
    flux: torch.Tensor,
    weights: torch.Tensor,
    z: torch.Tensor,
    window: tuple[float, float] = NORMALIZATION_RANGE,
) -> torch.Tensor:
    """Median flux of each spectrum over a restframe window, using ``weights > 0`` only.

    Args:
        wave_obs: Observed grid, shape ``(L,)``, Angstrom.
        flux: Spectra, shape ``(N, L)``.
        weights: Inverse variance x mask, shape ``(N, L)``.
        z: Redshifts, shape ``(N,)``.
        window: Restframe range in Angstrom.

    Returns:
        Normalisations, shape ``(N,)``; ``NaN`` where the window holds no usable pixel
        (caller decides: give those spectra zero weight or drop them).

    Example:
        >>> wave = torch.linspace(5000.0, 7000.0, 201)
        >>> flux = torch.full((1, 201), 3.0)
        >>> median_normalization(wave, flux, torch.ones(1, 201), torch.tensor([0.1]))
        tensor([3.])
    """
    check_grid(wave_obs, "wave_obs")
    check_shape(flux, "flux", (None, wave_obs.shape[0]))
    check_shape(weights, "weights", tuple(flux.shape))
    check_shape(z, "z", (flux.shape[0],))
    wave_rest = wave_obs[None, :] / (1 + z[:, None].to(wave_obs.dtype))
    sel = (weights > 0) & (wave_rest > window[0]) & (wave_rest < window[1])
    masked = torch.where(sel, flux, torch.full_like(flux, float("nan")))
    return torch.nanmedian(masked, dim=1).values
