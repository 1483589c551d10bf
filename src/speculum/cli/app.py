"""Typer application: verbs follow the pipeline; the only code that prints.

speculum simulate --n 4096 --out sim/
speculum train sim/ --out run/            (add --resume after an interruption)
speculum reconstruct run/model.safetensors sim/ --out run/reconstructions.parquet
speculum report run/                       (report.html in the run folder)
speculum demo                              (all of the above, small and quick)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import typer

# defaults of `speculum train`, equal to TrainConfig's (tests/test_cli.py checks; kept here so --help imports no torch)
_TRAIN_DEFAULTS = {
    "epochs": 20,
    "batch_size": 64,
    "lr": 3e-3,
    "patience": 5,
    "checkpoint_every": 200,
    "precision": "auto",
}

app = typer.Typer(
    help="speculum: machine-learning methods for astronomical spectra.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@contextmanager
def _user_errors():
    """Turn expected user mistakes into one readable line and exit code 2."""
    from speculum.io import DataFormatError
    from speculum.train import CheckpointError

    try:
        yield
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        DataFormatError,
        CheckpointError,
        KeyError,
        ImportError,
    ) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
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
        "agn,star_blend,reddened,odd_lines,pair,artefact", help="Comma-separated anomaly classes to draw from."
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

    from speculum.pipeline import simulate_dataset
    from speculum.sim import SimConfig

    _logging(verbose)
    with _user_errors():
        classes = tuple(c.strip() for c in anomaly_classes.split(",") if c.strip())
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

    _logging(verbose)
    with _user_errors():
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
def train(
    data: Path = typer.Argument(..., help="Shard folder from `speculum simulate` or `speculum ingest`."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoint.pt, model.safetensors, history.json)."),
    preset: str = typer.Option(
        None, help="Model size: small (CPU demo; the default) or paper (Melchior et al. 2023). Fixed by a resumed run."
    ),
    n_latent: int = typer.Option(None, min=1, help="Latent dimension (default: the preset's). Fixed by a resumed run."),
    normalize: bool = typer.Option(
        False,
        "--normalize",
        help="Fit each spectrum's amplitude in the model (spender's normalize=True): also uses spectra whose "
        "5300-5850 A normalisation window is not observed (DESI z > 0.68, BOSS z > 0.78).",
    ),
    epochs: int = typer.Option(_TRAIN_DEFAULTS["epochs"], min=1),
    batch_size: int = typer.Option(
        _TRAIN_DEFAULTS["batch_size"], min=1, help="Global batch size (split across torchrun ranks)."
    ),
    lr: float = typer.Option(_TRAIN_DEFAULTS["lr"], help="Peak learning rate of the one-cycle schedule."),
    patience: int = typer.Option(
        _TRAIN_DEFAULTS["patience"], min=0, help="Early stopping patience in epochs (0: off)."
    ),
    checkpoint_every: int = typer.Option(
        _TRAIN_DEFAULTS["checkpoint_every"], min=1, help="Checkpoint every N optimizer steps (and every epoch)."
    ),
    precision: str = typer.Option(
        _TRAIN_DEFAULTS["precision"],
        help="fp32, bf16, or auto (bf16 autocast on CUDA GPUs that support it, else fp32).",
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    seed: int = typer.Option(0),
    limit: int = typer.Option(None, min=1, help="Use at most this many training spectra."),
    stream: bool = typer.Option(
        False, "--stream", help="Stream the training split from the shards (catalogues larger than memory)."
    ),
    shuffle_buffer: int = typer.Option(4096, min=1, help="Rows in the shuffle buffer of --stream."),
    no_resolution: bool = typer.Option(
        False, "--no-resolution", help="Ignore the data's DESI resolution matrices (by default they are applied)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a SPENDER autoencoder; resumable, and DDP under torchrun.

    \b
    Example: speculum train sim/ --out run/ --epochs 30
    Resume:  speculum train sim/ --out run/ --epochs 30 --resume
    Scale:   torchrun --nproc-per-node 4 -m speculum train sim/ --out run/
    Stream:  torchrun --nproc-per-node 4 -m speculum train big/ --out run/ --stream
    """
    import dataclasses

    import torch

    from speculum.io import SpectraSet
    from speculum.models.config import config_from_dict
    from speculum.pipeline import PRESETS, train_autoencoder
    from speculum.train import TrainConfig
    from speculum.train.trainer import load_checkpoint

    _logging(verbose)
    with _user_errors():
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"--preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        _init_distributed()
        mcfg = None
        inst = SpectraSet.open(data).instrument.name
        if resume and (out / "checkpoint.pt").exists():
            # a resumed run keeps its architecture: explicit --preset/--n-latent/--normalize must agree with it
            saved = config_from_dict(load_checkpoint(out / "checkpoint.pt")["metadata"]["model_config"])
            asked = PRESETS[preset](inst) if preset else saved
            asked = dataclasses.replace(
                asked, n_latent=n_latent or saved.n_latent, normalize=normalize or saved.normalize
            )
            if asked != saved:
                raise ValueError(
                    f"{out / 'checkpoint.pt'}: --preset/--n-latent/--normalize differ from the resumed run's model "
                    f"(n_latent {saved.n_latent}, normalize {saved.normalize}); a resumed run keeps its "
                    "architecture: omit them"
                )
        else:
            mcfg = PRESETS[preset or "small"](inst)
            mcfg = dataclasses.replace(mcfg, n_latent=n_latent or mcfg.n_latent, normalize=normalize)
        tcfg = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            patience=patience,
            checkpoint_every=checkpoint_every,
            precision=precision,
            seed=seed,
        )
        summary = train_autoencoder(
            data,
            out,
            mcfg,
            tcfg,
            resume=resume,
            device=device,
            progress=sys.stderr.isatty() or verbose,
            limit=limit,
            stream=stream,
            shuffle_buffer=shuffle_buffer,
            use_resolution=not no_resolution,
        )
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        typer.echo(
            f"trained on {summary['n_train']} spectra for {summary['epochs_run']} epochs "
            f"in {summary['train_seconds']} s; "
            f"best validation median reduced chi2 {summary['best_val_chi2']:.3f}; model: {summary['model']}"
        )
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def _init_distributed() -> None:
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch.distributed.init_process_group(backend)


@app.command()
def reconstruct(
    model: Path = typer.Argument(..., help="model.safetensors from `speculum train`."),
    data: Path = typer.Argument(..., help="Shard folder to encode and reconstruct."),
    out: Path = typer.Option(
        ..., "--out", "-o", help=".parquet or .fits file: object_id, z, latents, reduced_chi2, ..."
    ),
    split: str = typer.Option(None, help="Only this split: train, val or test."),
    spectra: Path = typer.Option(
        None,
        "--spectra",
        help="Also write the reconstructed spectra (wavelength, flux, model, ivar, mask, restframe model) "
        "to this FITS file, readable by specutils. Held in memory: use with a split or a small data set.",
    ),
    batch_size: int = typer.Option(256, min=1),
    device: str = typer.Option("auto"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Encode spectra to latents and score their reconstructions (streamed, bounded memory).

    \b
    Example: speculum reconstruct run/model.safetensors sim/ --out run/reconstructions.parquet
    Example: speculum reconstruct run/model.safetensors sdss/ --out rec.fits --spectra rec-spectra.fits
    """
    import numpy as np

    from speculum.pipeline import reconstruct as run

    _logging(verbose)
    with _user_errors():
        res = run(
            model, data, out, split=split, batch_size=batch_size, device=device, progress=True, spectra_out=spectra
        )
    typer.echo(
        f"reconstructed {len(res['object_id'])} spectra; median reduced chi2 {np.nanmedian(res['reduced_chi2']):.3f}; "
        f"wrote {out}"
    )


@app.command()
def report(
    run: Path = typer.Argument(..., help="Run folder of `speculum train`."),
    data: Path = typer.Argument(None, help="Shard folder (default: the run's training data, from its history)."),
    reconstructions: Path = typer.Argument(
        None,
        help="Table of `speculum reconstruct` (.parquet or .fits; default RUN/reconstructions.parquet, "
        "made from the test split when absent).",
    ),
    out: Path = typer.Option(None, "--out", "-o", help="HTML file to write (default RUN/report.html)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Write a self-contained HTML report (training curves, reconstructions, chi2, latents).

    \b
    Example: speculum report run/
    Example: speculum report run/ sim/ run/reconstructions.fits --out run/report.html
    """
    from speculum.pipeline import make_report

    _logging(verbose)
    with _user_errors():
        path = make_report(run, out, data=data, reconstructions=reconstructions, progress=True)
    typer.echo(f"report: {path}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Folder for data, run, reconstructions and report.html."),
    n: int = typer.Option(8192, min=256, help="Simulated SDSS spectra (80/10/10 % train/val/test by id hash)."),
    epochs: int = typer.Option(16, min=1, help="Training epochs."),
    seed: int = typer.Option(0, help="Random seed."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """The main job on built-in data: simulate -> train (small model) -> reconstruct -> report.

    Takes about 4 minutes on 2 CPU cores with the defaults (see the README). Re-running resumes.

    \b
    Example: speculum demo --out demo-output
    """
    import numpy as np
    from tqdm import tqdm

    from speculum.pipeline import make_report, reconstruct, simulate_dataset, train_autoencoder
    from speculum.sim import SimConfig
    from speculum.train import TrainConfig

    _logging(verbose)
    t0 = time.perf_counter()
    with _user_errors():
        data, run = out / "data", out / "run"
        cfg = SimConfig(instrument="SDSS", anomaly_rate=0.05)
        with tqdm(total=n, desc="simulating", unit="spectra") as bar:
            simulate_dataset(data, n, cfg, seed=seed, progress=lambda k: bar.update(k - bar.n))
        tcfg = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, patience=0, seed=seed)  # the demo's settings
        resume = (run / "checkpoint.pt").exists()
        summary = train_autoencoder(data, run, None, tcfg, resume=resume, progress=True)
        typer.echo(f"trained {summary['epochs_run']} epochs in {summary['train_seconds']} s")
        rec_path = run / "reconstructions.parquet"
        rec = reconstruct(run / "model.safetensors", data, rec_path, split="test", progress=True)
        html = make_report(run, out / "report.html", data=data, reconstructions=rec_path)
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
        "wall_s": round(time.perf_counter() - t0, 1),
        "report": str(html),
    }
    from speculum.io import atomic_write_text

    atomic_write_text(out / "summary.json", json.dumps(result, indent=2))
    typer.echo(json.dumps(result, indent=2))
    typer.echo(f"open {html} in a browser")


def main() -> None:
    """Entry point of the ``speculum`` script."""
    app()
