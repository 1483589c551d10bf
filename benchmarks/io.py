"""Survey I/O at catalogue scale: FITS reading (astropy vs fitsio), ingest, streaming memory.

1. Writes ``--files`` synthetic SDSS ``spec`` files with the exact survey schema (simulated
   galaxies, so the arrays look real), then times reading their COADD tables with astropy
   (what speculum uses) and with fitsio, side by side, as a ratio.
2. Times ``speculum ingest`` of those files with 1 and 2 worker processes (spectra/s).
3. DESI ingest memory: synthetic 500-fibre coadds with the real layout (every HDU, column,
   dtype and header of ``/work/shared/data/desi/coadd-special-dark-27247.fits``: FIBERMAP,
   B/R/Z WAVELENGTH/FLUX/IVAR/MASK/RESOLUTION, SCORES, plus a redrock file; ~225 MB each)
   are ingested with 2 workers, once with few and once with more files (``--desi-files``,
   default 2 and 8; quick 2 and 4). Reported: the peak RSS of the ingest parent and of
   its largest worker (``getrusage`` SELF / CHILDREN), which must not grow with the
   number of files (each worker holds one chunk of at most 64 fibres). With one shard the
   parent reads it itself (no worker).
4. Streams a catalogue of ``--rows`` spectra (default 1,000,000; quick 20,000) through
   :class:`speculum.io.ShardStream` + a DataLoader with 0 and 2 loader workers. The
   catalogue is ``--shards`` DISTINCT simulated shards (default 50; quick 20), scaled down
   when the free disk (``shutil.disk_usage``) cannot hold half of it again. Cold: every
   shard is fsynced and evicted from the page cache (``posix_fadvise(DONTNEED)``) before
   the pass, so the figure includes reading the disk; warm: the files are read once
   first, then streamed (meaningful only when the catalogue fits in RAM, reported as
   ``catalogue_gb``). The peak RSS of the streaming processes (sampled with psutil, the
   loader workers included) is compared with a stream over the first tenth of the
   shards: bounded memory means the two are about equal.

Usage:
    python benchmarks/io.py                # full run (about 15 minutes on 2 cores, ~50 GB of disk)
    python benchmarks/io.py --quick        # 200 SDSS files, 2 vs 4 DESI coadds, 20,000 rows
    python benchmarks/io.py --json io.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DESI_TEMPLATE = ROOT.parent / "shared" / "data" / "desi"
ROW_BYTES_ON_DISK = 3921 * 12 + 400  # a simulated SDSS row in a shard (flux, ivar, mask; lz4 barely helps)


def _write_spec_files(folder: Path, n: int) -> list[Path]:
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    from speculum.instruments import SDSS
    from speculum.sim import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig()).simulate(n, seed=0)
    loglam = (SDSS.wave_start + SDSS.step * np.arange(SDSS.n_pixels)).astype(np.float32)
    paths = []
    for i in range(n):
        coadd = Table(
            {
                "flux": sim.flux[i],
                "loglam": loglam,
                "ivar": sim.ivar[i],
                "and_mask": np.where(sim.mask[i] & 12, 1 << 18, 0).astype(np.int32),
                "or_mask": np.zeros(SDSS.n_pixels, np.int32),
                "wdisp": np.ones(SDSS.n_pixels, np.float32),
                "sky": np.ones(SDSS.n_pixels, np.float32),
                "model": sim.noiseless[i],
            }
        )
        specobj = Table(
            {"PLATE": [1000 + i // 640], "MJD": [52000], "FIBERID": [i % 640 + 1], "CLASS": ["GALAXY"],
             "Z": [float(sim.z[i])], "Z_ERR": [1e-5], "ZWARNING": [0]}
        )  # fmt: skip
        h1, h2 = fits.table_to_hdu(coadd), fits.table_to_hdu(specobj)
        h1.name, h2.name = "COADD", "SPECOBJ"
        p = folder / f"spec-{1000 + i // 640:04d}-52000-{i % 640 + 1:04d}.fits"
        fits.HDUList([fits.PrimaryHDU(), h1, h2]).writeto(p)
        paths.append(p)
    return paths


def _read_astropy(paths: list[Path]) -> float:
    import numpy as np
    from astropy.io import fits

    t0 = time.perf_counter()
    for p in paths:
        with fits.open(p, memmap=False) as h:
            c = h["COADD"].data
            _ = (np.asarray(c["flux"]), np.asarray(c["ivar"]), np.asarray(c["loglam"]), np.asarray(c["and_mask"]))
            _ = float(h["SPECOBJ"].data["Z"][0])
    return len(paths) / (time.perf_counter() - t0)


def _read_fitsio(paths: list[Path]) -> float:
    import fitsio

    t0 = time.perf_counter()
    for p in paths:
        with fitsio.FITS(str(p)) as f:
            _ = f["COADD"].read(columns=["flux", "ivar", "loglam", "and_mask"])
            _ = float(f["SPECOBJ"].read(columns=["Z"])["Z"][0])
    return len(paths) / (time.perf_counter() - t0)


def _desi_files(folder: Path, n_files: int, n_fibres: int = 500) -> list[Path]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_bad_corpus import synthetic_desi_coadd

    folder.mkdir(parents=True, exist_ok=True)
    tpl, zt = DESI_TEMPLATE / "coadd-special-dark-27247.fits", DESI_TEMPLATE / "redrock-special-dark-27247.fits"
    return [synthetic_desi_coadd(tpl, zt, folder, n_fibres, 1000 + i, seed=i)[0] for i in range(n_files)]


def _ingest_case(files: list[str], out: str, workers: int, queue) -> None:
    from speculum.io import ingest

    t0 = time.perf_counter()
    s = ingest(files, out, workers=workers)
    dt = time.perf_counter() - t0
    queue.put({"spectra": s["n_spectra"], "shards": s["n_shards"], "spectra_per_s": s["n_spectra"] / dt})


def _in_subprocess(target, *args) -> dict:
    """Run ``target(*args, queue)`` in a fresh process; add its peak memory, sampled every 50 ms.

    ``ru_maxrss`` cannot be used: Linux keeps a process's high-water mark across the
    fork + exec of a spawn, so a child would report its parent's size. Sampled instead with
    psutil: ``parent_peak_rss_mb`` (the process itself), ``worker_peak_rss_mb`` (its largest
    child) and ``total_peak_rss_mb`` (the whole process tree at one instant).
    """
    import queue as queue_mod

    import psutil

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    proc = psutil.Process(p.pid)
    peak = {"parent_peak_rss_mb": 0.0, "worker_peak_rss_mb": 0.0, "total_peak_rss_mb": 0.0}
    res = None
    while res is None:
        try:
            own = proc.memory_info().rss
            kids = []
            for c in proc.children(recursive=True):
                try:
                    kids.append(c.memory_info().rss)
                except psutil.Error:
                    pass
        except psutil.Error:
            own, kids = 0, []
        mb = 1 / 2**20
        peak["parent_peak_rss_mb"] = max(peak["parent_peak_rss_mb"], own * mb)
        peak["worker_peak_rss_mb"] = max(peak["worker_peak_rss_mb"], max(kids, default=0) * mb)
        peak["total_peak_rss_mb"] = max(peak["total_peak_rss_mb"], (own + sum(kids)) * mb)
        try:
            res = q.get(timeout=0.05)
        except queue_mod.Empty:
            if not p.is_alive():
                raise RuntimeError(f"{target.__name__}: the benchmark process died (exit code {p.exitcode})") from None
    p.join()
    return {**res, **peak}


def _make_catalogue(root: Path, rows: int, n_shards: int) -> list[Path]:
    """``n_shards`` distinct simulated shards of ``rows // n_shards`` rows; returns their paths."""
    from speculum.autoencode import simulate_dataset
    from speculum.io import MANIFEST
    from speculum.sim import SimConfig

    simulate_dataset(root, rows, SimConfig(), seed=0, shard_size=rows // n_shards)
    manifest = json.loads((root / MANIFEST).read_text())
    return [root / s["path"] for s in manifest["shards"]]


def _subset(root: Path, out: Path, k: int) -> Path:
    """A data folder listing the first ``k`` shards of ``root`` (hard links: distinct files, no copy)."""
    from speculum.io import MANIFEST

    manifest = json.loads((root / MANIFEST).read_text())
    out.mkdir()
    shards = manifest["shards"][:k]
    for s in shards:
        os.link(root / s["path"], out / s["path"])
    manifest.update(shards=shards, n_spectra=sum(s["n_rows"] for s in shards))
    manifest["splits"] = {k: sum(s["splits"][k] for s in shards) for k in manifest["splits"]}
    (out / MANIFEST).write_text(json.dumps(manifest))
    return out


def _evict(paths: list[Path]) -> None:
    """Drop the files' pages from the page cache (written back first), so the next read hits the disk."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _warm(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(1 << 24):
                pass


def _stream_case(root: str, workers: int, queue) -> None:
    import torch
    from torch.utils.data import DataLoader

    from speculum.io import ShardStream

    torch.set_num_threads(1)
    stream = ShardStream(root, columns=("flux", "ivar", "mask", "z"), shuffle_buffer=2048, seed=0)
    loader = DataLoader(stream, batch_size=256, num_workers=workers)
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += len(batch["z"])
    queue.put({"rows": n, "spectra_per_s": n / (time.perf_counter() - t0)})


def _stream(root: Path, workers: int) -> dict:
    return _in_subprocess(_stream_case, str(root), workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--files", type=int, default=None, help="synthetic spec files (default 1000; quick 200)")
    parser.add_argument("--rows", type=int, default=None, help="catalogue rows to stream (default 1,000,000)")
    parser.add_argument("--shards", type=int, default=None, help="distinct shards of the catalogue (default 50)")
    parser.add_argument("--desi-files", default=None, help="numbers of 500-fibre coadds to ingest (default 2,8)")
    args = parser.parse_args()
    n_files = args.files or (200 if args.quick else 1000)
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    n_shards = args.shards or (20 if args.quick else 50)
    desi_counts = [int(x) for x in (args.desi_files or ("2,4" if args.quick else "2,8")).split(",")]
    out: dict = {"files": n_files, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "spec").mkdir()
        paths = _write_spec_files(tmp / "spec", n_files)
        _read_astropy(paths[:20]), _read_fitsio(paths[:20])  # warm the page cache
        out["astropy_files_per_s"] = round(_read_astropy(paths), 1)
        out["fitsio_files_per_s"] = round(_read_fitsio(paths), 1)
        out["fitsio_over_astropy"] = round(out["fitsio_files_per_s"] / out["astropy_files_per_s"], 3)
        from speculum.io import IngestConfig, ingest

        for w in (1, 2):
            t0 = time.perf_counter()
            ingest(paths, tmp / f"ingest{w}", IngestConfig(instrument="SDSS", files_per_shard=50), workers=w)
            out[f"ingest_spectra_per_s_{w}_workers"] = round(n_files / (time.perf_counter() - t0), 1)
        shutil.rmtree(tmp / "spec")

        desi = _desi_files(tmp / "desi", max(desi_counts))
        out["desi"] = []
        for n in desi_counts:
            r = _in_subprocess(_ingest_case, [str(f) for f in desi[:n]], str(tmp / f"desi-out-{n}"), 2)
            out["desi"].append({"files": n, **{k: round(v, 1) for k, v in r.items()}})
            shutil.rmtree(tmp / f"desi-out-{n}")
        shutil.rmtree(tmp / "desi")

        free = shutil.disk_usage(tmp).free
        if rows * ROW_BYTES_ON_DISK > free / 2:
            rows = int(free / 2 / ROW_BYTES_ON_DISK) // n_shards * n_shards
            out["rows_scaled_for_disk"] = True
        rows = rows // n_shards * n_shards
        out.update(rows=rows, shards=n_shards)
        shard_paths = _make_catalogue(tmp / "cat", rows, n_shards)
        out["catalogue_gb"] = round(sum(p.stat().st_size for p in shard_paths) / 1e9, 2)
        k = max(1, n_shards // 10)
        tenth = _subset(tmp / "cat", tmp / "tenth", k)
        for w in (0, 2):
            _evict(shard_paths)
            cold = _stream(tmp / "cat", w)
            _warm(shard_paths)
            warm = _stream(tmp / "cat", w)
            _evict(shard_paths[:k])
            small = _stream(tenth, w)
            out[f"stream_cold_spectra_per_s_{w}_workers"] = round(cold["spectra_per_s"], 1)
            out[f"stream_warm_spectra_per_s_{w}_workers"] = round(warm["spectra_per_s"], 1)
            out[f"stream_peak_rss_mb_{w}_workers"] = round(max(cold["total_peak_rss_mb"], warm["total_peak_rss_mb"]), 1)
            out[f"stream_peak_rss_mb_{w}_workers_tenth"] = round(small["total_peak_rss_mb"], 1)
            out[f"stream_rows_{w}_workers"] = cold["rows"]
    print(f"survey I/O, {os.cpu_count()} cores")
    print(f"{'FITS read, astropy (speculum)':44s} {out['astropy_files_per_s']:10,.0f} files/s")
    print(f"{'FITS read, fitsio':44s} {out['fitsio_files_per_s']:10,.0f} files/s   ({out['fitsio_over_astropy']:.2f}x)")
    for w in (1, 2):
        print(f"{f'ingest, {w} worker(s)':44s} {out[f'ingest_spectra_per_s_{w}_workers']:10,.0f} spectra/s")
    for d in out["desi"]:
        label = f"DESI ingest, {d['files']} x 500-fibre coadds, 2 workers"
        print(
            f"{label:44s} {d['spectra_per_s']:10,.0f} spectra/s  "
            f"peak RSS parent {d['parent_peak_rss_mb']:,.0f} MB, largest worker {d['worker_peak_rss_mb']:,.0f} MB, "
            f"all {d['total_peak_rss_mb']:,.0f} MB ({d['shards']} shards)"
        )
    for w in (0, 2):
        print(
            f"{f'stream {rows:,} rows ({n_shards} shards), {w} loader workers':44s} "
            f"cold {out[f'stream_cold_spectra_per_s_{w}_workers']:8,.0f} spectra/s, "
            f"warm {out[f'stream_warm_spectra_per_s_{w}_workers']:8,.0f} spectra/s  "
            f"peak RSS (all processes) {out[f'stream_peak_rss_mb_{w}_workers']:,.0f} MB "
            f"(1/10 the shards: {out[f'stream_peak_rss_mb_{w}_workers_tenth']:,.0f} MB)"
        )
    print(f"catalogue: {out['catalogue_gb']} GB on disk" + (" (rows scaled to the free disk)" if
          out.get("rows_scaled_for_disk") else ""))  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
