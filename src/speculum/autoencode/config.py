"""Model presets of the autoencoder method: named sizes for each instrument."""

from __future__ import annotations

from collections.abc import Callable

from speculum.instruments import get_instrument
from speculum.models import AutoencoderConfig, RestframeGrid

__all__ = ["PRESETS"]


def _small(instrument: str) -> AutoencoderConfig:
    # CPU-demo size: narrower encoder, a 2x coarser restframe grid (the instrument's default range), smaller decoder
    full = RestframeGrid.for_instrument(instrument)
    rf = RestframeGrid(full.start, full.stop, (full.n + 1) // 2)
    return AutoencoderConfig(
        instrument=instrument,
        normalize=_needs_amplitude_fit(instrument),
        n_latent=8,
        restframe=rf,
        encoder_channels=(32, 64, 128),
        encoder_hidden=(64, 32),
        decoder_hidden=(64, 256, 512),
    )


def _paper(instrument: str) -> AutoencoderConfig:
    return AutoencoderConfig(
        instrument=instrument,
        restframe=RestframeGrid.for_instrument(instrument),
        normalize=_needs_amplitude_fit(instrument),
    )


def _needs_amplitude_fit(instrument: str) -> bool:
    """Whether the 5300-5850 A normalisation window leaves the instrument's range within its redshifts.

    Then (BOSS beyond z = 0.78, DESI beyond z = 0.68) the presets fit each spectrum's amplitude
    in the model (``AutoencoderConfig.normalize``), so those spectra stay usable.
    """
    inst = get_instrument(instrument)
    return 5850.0 * (1 + inst.z_range[1]) > float(inst.wave_obs[-1])


PRESETS: dict[str, Callable[[str], AutoencoderConfig]] = {"small": _small, "paper": _paper}
"""Named model sizes: ``small`` (CPU demo) and ``paper`` (Melchior et al. 2023)."""
