"""The SPENDER fidelity loss and reduced chi-square."""

from __future__ import annotations

import torch

from speculum._checks import check_shape

__all__ = ["fiducial_loss", "reduced_chi2"]


def fiducial_loss(y: torch.Tensor, w: torch.Tensor, model: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """``L = sum_i (1/L) sum_lambda 1/2 w_i,lambda (y - model)^2`` (Melchior et al. 2023).

    Args:
        y: Observed spectra, shape ``(N, L)``.
        w: Inverse variance x mask x valid, shape ``(N, L)``; zero-weight pixels are
            ignored even where ``y`` or ``model`` is not finite.
        model: Model spectra, shape ``(N, L)``.
        reduce: Sum over spectra (``True``) or return ``(N,)``.

    Returns:
        Scalar, or per-spectrum losses ``(N,)``.
    """
    check_shape(w, "w", tuple(y.shape))
    check_shape(model, "model", tuple(y.shape))
    resid = torch.where(w > 0, y - model, torch.zeros_like(y))
    per = (0.5 * w * resid**2).sum(dim=1) / y.shape[1]
    return per.sum() if reduce else per


def reduced_chi2(y: torch.Tensor, w: torch.Tensor, model: torch.Tensor, n_params: int = 0) -> torch.Tensor:
    """``chi^2 / (n_valid - n_params)`` per spectrum, shape ``(N,)`` (``NaN`` if no dof)."""
    check_shape(w, "w", tuple(y.shape))
    resid = torch.where(w > 0, y - model, torch.zeros_like(y))
    chi2 = (w * resid**2).sum(dim=1)
    dof = (w > 0).sum(dim=1) - n_params
    return torch.where(dof > 0, chi2 / dof.clamp(min=1), torch.full_like(chi2, float("nan")))
