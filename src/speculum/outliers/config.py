"""Configuration of the outlier method: the redshift-invariance losses and the latent flow."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = ["LOSS_FORMS", "InvarianceConfig"]

LOSS_FORMS = ("published", "scale_invariant", "running")
"""How latent and spectral distances are scaled in the consistency and similarity losses.

* ``published``: Liang et al. (2023a), as printed: ``D_lat = ||s_i - s_j||^2 / S``,
  ``L_c = sigmoid(||s - s'||^2 / (sigma_s^2 S)) - 1/2``, ``L = L_fid + L_sim + L_c``;
* ``scale_invariant``: the reference's newer form: ``D_lat`` and ``D_spec`` each divided by
  its batch mean over pairs, the consistency distance divided by the batch latent variance
  (inside the sigmoid: dividing the loss value instead would reward inflating the
  latents), ``L = L_fid + 3 L_sim + L_c``;
* ``running``: as ``scale_invariant``, but with running averages over the data set (the
  :class:`~speculum.outliers.losses.RunningScale` buffers) in place of the batch means and
  variance, and ``L_sim`` weight 1 (an open proposal of the reference's authors: the sigmoids
  stay in their active range however the latents scale, and a small batch does not jolt them).
"""


@dataclass(frozen=True)
class InvarianceConfig:
    """Redshift augmentation and the consistency and similarity losses (MISSION.md section 2).

    Attributes:
        form: One of :data:`LOSS_FORMS`.
        dz: Augmented redshift drawn uniformly within ``z +- dz`` (clipped to the instrument's range).
        sigma_s: Latent consistency scale ``sigma_s`` of ``L_c``.
        k_max: Largest slope ``k`` of the similarity sigmoids.
        k_cycle: Epochs of one annealing cycle of ``k`` (``0 -> k_max``, linearly, then again).
        off_epochs: The last this many epochs of training run with ``k = 0`` (similarity off).
        b: Offset ``b`` of the similarity sigmoids.
        amp: Amplitude ``A`` of the spectral-distance weight ``A exp(-((lambda - center) / 2 sigma)^2)``.
        center: Its centre in restframe Angstrom.
        width: Its ``sigma`` in Angstrom.
        sim_weight: Weight of ``L_sim`` (``None``: 1, or 3 for ``scale_invariant``).
        momentum: Momentum of the running latent amplitude (``running`` form).
        fiducial: Weight of the fiducial loss of the augmented copy (the original's is 1).
    """

    form: str = "published"
    dz: float = 0.5
    sigma_s: float = 0.1
    k_max: float = 9.9
    k_cycle: int = 100
    off_epochs: int = 10
    b: float = 5.0
    amp: float = 20.0
    center: float = 5000.0
    width: float = 1000.0
    sim_weight: float | None = None
    momentum: float = 0.99
    fiducial: float = 1.0

    def __post_init__(self) -> None:
        if self.form not in LOSS_FORMS:
            raise ValueError(f"form: expected one of {LOSS_FORMS}, got {self.form!r}")
        if not self.dz >= 0:
            raise ValueError(f"dz: expected >= 0, got {self.dz}")
        if self.k_cycle < 1:
            raise ValueError(f"k_cycle: expected >= 1, got {self.k_cycle}")
        if self.off_epochs < 0:
            raise ValueError(f"off_epochs: expected >= 0, got {self.off_epochs}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum: expected in [0, 1), got {self.momentum}")
        for name in ("sigma_s", "width"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")

    @property
    def similarity_weight(self) -> float:
        if self.sim_weight is not None:
            return self.sim_weight
        return 3.0 if self.form == "scale_invariant" else 1.0

    def slope(self, epoch: float, total_epochs: int) -> float:
        """The similarity slope ``k`` at (fractional) ``epoch`` of a run of ``total_epochs``.

        ``k`` rises linearly from 0 to ``k_max`` over each cycle of ``k_cycle`` epochs and is 0
        in the last ``off_epochs`` epochs (and when ``k_cycle`` is longer than the run, it
        rises over the epochs before those).
        """
        on = max(total_epochs - self.off_epochs, 0)
        if epoch >= on:
            return 0.0
        cycle = min(self.k_cycle, on)
        return self.k_max * ((epoch % cycle) / cycle)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> InvarianceConfig:
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"InvarianceConfig: unknown fields {sorted(unknown)}")
        return cls(**d)
