"""Noise-conditional score networks: learned priors ``∇ log p_σ(x)`` for images and spectra.

A :class:`ScoreNet` predicts the noise ``ε̂(x̃, σ)`` in ``x̃ = x + σ ε`` and returns the score of
the noise-smoothed density, ``s(x, σ) = -ε̂(x, σ) / σ`` (denoising score matching, Vincent 2011;
Song & Ermon 2019). Trained with :func:`speculum.diagnostics.losses.dsm_loss` on ``σ`` log-uniform in
``[sigma_min, sigma_max]``, ``s(x, sigma_min)`` is the prior's score used by a MAP
reconstruction and by the hallucination diagnostic. For Gaussian data ``N(0, Σ)`` the exact
answer is ``s(x, σ) = -(Σ + σ² I)⁻¹ x``.

Architectures: ``unet`` (a compact U-Net, 1-d for spectra ``(N, L)`` or 2-d for images
``(N, H, W)``; each side divisible by ``2**levels``) and ``mlp`` (residual MLP on the
flattened pixels, with a linear skip: for small problems and the Gaussian known answer).
Inputs are divided by the buffer ``scale`` (set from the training data with
:meth:`ScoreNet.standardize_to`), so ``sigma`` is in the data's own units.

Example:
    >>> import torch
    >>> net = ScoreNet(ScoreConfig(shape=(16, 16), channels=8, levels=2, sigma_min=0.01, sigma_max=1.0))
    >>> x = torch.randn(4, 16, 16)
    >>> net.score(x).shape, net(x, torch.full((4,), 0.1)).shape
    (torch.Size([4, 16, 16]), torch.Size([4, 16, 16]))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from speculum.models.registry import register_model

__all__ = ["SCORE_ARCHS", "ScoreConfig", "ScoreNet"]

SCORE_ARCHS = ("unet", "mlp")


@dataclass(frozen=True)
class ScoreConfig:
    """Architecture and noise range of a :class:`ScoreNet`.

    Attributes:
        shape: One sample's shape: ``(L,)`` for spectra, ``(H, W)`` for images.
        arch: ``unet`` or ``mlp`` (:data:`SCORE_ARCHS`).
        channels: U-Net channels at full resolution (doubled at each level) or MLP width.
        levels: U-Net down-sampling levels (MLP: hidden layers).
        sigma_min: Smallest training noise (the prior's score is evaluated here), data units.
        sigma_max: Largest training noise, data units (``= sigma_min``: one noise level).
    """

    shape: tuple[int, ...]
    arch: str = "unet"
    channels: int = 32
    levels: int = 2
    sigma_min: float = 0.01
    sigma_max: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if len(self.shape) not in (1, 2) or min(self.shape) < 1:
            raise ValueError(f"ScoreConfig.shape: expected (L,) or (H, W), got {self.shape}")
        if self.arch not in SCORE_ARCHS:
            raise ValueError(f"ScoreConfig.arch: expected one of {SCORE_ARCHS}, got {self.arch!r}")
        if self.channels < 1 or self.levels < 1:
            raise ValueError(f"ScoreConfig: channels and levels must be >= 1, got {self.channels}, {self.levels}")
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(
                f"ScoreConfig: need 0 < sigma_min <= sigma_max, got sigma_min={self.sigma_min}, "
                f"sigma_max={self.sigma_max}"
            )
        if self.arch == "unet" and any(s % 2**self.levels for s in self.shape):
            raise ValueError(
                f"ScoreConfig.shape {self.shape}: every side must be divisible by 2**levels = {2**self.levels} "
                "for the U-Net (crop or pad the data, or use fewer levels)"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ScoreConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"ScoreConfig: unknown fields {sorted(unknown)}")
        return cls(**{**d, "shape": tuple(d["shape"])})


class _Embed(nn.Module):
    """``log σ`` -> Fourier features -> a vector of ``dim``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("freq", torch.arange(1, 9, dtype=torch.float32) * math.pi / 4)
        self.lin = nn.Sequential(nn.Linear(16, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, log_sigma: torch.Tensor) -> torch.Tensor:
        a = log_sigma[:, None] * self.freq
        return self.lin(torch.cat([a.sin(), a.cos()], 1))


class _Block(nn.Module):
    """Two convolutions with SiLU, the noise level added as a channel bias, residual.

    No normalisation layer: a GroupNorm's Jacobian scales with the inverse spread of its
    inputs, so on a clean image (off the noisy training distribution, which is where a MAP
    result and the Fisher diagnostic evaluate the score) it inflated ``-diag ∂s/∂x`` several
    times beyond its bound ``1/σ²`` (measured 6.6x on empty sky).
    """

    def __init__(self, conv: type[nn.Module], c_in: int, c_out: int, emb: int) -> None:
        super().__init__()
        self.c1, self.c2 = conv(c_in, c_out, 3, padding=1), conv(c_out, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, c_out)
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = nn.functional.silu(self.c1(x))
        h = h + self.emb(e).reshape(*e.shape[:1], -1, *([1] * (x.ndim - 2)))
        h = nn.functional.silu(self.c2(h))
        return h + self.skip(x)


class _UNet(nn.Module):
    def __init__(self, config: ScoreConfig) -> None:
        super().__init__()
        dims = len(config.shape)
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.pool = nn.AvgPool1d(2) if dims == 1 else nn.AvgPool2d(2)
        c, e = config.channels, 4 * config.channels
        self.embed = _Embed(e)
        self.inp = conv(1, c, 3, padding=1)
        widths = [c * 2**i for i in range(config.levels + 1)]
        self.down = nn.ModuleList(_Block(conv, widths[i], widths[i + 1], e) for i in range(config.levels))
        self.mid = _Block(conv, widths[-1], widths[-1], e)
        up = reversed(range(config.levels))
        self.up = nn.ModuleList(_Block(conv, 2 * widths[i + 1], widths[i], e) for i in up)
        self.out = conv(c, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        e = self.embed(log_sigma)
        h = self.inp(x.unsqueeze(1))
        skips = []
        for block in self.down:
            h = block(h, e)
            skips.append(h)
            h = self.pool(h)
        h = self.mid(h, e)
        for block in self.up:
            h = nn.functional.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, skips.pop()], 1), e)
        return self.out(h).squeeze(1)


class _MLP(nn.Module):
    def __init__(self, config: ScoreConfig) -> None:
        super().__init__()
        d, w = math.prod(config.shape), config.channels
        self.embed = _Embed(w)
        self.inp = nn.Linear(d, w)
        self.hidden = nn.ModuleList(nn.Linear(w, w) for _ in range(config.levels))
        self.out = nn.Linear(w, d)
        self.linear = nn.Linear(d + 16, d, bias=False)  # a linear skip: the Gaussian answer is linear in x
        self.register_buffer("freq", torch.arange(1, 9, dtype=torch.float32) * math.pi / 4)

    def forward(self, x: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        h = nn.functional.silu(self.inp(flat) + self.embed(log_sigma))
        for lin in self.hidden:
            h = h + nn.functional.silu(lin(h))
        a = log_sigma[:, None] * self.freq
        lin = self.linear(torch.cat([flat, a.sin(), a.cos()], 1))
        return (self.out(h) + lin).reshape(x.shape)


@register_model("ScoreNet", config_from_dict=ScoreConfig.from_dict)
class ScoreNet(nn.Module):
    """A noise-conditional score ``s(x, σ) = -ε̂(x/scale, σ/scale) / σ``.

    Args:
        config: Architecture and noise range.
    """

    def __init__(self, config: ScoreConfig) -> None:
        super().__init__()
        self.config = config
        self.net = _UNet(config) if config.arch == "unet" else _MLP(config)
        self.register_buffer("scale", torch.ones(()))

    @torch.no_grad()
    def standardize_to(self, x: torch.Tensor) -> None:
        """Set ``scale`` to the training data's standard deviation."""
        self.scale.copy_(torch.as_tensor(x).float().std().clamp_min(1e-12))

    def _check(self, x: torch.Tensor) -> None:
        if tuple(x.shape[1:]) != self.config.shape:
            raise ValueError(f"ScoreNet: expected (N, {', '.join(map(str, self.config.shape))}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Predicted noise ``ε̂`` ``(N, *shape)`` of ``x`` at noise levels ``sigma`` ``(N,)`` (data units)."""
        self._check(x)
        scale = self.scale.to(x.dtype)
        return self.net(x / scale, torch.log(sigma.to(x.dtype) / scale))

    def score(self, x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        """``∇ log p_σ(x)`` ``(N, *shape)`` at ``sigma`` (default ``config.sigma_min``)."""
        s = self.config.sigma_min if sigma is None else float(sigma)
        sig = torch.full((len(x),), s, dtype=x.dtype, device=x.device)
        return -self(x, sig) / s
