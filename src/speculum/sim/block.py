"""The state of one block of simulated objects, handed from step to step of the simulator.

:meth:`GalaxySimulator._block <speculum.sim.GalaxySimulator>` runs its steps in a fixed order
(draw the block, the anomaly stages, the galaxies, observe, tellurics, line spread, noise,
glitches) and each step reads and fills a :class:`BlockState`. Anomaly classes
(:mod:`speculum.sim.anomalies`) see the same object. Every random number of a block comes
from ``state.gen``, in the order of the steps: that order is what makes object ``i`` the
same whichever range it is simulated in, so a step never draws out of turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["BlockState", "LineSet", "Windows", "uniform"]

Windows = list[list[float]]
"""Observed-frame wavelength windows ``[[lo, hi], ...]`` in Angstrom."""

LineSet = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""Gaussian lines added to some rows: ``(rows (k,), restframe centres (k, m) A, integrated fluxes (k, m),
widths (k, m) km/s)``; fluxes in normalised flux density x Angstrom, as the narrow-line table."""


def uniform(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """Uniform draws in ``[0, 1)`` of ``shape``, float64, from ``gen``."""
    return torch.rand(*shape, generator=gen, dtype=torch.float64)


@dataclass(eq=False)
class BlockState:
    """One block of ``n`` objects between the simulator's steps (filled in as they run).

    Attributes:
        seed: Data-set seed.
        block: Block index (objects ``block * BLOCK_SIZE ...``).
        gen: The block's random generator, seeded by ``(seed, block)``.
        z: Redshifts ``(n,)``, float64.
        cls: Class of each object, ``"normal"`` or an anomaly class, ``(n,)`` str.
        rows: Rows ``(k,)`` (int64) of every registered anomaly class (empty when not drawn).
        show: ``config.render_anomalies``: anomalies change the spectra (else truth only).
        params: Per row, the anomaly's parameters (``{}`` for normal objects).
        windows: Per row, the anomaly's observed-frame windows (empty for normal objects).
        a_v_override: ``A_V`` imposed on the galaxies ``(n,)`` (NaN: drawn), or None.
        galaxies: What :meth:`GalaxySimulator.draw_galaxies` returned for the block.
        cont: Restframe continuum ``(n, L_t)``, float32, normalised.
        line_wave: Restframe centres of the narrow lines ``(n, m)``, float64, A.
        line_flux: Integrated narrow-line fluxes ``(n, m)``, float64 (the truth, even when the
            lines are left out of the spectra).
        line_sigma: Gas velocity dispersion of each line ``(n, m)``, km/s.
        extra_wave: Centres of second narrow-line peaks ``(n, m)`` (double-peaked lines).
        extra_flux: Their fluxes ``(n, m)`` (0: none); part of the narrow-line truth.
        extra_sigma: Their widths ``(n, m)``, km/s.
        added_lines: Further lines (not narrow emission lines, e.g. an AGN's broad lines),
            rendered after the narrow ones.
        model: Observed noiseless model ``(n, L)``, float32.
        amplitude: Typical observed flux density of the galaxy alone ``(n,)``
            (:meth:`GalaxySimulator.observed_level`).
        telluric_depth: Residual telluric depth ``(n,)``, float32.
        calibration: Legendre coefficients of the calibration distortion ``(n, order)``, float32.
        resolution: DESI only: resolution matrices ``(n, 11, L)``, float32.
        brightness: Continuum counts per pixel at ``amplitude`` ``(n,)``, float64.
        snr: Median per-pixel S/N of the noiseless model ``(n,)``.
        sigma: Noise sigma ``(n, L)``, float32.
        flux: Observed flux ``(n, L)``, float32.
        ivar: Inverse variance ``(n, L)``, float32.
        mask: Pixel mask bits ``(n, L)``, int32.
        sky_residual: Largest sky-subtraction residual of each spectrum ``(n,)``, noise sigmas.
        coverage: ``full``, ``no_red`` or ``no_blue`` ``(n,)`` str.
        coverage_range: First and last observed wavelength ``(n, 2)``, A.
    """

    seed: int
    block: int
    gen: torch.Generator
    z: torch.Tensor
    cls: np.ndarray
    rows: dict[str, torch.Tensor]
    show: bool
    params: list[dict] = field(default_factory=list)
    windows: list[Windows] = field(default_factory=list)
    a_v_override: torch.Tensor | None = None
    galaxies: dict | None = None
    cont: torch.Tensor | None = None
    line_wave: torch.Tensor | None = None
    line_flux: torch.Tensor | None = None
    line_sigma: torch.Tensor | None = None
    extra_wave: torch.Tensor | None = None
    extra_flux: torch.Tensor | None = None
    extra_sigma: torch.Tensor | None = None
    added_lines: list[LineSet] = field(default_factory=list)
    model: torch.Tensor | None = None
    amplitude: torch.Tensor | None = None
    telluric_depth: torch.Tensor | None = None
    calibration: torch.Tensor | None = None
    resolution: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    snr: torch.Tensor | None = None
    sigma: torch.Tensor | None = None
    flux: torch.Tensor | None = None
    ivar: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    sky_residual: torch.Tensor | None = None
    coverage: np.ndarray | None = None
    coverage_range: torch.Tensor | None = None

    @property
    def n(self) -> int:
        """Number of objects in the block."""
        return len(self.z)
