"""A small analytic galaxy-spectrum simulator with known truth (for tests and the demo).

Continuum: a smooth power law with a 4000 A break; emission lines: Gaussians at vacuum
restframe wavelengths with random strengths; observed through an instrument grid with
Gaussian noise of a chosen S/N and the instrument's sky-line mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from speculum.instruments import Instrument, get_instrument
from speculum.physics import median_normalization, resample_to_observed

__all__ = ["EMISSION_LINES", "ToySpectra", "toy_galaxy_spectra"]

EMISSION_LINES = {
    "[OII]3727": 3727.09,
    "[OII]3730": 3729.88,
    "Hbeta": 4862.68,
    "[OIII]4960": 4960.30,
    "[OIII]5008": 5008.24,
    "Halpha": 6564.61,
    "[NII]6585": 6585.27,
    "[SII]6718": 6718.29,
}
"""Vacuum restframe wavelengths (Angstrom) of the simulated emission lines."""


@dataclass(frozen=True)
class ToySpectra:
    """Simulated spectra and truth. Shapes: ``(N, L)`` spectra, ``(N,)`` redshifts."""

    flux: torch.Tensor
    weights: torch.Tensor
    z: torch.Tensor
    truth: torch.Tensor  # noiseless observed model, (N, L)
    line_amplitudes: torch.Tensor  # (N, n_lines)


def toy_galaxy_spectra(
    n: int,
    instrument: str | Instrument = "SDSS",
    snr: float = 20.0,
    z_range: tuple[float, float] = (0.02, 0.3),
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> ToySpectra:
    """Simulate ``n`` normalised galaxy spectra observed by ``instrument``.

    Args:
        n: Number of spectra.
        instrument: Instrument or its name.
        snr: Per-pixel signal-to-noise at unit flux.
        z_range: Uniform redshift range.
        seed: Random seed (results are deterministic).

    Returns:
        :class:`ToySpectra`, flux normalised to median one over restframe 5300-5850 A.
    """
    inst = get_instrument(instrument)
    gen = torch.Generator().manual_seed(seed)
    wave_rest = torch.linspace(2000.0, 11000.0, 18001, dtype=torch.float64)
    z = z_range[0] + (z_range[1] - z_range[0]) * torch.rand(n, generator=gen, dtype=torch.float64)
    slope = -1.5 + 1.5 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    brk = 0.2 + 0.5 * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    x = wave_rest / 5500.0
    cont = x**slope * (1 - brk * torch.sigmoid(-(wave_rest - 4000.0) / 30.0))
    centres = torch.tensor(list(EMISSION_LINES.values()), dtype=torch.float64)
    amps = torch.rand(n, len(centres), generator=gen, dtype=torch.float64) * 2.0
    amps *= (torch.rand(n, 1, generator=gen, dtype=torch.float64) < 0.7).double()  # 30% passive
    sigma = 2.0 + 2.0 * torch.rand(n, 1, 1, generator=gen, dtype=torch.float64)
    lines = amps[:, :, None] * torch.exp(-0.5 * ((wave_rest - centres[:, None]) / sigma) ** 2)
    rest = cont + lines.sum(1)
    wave_obs = inst.wave(torch.float64)
    obs, valid = resample_to_observed(rest, wave_rest, z, wave_obs)
    w = torch.ones_like(obs) * valid
    w[:, torch.from_numpy(inst.sky_mask.copy())] = 0
    norm = median_normalization(wave_obs, obs, w, z)
    truth = obs / norm[:, None]
    ivar = snr**2 * torch.ones_like(truth)
    noise = torch.randn(truth.shape, generator=gen, dtype=torch.float64) / snr
    flux = (truth + noise) * (w > 0)
    return ToySpectra(
        flux=flux.to(dtype),
        weights=(ivar * (w > 0)).to(dtype),
        z=z.to(dtype),
        truth=truth.to(dtype),
        line_amplitudes=(amps / norm[:, None]).to(dtype),
    )
