"""Galaxy images with known truth: GalSim disks, bulges and bars observed through a Gaussian PSF.

Each galaxy is an exponential disk plus a de Vaucouleurs bulge and, for a fraction of the
galaxies, a bar, drawn with GalSim (:mod:`galsim`, the ``images`` extra) on a square stamp of
``size`` pixels:

* **Disk**: ``galsim.Exponential`` of half-light radius ``disk_hlr`` (log-uniform in
  ``disk_hlr_range``), sheared by ``galsim.Shear(e=|e|, beta=beta)``, ``|e|`` uniform in
  ``[0, ellipticity_max]`` and ``beta`` uniform in ``[0, pi)``.
* **Bulge**: ``galsim.DeVaucouleurs`` of half-light radius ``0.4 disk_hlr`` holding the fraction
  ``bulge_fraction`` (uniform in ``bulge_fraction_range``) of the disk + bulge flux; it shares the
  disk's position angle with half its ellipticity (bulges are rounder than disks).
* **Bar** (probability ``bar_fraction``): ``galsim.Sersic(n=0.5)`` (a Gaussian) holding
  ``bar_flux_fraction`` of the total flux, with a half-light semi-major axis of
  ``bar_length * disk_hlr`` and axis ratio ``bar_axis_ratio``, at its own position angle
  ``bar_angle`` (uniform in ``[0, pi)``, independent of the disk's). It has the galaxy's centre.

Conventions: ``e = (a**2 - b**2) / (a**2 + b**2)`` is GalSim's *distortion* (``Shear(e=...)``),
``e1 = e cos(2 beta)``, ``e2 = e sin(2 beta)``; ``beta`` is measured counter-clockwise from the
``+x`` axis. Arrays are ``[y, x]`` (row ``y``, column ``x``, as GalSim's ``Image.array``): the
galaxy's centre is at array coordinates ``((W - 1) / 2 + x0, (H - 1) / 2 + y0)``, with ``(x0, y0)``
uniform in ``[-centre_jitter, centre_jitter]`` pixels. So the unweighted second moments of a
galaxy's image satisfy ``(Qxx - Qyy, 2 Qxy) / (Qxx + Qyy) = (e1, e2)`` (up to the stamp's edges).

Drawing: every component is pixel-integrated (the scene as a perfect detector records it before
the PSF, no noise): the disk and the bar with ``drawImage(method="auto")`` (GalSim convolves them
with the pixel by FFT, accurate to ~1e-4 of the peak: far from the centre, pixels may ring
slightly negative at that level). The bulge is integrated over each pixel by quadrature of GalSim's
``method="no_pixel"`` samples, because GalSim's FFT of a de Vaucouleurs cusp needs a ~4096**2
k-space grid (about 0.2 s per stamp): a 2x2-point Gauss-Legendre rule per pixel, except in the
3x3 pixels around the centre, which are integrated on nested fine grids with the cusp on a grid
vertex (steps of 1/8, 1/32 and 1/128 pixel). It agrees with GalSim's ``method="real_space"``
integration to 2e-3 of the peak pixel and takes about half a millisecond.

Observation: ``image = convolve_psf(truth, psf) + N(0, noise_sigma**2)`` with
``psf = gaussian_psf(psf_fwhm / pixel_scale / 2.3548)``
(:func:`~speculum.physics.psf.convolve_psf`: "same" size, zero padding), so the linear forward
model of the image is exactly that convolution and the noise is white and known.

Everything is drawn from ``np.random.default_rng([seed, index])`` per object (parameters first,
then the noise), so object ``index`` is the same whichever range it is simulated in, and the
galaxy parameters do not depend on the configuration's bar fraction (every object draws its bar
numbers).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from speculum._optional import require
from speculum.physics.psf import convolve_psf, gaussian_psf

__all__ = ["GalaxyImageSimulator", "ImageConfig", "SimulatedImages"]

logger = logging.getLogger(__name__)

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548
BULGE_HLR_RATIO = 0.4
"""Bulge half-light radius / disk half-light radius."""
BULGE_ELLIPTICITY_RATIO = 0.5
"""Bulge ellipticity / disk ellipticity (same position angle)."""
PARAM_NAMES = ("flux", "disk_hlr", "bulge_fraction", "e1", "e2", "has_bar", "bar_angle", "x0", "y0")

# bulge quadrature: Gauss-Legendre nodes per pixel axis, then the cusp's nested fine grids
_GL_NODES = 2
_CORE_HALF = 1  # the core is (2 h + 1)**2 pixels around the centre
_CORE_STEP0 = 8  # level-0 fine cells per pixel
_CORE_REFINE = 4  # each level's cells are this many times smaller
_CORE_LEVELS = 3
_CORE_KEEP = 6  # each level refines the 2K x 2K cells around the cusp


@dataclass(frozen=True)
class ImageConfig:
    """What to simulate. Saved with every simulated image set.

    Attributes:
        size: Stamp side in pixels (>= 8).
        pixel_scale: Arcsec per pixel (default 0.06, HST-like).
        psf_fwhm: FWHM of the Gaussian observation PSF, arcsec (default 0.18: 3 pixels).
        noise_sigma: Per-pixel Gaussian sky noise, in the units of ``truth`` (> 0).
        flux_range: ``(low, high)`` total flux, drawn log-uniformly (``0 < low <= high``).
        disk_hlr_range: ``(low, high)`` exponential-disk half-light radius, arcsec, log-uniform.
        bulge_fraction_range: ``(low, high)`` fraction of the disk + bulge flux in the de
            Vaucouleurs bulge (half-light radius ``0.4 disk_hlr``), uniform, within ``[0, 1]``.
        ellipticity_max: The disk's ``|e|`` (GalSim distortion) is uniform in ``[0, max]``,
            ``max < 1``; its position angle uniform.
        bar_fraction: Probability that a galaxy has a bar.
        bar_flux_fraction: Fraction of the total flux in the bar when present (``< 1``).
        bar_length: Bar half-light semi-major axis / disk half-light radius.
        bar_axis_ratio: Bar minor / major axis ratio, in ``(0, 1]``.
        centre_jitter: The centre's offset from the stamp centre is uniform in
            ``[-jitter, jitter]`` pixels on each axis (at most ``size / 4``).
        truth_psf_fwhm: FWHM (arcsec) of a Gaussian high-resolution PSF (HST-like, e.g. 0.1) that
            ``truth`` and ``bar`` are seen through, so that the target of a deconvolution is a
            space-resolution image rather than the scene with its unresolved bulge cusp; 0 (the
            default): ``truth`` is the scene itself.
    """

    size: int = 32
    pixel_scale: float = 0.06
    psf_fwhm: float = 0.18
    noise_sigma: float = 0.01
    flux_range: tuple[float, float] = (3.0, 10.0)
    disk_hlr_range: tuple[float, float] = (0.25, 0.45)
    bulge_fraction_range: tuple[float, float] = (0.0, 0.4)
    ellipticity_max: float = 0.5
    bar_fraction: float = 0.0
    bar_flux_fraction: float = 0.25
    bar_length: float = 1.2
    bar_axis_ratio: float = 0.25
    centre_jitter: float = 0.5
    truth_psf_fwhm: float = 0.0

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
            _fail("size", "an integer >= 8", size)
        object.__setattr__(self, "size", int(size))
        for name in ("pixel_scale", "psf_fwhm", "noise_sigma", "bar_length"):
            if not _number(getattr(self, name)) > 0:
                _fail(name, "a number > 0", getattr(self, name))
        self._range("flux_range", low_min=0.0, strict=True)
        self._range("disk_hlr_range", low_min=0.0, strict=True)
        self._range("bulge_fraction_range", low_min=0.0, strict=False, high_max=1.0)
        if not 0.0 <= _number(self.ellipticity_max) < 1.0:
            _fail("ellipticity_max", "in [0, 1)", self.ellipticity_max)
        if not 0.0 <= _number(self.bar_fraction) <= 1.0:
            _fail("bar_fraction", "in [0, 1]", self.bar_fraction)
        if not 0.0 <= _number(self.bar_flux_fraction) < 1.0:
            _fail("bar_flux_fraction", "in [0, 1)", self.bar_flux_fraction)
        if not 0.0 < _number(self.bar_axis_ratio) <= 1.0:
            _fail("bar_axis_ratio", "in (0, 1]", self.bar_axis_ratio)
        if not _number(self.truth_psf_fwhm) >= 0.0:
            _fail("truth_psf_fwhm", "a number >= 0 (0: no high-resolution PSF)", self.truth_psf_fwhm)
        if not 0.0 <= _number(self.centre_jitter) <= self.size / 4:
            _fail("centre_jitter", f"in [0, size / 4] = [0, {self.size / 4:g}] pixels", self.centre_jitter)
        for f in fields(self):
            if f.name != "size" and not f.name.endswith("_range"):
                object.__setattr__(self, f.name, float(getattr(self, f.name)))

    def _range(self, name: str, low_min: float, strict: bool, high_max: float | None = None) -> None:
        value = getattr(self, name)
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            lo, hi = math.nan, math.nan
        low_ok = lo > low_min if strict else lo >= low_min
        high_ok = hi <= high_max if high_max is not None else math.isfinite(hi)
        if not (low_ok and lo <= hi and high_ok):
            bounds = f"{low_min:g} {'<' if strict else '<='} low <= high" + (
                f" <= {high_max:g}" if high_max is not None else ""
            )
            _fail(name, f"a pair (low, high) with {bounds}", value)
        object.__setattr__(self, name, (lo, hi))

    @property
    def psf_sigma_px(self) -> float:
        """Standard deviation of the Gaussian PSF, pixels."""
        return self.psf_fwhm / self.pixel_scale / FWHM_PER_SIGMA

    def to_dict(self) -> dict:
        """Plain fields (ranges as tuples); :meth:`from_dict` reads it back, also after JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ImageConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"ImageConfig.from_dict: unknown keys {unknown}; known keys: {sorted(known)}")
        d = {k: tuple(v) if k.endswith("_range") and isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


def _number(value: Any) -> float:
    """``float(value)`` for real numbers, NaN otherwise (so range checks fail and report it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return math.nan
    return float(value)


def _fail(name: str, allowed: str, value: Any) -> None:
    raise ValueError(f"ImageConfig.{name} must be {allowed}, got {value!r}")


@dataclass
class SimulatedImages:
    """Simulated galaxy images with their truth.

    Attributes:
        truth: The scene before the PSF, ``(N, H, W)`` float32: pixel-integrated GalSim drawing of
            disk + bulge + bar, no noise.
        image: The observation, ``(N, H, W)`` float32: ``convolve_psf(truth, psf)`` plus
            ``N(0, noise_sigma**2)`` noise.
        bar: The bar component alone as drawn in ``truth``, ``(N, H, W)`` float32 (zeros where
            ``params["has_bar"]`` is False).
        psf: The observation PSF, ``(h, w)`` float64 with odd sides and unit sum.
        noise_sigma: Per-pixel noise standard deviation.
        params: Per-object truth, each ``(N,)``: ``flux`` (total, before the stamp's edges),
            ``disk_hlr`` (arcsec), ``bulge_fraction``, ``e1``, ``e2`` (the disk's GalSim
            distortion), ``has_bar`` (bool), ``bar_angle`` (radians in ``[0, pi)``, drawn for
            every object, used only where ``has_bar``), ``x0``, ``y0`` (centre offsets, pixels).
        config: The :class:`ImageConfig` it was drawn with.
    """

    truth: np.ndarray
    image: np.ndarray
    bar: np.ndarray
    psf: np.ndarray
    noise_sigma: float
    params: dict[str, np.ndarray]
    config: ImageConfig

    def __len__(self) -> int:
        return int(self.truth.shape[0])

    @property
    def weights(self) -> np.ndarray:
        """Inverse variance, ``(N, H, W)`` float32: ``1 / noise_sigma**2`` everywhere."""
        return np.full(self.image.shape, 1.0 / self.noise_sigma**2, dtype=np.float32)

    def select(self, idx: np.ndarray | slice | list[int]) -> SimulatedImages:
        """The objects ``idx`` (an index array, boolean mask or slice)."""
        return SimulatedImages(
            truth=self.truth[idx],
            image=self.image[idx],
            bar=self.bar[idx],
            psf=self.psf,
            noise_sigma=self.noise_sigma,
            params={k: v[idx] for k, v in self.params.items()},
            config=self.config,
        )

    @staticmethod
    def concatenate(parts: list[SimulatedImages]) -> SimulatedImages:
        """Join image sets drawn with the same configuration, in order."""
        if not parts:
            raise ValueError("SimulatedImages.concatenate: expected at least one part, got none")
        if any(p.config != parts[0].config for p in parts):
            raise ValueError("SimulatedImages.concatenate: parts were drawn with different configurations")
        return SimulatedImages(
            truth=np.concatenate([p.truth for p in parts]),
            image=np.concatenate([p.image for p in parts]),
            bar=np.concatenate([p.bar for p in parts]),
            psf=parts[0].psf,
            noise_sigma=parts[0].noise_sigma,
            params={k: np.concatenate([p.params[k] for p in parts]) for k in parts[0].params},
            config=parts[0].config,
        )


class GalaxyImageSimulator:
    """Galaxy-image simulator for one :class:`ImageConfig` (needs GalSim, the ``images`` extra).

    Attributes:
        config: What is simulated.
        psf: The observation PSF, ``(h, w)`` float64, odd sides, unit sum.
    """

    def __init__(self, config: ImageConfig | None = None) -> None:
        self.config = config or ImageConfig()
        self.psf = gaussian_psf(self.config.psf_sigma_px, dtype=torch.float64)
        fwhm = self.config.truth_psf_fwhm
        self.truth_psf = (
            gaussian_psf(fwhm / self.config.pixel_scale / FWHM_PER_SIGMA, dtype=torch.float64) if fwhm > 0 else None
        )
        u, w = np.polynomial.legendre.leggauss(_GL_NODES)
        nodes = list(zip(u / 2, w / 2, strict=True))  # on [-1/2, 1/2], weights summing to 1
        self._gl = [(float(a), float(b), float(wa * wb)) for a, wa in nodes for b, wb in nodes]

    def simulate(self, n: int, seed: int = 0, start: int = 0) -> SimulatedImages:
        """Simulate objects ``start … start + n - 1`` of the data set with ``seed``.

        Deterministic in ``(seed, object index)``: any split of an index range gives the same
        objects, noise included.

        Args:
            n: Number of images (>= 0).
            seed: Data-set seed (>= 0).
            start: Index of the first object (>= 0).

        Returns:
            :class:`SimulatedImages` with ``n`` stamps of ``(size, size)`` pixels.

        Example:
            >>> sim = GalaxyImageSimulator(ImageConfig(size=16, bar_fraction=0.5))
            >>> batch = sim.simulate(4, seed=1)
            >>> batch.truth.shape, batch.image.dtype, batch.psf.shape
            ((4, 16, 16), dtype('float32'), (13, 13))
            >>> bool(np.all(batch.bar[~batch.params["has_bar"]] == 0))
            True
        """
        for name, value in (("n", n), ("seed", seed), ("start", start)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"GalaxyImageSimulator.simulate: {name} must be an integer >= 0, got {value!r}")
        galsim = require("galsim", "galaxy images (speculum.sim.images)")
        cfg = self.config
        s = cfg.size
        truth = np.zeros((n, s, s), np.float32)
        image = np.zeros((n, s, s), np.float32)
        bar = np.zeros((n, s, s), np.float32)
        params = {k: np.zeros(n, bool if k == "has_bar" else np.float64) for k in PARAM_NAMES}
        t0 = time.perf_counter()
        for i in range(n):
            rng = np.random.default_rng([int(seed), int(start) + i])
            p = self._draw_params(rng)
            for k, v in p.items():
                params[k][i] = v
            scene, bar_i = self._draw_galaxy(galsim, p)
            if self.truth_psf is not None:
                scene = convolve_psf(torch.from_numpy(scene), self.truth_psf).numpy()
                bar_i = convolve_psf(torch.from_numpy(bar_i), self.truth_psf).numpy()
            truth[i] = scene + bar_i
            bar[i] = bar_i
            noise = rng.standard_normal((s, s)) * cfg.noise_sigma
            # one object at a time: the result cannot depend on how the index range is split
            observed = convolve_psf(torch.from_numpy(truth[i]).double(), self.psf).numpy()
            image[i] = observed + noise
        logger.debug("simulated %d galaxy images of %d x %d px in %.2f s", n, s, s, time.perf_counter() - t0)
        return SimulatedImages(
            truth=truth,
            image=image,
            bar=bar,
            psf=self.psf.numpy().copy(),
            noise_sigma=cfg.noise_sigma,
            params=params,
            config=cfg,
        )

    # ------------------------------------------------------------------ one object
    def _draw_params(self, rng: np.random.Generator) -> dict[str, float | bool]:
        """One object's parameters; always the same number of draws, whatever the config."""
        cfg = self.config
        u = rng.random(9)
        flux = _log_uniform(cfg.flux_range, u[0])
        hlr = _log_uniform(cfg.disk_hlr_range, u[1])
        bf = cfg.bulge_fraction_range[0] + u[2] * (cfg.bulge_fraction_range[1] - cfg.bulge_fraction_range[0])
        e = u[3] * cfg.ellipticity_max
        beta = math.pi * u[4]
        jitter = cfg.centre_jitter
        return {
            "flux": flux,
            "disk_hlr": hlr,
            "bulge_fraction": bf,
            "e1": e * math.cos(2 * beta),
            "e2": e * math.sin(2 * beta),
            "has_bar": bool(u[5] < cfg.bar_fraction),
            "bar_angle": math.pi * u[6],
            "x0": jitter * (2 * u[7] - 1),
            "y0": jitter * (2 * u[8] - 1),
        }

    def _draw_galaxy(self, galsim: Any, p: dict[str, float | bool]) -> tuple[np.ndarray, np.ndarray]:
        """Disk + bulge and the bar alone, each ``(size, size)`` float64, pixel-integrated."""
        cfg = self.config
        s, scale = cfg.size, cfg.pixel_scale
        offset = (float(p["x0"]), float(p["y0"]))
        bar_flux = cfg.bar_flux_fraction * p["flux"] if p["has_bar"] else 0.0
        host_flux = p["flux"] - bar_flux
        bulge_flux = host_flux * p["bulge_fraction"]
        disk_flux = host_flux - bulge_flux
        e = math.hypot(p["e1"], p["e2"])
        beta = 0.5 * math.atan2(p["e2"], p["e1"]) * galsim.radians
        scene = np.zeros((s, s))
        if disk_flux > 0:
            disk = galsim.Exponential(half_light_radius=p["disk_hlr"], flux=disk_flux).shear(e=e, beta=beta)
            scene += disk.drawImage(nx=s, ny=s, scale=scale, method="auto", offset=offset).array
        if bulge_flux > 0:
            bulge = galsim.DeVaucouleurs(half_light_radius=BULGE_HLR_RATIO * p["disk_hlr"], flux=bulge_flux)
            scene += self._draw_cusped(bulge.shear(e=BULGE_ELLIPTICITY_RATIO * e, beta=beta), offset)
        bar = np.zeros((s, s))
        if p["has_bar"]:
            q = cfg.bar_axis_ratio
            # GalSim's shear keeps the area: semi-major axis = circular radius / sqrt(q)
            r = cfg.bar_length * p["disk_hlr"] * math.sqrt(q)
            prof = galsim.Sersic(n=0.5, half_light_radius=r, flux=bar_flux)
            prof = prof.shear(e=(1 - q * q) / (1 + q * q), beta=float(p["bar_angle"]) * galsim.radians)
            bar = prof.drawImage(nx=s, ny=s, scale=scale, method="auto", offset=offset).array.astype(np.float64)
        return scene, bar

    def _draw_cusped(self, prof: Any, offset: tuple[float, float]) -> np.ndarray:
        """Pixel integrals of a cusped profile (its centre at ``offset`` from the stamp centre).

        A Gauss-Legendre rule on GalSim's ``no_pixel`` samples over the stamp; the core pixels
        around the centre by :func:`_core_integrals`.
        """
        s, scale = self.config.size, self.config.pixel_scale
        out = np.zeros((s, s))
        for du, dv, w in self._gl:
            node = (offset[0] + du, offset[1] + dv)
            out += w * prof.drawImage(nx=s, ny=s, scale=scale, method="no_pixel", offset=node).array
        xc, yc = (s - 1) / 2 + offset[0], (s - 1) / 2 + offset[1]
        cx = min(max(int(round(xc)), _CORE_HALF), s - 1 - _CORE_HALF)
        cy = min(max(int(round(yc)), _CORE_HALF), s - 1 - _CORE_HALF)
        core = _core_integrals(prof, xc, yc, cx, cy, scale)
        out[cy - _CORE_HALF : cy + _CORE_HALF + 1, cx - _CORE_HALF : cx + _CORE_HALF + 1] = core
        return out


def _log_uniform(bounds: tuple[float, float], u: float) -> float:
    lo, hi = bounds
    return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))


def _overlap(edges: np.ndarray, low: float, m: int) -> np.ndarray:
    """``(m, K)``: the fraction of each fine cell (``K + 1`` edges) inside each of ``m`` unit pixels from ``low``."""
    pix = low + np.arange(m + 1)
    lo = np.maximum(edges[None, :-1], pix[:-1, None])
    hi = np.minimum(edges[None, 1:], pix[1:, None])
    return np.clip(hi - lo, 0.0, None) / (edges[1] - edges[0])


def _core_integrals(prof: Any, xc: float, yc: float, cx: int, cy: int, scale: float) -> np.ndarray:
    """Integrals of ``prof`` (centred at array coordinates ``(xc, yc)``) over the core pixels.

    The core is the ``(2 h + 1)**2`` pixels around ``(cx, cy)``. Level 0 samples it on a grid of
    ``1 / _CORE_STEP0`` pixel with the cusp on a vertex, so no sample lands on the cusp; each next
    level replaces the ``2K x 2K`` cells around the cusp by cells ``_CORE_REFINE`` times smaller.
    Cells are split between pixels by their overlap (axis-aligned, so separable).

    Returns:
        ``(2 h + 1, 2 h + 1)`` pixel integrals, ``[y, x]``.
    """
    m = 2 * _CORE_HALF + 1
    low_x, low_y = cx - _CORE_HALF - 0.5, cy - _CORE_HALF - 0.5
    out = np.zeros((m, m))
    step = 1.0 / _CORE_STEP0
    kx = (math.floor((low_x - xc) / step), math.ceil((low_x + m - xc) / step))
    ky = (math.floor((low_y - yc) / step), math.ceil((low_y + m - yc) / step))
    for level in range(_CORE_LEVELS):
        if level:
            step /= _CORE_REFINE
            kx = ky = (-_CORE_KEEP * _CORE_REFINE, _CORE_KEEP * _CORE_REFINE)
        ex = xc + step * np.arange(kx[0], kx[1] + 1)
        ey = yc + step * np.arange(ky[0], ky[1] + 1)
        nx, ny = ex.size - 1, ey.size - 1
        # fine pixel j's centre is (j - (n - 1) / 2 - offset) fine steps from the profile's centre
        off = (-(kx[0] + 0.5) - (nx - 1) / 2, -(ky[0] + 0.5) - (ny - 1) / 2)
        cells = prof.drawImage(nx=nx, ny=ny, scale=scale * step, method="no_pixel", offset=off).array.astype(np.float64)
        if level < _CORE_LEVELS - 1:
            k = _CORE_KEEP
            cells[-k - ky[0] : k - ky[0], -k - kx[0] : k - kx[0]] = 0.0  # refined by the next level
        out += _overlap(ey, low_y, m) @ cells @ _overlap(ex, low_x, m).T
    return out
