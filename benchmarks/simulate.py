"""Throughput of the galaxy-spectrum simulator, in memory and written to Parquet shards.

There is no reference simulator in spender to race against, so the ratio reported is
against the issue's target of 10,000 SDSS spectra per second on 2 cores.

Usage:
    python benchmarks/simulate.py                 # full run (SDSS, BOSS, DESI)
    python benchmarks/simulate.py --quick         # SDSS only, well under a minute
    python benchmarks/simulate.py --json sim.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

TARGET = 10_000.0


def _rate(instrument: str, n: int, reps: int, anomaly_rate: float) -> float:
    from speculum.sim import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(instrument=instrument, anomaly_rate=anomaly_rate))
    sim.simulate(512, seed=99)  # warm-up
    best = 0.0
    for r in range(reps):
        t0 = time.perf_counter()
        rows = sum(len(b) for b in sim.iter_blocks(n, seed=r))
        best = max(best, rows / (time.perf_counter() - t0))
    return best


def _write_rate(n: int) -> float:
    from speculum.pipeline import simulate_dataset
    from speculum.sim import SimConfig

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        simulate_dataset(tmp, n, SimConfig(), seed=0)
        return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="SDSS only, fewer spectra")
    parser.add_argument("--json", metavar="PATH", help="write the figures as one flat JSON object")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    n, reps = (4096, 2) if args.quick else (16384, 3)
    rows, out = [], {"threads": args.threads, "n": n, "target_spectra_per_s": TARGET}
    for inst in ("SDSS",) if args.quick else ("SDSS", "BOSS", "DESI"):
        rate = _rate(inst, n, reps, 0.05)
        key = "spectra_per_s" if inst == "SDSS" else f"spectra_per_s_{inst.lower()}"
        out[key] = round(rate, 1)
        rows.append((f"{inst} in memory (5% anomalies)", rate))
    rate = _rate("SDSS", n, reps, 1.0)
    out["spectra_per_s_all_anomalies"] = round(rate, 1)
    rows.append(("SDSS in memory (100% anomalies)", rate))
    rate = _write_rate(n)
    out["spectra_per_s_to_parquet"] = round(rate, 1)
    rows.append(("SDSS simulated + written to shards", rate))
    out["ratio_to_target"] = round(out["spectra_per_s"] / TARGET, 3)
    print(f"galaxy simulator, {args.threads} threads, {n} spectra, best of {reps}, cpu count {os.cpu_count()}")
    print(f"{'case':42s} {'spectra/s':>10s} {'vs target':>10s}")
    for name, r in rows:
        print(f"{name:42s} {r:10,.0f} {r / TARGET:9.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
