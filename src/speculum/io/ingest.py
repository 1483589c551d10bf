"""``speculum ingest``: survey files -> Parquet shards, in parallel, resumable, atomic.

Sharding is sized by memory, not by file count: the sorted inputs are cut into shards of at
most ``shard_bytes`` of decoded spectra (``flux``, ``ivar``, ``mask`` and, for DESI, the
resolution matrices: ~435 KB per DESI fibre, ~56 KB per BOSS spectrum), at most
``rows_per_shard`` rows and at most ``files_per_shard`` files. A multi-fibre DESI coadd
larger than the budget is split by fibre ranges across shards; small files share a
shard. The plan (:func:`plan_shards`) depends only on the sorted inputs, their row counts
and the config, so a re-run makes the same shards. Row counts come from the FITS headers
of DESI coadds and of files whose layout the name does not tell; SDSS/BOSS ``spec-*``
files hold one spectrum each and are not opened for it (:func:`count_rows`).

Each shard is read *and written* by one worker process, one file (or, for DESI, at most
``DESI_CHUNK_ROWS`` = 64 fibres) at a time, each its own Parquet row group; the worker
returns only a small summary, so no spectra travel between processes and a worker holds
at most one chunk (never more than the shard budget), whatever the number of files. Shard ``k`` is ``part-k.parquet``;
its rejects and counts go next to it, atomically, in ``part-k.rejects.parquet``. A re-run
with the same inputs skips shards whose checksum verifies (and whose rejects file exists),
so an interrupted ingest resumes where it stopped and keeps the rejects of the shards it
skips; at the end every shard's rejects are merged into ``rejects.parquet``. Temporary
files that killed workers left in the output folder are removed when it is opened again.

Each file is read by :func:`~speculum.io.surveys.read_spectra`; a survey reader carries
what the survey says: every object is kept with its ``z`` and class, whatever a model's
redshift range (training and scoring skip rows outside it, as ``redshift_out_of_range``).
Only impossible values are errors: a non-finite ``z`` without a redshift warning, or
``z < -0.01``. A malformed file or object stops the run with an error that names the file,
the HDU/column and the problem, unless ``skip_bad`` is set: then it is listed in
``rejects.parquet`` with its reason and everything else is ingested.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from speculum._files import atomic_path
from speculum._optional import require
from speculum.instruments import get_instrument
from speculum.io.records import SpectrumFormatError, SpectrumRecords
from speculum.io.shards import MANIFEST, DataFormatError, ShardWriter, write_shard_file
from speculum.io.surveys import read_spectra

__all__ = ["IngestConfig", "expand_inputs", "ingest", "plan_shards", "row_bytes"]

log = logging.getLogger(__name__)
FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fits.fz")
Z_IMPOSSIBLE = -0.01  # below this a redshift is not a measurement (blueshifted stars reach -0.002)
REJECTS_SUFFIX = ".rejects.parquet"
DESI_CHUNK_ROWS = 64  # fibres a worker reads at once (~28 MB of records, ~100 MB of float64 work arrays)


@dataclass(frozen=True)
class IngestConfig:
    """How to ingest.

    Attributes:
        instrument: Grid for SDSS/BOSS files (``SDSS`` or ``BOSS``); DESI coadds always
            use ``DESI``. ``None``: ``DESI`` if the inputs are DESI coadds, else ``BOSS``.
        files_per_shard: At most this many input files per Parquet shard.
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
        shard_bytes: At most this many bytes of decoded spectra per shard (see
            :func:`row_bytes`); bounds the memory of each worker. Default 256 MiB.
        rows_per_shard: At most this many rows per shard (``None``: no limit but the bytes).
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
    shard_bytes: int = 256 * 2**20
    rows_per_shard: int | None = None

    def __post_init__(self) -> None:
        for name in ("files_per_shard", "shard_bytes", "rows_per_shard"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"IngestConfig.{name}: expected a positive integer, got {v!r}")


def row_bytes(instrument: str, keep_resolution: bool = True) -> int:
    """Decoded bytes of one spectrum row: float32 flux + ivar, int32 mask, and for DESI the
    float32 ``(11, L)`` resolution matrix (7781 px: 93 KB, 436 KB with resolution), plus 1 KB
    of scalar columns."""
    inst = get_instrument(instrument)
    n = inst.n_pixels * 12
    if inst.name == "DESI" and keep_resolution:
        n += 11 * inst.n_pixels * 4
    return n + 1024


def plan_shards(
    row_counts: Sequence[int],
    bytes_per_row: int,
    shard_bytes: int,
    rows_per_shard: int | None = None,
    files_per_shard: int | None = None,
    splittable: bool = True,
) -> list[list[tuple[int, int, int]]]:
    """Cut files into shards of bounded size, in input order (deterministic).

    Args:
        row_counts: Rows of each file ``(F,)`` (0 or unknown: counted as 1, so the reader
            still sees the file and reports it).
        bytes_per_row: Decoded bytes per row (:func:`row_bytes`).
        shard_bytes: Budget per shard; a shard holds at most ``shard_bytes // bytes_per_row``
            rows (at least 1).
        rows_per_shard: Further row limit.
        files_per_shard: At most this many files (or file ranges) per shard.
        splittable: Whether a file may be split into row ranges across shards (DESI
            coadds); otherwise a file larger than the budget gets a shard of its own.

    Returns:
        Per shard, its units ``(file index, row start, row stop)``; every row of every file
        is in exactly one unit.

    Example:
        >>> plan_shards([5, 1, 1], bytes_per_row=10, shard_bytes=30)
        [[(0, 0, 3)], [(0, 3, 5), (1, 0, 1)], [(2, 0, 1)]]
    """
    cap = max(1, int(shard_bytes) // max(1, int(bytes_per_row)))
    if rows_per_shard is not None:
        cap = min(cap, int(rows_per_shard))
    max_files = files_per_shard or 2**62
    shards: list[list[tuple[int, int, int]]] = []
    cur: list[tuple[int, int, int]] = []
    used = 0
    for i, count in enumerate(row_counts):
        n, start = max(int(count), 1), 0
        while start < n:
            if cur and (used >= cap or len(cur) >= max_files or (not splittable and used + n > cap)):
                shards.append(cur)
                cur, used = [], 0
            take = min(n - start, cap - used) if splittable else n
            cur.append((i, start, start + take))
            used += take
            start += take
    if cur:
        shards.append(cur)
    return shards


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


def _load_catalog(path: str) -> tuple[str, dict[str, float]]:
    """``(key, {id: z})``: ``key`` is ``object_id`` or ``targetid`` (DESI ``TARGETID`` catalogues)."""
    Table = require("astropy.table", "reading a catalogue").Table  # noqa: N806

    try:
        t = Table.read(path)
    except Exception as err:  # noqa: BLE001
        raise DataFormatError(f"{path}: cannot read the catalogue ({err})") from None
    cols = {c.upper(): c for c in t.colnames}
    key = "object_id"
    if "OBJECT_ID" in cols:
        ids = [str(v).strip() for v in t[cols["OBJECT_ID"]]]
    elif "TARGETID" in cols:
        ids, key = [str(int(v)) for v in t[cols["TARGETID"]]], "targetid"
    elif {"PLATE", "MJD", "FIBERID"} <= set(cols):
        ids = [
            f"{int(p):04d}-{int(m):05d}-{int(f):04d}"
            for p, m, f in zip(t[cols["PLATE"]], t[cols["MJD"]], t[cols["FIBERID"]], strict=True)
        ]
    else:
        raise DataFormatError(f"{path}: column object_id (or TARGETID, or PLATE/MJD/FIBERID) missing")
    z = np.asarray(t[cols["Z"]], dtype=np.float64) if "Z" in cols else np.full(len(ids), np.nan)
    return key, dict(zip(ids, z, strict=True))


def _select(
    rec: SpectrumRecords, cfg: IngestConfig, catalog: tuple[str, dict[str, float]] | None
) -> tuple[SpectrumRecords, int]:
    keep = np.ones(len(rec), bool)
    if catalog is not None:
        key, table = catalog
        if key == "targetid":
            ids = [str(int(t)) for t in rec.extra["targetid"]] if "targetid" in rec.extra else [""] * len(rec)
        else:
            ids = rec.object_id
        for i, oid in enumerate(ids):
            if oid not in table:
                keep[i] = False
            elif np.isfinite(table[oid]):
                rec.z[i], rec.z_flag[i] = table[oid], ""
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
    """Per object: ``None`` if fine, else the problem (only impossible values: see the module docstring)."""
    out: list[str | None] = []
    for i in range(len(rec)):
        z, flag = rec.z[i], rec.z_flag[i]
        if not flag and not np.isfinite(z):
            out.append(f"redshift table, column Z: z = {z} is not finite but no redshift warning is set")
        elif np.isfinite(z) and z < Z_IMPOSSIBLE:
            out.append(f"redshift table, column Z: z = {z:.4f} is impossible (below {Z_IMPOSSIBLE})")
        else:
            out.append(None)
    return out


def _ingest_shard(
    out: str,
    index: int,
    units: list[tuple[str, int, int]],
    cfg: IngestConfig,
    instrument: str,
    catalog: tuple[str, dict[str, float]] | None,
) -> dict:
    """Worker: read the file ranges of shard ``index``, write its Parquet file and its rejects.

    Returns the small summary the parent needs: the manifest entry (``None`` if no row
    survived) and the counts.
    """
    rejects: list[dict] = []
    counts = {"n_not_selected": 0, "n_without_redshift": 0}

    chunks = [
        (f, c, min(c + DESI_CHUNK_ROWS, hi)) if instrument == "DESI" else (f, lo, hi)
        for f, lo, hi in units
        for c in (range(lo, hi, DESI_CHUNK_ROWS) if instrument == "DESI" else (lo,))
    ]

    def parts() -> Iterator[dict]:
        for f, lo, hi in chunks:
            try:
                opts = {}
                if instrument == "DESI":
                    opts = {"fiberstatus_ok": cfg.fiberstatus_ok, "zwarn_ok": cfg.zwarn_ok,
                            "keep_resolution": cfg.keep_resolution, "rows": (lo, hi)}  # fmt: skip
                rec = read_spectra(f, None if instrument == "DESI" else instrument, **opts)
                if rec.instrument != instrument:
                    raise SpectrumFormatError(f"{f}: layout: a {rec.instrument} file among {instrument} inputs")
            except SpectrumFormatError as err:
                if not cfg.skip_bad:
                    raise
                rejects.append({"file": f, "object_id": "", "reason": str(err)})
                continue
            rec, n_out = _select(rec, cfg, catalog)
            counts["n_not_selected"] += n_out
            problems = _validate(rec)
            bad = [i for i, p in enumerate(problems) if p]
            if bad and not cfg.skip_bad:
                raise SpectrumFormatError(f"{f}: object {rec.object_id[bad[0]]}: {problems[bad[0]]}")
            for i in bad:
                rejects.append({"file": f, "object_id": rec.object_id[i], "reason": f"{f}: {problems[i]}"})
            good = np.array([i for i, p in enumerate(problems) if p is None], dtype=int)
            if len(good):
                rec = rec.take(good)
                counts["n_without_redshift"] += sum(1 for v in rec.z_flag if v)
                yield rec.columns()

    entry = write_shard_file(out, index, parts(), instrument)
    summary = {"entry": entry, "n_rows": 0 if entry is None else entry["n_rows"], **counts}
    _write_rejects(_rejects_path(Path(out), index), rejects, {k: v for k, v in summary.items() if k != "entry"})
    return summary


def _rejects_path(out: Path, index: int) -> Path:
    return out / f"part-{index:05d}{REJECTS_SUFFIX}"


def count_rows(path: Path, instrument: str) -> int:
    """Rows a file holds: 1 for an SDSS/BOSS ``spec-*`` file (not opened), else from its
    headers (DESI ``FIBERMAP``, spPlate images; 1 when unreadable: the reader reports it)."""
    if instrument != "DESI" and path.name.lower().startswith("spec-"):
        return 1  # spec-PLATE-MJD-FIBER: one spectrum by definition
    fits = require("astropy.io.fits", "speculum ingest")
    try:
        with fits.open(path) as hdul:
            if instrument == "DESI":
                return int(hdul["FIBERMAP"].header.get("NAXIS2", 1))
            hdr = hdul[0].header
            if hdr.get("NAXIS") == 2 and "COEFF0" in hdr:  # spPlate: one row per fibre
                return int(hdr.get("NAXIS2", 1))
    except Exception:  # noqa: BLE001
        return 1
    return 1


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
        workers: Processes reading files and writing shards in parallel.
        progress: Called with ``(files_done, files_total)``.

    Returns:
        Summary: counts of files, shards, spectra, rejects, unselected, missing redshifts.
    """
    cfg = config or IngestConfig()
    files = expand_inputs(inputs)
    if not files:
        raise FileNotFoundError(f"no input files found in {list(map(str, inputs))}")
    instrument = _detect_instrument(files, cfg.instrument)
    out = Path(out)
    counts = [count_rows(f, instrument) for f in files]
    plan = plan_shards(
        counts,
        row_bytes(instrument, cfg.keep_resolution),
        cfg.shard_bytes,
        cfg.rows_per_shard,
        cfg.files_per_shard,
        splittable=instrument == "DESI",
    )
    digest = hashlib.sha256("\n".join(str(f.resolve()) for f in files).encode()).hexdigest()
    plan_digest = hashlib.sha256(json.dumps(plan).encode()).hexdigest()
    identity = {k: v for k, v in asdict(cfg).items() if k != "skip_bad"}  # --skip-bad may change on a re-run
    extra = {"ingest": {"config": identity, "n_files": len(files), "inputs_sha256": digest, "plan_sha256": plan_digest}}
    manifest = out / MANIFEST
    if manifest.exists():
        old = json.loads(manifest.read_text()).get("ingest")
        if old != json.loads(json.dumps(extra["ingest"])):
            raise DataFormatError(
                f"{manifest}: holds a different ingest (inputs or options differ); choose another --out"
            )
    provenance = {"source": "speculum ingest", "files": [str(f) for f in files[:1000]]}
    writer = ShardWriter(out, instrument, provenance, extra)
    # files whose last rows are in shard k: progress counts a file when it is complete
    finishing = [sum(1 for i, _, hi in units if hi >= max(counts[i], 1)) for units in plan]
    summaries: dict[int, dict] = {}
    for k in range(len(plan)):
        prior = _shard_summary(out, k)
        if prior is not None and (prior["n_rows"] == 0 or writer.done(k)):
            summaries[k] = prior
    todo = [k for k in range(len(plan)) if k not in summaries]
    done_files = sum(finishing[k] for k in summaries)
    if summaries:
        log.info("ingest: resuming, %d of %d shards already done", len(summaries), len(plan))

    def handle(k: int, result: dict) -> None:
        nonlocal done_files
        if result["entry"] is not None:
            writer.record(result["entry"])
        summaries[k] = result
        done_files += finishing[k]
        if progress is not None:
            progress(done_files, len(files))

    catalog = _load_catalog(cfg.catalog) if cfg.catalog else None  # read once, not per shard
    args = [(str(out), k, [(str(files[i]), lo, hi) for i, lo, hi in plan[k]], cfg, instrument, catalog) for k in todo]
    if workers <= 1 or len(todo) <= 1:
        for k, a in zip(todo, args, strict=True):
            handle(k, _ingest_shard(*a))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_ingest_shard, *a): k for k, a in zip(todo, args, strict=True)}
            try:
                for fut in as_completed(futures):
                    handle(futures[fut], fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    rejects = _merge_rejects(out, len(plan))
    writer.close()
    summary = {
        "instrument": instrument,
        "n_files": len(files),
        "n_shards": len(plan),
        "n_spectra": sum(s["n_rows"] for s in writer.shards.values()),
        "n_rejected": len(rejects),
        "n_not_selected": sum(s["n_not_selected"] for s in summaries.values()),
        "n_without_redshift": sum(s["n_without_redshift"] for s in summaries.values()),
        "out": str(out),
    }
    log.info("ingest: %s", summary)
    return summary


def _shard_summary(out: Path, index: int) -> dict | None:
    """Counts saved with shard ``index``'s rejects, or ``None`` when the shard is not finished."""
    import pyarrow.parquet as pq

    path = _rejects_path(out, index)
    if not path.exists():
        return None
    try:
        meta = pq.read_schema(path).metadata or {}
        return {"entry": None, **json.loads(meta[b"speculum"])}
    except Exception:  # noqa: BLE001 - unreadable: redo the shard
        log.warning("%s: unreadable; shard %d will be redone", path, index)
        return None


def _merge_rejects(out: Path, n_shards: int) -> list[dict]:
    """Merge the per-shard rejects of this plan into ``rejects.parquet`` (duplicates of a file
    split across shards once)."""
    import pyarrow.parquet as pq

    rows: dict[tuple[str, str, str], dict] = {}
    for k in range(n_shards):
        path = _rejects_path(out, k)
        if path.exists():
            for r in pq.read_table(path).to_pylist():
                rows.setdefault((r["file"], r["object_id"], r["reason"]), r)
    rejects = list(rows.values())
    _write_rejects(out / "rejects.parquet", rejects)
    return rejects


def _write_rejects(path: Path, rejects: list[dict], counts: dict | None = None) -> None:
    """Write rejects (``file``, ``object_id``, ``reason``) atomically; ``counts`` go to the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [("file", pa.string()), ("object_id", pa.string()), ("reason", pa.string())],
        metadata=None if counts is None else {"speculum": json.dumps(counts)},
    )
    table = pa.table({k: [r[k] for r in rejects] for k in ("file", "object_id", "reason")}, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
