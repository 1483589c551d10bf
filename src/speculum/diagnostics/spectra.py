"""The hallucination diagnostic for spectra: extending an observed spectrum to the full restframe range.

A restframe spectrum ``x`` ``(L_rest,)`` on a log-uniform grid wider than any one observation
(:func:`restframe_grid`: 3000-9600 A, while SDSS observes 3784-9333 A, i.e. restframe
3710-9150 A at ``z = 0.02`` and 2911-7179 A at ``z = 0.3``) is observed through the
project's forward model, :func:`speculum.physics.resample_to_observed` (redshift, then linear
interpolation onto the observed grid; observed pixels outside the redshifted restframe range
are invalid). A MAP reconstruction with a score prior over restframe spectra
(:func:`~speculum.diagnostics.apply.map_reconstruct`) fills the whole restframe range; the
Fisher diagnostic (:func:`~speculum.diagnostics.apply.diagnose`) then says where the result
is the prior's: the likelihood's information ``F_L = diag(Jᵀ W J)`` of a restframe pixel is
exactly 0 when no observed pixel of non-zero weight lies in its interpolation support (the open
interval between its two neighbours, redshifted): outside the observed coverage and under
masked sky lines (where the masks are wider than the support, e.g. on an observed grid as
coarse as the restframe one), so ``ΔF = F_P - F_L > 0`` wherever the prior carries any
information there. Where the observed grid is much finer than the restframe one (SDSS's
1e-4 dex against 2e-3 dex for 256 restframe pixels) each restframe pixel collects ~40
observed pixels and the data dominate (``ΔF < 0``); on an observed grid as coarse as the
restframe one, ``F_L`` of a pixel comes from one or two observed pixels and a prior of
comparable precision takes over even where the data are (super-resolution).

Training spectra for the prior come from the galaxy simulator
(:class:`speculum.sim.GalaxySimulator`): its restframe stellar continuum, averaged over each
restframe pixel, plus its narrow emission lines integrated over the pixels (Gaussians at least
one pixel wide, so they are represented), normalised to mean 1 over
:data:`~speculum.physics.NORMALIZATION_RANGE` (:func:`restframe_spectra`).

Shapes: restframe spectra ``(N, L_rest)`` on ``grid`` ``(L_rest,)``; observations
``(N, L_obs)`` on ``wave_obs`` ``(L_obs,)``; redshifts ``(N,)``; wavelengths in vacuum Angstrom.

Example (an untrained prior carries no information: the data decide every covered pixel,
nothing decides the others):
    >>> import torch
    >>> from speculum.instruments import SDSS
    >>> from speculum.models.score import ScoreConfig, ScoreNet
    >>> grid = restframe_grid(64)
    >>> x = restframe_spectra(2, seed=0, grid=grid)
    >>> z = torch.tensor([0.05, 0.25], dtype=torch.float64)
    >>> y, w = observe(x, z, SDSS.wave(), noise=0.05, grid=grid)
    >>> prior = ScoreNet(ScoreConfig(shape=(64,), channels=8, levels=2, sigma_min=0.05))
    >>> d, cov = diagnose_spectra(y, w, z, SDSS.wave(), prior, grid, MapConfig(steps=5))
    >>> bool((d.maps.fisher_likelihood[~cov] == 0).all() and (d.maps.fisher_likelihood[cov] > 0).all())
    True
    >>> bool((~cov[0]).any() and (~cov[1]).any())  # each misses part of the restframe range
    True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from speculum._checks import check_grid, check_shape
from speculum.diagnostics.apply import Diagnosis, diagnose, map_reconstruct
from speculum.diagnostics.config import FisherConfig, MapConfig
from speculum.instruments import Instrument, get_instrument, sky_lines
from speculum.models.score import ScoreNet
from speculum.physics import NORMALIZATION_RANGE, convolve_lsf, gaussian_kernel, redshift_grid, resample_to_observed
from speculum.sim.galaxy import BLOCK_SIZE, GalaxySimulator, SimConfig
from speculum.sim.lines import C_KMS, NARROW_LINES

__all__ = [
    "RESTFRAME_RANGE",
    "RestframeSpectra",
    "diagnose_spectra",
    "draw_restframe",
    "observe",
    "plot_spectrum_diagnosis",
    "restframe_coverage",
    "restframe_grid",
    "restframe_spectra",
    "sky_line_mask",
    "spectra_forward",
    "spectrum_forward",
]

log = logging.getLogger(__name__)

BatchFn = Callable[[torch.Tensor], torch.Tensor]

RESTFRAME_RANGE = (3000.0, 9600.0)
"""Default restframe range (Angstrom): wider than SDSS's 3784-9333 A observed at any ``z`` in [0.02, 0.3]."""


def restframe_grid(n: int = 512, lo: float = RESTFRAME_RANGE[0], hi: float = RESTFRAME_RANGE[1]) -> torch.Tensor:
    """Log-uniform restframe grid ``(n,)``, float64, vacuum Angstrom, from ``lo`` to ``hi`` inclusive.

    The defaults (3000-9600 A) reach beyond what SDSS observes of a galaxy at any redshift in
    ``[0.02, 0.3]``, so every such observation leaves part of the grid to the prior.

    Example:
        >>> g = restframe_grid(256)
        >>> g.shape, round(float(g[0]), 6), round(float(g[-1]), 6)
        (torch.Size([256]), 3000.0, 9600.0)
    """
    if n < 2:
        raise ValueError(f"restframe_grid: n must be >= 2, got {n}")
    if not 0 < lo < hi:
        raise ValueError(f"restframe_grid: need 0 < lo < hi, got lo={lo}, hi={hi}")
    return torch.logspace(math.log10(lo), math.log10(hi), n, dtype=torch.float64)


def _pixel_edges(grid: torch.Tensor) -> torch.Tensor:
    """``(L + 1,)`` pixel edges of a grid: geometric midpoints, the ends extrapolated by half a step."""
    lg = torch.log(grid)
    mid = 0.5 * (lg[1:] + lg[:-1])
    return torch.exp(torch.cat([lg[:1] - (mid[:1] - lg[:1]), mid, lg[-1:] + (lg[-1:] - mid[-1:])]))


def _pixel_mean(wave: torch.Tensor, flux: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Mean over each pixel ``[edges[i], edges[i+1]]`` of the piecewise-linear ``flux (n, L_t)`` on ``wave (L_t,)``.

    Exact integrals of the linear interpolant, so a grid finer than ``wave`` gets the
    interpolated values and a coarser one the average (no aliasing of absorption lines).
    """
    dw = wave[1:] - wave[:-1]
    seg = 0.5 * (flux[:, 1:] + flux[:, :-1]) * dw
    cum = torch.cat([torch.zeros(len(flux), 1, dtype=flux.dtype), seg.cumsum(1)], 1)  # integral up to node k
    k = (torch.searchsorted(wave, edges) - 1).clamp(0, len(wave) - 2)
    u = edges - wave[k]
    f0, f1 = flux[:, k], flux[:, k + 1]
    at_edges = cum[:, k] + f0 * u + 0.5 * (f1 - f0) * u**2 / dw[k]
    return (at_edges[:, 1:] - at_edges[:, :-1]) / (edges[1:] - edges[:-1])


@dataclass(frozen=True)
class RestframeSpectra:
    """Noiseless restframe galaxy spectra on a grid and their truth.

    Attributes:
        grid: ``(L,)`` restframe wavelengths, Angstrom.
        flux: ``(n, L)`` continuum plus lines, float64, mean 1 over ``NORMALIZATION_RANGE``.
        continuum: ``(n, L)`` the stellar continuum alone (same normalisation).
        lines: ``(n, L)`` the emission lines alone (same normalisation).
        line_flux: ``(n, m)`` integrated line fluxes (flux density x Angstrom, same
            normalisation), in the order of :data:`~speculum.sim.lines.NARROW_LINES`.
        line_sigma: ``(n, m)`` Gaussian widths as rendered, Angstrom (at least one pixel).
        line_class: ``(n,)`` ``sf``, ``seyfert`` or ``liner``.
        ew_halpha: ``(n,)`` Halpha equivalent width drawn by the simulator, Angstrom.
    """

    grid: torch.Tensor
    flux: torch.Tensor
    continuum: torch.Tensor
    lines: torch.Tensor
    line_flux: torch.Tensor
    line_sigma: torch.Tensor
    line_class: np.ndarray
    ew_halpha: torch.Tensor


@lru_cache(maxsize=2)
def _simulator(config: SimConfig) -> GalaxySimulator:
    return GalaxySimulator(config)


def draw_restframe(
    n: int,
    seed: int = 0,
    grid: torch.Tensor | None = None,
    config: SimConfig | None = None,
    min_line_sigma_px: float = 1.0,
) -> RestframeSpectra:
    """Draw ``n`` restframe galaxies with :meth:`GalaxySimulator.draw_galaxies` and render them on ``grid``.

    The continuum (on the simulator's template grid, broadened by the velocity dispersion and
    the instrument's resolution) is averaged over each pixel of ``grid``; each narrow line is a
    Gaussian of the simulator's width (gas dispersion and instrument resolution in quadrature),
    widened to at least ``min_line_sigma_px`` pixels of ``grid``, integrated over every pixel
    (its flux is conserved exactly). The sum is scaled to mean 1 over the pixels of ``grid``
    inside :data:`~speculum.physics.NORMALIZATION_RANGE`. Galaxies are drawn in blocks of
    :data:`~speculum.sim.galaxy.BLOCK_SIZE` seeded by ``(seed, block)``, so spectrum ``i`` is
    the same whatever ``n`` (deterministic in ``seed`` and the index).

    Args:
        n: Number of spectra.
        seed: Seed of the simulator's generator.
        grid: Restframe grid ``(L,)`` (default :func:`restframe_grid` ``()``), within the
            template range (1800-10500 A) and holding pixels of the normalisation window.
        config: Simulator settings (default :class:`SimConfig` ``()``: SDSS resolution).
        min_line_sigma_px: Smallest line width in pixels of ``grid``.

    Returns:
        The spectra and their truth.
    """
    if n < 1:
        raise ValueError(f"draw_restframe: n must be >= 1, got {n}")
    grid = restframe_grid() if grid is None else torch.as_tensor(grid, dtype=torch.float64)
    check_grid(grid, "grid")
    if not min_line_sigma_px > 0:
        raise ValueError(f"draw_restframe: min_line_sigma_px must be > 0, got {min_line_sigma_px}")
    sim = _simulator(config or SimConfig())
    wave_t = sim.wave_t.to(torch.float64)
    edges = _pixel_edges(grid)
    if edges[0] < wave_t[0] or edges[-1] > wave_t[-1]:
        raise ValueError(
            f"grid: pixels {float(edges[0]):.1f}-{float(edges[-1]):.1f} A reach beyond the templates' "
            f"{float(wave_t[0]):.1f}-{float(wave_t[-1]):.1f} A"
        )
    in_window = (grid > NORMALIZATION_RANGE[0]) & (grid < NORMALIZATION_RANGE[1])
    if not bool(in_window.any()):
        raise ValueError(f"grid: no pixel inside the normalisation window {NORMALIZATION_RANGE} A")
    centre = torch.tensor(list(NARROW_LINES.values()), dtype=torch.float64)
    k = torch.searchsorted(edges, centre).clamp(1, len(grid)) - 1  # pixel holding each line
    min_sigma = min_line_sigma_px * (edges[k + 1] - edges[k])
    parts = []
    for block in range(-(-n // BLOCK_SIZE)):  # blocks seeded by (seed, block), as the simulator's
        words = np.random.SeedSequence([seed, block]).generate_state(2, dtype=np.uint32)
        gen = torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))
        gal = sim.draw_galaxies(gen, BLOCK_SIZE)
        m = min(BLOCK_SIZE, n - block * BLOCK_SIZE)
        cont = _pixel_mean(wave_t, gal["cont"][:m].to(torch.float64), edges)
        # narrow lines: Gaussians integrated over each pixel (erf between the edges)
        flux = gal["line_flux"][:m].to(torch.float64)
        sigma_kms = torch.sqrt(gal["sigma_gas"][:m].to(torch.float64) ** 2 + sim.sigma_inst**2)
        sig = torch.maximum(centre[None, :] * sigma_kms[:, None] / C_KMS, min_sigma[None, :])  # (m, lines)
        cdf = 0.5 * (1 + torch.erf((edges[None, None, :] - centre[None, :, None]) / (math.sqrt(2) * sig[..., None])))
        lines = (flux[..., None] * (cdf[..., 1:] - cdf[..., :-1])).sum(1) / (edges[1:] - edges[:-1])
        norm = (cont + lines)[:, in_window].mean(1, keepdim=True)
        parts.append(
            RestframeSpectra(
                grid=grid,
                flux=(cont + lines) / norm,
                continuum=cont / norm,
                lines=lines / norm,
                line_flux=flux / norm,
                line_sigma=sig,
                line_class=np.asarray(gal["line_class"][:m]),
                ew_halpha=gal["ew_halpha"][:m].to(torch.float64),
            )
        )
    log.debug("draw_restframe: %d spectra on %d pixels, seed %d", n, len(grid), seed)
    if len(parts) == 1:
        return parts[0]
    return RestframeSpectra(
        grid=grid,
        **{
            f: np.concatenate([getattr(p, f) for p in parts])
            if f == "line_class"
            else torch.cat([getattr(p, f) for p in parts])
            for f in ("flux", "continuum", "lines", "line_flux", "line_sigma", "line_class", "ew_halpha")
        },
    )


def restframe_spectra(
    n: int, seed: int = 0, grid: torch.Tensor | None = None, config: SimConfig | None = None
) -> torch.Tensor:
    """Noiseless restframe galaxy spectra ``(n, L)`` (float64) on ``grid``: :func:`draw_restframe` ``.flux``.

    Example:
        >>> x = restframe_spectra(3, seed=1, grid=restframe_grid(128))
        >>> x.shape, x.dtype
        (torch.Size([3, 128]), torch.float64)
    """
    return draw_restframe(n, seed, grid, config).flux


def sky_line_mask(wave_obs: torch.Tensor, instrument: str | Instrument = "SDSS") -> torch.Tensor:
    """Pixels of ``wave_obs`` ``(L_obs,)`` near bright night-sky lines, by the instrument's rule ``(L_obs,)`` bool.

    The rule of :attr:`speculum.instruments.Instrument.sky_mask` (lines at least
    ``sky_min_intensity`` bright, half-widths ``sky_mask_width (1 + log10(I / I_min))`` of the
    instrument's pixels, in Angstrom), applied to any grid; besides, the pixel nearest to each
    line inside the grid is masked, so a grid coarser than the instrument's still loses the
    pixel a line falls in. On the instrument's own grid it is exactly ``instrument.sky_mask``.

    Example:
        >>> from speculum.instruments import SDSS
        >>> bool((sky_line_mask(SDSS.wave()).numpy() == SDSS.sky_mask).all())
        True
    """
    inst = get_instrument(instrument)
    wave_obs = torch.as_tensor(wave_obs, dtype=torch.float64)
    check_grid(wave_obs, "wave_obs")
    wave = wave_obs.numpy()
    lines, intensity = sky_lines(inst.sky_min_intensity)
    dlam = np.interp(wave, inst.wave_obs, np.gradient(inst.wave_obs))  # the instrument's pixel width there
    mask = np.zeros(len(wave), dtype=bool)
    for line, inten in zip(lines, intensity, strict=True):
        half = inst.sky_mask_width * (1 + np.log10(inten / inst.sky_min_intensity))
        mask |= np.abs(wave - line) < half * dlam
        if wave[0] <= line <= wave[-1]:
            mask[int(np.argmin(np.abs(wave - line)))] = True
    return torch.from_numpy(mask)


def _as_z(z: torch.Tensor | float, n: int | None = None) -> torch.Tensor:
    z = torch.as_tensor(z, dtype=torch.float64)
    if not torch.isfinite(z).all() or (z <= -1).any():
        raise ValueError("z: redshifts must be finite and > -1")
    if n is not None:
        check_shape(z, "z", (n,))
    return z


def _line_spread(model: torch.Tensor, lsf_sigma: float | None) -> torch.Tensor:
    """The instrument's line spread (a Gaussian of ``lsf_sigma`` observed pixels), when given."""
    if lsf_sigma is None:
        return model
    return convolve_lsf(model, gaussian_kernel(lsf_sigma, dtype=model.dtype).to(model.device))


def spectrum_forward(
    grid: torch.Tensor, z: torch.Tensor | float, wave_obs: torch.Tensor, lsf_sigma: float | None = None
) -> BatchFn:
    """The forward model of one object at redshift ``z``, for :func:`~speculum.diagnostics.apply.diagnose`.

    ``resample_to_observed(x, grid, z, wave_obs)[0]`` for ``B`` copies of the object, then,
    with ``lsf_sigma`` (observed pixels), the instrument's Gaussian line spread
    (:func:`speculum.physics.convolve_lsf`): the project's one spectrum forward model.

    Args:
        grid: Restframe grid ``(L_rest,)``.
        z: The object's redshift (a float or a 0-d tensor).
        wave_obs: Observed grid ``(L_obs,)``.

    Returns:
        A function mapping ``B`` restframe spectra of this object ``(B, L_rest)`` to their
        observations ``(B, L_obs)`` (0 outside the redshifted range), in the dtype of the input.
    """
    grid = torch.as_tensor(grid, dtype=torch.float64)
    wave_obs = torch.as_tensor(wave_obs, dtype=torch.float64)
    check_grid(grid, "grid")
    check_grid(wave_obs, "wave_obs")
    zi = _as_z(z).reshape(())

    def forward(x: torch.Tensor) -> torch.Tensor:
        return _line_spread(resample_to_observed(x, grid, zi.expand(x.shape[0]), wave_obs)[0], lsf_sigma)

    return forward


def spectra_forward(
    grid: torch.Tensor, z: torch.Tensor, wave_obs: torch.Tensor, lsf_sigma: float | None = None
) -> BatchFn:
    """The forward model of a batch, for :func:`~speculum.diagnostics.apply.map_reconstruct`
    (as :func:`spectrum_forward`, row ``i`` at ``z[i]``).

    Args:
        grid: Restframe grid ``(L_rest,)``.
        z: Redshifts ``(N,)``.
        wave_obs: Observed grid ``(L_obs,)``.

    Returns:
        A function mapping ``(N, L_rest)`` (row ``i`` at ``z[i]``) to ``(N, L_obs)``.
    """
    grid = torch.as_tensor(grid, dtype=torch.float64)
    wave_obs = torch.as_tensor(wave_obs, dtype=torch.float64)
    check_grid(grid, "grid")
    check_grid(wave_obs, "wave_obs")
    zs = _as_z(z)
    check_shape(zs, "z", (None,))

    def forward(x: torch.Tensor) -> torch.Tensor:
        return _line_spread(resample_to_observed(x, grid, zs, wave_obs)[0], lsf_sigma)

    return forward


def observe(
    x: torch.Tensor,
    z: torch.Tensor,
    wave_obs: torch.Tensor,
    noise: float | torch.Tensor,
    sky_mask: bool | torch.Tensor = True,
    seed: int = 0,
    grid: torch.Tensor | None = None,
    instrument: str | Instrument = "SDSS",
    lsf_sigma: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Observe restframe spectra: redshift, resample onto ``wave_obs``, add Gaussian noise, mask.

    ``y = LSF(resample_to_observed(x, grid, z, wave_obs)[0]) + noise * ε`` (the line spread only
    with ``lsf_sigma``) on the observed pixels
    inside the redshifted restframe range (0 outside); ``weights = 1 / noise²`` there, 0
    outside the range and, with ``sky_mask``, 0 on pixels near bright sky lines (which keep
    their noisy flux, as a pipeline's masked pixels do).

    Args:
        x: Restframe spectra ``(N, L_rest)``.
        z: Redshifts ``(N,)``.
        wave_obs: Observed grid ``(L_obs,)``.
        noise: Noise standard deviation (> 0), in the units of ``x`` (whose level is ~1): a
            number or a tensor broadcastable to ``(N, L_obs)``.
        sky_mask: ``True``: :func:`sky_line_mask` of ``instrument``; ``False``: none; or a
            boolean tensor ``(L_obs,)`` or ``(N, L_obs)`` of masked pixels.
        seed: Seed of the noise.
        grid: Restframe grid ``(L_rest,)`` of ``x`` (default :func:`restframe_grid` ``(L_rest)``).
        instrument: Whose sky-mask rule ``sky_mask=True`` applies.
        lsf_sigma: The instrument's Gaussian line spread, observed pixels (None: none; the
            restframe spectra then carry the instrument's width, as :func:`draw_restframe`'s do).

    Returns:
        ``(y, weights)``, each ``(N, L_obs)`` in the dtype of ``x``.
    """
    x = torch.as_tensor(x)
    check_shape(x, "x", (None, None))
    grid = restframe_grid(x.shape[1]) if grid is None else torch.as_tensor(grid, dtype=torch.float64)
    check_shape(grid, "grid", (x.shape[1],))
    wave_obs = torch.as_tensor(wave_obs, dtype=torch.float64)
    z = _as_z(z, len(x))
    noise = torch.as_tensor(noise, dtype=x.dtype)
    if not torch.isfinite(noise).all() or (noise <= 0).any():
        raise ValueError("observe: noise must be finite and > 0 (weights are 1 / noise²)")
    model, valid = resample_to_observed(x, grid, z, wave_obs)
    model = _line_spread(model, lsf_sigma)
    shape = model.shape
    noise = noise.expand(shape)
    gen = torch.Generator().manual_seed(seed)
    eps = torch.randn(shape, generator=gen, dtype=torch.float64).to(x.dtype)
    y = torch.where(valid, model + noise * eps, torch.zeros_like(model))
    keep = valid
    if isinstance(sky_mask, torch.Tensor):
        m = sky_mask.to(torch.bool)
        if m.shape not in (shape[1:], shape):
            raise ValueError(f"sky_mask: expected (L_obs,) or (N, L_obs) = {tuple(shape)}, got {tuple(m.shape)}")
        keep = keep & ~m
    elif sky_mask:
        keep = keep & ~sky_line_mask(wave_obs, instrument)
    weights = torch.where(keep, noise.pow(-2), torch.zeros_like(model))
    return y, weights


def restframe_coverage(
    grid: torch.Tensor, z: torch.Tensor, wave_obs: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Restframe pixels the data constrain ``(N, L_rest)`` bool.

    Pixel ``i`` of object ``n`` is covered when an observed pixel inside the redshifted
    restframe range (valid) and of non-zero weight lies strictly between the redshifted
    neighbours ``grid[i-1] (1+z)`` and ``grid[i+1] (1+z)``: the support of its linear
    interpolation, i.e. where its column of the forward model's Jacobian is non-zero. So
    ``F_L > 0`` exactly on the covered pixels (up to an observed pixel falling exactly on a
    neighbour, where the coefficient is 0).

    Args:
        grid: Restframe grid ``(L_rest,)``.
        z: Redshifts ``(N,)``.
        wave_obs: Observed grid ``(L_obs,)``.
        weights: ``(N, L_obs)`` or ``(L_obs,)``; default: every valid observed pixel counts.
    """
    grid = torch.as_tensor(grid, dtype=torch.float64)
    wave_obs = torch.as_tensor(wave_obs, dtype=torch.float64)
    check_grid(grid, "grid")
    check_grid(wave_obs, "wave_obs")
    z = _as_z(z)
    check_shape(z, "z", (None,))
    wave_z = redshift_grid(grid, z)  # (N, L_rest), as the forward model computes it
    valid = (wave_obs[None, :] > wave_z[:, :1]) & (wave_obs[None, :] < wave_z[:, -1:])
    good = valid if weights is None else valid & (torch.as_tensor(weights).expand(valid.shape) > 0)
    count = torch.cat([torch.zeros(len(z), 1, dtype=torch.long), good.long().cumsum(1)], 1)  # good pixels < index
    lo = torch.cat([wave_z[:, :1], wave_z[:, :-1]], 1)  # left neighbour (the pixel itself at the ends)
    hi = torch.cat([wave_z[:, 1:], wave_z[:, -1:]], 1)
    w = wave_obs.expand(len(z), -1).contiguous()
    first = torch.searchsorted(w, lo.contiguous(), right=True)  # first observed pixel > lo
    stop = torch.searchsorted(w, hi.contiguous(), right=False)  # first observed pixel >= hi
    return count.gather(1, stop) - count.gather(1, first) > 0


def diagnose_spectra(
    y: torch.Tensor,
    weights: torch.Tensor,
    z: torch.Tensor,
    wave_obs: torch.Tensor,
    prior: ScoreNet,
    grid: torch.Tensor,
    map_config: MapConfig | None = None,
    fisher_config: FisherConfig | None = None,
    x0: torch.Tensor | None = None,
    lsf_sigma: float | None = None,
) -> tuple[Diagnosis, torch.Tensor]:
    """MAP-reconstruct restframe spectra from observations, then their hallucination maps.

    Args:
        y: Observed spectra ``(N, L_obs)``.
        weights: Inverse variances ``(N, L_obs)`` (0 = masked or not covered).
        z: Redshifts ``(N,)``.
        wave_obs: Observed grid ``(L_obs,)``.
        prior: Score prior over restframe spectra ``(N, L_rest)``.
        grid: Restframe grid ``(L_rest,)`` of the prior.
        map_config: MAP settings (its ``prior_weight`` is the ``λ`` of the diagnosis).
        fisher_config: Estimator settings of ``F_P``.
        x0: Start of the reconstruction ``(N, L_rest)`` (default ones: the normalised level of
            :func:`restframe_spectra`; restframe pixels the data do not constrain stay there
            when ``λ = 0``).
        lsf_sigma: The instrument's Gaussian line spread in observed pixels, in the forward model
            (as in :func:`observe`). The returned ``coverage`` ignores it: with a line spread,
            ``F_L > 0`` reaches a few kernel widths beyond the covered pixels (and under masked
            sky lines), so read ``F_L`` itself where that matters.

    Returns:
        ``(diagnosis, coverage)``: reconstructions and maps ``(N, L_rest)``, and
        :func:`restframe_coverage` ``(N, L_rest)`` bool.
    """
    grid = torch.as_tensor(grid, dtype=torch.float64)
    if tuple(prior.config.shape) != (len(grid),):
        raise ValueError(f"diagnose_spectra: prior over {prior.config.shape}, grid of {len(grid)} pixels")
    y = torch.as_tensor(y)
    z = _as_z(z, len(y))
    w = torch.as_tensor(weights).expand(y.shape)
    mcfg = map_config or MapConfig()
    if x0 is None:
        x0 = torch.ones(len(y), len(grid))
    x = map_reconstruct(y, w, spectra_forward(grid, z, wave_obs, lsf_sigma), prior, mcfg, x0=x0)
    forwards = [spectrum_forward(grid, zi, wave_obs, lsf_sigma) for zi in z]
    d = diagnose(x, w, forwards, prior, mcfg.prior_weight, fisher_config)
    return d, restframe_coverage(grid, z, wave_obs, w)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of the runs of ``True`` in a 1-d boolean array."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def plot_spectrum_diagnosis(
    ax_top,
    ax_bottom,
    grid: torch.Tensor,
    reconstruction: torch.Tensor,
    truth: torch.Tensor | None,
    prior_fraction: torch.Tensor,
    coverage: torch.Tensor,
) -> int:
    """One object's report figure: the reconstruction over the truth, and the prior's share ``r(λ)``.

    Restframe ranges the data do not constrain (``~coverage``) are shaded in both panels;
    the lower panel's dashed line ``r = 0.5`` is ``ΔF = 0`` (above it the prior dominates).

    Args:
        ax_top: Matplotlib axes for the spectra.
        ax_bottom: Matplotlib axes for ``r``.
        grid: Restframe grid ``(L,)``.
        reconstruction: ``(L,)``.
        truth: ``(L,)`` or ``None``.
        prior_fraction: ``r`` ``(L,)`` in ``[0, 1]``.
        coverage: ``(L,)`` bool.

    Returns:
        The number of shaded (uncovered) ranges.
    """
    wave = torch.as_tensor(grid, dtype=torch.float64)
    edges = _pixel_edges(wave).numpy()
    wave = wave.numpy()
    rec = torch.as_tensor(reconstruction).detach().double().numpy()
    r = torch.as_tensor(prior_fraction).detach().double().numpy()
    cov = torch.as_tensor(coverage).bool().numpy()
    for name, a in (("reconstruction", rec), ("prior_fraction", r), ("coverage", cov)):
        if a.shape != wave.shape:
            raise ValueError(f"plot_spectrum_diagnosis: {name} must be {wave.shape}, got {a.shape}")
    runs = _runs(~cov)
    for ax in (ax_top, ax_bottom):
        for i, j in runs:
            ax.axvspan(edges[i], edges[j], color="0.85", lw=0, zorder=0)
    if truth is not None:
        ax_top.plot(wave, torch.as_tensor(truth).detach().double().numpy(), color="k", lw=0.8, label="truth")
    ax_top.plot(wave, rec, color="C0", lw=0.9, label="MAP reconstruction")
    ax_top.set_ylabel("normalised flux")
    ax_top.legend(loc="upper right", fontsize="small", frameon=False)
    ax_bottom.plot(wave, r, color="C3", lw=0.9)
    ax_bottom.axhline(0.5, color="0.4", ls="--", lw=0.7)
    ax_bottom.set_ylim(-0.02, 1.02)
    ax_bottom.set_ylabel(r"$r = F_P / (F_P + F_L)$")
    ax_bottom.set_xlabel(r"restframe wavelength [$\AA$]")
    for ax in (ax_top, ax_bottom):
        ax.set_xlim(edges[0], edges[-1])
    return len(runs)
