"""A normalizing flow over feature vectors (latents, parameters): zuko's MAF or NSF, standardised, saved like any model.

One density network for every method that needs one: the outlier method's flow over
autoencoder latents (Liang et al. 2023: a masked autoregressive flow of 5 transforms,
hidden size 50), and later population and posterior flows (``context`` > 0 makes it
conditional). The flow itself is :mod:`zuko`'s; this module adds what a saved model needs:
a typed config (kept in the checkpoint), a standardisation of the inputs fitted to the
training data (stored as buffers, so ``log_prob`` is of the *unstandardised* values), and
an optional fingerprint of the network whose outputs the flow models, so that a flow
refuses features from another network (:meth:`DensityFlow.check_source`).

Example:
    >>> import torch
    >>> flow = DensityFlow(FlowConfig(features=2, transforms=2, hidden=8))
    >>> flow.standardize_to(torch.randn(100, 2) * 3 + 1)
    >>> flow.log_prob(torch.zeros(5, 2)).shape
    torch.Size([5])
    >>> flow.sample(4).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from speculum.models.registry import register_model

__all__ = ["FLOW_KINDS", "DensityFlow", "FlowConfig", "fingerprint"]

FLOW_KINDS = ("maf", "nsf")
"""``maf``: masked autoregressive flow (affine); ``nsf``: neural spline flow (rational-quadratic splines)."""


@dataclass(frozen=True)
class FlowConfig:
    """Architecture of a :class:`DensityFlow`.

    Attributes:
        features: Dimension of the modelled vectors.
        kind: ``maf`` or ``nsf`` (:data:`FLOW_KINDS`).
        transforms: Number of autoregressive transforms.
        hidden: Width of the two hidden layers of each transform's network.
        context: Dimension of a conditioning vector (0: unconditional).
        bins: Spline bins (``nsf`` only).
        source: Fingerprint of the network whose outputs the flow models (:func:`fingerprint`);
            empty when there is none.
    """

    features: int
    kind: str = "maf"
    transforms: int = 5
    hidden: int = 50
    context: int = 0
    bins: int = 8
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FLOW_KINDS:
            raise ValueError(f"kind: expected one of {FLOW_KINDS}, got {self.kind!r}")
        for name in ("features", "transforms", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.context < 0:
            raise ValueError(f"context: expected >= 0, got {self.context}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FlowConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"FlowConfig: unknown fields {sorted(unknown)}")
        return cls(**d)


def fingerprint(module: nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a module's state: names, shapes, dtypes and values."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


@register_model("DensityFlow", config_from_dict=FlowConfig.from_dict)
class DensityFlow(nn.Module):
    """Density ``p(x | c)`` of feature vectors by a :mod:`zuko` flow on standardised inputs.

    ``log p(x) = log q((x - loc) / scale) - sum(log scale)``, where ``q`` is the flow and
    ``loc``/``scale`` are fitted to training data by :meth:`standardize_to`.

    Args:
        config: The :class:`FlowConfig`.
    """

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        import zuko

        self.config = config
        kw = dict(features=config.features, context=config.context, transforms=config.transforms)
        hidden = (config.hidden, config.hidden)
        if config.kind == "maf":
            self.flow = zuko.flows.MAF(**kw, hidden_features=hidden)
        else:
            self.flow = zuko.flows.NSF(**kw, bins=config.bins, hidden_features=hidden)
        self.register_buffer("loc", torch.zeros(config.features))
        self.register_buffer("scale", torch.ones(config.features))

    @torch.no_grad()
    def standardize_to(self, x: torch.Tensor) -> None:
        """Set ``loc``/``scale`` to the mean and standard deviation of ``x`` ``(N, features)``."""
        x = torch.as_tensor(x, dtype=self.loc.dtype)
        if x.ndim != 2 or x.shape[1] != self.config.features or len(x) < 2:
            raise ValueError(f"x: expected (N >= 2, {self.config.features}), got {tuple(x.shape)}")
        self.loc.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-8))

    def log_prob(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``log p(x | context)`` per row, shape ``(N,)``."""
        u = (x - self.loc) / self.scale
        return self.flow(context).log_prob(u) - self.scale.log().sum()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Same as :meth:`log_prob` (what DDP calls)."""
        return self.log_prob(x, context)

    @torch.no_grad()
    def sample(self, n: int, context: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` draws (per context row when conditional), unstandardised."""
        u = self.flow(context).sample((n,))
        return u * self.scale + self.loc

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - loc) / scale``: how many training standard deviations each feature lies out."""
        return (x - self.loc) / self.scale

    def check_source(self, source: nn.Module | str, what: str = "flow") -> None:
        """Refuse features from a network other than the one this flow was fitted to.

        Args:
            source: The network (or its :func:`fingerprint`).
            what: How to name the flow in the error (e.g. its file).

        Raises:
            ValueError: The fingerprints differ (a flow without a recorded source accepts any).
        """
        got = source if isinstance(source, str) else fingerprint(source)
        if self.config.source and got != self.config.source:
            raise ValueError(
                f"{what}: fitted to the outputs of network {self.config.source}, but this network is {got}; "
                "refit the flow for this model (speculum outliers fit-flow)"
            )
