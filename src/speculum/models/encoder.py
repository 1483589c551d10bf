"""SPENDER spectrum encoder: three conv blocks, attention over wavelength, MLP to latents."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from speculum.models.fastconv import BlockGeometry, block_forward, weight_transform
from speculum.models.layers import MLP

__all__ = ["SpectrumEncoder", "inpaint_masked"]


def inpaint_masked(flux: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Replace zero-weight pixels by linear interpolation between valid neighbours.

    Edges take the nearest valid value; a spectrum without valid pixels becomes zeros.
    Valid pixels are returned unchanged, so the result does not depend on the flux of
    masked pixels.

    Args:
        flux: Spectra, shape ``(N, L)``.
        weights: Weights, shape ``(N, L)``; ``> 0`` marks valid pixels.

    Returns:
        In-painted spectra, shape ``(N, L)``.

    Example:
        >>> inpaint_masked(torch.tensor([[1.0, 99.0, 3.0]]), torch.tensor([[1.0, 0.0, 1.0]]))
        tensor([[1., 2., 3.]])
    """
    valid = weights > 0
    if bool(valid.all()):
        return flux
    n, length = flux.shape
    idx = torch.arange(length, device=flux.device).expand(n, -1)
    prev = torch.where(valid, idx, -1).cummax(dim=1).values
    nxt = torch.where(valid, idx, length).flip(1).cummin(dim=1).values.flip(1)
    y_prev = flux.gather(1, prev.clamp(min=0))
    y_next = flux.gather(1, nxt.clamp(max=length - 1))
    span = (nxt - prev).clamp(min=1).to(flux.dtype)
    t = ((idx - prev).to(flux.dtype) / span).clamp(0, 1)
    filled = torch.where(prev < 0, y_next, torch.where(nxt >= length, y_prev, y_prev + t * (y_next - y_prev)))
    filled = torch.where(valid.any(dim=1, keepdim=True), filled, torch.zeros_like(filled))
    return torch.where(valid, flux, filled)


class ConvBlock(nn.Module):
    """``Conv1d (no bias) -> InstanceNorm -> PReLU [-> MaxPool]``.

    The conv bias of the reference is omitted: InstanceNorm removes any per-channel
    constant, so it has no effect on the output.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, pool: int) -> None:
        super().__init__()
        self.kernel, self.pool = kernel, pool
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # torch's Conv1d default
        self.prelu = nn.PReLU(c_out)
        self._geometry: dict[int, BlockGeometry] = {}

    def forward_direct(self, x: torch.Tensor) -> torch.Tensor:
        """Reference order of operations, ``(B, C_in, L) -> (B, C_out, L')``."""
        y = F.conv1d(x, self.weight, padding=self.kernel // 2)
        # one position: mean = y and variance 0, so the normalised value is exactly 0
        # (F.instance_norm refuses a single spatial element)
        y = self.prelu(F.instance_norm(y) if y.shape[-1] > 1 else y - y)
        return F.max_pool1d(y, self.pool, self.pool, padding=self.pool // 2) if self.pool > 1 else y

    def geometry(self, length: int) -> BlockGeometry:
        """Tiling for inputs of ``length`` pixels (cached)."""
        g = self._geometry.get(length)
        if g is None:
            c_out, c_in, _ = self.weight.shape
            g = self._geometry[length] = BlockGeometry.choose(length, self.kernel, self.pool, c_in, c_out)
        return g

    def forward_fast(self, x: torch.Tensor, wf: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Same mathematics, channels last, ``(B, L, C_in) -> (B, L', C_out)``."""
        return block_forward(x, self.weight, self.prelu.weight, self.geometry(x.shape[1]), wf=wf)


class SpectrumEncoder(nn.Module):
    """Encode observed spectra ``(N, L)`` into latents ``(N, S)`` (Melchior et al. 2023).

    Three conv blocks (channels 128/256/512, kernels 5/11/21, max-pools 5 and 11), the
    last block's channels split into values ``h`` and keys ``a``; attention
    ``e_c = sum_t h_ct softmax_t(a_ct)``; an MLP with PReLU maps ``e`` to ``S`` latents.

    Args:
        n_latent: Latent dimension ``S``.
        channels: Conv channels of the three blocks.
        kernels: Conv kernel sizes.
        pools: Max-pool sizes after blocks one and two.
        hidden: MLP widths.
        mask_aware: In-paint zero-weight pixels (see :func:`inpaint_masked`).
        backend: ``"fast"`` (tiled DFT convolutions, default) or ``"direct"`` (the
            reference order of operations; slower, used to test the fast one).
        chunk_size: Spectra per chunk in the fast backend; keeps activations in cache.
    """

    def __init__(
        self,
        n_latent: int,
        channels: tuple[int, int, int] = (128, 256, 512),
        kernels: tuple[int, int, int] = (5, 11, 21),
        pools: tuple[int, int] = (5, 11),
        hidden: tuple[int, ...] = (128, 64, 32),
        mask_aware: bool = True,
        backend: Literal["fast", "direct"] = "fast",
        chunk_size: int = 16,
    ) -> None:
        super().__init__()
        self.n_latent = n_latent
        self.mask_aware = mask_aware
        self.backend = backend
        self.chunk_size = chunk_size
        c_in = (1, channels[0], channels[1])
        self.blocks = nn.ModuleList(ConvBlock(c_in[i], channels[i], kernels[i], (*pools, 1)[i]) for i in range(3))
        self.n_feature = channels[2] // 2

        def act(width: int, last: bool) -> nn.Module:
            return nn.Identity() if last else nn.PReLU(width)

        self.mlp = MLP(self.n_feature, n_latent, hidden, act)

    def features(self, y: torch.Tensor) -> torch.Tensor:
        """Attended features ``e``, shape ``(N, C/2)``, from model-ready spectra ``(N, L)``."""
        if self.backend == "direct":
            x = y[:, None, :]
            for block in self.blocks:
                x = block.forward_direct(x)
            h, a = x.split(self.n_feature, dim=1)
            return (h * torch.softmax(a, dim=-1)).sum(-1)
        # geometry and transformed weights once per call, shared by all chunks
        lengths, length = [], y.shape[1]
        for block in self.blocks:
            lengths.append(length)
            length = block.geometry(length).n_pooled
        wfs = [weight_transform(b.weight, b.geometry(n)) for b, n in zip(self.blocks, lengths, strict=True)]
        out = []
        for chunk in y.split(self.chunk_size):
            x = chunk[:, :, None]
            for block, wf in zip(self.blocks, wfs, strict=True):
                x = block.forward_fast(x, wf)
            h, a = x.split(self.n_feature, dim=2)
            out.append((h * torch.softmax(a, dim=1)).sum(1))
        return torch.cat(out)

    def forward(self, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """Latents of spectra.

        Args:
            y: Normalised spectra, shape ``(N, L)``.
            w: Weights (inverse variance x mask), shape ``(N, L)``. With
                ``mask_aware``, pixels with ``w == 0`` do not influence the result.

        Returns:
            Latents, shape ``(N, S)``.
        """
        if self.mask_aware and w is not None:
            y = inpaint_masked(y, w)
        return self.mlp(self.features(y))
