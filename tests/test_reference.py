"""Cross-check against the reference implementation ``spender==0.3`` (when installed)."""

import dataclasses

import pytest
import torch

from speculum.models import AutoencoderConfig, SpectrumAutoencoder, from_spender_state_dict, to_spender_state_dict
from speculum.physics import shrink_valid

spender = pytest.importorskip("spender", reason="reference package spender==0.3 not installed")

pytestmark = pytest.mark.reference


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# an ASYMMETRIC line-spread kernel (convolution order, as ours stores it): a flipped kernel
# in the weight mapping or in either convolution would shift lines by a pixel and fail
LSF = torch.tensor([0.02, 0.1, 0.2, 0.4, 1.0, 0.6, 0.25, 0.05, 0.01])


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    cfg = AutoencoderConfig(n_latent=8, lsf_sigma=1.0)
    ref_inst = spender.Instrument(
        torch.as_tensor(SpectrumAutoencoder(cfg).wave_obs, dtype=torch.float32),
        lsf=LSF.clone(),  # the reference stores LSF.flip(0) as its conv1d (correlation) weight
    )
    ref = spender.SpectrumAutoencoder(ref_inst, cfg.restframe.wave(torch.float32), n_latent=8).eval()
    ours = from_spender_state_dict(ref.state_dict(), cfg)  # random reference weights, incl. conv biases
    gen = torch.Generator().manual_seed(1)
    y = 1 + 0.3 * torch.randn(12, 3921, generator=gen).cumsum(1) / 40 + 0.05 * torch.randn(12, 3921, generator=gen)
    z = torch.tensor([0.0, 0.01, 0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5])
    return ref, ref_inst, ours, y, z


def test_same_latents_and_restframe_float32(pair):
    ref, inst, ours, y, z = pair
    with torch.no_grad():
        s_ref, x_ref, _, _ = ref._forward(y, instrument=inst, z=z)
        out = ours(y, torch.ones_like(y), z)
    assert rel(out.latents, s_ref) < 1e-5
    assert rel(out.restframe, x_ref) < 1e-5


def test_same_observed_models_float64(pair):
    # The reference redshifts its grid in float32 (1e-3 A rounding at 9000 A), so the
    # observed-frame comparison is made with both models in float64.
    ref, inst, ours, y, z = pair
    ref64, inst64 = ref.double(), inst.double()
    ours64 = ours.double()
    inst64.wave_obs = ours64.wave_obs.clone()  # the exact grids, not their float32 rounding
    ref64.decoder.wave_rest = ours64.wave_rest.clone()
    try:
        with torch.no_grad():
            s_ref, x_ref, y_ref, valid_ref = ref64._forward(y.double(), instrument=inst64, z=z.double())
            out = ours64(y.double(), None, z.double())
        assert rel(out.latents, s_ref) < 1e-10
        # ours also drops the pixels within the LSF half-width (4) of the coverage or grid edges,
        # where the reference's zero padding mixes in; elsewhere the models agree
        assert torch.equal(out.valid, shrink_valid(valid_ref, len(LSF) // 2))
        assert out.valid.sum() == valid_ref.sum() - 8 * len(z)  # both grid ends (coverage extends past them)
        assert rel(out.observed[out.valid], y_ref[out.valid]) < 1e-10
        assert (out.observed[~out.valid] == 0).all()
        # our float32 model stays within float32 MLP rounding of that exact answer
        with torch.no_grad():
            ours32 = ours64.float()(y, None, z).observed
        assert rel(ours32[out.valid], y_ref.float()[out.valid]) < 5e-5
    finally:
        ref.float(), inst.float(), ours.float()


def test_same_normalized_outputs_float64(pair):
    # normalize=True on both (spender's `normalize`): restframe divided by its median over
    # 5300-5850 A, observed model scaled by the maximum-likelihood amplitude to the data
    ref, inst, ours, y, z = pair
    cfg = dataclasses.replace(ours.config, normalize=True, mask_aware=False)  # the reference encodes masked flux raw
    ours_n = from_spender_state_dict(ref.state_dict(), cfg).double()
    ref64, inst64 = ref.double(), inst.double()
    inst64.wave_obs = ours_n.wave_obs.clone()
    ref64.decoder.wave_rest = ours_n.wave_rest.clone()
    gen = torch.Generator().manual_seed(2)
    scale = torch.logspace(-1, 2, len(z), dtype=torch.float64)[:, None]  # data in arbitrary flux units
    y_raw = y.double() * scale
    w = torch.rand(y.shape, generator=gen, dtype=torch.float64) / scale**2
    w[:, 1500:1600] = 0  # masked pixels
    try:
        with torch.no_grad():
            out = ours_n(y_raw, w, z.double())
            # the same weights: ours x our (edge-shrunk) validity; the reference multiplies by its own
            s_ref, x_ref, y_ref, _ = ref64._forward(
                y_raw, instrument=inst64, z=z.double(), normalize=True, weights=w * out.valid
            )
        assert rel(out.latents, s_ref) < 1e-10
        assert rel(out.restframe, x_ref) < 1e-10
        assert rel(out.observed[out.valid], y_ref[out.valid]) < 1e-10
        # known answer: the fitted amplitude follows the data's scale (x1000 between first and last)
        ratio = out.restframe.median(1).values / scale[:, 0]
        assert 0.5 < float(ratio.min()) and float(ratio.max()) < 2.0
        # float32 stays within float32 MLP rounding of that answer
        with torch.no_grad():
            out32 = from_spender_state_dict(ref.float().state_dict(), cfg)(y_raw.float(), w.float(), z)
        assert rel(out32.restframe, x_ref.float()) < 5e-5
        assert rel(out32.observed[out.valid], y_ref.float()[out.valid]) < 5e-5
    finally:
        ref.float(), inst.float()


def test_normalize_is_off_by_default_and_amplitude_invariant(pair):
    ref, _, ours, y, z = pair
    assert AutoencoderConfig().normalize is False and ours.config.normalize is False
    model = from_spender_state_dict(ref.state_dict(), dataclasses.replace(ours.config, normalize=True)).double()
    with torch.no_grad():
        a = model(y.double(), None, z.double())
        # the same model shape (latents fixed) fitted to data 7.5x brighter: exactly 7.5x the model
        b = model(7.5 * y.double(), None, z.double(), s=a.latents)
    torch.testing.assert_close(b.observed, 7.5 * a.observed, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b.restframe, 7.5 * a.restframe, rtol=1e-12, atol=1e-12)


def test_round_trip_mapping(pair):
    ref, _, ours, _, _ = pair
    sd = to_spender_state_dict(ours)
    again = from_spender_state_dict(sd, ours.config)
    for (k1, v1), (k2, v2) in zip(ours.state_dict().items(), again.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(v1, v2)
    assert set(sd) == set(ref.state_dict())


def test_mapping_errors_name_the_key(pair):
    ref, _, ours, _, _ = pair
    sd = dict(ref.state_dict())
    del sd["encoder.mlp.3.weight"]
    with pytest.raises(ValueError, match=r"missing key\(s\).*encoder.mlp.2.weight"):
        from_spender_state_dict(sd, ours.config)
    sd = dict(ref.state_dict()) | {"encoder.extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected key\(s\).*encoder.extra.weight"):
        from_spender_state_dict(sd, ours.config)
    with pytest.raises(ValueError, match="decoder.wave_rest: expected the restframe grid"):
        from_spender_state_dict(
            ref.state_dict(), AutoencoderConfig(n_latent=8, lsf_sigma=1.0, restframe=ours.config.restframe.desi())
        )
