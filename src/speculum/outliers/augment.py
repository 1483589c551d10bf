"""Redshift augmentation: the same galaxy seen at another redshift (Liang et al. 2023a, section 3.1).

A spectrum observed at ``z`` on the grid ``lambda`` is re-observed at ``z'``: the restframe
spectrum is unchanged, so the new flux at ``lambda`` is the old flux at
``lambda (1 + z) / (1 + z')``, linearly interpolated on the instrument grid, with the variance
propagated through the interpolation, ``(1 - t)^2 / w_lo + t^2 / w_hi`` (zero weight when
either neighbour has none). The copy keeps the original's DESI resolution matrices (an
approximation: the resolution belongs to the detector pixel, not to the restframe). Pixels whose source lies
outside the observed grid have no data: flux and weight 0. The median normalisation of
:func:`speculum.io.prepare_spectra` is over a *restframe* window, so normalised spectra stay
normalised.
"""

from __future__ import annotations

import torch

__all__ = ["redshift_augment", "reobserve"]


def reobserve(
    y: torch.Tensor, w: torch.Tensor, z: torch.Tensor, z_new: torch.Tensor, wave: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectra ``y`` (weights ``w``) at redshifts ``z`` re-observed at ``z_new`` on the same grid.

    Args:
        y: Flux ``(N, L)``.
        w: Weights (inverse variance x mask) ``(N, L)``.
        z: Redshifts ``(N,)``.
        z_new: New redshifts ``(N,)``.
        wave: The observed grid ``(L,)``, increasing.

    Returns:
        ``(y_new, w_new)``, zero where the source wavelength is off the grid or unweighted.
    """
    wave = wave.to(y.device, torch.float64)
    src = wave[None, :] * ((1 + z.double()) / (1 + z_new.double()))[:, None]  # (N, L) source wavelengths
    hi = torch.searchsorted(wave, src.contiguous()).clamp(1, len(wave) - 1)
    lo = hi - 1
    t = ((src - wave[lo]) / (wave[hi] - wave[lo])).to(y.dtype)
    inside = (src >= wave[0]) & (src <= wave[-1])
    y_lo, y_hi = y.gather(1, lo), y.gather(1, hi)
    w_lo, w_hi = w.gather(1, lo), w.gather(1, hi)
    usable = inside & (w_lo > 0) & (w_hi > 0)
    y_new = torch.where(inside, y_lo + t * (y_hi - y_lo), torch.zeros_like(y))
    var = (1 - t) ** 2 / w_lo.clamp_min(1e-30) + t**2 / w_hi.clamp_min(1e-30)  # variance of the interpolated flux
    w_new = torch.where(usable, 1 / var, torch.zeros_like(w))
    return y_new, w_new


def redshift_augment(
    y: torch.Tensor,
    w: torch.Tensor,
    z: torch.Tensor,
    wave: torch.Tensor,
    z_range: tuple[float, float],
    dz: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each spectrum re-observed at a new redshift uniform in ``z +- dz``, clipped to ``z_range``.

    Clipping follows the papers; it piles draws up at the range's ends (with ``dz = 0.5`` and
    ``z = 0.1`` about 40 % of the copies land at ``z' = 0``).

    Args:
        y, w, z, wave: As in :func:`reobserve`.
        z_range: The instrument's redshift range.
        dz: Half-width of the redshift draw.
        generator: Source of the draws (default: torch's global generator, which the trainer
            checkpoints, so an augmented run resumes exactly).

    Returns:
        ``(y_new, w_new, z_new)``.

    Example:
        >>> import torch
        >>> wave = torch.linspace(4000, 8000, 401)
        >>> y = torch.exp(-0.5 * ((wave - 5000 * 1.1) / 5) ** 2)[None]   # a line at 5000 A, z = 0.1
        >>> y2, w2 = reobserve(y, torch.ones_like(y), torch.tensor([0.1]), torch.tensor([0.2]), wave)
        >>> float(wave[y2.argmax()])   # now at 5000 x 1.2
        6000.0
    """
    u = torch.rand(len(z), generator=generator, device="cpu").to(z.device, z.dtype)
    z_new = (z + (2 * u - 1) * dz).clamp(*z_range)
    y_new, w_new = reobserve(y, w, z, z_new, wave)
    return y_new, w_new, z_new
