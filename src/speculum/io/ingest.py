"""``speculum ingest``: survey files -> Parquet shards, in parallel, resumable, atomic.

Input files are sorted and cut into fixed groups (``files_per_shard``); group ``k`` becomes
``part-k.parquet``. A re-run with the same inputs skips shards whose checksum verifies, so
an interrupted ingest resumes where it stopped. Each file is read by
:func:`~speculum.io.surveys.read_spectra`; a malformed file or object stops the run with
an error that names the file, the HDU/column and the problem, unless ``skip_bad`` is set:
then it is listed in ``rejects.parquet`` with its reason and everything else is ingested.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from speculum._optional import require
from speculum.instruments import get_instrument
from speculum.io.shards import MANIFEST, DataFormatError, ShardWriter
from speculum.io.surveys import SpectrumFormatError, SpectrumRecords, read_spectra

__all__ = ["IngestConfig", "expand_inputs", "ingest"]

log = logging.getLogger(__name__)
FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fits.fz")


@dataclass(frozen=True)
class IngestConfig:
    """How to ingest.

    Attributes:
        instrument: Grid for SDSS/BOSS files (``SDSS`` or ``BOSS``); DESI coadds always
            use ``DESI``. ``None``: ``DESI`` if the inputs are DESI coadds, else ``BOSS``.
        files_per_shard: Input files per Parquet shard.
        skip_bad: Reject malformed files/objects into ``rejects.parquet`` instead of failing.
        keep_resolution: Keep DESI resolution matrices (column ``resolution``).
        fiberstatus_ok: Acceptable DESI ``COADD_FIBERSTATUS`` bits.
        zwarn_ok: Acceptable DESI ``ZWARN`` bits (others give ``z = null``).
        classes: Keep only these pipeline classes (``GALAXY``, ``QSO``, ``STAR``).
        z_min: Keep objects with ``z >= z_min`` (objects without a redshift are kept).
        z_max: Keep objects with ``z <= z_max``.
        catalog: A table (FITS, CSV, Parquet) with ``object_id`` (or ``TARGETID``, or
            ``PLATE``/``MJD``/``FIBERID``) and optionally ``Z``: only listed objects are
            ingested, with the catalogue's redshift where it has one.
    """

    instrument: str | None = None
    files_per_shard: int = 256
    skip_bad: bool = False
    keep_resolution: bool = True
    fiberstatus_ok: int = 0
    zwarn_ok: int = 0
    classes: tuple[str, ...] | None = None
    z_min: float | None = None
    z_max: float | None = None
    catalog: str | None = None


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files from paths, folders (searched recursively for FITS files) and glob patterns, sorted."""
    files: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files.update(q for q in p.rglob("*") if q.is_file() and q.name.lower().endswith(FITS_SUFFIXES))
        elif p.exists():
            files.add(p)
        else:
            hits = glob.glob(str(item), recursive=True)
            if not hits:
                raise FileNotFoundError(f"{item}: no such file, folder or matching pattern")
            files.update(Path(h) for h in hits if Path(h).is_file())
    # redshift side-files of DESI coadds are read through their coadd, not on their own
    keep = [f for f in files if not f.name.startswith(("redrock-", "zbest-", "spectra-"))]
    return sorted(keep, key=lambda f: str(f.resolve()))


def _load_catalog(path: str) -> dict[str, float]:
    Table = require("astropy.table", "reading a catalogue").Table  # noqa: N806

    try:
        t = Table.read(path)
    except Exception as err:  # noqa: BLE001
        raise DataFormatError(f"{path}: cannot read the catalogue ({err})") from None
    cols = {c.upper(): c for c in t.colnames}
    if "OBJECT_ID" in cols:
        ids = [str(v).strip() for v in t[cols["OBJECT_ID"]]]
    elif "TARGETID" in cols:
        ids = [str(int(v)) for v in t[cols["TARGETID"]]]
    elif {"PLATE", "MJD", "FIBERID"} <= set(cols):
        ids = [
            f"{int(p):04d}-{int(m):05d}-{int(f):04d}"
            for p, m, f in zip(t[cols["PLATE"]], t[cols["MJD"]], t[cols["FIBERID"]], strict=True)
        ]
    else:
        raise DataFormatError(f"{path}: column object_id (or TARGETID, or PLATE/MJD/FIBERID) missing")
    z = np.asarray(t[cols["Z"]], dtype=np.float64) if "Z" in cols else np.full(len(ids), np.nan)
    return dict(zip(ids, z, strict=True))


def _select(rec: SpectrumRecords, cfg: IngestConfig, catalog: dict[str, float] | None) -> tuple[SpectrumRecords, int]:
    keep = np.ones(len(rec), bool)
    if catalog is not None:
        for i, oid in enumerate(rec.object_id):
            if oid not in catalog:
                keep[i] = False
            elif np.isfinite(catalog[oid]):
                rec.z[i], rec.z_flag[i] = catalog[oid], ""
    if cfg.classes:
        keep &= np.array([c in cfg.classes for c in rec.spec_class])
    with np.errstate(invalid="ignore"):
        if cfg.z_min is not None:
            keep &= ~(rec.z < cfg.z_min)
        if cfg.z_max is not None:
            keep &= ~(rec.z > cfg.z_max)
    idx = np.nonzero(keep)[0]
    return rec.take(idx), int(len(rec) - len(idx))


def _validate(rec: SpectrumRecords) -> list[str | None]:
    """Per object: ``None`` if fine, else the problem."""
    lo, hi = get_instrument(rec.instrument).z_range
    out: list[str | None] = []
    for i in range(len(rec)):
        z = rec.z[i]
        if np.isfinite(z) and not (lo - 0.005 <= z <= hi):
            out.append(f"redshift table, column Z: z = {z:.4f} outside the {rec.instrument} range [{lo}, {hi}]")
        else:
            out.append(None)
    return out


def _read_group(
    files: list[str], cfg: IngestConfig, instrument: str, catalog: dict[str, float] | None
) -> tuple[dict | None, list[dict], int]:
    """Worker: read a group of files -> (columns or None, rejects, n_not_selected)."""
    parts, rejects, unselected = [], [], 0
    for f in files:
        try:
            rec = read_spectra(
                f,
                None if instrument == "DESI" else instrument,
                fiberstatus_ok=cfg.fiberstatus_ok,
                zwarn_ok=cfg.zwarn_ok,
                keep_resolution=cfg.keep_resolution,
            )
            if rec.instrument != instrument:
                raise SpectrumFormatError(f"{f}: layout: a {rec.instrument} file among {instrument} inputs")
        except SpectrumFormatError as err:
            if not cfg.skip_bad:
                raise
            rejects.append({"file": f, "object_id": "", "reason": str(err)})
            continue
        rec, n_out = _select(rec, cfg, catalog)
        unselected += n_out
        problems = _validate(rec)
        bad = [i for i, p in enumerate(problems) if p]
        if bad and not cfg.skip_bad:
            raise SpectrumFormatError(f"{f}: object {rec.object_id[bad[0]]}: {problems[bad[0]]}")
        for i in bad:
            rejects.append({"file": f, "object_id": rec.object_id[i], "reason": f"{f}: {problems[i]}"})
        good = np.array([i for i, p in enumerate(problems) if p is None], dtype=int)
        if len(good):
            parts.append(rec.take(good))
    if not parts:
        return None, rejects, unselected
    cols = [p.columns() for p in parts]
    merged = {}
    for key in cols[0]:
        vals = [c[key] for c in cols]
        merged[key] = np.concatenate(vals) if isinstance(vals[0], np.ndarray) else [v for c in vals for v in c]
    return merged, rejects, unselected


def _detect_instrument(files: list[Path], requested: str | None) -> str:
    fits = require("astropy.io.fits", "speculum ingest")

    kinds = set()
    for f in files[:50]:
        try:
            with fits.open(f) as hdul:
                names = {h.name.upper() for h in hdul}
                sdss = "COADD" in names or "COEFF0" in hdul[0].header
            if "FIBERMAP" in names:
                kinds.add("DESI")
            elif sdss:
                kinds.add("SDSS")
        except Exception:  # noqa: BLE001 - unreadable files are reported by the reader
            continue
    if "DESI" in kinds and "SDSS" in kinds:
        raise ValueError("inputs mix DESI coadds and SDSS/BOSS files: ingest them into separate folders")
    if "DESI" in kinds:
        if requested not in (None, "DESI"):
            raise ValueError(f"--instrument {requested}: the inputs are DESI coadds")
        return "DESI"
    return get_instrument(requested or "BOSS").name


def ingest(
    inputs: Iterable[str | Path],
    out: str | Path,
    config: IngestConfig | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Ingest survey files into a shard folder (see the module docstring).

    Args:
        inputs: Files, folders or glob patterns.
        out: Output folder.
        config: :class:`IngestConfig`.
        workers: Processes reading files in parallel.
        progress: Called with ``(files_done, files_total)``.

    Returns:
        Summary: counts of files, spectra, rejects, unselected, missing redshifts.
    """
    cfg = config or IngestConfig()
    files = expand_inputs(inputs)
    if not files:
        raise FileNotFoundError(f"no input files found in {list(map(str, inputs))}")
    instrument = _detect_instrument(files, cfg.instrument)
    out = Path(out)
    digest = hashlib.sha256("\n".join(str(f.resolve()) for f in files).encode()).hexdigest()
    identity = {k: v for k, v in asdict(cfg).items() if k != "skip_bad"}  # --skip-bad may change on a re-run
    extra = {"ingest": {"config": identity, "n_files": len(files), "inputs_sha256": digest}}
    manifest = out / MANIFEST
    if manifest.exists():
        old = json.loads(manifest.read_text()).get("ingest")
        if old != json.loads(json.dumps(extra["ingest"])):
            raise DataFormatError(
                f"{manifest}: holds a different ingest (inputs or options differ); choose another --out"
            )
    provenance = {"source": "speculum ingest", "files": [str(f) for f in files[:1000]]}
    writer = ShardWriter(out, instrument, provenance, extra)
    groups = [files[i : i + cfg.files_per_shard] for i in range(0, len(files), cfg.files_per_shard)]
    todo = [k for k in range(len(groups)) if not writer.done(k)]
    rejects_path = out / "rejects.parquet"
    rejects: list[dict] = _read_rejects(rejects_path, keep_groups=set(range(len(groups))) - set(todo), groups=groups)
    unselected = 0
    done_files = sum(len(groups[k]) for k in range(len(groups)) if k not in todo)

    def handle(k: int, result) -> None:
        nonlocal unselected, done_files
        cols, rej, n_out = result
        unselected += n_out
        rejects.extend(rej)
        if cols is not None:
            writer.write(k, cols)
        done_files += len(groups[k])
        if progress is not None:
            progress(done_files, len(files))

    catalog = _load_catalog(cfg.catalog) if cfg.catalog else None  # read once, not per group
    args = [([str(f) for f in groups[k]], cfg, instrument, catalog) for k in todo]
    if workers <= 1 or len(todo) <= 1:
        for k, a in zip(todo, args, strict=True):
            handle(k, _read_group(*a))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_read_group, *a): k for k, a in zip(todo, args, strict=True)}
            for fut in as_completed(futures):
                handle(futures[fut], fut.result())
    _write_rejects(rejects_path, rejects)
    writer.close()
    n_no_z = 0
    import pyarrow.parquet as pq

    for entry in writer.shards.values():
        zflag = pq.read_table(out / entry["path"], columns=["z_flag"])["z_flag"].to_pylist()
        n_no_z += sum(1 for v in zflag if v)
    summary = {
        "instrument": instrument,
        "n_files": len(files),
        "n_shards": len(groups),
        "n_spectra": sum(s["n_rows"] for s in writer.shards.values()),
        "n_rejected": len(rejects),
        "n_not_selected": unselected,
        "n_without_redshift": n_no_z,
        "out": str(out),
    }
    log.info("ingest: %s", summary)
    return summary


def _read_rejects(path: Path, keep_groups: set[int], groups: list[list[Path]]) -> list[dict]:
    if not path.exists():
        return []
    import pyarrow.parquet as pq

    keep_files = {str(f) for k in keep_groups for f in groups[k]}
    return [r for r in pq.read_table(path).to_pylist() if r["file"] in keep_files]


def _write_rejects(path: Path, rejects: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {k: [r[k] for r in rejects] for k in ("file", "object_id", "reason")},
        schema=pa.schema([("file", pa.string()), ("object_id", pa.string()), ("reason", pa.string())]),
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
