import json

import pytest
import torch
from safetensors.torch import save_file

from speculum.models import AutoencoderConfig, SpectrumAutoencoder
from speculum.train import CheckpointError, fiducial_loss, load_model, reduced_chi2, save_model

SMALL = AutoencoderConfig(n_latent=3, encoder_channels=(8, 16, 32), decoder_hidden=(16, 32, 64), lsf_sigma=1.2)


def test_fiducial_loss_known_value_and_ignores_masked():
    y = torch.zeros(2, 10)
    model = torch.ones(2, 10)
    w = torch.full((2, 10), 2.0)
    w[1, :5] = 0
    y[1, :5] = float("nan")  # masked pixels may hold garbage
    per = fiducial_loss(y, w, model, reduce=False)
    torch.testing.assert_close(per, torch.tensor([0.5 * 2 * 10 / 10, 0.5 * 2 * 5 / 10]))
    torch.testing.assert_close(fiducial_loss(y, w, model), per.sum())


def test_reduced_chi2_of_pure_noise_is_one():
    gen = torch.Generator().manual_seed(0)
    sigma = 0.1
    model = torch.ones(50, 4000, dtype=torch.float64)
    y = model + sigma * torch.randn(50, 4000, generator=gen, dtype=torch.float64)
    w = torch.full_like(y, 1 / sigma**2)
    chi2 = reduced_chi2(y, w, model)
    # mean of 50 chi2/4000 draws: standard error sqrt(2/4000/50) = 3.2e-3
    assert abs(chi2.mean().item() - 1) < 0.013


def test_save_load_round_trip_is_bitwise(tmp_path):
    model = SpectrumAutoencoder(SMALL).eval()
    path = save_model(model, tmp_path / "m.safetensors")
    loaded = load_model(path, config=SMALL)
    y = 1 + 0.1 * torch.randn(3, 3921)
    z = torch.tensor([0.01, 0.2, 0.4])
    with torch.no_grad():
        a, b = model(y, None, z), loaded(y, None, z)
    for x1, x2 in zip(a, b, strict=True):
        assert torch.equal(x1, x2)
    assert not list(tmp_path.glob("*.tmp"))  # atomic write left nothing behind


def _rewrite(path, out, **meta_changes):
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    meta.update(meta_changes)
    save_file(load_file(str(path)), str(out), metadata=meta)
    return out


def test_wrong_schema_version_fails(tmp_path):
    path = save_model(SpectrumAutoencoder(SMALL), tmp_path / "m.safetensors")
    bad = _rewrite(path, tmp_path / "bad.safetensors", schema_version="99")
    with pytest.raises(CheckpointError, match=r"bad.safetensors: schema_version: expected 1, got '99'"):
        load_model(bad)


def test_mismatched_config_fails(tmp_path):
    path = save_model(SpectrumAutoencoder(SMALL), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match="config: expected"):
        load_model(path, config=AutoencoderConfig())
    cfg = SMALL.to_dict() | {"n_latent": 7}
    bad = _rewrite(path, tmp_path / "bad.safetensors", config=json.dumps(cfg))
    with pytest.raises(CheckpointError, match="weights do not match the stored config"):
        load_model(bad)
    cfg = SMALL.to_dict() | {"unknown_field": 1}
    bad = _rewrite(path, tmp_path / "bad2.safetensors", config=json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"unknown field\(s\) \['unknown_field'\]"):
        load_model(bad)


def test_garbage_file_fails(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable speculum checkpoint"):
        load_model(path)


# ---------------------------------------------------------------- model registry: kinds registered by decorator
from dataclasses import asdict, dataclass  # noqa: E402

from speculum.models.registry import register_model, registered_models  # noqa: E402


@dataclass(frozen=True)
class ToyConfig:
    width: int = 4


@register_model("ToyRegressor", config_from_dict=lambda d: ToyConfig(**d), config_to_dict=asdict)
class ToyRegressor(torch.nn.Module):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        self.lin = torch.nn.Linear(config.width, 1)


def test_registered_toy_model_round_trips(tmp_path):
    assert {"SpectrumAutoencoder", "ToyRegressor"} <= set(registered_models())
    model = ToyRegressor(ToyConfig(width=6))
    loaded = load_model(save_model(model, tmp_path / "toy.safetensors"), config=ToyConfig(width=6))
    assert type(loaded) is ToyRegressor and loaded.config == ToyConfig(width=6)
    x = torch.randn(5, 6)
    assert torch.equal(model.lin(x), loaded.lin(x))
    with pytest.raises(ValueError, match="Linear is not a registered model kind"):
        save_model(torch.nn.Linear(2, 1), tmp_path / "x.safetensors")
    bad = _rewrite(tmp_path / "toy.safetensors", tmp_path / "bad.safetensors", kind="Nope")
    with pytest.raises(CheckpointError, match=r"bad.safetensors: model kind: expected one of .*, got 'Nope'"):
        load_model(bad)


# ---------------------------------------------------------------- run manifests: runs know their inputs
def test_run_manifest_refuses_a_tampered_input(tmp_path):
    from speculum.train import check_inputs, read_run_manifest, write_run_manifest

    weights = save_model(SpectrumAutoencoder(SMALL), tmp_path / "ae" / "model.safetensors")
    shards = tmp_path / "shards"
    from speculum.autoencode import simulate_dataset
    from speculum.sim import SimConfig

    simulate_dataset(shards, 16, SimConfig(), seed=0)
    run = tmp_path / "flow"
    write_run_manifest(run, {"autoencoder": weights, "data": shards}, {}, {"epochs": 3})
    doc = read_run_manifest(run)
    assert doc["inputs"]["autoencoder"]["hash"].startswith("sha256:") and doc["config"] == {"epochs": 3}
    assert doc["inputs"]["data"]["hash"].startswith("shards:")
    check_inputs(run, "autoencoder", weights)
    check_inputs(run, "data", shards)
    expected = doc["inputs"]["autoencoder"]["hash"]
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1  # one flipped bit in the last weight
    weights.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=rf"input 'autoencoder' .* expected {expected}, found sha256:[0-9a-f]{{64}}"):
        check_inputs(run, "autoencoder", weights)
    with pytest.raises(KeyError, match="no input 'model'"):
        check_inputs(run, "model", weights)
