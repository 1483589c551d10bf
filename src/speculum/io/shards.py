"""Spectra as Parquet shards plus a JSON manifest: the one on-disk format for spectra.

A data set is a folder::

    manifest.json        schema version, instrument + wavelength grid (stored once),
                         shards with row counts and SHA-256, split counts, provenance
    part-00000.parquet   one row per spectrum
    part-00001.parquet   ...

Columns of every shard (``L`` = the instrument's number of pixels):

=============  =========================  =============================================
``object_id``  string                     unique id (survey id, or ``sim-SEED-INDEX``)
``survey``     string                     e.g. ``SDSS``, ``BOSS``, ``DESI``, ``sim``
``instrument`` string                     name of the :class:`~speculum.instruments.Instrument`
``z``          float64 (nullable)         redshift; null when unknown
``z_err``      float32                    redshift error (0 for simulations)
``flux``       fixed_size_list<f32>[L]    flux density on the instrument grid
``ivar``       fixed_size_list<f32>[L]    inverse variance
``mask``       fixed_size_list<i32>[L]    :class:`~speculum.instruments.PixelMask` bits
``split``      string                     ``train``/``val``/``test`` by :func:`split_of`
=============  =========================  =============================================

Any further columns (truth of simulations, survey metadata) are kept as they are: 1-D
arrays become scalar columns, 2-D arrays fixed-size lists.

Every file is written to a temporary name and renamed into place, and the manifest is
rewritten after every shard, so an interrupted writer leaves only complete shards that a
re-run verifies by checksum and skips.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speculum.instruments import Instrument, get_instrument

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "DataFormatError",
    "ShardWriter",
    "SpectraSet",
    "atomic_write_text",
    "split_of",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED = ("object_id", "survey", "instrument", "z", "z_err", "flux", "ivar", "mask")
SPLITS = ("train", "val", "test")


class DataFormatError(ValueError):
    """A data set on disk is missing, incomplete or not what speculum wrote."""


def split_of(object_id: str, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """Stable train/val/test assignment from a hash of the object id.

    The BLAKE2b hash of the UTF-8 id is mapped to ``[0, 1)``; the same id gets the same
    split on every run and machine, whatever the row order.

    Example:
        >>> split_of("sim-0-000000001")
        'train'
    """
    h = int.from_bytes(hashlib.blake2b(object_id.encode(), digest_size=8).digest(), "little") / 2**64
    if h < fractions[0]:
        return "train"
    return "val" if h < fractions[0] + fractions[1] else "test"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _to_arrow(columns: dict[str, object]):
    import pyarrow as pa

    arrays, names = [], []
    for name, value in columns.items():
        if isinstance(value, np.ndarray) and value.ndim == 2:
            flat = pa.array(np.ascontiguousarray(value).reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, value.shape[1]))
        elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
            arrays.append(pa.array([np.asarray(v, dtype=np.float64).reshape(-1) for v in value]))
        elif isinstance(value, np.ndarray) and value.dtype.kind == "f":
            arrays.append(pa.array(value, mask=np.isnan(value)))  # NaN -> null (e.g. unknown z)
        else:
            arrays.append(pa.array(value))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


class ShardWriter:
    """Write a data set shard by shard; resumable and atomic.

    Args:
        out: Output folder (created).
        instrument: Instrument of every spectrum.
        provenance: Free-form description of where the data come from (saved).
        extra: Further manifest entries (e.g. the simulator config).

    Example:
        >>> import tempfile
        >>> w = ShardWriter(tempfile.mkdtemp(), "SDSS", {"source": "doctest"})
        >>> w.done(0)
        False
    """

    def __init__(self, out: str | Path, instrument: str | Instrument, provenance: dict, extra: dict | None = None):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.instrument = get_instrument(instrument)
        self.provenance = provenance
        self.extra = extra or {}
        self.shards: dict[int, dict] = {}
        path = self.out / MANIFEST
        if path.exists():
            old = json.loads(path.read_text())
            if old.get("instrument", {}).get("name") != self.instrument.name:
                raise DataFormatError(f"{path}: instrument {old.get('instrument')} differs from {self.instrument.name}")
            for s in old.get("shards", []):
                self.shards[int(s["index"])] = s

    def done(self, index: int) -> bool:
        """Whether shard ``index`` exists and matches its recorded checksum."""
        entry = self.shards.get(index)
        if entry is None:
            return False
        path = self.out / entry["path"]
        ok = path.exists() and _sha256(path) == entry["sha256"]
        if not ok:
            log.warning("shard %s is missing or corrupt; it will be rewritten", path)
            del self.shards[index]
        return ok

    def write(self, index: int, columns: dict[str, object] | Iterable[dict[str, object]]) -> Path:
        """Write shard ``index`` atomically from ``columns`` (see the module docstring).

        ``columns`` may also be an iterable of such dicts: each becomes one Parquet row
        group, so a shard can be streamed without holding it in memory at once.
        """
        import pyarrow.parquet as pq

        parts = [columns] if isinstance(columns, dict) else columns
        name = f"part-{index:05d}.parquet"
        path = self.out / name
        tmp = self.out / f".{name}.{os.getpid()}.tmp"
        writer, rows, splits = None, 0, dict.fromkeys(SPLITS, 0)
        try:
            for part in parts:
                cols = self._check(part)
                table = _to_arrow(cols)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema, compression="lz4")
                writer.write_table(table)
                rows += table.num_rows
                for s in cols["split"]:
                    splits[s] += 1
            if writer is None:
                raise ValueError(f"shard {index}: no rows to write")
            writer.close()
            os.replace(tmp, path)
        except BaseException:
            if writer is not None:
                writer.close()
            tmp.unlink(missing_ok=True)
            raise
        self.shards[index] = {"index": index, "path": name, "n_rows": rows, "sha256": _sha256(path), "splits": splits}
        self._write_manifest(complete=False)
        return path

    def _check(self, columns: dict[str, object]) -> dict[str, object]:
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise ValueError(f"columns: missing required column(s) {missing}")
        n_pix = self.instrument.n_pixels
        for c in ("flux", "ivar", "mask"):
            arr = columns[c]
            if not (isinstance(arr, np.ndarray) and arr.ndim == 2 and arr.shape[1] == n_pix):
                raise ValueError(f"columns[{c!r}]: expected shape (N, {n_pix}), got {getattr(arr, 'shape', type(arr))}")
        cols = dict(columns)
        cols["flux"] = cols["flux"].astype(np.float32, copy=False)
        cols["ivar"] = cols["ivar"].astype(np.float32, copy=False)
        cols["mask"] = cols["mask"].astype(np.int32, copy=False)
        if "split" not in cols:
            cols["split"] = [split_of(str(o)) for o in cols["object_id"]]
        return cols

    def close(self) -> Path:
        """Mark the data set complete and return the manifest path."""
        return self._write_manifest(complete=True)

    def _write_manifest(self, complete: bool) -> Path:
        inst = self.instrument
        shards = [self.shards[i] for i in sorted(self.shards)]
        manifest = {
            "format": "speculum-spectra",
            "schema_version": SCHEMA_VERSION,
            "complete": complete,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "instrument": {
                "name": inst.name,
                "wave_start": inst.wave_start,
                "step": inst.step,
                "n_pixels": inst.n_pixels,
                "log_spaced": inst.log_spaced,
            },
            "wave": [round(float(w), 4) for w in inst.wave_obs],
            "n_spectra": sum(s["n_rows"] for s in shards),
            "splits": {k: sum(s["splits"][k] for s in shards) for k in SPLITS},
            "shards": shards,
            "provenance": self.provenance,
            **self.extra,
        }
        path = self.out / MANIFEST
        atomic_write_text(path, json.dumps(manifest, indent=1))
        return path


@dataclass
class SpectraSet:
    """A data set written by :class:`ShardWriter`, opened for reading.

    Example:
        ``data = SpectraSet.open("sim/"); train = data.read(split="train")``
    """

    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: str | Path) -> SpectraSet:
        root = Path(root)
        path = root / MANIFEST
        if not root.exists():
            raise DataFormatError(f"{root}: no such data folder")
        if not path.exists():
            raise DataFormatError(f"{path}: missing manifest; is this a speculum data folder (simulate/ingest output)?")
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DataFormatError(f"{path}: not valid JSON ({err})") from None
        if manifest.get("format") != "speculum-spectra":
            raise DataFormatError(f"{path}: field 'format' is {manifest.get('format')!r}, expected 'speculum-spectra'")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise DataFormatError(
                f"{path}: field 'schema_version' is {manifest.get('schema_version')!r}, "
                f"this speculum reads {SCHEMA_VERSION}"
            )
        if not manifest.get("complete", False):
            log.warning("%s: the data set is incomplete (writer interrupted?); reading the finished shards", path)
        return cls(root, manifest)

    @property
    def instrument(self) -> Instrument:
        return get_instrument(self.manifest["instrument"]["name"])

    @property
    def wave(self) -> np.ndarray:
        return np.array(self.instrument.wave_obs)

    def __len__(self) -> int:
        return int(self.manifest["n_spectra"])

    @property
    def columns(self) -> list[str]:
        import pyarrow.parquet as pq

        shards = self.manifest["shards"]
        return pq.read_schema(self.root / shards[0]["path"]).names if shards else list(REQUIRED)

    def read(
        self, columns: Sequence[str] | None = None, split: str | None = None, limit: int | None = None
    ) -> dict[str, np.ndarray]:
        """Read columns of all shards into memory (for data sets that fit in memory).

        Args:
            columns: Columns to read (default: all).
            split: Keep only rows of this split.
            limit: Read at most this many rows (after the split selection).

        Returns:
            Column name to array: fixed-size lists as ``(N, L)`` arrays, strings as object
            arrays, variable-length lists as object arrays of 1-D arrays.
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if split is not None and split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        tables, n = [], 0
        want = None if columns is None else list(dict.fromkeys([*columns, *(["split"] if split else [])]))
        for entry in self.manifest["shards"]:
            path = self.root / entry["path"]
            if not path.exists():
                raise DataFormatError(f"{path}: shard listed in the manifest is missing")
            try:
                table = pq.read_table(path, columns=want)
            except (pa.ArrowInvalid, OSError) as err:
                raise DataFormatError(f"{path}: cannot read shard ({err})") from None
            except KeyError as err:
                raise DataFormatError(f"{path}: no column {err}") from None
            if split is not None:
                table = table.filter(pc.equal(table["split"], split))
            tables.append(table)
            n += table.num_rows
            if limit is not None and n >= limit:
                break
        if not tables:
            return {}
        table = pa.concat_tables(tables)
        if limit is not None:
            table = table.slice(0, limit)
        out = {}
        for name in table.column_names if columns is None else columns:
            col = table[name].combine_chunks()
            if pa.types.is_fixed_size_list(col.type):
                out[name] = col.values.to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
            elif pa.types.is_list(col.type):
                out[name] = np.array([np.asarray(v.values) for v in col], dtype=object)
            elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                out[name] = np.array(col.to_pylist(), dtype=object)
            else:
                out[name] = col.to_numpy(zero_copy_only=False)
        return out
