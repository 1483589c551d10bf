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


def test_short_training_improves_fit(tmp_path):
    """Default suite: three epochs on 1,500 spectra cut the held-out reduced chi2 by more than half."""
    data = simulate_dataset(tmp_path / "sim", 1536, SimConfig(), seed=4)
    s = train_autoencoder(data, tmp_path / "run", None, TrainConfig(epochs=3, lr=3e-3, patience=0))
    first, last = s["history"][0]["val_chi2"], s["history"][-1]["val_chi2"]
    assert last < first
    torch.manual_seed(0)
    untrained = tmp_path / "untrained"
    train_autoencoder(data, untrained, None, TrainConfig(epochs=1, lr=1e-12, patience=0))
    assert np.median(_test_chi2(tmp_path / "run", data)) < 0.5 * np.median(_test_chi2(untrained, data))


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
