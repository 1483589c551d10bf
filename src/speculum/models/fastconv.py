"""Fast exact kernels for the encoder's Conv1d -> InstanceNorm -> PReLU -> MaxPool blocks.

The reference computes each block as four full-resolution passes. Here the same
mathematics is rearranged, without approximation beyond float rounding:

1. **Tiled real-DFT convolution.** The output is cut into tiles of ``m`` positions; each
   tile needs ``n = m + k - 1`` inputs. A real DFT of size ``n`` (a GEMM with a fixed
   ``n x n`` matrix) turns the ``k``-tap correlation into one complex channel mix per
   frequency, four real GEMMs of ``(B T, C_in) x (C_in, C_out)`` over ``~n/2`` bins, i.e.
   ``~2n/m`` multiply-adds per output instead of ``k``: 3.4x fewer for ``k = 11``
   (``m = 22``) and 7x fewer for ``k = 21``. Narrow inputs (``C_in <= 4``, the first
   block) use a Toeplitz GEMM instead.
2. **Bias dropped.** A per-channel constant before InstanceNorm cancels exactly.
3. **Pool first, normalise after.** InstanceNorm is an increasing affine map per channel
   and PReLU is monotone on each side of zero, so
   ``max_w prelu(norm(y)) = max(prelu(norm(max_w y)), prelu(norm(min_w y)))``; only the
   pooled values (5x / 11x fewer) are normalised and activated. The statistics of the
   full-resolution output are computed once, exactly (grouped Welford merge).

Tiles are aligned with pooling windows (``m`` is a multiple of the pool size) so the
pool is a reshape + ``amax`` on the GEMM output, with no transposition of the
full-resolution tensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

__all__ = ["BlockGeometry", "block_forward", "weight_transform"]


@dataclass(frozen=True)
class BlockGeometry:
    """Tiling of one encoder block for an input of length ``length``."""

    length: int  # L, conv output length (= input length, 'same' padding)
    kernel: int  # k, odd
    pool: int  # p; 1 = no pooling
    c_in: int
    c_out: int
    tile: int  # m, outputs per tile (multiple of pool)
    n_tiles: int  # T
    mode: str  # "dft" or "toeplitz"

    @property
    def offset(self) -> int:
        """Position of the first tile output (``-offset``), aligned to pool windows."""
        return self.pool // 2

    @property
    def n_pooled(self) -> int:
        """Number of pooled outputs, as ``MaxPool1d(p, p, padding=p // 2)`` gives."""
        if self.pool == 1:
            return self.length
        return (self.length + 2 * self.offset - self.pool) // self.pool + 1

    @property
    def span(self) -> int:
        """``n``: inputs per tile."""
        return self.tile + self.kernel - 1

    @staticmethod
    def choose(length: int, kernel: int, pool: int, c_in: int, c_out: int) -> BlockGeometry:
        """Pick the tile size with the fewest estimated FLOPs."""
        if kernel % 2 != 1:
            raise ValueError(f"kernel: expected an odd kernel size, got {kernel}")
        off = pool // 2
        n_pooled = length if pool == 1 else (length + 2 * off - pool) // pool + 1
        cover = max(length + off, n_pooled * pool)
        if c_in <= 4:
            m = pool if pool > 1 else min(length, 16)
            return BlockGeometry(length, kernel, pool, c_in, c_out, m, math.ceil(cover / m), "toeplitz")
        best = None
        candidates = [pool * r for r in range(1, 65)] if pool > 1 else [length] + [8 * r for r in range(1, 33)]
        for m in candidates:
            n = m + kernel - 1
            t = math.ceil(cover / m)
            cost = t * (4 * c_in * c_out * n + 2 * n * n * c_in + 2 * m * n * c_out)
            if n <= 256 and (best is None or cost < best[0]):
                best = (cost, m, t)
        _, m, t = best
        return BlockGeometry(length, kernel, pool, c_in, c_out, m, t, "dft")


@lru_cache(maxsize=64)
def _dft_matrices(n: int, m: int, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Real DFT of size ``n`` as matrices (float64).

    Returns ``(fwd (n, n), inv (m, n), cos_w (k, F), sin_w (k, F))``. Rows of the
    transformed data are ``[Re_0 .. Re_{F-1}, Im_1 .. Im_{F_i}]`` with ``F = n // 2 + 1``
    and ``F_i = F - 1 - (n even)``.
    """
    nf = n // 2 + 1
    ni = nf - 1 - (1 - n % 2)
    j = torch.arange(n, dtype=torch.float64)
    f = torch.arange(nf, dtype=torch.float64)
    ang = 2 * math.pi * f[:, None] * j[None, :] / n  # (F, n)
    fwd = torch.cat([torch.cos(ang), -torch.sin(ang[1 : 1 + ni])])  # (n, n)
    c = torch.full((nf,), 2.0, dtype=torch.float64)
    c[0] = 1.0
    if n % 2 == 0:
        c[-1] = 1.0
    u = torch.arange(m, dtype=torch.float64)
    ang_u = 2 * math.pi * u[:, None] * f[None, :] / n  # (m, F)
    inv = torch.cat([c * torch.cos(ang_u), -(c * torch.sin(ang_u))[:, 1 : 1 + ni]], dim=1) / n
    r = torch.arange(k, dtype=torch.float64)
    ang_w = 2 * math.pi * r[:, None] * f[None, :] / n  # (k, F)
    return fwd, inv, torch.cos(ang_w), torch.sin(ang_w)


def weight_transform(weight: torch.Tensor, g: BlockGeometry) -> tuple[torch.Tensor, ...]:
    """Per-call transform of a conv weight ``(C_out, C_in, k)`` for :func:`block_forward`.

    Toeplitz mode: one ``(C_in n, m C_out)`` matrix. DFT mode: the real and imaginary
    parts of ``conj(DFT(w))``, ``(F, C_in, C_out)`` each. Compute it once per forward pass
    and share it between batch chunks (it is differentiable).
    """
    n, m, k = g.span, g.tile, g.kernel
    if g.mode == "toeplitz":
        wt = weight.permute(1, 2, 0)  # (C_in, k, C_out)
        toep = torch.stack([F.pad(wt, (0, 0, u, n - k - u)) for u in range(m)], dim=2)  # (C_in, n, m, C_out)
        return (toep.reshape(g.c_in * n, m * g.c_out),)
    _, _, cos_w, sin_w = _dft_matrices(n, m, k)
    nf = n // 2 + 1
    w = weight.permute(2, 1, 0).reshape(k, -1)  # (k, C_in*C_out)
    wr = (cos_w.to(weight).T @ w).view(nf, g.c_in, g.c_out)
    wi = (sin_w.to(weight).T @ w).view(nf, g.c_in, g.c_out)
    return wr, wi


def _tiled_conv(x: torch.Tensor, wf: tuple[torch.Tensor, ...], g: BlockGeometry) -> torch.Tensor:
    """Correlation ``y[p] = sum_r w[r] x[p + r - k//2]`` at tile positions.

    Args:
        x: Input, channels last, shape ``(B, L, C_in)``.
        wf: :func:`weight_transform` of the conv weight ``(C_out, C_in, k)``.

    Returns:
        Outputs, shape ``(m, B, T, C_out)``; entry ``[u, b, t]`` is position
        ``t * m - offset + u`` (positions outside ``[0, L)`` are garbage to be ignored).
    """
    b = x.shape[0]
    m, t, n, k = g.tile, g.n_tiles, g.span, g.kernel
    left = g.offset + k // 2
    right = (t - 1) * m + n - left - g.length
    xp = F.pad(x, (0, 0, left, max(right, 0)))
    tiles = xp.unfold(1, n, m)  # (B, T, C_in, n) view
    if g.mode == "toeplitz":
        y = tiles.reshape(b * t, g.c_in * n) @ wf[0]
        return y.view(b, t, m, g.c_out).permute(2, 0, 1, 3)
    fwd, inv, _, _ = (a.to(x) for a in _dft_matrices(n, m, k))
    nf = n // 2 + 1
    ni = n - nf
    xt = tiles.permute(3, 0, 1, 2).reshape(n, b * t * g.c_in)  # explicit sizes: B may be 0
    xf = (fwd @ xt).view(n, b * t, g.c_in)
    xr, xi = xf[:nf], xf[nf:]
    # correlation theorem: Y_f = X_f conj(W_f), four real GEMMs per complex bin
    wr, wi = wf[0], wf[1][1 : 1 + ni]
    p = torch.bmm(xr, wr)
    yr = torch.cat([p[:1], torch.baddbmm(p[1 : 1 + ni], xi, wi, alpha=-1), p[1 + ni :]])
    yi = torch.baddbmm(torch.bmm(xr[1 : 1 + ni], wi), xi, wr[1 : 1 + ni])
    y = inv @ torch.cat([yr, yi]).view(n, b * t * g.c_out)  # (m, B*T*C_out)
    return y.view(m, b, t, g.c_out)


def _valid_counts(g: BlockGeometry) -> list[tuple[int, int, int, int]]:
    """Runs of tiles with the same valid range ``[u0, u1)``: ``(t0, t1, u0, u1)``."""
    runs: list[tuple[int, int, int, int]] = []
    for t in range(g.n_tiles):
        start = t * g.tile - g.offset
        u0 = min(max(0, -start), g.tile)
        u1 = max(min(g.tile, g.length - start), u0)
        if u1 <= u0:
            continue
        if runs and runs[-1][1] == t and runs[-1][2:] == (u0, u1):
            runs[-1] = (runs[-1][0], t + 1, u0, u1)
        else:
            runs.append((t, t + 1, u0, u1))
    return runs


def _moments(y: torch.Tensor, g: BlockGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and biased variance over the ``L`` valid positions: ``(B, C)`` each."""
    groups = []
    for t0, t1, u0, u1 in _valid_counts(g):
        part = y[u0:u1, :, t0:t1]
        count = (u1 - u0) * (t1 - t0)
        mean = part.sum(dim=(0, 2)) / count  # two passes: faster than var_mean on these strides
        var = (part - mean[None, :, None]).square().sum(dim=(0, 2)) / count
        groups.append((count, mean, var))
    return _merge(groups)


def _merge(groups: list[tuple[int, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine ``(count, mean, var)`` of disjoint groups (Chan et al. 1979)."""
    if len(groups) == 1:
        return groups[0][1], groups[0][2]
    total = sum(c for c, _, _ in groups)
    mean = sum(c * mu for c, mu, _ in groups) / total
    var = sum(c * (v + (mu - mean) ** 2) for c, mu, v in groups) / total
    return mean, var


def _toeplitz_moments(x: torch.Tensor, weight: torch.Tensor, g: BlockGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments of a narrow-input conv from the input's patch mean and covariance.

    ``y = w . patch`` is linear, so ``mean(y) = w . mean(patch)`` and
    ``var(y) = w^T Cov(patch) w``; the ``(C_in k)^2`` covariance is cheap and computed
    in float64, which avoids any cancellation.
    """
    k = g.kernel
    xp = F.pad(x.double(), (0, 0, k // 2, k // 2))
    patches = xp.unfold(1, k, 1).reshape(x.shape[0], g.length, g.c_in * k)  # (B, L, C_in k); B may be 0
    mu = patches.mean(1)
    centred = patches - mu[:, None]
    cov = centred.transpose(1, 2) @ centred / g.length  # (B, Ck, Ck)
    w = weight.double().reshape(weight.shape[0], -1)  # (C_out, Ck)
    mean = mu @ w.T
    var = torch.einsum("ck,bkl,cl->bc", w, cov, w)
    return mean.to(x.dtype), var.to(x.dtype)


def _prelu(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, x, a * x)


def block_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    prelu: torch.Tensor,
    g: BlockGeometry,
    eps: float = 1e-5,
    wf: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """``MaxPool(PReLU(InstanceNorm(Conv1d(x))))`` with bias-free conv, channels last.

    Args:
        x: Input, shape ``(B, L, C_in)``.
        weight: Conv weight, shape ``(C_out, C_in, k)``.
        prelu: PReLU slopes, shape ``(C_out,)``.
        g: Geometry from :meth:`BlockGeometry.choose`.
        eps: InstanceNorm epsilon.
        wf: :func:`weight_transform` of ``weight`` (computed here if ``None``).

    Returns:
        Block output, shape ``(B, L_pooled, C_out)``.
    """
    y = _tiled_conv(x, weight_transform(weight, g) if wf is None else wf, g)  # (m, B, T, C)
    mean, var = _toeplitz_moments(x, weight, g) if g.mode == "toeplitz" else _moments(y, g)
    rstd = torch.rsqrt(var + eps)
    m, b, t, c = y.shape
    if g.pool == 1:
        z = (y - mean.view(1, b, 1, c)) * rstd.view(1, b, 1, c)
        out = _prelu(z, prelu).permute(1, 2, 0, 3).reshape(b, t * m, c)
        return out[:, : g.length]
    p, r, lq = g.pool, g.tile // g.pool, g.n_pooled
    yv = y.view(r, p, b, t, c)
    need_min = bool((prelu < 0).any())

    def window(reduce, j: int) -> torch.Tensor:
        # pooled window j over its positions inside [0, L) only (the first and last may reach outside)
        start = j * p - g.offset
        lo, hi = max(start, 0), min(start + p, g.length)
        tile, u = divmod(lo + g.offset, m)  # windows never straddle tiles (m is a multiple of p)
        return reduce(y[u : u + hi - lo, :, tile], dim=0)[:, None]

    def pooled(reduce) -> torch.Tensor:
        if lq == 1:  # a single window: it is both the first and the last
            return window(reduce, 0)
        out = reduce(yv, dim=1).permute(1, 2, 0, 3).reshape(b, t * r, c)[:, :lq]
        return torch.cat([window(reduce, 0), out[:, 1:-1], window(reduce, lq - 1)], dim=1)

    hi = _prelu((pooled(torch.amax) - mean[:, None]) * rstd[:, None], prelu)
    if not need_min:
        return hi
    lo = _prelu((pooled(torch.amin) - mean[:, None]) * rstd[:, None], prelu)
    return torch.maximum(hi, lo)
