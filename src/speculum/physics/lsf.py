"""Line-spread convolution and per-spectrum banded resolution matrices."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from speculum._checks import check_shape

__all__ = ["apply_resolution_matrix", "convolve_lsf", "gaussian_kernel", "gaussian_resolution_matrix", "shrink_valid"]


def gaussian_kernel(sigma: float, half_width: int | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Unit-sum Gaussian kernel sampled at integer pixel offsets.

    Args:
        sigma: Standard deviation in pixels (> 0).
        half_width: Kernel extends over ``[-half_width, half_width]``; default
            ``ceil(4 sigma)``.

    Returns:
        Kernel, shape ``(2 * half_width + 1,)``, summing to one.
    """
    if not sigma > 0:
        raise ValueError(f"sigma: expected a positive width in pixels, got {sigma}")
    h = int(torch.ceil(torch.tensor(4.0 * sigma))) if half_width is None else int(half_width)
    x = torch.arange(-h, h + 1, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def convolve_lsf(flux: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Flux-preserving convolution with a line-spread kernel (odd length ``K``).

    ``y_i = sum_r k_r x_{i - (r - K // 2)} / sum_r k_r`` with zeros beyond the edges, so
    integrated flux is conserved away from the edges. The kernel may be a trainable
    parameter; it is normalised here.

    Args:
        flux: Spectra, shape ``(N, L)``.
        kernel: Kernel, shape ``(K,)`` with odd ``K``.

    Returns:
        Convolved spectra, shape ``(N, L)``.
    """
    check_shape(flux, "flux", (None, None))
    check_shape(kernel, "kernel", (None,))
    if kernel.numel() % 2 != 1:
        raise ValueError(f"kernel: expected an odd length, got {kernel.numel()}")
    weight = (kernel / kernel.sum()).flip(0).to(flux.dtype).view(1, 1, -1)
    return F.conv1d(flux[:, None, :], weight, padding=kernel.numel() // 2)[:, 0]


def apply_resolution_matrix(flux: torch.Tensor, resolution: torch.Tensor) -> torch.Tensor:
    """Apply per-spectrum banded resolution matrices in the DESI layout.

    DESI stores each fibre's matrix as ``data`` of shape ``(D, L)`` with diagonal offsets
    ``D // 2, ..., -(D // 2)`` in ``scipy.sparse.dia_matrix`` convention:
    ``R[i, j] = data[d, j]`` where ``j - i = offsets[d]``. Hence
    ``y_i = sum_d data[d, i + o_d] x_{i + o_d}``.

    Args:
        flux: Spectra, shape ``(N, L)``.
        resolution: Banded matrices, shape ``(N, D, L)`` or ``(D, L)`` (shared), ``D`` odd.

    Returns:
        Spectra as seen through the resolution, shape ``(N, L)``.
    """
    check_shape(flux, "flux", (None, None))
    res = resolution if resolution.ndim == 3 else resolution[None]
    if res.ndim != 3 or res.shape[-1] != flux.shape[-1] or res.shape[1] % 2 != 1:
        raise ValueError(
            f"resolution: expected shape (N, D, {flux.shape[-1]}) or (D, {flux.shape[-1]}) with odd D, "
            f"got {tuple(resolution.shape)}"
        )
    d = res.shape[1]
    h = d // 2
    res = res.to(flux.dtype)
    length = flux.shape[-1]
    out = res[:, h] * flux  # a new tensor: the off-diagonals are added into it in place
    for k in range(d):
        offset = h - k  # j - i
        if offset == 0:
            continue
        i0, i1 = max(0, -offset), min(length, length - offset)  # rows i whose column i + offset exists
        out[:, i0:i1] += res[:, k, i0 + offset : i1 + offset] * flux[:, i0 + offset : i1 + offset]
    return out


def gaussian_resolution_matrix(sigma: float, n_pixels: int, n_diag: int = 11, dtype: torch.dtype = torch.float64):
    """Banded matrix ``(n_diag, n_pixels)`` of a Gaussian LSF, in the DESI layout.

    Rows are normalised column by column like DESI's, so away from the edges applying it
    equals :func:`convolve_lsf` with :func:`gaussian_kernel` of the same width.
    """
    h = n_diag // 2
    kernel = gaussian_kernel(sigma, half_width=h, dtype=dtype)  # index r <-> offset r - h
    offsets = h - torch.arange(n_diag)  # j - i for each stored diagonal
    return kernel[h - offsets][:, None].expand(n_diag, n_pixels).clone()


def shrink_valid(valid: torch.Tensor, half_width: int, outside_valid: bool = False) -> torch.Tensor:
    """Pixels whose whole convolution window ``[i - h, i + h]`` lies on valid pixels.

    After a line-spread convolution or a banded resolution matrix of half-width ``h``, a
    pixel within ``h`` of an invalid one (where the model is zero, e.g. outside the
    redshifted restframe coverage) mixes that zero into its value, so it is invalid too.

    Args:
        valid: Valid pixels before the convolution, shape ``(N, L)``, bool.
        half_width: ``h = K // 2`` for a kernel of ``K`` taps, ``D // 2`` for ``D`` diagonals.
        outside_valid: Whether positions beyond the ends of the grid count as valid.
            ``False`` for :func:`convolve_lsf`, which pads with zeros there; ``True`` for
            :func:`apply_resolution_matrix`, whose matrix is defined on the grid only (DESI
            truncates the band at the grid's ends), so nothing is missing there.

    Returns:
        Shrunk validity, shape ``(N, L)``, bool.

    Example:
        >>> shrink_valid(torch.tensor([[False, True, True, True, True, True, False]]), 1)
        tensor([[False, False,  True,  True,  True, False, False]])
    """
    check_shape(valid, "valid", (None, None))
    if half_width < 0:
        raise ValueError(f"half_width: expected >= 0 pixels, got {half_width}")
    if half_width == 0:
        return valid
    padded = F.pad(valid.to(torch.uint8), (half_width, half_width), value=int(outside_valid))
    return padded.unfold(1, 2 * half_width + 1, 1).amin(dim=-1).bool()
