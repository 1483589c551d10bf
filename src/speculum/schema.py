"""The columns of a spectra table: one builder for simulators and survey readers alike.

A spectra table (what :mod:`speculum.io` writes as Parquet shards) has one row per object:

* ``object_id`` (str), ``survey`` (str), ``instrument`` (str: ``SDSS``, ``BOSS``, ``DESI``);
* ``z`` (float64, NaN when unknown), ``z_err`` (float32);
* ``flux``, ``ivar`` (float32, ``(N, L)`` on the instrument's grid, flux in
  ``1e-17 erg s^-1 cm^-2 A^-1``), ``mask`` (int32 :class:`~speculum.instruments.PixelMask` bits);
* optionally ``resolution`` (float32, ``(N, D * L)``: per-spectrum banded resolution
  matrices, DESI layout, flattened) and any extra columns (``truth_*`` of simulations,
  ``class``/``zwarn``/``source_file`` of survey files, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["spectra_columns"]


def spectra_columns(
    object_id: Sequence[str],
    survey: str | Sequence[str],
    instrument: str,
    z: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    mask: np.ndarray,
    z_err: np.ndarray | None = None,
    resolution: np.ndarray | None = None,
    **extra: object,
) -> dict[str, object]:
    """Columns of a spectra table (see the module docstring), in the order the shards store them.

    Args:
        object_id: ``N`` unique ids.
        survey: One survey name for all rows, or ``N`` names.
        instrument: Instrument name.
        z: Redshifts ``(N,)``.
        flux: ``(N, L)``.
        ivar: ``(N, L)``.
        mask: ``(N, L)``.
        z_err: Redshift errors ``(N,)`` (default zeros).
        resolution: Banded resolution matrices ``(N, D, L)`` or ``(N, D * L)``, or None.
        **extra: Further columns of length ``N``, stored after the spectra.

    Example:
        >>> cols = spectra_columns(["a"], "sim", "SDSS", np.array([0.1]), np.ones((1, 3)), np.ones((1, 3)),
        ...                        np.zeros((1, 3), np.int32))
        >>> list(cols)[:5], cols["survey"]
        (['object_id', 'survey', 'instrument', 'z', 'z_err'], ['sim'])
    """
    n = len(object_id)
    cols: dict[str, object] = {
        "object_id": list(object_id),
        "survey": [survey] * n if isinstance(survey, str) else list(survey),
        "instrument": [instrument] * n,
        "z": np.asarray(z, dtype=np.float64),
        "z_err": np.zeros(n, np.float32) if z_err is None else np.asarray(z_err, dtype=np.float32),
        "flux": flux,
        "ivar": ivar,
        "mask": mask,
    }
    if resolution is not None:
        cols["resolution"] = np.asarray(resolution).reshape(n, -1).astype(np.float32, copy=False)
    cols.update(extra)
    return cols
