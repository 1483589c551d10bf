"""Line lists of the galaxy simulator: vacuum restframe wavelengths in Angstrom."""

from __future__ import annotations

__all__ = ["BROAD_LINES", "C_KMS", "NARROW_LINES"]

C_KMS = 299_792.458
"""Speed of light, km/s."""

NARROW_LINES = {
    "[OII]3726": 3727.092,
    "[OII]3729": 3729.875,
    "[NeIII]3869": 3869.86,
    "Hdelta": 4102.89,
    "Hgamma": 4341.68,
    "Hbeta": 4862.68,
    "[OIII]4959": 4960.295,
    "[OIII]5007": 5008.240,
    "HeI5876": 5877.25,
    "[OI]6300": 6302.046,
    "[NII]6548": 6549.86,
    "Halpha": 6564.61,
    "[NII]6583": 6585.27,
    "[SII]6716": 6718.29,
    "[SII]6731": 6732.67,
}
"""Vacuum restframe wavelengths (Angstrom) of the simulated narrow emission lines."""

BROAD_LINES = {"MgII2799": 2799.12, "Hdelta": 4102.89, "Hgamma": 4341.68, "Hbeta": 4862.68, "Halpha": 6564.61}
"""Vacuum restframe wavelengths (Angstrom) of the broad lines of the ``agn`` anomaly."""
