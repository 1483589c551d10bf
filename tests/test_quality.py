"""Known answers of training: the simulator's noise is known, so a good fit has reduced chi2 ~ 1."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speculum.autoencode import simulate_dataset
from speculum.autoencode import train as train_autoencoder
from speculum.io import SpectraSet, prepare_spectra
from speculum.physics import interp_linear, resample_to_observed
from speculum.sim import SimConfig
from speculum.train import TrainConfig, load_model, reduced_chi2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _test_chi2(run: Path, data: Path) -> np.ndarray:
    model = load_model(run / "model.safetensors")
    cols = SpectraSet.open(data).read(["object_id", "z", "flux", "ivar", "mask", "truth_class"], split="test")
    normal = cols["truth_class"] == "normal"
    p = prepare_spectra({k: v[normal] for k, v in cols.items()}, "SDSS")
    with torch.no_grad():
        res = model(p.y, p.w, p.z)
    return reduced_chi2(p.y, p.w * res.valid, res.observed).numpy()


def _restframe_mean_chi2(run: Path, data: Path) -> np.ndarray:
    """Baseline: the weighted mean *restframe* training spectrum, redshifted to each test spectrum.

    Every training spectrum is de-redshifted onto the model's restframe grid (weights zero
    outside its coverage), the weighted mean is taken, and for each held-out normal galaxy it
    is redshifted and resampled exactly as the model's output is, with its amplitude fitted
    by weighted least squares over the same pixels as the model's chi2 (``w * valid``). A
    model that learnt only the mean galaxy scores about 1.0 against this baseline.
    """
    model = load_model(run / "model.safetensors")
    ds = SpectraSet.open(data)
    train = prepare_spectra(ds.read(["z", "flux", "ivar", "mask"], split="train"), "SDSS")
    wave_obs, wave_rest = model.wave_obs.double(), model.wave_rest.double()
    at = wave_rest[None, :] * (1 + train.z.double()[:, None])  # where each restframe bin was observed
    yr = interp_linear(wave_obs, train.y.double(), at)
    wr = interp_linear(wave_obs, train.w.double(), at) * ((at > wave_obs[0]) & (at < wave_obs[-1]))
    mean = (wr * yr).sum(0) / wr.sum(0).clamp_min(1e-30)
    test = ds.read(["z", "flux", "ivar", "mask", "truth_class"], split="test")
    p = prepare_spectra({k: v[test["truth_class"] == "normal"] for k, v in test.items()}, "SDSS")
    m, valid = resample_to_observed(mean.expand(len(p.z), -1), wave_rest, p.z.double(), wave_obs)
    y, w = p.y.double(), p.w.double() * valid
    amp = (w * y * m).sum(1) / (w * m**2).sum(1)
    return reduced_chi2(y, w, amp[:, None] * m).numpy()


def test_short_training_beats_the_restframe_mean_galaxy(tmp_path):
    """Default suite: eight epochs on 1,536 spectra beat the mean restframe galaxy on held-out chi2.

    Measured median reduced chi2 of held-out normal galaxies (simulation seeds 4 / 5 / 6,
    ``python`` of this test's code): autoencoder 2.43 / 2.26 / 1.87; mean restframe galaxy,
    redshifted, with a fitted amplitude 3.11 / 4.15 / 2.68 (ratio 0.78 / 0.54 / 0.70). The bound
    asks for a chi2 at least 15 % below the baseline, so a model that learnt only the mean
    galaxy fails it (three epochs do not pass it reliably: ratio 1.04 for seed 4).
    """
    data = simulate_dataset(tmp_path / "sim", 1536, SimConfig(), seed=4)
    s = train_autoencoder(data, tmp_path / "run", None, TrainConfig(epochs=8, lr=3e-3, patience=0))
    assert s["history"][-1]["val_chi2"] < s["history"][0]["val_chi2"]
    model = np.median(_test_chi2(tmp_path / "run", data))
    baseline = np.median(_restframe_mean_chi2(tmp_path / "run", data))
    assert model < 0.85 * baseline, (model, baseline)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quality")
    data = simulate_dataset(tmp / "sim", 8192, SimConfig(), seed=0)
    train_autoencoder(data, tmp / "run", None, TrainConfig(epochs=16, lr=3e-3, patience=0))
    return data, tmp / "run"


@pytest.mark.slow
def test_small_model_reaches_noise_level(trained):
    """The demo configuration: held-out normal galaxies reach median reduced chi2 < 1.6.

    Measured 1.457 (the simulator carries calibration distortions of up to 5 %, sky residuals
    and a high-S/N tail, none of which the small model's latents can describe); 1.12 before
    those were added.
    """
    data, run = trained
    assert np.median(_test_chi2(run, data)) < 1.6


@pytest.mark.slow
def test_real_sdss_galaxies_reconstruct(trained, shared_data, tmp_path):
    """Realism: real SDSS galaxies, reconstructed by the model trained on simulations.

    Loose bound: real spectra carry features the simulator lacks (see README), so their
    chi2 is higher, but a simulator that missed the basic shape of galaxy spectra would
    give chi2 of tens to hundreds.
    """
    from realism import evaluate

    data, run = trained
    res = evaluate(run / "model.safetensors", data, tmp_path)
    assert res["n_real"] == 7
    assert res["median_reduced_chi2_real"] < 5.0
