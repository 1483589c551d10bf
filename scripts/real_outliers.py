"""Score the real SDSS/BOSS spectra in ../shared/data with a galaxy model (and a star model) and list them by log p.

The files go through the shipped path (``speculum ingest`` onto the SDSS grid -> shards ->
``speculum score`` / ``speculum outliers classify``); the table lists each object with the
survey pipeline's class and subclass, its redshift, log p under the galaxy model, the
reduced chi2 and, with ``--star``, log p under the star model.

Usage:
    python scripts/real_outliers.py --galaxy demo-output/run [--star stars-run/] [--json real.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _pipeline_labels(path: Path) -> tuple[str, str]:
    from astropy.io import fits

    with fits.open(path) as h:
        name = "SPECOBJ" if "SPECOBJ" in h else "SPALL" if "SPALL" in h else None
        if name is None:
            return "", ""
        row = h[name].data[0]
        cols = h[name].columns.names
        return (
            str(row["CLASS"]).strip() if "CLASS" in cols else "",
            str(row["SUBCLASS"]).strip() if "SUBCLASS" in cols else "",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--galaxy", type=Path, required=True, help="run folder: model.safetensors + flow.safetensors")
    parser.add_argument("--star", type=Path, help="star model run folder (adds log p under the star model)")
    parser.add_argument("--json", metavar="PATH", help="write the table as JSON")
    args = parser.parse_args()
    spec = SHARED / "sdss_boss" / "spec"
    if not spec.is_dir():
        raise SystemExit(f"{spec}: real SDSS/BOSS files not found")
    from speculum.io import IngestConfig, SpectraSet, ingest
    from speculum.outliers import score

    with tempfile.TemporaryDirectory() as tmp:
        real = Path(tmp) / "real"
        ingest([spec], real, IngestConfig(instrument="SDSS", skip_bad=True))
        meta = SpectraSet.open(real).read(["object_id", "source_file"])
        files = dict(zip(meta["object_id"], [spec / Path(str(f)).name for f in meta["source_file"]], strict=True))
        cat = score(real, args.galaxy, Path(tmp) / "cat.parquet")
        star = None
        if args.star is not None:
            from speculum.outliers.stars import classify  # the star model scores at rest (z = 0)

            c = classify(real, args.galaxy, args.star, Path(tmp) / "classify.parquet")
            star = {o: (c["log_p_star"][i], c["delta_log_like"][i], bool(c["star_flag"][i]))
                    for i, o in enumerate(c["object_id"])}  # fmt: skip
    table = []
    for i, oid in enumerate(cat["object_id"]):
        cls, sub = _pipeline_labels(files[oid])
        table.append({
            "object": files[oid].stem,
            "class": cls,
            "subclass": sub,
            "z": float(cat["z"][i]),
            "log_p_galaxy": float(cat["log_p"][i]),
            "reduced_chi2": float(cat["reduced_chi2"][i]),
            "flags": int(cat["flags"][i]),
            **(dict(zip(("log_p_star", "delta_log_like", "star_flag"), star[oid], strict=True)) if star else {}),
        })  # fmt: skip
    table.sort(key=lambda r: (np.isnan(r["log_p_galaxy"]), r["log_p_galaxy"]))
    for r in table:
        r.update({k: float(v) if isinstance(v, np.floating) else v for k, v in r.items()})
    head = f"{'object':28s} {'class':7s} {'subclass':22s} {'z':>7s} {'log p gal':>10s} {'chi2':>8s}"
    print(head + (f" {'log p star':>10s} {'dlogL star-gal':>14s} star?" if star is not None else "") + "  flags")
    for r in table:
        line = (f"{r['object']:28s} {r['class']:7s} {r['subclass'][:22]:22s} {r['z']:7.4f} {r['log_p_galaxy']:10.1f} "
                f"{r['reduced_chi2']:8.2f}")  # fmt: skip
        if star is not None:
            line += f" {r['log_p_star']:10.1f} {r['delta_log_like']:14.1f} {'yes' if r['star_flag'] else 'no':5s}"
        print(line + f"  {r['flags']}")
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
