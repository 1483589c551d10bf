"""Small building blocks: the Speculator activation and an MLP."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["MLP", "SpeculatorActivation"]


class SpeculatorActivation(nn.Module):
    """``a(x) = [gamma + (1 - gamma) sigmoid(beta * x)] * x`` (Alsing et al. 2020), ``+1`` optional.

    Args:
        n: Number of features (one ``beta``, ``gamma`` each).
        plus_one: Add one to the output (the decoder's last layer: spectra around 1).

    Example:
        >>> act = SpeculatorActivation(3)
        >>> act(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(self, n: int, plus_one: bool = False) -> None:
        super().__init__()
        self.plus_one = plus_one
        self.beta = nn.Parameter(torch.randn(n))
        self.gamma = nn.Parameter(torch.randn(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to ``x`` of shape ``(*, n)``."""
        y = (self.gamma + (1 - self.gamma) * torch.sigmoid(self.beta * x)) * x
        return y + 1 if self.plus_one else y


class MLP(nn.Sequential):
    """Linear layers with an activation after each: ``[Linear, act] * (len(hidden) + 1)``.

    Args:
        n_in: Input features.
        n_out: Output features.
        hidden: Hidden layer widths.
        activation: ``activation(width, is_last)`` returns the module after each layer.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        hidden: Sequence[int],
        activation: Callable[[int, bool], nn.Module],
    ) -> None:
        widths = [n_in, *hidden, n_out]
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            layers.append(activation(widths[i + 1], i == len(widths) - 2))
        super().__init__(*layers)
