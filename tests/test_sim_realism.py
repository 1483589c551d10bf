"""Known answers of the simulator's realism effects (issue "Realism first").

Each effect is a :class:`~speculum.sim.SimConfig` field; switching it off draws the same
objects from the same random stream, so the difference of two simulations isolates it.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch

from speculum.instruments import PixelMask, get_instrument, sky_lines
from speculum.sim import NARROW_LINES, GalaxySimulator, SimConfig, load_templates
from speculum.sim.galaxy import CAMERA_SPLIT

NAMES = list(NARROW_LINES)


@pytest.fixture(scope="module")
def normal_batch():
    """2,048 SDSS spectra, 20 % anomalies, default realism settings."""
    sim = GalaxySimulator(SimConfig(anomaly_rate=0.2))
    return sim, sim.simulate(2048, seed=31)


def test_calibration_distortion_is_smooth_bounded_and_in_the_truth(normal_batch):
    """noiseless / noiseless(calibration_amplitude=0) is the truth's curve, |d - 1| <= calibration_amplitude.

    The peak is uniform in [0, amplitude] (median near half of it) and the curve is smooth
    (Legendre order <= 3: its second differences are tiny).
    """
    sim, b = normal_batch
    amp = sim.config.calibration_amplitude
    flat = GalaxySimulator(replace(sim.config, calibration_amplitude=0.0)).simulate(512, seed=31)
    np.testing.assert_array_equal(flat.truth["calibration"], 0.0)
    np.testing.assert_array_equal(flat.z, b.z[:512])
    curve = sim.calibration_curve(b.truth["calibration"]).numpy()
    ratio = b.noiseless[:512] / flat.noiseless
    ok = flat.noiseless > 1e-3
    np.testing.assert_allclose(ratio[ok], curve[:512][ok], rtol=1e-5)
    peak = np.abs(curve - 1).max(1)
    assert peak.max() <= amp * (1 + 1e-5)
    assert peak.max() > 0.95 * amp and abs(np.median(peak) / amp - 0.5) < 0.05
    assert np.abs(np.diff(curve, 2, axis=1)).max() < 1e-5


def test_sky_residuals_in_normal_spectra_stay_below_two_sigma_and_are_in_the_truth(normal_batch):
    """Residuals (flux - flux of the sky_residual_max_sigma=0 twin) <= 2 sigma, at sky lines only.

    The truth ``sky_residual`` is each spectrum's largest residual in noise sigmas; artefact
    spikes (class ``artefact``) are >= ``artefact_min_sigma`` = 5 sigma, so the two never mix.
    """
    sim, b = normal_batch
    cfg = sim.config
    assert cfg.sky_residual_max_sigma == 2.0 < cfg.artefact_min_sigma
    twin = GalaxySimulator(replace(cfg, sky_residual_max_sigma=0.0)).simulate(2048, seed=31)
    np.testing.assert_array_equal(twin.truth["sky_residual"], 0.0)
    normal = b.truth["class"] == "normal"
    in_sigma = (np.abs(b.flux - twin.flux) * np.sqrt(b.ivar))[normal]  # 0 where ivar = 0
    assert in_sigma.max() <= cfg.sky_residual_max_sigma * (1 + 1e-4)
    assert np.all(in_sigma.max(1) <= b.truth["sky_residual"][normal] * (1 + 1e-4) + 1e-6)
    assert np.mean(b.truth["sky_residual"][normal] > 1.0) > 0.4  # the scale is uniform in [0, 1]
    # only within a few pixels of a sky line
    wave = get_instrument("SDSS").wave_obs
    lines, _ = sky_lines(0.0)
    near = (np.abs(wave[:, None] - lines[None, :]) < 6 * np.gradient(wave)[:, None]).any(1)
    assert np.all(in_sigma[:, ~near] < 1e-4)
    assert (in_sigma[:, near] > 0.5).sum() > 1000


def test_missing_camera_pixels_have_no_data_and_zero_ivar():
    """A fraction of normal spectra lose the red camera (> 6000 A) or the blue end: ivar = 0, NO_DATA, flux 0.

    Half of the losses are drawn as red-camera ones, but only where >= 100 A of the normalisation
    window stays observed (z < ~0.11 for SDSS); the others lose the blue end.
    """
    cfg = SimConfig(anomaly_rate=0.2, partial_coverage_fraction=0.5)
    b = GalaxySimulator(cfg).simulate(1024, seed=3)
    wave = get_instrument("SDSS").wave_obs
    cov, rng = b.truth["coverage"], b.truth["coverage_range"]
    normal = b.truth["class"] == "normal"
    assert np.all(cov[~normal] == "full")
    assert abs(np.mean(cov[normal] != "full") - 0.5) < 0.05
    assert np.mean(cov[normal] == "no_red") > 0.08 and np.mean(cov[normal] == "no_blue") > 0.25
    # >= 100 A of the normalisation window (restframe 5300-5850 A) stays observed: no spectrum is lost
    assert np.all(rng[:, 1] >= 5300 * (1 + b.z) + 99) and np.all(rng[:, 0] <= 5850 * (1 + b.z) - 99)
    for i in range(len(b)):
        outside = (wave < rng[i, 0] - 1e-3) | (wave > rng[i, 1] + 1e-3)
        no_data = (b.mask[i] & PixelMask.NO_DATA) != 0
        np.testing.assert_array_equal(no_data, outside)
        assert np.all(b.ivar[i, outside] == 0) and np.all(b.flux[i, outside] == 0)
        assert np.all(b.ivar[i, ~outside & (b.mask[i] == 0)] > 0)
        if cov[i] == "no_red":
            assert rng[i, 1] <= CAMERA_SPLIT["SDSS"] and rng[i, 0] == pytest.approx(wave[0], rel=1e-6)
        elif cov[i] == "no_blue":
            assert wave[0] + 300 <= rng[i, 0] <= CAMERA_SPLIT["SDSS"] + 2
        else:
            assert not no_data.any()
    # the noiseless truth keeps the whole spectrum
    assert np.all(b.noiseless[cov == "no_red"][:, -10:] > 0)


def _dereddened_ratios(b):
    """``log [N II] 6583 / Halpha`` and ``log [O III] 5007 / Hbeta`` of the truth, dust removed (Calzetti)."""
    t = load_templates()
    k = np.interp([NARROW_LINES[n] for n in ("[NII]6583", "Halpha", "[OIII]5007", "Hbeta")], t.wave, t.calzetti_k)
    a_gas = np.minimum(b.truth["a_v"].astype(np.float64) / 0.44, 8.0)
    f = b.truth["line_flux"].astype(np.float64)
    x = np.log10(f[:, NAMES.index("[NII]6583")] / f[:, NAMES.index("Halpha")]) + 0.4 * a_gas * (k[0] - k[1]) / 4.05
    y = np.log10(f[:, NAMES.index("[OIII]5007")] / f[:, NAMES.index("Hbeta")]) + 0.4 * a_gas * (k[2] - k[3]) / 4.05
    return x, y


def test_agn_and_dwarf_lines_sit_where_observed_on_the_bpt_diagram():
    """Seyferts above Kewley et al. (2001) and the Seyfert/LINER line, LINERs between Kauffmann et al.
    (2003) and it, star-forming galaxies below Kauffmann, metal-poor dwarfs far left and high;
    EW(Halpha) of Seyferts >= ~6 A, of dwarfs >= 20 A, LINER-like retired galaxies 0.3-3.2 A.
    """
    cfg = SimConfig(anomaly_rate=0.0)
    b = GalaxySimulator(cfg).simulate(4096, seed=8)
    x, y = _dereddened_ratios(b)
    cls, kind, ew = b.truth["line_class"], b.truth["galaxy_kind"], b.truth["ew_halpha"]
    kewley = np.where(x < 0.47, 0.61 / np.minimum(x - 0.47, -1e-9) + 1.19, -np.inf)
    kauffmann = np.where(x < 0.05, 0.61 / np.minimum(x - 0.05, -1e-9) + 1.3, -np.inf)
    schawinski = 1.05 * x + 0.45
    sey, lin, sf = cls == "seyfert", cls == "liner", (cls == "sf") & (kind != "dwarf")
    dwarf = kind == "dwarf"
    for sel, name, expect in (
        (sey, "seyfert", cfg.seyfert_fraction),
        (dwarf, "dwarf", cfg.dwarf_fraction),
        (kind == "post_starburst", "post_starburst", cfg.post_starburst_fraction),
    ):
        assert abs(sel.mean() - expect) < 4 * np.sqrt(expect / len(b)), (name, sel.mean())
    tol = 1e-6
    assert np.all(y[sey] > kewley[sey] - tol) and np.all(y[sey] > schawinski[sey] - tol)
    assert np.all(y[lin] > kauffmann[lin] - tol) and np.all(y[lin] < schawinski[lin] + tol)
    assert np.all(y[sf] < kauffmann[sf] + tol) and np.all(x[sf] < 0.05)
    assert np.all((x[dwarf] < -1.15) & (y[dwarf] > 0.4) & (y[dwarf] < kauffmann[dwarf]))
    assert np.all(ew[sey] > 6.0) and np.all(ew[dwarf] > 20.0)
    assert np.all((ew[lin] > 0.3) & (ew[lin] < 3.2) | (kind[lin] == "post_starburst"))
    assert np.all(b.truth["metallicity"][dwarf] == pytest.approx(b.truth["metallicity"].min()))
    # post-starbursts: no star formation in the last 100 Myr, young (A-star) light
    psb = kind == "post_starburst"
    assert np.all(b.truth["ssfr"][psb] == 0)
    assert np.median(b.truth["age_mw_gyr"][psb]) < np.median(b.truth["age_mw_gyr"][lin & ~psb])


def test_snr_distribution_has_the_bright_tail():
    """A fraction ``bright_fraction`` of the objects have S/N log-uniform in ``bright_snr`` (30-100).

    The truth S/N (median per pixel) sits 0-20 % below the nominal one, so the tail adds
    ``bright_fraction`` x (1 - P(S/N >= 24 without it)) objects above S/N 24, none above 100;
    without the tail, S/N >= 45 (3 sigma of the 0.3 dex brightness scatter) is rare.
    """
    base = SimConfig(anomaly_rate=0.0)
    with_tail = GalaxySimulator(base).simulate(2048, seed=4).truth["snr"]
    without = GalaxySimulator(replace(base, bright_fraction=0.0)).simulate(2048, seed=4).truth["snr"]
    added = np.mean(with_tail >= 24) - np.mean(without >= 24)
    assert abs(added - base.bright_fraction * (1 - np.mean(without >= 24))) < 0.03, added
    assert with_tail.max() <= base.bright_snr[1]
    assert np.mean(with_tail >= 45) > 0.05 and np.mean(without >= 45) < 0.005
    # the tail takes its objects from everywhere: the median moves to the 0.5 / (1 - f) quantile
    assert abs(np.median(with_tail) / np.quantile(without, 0.5 / (1 - base.bright_fraction)) - 1) < 0.05


def test_new_config_fields_are_checked_and_round_trip():
    with pytest.raises(ValueError, match="sky_residual_max_sigma"):
        SimConfig(sky_residual_max_sigma=5.0)  # must stay below artefact_min_sigma
    with pytest.raises(ValueError, match="bright_snr"):
        SimConfig(bright_snr=(50.0, 30.0))
    with pytest.raises(ValueError, match="partial_coverage_fraction"):
        SimConfig(partial_coverage_fraction=1.5)
    with pytest.raises(ValueError, match="calibration_amplitude"):
        SimConfig(calibration_amplitude=-0.1)
    cfg = SimConfig(bright_snr=(20.0, 60.0), dwarf_fraction=0.1)
    d = cfg.to_dict()
    d["bright_snr"] = list(d["bright_snr"])  # as JSON gives it back
    assert SimConfig.from_dict(d) == cfg


@pytest.mark.slow
def test_partial_coverage_does_not_make_the_encoder_invent_lines(tmp_path):
    """Masking half of a spectrum leaves the reconstruction of the other half within noise.

    A small model (2,048 simulated spectra, 6 epochs, ~45 s on 2 cores) trained on spectra of
    which 30 % of the normal ones miss a camera or the blue end (``partial_coverage_fraction``)
    reconstructs held-out normal galaxies twice: with all pixels, and with the red camera's
    pixels (> 6000 A) given zero weight (same normalisation). On the observed blue half:

    * the two reconstructions differ by less than the noise (median rms 0.70 sigma measured;
      bound 1);
    * the half-masked fit is not much worse there (median chi2 ratio 1.12 measured; bound 1.25);
    * it invents no line flux: at the narrow lines' pixels, its largest excess over the
      noiseless truth is not above the full fit's (median difference 0.0 sigma measured;
      bound +0.5 sigma).

    Trained with the default 5 % instead: rms 0.78 sigma, chi2 ratio 1.17, and with the blue
    half masked it adds 0.50 sigma of line flux (median; 0.08 with 30 %): the more partial
    coverage in training, the less the encoder relies on the missing half.
    """
    from speculum.autoencode import simulate_dataset
    from speculum.autoencode import train as train_autoencoder
    from speculum.io import SpectraSet
    from speculum.io.prepare import prepare_spectra
    from speculum.train import TrainConfig, load_model

    cfg = SimConfig(partial_coverage_fraction=0.3)
    data = simulate_dataset(tmp_path / "sim", 2048, cfg, seed=5)
    train_autoencoder(data, tmp_path / "run", None, TrainConfig(epochs=6, lr=3e-3, patience=0))
    model = load_model(tmp_path / "run" / "model.safetensors", map_location="cpu").eval()
    cols = SpectraSet.open(data).read(["object_id", "z", "flux", "ivar", "mask", "split", "truth_class"])
    keep = (cols["split"] == "test") & (cols["truth_class"] == "normal")
    sub = {k: v[keep] for k, v in cols.items()}
    prep = prepare_spectra(sub, "SDSS", fit_amplitude=model.config.normalize)
    index = [int(str(o).rsplit("-", 1)[1]) for o in np.asarray(sub["object_id"])[prep.index]]
    noiseless = GalaxySimulator(cfg).simulate(2048, seed=5).noiseless[index]
    truth = torch.from_numpy(noiseless) / torch.as_tensor(np.asarray(prep.norm), dtype=torch.float32)[:, None]
    wave = torch.tensor(get_instrument("SDSS").wave_obs)
    w_half = prep.w * ~(wave > CAMERA_SPLIT["SDSS"])
    with torch.no_grad():
        full = model(prep.y, prep.w, prep.z)
        half = model(prep.y, w_half, prep.z)
    w_blue = (w_half * full.valid * half.valid).double()
    obs = w_blue > 0
    n_obs = obs.sum(1).clamp_min(1)
    rms = torch.sqrt((w_blue * (half.observed - full.observed).double() ** 2).sum(1) / n_obs)
    chi_full = (w_blue * (prep.y - full.observed).double() ** 2).sum(1) / n_obs
    chi_half = (w_blue * (prep.y - half.observed).double() ** 2).sum(1) / n_obs
    assert len(rms) > 100
    assert float(rms.median()) < 1.0, float(rms.median())
    assert float((chi_half / chi_full).median()) < 1.25, float((chi_half / chi_full).median())
    lam = torch.tensor(list(NARROW_LINES.values()), dtype=torch.float64)
    at_line = ((wave[None, :, None] - lam * (1 + prep.z.double()[:, None, None])).abs() < 4).any(-1) & obs
    zero = torch.zeros_like(w_blue)
    excess_full = torch.where(at_line, (full.observed - truth).double() * w_blue.sqrt(), zero).amax(1)
    excess_half = torch.where(at_line, (half.observed - truth).double() * w_blue.sqrt(), zero).amax(1)
    assert float((excess_half - excess_full).median()) < 0.5, float((excess_half - excess_full).median())
