"""The training objective of the score priors: denoising score matching.

Example:
    >>> import torch
    >>> from speculum.models.score import ScoreConfig, ScoreNet
    >>> net = ScoreNet(ScoreConfig(shape=(16,), arch="mlp", channels=8, levels=1))
    >>> dsm_loss(net, torch.randn(4, 16)).shape
    torch.Size([4])
"""

from __future__ import annotations

import torch

from speculum.models.score import ScoreNet

__all__ = ["dsm_loss"]


def dsm_loss(net: ScoreNet, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising score matching, per row: ``mean ||ε̂(x + σ ε, σ) - ε||²`` with ``σ`` log-uniform.

    This is ``σ² ||s(x̃, σ) + ε/σ||²``, the usual weighting that gives every noise level equal say.

    Args:
        net: The score network.
        x: Clean samples ``(N, *shape)``.

    Returns:
        ``(N,)`` losses.
    """
    cfg = net.config
    u = torch.rand(len(x), generator=generator, dtype=x.dtype, device=x.device)
    sigma = cfg.sigma_min * (cfg.sigma_max / cfg.sigma_min) ** u
    eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    noisy = x + sigma.reshape(-1, *([1] * (x.ndim - 1))) * eps
    return (net(noisy, sigma) - eps).pow(2).flatten(1).mean(1)
