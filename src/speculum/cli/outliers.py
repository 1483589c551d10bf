"""`speculum outliers ...`: latent-space outlier detection (`score` is also top-level)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from speculum.cli._common import TRAIN_DEFAULTS, setup_logging, user_errors

app = typer.Typer(
    help="Outlier detection: redshift-invariant latents, a flow over them, log p catalogues.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.command()
def train(
    data: Path = typer.Argument(..., help="Shard folder from `speculum simulate` or `speculum ingest`."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder."),
    init: Path = typer.Option(
        None, help="Continue from this fiducial-loss model.safetensors (`speculum train` output), as the papers do."
    ),
    form: str = typer.Option(
        "published", help="Scaling of the added losses: published, scale_invariant or running (see the docs)."
    ),
    dz: float = typer.Option(0.5, min=0.0, help="Augmented redshifts drawn within z +- dz."),
    k_cycle: int = typer.Option(100, min=1, help="Epochs of one annealing cycle of the similarity slope k."),
    off_epochs: int = typer.Option(10, min=0, help="Final epochs with the similarity loss off."),
    epochs: int = typer.Option(TRAIN_DEFAULTS["epochs"], min=1),
    batch_size: int = typer.Option(TRAIN_DEFAULTS["batch_size"], min=2),
    lr: float = typer.Option(TRAIN_DEFAULTS["lr"]),
    patience: int = typer.Option(TRAIN_DEFAULTS["patience"], min=0),
    precision: str = typer.Option(TRAIN_DEFAULTS["precision"], help="fp32, bf16 or auto."),
    device: str = typer.Option("auto"),
    seed: int = typer.Option(0),
    limit: int = typer.Option(None, min=1, help="Use at most this many training spectra."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train the autoencoder with redshift augmentation and the similarity and consistency losses.

    \b
    Example: speculum train sim/ --out fid/ && speculum outliers train sim/ --out run/ --init fid/model.safetensors
    """
    from speculum._runtime import init_distributed, shutdown_distributed
    from speculum.outliers import InvarianceConfig
    from speculum.outliers import train as run
    from speculum.train import TrainConfig

    setup_logging(verbose)
    with user_errors():
        init_distributed()
        try:
            inv = InvarianceConfig(form=form, dz=dz, k_cycle=k_cycle, off_epochs=off_epochs)
            tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, precision=precision,
                               seed=seed)  # fmt: skip
            summary = run(data, out, inv, init=init, train_config=tcfg, resume=resume, device=device,
                          progress=sys.stderr.isatty() or verbose, limit=limit)  # fmt: skip
        finally:
            shutdown_distributed()
    typer.echo(
        f"trained on {summary['n_train']} spectra for {summary['epochs_run']} epochs in {summary['train_seconds']} s; "
        f"best validation median reduced chi2 {summary['best_val_chi2']:.3f}; next: speculum outliers fit-flow {out}"
    )


@app.command("fit-flow")
def fit_flow(
    run: Path = typer.Argument(..., help="Run folder with model.safetensors (`speculum train` or `outliers train`)."),
    data: Path = typer.Argument(None, help="Shard folder (default: the run's training data)."),
    kind: str = typer.Option("maf", help="maf (masked autoregressive, as the reference) or nsf (neural spline)."),
    transforms: int = typer.Option(5, min=1),
    hidden: int = typer.Option(50, min=1),
    epochs: int = typer.Option(100, min=1),
    batch_size: int = typer.Option(256, min=2),
    lr: float = typer.Option(1e-3),
    patience: int = typer.Option(10, min=0),
    limit: int = typer.Option(None, min=10, help="Fit to at most this many training spectra."),
    resume: bool = typer.Option(False, "--resume"),
    device: str = typer.Option("auto"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Fit a normalizing flow to the latents of a run's autoencoder (writes RUN/flow.safetensors).

    \b
    Example: speculum outliers fit-flow run/
    """
    from speculum.models.flow import FlowConfig
    from speculum.outliers import fit_flow as run_fit
    from speculum.train import TrainConfig

    setup_logging(verbose)
    with user_errors():
        cfg = FlowConfig(features=1, kind=kind, transforms=transforms, hidden=hidden)
        tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, precision="fp32")
        s = run_fit(run, data, cfg, tcfg, resume=resume, progress=sys.stderr.isatty() or verbose, device=device,
                    limit=limit)  # fmt: skip
    typer.echo(f"flow fitted to {s['n_latents']} latents; best held-out -log p {s['best_val_nll']:.4f}; {s['flow']}")


def score(
    data: Path = typer.Argument(..., help="Shard folder (`speculum ingest` or `speculum simulate` output)."),
    model: Path = typer.Option(..., "--model", "-m", help="Run folder with model.safetensors and flow.safetensors."),
    out: Path = typer.Option(..., "--out", "-o", help="Catalogue: .parquet, .fits or .fits.gz."),
    split: str = typer.Option(None, help="Only this split: train, val or test."),
    scheduler: str = typer.Option(
        None, help="Dask scheduler address (tcp://host:8786): one task per shard on the cluster."
    ),
    batch_size: int = typer.Option(256, min=1),
    device: str = typer.Option("auto"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Score every object: latents, log p under the flow, reduced chi2, rank (1 = least probable), flags.

    Resumable: an interrupted run keeps the shards it finished (OUT's .parts folder).

    \b
    Example: speculum score sdss/ --model run/ --out catalogue.parquet
    Cluster: speculum score survey/ --model run/ --out cat.parquet --scheduler tcp://scheduler:8786
    """
    import numpy as np

    from speculum.outliers import score as run

    setup_logging(verbose)
    with user_errors():
        cat = run(data, model, out, split=split, batch_size=batch_size, device=device, progress=sys.stderr.isatty(),
                  scheduler=scheduler)  # fmt: skip
    ok = cat["rank"] > 0
    typer.echo(f"scored {int(ok.sum())} of {len(ok)} objects; wrote {out}")
    if ok.any():
        order = np.argsort(cat["rank"][ok])[:5]
        ids, lp = np.asarray(cat["object_id"])[ok][order], cat["log_p"][ok][order]
        typer.echo("least probable: " + ", ".join(f"{i} ({p:.1f})" for i, p in zip(ids, lp, strict=True)))


app.command()(score)


@app.command()
def invariance(
    run: Path = typer.Argument(..., help="Run folder with model.safetensors (and flow.safetensors for ranks)."),
    n: int = typer.Option(512, min=10, help="Simulated galaxies, each observed at every redshift."),
    z: str = typer.Option(None, help="Comma-separated redshifts (default: quantiles of the simulator's)."),
    seed: int = typer.Option(12345),
    device: str = typer.Option("auto"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """How redshift-invariant are the latents and the outlier ranks? (simulated galaxies at several z)

    \b
    Example: speculum outliers invariance run/
    """
    from speculum._runtime import pick_device
    from speculum.outliers import redshift_invariance
    from speculum.train import load_model

    setup_logging(verbose)
    with user_errors():
        model = load_model(run / "model.safetensors", map_location=pick_device(device))
        flow = None
        if (run / "flow.safetensors").exists():
            from speculum.outliers import OutlierModel

            flow = OutlierModel.load(run, device).flow
        zs = tuple(float(v) for v in z.split(",")) if z else None
        res = redshift_invariance(model, flow, z_values=zs, n=n, seed=seed)
    typer.echo(json.dumps(res, indent=1))


@app.command("simulate-stars")
def simulate_stars(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (Parquet shards + manifest.json)."),
    n: int = typer.Option(4096, "--n", min=1, help="Number of stars."),
    instrument: str = typer.Option("SDSS", help="SDSS, BOSS or DESI."),
    source: str = typer.Option(
        "templates", help="Templates: templates (shipped), mastar or miles (../shared/data/stars/...; see --library)."
    ),
    library: Path = typer.Option(None, help="Folder of the mastar/miles files (default: ../shared/data/stars/...)."),
    star_fraction: float = typer.Option(
        None, min=0.0, max=1.0, help="Write a mix instead: galaxies with this fraction of stars, all labelled GALAXY."
    ),
    seed: int = typer.Option(0, help="Data-set seed: same seed, same spectra."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Simulate stars observed through the instrument (z <= 0.005): the star model's training data.

    \b
    Example: speculum outliers simulate-stars --n 8192 --out stars/
    Mix:     speculum outliers simulate-stars --n 4096 --star-fraction 0.05 --out mix/
    """
    from speculum.outliers.stars import simulate_star_dataset, simulate_star_mix
    from speculum.sim import SimConfig
    from speculum.sim.stars import StarConfig

    setup_logging(verbose)
    with user_errors():
        gal = SimConfig(instrument=instrument.upper())
        cfg = StarConfig.matching(gal, source=source, library=None if library is None else str(library))
        if star_fraction is None:
            simulate_star_dataset(out, n, config=cfg, seed=seed)
            what = f"{n} stars ({source})"
        else:
            simulate_star_mix(out, n, star_fraction, gal, cfg, seed=seed)
            what = f"{n} spectra, {int(round(n * star_fraction))} of them stars ({source}), all labelled GALAXY"
    typer.echo(f"wrote {what} to {out}")


@app.command()
def classify(
    data: Path = typer.Argument(..., help="Shard folder (`speculum ingest` or `speculum simulate` output)."),
    galaxy: Path = typer.Option(..., "--galaxy", "-g", help="Galaxy run folder (model.safetensors + flow)."),
    star: Path = typer.Option(..., "--star", "-s", help="Star run folder (model.safetensors + flow)."),
    out: Path = typer.Option(..., "--out", "-o", help="Catalogue: .parquet, .fits or .fits.gz."),
    threshold: float = typer.Option(
        None, help="Flag galaxy-labelled objects with log p_star - log p_galaxy above this (nats; default 10)."
    ),
    split: str = typer.Option(None, help="Only this split: train, val or test."),
    batch_size: int = typer.Option(256, min=1),
    device: str = typer.Option("auto"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Star or galaxy? log p under a star model minus log p under the galaxy model, for every object.

    Objects labelled as galaxies (or unlabelled) that are far more probable under the star
    model get star_flag. Train the star model with `speculum outliers simulate-stars` and
    `speculum train` + `speculum outliers fit-flow`.

    \b
    Example: speculum outliers classify sdss/ --galaxy run/ --star star_run/ --out cat.parquet
    """
    import numpy as np

    from speculum.outliers.stars import DEFAULT_THRESHOLD, star_flag_quality
    from speculum.outliers.stars import classify as run

    setup_logging(verbose)
    with user_errors():
        thr = DEFAULT_THRESHOLD if threshold is None else threshold
        cat = run(data, galaxy, star, out, thr, split=split, batch_size=batch_size, device=device, progress=True)
    ok = np.isfinite(cat["delta_log_p"])
    typer.echo(f"classified {int(ok.sum())} of {len(ok)} objects; {int(cat['star_flag'].sum())} flagged as stars "
               f"(log p_star - log p_galaxy > {thr:g}); wrote {out}")  # fmt: skip
    if "truth_class" in cat and (cat["truth_class"] == "star").any():
        q = star_flag_quality(cat)
        typer.echo(f"against the truth: purity {q['purity']:.3f}, completeness {q['completeness']:.3f} "
                   f"({q['n_true_flagged']} of {q['n_stars']} stars)")  # fmt: skip
