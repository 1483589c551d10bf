"""`speculum diagnostics ...`: where is a reconstruction made up? (Fisher-information hallucination maps)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from speculum.cli._common import setup_logging, user_errors

app = typer.Typer(
    help="Hallucination diagnostic: a score prior, MAP reconstructions, per-pixel ΔF = F_P - F_L maps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_IMAGE_KEYS = ("image", "weights", "psf")
_SPECTRUM_KEYS = ("flux", "weights", "z", "wave_obs", "grid")


def _load(path: Path) -> dict:
    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a .npz file of arrays ({e})") from None
    if all(k in data for k in _IMAGE_KEYS):
        data["kind"] = "images"
    elif all(k in data for k in _SPECTRUM_KEYS):
        data["kind"] = "spectra"
    else:
        raise ValueError(
            f"{path}: expected arrays {', '.join(_IMAGE_KEYS)} (images) or {', '.join(_SPECTRUM_KEYS)} (spectra); "
            f"found {', '.join(sorted(data)) or 'none'}"
        )
    return data


def _save(path: Path, arrays: dict) -> None:
    import numpy as np

    from speculum._files import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


@app.command("simulate-images")
def simulate_images(
    out: Path = typer.Argument(..., help="Output .npz (image, weights, psf, truth, bar, has_bar)."),
    n: int = typer.Option(2000, min=1, help="Number of galaxies."),
    bar_fraction: float = typer.Option(0.0, min=0.0, max=1.0, help="Fraction of galaxies with a bar."),
    mask: str = typer.Option(
        "none", help="none; right-half (weight 0 there, as in the paper); centre (a disk of --mask-radius pixels)."
    ),
    mask_radius: float = typer.Option(6.0, min=0.0, help="Radius of the centre mask, pixels."),
    size: int = typer.Option(32, min=8, help="Stamp side in pixels."),
    noise: float = typer.Option(0.01, min=0.0, help="Per-pixel noise sigma."),
    bar_flux_fraction: float = typer.Option(0.25, min=0.0, max=0.99, help="Share of the flux in a bar."),
    truth_psf_fwhm: float = typer.Option(0.0, min=0.0, help="HST-like PSF of the truth, arcsec (0: none)."),
    seed: int = typer.Option(0),
) -> None:
    """Simulate galaxy images (GalSim bulge + disk [+ bar]) observed through a PSF with noise.

    \b
    Example: speculum diagnostics simulate-images barred.npz --n 4000 --bar-fraction 1

    \b
    The calibration of benchmarks/fisher.py: --bar-flux-fraction 0.4 --truth-psf-fwhm 0.1 --noise 0.005
    (and --mask centre for the test galaxies).
    """
    with user_errors():
        import numpy as np

        from speculum.sim.images import GalaxyImageSimulator, ImageConfig

        if mask not in ("none", "right-half", "centre"):
            raise ValueError(f"--mask: expected none, right-half or centre, got {mask!r}")
        cfg = ImageConfig(size=size, bar_fraction=bar_fraction, noise_sigma=noise,
                          bar_flux_fraction=bar_flux_fraction, truth_psf_fwhm=truth_psf_fwhm)  # fmt: skip
        sims = GalaxyImageSimulator(cfg).simulate(n, seed=seed)
        w = sims.weights.copy()
        if mask == "right-half":
            w[:, :, size // 2 :] = 0
        elif mask == "centre":
            yy, xx = np.mgrid[:size, :size]
            w[:, (yy - (size - 1) / 2) ** 2 + (xx - (size - 1) / 2) ** 2 < mask_radius**2] = 0
        _save(out, {"image": sims.image, "weights": w, "psf": sims.psf, "truth": sims.truth, "bar": sims.bar,
                    "has_bar": sims.params["has_bar"]})  # fmt: skip
    typer.echo(f"wrote {n} images ({size}x{size}, {int(sims.params['has_bar'].sum())} barred) to {out}")


@app.command("simulate-spectra")
def simulate_spectra(
    out: Path = typer.Argument(..., help="Output .npz (flux, weights, z, wave_obs, grid, truth)."),
    n: int = typer.Option(2000, min=1),
    grid_size: int = typer.Option(512, min=16, help="Restframe pixels (3000-9600 A, log-uniform)."),
    z_min: float = typer.Option(0.02, min=0.0),
    z_max: float = typer.Option(0.3, min=0.0),
    noise: float = typer.Option(0.05, min=0.0, help="Noise sigma relative to the normalised level (~1)."),
    seed: int = typer.Option(0),
) -> None:
    """Simulate restframe galaxy spectra and their SDSS observations (sky lines masked).

    \b
    Example: speculum diagnostics simulate-spectra spectra.npz --n 4000
    """
    with user_errors():
        import torch

        from speculum.diagnostics.spectra import observe, restframe_grid, restframe_spectra
        from speculum.instruments import SDSS

        if z_max < z_min:
            raise ValueError(f"--z-max ({z_max}) must be >= --z-min ({z_min})")
        grid = restframe_grid(grid_size)
        x = restframe_spectra(n, seed=seed, grid=grid)
        z = z_min + (z_max - z_min) * torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        wave = SDSS.wave()
        y, w = observe(x, z, wave, noise=noise, seed=seed, grid=grid)
        _save(out, {"flux": y.numpy(), "weights": w.numpy(), "z": z.numpy(), "wave_obs": wave.numpy(),
                    "grid": grid.numpy(), "truth": x.numpy()})  # fmt: skip
    typer.echo(f"wrote {n} spectra ({grid_size} restframe pixels, z {z_min}-{z_max}) to {out}")


@app.command("train-prior")
def train_prior(
    data: Path = typer.Argument(..., help=".npz from simulate-images / simulate-spectra (or your own)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (prior.safetensors, checkpoint, history)."),
    field: str = typer.Option("truth", help="The array to learn the prior of (clean scenes: truth)."),
    arch: str = typer.Option("unet", help="unet (images, spectra) or mlp (small problems)."),
    channels: int = typer.Option(16, min=1),
    levels: int = typer.Option(2, min=1),
    sigma_min: float = typer.Option(0.01, help="Smallest noise level: where the prior's score is evaluated."),
    sigma_max: float = typer.Option(0.5),
    epochs: int = typer.Option(10, min=1),
    batch_size: int = typer.Option(64, min=2),
    lr: float = typer.Option(2e-3),
    seed: int = typer.Option(0),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train a score-based prior (denoising score matching) on clean images or restframe spectra.

    \b
    Example: speculum diagnostics train-prior barred.npz --out prior/ --epochs 10
    """
    setup_logging(verbose)
    with user_errors():
        import numpy as np
        import torch

        from speculum.diagnostics import train_prior as run
        from speculum.models.score import ScoreConfig
        from speculum.train import TrainConfig

        arrays = _load(data)
        if field not in arrays:
            raise ValueError(f"{data}: no array {field!r} (has {', '.join(k for k in arrays if k != 'kind')})")
        x = torch.from_numpy(np.asarray(arrays[field], dtype=np.float32))
        cfg = ScoreConfig(shape=tuple(x.shape[1:]), arch=arch, channels=channels, levels=levels,
                          sigma_min=sigma_min, sigma_max=sigma_max)  # fmt: skip
        tcfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, patience=0, seed=seed, precision="fp32")
        _, hist = run(x, out, cfg, tcfg, resume=resume, progress=sys.stderr.isatty() or verbose)
    typer.echo(
        f"trained a score prior on {len(x)} samples for {len(hist)} epochs (held-out DSM loss "
        f"{hist[-1].get('val_loss', float('nan')):.4g}); next: speculum diagnostics fisher DATA --prior {out}"
    )


@app.command()
def fisher(
    data: Path = typer.Argument(..., help="Observations .npz (images: image, weights, psf; spectra: flux, ...)."),
    prior: Path = typer.Option(..., help="Run folder (or prior.safetensors) of train-prior."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for hallucination.npz and report.html."),
    limit: int = typer.Option(8, min=1, help="Reconstruct and diagnose the first this many objects."),
    prior_weight: float = typer.Option(1.0, min=0.0, help="λ of the MAP objective -log L - λ log p."),
    steps: int = typer.Option(400, min=1, help="MAP (Adam) steps."),
    lr: float = typer.Option(0.05, help="MAP step, in units of the prior's data scale."),
    method: str = typer.Option("auto", help="F_P: auto (exact up to 4096 pixels), exact or hutchinson."),
    probes: int = typer.Option(
        400, min=1, help="Hutchinson probes at most (the paper's stopping rule may stop earlier)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """MAP-reconstruct observations with the prior and write per-pixel ΔF / r maps and a report.

    \b
    Example: speculum diagnostics fisher unbarred.npz --prior prior/ --out maps/ --limit 8
    """
    setup_logging(verbose)
    with user_errors():
        import torch

        from speculum.diagnostics import FisherConfig, MapConfig, diagnose_images, map_reconstruct, write_diagnosis
        from speculum.diagnostics.fit import PRIOR_NAME
        from speculum.diagnostics.reporting import MAPS_NAME
        from speculum.physics import convolve_psf
        from speculum.report import build_report
        from speculum.train.checkpoint import load_model
        from speculum.train.runs import write_run_manifest

        arrays = _load(data)
        path = prior / PRIOR_NAME if prior.is_dir() else prior
        net = load_model(path)
        fcfg = FisherConfig(prior_method=method, max_probes=probes)
        mcfg = MapConfig(prior_weight=prior_weight, steps=steps, lr=lr)
        progress = sys.stderr.isatty() or verbose
        extra = {}
        if arrays["kind"] == "images":
            y = torch.from_numpy(arrays["image"][:limit]).float()
            w = torch.from_numpy(arrays["weights"][:limit]).float()
            if tuple(y.shape[1:]) != net.config.shape:
                raise ValueError(
                    f"{data}: images are {tuple(y.shape[1:])}, the prior in {path} models {net.config.shape}"
                )
            psf = torch.from_numpy(arrays["psf"]).double()
            x = map_reconstruct(y, w, lambda v: convolve_psf(v, psf.float()), net, mcfg, progress=progress)
            diag = diagnose_images(x, w, psf, net, prior_weight, fcfg)
            extra = {"image": y.numpy(), "weights": w.numpy()}
        else:
            from speculum.diagnostics.spectra import diagnose_spectra

            y = torch.from_numpy(arrays["flux"][:limit]).double()
            w = torch.from_numpy(arrays["weights"][:limit]).double()
            grid = torch.from_numpy(arrays["grid"]).double()
            if (len(grid),) != net.config.shape:
                raise ValueError(f"{data}: grid has {len(grid)} pixels, the prior in {path} models {net.config.shape}")
            z = torch.from_numpy(arrays["z"][:limit]).double()
            diag, coverage = diagnose_spectra(
                y, w, z, torch.from_numpy(arrays["wave_obs"]).double(), net, grid, mcfg, fcfg
            )
            extra = {"grid": grid.numpy(), "coverage": coverage.numpy(), "weights": w.numpy()}
        if "truth" in arrays:
            extra["truth"] = arrays["truth"][:limit]
        out.mkdir(parents=True, exist_ok=True)
        write_diagnosis(out / MAPS_NAME, diag, extra)
        write_run_manifest(
            out,
            inputs={"data": data, "prior": path},
            outputs={"maps": out / MAPS_NAME},
            config={"limit": limit, "map": mcfg.to_dict(), "fisher": fcfg.to_dict()},
        )
        report = build_report(out, out / "report.html")
    frac = float((diag.maps.delta > 0).double().mean())
    typer.echo(
        f"{len(y)} objects: {frac:.1%} of pixels prior-dominated (ΔF > 0); maps {out / MAPS_NAME}; report {report}"
    )
