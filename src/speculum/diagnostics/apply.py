"""MAP reconstruction with a score prior, and the per-pixel hallucination maps of its result.

Example (deconvolve and inpaint a half-masked image with an untrained prior, whose output
layer starts at zero: it carries no information, ``F_P = 0``, and the data decide every pixel):
    >>> import torch
    >>> from speculum.models.score import ScoreConfig, ScoreNet
    >>> from speculum.physics import convolve_psf, gaussian_psf
    >>> prior = ScoreNet(ScoreConfig(shape=(16, 16), channels=8, levels=1, sigma_min=0.05))
    >>> psf = gaussian_psf(1.0)
    >>> y = convolve_psf(torch.rand(2, 16, 16), psf.float())
    >>> w = torch.full((2, 16, 16), 100.0); w[:, :, 8:] = 0
    >>> x = map_reconstruct(y, w, lambda v: convolve_psf(v, psf.float()), prior, MapConfig(steps=20))
    >>> d = diagnose_images(x, w, psf, prior, prior_weight=1.0, config=FisherConfig(prior_method="exact"))
    >>> d.maps.delta.shape, float(d.maps.fisher_prior.abs().max()), float(d.maps.prior_fraction[:, :, :8].max())
    (torch.Size([2, 16, 16]), 0.0, 0.0)
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speculum._files import atomic_path
from speculum.diagnostics.config import FisherConfig, MapConfig
from speculum.diagnostics.fisher import (
    HallucinationMap,
    fisher_diag_likelihood,
    fisher_diag_likelihood_psf,
    fisher_diag_prior,
    hallucination_map,
)
from speculum.models.score import ScoreNet

__all__ = ["Diagnosis", "diagnose", "diagnose_images", "map_reconstruct", "read_diagnosis", "write_diagnosis"]

log = logging.getLogger(__name__)

BatchFn = Callable[[torch.Tensor], torch.Tensor]


def map_reconstruct(
    y: torch.Tensor,
    weights: torch.Tensor,
    forward: BatchFn,
    prior: ScoreNet,
    config: MapConfig | None = None,
    x0: torch.Tensor | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """``argmin_x ½ Σ w (y - f(x))² - λ log p(x)`` for a batch, with the prior's score as gradient.

    Args:
        y: Observations ``(N, *D)``.
        weights: Inverse variances ``(N, *D)`` or ``(*D)`` (0 = masked).
        forward: ``f``: ``(N, *S) -> (N, *D)``, object ``i`` of the batch to observation ``i``.
        prior: The score network over scenes ``(N, *S)``.
        config: Prior weight, steps, learning rate, annealing.
        x0: Start ``(N, *S)`` (default: zeros).
        progress: A progress bar.

    Returns:
        ``(N, *S)`` reconstructions, detached.
    """
    cfg = config or MapConfig()
    y = torch.as_tensor(y, dtype=torch.float32)
    w = torch.as_tensor(weights, dtype=torch.float32).expand_as(y)
    if not (torch.isfinite(y) | (w == 0)).all():
        raise ValueError("map_reconstruct: y has non-finite values at pixels of non-zero weight")
    y = torch.where(w > 0, y, torch.zeros_like(y))
    shape = (len(y), *prior.config.shape)
    if x0 is not None and tuple(x0.shape) != shape:
        raise ValueError(f"map_reconstruct: x0 must be {shape}, got {tuple(x0.shape)}")
    device = prior.scale.device
    y, w = y.to(device), w.to(device)
    x = torch.zeros(shape, device=device) if x0 is None else torch.as_tensor(x0, dtype=torch.float32).to(device).clone()
    x.requires_grad_(True)
    with torch.no_grad():
        got = tuple(forward(x).shape)
    if got != tuple(y.shape):
        raise ValueError(f"map_reconstruct: forward(x) gives {got}, the observations y are {tuple(y.shape)}")
    scale = float(prior.scale)
    opt = torch.optim.Adam([x], lr=cfg.lr * scale)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * scale / 100)
    smin, smax = prior.config.sigma_min, prior.config.sigma_max
    n_anneal = max(1, int(round(cfg.anneal * cfg.steps)))
    steps = range(cfg.steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="MAP", unit="step")
    prior.eval()
    for t in steps:
        sigma = smin if t >= n_anneal or smax == smin else smax * (smin / smax) ** (t / max(n_anneal - 1, 1))
        with torch.no_grad():
            s = prior.score(x.detach(), sigma) if cfg.prior_weight > 0 else torch.zeros_like(x)
        resid = y - forward(x)
        loss = 0.5 * (w * resid.pow(2)).sum() - cfg.prior_weight * (s * x).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return x.detach()


@dataclass(frozen=True)
class Diagnosis:
    """Reconstructions and their hallucination maps, all ``(N, *S)``.

    Attributes:
        reconstruction: The MAP scenes.
        maps: ``F_L``, ``F_P`` (times ``λ``), ``ΔF``, ``r``.
        prior_weight: ``λ``.
        probes: Probes used for ``F_P`` per object (pixels when exact).
        exact: Whether ``F_P`` of each object is exact (unit vectors) or a Hutchinson estimate.
    """

    reconstruction: torch.Tensor
    maps: HallucinationMap
    prior_weight: float
    probes: list[int]
    exact: list[bool]


def _prior_diagonals(x: torch.Tensor, prior: ScoreNet, prior_weight: float, config: FisherConfig) -> tuple:
    """``F_P`` of every object in float64, on a frozen float64 copy of the network (the caller's is untouched)."""
    gen = torch.Generator().manual_seed(config.seed)
    net = copy.deepcopy(prior).double().eval().requires_grad_(False)
    out, probes, exact = [], [], []
    for xi in x.to(torch.float64):
        est = fisher_diag_prior(
            net.score, xi, prior_weight, config.prior_method, config.max_probes, config.batch, config.rtol, gen,
            config.exact_max_pixels,
        )  # fmt: skip
        out.append(est.diagonal)
        probes.append(est.probes)
        exact.append(est.exact)
    return torch.stack(out).cpu(), probes, exact  # maps live on the CPU, whatever device the prior uses


def diagnose_images(
    x: torch.Tensor,
    weights: torch.Tensor,
    psf: torch.Tensor,
    prior: ScoreNet,
    prior_weight: float = 1.0,
    config: FisherConfig | None = None,
) -> Diagnosis:
    """Hallucination maps of image reconstructions ``x`` ``(N, H, W)`` observed through ``psf``.

    ``F_L`` is exact (``PSF² ⋆ w``); ``F_P`` from the prior's score Jacobian at ``x``.

    Args:
        x: Reconstructions ``(N, H, W)``.
        weights: Inverse variances of the observations ``(N, H, W)`` or ``(H, W)``.
        psf: ``(h, w)`` PSF of the observation.
        prior: The score prior used in the reconstruction.
        prior_weight: ``λ`` of the reconstruction.
        config: Estimator settings.
    """
    cfg = config or FisherConfig()
    x = torch.as_tensor(x).detach().cpu()
    w = torch.as_tensor(weights, dtype=torch.float64).cpu().expand(x.shape)
    fl = fisher_diag_likelihood_psf(torch.as_tensor(psf, dtype=torch.float64).cpu(), w)
    fp, probes, exact = _prior_diagonals(x, prior, prior_weight, cfg)
    return Diagnosis(x.detach(), hallucination_map(fl, fp), prior_weight, probes, exact)


def diagnose(
    x: torch.Tensor,
    weights: torch.Tensor,
    forwards: list[BatchFn],
    prior: ScoreNet,
    prior_weight: float = 1.0,
    config: FisherConfig | None = None,
) -> Diagnosis:
    """Hallucination maps for any forward model: ``forwards[i]`` observes object ``i`` (``(B, *S) -> (B, *D)``).

    ``F_L`` is exact (one forward-mode product per pixel: ``diag(Jᵀ W J)``, exact for linear
    models such as redshift + resampling + line spread), ``F_P`` from the prior's score.
    """
    cfg = config or FisherConfig()
    x = torch.as_tensor(x)
    if len(forwards) != len(x):
        raise ValueError(f"diagnose: {len(forwards)} forward models for {len(x)} objects")
    w = torch.as_tensor(weights, dtype=torch.float64)
    if len(w) != len(x):
        raise ValueError(f"diagnose: weights for {len(w)} objects, reconstructions of {len(x)}")
    fl = torch.stack([fisher_diag_likelihood(f, x[i].to(torch.float64), w[i]) for i, f in enumerate(forwards)]).cpu()
    fp, probes, exact = _prior_diagonals(x, prior, prior_weight, cfg)
    return Diagnosis(x.detach(), hallucination_map(fl, fp), prior_weight, probes, exact)


def write_diagnosis(path: str | Path, diagnosis: Diagnosis, extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write the maps to ``path`` (``.npz``), atomically: ``reconstruction``, ``fisher_likelihood``,
    ``fisher_prior``, ``delta``, ``prior_fraction``, ``prior_weight``, ``probes`` and any ``extra`` arrays."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: hallucination maps are written as .npz")
    m = diagnosis.maps
    arrays = {
        "reconstruction": diagnosis.reconstruction.cpu().numpy(),
        "fisher_likelihood": m.fisher_likelihood.cpu().numpy(),
        "fisher_prior": m.fisher_prior.cpu().numpy(),
        "delta": m.delta.cpu().numpy(),
        "prior_fraction": m.prior_fraction.cpu().numpy(),
        "prior_weight": np.asarray(diagnosis.prior_weight),
        "probes": np.asarray(diagnosis.probes),
        "exact": np.asarray(diagnosis.exact, dtype=bool),
        **(extra or {}),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def read_diagnosis(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a :func:`write_diagnosis` file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a hallucination-map file ({e})") from None
    missing = {"reconstruction", "delta", "prior_fraction"} - set(out)
    if missing:
        raise ValueError(f"{path}: missing arrays {sorted(missing)}")
    return out
