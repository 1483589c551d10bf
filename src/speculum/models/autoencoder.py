"""SPENDER autoencoder: encoder -> latents -> restframe decoder -> explicit forward model."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from speculum._checks import check_finite, check_nonnegative, check_shape
from speculum.instruments import Instrument, get_instrument
from speculum.models.config import AutoencoderConfig
from speculum.models.encoder import SpectrumEncoder
from speculum.models.layers import MLP, SpeculatorActivation
from speculum.physics import apply_resolution_matrix, convolve_lsf, gaussian_kernel, resample_to_observed

__all__ = ["AutoencoderOutput", "SpectrumAutoencoder", "SpectrumDecoder"]


class AutoencoderOutput(NamedTuple):
    """Result of :meth:`SpectrumAutoencoder.forward`.

    Attributes:
        latents: ``(N, S)``.
        restframe: Restframe models on the decoder grid, ``(N, L_rest)``.
        observed: Models on the instrument grid, ``(N, L)``; zero where invalid.
        valid: Observed pixels covered by the redshifted restframe grid, ``(N, L)``
            bool. A loss must give the others zero weight.
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


class SpectrumAutoencoder(nn.Module):
    """The SPENDER autoencoder with an explicit, differentiable forward model.

    ``observed = LSF(resample(decoder(encoder(y, w)), wave_rest (1 + z) -> wave_obs))``,
    where the LSF is a (trainable) kernel or, when given, each spectrum's banded
    resolution matrix (DESI).

    Observed pixels outside the redshifted restframe grid are not an error: the model is
    zero there and :attr:`AutoencoderOutput.valid` is ``False``, which the losses use as
    zero weight.

    Args:
        config: Architecture; see :class:`~speculum.models.AutoencoderConfig`.

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
            ``(observed (N, L), valid (N, L))``.
        """
        observed, valid = resample_to_observed(restframe, self.wave_rest, z, self.wave_obs)
        if resolution is not None:
            observed = apply_resolution_matrix(observed, resolution)
        elif self.lsf is not None:
            observed = convolve_lsf(observed, self.lsf)
        return observed, valid

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
            y: Normalised spectra, shape ``(N, L)``, finite (in-paint or zero masked pixels).
            w: Inverse variance x mask, shape ``(N, L)``, ``>= 0``; may be ``None``.
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
        return AutoencoderOutput(latents, restframe, observed, valid)
