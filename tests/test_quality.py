"""Known answers of training: the simulator's noise is known, so a good fit has reduced chi2 ~ 1."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from speculum.io import SpectraSet
from speculum.pipeline import prepare_spectra, simulate_dataset, train_autoencoder
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


def _mean_spectrum_chi2(run: Path, data: Path) -> np.ndarray:
    """Baseline: the weighted mean normalised training spectrum, its amplitude fitted per test spectrum.

    Observed frame; each held-out normal galaxy gets the amplitude that minimises its chi2
    (weighted least squares) over the same pixels as the model's chi2 (``w * valid``).
    """
    ds = SpectraSet.open(data)
    train = prepare_spectra(ds.read(["z", "flux", "ivar", "mask"], split="train"), "SDSS")
    test = ds.read(["z", "flux", "ivar", "mask", "truth_class"], split="test")
    p = prepare_spectra({k: v[test["truth_class"] == "normal"] for k, v in test.items()}, "SDSS")
    with torch.no_grad():
        valid = load_model(run / "model.safetensors")(p.y, p.w, p.z).valid
    y, w = p.y.double(), (p.w * valid).double()
    tw = train.w.double()
    mean = (tw * train.y.double()).sum(0) / tw.sum(0).clamp_min(1e-30)
    amp = (w * y * mean).sum(1) / (w * mean**2).sum(1)
    return reduced_chi2(y, w, amp[:, None] * mean).numpy()


def test_short_training_beats_the_mean_spectrum(tmp_path):
    """Default suite: three epochs on 1,500 spectra beat the mean-spectrum baseline on held-out chi2.

    Measured median reduced chi2 of held-out normal galaxies (simulation seeds 4 / 5 / 6):
    autoencoder 3.25 / 3.02 / 2.39; mean spectrum with a fitted amplitude 4.44 / 4.96 / 3.34
    (ratio 0.73 / 0.61 / 0.72). The bound asks for a chi2 at least 15 % below the baseline, so
    a model that learnt only the mean shape fails it. For scale: an 8-component observed-frame
    PCA (as many components as latents, weighted least squares per spectrum) reaches
    1.95 / 1.88 / 1.73, which three epochs do not yet beat.
    """
    data = simulate_dataset(tmp_path / "sim", 1536, SimConfig(), seed=4)
    s = train_autoencoder(data, tmp_path / "run", None, TrainConfig(epochs=3, lr=3e-3, patience=0))
    assert s["history"][-1]["val_chi2"] < s["history"][0]["val_chi2"]
    model = np.median(_test_chi2(tmp_path / "run", data))
    baseline = np.median(_mean_spectrum_chi2(tmp_path / "run", data))
    assert model < 0.85 * baseline, (model, baseline)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quality")
    data = simulate_dataset(tmp / "sim", 8192, SimConfig(), seed=0)
    train_autoencoder(data, tmp / "run", None, TrainConfig(epochs=16, lr=3e-3, patience=0))
    return data, tmp / "run"


@pytest.mark.slow
def test_small_model_reaches_noise_level(trained):
    """The demo configuration: held-out normal galaxies reach median reduced chi2 < 1.3."""
    data, run = trained
    assert np.median(_test_chi2(run, data)) < 1.3


@pytest.mark.slow
def test_real_sdss_galaxies_reconstruct(trained, shared_data):
    """Realism: real SDSS galaxies, reconstructed by the model trained on simulations.

    Loose bound: real spectra carry features the simulator lacks (see README), so their
    chi2 is higher, but a simulator that missed the basic shape of galaxy spectra would
    give chi2 of tens to hundreds.
    """
    from realism import evaluate

    data, run = trained
    res = evaluate(run / "model.safetensors", data)
    assert res["n_real"] == 7
    assert res["median_reduced_chi2_real"] < 5.0
