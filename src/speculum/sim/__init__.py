"""Simulators with known truth."""

from speculum.sim.galaxy import (
    ANOMALY_CLASSES,
    BLOCK_SIZE,
    CLASSES,
    DESI_RESOLUTION_SIGMA,
    NARROW_LINES,
    GalaxySimulator,
    SimConfig,
    SimulatedSpectra,
    simulate_spectra,
)
from speculum.sim.templates import Templates, load_templates

__all__ = [
    "ANOMALY_CLASSES",
    "BLOCK_SIZE",
    "CLASSES",
    "DESI_RESOLUTION_SIGMA",
    "NARROW_LINES",
    "GalaxySimulator",
    "SimConfig",
    "SimulatedSpectra",
    "Templates",
    "load_templates",
    "simulate_spectra",
]
