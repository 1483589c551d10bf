"""Known answers of the galaxy simulator: its truth must be consistent with its output."""

import json

import numpy as np
import pytest

from speculum.instruments import PixelMask, get_instrument
from speculum.sim import ANOMALY_CLASSES, NARROW_LINES, GalaxySimulator, SimConfig, load_templates


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
            ):
                continue
            p = inst.pixel_of(lam)
            window = b.noiseless[i, p - 6 : p + 7]
            assert abs(int(np.argmax(window)) - 6) <= 1, (name, i)
            checked += 1
    assert checked > 50


def test_line_flux_matches_truth(sdss_batch):
    """The integrated excess over the continuum equals the truth's observed-frame flux."""
    b = sdss_batch
    inst = get_instrument("SDSS")
    j = list(NARROW_LINES).index("Halpha")
    dlam = np.gradient(inst.wave_obs)
    ratios = []
    for i in np.nonzero((b.truth["class"] == "normal") & (b.truth["line_flux"][:, j] > 20 * b.truth["amplitude"]))[0]:
        lam = NARROW_LINES["Halpha"] * (1 + b.z[i])
        if lam > inst.wave_obs[-30]:
            continue
        p = inst.pixel_of(lam)
        # Halpha alone: [N II] 6548/6583 are +-15/21 A away (rest); integrate +-5 A observed
        sel = np.abs(inst.wave_obs - lam) < 4.5 * (1 + b.z[i])
        cont = np.median(b.noiseless[i, p - 60 : p - 30])
        ratios.append(((b.noiseless[i, sel] - cont) * dlam[sel]).sum() / b.truth["line_flux"][i, j])
    assert len(ratios) > 20
    assert 0.85 < np.median(ratios) < 1.1


def test_noise_and_snr_match_request():
    cfg = SimConfig(anomaly_rate=0.0, snr_median=12.0, cosmic_rays=0.0, bad_column_fraction=0.0)
    b = GalaxySimulator(cfg).simulate(512, seed=2)
    good = (b.mask == 0) & (b.ivar > 0)
    pull = ((b.flux - b.noiseless) * np.sqrt(b.ivar))[good]
    assert abs(pull.std() - 1) < 0.01 and abs(pull.mean()) < 0.01
    snr = np.array([np.median((b.noiseless[i] * np.sqrt(b.ivar[i]))[b.ivar[i] > 0]) for i in range(len(b))])
    np.testing.assert_allclose(snr, b.truth["snr"], rtol=0.02)
    assert abs(np.median(snr) / 12.0 - 1) < 0.05
    # noise is larger at sky lines: the brightest line 5578.9 A (vacuum)
    p = get_instrument("SDSS").pixel_of(5578.9)
    assert np.median(1 / np.sqrt(b.ivar[:, p])) > 2 * np.median(1 / np.sqrt(b.ivar[:, p - 40]))


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
            assert dev[inside].max() > 8, kind
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
