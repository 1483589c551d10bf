"""Simulators with known truth.

The galaxy simulator (:mod:`speculum.sim.galaxy`) runs each block of objects through named
steps (:mod:`speculum.sim.block`); its anomaly classes are small registered classes
(:mod:`speculum.sim.anomalies`): a new one is a subclass of :class:`Anomaly` decorated with
:func:`register_anomaly`.
"""

from speculum.sim.anomalies import ANOMALY_CLASSES, Anomaly, Stage, anomaly_registry, register_anomaly
from speculum.sim.block import BlockState
from speculum.sim.galaxy import (
    BLOCK_SIZE,
    CLASSES,
    DESI_RESOLUTION_SIGMA,
    GalaxySimulator,
    SimConfig,
    SimulatedSpectra,
    simulate_spectra,
)
from speculum.sim.images import GalaxyImageSimulator, ImageConfig, SimulatedImages
from speculum.sim.lines import NARROW_LINES
from speculum.sim.templates import Templates, load_templates

__all__ = [
    "ANOMALY_CLASSES",
    "BLOCK_SIZE",
    "CLASSES",
    "DESI_RESOLUTION_SIGMA",
    "NARROW_LINES",
    "Anomaly",
    "BlockState",
    "GalaxyImageSimulator",
    "GalaxySimulator",
    "ImageConfig",
    "SimConfig",
    "SimulatedImages",
    "SimulatedSpectra",
    "Stage",
    "Templates",
    "anomaly_registry",
    "load_templates",
    "register_anomaly",
    "simulate_spectra",
]
