"""Known answers and the calibration of the hallucination diagnostic (``benchmarks/fisher.py``).

* :func:`gaussian_figures`: the linear-Gaussian inpainting problem
  (:class:`~speculum.diagnostics.gaussian.GaussianInpainting`), where ``F_L``, ``F_P`` and
  ``ΔF`` are analytic: the exact estimators' error, Hutchinson's error at a given number of
  probes, the signs of ``ΔF`` and the posterior-precision identity.
* :func:`score_jacobian_figures`: a score network trained by denoising score matching on
  Gaussian samples against the exact ``-diag (Σ + σ² I)⁻¹``.
* :func:`hallucination_figures`: the calibration beyond the paper. A score prior is trained on
  galaxies that all have a bar; galaxies *without* a bar are observed through a PSF with
  their centre masked (a radius of ``mask_radius`` pixels: a saturated core or a masked
  foreground star), reconstructed by MAP with that prior and diagnosed. A pixel is
  *hallucinated* when the reconstruction misses the truth by more than ``threshold`` times the
  noise σ (the prior made it up: an invented bar, or an erased bulge). The pixel-level ROC AUC
  of ``ΔF`` and of ``r`` for these pixels is compared with the mask alone (1 on masked pixels)
  as a baseline, and also computed within the masked pixels only, where the mask says
  nothing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch

from speculum.diagnostics.apply import diagnose_images, map_reconstruct
from speculum.diagnostics.config import FisherConfig, MapConfig
from speculum.diagnostics.fisher import fisher_diag_likelihood_psf, fisher_diag_prior, hallucination_map
from speculum.diagnostics.gaussian import GaussianInpainting
from speculum.metrics import roc_auc

__all__ = [
    "CALIBRATION_IMAGES",
    "gaussian_figures",
    "hallucination_figures",
    "score_jacobian_figures",
]

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = dict(bar_flux_fraction=0.4, truth_psf_fwhm=0.1, noise_sigma=0.005)
"""``ImageConfig`` fields of the calibration: prominent bars (40 % of the flux), HST-like truth
(0.1" PSF at 0.06"/px), observed through the default 0.18" PSF with noise 0.005 (peak S/N ~20-60)."""


def gaussian_figures(problem: GaussianInpainting | None = None, probes: int = 2000, seed: int = 0) -> dict:
    """Exact and Hutchinson diagonals against the analytic answers of the linear-Gaussian problem.

    Returns:
        ``exact_max_rel_err`` (max over pixels of the exact ``F_L`` (closed form and JVP
        columns) and ``F_P`` against analytic, relative, over pixels where ``F_L`` exceeds 1e-8 of
        its maximum), ``hutchinson_rel_err`` (median over pixels of ``|F_P estimate / analytic - 1|``)
        and ``hutchinson_worst``, ``delta_negative_observed`` / ``delta_positive_far`` (fractions
        of observed pixels with ``ΔF < 0`` and of masked pixels 2 PSF σ from the data with
        ``ΔF > 0``: 1 and 1 expected), ``posterior_identity_err`` (max relative difference of
        ``diag`` of the autograd Hessian of the MAP objective and ``F_L + F_P``), ``probes``.
    """
    from speculum.diagnostics.fisher import fisher_diag_likelihood

    p = problem or GaussianInpainting()
    fl, fp = p.fisher_likelihood(), p.fisher_prior()
    x0 = torch.zeros(p.shape, dtype=torch.float64)
    big = fl > 1e-8 * fl.max()
    closed = fisher_diag_likelihood_psf(p.psf(), p.weights())
    cols = fisher_diag_likelihood(p.forward, x0, p.weights())
    exact_p = fisher_diag_prior(p.score, x0, p.prior_weight, method="exact").diagonal
    errs = [
        ((closed - fl).abs() / fl)[big].max(),
        ((cols - fl).abs() / fl)[big].max(),
        ((exact_p - fp).abs() / fp).max(),
    ]
    gen = torch.Generator().manual_seed(seed)
    hutch = fisher_diag_prior(p.score, x0, p.prior_weight, "hutchinson", probes, min(probes, 500), 0.0, gen)
    rel = (hutch.diagonal / fp - 1).abs()
    m = hallucination_map(closed, exact_p)
    observed = p.weights() > 0
    prec = p.precision()
    y = p.sample(1, torch.Generator().manual_seed(seed))[1][0]

    def objective(v: torch.Tensor) -> torch.Tensor:
        r = p.forward(v.reshape(p.shape)) - y
        return 0.5 * (p.weights() * r.pow(2)).sum() + 0.5 * p.prior_weight * v @ prec @ v

    hess = torch.func.hessian(objective)(x0.flatten()).diagonal().reshape(p.shape)
    return {
        "exact_max_rel_err": float(max(errs)),
        "hutchinson_rel_err": float(rel.median()),
        "hutchinson_worst": float(rel.max()),
        "probes": hutch.probes,
        "delta_negative_observed": float((m.delta[observed] < 0).double().mean()),
        "delta_positive_far": float((m.delta[p.far_from_data()] > 0).double().mean()),
        "posterior_identity_err": float(((hess - (fl + fp)).abs() / (fl + fp)).max()),
    }


def score_jacobian_figures(
    run_dir: str | Path,
    n: int = 20_000,
    sigma: float = 0.3,
    epochs: int = 20,
    arch: str = "mlp",
    channels: int = 128,
    levels: int = 2,
) -> dict:
    """Train a score network (default: the MLP) on ``N(0, Σ)`` (8 × 8 squared-exponential) at one noise
    level ``σ``; compare ``-diag ∂s/∂x`` at three samples with the exact ``diag (Σ + σ² I)⁻¹``.

    Returns:
        ``score_jacobian_rel_err`` (max over pixels and samples) and ``_median``, ``train_seconds``.
    """
    from speculum.diagnostics.fit import train_prior
    from speculum.models.score import ScoreConfig
    from speculum.train import TrainConfig

    p = GaussianInpainting(size=8)
    x, _ = p.sample(n, torch.Generator().manual_seed(1))
    cfg = ScoreConfig(shape=(8, 8), arch=arch, channels=channels, levels=levels, sigma_min=sigma, sigma_max=sigma)
    t0 = time.perf_counter()
    net, _ = train_prior(x.float(), run_dir, cfg, TrainConfig(epochs=epochs, batch_size=256, lr=2e-3, patience=0))
    seconds = time.perf_counter() - t0
    truth = torch.linalg.inv(p.covariance() + sigma**2 * torch.eye(64, dtype=torch.float64)).diagonal().reshape(8, 8)
    net = net.double().requires_grad_(False)
    errs = torch.stack(
        [(fisher_diag_prior(net.score, x[k], method="exact").diagonal / truth - 1).abs() for k in range(3)]
    )
    return {
        "score_jacobian_rel_err": float(errs.max()),
        "score_jacobian_rel_err_median": float(errs.median()),
        "score_train_seconds": seconds,
    }


def hallucination_figures(
    run_dir: str | Path,
    n_train: int = 4000,
    n_test: int = 12,
    epochs: int = 10,
    mask_radius: float = 6.0,
    threshold: float = 6.0,
    probes: int = 200,
    map_config: MapConfig | None = None,
    seed: int = 0,
    progress: bool = False,
    sigma_min: float = 0.04,
    images: dict | None = None,
) -> dict:
    """Train a prior on barred galaxies, reconstruct unbarred (and, for comparison, barred) ones
    with their centres masked, and score ``ΔF`` and ``r`` against the hallucinated pixels.

    The test galaxies come in matched pairs: the unbarred one is the barred one minus its bar
    (same host, same noise realisation), so the two sets differ by the bar alone.

    Returns:
        ``hallucination_auc`` (ROC AUC of ``ΔF``, unbarred test galaxies), ``hallucination_auc_r``,
        ``hallucination_auc_mask`` (the mask alone), ``hallucination_auc_in_mask`` and
        ``hallucination_auc_r_in_mask`` (masked pixels only), ``hallucination_auc_observed`` (observed
        pixels only), ``hallucination_auc_neg_fl`` (``-F_L`` alone: the data's information without
        the prior's), ``bar_coefficient`` (least-squares amount of the twin's bar in the
        reconstruction's masked pixels: 0 none, 1 all; ``_barred``: of the barred twins),
        ``hallucinated_fraction`` (of all pixels), ``_masked`` and ``_observed``; the
        fractions for barred test galaxies (``*_barred``: the prior matches them); the AUCs and
        fractions with the right half masked instead (``*_half_mask``, as in the paper);
        ``calibration_delta_negative_observed`` (fraction of observed pixels with ``ΔF < 0``),
        ``calibration_delta_positive_masked``, timings; and ``arrays`` (maps of the unbarred,
        centre-masked set, for figures).
    """
    from speculum.diagnostics.fit import train_prior
    from speculum.models.score import ScoreConfig
    from speculum.physics import convolve_psf
    from speculum.sim.images import GalaxyImageSimulator, ImageConfig
    from speculum.train import TrainConfig

    run_dir = Path(run_dir)
    base = ImageConfig(bar_fraction=1.0, **{**CALIBRATION_IMAGES, **(images or {})})
    t0 = time.perf_counter()
    train = GalaxyImageSimulator(base).simulate(n_train, seed=seed + 1)
    cfg = ScoreConfig(
        shape=(base.size, base.size), arch="unet", channels=16, levels=2, sigma_min=sigma_min, sigma_max=0.5
    )
    tcfg = TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, patience=0, precision="fp32", seed=seed)
    net, hist = train_prior(torch.from_numpy(train.truth), run_dir, cfg, tcfg, progress=progress)
    t_train = time.perf_counter() - t0
    s = base.size
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    centre = (yy - (s - 1) / 2) ** 2 + (xx - (s - 1) / 2) ** 2 < mask_radius**2
    mcfg = map_config or MapConfig(steps=400, lr=0.5)
    half = xx >= s // 2
    out: dict = {"prior_train_seconds": t_train, "prior_val_loss": hist[-1].get("val_loss", float("nan"))}
    # matched pairs: each unbarred test galaxy is a barred one minus its bar (the same host, the
    # same noise), so the two sets differ by the bar alone and the host has the training flux scale
    test = GalaxyImageSimulator(base).simulate(n_test, seed=seed + 99)
    psf = torch.from_numpy(test.psf)
    bar = torch.from_numpy(test.bar).double()
    barred = (torch.from_numpy(test.truth).double(), torch.from_numpy(test.image).double())
    unbarred = (barred[0] - bar, barred[1] - convolve_psf(bar, psf))
    cases = (("", unbarred, centre), ("_barred", barred, centre), ("_half_mask", unbarred, half))
    for suffix, (truth, image), mask in cases:
        w = torch.from_numpy(test.weights).clone()
        w[:, mask] = 0
        y = image.float()
        t1 = time.perf_counter()
        kernel = psf.float()
        x = map_reconstruct(y, w, lambda v, k=kernel: convolve_psf(v, k), net, mcfg, progress=progress)
        t_map = time.perf_counter() - t1
        fcfg = FisherConfig(prior_method="hutchinson", max_probes=probes)
        d = diagnose_images(x, w, psf, net, mcfg.prior_weight, fcfg)
        t_fisher = time.perf_counter() - t1 - t_map
        err = x.double() - truth
        hallucinated = (err.abs() > threshold * base.noise_sigma).numpy().ravel()
        masked = (w == 0).numpy().ravel()
        delta, r = d.maps.delta.numpy().ravel(), d.maps.prior_fraction.numpy().ravel()
        fl = d.maps.fisher_likelihood.numpy().ravel()
        # how much of the twin's bar the reconstruction holds in the mask: 0 none, 1 all of it
        host = unbarred[0]
        m = w == 0
        out[f"bar_coefficient{suffix}"] = float(((x.double() - host) * bar)[m].sum() / bar.pow(2)[m].sum())
        out[f"hallucinated_fraction{suffix}"] = float(hallucinated.mean())
        out[f"hallucinated_fraction_masked{suffix}"] = float(hallucinated[masked].mean())
        out[f"hallucinated_fraction_observed{suffix}"] = float(hallucinated[~masked].mean())
        if suffix == "_barred":
            continue
        out.update(
            {
                f"hallucination_auc{suffix}": roc_auc(delta, hallucinated),
                f"hallucination_auc_r{suffix}": roc_auc(r, hallucinated),
                f"hallucination_auc_mask{suffix}": roc_auc(masked.astype(float), hallucinated),
                f"hallucination_auc_neg_fl{suffix}": roc_auc(-fl, hallucinated),
                f"hallucination_auc_in_mask{suffix}": roc_auc(delta[masked], hallucinated[masked]),
                f"hallucination_auc_r_in_mask{suffix}": roc_auc(r[masked], hallucinated[masked]),
                f"hallucination_auc_observed{suffix}": roc_auc(delta[~masked], hallucinated[~masked]),
            }
        )
        if suffix:
            continue
        out.update(
            calibration_delta_negative_observed=float((delta[~masked] < 0).mean()),
            calibration_delta_positive_masked=float((delta[masked] > 0).mean()),
            map_seconds_per_object=t_map / n_test,
            fisher_seconds_per_object=t_fisher / n_test,
            calibration_probes=int(np.median(d.probes)),
            arrays={
                "image": y.numpy(),
                "weights": w.numpy(),
                "truth": truth.numpy(),
                "reconstruction": x.numpy(),
                "delta": d.maps.delta.numpy(),
                "prior_fraction": d.maps.prior_fraction.numpy(),
                "hallucinated": hallucinated.reshape(x.shape),
            },
        )
    log.info(
        "hallucination calibration: AUC(ΔF) %.3f, AUC(mask) %.3f",
        out["hallucination_auc"],
        out["hallucination_auc_mask"],
    )
    return out
