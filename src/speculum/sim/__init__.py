"""Simulators with known truth."""

from speculum.sim.toy import EMISSION_LINES, ToySpectra, toy_galaxy_spectra

__all__ = ["EMISSION_LINES", "ToySpectra", "toy_galaxy_spectra"]
