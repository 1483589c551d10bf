import pytest
import torch

from speculum.instruments import SDSS
from speculum.physics import (
    apply_resolution_matrix,
    convolve_lsf,
    gaussian_kernel,
    gaussian_resolution_matrix,
    median_normalization,
    redshift_grid,
    resample_to_observed,
)

WAVE_REST = torch.linspace(2359.0, 9332.0, 7000, dtype=torch.float64)


def gaussian_line(wave, centre, sigma=3.0, amp=1.0):
    return amp * torch.exp(-0.5 * ((wave - centre) / sigma) ** 2)


@pytest.mark.parametrize("z", [0.0, 0.05, 0.1234, 0.3, 0.45])
def test_line_lands_at_redshifted_pixel(z):
    wave_obs = SDSS.wave(torch.float64)
    rest = 1 + gaussian_line(WAVE_REST, 4862.68)[None]
    obs, valid = resample_to_observed(rest, WAVE_REST, torch.tensor([z], dtype=torch.float64), wave_obs)
    expected = SDSS.pixel_of(4862.68 * (1 + z))
    assert int(obs[0].argmax()) == expected
    # the sub-pixel centroid is right to 1% of a pixel
    sel = slice(expected - 15, expected + 16)
    line = (obs[0, sel] - 1) * torch.gradient(wave_obs)[0][sel]  # flux density x pixel width
    centroid = (line * wave_obs[sel]).sum() / line.sum()
    pixel = wave_obs[expected + 1] - wave_obs[expected]
    assert abs(centroid - 4862.68 * (1 + z)) < 0.01 * pixel


def test_resampling_conserves_flux():
    z = torch.tensor([0.1, 0.25], dtype=torch.float64)
    wave_obs = torch.linspace(3800.0, 9200.0, 20001, dtype=torch.float64)
    rest = gaussian_line(WAVE_REST, 5008.24, sigma=4.0)[None].expand(2, -1)
    obs, _ = resample_to_observed(rest, WAVE_REST, z, wave_obs)
    flux_rest = torch.trapezoid(rest[0], WAVE_REST)
    flux_obs = torch.trapezoid(obs, wave_obs)
    # f_obs(lambda) = f_rest(lambda / (1+z)): the integral scales by (1+z)
    # linear interpolation of a line 4 restframe pixels wide: second-order error ~1e-4
    torch.testing.assert_close(flux_obs, flux_rest * (1 + z), rtol=3e-4, atol=0)


def test_zero_and_invalid_outside_restframe_range():
    wave_rest = torch.linspace(4000.0, 6000.0, 1000, dtype=torch.float64)
    wave_obs = SDSS.wave(torch.float64)
    obs, valid = resample_to_observed(
        torch.ones(1, 1000, dtype=torch.float64), wave_rest, torch.tensor([0.1]), wave_obs
    )
    outside = (wave_obs <= 4400.0) | (wave_obs >= 6600.0)
    assert not valid[0, outside].any() and valid[0, ~outside].all()
    assert (obs[0, outside] == 0).all() and torch.allclose(obs[0, ~outside], torch.ones(1, dtype=torch.float64))


def test_lsf_conserves_flux():
    flux = gaussian_line(torch.arange(500.0, dtype=torch.float64), 250.0, sigma=1.0)[None]
    for sigma in (0.7, 1.5, 3.0):
        out = convolve_lsf(flux, gaussian_kernel(sigma))
        torch.testing.assert_close(out.sum(), flux.sum(), rtol=1e-12, atol=0)
        # widths add in quadrature
        x = torch.arange(500.0, dtype=torch.float64)
        var = ((x - 250) ** 2 * out[0]).sum() / out.sum()
        assert var == pytest.approx(1.0 + sigma**2, rel=1e-3)


def test_identity_resolution_is_noop():
    flux = torch.randn(3, 100, dtype=torch.float64)
    res = torch.zeros(3, 11, 100, dtype=torch.float64)
    res[:, 5] = 1.0
    torch.testing.assert_close(apply_resolution_matrix(flux, res), flux, rtol=0, atol=0)


def test_gaussian_resolution_matrix_equals_lsf():
    flux = torch.randn(2, 300, dtype=torch.float64)
    sigma = 1.3
    res = gaussian_resolution_matrix(sigma, 300, n_diag=11)
    a = apply_resolution_matrix(flux, res)
    b = convolve_lsf(flux, gaussian_kernel(sigma, half_width=5))
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_resolution_matrix_offsets_follow_desi_convention():
    # R[i, j] = data[d, j] with j - i = offsets[d] = 5 - d: a single off-diagonal shifts
    flux = torch.zeros(1, 50, dtype=torch.float64)
    flux[0, 20] = 1.0
    res = torch.zeros(11, 50, dtype=torch.float64)
    res[3] = 1.0  # offset j - i = +2: y_i = x_{i+2}
    out = apply_resolution_matrix(flux, res)
    assert int(out[0].argmax()) == 18


def test_median_normalization_known_value():
    wave = SDSS.wave(torch.float64)
    z = torch.tensor([0.1, 0.2], dtype=torch.float64)
    flux = torch.stack([torch.full_like(wave, 2.0), torch.full_like(wave, 5.0)])
    w = torch.ones_like(flux)
    rest = wave / 1.1
    w[0, (rest > 5500) & (rest < 5600)] = 0
    flux[0, (rest > 5500) & (rest < 5600)] = 1e6  # masked: ignored
    torch.testing.assert_close(median_normalization(wave, flux, w, z), torch.tensor([2.0, 5.0], dtype=torch.float64))


def test_gradcheck_transforms():
    wave_rest = torch.linspace(4000.0, 5000.0, 40, dtype=torch.float64)
    wave_obs = torch.linspace(4300.0, 5300.0, 30, dtype=torch.float64)
    rest = torch.rand(2, 40, dtype=torch.float64, requires_grad=True)
    z = torch.tensor([0.05, 0.1], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda r: resample_to_observed(r, wave_rest, z, wave_obs)[0], (rest,))
    flux = torch.rand(2, 30, dtype=torch.float64, requires_grad=True)
    kernel = torch.rand(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(convolve_lsf, (flux, kernel))
    res = torch.rand(2, 5, 30, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(apply_resolution_matrix, (flux, res))


def test_redshift_grid():
    torch.testing.assert_close(redshift_grid(torch.tensor([1000.0]), torch.tensor([0.5])), torch.tensor([[1500.0]]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"wave_rest": torch.linspace(6000.0, 4000.0, 50)}, "wave_rest: expected a strictly increasing"),
        ({"z": torch.zeros(3)}, r"z: expected shape \(2\)"),
        ({"model_rest": torch.ones(2, 49)}, r"model_rest: expected shape \(\*, 50\)"),
    ],
)
def test_bad_input_names_argument(kwargs, message):
    args = {
        "model_rest": torch.ones(2, 50),
        "wave_rest": torch.linspace(4000.0, 6000.0, 50),
        "z": torch.zeros(2),
        "wave_obs": torch.linspace(4000.0, 6000.0, 60),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        resample_to_observed(**args)


def test_resample_log_uniform_equals_general_resampling():
    from speculum.instruments import DESI, SDSS
    from speculum.physics import resample_log_uniform, resample_to_observed

    log_start, log_step = 3.25, 1e-4
    wave_rest = 10 ** (log_start + log_step * torch.arange(7000, dtype=torch.float64))
    y = torch.randn(5, 7000, dtype=torch.float64)
    z = torch.tensor([0.0, 0.1, 0.3, 0.5, 0.77], dtype=torch.float64)
    for inst in (SDSS, DESI):
        a, va = resample_log_uniform(y, log_start, log_step, z, inst.wave())
        b, vb = resample_to_observed(y, wave_rest, z, inst.wave())
        assert torch.equal(va, vb)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


# ----------------------------------------------------- conventions with asymmetric kernels
def dense_lsf(kernel, length):
    """Dense convolution matrix from the textbook definition, ``K[i, j] = k[i - j + h] / sum(k)``."""
    h = len(kernel) // 2
    mat = torch.zeros(length, length, dtype=torch.float64)
    for i in range(length):
        for j in range(max(0, i - h), min(length, i + h + 1)):
            mat[i, j] = kernel[i - j + h]
    return mat / kernel.sum()


ASYMMETRIC = torch.tensor([0.05, 0.1, 0.5, 1.0, 0.3, 0.2, 0.02], dtype=torch.float64)


def test_lsf_matches_direct_sum_with_asymmetric_kernel():
    flux = torch.randn(3, 40, dtype=torch.float64)
    expected = flux @ dense_lsf(ASYMMETRIC, 40).T
    torch.testing.assert_close(convolve_lsf(flux, ASYMMETRIC), expected, rtol=1e-12, atol=1e-12)
    # known answer: all weight at r = h + 2 moves a line two pixels redward
    delta = torch.zeros(1, 40, dtype=torch.float64)
    delta[0, 20] = 1.0
    shift = torch.zeros(7, dtype=torch.float64)
    shift[5] = 1.0
    assert int(convolve_lsf(delta, shift)[0].argmax()) == 22


def test_resolution_matrix_matches_scipy_dia_with_varying_asymmetric_band():
    dia_matrix = pytest.importorskip("scipy.sparse").dia_matrix
    gen = torch.Generator().manual_seed(3)
    n, d, length = 2, 11, 60
    offsets = list(range(d // 2, -(d // 2) - 1, -1))  # DESI: +5 .. -5
    # a band that varies along wavelength and is asymmetric about the diagonal
    data = torch.rand(n, d, length, generator=gen, dtype=torch.float64)
    data *= torch.linspace(0.5, 2.0, d, dtype=torch.float64)[None, :, None]
    data *= torch.linspace(1.0, 3.0, length, dtype=torch.float64)[None, None, :]
    flux = torch.randn(n, length, generator=gen, dtype=torch.float64)
    out = apply_resolution_matrix(flux, data)
    for s in range(n):
        dense = torch.from_numpy(dia_matrix((data[s].numpy(), offsets), shape=(length, length)).toarray())
        # the DESI definition, written out: R[i, i + k] = data[5 - k, i + k]
        i, k = 17, 3
        assert dense[i, i + k] == data[s, 5 - k, i + k] and dense[i + k, i] == data[s, 5 + k, i]
        torch.testing.assert_close(out[s], dense @ flux[s], rtol=1e-12, atol=1e-12)


def test_lsf_as_resolution_matrix_with_asymmetric_kernel():
    # in DESI storage a convolution kernel k is data[d, :] = k[d] (offset j - i = h - d)
    flux = torch.randn(2, 80, dtype=torch.float64)
    data = (ASYMMETRIC / ASYMMETRIC.sum())[:, None].expand(7, 80)
    a = apply_resolution_matrix(flux, data)
    b = convolve_lsf(flux, ASYMMETRIC)
    torch.testing.assert_close(a[:, 3:-3], b[:, 3:-3], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------- valid pixels after convolution
def test_shrink_valid_known_answer():
    from speculum.physics import shrink_valid

    valid = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 0, 1, 1]], dtype=torch.bool)
    assert shrink_valid(valid, 1).int().tolist() == [[0, 0, 1, 1, 1, 1, 0, 0, 0, 0]]
    assert shrink_valid(valid, 1, outside_valid=True).int().tolist() == [[0, 0, 1, 1, 1, 1, 0, 0, 0, 1]]
    assert shrink_valid(valid, 0).equal(valid)
    assert shrink_valid(torch.zeros(0, 10, dtype=torch.bool), 2).shape == (0, 10)


@pytest.mark.parametrize("z", [0.0, 0.13, 0.4])
def test_constant_model_is_exact_on_valid_pixels_after_lsf(z):
    from speculum.physics import shrink_valid

    wave_rest = torch.linspace(4000.0, 8000.0, 4000, dtype=torch.float64)  # coverage inside the grid
    wave_obs = SDSS.wave(torch.float64)
    kernel = gaussian_kernel(1.5)  # 13 taps, h = 6
    h = len(kernel) // 2
    obs, covered = resample_to_observed(
        torch.full((1, 4000), 3.0, dtype=torch.float64), wave_rest, torch.tensor([z], dtype=torch.float64), wave_obs
    )
    obs = convolve_lsf(obs, kernel)
    valid = shrink_valid(covered, h)
    # independently: valid iff every pixel of [i - h, i + h] exists and is covered; at z = 0.4
    # the coverage runs past the red end of the grid, where the convolution pads with zeros
    idx = torch.nonzero(covered[0])[:, 0]
    first, last = int(idx[0]), int(idx[-1])
    assert first > h and (last == wave_obs.shape[0] - 1) == (z == 0.4)
    expected = torch.zeros(wave_obs.shape[0], dtype=torch.bool)
    expected[first + h : last - h + 1] = True
    assert torch.equal(valid[0], expected) and int(valid.sum()) == last - first + 1 - 2 * h
    torch.testing.assert_close(obs[valid], torch.full_like(obs[valid], 3.0), rtol=0, atol=1e-6)
    # and every pixel dropped is off by more than that tolerance: the zero padding reaches it
    assert (obs[0, first : first + h] < 3.0 - 1e-6).all() and (obs[0, last - h + 1 : last + 1] < 3.0 - 1e-6).all()


# ----------------------------------------------------- amplitude normalisation
def test_window_median_and_fit_amplitude_known_answers():
    from speculum.physics import fit_amplitude, window_median

    wave = torch.linspace(5000.0, 6000.0, 11, dtype=torch.float64)  # 5400..5800 inside the window
    flux = torch.tensor([[9.0, 9.0, 9.0, 9.0, 1.0, 2.0, 4.0, 3.0, 9.0, 9.0, 9.0]], dtype=torch.float64)
    assert window_median(wave, flux).item() == 3.0
    with pytest.raises(ValueError, match="window: expected a range overlapping the grid"):
        window_median(wave, flux, (7000.0, 8000.0))
    model = torch.tensor([[1.0, 2.0, 0.0, 4.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    data = 2.5 * model
    data[0, 2] = 100.0  # zero model: no leverage
    data[1, 0] = 99.0
    w = torch.tensor([[1.0, 1.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    # second spectrum has no weight: amplitude 1, not NaN
    torch.testing.assert_close(fit_amplitude(model, data, w), torch.tensor([2.5, 1.0], dtype=torch.float64))
