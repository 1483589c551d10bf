"""The compact template set shipped with speculum (``data/templates.npz``).

Built by ``scripts/make_templates.py`` from BC03 simple stellar populations (Bruzual &
Charlot 2003), MaStar stellar templates (Yan et al. 2019) and the Calzetti et al. (2000)
attenuation curve; the script's docstring, stored in the file, records the sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = ["Templates", "load_templates"]


@dataclass(frozen=True)
class Templates:
    """Restframe templates on a log10 grid ``10 ** (log_start + log_step * i)``, vacuum Angstrom.

    Attributes:
        wave: Restframe grid, shape ``(L_t,)``.
        ssp: SSP spectra per unit mass (relative), shape ``(n_ssp, L_t)``.
        ssp_age_gyr: Age of each SSP, shape ``(n_ssp,)``.
        ssp_metallicity: Metallicity Z of each SSP, shape ``(n_ssp,)``.
        stars: Stellar spectra normalised to median one over 5300-5850 A, ``(n_star, L_t)``.
        calzetti_k: ``A(lambda) / E(B-V)`` (Calzetti et al. 2000, ``R_V = 4.05``), ``(L_t,)``.
        source: Provenance text.
    """

    log_start: float
    log_step: float
    wave: np.ndarray
    ssp: np.ndarray
    ssp_age_gyr: np.ndarray
    ssp_metallicity: np.ndarray
    stars: np.ndarray
    calzetti_k: np.ndarray
    source: str

    @property
    def ages(self) -> np.ndarray:
        """Distinct SSP ages in Gyr, increasing."""
        return np.unique(self.ssp_age_gyr)

    @property
    def metallicities(self) -> np.ndarray:
        """Distinct SSP metallicities, increasing."""
        return np.unique(self.ssp_metallicity)


@lru_cache(maxsize=1)
def load_templates() -> Templates:
    """Load the packaged template set (cached; arrays are read-only)."""
    with resources.files("speculum.data").joinpath("templates.npz").open("rb") as fh:
        d = dict(np.load(fh, allow_pickle=False))
    n = d["ssp"].shape[1]
    wave = 10 ** (float(d["log_start"]) + float(d["log_step"]) * np.arange(n))
    arrays = {k: d[k] for k in ("ssp", "ssp_age_gyr", "ssp_metallicity", "stars", "calzetti_k")}
    for a in (*arrays.values(), wave):
        a.flags.writeable = False
    return Templates(
        log_start=float(d["log_start"]),
        log_step=float(d["log_step"]),
        wave=wave,
        source=str(d["source"]),
        **arrays,
    )
