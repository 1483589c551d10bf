"""Per-object result tables (latents, log p, flags, ...) as Parquet or FITS, with units."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from speculum._files import atomic_path
from speculum._optional import require

__all__ = ["read_result_meta", "read_results", "write_results"]


def write_results(
    path: str | Path,
    columns: dict[str, np.ndarray | list],
    units: dict[str, str] | None = None,
    meta: dict | None = None,
) -> Path:
    """Write a per-object table atomically; the format follows the suffix.

    ``.parquet``: units are stored in each field's metadata (``unit``) and ``meta`` in the
    schema metadata. ``.fits``/``.fits.gz``: an astropy binary table whose ``TUNITn``
    header cards carry the units and whose header carries ``meta``; ``.fits.gz`` is
    gzip-compressed. Keys of ``meta`` are kept whole (upper case; longer than 8
    characters as ``HIERARCH`` cards), so ``model_path`` and ``model_paths`` stay apart;
    keys that differ only in case, or reserved table keywords, are an error.

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
    name = path.name.lower()
    if not name.endswith((".parquet", ".fits", ".fits.gz", ".fit")):
        raise ValueError(f"{path}: unknown result format; use .parquet or .fits")
    # the temporary name keeps the suffix: astropy compresses by the name (.gz)
    with atomic_path(path) as tmp:
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
        else:  # FITS
            t = require("astropy.table", "writing FITS result tables").Table()
            for k, v in columns.items():
                arr = np.asarray(v)
                t[k] = arr.astype(str) if arr.dtype == object else arr
                if units.get(k):
                    t[k].unit = units[k]
            reserved = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "EXTEND", "PCOUNT", "GCOUNT", "TFIELDS", "END"}
            seen: dict[str, str] = {}
            for k, v in meta.items():
                key = str(k).upper()
                if key in seen:
                    raise ValueError(f"meta: keys {seen[key]!r} and {k!r} are the same FITS keyword {key!r}")
                if key in reserved or key.startswith(("TTYPE", "TFORM", "TUNIT", "NAXIS", "TDIM")):
                    raise ValueError(f"meta: key {k!r} is a reserved FITS table keyword")
                seen[key] = k
                t.meta[key] = v
            with warnings.catch_warnings():  # long keys become HIERARCH cards, which is what we want
                warnings.filterwarnings("ignore", message="Keyword name .* is greater than 8 characters")
                t.write(tmp, format="fits", overwrite=True)
    return path


def read_results(path: str | Path, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read a table written by :func:`write_results` (Parquet or FITS) into numpy columns.

    Args:
        path: ``.parquet``, ``.fits`` or ``.fits.gz`` file.
        columns: Columns to read (default: all).

    Returns:
        Column name to array: vectors as ``(N, k)`` arrays, strings as object arrays.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such result table")
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        from speculum.io.shards import decode_table

        return decode_table(pq.read_table(path, columns=columns), columns)
    if name.endswith((".fits", ".fits.gz", ".fit")):
        t = require("astropy.table", "reading FITS result tables").Table.read(path)
        out = {}
        for k in columns or t.colnames:
            arr = np.asarray(t[k])
            out[k] = arr.astype(str).astype(object) if arr.dtype.kind in "SU" else arr
        return out
    raise ValueError(f"{path}: unknown result format; use .parquet or .fits")


def read_result_meta(path: str | Path) -> dict[str, object]:
    """The ``meta`` a table was written with by :func:`write_results` (FITS keys come back upper-case).

    Raises:
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such result table")
    if path.name.lower().endswith(".parquet"):
        import json

        import pyarrow.parquet as pq

        raw = (pq.read_schema(path).metadata or {}).get(b"speculum")
        return json.loads(raw) if raw else {}
    fits = require("astropy.io.fits", "reading FITS result tables")
    with fits.open(path) as hdul:
        header = hdul[1].header
        skip = ("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "TFIELDS", "TTYPE", "TFORM", "TUNIT", "TDIM")
        skip += ("EXTNAME",)
        return {k: header[k] for k in header if not k.startswith(skip)}
