import pytest
import torch

from speculum.models import AutoencoderConfig, SpectrumAutoencoder, SpectrumEncoder, inpaint_masked
from speculum.models.fastconv import BlockGeometry, block_forward

SMALL = AutoencoderConfig(n_latent=5, encoder_channels=(16, 32, 64), decoder_hidden=(32, 64, 128))


def spectra(n, length=3921, dtype=torch.float32):
    return 1 + 0.05 * torch.randn(n, length, dtype=dtype).cumsum(1) / 10


def reference_block(x, w, a, k, pool):
    y = torch.nn.functional.conv1d(x, w, padding=k // 2)
    y = torch.nn.functional.prelu(torch.nn.functional.instance_norm(y), a)
    return torch.nn.functional.max_pool1d(y, pool, pool, padding=pool // 2) if pool > 1 else y


@pytest.mark.parametrize(
    "length, c_in, c_out, k, pool, tile",
    [
        (3921, 1, 8, 5, 5, None),  # Toeplitz
        (785, 16, 8, 11, 11, None),  # DFT, tiled
        (785, 16, 8, 11, 11, 11),
        (785, 16, 8, 11, 11, 88),
        (72, 16, 8, 21, 1, None),  # DFT, one tile
        (72, 16, 8, 21, 1, 16),
        (100, 6, 4, 7, 4, None),  # even pool, odd lengths
        (37, 8, 4, 3, 3, None),
    ],
)
def test_fast_block_matches_reference_order(length, c_in, c_out, k, pool, tile):
    x = torch.randn(3, c_in, length, dtype=torch.float64) + 2.0
    w = torch.randn(c_out, c_in, k, dtype=torch.float64)
    a = torch.linspace(-0.5, 0.5, c_out, dtype=torch.float64)  # negative slopes too
    g = BlockGeometry.choose(length, k, pool, c_in, c_out)
    if tile is not None:
        cover = max(length + pool // 2, g.n_pooled * pool)
        g = BlockGeometry(length, k, pool, c_in, c_out, tile, -(-cover // tile), "dft")
    fast = block_forward(x.transpose(1, 2), w, a, g).transpose(1, 2)
    torch.testing.assert_close(fast, reference_block(x, w, a, k, pool), rtol=1e-9, atol=1e-9)


def test_fast_encoder_matches_direct_float32():
    enc = SpectrumEncoder(6).eval()
    y = spectra(20)
    with torch.no_grad():
        fast = enc(y)
        enc.backend = "direct"
        direct = enc(y)
    torch.testing.assert_close(fast, direct, rtol=1e-5, atol=1e-5 * direct.abs().max().item())


def test_fast_encoder_gradients_match_direct():
    enc = SpectrumEncoder(4, channels=(8, 16, 32)).double()
    y = spectra(4, dtype=torch.float64)
    grads = {}
    for kernel in ("fast", "direct"):
        enc.backend = kernel
        enc.zero_grad()
        enc(y).square().sum().backward()
        grads[kernel] = [p.grad.clone() for p in enc.parameters()]
    for gf, gd in zip(grads["fast"], grads["direct"], strict=True):
        torch.testing.assert_close(gf, gd, rtol=1e-7, atol=1e-10)


def test_masked_pixels_do_not_change_latents():
    model = SpectrumAutoencoder(SMALL).eval()
    y = spectra(4)
    w = torch.ones_like(y)
    w[:, 1000:1040] = 0
    w[0, :30] = 0
    w[1, -50:] = 0
    y2 = y.clone()
    y2[w == 0] = torch.randn(int((w == 0).sum())) * 100
    with torch.no_grad():
        s1 = model.encode(y, w)
        s2 = model.encode(y2, w)
        s_unaware = model.encoder.mlp(model.encoder.features(y2))
    torch.testing.assert_close(s1, s2, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(s_unaware, s1, atol=1e-3)  # the reference's behaviour would differ


def test_inpaint_interpolates():
    y = torch.tensor([[5.0, 1.0, 9.0, 9.0, 4.0, 7.0]])
    w = torch.tensor([[0.0, 1.0, 0.0, 0.0, 1.0, 0.0]])
    torch.testing.assert_close(inpaint_masked(y, w), torch.tensor([[1.0, 1.0, 2.0, 3.0, 4.0, 4.0]]))


def test_every_parameter_gets_a_gradient():
    model = SpectrumAutoencoder(AutoencoderConfig(n_latent=4, encoder_channels=(8, 16, 32), lsf_sigma=1.0))
    y = spectra(3)
    out = model(y, torch.ones_like(y), torch.tensor([0.05, 0.1, 0.2]))
    out.observed.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_output_shapes_and_zero_outside_restframe():
    # DESI's grid ends exactly at 2000 x 1.8 = 3600 A and at 9824 A: at z = 0.8 the first
    # observed pixel, at z = 0 the last one lies on the coverage edge (not strictly inside)
    cfg = AutoencoderConfig(instrument="DESI", n_latent=4, encoder_channels=(8, 16, 32), decoder_hidden=(16, 32, 64))
    model = SpectrumAutoencoder(cfg).eval()
    y = spectra(3, 7781)
    z = torch.tensor([0.0, 0.3, 0.8], dtype=torch.float64)  # float32 0.8 rounds above z_max
    with torch.no_grad():
        out = model(y, torch.ones_like(y), z)
    assert out.latents.shape == (3, 4) and out.restframe.shape == (3, 9780) and out.observed.shape == (3, 7781)
    wave = model.wave_obs
    for i in range(3):
        outside = (wave <= 2000 * (1 + z[i])) | (wave >= 9824 * (1 + z[i]))
        assert (out.observed[i, outside] == 0).all() and not out.valid[i, outside].any()
        assert out.valid[i, ~outside].all() and (out.observed[i, ~outside] != 0).all()
    assert not out.valid[2, 0] and not out.valid[0, -1] and out.valid[1, [0, -1]].all()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda y, w, z: (y[:, :-1], w[:, :-1], z), r"y: expected shape \(\*, 3921\), got \(2, 3920\)"),
        (lambda y, w, z: (y.index_fill(1, torch.tensor([5]), float("nan")), w, z), "y: expected finite values"),
        (lambda y, w, z: (y, -w, z), "w: expected values >= 0"),
        (lambda y, w, z: (y, w, torch.tensor([0.1, 0.9])), r"z: expected redshifts in the SDSS range \[0.0, 0.5\]"),
        (lambda y, w, z: (y, w, torch.tensor([0.1])), r"z: expected shape \(2\), got \(1,\)"),
    ],
)
def test_bad_input_raises_clear_error(change, message):
    model = SpectrumAutoencoder(SMALL)
    y = spectra(2)
    args = change(y, torch.ones_like(y), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match=message):
        model(*args)


def test_config_validation():
    with pytest.raises(ValueError, match="encoder_kernels: expected odd sizes"):
        AutoencoderConfig(encoder_kernels=(5, 10, 21))
    with pytest.raises(ValueError, match="restframe: expected 0 < start < stop"):
        SMALL.restframe.__class__(5000, 4000, 10)


TINY_CHANNELS = (4, 8, 8)  # small widths keep the float64 direct path fast at full instrument lengths


def fast_and_direct(enc, y):
    enc.backend = "fast"
    fast = enc(y)
    enc.backend = "direct"
    direct = enc(y)
    enc.backend = "fast"
    return fast, direct


@pytest.mark.parametrize("length", [3921, 4686, 7781])  # SDSS, BOSS, DESI
@pytest.mark.parametrize("n", [0, 1, 3])
def test_fast_encoder_equals_direct_at_instrument_lengths(length, n):
    enc = SpectrumEncoder(3, channels=TINY_CHANNELS, hidden=(8,)).double().eval()
    with torch.no_grad():
        fast, direct = fast_and_direct(enc, spectra(n, length, dtype=torch.float64))
    assert fast.shape == direct.shape == (n, 3)
    torch.testing.assert_close(fast, direct, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_fast_encoder_equals_direct_at_short_lengths(n):
    # lengths 3..55 leave a single pooled window after the second block (pools 5 and 11),
    # lengths 3..11 a single one after the first as well; the fast kernel used to emit two
    enc = SpectrumEncoder(3, channels=TINY_CHANNELS, hidden=(8,)).double().eval()
    for length in range(3, 41):
        with torch.no_grad():
            fast, direct = fast_and_direct(enc, torch.randn(n, length, dtype=torch.float64))
        assert fast.shape == (n, 3), length
        torch.testing.assert_close(fast, direct, rtol=1e-9, atol=1e-9, msg=f"length {length}")


@pytest.mark.parametrize("length, pool", [(3, 5), (4, 5), (7, 5), (3, 11), (6, 11), (11, 11), (12, 11), (21, 11)])
def test_fast_block_single_pooled_window(length, pool):
    x = torch.randn(2, 6, length, dtype=torch.float64)
    w = torch.randn(4, 6, 5, dtype=torch.float64)
    a = torch.tensor([-0.3, 0.0, 0.2, 0.5], dtype=torch.float64)
    g = BlockGeometry.choose(length, 5, pool, 6, 4)
    fast = block_forward(x.transpose(1, 2), w, a, g).transpose(1, 2)
    assert fast.shape[-1] == g.n_pooled
    torch.testing.assert_close(fast, reference_block(x, w, a, 5, pool), rtol=1e-9, atol=1e-9)


def test_empty_batch_forward_backward_gives_zero_gradients():
    # DDP may hand a rank an empty batch: it must run and contribute zero gradients to every parameter
    cfg = AutoencoderConfig(n_latent=4, encoder_channels=(8, 16, 32), decoder_hidden=(16, 32, 64), lsf_sigma=1.0)
    model = SpectrumAutoencoder(cfg).double()
    y = torch.zeros(0, model.instrument.n_pixels, dtype=torch.float64)
    out = model(y, torch.ones_like(y), torch.zeros(0, dtype=torch.float64))
    assert out.latents.shape == (0, 4) and out.observed.shape == (0, 3921) and out.valid.shape == (0, 3921)
    loss = (out.observed - y).square().sum(1)
    loss.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.equal(p.grad, torch.zeros_like(p)), name


# ----------------------------------------------------- restframe grid coverage
TINY = {"n_latent": 3, "encoder_channels": TINY_CHANNELS, "encoder_hidden": (8,), "decoder_hidden": (8, 16, 32)}


@pytest.mark.parametrize("instrument", ["SDSS", "BOSS", "DESI"])
def test_default_restframe_grid_covers_the_instrument(instrument):
    from speculum.instruments import get_instrument
    from speculum.models import RestframeGrid

    cfg = AutoencoderConfig(instrument=instrument, **TINY)
    assert cfg.restframe == RestframeGrid.for_instrument(instrument)
    inst = get_instrument(instrument)
    z_min, z_max = inst.z_range
    if instrument == "BOSS":  # loglam 3.549 .. 3.549 + 4686e-4 (far edge of the last pixel) at 0 <= z <= 0.8
        assert cfg.restframe.start <= 10**3.549 / 1.8 and cfg.restframe.stop >= 10 ** (3.549 + 4686e-4)
    model = SpectrumAutoencoder(cfg).double()
    rest = torch.ones(2, cfg.restframe.n, dtype=torch.float64)
    _, valid = model.observe(rest, torch.tensor([z_min, z_max], dtype=torch.float64))
    # at most the outermost pixel is lost at the extreme redshifts (the reference's SDSS/DESI grids)
    assert int((~valid).sum()) <= {"SDSS": 1, "BOSS": 0, "DESI": 2}[instrument]


@pytest.mark.parametrize(
    "instrument, grid, message",
    [
        (
            "BOSS",
            (2000.0, 9824.0, 9780),  # the DESI grid BOSS used to get
            r"restframe: the BOSS grid \(3540.0 - 10411.2 A\) at z in \[0.0, 0.8\] needs a restframe grid "
            r"covering 1966.7 - 10411.2 A, got 2000.0 - 9824.0 A; RestframeGrid.for_instrument\('BOSS'\)",
        ),
        ("SDSS", (2600.0, 9332.0, 100), r"restframe: the SDSS grid .* covering 2523.0 - 9332.5 A, got 2600.0 - 9332.0"),
        ("DESI", (2000.0, 9800.0, 100), r"restframe: the DESI grid .* covering 2000.0 - 9824.0 A, got 2000.0 - 9800.0"),
    ],
)
def test_restframe_grid_too_narrow_raises(instrument, grid, message):
    from speculum.models import RestframeGrid

    cfg = AutoencoderConfig(instrument=instrument, restframe=RestframeGrid(*grid), **TINY)
    with pytest.raises(ValueError, match=message):
        SpectrumAutoencoder(cfg)


# ----------------------------------------------------- validity after LSF / resolution
def window_valid(covered, h, outside):
    """Independent rule: pixel i is valid iff all of [i - h, i + h] is covered (beyond the grid: ``outside``)."""
    n, length = covered.shape
    out = torch.zeros_like(covered)
    for i in range(length):
        lo, hi = i - h, i + h + 1
        inside = covered[:, max(lo, 0) : min(hi, length)].all(1)
        out[:, i] = inside & (outside or (lo >= 0 and hi <= length))
    return out


def test_constant_model_exact_on_valid_pixels_after_lsf():
    model = SpectrumAutoencoder(AutoencoderConfig(lsf_sigma=1.5, **TINY)).double()  # 13 taps, h = 6
    z = torch.tensor([0.0, 0.2, 0.5], dtype=torch.float64)
    observed, valid = model.observe(torch.full((3, 7000), 3.0, dtype=torch.float64), z)
    wave = model.wave_obs
    covered = (wave[None] > 2359.0 * (1 + z[:, None])) & (wave[None] < 9332.0 * (1 + z[:, None]))
    assert not covered[0, -1]  # at z = 0 the grid ends 0.6 A short of the last SDSS pixel
    assert torch.equal(valid, window_valid(covered, 6, outside=False))
    assert valid.sum(1).tolist() == [3921 - 6 - 7, 3921 - 12, 3921 - 12]
    torch.testing.assert_close(observed[valid], torch.full_like(observed[valid], 3.0), rtol=0, atol=1e-6)
    assert (observed[~valid] == 0).all()


def test_constant_model_exact_on_valid_pixels_after_resolution_matrix():
    model = SpectrumAutoencoder(AutoencoderConfig(instrument="DESI", **TINY)).double()
    length, d, h = 7781, 11, 5
    gen = torch.Generator().manual_seed(5)
    # asymmetric band varying along wavelength, rows scaled to unit sum (a constant stays constant)
    data = torch.rand(3, d, length, generator=gen, dtype=torch.float64) * torch.linspace(0.2, 1.0, d)[None, :, None]
    from speculum.physics import apply_resolution_matrix

    rowsum = apply_resolution_matrix(torch.ones(3, length, dtype=torch.float64), data)
    for k in range(d):
        rows = (torch.arange(length) - (h - k)).clamp(0, length - 1)  # row i = j - offset of column j
        data[:, k] /= rowsum[:, rows]
    z = torch.tensor([0.0, 0.3, 0.8], dtype=torch.float64)
    observed, valid = model.observe(torch.full((3, 9780), 3.0, dtype=torch.float64), z, resolution=data)
    wave = model.wave_obs
    covered = (wave[None] > 2000.0 * (1 + z[:, None])) & (wave[None] < 9824.0 * (1 + z[:, None]))
    assert torch.equal(valid, window_valid(covered, h, outside=True))
    assert valid.sum(1).tolist() == [length - 6, length, length - 6]  # the grid ends themselves stay valid
    torch.testing.assert_close(observed[valid], torch.full_like(observed[valid], 3.0), rtol=0, atol=1e-6)
    assert (observed[~valid] == 0).all()
