"""Per-object result tables (latents, log p, flags, ...) as Parquet or FITS, with units."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from speculum._optional import require

__all__ = ["write_results"]


def write_results(
    path: str | Path,
    columns: dict[str, np.ndarray | list],
    units: dict[str, str] | None = None,
    meta: dict | None = None,
) -> Path:
    """Write a per-object table atomically; the format follows the suffix.

    ``.parquet``: units are stored in each field's metadata (``unit``) and ``meta`` in the
    schema metadata. ``.fits``/``.fits.gz``: an astropy binary table whose ``TUNITn``
    header cards carry the units and whose header carries ``meta``.

    Args:
        path: Output file (``.parquet``, ``.fits`` or ``.fits.gz``).
        columns: Column name to 1-D array (or ``(N, k)`` array for vectors such as latents).
        units: Column name to unit string (astropy/FITS conventions, e.g. ``"Angstrom"``).
        meta: Scalar metadata (strings or numbers).

    Example:
        >>> import tempfile, numpy as np
        >>> p = write_results(tempfile.mkdtemp() + "/r.fits", {"z": np.array([0.1])}, {"z": ""})
        >>> p.suffix
        '.fits'
    """
    path = Path(path)
    units = units or {}
    meta = meta or {}
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns: expected equal lengths, got {lengths}")
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.lower()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if name.endswith(".parquet"):
        import json

        import pyarrow as pa
        import pyarrow.parquet as pq

        fields, arrays = [], []
        for k, v in columns.items():
            arr = np.asarray(v)
            if arr.ndim == 2:
                a = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])
            else:
                a = pa.array(v)
            md = {"unit": units[k]} if k in units else None
            fields.append(pa.field(k, a.type, metadata=md))
            arrays.append(a)
        schema = pa.schema(fields, metadata={"speculum": json.dumps(meta, default=str)})
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), tmp)
    elif name.endswith((".fits", ".fits.gz", ".fit")):
        t = require("astropy.table", "writing FITS result tables").Table()
        for k, v in columns.items():
            arr = np.asarray(v)
            t[k] = arr.astype(str) if arr.dtype == object else arr
            if units.get(k):
                t[k].unit = units[k]
        for k, v in meta.items():
            t.meta[k.upper()[:8]] = v
        t.write(tmp, format="fits", overwrite=True)
    else:
        raise ValueError(f"{path}: unknown result format; use .parquet or .fits")
    os.replace(tmp, path)
    return path
