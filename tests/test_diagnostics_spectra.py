"""Known answers of the spectrum application of the hallucination diagnostic (speculum.diagnostics.spectra).

A tiny score prior (1-d U-Net, 256 restframe pixels, 1000 simulated spectra, 3 epochs: about
3 s on one core) is trained once per module; four galaxies at z = 0.02, 0.1, 0.2, 0.3 are
observed by SDSS (and, for the sky-line test, on an SDSS-range grid as coarse as the
restframe one) with noise 0.05, reconstructed (MAP, λ = 1) and diagnosed (exact F_L and F_P).
"""

import math

import pytest
import torch

from speculum.diagnostics.apply import map_reconstruct
from speculum.diagnostics.config import FisherConfig, MapConfig
from speculum.diagnostics.fisher import fisher_diag_likelihood
from speculum.diagnostics.fit import train_prior
from speculum.diagnostics.spectra import (
    RESTFRAME_RANGE,
    _pixel_mean,
    diagnose_spectra,
    draw_restframe,
    observe,
    plot_spectrum_diagnosis,
    restframe_coverage,
    restframe_grid,
    restframe_spectra,
    sky_line_mask,
    spectra_forward,
    spectrum_forward,
)
from speculum.instruments import BOSS, SDSS
from speculum.models.score import ScoreConfig
from speculum.physics import NORMALIZATION_RANGE, resample_to_observed
from speculum.sim.lines import NARROW_LINES
from speculum.train import TrainConfig

L_REST = 256
NOISE = 0.05
Z = torch.tensor([0.02, 0.1, 0.2, 0.3], dtype=torch.float64)
COARSE = 10 ** (3.578 + 2e-3 * torch.arange(197, dtype=torch.float64))  # SDSS range, 2e-3 dex pixels (~ the grid's)


@pytest.fixture(scope="module")
def grid():
    return restframe_grid(L_REST)


@pytest.fixture(scope="module")
def prior(grid, tmp_path_factory):
    x = restframe_spectra(1000, seed=1, grid=grid)
    cfg = ScoreConfig(shape=(L_REST,), arch="unet", channels=8, levels=2, sigma_min=0.05, sigma_max=1.0)
    net, _ = train_prior(
        x,
        tmp_path_factory.mktemp("prior"),
        cfg,
        TrainConfig(epochs=3, batch_size=64, lr=2e-3, precision="fp32", patience=0),
    )
    return net


@pytest.fixture(scope="module")
def truth(grid):
    return restframe_spectra(len(Z), seed=2, grid=grid)


@pytest.fixture(scope="module")
def native(grid, prior, truth):
    """SDSS observations, their MAP (λ = 1) and its diagnosis."""
    y, w = observe(truth, Z, SDSS.wave(), NOISE, grid=grid, seed=5)
    d, cov = diagnose_spectra(
        y, w, Z, SDSS.wave(), prior, grid, MapConfig(prior_weight=1.0, steps=200), FisherConfig(prior_method="exact")
    )
    return y, w, d, cov


def interior(cov):
    """Covered pixels whose neighbours are covered too (away from the coverage edges)."""
    inner = cov.clone()
    inner[:, 1:] &= cov[:, :-1]
    inner[:, :-1] &= cov[:, 1:]
    return inner


def test_restframe_grid_reaches_beyond_sdss_coverage(grid):
    assert grid.dtype == torch.float64 and grid.shape == (L_REST,)
    assert float(grid[0]) == pytest.approx(RESTFRAME_RANGE[0], rel=1e-12)
    assert float(grid[-1]) == pytest.approx(RESTFRAME_RANGE[1], rel=1e-12)
    steps = torch.diff(torch.log10(grid))
    assert torch.allclose(steps, steps[0].expand_as(steps), rtol=1e-9, atol=0)
    lo, hi = float(SDSS.wave_obs[0]), float(SDSS.wave_obs[-1])
    # every z in [0.02, 0.3] leaves the red end to the prior, z < 0.26 the blue end too
    assert RESTFRAME_RANGE[1] * 1.02 > hi and RESTFRAME_RANGE[0] * 1.02 < lo
    assert RESTFRAME_RANGE[0] * 1.26 < lo < RESTFRAME_RANGE[0] * 1.27


def test_pixel_mean_is_exact_for_linear_flux():
    wave = torch.linspace(4000.0, 6000.0, 201, dtype=torch.float64)
    flux = torch.stack([2 + 0.001 * wave, 5 - 0.0003 * wave])
    edges = torch.tensor([4100.0, 4133.3, 4500.0, 5999.0], dtype=torch.float64)
    centre = 0.5 * (edges[1:] + edges[:-1])
    expected = torch.stack([2 + 0.001 * centre, 5 - 0.0003 * centre])
    assert torch.allclose(_pixel_mean(wave, flux, edges), expected, rtol=1e-12, atol=0)


def test_restframe_spectra_normalisation_lines_and_determinism(grid):
    s = draw_restframe(64, seed=3, grid=grid)
    window = (grid > NORMALIZATION_RANGE[0]) & (grid < NORMALIZATION_RANGE[1])
    assert int(window.sum()) >= 10
    assert torch.allclose(s.flux[:, window].mean(1), torch.ones(64, dtype=torch.float64), atol=1e-3, rtol=0)
    assert torch.allclose(s.flux, s.continuum + s.lines, atol=1e-12)
    assert (s.continuum > 0).all() and (s.lines >= 0).all()
    # every line lies well inside the grid: the pixel-integrated profiles conserve the flux
    lg = torch.log(grid)
    mid = torch.exp(0.5 * (lg[1:] + lg[:-1]))
    edges = torch.cat([grid[:1] ** 2 / mid[:1], mid, grid[-1:] ** 2 / mid[-1:]])
    assert torch.allclose((s.lines * torch.diff(edges)).sum(1), s.line_flux.sum(1), rtol=1e-9, atol=0)
    centres = torch.tensor(list(NARROW_LINES.values()), dtype=torch.float64)
    assert (s.line_sigma >= torch.diff(edges)[torch.searchsorted(edges, centres) - 1] * (1 - 1e-12)).all()
    # Halpha (vacuum 6564.61 A in the project's list) peaks within one pixel of its wavelength
    halpha = NARROW_LINES["Halpha"]
    assert halpha == pytest.approx(6564.6, abs=0.05)
    sf = torch.from_numpy(s.line_class == "sf") & (s.ew_halpha > 5)
    assert int(sf.sum()) >= 10, int(sf.sum())
    near = (grid > 6300) & (grid < 6850)
    peak = grid[near][s.lines[:, near].argmax(1)]
    pixel = float(halpha * math.log(10) * torch.diff(torch.log10(grid))[0])
    assert ((peak[sf] - halpha).abs() <= pixel).all(), (peak[sf] - halpha).abs().max()
    # deterministic in the seed and the index (blocks of 512 seeded by (seed, block))
    assert torch.equal(restframe_spectra(5, seed=3, grid=grid), s.flux[:5])
    more = draw_restframe(520, seed=3, grid=grid)
    assert torch.equal(more.flux[:64], s.flux) and more.flux.shape == (520, L_REST)
    assert (more.line_class[:64] == s.line_class).all()
    assert not torch.allclose(restframe_spectra(5, seed=4, grid=grid), s.flux[:5])
    with pytest.raises(ValueError, match="normalisation window"):
        restframe_spectra(2, grid=restframe_grid(16, 6000.0, 9000.0))


def test_sky_line_mask_is_the_instruments_on_its_grid():
    for inst in (SDSS, BOSS):
        assert torch.equal(sky_line_mask(inst.wave(), inst), torch.from_numpy(inst.sky_mask.copy()))
    coarse = sky_line_mask(COARSE, SDSS)
    assert 0 < int(coarse.sum()) < len(COARSE) // 3


def test_forward_models_and_observe(grid, truth):
    wobs = SDSS.wave()
    model, valid = resample_to_observed(truth, grid, Z, wobs)
    batch = spectra_forward(grid, Z, wobs)(truth)
    assert torch.equal(batch, model)
    for i, zi in enumerate(Z):
        one = spectrum_forward(grid, float(zi), wobs)(truth[i].expand(3, -1))
        assert one.shape == (3, len(wobs)) and torch.equal(one[2], model[i])
    # noise -> 0: the observation is the forward model; weights 1/noise² on valid, unmasked pixels only
    y, w = observe(truth, Z, wobs, 1e-9, grid=grid)
    assert (y - model).abs().max() < 1e-7
    sky = sky_line_mask(wobs)
    assert torch.equal(w > 0, valid & ~sky)
    assert (w[~valid] == 0).all() and (w[:, sky] == 0).all()
    assert torch.allclose(w[w > 0], torch.tensor(1e18, dtype=torch.float64))
    y, w = observe(truth, Z, wobs, NOISE, grid=grid, seed=1)
    resid = (y - model)[valid]
    assert resid.std().item() == pytest.approx(NOISE, rel=0.03) and (y[~valid] == 0).all()
    assert torch.equal(observe(truth, Z, wobs, NOISE, grid=grid, seed=1)[0], y)
    _, w_all = observe(truth, Z, wobs, NOISE, sky_mask=False, grid=grid)
    assert torch.equal(w_all > 0, valid)
    own = torch.zeros(len(wobs), dtype=torch.bool)
    own[1000:1100] = True
    _, w_own = observe(truth, Z, wobs, NOISE, sky_mask=own, grid=grid)
    assert torch.equal(w_own > 0, valid & ~own)
    with pytest.raises(ValueError, match="noise"):
        observe(truth, Z, wobs, 0.0, grid=grid)


def test_coverage_matches_the_interpolation_support(grid, native):
    _, w, d, cov = native
    wobs = SDSS.wave()
    fl = d.maps.fisher_likelihood
    # an independent, brute-force support: observed pixel j inside (grid[i-1], grid[i+1]) (1 + z)
    for n, zi in enumerate(Z):
        wz = grid * (1 + zi)
        lo, hi = torch.cat([wz[:1], wz[:-1]]), torch.cat([wz[1:], wz[-1:]])
        good = (wobs > wz[0]) & (wobs < wz[-1]) & (w[n] > 0)
        support = (wobs[None, :] > lo[:, None]) & (wobs[None, :] < hi[:, None])
        assert torch.equal(cov[n], (support & good).any(1))
        # outside the observed range, beyond one grid pixel: exactly no information; inside: some
        outside = (hi <= wobs[0]) | (lo >= wobs[-1])
        inside = (lo >= wobs[0]) & (hi <= wobs[-1])
        assert outside.any() and (fl[n, outside] == 0).all()
        assert (fl[n, inside] > 0).all()  # on SDSS's fine grid no restframe pixel lies entirely under a sky mask
    assert torch.equal(cov, fl > 0)
    assert torch.equal(restframe_coverage(grid, Z, wobs, w), cov)


def test_delta_f_flags_the_uncovered_range(native):
    _, _, d, cov = native
    m = d.maps
    assert d.reconstruction.shape == (len(Z), L_REST) and d.prior_weight == 1.0
    assert (~cov).sum(1).min() > 0  # every object leaves part of the range to the prior
    # F_L = 0 there, so ΔF > 0 wherever the prior carries information: measured F_P > 0 on 100 % (of 232)
    fp_pos = (m.fisher_prior[~cov] > 0).double().mean().item()
    assert fp_pos >= 0.95, fp_pos
    assert torch.equal(m.delta[~cov] > 0, m.fisher_prior[~cov] > 0)
    assert (m.prior_fraction[~cov] == 1).all()
    # covered pixels: the data dominate (noise 0.05: median F_L 5.3e3 against F_P 4e2-8e2); measured 99.5 % (788 of 792)
    data_led = (m.delta[cov] < 0).double().mean().item()
    assert data_led >= 0.90, data_led
    assert (m.prior_fraction[interior(cov)] < 0.5).double().mean().item() >= 0.95


def test_delta_f_flags_masked_sky_lines(grid, prior, truth):
    """On an observed grid as coarse as the restframe one, a sky mask can remove a restframe pixel's whole support."""
    z, x = Z[[0, 3]], truth[[0, 3]]
    y, w = observe(x, z, COARSE, NOISE, grid=grid, seed=6)
    sky = sky_line_mask(COARSE)
    geometric = restframe_coverage(grid, z, COARSE)  # some valid observed pixel in the support
    covered = restframe_coverage(grid, z, COARSE, w)
    under_sky = geometric & ~covered
    # measured 14 such pixels per object; check they are what they claim: every support pixel masked
    assert under_sky.sum(1).min() >= 5, under_sky.sum(1)
    for n, zi in enumerate(z):
        wz = grid * (1 + zi)
        for i in torch.nonzero(under_sky[n]).squeeze(1).tolist():
            inside = (COARSE > wz[max(i - 1, 0)]) & (COARSE < wz[min(i + 1, L_REST - 1)])
            assert inside.any() and sky[inside].all()
    d, cov = diagnose_spectra(
        y, w, z, COARSE, prior, grid, MapConfig(prior_weight=1.0, steps=150), FisherConfig(prior_method="exact")
    )
    assert torch.equal(cov, covered)
    m = d.maps
    assert (m.fisher_likelihood[under_sky] == 0).all()
    flagged = (m.delta[under_sky] > 0).double().mean().item()  # measured 1.0 (of 28)
    assert flagged >= 0.95, flagged


def test_map_without_prior_reproduces_the_truth_where_covered(grid, prior, truth, native):
    y, w, _, cov = native
    # the prior's scale (~0.3) sets Adam's step: lr 0.2 lets a pixel travel from 0 to the spectrum's ~2.5
    cfg = MapConfig(prior_weight=0.0, steps=300, lr=0.2)
    x = map_reconstruct(y, w, spectra_forward(grid, Z, SDSS.wave()), prior, cfg)
    err = (x - truth).abs()
    inner = interior(cov)
    # measured: max 0.063 (1.3 noise sigma), mean 0.012 on 785 interior covered pixels; the coverage
    # edges, constrained by a few observed pixels only, are worse (up to 0.87)
    assert err[inner].max() < 3 * NOISE, err[inner].max()
    assert err[inner].mean() < 0.5 * NOISE, err[inner].mean()
    assert (x[~cov] == 0).all()  # without a prior nothing moves an unconstrained pixel from its start
    # with the prior the uncovered range is filled in (no longer 0) and the covered pixels stay close
    rec = native[2].reconstruction
    assert (rec[~cov].abs() > 0).all()
    assert (rec - truth).abs()[inner].median() < NOISE


def test_plot_spectrum_diagnosis(grid, truth, native):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, _, d, cov = native
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True)
    try:
        n = plot_spectrum_diagnosis(top, bottom, grid, d.reconstruction[0], truth[0], d.maps.prior_fraction[0], cov[0])
        assert n == 2  # z = 0.02: both the blue and the red end are beyond SDSS
        assert len(top.patches) == 2 and len(bottom.patches) == 2
        assert len(top.lines) == 2 and bottom.get_ylim() == (-0.02, 1.02)
        n = plot_spectrum_diagnosis(top, bottom, grid, d.reconstruction[3], None, d.maps.prior_fraction[3], cov[3])
        assert n >= 1
        with pytest.raises(ValueError, match="coverage"):
            plot_spectrum_diagnosis(top, bottom, grid, d.reconstruction[0], None, d.maps.prior_fraction[0], cov[0, :10])
    finally:
        plt.close(fig)


def test_likelihood_information_matches_the_dense_operator(grid, truth):
    """F_L of the forward model by JVP columns equals Σ_j w_j A_ji² of the dense matrix, whatever x (it is linear)."""
    wobs = SDSS.wave()
    _, w = observe(truth, Z, wobs, NOISE, grid=grid)
    for n, zi in enumerate(Z[[0, 3]]):
        f = spectrum_forward(grid, zi, wobs)
        dense = f(torch.eye(L_REST, dtype=torch.float64))  # row i: A e_i
        expected = (dense.pow(2) * w[n * 3]).sum(1)
        for x in (truth[n], torch.zeros(L_REST, dtype=torch.float64)):
            got = fisher_diag_likelihood(f, x, w[n * 3])
            assert torch.allclose(got, expected, rtol=1e-12, atol=0)


def test_line_spread_in_the_forward_model(grid, truth):
    """With an LSF the exact F_L is still diag(Aᵀ W A) of the dense operator (resample, then convolve),
    observe() uses the same operator, and the LSF keeps the flux of the observed model."""
    from speculum.physics import convolve_lsf, gaussian_kernel

    z = Z[:1]
    wave = SDSS.wave()
    fwd = spectrum_forward(grid, z[0], wave, lsf_sigma=1.5)
    x = truth[:1]
    y, w = observe(x, z, wave, noise=1e-9, sky_mask=False, grid=grid, lsf_sigma=1.5)
    plain = resample_to_observed(x, grid, z, wave)[0]
    want = convolve_lsf(plain, gaussian_kernel(1.5, dtype=plain.dtype))
    inside = w[0] > 0
    assert torch.allclose(y[0][inside], want[0][inside], atol=1e-7)
    assert torch.allclose(fwd(x), want, atol=1e-12)
    interior = slice(200, -200)
    assert want[0, interior].sum() == pytest.approx(plain[0, interior].sum().item(), rel=1e-3)
    # the dense operator from its two factors, built separately: resampling (L_obs, L_rest) and a
    # Toeplitz matrix of the normalised kernel (L_obs, L_obs), zero beyond the edges
    resample = torch.func.jacfwd(lambda v: resample_to_observed(v[None], grid, z, wave)[0][0])(x[0])
    k = gaussian_kernel(1.5, dtype=torch.float64)
    h, n = len(k) // 2, len(wave)
    conv = torch.zeros(n, n, dtype=torch.float64)
    for d in range(-h, h + 1):
        conv += torch.diag(torch.full((n - abs(d),), float(k[h + d] / k.sum()), dtype=torch.float64), -d)
    dense = conv @ resample
    assert torch.allclose(dense @ x[0], want[0], atol=1e-10)
    fl = fisher_diag_likelihood(fwd, x[0], w[0])
    assert torch.allclose(fl, (dense.pow(2) * w[0][:, None]).sum(0), rtol=1e-10, atol=1e-6)
