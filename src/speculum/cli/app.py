"""Typer application, the only code that prints: one verb group per method, plus the short verbs.

speculum simulate --n 4096 --out sim/
speculum ingest spectra/ --out data/
speculum train sim/ --out run/            (add --resume after an interruption; = speculum autoencode train)
speculum reconstruct run/model.safetensors sim/ --out run/reconstructions.parquet
speculum report run/                       (report.html in the run folder)
speculum demo                              (all of the above, small and quick)
speculum autoencode --help                 (the autoencoder's verb group)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from speculum.cli import autoencode, diagnostics, outliers
from speculum.cli._common import setup_logging, user_errors

app = typer.Typer(
    help="speculum: machine-learning methods for astronomical spectra.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.command()
def info() -> None:
    """Print the package version, the instruments and the compute device."""
    import torch

    from speculum import __version__
    from speculum.instruments import BOSS, DESI, SDSS

    typer.echo(f"speculum {__version__}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    typer.echo(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'}")
    for inst in (SDSS, BOSS, DESI):
        w = inst.wave_obs
        typer.echo(f"  {inst.name:5s} {inst.n_pixels:5d} px  {w[0]:8.2f} - {w[-1]:8.2f} A  z in {inst.z_range}")


@app.command()
def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (Parquet shards + manifest.json)."),
    n: int = typer.Option(4096, "--n", min=1, help="Number of spectra."),
    instrument: str = typer.Option("SDSS", help="SDSS, BOSS or DESI."),
    anomaly_rate: float = typer.Option(0.05, min=0.0, max=1.0, help="Fraction of labelled anomalies."),
    anomaly_classes: str = typer.Option(
        None, help="Comma-separated anomaly classes to draw from (default: all registered in speculum.sim)."
    ),
    redshift: str = typer.Option("sdss-mgs", help="Redshift distribution: sdss-mgs or uniform."),
    z_min: float = typer.Option(0.01, help="Smallest redshift."),
    z_max: float = typer.Option(None, help="Largest redshift (default: the instrument's limit)."),
    snr: float = typer.Option(
        10.0,
        min=0.1,
        help="S/N of a median-brightness galaxy at its typical level against the median sky; fainter galaxies "
        "are sky-dominated.",
    ),
    seed: int = typer.Option(0, help="Data-set seed: same seed, same spectra."),
    shard_size: int = typer.Option(4096, min=1, help="Spectra per Parquet shard."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Simulate galaxy spectra with labelled anomalies and known truth.

    Re-running the same command resumes: finished shards are verified and kept.

    \b
    Example: speculum simulate --n 10000 --instrument SDSS --anomaly-rate 0.05 --out sim/
    """
    from tqdm import tqdm

    from speculum.autoencode import simulate_dataset
    from speculum.sim import SimConfig

    setup_logging(verbose)
    with user_errors():
        from speculum.sim import ANOMALY_CLASSES

        classes = tuple(c.strip() for c in (anomaly_classes or ",".join(ANOMALY_CLASSES)).split(",") if c.strip())
        cfg = SimConfig(
            instrument=instrument.upper(),
            anomaly_rate=anomaly_rate,
            anomaly_classes=classes,
            redshift=redshift,
            z_min=z_min,
            z_max=z_max,
            snr_median=snr,
        )
        t0 = time.perf_counter()
        with tqdm(total=n, desc="simulating", unit="spectra") as bar:
            simulate_dataset(out, n, cfg, seed=seed, shard_size=shard_size, progress=lambda k: bar.update(k - bar.n))
    dt = time.perf_counter() - t0
    typer.echo(f"wrote {n} {cfg.instrument} spectra to {out} in {dt:.1f} s ({n / dt:,.0f} spectra/s)")


@app.command()
def ingest(
    inputs: list[str] = typer.Argument(..., help="Survey files, folders (searched recursively) or glob patterns."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (Parquet shards + manifest.json + rejects.parquet)."
    ),
    instrument: str = typer.Option(
        None, help="Grid for SDSS/BOSS files: SDSS or BOSS (default BOSS); DESI is automatic."
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="List malformed files/objects in rejects.parquet and go on."
    ),
    workers: int = typer.Option(1, min=1, help="Processes reading files in parallel."),
    files_per_shard: int = typer.Option(256, min=1, help="At most this many input files per Parquet shard."),
    shard_mb: int = typer.Option(
        256, min=1, help="At most this many MB of decoded spectra per shard (bounds each worker's memory)."
    ),
    rows_per_shard: int = typer.Option(None, min=1, help="At most this many spectra per shard."),
    spec_class: list[str] = typer.Option(None, "--class", help="Keep only this pipeline class (repeatable)."),
    z_min: float = typer.Option(None, help="Keep objects with z >= this."),
    z_max: float = typer.Option(None, help="Keep objects with z <= this."),
    catalog: Path = typer.Option(None, help="Table (FITS/CSV/Parquet) of objects to keep, with optional Z."),
    fiberstatus_ok: int = typer.Option(0, help="DESI COADD_FIBERSTATUS bits to accept."),
    zwarn_ok: int = typer.Option(0, help="DESI ZWARN bits to accept (others: z null)."),
    no_resolution: bool = typer.Option(False, "--no-resolution", help="Drop DESI resolution matrices."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Read SDSS/BOSS spec files or DESI coadds (+ redrock) into training shards.

    Re-running the same command resumes (finished shards are verified and kept).

    \b
    Example: speculum ingest ../shared/data/sdss_boss --out sdss/ --skip-bad
    Example: speculum ingest 'desi/coadd-*.fits' --out desi/ --class GALAXY --z-max 0.6 --workers 4
    """
    from tqdm import tqdm

    from speculum.io import IngestConfig
    from speculum.io import ingest as run

    setup_logging(verbose)
    with user_errors():
        cfg = IngestConfig(
            instrument=instrument.upper() if instrument else None,
            files_per_shard=files_per_shard,
            shard_bytes=shard_mb * 2**20,
            rows_per_shard=rows_per_shard,
            skip_bad=skip_bad,
            keep_resolution=not no_resolution,
            fiberstatus_ok=fiberstatus_ok,
            zwarn_ok=zwarn_ok,
            classes=tuple(spec_class) if spec_class else None,
            z_min=z_min,
            z_max=z_max,
            catalog=str(catalog) if catalog else None,
        )
        t0 = time.perf_counter()
        with tqdm(desc="ingesting", unit="files") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            summary = run(inputs, out, cfg, workers=workers, progress=progress)
    dt = time.perf_counter() - t0
    typer.echo(
        f"ingested {summary['n_spectra']} {summary['instrument']} spectra from {summary['n_files']} files "
        f"in {dt:.1f} s into {out}; rejected {summary['n_rejected']}"
        + (f" (see {out / 'rejects.parquet'})" if summary["n_rejected"] else "")
        + f"; not selected {summary['n_not_selected']}; without redshift {summary['n_without_redshift']}"
    )


@app.command()
def report(
    run: Path = typer.Argument(..., help="A run folder (of `speculum train`, ...)."),
    data: Path = typer.Argument(None, help="Shard folder (default: the run's own, from its history)."),
    reconstructions: Path = typer.Argument(
        None, help="Autoencoder: table of `speculum reconstruct` (default RUN/reconstructions.parquet)."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="HTML file to write (default RUN/report.html)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write one self-contained HTML report with the sections of every method the run folder holds.

    \b
    Example: speculum report run/
    Example: speculum report run/ sim/ run/reconstructions.fits --out run/report.html
    """
    from speculum.report import build_report

    setup_logging(verbose)
    with user_errors():
        path = build_report(run, out, data=data, reconstructions=reconstructions, progress=True)
    typer.echo(f"report: {path}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Folder for data, run, reconstructions and report.html."),
    n: int = typer.Option(8192, min=256, help="Simulated SDSS spectra (80/10/10 % train/val/test by id hash)."),
    epochs: int = typer.Option(16, min=1, help="Training epochs."),
    seed: int = typer.Option(0, help="Random seed."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """The main job on built-in data: simulate -> train (small model) -> reconstruct -> outliers -> report.

    The README gives its run time on 2 CPU cores with the defaults. Re-running resumes.

    \b
    Example: speculum demo --out demo-output
    """
    import numpy as np
    from tqdm import tqdm

    from speculum.autoencode import reconstruct, simulate_dataset
    from speculum.autoencode import train as train_autoencoder
    from speculum.io import atomic_write_text
    from speculum.outliers import OutlierModel, auc_table, fit_flow, redshift_invariance, score
    from speculum.outliers.reporting import CATALOGUE_NAME, INVARIANCE_NAME
    from speculum.report import build_report
    from speculum.sim import SimConfig
    from speculum.train import CHECKPOINT_NAME, TrainConfig

    setup_logging(verbose)
    t0 = time.perf_counter()
    with user_errors():
        data, run = out / "data", out / "run"
        cfg = SimConfig(instrument="SDSS", anomaly_rate=0.05)
        with tqdm(total=n, desc="simulating", unit="spectra") as bar:
            simulate_dataset(data, n, cfg, seed=seed, progress=lambda k: bar.update(k - bar.n))
        tcfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, patience=0, seed=seed)  # the demo's settings
        resume = (run / CHECKPOINT_NAME).exists()
        summary = train_autoencoder(data, run, None, tcfg, resume=resume, progress=True)
        typer.echo(f"trained {summary['epochs_run']} epochs in {summary['train_seconds']} s")
        rec_path = run / "reconstructions.parquet"
        rec = reconstruct(run / "model.safetensors", data, rec_path, split="test", progress=True)
        # the outlier method on the same run: a flow over the latents, a catalogue, the invariance figures
        fcfg = TrainConfig(epochs=60, batch_size=256, lr=1e-3, patience=10, precision="fp32", seed=seed)
        flow = fit_flow(run, data, train_config=fcfg, resume=(run / "flow" / CHECKPOINT_NAME).exists(), progress=True)
        cat = score(data, run, run / CATALOGUE_NAME, split="test", progress=True)
        om = OutlierModel.load(run, "cpu")
        inv = redshift_invariance(om.model, om.flow, None, n=512, seed=seed + 10_000)
        atomic_write_text(run / INVARIANCE_NAME, json.dumps({"fiducial loss": inv}, indent=1))
        html = build_report(run, out / "report.html", data=data, reconstructions=rec_path)
    aucs = auc_table(cat)
    chi2 = np.asarray(rec["reduced_chi2"])
    normal = np.asarray(rec.get("truth_class", np.array(["normal"] * len(chi2)))) == "normal"
    result = {
        "n_spectra": n,
        "n_train": summary["n_train"],
        "n_test": len(chi2),
        "epochs": summary["epochs_run"],
        "median_reduced_chi2_test": round(float(np.nanmedian(chi2)), 4),
        "median_reduced_chi2_test_normal": round(float(np.nanmedian(chi2[normal])), 4),
        "median_reduced_chi2_test_anomalies": round(float(np.nanmedian(chi2[~normal])), 4) if (~normal).any() else None,
        "flow_best_val_nll": round(float(flow["best_val_nll"]), 4),
        "auc_flow_test": next((round(r["AUC -log p (flow)"], 4) for r in aucs if r["class"] == "all anomalies"), None),
        "auc_chi2_test": next((round(r["AUC reduced chi2"], 4) for r in aucs if r["class"] == "all anomalies"), None),
        "latent_scatter_across_z": round(inv["latent_scatter"], 4),
        "rank_spearman_across_z": round(inv["rank_spearman_across_z"], 4),
        "wall_s": round(time.perf_counter() - t0, 1),
        "report": str(html),
    }
    atomic_write_text(out / "summary.json", json.dumps(result, indent=2))
    typer.echo(json.dumps(result, indent=2))
    typer.echo(f"open {html} in a browser")


app.add_typer(autoencode.app, name="autoencode")
app.add_typer(outliers.app, name="outliers")
app.add_typer(diagnostics.app, name="diagnostics")
# the short verbs users know stay top-level aliases of the autoencoder's
app.command("train")(autoencode.train)
app.command("reconstruct")(autoencode.reconstruct)
app.command("score")(outliers.score)


def main() -> None:
    """Entry point of the ``speculum`` script."""
    app()
