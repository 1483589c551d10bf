"""SPENDER autoencoder: encoder -> latents -> restframe decoder -> explicit forward model."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from speculum._checks import check_finite, check_nonnegative, check_shape
from speculum.instruments import Instrument, get_instrument
from speculum.models.config import AutoencoderConfig, check_restframe_coverage, config_from_dict
from speculum.models.encoder import SpectrumEncoder
from speculum.models.layers import MLP, SpeculatorActivation
from speculum.models.registry import register_model
from speculum.physics import (
    NORMALIZATION_RANGE,
    apply_resolution_matrix,
    convolve_lsf,
    fit_amplitude,
    gaussian_kernel,
    resample_to_observed,
    shrink_valid,
    window_median,
)

__all__ = ["AutoencoderOutput", "SpectrumAutoencoder", "SpectrumDecoder"]


class AutoencoderOutput(NamedTuple):
    """Result of :meth:`SpectrumAutoencoder.forward`.

    Attributes:
        latents: ``(N, S)``.
        restframe: Restframe models on the decoder grid, ``(N, L_rest)``; with
            ``config.normalize`` scaled to the fitted amplitude of the data.
        observed: Models on the instrument grid, ``(N, L)``; zero where invalid.
        valid: Observed pixels where the model is exact, ``(N, L)`` bool: covered by the
            redshifted restframe grid and, after an LSF or resolution matrix, farther
            than its half-width from any uncovered pixel. A loss must give the others
            zero weight.
    """

    latents: torch.Tensor
    restframe: torch.Tensor
    observed: torch.Tensor
    valid: torch.Tensor


class SpectrumDecoder(nn.Module):
    """MLP ``S -> 64 -> 256 -> 1024 -> L_rest`` with Speculator activations, output ``+1``.

    Args:
        n_latent: Latent dimension ``S``.
        n_rest: Restframe pixels ``L_rest``.
        hidden: Hidden widths.
    """

    def __init__(self, n_latent: int, n_rest: int, hidden: tuple[int, ...] = (64, 256, 1024)) -> None:
        super().__init__()
        self.n_latent = n_latent
        self.mlp = MLP(n_latent, n_rest, hidden, lambda width, last: SpeculatorActivation(width, plus_one=last))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Restframe spectra ``(N, L_rest)`` from latents ``(N, S)``."""
        return self.mlp(s)


@register_model("SpectrumAutoencoder", config_from_dict=config_from_dict)
class SpectrumAutoencoder(nn.Module):
    """The SPENDER autoencoder with an explicit, differentiable forward model.

    ``observed = LSF(resample(decoder(encoder(y, w)), wave_rest (1 + z) -> wave_obs))``,
    where the LSF is a (trainable) kernel or, when given, each spectrum's banded
    resolution matrix (DESI).

    Observed pixels outside the redshifted restframe grid are not an error: the model is
    zero there and :attr:`AutoencoderOutput.valid` is ``False``, which the losses use as
    zero weight. So are pixels whose LSF window (``K // 2`` pixels, also past the ends of
    the observed grid, which the convolution pads with zeros) or resolution band (``D // 2``
    pixels) reaches an uncovered pixel: their value mixes in the zero model there.

    With ``config.normalize`` the amplitude is fitted to the data rather than taken from
    the inputs' normalisation (see :class:`~speculum.models.AutoencoderConfig`).

    Args:
        config: Architecture; see :class:`~speculum.models.AutoencoderConfig`.

    Raises:
        ValueError: If the restframe grid does not cover the instrument's observed grid
            over its redshift range (:func:`~speculum.models.config.check_restframe_coverage`).

    Example:
        >>> cfg = AutoencoderConfig(instrument="SDSS", n_latent=4)
        >>> model = SpectrumAutoencoder(cfg)
        >>> y = torch.ones(2, model.instrument.n_pixels)
        >>> out = model(y, torch.ones_like(y), torch.tensor([0.05, 0.1]))
        >>> out.latents.shape, out.observed.shape
        (torch.Size([2, 4]), torch.Size([2, 3921]))
    """

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.instrument: Instrument = get_instrument(config.instrument)
        check_restframe_coverage(config.restframe, self.instrument)
        self.encoder = SpectrumEncoder(
            config.n_latent,
            config.encoder_channels,
            config.encoder_kernels,
            config.encoder_pools,
            config.encoder_hidden,
            mask_aware=config.mask_aware,
        )
        self.decoder = SpectrumDecoder(config.n_latent, config.restframe.n, config.decoder_hidden)
        self.register_buffer("wave_rest", config.restframe.wave(torch.float64), persistent=False)
        self.register_buffer("wave_obs", self.instrument.wave(torch.float64), persistent=False)
        if config.lsf_sigma is not None:
            kernel = gaussian_kernel(config.lsf_sigma, dtype=torch.float32)
            self.lsf = nn.Parameter(kernel, requires_grad=config.lsf_trainable)
        else:
            self.lsf = None

    def encode(self, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """Latents ``(N, S)`` of normalised spectra ``(N, L)`` with weights ``(N, L)``."""
        return self.encoder(y, w)

    def decode(self, s: torch.Tensor) -> torch.Tensor:
        """Restframe models ``(N, L_rest)`` from latents ``(N, S)``."""
        return self.decoder(s)

    def observe(
        self, restframe: torch.Tensor, z: torch.Tensor, resolution: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward model: redshift, resample, then resolution matrix or LSF.

        Args:
            restframe: ``(N, L_rest)``.
            z: ``(N,)``.
            resolution: Optional banded matrices ``(N, D, L)`` (DESI layout).

        Returns:
            ``(observed (N, L), valid (N, L))``; ``observed`` is zero where not ``valid``.
        """
        observed, valid = resample_to_observed(restframe, self.wave_rest, z, self.wave_obs)
        if resolution is not None:
            observed = apply_resolution_matrix(observed, resolution)
            # the band is defined on the observed grid only: just the coverage edges contaminate
            valid = shrink_valid(valid, resolution.shape[-2] // 2, outside_valid=True)
        elif self.lsf is not None:
            observed = convolve_lsf(observed, self.lsf)
            # zero padding beyond the coverage and beyond the ends of the grid
            valid = shrink_valid(valid, self.lsf.numel() // 2, outside_valid=False)
        else:
            return observed, valid
        return observed * valid, valid

    def normalize(
        self,
        y: torch.Tensor,
        w: torch.Tensor | None,
        restframe: torch.Tensor,
        observed: torch.Tensor,
        valid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale models to the data, as the reference with ``normalize=True``.

        Divide by the restframe model's median over ``NORMALIZATION_RANGE``, then multiply
        by the maximum-likelihood amplitude of the observed model to ``y`` with weights
        ``w x valid``.

        Args:
            y: Spectra, ``(N, L)``, in any flux units.
            w: Weights, ``(N, L)``, or ``None`` for equal weights.
            restframe: ``(N, L_rest)``.
            observed: ``(N, L)``.
            valid: ``(N, L)`` bool.

        Returns:
            ``(restframe (N, L_rest), observed (N, L))`` scaled.
        """
        norm = window_median(self.wave_rest, restframe, NORMALIZATION_RANGE)[:, None]
        observed = observed / norm
        weights = valid.to(observed.dtype) if w is None else w * valid
        amplitude = fit_amplitude(observed, y, weights)[:, None]
        return restframe / norm * amplitude, observed * amplitude

    def check_inputs(self, y: torch.Tensor, w: torch.Tensor | None, z: torch.Tensor | None) -> None:
        """Validate shapes, finiteness, weights and redshift range; raise ``ValueError``."""
        check_shape(y, "y", (None, self.instrument.n_pixels))
        check_finite(y, "y")
        if w is not None:
            check_shape(w, "w", tuple(y.shape))
            check_nonnegative(w, "w")
        if z is not None:
            check_shape(z, "z", (y.shape[0],))
            self.instrument.check_redshift(z)

    def forward(
        self,
        y: torch.Tensor,
        w: torch.Tensor | None,
        z: torch.Tensor,
        resolution: torch.Tensor | None = None,
        s: torch.Tensor | None = None,
        check: bool = True,
    ) -> AutoencoderOutput:
        """Encode, decode and observe.

        Args:
            y: Normalised spectra, shape ``(N, L)``, finite (in-paint or zero masked pixels);
                with ``config.normalize`` in any flux units.
            w: Inverse variance x mask, shape ``(N, L)``, ``>= 0``; may be ``None``
                (equal weights).
            z: Redshifts, shape ``(N,)``, within the instrument's range.
            resolution: Optional per-spectrum resolution matrices ``(N, D, L)``.
            s: Optional latents ``(N, S)``; skips the encoder.
            check: Validate inputs (cheap; turn off inside tight loops on trusted data).

        Returns:
            :class:`AutoencoderOutput`.
        """
        if check:
            self.check_inputs(y, w, z)
        latents = self.encode(y, w) if s is None else s
        restframe = self.decode(latents)
        observed, valid = self.observe(restframe, z, resolution)
        if self.config.normalize:
            restframe, observed = self.normalize(y, w, restframe, observed, valid)
        return AutoencoderOutput(latents, restframe, observed, valid)
