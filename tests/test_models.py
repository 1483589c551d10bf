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
        enc.kernel = "direct"
        direct = enc(y)
    torch.testing.assert_close(fast, direct, rtol=1e-5, atol=1e-5 * direct.abs().max().item())


def test_fast_encoder_gradients_match_direct():
    enc = SpectrumEncoder(4, channels=(8, 16, 32)).double()
    y = spectra(4, dtype=torch.float64)
    grads = {}
    for kernel in ("fast", "direct"):
        enc.kernel = kernel
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
    cfg = AutoencoderConfig(
        n_latent=4, encoder_channels=(8, 16, 32), restframe=SMALL.restframe.__class__(4000, 8000, 2000)
    )
    model = SpectrumAutoencoder(cfg).eval()
    y = spectra(2)
    with torch.no_grad():
        out = model(y, torch.ones_like(y), torch.tensor([0.0, 0.1]))
    assert out.latents.shape == (2, 4) and out.restframe.shape == (2, 2000) and out.observed.shape == (2, 3921)
    wave = model.wave_obs
    for i, z in enumerate((0.0, 0.1)):
        outside = (wave <= 4000 * (1 + z)) | (wave >= 8000 * (1 + z))
        assert (out.observed[i, outside] == 0).all() and not out.valid[i, outside].any()
        assert out.valid[i, ~outside].all()


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
