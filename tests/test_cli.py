"""The command line: verbs, help with examples, readable errors, the pipeline end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from speculum.cli import app

runner = CliRunner()


@pytest.mark.parametrize("verb", ["simulate", "train", "reconstruct", "report", "demo"])
def test_help_has_examples(verb):
    res = runner.invoke(app, [verb, "--help"])
    assert res.exit_code == 0 and "Example" in res.output


def test_info():
    res = runner.invoke(app, ["info"])
    assert res.exit_code == 0 and "3921" in res.output


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "/nonexistent/data", "--out", "/tmp/x"], "/nonexistent/data: no such data folder"),
        (["simulate", "--out", "/tmp/x", "--anomaly-classes", "ufo"], "anomaly_classes"),
        (["simulate", "--out", "/tmp/x", "--instrument", "HST"], "HST"),
        (["reconstruct", "/nonexistent/model.safetensors", "/tmp", "--out", "/tmp/r.parquet"], "model.safetensors"),
        (["demo", "--epochs", "0"], "epochs"),
    ],
)
def test_user_errors_are_one_line(args, needle):
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_pipeline_end_to_end(tmp_path):
    sim, run = tmp_path / "sim", tmp_path / "run"
    res = runner.invoke(app, ["simulate", "--n", "600", "--anomaly-rate", "0.2", "--out", str(sim)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", str(sim), "--out", str(run), "--epochs", "1", "--limit", "128"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", str(sim), "--out", str(run), "--epochs", "1"])
    assert res.exit_code == 2 and "--resume" in res.output  # refuses to overwrite a run
    rec = run / "rec.parquet"
    res = runner.invoke(app, ["reconstruct", str(run / "model.safetensors"), str(sim), "--out", str(rec)])
    assert res.exit_code == 0, res.output
    import pyarrow.parquet as pq

    from speculum.io import SpectraSet, prepare_spectra

    usable = len(prepare_spectra(SpectraSet.open(sim).read(["z", "flux", "ivar", "mask"]), "SDSS").z)
    table = pq.read_table(rec).to_pydict()
    assert usable >= 570 and len(table["object_id"]) == usable and len(table["latents"][0]) == 8
    assert np.all(np.isfinite(table["reduced_chi2"]))
    res = runner.invoke(app, ["outliers", "fit-flow", str(run), "--epochs", "3", "--transforms", "2"])
    assert res.exit_code == 0 and "flow fitted to" in res.output, res.output
    cat = tmp_path / "cat.parquet"
    res = runner.invoke(app, ["score", str(sim), "--model", str(run), "--out", str(cat)])
    assert res.exit_code == 0 and "least probable:" in res.output, res.output
    scored = pq.read_table(cat).to_pydict()
    assert len(scored["object_id"]) == 600 and sum(r > 0 for r in scored["rank"]) == usable
    assert {"z", "latent_0", "latent_7", "log_p", "reduced_chi2", "rank", "flags"} <= set(scored)
    res = runner.invoke(app, ["score", str(sim), "--model", str(sim), "--out", str(cat)])
    assert res.exit_code == 2 and "no model here" in res.output
    res = runner.invoke(app, ["report", str(run), str(sim), str(rec), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "Latent space" in html

    # FITS round trip: the report reads a FITS table, and needs only the run folder
    fits_rec = run / "reconstructions.fits"
    res = runner.invoke(app, ["reconstruct", str(run / "model.safetensors"), str(sim), "--out", str(fits_rec)])
    assert res.exit_code == 0, res.output
    from speculum.io import read_results

    back, ref = read_results(fits_rec), read_results(rec)
    assert list(back["object_id"]) == list(ref["object_id"])
    np.testing.assert_array_equal(back["latents"], ref["latents"])
    np.testing.assert_array_equal(back["reduced_chi2"], ref["reduced_chi2"])
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and str(sim.resolve()) in html

    # a resumed run keeps its architecture: a different --n-latent is refused, not ignored
    res = runner.invoke(app, ["train", str(sim), "--out", str(run), "--epochs", "1", "--limit", "128", "--resume",
                              "--n-latent", "5"])  # fmt: skip
    assert res.exit_code == 2 and "--n-latent" in res.output, res.output


def test_demo_small(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    assert summary["n_test"] > 20 and summary["median_reduced_chi2_test"] > 0.5
    assert (demo_dir / "report.html").stat().st_size > 100_000
    html = (demo_dir / "report.html").read_text()
    for title in ("Outliers: log p", "Least probable objects", "Anomaly detection", "Redshift invariance"):
        assert title in html, title
    assert 0 <= summary["auc_flow_test"] <= 1 and 0 <= summary["latent_scatter_across_z"]
    assert (demo_dir / "run" / "catalogue.parquet").exists() and (demo_dir / "run" / "flow.safetensors").exists()
    # re-running resumes: the finished run is reused, not retrained
    res = runner.invoke(app, ["demo", "--out", str(demo_dir), "--n", "512", "--epochs", "1"])
    assert res.exit_code == 0, res.output


def test_missing_optional_dependency_is_one_line(monkeypatch, tmp_path):
    import speculum._optional as optional

    real = optional.import_module

    def fake(name, *args, **kwargs):
        if name.startswith("astropy"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(optional, "import_module", fake)
    f = tmp_path / "spec.fits"
    f.write_bytes(b"x")
    res = runner.invoke(app, ["ingest", str(f), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "pip install 'speculum[surveys]'" in res.output, (
        res.exit_code,
        res.output,
        res.exception,
    )


def test_ci_mode_fails_on_skipped_data_tests(tmp_path):
    """`.ci/run` sets SPECULUM_NO_SKIP=1: a data test that skips there must fail the run."""
    import os
    import subprocess
    import sys

    node = "tests/test_instruments.py"
    root = Path(__file__).resolve().parents[1]
    base = {**os.environ, "SPECULUM_SHARED_DATA": str(tmp_path / "absent")}
    cmd = [sys.executable, "-m", "pytest", node, "-q", "-p", "no:cacheprovider", "-k", "real"]
    lenient = subprocess.run(cmd, cwd=root, env={**base, "SPECULUM_NO_SKIP": "0"}, capture_output=True, text=True)
    strict = subprocess.run(cmd, cwd=root, env={**base, "SPECULUM_NO_SKIP": "1"}, capture_output=True, text=True)
    assert lenient.returncode == 0 and "skipped" in lenient.stdout, lenient.stdout[-2000:]
    assert strict.returncode == 1, strict.stdout[-2000:]
    assert "SPECULUM_NO_SKIP" in strict.stdout and "real survey files not available" in strict.stdout
    # a module that skips at collection (pytest.importorskip of a missing package) fails CI too
    mod = tmp_path / "test_needs_missing_package.py"
    mod.write_text("import pytest\npytest.importorskip('no_such_package_xyz', reason='missing package')\n"
                   "def test_x():\n    pass\n")  # fmt: skip
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest", str(mod)]
    env = {**base, "SPECULUM_NO_SKIP": "1", "PYTHONPATH": str(root / "tests")}  # our conftest as a plugin
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "missing package" in res.stdout, res.stdout[-2000:]


def test_train_defaults_equal_train_config():
    """The CLI's `train` defaults are TrainConfig's (one source of truth for a user's lr, epochs, ...)."""
    import dataclasses

    from speculum.cli._common import TRAIN_DEFAULTS as _TRAIN_DEFAULTS
    from speculum.train import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert {k: defaults[k] for k in _TRAIN_DEFAULTS} == _TRAIN_DEFAULTS
