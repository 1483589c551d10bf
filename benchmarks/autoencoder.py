"""speculum vs. the reference ``spender==0.3``: the SPENDER autoencoder, side by side.

Same process, same architecture, same weights, same batches and threads. Every case is
timed *interleaved*: reference, speculum, reference, speculum, ... for ``--reps``
repetitions, so that the machine's drift (1.5-3x from hour to hour here) hits both alike;
the table shows the median ratio and its spread (min-max over repetitions). The float32
matmul peak is measured in the same run (before and after) so absolute figures can be
compared across runs.

Cases (batch of SDSS spectra, 3921 px -> 7000 restframe bins, the paper architecture):

* ``inference`` / ``training`` (one Adam step), each on **unmasked** spectra and on
  **masked** ones: the masks of simulated SDSS spectra (sky lines, cosmic rays, bad
  columns: ``w = 0`` there), which our encoder in-paints before encoding;
* ``inference_vs_compiled``: speculum against the reference under ``torch.compile`` (the
  best a user of the reference can do today);
* ``bf16``: speculum under ``torch.autocast(bfloat16)`` against the float32 reference
  (speed only; whether bf16 training keeps the fit quality is ``--bf16-quality``).

Peak memory of each implementation is measured once per mode in a fresh child process that
builds only that implementation and loads a saved batch (resident memory sampled with
psutil; ``ru_maxrss`` would inherit the parent's high-water mark).

Usage:
    python benchmarks/autoencoder.py                 # full run: batches 64 and 256, 7 repetitions
    python benchmarks/autoencoder.py --quick         # batch 256, 5 repetitions
    python benchmarks/autoencoder.py --json bench.json
    python benchmarks/autoencoder.py --bf16-quality  # also train the demo model in fp32 and bf16 (~10 min)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time


def _build(n_latent: int = 10):
    import spender
    import torch

    from speculum.models import AutoencoderConfig, SpectrumAutoencoder, from_spender_state_dict

    torch.manual_seed(0)
    cfg = AutoencoderConfig(n_latent=n_latent)
    grid = SpectrumAutoencoder(cfg).wave_obs.float()
    inst = spender.Instrument(grid)
    ref = spender.SpectrumAutoencoder(inst, cfg.restframe.wave(torch.float32), n_latent=n_latent)
    ours = from_spender_state_dict(ref.state_dict(), cfg)
    return ref, inst, ours


def _data(batch: int, masked: bool):
    """Normalised spectra: simulated SDSS galaxies; ``masked`` keeps their masks (w = 0 there)."""
    import numpy as np
    import torch

    from speculum.io import prepare_spectra
    from speculum.sim import GalaxySimulator, SimConfig

    sim = GalaxySimulator(SimConfig(instrument="SDSS", anomaly_rate=0.0)).simulate(batch + batch // 4, seed=batch)
    cols = sim.columns("SDSS")
    prep = prepare_spectra(cols, "SDSS")
    y, w, z = prep.y[:batch], prep.w[:batch], prep.z[:batch]
    if not masked:  # same spectra, every pixel usable
        w = torch.where(w > 0, w, w[w > 0].median()).contiguous()
    assert len(y) == batch, "simulated too few usable spectra"
    frac = float((w == 0).float().mean())
    return y.contiguous(), w.contiguous(), z.contiguous(), np.round(frac, 4)


def _steps(ref, inst, ours, y, w, z, mode: str, compiled: bool = False, bf16: bool = False):
    """Return (reference_step, speculum_step) callables for one case."""
    import torch

    from speculum.train import fiducial_loss

    ref_fwd = ref._forward if ref is not None else None
    if compiled:
        ref_fwd = torch.compile(ref._forward)

    def f_ref():
        _, _, obs, valid = ref_fwd(y, instrument=inst, z=z)
        return obs, valid

    def f_ours():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = ours(y, w, z, check=False)
        return out.observed.float(), out.valid

    if mode == "inference":

        def wrap(f, model):
            def step():
                model.eval()
                with torch.inference_mode():
                    f()

            return step

        return (wrap(f_ref, ref) if ref is not None else None), (wrap(f_ours, ours) if ours is not None else None)

    def wrap_train(f, model):
        opt = torch.optim.Adam(model.parameters(), lr=1e-6)

        def step():
            model.train()
            obs, valid = f()
            loss = fiducial_loss(y, w * valid, obs) / len(y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return step

    return (
        wrap_train(f_ref, ref) if ref is not None else None,
        wrap_train(f_ours, ours) if ours is not None else None,
    )


def interleaved(step_a, step_b, reps: int, warmup: int = 1) -> dict:
    """Time two callables alternately; per-repetition ratio t_a / t_b (how much faster b is)."""
    for _ in range(warmup):
        step_a()
        step_b()
    ta, tb = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        step_a()
        t1 = time.perf_counter()
        step_b()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    ratios = [a / b for a, b in zip(ta, tb, strict=True)]
    return {"t_a": statistics.median(ta), "t_b": statistics.median(tb), "ratios": ratios}


def _rss_case(impl: str, mode: str, data_path: str, threads: int) -> None:
    """Child process: build only ``impl``, load the batch from disk, run two steps."""
    import torch

    torch.set_num_threads(threads)
    y, w, z = torch.load(data_path, weights_only=True)
    torch.manual_seed(0)
    if impl == "reference":
        import spender

        from speculum.models import AutoencoderConfig, SpectrumAutoencoder

        cfg = AutoencoderConfig(n_latent=10)
        inst = spender.Instrument(SpectrumAutoencoder(cfg).wave_obs.float())
        ref = spender.SpectrumAutoencoder(inst, cfg.restframe.wave(torch.float32), n_latent=10)
        a, _ = _steps(ref, inst, None, y, w, z, mode)
        step = a
    else:
        from speculum.models import AutoencoderConfig, SpectrumAutoencoder

        ours = SpectrumAutoencoder(AutoencoderConfig(n_latent=10))
        _, step = _steps(None, None, ours, y, w, z, mode)
    step()
    step()


def peak_rss_mb(impl: str, mode: str, data_path: str, threads: int) -> float:
    """Peak resident memory (MB) of a fresh child running ``impl``, sampled with psutil every 10 ms.

    ``ru_maxrss`` of a spawned child inherits the parent's high-water mark, so it is not used.
    """
    import psutil

    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_rss_case, args=(impl, mode, data_path, threads))
    proc.start()
    ps, peak = psutil.Process(proc.pid), 0
    while proc.is_alive():
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    proc.join()
    return peak / 2**20


def outputs_max_rel_diff(ref, inst, ours) -> dict:
    import torch

    y, w, z, _ = _data(64, masked=False)
    with torch.no_grad():
        s_r, x_r, o_r, _ = ref.eval()._forward(y, instrument=inst, z=z)
        out = ours.eval()(y, w, z)

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max())

    return {
        "rel_diff_latents": rel(out.latents, s_r),
        "rel_diff_restframe": rel(out.restframe, x_r),
        # the reference redshifts its wavelength grid in float32 (1e-3 A at 9000 A);
        # tests/test_reference.py shows agreement to 1e-10 in float64
        "rel_diff_observed_vs_float32_reference": rel(out.observed, o_r),
    }


def matmul_peak_gflops() -> float:
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(3):
            a @ b
        best = max(best, 2 * 2048**3 * 3 / (time.perf_counter() - t0) / 1e9)
    return best


def bf16_quality(epochs: int = 16, n: int = 8192) -> dict:
    """Train the demo model (small preset, demo data) in fp32 and under bf16 autocast; held-out chi2 of each."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from speculum.autoencode import reconstruct, simulate_dataset
    from speculum.autoencode import train as train_autoencoder
    from speculum.sim import SimConfig
    from speculum.train import TrainConfig

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = simulate_dataset(Path(tmp) / "sim", n, SimConfig(instrument="SDSS", anomaly_rate=0.05), seed=0)
        for prec in ("fp32", "bf16"):
            run = Path(tmp) / prec
            s = train_autoencoder(data, run, None, TrainConfig(epochs=epochs, lr=3e-3, patience=0, precision=prec))
            rec = reconstruct(run / "model.safetensors", data, run / "rec.parquet", split="test")
            normal = np.asarray(rec["truth_class"]) == "normal"
            out[f"bf16q_{prec}_test_chi2_normal"] = float(np.median(rec["reduced_chi2"][normal]))
            out[f"bf16q_{prec}_train_seconds"] = s["train_seconds"]
    out["bf16q_chi2_ratio"] = out["bf16q_bf16_test_chi2_normal"] / out["bf16q_fp32_test_chi2_normal"]
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 256 only, 5 repetitions")
    parser.add_argument("--json", type=str, default=None, help="write the figures as one flat JSON object")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (both implementations)")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 5 quick, 7 full)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile reference row")
    parser.add_argument("--bf16-quality", action="store_true", help="also train fp32 vs bf16 (demo setting)")
    parser.add_argument("--bf16-quality-only", action="store_true", help="only the fp32 vs bf16 training (~11 min)")
    args = parser.parse_args(argv)
    if args.bf16_quality_only:
        import torch

        torch.set_num_threads(args.threads)
        res = {k: round(v, 4) for k, v in bf16_quality().items()}
        print(
            f"bf16 training quality (demo setting, {args.threads} threads): held-out median chi2 of normal galaxies "
            f"fp32 {res['bf16q_fp32_test_chi2_normal']:.4f} ({res['bf16q_fp32_train_seconds']} s), bf16 "
            f"{res['bf16q_bf16_test_chi2_normal']:.4f} ({res['bf16q_bf16_train_seconds']} s); ratio "
            f"{res['bf16q_chi2_ratio']:.4f} (bf16 may be the CPU default only within 1.02)"
        )
        if args.json:
            from speculum._files import atomic_write_text

            atomic_write_text(args.json, json.dumps(res, indent=1))
        return res
    import torch

    torch.set_num_threads(args.threads)
    os.environ["BENCH_THREADS"] = str(args.threads)
    reps = args.reps or (5 if args.quick else 7)
    batches = (256,) if args.quick else (64, 256)
    results: dict = {"threads": args.threads, "quick": args.quick, "reps": reps}
    peak0 = matmul_peak_gflops()
    ref, inst, ours = _build()
    diffs = outputs_max_rel_diff(ref, inst, ours)  # before any timed training step changes the weights
    rows = []
    for batch in batches:
        for masked in (False, True):
            y, w, z, frac = _data(batch, masked)
            results[f"masked_fraction_b{batch}"] = frac if masked else results.get(f"masked_fraction_b{batch}", 0)
            cases = [("inference", {}), ("training", {})]
            if batch == 256 and masked:
                cases += [("inference", {"bf16": True}), ("training", {"bf16": True})]
                if not args.no_compile:
                    cases.append(("inference", {"compiled": True}))
            for mode, kw in cases:
                a, b = _steps(ref, inst, ours, y, w, z, mode, **kw)
                r = interleaved(a, b, reps, warmup=2 if kw.get("compiled") else 1)
                tag = "_".join([mode, f"b{batch}", "masked" if masked else "unmasked", *sorted(kw)])
                med = statistics.median(r["ratios"])
                rows.append((tag, batch / r["t_a"], batch / r["t_b"], med, min(r["ratios"]), max(r["ratios"])))
                results[f"{tag}_reference_spectra_per_s"] = round(batch / r["t_a"], 2)
                results[f"{tag}_speculum_spectra_per_s"] = round(batch / r["t_b"], 2)
                results[f"{tag}_speedup"] = round(med, 3)
                results[f"{tag}_speedup_min"] = round(min(r["ratios"]), 3)
                results[f"{tag}_speedup_max"] = round(max(r["ratios"]), 3)
    # headline figures: the default mode a user gets (float32), batch 256, masked spectra
    results["inference_speedup"] = results["inference_b256_masked_speedup"]
    results["train_speedup"] = results["training_b256_masked_speedup"]
    results["inference_speedup_unmasked"] = results["inference_b256_unmasked_speedup"]
    results["train_speedup_unmasked"] = results["training_b256_unmasked_speedup"]
    if not args.no_compile:
        results["inference_speedup_vs_compiled"] = results["inference_b256_masked_compiled_speedup"]
    results["inference_speedup_bf16"] = results["inference_b256_masked_bf16_speedup"]
    results["train_speedup_bf16"] = results["training_b256_masked_bf16_speedup"]
    results.update({k: float(f"{v:.3g}") for k, v in diffs.items()})
    results["max_rel_diff"] = max(diffs["rel_diff_latents"], diffs["rel_diff_restframe"])
    peak1 = matmul_peak_gflops()
    results["matmul_peak_gflops_start"] = round(peak0, 1)
    results["matmul_peak_gflops_end"] = round(peak1, 1)
    del ref, ours
    with tempfile.TemporaryDirectory() as tmp:
        data_path = os.path.join(tmp, "batch.pt")
        torch.save(_data(256, masked=True)[:3], data_path)
        for mode in ("inference", "training"):
            for impl in ("reference", "speculum"):
                rss = peak_rss_mb(impl, mode, data_path, args.threads)
                results[f"{mode}_b256_{impl}_peak_rss_mb"] = round(rss)
    if args.bf16_quality:
        results.update({k: round(v, 4) for k, v in bf16_quality().items()})

    print(f"SPENDER autoencoder, SDSS grid (3921 px -> 7000 restframe bins), {args.threads} threads")
    print(f"{reps} interleaved repetitions; ratio = reference time / speculum time (median, min-max)")
    print(f"{'case':<38} {'reference/s':>12} {'speculum/s':>11} {'ratio':>7} {'spread':>13}")
    for tag, r_s, o_s, med, lo, hi in rows:
        print(f"{tag:<38} {r_s:>12.1f} {o_s:>11.1f} {med:>6.2f}x {lo:>6.2f}-{hi:<5.2f}")
    print(
        f"goals: inference >= 3x -> {results['inference_speedup']:.2f}x; training >= 2x -> "
        f"{results['train_speedup']:.2f}x"
        + (
            f"; inference vs compiled reference >= 2x -> {results['inference_speedup_vs_compiled']:.2f}x"
            if "inference_speedup_vs_compiled" in results
            else ""
        )
    )
    print(
        "peak RSS, batch 256 (MB): "
        + ", ".join(
            f"{m} reference {results[f'{m}_b256_reference_peak_rss_mb']} / speculum "
            f"{results[f'{m}_b256_speculum_peak_rss_mb']}"
            for m in ("inference", "training")
        )
    )
    print(f"float32 matmul peak {peak0:.0f} GFLOP/s at start, {peak1:.0f} at end")
    print(
        f"max relative difference (float32): latents {diffs['rel_diff_latents']:.2e}, "
        f"restframe {diffs['rel_diff_restframe']:.2e}, observed {diffs['rel_diff_observed_vs_float32_reference']:.2e} "
        "(reference float32 wavelength rounding)"
    )
    if args.bf16_quality:
        print(
            f"bf16 training quality (demo setting): held-out median chi2 fp32 "
            f"{results['bf16q_fp32_test_chi2_normal']:.4f}, bf16 {results['bf16q_bf16_test_chi2_normal']:.4f} "
            f"(ratio {results['bf16q_chi2_ratio']:.4f}; bf16 may be a CPU default only within 1.02)"
        )
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.json)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
