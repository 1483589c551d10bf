"""Galaxy spectra with known truth and labelled anomalies, observed through an instrument.

Restframe model (vacuum, log10 grid of 1e-4 dex from 1800 to 10500 A):

* **Stars**: BC03 simple stellar populations (10 ages x 4 metallicities) combined by a
  delayed-tau star-formation history ``SFR(t) ~ t exp(-t / tau)`` with optional quenching
  and a recent burst, metallicity interpolated in ``log Z``.
* **Velocity dispersion and instrument resolution**: the SSPs are pre-broadened to a
  ladder of total Gaussian widths ``sqrt(sigma_v^2 + sigma_instrument^2)`` and each
  galaxy interpolates linearly between the two nearest rungs.
* **Dust**: Calzetti et al. (2000) attenuation of the stars (``A_V``) and of the
  nebular lines (``A_V / 0.44``).
* **Emission lines** (Halpha, Hbeta, Hgamma, Hdelta, [O II] 3726/3729, [Ne III],
  [O III] 4959/5007, He I, [O I], [N II] 6548/6583, [S II] 6716/6731): Halpha equivalent
  width from the specific star-formation rate, Case-B Balmer ratios, [N II]/Halpha and
  [O III]/Hbeta drawn below the Kauffmann et al. (2003) star-forming locus (or
  LINER-like for quenched galaxies), fixed doublet ratios (3.05, 2.98) and density-
  sensitive ones ([O II], [S II]) drawn in their physical ranges; ``seyfert_fraction`` of
  the galaxies (any host) have Seyfert narrow lines, quenched galaxies LINER-like ones with
  EW(Halpha) ~ 0.3-3 A (truth ``line_class``); metal-poor dwarfs and post-starbursts
  (truth ``galaxy_kind``).

Observation: redshift (the physics module's :func:`resample_log_uniform`, the same
forward model the autoencoder uses), lines rendered analytically at ``lambda (1 + z)``,
residual telluric absorption (O2 A/B, H2O; up to 6 % deep, as after a pipeline's telluric
correction), then the instrument's line spread:

* SDSS/BOSS: one Gaussian of the instrument's resolution ``R`` (folded into the SSP
  broadening and the line widths).
* DESI: a banded resolution matrix per spectrum, ``(11, L)`` in the DESI layout of
  :func:`~speculum.physics.apply_resolution_matrix`, whose Gaussian width varies with
  wavelength and from fibre to fibre as measured on real DESI coadds
  (:data:`DESI_RESOLUTION_SIGMA`); the observed model is exactly that matrix applied to
  the redshifted, resampled model, and the matrix is stored with the spectrum.

Noise: each object has a brightness ``B`` (continuum counts per pixel at its typical
level, log-normal) and the sky a fixed level ``S`` counts per pixel (at the sky
spectrum's median; smooth continuum plus the shipped night-sky lines), the same for every
object, so the variance in counts is ``object + sky`` and the S/N follows from the
brightness: faint objects are sky-dominated. In the normalised flux units of the output,
with ``a = amplitude / B``: ``var = a * model + S * a**2 * sky``. Cosmic rays and bad columns
are added and flagged in the mask (with ``ivar = 0``) as a pipeline would, and pixels near
bright sky lines carry the ``SKY_LINE`` bit. Observed flux densities equal the restframe
ones at ``lambda / (1+z)`` (no ``(1+z)`` dimming: amplitudes are drawn directly).

Realism (each a :class:`SimConfig` field; 0 switches it off with the same random stream):
spectrophotometric calibration residuals (a smooth multiplicative distortion of up to a few
per cent per spectrum), sky-subtraction residuals at the sky lines of normal spectra (at most
2 sigma, below the 5-sigma ``artefact`` anomalies), partial wavelength coverage (a missing
red camera or blue end: ``ivar = 0`` and ``NO_DATA``), the observed range of narrow lines
(Seyfert and LINER-like ratios and strengths on the BPT diagram, metal-poor dwarfs with strong
[O III] and weak [N II], post-starburst galaxies with A-star Balmer absorption) and a high-S/N
tail of nearby bright galaxies (S/N 30-100).

Anomalies (rate and classes configurable), each with its wavelength windows in the truth;
each class is a small registered class in :mod:`speculum.sim.anomalies`:

* ``agn``: broad Balmer and Mg II lines (FWHM 2000-8000 km/s) plus a power-law continuum;
* ``star_blend``: a MaStar star at ``z ~ 0`` adding 20-60 % of the flux;
* ``reddened``: ``A_V`` = 2.5-5 mag;
* ``odd_lines``: extreme [O III]/Hbeta and [Ne III], or double-peaked lines (together at
  least three times the lines of a galaxy with EW(Halpha) = 10 A);
* ``pair``: a second galaxy at a higher redshift adding 30-60 % of the flux;
* ``artefact``: an *unflagged* instrumental artefact on pixels the mask leaves usable: a
  3-pixel spike (a sky-subtraction residual at a faint, unmasked sky line, or a hot
  pixel), a bad column, each at least ``artefact_min_sigma`` times the noise, or a flux
  step of at least ``step_min_sigma`` times the noise (median over the step).

``SimConfig(render_anomalies=False)`` and ``SimConfig(emission_lines=False)`` draw the
same objects (same random stream, anomaly parameters and windows) but leave the anomalies or the
emission lines out of the spectra, so differences against the default isolate them.

Everything is drawn from a seed, in blocks of 512 objects seeded by ``(seed, block)``,
so object ``i`` is the same whichever range it is simulated in.

Example:
    >>> sim = GalaxySimulator(SimConfig(instrument="SDSS", anomaly_rate=0.1))
    >>> batch = sim.simulate(8, seed=1)
    >>> batch.flux.shape, batch.z.shape
    ((8, 3921), (8,))
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from types import MappingProxyType

import numpy as np
import torch

from speculum.instruments import Instrument, PixelMask, get_instrument, sky_lines
from speculum.physics import (
    NORMALIZATION_RANGE,
    apply_resolution_matrix,
    convolve_lsf,
    gaussian_kernel,
    resample_log_uniform,
)
from speculum.schema import spectra_columns
from speculum.sim.anomalies import ANOMALY_CLASSES, Anomaly, Stage, anomaly_registry
from speculum.sim.block import BlockState, uniform
from speculum.sim.lines import C_KMS, NARROW_LINES
from speculum.sim.templates import Templates, load_templates

__all__ = [
    "BLOCK_SIZE",
    "CLASSES",
    "DESI_RESOLUTION_SIGMA",
    "GalaxySimulator",
    "SimConfig",
    "SimulatedSpectra",
    "simulate_spectra",
]

logger = logging.getLogger(__name__)

CLASSES = ("normal", *ANOMALY_CLASSES)
BLOCK_SIZE = 512

# observed-frame telluric bands (A): O2 B and A bands, H2O; relative residual strengths
TELLURIC_BANDS = ((6867, 6884, 0.5), (7594, 7621, 1.0), (7170, 7330, 0.3), (8130, 8350, 0.3), (8940, 9300, 0.4))
_SIGMA_LADDER = (55.0, 80.0, 115.0, 160.0, 220.0, 300.0, 400.0)  # total km/s
_SIGMA_TEMPLATE = 58.0  # intrinsic resolution of the BC03 (STELIB/MILES) SSPs, km/s

DESI_RESOLUTION_SIGMA = MappingProxyType(
    {
        # camera: (lambda_mid, lambda_range, mean (c0, c1, c2), fibre-to-fibre sd (c0, c1, c2), fitted sigma (min, max))
        "B": (4700.0, 2200.0, (0.8588, -0.0160, -0.0548), (0.0299, 0.0419, 0.0242), (0.797, 0.893)),
        "R": (6690.0, 1860.0, (0.8086, 0.0013, -0.0474), (0.0036, 0.0281, 0.0304), (0.781, 0.817)),
        "Z": (8672.0, 2304.0, (0.9262, 0.0422, 0.0704), (0.0351, 0.0045, 0.1807), (0.885, 0.983)),
    }
)
"""Gaussian-equivalent width of DESI resolution matrices, in pixels of 0.8 A, per camera.

``sigma(lambda) = c0 + c1 x + c2 x**2`` with ``x = (lambda - lambda_mid) / lambda_range``.
Measured on the real coadds in the shared data (``desi/coadd-4-80613-thru20210324``,
``desi/coadd-special-dark-27247`` and fibre 0 of ``desi/spectra-5-169-thru20210419``;
that file's 5 adjacent fibres agree within 0.02 %): for every pixel, the second moment
of the 11 stored diagonals (offsets ``5 … -5``, normalised by their sum, ignoring pixels
whose sum is < 0.5), a quadratic fit per camera and fibre, then the mean and the sample
standard deviation of the three fits' coefficients. Simulated fibres draw each coefficient
from a normal of that mean and spread; the result is clipped to the range the three fits
span (last entry) widened by the fibre spread of ``c0``. The cameras overlap at
5760-5800 A (B/R) and 7520-7620 A (R/Z), where the widths are blended linearly.
"""
_DESI_OVERLAPS = ((5760.0, 5800.0), (7520.0, 7620.0))

CALIBRATION_ORDER = 3
"""Highest Legendre order of the spectrophotometric calibration distortion (orders 1 … 3)."""

CAMERA_SPLIT = MappingProxyType({"SDSS": 6000.0, "BOSS": 6300.0, "DESI": 5800.0})
"""Observed wavelength (A) where each instrument's blue camera hands over to the red one
(SDSS and BOSS dichroics near 6000 and 6300 A; DESI's B/R overlap at 5760-5800 A): a spectrum
whose red camera is missing has no data beyond it."""
_SKY_HALF_PX = 5  # half width (pixels) of a sky-line residual's profile
_KEEP_NORM_A = 100.0  # partial coverage keeps this much (A) of the normalisation window
_RES_DIAG = 11


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. Saved with every simulated data set.

    Attributes:
        instrument: ``"SDSS"``, ``"BOSS"`` or ``"DESI"``.
        anomaly_rate: Fraction of spectra that are anomalies.
        anomaly_classes: Which anomaly classes to draw from (uniformly): names registered
            in :mod:`speculum.sim.anomalies` (default: the built-in :data:`ANOMALY_CLASSES`).
        redshift: ``"sdss-mgs"`` (``dN/dz ~ z^2 exp(-(z/0.071)^1.5)``, median 0.10, like
            the SDSS main galaxy sample) or ``"uniform"``.
        z_min: Smallest redshift.
        z_max: Largest redshift; ``None`` means the instrument's upper limit.
        snr_median: S/N of an object of median brightness at its typical level against
            the median sky (per-pixel medians of the continuum S/N come out 0-20 % lower).
        snr_scatter_dex: Log-normal scatter of the object brightness, dex (the S/N
            follows from the brightness and the fixed sky).
        sky_to_object: Sky-to-object continuum ratio (in counts) of an object of median
            brightness; it fixes the sky level, the same for every object.
        cosmic_rays: Mean number of (flagged) cosmic rays per spectrum.
        bad_column_fraction: Fraction of spectra with one flagged bad column.
        artefact_min_sigma: Smallest amplitude of an artefact spike or column, in units of
            the pixel's noise sigma (amplitudes are drawn from 1-10x this for spikes, 2-6x
            for columns).
        step_min_sigma: Smallest depth of an artefact flux step, in units of the noise
            sigma (median over the step's pixels).
        render_anomalies: ``False`` draws every anomaly (same parameters, windows, random
            stream) but leaves it out of the spectra: the anomaly-free twin of each object.
        emission_lines: ``False`` leaves the narrow emission lines out (same objects).
        calibration_amplitude: Spectrophotometric calibration residuals: each spectrum is
            multiplied by a smooth distortion (Legendre orders 1-3 in log wavelength) whose peak
            ``max |d - 1|`` is uniform in ``[0, calibration_amplitude]`` (default 0.05: SDSS
            spectrophotometry agrees with the photometry to a few per cent, ~4 % rms). Truth
            ``calibration``; :meth:`GalaxySimulator.calibration_curve` evaluates it. 0: off.
        sky_residual_max_sigma: Sky-subtraction residuals at the sky lines of every spectrum,
            at most this many noise sigmas (default 2; must stay below ``artefact_min_sigma``,
            the smallest ``artefact`` anomaly). Truth ``sky_residual``: each spectrum's largest,
            in sigmas. 0 switches them off.
        partial_coverage_fraction: Fraction of normal galaxies with part of the range missing
            (``ivar = 0``, ``NO_DATA``): the red camera (beyond :data:`CAMERA_SPLIT`) or the
            blue end, keeping 100 A of the normalisation window. Truth ``coverage``,
            ``coverage_range``. (Default 0.05; an encoder that must handle missing ranges
            needs more in training: see ``tests/test_sim_realism.py``.)
        seyfert_fraction: Fraction of galaxies (any host) with Seyfert narrow lines.
        dwarf_fraction: Fraction of metal-poor star-forming dwarfs (lowest SSP metallicity,
            recent burst, strong [O III], weak [N II], little dust, low velocity dispersion).
        post_starburst_fraction: Fraction of post-starburst (E+A) galaxies: a burst of 10-40 %
            of the mass 0.1-1.5 Gyr ago and no star formation since. Truth ``galaxy_kind``
            (``galaxy``, ``dwarf``, ``post_starburst``).
        bright_fraction: Fraction of objects in the high-S/N tail of nearby bright galaxies.
        bright_snr: ``(low, high)``: the tail's S/N (at the typical level against the median
            sky, like ``snr_median``) is log-uniform in this range.

    ``snr_median`` and ``snr_scatter_dex`` set the brightness distribution: the object of
    median brightness ``B_med = snr_median**2 * (1 + sky_to_object)`` counts has S/N
    ``snr_median`` at its typical level against the median sky, whose level is
    ``sky_counts = sky_to_object * B_med``; brightness scatters by ``snr_scatter_dex``
    (log-normal, clipped at 3 sigma) and the S/N follows from it.
    """

    instrument: str = "SDSS"
    anomaly_rate: float = 0.05
    anomaly_classes: tuple[str, ...] = ANOMALY_CLASSES
    redshift: str = "sdss-mgs"
    z_min: float = 0.01
    z_max: float | None = None
    snr_median: float = 10.0
    snr_scatter_dex: float = 0.3
    sky_to_object: float = 1.5
    cosmic_rays: float = 1.0
    bad_column_fraction: float = 0.05
    artefact_min_sigma: float = 5.0
    step_min_sigma: float = 2.0
    render_anomalies: bool = True
    emission_lines: bool = True
    calibration_amplitude: float = 0.05
    sky_residual_max_sigma: float = 2.0
    partial_coverage_fraction: float = 0.05
    seyfert_fraction: float = 0.08
    dwarf_fraction: float = 0.04
    post_starburst_fraction: float = 0.03
    bright_fraction: float = 0.15
    bright_snr: tuple[float, float] = (30.0, 100.0)

    def __post_init__(self) -> None:
        inst = get_instrument(self.instrument)
        if not 0.0 <= self.anomaly_rate <= 1.0:
            raise ValueError(f"anomaly_rate: expected a fraction in [0, 1], got {self.anomaly_rate}")
        registered = tuple(anomaly_registry())
        unknown = set(self.anomaly_classes) - set(registered)
        if unknown or (self.anomaly_rate > 0 and not self.anomaly_classes):
            raise ValueError(
                f"anomaly_classes: expected a non-empty subset of the registered classes {registered}, "
                f"got {sorted(unknown) if unknown else '()'}"
            )
        if self.redshift not in ("sdss-mgs", "uniform"):
            raise ValueError(f"redshift: expected 'sdss-mgs' or 'uniform', got {self.redshift!r}")
        lo, hi = inst.z_range
        z_max = hi if self.z_max is None else self.z_max
        if not lo <= self.z_min < z_max <= hi:
            raise ValueError(
                f"z_min, z_max: expected {lo} <= z_min < z_max <= {hi} for {inst.name}, got {self.z_min}, {z_max}"
            )
        if self.snr_median <= 0:
            raise ValueError(f"snr_median: expected > 0, got {self.snr_median}")
        if isinstance(self.sky_to_object, (tuple, list)) or not self.sky_to_object > 0:
            raise ValueError(f"sky_to_object: expected one number > 0, got {self.sky_to_object!r}")
        if not self.artefact_min_sigma > 0 or not self.step_min_sigma > 0:
            raise ValueError(
                "artefact_min_sigma, step_min_sigma: expected > 0, "
                f"got {self.artefact_min_sigma}, {self.step_min_sigma}"
            )
        if not 0.0 <= self.calibration_amplitude < 0.5:
            raise ValueError(
                f"calibration_amplitude: expected a fraction in [0, 0.5), got {self.calibration_amplitude}"
            )
        if not 0.0 <= self.sky_residual_max_sigma < self.artefact_min_sigma:
            raise ValueError(
                "sky_residual_max_sigma: expected 0 <= it < artefact_min_sigma "
                f"({self.artefact_min_sigma}: normal sky residuals stay below artefacts), "
                f"got {self.sky_residual_max_sigma}"
            )
        fractions = {
            "partial_coverage_fraction": self.partial_coverage_fraction,
            "seyfert_fraction": self.seyfert_fraction,
            "dwarf_fraction": self.dwarf_fraction,
            "post_starburst_fraction": self.post_starburst_fraction,
            "bright_fraction": self.bright_fraction,
        }
        for name, value in fractions.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: expected a fraction in [0, 1], got {value}")
        if self.seyfert_fraction + self.dwarf_fraction + self.post_starburst_fraction > 1.0:
            raise ValueError(
                "seyfert_fraction + dwarf_fraction + post_starburst_fraction: expected <= 1, got "
                f"{self.seyfert_fraction + self.dwarf_fraction + self.post_starburst_fraction}"
            )
        try:
            lo_snr, hi_snr = (float(v) for v in self.bright_snr)
        except (TypeError, ValueError):
            lo_snr, hi_snr = 0.0, -1.0
        if not 0 < lo_snr <= hi_snr:
            raise ValueError(f"bright_snr: expected (low, high) with 0 < low <= high, got {self.bright_snr!r}")

    @property
    def z_upper(self) -> float:
        return get_instrument(self.instrument).z_range[1] if self.z_max is None else self.z_max

    @property
    def brightness_median(self) -> float:
        """Continuum counts per pixel of the median-brightness object."""
        return self.snr_median**2 * (1 + self.sky_to_object)

    @property
    def sky_counts(self) -> float:
        """Sky counts per pixel at the sky spectrum's median, the same for every object."""
        return self.sky_to_object * self.brightness_median

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SimConfig:
        d = dict(d)
        d["anomaly_classes"] = tuple(d.get("anomaly_classes", ANOMALY_CLASSES))
        sky = d.get("sky_to_object", 1.5)
        if isinstance(sky, (tuple, list)):  # before the fixed sky level: a (low, high) range per object
            logger.warning("sky_to_object: old (low, high) range %s read as its geometric mean", sky)
            sky = math.sqrt(float(sky[0]) * float(sky[1]))
        d["sky_to_object"] = float(sky)
        if "bright_snr" in d:
            d["bright_snr"] = tuple(float(v) for v in d["bright_snr"])
        return cls(**d)


@dataclass
class SimulatedSpectra:
    """Simulated spectra on the instrument grid, with their truth.

    Attributes:
        object_id: Identifiers, ``sim-<seed>-<index>``.
        flux: Observed flux density, shape ``(N, L)``, float32.
        ivar: Inverse variance, shape ``(N, L)``, float32 (0 where a pipeline would mask).
        mask: :class:`~speculum.instruments.PixelMask` bits, shape ``(N, L)``, int32.
        z: Redshifts, shape ``(N,)``.
        truth: Per-spectrum truth columns (``class``, ``snr`` (median per-pixel S/N of
            the noiseless model), ``brightness`` (continuum counts per pixel at
            ``amplitude``), ``a_v``, ``sigma_v``,
            ``line_flux`` ``(N, n_lines)`` in the order of :data:`NARROW_LINES`, …,
            ``calibration`` ``(N, 3)`` (Legendre coefficients of the calibration distortion),
            ``sky_residual`` (largest sky-subtraction residual, noise sigmas), ``coverage`` and
            ``coverage_range`` ``(N, 2)`` (A), ``galaxy_kind``, ``anomaly_params`` as JSON text).
        noiseless: Object model without noise or artefacts, shape ``(N, L)``: includes the
            calibration distortion and covers the whole grid (also where data are missing).
        windows: Per spectrum, the observed wavelength windows ``(k, 2)`` in Angstrom
            where the anomaly lives (empty for normal galaxies).
        resolution: DESI only: each spectrum's banded resolution matrix, shape
            ``(N, 11, L)``, float32, in the layout of
            :func:`~speculum.physics.apply_resolution_matrix` (``None`` otherwise).
    """

    object_id: list[str]
    flux: np.ndarray
    ivar: np.ndarray
    mask: np.ndarray
    z: np.ndarray
    noiseless: np.ndarray
    truth: dict[str, np.ndarray]
    windows: list[np.ndarray] = field(default_factory=list)
    resolution: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.object_id)

    @property
    def weights(self) -> np.ndarray:
        """Training weights: ``ivar`` where ``mask == 0``, else 0."""
        return np.where(self.mask == 0, self.ivar, 0.0).astype(np.float32)

    @staticmethod
    def concatenate(parts: list[SimulatedSpectra]) -> SimulatedSpectra:
        return SimulatedSpectra(
            object_id=[o for p in parts for o in p.object_id],
            flux=np.concatenate([p.flux for p in parts]),
            ivar=np.concatenate([p.ivar for p in parts]),
            mask=np.concatenate([p.mask for p in parts]),
            z=np.concatenate([p.z for p in parts]),
            noiseless=np.concatenate([p.noiseless for p in parts]),
            truth={k: np.concatenate([p.truth[k] for p in parts]) for k in parts[0].truth},
            windows=[w for p in parts for w in p.windows],
            resolution=None if parts[0].resolution is None else np.concatenate([p.resolution for p in parts]),
        )

    def columns(self, instrument: str) -> dict[str, object]:
        """Rows as columns of the spectra shard format (:func:`~speculum.schema.spectra_columns`).

        Truth columns are prefixed ``truth_``; ``truth_windows`` holds each row's windows
        flattened to ``(2 k,)``. DESI rows carry their resolution matrices as ingest writes real
        coadds (``D * L`` float32 per row).
        """
        return spectra_columns(
            self.object_id,
            "sim",
            instrument,
            self.z,
            self.flux,
            self.ivar,
            self.mask,
            resolution=self.resolution,
            **{f"truth_{k}": v for k, v in self.truth.items()},
            truth_windows=[w.reshape(-1) for w in self.windows],
        )

    def select(self, idx: np.ndarray | slice) -> SimulatedSpectra:
        ids = np.asarray(self.object_id)[idx]
        return SimulatedSpectra(
            object_id=list(ids),
            flux=self.flux[idx],
            ivar=self.ivar[idx],
            mask=self.mask[idx],
            z=self.z[idx],
            noiseless=self.noiseless[idx],
            truth={k: v[idx] for k, v in self.truth.items()},
            windows=[self.windows[i] for i in np.arange(len(self))[idx]],
            resolution=None if self.resolution is None else self.resolution[idx],
        )


class GalaxySimulator:
    """Vectorised galaxy-spectrum simulator for one :class:`SimConfig`.

    Construction pre-broadens the SSP basis for the instrument (a fraction of a second);
    :meth:`simulate` is then deterministic in ``(seed, object index)``.

    Attributes:
        sky: Sky spectrum shape on the observed grid, median 1, shape ``(L,)``; the sky
            variance of a spectrum is ``config.sky_counts * sky`` in counts.
        uses_resolution_matrix: Whether spectra go through per-spectrum resolution
            matrices (DESI) rather than one Gaussian of the instrument's resolution.
        anomalies: One instance of every registered anomaly class
            (:mod:`speculum.sim.anomalies`), in the order they act.
    """

    def __init__(self, config: SimConfig | None = None, templates: Templates | None = None) -> None:
        self.config = config or SimConfig()
        self.instrument: Instrument = get_instrument(self.config.instrument)
        self.templates = templates or load_templates()
        t = self.templates
        self.wave_t = torch.from_numpy(np.array(t.wave))
        self.wave_obs = self.instrument.wave(torch.float64)
        self.ages = torch.from_numpy(t.ages)
        self.log_metals = torch.from_numpy(np.log10(t.metallicities))
        n_age, n_z = len(t.ages), len(t.metallicities)
        # SSP order in the file: metallicity-major, age-minor
        ssp = torch.from_numpy(np.array(t.ssp, dtype=np.float64)).reshape(n_z, n_age, -1)
        self.uses_resolution_matrix = self.instrument.name == "DESI"
        # with resolution matrices the restframe model carries only the physical widths
        self.sigma_inst = 0.0 if self.uses_resolution_matrix else C_KMS / self.instrument.resolving_power / 2.3548
        px_kms = C_KMS * math.log(10) * t.log_step
        basis = []
        for s_tot in _SIGMA_LADDER:
            s_eff = math.sqrt(max(s_tot**2 - _SIGMA_TEMPLATE**2, 1.0)) / px_kms
            kern = gaussian_kernel(s_eff)
            basis.append(convolve_lsf(ssp.reshape(n_z * n_age, -1), kern).reshape(n_z, n_age, -1))
        self.basis = torch.stack(basis).float()  # (K, n_z, n_age, L_t)
        self.ladder = torch.tensor(_SIGMA_LADDER, dtype=torch.float64)
        self.k_dust = torch.from_numpy(np.array(t.calzetti_k)).float()
        self.stars = torch.from_numpy(np.array(t.stars)).float()
        norm_sel = (self.wave_t > NORMALIZATION_RANGE[0]) & (self.wave_t < NORMALIZATION_RANGE[1])
        self.norm_idx = torch.nonzero(norm_sel).squeeze(1)
        self.idx_halpha = int(torch.argmin((self.wave_t - NARROW_LINES["Halpha"]).abs()))
        self.narrow_wave = torch.tensor(list(NARROW_LINES.values()), dtype=torch.float64)
        self.k_narrow = self._k_at(self.narrow_wave)
        self.sky = self._sky_spectrum()
        self.telluric = self._telluric_profile()
        self.dlam = torch.from_numpy(np.gradient(self.instrument.wave_obs))
        log_w = torch.log(self.wave_obs)
        self.x_cal = (2 * (log_w - log_w[0]) / (log_w[-1] - log_w[0]) - 1).float()  # [-1, 1] over the grid
        self.calibration_basis = torch.from_numpy(
            np.polynomial.legendre.legvander(self.x_cal.double().numpy(), CALIBRATION_ORDER)[:, 1:].T.copy()
        ).float()  # (order, L): P_1 ... P_order
        self._sky_pix, self._sky_even, self._sky_odd = self._sky_residual_profiles()
        self._sky_cols, self._sky_at = torch.unique(self._sky_pix, return_inverse=True)  # columns, index into them
        w0, w1 = float(self.wave_obs[0]), float(self.wave_obs[-1])
        self.camera_split = CAMERA_SPLIT.get(self.instrument.name, math.sqrt(w0 * w1))
        classes = sorted(anomaly_registry().values(), key=lambda c: c.stage)  # stable: registration order
        self.anomalies: tuple[Anomaly, ...] = tuple(c(self) for c in classes)

    # ------------------------------------------------------------------ public API
    def simulate(self, n: int, seed: int = 0, start: int = 0) -> SimulatedSpectra:
        """Simulate objects ``start … start + n - 1`` of the data set with ``seed``.

        Args:
            n: Number of spectra (>= 0).
            seed: Data-set seed.
            start: Index of the first object.

        Returns:
            :class:`SimulatedSpectra` with ``n`` rows.
        """
        parts = list(self.iter_blocks(n, seed, start))
        if not parts:
            return self._block(seed, 0).select(slice(0, 0))
        return SimulatedSpectra.concatenate(parts) if len(parts) > 1 else parts[0]

    def iter_blocks(self, n: int, seed: int = 0, start: int = 0) -> Iterator[SimulatedSpectra]:
        """Like :meth:`simulate`, but yields the rows block by block (bounded memory)."""
        if n < 0 or start < 0:
            raise ValueError(f"n, start: expected non-negative integers, got {n}, {start}")
        stop = start + n
        for b in range(start // BLOCK_SIZE, (stop - 1) // BLOCK_SIZE + 1 if n else 0):
            lo, hi = max(start, b * BLOCK_SIZE), min(stop, (b + 1) * BLOCK_SIZE)
            part = self._block(seed, b)
            yield part if hi - lo == BLOCK_SIZE else part.select(slice(lo - b * BLOCK_SIZE, hi - b * BLOCK_SIZE))

    # ------------------------------------------------------------------ one block, step by step
    def _block(self, seed: int, block: int) -> SimulatedSpectra:
        """Simulate block ``block`` of the data set ``seed`` (``BLOCK_SIZE`` objects).

        The steps run in this order and draw from the block's generator in turn; changing
        the order, or a draw within a step, changes every simulated data set.
        """
        state = self._draw_block(seed, block)
        self._apply_anomalies(state, Stage.PARAMETERS)
        self._draw_galaxies(state)
        self._apply_anomalies(state, Stage.NARROW_LINES)
        self._apply_anomalies(state, Stage.RESTFRAME)
        self._observe_galaxies(state)
        self._apply_anomalies(state, Stage.OBSERVED)
        self._absorb_telluric(state)
        self._apply_line_spread(state)
        self._calibrate(state)
        self._add_noise(state)
        self._add_glitches(state)
        self._add_sky_residuals(state)
        self._drop_coverage(state)
        self._apply_anomalies(state, Stage.DETECTOR)
        return self._collect(state)

    def _draw_block(self, seed: int, block: int) -> BlockState:
        """Seed the block's generator by ``(seed, block)``; draw redshifts and classes."""
        cfg = self.config
        words = np.random.SeedSequence([seed, block]).generate_state(2, dtype=np.uint32)
        gen = torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1]))
        n = BLOCK_SIZE
        z = self._draw_redshift(gen, n)
        is_anom = uniform(gen, n) < cfg.anomaly_rate
        which = torch.randint(0, max(len(cfg.anomaly_classes), 1), (n,), generator=gen)
        code = torch.where(is_anom, which + 1, torch.zeros_like(which)).numpy()
        has = {a.name: np.zeros(n, dtype=bool) for a in self.anomalies}
        for i, c in enumerate(cfg.anomaly_classes):
            has[c] = code == i + 1
        return BlockState(
            seed=seed,
            block=block,
            gen=gen,
            z=z,
            cls=np.array(["normal", *cfg.anomaly_classes])[code],
            rows={c: torch.nonzero(torch.from_numpy(h)).squeeze(1) for c, h in has.items()},
            show=cfg.render_anomalies,
            params=[{} for _ in range(n)],
            windows=[[] for _ in range(n)],
        )

    def _apply_anomalies(self, state: BlockState, stage: Stage) -> None:
        """Run the anomaly classes of ``stage`` (each on its rows, possibly none) and store their truth."""
        for anomaly in self.anomalies:
            if anomaly.stage is stage:
                rows = state.rows[anomaly.name]
                truth = anomaly.apply(state, rows, state.gen)
                for i, (params, windows) in zip(rows.tolist(), truth, strict=True):
                    state.params[i], state.windows[i] = params, windows

    def _draw_galaxies(self, state: BlockState) -> None:
        """Draw the restframe galaxies (:meth:`draw_galaxies`) and their narrow-line tables."""
        n = state.n
        gal = self.draw_galaxies(state.gen, n, a_v_override=state.a_v_override)
        state.galaxies, state.cont = gal, gal["cont"]
        state.line_wave = self.narrow_wave.expand(n, -1).clone()
        state.line_flux = gal["line_flux"].clone()
        state.line_sigma = gal["sigma_gas"][:, None].expand(-1, len(NARROW_LINES)).clone()
        state.extra_wave, state.extra_flux = torch.zeros_like(state.line_wave), torch.zeros_like(state.line_flux)
        state.extra_sigma = state.line_sigma

    def _observe_galaxies(self, state: BlockState) -> None:
        """Redshift and resample the restframe continuum, then render every line at ``lambda (1 + z)``.

        ``config.emission_lines=False`` renders the narrow lines (and second peaks) with zero
        flux; their drawn fluxes stay in the state for the truth. Sets ``state.model`` and
        ``state.amplitude`` (the typical level of the galaxy alone).
        """
        z = state.z
        model, _ = self.observe(state.cont, z)
        line_flux, extra_flux = state.line_flux, state.extra_flux
        if not self.config.emission_lines:
            line_flux, extra_flux = torch.zeros_like(line_flux), torch.zeros_like(extra_flux)
        self.render_lines(model, state.line_wave, line_flux, state.line_sigma, z)
        dbl = torch.nonzero(extra_flux.abs().sum(1) > 0).squeeze(1)
        second_peaks = (dbl, state.extra_wave[dbl], extra_flux[dbl], state.extra_sigma[dbl])
        for rows, centre, flux, sigma in (second_peaks, *state.added_lines):
            if len(rows):
                sub = torch.zeros(len(rows), model.shape[1])
                self.render_lines(sub, centre, flux, sigma, z[rows])
                model[rows] += sub
        state.model = model
        state.amplitude = self.observed_level(model)

    def _absorb_telluric(self, state: BlockState) -> None:
        """Residual telluric absorption (after pipeline correction): O2 A/B and H2O bands, up to 6 % deep."""
        state.telluric_depth = (0.06 * uniform(state.gen, state.n)).float()
        state.model *= 1 - state.telluric_depth[:, None] * self.telluric

    def _apply_line_spread(self, state: BlockState) -> None:
        """DESI: each spectrum through its own resolution matrix (others: already in the widths)."""
        if self.uses_resolution_matrix:
            state.resolution = self._resolution_matrices(self._resolution_sigma(state.gen, state.n))
            state.model = apply_resolution_matrix(state.model, state.resolution)

    def _calibrate(self, state: BlockState) -> None:
        """Spectrophotometric calibration residuals: a smooth multiplicative distortion per spectrum.

        ``d(lambda) = 1 + sum_k c_k P_k(x)`` (Legendre orders 1 … :data:`CALIBRATION_ORDER` in
        ``x``, log wavelength mapped onto [-1, 1] over the grid): a random shape scaled so that its
        peak ``max |d - 1|`` is uniform in ``[0, calibration_amplitude]``. Multiplies the observed
        model (so ``noiseless`` and the noise include it); the coefficients are the truth.
        """
        n = state.n
        shape = torch.randn(n, CALIBRATION_ORDER, generator=state.gen, dtype=torch.float64).float()
        peak = self.config.calibration_amplitude * uniform(state.gen, n).float()
        raw = shape @ self.calibration_basis
        coeffs = shape * (peak / raw.abs().amax(1).clamp_min(1e-6))[:, None]
        state.calibration = coeffs
        state.model.mul_(self.calibration_curve(coeffs))

    def calibration_curve(self, coeffs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Calibration distortion ``(n, L)`` of Legendre coefficients ``(n, CALIBRATION_ORDER)``.

        The coefficients are the truth column ``calibration``; the curve multiplies the observed model.
        """
        c = torch.as_tensor(np.asarray(coeffs), dtype=torch.float32)
        return 1.0 + c @ self.calibration_basis

    def _add_noise(self, state: BlockState) -> None:
        """Brightness, noise and the sky-line mask: variance = object + sky in counts.

        The sky level is the same for every object; ``var = a * model + S * a**2 * sky``
        with ``a = amplitude / brightness`` (normalised flux per count).
        """
        cfg, gen, n, model = self.config, state.gen, state.n, state.model
        length = model.shape[1]
        state.brightness = cfg.brightness_median * 10 ** (
            cfg.snr_scatter_dex * torch.randn(n, generator=gen, dtype=torch.float64).clamp(-3.0, 3.0)
        )
        # the high-S/N tail of nearby bright galaxies: S/N log-uniform in bright_snr at the typical
        # level against the median sky, i.e. B / sqrt(B + S) = snr
        lo, hi = cfg.bright_snr
        bright = uniform(gen, n) < cfg.bright_fraction
        s2 = (lo * (hi / lo) ** uniform(gen, n)) ** 2
        b_tail = (s2 + torch.sqrt(s2**2 + 4 * s2 * cfg.sky_counts)) / 2
        state.brightness = torch.where(bright, b_tail, state.brightness)
        a = (state.amplitude / state.brightness).float()
        var = a[:, None] * model.clamp_min(0) + (cfg.sky_counts * a**2)[:, None] * self.sky
        state.sigma = var.sqrt()
        state.snr = (model / state.sigma).median(dim=1).values
        state.flux = model + state.sigma * torch.randn(n, length, generator=gen)
        state.ivar = 1.0 / var
        state.mask = torch.zeros(n, length, dtype=torch.int32)
        state.mask[:, torch.from_numpy(self.instrument.sky_mask.copy())] |= int(PixelMask.SKY_LINE)

    def _add_glitches(self, state: BlockState) -> None:
        """Flagged glitches, as a pipeline flags them (``ivar = 0``): cosmic rays and bad columns."""
        cfg, gen, n = self.config, state.gen, state.n
        flux, ivar, mask, sigma = state.flux, state.ivar, state.mask, state.sigma
        length = flux.shape[1]
        n_cr = torch.poisson(torch.full((n,), cfg.cosmic_rays, dtype=torch.float64), generator=gen).long()
        rows = torch.repeat_interleave(torch.arange(n), n_cr)
        if len(rows):
            start = torch.randint(0, length - 2, (len(rows),), generator=gen)
            two = torch.rand(len(rows), generator=gen) < 0.4  # 40 % hit two pixels
            amp = 10 + 90 * torch.rand(len(rows), generator=gen)
            r_idx = torch.cat([rows, rows[two]])
            p_idx = torch.cat([start, start[two] + 1])
            flux[r_idx, p_idx] += torch.cat([amp, amp[two]]) * sigma[r_idx, p_idx]
            mask[r_idx, p_idx] |= int(PixelMask.COSMIC_RAY)
            ivar[r_idx, p_idx] = 0
        level = state.amplitude.float()
        bad_col = uniform(gen, n) < cfg.bad_column_fraction
        for i in torch.nonzero(bad_col).squeeze(1).tolist():
            w = int(torch.randint(5, 21, (1,), generator=gen))
            p0 = int(torch.randint(0, length - w, (1,), generator=gen))
            flux[i, p0 : p0 + w] += float(20 * (uniform(gen, 1) - 0.5)) * level[i]
            mask[i, p0 : p0 + w] |= int(PixelMask.BAD_COLUMN)
            ivar[i, p0 : p0 + w] = 0

    def _sky_residual_profiles(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixels ``(K, W)`` around every sky line on the grid and two residual shapes there.

        Even: a Gaussian of the instrument's width (the sky level misjudged); odd: its
        derivative (the line's wavelength misjudged), both of peak one.
        """
        wave, length = self.wave_obs, len(self.wave_obs)
        lines, _ = sky_lines(0.0)
        lines = lines[(lines > float(wave[0])) & (lines < float(wave[-1]))]
        p = self.instrument.pixel_coordinate(torch.from_numpy(lines))
        pix = p.round().long()[:, None] + torch.arange(-_SKY_HALF_PX, _SKY_HALF_PX + 1)
        sig = (torch.from_numpy(lines) / self.instrument.resolving_power / 2.3548) / self.dlam[p.round().long()]
        u = (pix - p[:, None]) / sig[:, None]
        inside = (pix >= 0) & (pix < length)
        even = torch.exp(-0.5 * u**2) * inside
        odd = u * torch.exp(0.5 - 0.5 * u**2) * inside
        return pix.clamp(0, length - 1), even.float(), odd.float()

    def _add_sky_residuals(self, state: BlockState) -> None:
        """Sky-subtraction residuals at every sky line, at most ``sky_residual_max_sigma`` times the noise.

        Per spectrum a scale ``s ~ U(0, 1)``; per line an amplitude ``s a`` (``a ~ U(-1, 1)``) and a
        mix of the even (level) and odd (wavelength) shapes, normalised to peak one; overlapping
        lines add, and the total is clipped at ``sky_residual_max_sigma`` noise sigmas, so normal
        spectra never reach the ``artefact`` anomalies' ``artefact_min_sigma``. Added to the flux
        only (``noiseless`` is the sky-free object); the truth ``sky_residual`` is each spectrum's
        largest residual in units of its noise sigma.
        """
        gen, n = state.gen, state.n
        k = len(self._sky_pix)
        scale = uniform(gen, n).float()
        amp = (2 * uniform(gen, n, k) - 1).float() * scale[:, None]
        phase = (2 * math.pi * uniform(gen, n, k)).float()
        prof = torch.cos(phase)[..., None] * self._sky_even + torch.sin(phase)[..., None] * self._sky_odd
        prof = prof / prof.abs().amax(-1, keepdim=True).clamp_min(1e-6)
        vals = self.config.sky_residual_max_sigma * amp[..., None] * prof  # (n, k, W), noise sigmas
        cols, at = self._sky_cols, self._sky_at  # only the pixels near sky lines
        excess = torch.zeros(n * len(cols))
        flat = at[None] + (torch.arange(n) * len(cols))[:, None, None]
        excess.index_add_(0, flat.reshape(-1), vals.reshape(-1))
        lim = self.config.sky_residual_max_sigma
        excess = excess.view(n, len(cols)).clamp(-lim, lim)
        state.flux.index_add_(1, cols, excess * state.sigma.index_select(1, cols))
        state.sky_residual = excess.abs().amax(1) if len(cols) else torch.zeros(n)

    def _drop_coverage(self, state: BlockState) -> None:
        """Partial wavelength coverage, as pipelines deliver it, in normal galaxies.

        A fraction ``partial_coverage_fraction`` of the normal galaxies loses, half of them, the
        red camera (no data beyond :data:`CAMERA_SPLIT`) and, the other half, the blue end (no data
        below a wavelength uniform between 300 A above the grid's start and the split): there
        ``flux = 0``, ``ivar = 0`` and the ``NO_DATA`` bit, as a reader marks pixels a file does
        not cover. At least 100 A of the normalisation window (restframe
        :data:`~speculum.physics.NORMALIZATION_RANGE`) stays observed, so the shipped path keeps
        every spectrum: a red camera whose loss would take all of it is drawn as a blue-end loss,
        and blue-end cuts stop short of it. Anomalies keep their full coverage (their windows
        stay observed). Truth:
        ``coverage`` (``full``, ``no_red``, ``no_blue``) and ``coverage_range`` (first and last
        observed wavelength, A).
        """
        gen, n, wave = state.gen, state.n, self.wave_obs
        drop = (uniform(gen, n) < self.config.partial_coverage_fraction) & torch.from_numpy(state.cls == "normal")
        red = uniform(gen, n) < 0.5
        lo_cut = float(wave[0]) + 300.0
        cut = lo_cut + (self.camera_split - lo_cut) * uniform(gen, n)
        # keep >= 100 A of the normalisation window observed (else the shipped path drops the spectrum):
        # a red camera that would take all of it is the blue end's loss instead, a cut stops short of it
        norm_lo, norm_hi = (NORMALIZATION_RANGE[0] * (1 + state.z), NORMALIZATION_RANGE[1] * (1 + state.z))
        red = red & (norm_lo + _KEEP_NORM_A <= self.camera_split)
        cut = torch.minimum(cut, (norm_hi - _KEEP_NORM_A).clamp_min(lo_cut))
        first = torch.zeros(n, dtype=torch.long)  # first and last observed pixel
        last = torch.full((n,), len(wave) - 1, dtype=torch.long)
        split = int(torch.searchsorted(wave, torch.tensor(self.camera_split, dtype=wave.dtype), right=True)) - 1
        for i in torch.nonzero(drop).squeeze(1).tolist():
            if red[i]:
                last[i] = split
                gone = slice(split + 1, None)
            else:
                first[i] = int(torch.searchsorted(wave, cut[i]))
                gone = slice(0, int(first[i]))
            state.flux[i, gone] = 0.0
            state.ivar[i, gone] = 0.0
            state.mask[i, gone] |= int(PixelMask.NO_DATA)
        state.coverage = np.where(drop.numpy(), np.where(red.numpy(), "no_red", "no_blue"), "full")
        state.coverage_range = torch.stack([wave[first], wave[last]], 1)

    def _collect(self, state: BlockState) -> SimulatedSpectra:
        """The block as :class:`SimulatedSpectra`, with its truth columns."""
        z, gal, n = state.z, state.galaxies, state.n
        # observed-frame integrated line fluxes (sum of both peaks for double-peaked lines), as drawn
        obs_line_flux = ((state.line_flux + state.extra_flux) * (1 + z[:, None])).float()
        ids = [f"sim-{state.seed}-{state.block * BLOCK_SIZE + i:09d}" for i in range(n)]
        truth = {
            "class": state.cls,
            "snr": state.snr.numpy(),
            "brightness": state.brightness.float().numpy(),
            "amplitude": state.amplitude.numpy().astype(np.float32),
            "a_v": gal["a_v"].float().numpy(),
            "sigma_v": gal["sigma_v"].float().numpy(),
            "sigma_gas": gal["sigma_gas"].float().numpy(),
            "metallicity": gal["metallicity"].float().numpy(),
            "age_mw_gyr": gal["age_mw_gyr"].float().numpy(),
            "ssfr": gal["ssfr"].float().numpy(),
            "ew_halpha": gal["ew_halpha"].float().numpy(),
            "line_class": gal["line_class"],
            "telluric_depth": state.telluric_depth.numpy(),
            "calibration": state.calibration.numpy(),
            "sky_residual": state.sky_residual.numpy(),
            "coverage": state.coverage,
            "coverage_range": state.coverage_range.float().numpy(),
            "galaxy_kind": gal["kind"],
            "line_flux": obs_line_flux.numpy(),
            "anomaly_params": np.array([json.dumps(p, sort_keys=True) for p in state.params]),
        }
        return SimulatedSpectra(
            object_id=ids,
            flux=state.flux.numpy(),
            ivar=state.ivar.numpy(),
            mask=state.mask.numpy(),
            z=z.numpy(),
            noiseless=state.model.numpy(),
            truth=truth,
            windows=[np.array(w, dtype=np.float64).reshape(-1, 2) for w in state.windows],
            resolution=None if state.resolution is None else state.resolution.numpy(),
        )

    # ------------------------------------------------------------------ pieces of the steps
    def _resolution_sigma(self, gen: torch.Generator, n: int) -> torch.Tensor:
        """Per-spectrum Gaussian width of the DESI resolution, pixels, shape ``(n, L)``, float32.

        Each camera's width is evaluated where that camera contributes; in the overlaps the
        widths are blended linearly (weights sum to one everywhere).
        """
        wave = self.wave_obs
        sig = torch.zeros(n, len(wave))
        (b_lo, b_hi), (z_lo, z_hi) = _DESI_OVERLAPS
        up_r, up_z = ((wave - b_lo) / (b_hi - b_lo)).clamp(0, 1), ((wave - z_lo) / (z_hi - z_lo)).clamp(0, 1)
        ramps = {"B": 1 - up_r, "R": torch.minimum(up_r, 1 - up_z), "Z": up_z}
        for cam, (mid, rng, mean, sd, (lo, hi)) in DESI_RESOLUTION_SIGMA.items():
            draw = torch.randn(n, 3, generator=gen, dtype=torch.float64)
            c = (torch.tensor(mean, dtype=torch.float64) + torch.tensor(sd, dtype=torch.float64) * draw).float()
            cols = torch.nonzero(ramps[cam] > 0).squeeze(1)
            x = ((wave[cols] - mid) / rng).float()
            s_cam = (c[:, :1] + c[:, 1:2] * x + c[:, 2:] * x**2).clamp(lo - sd[0], hi + sd[0])
            sig[:, cols] += ramps[cam][cols].float() * s_cam
        return sig

    def _resolution_matrices(self, sigma: torch.Tensor) -> torch.Tensor:
        """Gaussian banded matrices ``(n, 11, L)`` (DESI layout) of per-pixel widths ``sigma (n, L)``.

        Each pixel's 11 entries sum to one (DESI's normalisation: the matrix keeps flux).
        """
        # exp(-k^2 / (2 sigma^2)) = q ** (k^2) for offsets k = 0 … 5: one exp, then products
        q = torch.exp(-0.5 / sigma.float() ** 2)
        q4 = (q * q) ** 2
        q9 = q4 * q4 * q
        q16 = q4 * q4 * q4 * q4
        q25 = q16 * q9
        side = [q25, q16, q9, q4, q]  # offsets 5 … 1 (j - i), the DESI order; the same mirrored
        kern = torch.stack([*side, torch.ones_like(q), *side[::-1]], dim=1)
        return kern / (1 + 2 * (q + q4 + q9 + q16 + q25))[:, None, :]

    def _k_at(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.interp(wave.numpy(), self.templates.wave, self.templates.calzetti_k)).float()

    def _sky_spectrum(self) -> torch.Tensor:
        """Sky flux density on the observed grid: smooth continuum + lines, median ~1."""
        wave = self.wave_obs
        sky = 0.6 + 0.4 * (wave / 6000.0) ** 2
        lines, inten = sky_lines(0.0)
        sig = wave / self.instrument.resolving_power / 2.3548
        for lam, amp in zip(lines, inten, strict=True):
            if wave[0] - 20 < lam < wave[-1] + 20:
                sky = sky + 0.15 * amp * torch.exp(-0.5 * ((wave - lam) / sig) ** 2)
        return (sky / sky.median()).float()

    def _telluric_profile(self) -> torch.Tensor:
        """Relative depth of telluric bands on the observed grid (1 = the O2 A band)."""
        wave = self.wave_obs
        prof = torch.zeros_like(wave)
        for lo, hi, strength in TELLURIC_BANDS:
            edge = torch.sigmoid((wave - lo) / 2.0) * torch.sigmoid((hi - wave) / 2.0)
            prof = torch.maximum(prof, strength * edge)
        return prof.float()

    def _draw_redshift(self, gen: torch.Generator, n: int) -> torch.Tensor:
        cfg = self.config
        u = torch.rand(n, generator=gen, dtype=torch.float64)
        if cfg.redshift == "uniform":
            return cfg.z_min + (cfg.z_upper - cfg.z_min) * u
        grid = torch.linspace(cfg.z_min, cfg.z_upper, 4001, dtype=torch.float64)
        pdf = grid**2 * torch.exp(-((grid / 0.071) ** 1.5))
        cdf = torch.cumsum(pdf, 0)
        cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
        idx = torch.searchsorted(cdf, u).clamp(1, len(grid) - 1)
        t = (u - cdf[idx - 1]) / (cdf[idx] - cdf[idx - 1]).clamp_min(1e-300)
        return grid[idx - 1] + t * (grid[idx] - grid[idx - 1])

    def draw_galaxies(self, gen: torch.Generator, n: int, a_v_override: torch.Tensor | None = None) -> dict:
        """Draw ``n`` restframe galaxies: stars, dust and narrow lines, from ``gen`` in this order.

        Args:
            gen: Random generator (the block's).
            n: Number of galaxies.
            a_v_override: ``A_V`` to impose ``(n,)`` where not NaN, or None.

        Returns:
            ``cont`` (normalised restframe continuum ``(n, L_t)``, float32, mean 1 over
            :data:`~speculum.physics.NORMALIZATION_RANGE`), ``line_flux`` (narrow lines ``(n, m)``
            in the order of :data:`NARROW_LINES`, normalised flux density x Angstrom, float64),
            ``sigma_gas`` (km/s), ``a_v``, ``sigma_v``, ``age_mw_gyr``, ``metallicity``, ``ssfr``
            (per yr), ``ew_halpha`` (A), ``quenched`` (all ``(n,)``) and ``line_class``
            (``sf``, ``seyfert``, ``liner``).
        """
        cfg = self.config
        u_kind = uniform(gen, n)  # galaxy kind: metal-poor dwarf, post-starburst, Seyfert host, other
        dwarf = u_kind < cfg.dwarf_fraction
        psb = (u_kind >= cfg.dwarf_fraction) & (u_kind < cfg.dwarf_fraction + cfg.post_starburst_fraction)
        seyfert = (u_kind >= cfg.dwarf_fraction + cfg.post_starburst_fraction) & (
            u_kind < cfg.dwarf_fraction + cfg.post_starburst_fraction + cfg.seyfert_fraction
        )
        age_w, ssfr, age_mw, quenched = self._draw_star_formation(gen, n, dwarf, psb)
        lz, z_w = self._draw_metallicity(gen, n, dwarf)
        weights = (z_w[:, :, None] * age_w[:, None, :]).reshape(n, -1).float()  # (n, n_z * n_age)
        log_sigma_v = math.log10(110.0) + 0.2 * torch.randn(n, generator=gen, dtype=torch.float64)
        log_sigma_v = torch.where(dwarf, log_sigma_v - math.log10(2.5), log_sigma_v)  # dwarfs: ~45 km/s
        sigma_v = (10**log_sigma_v).clamp(40.0, 350.0)  # velocity dispersion, km/s
        cont_intr = self._stellar_continuum(weights, sigma_v)
        # dust (Calzetti), then normalisation
        u_quenched, u_forming = uniform(gen, n), uniform(gen, n)  # in this order
        a_v = torch.where(quenched, -0.15 * torch.log(u_quenched), -0.5 * torch.log(u_forming)).clamp(max=2.0)
        a_v = torch.where(dwarf, 0.3 * a_v, a_v)  # metal-poor dwarfs hold little dust
        if a_v_override is not None:
            a_v = torch.where(torch.isnan(a_v_override), a_v, a_v_override)
        cont = cont_intr * torch.exp(-0.4 * math.log(10) * a_v.float()[:, None] * self.k_dust / 4.05)
        norm = cont[:, self.norm_idx].mean(1, keepdim=True)
        cont, cont_intr = cont / norm, cont_intr / norm
        lines = self._draw_narrow_lines(
            gen, n, ssfr, quenched, cont_intr[:, self.idx_halpha].double(), a_v, seyfert=seyfert, dwarf=dwarf
        )
        kind = np.where(dwarf.numpy(), "dwarf", np.where(psb.numpy(), "post_starburst", "galaxy"))
        return {
            "cont": cont,
            "line_flux": lines["line_flux"],
            "sigma_gas": lines["sigma_gas"],
            "a_v": a_v,
            "sigma_v": sigma_v,
            "age_mw_gyr": age_mw,
            "metallicity": 10**lz,
            "ssfr": ssfr,
            "ew_halpha": lines["ew_halpha"],
            "quenched": quenched,
            "line_class": lines["line_class"],
            "kind": kind,
        }

    def _draw_star_formation(
        self, gen: torch.Generator, n: int, dwarf: torch.Tensor | None = None, psb: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Delayed-tau star-formation histories with quenching and bursts, binned onto the SSP ages.

        Returns:
            Mass weights per SSP age ``(n, n_age)`` (sum 1), specific SFR over the last 100 Myr
            ``(n,)`` per yr, mass-weighted age ``(n,)`` Gyr, quenched flags ``(n,)``.

        Metal-poor dwarfs (``dwarf (n,)``) are star-forming with a recent burst of 3-15 % of their
        mass; post-starbursts (``psb (n,)``) formed 10-40 % of their mass in a burst 0.1-1.5 Gyr
        ago and stopped forming stars then (A-star Balmer absorption, weak lines).
        """
        ages = self.ages
        dwarf = torch.zeros(n, dtype=torch.bool) if dwarf is None else dwarf
        psb = torch.zeros(n, dtype=torch.bool) if psb is None else psb
        # star-formation history on a fine lookback grid, binned onto the SSP ages
        look = torch.logspace(-3, math.log10(13.5), 240, dtype=torch.float64)
        dt = torch.diff(torch.cat([torch.zeros(1, dtype=torch.float64), look]))
        t_form = 3.0 + 10.5 * uniform(gen, n, 1)
        tau = 10 ** (-0.3 + 1.5 * uniform(gen, n, 1))
        since = (t_form - look).clamp_min(0)
        sfr = since * torch.exp(-since / tau) * (look < t_form)
        quenched = (uniform(gen, n) < 0.35) & ~dwarf
        t_q = 10 ** (-0.5 + 0.8 * uniform(gen, n, 1))
        sfr = torch.where(quenched[:, None] & (look < t_q), torch.zeros_like(sfr), sfr)
        mass = sfr * dt
        burst = ((uniform(gen, n) < 0.1) & ~quenched) | dwarf
        strength = torch.where(dwarf[:, None], 0.03 + 0.12 * uniform(gen, n, 1), 0.03 * uniform(gen, n, 1))
        mass = mass + burst[:, None] * (look < 0.1) * mass.sum(1, keepdim=True) * strength / 0.1 * dt
        # post-starbursts: a burst t_b = 0.1-1.5 Gyr ago (0.1 dex long), nothing formed since
        t_b = 0.1 + 1.4 * uniform(gen, n, 1)
        f_b = 0.1 + 0.3 * uniform(gen, n, 1)
        in_burst = (look >= t_b) & (look < 1.26 * t_b)
        burst_mass = in_burst * dt / (in_burst * dt).sum(1, keepdim=True).clamp_min(1e-12)
        old_mass = torch.where(look < t_b, torch.zeros_like(mass), mass)
        psb_mass = old_mass / old_mass.sum(1, keepdim=True).clamp_min(1e-300) * (1 - f_b) + f_b * burst_mass
        mass = torch.where(psb[:, None], psb_mass, mass)
        quenched = quenched | psb
        edges = torch.sqrt(ages[1:] * ages[:-1])
        bin_of = torch.bucketize(look, edges)
        age_w = torch.zeros(n, len(ages), dtype=torch.float64).index_add_(1, bin_of, mass)
        total = age_w.sum(1, keepdim=True)
        age_w = age_w / total
        ssfr = (mass * (look < 0.1)).sum(1) / total.squeeze(1) / 1e8  # per yr
        age_mw = (age_w * ages).sum(1)
        return age_w, ssfr, age_mw, quenched

    def _draw_metallicity(
        self, gen: torch.Generator, n: int, dwarf: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``log10 Z`` log-uniform between the grid ends ``(n,)`` and linear weights in ``log Z`` ``(n, n_z)``.

        Metal-poor dwarfs (``dwarf (n,)``) take the grid's lowest metallicity.
        """
        lz = self.log_metals[0] + (self.log_metals[-1] - self.log_metals[0]) * uniform(gen, n)
        if dwarf is not None:
            lz = torch.where(dwarf, self.log_metals[0], lz)
        j = torch.bucketize(lz, self.log_metals).clamp(1, len(self.log_metals) - 1)
        f = (lz - self.log_metals[j - 1]) / (self.log_metals[j] - self.log_metals[j - 1])
        z_w = torch.zeros(n, len(self.log_metals), dtype=torch.float64)
        z_w.scatter_(1, (j - 1)[:, None], (1 - f)[:, None]).scatter_(1, j[:, None], f[:, None])
        return lz, z_w

    def _stellar_continuum(self, weights: torch.Tensor, sigma_v: torch.Tensor) -> torch.Tensor:
        """Restframe stellar continuum ``(n, L_t)``, float32, of SSP ``weights (n, n_z * n_age)``.

        Broadened to ``sqrt(sigma_v^2 + sigma_instrument^2)`` by interpolating linearly between the
        two nearest pre-broadened rungs of the basis.
        """
        n = len(weights)
        s_tot = torch.sqrt(sigma_v**2 + self.sigma_inst**2).clamp(self.ladder[0], self.ladder[-1])
        k = torch.bucketize(s_tot, self.ladder).clamp(1, len(self.ladder) - 1)
        fk = ((s_tot - self.ladder[k - 1]) / (self.ladder[k] - self.ladder[k - 1])).float()
        flat = self.basis.reshape(len(self.ladder), -1, self.basis.shape[-1])
        cont = torch.zeros(n, self.basis.shape[-1])
        for rung in range(len(self.ladder)):
            for sel, wgt in (((k - 1) == rung, 1 - fk), (k == rung, fk)):
                rows = torch.nonzero(sel).squeeze(1)
                if len(rows):
                    cont.index_add_(0, rows, (weights[rows] @ flat[rung]) * wgt[rows, None])
        return cont

    def _draw_narrow_lines(
        self,
        gen: torch.Generator,
        n: int,
        ssfr: torch.Tensor,
        quenched: torch.Tensor,
        cont_halpha: torch.Tensor,
        a_v: torch.Tensor,
        seyfert: torch.Tensor | None = None,
        dwarf: torch.Tensor | None = None,
    ) -> dict:
        """Narrow-line fluxes from the star formation, excitation class and dust.

        EW(Halpha) from the specific SFR against the dust-free continuum at Halpha
        ``cont_halpha (n,)``; gas attenuated by ``A_V / 0.44``. Excitation (BPT diagram,
        ``x = log [N II] 6583 / Halpha``, ``y = log [O III] 5007 / Hbeta``):

        * star-forming: below the Kauffmann et al. (2003) line;
        * Seyfert (``seyfert (n,)``, any host): above Kewley et al. (2001) and above the
          Seyfert/LINER division ``y = 1.05 x + 0.45`` (Schawinski et al. 2007); EW(Halpha)
          at least ~10 A; strong [O I], [S II], [Ne III]; gas sigma 100-250 km/s;
        * LINER-like, quenched hosts (retired galaxies, Cid Fernandes et al. 2011): above
          Kauffmann et al., below the Seyfert/LINER division, EW(Halpha) ~ 0.3-3 A from old
          stars' ionising photons even without star formation; gas sigma 100-250 km/s;
        * metal-poor dwarfs (``dwarf (n,)``): ``x`` -1.7 … -1.2 (weak [N II]), ``y`` 0.45 … 0.8
          (strong [O III]), weak [S II] and [O I], strong [Ne III]; gas sigma 35-60 km/s.

        Returns:
            ``line_flux`` ``(n, m)`` (normalised flux density x Angstrom), ``sigma_gas`` ``(n,)``
            km/s, ``ew_halpha`` ``(n,)`` A, ``line_class`` ``(n,)`` str (``sf``, ``seyfert``,
            ``liner``; dwarfs are ``sf``).
        """
        g = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
        seyfert = torch.zeros(n, dtype=torch.bool) if seyfert is None else seyfert
        dwarf = torch.zeros(n, dtype=torch.bool) if dwarf is None else dwarf
        liner = quenched & ~seyfert
        log_ew = (0.9 * torch.log10(ssfr.clamp_min(1e-14) / 1e-10) + 1.55 + 0.15 * g(n)).clamp(-1.0, 2.8)
        log_ew = torch.where(liner, torch.maximum(log_ew, (0.0 + 0.3 * g(n)).clamp(-0.5, 0.5)), log_ew)
        log_ew = torch.where(seyfert, torch.maximum(log_ew, (1.1 + 0.3 * g(n)).clamp(0.8, 2.2)), log_ew)
        # star-forming locus below Kauffmann et al. (2003)
        x_sf = (-0.45 + 0.15 * g(n)).clamp(max=-0.15)
        y_sf = 0.61 / (x_sf - 0.05) + 1.3 - (0.2 + 0.15 * g(n)).abs()
        # LINER-like: above Kauffmann et al., below the Seyfert/LINER division
        x_li = (0.05 + 0.15 * g(n)).clamp(-0.3, 0.5)
        y_li = torch.minimum(0.05 + 0.2 * g(n), 1.05 * x_li + 0.4)
        y_li = torch.where(x_li < 0.0, torch.maximum(y_li, _kauffmann(x_li) + 0.05), y_li)
        # Seyfert: above Kewley et al. (2001) and the Seyfert/LINER division
        x_sy = (0.0 + 0.15 * g(n)).clamp(-0.3, 0.5)
        y_sy = torch.maximum(0.8 + 0.2 * g(n), 1.05 * x_sy + 0.5)
        y_sy = torch.where(x_sy < 0.42, torch.maximum(y_sy, _kewley(x_sy) + 0.05), y_sy).clamp(max=1.4)
        # metal-poor dwarfs: weak [N II], strong [O III]
        x_dw = -1.7 + 0.5 * uniform(gen, n)
        y_dw = 0.45 + 0.35 * uniform(gen, n)
        x = torch.where(dwarf, x_dw, torch.where(seyfert, x_sy, torch.where(liner, x_li, x_sf)))
        y = torch.where(dwarf, y_dw, torch.where(seyfert, y_sy, torch.where(liner, y_li, y_sf)))
        agn_like = seyfert | liner
        f_ha = 10**log_ew * cont_halpha
        f_hb = f_ha / 2.86
        oiii = f_hb * 10**y
        nii = f_ha * 10**x
        log_oii = torch.where(dwarf, 0.1, torch.where(liner, 0.6, torch.where(seyfert, 0.45, 0.35)))
        oii = f_hb * 10 ** (log_oii + 0.15 * g(n))
        oii_ratio = 1.0 + 0.45 * uniform(gen, n)  # 3729 / 3726
        log_sii = torch.where(dwarf, -1.0, torch.where(agn_like, -0.35, -0.6))
        sii = f_ha * 10 ** (log_sii + 0.1 * g(n))
        sii_ratio = 1.0 + 0.4 * uniform(gen, n)  # 6716 / 6731
        neiii = torch.where(seyfert | dwarf, oiii * 10 ** (-1.05 + 0.1 * g(n)), oii * 10 ** (-1.1 + 0.2 * g(n)))
        log_oi = torch.where(dwarf, -1.8, torch.where(agn_like, -1.0, -1.4))
        fluxes = torch.stack(
            [
                oii / (1 + oii_ratio),
                oii * oii_ratio / (1 + oii_ratio),
                neiii,
                0.259 * f_hb,
                0.468 * f_hb,
                f_hb,
                oiii / 2.98,
                oiii,
                0.1 * f_hb,
                f_ha * 10 ** (log_oi + 0.2 * g(n)),
                nii / 3.05,
                f_ha,
                nii,
                sii * sii_ratio / (1 + sii_ratio),
                sii / (1 + sii_ratio),
            ],
            dim=1,
        )
        a_gas = (a_v / 0.44).clamp(max=8.0)
        fluxes = fluxes * 10 ** (-0.4 * a_gas[:, None] * self.k_narrow.double() / 4.05)
        u_sigma = uniform(gen, n)
        sigma_gas = torch.where(
            dwarf, 35.0 + 25.0 * u_sigma, torch.where(agn_like, 100.0 + 150.0 * u_sigma, 40.0 + 70.0 * u_sigma)
        )
        return {
            "line_flux": fluxes,
            "sigma_gas": sigma_gas,
            "ew_halpha": 10**log_ew,
            "line_class": np.where(seyfert.numpy(), "seyfert", np.where(liner.numpy(), "liner", "sf")),
        }

    def render_lines(
        self, out: torch.Tensor, centre: torch.Tensor, flux: torch.Tensor, sigma_kms: torch.Tensor, z: torch.Tensor
    ) -> None:
        """Add Gaussian lines (restframe ``centre (n, m)``, integrated ``flux``) in place."""
        n, length = out.shape
        lam = centre * (1 + z[:, None])
        sig_lam = lam * torch.sqrt(sigma_kms**2 + self.sigma_inst**2) / C_KMS
        p = self.instrument.pixel_coordinate(lam)
        dpix = (sig_lam / self.dlam[p.round().long().clamp(0, length - 1)]).clamp_min(0.3)
        half = int(math.ceil(6 * float(dpix.max()))) + 1
        offs = torch.arange(-half, half + 1, dtype=torch.float64)
        pix = p.round().long()[..., None] + offs.long()  # (n, m, W)
        inside = (pix >= 0) & (pix < length) & (flux[..., None] != 0)
        pix_c = pix.clamp(0, length - 1)
        wave_p = self.wave_obs[pix_c]
        prof = torch.exp(-0.5 * ((wave_p - lam[..., None]) / sig_lam[..., None]) ** 2)
        prof = prof / (math.sqrt(2 * math.pi) * sig_lam[..., None])
        vals = (flux[..., None] * (1 + z[:, None, None]) * prof * inside).float()
        flat = pix_c + (torch.arange(n)[:, None, None] * length)
        out.view(-1).index_add_(0, flat.reshape(-1), vals.reshape(-1))

    def observed_line_sigma(self, sigma_gas_kms: float) -> float:
        """Width (km/s) of a narrow line as observed: gas dispersion and the instrument's resolution in quadrature."""
        return math.hypot(sigma_gas_kms, C_KMS / self.instrument.resolving_power / 2.3548)

    def window(self, lam_lo: torch.Tensor, lam_hi: torch.Tensor) -> list[list[float]]:
        lo, hi = float(self.wave_obs[0]), float(self.wave_obs[-1])
        out = []
        for a, b in zip(lam_lo.tolist(), lam_hi.tolist(), strict=True):
            # to 0.01 A, rounded outwards (never narrower), and clipped to the observed range exactly
            a, b = max(math.floor(a * 100) / 100, lo), min(math.ceil(b * 100) / 100, hi)
            if b > a:
                out.append([a, b])
        return out

    def observe(self, rest: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.templates
        return resample_log_uniform(rest, t.log_start, t.log_step, z, self.wave_obs)

    def observed_level(self, model: torch.Tensor) -> torch.Tensor:
        """Typical observed flux density: median over the central 40 % of the grid."""
        length = model.shape[1]
        return model[:, int(0.3 * length) : int(0.7 * length)].median(dim=1).values.clamp_min(1e-6)


def _kauffmann(x: torch.Tensor) -> torch.Tensor:
    """Kauffmann et al. (2003) upper edge of star-forming galaxies in the [N II] BPT diagram (``x < 0.05``)."""
    return 0.61 / (x - 0.05) + 1.3


def _kewley(x: torch.Tensor) -> torch.Tensor:
    """Kewley et al. (2001) maximum-starburst line in the [N II] BPT diagram (``x < 0.47``)."""
    return 0.61 / (x - 0.47) + 1.19


def simulate_spectra(n: int, config: SimConfig | None = None, seed: int = 0) -> SimulatedSpectra:
    """Simulate ``n`` spectra with :class:`GalaxySimulator` (convenience wrapper)."""
    return GalaxySimulator(config).simulate(n, seed=seed)
