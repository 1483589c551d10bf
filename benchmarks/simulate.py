"""Throughput of the galaxy-spectrum simulator, in memory and written to Parquet shards.

There is no reference simulator in spender to race against, so the ratio reported is
against the issue's target of 10,000 SDSS spectra per second on 2 cores. Each figure is
the median over repetitions (different seeds, after one warm-up block), with the spread
(min-max) beside it: on a shared machine the best of a few runs overstates what a user
gets. DESI spectra carry a banded resolution matrix each (11 x 7781 float32), so DESI is
slower than SDSS and its shards much larger.

Usage:
    python benchmarks/simulate.py                 # full run (SDSS, BOSS, DESI)
    python benchmarks/simulate.py --quick         # SDSS only, well under a minute
    python benchmarks/simulate.py --json sim.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

TARGET = 10_000.0


def _rates(instrument: str, n: int, reps: int, anomaly_rate: float) -> tuple[list[float], list[float]]:
    """Wall-clock spectra per second and CPU ms per spectrum (all threads) of ``reps`` in-memory runs.

    The CPU time is what to compare on a machine shared with other work, where wall-clock
    rates mostly measure the load.
    """
    from speculum.sim import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(instrument=instrument, anomaly_rate=anomaly_rate))
    sim.simulate(512, seed=99)  # warm-up
    rates, cpu_ms = [], []
    for r in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        rows = sum(len(b) for b in sim.iter_blocks(n, seed=r))
        rates.append(rows / (time.perf_counter() - t0))
        cpu_ms.append(1000 * (time.process_time() - c0) / rows)
    return rates, cpu_ms


def _write_rates(n: int, reps: int) -> list[float]:
    """Spectra per second of ``reps`` runs simulating ``n`` SDSS spectra into Parquet shards."""
    from speculum.autoencode import simulate_dataset
    from speculum.sim import SimConfig

    rates = []
    for r in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            simulate_dataset(tmp, n, SimConfig(), seed=r)
            rates.append(n / (time.perf_counter() - t0))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="SDSS only, fewer spectra")
    parser.add_argument("--json", metavar="PATH", help="write the figures as one flat JSON object")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    n, reps = (2048, 3) if args.quick else (16384, 5)
    rows, out = [], {"threads": args.threads, "n": n, "repetitions": reps, "target_spectra_per_s": TARGET}

    def record(key: str, name: str, rates: list[float], cpu_ms: list[float] | None = None) -> None:
        med = statistics.median(rates)
        out[key] = round(med, 1)
        out[f"{key}_min"], out[f"{key}_max"] = round(min(rates), 1), round(max(rates), 1)
        cpu = None if cpu_ms is None else statistics.median(cpu_ms)
        if cpu is not None:
            out[key.replace("spectra_per_s", "cpu_ms_per_spectrum")] = round(cpu, 4)
        rows.append((name, med, min(rates), max(rates), cpu))

    for inst in ("SDSS",) if args.quick else ("SDSS", "BOSS", "DESI"):
        key = "spectra_per_s" if inst == "SDSS" else f"spectra_per_s_{inst.lower()}"
        record(key, f"{inst} in memory (5% anomalies)", *_rates(inst, n, reps, 0.05))
    record("spectra_per_s_all_anomalies", "SDSS in memory (100% anomalies)", *_rates("SDSS", n, reps, 1.0))
    record("spectra_per_s_to_parquet", "SDSS simulated + written to shards", _write_rates(n, reps))
    out["ratio_to_target"] = round(out["spectra_per_s"] / TARGET, 3)
    print(f"galaxy simulator, {args.threads} threads, {n} spectra, median of {reps}, cpu count {os.cpu_count()}")
    print(f"{'case':42s} {'spectra/s':>10s} {'min-max':>17s} {'vs target':>10s} {'CPU ms/spectrum':>16s}")
    for name, med, lo, hi, cpu in rows:
        cpu_txt = "" if cpu is None else f"{cpu:.3f}"
        print(f"{name:42s} {med:10,.0f} {f'{lo:,.0f}-{hi:,.0f}':>17s} {med / TARGET:9.2f}x {cpu_txt:>16s}")
    if args.json:
        from speculum._files import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
