"""Configuration of the hallucination diagnostic: the MAP reconstruction and the Fisher estimators."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["FisherConfig", "MapConfig"]


def _from_dict(cls, d: dict):
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
    return cls(**d)


@dataclass(frozen=True)
class MapConfig:
    """MAP reconstruction ``argmin -log L(y | x) - λ log p(x)`` with a score prior (Adam).

    The prior enters through its score: the gradient of ``-λ log p`` is ``-λ s(x, σ)``. ``σ``
    anneals geometrically from the network's ``sigma_max`` to ``sigma_min`` over the first
    ``anneal`` fraction of the steps (a coarse, smooth prior first, so that a poor start is
    not trapped), then stays at ``sigma_min``; the learning rate follows a cosine from ``lr``
    to ``lr / 100``.

    Attributes:
        prior_weight: ``λ``.
        steps: Adam steps.
        lr: Initial step, in units of the data's scale (the prior network's ``scale``).
        anneal: Fraction of the steps over which ``σ`` decreases.
    """

    prior_weight: float = 1.0
    steps: int = 400
    lr: float = 0.05
    anneal: float = 0.6

    def __post_init__(self) -> None:
        if not self.prior_weight >= 0:
            raise ValueError(f"MapConfig.prior_weight must be >= 0, got {self.prior_weight}")
        if self.steps < 1:
            raise ValueError(f"MapConfig.steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise ValueError(f"MapConfig.lr must be > 0, got {self.lr}")
        if not 0 <= self.anneal <= 1:
            raise ValueError(f"MapConfig.anneal must be in [0, 1], got {self.anneal}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MapConfig:
        return _from_dict(cls, d)


@dataclass(frozen=True)
class FisherConfig:
    """How the diagonals are estimated.

    Attributes:
        prior_method: ``auto`` (exact up to ``exact_max_pixels``), ``exact`` or ``hutchinson``.
        max_probes: Hutchinson probes at most (the paper's stopping rule may stop earlier).
        batch: Probes per network call.
        rtol: Stop when the estimate changes by less than this (relative) after a batch.
        exact_max_pixels: ``auto`` uses unit vectors up to this many pixels.
        seed: Seed of the probes.
    """

    prior_method: str = "auto"
    max_probes: int = 2000
    batch: int = 100
    rtol: float = 1e-6
    exact_max_pixels: int = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        if self.prior_method not in ("auto", "exact", "hutchinson"):
            raise ValueError(
                f"FisherConfig.prior_method must be 'auto', 'exact' or 'hutchinson', got {self.prior_method!r}"
            )
        if self.max_probes < 1 or self.batch < 1:
            raise ValueError(f"FisherConfig: max_probes and batch must be >= 1, got {self.max_probes}, {self.batch}")
        if not self.rtol >= 0:
            raise ValueError(f"FisherConfig.rtol must be >= 0, got {self.rtol}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FisherConfig:
        return _from_dict(cls, d)
