"""`speculum diagnostics`: simulate -> train a prior -> fisher maps + report, and its user errors."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from speculum.cli import app

pytest.importorskip("galsim", reason="galsim (the images extra) is not installed")


def run(*args):
    res = CliRunner().invoke(app, ["diagnostics", *map(str, args)])
    return res


def test_images_end_to_end(tmp_path):
    from speculum.diagnostics import fisher_diag_likelihood_psf, read_diagnosis

    data = tmp_path / "gal.npz"
    res = run("simulate-images", data, "--n", 96, "--size", 16, "--mask", "right-half", "--bar-fraction", 0.5)
    assert res.exit_code == 0, res.output
    arrays = np.load(data)
    assert arrays["image"].shape == (96, 16, 16) and (arrays["weights"][:, :, 8:] == 0).all()
    assert 20 < arrays["has_bar"].sum() < 76
    res = run("train-prior", data, "--out", tmp_path / "prior", "--epochs", 1, "--channels", 8, "--sigma-min", 0.02)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "prior" / "prior.safetensors").exists()
    res = run("fisher", data, "--prior", tmp_path / "prior", "--out", tmp_path / "maps", "--limit", 2,
              "--steps", 20, "--method", "exact")  # fmt: skip
    assert res.exit_code == 0, res.output
    maps = read_diagnosis(tmp_path / "maps" / "hallucination.npz")
    assert maps["delta"].shape == (2, 16, 16)
    # the written F_L is the exact PSF² ⋆ w of the observation's weights
    fl = fisher_diag_likelihood_psf(torch.from_numpy(arrays["psf"]), torch.from_numpy(arrays["weights"][:2]).double())
    assert np.allclose(maps["fisher_likelihood"], fl.numpy(), rtol=1e-10, atol=1e-12)
    assert np.allclose(maps["delta"], maps["fisher_prior"] - maps["fisher_likelihood"])
    html = (tmp_path / "maps" / "report.html").read_text()
    assert "Hallucination maps" in html and "Prior and data per object" in html and html.count("<img ") == 1
    assert "unit vectors (exact)" in html and bool(maps["exact"].all())
    # the run records its inputs by content hash; a report refuses maps it did not write
    from speculum.report import build_report
    from speculum.train.runs import content_hash, read_run_manifest

    manifest = read_run_manifest(tmp_path / "maps")
    assert manifest["inputs"]["data"]["hash"] == content_hash(data)
    assert manifest["inputs"]["prior"]["hash"] == content_hash(tmp_path / "prior" / "prior.safetensors")
    np.savez(tmp_path / "maps" / "hallucination.npz", **{k: v * 2 for k, v in maps.items()})
    with pytest.raises(ValueError, match="not the maps this run wrote"):
        build_report(tmp_path / "maps")


def test_centre_mask_and_calibration_settings(tmp_path):
    data = tmp_path / "c.npz"
    res = run("simulate-images", data, "--n", 4, "--mask", "centre", "--mask-radius", 4, "--noise", 0.005,
              "--bar-fraction", 1, "--bar-flux-fraction", 0.4, "--truth-psf-fwhm", 0.1)  # fmt: skip
    assert res.exit_code == 0, res.output
    a = np.load(data)
    yy, xx = np.mgrid[:32, :32]
    inside = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 < 16
    assert (a["weights"][:, inside] == 0).all() and (a["weights"][:, ~inside] == 1 / 0.005**2).all()
    # 40 % of the flux in the bar (the stamp loses some disk light at its edges: measured 0.40-0.42)
    assert np.allclose(a["bar"].sum((1, 2)) / a["truth"].sum((1, 2)), 0.41, atol=0.02)


def test_user_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, flux=np.zeros((2, 4)))
    res = run("train-prior", bad, "--out", tmp_path / "p")
    assert res.exit_code == 2 and "bad.npz" in res.output and "image, weights, psf" in res.output
    res = run("fisher", tmp_path / "missing.npz", "--prior", tmp_path, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "missing.npz: no such file" in res.output
    good = tmp_path / "g.npz"
    np.savez(good, image=np.zeros((2, 8, 8)), weights=np.ones((2, 8, 8)), psf=np.ones((3, 3)) / 9)
    res = run("train-prior", good, "--out", tmp_path / "p", "--field", "truth")
    assert res.exit_code == 2 and "no array 'truth'" in res.output
    res = run("simulate-images", tmp_path / "x.npz", "--mask", "left", "--n", 1)
    assert res.exit_code == 2 and "--mask" in res.output
