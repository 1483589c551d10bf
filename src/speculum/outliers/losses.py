r"""The outlier method's training objective: fiducial loss + similarity loss + consistency loss.

For a batch of spectra :math:`y_i` with latents :math:`s_i` (dimension :math:`S`) and the same
spectra re-observed at other redshifts (:func:`~speculum.outliers.augment.redshift_augment`)
with latents :math:`s'_i`, Liang et al. (2023a) train

.. math:: L = L_\mathrm{fid}(y) + L_\mathrm{fid}(y') + w_\mathrm{sim} L_\mathrm{sim} + L_c .

* **Fiducial** (:func:`speculum.train.fiducial_loss`): :math:`\frac{1}{L}\sum_\lambda w (y - \hat y)^2`.
* **Consistency** (:func:`consistency_loss`): the same galaxy at two redshifts must have the
  same latents, :math:`L_c = \sigma\!\left(\lVert s_i - s'_i\rVert^2 / (\sigma_s^2 S\, v)\right) - \tfrac12`,
  :math:`\sigma_s = 0.1`, where :math:`v = 1` (published) or a latent variance (the
  scale-invariant and running forms).
* **Similarity** (:func:`similarity_loss`): latent distances follow spectral distances,
  :math:`D^\mathrm{lat}_{ij} = \lVert s_i - s_j\rVert^2 / S`,
  :math:`D^\mathrm{spec}_{ij} = \frac{1}{L_r}\sum_\lambda W(\lambda)(x_i - x_j)^2` over the
  restframe models :math:`x` (detached: they are the target geometry), with
  :math:`W = A \exp(-((\lambda - 5000\,\mathrm{\AA}) / 2\sigma)^2)`, :math:`A = 20`,
  :math:`\sigma = 1000` Å, and
  :math:`\ell_{ij} = \sigma(k \Delta_{ij} - b/2) + \sigma(-k \Delta_{ij} - b/2)` with
  :math:`\Delta_{ij} = D^\mathrm{lat}_{ij} - D^\mathrm{spec}_{ij}`,
  :math:`b = 5`, averaged over pairs :math:`j \ne i`; the slope :math:`k` is annealed
  (:meth:`InvarianceConfig.slope`). The scale-invariant form divides both distances by their
  batch means; the running form by running averages of those means over the data set.
"""

from __future__ import annotations

import numpy as np
import torch

from speculum.autoencode.losses import AutoencoderMethod
from speculum.instruments import get_instrument
from speculum.outliers.augment import redshift_augment
from speculum.outliers.config import InvarianceConfig
from speculum.train import fiducial_loss
from speculum.train.method import StepContext

__all__ = ["OutlierMethod", "RunningScale", "consistency_loss", "latent_distance", "similarity_loss",
           "spectral_distance"]  # fmt: skip


def latent_distance(s: torch.Tensor) -> torch.Tensor:
    """``D_ij = ||s_i - s_j||^2 / S``, shape ``(N, N)``."""
    return torch.cdist(s.float(), s.float()).pow(2) / s.shape[1]


def spectral_distance(x: torch.Tensor, wave_rest: torch.Tensor, cfg: InvarianceConfig) -> torch.Tensor:
    """Weighted mean squared difference of restframe models ``x`` ``(N, L_r)``, shape ``(N, N)``."""
    wt = cfg.amp * torch.exp(-(((wave_rest.to(x.device) - cfg.center) / (2 * cfg.width)) ** 2)).float()
    x = x.float()
    xw = x * wt
    sq = (xw * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * xw @ x.T
    return d.clamp_min(0) / x.shape[1]


def similarity_loss(d_lat: torch.Tensor, d_spec: torch.Tensor, k: float, b: float) -> torch.Tensor:
    """Per-row similarity loss ``(N,)``: the mean of ``l_ij`` over ``j != i`` (module docstring)."""
    n = len(d_lat)
    x = d_lat - d_spec
    ell = torch.sigmoid(k * x - b / 2) + torch.sigmoid(-k * x - b / 2)
    off = ~torch.eye(n, dtype=torch.bool, device=ell.device)
    return (ell * off).sum(1) / max(n - 1, 1)


def consistency_loss(s: torch.Tensor, s_aug: torch.Tensor, sigma_s: float, variance: float | torch.Tensor = 1.0):
    """Per-row consistency loss ``(N,)``: ``sigmoid(||s - s'||^2 / (sigma_s^2 S variance)) - 1/2``."""
    d = (s.float() - s_aug.float()).pow(2).sum(1) / (sigma_s**2 * s.shape[1] * variance)
    return torch.sigmoid(d) - 0.5


class RunningScale(torch.nn.Module):
    """Running averages over the data set of the batch latent variance and mean distances.

    Buffers only (checkpointed with the run, so a resumed run continues them exactly).
    Under DDP every rank takes part in every update (a rank without usable rows adds
    zero weight), so the averages are the same on all ranks and nothing waits.

    Args:
        momentum: ``avg <- momentum * avg + (1 - momentum) * batch value``; the first batch sets them.
    """

    def __init__(self, momentum: float = 0.99) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("latent_var", torch.ones(()))
        self.register_buffer("d_lat", torch.ones(()))
        self.register_buffer("d_spec", torch.ones(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, latent_var: torch.Tensor, d_lat: torch.Tensor, d_spec: torch.Tensor, rows: int) -> None:
        """Fold in one batch's values, weighted by its ``rows`` (summed over DDP ranks)."""
        vals = torch.stack([latent_var * rows, d_lat * rows, d_spec * rows,
                            torch.tensor(float(rows), device=latent_var.device)]).float()  # fmt: skip
        vals = vals.to(self.latent_var.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(vals)
        if float(vals[3]) <= 0:
            return
        batch = vals[:3] / vals[3]
        m = self.momentum if int(self.count) > 0 else 0.0
        for buf, v in zip((self.latent_var, self.d_lat, self.d_spec), batch, strict=True):
            buf.mul_(m).add_((1 - m) * v)
        self.count += 1


def _mean_offdiag(d: torch.Tensor) -> torch.Tensor:
    n = len(d)
    return d.sum() / max(n * (n - 1), 1)


class OutlierMethod(AutoencoderMethod):
    """The autoencoder trained with redshift augmentation and the similarity and consistency losses.

    Validation is the autoencoder's (fiducial loss and reduced chi2 of the un-augmented
    spectra), so early stopping and ``model.safetensors`` mean the same as for
    :func:`speculum.autoencode.train`.

    Args:
        model: The :class:`~speculum.models.SpectrumAutoencoder`.
        config: The :class:`InvarianceConfig`.
        epochs: Epochs of the run (for the slope schedule).
    """

    def __init__(self, model: torch.nn.Module, config: InvarianceConfig, epochs: int) -> None:
        super().__init__(model)
        self.config, self.epochs = config, epochs
        self.scale = RunningScale(config.momentum).to(next(model.parameters()).device)
        inst = get_instrument(model.config.instrument)
        self.wave = torch.tensor(np.asarray(inst.wave_obs), dtype=torch.float64)
        self.z_range = (float(inst.z_range[0]), float(inst.z_range[1]))

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model, "scale": self.scale}

    def losses(self, net: torch.nn.Module, batch: dict[str, torch.Tensor], k: float) -> dict[str, torch.Tensor]:
        """Per-row terms ``fid``, ``fid_aug``, ``sim``, ``cons`` and their weighted sum ``loss``.

        Rows without usable pixels (in the original or its re-observed copy; a streamed batch
        keeps unusable rows with zero weight) take no part in the similarity and consistency
        terms or in the batch and running statistics.
        """
        cfg = self.config
        y, w, z, res = batch["y"], batch["w"], batch["z"], batch.get("resolution")
        y2, w2, z2 = redshift_augment(y, w, z, self.wave, self.z_range, cfg.dz)
        both = net(torch.cat([y, y2]), torch.cat([w, w2]), torch.cat([z, z2]),
                   resolution=None if res is None else torch.cat([res, res]), check=False)  # fmt: skip
        n = len(y)
        obs, valid = both.observed.float(), both.valid
        fid = fiducial_loss(y, w * valid[:n], obs[:n], reduce=False)
        fid2 = fiducial_loss(y2, w2 * valid[n:], obs[n:], reduce=False)
        use = (w.sum(1) > 0) & (w2.sum(1) > 0)
        m = int(use.sum())
        s_all, s2_all = both.latents[:n].float(), both.latents[n:].float()
        s, s2 = s_all[use], s2_all[use]
        d_lat = latent_distance(s)
        d_spec = spectral_distance(both.restframe[:n][use].detach(), self.model.wave_rest, cfg)
        var = s.detach().var(0).mean() if m > 1 else torch.ones((), device=s.device)
        if cfg.form == "scale_invariant":  # batch means not detached: the gradient is scale-free too
            d_lat = d_lat / _mean_offdiag(d_lat).clamp_min(1e-12)
            d_spec = d_spec / _mean_offdiag(d_spec).clamp_min(1e-12)
            variance = var.clamp_min(1e-12)
        elif cfg.form == "running":
            if self.model.training:  # every rank joins the update, also with m <= 1 (zero weight)
                self.scale.update(var, _mean_offdiag(d_lat).detach(), _mean_offdiag(d_spec), m if m > 1 else 0)
            d_lat = d_lat / self.scale.d_lat.clamp_min(1e-12)
            d_spec = d_spec / self.scale.d_spec.clamp_min(1e-12)
            variance = self.scale.latent_var.clamp_min(1e-12)
        else:
            variance = 1.0
        sim = torch.zeros(n, device=fid.device)
        cons = torch.zeros(n, device=fid.device)
        if m > 1:
            sim = sim.index_put((use.nonzero().squeeze(1),), similarity_loss(d_lat, d_spec, k, cfg.b))
        if m > 0:
            cons = cons.index_put((use.nonzero().squeeze(1),), consistency_loss(s, s2, cfg.sigma_s, variance))
        total = fid + cfg.fiducial * fid2 + cfg.similarity_weight * sim + cons
        return {"loss": total, "fid": fid, "fid_aug": fid2, "sim": sim, "cons": cons, "k": torch.full_like(fid, k)}

    def step(self, ctx: StepContext, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One Adam update on the batch's total loss; ``k`` at the fractional epoch (:meth:`InvarianceConfig.slope`)."""
        k = self.config.slope(ctx.progress, self.epochs)
        with ctx.autocast():
            terms = self.losses(ctx.nets["model"], batch, k)
        ctx.minimize("main", terms["loss"])
        return {name: v.detach() for name, v in terms.items()}
