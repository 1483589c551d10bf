"""speculum vs. the reference ``spender==0.3``: the SPENDER autoencoder, side by side.

Same machine, same architecture, same weights, same batch sizes and threads. Each timed
case runs in a fresh child process so its peak memory (max RSS) is its own.

Usage:
    python benchmarks/autoencoder.py            # full run
    python benchmarks/autoencoder.py --quick    # about a minute on 2 cores
    python benchmarks/autoencoder.py --json bench.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
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


def _data(batch: int):
    import torch

    gen = torch.Generator().manual_seed(batch)
    y = (
        1
        + 0.3 * torch.randn(batch, 3921, generator=gen).cumsum(1) / 40
        + 0.05 * torch.randn(batch, 3921, generator=gen)
    )
    w = torch.full_like(y, 400.0)
    z = 0.5 * torch.rand(batch, generator=gen)
    return y, w, z


def _case(impl: str, mode: str, batch: int, reps: int, threads: int, queue) -> None:
    import torch

    from speculum.train import fiducial_loss

    torch.set_num_threads(threads)
    ref, inst, ours = _build()
    y, w, z = _data(batch)
    if impl == "reference":
        model = ref

        def forward():
            _, _, obs, valid = ref._forward(y, instrument=inst, z=z)
            return obs, valid
    else:
        model = ours

        def forward():
            out = ours(y, w, z, check=False)
            return out.observed, out.valid

    if mode == "inference":
        model.eval()

        def step():
            with torch.inference_mode():
                forward()
    else:
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step():
            obs, valid = forward()
            loss = fiducial_loss(y, w * valid, obs) / batch
            opt.zero_grad()
            loss.backward()
            opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    dt = (time.perf_counter() - t0) / reps
    queue.put({"spectra_per_s": batch / dt, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def run_case(impl: str, mode: str, batch: int, reps: int, threads: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_case, args=(impl, mode, batch, reps, threads, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def outputs_max_rel_diff() -> dict:
    import torch

    ref, inst, ours = _build()
    y, w, z = _data(64)
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


def matmul_peak_gflops(threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    t0 = time.perf_counter()
    for _ in range(5):
        a @ b
    return 2 * 2048**3 * 5 / (time.perf_counter() - t0) / 1e9


def forward_gflop_per_spectrum() -> float:
    """FLOPs of one reference forward pass (direct convolutions + MLPs), in GFLOP."""
    length, flops = 3921, 0
    c_in = 1
    for c, k, p in ((128, 5, 5), (256, 11, 11), (512, 21, 1)):
        flops += 2 * c_in * c * k * length
        length = (length + 2 * (p // 2) - p) // p + 1
        c_in = c
    widths = [256, 128, 64, 32, 10, 64, 256, 1024, 7000]
    flops += sum(2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    return flops / 1e9


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced run (about a minute on 2 cores)")
    parser.add_argument("--json", type=str, default=None, help="write the figures as one flat JSON object")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (both implementations)")
    args = parser.parse_args(argv)
    batches = (256,) if args.quick else (64, 256)
    reps = {"inference": 1 if args.quick else 3, "training": 1 if args.quick else 2}
    results: dict = {"threads": args.threads, "quick": args.quick}
    rows = []
    for mode in ("inference", "training"):
        for batch in batches:
            r = run_case("reference", mode, batch, reps[mode], args.threads)
            o = run_case("speculum", mode, batch, reps[mode], args.threads)
            ratio = o["spectra_per_s"] / r["spectra_per_s"]
            rows.append((mode, batch, r, o, ratio))
            key = f"{mode}_b{batch}"
            results[f"{key}_reference_spectra_per_s"] = round(r["spectra_per_s"], 2)
            results[f"{key}_speculum_spectra_per_s"] = round(o["spectra_per_s"], 2)
            results[f"{key}_speedup"] = round(ratio, 3)
            results[f"{key}_reference_peak_rss_mb"] = round(r["peak_rss_mb"])
            results[f"{key}_speculum_peak_rss_mb"] = round(o["peak_rss_mb"])
    results["inference_speedup"] = results["inference_b256_speedup"]
    results["train_speedup"] = results["training_b256_speedup"]
    diffs = outputs_max_rel_diff()
    results.update({k: float(f"{v:.3g}") for k, v in diffs.items()})
    results["max_rel_diff"] = max(diffs["rel_diff_latents"], diffs["rel_diff_restframe"])
    peak = matmul_peak_gflops(args.threads)
    gflop = forward_gflop_per_spectrum()
    results["matmul_peak_gflops"] = round(peak, 1)
    results["forward_gflop_per_spectrum"] = round(gflop, 3)
    for impl in ("reference", "speculum"):
        achieved = gflop * results[f"inference_b256_{impl}_spectra_per_s"]
        results[f"inference_b256_{impl}_equiv_gflops"] = round(achieved, 1)

    print(f"SPENDER autoencoder, SDSS grid (3921 px -> 7000 restframe bins), {args.threads} threads, float32")
    print(f"{'mode':<10} {'batch':>5} {'reference/s':>12} {'speculum/s':>11} {'ratio':>6} {'ref MB':>7} {'ours MB':>8}")
    for mode, batch, r, o, ratio in rows:
        print(
            f"{mode:<10} {batch:>5} {r['spectra_per_s']:>12.1f} {o['spectra_per_s']:>11.1f} {ratio:>5.2f}x "
            f"{r['peak_rss_mb']:>7.0f} {o['peak_rss_mb']:>8.0f}"
        )
    print(
        f"forward = {gflop:.3f} GFLOP/spectrum (direct-convolution count); matmul peak {peak:.0f} GFLOP/s; "
        f"reference {results['inference_b256_reference_equiv_gflops']:.0f}, speculum "
        f"{results['inference_b256_speculum_equiv_gflops']:.0f} equivalent GFLOP/s at batch 256"
    )
    print(
        f"max relative difference (float32): latents {diffs['rel_diff_latents']:.2e}, "
        f"restframe {diffs['rel_diff_restframe']:.2e}, observed {diffs['rel_diff_observed_vs_float32_reference']:.2e} "
        "(reference float32 wavelength rounding)"
    )
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1)
        os.replace(tmp, args.json)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
