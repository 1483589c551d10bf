"""Survey I/O at catalogue scale: FITS reading (astropy vs fitsio), ingest, streaming memory.

1. Writes ``--files`` synthetic SDSS ``spec`` files with the exact survey schema (simulated
   galaxies, so the arrays look real), then times reading their COADD tables with astropy
   (what speculum uses) and with fitsio, side by side, as a ratio.
2. Times ``speculum ingest`` of those files with 1 and 2 worker processes (spectra/s).
3. Streams a catalogue of ``--rows`` spectra (default 1,000,000) through
   :class:`speculum.io.ShardStream` + a DataLoader and reports spectra/s and the peak
   memory (max RSS) of the streaming process. To avoid 47 GB of disk, the catalogue is
   one 10,000-row shard hard-linked under many names (the manifest lists each link as a
   shard), so the reader does all the work of a real catalogue; nothing is committed.
   The same stream over a catalogue 10x smaller gives the memory baseline: bounded
   memory means the two peaks are about equal.

Usage:
    python benchmarks/io.py                # full run (2.5 minutes on 2 cores)
    python benchmarks/io.py --quick        # 200 files, 100,000 rows (40 s)
    python benchmarks/io.py --json io.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path


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


def _make_catalogue(root: Path, rows: int, shard_rows: int = 10_000) -> None:
    from speculum.io import MANIFEST
    from speculum.pipeline import simulate_dataset
    from speculum.sim import SimConfig

    base = root / "base"
    simulate_dataset(base, shard_rows, SimConfig(), seed=0, shard_size=shard_rows)
    manifest = json.loads((base / MANIFEST).read_text())
    shard = manifest["shards"][0]
    cat = root / "catalogue"
    cat.mkdir()
    shards = []
    for k in range(rows // shard_rows):
        name = f"part-{k:05d}.parquet"
        os.link(base / shard["path"], cat / name)
        shards.append({**shard, "index": k, "path": name})
    manifest.update(shards=shards, n_spectra=shard_rows * len(shards))
    manifest["splits"] = {s: v * len(shards) for s, v in shard["splits"].items()}
    (cat / MANIFEST).write_text(json.dumps(manifest))


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
    dt = time.perf_counter() - t0
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    queue.put({"rows": n, "spectra_per_s": n / dt, "peak_rss_mb": max(self_rss, child_rss)})


def _stream(root: Path, workers: int) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_stream_case, args=(str(root), workers, q))
    p.start()
    res = q.get()
    p.join()
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--files", type=int, default=None, help="synthetic spec files (default 1000; quick 200)")
    parser.add_argument("--rows", type=int, default=None, help="catalogue rows to stream (default 1,000,000)")
    args = parser.parse_args()
    n_files = args.files or (200 if args.quick else 1000)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    out: dict = {"files": n_files, "rows": rows, "cpu_count": os.cpu_count()}
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
        _make_catalogue(tmp / "big", rows)
        _make_catalogue(tmp / "small", max(rows // 10, 10_000))
        for w in (0, 2):
            big = _stream(tmp / "big" / "catalogue", w)
            small = _stream(tmp / "small" / "catalogue", w)
            out[f"stream_spectra_per_s_{w}_workers"] = round(big["spectra_per_s"], 1)
            out[f"stream_peak_rss_mb_{w}_workers"] = round(big["peak_rss_mb"], 1)
            out[f"stream_peak_rss_mb_{w}_workers_tenth"] = round(small["peak_rss_mb"], 1)
            out[f"stream_rows_{w}_workers"] = big["rows"]
    print(f"survey I/O, {os.cpu_count()} cores")
    print(f"{'FITS read, astropy (speculum)':44s} {out['astropy_files_per_s']:10,.0f} files/s")
    print(f"{'FITS read, fitsio':44s} {out['fitsio_files_per_s']:10,.0f} files/s   ({out['fitsio_over_astropy']:.2f}x)")
    for w in (1, 2):
        print(f"{f'ingest, {w} worker(s)':44s} {out[f'ingest_spectra_per_s_{w}_workers']:10,.0f} spectra/s")
    for w in (0, 2):
        print(
            f"{f'stream {rows:,} rows, {w} loader workers':44s} {out[f'stream_spectra_per_s_{w}_workers']:10,.0f} "
            f"spectra/s  peak RSS {out[f'stream_peak_rss_mb_{w}_workers']:,.0f} MB "
            f"(1/10 the rows: {out[f'stream_peak_rss_mb_{w}_workers_tenth']:,.0f} MB)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
