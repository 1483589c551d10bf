"""Diagonal Fisher information of a likelihood and of a prior, and the hallucination map.

Sampson & Melchior (2023, arXiv:2306.13272): a MAP reconstruction
``x̂ = argmax log L(y | x) + λ log p(x)`` with a data-driven prior can invent features.
Per pixel, compare the diagonal Fisher information of the likelihood,
``F_L = -diag ∇² log L``, with that of the prior, ``F_P = -λ diag ∇ s(x)`` (``s`` the
prior's score): ``ΔF = F_P - F_L > 0`` marks pixels where the prior, not the data,
decides the value; ``r = F_P / (F_P + F_L)`` in ``[0, 1]`` is the prior's share.

For a Gaussian likelihood ``y = f(x) + n``, ``n ~ N(0, W⁻¹)`` with ``W = diag(w)``, the
Fisher information is ``Jᵀ W J`` (``J = ∂f/∂x``): exact and cheap for linear ``f``
(``diag(Aᵀ W A)_i = Σ_j w_j A_ji²``; for a PSF convolution ``PSF² ⋆ w``), and estimated by
Hutchinson probes for non-linear ones. Diagonals of a Jacobian come either exactly (one
Jacobian-vector product per pixel, for small problems) or from Hutchinson's estimator
``diag M ≈ mean_k z_k ⊙ M z_k`` with Rademacher ``z`` (unbiased; its variance for pixel i
is ``Σ_{j≠i} M_ij² / K``), stopped as in the paper when the estimate changes by less than
``rtol`` (relative) or after ``max_probes`` probes.

Shapes: ``x`` is one problem's pixels ``(*S)`` (an image ``(H, W)``, a spectrum ``(L,)``);
functions of ``x`` map ``(B, *S) -> (B, *S')`` (a batch of ``B`` copies), which lets the
probes run as one batch through a network.

Example (a linear-Gaussian problem: the exact and Hutchinson diagonals agree):
    >>> import torch
    >>> from speculum.physics import convolve_psf, gaussian_psf
    >>> psf = gaussian_psf(1.0)
    >>> w = torch.full((8, 8), 100.0, dtype=torch.float64); w[:, 4:] = 0  # noise 0.1, right half masked
    >>> exact = fisher_diag_likelihood_psf(psf, w)
    >>> x = torch.zeros(8, 8, dtype=torch.float64)
    >>> cols = fisher_diag_likelihood(lambda v: convolve_psf(v, psf), x, w)
    >>> bool(torch.allclose(exact, cols, rtol=1e-10, atol=1e-14))
    True
    >>> prec = torch.eye(64, dtype=torch.float64) * 3.0                   # prior N(0, I/3): F_P = 3
    >>> fp = fisher_diag_prior(lambda v: -(v.reshape(len(v), 64) @ prec).reshape(v.shape), x)
    >>> bool(torch.allclose(fp.diagonal, torch.full((8, 8), 3.0, dtype=torch.float64)))
    True
    >>> m = hallucination_map(exact, fp.diagonal)
    >>> bool((m.delta[:, 6:] > 0).all() and (m.delta[:, :3] < 0).all())
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from speculum.physics.psf import correlate_psf

__all__ = [
    "DiagonalEstimate",
    "HallucinationMap",
    "exact_diagonal",
    "fisher_diag_likelihood",
    "fisher_diag_likelihood_psf",
    "fisher_diag_prior",
    "hallucination_map",
    "hutchinson_diagonal",
    "source_confidence",
]

log = logging.getLogger(__name__)

BatchFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DiagonalEstimate:
    """A diagonal ``(*S)`` and how it was obtained.

    Attributes:
        diagonal: The estimate, shape of the problem's ``x``.
        probes: Hutchinson probes used (the number of pixels for an exact diagonal).
        exact: Whether it is exact (unit vectors) rather than a Hutchinson estimate.
        rel_change: Relative change of the estimate over the last batch of probes (0 when exact).
        stderr: Per-pixel standard error of a Hutchinson estimate (``None`` when exact).
    """

    diagonal: torch.Tensor
    probes: int
    exact: bool
    rel_change: float = 0.0
    stderr: torch.Tensor | None = None


def _check_x(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim < 1 or x.numel() == 0:
        raise ValueError(f"{name}: x must be one problem's pixels (*S) with at least one element, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: x has {int((~torch.isfinite(x)).sum())} non-finite values")
    return x


def _jvp(fn: BatchFn, x: torch.Tensor, tangents: torch.Tensor) -> torch.Tensor:
    """``J(x) v`` for a batch of tangents ``(B, *S)``: ``fn`` runs once on ``B`` copies of ``x``."""
    xs = x.unsqueeze(0).expand_as(tangents).contiguous()
    return torch.func.jvp(fn, (xs,), (tangents,))[1]


def exact_diagonal(
    matvec: BatchFn,
    shape: torch.Size | tuple[int, ...],
    dtype: torch.dtype = torch.float64,
    chunk: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The exact diagonal of the linear map ``matvec`` ``(B, *S) -> (B, *S)``, one unit vector per pixel.

    Args:
        matvec: Applies the matrix to a batch of vectors shaped like the problem.
        shape: The problem's shape ``S``.
        chunk: Unit vectors per call.
        device: Where the unit vectors are made (that of the problem).

    Returns:
        ``(*S)`` diagonal.
    """
    n = int(torch.Size(shape).numel())
    out = torch.empty(n, dtype=dtype, device=device)
    for lo in range(0, n, chunk):
        idx = torch.arange(lo, min(n, lo + chunk), device=device)
        e = torch.zeros(len(idx), n, dtype=dtype, device=device)
        e[torch.arange(len(idx)), idx] = 1
        col = matvec(e.reshape(len(idx), *shape)).reshape(len(idx), n)
        out[idx] = col[torch.arange(len(idx)), idx].detach().to(dtype)
    return out.reshape(shape)


def hutchinson_diagonal(
    matvec: BatchFn,
    shape: torch.Size | tuple[int, ...],
    dtype=torch.float64,
    max_probes: int = 2000,
    batch: int = 100,
    rtol: float = 1e-6,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> DiagonalEstimate:
    """Hutchinson's estimate ``mean_k z_k ⊙ M z_k`` (Rademacher ``z``) of the diagonal of ``matvec``.

    Probes run in batches of ``batch``; after each batch the running estimate is compared with
    the previous one and the loop stops when ``||Δ|| / ||estimate|| < rtol`` (the stopping
    rule of Sampson & Melchior 2023) or after ``max_probes`` probes. The running mean of ``k``
    probes changes by about ``1/k`` of its spread per probe, so with ``rtol = 1e-6`` the rule
    stops early only for (nearly) diagonal matrices, whose probes are all equal; otherwise it
    runs to ``max_probes`` (and where it stops depends on ``batch``).

    Args:
        matvec: Applies the matrix to a batch ``(B, *S)``.
        shape: The problem's shape ``S``.
        max_probes: Upper bound on the probes.
        batch: Probes per call of ``matvec``.
        rtol: Relative-change stopping threshold.
        generator: Seeds the probes (a CPU generator; default: seeded 0, so estimates repeat).
        device: Where the probes go (that of the problem).

    Returns:
        The estimate with its per-pixel standard error.
    """
    if max_probes < 1 or batch < 1:
        raise ValueError(f"hutchinson_diagonal: max_probes and batch must be >= 1, got {max_probes}, {batch}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    total = torch.zeros(shape, dtype=torch.float64, device=device)
    total2 = torch.zeros(shape, dtype=torch.float64, device=device)
    k, est, change = 0, None, float("inf")
    while k < max_probes:
        b = min(batch, max_probes - k)
        z = torch.randint(0, 2, (b, *shape), generator=gen).to(device=device, dtype=dtype) * 2 - 1
        terms = (z * matvec(z)).detach().to(torch.float64)  # no graph back to any network's weights
        total += terms.sum(0)
        total2 += terms.pow(2).sum(0)
        k += b
        new = total / k
        if est is not None:
            change = float((new - est).norm() / new.norm().clamp_min(1e-300))
        est = new
        if change < rtol:
            break
    var = (total2 / k - est.pow(2)).clamp_min(0) / max(k - 1, 1)
    return DiagonalEstimate(est.to(dtype), k, False, change, var.sqrt().to(dtype))


def fisher_diag_likelihood_psf(psf: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Exact ``F_L = diag(Aᵀ W A)`` of a PSF convolution: ``PSF² ⋆ w`` (correlation).

    Args:
        psf: ``(h, w)`` kernel of :func:`speculum.physics.convolve_psf`.
        weights: ``(*, H, W)`` inverse variances (0 for masked pixels).

    Returns:
        ``(*, H, W)`` Fisher information of each pixel of the unconvolved scene.
    """
    weights = torch.as_tensor(weights)
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError("fisher_diag_likelihood_psf: weights must be finite inverse variances >= 0")
    return correlate_psf(weights, psf.to(weights.dtype).pow(2))


def fisher_diag_likelihood(
    forward: BatchFn,
    x: torch.Tensor,
    weights: torch.Tensor,
    method: str = "exact",
    max_probes: int = 2000,
    batch: int = 100,
    rtol: float = 1e-6,
    generator: torch.Generator | None = None,
    chunk: int = 256,
) -> torch.Tensor:
    """``F_L = diag(Jᵀ W J)`` of a Gaussian likelihood with forward model ``forward`` at ``x``.

    ``exact``: the Jacobian's columns by one forward-mode product per pixel (exact for any
    ``forward``; for a linear one it is ``diag(Aᵀ W A)`` whatever ``x``). ``hutchinson``:
    ``z ⊙ Jᵀ W J z`` with Rademacher probes (one JVP and one VJP per batch), for problems
    too large for one product per pixel.

    Args:
        forward: ``(B, *S) -> (B, *D)`` model of the data.
        x: ``(*S)`` where the Fisher information is evaluated.
        weights: ``(*D)`` inverse variances of the data (0 where masked).
        method: ``exact`` or ``hutchinson``.

    Returns:
        ``(*S)`` in the dtype of ``x``.
    """
    x = _check_x(x, "fisher_diag_likelihood")
    weights = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError("fisher_diag_likelihood: weights must be finite inverse variances >= 0")
    with torch.no_grad():
        shape = tuple(forward(x.unsqueeze(0)).shape[1:])
    if tuple(weights.shape) != shape:
        raise ValueError(
            f"fisher_diag_likelihood: weights must have the shape of one observation {shape} "
            f"(the forward model's output), got {tuple(weights.shape)}"
        )
    if method == "exact":
        n = x.numel()
        out = torch.empty(n, dtype=x.dtype, device=x.device)
        for lo in range(0, n, chunk):
            idx = torch.arange(lo, min(n, lo + chunk), device=x.device)
            e = torch.zeros(len(idx), n, dtype=x.dtype, device=x.device)
            e[torch.arange(len(idx), device=x.device), idx] = 1
            cols = _jvp(forward, x, e.reshape(len(idx), *x.shape))  # (b, *D): columns A e_i
            out[idx] = (cols.pow(2) * weights).reshape(len(idx), -1).sum(1).detach()
        return out.reshape(x.shape)
    if method == "hutchinson":

        def gauss_newton(z: torch.Tensor) -> torch.Tensor:
            xs = x.unsqueeze(0).expand_as(z).contiguous()
            jz = torch.func.jvp(forward, (xs,), (z,))[1]  # J z (forward mode), then Jᵀ (W J z) (reverse)
            _, vjp = torch.func.vjp(forward, xs)
            return vjp(weights * jz)[0]

        est = hutchinson_diagonal(gauss_newton, x.shape, x.dtype, max_probes, batch, rtol, generator, x.device)
        # F_L >= 0 by definition; a Hutchinson estimate of a tiny diagonal can come out negative
        # (clamping biases those pixels' estimates upwards by at most their noise)
        return est.diagonal.clamp_min(0)
    raise ValueError(f"fisher_diag_likelihood: method must be 'exact' or 'hutchinson', got {method!r}")


def fisher_diag_prior(
    score_fn: BatchFn,
    x: torch.Tensor,
    weight: float = 1.0,
    method: str = "auto",
    max_probes: int = 2000,
    batch: int = 100,
    rtol: float = 1e-6,
    generator: torch.Generator | None = None,
    exact_max_pixels: int = 4096,
) -> DiagonalEstimate:
    """``F_P = -λ diag ∂s/∂x`` of a prior with score ``s`` at ``x`` (``λ = weight``).

    Args:
        score_fn: ``(B, *S) -> (B, *S)``, the prior's score ``∇ log p``.
        x: ``(*S)``, e.g. the MAP reconstruction.
        weight: The prior's weight ``λ`` in the MAP objective.
        method: ``exact`` (one JVP per pixel), ``hutchinson`` (probes with the stopping rule), or
            ``auto``: exact up to ``exact_max_pixels`` pixels.
        max_probes, batch, rtol, generator: Hutchinson settings (:func:`hutchinson_diagonal`).

    Returns:
        The diagonal (float64) and how it was obtained.
    """
    x = _check_x(x, "fisher_diag_prior")
    if not weight >= 0:
        raise ValueError(f"fisher_diag_prior: weight (the prior's lambda) must be >= 0, got {weight}")
    if method == "auto":
        method = "exact" if x.numel() <= exact_max_pixels else "hutchinson"

    def neg_jac(v: torch.Tensor) -> torch.Tensor:
        return -_jvp(score_fn, x.to(v.dtype), v)

    if method == "exact":
        d = exact_diagonal(neg_jac, x.shape, x.dtype, device=x.device)
        return DiagonalEstimate((weight * d).to(torch.float64), x.numel(), True)
    if method == "hutchinson":
        est = hutchinson_diagonal(neg_jac, x.shape, x.dtype, max_probes, batch, rtol, generator, x.device)
        log.info("F_P: %d probes, last relative change %.2g", est.probes, est.rel_change)
        return DiagonalEstimate(
            (weight * est.diagonal).to(torch.float64),
            est.probes,
            False,
            est.rel_change,
            (weight * est.stderr).to(torch.float64),
        )
    raise ValueError(f"fisher_diag_prior: method must be 'auto', 'exact' or 'hutchinson', got {method!r}")


@dataclass(frozen=True)
class HallucinationMap:
    """Per-pixel comparison of prior and likelihood information.

    Attributes:
        fisher_likelihood: ``F_L`` ``(*S)``.
        fisher_prior: ``F_P`` ``(*S)`` (already multiplied by the prior's weight ``λ``).
        delta: ``ΔF = F_P - F_L``: > 0 where the prior dominates (hallucination-prone).
        prior_fraction: ``r = F_P / (F_P + F_L)`` in ``[0, 1]`` (a negative ``F_P`` estimate,
            possible for a network's score, is clipped to 0; where neither term carries any
            information, ``r = 1/2``), so that ``r > 1/2`` exactly where ``ΔF > 0``.
    """

    fisher_likelihood: torch.Tensor
    fisher_prior: torch.Tensor
    delta: torch.Tensor
    prior_fraction: torch.Tensor

    @property
    def prior_dominated(self) -> torch.Tensor:
        """Boolean ``(*S)``: ``ΔF > 0``."""
        return self.delta > 0


def hallucination_map(fisher_likelihood: torch.Tensor, fisher_prior: torch.Tensor) -> HallucinationMap:
    """``ΔF`` and ``r`` from the two diagonals (same shape).

    Raises:
        ValueError: Shapes differ or ``F_L`` is negative (it is a sum of squares).
    """
    fl = torch.as_tensor(fisher_likelihood, dtype=torch.float64)
    fp = torch.as_tensor(fisher_prior, dtype=torch.float64)
    if fl.shape != fp.shape:
        raise ValueError(f"hallucination_map: F_L {tuple(fl.shape)} and F_P {tuple(fp.shape)} differ in shape")
    if (fl < 0).any():
        raise ValueError("hallucination_map: F_L has negative values; it must be diag(Jᵀ W J) >= 0")
    fpc = fp.clamp_min(0)
    total = fpc + fl
    r = torch.where(total > 0, fpc / total.clamp_min(1e-300), torch.full_like(total, 0.5))
    return HallucinationMap(fl, fp, fp - fl, r)


def source_confidence(
    prior_fraction: torch.Tensor, flux: torch.Tensor, segmentation: torch.Tensor | None = None
) -> torch.Tensor:
    """Flux-weighted share of the likelihood, ``Σ |x_i| (1 - r_i) / Σ |x_i|``, per source.

    1 means every bright pixel of the source is decided by the data; 0 that the prior made
    it up.

    Args:
        prior_fraction: ``r`` ``(*S)``.
        flux: The reconstruction ``(*S)``.
        segmentation: Integer labels ``(*S)`` (0 = background, ``k`` = source ``k``); default
            one source covering every pixel.

    Returns:
        ``(K,)`` confidences for labels ``1..K`` (``(1,)`` without a segmentation).
    """
    r = torch.as_tensor(prior_fraction, dtype=torch.float64)
    f = torch.as_tensor(flux, dtype=torch.float64).abs()
    if r.shape != f.shape:
        raise ValueError(f"source_confidence: r {tuple(r.shape)} and flux {tuple(f.shape)} differ in shape")
    seg = torch.ones_like(r, dtype=torch.long) if segmentation is None else torch.as_tensor(segmentation).long()
    if seg.shape != r.shape:
        raise ValueError(f"source_confidence: segmentation {tuple(seg.shape)} differs from r {tuple(r.shape)}")
    k = int(seg.max()) if seg.numel() else 0
    num = torch.zeros(k + 1, dtype=torch.float64).index_add_(0, seg.flatten(), (f * (1 - r)).flatten())
    den = torch.zeros(k + 1, dtype=torch.float64).index_add_(0, seg.flatten(), f.flatten())
    return (num / den.clamp_min(1e-300))[1:]
