"""The spectrum autoencoder (SPENDER; Melchior et al. 2023) as a method: simulate, train, reconstruct, report.

The network lives in :mod:`speculum.models` (:class:`~speculum.models.SpectrumAutoencoder`);
this package is the workflow around it, and the template every method package copies:

* ``config``: :data:`PRESETS`, the named model sizes per instrument;
* ``data``: :func:`simulate_dataset`, simulated galaxy spectra as training shards;
* ``losses``: the training objective (:func:`loss`, :func:`metrics`) and :class:`AutoencoderMethod`,
  what the trainer drives (its ``step``);
* ``fit``: :func:`train`, the entry point for training (resumable, DDP, streamed);
* ``apply``: :func:`reconstruct`, per-object results with units (:data:`RESULT_UNITS`);
* ``reporting``: :func:`report_sections` (registered with :mod:`speculum.report`) and :func:`report`.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from speculum.sim import SimConfig
    >>> from speculum.train import TrainConfig
    >>> tmp = Path(tempfile.mkdtemp())
    >>> data = simulate_dataset(tmp / "sim", 256, SimConfig(), seed=0)
    >>> summary = train(data, tmp / "run", train_config=TrainConfig(epochs=1, batch_size=64))
    >>> rec = reconstruct(tmp / "run" / "model.safetensors", data, tmp / "rec.parquet", split="test")
    >>> sorted(RESULT_UNITS) == sorted(k for k in rec if k in RESULT_UNITS)
    True
"""

from speculum.autoencode.apply import RESULT_UNITS, reconstruct
from speculum.autoencode.config import PRESETS
from speculum.autoencode.data import simulate_dataset
from speculum.autoencode.fit import train
from speculum.autoencode.losses import AutoencoderMethod, loss, metrics
from speculum.autoencode.reporting import report, report_sections

__all__ = [
    "PRESETS",
    "AutoencoderMethod",
    "RESULT_UNITS",
    "loss",
    "metrics",
    "reconstruct",
    "report",
    "report_sections",
    "simulate_dataset",
    "train",
]
