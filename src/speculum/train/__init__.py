"""The one trainer, the losses and the checkpoint formats shared by every method."""

from speculum.train.checkpoint import SCHEMA_VERSION, CheckpointError, load_model, save_model
from speculum.train.losses import fiducial_loss, reduced_chi2
from speculum.train.stream import StreamBatches
from speculum.train.trainer import BatchSource, InMemoryBatches, TrainConfig, Trainer, load_checkpoint

__all__ = [
    "SCHEMA_VERSION",
    "BatchSource",
    "CheckpointError",
    "InMemoryBatches",
    "StreamBatches",
    "TrainConfig",
    "Trainer",
    "fiducial_loss",
    "load_checkpoint",
    "load_model",
    "reduced_chi2",
    "save_model",
]
