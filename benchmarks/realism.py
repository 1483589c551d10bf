"""Realism of the simulator: a model trained on simulated spectra, applied to real SDSS galaxies.

Reconstructs the real SDSS galaxy spectra in ``../shared/data/sdss_boss/spec`` (pipeline
class GALAXY with ZWARNING = 0, plus NGC 3073, a dwarf galaxy the pipeline calls STAR)
and reports their reduced chi-square next to that of simulated held-out galaxies.
If real galaxies reconstruct much worse, the simulator is missing something.

The files go through the shipped path a user takes: ``speculum.io.ingest`` (SDSS grid,
``--skip-bad``) -> Parquet shards -> ``reconstruct``; the galaxies are selected from the
shards' ``class``/``zwarn`` columns.

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
    return {
        "n_real": int(keep.sum()),
        "n_real_selected": int(chosen.sum()),
        "n_sim_test": len(sim_chi2),
        "median_reduced_chi2_real": round(float(np.median(real_chi2)), 3),
        "median_reduced_chi2_sim": round(float(np.median(sim_chi2)), 3),
        "ratio_real_to_sim": round(float(np.median(real_chi2) / np.median(sim_chi2)), 3),
        **{f"chi2_{k}": v for k, v in sorted(per.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="trained model (default: train one here)")
    parser.add_argument("--data", type=Path, help="the simulated shard folder the model was trained on")
    parser.add_argument("--quick", action="store_true", help="train a quicker model if none is given")
    parser.add_argument("--json", metavar="PATH", help="write the figures as one flat JSON object")
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
            args.data = simulate_dataset(Path(tmp) / "sim", n, SimConfig(), seed=0)
            train_autoencoder(args.data, Path(tmp) / "run", None, TrainConfig(epochs=epochs, lr=3e-3, patience=0))
            args.model = Path(tmp) / "run" / "model.safetensors"
        if args.data is None:
            parser.error("--data is required with --model (to compare with simulated held-out spectra)")
        res = evaluate(args.model, args.data, Path(tmp))
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
