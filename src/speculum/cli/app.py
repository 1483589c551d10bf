"""Typer application: one verb (group) per method."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer

app = typer.Typer(
    help="speculum: machine-learning methods for astronomical spectra.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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
def demo(
    out: Path = typer.Option(Path("demo-output"), help="Folder for the checkpoint, figure and summary."),
    n_train: int = typer.Option(2048, min=64, help="Simulated training spectra."),
    n_test: int = typer.Option(128, min=8, help="Held-out simulated spectra."),
    epochs: int = typer.Option(20, min=1, help="Training epochs."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Simulate galaxy spectra, fit a small SPENDER autoencoder, reconstruct held-out ones.

    Example: ``speculum demo --out demo-output --epochs 8``
    """
    import torch
    from tqdm import tqdm

    from speculum.models import AutoencoderConfig, SpectrumAutoencoder
    from speculum.sim import toy_galaxy_spectra
    from speculum.train import load_model, reduced_chi2, save_model
    from speculum.train.fit import fit_autoencoder

    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = toy_galaxy_spectra(n_train + n_test, "SDSS", snr=20.0, seed=seed)
    y, w, z = data.flux, data.weights, data.z
    tr, te = slice(0, n_train), slice(n_train, None)
    # reduced encoder widths for a CPU demo of a few minutes; the decoder is the paper's
    cfg = AutoencoderConfig(instrument="SDSS", n_latent=6, encoder_channels=(32, 64, 128))
    model = SpectrumAutoencoder(cfg)
    typer.echo(f"simulated {len(y)} SDSS spectra; training {sum(p.numel() for p in model.parameters()):,} parameters")
    bar = tqdm(total=epochs, desc="training", unit="epoch")

    def progress(epoch: int, loss: float) -> None:
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.update(1)

    fit_autoencoder(model, y[tr], w[tr], z[tr], epochs=epochs, batch_size=64, lr=2e-3, seed=seed, callback=progress)
    bar.close()
    path = save_model(model, out / "autoencoder.safetensors")
    model = load_model(path)
    with torch.no_grad():
        res = model(y[te], w[te], z[te])
    chi2 = reduced_chi2(y[te], w[te] * res.valid, res.observed)
    summary = {
        "n_train": n_train,
        "n_test": n_test,
        "epochs": epochs,
        "median_reduced_chi2_test": float(chi2.nanmedian()),
        "wall_s": round(time.perf_counter() - t0, 1),
        "checkpoint": str(path),
    }
    _plot(out / "reconstructions.png", model, y[te][:4], w[te][:4], z[te][:4], res, chi2[:4])
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"figure: {out / 'reconstructions.png'}")


def _plot(path: Path, model, y, w, z, res, chi2) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wave = model.wave_obs.numpy()
    fig, axes = plt.subplots(len(y), 1, figsize=(10, 2.2 * len(y)), sharex=True)
    for i, ax in enumerate(axes):
        good = (w[i] > 0).numpy()
        ax.plot(wave[good], y[i].numpy()[good], lw=0.5, color="0.5", label="simulated data")
        ax.plot(wave, res.observed[i].numpy(), lw=0.8, color="C3", label="autoencoder")
        ax.set_ylabel("flux")
        ax.set_title(f"z = {float(z[i]):.3f}, reduced chi2 = {float(chi2[i]):.2f}", fontsize=9)
    axes[0].legend(fontsize=8)
    axes[-1].set_xlabel("observed wavelength [A]")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    """Entry point of the ``speculum`` script."""
    app()
