"""Known answers of the outlier evaluation helpers (speculum.outliers.evaluate)."""

from __future__ import annotations

import numpy as np
import pytest

from speculum.outliers.evaluate import fit_pca, pca_residual, precision_at, roc_auc, to_restframe

pytest.importorskip("sklearn")


def test_roc_auc_known_answers():
    pos = np.array([False, False, False, True, True])
    assert roc_auc(np.array([0.1, 0.2, 0.3, 0.8, 0.9]), pos) == 1.0  # perfectly separating
    assert roc_auc(-np.array([0.1, 0.2, 0.3, 0.8, 0.9]), pos) == 0.0  # reversed
    assert roc_auc(np.ones(5), pos) == 0.5  # all tied
    assert np.isnan(roc_auc(np.arange(3.0), np.zeros(3, bool)))  # one class only
    with pytest.raises(ValueError, match="non-finite"):
        roc_auc(np.array([0.0, np.nan]), np.array([False, True]))


def test_precision_at_constructed_example():
    score = np.arange(100.0)
    pos = np.zeros(100, bool)
    pos[[99, 97, 50]] = True
    assert precision_at(score, pos, 0.05) == pytest.approx(2 / 5)  # top 5 = 95..99, two of them positive
    assert precision_at(score, pos, 0.01) == 1.0  # top 1 = 99
    assert precision_at(score, pos, 0.001) == 1.0  # at least one object
    assert precision_at(-score, pos, 0.02) == 0.0


def _smooth_basis(wave: np.ndarray, k: int) -> np.ndarray:
    """``k`` orthonormal smooth vectors on ``wave`` (sines and cosines of log wavelength)."""
    x = (np.log(wave) - np.log(wave[0])) / (np.log(wave[-1]) - np.log(wave[0]))
    raw = np.stack([np.cos(np.pi * j * x) for j in range(k)])
    q, _ = np.linalg.qr(raw.T)
    return q.T


def _observe(basis, wave_b, coef, z, wave_obs):
    """Basis combinations observed at ``z`` (restframe wavelength ``wave_obs / (1 + z)``)."""
    return np.stack([np.interp(wave_obs / (1 + zi), wave_b, c @ basis) for c, zi in zip(coef, z, strict=True)])


def test_pca_residual_is_one_for_basis_plus_unit_noise_and_large_for_a_spike():
    rng = np.random.default_rng(0)
    wave_b = np.geomspace(3000.0, 9000.0, 3000)
    wave_obs = np.geomspace(4000.0, 8000.0, 1500)
    basis = _smooth_basis(wave_b, 5) * 30  # amplitudes of order 1 per pixel
    n = 60
    z = rng.uniform(0.0, 0.3, n)
    coef = rng.normal(size=(n, 5)) * np.array([10, 3, 2, 1, 1])
    y = _observe(basis, wave_b, coef, z, wave_obs) + rng.normal(size=(n, len(wave_obs)))
    w = np.ones_like(y)
    w[:, 100:110] = 0  # masked pixels carry no weight
    y[:, 100:110] = 1e6
    chi2 = pca_residual(y, w, z, wave_obs, wave_b, basis)
    assert np.median(chi2) == pytest.approx(
        1.0, abs=0.03
    )  # chi2 / (n_valid - K): ~1 within 2 / sqrt(1490) per spectrum
    assert chi2.max() < 1.2
    spiked = y.copy()
    spiked[:, 700] += 100.0  # a 100-sigma spike in one pixel adds ~100^2 / 1485 to the reduced chi2
    chi2_spike = pca_residual(spiked, w, z, wave_obs, wave_b, basis)
    assert np.all(chi2_spike > chi2 + 5)
    # with a fixed mean the same spectra plus that mean fit equally well
    mean = 2 + np.sin(wave_b / 300)
    y_mean = y + _observe(mean[None], wave_b, np.ones((n, 1)), z, wave_obs)
    chi2_mean = pca_residual(y_mean, w, z, wave_obs, wave_b, basis, mean=mean)
    assert np.median(chi2_mean) == pytest.approx(1.0, abs=0.03)


def test_restframe_pca_recovers_the_subspace_despite_gaps():
    rng = np.random.default_rng(1)
    wave_b = np.geomspace(3000.0, 9000.0, 2000)
    wave_obs = np.geomspace(4000.0, 8000.0, 800)
    basis = _smooth_basis(wave_b, 3)
    mean = 1 + 0.1 * np.sin(wave_b / 500)
    n = 200
    z = rng.uniform(0.0, 0.4, n)
    coef = rng.normal(size=(n, 3)) * np.array([3.0, 2.0, 1.0])
    y = _observe(np.vstack([basis, mean]), wave_b, np.hstack([coef, np.ones((n, 1))]), z, wave_obs)
    wave_rest = np.geomspace(4000 / 1.4, 8000.0, 1000)
    yr, wr = to_restframe(y, np.ones_like(y), z, wave_obs, wave_rest)
    assert np.all(wr[z > 0.01, -1] == 0) and np.all(wr[z < 0.39, 0] == 0)  # outside each spectrum's coverage
    m, comps = fit_pca(yr, wr, 3)
    ok = np.isfinite(m)
    assert ok.sum() > 950  # only the ends, seen by fewer than max(8, N / 100) spectra, are left out
    np.testing.assert_allclose(comps[:, ok] @ comps[:, ok].T, np.eye(3), atol=1e-8)
    truth = np.stack([np.interp(wave_rest[ok], wave_b, b) for b in basis])
    q, _ = np.linalg.qr(truth.T)
    overlap = np.linalg.svd(comps[:, ok] @ q, compute_uv=False)  # cosines of the principal angles
    assert overlap.min() > 0.999
    # spectra of the basis plus unit noise, at new redshifts, fit with reduced chi2 ~1 by the fitted PCA
    z2 = rng.uniform(0.0, 0.3, 40)
    c2 = rng.normal(size=(40, 3)) * np.array([3.0, 2.0, 1.0])
    y2 = _observe(np.vstack([basis, mean]), wave_b, np.hstack([c2, np.ones((40, 1))]), z2, wave_obs)
    y2 = y2 + 0.01 * rng.normal(size=y2.shape)
    chi2 = pca_residual(y2, np.full_like(y2, 1e4), z2, wave_obs, wave_rest, comps, mean=m)
    assert np.median(chi2) == pytest.approx(1.0, abs=0.05)
