"""Spectra from shard columns to model-ready tensors: weights, normalisation, usable rows.

The bad-pixel policy is written once, here (:func:`pixel_weights`): a pixel counts with
weight ``ivar`` where its :class:`~speculum.instruments.PixelMask` is 0 and ``ivar`` is
finite and positive, else 0. The survey readers coadd with it, :func:`prepare_spectra`
builds the model's weights with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from speculum.instruments import get_instrument
from speculum.io.shards import DataFormatError
from speculum.physics import median_normalization

__all__ = ["PreparedSpectra", "pixel_weights", "prepare_spectra"]


def pixel_weights(ivar: np.ndarray, mask: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Per-pixel weights: ``ivar`` where ``mask == 0`` and ``ivar`` is finite and ``> 0``, else 0.

    Args:
        ivar: Inverse variances ``(*, L)``.
        mask: :class:`~speculum.instruments.PixelMask` bits, same shape.
        dtype: Floating type of the weights (``ivar`` is cast to it before the checks).

    Returns:
        Weights ``(*, L)`` of type ``dtype``, all finite and ``>= 0``.

    Example:
        >>> pixel_weights(np.array([1.0, 2.0, np.inf, -1.0]), np.array([0, 1, 0, 0])).tolist()
        [1.0, 0.0, 0.0, 0.0]
    """
    w = np.where(np.asarray(mask) == 0, np.asarray(ivar), 0.0).astype(dtype)
    return np.where(np.isfinite(w) & (w > 0), w, 0.0).astype(dtype)


@dataclass
class PreparedSpectra:
    """Model-ready tensors.

    ``y`` normalised flux ``(N, L)``, ``w`` weights ``(N, L)``, ``z`` redshifts ``(N,)``,
    ``index`` the input rows kept, ``norm`` the normalisation of each kept row,
    ``resolution`` the per-spectrum banded resolution matrices ``(N, D, L)`` where the data
    carry them (DESI), else None; ``skipped`` counts dropped rows by reason.
    """

    y: torch.Tensor
    w: torch.Tensor
    z: torch.Tensor
    index: np.ndarray
    norm: torch.Tensor
    skipped: dict[str, int]
    resolution: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor]:
        """``y``, ``w``, ``z`` (and ``resolution`` where present): a batch for the trainer."""
        out = {"y": self.y, "w": self.w, "z": self.z}
        if self.resolution is not None:
            out["resolution"] = self.resolution
        return out


def prepare_spectra(
    columns: dict[str, np.ndarray], instrument: str, keep_all: bool = False, fit_amplitude: bool = False
) -> PreparedSpectra:
    """Weights from ``ivar`` and ``mask``, SPENDER median normalisation, unusable rows dropped.

    A row is dropped (and counted in ``skipped``) when its redshift is missing or outside
    the instrument's range, or when the normalisation window has no good pixel. With
    ``keep_all`` such rows are kept with zero weight (and ``z = 0``) instead, so that
    streamed batches keep their size. A ``resolution`` column (DESI: ``D`` diagonals x
    ``L`` pixels per row, flattened) becomes ``PreparedSpectra.resolution`` ``(N, D, L)``.
    Nothing is logged here: callers report ``skipped`` once for all their chunks.

    With ``fit_amplitude`` (for models that fit each spectrum's amplitude themselves,
    ``AutoencoderConfig.normalize``) a row whose normalisation window is not observed
    (DESI at z > 0.68, BOSS at z > 0.78) is kept, scaled by the median of its usable flux.

    Args:
        columns: ``z`` ``(N,)``, ``flux``, ``ivar``, ``mask`` ``(N, L)`` and optionally
            ``resolution`` ``(N, D * L)`` (as :meth:`speculum.io.SpectraSet.read` returns them).
        instrument: Instrument name (grid and redshift range).
        keep_all: Keep unusable rows with zero weight instead of dropping them.
        fit_amplitude: Keep rows without a normalisation window (see above).

    Returns:
        :class:`PreparedSpectra` of the ``M`` kept rows.
    """
    inst = get_instrument(instrument)
    z = np.asarray(columns["z"], dtype=np.float64)
    w = pixel_weights(columns["ivar"], columns["mask"])
    flux = np.nan_to_num(np.asarray(columns["flux"], dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    skipped = {}
    no_z = ~np.isfinite(z)
    skipped["no_redshift"] = int(no_z.sum())
    lo, hi = inst.z_range
    out_z = ~no_z & ((z < lo) | (z > hi))
    skipped["redshift_out_of_range"] = int(out_z.sum())
    keep = ~(no_z | out_z)
    zt = torch.from_numpy(np.where(keep, z, 0.0))
    norm = median_normalization(inst.wave(torch.float64), torch.from_numpy(flux), torch.from_numpy(w), zt)
    bad_norm = keep & ~(torch.isfinite(norm) & (norm > 0)).numpy()
    if fit_amplitude and bad_norm.any():
        for i in np.nonzero(bad_norm)[0]:
            good = flux[i][w[i] > 0]
            scale = float(np.median(np.abs(good))) if len(good) else 0.0
            if scale > 0:
                norm[i], bad_norm[i] = scale, False
    skipped["no_normalisation"] = int(bad_norm.sum())
    keep &= ~bad_norm
    if keep_all:
        norm = torch.where(torch.from_numpy(keep), norm, torch.ones_like(norm))
        w = np.where(keep[:, None], w, 0.0).astype(np.float32)
        zt = torch.where(torch.from_numpy(keep), zt, torch.zeros_like(zt))
        idx = np.arange(len(z))
    else:
        idx = np.nonzero(keep)[0]
    nm = norm[idx].float()
    y = torch.from_numpy(flux[idx]) / nm[:, None]
    wt = torch.from_numpy(w[idx]) * nm[:, None] ** 2
    res = columns.get("resolution")
    if res is not None:
        res = np.asarray(res, dtype=np.float32)
        length = flux.shape[1]
        if res.ndim != 2 or res.shape[0] != len(z) or res.shape[1] % length:
            raise DataFormatError(
                f"column 'resolution': expected (N, D * {length}) for {len(z)} spectra, got {res.shape}"
            )
        res = torch.from_numpy(res[idx].reshape(len(idx), res.shape[1] // length, length))  # also when no row is kept
    return PreparedSpectra(y=y, w=wt, z=zt[idx].float(), index=idx, norm=nm, skipped=skipped, resolution=res)
