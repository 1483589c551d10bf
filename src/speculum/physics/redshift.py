"""Redshift and linear resampling of restframe models onto observed grids."""

from __future__ import annotations

import math

import torch

from speculum._checks import check_grid, check_shape

__all__ = ["interp_linear", "redshift_grid", "resample_log_uniform", "resample_to_observed"]


def redshift_grid(wave_rest: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Observed wavelengths of restframe pixels, ``lambda_obs = lambda_rest (1 + z)``.

    Args:
        wave_rest: Restframe grid, shape ``(L_rest,)``, Angstrom.
        z: Redshifts, shape ``(N,)``.

    Returns:
        Redshifted grids, shape ``(N, L_rest)``.

    Example:
        >>> redshift_grid(torch.tensor([5000.0]), torch.tensor([0.0, 0.1]))
        tensor([[5000.],
                [5500.]])
    """
    check_shape(z, "z", (None,))
    return wave_rest[None, :] * (1 + z[:, None])


def interp_linear(x: torch.Tensor, y: torch.Tensor, x_new: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of ``y(x)`` at ``x_new``, batched.

    Outside ``[x[0], x[-1]]`` the first/last interval is extrapolated; callers that need
    zeros there (e.g. :func:`resample_to_observed`) mask it themselves.

    Args:
        x: Sorted nodes, shape ``(N, L)`` or ``(L,)``.
        y: Values, shape ``(N, L)``.
        x_new: Sorted query points, shape ``(M,)`` or ``(N, M)``.

    Returns:
        Interpolated values, shape ``(N, M)``, dtype of ``y``.
    """
    n = y.shape[0]
    x = x.expand(n, -1) if x.ndim == 1 else x
    x_new = x_new.expand(n, -1) if x_new.ndim == 1 else x_new
    dtype = torch.promote_types(x.dtype, x_new.dtype)
    idx = torch.searchsorted(x.to(dtype).contiguous(), x_new.to(dtype).contiguous()) - 1
    idx = idx.clamp_(0, x.shape[1] - 2)
    x0 = x.gather(1, idx)
    x1 = x.gather(1, idx + 1)
    y0 = y.gather(1, idx)
    y1 = y.gather(1, idx + 1)
    t = ((x_new - x0) / (x1 - x0)).to(y.dtype)
    return y0 + t * (y1 - y0)


def resample_to_observed(
    model_rest: torch.Tensor,
    wave_rest: torch.Tensor,
    z: torch.Tensor,
    wave_obs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Redshift restframe models and resample them linearly onto an observed grid.

    Observed pixels outside the redshifted restframe range
    ``(wave_rest[0] (1+z), wave_rest[-1] (1+z))`` get a model of exactly zero and are
    reported as invalid, so a loss must give them zero weight.

    Args:
        model_rest: Restframe models, shape ``(N, L_rest)``.
        wave_rest: Restframe grid, shape ``(L_rest,)``, strictly increasing, Angstrom.
        z: Redshifts, shape ``(N,)``.
        wave_obs: Observed grid, shape ``(L,)``, strictly increasing, Angstrom.

    Returns:
        ``(model_obs, valid)``: shape ``(N, L)`` each; ``valid`` is boolean.

    Example:
        >>> wave_rest = torch.linspace(4000.0, 6000.0, 2001)
        >>> line = torch.exp(-0.5 * ((wave_rest - 5000) / 2.0) ** 2)[None]
        >>> wave_obs = torch.linspace(5000.0, 7000.0, 4001)
        >>> obs, valid = resample_to_observed(line, wave_rest, torch.tensor([0.2]), wave_obs)
        >>> float(wave_obs[obs[0].argmax()])
        6000.0
    """
    check_shape(model_rest, "model_rest", (None, wave_rest.shape[0]))
    check_shape(z, "z", (model_rest.shape[0],))
    check_grid(wave_rest, "wave_rest")
    check_grid(wave_obs, "wave_obs")
    wave_z = redshift_grid(wave_rest, z.to(wave_rest.dtype))
    model_obs = interp_linear(wave_z, model_rest, wave_obs)
    valid = (wave_obs[None, :] > wave_z[:, :1]) & (wave_obs[None, :] < wave_z[:, -1:])
    return model_obs * valid, valid


def resample_log_uniform(
    model_rest: torch.Tensor,
    log_start: float,
    log_step: float,
    z: torch.Tensor,
    wave_obs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`resample_to_observed` for a restframe grid ``10 ** (log_start + log_step * i)``.

    The same linear interpolation and validity rule, but the bracketing restframe pixel
    is computed directly instead of searched for (several times faster for simulators).

    Args:
        model_rest: Restframe models, shape ``(N, L_rest)``.
        log_start: ``log10`` of the first restframe wavelength (Angstrom).
        log_step: Step of the grid in ``log10``.
        z: Redshifts, shape ``(N,)``.
        wave_obs: Observed grid, shape ``(L,)``, strictly increasing, Angstrom.

    Returns:
        ``(model_obs, valid)``: shape ``(N, L)`` each.
    """
    check_shape(z, "z", (model_rest.shape[0],))
    check_grid(wave_obs, "wave_obs")
    n_rest, n_obs = model_rest.shape[1], wave_obs.shape[0]
    base = (torch.log10(wave_obs.double()) - log_start) / log_step
    zshift = (torch.log10(1 + z.double()) / log_step)[:, None]
    ends = 10 ** (log_start + log_step * torch.tensor([0.0, n_rest - 1.0], dtype=torch.float64))
    wave_z = ends[None, :] * (1 + z.double())[:, None]
    valid = (wave_obs.double()[None, :] > wave_z[:, :1]) & (wave_obs.double()[None, :] < wave_z[:, 1:])
    c = math.log(10) * log_step
    ratio = wave_obs[1:].double() / wave_obs[:-1].double()
    if len(ratio) and torch.allclose(ratio, torch.full_like(ratio, 10**log_step), rtol=1e-9, atol=0):
        # observed grid on the same log step: every pixel of a spectrum has the same fractional
        # offset, so the bracketing index is a per-spectrum shift of arange(L)
        shift = base[:1][None, :] - zshift
        k = shift.floor()
        frac = (shift - k).to(model_rest.dtype)
        idx = (k.long() + torch.arange(n_obs)[None, :]).clamp_(0, n_rest - 2)
        t = (torch.expm1(frac * c) / math.expm1(c)).expand(-1, n_obs)
    else:
        pos = base[None, :] - zshift
        idx = pos.floor().long().clamp_(0, n_rest - 2)
        # linear in wavelength, as resample_to_observed: lambda / lambda_i = 10 ** (log_step * frac)
        frac = (pos - idx).to(model_rest.dtype)
        t = torch.expm1(frac * c) / math.expm1(c)
    y0 = model_rest.gather(1, idx)
    y1 = model_rest.gather(1, idx + 1)
    return (y0 + t * (y1 - y0)) * valid, valid
