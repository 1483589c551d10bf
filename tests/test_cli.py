"""The command line: verbs, help with examples, readable errors, the pipeline end to end."""

import json

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

    table = pq.read_table(rec).to_pydict()
    assert len(table["object_id"]) == 600 and len(table["latents"][0]) == 8
    assert np.all(np.isfinite(table["reduced_chi2"]))
    res = runner.invoke(app, ["report", str(run), str(sim), str(rec), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "Latent space" in html


def test_demo_small(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    assert summary["n_test"] > 20 and summary["median_reduced_chi2_test"] > 0.5
    assert (demo_dir / "report.html").stat().st_size > 100_000
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
