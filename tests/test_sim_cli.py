import json

import torch
from typer.testing import CliRunner

from speculum.cli import app
from speculum.instruments import SDSS
from speculum.sim import EMISSION_LINES, toy_galaxy_spectra


def test_toy_lines_land_at_redshifted_wavelength():
    data = toy_galaxy_spectra(20, "SDSS", snr=1e6, seed=3)
    halpha = list(EMISSION_LINES).index("Halpha")
    for i in range(20):
        amp = float(data.line_amplitudes[i, halpha])
        pix = SDSS.pixel_of(EMISSION_LINES["Halpha"] * (1 + float(data.z[i])))
        if amp > 0.5 and data.weights[i, pix] > 0:
            window = data.truth[i, pix - 8 : pix + 9]
            assert abs(int(window.argmax()) - 8) <= 1


def test_toy_noise_matches_requested_snr():
    data = toy_galaxy_spectra(50, "SDSS", snr=10.0, seed=0, dtype=torch.float64)
    good = data.weights > 0
    resid = (data.flux - data.truth)[good] * data.weights[good].sqrt()
    assert abs(resid.std().item() - 1) < 0.01


def test_cli_info_and_demo(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["info"])
    assert res.exit_code == 0 and "3921" in res.output
    res = runner.invoke(app, ["demo", "--out", str(tmp_path), "--n-train", "64", "--n-test", "8", "--epochs", "1"])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["median_reduced_chi2_test"] > 0 and (tmp_path / "reconstructions.png").stat().st_size > 10_000


def test_cli_bad_option_is_readable():
    res = CliRunner().invoke(app, ["demo", "--epochs", "0"])
    assert res.exit_code != 0 and "Traceback" not in res.output
