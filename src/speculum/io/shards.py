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

Units are recorded twice: the manifest's ``units`` (``flux``, ``ivar``, ``wave``) and
``wave_medium`` (``vacuum``), and the Parquet field metadata of ``flux``/``ivar``
(``unit``) and the schema metadata (``wave_unit``, ``wave_medium``) of every shard.
:attr:`SpectraSet.flux_unit` and :attr:`SpectraSet.wave_medium` read them back.

Every file is written through :func:`speculum._files.atomic_path` (a temporary name in the
same folder, renamed into place), and the manifest is rewritten after every shard, so an
interrupted writer leaves only complete shards that a re-run verifies by checksum and
skips. Temporary files of writers that were killed (``kill -9`` leaves them behind) are
removed when a :class:`ShardWriter` opens the folder again (:func:`remove_stale_temps`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speculum._files import atomic_path, atomic_write_text, remove_stale_temps, sha256_file
from speculum.instruments import Instrument, get_instrument

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "DataFormatError",
    "ShardWriter",
    "SpectraSet",
    "atomic_write_text",
    "decode_table",
    "remove_stale_temps",
    "split_of",
    "write_shard_file",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED = ("object_id", "survey", "instrument", "z", "z_err", "flux", "ivar", "mask")
SPLITS = ("train", "val", "test")
FLUX_UNIT = "1e-17 erg s^-1 cm^-2 Angstrom^-1"  # SDSS, BOSS and DESI flux densities (an astropy unit string)
WAVE_UNIT = "Angstrom"
WAVE_MEDIUM = "vacuum"


def _ivar_unit(flux_unit: str) -> str:
    return f"({flux_unit})^-2"


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


def _to_arrow(columns: dict[str, object], flux_unit: str | None = None):
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
    if flux_unit is None:
        return pa.Table.from_arrays(arrays, names=names)
    units = {"flux": flux_unit, "ivar": _ivar_unit(flux_unit)}
    fields = [
        pa.field(n, a.type, metadata={"unit": units[n]} if n in units else None)
        for n, a in zip(names, arrays, strict=True)
    ]
    schema = pa.schema(fields, metadata={"wave_unit": WAVE_UNIT, "wave_medium": WAVE_MEDIUM})
    return pa.Table.from_arrays(arrays, schema=schema)


def _check_columns(columns: dict[str, object], n_pix: int) -> dict[str, object]:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ValueError(f"columns: missing required column(s) {missing}")
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


def write_shard_file(
    out: str | Path,
    index: int,
    columns: dict[str, object] | Iterable[dict[str, object]],
    instrument: str | Instrument,
    flux_unit: str = FLUX_UNIT,
) -> dict | None:
    """Write ``part-{index:05d}.parquet`` atomically without touching the manifest.

    What a worker process calls: it returns the small manifest entry (``index``, ``path``,
    ``n_rows``, ``sha256``, ``splits``) for the parent to record with
    :meth:`ShardWriter.record`, so no spectra travel between processes.

    Args:
        out: Data folder.
        index: Shard number.
        columns: Column dict (``flux``/``ivar``/``mask`` of shape ``(N, L)``), or an
            iterable of them: each becomes one Parquet row group, so only one is in
            memory at a time.
        instrument: Instrument of every spectrum (checks ``L``).
        flux_unit: Unit of ``flux`` (recorded in the field metadata).

    Returns:
        The manifest entry, or ``None`` when ``columns`` held no rows (nothing written).
    """
    import pyarrow.parquet as pq

    n_pix = get_instrument(instrument).n_pixels
    out = Path(out)
    parts = [columns] if isinstance(columns, dict) else columns
    name = f"part-{index:05d}.parquet"
    path = out / name
    writer, rows, splits = None, 0, dict.fromkeys(SPLITS, 0)
    # exits in reverse: the Parquet writer closes, then atomic_path renames (or removes on error)
    with ExitStack() as stack:
        for part in parts:
            cols = _check_columns(part, n_pix)
            if len(cols["object_id"]) == 0:
                continue
            table = _to_arrow(cols, flux_unit)
            if writer is None:  # the file exists only once there is a row
                tmp = stack.enter_context(atomic_path(path))
                writer = stack.enter_context(closing(pq.ParquetWriter(tmp, table.schema, compression="lz4")))
            writer.write_table(table)
            rows += table.num_rows
            for s in cols["split"]:
                splits[s] += 1
    if writer is None:
        return None
    return {"index": index, "path": name, "n_rows": rows, "sha256": sha256_file(path), "splits": splits}


class ShardWriter:
    """Write a data set shard by shard; resumable and atomic.

    Args:
        out: Output folder (created).
        instrument: Instrument of every spectrum.
        provenance: Free-form description of where the data come from (saved).
        extra: Further manifest entries (e.g. the simulator config).
        flux_unit: Unit of ``flux`` (default: the surveys' ``1e-17 erg s^-1 cm^-2
            Angstrom^-1``); wavelengths are vacuum Angstrom.

    Example:
        >>> import tempfile
        >>> w = ShardWriter(tempfile.mkdtemp(), "SDSS", {"source": "doctest"})
        >>> w.done(0)
        False
    """

    def __init__(
        self,
        out: str | Path,
        instrument: str | Instrument,
        provenance: dict,
        extra: dict | None = None,
        flux_unit: str = FLUX_UNIT,
    ):
        self.out = Path(out)
        self.flux_unit = flux_unit
        self.out.mkdir(parents=True, exist_ok=True)
        self.instrument = get_instrument(instrument)
        self.provenance = provenance
        self.extra = extra or {}
        self.shards: dict[int, dict] = {}
        remove_stale_temps(self.out)
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
        ok = path.exists() and sha256_file(path) == entry["sha256"]
        if not ok:
            log.warning("shard %s is missing or corrupt; it will be rewritten", path)
            del self.shards[index]
        return ok

    def write(self, index: int, columns: dict[str, object] | Iterable[dict[str, object]]) -> Path:
        """Write shard ``index`` atomically from ``columns`` (see the module docstring).

        ``columns`` may also be an iterable of such dicts: each becomes one Parquet row
        group, so a shard can be streamed without holding it in memory at once.
        """
        entry = write_shard_file(self.out, index, columns, self.instrument, self.flux_unit)
        if entry is None:
            raise ValueError(f"shard {index}: no rows to write")
        self.record(entry)
        return self.out / entry["path"]

    def record(self, entry: dict) -> None:
        """Add a shard written by :func:`write_shard_file` (e.g. in a worker) to the manifest."""
        self.shards[int(entry["index"])] = entry
        self._write_manifest(complete=False)

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
            "units": {"flux": self.flux_unit, "ivar": _ivar_unit(self.flux_unit), "wave": WAVE_UNIT},
            "wave_medium": WAVE_MEDIUM,
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
        """Observed-frame wavelength grid ``(L,)`` in Angstrom (see :attr:`wave_medium`)."""
        return np.array(self.instrument.wave_obs)

    @property
    def flux_unit(self) -> str:
        """Unit of ``flux`` (data sets written before units were recorded: the surveys' unit)."""
        return str(self.manifest.get("units", {}).get("flux", FLUX_UNIT))

    @property
    def wave_medium(self) -> str:
        """``vacuum`` (every speculum grid); recorded in the manifest."""
        return str(self.manifest.get("wave_medium", WAVE_MEDIUM))

    def __len__(self) -> int:
        return int(self.manifest["n_spectra"])

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the instrument and the shards' names, row counts and checksums: the data's identity."""
        shards = [(e["path"], e["n_rows"], e["sha256"]) for e in self.manifest["shards"]]
        blob = json.dumps({"instrument": self.manifest["instrument"], "shards": shards}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

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

        tables, n = [], 0
        for table in self._tables(columns, split, None):
            tables.append(table)
            n += table.num_rows
            if limit is not None and n >= limit:
                break
        if not tables:
            return {}
        table = pa.concat_tables(tables)
        if limit is not None:
            table = table.slice(0, limit)
        return decode_table(table, columns)

    def iter_batches(
        self, columns: Sequence[str] | None = None, *, split: str | None = None, batch_size: int = 1024
    ) -> Iterator[dict[str, np.ndarray]]:
        """Stream the rows shard by shard in batches of at most ``batch_size`` rows, in manifest order.

        Memory holds one record batch at a time, whatever the size of the data set.

        Args:
            columns: Columns to read (default: all).
            split: Keep only rows of this split.
            batch_size: Rows per yielded batch (before the split selection).

        Yields:
            Column name to array, decoded as in :meth:`read`.
        """
        for table in self._tables(columns, split, batch_size):
            if table.num_rows:
                yield decode_table(table, columns)

    def _tables(self, columns: Sequence[str] | None, split: str | None, batch_size: int | None):
        """Arrow tables of the split's rows: one per shard (``batch_size`` None) or per record batch."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if split is not None and split not in SPLITS:
            raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
        want = None if columns is None else list(dict.fromkeys([*columns, *(["split"] if split else [])]))
        for entry in self.manifest["shards"]:
            path = self.root / entry["path"]
            if not path.exists():
                raise DataFormatError(f"{path}: shard listed in the manifest is missing")
            try:
                if batch_size is None:
                    parts = [pq.read_table(path, columns=want)]
                else:
                    parts = (
                        pa.Table.from_batches([b])
                        for b in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=want)
                    )
                for table in parts:
                    yield table.filter(pc.equal(table["split"], split)) if split is not None else table
            except (pa.ArrowInvalid, OSError) as err:
                raise DataFormatError(f"{path}: cannot read shard ({err})") from None
            except KeyError as err:
                raise DataFormatError(f"{path}: no column {err}") from None


def decode_table(table, columns: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Arrow -> numpy: the one decoder of shard and result columns.

    Args:
        table: A ``pyarrow.Table`` or ``RecordBatch`` of ``N`` rows.
        columns: Columns to decode (default: all, in table order).

    Returns:
        Column name to array: fixed-size lists as ``(N, L)`` arrays (slice offsets
        respected), strings as object arrays ``(N,)``, variable-length lists as object
        arrays ``(N,)`` of 1-D arrays, scalars as 1-D arrays (nulls of floats as NaN).
        Single-chunk numeric columns without nulls are views of the Arrow buffers.
    """
    import pyarrow as pa

    out = {}
    for name in table.column_names if columns is None else columns:
        col = table[name]
        if isinstance(col, pa.ChunkedArray):
            col = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            out[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
        elif pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            rows = np.empty(len(col), dtype=object)
            for i, v in enumerate(col):
                rows[i] = np.asarray(v.values)
            out[name] = rows
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out[name] = np.array(col.to_pylist(), dtype=object)
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out
