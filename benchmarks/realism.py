"""Realism of the simulator: a model trained on simulated spectra, applied to real SDSS galaxies.

Reconstructs the real SDSS galaxy spectra in ``../shared/data/sdss_boss/spec`` (pipeline
class GALAXY with ZWARNING = 0, plus NGC 3073, a dwarf galaxy the pipeline calls STAR)
and reports their reduced chi-square next to that of simulated held-out galaxies.
If real galaxies reconstruct much worse, the simulator is missing something.

The files are read here with astropy directly (COADD table + SPECOBJ/SPALL redshift);
bad pixels are ``ivar <= 0`` or any ``and_mask`` bit, plus the instrument's sky mask.

Usage:
    python benchmarks/realism.py --model demo-output/run/model.safetensors --data demo-output/data
    python benchmarks/realism.py --quick          # trains a small model first (3,072 spectra, 6 epochs)
    python benchmarks/realism.py --json realism.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DWARF_GALAXIES = {"NGC3073_SDSS_DR18.fits"}


def read_sdss_galaxies(folder: Path = SHARED / "sdss_boss" / "spec") -> dict[str, np.ndarray]:
    """Real SDSS galaxies as columns of the shard format, on the SDSS instrument grid."""
    from astropy.io import fits

    from speculum.instruments import SDSS, PixelMask

    rows = {"object_id": [], "z": [], "flux": [], "ivar": [], "mask": []}
    for path in sorted(folder.glob("*.fits")):
        with fits.open(path) as hdul:
            names = [h.name for h in hdul]
            zt = hdul["SPECOBJ"].data if "SPECOBJ" in names else hdul["SPALL"].data
            cls = str(zt["CLASS"][0]).strip()
            if not ((cls == "GALAXY" and int(zt["ZWARNING"][0]) == 0) or path.name in DWARF_GALAXIES):
                continue
            z = float(zt["Z"][0])
            coadd = hdul["COADD"].data
            loglam = np.asarray(coadd["loglam"], dtype=np.float64)
            off = int(round((loglam[0] - SDSS.wave_start) / SDSS.step))
            if abs((loglam[0] - SDSS.wave_start) / SDSS.step - off) > 1e-2:
                raise ValueError(f"{path}: column loglam is not on the SDSS 1e-4 dex lattice")
            flux = np.zeros(SDSS.n_pixels, np.float32)
            ivar = np.zeros(SDSS.n_pixels, np.float32)
            mask = np.full(SDSS.n_pixels, int(PixelMask.NO_DATA), np.int32)
            src = np.arange(len(loglam))
            dst = src + off
            keep = (dst >= 0) & (dst < SDSS.n_pixels)
            flux[dst[keep]] = coadd["flux"][keep]
            ivar[dst[keep]] = coadd["ivar"][keep]
            bad = (np.asarray(coadd["and_mask"])[keep] != 0) | (coadd["ivar"][keep] <= 0)
            mask[dst[keep]] = np.where(bad, int(PixelMask.BAD), 0)
            mask[SDSS.sky_mask] |= int(PixelMask.SKY_LINE)
        rows["object_id"].append(path.stem)
        rows["z"].append(z)
        rows["flux"].append(flux)
        rows["ivar"].append(ivar)
        rows["mask"].append(mask)
    return {k: np.array(v) if k != "object_id" else np.array(v, dtype=object) for k, v in rows.items()}


def evaluate(model_path: Path, data: Path) -> dict:
    import torch

    from speculum.io import SpectraSet
    from speculum.pipeline import prepare_spectra
    from speculum.train import load_model, reduced_chi2

    model = load_model(model_path).eval()
    real = read_sdss_galaxies()
    prep = prepare_spectra(real, "SDSS")
    sim_cols = SpectraSet.open(data).read(["object_id", "z", "flux", "ivar", "mask", "truth_class"], split="test")
    normal = sim_cols["truth_class"] == "normal"
    sim = prepare_spectra({k: v[normal] for k, v in sim_cols.items()}, "SDSS")
    with torch.no_grad():
        out = {}
        for name, p in (("real", prep), ("sim", sim)):
            res = model(p.y, p.w, p.z)
            out[name] = reduced_chi2(p.y, p.w * res.valid, res.observed).numpy()
    per = {str(o): round(float(c), 3) for o, c in zip(real["object_id"][prep.index], out["real"], strict=True)}
    return {
        "n_real": len(out["real"]),
        "n_sim_test": len(out["sim"]),
        "median_reduced_chi2_real": round(float(np.median(out["real"])), 3),
        "median_reduced_chi2_sim": round(float(np.median(out["sim"])), 3),
        "ratio_real_to_sim": round(float(np.median(out["real"]) / np.median(out["sim"])), 3),
        **{f"chi2_{k}": v for k, v in per.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="trained model (default: train one here)")
    parser.add_argument("--data", type=Path, help="the simulated shard folder the model was trained on")
    parser.add_argument("--quick", action="store_true", help="train a quicker model if none is given")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    if not (SHARED / "sdss_boss" / "spec").is_dir():
        raise SystemExit(f"real SDSS files not found under {SHARED}; nothing to compare")
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            from speculum.pipeline import simulate_dataset, train_autoencoder
            from speculum.sim import SimConfig
            from speculum.train import TrainConfig

            n, epochs = (3072, 6) if args.quick else (8192, 16)
            args.data = simulate_dataset(Path(tmp) / "sim", n, SimConfig(), seed=0)
            train_autoencoder(args.data, Path(tmp) / "run", None, TrainConfig(epochs=epochs, lr=3e-3, patience=0))
            args.model = Path(tmp) / "run" / "model.safetensors"
        if args.data is None:
            parser.error("--data is required with --model (to compare with simulated held-out spectra)")
        res = evaluate(args.model, args.data)
    print(f"{'spectra':24s} {'n':>4s} {'median reduced chi2':>20s}")
    print(f"{'simulated (test split)':24s} {res['n_sim_test']:4d} {res['median_reduced_chi2_sim']:20.3f}")
    print(f"{'real SDSS galaxies':24s} {res['n_real']:4d} {res['median_reduced_chi2_real']:20.3f}")
    for k, v in res.items():
        if k.startswith("chi2_"):
            print(f"  {k[5:]:28s} {v:10.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
