"""Latent-space outlier detection (Liang et al. 2023a, AJ 166, 75; 2023b, ApJL 956, L6).

Ranks every object of a survey by how unusual it is: an autoencoder trained to give
redshift-invariant latents, a normalizing flow over those latents, and a catalogue of
``log p`` for every object. The parts, in the shape of every method package:

* ``config``: :class:`InvarianceConfig` (redshift augmentation and the added losses,
  :data:`LOSS_FORMS`); the flow's :class:`~speculum.models.flow.FlowConfig`;
* ``augment``: :func:`redshift_augment`, a spectrum re-observed at another redshift;
* ``losses``: :class:`OutlierMethod` (fiducial + similarity + consistency, with equations);
* ``fit``: :func:`train` (the autoencoder, optionally continuing a fiducial model),
  :func:`fit_flow` (the flow over its latents) and :func:`encode`;
* ``apply``: :func:`score`, the catalogue (``object_id``, ``z``, ``latent_i``, ``log_p``,
  ``reduced_chi2``, ``rank``, ``flags``), streamed per shard, resumable, on Dask when asked;
* ``invariance``: :func:`redshift_invariance`, how much the redshift moves latents and ranks;
* ``reporting``: :func:`report_sections` (log p by class, the least probable objects, AUCs, invariance).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from speculum.autoencode import simulate_dataset
    >>> from speculum.models.flow import FlowConfig
    >>> from speculum.sim import SimConfig
    >>> from speculum.train import TrainConfig
    >>> tmp = Path(tempfile.mkdtemp())
    >>> data = simulate_dataset(tmp / "sim", 512, SimConfig(), seed=0)
    >>> _ = train(data, tmp / "run", InvarianceConfig(k_cycle=1, off_epochs=0),
    ...           train_config=TrainConfig(epochs=1, batch_size=64))
    >>> _ = fit_flow(tmp / "run", config=FlowConfig(features=8, transforms=2, hidden=16),
    ...              train_config=TrainConfig(epochs=2, batch_size=128, lr=1e-3))
    >>> cat = score(data, tmp / "run", tmp / "catalogue.parquet")
    >>> sorted(cat["rank"][cat["rank"] > 0].tolist())[:3]
    [1, 2, 3]
"""

from speculum.metrics import precision_at, roc_auc
from speculum.outliers.apply import CATALOGUE_UNITS, FLAGS, OutlierModel, score
from speculum.outliers.augment import redshift_augment, reobserve
from speculum.outliers.config import LOSS_FORMS, InvarianceConfig
from speculum.outliers.fit import encode, fit_flow, train
from speculum.outliers.invariance import redshift_invariance
from speculum.outliers.losses import OutlierMethod
from speculum.outliers.reporting import auc_table, report_sections

__all__ = [
    "CATALOGUE_UNITS",
    "FLAGS",
    "LOSS_FORMS",
    "InvarianceConfig",
    "OutlierMethod",
    "OutlierModel",
    "auc_table",
    "encode",
    "fit_flow",
    "redshift_augment",
    "precision_at",
    "redshift_invariance",
    "reobserve",
    "report_sections",
    "roc_auc",
    "score",
    "train",
]
