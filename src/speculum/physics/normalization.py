"""Median flux normalisation over a restframe window."""

from __future__ import annotations

import torch

from speculum._checks import check_grid, check_shape

__all__ = ["NORMALIZATION_RANGE", "fit_amplitude", "median_normalization", "window_median"]

NORMALIZATION_RANGE = (5300.0, 5850.0)
"""Restframe window (Angstrom) whose median flux normalises spectra, as in SPENDER."""


def median_normalization(
    wave_obs: torch.Tensor,
    flux: torch.Tensor,
    weights: torch.Tensor,
    z: torch.Tensor,
    window: tuple[float, float] = NORMALIZATION_RANGE,
) -> torch.Tensor:
    """Median flux of each spectrum over a restframe window, using ``weights > 0`` only.

    Args:
        wave_obs: Observed grid, shape ``(L,)``, Angstrom.
        flux: Spectra, shape ``(N, L)``.
        weights: Inverse variance x mask, shape ``(N, L)``.
        z: Redshifts, shape ``(N,)``.
        window: Restframe range in Angstrom.

    Returns:
        Normalisations, shape ``(N,)``; ``NaN`` where the window holds no usable pixel
        (caller decides: give those spectra zero weight or drop them).

    Example:
        >>> wave = torch.linspace(5000.0, 7000.0, 201)
        >>> flux = torch.full((1, 201), 3.0)
        >>> median_normalization(wave, flux, torch.ones(1, 201), torch.tensor([0.1]))
        tensor([3.])
    """
    check_grid(wave_obs, "wave_obs")
    check_shape(flux, "flux", (None, wave_obs.shape[0]))
    check_shape(weights, "weights", tuple(flux.shape))
    check_shape(z, "z", (flux.shape[0],))
    wave_rest = wave_obs[None, :] / (1 + z[:, None].to(wave_obs.dtype))
    sel = (weights > 0) & (wave_rest > window[0]) & (wave_rest < window[1])
    masked = torch.where(sel, flux, torch.full_like(flux, float("nan")))
    return torch.nanmedian(masked, dim=1).values


def window_median(
    wave: torch.Tensor, flux: torch.Tensor, window: tuple[float, float] = NORMALIZATION_RANGE
) -> torch.Tensor:
    """Median of each spectrum over the pixels with ``window[0] < wave < window[1]``.

    The lower median for an even pixel count (:func:`torch.nanmedian`), as in the
    reference ``spender`` (``normalize=True``), which applies it to restframe models.

    Args:
        wave: Grid of the spectra, shape ``(L,)``, Angstrom.
        flux: Spectra, shape ``(N, L)``.
        window: Range in Angstrom; must contain at least one pixel of ``wave``.

    Returns:
        Medians, shape ``(N,)``.

    Example:
        >>> wave = torch.linspace(5000.0, 6000.0, 11)
        >>> window_median(wave, wave[None] / 1000)  # pixels at 5400 ... 5800 A
        tensor([5.6000])
    """
    check_grid(wave, "wave")
    check_shape(flux, "flux", (None, wave.shape[0]))
    sel = (wave > window[0]) & (wave < window[1])
    if not bool(sel.any()):
        raise ValueError(
            f"window: expected a range overlapping the grid {float(wave[0]):.1f}-{float(wave[-1]):.1f} A, got {window}"
        )
    return flux[:, sel].nanmedian(dim=1).values


def fit_amplitude(model: torch.Tensor, data: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Maximum-likelihood amplitude ``A`` of ``data ~ A model`` with inverse-variance weights.

    ``A = sum(w m d) / sum(w m m)`` per spectrum (``spender.util.calc_normalization``).
    A spectrum without a weighted pixel where the model is non-zero gets ``A = 1`` (the
    reference gives ``NaN``, which would poison a loss even at zero weight).

    Args:
        model: Model spectra, shape ``(N, L)``.
        data: Observed spectra, shape ``(N, L)``.
        weights: Inverse variance x mask x validity, shape ``(N, L)``, ``>= 0``.

    Returns:
        Amplitudes, shape ``(N,)``.

    Example:
        >>> fit_amplitude(torch.ones(1, 4), torch.full((1, 4), 3.0), torch.ones(1, 4))
        tensor([3.])
    """
    check_shape(model, "model", (None, None))
    check_shape(data, "data", tuple(model.shape))
    check_shape(weights, "weights", tuple(model.shape))
    wm = weights.to(model.dtype) * model
    num = (wm * data).sum(dim=1)
    den = (wm * model).sum(dim=1)
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.ones_like(den))
