"""Losses and the checkpoint format shared by every trainer."""

from speculum.train.checkpoint import SCHEMA_VERSION, CheckpointError, load_model, save_model
from speculum.train.losses import fiducial_loss, reduced_chi2

__all__ = ["SCHEMA_VERSION", "CheckpointError", "fiducial_loss", "load_model", "reduced_chi2", "save_model"]
