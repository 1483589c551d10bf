"""Cross-check against the reference implementation ``spender==0.3`` (when installed)."""

import pytest
import torch

from speculum.models import AutoencoderConfig, SpectrumAutoencoder, from_spender_state_dict, to_spender_state_dict

spender = pytest.importorskip("spender", reason="reference package spender==0.3 not installed")

pytestmark = pytest.mark.reference


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    cfg = AutoencoderConfig(n_latent=8, lsf_sigma=1.0)
    ref_inst = spender.Instrument(
        torch.as_tensor(SpectrumAutoencoder(cfg).wave_obs, dtype=torch.float32),
        lsf=torch.ones(9),
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
        assert rel(out.observed, y_ref) < 1e-10
        assert torch.equal(out.valid, valid_ref)
        # our float32 model stays within float32 MLP rounding of that exact answer
        with torch.no_grad():
            ours32 = ours64.float()(y, None, z).observed
        assert rel(ours32, y_ref.float()) < 5e-5
    finally:
        ref.float(), inst.float(), ours.float()


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
