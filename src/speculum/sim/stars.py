"""Stellar spectra observed through an instrument, with known truth (the star model's training set).

A star is one template of a stellar library, or a geometric interpolation between two
neighbouring templates (neighbours in colour, ``log10 F(6800-7200 A) / F(4200-4600 A)``):
``f = f_a ** (1 - w) * f_b ** w`` with ``w ~ U(0, 1)``, which gives intermediate spectral
types rather than the blends of two stars a linear mix would. Template sources
(:data:`STAR_SOURCES`):

* ``templates``: the 10 MaStar stars shipped in ``data/templates.npz`` (no external data);
* ``mastar``: the 65 MaStar hierarchically clustered templates (``mastarhc_v2``; Yan et al.
  2019, ApJ 883, 175), vacuum, log-lambda 1e-4 dex, 3632-10320 A, read from
  ``<library>/MaStarHC_*.fits.gz`` (flux in the primary HDU, ``IVAR``, ``SRES``);
* ``miles``: the 984 MILES stars (Sanchez-Blazquez et al. 2006; Falcon-Barroso et al.
  2011), air wavelengths converted to vacuum, 3540-7410 A only, read from
  ``<library>/MILES_res2.50_star_m*V.fits`` with ``MILES_params.db`` (Teff, log g, [Fe/H]):
  beyond 7410 A (restframe) a MILES star has no data, so on the SDSS grid its red part has
  ``ivar = 0`` and the ``NO_DATA`` mask bit, the partial coverage a survey reader delivers.

Every template is normalised to median one over :data:`~speculum.physics.NORMALIZATION_RANGE`;
pixels a file does not cover (or flags) are interpolated over inside its range and outside
it are no data. The templates are at the spectral resolution of their libraries (MaStar:
the BOSS spectrographs, R ~ 1800-2000; MILES: FWHM 2.5 A), close to SDSS and BOSS, so for
those instruments no further broadening is applied; for DESI each spectrum goes through a
drawn DESI resolution matrix (the galaxy simulator's), a slight over-broadening of the
already instrument-broadened templates.

Observation, in this order (every draw from the block's generator, seeded by
``(seed, block)``, so star ``i`` is the same whichever range it is simulated in):

1. template pair and weight, radial velocity ``v ~ U(0, v_max)`` (``z = v / c``, at most
   ``v_max / c``; the instruments' redshift range starts at 0, so stars recede), reddening
   ``E(B-V)`` exponential with mean ``ebv_mean``, clipped at ``ebv_max``, applied with the
   Cardelli, Clayton & Mathis (1989) Milky-Way law (``R_V = 3.1``), then normalisation;
2. Doppler shift and resampling (:func:`~speculum.physics.resample_log_uniform`, the galaxy
   simulator's forward model), residual telluric absorption up to ``telluric_max`` deep
   (the galaxy simulator's telluric profile), DESI resolution matrices;
3. spectrophotometric calibration: ``1 + sum_k c_k P_k(x)`` (Legendre orders 1-3 in log
   wavelength mapped onto [-1, 1]) of peak ``|d - 1|`` uniform in ``[0, calibration_amplitude]``;
4. the galaxy simulator's noise law: brightness ``B`` log-normal around
   ``snr_median**2 (1 + sky_to_object)`` counts (scatter ``snr_scatter_dex``, clipped at
   3 sigma) with a bright tail (``bright_fraction`` of objects at S/N log-uniform in
   ``bright_snr``), the same sky level ``S = sky_to_object * B_median`` and sky spectrum as
   the galaxies, ``var = a * model + S * a**2 * sky`` with ``a = amplitude / B``; the
   ``SKY_LINE`` bit near bright sky lines;
5. flagged cosmic rays (Poisson mean ``cosmic_rays``; ``ivar = 0``, ``COSMIC_RAY``) and bad
   columns (``bad_column_fraction``; ``BAD_COLUMN``);
6. sky-subtraction residuals at the sky lines, at most ``sky_residual_max_sigma`` noise sigmas;
7. no data outside the template's coverage (``flux = ivar = 0``, ``NO_DATA``).

:meth:`StarConfig.matching` copies the noise, calibration and glitch settings of a galaxy
:class:`~speculum.sim.SimConfig`, so stars and galaxies share one S/N distribution.

Example:
    >>> sim = StarSimulator(StarConfig(instrument="SDSS"))
    >>> stars = sim.simulate(4, seed=1)
    >>> stars.flux.shape, str(stars.object_id[0]), bool((stars.z <= 0.005).all())
    ((4, 3921), 'star-1-000000000', True)
"""

from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from speculum.instruments import PixelMask, air_to_vacuum, get_instrument
from speculum.physics import NORMALIZATION_RANGE, apply_resolution_matrix, resample_log_uniform
from speculum.sim.galaxy import CALIBRATION_ORDER, GalaxySimulator, SimConfig, SimulatedSpectra
from speculum.sim.lines import C_KMS
from speculum.sim.templates import load_templates

__all__ = [
    "STAR_BLOCK_SIZE",
    "STAR_SOURCES",
    "StarConfig",
    "StarLibrary",
    "StarSimulator",
    "ccm89",
    "load_star_library",
    "simulate_stars",
]

STAR_SOURCES = ("templates", "mastar", "miles")
"""Template sources of :class:`StarSimulator` (module docstring)."""
STAR_BLOCK_SIZE = 512
_SEED_TAG = 0x57A2  # separates the stars' random streams from the galaxies' of the same seed
_SKY_HALF_PX = 5
_COLOUR_BLUE, _COLOUR_RED = (4200.0, 4600.0), (6800.0, 7200.0)
_FLOOR = 1e-4  # relative flux floor before the geometric interpolation (M stars reach ~0 in the blue)
_LIBRARY_DIRS = {"mastar": "stars/mastarhc_v2", "miles": "stars/miles"}


def ccm89(wave: np.ndarray, r_v: float = 3.1) -> np.ndarray:
    """Cardelli, Clayton & Mathis (1989, ApJ 345, 245) extinction ``A(lambda) / A_V``.

    Their eqs. 2-3 (infrared, ``0.3 <= x < 1.1``) and 3a-3b (optical, ``1.1 <= x <= 3.3``),
    ``x = 1 / lambda`` in inverse microns; clipped to those ends outside 3030-33,000 A.

    Args:
        wave: Vacuum wavelengths in Angstrom, any shape.
        r_v: ``A_V / E(B-V)``.

    Example:
        >>> round(float(ccm89(np.array([5495.0]))[0]), 2)  # V band: A_V / A_V
        1.0
    """
    x = np.clip(1e4 / np.asarray(wave, dtype=np.float64), 0.3, 3.3)
    y = x - 1.82
    a_opt = np.polynomial.polynomial.polyval(y, (1.0, 0.17699, -0.50447, -0.02427, 0.72085, 0.01979, -0.77530, 0.32999))
    b_opt = np.polynomial.polynomial.polyval(y, (0.0, 1.41338, 2.28305, 1.07233, -5.38434, -0.62251, 5.30260, -2.09002))
    ir = x < 1.1
    a = np.where(ir, 0.574 * x**1.61, a_opt)
    b = np.where(ir, -0.527 * x**1.61, b_opt)
    return a + b / r_v


@dataclass(frozen=True)
class StarLibrary:
    """Stellar templates on the shipped restframe grid, sorted by colour (blue to red).

    Attributes:
        source: One of :data:`STAR_SOURCES`.
        names: Template names ``(n,)``.
        flux: Restframe spectra ``(n, L_t)``, float32, median one over the normalisation
            range, 0 outside each template's coverage; grid ``10 ** (log_start + log_step i)``.
        coverage: First and last covered restframe wavelength ``(n, 2)``, vacuum Angstrom.
        colour: ``log10`` of the median flux at 6800-7200 A over that at 4200-4600 A ``(n,)``.
        params: ``teff`` (K), ``logg``, ``feh`` ``(n,)`` each (NaN where the library has none).
        log_start: ``log10`` of the grid's first wavelength.
        log_step: Grid step in dex.
    """

    source: str
    names: np.ndarray
    flux: np.ndarray
    coverage: np.ndarray
    colour: np.ndarray
    params: dict[str, np.ndarray]
    log_start: float
    log_step: float

    def __len__(self) -> int:
        return len(self.names)

    @property
    def wave(self) -> np.ndarray:
        return 10 ** (self.log_start + self.log_step * np.arange(self.flux.shape[1]))


def _grid() -> tuple[float, float, np.ndarray]:
    t = load_templates()
    return t.log_start, t.log_step, np.asarray(t.wave)


def _on_grid(wave_in: np.ndarray, flux_in: np.ndarray, good: np.ndarray, wave: np.ndarray) -> tuple[np.ndarray, tuple]:
    """One spectrum onto ``wave``: interpolated over bad pixels inside its range, 0 outside."""
    w, f = wave_in[good], flux_in[good]
    lo, hi = float(w[0]), float(w[-1])
    out = np.where((wave >= lo) & (wave <= hi), np.interp(wave, w, f), 0.0)
    return out, (lo, hi)


def _build(source: str, names, spectra, coverage, params) -> StarLibrary:
    log_start, log_step, wave = _grid()
    flux = np.array(spectra, dtype=np.float64)
    cov = np.array(coverage, dtype=np.float64)
    norm_sel = (wave > NORMALIZATION_RANGE[0]) & (wave < NORMALIZATION_RANGE[1])
    norm = np.array([np.median(f[norm_sel & (f > 0)]) for f in flux])
    flux = flux / norm[:, None]
    blue = (wave > _COLOUR_BLUE[0]) & (wave < _COLOUR_BLUE[1])
    red = (wave > _COLOUR_RED[0]) & (wave < _COLOUR_RED[1])
    colour = np.log10(np.median(flux[:, red], 1).clip(1e-6) / np.median(flux[:, blue], 1).clip(1e-6))
    order = np.argsort(colour, kind="stable")
    return StarLibrary(
        source=source,
        names=np.asarray(names)[order],
        flux=flux[order].astype(np.float32),
        coverage=cov[order],
        colour=colour[order],
        params={k: np.asarray(v, dtype=np.float64)[order] for k, v in params.items()},
        log_start=log_start,
        log_step=log_step,
    )


def _shipped() -> StarLibrary:
    t = load_templates()
    with resources.files("speculum.data").joinpath("templates.npz").open("rb") as fh, np.load(fh) as d:
        names = d["star_names"] if "star_names" in d else np.array([f"star{i}" for i in range(len(t.stars))])
    n = len(t.stars)
    cov = np.tile([float(t.wave[0]), float(t.wave[-1])], (n, 1))  # the shipped stars were extended to the grid ends
    nan = np.full(n, np.nan)
    return _build("templates", names, np.asarray(t.stars), cov, {"teff": nan, "logg": nan, "feh": nan})


def _mastar(folder: Path) -> StarLibrary:
    from astropy.io import fits

    files = sorted(glob.glob(str(folder / "MaStarHC_*.fits.gz")))
    if not files:
        raise FileNotFoundError(f"{folder}: no MaStarHC_*.fits.gz files (the mastarhc_v2 templates)")
    _, _, wave = _grid()
    names, spectra, cov = [], [], []
    for path in files:
        with fits.open(path) as hdul:
            hdr, flux = hdul[0].header, np.asarray(hdul[0].data, dtype=np.float64)
            ivar = np.asarray(hdul["IVAR"].data, dtype=np.float64) if "IVAR" in hdul else np.ones_like(flux)
        w = 10 ** (hdr["CRVAL1"] + hdr["CDELT1"] * (np.arange(flux.size) + 1 - hdr["CRPIX1"]))  # vacuum
        good = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0) & (flux > 0)
        f, c = _on_grid(w, flux, good, wave)
        names.append(Path(path).name.split(".")[0])
        spectra.append(f)
        cov.append(c)
    nan = np.full(len(names), np.nan)
    return _build("mastar", names, spectra, cov, {"teff": nan, "logg": nan, "feh": nan})


def _miles(folder: Path) -> StarLibrary:
    from astropy.io import fits

    files = sorted(glob.glob(str(folder / "MILES_res2.50_star_m*V.fits")))
    if not files:
        raise FileNotFoundError(f"{folder}: no MILES_res2.50_star_m*V.fits files")
    params: dict[str, tuple[float, float, float]] = {}
    db = folder / "MILES_params.db"
    if db.exists():
        for line in db.read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and not line.lstrip().startswith("#"):
                teff, logg, feh = (float(p) for p in parts[1:])
                params[parts[0]] = (teff if teff < 99999 else np.nan, logg if logg < 9999 else np.nan,
                                    feh if feh < 9999 else np.nan)  # fmt: skip
    _, _, wave = _grid()
    names, spectra, cov, par = [], [], [], []
    for path in files:
        with fits.open(path) as hdul:
            hdr, flux = hdul[0].header, np.asarray(hdul[0].data, dtype=np.float64)
        w_air = hdr["CRVAL1"] + hdr["CDELT1"] * (np.arange(flux.size) + 1 - hdr["CRPIX1"])
        good = np.isfinite(flux) & (flux > 0)
        if good.mean() < 0.9:  # a damaged file: skip it
            continue
        f, c = _on_grid(air_to_vacuum(w_air), flux, good, wave)
        num = Path(path).name.split("_m")[-1][:4]
        names.append(f"MILES_m{num}")
        spectra.append(f)
        cov.append(c)
        par.append(params.get(num, (np.nan, np.nan, np.nan)))
    p = np.array(par, dtype=np.float64).reshape(-1, 3)
    return _build("miles", names, spectra, cov, {"teff": p[:, 0], "logg": p[:, 1], "feh": p[:, 2]})


def default_library_path(source: str) -> Path:
    """Where ``source``'s files are by default: ``$SPECULUM_SHARED_DATA`` (or ``../shared/data``) ``/stars/...``."""
    root = Path(os.environ.get("SPECULUM_SHARED_DATA", "../shared/data"))
    return root / _LIBRARY_DIRS[source]


@lru_cache(maxsize=4)
def load_star_library(source: str = "templates", path: str | None = None) -> StarLibrary:
    """The templates of ``source`` (:data:`STAR_SOURCES`) as a :class:`StarLibrary` (cached).

    Args:
        source: ``templates`` (shipped), ``mastar`` or ``miles``.
        path: Folder of the library's files (``mastar``, ``miles``; default
            :func:`default_library_path`).

    Raises:
        ValueError: Unknown source.
        FileNotFoundError: The library's files are not in ``path``.
    """
    if source not in STAR_SOURCES:
        raise ValueError(f"source: expected one of {STAR_SOURCES}, got {source!r}")
    if source == "templates":
        return _shipped()
    folder = Path(path) if path is not None else default_library_path(source)
    return _mastar(folder) if source == "mastar" else _miles(folder)


@dataclass(frozen=True)
class StarConfig:
    """What to simulate (saved with every simulated star data set).

    Attributes:
        instrument: ``"SDSS"``, ``"BOSS"`` or ``"DESI"``.
        source: Template source, one of :data:`STAR_SOURCES`.
        library: Folder of the ``mastar`` / ``miles`` files (default :func:`default_library_path`).
        interpolate: Interpolate between colour neighbours (``False``: single templates).
        v_max: Largest radial velocity, km/s (``z = v / c`` uniform in ``[0, v_max / c]``).
        ebv_mean: Mean interstellar ``E(B-V)`` (exponential), mag.
        ebv_max: Largest ``E(B-V)``, mag.
        r_v: ``R_V`` of the CCM89 extinction law.
        telluric_max: Deepest residual telluric absorption (fraction).
        calibration_amplitude, snr_median, snr_scatter_dex, sky_to_object, cosmic_rays,
        bad_column_fraction, sky_residual_max_sigma, bright_fraction, bright_snr: As
            :class:`~speculum.sim.SimConfig` (:meth:`matching` copies them from one).
    """

    instrument: str = "SDSS"
    source: str = "templates"
    library: str | None = None
    interpolate: bool = True
    v_max: float = 300.0
    ebv_mean: float = 0.04
    ebv_max: float = 0.3
    r_v: float = 3.1
    telluric_max: float = 0.06
    calibration_amplitude: float = 0.04
    snr_median: float = 10.0
    snr_scatter_dex: float = 0.3
    sky_to_object: float = 1.5
    cosmic_rays: float = 1.0
    bad_column_fraction: float = 0.05
    sky_residual_max_sigma: float = 2.0
    bright_fraction: float = 0.15
    bright_snr: tuple[float, float] = (30.0, 100.0)

    def __post_init__(self) -> None:
        get_instrument(self.instrument)
        if self.source not in STAR_SOURCES:
            raise ValueError(f"source: expected one of {STAR_SOURCES}, got {self.source!r}")
        if not 0.0 <= self.v_max <= 0.005 * C_KMS:
            raise ValueError(f"v_max: expected 0 <= v_max <= {0.005 * C_KMS:.0f} km/s (z <= 0.005), got {self.v_max}")
        if not (self.ebv_mean >= 0 and self.ebv_max >= 0 and self.r_v > 0):
            raise ValueError(
                f"ebv_mean, ebv_max, r_v: expected >= 0, >= 0, > 0, got {self.ebv_mean}, {self.ebv_max}, {self.r_v}"
            )
        for name in ("telluric_max", "calibration_amplitude", "bad_column_fraction", "bright_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}: expected a fraction in [0, 1), got {getattr(self, name)}")
        if self.snr_median <= 0 or self.sky_to_object <= 0 or self.cosmic_rays < 0:
            raise ValueError(
                f"snr_median, sky_to_object, cosmic_rays: expected > 0, > 0, >= 0, "
                f"got {self.snr_median}, {self.sky_to_object}, {self.cosmic_rays}"
            )
        lo, hi = (float(v) for v in self.bright_snr)
        if not 0 < lo <= hi:
            raise ValueError(f"bright_snr: expected (low, high) with 0 < low <= high, got {self.bright_snr!r}")

    @classmethod
    def matching(cls, galaxies: SimConfig, **changes) -> StarConfig:
        """A star config with the instrument, noise and glitch settings of a galaxy :class:`SimConfig`."""
        shared = {f.name: getattr(galaxies, f.name) for f in fields(cls) if hasattr(galaxies, f.name)}
        return cls(**{**shared, **changes})

    @property
    def brightness_median(self) -> float:
        return self.snr_median**2 * (1 + self.sky_to_object)

    @property
    def sky_counts(self) -> float:
        return self.sky_to_object * self.brightness_median

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> StarConfig:
        d = {k: v for k, v in d.items() if k in {f.name for f in fields(cls)}}
        if "bright_snr" in d:
            d["bright_snr"] = tuple(float(v) for v in d["bright_snr"])
        return cls(**d)


def _uniform(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, dtype=torch.float64)


class StarSimulator:
    """Vectorised star-spectrum simulator for one :class:`StarConfig` (module docstring).

    Attributes:
        library: The :class:`StarLibrary` drawn from.
        sky: Sky spectrum shape on the observed grid (the galaxy simulator's), median 1.
    """

    def __init__(self, config: StarConfig | None = None, library: StarLibrary | None = None) -> None:
        self.config = cfg = config or StarConfig()
        self.instrument = get_instrument(cfg.instrument)
        self.library = library or load_star_library(cfg.source, cfg.library)
        lib = self.library
        # the galaxy simulator of the same instrument lends its sky, tellurics and DESI resolution
        self._galaxies = GalaxySimulator(SimConfig(instrument=cfg.instrument))
        self.sky = self._galaxies.sky.float()
        self.telluric = self._galaxies.telluric.float()
        self.wave_obs = self.instrument.wave(torch.float64)
        self.rest = torch.from_numpy(np.log(np.clip(lib.flux, _FLOOR, None)).astype(np.float32))
        self.covered = torch.from_numpy(lib.flux > 0)
        wave_t = torch.from_numpy(lib.wave)
        self.extinction = torch.from_numpy(ccm89(lib.wave, cfg.r_v)).float()  # A(lambda) / A_V
        self.norm_sel = torch.nonzero((wave_t > NORMALIZATION_RANGE[0]) & (wave_t < NORMALIZATION_RANGE[1])).squeeze(1)
        self.cal_basis = self._galaxies.calibration_basis  # the galaxies' calibration distortions
        self._sky_pix, self._sky_even, self._sky_odd = self._galaxies._sky_residual_profiles()  # the galaxies' shapes

    # ------------------------------------------------------------------ public API
    def simulate(self, n: int, seed: int = 0, start: int = 0) -> SimulatedSpectra:
        """Simulate stars ``start … start + n - 1`` of the data set ``seed`` (deterministic per index)."""
        parts = list(self.iter_blocks(n, seed, start))
        if not parts:
            return self._block(seed, 0).select(slice(0, 0))
        return SimulatedSpectra.concatenate(parts) if len(parts) > 1 else parts[0]

    def iter_blocks(self, n: int, seed: int = 0, start: int = 0) -> Iterator[SimulatedSpectra]:
        """Like :meth:`simulate`, block by block (bounded memory)."""
        if n < 0 or start < 0:
            raise ValueError(f"n, start: expected non-negative integers, got {n}, {start}")
        size, stop = STAR_BLOCK_SIZE, start + n
        for b in range(start // size, (stop - 1) // size + 1 if n else 0):
            lo, hi = max(start, b * size), min(stop, (b + 1) * size)
            part = self._block(seed, b)
            yield part if hi - lo == size else part.select(slice(lo - b * size, hi - b * size))

    def restframe(self, first: np.ndarray, second: np.ndarray, weight: np.ndarray, ebv: np.ndarray) -> torch.Tensor:
        """Restframe models ``(n, L_t)`` of template pairs (library rows), weights and ``E(B-V)``, normalised.

        ``exp((1 - w) ln f_a + w ln f_b) * 10 ** (-0.4 E(B-V) R_V A(lambda)/A_V)``, median one over
        the normalisation range; 0 outside the pair's common coverage.
        """
        a, b = torch.as_tensor(first).long(), torch.as_tensor(second).long()
        w = torch.as_tensor(weight, dtype=torch.float32)[:, None]
        log_f = (1 - w) * self.rest[a] + w * self.rest[b]
        a_v = torch.as_tensor(ebv, dtype=torch.float32)[:, None] * self.config.r_v
        f = torch.exp(log_f - 0.4 * math.log(10) * a_v * self.extinction)
        f = f * (self.covered[a] & self.covered[b])
        return f / f[:, self.norm_sel].median(1, keepdim=True).values.clamp_min(1e-12)

    # ------------------------------------------------------------------ one block
    def _block(self, seed: int, block: int) -> SimulatedSpectra:
        cfg, lib, wave = self.config, self.library, self.wave_obs
        words = np.random.SeedSequence([seed, block, _SEED_TAG]).generate_state(2, dtype=np.uint32)
        gen = torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))
        n, length = STAR_BLOCK_SIZE, len(wave)
        # 1. the star: template pair, weight, velocity, reddening
        n_lib = len(lib)
        if cfg.interpolate and n_lib > 1:
            first = torch.randint(0, n_lib - 1, (n,), generator=gen)
            second = first + 1
            weight = _uniform(gen, n).float()
        else:
            first = torch.randint(0, n_lib, (n,), generator=gen)
            second, weight = first.clone(), torch.zeros(n)
        v = cfg.v_max * _uniform(gen, n)
        z = v / C_KMS
        ebv = (-cfg.ebv_mean * torch.log1p(-_uniform(gen, n))).clamp(max=cfg.ebv_max)
        rest = self.restframe(first, second, weight, ebv)
        # 2. Doppler shift, tellurics, DESI resolution
        model, valid = resample_log_uniform(rest, lib.log_start, lib.log_step, z, wave)
        cov = torch.from_numpy(np.stack([np.maximum(lib.coverage[first, 0], lib.coverage[second, 0]),
                                         np.minimum(lib.coverage[first, 1], lib.coverage[second, 1])], 1))  # fmt: skip
        obs_cov = cov * (1 + z[:, None])
        missing = ~valid | (wave[None, :] < obs_cov[:, :1]) | (wave[None, :] > obs_cov[:, 1:])
        model = torch.where(missing, torch.zeros_like(model), model).float()
        telluric_depth = (cfg.telluric_max * _uniform(gen, n)).float()
        model = model * (1 - telluric_depth[:, None] * self.telluric)
        resolution = None
        if self.instrument.name == "DESI":
            resolution = self._galaxies._resolution_matrices(self._galaxies._resolution_sigma(gen, n))
            model = apply_resolution_matrix(model, resolution)
        # 3. calibration
        shape = torch.randn(n, CALIBRATION_ORDER, generator=gen, dtype=torch.float64).float()
        peak = cfg.calibration_amplitude * _uniform(gen, n).float()
        raw = shape @ self.cal_basis
        calibration = shape * (peak / raw.abs().amax(1).clamp_min(1e-6))[:, None]
        model = model * (1.0 + calibration @ self.cal_basis)
        # 4. noise (the galaxy simulator's law)
        amplitude = model[:, int(0.3 * length) : int(0.7 * length)].median(dim=1).values.clamp_min(1e-6)
        brightness = cfg.brightness_median * 10 ** (
            cfg.snr_scatter_dex * torch.randn(n, generator=gen, dtype=torch.float64).clamp(-3.0, 3.0)
        )
        lo, hi = (float(s) for s in cfg.bright_snr)
        bright = _uniform(gen, n) < cfg.bright_fraction
        s2 = (lo * (hi / lo) ** _uniform(gen, n)) ** 2
        brightness = torch.where(bright, (s2 + torch.sqrt(s2**2 + 4 * s2 * cfg.sky_counts)) / 2, brightness)
        a = (amplitude / brightness).float()
        var = a[:, None] * model.clamp_min(0) + (cfg.sky_counts * a**2)[:, None] * self.sky
        sigma = var.sqrt()
        snr = torch.where(missing, torch.full_like(model, float("nan")), model / sigma).nanmedian(dim=1).values
        flux = model + sigma * torch.randn(n, length, generator=gen)
        ivar = 1.0 / var
        mask = torch.zeros(n, length, dtype=torch.int32)
        mask[:, torch.from_numpy(self.instrument.sky_mask.copy())] |= int(PixelMask.SKY_LINE)
        # 5. cosmic rays and bad columns, flagged
        n_cr = torch.poisson(torch.full((n,), cfg.cosmic_rays, dtype=torch.float64), generator=gen).long()
        rows = torch.repeat_interleave(torch.arange(n), n_cr)
        if len(rows):
            start = torch.randint(0, length - 2, (len(rows),), generator=gen)
            two = torch.rand(len(rows), generator=gen) < 0.4
            amp = 10 + 90 * torch.rand(len(rows), generator=gen)
            r_idx, p_idx = torch.cat([rows, rows[two]]), torch.cat([start, start[two] + 1])
            flux[r_idx, p_idx] += torch.cat([amp, amp[two]]) * sigma[r_idx, p_idx]
            mask[r_idx, p_idx] |= int(PixelMask.COSMIC_RAY)
            ivar[r_idx, p_idx] = 0
        for i in torch.nonzero(_uniform(gen, n) < cfg.bad_column_fraction).squeeze(1).tolist():
            width = int(torch.randint(5, 21, (1,), generator=gen))
            p0 = int(torch.randint(0, length - width, (1,), generator=gen))
            flux[i, p0 : p0 + width] += float(20 * (_uniform(gen, 1) - 0.5)) * float(amplitude[i])
            mask[i, p0 : p0 + width] |= int(PixelMask.BAD_COLUMN)
            ivar[i, p0 : p0 + width] = 0
        # 6. sky-subtraction residuals
        sky_residual = self._sky_residuals(gen, n, length)
        flux += sky_residual * sigma
        # 7. no data outside the coverage
        flux[missing], ivar[missing] = 0.0, 0.0
        mask[missing] |= int(PixelMask.NO_DATA)
        observed = (~missing).int()
        first_px, last_px = observed.argmax(1), length - 1 - observed.flip(1).argmax(1)
        fa, fb, w = first.numpy(), second.numpy(), weight.double().numpy()
        truth = {
            "class": np.full(n, "star"),
            "source": np.full(n, lib.source),
            "template": lib.names[fa],
            "template_b": lib.names[fb],
            "template_weight": w.astype(np.float32),
            "colour": ((1 - w) * lib.colour[fa] + w * lib.colour[fb]).astype(np.float32),
            **{k: ((1 - w) * p[fa] + w * p[fb]).astype(np.float32) for k, p in lib.params.items()},
            "rv_kms": v.float().numpy(),
            "ebv": ebv.float().numpy(),
            "snr": snr.numpy(),
            "brightness": brightness.float().numpy(),
            "amplitude": amplitude.numpy().astype(np.float32),
            "telluric_depth": telluric_depth.numpy(),
            "calibration": calibration.numpy(),
            "sky_residual": sky_residual.abs().amax(1).numpy(),
            "coverage": np.where(missing.any(1).numpy(), "partial", "full"),
            "coverage_range": torch.stack([wave[first_px], wave[last_px]], 1).float().numpy(),
            "anomaly_params": np.array([json.dumps({}) for _ in range(n)]),
        }
        ids = [f"star-{seed}-{block * STAR_BLOCK_SIZE + i:09d}" for i in range(n)]
        return SimulatedSpectra(
            object_id=ids,
            flux=flux.numpy(),
            ivar=ivar.numpy(),
            mask=mask.numpy(),
            z=z.numpy(),
            noiseless=model.numpy(),
            truth=truth,
            windows=[np.zeros((0, 2)) for _ in range(n)],
            resolution=None if resolution is None else resolution.numpy(),
        )

    # ------------------------------------------------------------------ sky residuals
    def _sky_residuals(self, gen: torch.Generator, n: int, length: int) -> torch.Tensor:
        """Residuals ``(n, L)`` in noise sigmas, clipped at ``sky_residual_max_sigma`` (as the galaxies')."""
        k = len(self._sky_pix)
        scale = _uniform(gen, n).float()
        amp = (2 * _uniform(gen, n, k) - 1).float() * scale[:, None]
        phase = (2 * math.pi * _uniform(gen, n, k)).float()
        prof = torch.cos(phase)[..., None] * self._sky_even + torch.sin(phase)[..., None] * self._sky_odd
        prof = prof / prof.abs().amax(-1, keepdim=True).clamp_min(1e-6)
        lim = self.config.sky_residual_max_sigma
        vals = lim * amp[..., None] * prof
        excess = torch.zeros(n * length)
        flat = self._sky_pix[None] + (torch.arange(n) * length)[:, None, None]
        excess.index_add_(0, flat.reshape(-1), vals.reshape(-1))
        return excess.view(n, length).clamp(-lim, lim)


def simulate_stars(n: int, config: StarConfig | None = None, seed: int = 0) -> SimulatedSpectra:
    """Simulate ``n`` stars with :class:`StarSimulator` (convenience wrapper)."""
    return StarSimulator(config).simulate(n, seed=seed)
