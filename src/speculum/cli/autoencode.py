"""`speculum autoencode ...`: the spectrum autoencoder's commands (`train` and `reconstruct` are also top-level)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from speculum.cli._common import TRAIN_DEFAULTS, setup_logging, user_errors

app = typer.Typer(
    help="The spectrum autoencoder (SPENDER): train, reconstruct, report.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def train(
    data: Path = typer.Argument(..., help="Shard folder from `speculum simulate` or `speculum ingest`."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Run folder (checkpoint.safetensors, model.safetensors, history.json, run.json)."
    ),
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
    epochs: int = typer.Option(TRAIN_DEFAULTS["epochs"], min=1),
    batch_size: int = typer.Option(
        TRAIN_DEFAULTS["batch_size"], min=1, help="Global batch size (split across torchrun ranks)."
    ),
    lr: float = typer.Option(TRAIN_DEFAULTS["lr"], help="Peak learning rate of the one-cycle schedule."),
    patience: int = typer.Option(TRAIN_DEFAULTS["patience"], min=0, help="Early stopping patience in epochs (0: off)."),
    checkpoint_every: int = typer.Option(
        TRAIN_DEFAULTS["checkpoint_every"], min=1, help="Checkpoint every N optimizer steps (and every epoch)."
    ),
    precision: str = typer.Option(
        TRAIN_DEFAULTS["precision"],
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

    from speculum._runtime import init_distributed, shutdown_distributed
    from speculum.autoencode import PRESETS
    from speculum.autoencode import train as run
    from speculum.io import SpectraSet
    from speculum.models.config import config_from_dict
    from speculum.train import CHECKPOINT_NAME, TrainConfig, load_checkpoint

    setup_logging(verbose)
    with user_errors():
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"--preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        init_distributed()
        mcfg = None
        inst = SpectraSet.open(data).instrument.name
        if resume and (out / CHECKPOINT_NAME).exists():
            # a resumed run keeps its architecture: explicit --preset/--n-latent/--normalize must agree with it
            saved = config_from_dict(load_checkpoint(out / CHECKPOINT_NAME)["metadata"]["model_config"])
            asked = PRESETS[preset](inst) if preset else saved
            asked = dataclasses.replace(
                asked, n_latent=n_latent or saved.n_latent, normalize=normalize or saved.normalize
            )
            if asked != saved:
                raise ValueError(
                    f"{out / CHECKPOINT_NAME}: --preset/--n-latent/--normalize differ from the resumed run's model "
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
        summary = run(
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
    shutdown_distributed()


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

    from speculum.autoencode import reconstruct as run

    setup_logging(verbose)
    with user_errors():
        res = run(
            model, data, out, split=split, batch_size=batch_size, device=device, progress=True, spectra_out=spectra
        )
    typer.echo(
        f"reconstructed {len(res['object_id'])} spectra; median reduced chi2 {np.nanmedian(res['reduced_chi2']):.3f}; "
        f"wrote {out}"
    )


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
    """Write the autoencoder's HTML report of a run (training curves, reconstructions, chi2, latents).

    \b
    Example: speculum autoencode report run/
    Example: speculum autoencode report run/ sim/ run/reconstructions.fits --out run/report.html
    """
    from speculum.autoencode import report as run_report

    setup_logging(verbose)
    with user_errors():
        path = run_report(run, out, data=data, reconstructions=reconstructions, progress=True)
    typer.echo(f"report: {path}")


for _fn in (train, reconstruct, report):
    app.command()(_fn)
