"""Known answers of the galaxy-image simulator: its truth must be consistent with its images."""

import ast
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("galsim", reason="galaxy images need GalSim (pip install 'speculum[images]')")

import speculum.sim.images as images_module  # noqa: E402
from speculum.physics import convolve_psf  # noqa: E402
from speculum.sim import GalaxyImageSimulator, ImageConfig, SimulatedImages  # noqa: E402


def _centre(batch: SimulatedImages, i: int) -> tuple[float, float]:
    h, w = batch.truth.shape[1:]
    return (w - 1) / 2 + batch.params["x0"][i], (h - 1) / 2 + batch.params["y0"][i]


def _moments(img: np.ndarray, xc: float, yc: float) -> tuple[float, float, float]:
    """Unweighted second moments ``(Qxx, Qyy, Qxy)`` about ``(xc, yc)``; arrays are ``[y, x]``."""
    y, x = np.indices(img.shape, dtype=np.float64)
    f = img.astype(np.float64)
    dx, dy = x - xc, y - yc
    return (f * dx * dx).sum() / f.sum(), (f * dy * dy).sum() / f.sum(), (f * dx * dy).sum() / f.sum()


def _angle_difference(a: float, b: float) -> float:
    """``|a - b|`` modulo pi, in degrees."""
    d = (a - b) % math.pi
    return math.degrees(min(d, math.pi - d))


def test_flux_is_conserved_inside_the_stamp():
    # 64 px stamps, hlr <= 0.25" (4 px): the de Vaucouleurs wings beyond 19 bulge radii carry
    # < 1.5 % of the bulge's flux, i.e. < 0.6 % of the total
    cfg = ImageConfig(size=64, disk_hlr_range=(0.15, 0.25), bar_fraction=0.5)
    batch = GalaxyImageSimulator(cfg).simulate(24, seed=2)
    rel = batch.truth.sum(axis=(1, 2), dtype=np.float64) / batch.params["flux"] - 1
    assert np.all(np.abs(rel) < 0.02), rel
    assert batch.params["has_bar"].any() and not batch.params["has_bar"].all()
    assert batch.truth.dtype == batch.image.dtype == batch.bar.dtype == np.float32
    # GalSim's FFT drawings ring at ~1e-4 of the peak (its default accuracy), never more
    assert batch.truth.min() > -1e-4 * batch.truth.max()


def test_half_light_radius_of_a_round_disk():
    cfg = ImageConfig(size=96, disk_hlr_range=(0.3, 0.45), bulge_fraction_range=(0.0, 0.0), ellipticity_max=0.0)
    batch = GalaxyImageSimulator(cfg).simulate(6, seed=4)
    k = 5  # each pixel's flux spread evenly over k x k sub-pixels (at pixel centres alone: 3 % off)
    sub = (np.arange(k) + 0.5) / k - 0.5
    y, x = np.indices(batch.truth.shape[1:])
    xs, ys = x[:, :, None, None] + sub[None, None, None, :], y[:, :, None, None] + sub[None, None, :, None]
    for i in range(len(batch)):
        xc, yc = _centre(batch, i)
        r = np.hypot(xs - xc, ys - yc).ravel()
        flux = np.repeat(batch.truth[i].ravel().astype(np.float64) / k**2, k * k)
        order = np.argsort(r)
        hlr_px = np.interp(0.5 * batch.params["flux"][i], np.cumsum(flux[order]), r[order])
        # measured 0.2-0.5 %; 2 % asserted
        assert abs(hlr_px * cfg.pixel_scale / batch.params["disk_hlr"][i] - 1) < 0.02


def test_bulge_quadrature_matches_galsim_real_space_integration():
    """The de Vaucouleurs bulge is pixel-integrated by quadrature (GalSim's FFT of its cusp is slow):
    it must agree with GalSim's own real-space pixel integration."""
    import galsim

    sim = GalaxyImageSimulator(ImageConfig(size=16))
    rng = np.random.default_rng(0)
    for hlr in (0.1, 0.18):  # the smallest bulges, 1.7 and 3 px
        x0, y0 = rng.uniform(-0.5, 0.5, 2)
        prof = galsim.DeVaucouleurs(half_light_radius=hlr, flux=1.0).shear(
            e=0.25, beta=rng.uniform(0, 3) * galsim.radians
        )
        ref = prof.drawImage(nx=16, ny=16, scale=0.06, method="real_space", offset=(x0, y0)).array
        got = sim._draw_cusped(prof, (x0, y0))
        assert np.abs(got - ref).max() < 3e-3 * ref.max()  # measured <= 2e-3


def test_ellipticity_and_position_angle_from_second_moments():
    cfg = ImageConfig(
        size=96, disk_hlr_range=(0.15, 0.25), bulge_fraction_range=(0.0, 0.0), ellipticity_max=0.6, bar_fraction=0.0
    )
    batch = GalaxyImageSimulator(cfg).simulate(40, seed=5)
    e1, e2 = batch.params["e1"], batch.params["e2"]
    strong = np.flatnonzero(np.hypot(e1, e2) > 0.3)
    assert strong.size >= 10
    for i in strong:
        qxx, qyy, qxy = _moments(batch.truth[i], *_centre(batch, i))
        chi1, chi2 = (qxx - qyy) / (qxx + qyy), 2 * qxy / (qxx + qyy)
        # GalSim's distortion: unweighted moments give e1, e2 (pixel integration dilutes them by ~1 %)
        assert _angle_difference(0.5 * math.atan2(chi2, chi1), 0.5 * math.atan2(e2[i], e1[i])) < 3.0
        for measured, drawn in ((chi1, e1[i]), (chi2, e2[i])):
            if abs(drawn) > 0.05:
                assert np.sign(measured) == np.sign(drawn)
        assert abs(math.hypot(chi1, chi2) - math.hypot(e1[i], e2[i])) < 0.03


def test_bar_component():
    cfg = ImageConfig(size=64, bar_fraction=0.5)
    mixed = GalaxyImageSimulator(cfg).simulate(30, seed=6)
    has = mixed.params["has_bar"]
    assert 0 < has.sum() < len(mixed)
    assert np.all(mixed.bar[~has] == 0) and np.all(mixed.bar[has].reshape(has.sum(), -1).max(axis=1) > 0)

    barred = GalaxyImageSimulator(replace(cfg, bar_fraction=1.0)).simulate(12, seed=7)
    plain = GalaxyImageSimulator(replace(cfg, bar_fraction=0.0)).simulate(12, seed=7)
    assert barred.params["has_bar"].all() and not plain.params["has_bar"].any()
    for k in ("flux", "disk_hlr", "bulge_fraction", "e1", "e2", "bar_angle", "x0", "y0"):
        np.testing.assert_array_equal(barred.params[k], plain.params[k])  # the same galaxies
    for i in range(len(barred)):
        qxx, qyy, qxy = _moments(barred.bar[i], *_centre(barred, i))
        assert _angle_difference(0.5 * math.atan2(2 * qxy, qxx - qyy), barred.params["bar_angle"][i]) < 3.0
        frac = barred.bar[i].sum(dtype=np.float64) / (cfg.bar_flux_fraction * barred.params["flux"][i])
        assert abs(frac - 1) < 0.03
    # truth = disk + bulge + bar: without the bar, what is left is the bar-free galaxy scaled
    # down to the host's share of the flux
    host = barred.truth - barred.bar
    np.testing.assert_allclose(host, (1 - cfg.bar_flux_fraction) * plain.truth, rtol=0, atol=2e-6)
    assert np.all(host > -1e-4 * barred.truth.max())


def test_noise_is_white_with_the_stated_sigma():
    cfg = ImageConfig(noise_sigma=0.02)
    batch = GalaxyImageSimulator(cfg).simulate(60, seed=8)
    model = convolve_psf(torch.from_numpy(batch.truth).double(), torch.from_numpy(batch.psf)).numpy()
    z = (batch.image - model) / batch.noise_sigma
    assert z.size > 50_000
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    # neighbouring pixels are independent
    assert abs(np.mean(z[:, :, 1:] * z[:, :, :-1])) < 0.02
    assert batch.weights.shape == batch.image.shape and np.all(batch.weights == np.float32(1 / 0.02**2))


@pytest.mark.parametrize("fwhm", [0.18, 0.3])
def test_psf_has_the_configured_fwhm(fwhm):
    cfg = ImageConfig(psf_fwhm=fwhm)
    psf = GalaxyImageSimulator(cfg).simulate(1).psf
    assert psf.dtype == np.float64 and psf.shape[0] % 2 == 1 and psf.shape[1] % 2 == 1
    assert abs(psf.sum() - 1) < 1e-12
    h = psf.shape[0] // 2
    offsets = np.arange(-h, h + 1)
    # pixel integration adds 1/12 px^2 to the variance (Sheppard's correction)
    var = (psf.sum(axis=0) * offsets**2).sum() - 1 / 12
    assert abs(math.sqrt(var) * 2.3548 * cfg.pixel_scale / fwhm - 1) < 0.02


def test_deterministic_and_independent_of_the_split():
    sim = GalaxyImageSimulator(ImageConfig(size=24, bar_fraction=0.5))
    whole = sim.simulate(10, seed=3)
    parts = SimulatedImages.concatenate([sim.simulate(4, seed=3), sim.simulate(6, seed=3, start=4)])
    for name in ("truth", "image", "bar"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(parts, name))
    for k in whole.params:
        np.testing.assert_array_equal(whole.params[k], parts.params[k])
    np.testing.assert_array_equal(whole.select(slice(4, 10)).image, sim.simulate(6, seed=3, start=4).image)
    assert len(whole.select(np.array([1, 3]))) == 2
    other = sim.simulate(10, seed=4)
    assert not np.array_equal(whole.image, other.image)
    assert not np.array_equal(whole.params["flux"], other.params["flux"])
    assert len(sim.simulate(0)) == 0
    with pytest.raises(ValueError, match="start"):
        sim.simulate(2, start=-1)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 4),
        ("size", 32.5),
        ("pixel_scale", 0.0),
        ("psf_fwhm", -1.0),
        ("noise_sigma", 0.0),
        ("flux_range", (5.0, 3.0)),
        ("flux_range", (0.0, 3.0)),
        ("disk_hlr_range", (0.3,)),
        ("bulge_fraction_range", (0.0, 1.5)),
        ("ellipticity_max", 1.0),
        ("bar_fraction", -0.1),
        ("bar_flux_fraction", 1.0),
        ("bar_length", 0.0),
        ("bar_axis_ratio", 0.0),
        ("centre_jitter", 100.0),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"ImageConfig\.{field} must be .*got"):
        ImageConfig(**{field: value})


def test_config_messages_and_round_trip():
    with pytest.raises(ValueError, match=r"^ImageConfig\.bar_fraction must be in \[0, 1\], got 1\.5$"):
        ImageConfig(bar_fraction=1.5)
    with pytest.raises(ValueError, match="psf_fwhmm"):
        ImageConfig.from_dict({"size": 16, "psf_fwhmm": 0.2})
    cfg = ImageConfig(size=40, flux_range=(1.0, 2.0), bar_fraction=0.3)
    assert ImageConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert ImageConfig.from_dict(cfg.to_dict()) == cfg


def test_galsim_is_imported_only_when_drawing():
    """``import speculum.sim`` must work without GalSim: no module-level import of it."""
    tree = ast.parse(Path(images_module.__file__).read_text())
    for node in tree.body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        assert not any(n.split(".")[0] == "galsim" for n in names)


def test_truth_psf_is_the_convolution_of_the_scene():
    """``truth_psf_fwhm`` > 0: truth and bar are the scene and bar convolved with the high-resolution PSF."""
    import torch

    from speculum.physics import convolve_psf, gaussian_psf

    scene = GalaxyImageSimulator(ImageConfig(size=48, bar_fraction=1.0)).simulate(3, seed=4)
    cfg = ImageConfig(size=48, bar_fraction=1.0, truth_psf_fwhm=0.1)
    hst = GalaxyImageSimulator(cfg).simulate(3, seed=4)
    k = gaussian_psf(0.1 / 0.06 / 2.3548)
    for a, b in ((scene.truth, hst.truth), (scene.bar, hst.bar)):
        want = convolve_psf(torch.from_numpy(a).double(), k).numpy()
        np.testing.assert_allclose(b, want, atol=2e-5 * float(np.abs(want).max()))  # float32 truth
    np.testing.assert_allclose(hst.truth.sum((1, 2)), scene.truth.sum((1, 2)), rtol=2e-3)  # flux kept
    assert hst.truth.max() < scene.truth.max()  # the cusp is resolved away
    with pytest.raises(ValueError, match="truth_psf_fwhm"):
        ImageConfig(truth_psf_fwhm=-0.1)
