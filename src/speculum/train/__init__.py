"""The one trainer, its batch sources, the losses, the checkpoint format and run manifests shared by every method."""

from speculum.train.checkpoint import (
    CHECKPOINT_NAME,
    SCHEMA_VERSION,
    CheckpointError,
    load_checkpoint,
    load_model,
    save_checkpoint,
    save_model,
)
from speculum.train.losses import fiducial_loss, reduced_chi2
from speculum.train.method import Method, Phase, StepContext
from speculum.train.runs import check_inputs, content_hash, read_run_manifest, write_run_manifest
from speculum.train.sources import BatchSource, DrawBatches, InMemoryBatches
from speculum.train.stream import StreamBatches
from speculum.train.trainer import LossMethod, TrainConfig, Trainer

__all__ = [
    "CHECKPOINT_NAME",
    "SCHEMA_VERSION",
    "BatchSource",
    "CheckpointError",
    "DrawBatches",
    "InMemoryBatches",
    "LossMethod",
    "Method",
    "Phase",
    "StepContext",
    "StreamBatches",
    "TrainConfig",
    "Trainer",
    "check_inputs",
    "content_hash",
    "fiducial_loss",
    "load_checkpoint",
    "load_model",
    "read_run_manifest",
    "reduced_chi2",
    "save_checkpoint",
    "save_model",
    "write_run_manifest",
]
