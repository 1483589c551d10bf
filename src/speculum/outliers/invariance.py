"""How redshift-invariant are the latents? The same simulated galaxies observed at several redshifts.

:func:`redshift_invariance` draws galaxies with the simulator and observes each one at every
redshift of a list (the simulator's whole forward model: redshifting, resampling, line
spread, sky and noise; the galaxy's own parameters are the same in every copy), encodes
every copy and reports

* ``latent_scatter``: the latents' standard deviation across the copies of one galaxy,
  relative to the population's standard deviation (both summed over latent dimensions,
  as variances, then the square root taken): 0 for perfectly invariant latents, 1 when the
  redshift moves a galaxy as far as the whole population spreads;
* ``rank_spearman_across_z``: the Spearman correlation of ``log p`` between copies at two
  redshifts, averaged over all pairs: 1 when the outlier ranking does not depend on the
  redshift the galaxy happens to be observed at.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from speculum.io import prepare_spectra
from speculum.sim import GalaxySimulator, SimConfig

__all__ = ["RESTFRAME_ANOMALIES", "FixedRedshiftSimulator", "invariance_figures", "redshift_invariance"]

RESTFRAME_ANOMALIES = ("agn", "reddened", "odd_lines")
"""Anomaly classes that belong to the galaxy's restframe (the same object at any redshift)."""


class FixedRedshiftSimulator(GalaxySimulator):
    """The galaxy simulator with every galaxy placed at one redshift ``z``.

    The redshift draws are still made (and discarded), so a galaxy of a given ``(seed,
    index)`` has the same parameters, lines and anomalies at every ``z``.
    """

    def __init__(self, config: SimConfig, z: float) -> None:
        super().__init__(config)
        self.fixed_z = float(z)

    def _draw_redshift(self, gen: torch.Generator, n: int) -> torch.Tensor:
        z = super()._draw_redshift(gen, n)
        return torch.full_like(z, self.fixed_z)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@torch.no_grad()
def redshift_invariance(
    model: torch.nn.Module,
    flow: torch.nn.Module | None,
    sim_config: SimConfig | None = None,
    z_values: tuple[float, ...] | None = None,
    n: int = 512,
    seed: int = 12345,
) -> dict[str, float]:
    """The invariance figures of ``model`` (and ``flow``) on ``n`` galaxies at each of ``z_values``.

    Args:
        model: A :class:`~speculum.models.SpectrumAutoencoder`.
        flow: The flow over its latents (``None``: no rank correlation).
        sim_config: The galaxies (default: the model's instrument, 5 % anomalies of the classes
            that live in the restframe, :data:`RESTFRAME_ANOMALIES`: an ``artefact`` or a
            ``star_blend`` sits in the observed frame, so re-observing it at another redshift
            changes what the galaxy is).
        z_values: Redshifts (default: the 10/30/50/70/90 % quantiles of the simulator's
            redshift distribution).
        n: Galaxies.
        seed: Data-set seed of the galaxies (use one not used in training).

    Returns:
        ``latent_scatter``, ``rank_spearman_across_z`` (NaN without a flow), ``n``, ``z_values``.
    """
    inst = model.config.instrument
    cfg = sim_config or SimConfig(instrument=inst, anomaly_rate=0.05, anomaly_classes=RESTFRAME_ANOMALIES)
    if z_values is None:
        z_draw = GalaxySimulator(cfg).simulate(min(n, 512), seed=seed).z
        z_values = tuple(float(np.round(q, 3)) for q in np.quantile(z_draw, [0.1, 0.3, 0.5, 0.7, 0.9]))
    dev = next(model.parameters()).device
    lat, logp, usable = [], [], np.ones(n, bool)
    for zv in z_values:
        sim = FixedRedshiftSimulator(cfg, zv).simulate(n, seed=seed)
        prep = prepare_spectra(sim.columns(inst), inst, fit_amplitude=model.config.normalize)
        s = np.full((n, model.config.n_latent), np.nan, np.float32)
        s[prep.index] = torch.cat([model.encode(prep.y[i].to(dev), prep.w[i].to(dev)).float().cpu()
                                   for i in torch.arange(len(prep.z)).split(256)]).numpy()  # fmt: skip
        ok = np.zeros(n, bool)
        ok[prep.index] = True
        usable &= ok
        lat.append(s)
        if flow is not None:
            logp.append(flow.log_prob(torch.from_numpy(np.nan_to_num(s)).to(dev)).double().cpu().numpy())
    return {**invariance_figures(np.stack(lat)[:, usable], np.stack(logp)[:, usable] if logp else None),
            "z_values": list(z_values)}  # fmt: skip


def invariance_figures(latents: np.ndarray, log_p: np.ndarray | None = None) -> dict[str, float]:
    """The figures of :func:`redshift_invariance` from latents ``(n_z, n, S)`` and ``log p`` ``(n_z, n)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> same = np.repeat(rng.normal(size=(1, 200, 4)), 3, axis=0)   # invariant latents
        >>> f = invariance_figures(same, -(same**2).sum(-1))
        >>> round(f["latent_scatter"], 12), round(f["rank_spearman_across_z"], 12)
        (0.0, 1.0)
    """
    within = latents.var(0).sum(1).mean()
    population = latents.reshape(-1, latents.shape[-1]).var(0).sum()
    out = {"latent_scatter": float(np.sqrt(within / population)), "n": int(latents.shape[1])}
    if log_p is not None:
        pairs = list(itertools.combinations(range(len(log_p)), 2))
        out["rank_spearman_across_z"] = float(np.mean([_spearman(log_p[a], log_p[b]) for a, b in pairs]))
    else:
        out["rank_spearman_across_z"] = float("nan")
    return out
