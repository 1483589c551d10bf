"""Typed, immutable configurations stored inside every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from speculum.instruments import Instrument, get_instrument

__all__ = ["AutoencoderConfig", "RestframeGrid", "check_restframe_coverage", "config_from_dict"]


@dataclass(frozen=True)
class RestframeGrid:
    """Linear restframe wavelength grid ``linspace(start, stop, n)`` in Angstrom.

    Defaults are the SPENDER SDSS grid (2359 - 9332 A in 7000 bins), wider and finer than
    the instrument. DESI uses :meth:`desi` (2000 - 9824 A in 9780 bins), BOSS :meth:`boss`
    (1960 - 10420 A in 8461 bins); :meth:`for_instrument` picks the right one. Each covers
    its instrument's observed grid over the instrument's whole redshift range (see
    :func:`check_restframe_coverage`).
    """

    start: float = 2359.0
    stop: float = 9332.0
    n: int = 7000

    def __post_init__(self) -> None:
        if not (0 < self.start < self.stop) or self.n < 2:
            raise ValueError(
                f"restframe: expected 0 < start < stop and n >= 2, got start={self.start}, stop={self.stop}, n={self.n}"
            )

    @classmethod
    def sdss(cls) -> RestframeGrid:
        """The SDSS grid of Melchior et al. (2023): 2359 - 9332 A in 7000 bins (~1 A)."""
        return cls(2359.0, 9332.0, 7000)

    @classmethod
    def boss(cls) -> RestframeGrid:
        """A BOSS grid: 1960 - 10420 A in 8461 bins (1 A, the spacing of the SDSS grid).

        BOSS observes ``10 ** (3.549 + 1e-4 i)``, ``i < 4686`` (3540 - 10411 A), at
        ``0 <= z <= 0.8``: the restframe must reach down to ``3540 / 1.8 = 1967 A`` and up
        to the far edge of the last pixel, ``10 ** (3.549 + 0.4686) = 10414 A``.
        """
        return cls(1960.0, 10420.0, 8461)

    @classmethod
    def desi(cls) -> RestframeGrid:
        """The DESI galaxy-model grid of Liang et al. (2023b)."""
        return cls(2000.0, 9824.0, 9780)

    @classmethod
    def for_instrument(cls, instrument: str | Instrument) -> RestframeGrid:
        """The default grid of an instrument (``SDSS``, ``BOSS`` or ``DESI``)."""
        name = get_instrument(instrument).name
        return {"SDSS": cls.sdss, "BOSS": cls.boss, "DESI": cls.desi}[name]()

    def wave(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Grid as a tensor of shape ``(n,)``."""
        return torch.linspace(self.start, self.stop, self.n, dtype=dtype)


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`~speculum.models.SpectrumAutoencoder`.

    Attributes:
        instrument: Name of the observing instrument (``SDSS``, ``BOSS``, ``DESI``).
        n_latent: Latent dimension ``S``.
        restframe: Restframe grid of the decoder; ``None`` (default) picks
            :meth:`RestframeGrid.for_instrument`. The model refuses a grid that does not
            cover the instrument over its redshift range (:func:`check_restframe_coverage`).
        encoder_channels: Conv channels of the three encoder blocks.
        encoder_kernels: Conv kernel sizes (odd).
        encoder_pools: Max-pool sizes after the first two blocks.
        encoder_hidden: Widths of the encoder MLP from the attended features to ``S``.
        decoder_hidden: Widths of the decoder MLP from ``S`` to the restframe grid.
        lsf_sigma: Width (observed pixels) of a Gaussian line-spread kernel applied after
            resampling; ``None`` for no LSF.
        lsf_trainable: Whether that kernel is learned.
        mask_aware: In-paint zero-weight pixels before encoding so that their flux cannot
            influence the latents (the reference feeds them raw).
        normalize: Fit each spectrum's amplitude instead of assuming normalised inputs
            (the reference's ``normalize=True``): the restframe model is divided by its own
            median over :data:`~speculum.physics.NORMALIZATION_RANGE` (5300 - 5850 A), which
            the restframe grid always covers, and the observed model is scaled by the
            maximum-likelihood amplitude ``A = sum(w m y) / sum(w m m)`` over valid, weighted
            pixels. Use it where the data's own normalisation window is not (fully)
            observed: DESI at ``z > 0.68`` and BOSS at ``z > 0.78``. Off by default, which
            leaves existing checkpoints and results unchanged.
    """

    instrument: str = "SDSS"
    n_latent: int = 10
    restframe: RestframeGrid | None = None
    encoder_channels: tuple[int, int, int] = (128, 256, 512)
    encoder_kernels: tuple[int, int, int] = (5, 11, 21)
    encoder_pools: tuple[int, int] = (5, 11)
    encoder_hidden: tuple[int, ...] = (128, 64, 32)
    decoder_hidden: tuple[int, ...] = (64, 256, 1024)
    lsf_sigma: float | None = None
    lsf_trainable: bool = True
    mask_aware: bool = True
    normalize: bool = False

    def __post_init__(self) -> None:
        if self.restframe is None:  # frozen: resolve the instrument's default once, here
            object.__setattr__(self, "restframe", RestframeGrid.for_instrument(self.instrument))
        if self.n_latent < 1:
            raise ValueError(f"n_latent: expected >= 1, got {self.n_latent}")
        if self.encoder_channels[2] % 2:
            raise ValueError(f"encoder_channels: last must be even (values + keys), got {self.encoder_channels}")
        if any(k % 2 == 0 for k in self.encoder_kernels):
            raise ValueError(f"encoder_kernels: expected odd sizes, got {self.encoder_kernels}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dictionary."""
        return dataclasses.asdict(self)


def check_restframe_coverage(restframe: RestframeGrid, instrument: str | Instrument) -> None:
    """Require ``restframe x (1 + z)`` to cover the observed grid for every ``z`` in the instrument's range.

    The grid must reach down to ``wave_obs[0] / (1 + z_max)`` and up to
    ``wave_obs[-1] / (1 + z_min)``; up to one observed pixel may be lost at each end at
    the extreme redshifts (as with the reference's SDSS and DESI grids, which end exactly
    at, or 0.6 A short of, the last pixel).

    Raises:
        ValueError: naming ``restframe``, the needed and the given range, and the default.
    """
    inst = get_instrument(instrument)
    wave = inst.wave_obs
    z_min, z_max = inst.z_range
    need_start, need_stop = wave[0] / (1 + z_max), wave[-1] / (1 + z_min)
    start_ok = restframe.start * (1 + z_max) <= wave[0] + (wave[1] - wave[0])
    stop_ok = restframe.stop * (1 + z_min) >= wave[-1] - (wave[-1] - wave[-2])
    if not (start_ok and stop_ok):
        raise ValueError(
            f"restframe: the {inst.name} grid ({wave[0]:.1f} - {wave[-1]:.1f} A) at z in [{z_min}, {z_max}] needs "
            f"a restframe grid covering {need_start:.1f} - {need_stop:.1f} A, got {restframe.start:.1f} - "
            f"{restframe.stop:.1f} A; RestframeGrid.for_instrument({inst.name!r}) = "
            f"{RestframeGrid.for_instrument(inst)} covers it"
        )


def config_from_dict(data: dict[str, Any]) -> AutoencoderConfig:
    """Rebuild an :class:`AutoencoderConfig`; unknown or missing fields raise ``ValueError``."""
    names = {f.name for f in dataclasses.fields(AutoencoderConfig)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"config: unknown field(s) {sorted(unknown)}; expected a subset of {sorted(names)}")
    kwargs = dict(data)
    if "restframe" in kwargs:
        rf = kwargs["restframe"]
        rf_names = {f.name for f in dataclasses.fields(RestframeGrid)}
        if not isinstance(rf, dict) or set(rf) - rf_names:
            raise ValueError(f"config.restframe: expected fields {sorted(rf_names)}, got {rf!r}")
        kwargs["restframe"] = RestframeGrid(**rf)
    for key in ("encoder_channels", "encoder_kernels", "encoder_pools", "encoder_hidden", "decoder_hidden"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return AutoencoderConfig(**kwargs)
