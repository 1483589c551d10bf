"""Known answers of the galaxy simulator: its truth must be consistent with its output."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from speculum.instruments import PixelMask, get_instrument
from speculum.physics import apply_resolution_matrix
from speculum.sim import (
    ANOMALY_CLASSES,
    DESI_RESOLUTION_SIGMA,
    NARROW_LINES,
    GalaxySimulator,
    SimConfig,
    load_templates,
)


@pytest.fixture(scope="module")
def sdss_batch():
    return GalaxySimulator(SimConfig(anomaly_rate=0.3)).simulate(1024, seed=11)


def test_templates_are_physical():
    t = load_templates()
    assert t.ssp.shape == (40, t.wave.size) and t.stars.shape[1] == t.wave.size
    assert np.all(np.isfinite(t.ssp)) and np.all(t.ssp > 0)
    assert t.wave[0] < 1900 and t.wave[-1] > 10400
    # young populations are bluer: flux ratio 4000 A / 6000 A falls with age from 0.1 Gyr on
    # (at 25 Myr red supergiants briefly redden it, as in BC03)
    blue = t.ssp[:, np.argmin(abs(t.wave - 4000))] / t.ssp[:, np.argmin(abs(t.wave - 6000))]
    solar = t.ssp_metallicity == 0.02
    ordered = blue[solar][np.argsort(t.ssp_age_gyr[solar])]
    assert np.all(np.diff(ordered[2:]) < 0) and ordered[0] > 5 * ordered[-1]
    # Calzetti: k(5500 A) = R_V at the V band within 2 %
    assert abs(t.calzetti_k[np.argmin(abs(t.wave - 5500))] - 4.05) / 4.05 < 0.02
    assert "Bruzual" in t.source


def test_emission_lines_at_redshifted_wavelength(sdss_batch):
    b = sdss_batch
    inst = get_instrument("SDSS")
    names = list(NARROW_LINES)
    checked = 0
    for name in ("Halpha", "[OIII]5007", "Hbeta"):
        j = names.index(name)
        for i in np.nonzero(b.truth["class"] == "normal")[0]:
            lam = NARROW_LINES[name] * (1 + b.z[i])
            if (
                not inst.wave_obs[10] < lam < inst.wave_obs[-10]
                or b.truth["line_flux"][i, j] < 5 * b.truth["amplitude"][i]
                or b.truth["line_class"][i] != "sf"  # AGN/LINER [N II] 6583 may outshine Halpha
            ):
                continue
            p = inst.pixel_of(lam)
            window = b.noiseless[i, p - 6 : p + 7]
            assert abs(int(np.argmax(window)) - 6) <= 1, (name, i)
            checked += 1
    assert checked > 50


C_KMS = 299_792.458


def _line_only(cfg: SimConfig, n: int, seed: int):
    """Simulate, and render the same objects without emission lines: returns (batch, lines-only spectra).

    ``emission_lines=False`` draws the same objects from the same random stream, so the
    difference of the two noiseless models is the emission lines alone, with no continuum
    and no noise (observed frame, after the instrument's line spread), divided here by the
    truth's calibration distortion (which multiplies everything observed).
    """
    sim = GalaxySimulator(cfg)
    with_lines = sim.simulate(n, seed=seed)
    without = GalaxySimulator(replace(cfg, emission_lines=False)).simulate(n, seed=seed)
    np.testing.assert_array_equal(with_lines.z, without.z)
    np.testing.assert_array_equal(with_lines.truth["calibration"], without.truth["calibration"])
    # the calibration distortion (truth) multiplies everything observed: divide it out
    curve = sim.calibration_curve(with_lines.truth["calibration"]).double().numpy()
    return with_lines, (with_lines.noiseless.astype(np.float64) - without.noiseless) / curve


def _matrix_variance(res: np.ndarray) -> np.ndarray:
    """Second moment (pixels^2) of banded matrices ``(..., 11, L)`` at every pixel (its 11 entries)."""
    off = (res.shape[-2] // 2 - np.arange(res.shape[-2]))[:, None]
    norm = res.sum(-2)
    mean = (res * off).sum(-2) / norm
    return (res * off**2).sum(-2) / norm - mean**2


def _sigma_inst_angstrom(instrument: str, batch, i: int, lam: np.ndarray) -> np.ndarray:
    """Instrumental Gaussian width (A) of spectrum ``i`` at ``lam``: DESI from its stored matrix, else from R."""
    inst = get_instrument(instrument)
    p = np.searchsorted(inst.wave_obs, lam)
    if batch.resolution is not None:
        return np.sqrt(_matrix_variance(batch.resolution[i][:, p].astype(np.float64))) * inst.step
    return lam / inst.resolving_power / 2.3548


@pytest.fixture(scope="module")
def desi_lines():
    """512 DESI spectra (z < 0.45, no anomalies) and their lines-only render."""
    return _line_only(SimConfig(instrument="DESI", anomaly_rate=0.0, redshift="uniform", z_max=0.45), 512, seed=21)


@pytest.mark.parametrize("instrument", ["SDSS", "DESI"])
def test_line_flux_matches_truth(instrument, request):
    """Each line's integral over +-6 sigma of a lines-only render equals the truth's observed flux (2 %).

    sigma = sqrt(sigma_gas^2 + sigma_instrument^2) at lambda_rest (1 + z). Halpha is integrated
    with its [N II] 6548/6583 neighbours (closer than 6 sigma) against the sum of the three
    truths; Hbeta and [O III] 5007 alone. A missing (1 + z) (10 % at z = 0.1) or a line
    rendered at the wrong width or place fails. Residual telluric absorption (<= 6 %, only in
    its bands) is the only expected loss, hence the per-line 2 % and the median 0.5 %.
    """
    if instrument == "DESI":
        b, lines = request.getfixturevalue("desi_lines")
    else:
        b, lines = _line_only(SimConfig(anomaly_rate=0.0, redshift="uniform", z_max=0.45), 512, seed=21)
    inst = get_instrument(instrument)
    wave, dlam = inst.wave_obs, np.gradient(inst.wave_obs)
    names = list(NARROW_LINES)
    groups = {"Halpha": ("[NII]6548", "Halpha", "[NII]6583"), "Hbeta": ("Hbeta",), "[OIII]5007": ("[OIII]5007",)}
    ratios = {k: [] for k in groups}
    for i in range(len(b)):
        for key, members in groups.items():
            lam = np.array([NARROW_LINES[m] for m in members]) * (1 + b.z[i])
            if lam[0] < wave[20] or lam[-1] > wave[-20]:
                continue
            sig_inst = _sigma_inst_angstrom(instrument, b, i, lam)
            sig = np.sqrt((lam * b.truth["sigma_gas"][i] / C_KMS) ** 2 + sig_inst**2)
            lo, hi = lam[0] - 6 * sig[0], lam[-1] + 6 * sig[-1]
            truth = sum(b.truth["line_flux"][i, names.index(m)] for m in members)
            if lo < wave[0] or hi > wave[-1] or truth < 1e-3 * b.truth["amplitude"][i]:
                continue
            sel = (wave >= lo) & (wave <= hi)
            ratios[key].append((lines[i, sel] * dlam[sel]).sum() / truth)
    for key, r in ratios.items():
        r = np.array(r)
        assert len(r) > 100, key
        assert abs(np.median(r) - 1) < 0.005, (key, np.median(r))
        assert np.mean(np.abs(r - 1) < 0.02) > 0.97, (key, np.percentile(r, [1, 50, 99]))
        assert np.all(r < 1.005), key  # telluric absorption only removes flux


def test_noise_follows_the_documented_law():
    """Noise against the NOISELESS truth, with the variance rebuilt from the documented law.

    ``var = a * model + S * a**2 * sky`` with ``a = amplitude / brightness`` and the sky level
    ``S = snr_median**2 * (1 + k) * k`` (``k = sky_to_object``) computed here from the
    configuration, not taken from the simulator's sigma. Pulls ``(flux - noiseless) / sqrt(var)``
    must be unit normal (std within 1 %, 3-sigma tail 0.27 % +- 0.05 %) and the stored ``ivar``
    must equal ``1 / var`` (1e-4).
    """
    cfg = SimConfig(
        anomaly_rate=0.0,
        snr_median=12.0,
        cosmic_rays=0.0,
        bad_column_fraction=0.0,
        sky_residual_max_sigma=0.0,
        partial_coverage_fraction=0.0,
        bright_fraction=0.0,
    )
    sim = GalaxySimulator(cfg)
    b = sim.simulate(512, seed=2)
    k = cfg.sky_to_object
    sky_counts = cfg.snr_median**2 * (1 + k) * k
    a = (b.truth["amplitude"] / b.truth["brightness"]).astype(np.float64)[:, None]
    var = a * np.clip(b.noiseless, 0, None) + sky_counts * a**2 * sim.sky.numpy()[None, :]
    pull = (b.flux - b.noiseless) / np.sqrt(var)
    assert abs(pull.std() - 1) < 0.01 and abs(pull.mean()) < 0.01
    assert abs(np.mean(np.abs(pull) > 3) - 0.0027) < 0.0005
    np.testing.assert_allclose(b.ivar * var, 1.0, rtol=1e-4)
    # truth S/N is the median per-pixel S/N of the noiseless model; the median-brightness object
    # has S/N = snr_median at its level against the median sky, per-pixel medians sit 0-20 % below
    snr = np.array([np.median(b.noiseless[i] * np.sqrt(b.ivar[i])) for i in range(len(b))])
    np.testing.assert_allclose(snr, b.truth["snr"], rtol=0.02)
    assert 0.8 < np.median(snr) / 12.0 < 1.0
    assert abs(np.log10(np.median(b.truth["brightness"]) / cfg.brightness_median)) < 0.03
    # noise is larger at sky lines: the brightest line 5578.9 A (vacuum)
    p = get_instrument("SDSS").pixel_of(5578.9)
    assert np.median(1 / np.sqrt(b.ivar[:, p])) > 2 * np.median(1 / np.sqrt(b.ivar[:, p - 40]))


def test_faint_galaxies_are_sky_dominated():
    """The sky level is fixed in counts; the sky's share of the variance grows as objects get fainter.

    Per spectrum, fit ``1 / ivar = alpha * noiseless + beta * sky`` on usable pixels (least
    squares). Known answers: ``beta / alpha**2`` is the sky level in counts, the same for every
    spectrum (``snr_median**2 (1 + k) k``, 0.1 %); the object's counts are ``amplitude / alpha``
    (= truth brightness, 0.1 %); the sky fraction of the variance at the object's level,
    ``f = beta / (alpha * amplitude + beta) = S / (S + B)``, falls monotonically with S/N
    (rank correlation < -0.99) from > 0.7 in the faintest quartile to < 0.45 in the brightest.
    """
    cfg = SimConfig(anomaly_rate=0.0, cosmic_rays=0.0, bad_column_fraction=0.0)
    sim = GalaxySimulator(cfg)
    b = sim.simulate(512, seed=12)
    sky = sim.sky.numpy().astype(np.float64)
    coef = []
    for i in range(len(b)):
        good = (b.mask[i] == 0) & (b.ivar[i] > 0)
        design = np.stack([b.noiseless[i, good].astype(np.float64), sky[good]], 1)
        coef.append(np.linalg.lstsq(design, 1 / b.ivar[i, good].astype(np.float64), rcond=None)[0])
    alpha, beta = np.array(coef).T
    k = cfg.sky_to_object
    sky_counts = cfg.snr_median**2 * (1 + k) * k
    np.testing.assert_allclose(beta / alpha**2, sky_counts, rtol=1e-3)
    np.testing.assert_allclose(b.truth["amplitude"] / alpha, b.truth["brightness"], rtol=1e-3)
    f = beta / (alpha * b.truth["amplitude"] + beta)
    np.testing.assert_allclose(f, sky_counts / (sky_counts + b.truth["brightness"]), rtol=1e-3)
    rank_snr, rank_f = np.argsort(np.argsort(b.truth["snr"])), np.argsort(np.argsort(f))
    assert np.corrcoef(rank_snr, rank_f)[0, 1] < -0.99
    order = np.argsort(b.truth["snr"])
    assert f[order[:128]].mean() > 0.7 and f[order[-128:]].mean() < 0.45


def test_masks_cover_glitches(sdss_batch):
    b = sdss_batch
    flagged = (b.mask & (PixelMask.COSMIC_RAY | PixelMask.BAD_COLUMN)) != 0
    assert flagged.sum() > 500
    assert np.all(b.ivar[flagged] == 0)
    # outside flagged pixels, normal galaxies have no outliers beyond 6 sigma
    normal = b.truth["class"] == "normal"
    pull = np.abs(b.flux - b.noiseless) * np.sqrt(b.ivar)
    assert pull[normal][(b.mask[normal] == 0)].max() < 6.5
    # cosmic rays really are there, under the mask
    cr = (b.mask & PixelMask.COSMIC_RAY) != 0
    assert np.median((b.flux - b.noiseless)[cr]) > 0


def test_anomalies_have_windows_and_params(sdss_batch):
    b = sdss_batch
    wave = get_instrument("SDSS").wave_obs
    for c in ANOMALY_CLASSES:
        rows = np.nonzero(b.truth["class"] == c)[0]
        assert len(rows) > 10, c
        for i in rows:
            assert len(b.windows[i]) > 0, (c, i)
            assert np.all(b.windows[i][:, 0] < b.windows[i][:, 1])
            assert b.windows[i].min() >= wave[0] - 1e-6 and b.windows[i].max() <= wave[-1] + 1e-6
            assert json.loads(b.truth["anomaly_params"][i])
    for i in np.nonzero(b.truth["class"] == "normal")[0][:50]:
        assert len(b.windows[i]) == 0 and b.truth["anomaly_params"][i] == "{}"


def test_unflagged_artefacts_live_in_their_windows(sdss_batch):
    """Spikes and columns reach >= artefact_min_sigma (5) sigma inside their window; steps lower the flux."""
    b = sdss_batch
    wave = get_instrument("SDSS").wave_obs
    for i in np.nonzero(b.truth["class"] == "artefact")[0]:
        ((lo, hi),) = b.windows[i]
        inside = (wave >= lo) & (wave <= hi)
        unflagged = inside & (b.ivar[i] > 0) & ((b.mask[i] & (PixelMask.COSMIC_RAY | PixelMask.BAD_COLUMN)) == 0)
        assert unflagged.sum() >= 0.8 * inside.sum()  # the artefact is not masked
        dev = np.where(unflagged, np.abs(b.flux[i] - b.noiseless[i]) * np.sqrt(b.ivar[i]), 0)
        kind = json.loads(b.truth["anomaly_params"][i])["kind"]
        if kind != "step":
            assert dev[inside].max() > 3, kind  # >= 5 sigma artefact plus unit noise
        else:
            assert np.median((b.flux[i] / b.noiseless[i])[inside]) < 0.9


def test_reddened_and_agn_change_the_spectrum(sdss_batch):
    b = sdss_batch
    wave = get_instrument("SDSS").wave_obs
    blue, red = (wave < 4500), (wave > 8000)
    colour = np.median(b.noiseless[:, blue], 1) / np.median(b.noiseless[:, red], 1)
    cls = b.truth["class"]
    assert np.median(colour[cls == "reddened"]) < 0.5 * np.median(colour[cls == "normal"])
    assert np.all(b.truth["a_v"][cls == "reddened"] >= 2.5)


def test_deterministic_and_partition_independent():
    sim = GalaxySimulator(SimConfig(anomaly_rate=0.1))
    a = sim.simulate(700, seed=3, start=300)
    b = sim.simulate(1200, seed=3)
    np.testing.assert_array_equal(a.flux, b.flux[300:1000])
    assert a.object_id == b.object_id[300:1000]
    c = sim.simulate(100, seed=4)
    assert not np.array_equal(c.flux, b.flux[:100])


def test_redshift_distribution_like_sdss_main_sample():
    b = GalaxySimulator(SimConfig(anomaly_rate=0.0)).simulate(2048, seed=5)
    assert 0.09 < np.median(b.z) < 0.115
    assert b.z.min() >= 0.01 and b.z.max() <= 0.5


@pytest.mark.parametrize("instrument", ["BOSS", "DESI"])
def test_other_instruments(instrument):
    b = GalaxySimulator(SimConfig(instrument=instrument, redshift="uniform", z_max=0.8)).simulate(64, seed=0)
    inst = get_instrument(instrument)
    assert b.flux.shape == (64, inst.n_pixels) and np.isfinite(b.flux).all()
    assert b.z.max() > 0.5


def test_bad_config_is_readable():
    with pytest.raises(ValueError, match="anomaly_classes"):
        SimConfig(anomaly_classes=("ufo",))
    with pytest.raises(ValueError, match="z_min, z_max"):
        SimConfig(instrument="SDSS", z_max=0.9)
    with pytest.raises(ValueError, match="sky_to_object"):
        SimConfig(sky_to_object=(0.5, 3.0))
    with pytest.raises(ValueError, match="artefact_min_sigma"):
        SimConfig(artefact_min_sigma=0.0)
    # configs saved before the fixed sky level: the (low, high) range becomes its geometric mean
    old = {**SimConfig().to_dict(), "sky_to_object": [0.5, 3.0]}
    assert SimConfig.from_dict(old).sky_to_object == pytest.approx(1.5**0.5)
    assert SimConfig.from_dict(SimConfig(render_anomalies=False).to_dict()) == SimConfig(render_anomalies=False)


def test_desi_resolution_matrices_are_stored_and_vary_as_measured(desi_lines):
    """Per-spectrum DESI matrices: flux-keeping, and widths as measured on real coadds.

    Known answers from :data:`DESI_RESOLUTION_SIGMA` (second moments of the real coadds'
    matrices): at each camera's centre the median width over spectra is the measured ``c0``
    (+-0.01 px), the fibre-to-fibre spread is the measured one (+-35 %), widths change with
    wavelength (Z wider than R by ~0.12 px) and stay within the measured range. SDSS has none.
    """
    b, _ = desi_lines
    inst = get_instrument("DESI")
    res = b.resolution
    assert res.dtype == np.float32 and res.shape == (len(b), 11, inst.n_pixels)
    # each pixel's 11 entries (a column of the matrix) sum to 1; rows sum to 1 away from the ends
    np.testing.assert_allclose(res.sum(1), 1.0, atol=1e-5)
    rows = apply_resolution_matrix(torch.ones(8, inst.n_pixels, dtype=torch.float64), torch.from_numpy(res[:8]))
    np.testing.assert_allclose(rows[:, 5:-5].numpy(), 1.0, atol=2e-3)
    sigma = {}
    for cam, (mid, _, mean, sd, (lo, hi)) in DESI_RESOLUTION_SIGMA.items():
        p = inst.pixel_of(mid)
        s = np.sqrt(_matrix_variance(res[:, :, p : p + 1].astype(np.float64)))[:, 0]
        sigma[cam] = s
        assert abs(np.median(s) - mean[0]) < 0.01, cam
        if sd[0] > 0.01:  # B and Z differ between fibres by ~3 %; R by 0.4 %
            assert 0.65 * sd[0] < s.std() < 1.35 * sd[0], (cam, s.std())
        assert np.all((s >= lo - sd[0] - 1e-4) & (s <= hi + sd[0] + 1e-4)), cam
    assert 0.09 < np.median(sigma["Z"] - sigma["R"]) < 0.15
    whole = np.sqrt(_matrix_variance(res[:32].astype(np.float64)))
    assert whole.min() > 0.76 and whole.max() < 1.02
    assert np.all(whole.max(1) - whole.min(1) > 0.05)  # every spectrum's width varies with wavelength
    cols = b.select(slice(0, 4)).columns("DESI")
    assert cols["resolution"].shape == (4, 11 * inst.n_pixels) and cols["resolution"].dtype == np.float32
    np.testing.assert_array_equal(cols["resolution"][1].reshape(11, -1), res[1])
    sdss = GalaxySimulator(SimConfig(anomaly_rate=0.0)).simulate(4, seed=0)
    assert sdss.resolution is None and "resolution" not in sdss.columns("SDSS")


def test_desi_line_width_is_given_by_the_spectrums_own_matrix(desi_lines):
    """A narrow line's second moment = its intrinsic width^2 + the stored matrix's width^2 (0.5 %).

    Lines-only render (no continuum, no noise); [O III] 5007 and Hbeta with flux above twice
    the continuum level; intrinsic width ``lambda sigma_gas / c`` in pixels of 0.8 A. Using the
    median matrix over spectra instead of the spectrum's own misses this for many lines.
    """
    b, lines = desi_lines
    inst = get_instrument("DESI")
    names = list(NARROW_LINES)
    own, median = [], []
    for i in range(len(b)):
        for name in ("[OIII]5007", "Hbeta"):
            lam = NARROW_LINES[name] * (1 + b.z[i])
            if b.truth["line_flux"][i, names.index(name)] < 2 * b.truth["amplitude"][i]:
                continue
            p = inst.pixel_of(lam)
            var_line = (lam * b.truth["sigma_gas"][i] / C_KMS / inst.step) ** 2
            var_res = float(_matrix_variance(b.resolution[i, :, p : p + 1].astype(np.float64))[0])
            h = int(np.ceil(6 * np.sqrt(var_line + var_res)))
            seg, x = lines[i, p - h : p + h + 1], np.arange(-h, h + 1)
            centre = (seg * x).sum() / seg.sum()
            var = (seg * (x - centre) ** 2).sum() / seg.sum()
            own.append(var / (var_line + var_res) - 1)
            var_med = np.median(_matrix_variance(b.resolution[:, :, p : p + 1].astype(np.float64)))
            median.append(var / (var_line + var_med) - 1)
    own, median = np.abs(own), np.abs(median)
    assert len(own) > 100
    assert own.max() < 0.005, np.percentile(own, [50, 99, 100])
    assert np.mean(median > 0.005) > 0.2


def test_every_anomaly_is_visible_on_usable_pixels():
    """>= 99 % of the anomalies of every class change >= 3 usable pixels by >= 1 sigma inside their windows.

    Excess: ``SimConfig(render_anomalies=False)`` simulates the same objects without their
    anomalies (same random stream); excess = |noiseless - noiseless of that twin|, and for
    ``artefact`` (instrumental, so not in the noiseless model) |flux - flux of the twin|,
    whose noise is then identical. Usable: ``mask == 0`` and ``ivar > 0``. Carrying: excess
    >= 1 sigma of the noise (``1 / sqrt(ivar)``) of the anomalous spectrum. Every artefact
    spike or column is >= ``artefact_min_sigma`` (5) sigma on every one of its pixels.
    """
    cfg = SimConfig(anomaly_rate=1.0)
    a = GalaxySimulator(cfg).simulate(2048, seed=7)  # 327-359 spectra per class
    twin = GalaxySimulator(replace(cfg, render_anomalies=False)).simulate(2048, seed=7)
    assert list(a.truth["anomaly_params"]) == list(twin.truth["anomaly_params"])
    wave = get_instrument("SDSS").wave_obs
    usable = (a.mask == 0) & (a.ivar > 0)
    sigma = 1 / np.sqrt(np.where(a.ivar > 0, a.ivar, np.inf))
    for c in ANOMALY_CLASSES:
        rows = np.nonzero(a.truth["class"] == c)[0]
        assert len(rows) >= 300, c
        if c == "artefact":
            np.testing.assert_array_equal(a.noiseless[rows], twin.noiseless[rows])
            excess = np.abs(a.flux[rows] - twin.flux[rows])
        else:
            excess = np.abs(a.noiseless[rows] - twin.noiseless[rows])
        carrying = usable[rows] & (excess >= sigma[rows])
        visible = []
        for k, i in enumerate(rows):
            inside = np.zeros(len(wave), bool)
            for lo, hi in a.windows[i]:
                inside |= (wave >= lo) & (wave <= hi)
            visible.append((carrying[k] & inside).sum() >= 3)
            if c in ("odd_lines", "artefact"):  # local anomalies: nothing they change lies outside their windows
                assert not np.any(carrying[k] & ~inside), (c, a.truth["anomaly_params"][i])
            if c == "artefact":
                par = json.loads(a.truth["anomaly_params"][i])
                hit = slice(par["pixel"], par["pixel"] + par["width_px"])
                if par["kind"] != "step":  # never on sky-masked pixels (a cosmic ray may still hit one)
                    assert not np.any(a.mask[i, hit] & PixelMask.SKY_LINE), par
                    assert np.all(excess[k, hit] >= 5 * sigma[i, hit] * (1 - 1e-5)), par
        assert np.mean(visible) >= 0.99, (c, np.mean(visible))


def test_a_registered_anomaly_class_is_drawn_without_changing_the_others(monkeypatch):
    """Registering a class is the one step: configs accept it, its rows get it, other streams stay put.

    Known answers: a DETECTOR-stage toy that adds exactly 7 to one pixel of each of its rows
    (drawing one pixel index per row) shows up as ``class`` truth with its params and window,
    changes the flux of its rows by exactly 7 at that pixel against its
    ``render_anomalies=False`` twin, and a configuration without it simulates bitwise as before.
    """
    from speculum.sim import anomalies

    monkeypatch.setattr(anomalies, "_REGISTRY", dict(anomalies._REGISTRY))
    cfg_old = SimConfig(anomaly_rate=0.5, anomaly_classes=("agn", "artefact"))
    before = GalaxySimulator(cfg_old).simulate(600, seed=5)

    @anomalies.register_anomaly("toy_spike")
    class ToySpike(anomalies.Anomaly):
        stage = anomalies.Stage.DETECTOR

        def apply(self, state, rows, gen):
            out = []
            for i in rows.tolist():
                p = int(torch.randint(10, state.flux.shape[1] - 10, (1,), generator=gen))
                if state.show:
                    state.flux[i, p] += 7.0
                lam = self.sim.wave_obs[p - 1 : p + 2 : 2]
                out.append(({"pixel": p}, self.sim.window(lam[:1], lam[1:])))
            return out

    with pytest.raises(ValueError, match="toy_spike"):
        anomalies.register_anomaly("toy_spike")(ToySpike)
    with pytest.raises(ValueError, match="normal"):
        anomalies.register_anomaly("normal")(ToySpike)
    assert "toy_spike" in anomalies.anomaly_registry() and "toy_spike" not in ANOMALY_CLASSES

    after = GalaxySimulator(cfg_old).simulate(600, seed=5)
    for name in ("flux", "ivar", "mask", "noiseless"):
        np.testing.assert_array_equal(getattr(after, name), getattr(before, name))
    assert list(after.truth["anomaly_params"]) == list(before.truth["anomaly_params"])

    cfg = SimConfig(anomaly_rate=0.5, anomaly_classes=("agn", "toy_spike"))
    b = GalaxySimulator(cfg).simulate(600, seed=5)
    twin = GalaxySimulator(replace(cfg, render_anomalies=False)).simulate(600, seed=5)
    rows = np.nonzero(b.truth["class"] == "toy_spike")[0]
    assert len(rows) > 100
    wave = get_instrument("SDSS").wave_obs
    for i in rows:
        p = json.loads(b.truth["anomaly_params"][i])["pixel"]
        diff = b.flux[i].astype(np.float64) - twin.flux[i]
        assert abs(diff[p] - 7.0) < 1e-4 and np.count_nonzero(diff) == 1, i
        ((lo, hi),) = b.windows[i]
        assert lo < wave[p] < hi
    np.testing.assert_array_equal(b.noiseless[rows], twin.noiseless[rows])  # DETECTOR: the model is untouched
    with pytest.raises(ValueError, match="anomaly_classes"):
        SimConfig(anomaly_classes=("toy_spike", "ufo"))
