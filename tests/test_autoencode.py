"""The autoencoder workflow: streamed reconstruction, resume identity, resolution matrices, normalisation."""

from pathlib import Path

import numpy as np
import pytest

from speculum.autoencode import reconstruct, simulate_dataset
from speculum.autoencode import train as train_autoencoder
from speculum.io import prepare_spectra, read_results
from speculum.sim import SimConfig
from speculum.train import TrainConfig


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("pipeline")
    data = simulate_dataset(tmp / "sim", 400, SimConfig(anomaly_rate=0.1), seed=3, shard_size=128)
    train_autoencoder(data, tmp / "run", None, TrainConfig(epochs=1, batch_size=32, patience=0), limit=96)
    return data, tmp / "run"


def test_streamed_reconstruction_equals_one_pass(small_run, tmp_path):
    """Reading 7 rows at a time across shard boundaries gives the same table as one big read."""
    data, run = small_run
    a = reconstruct(run / "model.safetensors", data, tmp_path / "a.parquet", read_batch=7)
    b = reconstruct(run / "model.safetensors", data, tmp_path / "b.parquet", read_batch=4096)
    assert len(a["object_id"]) == 400
    assert list(a["object_id"]) == list(b["object_id"])
    np.testing.assert_allclose(a["latents"], b["latents"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["reduced_chi2"], b["reduced_chi2"], rtol=1e-5)
    back = read_results(tmp_path / "a.parquet")
    np.testing.assert_array_equal(back["latents"], a["latents"])


def test_resume_refuses_a_different_limit_or_data(small_run, tmp_path):
    """Exact resume needs the same rows: a changed --limit or data folder is refused, naming it."""
    data, run = small_run
    with pytest.raises(ValueError, match="limit"):
        train_autoencoder(data, run, None, TrainConfig(epochs=1, batch_size=32, patience=0), resume=True, limit=None)
    other = simulate_dataset(tmp_path / "other", 400, SimConfig(anomaly_rate=0.1), seed=4, shard_size=128)
    with pytest.raises(ValueError, match="data"):
        train_autoencoder(other, run, None, TrainConfig(epochs=1, batch_size=32, patience=0), resume=True, limit=96)


def test_amplitude_fit_keeps_spectra_without_the_normalisation_window():
    """DESI at z = 0.75 sees restframe 5300-5850 A only partly; fit_amplitude keeps such spectra."""
    from speculum.instruments import DESI

    n = DESI.n_pixels
    wave = DESI.wave_obs
    z = np.array([0.1, 0.75])
    flux = np.full((2, n), 3.0, np.float32)
    ivar = np.ones((2, n), np.float32)
    # no usable pixel in the window at z = 0.75 (rest 5300-5850 A -> observed 9275-10238 A)
    ivar[1, wave > 9000] = 0
    cols = {"z": z, "flux": flux, "ivar": ivar, "mask": np.zeros((2, n), np.int32)}
    plain = prepare_spectra(cols, "DESI")
    assert list(plain.index) == [0] and plain.skipped["no_normalisation"] == 1
    fitted = prepare_spectra(cols, "DESI", fit_amplitude=True)
    assert list(fitted.index) == [0, 1]
    np.testing.assert_allclose(fitted.norm.numpy(), [3.0, 3.0])
    np.testing.assert_allclose(fitted.y.numpy(), 1.0)


@pytest.mark.slow
def test_desi_resolution_matrices_lower_heldout_chi2(tmp_path):
    """Simulated DESI spectra carry per-spectrum resolution matrices; a model that applies them
    fits held-out spectra better than one that ignores them (same data, seed and training)."""
    data = simulate_dataset(tmp_path / "sim", 2048, SimConfig(instrument="DESI", anomaly_rate=0.0), seed=7)
    chi2 = {}
    for use in (True, False):
        run = tmp_path / f"run-{use}"
        cfg = TrainConfig(epochs=4, batch_size=64, patience=0)
        train_autoencoder(data, run, None, cfg, use_resolution=use)
        rec = reconstruct(run / "model.safetensors", data, run / "rec.parquet", split="test")
        chi2[use] = float(np.median(rec["reduced_chi2"]))
    print("held-out median reduced chi2 with / without resolution matrices:", chi2)
    assert chi2[True] < 0.97 * chi2[False], chi2


def test_reconstructed_spectra_file_is_survey_units_and_gzip(small_run, tmp_path):
    """`reconstruct --spectra x.fits.gz`: real gzip, the survey's own flux and ivar, the model in flux units."""
    pytest.importorskip("specutils", reason="specutils (surveys extra) not installed")
    from astropy.io import fits

    from speculum.io import SpectraSet

    data, run = small_run
    out = tmp_path / "spectra.fits.gz"
    reconstruct(run / "model.safetensors", data, tmp_path / "r.parquet", split="test", spectra_out=out)
    assert out.read_bytes()[:2] == b"\x1f\x8b"
    test = SpectraSet.open(data).read(["object_id", "flux", "ivar", "mask"], split="test")
    with fits.open(out) as hdul:
        spec = hdul["SPECTRA"].data
        ids = list(hdul["OBJECTS"].data["object_id"])
    order = [list(test["object_id"]).index(o) for o in ids]
    np.testing.assert_array_equal(np.asarray(spec["ivar"]).T, test["ivar"][order])
    np.testing.assert_array_equal(np.asarray(spec["flux"]).T, test["flux"][order])
    # the SDSS restframe grid covers the observed grid at every redshift: a model at every pixel
    model = np.asarray(spec["model"]).T
    assert np.isfinite(model).all()
    flux = test["flux"][order]
    assert np.median(np.abs(model - flux)) < 0.5 * np.median(np.abs(flux))


def test_prepare_with_resolution_and_no_usable_row():
    """A DESI chunk where no row has a usable redshift gives empty tensors of the right shapes, not a crash."""
    from speculum.instruments import DESI

    n, length = 2, DESI.n_pixels
    cols = {
        "z": np.array([np.nan, 3.0]),
        "flux": np.ones((n, length), np.float32),
        "ivar": np.ones((n, length), np.float32),
        "mask": np.zeros((n, length), np.int32),
        "resolution": np.ones((n, 11 * length), np.float32),
    }
    p = prepare_spectra(cols, "DESI")
    assert p.y.shape == (0, length) and p.resolution.shape == (0, 11, length)
    assert p.skipped["no_redshift"] == 1 and p.skipped["redshift_out_of_range"] == 1


def test_runs_refuse_replaced_models_and_stale_reconstructions(small_run, tmp_path):
    """run.json names the data and the model by content hash; catalogues name their model: mismatches are refused."""
    import shutil

    from speculum.autoencode import report
    from speculum.io import read_result_meta

    data, run = small_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    rec = reconstruct(copy / "model.safetensors", data, copy / "reconstructions.parquet", split="test")
    assert len(rec["object_id"]) > 0
    meta = read_result_meta(copy / "reconstructions.parquet")
    assert meta["model_hash"].startswith("sha256:") and meta["data_hash"].startswith("shards:")
    assert report(copy).exists()  # consistent run: fine
    # reconstructions made by another model are refused by the report
    other = tmp_path / "other"
    train_autoencoder(data, other, None, TrainConfig(epochs=1, batch_size=32, patience=0, seed=1), limit=64)
    reconstruct(other / "model.safetensors", data, copy / "reconstructions.parquet", split="test")
    with pytest.raises(ValueError, match="made by another model"):
        report(copy)
    # a replaced model is refused by reconstruct and by the report
    shutil.copy(other / "model.safetensors", copy / "model.safetensors")
    with pytest.raises(ValueError, match="not the model its run wrote"):
        reconstruct(copy / "model.safetensors", data, tmp_path / "r.parquet")
    with pytest.raises(ValueError, match="not the model this run wrote"):
        report(copy)
