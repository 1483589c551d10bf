"""Spectrographs: observed wavelength grids, redshift ranges and sky-line masks.

Every instrument is an immutable :class:`Instrument`. Wavelengths are vacuum Angstrom.

The grids are the ones the surveys publish:

* SDSS: ``loglam = 3.578 + 1e-4 * i`` for ``i < 3921`` (3784.4 - 9332.6 A); the
  ``loglam`` column of every ``spec-PLATE-MJD-FIBER`` file is a contiguous slice of it.
* BOSS: ``loglam = 3.549 + 1e-4 * i`` for ``i < 4686`` (3540.0 - 10411.2 A).
* DESI: ``3600 + 0.8 * i`` for ``i < 7781`` (3600 - 9824 A), the common grid onto which
  the B, R and Z arms are coadded.

Example:
    >>> from speculum.instruments import SDSS
    >>> SDSS.n_pixels, round(float(SDSS.wave_obs[0]), 1)
    (3921, 3784.4)
"""

from __future__ import annotations

import csv
import enum
from dataclasses import dataclass
from functools import cached_property
from importlib import resources

import numpy as np
import torch

__all__ = ["BOSS", "DESI", "SDSS", "Instrument", "PixelMask", "air_to_vacuum", "get_instrument", "sky_lines"]


class PixelMask(enum.IntFlag):
    """Pixel-quality bits of speculum's ``mask`` column (0 = good pixel).

    Readers translate each survey's own bitmask into these; the simulator sets them like a
    pipeline would. Training and scoring use a pixel only where ``mask == 0`` and
    ``ivar > 0``.
    """

    BAD = 1  # pipeline-flagged (SDSS and_mask bits, DESI mask != 0), or ivar <= 0
    SKY_LINE = 2  # near a bright night-sky line (the instrument's sky mask)
    COSMIC_RAY = 4
    BAD_COLUMN = 8
    NO_DATA = 16  # the file does not cover this pixel of the instrument grid


def air_to_vacuum(wave_air: np.ndarray) -> np.ndarray:
    """Convert air wavelengths to vacuum (Morton 1991, IAU standard), Angstrom.

    Args:
        wave_air: Air wavelengths in Angstrom, any shape.

    Returns:
        Vacuum wavelengths, same shape.
    """
    wave_air = np.asarray(wave_air, dtype=np.float64)
    sigma2 = (1e4 / wave_air) ** 2
    n = 1 + 6.4328e-5 + 2.94981e-2 / (146 - sigma2) + 2.5540e-4 / (41 - sigma2)
    return wave_air * n


def sky_lines(min_intensity: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Bright night-sky lines shipped with speculum (see ``data/sky_lines.csv``).

    Args:
        min_intensity: Keep lines at least this bright (atlas units).

    Returns:
        ``(wave_vacuum, intensity)``, each of shape ``(K,)``.
    """
    text = resources.files("speculum.data").joinpath("sky_lines.csv").read_text()
    rows = [r for r in csv.reader(line for line in text.splitlines() if not line.startswith("#"))]
    wave = np.array([float(r[0]) for r in rows[1:]])
    intensity = np.array([float(r[1]) for r in rows[1:]])
    keep = intensity >= min_intensity
    return air_to_vacuum(wave[keep]), intensity[keep]


@dataclass(frozen=True)
class Instrument:
    """An immutable spectrograph description.

    Attributes:
        name: Survey name, e.g. ``"SDSS"``.
        wave_start: First pixel: ``log10`` wavelength for log-spaced grids, Angstrom
            for linear ones.
        step: Pixel step in the same unit (dex or Angstrom).
        n_pixels: Number of pixels ``L``.
        log_spaced: Whether the grid is uniform in ``log10`` wavelength.
        z_range: ``(z_min, z_max)`` the instrument's galaxy sample is used for.
        resolving_power: Typical spectral resolving power ``R = lambda / FWHM``.
        sky_mask_width: Half-width of a sky-line mask in pixels for the faintest masked
            line; brighter lines get ``width * (1 + log10(I / I_min))``.
        sky_min_intensity: Faintest sky line that is masked (atlas units).
    """

    name: str
    wave_start: float
    step: float
    n_pixels: int
    log_spaced: bool
    z_range: tuple[float, float]
    resolving_power: float
    sky_mask_width: float = 2.0
    sky_min_intensity: float = 5.0

    @cached_property
    def wave_obs(self) -> np.ndarray:
        """Observed vacuum wavelengths in Angstrom, shape ``(L,)``, read-only float64."""
        i = np.arange(self.n_pixels, dtype=np.float64)
        grid = 10 ** (self.wave_start + self.step * i) if self.log_spaced else self.wave_start + self.step * i
        grid.flags.writeable = False
        return grid

    @cached_property
    def sky_mask(self) -> np.ndarray:
        """Boolean mask of pixels near bright sky lines, shape ``(L,)``, read-only."""
        wave = self.wave_obs
        lines, intensity = sky_lines(self.sky_min_intensity)
        mask = np.zeros(self.n_pixels, dtype=bool)
        dlam = np.gradient(wave)
        for line, inten in zip(lines, intensity, strict=True):
            half = self.sky_mask_width * (1 + np.log10(inten / self.sky_min_intensity))
            mask |= np.abs(wave - line) < half * dlam
        mask.flags.writeable = False
        return mask

    def wave(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
        """Observed wavelengths as a tensor of shape ``(L,)``."""
        return torch.as_tensor(np.array(self.wave_obs), dtype=dtype, device=device)

    def pixel_coordinate(self, wavelength: torch.Tensor) -> torch.Tensor:
        """Fractional pixel index of ``wavelength`` (Angstrom) on this grid, any shape."""
        if self.log_spaced:
            return (torch.log10(wavelength) - self.wave_start) / self.step
        return (wavelength - self.wave_start) / self.step

    def pixel_of(self, wavelength: float) -> int:
        """Index of the pixel whose centre is closest to ``wavelength`` (Angstrom)."""
        return int(np.argmin(np.abs(self.wave_obs - wavelength)))

    def check_redshift(self, z: torch.Tensor | np.ndarray | float, name: str = "z") -> None:
        """Raise ``ValueError`` if any redshift is outside :attr:`z_range` or not finite.

        The range is compared with a tolerance of 1e-6 so that a float32 redshift at the
        edge (0.8 is 0.800000012 in float32) is accepted.
        """
        zt = torch.as_tensor(z, dtype=torch.float64)
        zmin, zmax = self.z_range
        if not torch.isfinite(zt).all():
            raise ValueError(f"{name}: expected finite redshifts, got NaN or inf")
        if zt.numel() and (zt.min() < zmin - 1e-6 or zt.max() > zmax + 1e-6):
            raise ValueError(
                f"{name}: expected redshifts in the {self.name} range [{zmin}, {zmax}], "
                f"got values in [{zt.min().item():.4g}, {zt.max().item():.4g}]"
            )


SDSS = Instrument("SDSS", 3.578, 1e-4, 3921, True, (0.0, 0.5), 2000.0)
BOSS = Instrument("BOSS", 3.549, 1e-4, 4686, True, (0.0, 0.8), 2000.0)
DESI = Instrument("DESI", 3600.0, 0.8, 7781, False, (0.0, 0.8), 3500.0, sky_mask_width=3.0)

_REGISTRY = {inst.name: inst for inst in (SDSS, BOSS, DESI)}


def get_instrument(name: str | Instrument) -> Instrument:
    """Look an instrument up by (case-insensitive) name."""
    if isinstance(name, Instrument):
        return name
    try:
        return _REGISTRY[name.upper()]
    except KeyError:
        raise ValueError(f"instrument: expected one of {sorted(_REGISTRY)}, got {name!r}") from None
