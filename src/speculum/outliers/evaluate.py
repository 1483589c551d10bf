"""Known-answer evaluation of outlier scores: ROC AUC, precision at the top, PCA residual baselines.

Used by ``benchmarks/outliers.py`` on simulated spectra with labelled anomalies. Every score
here follows one convention: **higher = more anomalous** (pass ``-log_p`` for the flow).

* :func:`speculum.metrics.roc_auc`, :func:`~speculum.metrics.precision_at`: how well a score
  separates labelled anomalies (numpy only; imported here for the examples);
* :func:`pca_residual`: the classic baseline, the reduced chi-square of the weighted
  least-squares fit of each observed spectrum by a restframe basis (e.g. the SDSS galaxy
  eigenspectra of Yip et al. 2004, :func:`read_yip_eigenspectra`) shifted to its redshift;
* :func:`to_restframe` and :func:`fit_pca`: a PCA basis fitted to training spectra in
  their restframe (the baseline trained on the same data as the model).

Example:
    >>> import numpy as np
    >>> roc_auc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([False, False, True, True]))
    1.0
    >>> precision_at(np.arange(10.0), np.arange(10) >= 8, fraction=0.2)
    1.0
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speculum.metrics import precision_at, roc_auc  # noqa: F401  (their home before speculum.metrics)

__all__ = ["fit_pca", "pca_residual", "read_yip_eigenspectra", "to_restframe"]


def read_yip_eigenspectra(path: str | Path, n_components: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The SDSS galaxy eigenspectra of Yip et al. (2004) from their FITS file.

    The file (as distributed with PyQSOFit, ``gal_eigenspec_Yip2004.fits``) holds one
    binary-table row with ``WAVE`` ``(3839,)`` (restframe vacuum Angstrom, log-spaced by
    1e-4 dex, 3450-8349 A) and ``PCA`` ``(10, 3839)`` (orthonormal eigenspectra).

    Args:
        path: The FITS file.
        n_components: Keep the first this many eigenspectra (default: all 10).

    Returns:
        ``wave`` ``(L_b,)`` and ``basis`` ``(K, L_b)``, float64.
    """
    from astropy.io import fits

    with fits.open(path) as hdul:
        row = hdul[1].data[0]
        wave = np.asarray(row["WAVE"], dtype=np.float64)
        basis = np.asarray(row["PCA"], dtype=np.float64).reshape(-1, len(wave))
    if n_components is not None:
        if not 1 <= n_components <= len(basis):
            raise ValueError(f"n_components: expected 1..{len(basis)}, got {n_components}")
        basis = basis[:n_components]
    return wave, basis


def _interp_rows(wave_new: np.ndarray, wave: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation of ``values`` ``(K, L)`` on ``wave`` to every row of ``wave_new`` ``(N, M)``.

    Returns ``(N, M, K)`` values (0 where undefined) and the ``(N, M)`` mask of points inside
    ``wave``'s range where every value is finite (NaN in ``values`` marks a gap of the basis).
    """
    i = np.clip(np.searchsorted(wave, wave_new) - 1, 0, len(wave) - 2)
    t = (wave_new - wave[i]) / (wave[i + 1] - wave[i])
    inside = (wave_new >= wave[0]) & (wave_new <= wave[-1])
    v = values.T  # (L, K)
    out = v[i] * (1 - t)[..., None] + v[i + 1] * t[..., None]
    finite = np.isfinite(out).all(-1)
    return np.where(finite[..., None], out, 0.0), inside & finite


def pca_residual(
    y: np.ndarray,
    w: np.ndarray,
    z: np.ndarray,
    wave_obs: np.ndarray,
    wave_basis: np.ndarray,
    basis: np.ndarray,
    mean: np.ndarray | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """Reduced chi-square of the weighted least-squares fit of each spectrum by a shifted basis.

    Each restframe basis vector (and ``mean``) is moved to the object's redshift (restframe
    wavelength ``wave_obs / (1 + z)``, linear interpolation) and the coefficients
    ``c = argmin sum_l w_l (y_l - mean_l - A_l c)^2`` solved per spectrum. Pixels outside the
    basis' wavelength range (or where it is NaN) carry no weight. With ``mean`` the mean is fixed (coefficient 1,
    a centred PCA of spectra normalised as ``y``); without it every basis vector is free
    (an uncentred basis such as Yip et al.'s, whose first eigenspectrum is the mean shape).

    Args:
        y: ``(N, L)`` observed spectra (any normalisation; the fit is linear).
        w: ``(N, L)`` inverse variances (0: unusable pixel).
        z: ``(N,)`` redshifts.
        wave_obs: ``(L,)`` observed wavelengths.
        wave_basis: ``(L_b,)`` increasing restframe wavelengths of the basis.
        basis: ``(K, L_b)`` basis vectors.
        mean: ``(L_b,)`` fixed mean spectrum (optional).
        chunk: Spectra per vectorised block (memory ``chunk * L * K`` floats).

    Returns:
        ``(N,)`` ``chi2 / (n_valid - K)`` (NaN where ``n_valid <= K``).
    """
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    basis = np.atleast_2d(np.asarray(basis, dtype=np.float64))
    wave_obs, wave_basis = np.asarray(wave_obs, np.float64), np.asarray(wave_basis, np.float64)
    n, npix = y.shape
    k = basis.shape[0]
    if w.shape != y.shape or z.shape != (n,) or wave_obs.shape != (npix,) or basis.shape[1] != len(wave_basis):
        raise ValueError(
            f"shapes: y {y.shape}, w {w.shape}, z {z.shape}, wave_obs {wave_obs.shape}, "
            f"wave_basis {wave_basis.shape}, basis {basis.shape} do not fit together"
        )
    vals = basis if mean is None else np.vstack([basis, np.asarray(mean, np.float64)[None]])
    out = np.full(n, np.nan)
    for s in range(0, n, chunk):
        sl = slice(s, min(s + chunk, n))
        rest = wave_obs[None, :] / (1 + z[sl, None])
        a, inside = _interp_rows(rest, wave_basis, vals)
        ww = np.where(inside, w[sl], 0.0)
        target = y[sl] - (a[..., k] if mean is not None else 0.0)
        a = a[..., :k]
        aw = a * ww[..., None]
        ata = aw.transpose(0, 2, 1) @ a
        atb = (aw.transpose(0, 2, 1) @ target[..., None])[..., 0]
        ata += 1e-12 * np.trace(ata, axis1=1, axis2=2)[:, None, None] * np.eye(k)  # empty-coverage safety
        c = np.linalg.solve(ata, atb[..., None])[..., 0]
        r = target - np.einsum("nlk,nk->nl", a, c)
        chi2 = (ww * r**2).sum(1)
        dof = (ww > 0).sum(1) - k
        out[sl] = np.where(dof > 0, chi2 / np.maximum(dof, 1), np.nan)
    return out


def to_restframe(
    y: np.ndarray, w: np.ndarray, z: np.ndarray, wave_obs: np.ndarray, wave_rest: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """De-redshift spectra onto a common restframe grid (linear interpolation).

    Args:
        y: ``(N, L)`` observed spectra.
        w: ``(N, L)`` weights (0: unusable).
        z: ``(N,)`` redshifts.
        wave_obs: ``(L,)`` observed wavelengths.
        wave_rest: ``(M,)`` restframe wavelengths.

    Returns:
        ``(N, M)`` spectra and weights; a restframe point gets weight 0 outside the observed
        coverage or next to an unusable pixel (the smaller of its two neighbours' weights).
    """
    y, w = np.asarray(y, np.float64), np.asarray(w, np.float64)
    z = np.asarray(z, np.float64)
    obs = np.asarray(wave_rest, np.float64)[None, :] * (1 + z[:, None])  # (N, M) where each lands
    wave_obs = np.asarray(wave_obs, np.float64)
    i = np.clip(np.searchsorted(wave_obs, obs) - 1, 0, len(wave_obs) - 2)
    t = (obs - wave_obs[i]) / (wave_obs[i + 1] - wave_obs[i])
    rows = np.arange(len(z))[:, None]
    yr = y[rows, i] * (1 - t) + y[rows, i + 1] * t
    wr = np.minimum(w[rows, i], w[rows, i + 1])
    inside = (obs >= wave_obs[0]) & (obs <= wave_obs[-1])
    return yr, np.where(inside, wr, 0.0)


def fit_pca(
    y: np.ndarray,
    w: np.ndarray,
    n_components: int,
    iterations: int = 15,
    min_count: int | None = None,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """A centred PCA of restframe spectra with gaps (``w = 0``), by alternating least squares.

    Only the observed values (``w > 0``) are fitted, each with equal weight: starting from a
    mean-filled SVD, ``iterations`` rounds alternate between each spectrum's coefficients
    (least squares over its observed pixels) and each pixel's mean and components (least
    squares over the spectra observing it): the low-rank model of data with gaps (Bailey
    2012, PASP 124, 1015, with unit weights). The gaps are then filled with that model and
    the returned mean and orthonormal components are the SVD of the filled data. Pixels
    observed by fewer than ``min_count`` spectra (the ends of the restframe range, seen only
    at the extreme redshifts) are left out: NaN in the mean and components, which
    :func:`pca_residual` treats as outside the basis.

    Args:
        y: ``(N, M)`` restframe spectra (e.g. from :func:`to_restframe`).
        w: ``(N, M)`` weights (only ``w > 0`` matters: which values are observed).
        n_components: Number of components ``K``.
        iterations: Alternating least-squares rounds.
        min_count: Fewest spectra a pixel needs (default ``max(2 (K + 1), N / 100)``).
        chunk: Rows (spectra or pixels) per vectorised block.

    Returns:
        ``mean`` ``(M,)`` and ``components`` ``(K, M)`` (orthonormal rows over the kept pixels).
    """
    y = np.asarray(y, np.float64)
    k = n_components
    if k < 1 or k > min(y.shape):
        raise ValueError(f"n_components: expected 1..{min(y.shape)}, got {k}")
    seen_all = np.asarray(w) > 0
    min_count = max(2 * (k + 1), int(np.ceil(len(y) / 100))) if min_count is None else min_count
    keep = seen_all.sum(0) >= min_count
    if keep.sum() <= k:
        raise ValueError(f"{int(keep.sum())} pixels observed by >= {min_count} spectra; too few for {k} components")
    y, seen = y[:, keep], seen_all[:, keep].astype(np.float64)
    n, m = y.shape
    count = seen.sum(0)
    mean = (y * seen).sum(0) / count
    _, _, vt = np.linalg.svd(np.where(seen > 0, y, mean) - mean, full_matrices=False)
    comps = vt[:k].copy()
    coef = np.zeros((n, k))
    ys = y * seen
    for _ in range(iterations):
        for a in range(0, n, chunk):  # coefficients of each spectrum
            sl = slice(a, min(a + chunk, n))
            g = (seen[sl, None, :] * comps[None]) @ comps.T + 1e-10 * np.eye(k)  # (n_c, K, K)
            b = ((ys[sl] - seen[sl] * mean) @ comps.T)[..., None]
            coef[sl] = np.linalg.solve(g, b)[..., 0]
        x = np.hstack([coef, np.ones((n, 1))])  # (N, K + 1): components and mean of each pixel
        for a in range(0, m, chunk):
            sl = slice(a, min(a + chunk, m))
            sx = seen[:, sl].T[:, :, None] * x[None]  # (m_c, N, K + 1)
            h = sx.transpose(0, 2, 1) @ x + 1e-10 * np.eye(k + 1)
            sol = np.linalg.solve(h, (ys[:, sl].T @ x)[..., None])[..., 0]
            comps[:, sl], mean[sl] = sol[:, :k].T, sol[:, k]
    filled = np.where(seen > 0, y, mean + coef @ comps)
    mean = filled.mean(0)
    _, _, vt = np.linalg.svd(filled - mean, full_matrices=False)
    mean_out = np.full(len(keep), np.nan)
    comps_out = np.full((k, len(keep)), np.nan)
    mean_out[keep], comps_out[:, keep] = mean, vt[:k]
    return mean_out, comps_out
