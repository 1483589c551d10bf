"""The linear-Gaussian inpainting problem: every Fisher diagonal in closed form.

A ``size × size`` scene ``x ~ N(0, Σ)`` with a squared-exponential covariance
``Σ_ij = a² exp(-|p_i - p_j|² / 2ℓ²) + ν a² δ_ij`` (a small "nugget" ``ν`` keeps it well
conditioned), observed as ``y = A x + n``: ``A`` a Gaussian PSF convolution, ``n`` white noise
of standard deviation ``noise``, and the right half of the image masked (weight 0). Then
``F_L = diag(Aᵀ W A)``, ``F_P = λ diag(Σ⁻¹)`` and the posterior precision is
``Aᵀ W A + λ Σ⁻¹`` exactly; :class:`GaussianInpainting` gives them from dense matrices,
built pixel by pixel, independently of the convolution code the estimators use.

The defaults (16 × 16, ℓ = 2 px, ν = 0.1, PSF σ = 1 px, noise 0.05) put the likelihood in
charge of every observed pixel (``ΔF < 0``) and the prior in charge of every masked pixel
two PSF widths or more from the observed half (``ΔF > 0``).

Example:
    >>> p = GaussianInpainting()
    >>> fl, fp = p.fisher_likelihood(), p.fisher_prior()
    >>> bool(((fp - fl)[p.weights() > 0] < 0).all()), bool(((fp - fl)[p.far_from_data()] > 0).all())
    (True, True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from speculum.physics.psf import convolve_psf, gaussian_psf

__all__ = ["GaussianInpainting"]


@dataclass(frozen=True)
class GaussianInpainting:
    """Known-answer problem: Gaussian prior, PSF, noise, right half masked (all float64).

    Attributes:
        size: Image side in pixels.
        length: Correlation length ``ℓ`` of the prior, pixels.
        amplitude: Prior standard deviation ``a`` per pixel (before the nugget).
        nugget: ``ν``: white variance added, relative to ``a²``.
        psf_sigma: Gaussian PSF standard deviation, pixels.
        noise: Noise standard deviation per observed pixel.
        prior_weight: ``λ`` of the MAP objective ``-log L - λ log p``.
    """

    size: int = 16
    length: float = 2.0
    amplitude: float = 1.0
    nugget: float = 0.1
    psf_sigma: float = 1.0
    noise: float = 0.05
    prior_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.size < 4:
            raise ValueError(f"GaussianInpainting.size must be >= 4, got {self.size}")
        for name in ("length", "amplitude", "nugget", "psf_sigma", "noise"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GaussianInpainting.{name} must be > 0, got {getattr(self, name)}")
        if not self.prior_weight >= 0:
            raise ValueError(f"GaussianInpainting.prior_weight must be >= 0, got {self.prior_weight}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def psf(self) -> torch.Tensor:
        """``(h, h)`` PSF kernel (:func:`speculum.physics.gaussian_psf`)."""
        return gaussian_psf(self.psf_sigma)

    def weights(self) -> torch.Tensor:
        """``(H, W)`` inverse variances: ``1/noise²`` on the left half, 0 on the masked right half."""
        w = torch.full(self.shape, self.noise**-2, dtype=torch.float64)
        w[:, self.size // 2 :] = 0
        return w

    def far_from_data(self, widths: float = 2.0) -> torch.Tensor:
        """``(H, W)`` boolean: masked pixels at least ``widths`` PSF sigmas from every observed pixel."""
        col = torch.arange(self.size, dtype=torch.float64).expand(self.shape)
        return col - (self.size // 2 - 1) >= widths * self.psf_sigma

    def covariance(self) -> torch.Tensor:
        """``(D, D)`` prior covariance ``Σ`` (``D = size²``, row-major pixels)."""
        yy, xx = torch.meshgrid(torch.arange(self.size), torch.arange(self.size), indexing="ij")
        p = torch.stack([yy.flatten(), xx.flatten()], 1).to(torch.float64)
        d2 = (p[:, None] - p[None]).pow(2).sum(-1)
        a2 = self.amplitude**2
        return a2 * torch.exp(-d2 / (2 * self.length**2)) + self.nugget * a2 * torch.eye(len(p), dtype=torch.float64)

    def precision(self) -> torch.Tensor:
        """``(D, D)`` ``Σ⁻¹``."""
        return torch.linalg.inv(self.covariance())

    def matrix(self) -> torch.Tensor:
        """``(D, D)`` dense forward operator ``A`` (zero-padded "same" PSF convolution), pixel by pixel."""
        k = self.psf()
        h = k.shape[0] // 2
        n = self.size
        a = torch.zeros(n * n, n * n, dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                for di in range(-h, h + 1):
                    for dj in range(-h, h + 1):
                        si, sj = i - di, j - dj  # output (i, j) receives scene (si, sj) through k[h+di, h+dj]
                        if 0 <= si < n and 0 <= sj < n:
                            a[i * n + j, si * n + sj] = k[h + di, h + dj]
        return a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A x`` for ``(*, H, W)`` scenes (the convolution the estimators differentiate)."""
        return convolve_psf(x, self.psf())

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The prior's score ``-Σ⁻¹ x`` for ``(B, H, W)`` scenes, by a Cholesky solve with ``Σ``
        (not through :meth:`precision`, so that estimators of ``F_P`` are checked against an
        independent route to ``diag Σ⁻¹``)."""
        chol = torch.linalg.cholesky(self.covariance().to(x.dtype))
        return -torch.cholesky_solve(x.reshape(len(x), -1).T, chol).T.reshape(x.shape)

    def fisher_likelihood(self) -> torch.Tensor:
        """Analytic ``F_L = diag(Aᵀ W A)`` ``(H, W)`` from the dense ``A``."""
        a = self.matrix()
        return (a.pow(2) * self.weights().flatten()[:, None]).sum(0).reshape(self.shape)

    def fisher_prior(self) -> torch.Tensor:
        """Analytic ``F_P = λ diag(Σ⁻¹)`` ``(H, W)``."""
        return self.prior_weight * self.precision().diagonal().reshape(self.shape)

    def posterior_precision(self) -> torch.Tensor:
        """``(D, D)`` ``Aᵀ W A + λ Σ⁻¹``: the Hessian of ``-log L - λ log p``."""
        a = self.matrix()
        return a.T @ (self.weights().flatten()[:, None] * a) + self.prior_weight * self.precision()

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` scenes from the prior and their noisy observations, ``(n, H, W)`` each (masked pixels 0)."""
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        chol = torch.linalg.cholesky(self.covariance())
        x = (torch.randn(n, self.size**2, generator=gen, dtype=torch.float64) @ chol.T).reshape(n, *self.shape)
        y = self.forward(x) + self.noise * torch.randn(x.shape, generator=gen, dtype=torch.float64)
        return x, y * (self.weights() > 0)

    def map_estimate(self, y: torch.Tensor) -> torch.Tensor:
        """The exact MAP (= posterior mean) of ``(n, H, W)`` observations."""
        a, w = self.matrix(), self.weights().flatten()
        rhs = (y.reshape(len(y), -1) * w) @ a
        return torch.linalg.solve(self.posterior_precision(), rhs.T).T.reshape(y.shape)
