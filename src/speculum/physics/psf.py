"""Point-spread functions of images: a Gaussian kernel, convolution and its adjoint.

Images are ``(*, H, W)``; kernels ``(h, w)`` with odd sides, centred on the middle pixel
and normalised to unit sum. Convolutions are "same"-sized with zero padding, so the
operator ``A`` they define is a plain matrix on the ``H W`` pixels, and
:func:`correlate_psf` applies ``Aᵀ`` exactly (flux that the kernel spreads beyond the
edge is lost, as on a detector).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["convolve_psf", "correlate_psf", "gaussian_psf"]


def gaussian_psf(sigma: float, half_width: int | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A circular Gaussian PSF of standard deviation ``sigma`` pixels, pixel-integrated.

    Args:
        sigma: standard deviation in pixels (> 0).
        half_width: kernel half-size; default ``ceil(4 sigma)``, giving ``(2 h + 1, 2 h + 1)``.

    Returns:
        ``(2 h + 1, 2 h + 1)`` kernel with unit sum.

    Example:
        >>> k = gaussian_psf(1.5)
        >>> k.shape, round(float(k.sum()), 12)
        (torch.Size([13, 13]), 1.0)
    """
    if not sigma > 0:
        raise ValueError(f"gaussian_psf: sigma must be > 0 pixels, got {sigma}")
    h = int(math.ceil(4 * sigma)) if half_width is None else int(half_width)
    edges = torch.arange(-h - 0.5, h + 1.0, 1.0, dtype=torch.float64)
    cdf = 0.5 * (1 + torch.erf(edges / (sigma * math.sqrt(2))))
    p = cdf[1:] - cdf[:-1]
    k = p[:, None] * p[None, :]
    return (k / k.sum()).to(dtype)


def _check(image: torch.Tensor, psf: torch.Tensor, name: str) -> None:
    if psf.ndim != 2 or psf.shape[0] % 2 == 0 or psf.shape[1] % 2 == 0:
        raise ValueError(f"{name}: psf must be (h, w) with odd sides, got {tuple(psf.shape)}")
    if image.ndim < 2:
        raise ValueError(f"{name}: image must be (*, H, W), got {tuple(image.shape)}")


def _conv(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    lead, (h, w) = image.shape[:-2], image.shape[-2:]
    x = image.reshape(-1, 1, h, w)
    k = kernel.to(image)[None, None]
    out = F.conv2d(x, k, padding=(kernel.shape[0] // 2, kernel.shape[1] // 2))
    return out.reshape(*lead, h, w)


def convolve_psf(image: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """``A x``: the image convolved with the PSF ("same" size, zero padding).

    Args:
        image: ``(*, H, W)``.
        psf: ``(h, w)`` with odd sides.

    Returns:
        ``(*, H, W)``. A point source in the middle of a large image keeps its flux.
    """
    _check(image, psf, "convolve_psf")
    return _conv(image, psf.flip(-1, -2))  # conv2d correlates; a flipped kernel convolves


def correlate_psf(image: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """``Aᵀ x``: the adjoint of :func:`convolve_psf` (correlation with the PSF).

    ``<A x, y> = <x, Aᵀ y>`` holds exactly, edges included. With ``psf ** 2`` and a weight
    image ``w`` it gives the exact diagonal of ``Aᵀ diag(w) A``.
    """
    _check(image, psf, "correlate_psf")
    return _conv(image, psf)
