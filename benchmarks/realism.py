"""Realism of the simulator: a model trained on simulated spectra, applied to real SDSS galaxies.

Reconstructs the real SDSS galaxy spectra in ``../shared/data/sdss_boss/spec`` (pipeline
class GALAXY with ZWARNING = 0, plus NGC 3073, a dwarf galaxy the pipeline calls STAR)
and reports their reduced chi-square next to that of simulated held-out galaxies.
If real galaxies reconstruct much worse, the simulator is missing something.

The files go through the shipped path a user takes: ``speculum.io.ingest`` (SDSS grid,
``--skip-bad``) -> Parquet shards -> ``reconstruct``; the galaxies are selected from the
shards' ``class``/``zwarn`` columns.

Also reported: each galaxy's median per-pixel S/N and the median chi2 of the simulated normal
galaxies of the same S/N (within a factor 1.25): a model that cannot reach the noise at high
S/N fails real and simulated spectra alike, and the real galaxies here are brighter than the
simulated median.

Usage:
    python benchmarks/realism.py --model demo-output/run/model.safetensors --data demo-output/data
    python benchmarks/realism.py --quick          # trains a small model first (3,072 spectra, 6 epochs)
    python benchmarks/realism.py --json realism.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DWARF_GALAXIES = {"NGC3073_SDSS_DR18.fits"}
#: the goals of the realism issue: real median within this factor of the simulated one, and no
#: galaxy above ``MAX_CHI2`` unless the survey pipeline's SUBCLASS says AGN or BROADLINE
MAX_RATIO, MAX_CHI2 = 1.3, 3.0
EXEMPT_SUBCLASS = ("AGN", "BROADLINE")


def subclass(path: Path) -> str:
    """The survey pipeline's SUBCLASS of an SDSS ``spec`` file (redshift table ``SPECOBJ`` or ``SPALL``)."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        names = [h.name for h in hdul]
        table = hdul["SPECOBJ" if "SPECOBJ" in names else "SPALL"].data
        return str(table["SUBCLASS"][0]).strip() if "SUBCLASS" in table.columns.names else ""


def median_snr(data: Path, split: str | None = None) -> dict[str, float]:
    """Per object, the median per-pixel S/N ``flux * sqrt(ivar)`` over usable pixels (real and simulated alike)."""
    from speculum.io import SpectraSet
    from speculum.io.prepare import pixel_weights

    out: dict[str, float] = {}
    for chunk in SpectraSet.open(data).iter_batches(["object_id", "flux", "ivar", "mask"], split=split, batch_size=512):
        w = pixel_weights(chunk["ivar"], chunk["mask"])
        sn = np.where(w > 0, chunk["flux"] * np.sqrt(w), np.nan)
        with warnings.catch_warnings():  # rows without a usable pixel: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(sn, axis=1) if sn.size else np.zeros(0)
        out.update(zip(chunk["object_id"], med.tolist(), strict=True))
    return out


def evaluate(model_path: Path, data: Path, tmp: Path) -> dict:
    """Real spectra through the shipped path (``ingest`` -> shards -> ``reconstruct``) next to simulated ones."""
    from speculum.autoencode import reconstruct
    from speculum.io import IngestConfig, SpectraSet, ingest

    real = tmp / "real"
    ingest([SHARED / "sdss_boss" / "spec"], real, IngestConfig(instrument="SDSS", skip_bad=True))
    meta = SpectraSet.open(real).read(["object_id", "class", "zwarn", "source_file"])
    files = np.array([Path(str(f)).name for f in meta["source_file"]])
    chosen = ((meta["class"] == "GALAXY") & (meta["zwarn"] == 0)) | np.isin(files, list(DWARF_GALAXIES))
    name = dict(zip(meta["object_id"], [Path(f).stem for f in files], strict=True))
    rec = reconstruct(model_path, real, tmp / "real.parquet")  # skips z outside the model's range, says how many
    keep = np.isin(rec["object_id"], meta["object_id"][chosen])
    real_chi2 = rec["reduced_chi2"][keep]
    sim = reconstruct(model_path, data, tmp / "sim.parquet", split="test")
    sim_chi2 = sim["reduced_chi2"][np.asarray(sim["truth_class"]) == "normal"]
    per = {name[o]: round(float(c), 3) for o, c in zip(rec["object_id"][keep], real_chi2, strict=True)}
    sub = {name[o]: subclass(SHARED / "sdss_boss" / "spec" / f"{name[o]}.fits") for o in rec["object_id"][keep]}
    ratio = float(np.median(real_chi2) / np.median(sim_chi2))
    # the same comparison at matched S/N: each real galaxy against the simulated normal galaxies
    # whose median per-pixel S/N is within a factor 1.25 of its own
    sn_real, sn_sim = median_snr(real), median_snr(data, split="test")
    sim_ids = np.asarray(sim["object_id"])[np.asarray(sim["truth_class"]) == "normal"]
    sim_sn = np.array([sn_sim[o] for o in sim_ids])
    matched, snr_of = {}, {}
    for o in rec["object_id"][keep]:
        snr_of[name[o]] = round(sn_real[o], 1)
        near = (sim_sn > sn_real[o] / 1.25) & (sim_sn < sn_real[o] * 1.25)
        matched[name[o]] = (round(float(np.median(sim_chi2[near])), 3), int(near.sum())) if near.any() else (None, 0)
    matched_ratios = [per[k] / m for k, (m, _) in matched.items() if m]
    above = sorted(k for k, v in per.items() if v > MAX_CHI2 and not any(e in sub[k] for e in EXEMPT_SUBCLASS))
    return {
        "n_real": int(keep.sum()),
        "n_real_selected": int(chosen.sum()),
        "n_sim_test": len(sim_chi2),
        "median_reduced_chi2_real": round(float(np.median(real_chi2)), 3),
        "median_reduced_chi2_sim": round(float(np.median(sim_chi2)), 3),
        "ratio_real_to_sim": round(ratio, 3),
        "goal_ratio_met": ratio <= MAX_RATIO,
        "above_max_not_agn": above,
        "median_snr_real": round(float(np.median(list(snr_of.values()))), 1),
        "median_snr_sim": round(float(np.median(sim_sn)), 1),
        "median_ratio_snr_matched": round(float(np.median(matched_ratios)), 3) if matched_ratios else None,
        **{f"chi2_{k}": v for k, v in sorted(per.items())},
        **{f"subclass_{k}": v for k, v in sorted(sub.items())},
        **{f"snr_{k}": v for k, v in sorted(snr_of.items())},
        **{f"sim_chi2_snr_matched_{k}": m for k, (m, _) in sorted(matched.items())},
        **{f"n_sim_snr_matched_{k}": c for k, (_, c) in sorted(matched.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="trained model (default: train one here)")
    parser.add_argument("--data", type=Path, help="the simulated shard folder the model was trained on")
    parser.add_argument("--quick", action="store_true", help="train a quicker model if none is given")
    parser.add_argument("--json", metavar="PATH", help="write the figures as one flat JSON object")
    parser.add_argument("--n", type=int, help="simulated spectra to train on (default 8192, --quick 3072)")
    parser.add_argument("--epochs", type=int, help="training epochs (default 16, --quick 6)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="train in DIR and keep the data and model there")
    args = parser.parse_args()
    if not (SHARED / "sdss_boss" / "spec").is_dir():
        raise SystemExit(f"real SDSS files not found under {SHARED}; nothing to compare")
    with tempfile.TemporaryDirectory() as tmp:
        if args.model is None:
            from speculum.autoencode import simulate_dataset
            from speculum.autoencode import train as train_autoencoder
            from speculum.sim import SimConfig
            from speculum.train import TrainConfig

            n, epochs = (3072, 6) if args.quick else (8192, 16)
            n, epochs = args.n or n, args.epochs or epochs
            work = args.keep or Path(tmp)
            args.data = simulate_dataset(work / "sim", n, SimConfig(), seed=0)
            train_autoencoder(args.data, work / "run", None, TrainConfig(epochs=epochs, lr=3e-3, patience=0))
            args.model = work / "run" / "model.safetensors"
        if args.data is None:
            parser.error("--data is required with --model (to compare with simulated held-out spectra)")
        res = evaluate(args.model, args.data, Path(tmp))
    print(f"{'spectra':24s} {'n':>4s} {'median reduced chi2':>20s}")
    print(f"{'simulated (test split)':24s} {res['n_sim_test']:4d} {res['median_reduced_chi2_sim']:20.3f}")
    print(f"{'real SDSS galaxies':24s} {res['n_real']:4d} {res['median_reduced_chi2_real']:20.3f}")
    print(f"ratio real / simulated: {res['ratio_real_to_sim']:.3f} (goal <= {MAX_RATIO})")
    print(f"median S/N per pixel: real {res['median_snr_real']}, simulated {res['median_snr_sim']}")
    print(f"  {'galaxy':28s} {'chi2':>8s} {'S/N':>6s} {'sim chi2 at its S/N (n)':>24s}  pipeline SUBCLASS")
    for k, v in res.items():
        if k.startswith("chi2_"):
            g = k[5:]
            sub, m, c = res[f"subclass_{g}"], res[f"sim_chi2_snr_matched_{g}"], res[f"n_sim_snr_matched_{g}"]
            flag = "  > 3" if v > MAX_CHI2 else ""
            sim_at = f"{m:.3f} ({c})" if m is not None else "-"
            print(f"  {g:28s} {v:8.3f} {res[f'snr_{g}']:6.1f} {sim_at:>24s}  {sub or '-'}{flag}")
    print(f"median of real chi2 / simulated chi2 at the same S/N: {res['median_ratio_snr_matched']}")
    print(f"above {MAX_CHI2} without an AGN/BROADLINE subclass: {', '.join(res['above_max_not_agn']) or 'none'}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
