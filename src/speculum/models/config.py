"""Typed, immutable configurations stored inside every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["AutoencoderConfig", "RestframeGrid", "config_from_dict"]


@dataclass(frozen=True)
class RestframeGrid:
    """Linear restframe wavelength grid ``linspace(start, stop, n)`` in Angstrom.

    Defaults are the SPENDER SDSS grid (2359 - 9332 A in 7000 bins), wider and finer than
    the instrument. DESI uses :meth:`desi` (2000 - 9824 A in 9780 bins).
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
    def desi(cls) -> RestframeGrid:
        """The DESI galaxy-model grid of Liang et al. (2023b)."""
        return cls(2000.0, 9824.0, 9780)

    def wave(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Grid as a tensor of shape ``(n,)``."""
        return torch.linspace(self.start, self.stop, self.n, dtype=dtype)


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of :class:`~speculum.models.SpectrumAutoencoder`.

    Attributes:
        instrument: Name of the observing instrument (``SDSS``, ``BOSS``, ``DESI``).
        n_latent: Latent dimension ``S``.
        restframe: Restframe grid of the decoder.
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
    """

    instrument: str = "SDSS"
    n_latent: int = 10
    restframe: RestframeGrid = field(default_factory=RestframeGrid)
    encoder_channels: tuple[int, int, int] = (128, 256, 512)
    encoder_kernels: tuple[int, int, int] = (5, 11, 21)
    encoder_pools: tuple[int, int] = (5, 11)
    encoder_hidden: tuple[int, ...] = (128, 64, 32)
    decoder_hidden: tuple[int, ...] = (64, 256, 1024)
    lsf_sigma: float | None = None
    lsf_trainable: bool = True
    mask_aware: bool = True

    def __post_init__(self) -> None:
        if self.n_latent < 1:
            raise ValueError(f"n_latent: expected >= 1, got {self.n_latent}")
        if self.encoder_channels[2] % 2:
            raise ValueError(f"encoder_channels: last must be even (values + keys), got {self.encoder_channels}")
        if any(k % 2 == 0 for k in self.encoder_kernels):
            raise ValueError(f"encoder_kernels: expected odd sizes, got {self.encoder_kernels}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dictionary."""
        return dataclasses.asdict(self)


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
