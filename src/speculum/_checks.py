"""Input validation shared by public functions: clear ``ValueError`` messages."""

from __future__ import annotations

import torch

__all__ = ["check_finite", "check_grid", "check_nonnegative", "check_shape"]


def check_shape(x: torch.Tensor, name: str, shape: tuple[int | None | str, ...]) -> None:
    """Require ``x.shape`` to match ``shape`` (``None`` matches any size).

    Raises:
        ValueError: naming ``name``, the expected and the received shape.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    ok = x.ndim == len(shape) and all(
        s is None or isinstance(s, str) or s == d for s, d in zip(shape, x.shape, strict=True)
    )
    if not ok:
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name}: expected shape {expected}, got {tuple(x.shape)}")


def check_finite(x: torch.Tensor, name: str) -> None:
    """Require every element of ``x`` to be finite."""
    if not torch.isfinite(x).all():
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name}: expected finite values, got {n_bad} NaN or inf element(s)")


def check_nonnegative(x: torch.Tensor, name: str) -> None:
    """Require every element of ``x`` to be finite and ``>= 0``."""
    check_finite(x, name)
    if (x < 0).any():
        raise ValueError(
            f"{name}: expected values >= 0 (inverse variance x mask), "
            f"got {int((x < 0).sum())} negative element(s), min {x.min().item():.4g}"
        )


def check_grid(wave: torch.Tensor, name: str) -> None:
    """Require a 1-D, finite, strictly increasing wavelength grid (Angstrom)."""
    check_shape(wave, name, (None,))
    check_finite(wave, name)
    if wave.numel() < 2 or not (wave[1:] > wave[:-1]).all():
        raise ValueError(f"{name}: expected a strictly increasing wavelength grid, got a non-increasing one")
